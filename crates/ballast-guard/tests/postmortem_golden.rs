//! Golden tests of `ballast postmortem`'s drafts over event logs recorded for real
//! (`tests/data/postmortem/record.py`: serve or HAProxy under watch, a fault made live by a
//! reload, then undone). Each `NAME.jsonl` has its expected Markdown in `NAME.md`; run with
//! `BLESS=1` to rewrite them after a deliberate change, and read the diff before committing.
//! The HTML is checked for its structure.

use std::path::{Path, PathBuf};

use ballast_core::event::EventKind;
use ballast_guard::postmortem::{self, Format, Range, TO_BE_WRITTEN};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/postmortem")
}

fn fixtures() -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data())
        .expect("tests/data/postmortem")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    logs.sort();
    logs
}

fn log_of(path: &Path) -> postmortem::Log {
    postmortem::parse_log(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn each_recorded_log_drafts_its_golden_markdown() {
    let logs = fixtures();
    assert!(logs.len() >= 2, "fixtures: {logs:?}");
    let bless = std::env::var_os("BLESS").is_some();
    let mut stale = Vec::new();
    for path in &logs {
        let log = log_of(path);
        assert!(
            log.bad_lines.is_empty(),
            "{}: {:?}",
            path.display(),
            log.bad_lines
        );
        let (text, _) = postmortem::draft(&log, &Range::default(), Format::Markdown)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let golden = path.with_extension("md");
        if bless {
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != text {
            let actual = path.with_extension("actual.md");
            std::fs::write(&actual, &text).unwrap();
            stale.push(format!(
                "{} differs from {} (diff them; BLESS=1 rewrites the golden file)",
                actual.display(),
                golden.display()
            ));
        }
    }
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

/// What every recorded incident's draft must hold, whatever its wording: the sections, real
/// figures where the log has them, and the team's sections marked, not invented.
#[test]
fn every_draft_has_every_section_with_figures_from_the_log() {
    for path in fixtures() {
        let log = log_of(&path);
        let (text, _) = postmortem::draft(&log, &Range::default(), Format::Markdown).unwrap();
        for title in [
            "## Summary",
            "## Impact",
            "## Detection",
            "## Trigger",
            "## Timeline (UTC)",
            "## Evidence for the root cause",
            "## What the data rules out",
            "## Resolution",
            "## Action items",
            "## Lessons learned",
        ] {
            assert!(text.contains(title), "{}: no {title}", path.display());
        }
        assert!(text.contains("Time to detect:"), "{}", path.display());
        assert!(text.contains("Time to restore:"), "{}", path.display());
        assert!(text.contains(TO_BE_WRITTEN));
        // Every event of the span is one timeline line.
        let timeline = text
            .split("## Timeline (UTC)")
            .nth(1)
            .and_then(|t| t.split("\n## ").next())
            .unwrap();
        let lines = timeline.lines().filter(|l| l.starts_with("- `")).count();
        let all = postmortem::model::incidents(&log.events, &Range::default());
        let i = &all[0];
        let in_span = log
            .events
            .iter()
            .filter(|e| e.at_ms >= i.start_ms && e.at_ms <= i.end_ms)
            .count();
        let derived = 1 + usize::from(i.restored_ms.is_some());
        assert_eq!(lines, in_span + derived, "{}", path.display());
        // A change made live by a reload is the trigger, with its diff.
        let changed = log
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ConfigChanged { .. }));
        if changed {
            assert!(text.contains("Made live by:"), "{}", path.display());
            assert!(
                text.contains("The diff (`ballast diff`):"),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn the_html_is_one_page_with_every_section_and_inline_charts() {
    for path in fixtures() {
        let log = log_of(&path);
        let (html, _) = postmortem::draft(&log, &Range::default(), Format::Html).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{}", path.display());
        for id in [
            "summary",
            "impact",
            "detection",
            "trigger",
            "timeline",
            "evidence",
            "ruled-out",
            "resolution",
            "action-items",
            "lessons",
        ] {
            assert!(
                html.contains(&format!("<section id=\"{id}\">")),
                "{}: no section {id}",
                path.display()
            );
        }
        assert!(html.contains("<style>"));
        for chart in ["chart-shares", "chart-errors"] {
            let at = html.find(chart).unwrap_or_else(|| panic!("no {chart}"));
            let svg = &html[at..];
            assert!(svg.contains("<svg") && svg.contains("<polyline"), "{chart}");
        }
        // Self-contained: no link, script or remote asset of any kind.
        for banned in ["http://", "https://", "<script", "<link", "src="] {
            assert!(!html.contains(banned), "{}: has {banned}", path.display());
        }
        assert_eq!(
            html.matches("<section").count(),
            html.matches("</section>").count()
        );
    }
}

#[test]
fn a_truncated_log_still_drafts_and_reports_its_bad_line() {
    let path = &fixtures()[0];
    let text = std::fs::read_to_string(path).unwrap();
    // Cut the log in the middle of a line, as a crash or a full disk leaves it.
    let cut = text.len() * 2 / 3;
    let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap();
    let mut truncated = text[..cut].to_string();
    truncated.push_str("\n{\"at_ms\": 1}\n");
    let log = postmortem::parse_log(&truncated);
    assert!(!log.bad_lines.is_empty());
    let lines = truncated.lines().count();
    assert!(log.bad_lines.iter().all(|b| b.line >= 1 && b.line <= lines));
    if let Ok((draft, _)) = postmortem::draft(&log, &Range::default(), Format::Markdown) {
        assert!(draft.contains("not events and were skipped"), "{draft}");
    }
}

#[test]
fn a_range_with_no_alert_is_no_incident() {
    let log = log_of(&fixtures()[0]);
    let first = log.events.iter().map(|e| e.at_ms).min().unwrap();
    let range = Range {
        from_ms: Some(first.saturating_sub(3_600_000)),
        to_ms: Some(first.saturating_sub(60_000)),
    };
    let e = postmortem::draft(&log, &range, Format::Markdown).unwrap_err();
    assert!(e.to_string().contains("no incident"), "{e}");
}
