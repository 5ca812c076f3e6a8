//! `ballast postmortem` end to end: the real binary on a recorded event log (the fixtures of
//! `crates/ballast-guard/tests/data/postmortem`), its Markdown, its HTML file, its exit codes
//! and its report of a bad line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ballast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .output()
        .expect("run ballast")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ballast-guard/tests/data/postmortem")
        .join(name)
}

#[test]
fn the_binary_drafts_markdown_to_stdout_and_html_to_a_file() {
    let log = fixture("serve-weights.jsonl");
    let out = ballast(&["postmortem", "--events", log.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The same draft as the library's golden file: the binary adds nothing and loses nothing.
    let golden = std::fs::read_to_string(fixture("serve-weights.md")).unwrap();
    assert_eq!(text, golden);

    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("review.html");
    let out = ballast(&[
        "postmortem",
        "--events",
        log.to_str().unwrap(),
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_no_incident_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("serve-weights.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "{\"at_ms\": 12, \"event\": \"no_such_ev");
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let out = ballast(&["postmortem", "--events", broken.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("line 3: not an event"), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("line 3 ("), "{text}");

    // Long before the log: no incident.
    let out = ballast(&[
        "postmortem",
        "--events",
        broken.to_str().unwrap(),
        "--to",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no incident"));

    let out = ballast(&["postmortem", "--events", "/nonexistent/events.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ballast(&[
        "postmortem",
        "--events",
        broken.to_str().unwrap(),
        "--from",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}
