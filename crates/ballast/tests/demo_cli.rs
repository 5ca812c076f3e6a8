//! `ballast demo` end to end: the healthy run serves traffic through every server and stops by
//! itself when given a duration; each scenario's story goes from a change to its alert, its
//! rollback and the postmortem draft by itself.

mod common;

use common::ballast;

#[test]
fn demo_runs_traffic_through_every_server_and_stops() {
    let out = ballast(&[
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
    ]);
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

/// What one story must show: the scenario, the critical alerts it may raise first, and a word
/// of its change the review's trigger must quote.
struct Expected {
    scenario: &'static str,
    alerts: &'static [&'static str],
    diff_word: &'static str,
}

const STORIES: &[Expected] = &[
    Expected {
        scenario: "hash",
        alerts: &["PoolSkewed"],
        diff_word: "consistent-hash",
    },
    Expected {
        scenario: "limit",
        alerts: &[
            "ServerAtConnectionLimit",
            "ServerQueueFull",
            "PoolSaturated",
        ],
        diff_word: "max connections of server",
    },
    Expected {
        scenario: "drain",
        alerts: &[
            "ServerAtConnectionLimit",
            "ServerQueueFull",
            "PoolSaturated",
        ],
        diff_word: "weight",
    },
];

/// Runs one story and returns what is wrong with it, if anything.
fn story_faults(expected: &Expected) -> Result<std::time::Duration, String> {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let dir_arg = dir.path().display().to_string();
    let out = ballast(&[
        "demo",
        "--port",
        "0",
        "--admin-port",
        "0",
        "--scenario",
        expected.scenario,
        "--dir",
        &dir_arg,
    ]);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let name = expected.scenario;
    let fail = |why: String| Err(format!("scenario {name}: {why}\n{text}"));
    if out.status.code() != Some(0) {
        return fail(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for step in [
        "dashboard  http://127.0.0.1:",
        "2. a change goes live",
        "ballast check: 0 error(s)",
        "Likely trigger: the configuration change",
        "ROLLED BACK",
        "postmortem draft:",
    ] {
        if !text.contains(step) {
            return fail(format!("no `{step}`"));
        }
    }
    if text.contains("ballast check: 0 error(s), 0 warning(s)") {
        return fail("the change should pass check with a warning".into());
    }
    let Some(alert) = text.lines().find(|l| l.contains("ALERT ")) else {
        return fail("no ALERT line".into());
    };
    if !expected
        .alerts
        .iter()
        .any(|a| alert.contains(&format!("ALERT {a} (critical)")))
    {
        return fail(format!(
            "the alert is not one of {:?}: {alert}",
            expected.alerts
        ));
    }
    // The narrative's order: the alert, then the rollback, then the review; serve's own
    // `rollback:` line is not printed ahead of the story.
    let order: Vec<Option<usize>> = ["ALERT ", "ROLLED BACK", "5. the review"]
        .iter()
        .map(|s| text.find(s))
        .collect();
    if order.windows(2).any(|w| w[0] >= w[1]) || text.contains("rollback: configuration") {
        return fail("the story is out of order".into());
    }
    // The review, from the event log, names the trigger and the rollback.
    let review = match std::fs::read_to_string(dir.path().join("postmortem.md")) {
        Ok(r) => r,
        Err(e) => return fail(format!("no postmortem.md: {e}")),
    };
    for part in [
        "## Trigger",
        expected.diff_word,
        "## Timeline",
        "rolled",
        "_To be written by the team._",
    ] {
        if !review.contains(part) {
            return fail(format!("no `{part}` in the review:\n{review}"));
        }
    }
    if review.contains("still firing") {
        return fail(format!("the rollback restored service:\n{review}"));
    }
    let html = std::fs::read_to_string(dir.path().join("postmortem.html")).unwrap_or_default();
    if !html.contains("<svg") {
        return fail("no chart in the HTML draft".into());
    }
    let events = common::json_lines(&dir.path().join("events.jsonl"));
    if !events.iter().any(|e| e["event"] == "config_rolled_back") {
        return fail("no config_rolled_back in the event log".into());
    }
    Ok(took)
}

/// Every scenario's story, at once (each takes about half a minute): the change goes live
/// with a warning from check, the guard's critical alert names it, the canary reverts it, and
/// the review is drafted from the event log.
#[test]
fn every_story_goes_from_the_change_to_its_alert_its_rollback_and_the_review() {
    let runs: Vec<_> = STORIES
        .iter()
        .map(|e| std::thread::spawn(move || story_faults(e)))
        .collect();
    let mut faults = Vec::new();
    for (run, expected) in runs.into_iter().zip(STORIES) {
        match run.join().expect("the story's thread") {
            Ok(took) => eprintln!(
                "scenario {}: {:.1} s",
                expected.scenario,
                took.as_secs_f64()
            ),
            Err(fault) => faults.push(fault),
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n\n"));
}

#[test]
fn the_scenarios_are_listed_one_line_each_and_an_unknown_one_is_refused() {
    let out = ballast(&["demo", "--scenario", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for e in STORIES {
        assert_eq!(
            text.lines().filter(|l| l.starts_with(e.scenario)).count(),
            1,
            "{text}"
        );
    }
    let out = ballast(&["demo", "--scenario", "surge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hash, limit, drain"));
}

#[test]
fn serve_refuses_a_configuration_with_errors_and_exits_2() {
    let out = ballast(&[
        "serve",
        "-c",
        "tests/fixtures/faults/sec-101-admin-exposed.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SEC-101") && err.contains("not applied"),
        "{err}"
    );
}
