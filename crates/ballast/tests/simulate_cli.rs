//! `ballast simulate` end to end: skew is reported and fails assertions, traces name servers,
//! runs are deterministic, replays follow the algorithm request by request.

use std::process::{Command, Output};

use serde_json::Value;

fn ballast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("run ballast")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ballast-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The server named on each line of a `--trace` file, in order.
fn trace_servers(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["server"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn skewed_configuration_reports_the_skew_and_fails_its_assertion() {
    let out = ballast(&[
        "simulate",
        "-q",
        "examples/skewed-hash.toml",
        "--assert",
        "peak_ratio<1.5,rejected==0",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("SKEW:"), "{text}");
    assert!(
        text.contains("assert peak_ratio<1.5") && text.contains("FAILED"),
        "{text}"
    );
    let json = ballast(&[
        "simulate",
        "-q",
        "--format",
        "json",
        "examples/skewed-hash.toml",
    ]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["peak_ratio"].as_f64().unwrap() > 2.0);
    assert!(v["jain"].as_f64().unwrap() < 0.6);
    assert!(v["chi2_p"].as_f64().unwrap() < 1e-6);
}

#[test]
fn balanced_configuration_passes_its_assertions() {
    let out = ballast(&[
        "simulate",
        "-q",
        "examples/tcp-postgres.toml",
        "--assert",
        "peak_ratio<1.05,rejected==0,jain>0.99",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn trace_names_each_choice_and_same_seed_gives_same_run() {
    let (a, b) = (tmp("a.jsonl"), tmp("b.jsonl"));
    for path in [&a, &b] {
        let out = ballast(&[
            "simulate",
            "-q",
            "examples/sticky-sessions.toml",
            "--duration",
            "2s",
            "--trace",
            path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0));
    }
    let (ta, tb) = (
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap(),
    );
    assert_eq!(ta, tb, "same seed, same trace");
    let lines: Vec<Value> = ta
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 2000, "{} lines", lines.len());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i);
        assert!(l["server"].as_str().unwrap().starts_with("shop-"));
        assert!(l["address"].as_str().unwrap().starts_with("10.0.2."));
    }
    let c = tmp("c.jsonl");
    ballast(&[
        "simulate",
        "-q",
        "examples/sticky-sessions.toml",
        "--duration",
        "2s",
        "--seed",
        "99",
        "--trace",
        c.to_str().unwrap(),
    ]);
    assert_ne!(
        std::fs::read_to_string(&c).unwrap(),
        ta,
        "another seed, another run"
    );
}

#[test]
fn replay_follows_round_robin_request_by_request() {
    let config = tmp("rr.toml");
    std::fs::write(
        &config,
        r#"
[listeners.web]
address = "127.0.0.1:8080"
pool = "p"
[pools.p]
algorithm = "round-robin"
[pools.p.health]
[[pools.p.servers]]
name = "a"
address = "127.0.0.1:9001"
weight = 5
[[pools.p.servers]]
name = "b"
address = "127.0.0.1:9002"
[[pools.p.servers]]
name = "c"
address = "127.0.0.1:9003"
"#,
    )
    .unwrap();
    let log = tmp("log.jsonl");
    let requests: String = (0..70)
        .map(|i| {
            format!(
                "{{\"t\": {}, \"client\": \"127.0.0.{}\", \"path\": \"/r{i}\"}}\n",
                f64::from(i) * 0.01,
                i % 200 + 1
            )
        })
        .collect();
    std::fs::write(&log, requests).unwrap();
    let trace = tmp("rr-trace.jsonl");
    let out = ballast(&[
        "simulate",
        "-q",
        config.to_str().unwrap(),
        "--replay",
        log.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--assert",
        "requests==70",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let servers: String = trace_servers(&trace).concat();
    // nginx's smooth weighted round-robin for {5, 1, 1}: a a b a c a a, repeated.
    assert_eq!(servers, "aabacaa".repeat(10));
}

#[test]
fn replay_hashes_the_same_key_to_the_same_server() {
    let log = tmp("hash.jsonl");
    let requests: String = (0..300).map(|i| format!("{{\"t\": {}, \"client\": \"127.0.0.1\", \"headers\": {{}}, \"path\": \"/\", \"method\": \"GET\"}}\n", f64::from(i) * 0.5))
        .collect::<String>()
        .replace("\"headers\": {}", "\"headers\": {\"Cookie\": \"session=s1\"}");
    std::fs::write(&log, requests).unwrap();
    let trace = tmp("hash-trace.jsonl");
    let out = ballast(&[
        "simulate",
        "-q",
        "examples/sticky-sessions.toml",
        "--replay",
        log.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let servers: std::collections::HashSet<String> = trace_servers(&trace).into_iter().collect();
    assert_eq!(
        servers.len(),
        1,
        "one session, spaced out so nothing is in flight: one server, got {servers:?}"
    );
}

#[test]
fn simulate_refuses_bad_arguments_with_exit_2() {
    let bad_log = tmp("bad.jsonl");
    std::fs::write(
        &bad_log,
        "{\"t\": 0, \"client\": \"127.0.0.1\"}\nnot json\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "simulate",
                "examples/ballast.toml",
                "--replay",
                bad_log.to_str().unwrap(),
            ],
            ":2:",
        ),
        (
            vec!["simulate", "examples/ballast.toml", "--assert", "speed<3"],
            "unknown metric",
        ),
        (
            vec!["simulate", "examples/ballast.toml", "--rate", "-1"],
            "arrival rate",
        ),
        (
            vec!["simulate", "examples/ballast.toml", "--duration", "5"],
            "no unit",
        ),
        (
            vec!["simulate", "examples/ballast.toml", "--listener", "nope"],
            "no listener `nope`",
        ),
        (
            vec!["simulate", "examples/does-not-exist.toml"],
            "cannot read",
        ),
    ];
    for (args, words) in cases {
        let out = ballast(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: expected `{words}` in {err}");
    }
}

#[test]
fn a_failed_server_is_detected_and_traffic_moves_to_the_others() {
    let out = ballast(&[
        "simulate",
        "-q",
        "--format",
        "json",
        "examples/ballast.toml",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let app4 = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "app-4")
        .unwrap();
    // app-4 is down for 20 of 60 seconds: about two thirds of its expected share.
    let ratio = app4["ratio"].as_f64().unwrap();
    assert!((0.5..0.8).contains(&ratio), "app-4 ratio {ratio}");
    assert_eq!(v["rejected"], 0);
    // Requests lost are those in flight at the failure plus a few refused before detection.
    assert!(v["failed"].as_u64().unwrap() < 200, "{}", v["failed"]);
}

const HAPROXY_SOURCE: &str = "defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind :80
    default_backend app
backend app
    balance source
    server a 10.0.0.1:80
    server b 10.0.0.2:80 weight 3
    server spare 10.0.0.3:80 backup weight 5
";

/// The report's table row of server `name`, split into its columns.
fn row(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in {text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn imported_pools_show_the_algorithm_they_emulate_and_backups_apart() {
    let cfg = tmp("source.cfg");
    std::fs::write(&cfg, HAPROXY_SOURCE).unwrap();
    let out = ballast(&["simulate", "-q", "--duration", "2s", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let title = text.lines().next().unwrap();
    assert!(
        title.contains("(HAProxy balance source, hash-type map-based)"),
        "{title}"
    );
    assert!(!text.contains("consistent-hash"), "{text}");
    // Weight and tier are separate columns: `5 ... backup`, never `b5`.
    let spare = row(&text, "spare");
    assert_eq!(spare[1], "5", "{spare:?}");
    assert_eq!(spare.last().unwrap(), "backup", "{spare:?}");
    assert!(!text.contains("b5") && !text.contains(" b1 "), "{text}");
    assert_eq!(row(&text, "b").last().unwrap(), "primary");
    let json = ballast(&[
        "simulate",
        "-q",
        "--format",
        "json",
        "--duration",
        "2s",
        cfg.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["algorithm"],
        "HAProxy balance source, hash-type map-based"
    );
    let spare = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "spare")
        .unwrap();
    assert_eq!(
        (spare["weight"].as_u64(), spare["backup"].as_bool()),
        (Some(5), Some(true))
    );

    let nginx = tmp("iphash.conf");
    std::fs::write(
        &nginx,
        "events {}\nhttp {\n    upstream app {\n        ip_hash;\n        server 10.0.0.1:80;\n        server 10.0.0.2:80;\n    }\n    server {\n        listen 80;\n        location / { proxy_pass http://app; }\n    }\n}\n",
    )
    .unwrap();
    let out = ballast(&[
        "simulate",
        "-q",
        "--duration",
        "2s",
        nginx.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().unwrap().contains("(nginx ip_hash)"),
        "{text}"
    );
}

#[test]
fn a_file_that_balances_nothing_says_so_and_exits_2() {
    let stats = tmp("stats.cfg");
    std::fs::write(
        &stats,
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\nlisten stats\n    bind :8404\n    stats enable\n    stats uri /\n",
    )
    .unwrap();
    let nginx = tmp("static.conf");
    std::fs::write(
        &nginx,
        "events {}\nhttp {\n    server {\n        listen 80;\n        location / { return 200; }\n    }\n}\n",
    )
    .unwrap();
    for (path, words) in [
        (&stats, "no backend or listen section has a server"),
        (&nginx, "no `upstream`"),
    ] {
        let out = ballast(&["simulate", "-q", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("balances nothing") && err.contains(words) && err.contains("help:"),
            "{err}"
        );
        assert!(!err.contains("no listener"), "{err}");
    }
}

#[test]
fn upstreams_without_a_listener_are_simulated_and_pool_picks_one() {
    let nginx = tmp("upstreams.conf");
    std::fs::write(
        &nginx,
        "events {}\nhttp {\n    upstream app {\n        server 10.0.0.1:80;\n        server 10.0.0.2:80 weight=3;\n    }\n    upstream web {\n        least_conn;\n        server 10.0.1.1:80;\n    }\n}\n",
    )
    .unwrap();
    let p = nginx.to_str().unwrap();
    let out = ballast(&["simulate", "-q", "--duration", "2s", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(text.starts_with("pool `app` (nginx round-robin)"), "{text}");
    assert!(
        err.contains("--pool"),
        "the choice among two pools is said: {err}"
    );
    let b = row(&text, "10.0.0.2:80");
    assert_eq!(b[1], "3", "{b:?}");
    let out = ballast(&["simulate", "-q", "--duration", "2s", "--pool", "web", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("pool `web` (nginx least_conn)"), "{text}");
    let out = ballast(&["simulate", "-q", "--pool", "nope", p]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("no pool `nope`") && err.contains("`app`, `web`"),
        "{err}"
    );
}

/// Runs ballast with stdout on a pipe whose reader reads `lines` lines and then closes it.
fn with_reader_gone(args: &[&str], lines: usize) -> Output {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ballast");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{args:?}: output ended early");
    }
    drop(reader);
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_simulate_quietly() {
    // The report is written after the run, so the reader has gone before the first byte.
    let report = with_reader_gone(&["simulate", "-q", "examples/ballast.toml"], 0);
    // The trace is far larger than a pipe's buffer: writes fail mid-run.
    let trace = with_reader_gone(
        &[
            "simulate",
            "-q",
            "examples/ballast.toml",
            "--trace",
            "/dev/stdout",
        ],
        1,
    );
    // The verdict still reaches the exit code.
    let failing = with_reader_gone(
        &[
            "simulate",
            "-q",
            "examples/skewed-hash.toml",
            "--assert",
            "peak_ratio<1.5",
        ],
        0,
    );
    for (out, code) in [(report, 0), (trace, 0), (failing, 1)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.is_empty(), "quiet, but said: {err}");
        assert_eq!(out.status.code(), Some(code), "{err}");
    }
}
