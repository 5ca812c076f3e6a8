//! `ballast demo` end to end: the healthy run serves traffic through every server and stops by
//! itself when given a duration; the story goes from a change to its alert, its rollback and
//! the postmortem draft by itself.

use std::process::Command;

#[test]
fn demo_runs_traffic_through_every_server_and_stops() {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args([
            "demo",
            "--quiet-run",
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

/// The story on its embedded default: the change goes live, the guard's critical alert names
/// it, the canary reverts it, and the review is drafted from the event log, in about half a
/// minute.
#[test]
fn the_story_goes_from_the_change_to_its_alert_its_rollback_and_the_review() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["demo", "--port", "0", "--admin-port", "0", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run ballast demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "dashboard  http://127.0.0.1:",
        "2. a change goes live",
        "ballast check: 0 error(s)",
        "ALERT PoolSkewed (critical)",
        "Likely trigger: the configuration change",
        "ROLLED BACK",
        "postmortem draft:",
    ] {
        assert!(text.contains(step), "no `{step}` in:\n{text}");
    }
    let order: Vec<usize> = ["ALERT PoolSkewed", "ROLLED BACK", "5. the review"]
        .iter()
        .map(|s| text.find(s).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // The review, from the event log, names the trigger and the rollback.
    let review = std::fs::read_to_string(dir.path().join("postmortem.md")).expect("the draft");
    for part in [
        "## Trigger",
        "consistent-hash",
        "## Timeline",
        "rolled",
        "_To be written by the team._",
    ] {
        assert!(
            review.contains(part),
            "no `{part}` in the review:\n{review}"
        );
    }
    assert!(
        !review.contains("still firing"),
        "the rollback restored service: {review}"
    );
    let html = std::fs::read_to_string(dir.path().join("postmortem.html")).expect("the HTML");
    assert!(html.contains("<svg"), "no chart in the HTML draft");
    // The file keeps the reverted version; the event log has the rollback with its evidence.
    let events = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    assert!(
        events.contains("\"event\":\"config_rolled_back\""),
        "{events}"
    );
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
