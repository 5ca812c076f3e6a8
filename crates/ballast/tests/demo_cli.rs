//! `ballast demo` end to end: it starts, serves traffic through every server, and stops by
//! itself when given a duration.

use std::process::Command;

#[test]
fn demo_runs_traffic_through_every_server_and_stops() {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args([
            "demo",
            "--duration",
            "3s",
            "--rate",
            "100",
            "--port",
            "0",
            "--admin-port",
            "0",
        ])
        .output()
        .expect("run ballast demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("balancer   http://127.0.0.1:"), "{text}");
    let last: Vec<&str> = text.lines().rev().take(4).collect();
    for name in ["fast-1", "fast-2", "medium", "slow"] {
        let line = last
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name} in {text}"));
        let share: f64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(share > 0.0, "{name} served nothing: {line}");
        assert!(line.ends_with("up"), "{line}");
    }
}

#[test]
fn serve_refuses_a_configuration_with_errors_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args([
            "serve",
            "-c",
            "tests/fixtures/faults/sec-101-admin-exposed.toml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run ballast serve");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SEC-101") && err.contains("not applied"),
        "{err}"
    );
}
