//! `ballast loadtest`'s attribution beyond the response header, on loopback: the balancer's own
//! counters (`ballast serve`'s admin API, a real HAProxy's stats socket) read around the run
//! equal the header's attribution request for request, and attribute what the header cannot
//! (a backend that omits it, a 502 the balancer wrote for a dead server); `--prediction` sets
//! `simulate`'s prediction beside the measured shares of a hashing pool; `--replay` sends
//! recorded requests, and the backends' shares equal `simulate --replay`'s for the same file.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Backend, free_port, wait_for_port};
use common::{PeerGroup, peer_available};

/// Runs `ballast loadtest` with `args` and `--format json`; its exit code and JSON report.
fn loadtest(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .arg("loadtest")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run ballast loadtest");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// `ballast serve` with an admin listener, on `pool` (a `[pools.app]` table and its servers).
struct Serve {
    listener: SocketAddr,
    admin: SocketAddr,
    file: std::path::PathBuf,
    _group: PeerGroup,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(pool: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let file = dir.path().join("ballast.toml");
        std::fs::write(
            &file,
            format!(
                "[admin]\naddress = \"{admin}\"\n\n[listeners.web]\naddress = \"{listener}\"\npool = \"app\"\n\n{pool}"
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
        command
            .args(["serve", "--threads", "1", "-c"])
            .arg(&file)
            .env("RUST_LOG", "warn");
        let group = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
        assert!(
            wait_for_port(listener, Duration::from_secs(10)),
            "serve did not start"
        );
        assert!(
            wait_for_port(admin, Duration::from_secs(10)),
            "serve's admin API did not start"
        );
        Serve {
            listener,
            admin,
            file,
            _group: group,
            _dir: dir,
        }
    }
}

fn server_lines(servers: &[(&str, String)], extra: &str) -> String {
    servers
        .iter()
        .map(|(name, addr)| {
            format!("[[pools.app.servers]]\nname = \"{name}\"\naddress = \"{addr}\"\n{extra}")
        })
        .collect()
}

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#}"))
}

/// A port nothing listens on: a server that died.
fn dead_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Checks the counters' section: each header-naming backend's counter count equals its
/// header count and what it served; the bare backend's equals what it served (the header
/// left those unattributed); the dead server's equals the 5xx the balancer wrote for it
/// (neither balancer counts those among the server's responses: it gave none).
fn counters_match(report: &Value, named: &[&Backend], bare: &Backend, dead: &str) {
    let counters = &report["counters"];
    let rows = &counters["backends"];
    let mut total = 0;
    for b in named {
        let r = row(rows, &b.name);
        let served = b.served.load(Ordering::Relaxed);
        assert!(served > 0, "{} served nothing: {report:#}", b.name);
        assert_eq!(r["requests"].as_u64(), Some(served), "{report:#}");
        assert_eq!(r["by_header"].as_u64(), Some(served), "{report:#}");
        total += served;
    }
    let served_bare = bare.served.load(Ordering::Relaxed);
    assert!(served_bare > 0, "{report:#}");
    let r = row(rows, &bare.name);
    assert_eq!(r["requests"].as_u64(), Some(served_bare), "{report:#}");
    assert_eq!(r["by_header"].as_u64(), Some(0), "{report:#}");
    let r = row(rows, dead);
    let dead_count = r["requests"].as_u64().unwrap();
    assert!(
        dead_count > 0,
        "the dead server was never picked: {report:#}"
    );
    // The balancer wrote those answers itself (a 5xx, no server's response to count): the
    // dead server answered nothing, and the run's errors are exactly its picks.
    assert!(r["responses"]["2xx"].is_null(), "{report:#}");
    assert_eq!(
        report["errors"].as_u64(),
        Some(dead_count),
        "every pick of the dead server is a 5xx: {report:#}"
    );
    total += served_bare + dead_count;
    // The header saw the bare backend's answers and the balancer's 5xx without a name.
    assert_eq!(
        report["unattributed"].as_u64(),
        Some(served_bare + dead_count),
        "{report:#}"
    );
    assert_eq!(counters["requests"].as_u64(), Some(total), "{report:#}");
    assert_eq!(report["requests"].as_u64(), Some(total), "{report:#}");
    assert_eq!(counters["compared"], true);
    assert_eq!(counters["agree"], false, "{report:#}");
    // Only the two backends the header could not name disagree, and each is named.
    let disagreements: Vec<&str> = counters["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        disagreements
            .iter()
            .any(|d| d.starts_with(&format!("{}: ", bare.name))),
        "{disagreements:?}"
    );
    assert!(
        disagreements
            .iter()
            .any(|d| d.starts_with(&format!("{dead}: "))),
        "{disagreements:?}"
    );
    for b in named {
        assert!(
            !disagreements
                .iter()
                .any(|d| d.starts_with(&format!("{}: ", b.name))),
            "{disagreements:?}"
        );
    }
}

#[test]
fn on_ballast_serve_the_counters_equal_the_header_and_attribute_what_it_cannot() {
    let named = [Backend::start("app-1"), Backend::start("app-2")];
    let bare = Backend::start_without_header("bare");
    let dead = dead_address();
    let mut servers: Vec<(&str, String)> = named
        .iter()
        .map(|b| (b.name.as_str(), b.addr.to_string()))
        .collect();
    servers.push(("bare", bare.addr.to_string()));
    servers.push(("gone", dead.clone()));
    // No retries and no ejection: each request is one pick, and the dead server keeps being
    // picked (its 502s are the balancer's own answers, without the header).
    let pool = format!(
        "[pools.app]\nalgorithm = \"round-robin\"\nretries = {{ attempts = 0 }}\n{}",
        server_lines(&servers, "")
    );
    let serve = Serve::start(&pool);
    let url = format!("http://{}/", serve.listener);
    let admin = serve.admin.to_string();
    let (code, report) = loadtest(&[&url, "-n", "800", "-c", "4", "--admin", &admin]);
    assert_eq!(code, 0, "{report:#}");
    let refs: Vec<&Backend> = named.iter().collect();
    counters_match(&report, &refs, &bare, "gone");
    assert!(
        report["counters"]["source"]
            .as_str()
            .unwrap()
            .contains(&admin),
        "{report:#}"
    );
    assert_eq!(report["counters"]["pool"], "app");
    // `disagreements` is a metric for --assert.
    let (code, _) = loadtest(&[
        &url,
        "-n",
        "100",
        "-c",
        "2",
        "--admin",
        &admin,
        "--assert",
        "disagreements==0",
    ]);
    assert_eq!(code, 1, "the bare and dead servers disagree");

    // `--attribute counters`: the run's figures come from the counters; nothing unattributed,
    // a warm-up run of its own first and left out of the counters.
    let before: Vec<u64> = [&named[0], &named[1], &bare]
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .collect();
    let (code, counted) = loadtest(&[
        &url,
        "-n",
        "400",
        "-c",
        "4",
        "--warmup",
        "300ms",
        "--admin",
        &admin,
        "--attribute",
        "counters",
        "--config",
        &serve.file.display().to_string(),
    ]);
    assert_eq!(code, 0, "{counted:#}");
    assert_eq!(counted["unattributed"], 0, "{counted:#}");
    assert!(
        counted["warmup_requests"].as_u64().unwrap() > 0,
        "{counted:#}"
    );
    let mut total = 0;
    for (b, was) in [&named[0], &named[1], &bare].iter().zip(before) {
        let r = row(&counted["backends"], &b.name);
        let measured = r["requests"].as_u64().unwrap();
        let served_in_all = b.served.load(Ordering::Relaxed) - was;
        assert!(
            measured > 0 && measured < served_in_all,
            "{}: {measured} counted of {served_in_all} served with the warm-up: {counted:#}",
            b.name
        );
        total += measured;
    }
    total += row(&counted["backends"], "gone")["requests"]
        .as_u64()
        .unwrap();
    assert_eq!(counted["requests"].as_u64(), Some(total), "{counted:#}");
    // Round-robin over four equal weights: a quarter each, by the counters.
    let bare_share = row(&counted["backends"], "bare")["share"].as_f64().unwrap();
    assert!((bare_share - 0.25).abs() < 0.02, "{counted:#}");
    assert!(counted["peak_ratio"].as_f64().unwrap() < 1.1, "{counted:#}");
}

#[test]
fn on_haproxy_the_stats_socket_counts_equal_the_header_and_attribute_what_it_cannot() {
    if !peer_available("haproxy") {
        return;
    }
    let named = [
        Backend::start("app-1"),
        Backend::start("app-2"),
        Backend::start("app-3"),
    ];
    let bare = Backend::start_without_header("bare");
    let dead = dead_address();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("haproxy.sock");
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // HAProxy names a server by a name without `:`; the dead one is `gone`.
    let mut cfg = format!(
        "global\n    stats socket {} level admin\n\ndefaults\n    mode http\n    retries 0\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\nfrontend web\n    bind {listener}\n    default_backend app\n\nbackend app\n    balance roundrobin\n",
        socket.display()
    );
    for b in named.iter().chain([&bare]) {
        cfg += &format!("    server {} {}\n", b.name, b.addr);
    }
    cfg += &format!("    server gone {dead}\n");
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, &cfg).unwrap();
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&file);
    let _haproxy = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    assert!(
        wait_for_port(listener, Duration::from_secs(10)),
        "haproxy did not start"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no stats socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://{listener}/");
    let socket_arg = socket.display().to_string();
    let (code, report) = loadtest(&[&url, "-n", "750", "-c", "3", "--stats-socket", &socket_arg]);
    assert_eq!(code, 0, "{report:#}");
    let refs: Vec<&Backend> = named.iter().collect();
    counters_match(&report, &refs, &bare, "gone");
    assert!(
        report["counters"]["source"]
            .as_str()
            .unwrap()
            .contains("haproxy.sock"),
        "{report:#}"
    );
}

/// A pool hashing on `X-Tenant` with three tenants: the measured shares follow the keys, far
/// from the weights' even thirds, and `simulate`'s prediction for the same configuration and
/// traffic is within a few points of them.
#[test]
fn the_prediction_of_a_hashing_pool_matches_the_measured_shares() {
    let backends: Vec<Backend> = ["app-1", "app-2", "app-3", "app-4"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let servers: Vec<(&str, String)> = backends
        .iter()
        .map(|b| (b.name.as_str(), b.addr.to_string()))
        .collect();
    // A balance factor far above any load the run makes: the ring alone decides, live and
    // in the simulation, whatever the simulated service times.
    let pool = format!(
        "[pools.app]\nalgorithm = \"consistent-hash\"\nbalance_factor = 10.0\nhash_key = {{ source = \"header\", name = \"X-Tenant\" }}\n{}",
        server_lines(&servers, "")
    );
    let serve = Serve::start(&pool);
    let url = format!("http://{}/", serve.listener);
    let config = serve.file.display().to_string();
    let (code, report) = loadtest(&[
        &url,
        "-n",
        "3000",
        "-c",
        "3",
        "--key",
        "header:X-Tenant",
        "--key-cardinality",
        "3",
        "--config",
        &config,
        "--prediction",
    ]);
    assert_eq!(code, 0, "{report:#}");
    let prediction = &report["prediction"];
    assert_eq!(prediction["pool"], "app", "{report:#}");
    assert_eq!(prediction["traffic"], "plan");
    assert!(prediction["requests"].as_u64().unwrap() >= 10_000);
    let mut furthest_from_weights = 0.0f64;
    for b in &backends {
        let r = row(&report["backends"], &b.name);
        let share = r["share"].as_f64().unwrap();
        let predicted = r["predicted_share"].as_f64().unwrap();
        let difference = r["measured_minus_predicted"].as_f64().unwrap();
        assert!((difference - (share - predicted)).abs() < 1e-9, "{r:#}");
        // 3,000 requests over three tenants: a tenant's share is within a point of its
        // expectation (one standard deviation), so four points is far outside the noise.
        assert!(
            difference.abs() < 0.04,
            "{}: measured {share}, predicted {predicted}: {report:#}",
            b.name
        );
        assert_eq!(
            r["requests"].as_u64(),
            Some(b.served.load(Ordering::Relaxed))
        );
        furthest_from_weights = furthest_from_weights.max((share - 0.25).abs());
    }
    // Three keys over four servers: at least one server takes none, so some share is 25
    // points from its weight's.
    assert!(
        furthest_from_weights > 0.2,
        "the shares look like the weights': {report:#}"
    );
}

/// Writes ~200 recorded requests over 127.0.0.2..6 with a skewed tenant header.
fn write_records(path: &Path) -> usize {
    let mut text = String::new();
    let n = 200;
    for i in 0..n {
        // Tenants k0..k6, k0 the commonest (i*i mod 7 takes some values more often).
        let tenant = (i * i + i / 3) % 7;
        text += &format!(
            "{{\"t\": {:.3}, \"client\": \"127.0.0.{}\", \"method\": \"GET\", \"path\": \"/r/{}?i={i}\", \"headers\": {{\"X-Tenant\": \"k{tenant}\"}}}}\n",
            i as f64 * 0.004,
            2 + i % 5,
            i % 3
        );
    }
    std::fs::write(path, text).unwrap();
    n
}

/// `ballast simulate FILE --replay RECORDS`: the servers' picks, by name.
fn simulated_picks(config: &Path, records: &Path) -> BTreeMap<String, u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .arg("simulate")
        .arg(config)
        .arg("--replay")
        .arg(records)
        .args(["--format", "json", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["picked"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_replay_lands_on_the_backends_as_simulate_replays_it() {
    let backends: Vec<Backend> = ["app-1", "app-2", "app-3"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let servers: Vec<(&str, String)> = backends
        .iter()
        .map(|b| (b.name.as_str(), b.addr.to_string()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.jsonl");
    let n = write_records(&records);
    // By header, then by client address: the second needs each record's source bound.
    for key in [
        "{ source = \"header\", name = \"X-Tenant\" }",
        "{ source = \"client-ip\" }",
    ] {
        let served_before: Vec<u64> = backends
            .iter()
            .map(|b| b.served.load(Ordering::Relaxed))
            .collect();
        let pool = format!(
            "[pools.app]\nalgorithm = \"consistent-hash\"\nbalance_factor = 10.0\nhash_key = {key}\n{}",
            server_lines(&servers, "")
        );
        let serve = Serve::start(&pool);
        let picks = simulated_picks(&serve.file, &records);
        let url = format!("http://{}/", serve.listener);
        let config = serve.file.display().to_string();
        let replay = records.display().to_string();
        let (code, report) = loadtest(&[
            &url,
            "--replay",
            &replay,
            "--config",
            &config,
            "--prediction",
        ]);
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report["requests"].as_u64(), Some(n as u64), "{report:#}");
        assert_eq!(report["errors"], 0, "{report:#}");
        assert_eq!(report["prediction"]["traffic"], "replay");
        // Sent at the records' times: 200 records 4 ms apart take about 0.8 s.
        let seconds = report["seconds"].as_f64().unwrap();
        assert!((0.7..2.0).contains(&seconds), "{seconds}: {report:#}");
        let mut distinct = 0;
        for (b, was) in backends.iter().zip(&served_before) {
            let r = row(&report["backends"], &b.name);
            let measured = r["requests"].as_u64().unwrap();
            assert_eq!(
                measured, picks[&b.name],
                "{key}: {report:#} against {picks:?}"
            );
            assert_eq!(measured, b.served.load(Ordering::Relaxed) - was);
            let predicted = r["predicted_share"].as_f64().unwrap();
            assert!(
                (predicted - picks[&b.name] as f64 / n as f64).abs() < 1e-9,
                "{r:#}"
            );
            assert!(r["measured_minus_predicted"].as_f64().unwrap().abs() < 1e-9);
            distinct += usize::from(measured > 0);
        }
        assert!(
            distinct >= 2,
            "{key}: one server took everything: {picks:?}"
        );
    }
    // `--rate`: the same records, evenly at 100 a second: 2 s, not their recorded 0.8 s (a
    // lower bound: sends wait for their intended times, however busy the machine).
    let serve = Serve::start(&format!(
        "[pools.app]\nalgorithm = \"round-robin\"\n{}",
        server_lines(&servers, "")
    ));
    let url = format!("http://{}/", serve.listener);
    let replay = records.display().to_string();
    let (code, paced) = loadtest(&[&url, "--replay", &replay, "--rate", "100"]);
    assert_eq!(code, 0, "{paced:#}");
    assert_eq!(paced["requests"].as_u64(), Some(n as u64));
    assert_eq!(paced["target_rate"].as_f64(), Some(100.0));
    let seconds = paced["seconds"].as_f64().unwrap();
    assert!((1.95..4.0).contains(&seconds), "{seconds}: {paced:#}");
}
