//! `ballast watch --on-critical CMD` against a real HAProxy 2.6 in master-worker mode: a bad
//! weight change is reloaded (`kill -USR2` to the master), s3 fills its `maxconn`, the
//! critical `ServerAtConnectionLimit` fires, and the user's script — which writes its
//! environment to a file, restores the previous configuration and reloads HAProxy the same
//! way — runs once. The alert resolves afterwards, the environment carried the alert and the
//! change's diff, and the run is a `command_ran` event in the event log and in the output.
//!
//! Timing printed as `ON-CRITICAL-TIMING reload_to_command=<s> command_to_resolved=<s>`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::clients::ClientThreads;
use common::haproxy::{self, write_checked};
use common::{Backend, PeerGroup, http, json_lines as lines, loopback, wait_for_port, wait_until};
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

/// What both tests set up before HAProxy starts: a tempdir, the stats socket's and the
/// configuration's paths in it, a free front address, and three backends answering after
/// 100 ms.
fn rig() -> (
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    SocketAddr,
    Vec<Backend>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (socket, cfg) = (
        dir.path().join("admin.sock"),
        dir.path().join("haproxy.cfg"),
    );
    let backends = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start_with_delay(n, Duration::from_millis(100)))
        .collect();
    (dir, socket, cfg, loopback(), backends)
}

/// HAProxy in master-worker mode on `cfg` (the master's pid stays; USR2 makes it re-read the
/// file), once it listens on `front` and its stats socket answers.
fn start_master_worker(cfg: &Path, front: SocketAddr, socket: &Path) -> PeerGroup {
    let mut command = Command::new("haproxy");
    command.args(["-W", "-db", "-f"]).arg(cfg);
    let peer = PeerGroup::spawn(command);
    assert!(
        wait_for_port(front, Duration::from_secs(5)),
        "HAProxy did not listen"
    );
    wait_until("the stats socket", Duration::from_secs(5), || {
        worker_pid(socket).is_some()
    });
    peer
}

fn worker_pid(socket: &Path) -> Option<String> {
    haproxy::pid(socket)
}

/// One GET on a new connection: its status (0 when it failed).
fn request(front: SocketAddr) -> u16 {
    http::exchange(front, "GET", "/", &[], "", Duration::from_secs(15)).status
}

#[test]
fn a_bad_reload_runs_the_command_once_which_restores_the_file_and_the_alert_resolves() {
    if !common::peer_available("haproxy") {
        return;
    }
    let (dir, socket, cfg, front, backends) = rig();
    let good = dir.path().join("good.cfg");
    // Each server holds 6; nine clients spread by round-robin hold about 3 on each.
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

    let peer = start_master_worker(&cfg, front, &socket);
    let master = peer.id();

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

    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = ClientThreads::new();
    clients.spawn(9, Duration::from_secs(24), |_| {
        let (ok, failed) = (ok.clone(), failed.clone());
        move || {
            if request(front) == 200 {
                ok.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
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
    clients.stop();
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
    let (dir, socket, cfg, front, backends) = rig();
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
    let peer = start_master_worker(&cfg, front, &socket);
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
        haproxy::command(&socket, &format!("disable server app/{server}"))
            .expect("disable a server over the stats socket");
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
