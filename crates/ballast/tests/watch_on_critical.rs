//! `ballast watch --on-critical CMD` against a real HAProxy 2.6 in master-worker mode: a bad
//! weight change is reloaded (`kill -USR2` to the master), s3 fills its `maxconn`, the
//! critical `ServerAtConnectionLimit` fires, and the user's script — which writes its
//! environment to a file, restores the previous configuration and reloads HAProxy the same
//! way — runs once. The alert resolves afterwards, the environment carried the alert and the
//! change's diff, and the run is a `command_ran` event in the event log and in the output.
//!
//! Timing printed as `ON-CRITICAL-TIMING reload_to_command=<s> command_to_resolved=<s>`.

// The guard's peer helpers (process groups, free ports, named backends with a delay).
#[path = "../../ballast-guard/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ballast_guard::source::haproxy::transport::{self, SocketAddress};
use common::{Backend, PeerGroup, free_port, wait_for_port};
use serde_json::Value;

/// The whole HAProxy configuration: a stats socket, frontend `web` → backend `app` with one
/// `server` line per backend, each with `extra[i]`.
fn config(socket: &Path, front: SocketAddr, backends: &[Backend], extra: [&str; 3]) -> String {
    let mut text = format!(
        "global\n    stats socket {} mode 600 level admin\n    maxconn 500\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    \
         timeout server 10s\n    timeout queue 10s\n\
         frontend web\n    bind {front}\n    default_backend app\n\
         backend app\n    balance roundrobin\n",
        socket.display()
    );
    for (b, e) in backends.iter().zip(extra) {
        text.push_str(&format!("    server {} {} {e}\n", b.name, b.addr));
    }
    text
}

/// Writes aside, checks with `haproxy -c`, renames: nobody reads half a file.
fn write_checked(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    let check = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(&aside)
        .output()
        .expect("run haproxy -c");
    assert!(
        check.status.success(),
        "invalid test configuration: {}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::rename(&aside, path).unwrap();
}

fn worker_pid(socket: &Path) -> Option<String> {
    let info = transport::command(&SocketAddress::Unix(socket.to_path_buf()), "show info").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .map(|p| p.trim().to_string())
}

/// One GET on a new connection: its status (0 when it failed).
fn request(front: SocketAddr) -> u16 {
    let Ok(mut conn) = TcpStream::connect_timeout(&front, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(15)));
    let head = format!("GET / HTTP/1.1\r\nHost: {front}\r\nConnection: close\r\n\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
fn a_bad_reload_runs_the_command_once_which_restores_the_file_and_the_alert_resolves() {
    if !common::peer_available("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let cfg = dir.path().join("haproxy.cfg");
    let good = dir.path().join("good.cfg");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Each server holds 6; nine clients spread by round-robin hold about 3 on each.
    let backends: Vec<Backend> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start_with_delay(n, Duration::from_millis(100)))
        .collect();
    let before = config(
        &socket,
        front,
        &backends,
        [
            "weight 1 maxconn 6",
            "weight 1 maxconn 6",
            "weight 1 maxconn 6",
        ],
    );
    write_checked(&cfg, &before);
    std::fs::write(&good, &before).unwrap();

    // Master-worker: the master's pid stays, USR2 makes it re-read the file.
    let mut haproxy = Command::new("haproxy");
    haproxy.args(["-W", "-db", "-f"]).arg(&cfg);
    let peer = PeerGroup::spawn(haproxy);
    let master = peer.id();
    assert!(
        wait_for_port(front, Duration::from_secs(5)),
        "HAProxy did not listen"
    );
    wait_until("the stats socket", Duration::from_secs(5), || {
        worker_pid(&socket).is_some()
    });

    // The user's script: its environment to a file, one line per run, the previous file
    // back, and HAProxy reloaded.
    let script = dir.path().join("restore.sh");
    let (runs, env_file) = (dir.path().join("runs"), dir.path().join("env"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{runs}'\nenv | grep '^BALLAST_' > '{env}'\n\
             cp '{good}' '{cfg}'\nkill -USR2 {master}\necho restored\n",
            runs = runs.display(),
            env = env_file.display(),
            good = good.display(),
            cfg = cfg.display(),
        ),
    )
    .unwrap();

    let (out, events) = (
        dir.path().join("watch.out"),
        dir.path().join("events.jsonl"),
    );
    let mut watch = Command::new(env!("CARGO_BIN_EXE_ballast"));
    watch
        .arg("watch")
        .arg(format!("haproxy:{}", socket.display()))
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "--interval", "1s", "--duration", "26s"])
        .arg("--event-log")
        .arg(&events)
        .arg("--on-critical")
        .arg(format!("sh {}", script.display()))
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("watch.err")).unwrap(),
        ));
    let watch = PeerGroup::spawn_with_output_of(watch);
    wait_until(
        "ballast watch's first sample",
        Duration::from_secs(10),
        || lines(&out).iter().any(|l| l["type"] == "sample"),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..9)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let until = Instant::now() + Duration::from_secs(24);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    if request(front) == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    assert!(!runs.exists(), "the command ran before any fault");

    // The bad change: s3 promised 80% of the requests, more than its 6 connections hold.
    let old_worker = worker_pid(&socket).unwrap();
    write_checked(
        &cfg,
        &config(
            &socket,
            front,
            &backends,
            [
                "weight 1 maxconn 6",
                "weight 1 maxconn 6",
                "weight 8 maxconn 6",
            ],
        ),
    );
    let fault = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-USR2", &master.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the reload", Duration::from_secs(5), || {
        worker_pid(&socket).is_some_and(|p| p != old_worker)
    });
    wait_until("the command ran", Duration::from_secs(15), || runs.exists());
    let to_command = fault.elapsed();
    let ran_at = Instant::now();
    // Its run is an event, in the log and in the output.
    wait_until("the command_ran event", Duration::from_secs(5), || {
        lines(&events).iter().any(|e| e["event"] == "command_ran")
    });
    let firing: Vec<Value> = lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "alert" && l["state"] == "firing")
        .collect();
    let limit = firing
        .iter()
        .find(|a| a["labels"]["alertname"] == "ServerAtConnectionLimit")
        .unwrap_or_else(|| panic!("no ServerAtConnectionLimit fired: {firing:#?}"));
    assert_eq!(limit["labels"]["server"], "s3", "{limit:#}");

    // The alert resolves once the restored file is live.
    wait_until(
        "ServerAtConnectionLimit resolved",
        Duration::from_secs(12),
        || {
            lines(&out).iter().any(|l| {
                l["type"] == "alert"
                    && l["state"] == "resolved"
                    && l["labels"]["alertname"] == "ServerAtConnectionLimit"
            })
        },
    );
    println!(
        "ON-CRITICAL-TIMING reload_to_command={:.1} command_to_resolved={:.1}",
        to_command.as_secs_f64(),
        ran_at.elapsed().as_secs_f64()
    );
    // A few quiet rounds: nothing runs it again.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    drop(watch);

    let ran = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(ran.lines().count(), 1, "ran more than once: {ran:?}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    for expected in [
        "BALLAST_ALERTNAME=ServerAtConnectionLimit".to_string(),
        "BALLAST_POOL=app".to_string(),
        "BALLAST_SERVER=s3".to_string(),
        "BALLAST_SEVERITY=critical".to_string(),
        format!("BALLAST_INSTANCE={}", socket.display()),
        format!("BALLAST_CHANGE_FILE={}", cfg.display()),
        "BALLAST_CHANGE_DIFF=pool app: ~ weight of server s3: 1 → 8".to_string(),
    ] {
        assert!(env.contains(&expected), "{expected} missing from:\n{env}");
    }
    assert!(
        env.contains("BALLAST_SUMMARY=") && env.contains("BALLAST_CAUSE=It is"),
        "{env}"
    );
    let ran_events: Vec<Value> = lines(&events)
        .into_iter()
        .filter(|e| e["event"] == "command_ran")
        .collect();
    assert_eq!(ran_events.len(), 1, "{ran_events:#?}");
    assert_eq!(ran_events[0]["exit_code"], 0, "{:#}", ran_events[0]);
    assert_eq!(ran_events[0]["alertname"], "ServerAtConnectionLimit");
    assert_eq!(ran_events[0]["pool"], "app");
    assert!(
        lines(&out).iter().any(|l| l["type"] == "command_ran"),
        "the run is in the JSON output"
    );
    assert!(
        std::fs::read_to_string(&cfg).unwrap() == before,
        "the script restored the file"
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "too little traffic");
    drop(peer);
}

#[test]
fn a_command_past_its_time_limit_is_killed_with_its_group_and_logged() {
    // No load balancer needed for the limit itself: ballast serve's admin API is a source,
    // but the simplest critical alert is HAProxy's; this test checks the runner alone
    // through the binary's `--on-critical-timeout`, with HAProxy as above.
    if !common::peer_available("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let cfg = dir.path().join("haproxy.cfg");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let backends: Vec<Backend> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start_with_delay(n, Duration::from_millis(100)))
        .collect();
    write_checked(
        &cfg,
        &config(
            &socket,
            front,
            &backends,
            [
                "weight 1 maxconn 6",
                "weight 1 maxconn 6",
                "weight 1 maxconn 6",
            ],
        ),
    );
    let mut haproxy = Command::new("haproxy");
    haproxy.args(["-W", "-db", "-f"]).arg(&cfg);
    let peer = PeerGroup::spawn(haproxy);
    assert!(
        wait_for_port(front, Duration::from_secs(5)),
        "HAProxy did not listen"
    );
    wait_until("the stats socket", Duration::from_secs(5), || {
        worker_pid(&socket).is_some()
    });
    // Disabling two of three servers at runtime: a critical PoolSharesShifted at once.
    let marker = dir.path().join("child-alive");
    let events = dir.path().join("events.jsonl");
    let out = dir.path().join("watch.out");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_ballast"));
    watch
        .arg("watch")
        .arg(format!("haproxy:{}", socket.display()))
        .args(["--format", "json", "--interval", "1s", "--duration", "8s"])
        .args(["--on-critical-timeout", "1s"])
        .arg("--event-log")
        .arg(&events)
        .arg("--on-critical")
        // A child that would outlive its shell: killed with the group.
        .arg(format!(
            "(sleep 3; touch '{}') & sleep 30",
            marker.display()
        ))
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::null());
    let watch = PeerGroup::spawn_with_output_of(watch);
    wait_until(
        "ballast watch's first sample",
        Duration::from_secs(10),
        || lines(&out).iter().any(|l| l["type"] == "sample"),
    );
    for server in ["s1", "s2"] {
        transport::command(
            &SocketAddress::Unix(socket.clone()),
            &format!("disable server app/{server}"),
        )
        .unwrap();
    }
    wait_until("the command_ran event", Duration::from_secs(10), || {
        lines(&events).iter().any(|e| e["event"] == "command_ran")
    });
    let ran = lines(&events)
        .into_iter()
        .find(|e| e["event"] == "command_ran")
        .unwrap();
    assert!(ran.get("exit_code").is_none(), "{ran:#}");
    assert!(
        ran["detail"].as_str().unwrap_or("").contains("time limit"),
        "{ran:#}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!marker.exists(), "the command's child outlived the kill");
    drop(watch);
    drop(peer);
}
