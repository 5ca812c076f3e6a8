//! `ballast loadtest` end to end: against `ballast serve`, a real HAProxy and a real nginx on
//! loopback, every response is attributed to the backend that answered it, request for
//! request (the backends count what they served), and the shares are judged against the
//! configuration's weights.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Backend, free_port, wait_for_port};
use common::{PeerGroup, peer_available};

/// Three backends named as the configurations name their servers.
fn backends() -> Vec<Backend> {
    (1..=3)
        .map(|i| Backend::start(&format!("app-{i}")))
        .collect()
}

/// Runs `ballast loadtest` with `args`; its JSON report.
fn loadtest(url: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .arg("loadtest")
        .arg(url)
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run ballast loadtest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Each backend's attributed count equals what it served, and nothing went unattributed.
fn attributed_as_served(report: &Value, backends: &[Backend]) {
    attributed_as_served_by(report, backends, |b| b.name.clone());
}

/// The same, with the backend named in the report as `key` names it.
fn attributed_as_served_by(report: &Value, backends: &[Backend], key: impl Fn(&Backend) -> String) {
    assert_eq!(report["unattributed"], 0, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    let listed = report["backends"].as_array().expect("backends");
    let mut total = 0;
    for b in backends {
        let row = listed
            .iter()
            .find(|r| r["name"] == key(b).as_str())
            .unwrap_or_else(|| panic!("no row for {} in {report:#}", key(b)));
        let served = b.served.load(Ordering::Relaxed);
        assert_eq!(
            row["requests"].as_u64(),
            Some(served),
            "{} served {served}: {row:#}",
            b.name
        );
        total += served;
    }
    assert_eq!(report["requests"].as_u64(), Some(total), "{report:#}");
}

fn share_of(report: &Value, name: &str) -> (f64, f64) {
    let row = report["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"));
    (
        row["share"].as_f64().unwrap_or(-1.0),
        row["expected_share"].as_f64().unwrap_or(-1.0),
    )
}

#[test]
fn on_ballast_serve_every_answer_is_attributed_and_weights_are_the_expected_shares() {
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let file = dir.path().join("ballast.toml");
    let mut config = format!(
        "[listeners.web]\naddress = \"{listener}\"\npool = \"app\"\nserved_by_header = \"X-Served-By\"\n\n[pools.app]\nalgorithm = \"round-robin\"\n"
    );
    for (b, w) in backends.iter().zip([1, 1, 2]) {
        config += &format!(
            "[[pools.app.servers]]\nname = \"{}\"\naddress = \"{}\"\nweight = {w}\n",
            b.name, b.addr
        );
    }
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    command
        .args(["serve", "--threads", "1", "-c"])
        .arg(&file)
        .env("RUST_LOG", "warn");
    let _serve = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    assert!(
        wait_for_port(listener, Duration::from_secs(10)),
        "serve did not start"
    );
    let url = format!("http://{listener}/");
    let config_path = file.display().to_string();
    let report = loadtest(
        &url,
        &["--requests", "2000", "-c", "8", "--config", &config_path],
    );
    attributed_as_served(&report, &backends);
    // Round-robin with weights 1,1,2 is exact: a quarter, a quarter, a half.
    for (name, want) in [("app-1", 0.25), ("app-2", 0.25), ("app-3", 0.5)] {
        let (share, expected) = share_of(&report, name);
        assert!((expected - want).abs() < 1e-9, "{name}: {report:#}");
        assert!(
            (share - want).abs() < 0.01,
            "{name} took {share}: {report:#}"
        );
    }
    assert!(report["peak_ratio"].as_f64().unwrap() < 1.05, "{report:#}");
    assert_eq!(report["expected_from"], "configuration");

    // The open model reaches its rate and times every request.
    let open = loadtest(
        &url,
        &["--rate", "400", "--duration", "2s", "--warmup", "500ms"],
    );
    let rate = open["rate"].as_f64().unwrap();
    assert!((rate - 400.0).abs() < 20.0, "achieved {rate}: {open:#}");
    assert!(open["warmup_requests"].as_u64().unwrap() > 100, "{open:#}");
    assert!(
        open["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{open:#}"
    );
}

#[test]
fn on_haproxy_every_answer_is_attributed_to_the_server_that_gave_it() {
    if !peer_available("haproxy") {
        return;
    }
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\nfrontend web\n    bind {listener}\n    default_backend app\n\nbackend app\n    balance roundrobin\n"
    );
    for (b, w) in backends.iter().zip([1, 2, 3]) {
        cfg += &format!("    server {} {} weight {w}\n", b.name, b.addr);
    }
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, &cfg).unwrap();
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&file);
    let _haproxy = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    assert!(
        wait_for_port(listener, Duration::from_secs(10)),
        "haproxy did not start"
    );
    let config_path = file.display().to_string();
    let report = loadtest(
        &format!("http://{listener}/"),
        &["--requests", "1200", "-c", "6", "--config", &config_path],
    );
    attributed_as_served(&report, &backends);
    for (name, want) in [("app-1", 1.0 / 6.0), ("app-2", 2.0 / 6.0), ("app-3", 0.5)] {
        let (share, expected) = share_of(&report, name);
        assert!((expected - want).abs() < 1e-9, "{name}: {report:#}");
        assert!(
            (share - want).abs() < 0.02,
            "{name} took {share}: {report:#}"
        );
    }
}

#[test]
fn on_nginx_every_answer_is_attributed_to_the_server_that_gave_it() {
    if !peer_available("nginx") {
        return;
    }
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut upstream = String::new();
    for b in &backends {
        upstream += &format!("        server {};\n", b.addr);
    }
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n    upstream app {{\n{upstream}        keepalive 16;\n    }}\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_pass http://app;\n            add_header X-Upstream $upstream_addr always;\n        }}\n    }}\n}}\n",
        dir = dir.path().display()
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let mut command = Command::new("nginx");
    command.arg("-c").arg(&file).arg("-p").arg(dir.path());
    let _nginx = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wait_for_port(listener, Duration::from_millis(200)) {
        assert!(Instant::now() < deadline, "nginx did not start");
    }
    let config_path = file.display().to_string();
    let report = loadtest(
        &format!("http://{listener}/"),
        &[
            "--requests",
            "900",
            "-c",
            "3",
            "--served-by",
            "X-Upstream",
            "--config",
            &config_path,
        ],
    );
    // nginx names the upstream by its address (`$upstream_addr`), as its configuration does.
    attributed_as_served_by(&report, &backends, |b| b.addr.to_string());
    assert_eq!(report["expected_from"], "configuration", "{report:#}");
    for b in &backends {
        let (share, expected) = share_of(&report, &b.addr.to_string());
        assert!((expected - 1.0 / 3.0).abs() < 1e-9, "{report:#}");
        assert!(
            (share - 1.0 / 3.0).abs() < 0.02,
            "{} took {share}: {report:#}",
            b.addr
        );
    }
}

/// A backend that can serve 50 requests a second (20 ms each, one connection) asked for 100:
/// the closed model slows down with it and reports ~20 ms, hiding the stall; the open model
/// keeps its schedule, the queue grows, and every request's latency from its intended send time
/// grows with it.
#[test]
fn the_open_model_shows_the_queue_a_closed_model_hides() {
    let slow = Backend::start_with_delay("slow", Duration::from_millis(20));
    let url = format!("http://{}/", slow.addr);
    let closed = loadtest(&url, &["-c", "1", "--duration", "2s"]);
    let open = loadtest(
        &url,
        &[
            "--rate",
            "100",
            "--max-connections",
            "1",
            "--duration",
            "2s",
        ],
    );
    let closed_p99 = closed["latency_ms"]["p99"].as_f64().unwrap();
    let closed_rate = closed["rate"].as_f64().unwrap();
    let open_p99 = open["latency_ms"]["p99"].as_f64().unwrap();
    assert!(
        closed_p99 < 60.0 && (30.0..=55.0).contains(&closed_rate),
        "closed: {closed:#}"
    );
    // 200 requests meant for 2 s take 4 s to serve: the last waited about 2 s.
    assert!(
        open_p99 > 1_000.0 && open_p99 > 20.0 * closed_p99,
        "open p99 {open_p99} ms against closed {closed_p99} ms: {open:#}"
    );
    assert_eq!(open["requests"], 200, "{open:#}");
}

/// `--events FILE` appends one `load_test_ran` line with the run's figures (the event log's
/// JSON-lines format), and the postmortem's reader takes it as an `Event`.
#[test]
fn a_run_appends_its_event_to_the_event_log() {
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let url = format!("http://{}/", backends[0].addr);
    let log_path = log.display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["loadtest", &url, "-n", "300", "-c", "3", "--format", "json"])
        .args(["--events", &log_path, "--assert", "requests>1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the assertion fails");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let event: ballast_core::event::Event = serde_json::from_str(lines[0]).unwrap();
    let raw: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(raw["event"], "load_test_ran", "{raw:#}");
    match event.kind {
        ballast_core::event::EventKind::LoadTestRan {
            model,
            requests,
            backends: rows,
            failed_assertions,
            p99_ms,
            ..
        } => {
            assert_eq!(model, "closed");
            assert_eq!(requests, 300);
            assert_eq!(Some(requests), report["requests"].as_u64());
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].name, "app-1");
            assert_eq!(rows[0].requests, 300);
            assert_eq!(Some(p99_ms), report["latency_ms"]["p99"].as_f64());
            assert_eq!(failed_assertions.len(), 1, "{failed_assertions:?}");
            assert!(failed_assertions[0].starts_with("requests>1000"));
        }
        other => panic!("not a load test event: {other:?}"),
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(event.at_ms <= now_ms && event.at_ms + 60_000 > now_ms);
}
