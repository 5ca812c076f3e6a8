//! ballast-diff: what changes between two configurations, of any formats (HAProxy to ballast
//! included), and what the change will do.
//!
//! Both files are read into the one model by `ballast-import`; [`diff`] then compares the
//! models ([`compare`]: servers added, removed or changed, weights, algorithm, limits,
//! timeouts, health), judges the change with the diff-only rules of the catalogue
//! ([`rules`]: HASH-002, HASH-003), lists the findings of `ballast check` that the new file
//! introduces, and predicts the shift in distribution by running the simulator on both sides
//! under one traffic model ([`shift`]). Pure: rendering is in [`render`], I/O in the binary.
#![forbid(unsafe_code)]

pub mod compare;
pub mod render;
pub mod rules;
pub mod shift;

use std::ops::Range;

use ballast_check::Finding;
use ballast_core::traffic::Traffic;
use ballast_import::Imported;
use serde::Serialize;

pub use compare::{Change, ChangeKind};
pub use shift::PoolShift;

/// Which of the two files a finding or a change points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Old,
    New,
}

/// A finding located in one of the two files.
#[derive(Debug, Clone)]
pub struct SidedFinding {
    pub side: Side,
    pub finding: Finding,
}

/// Everything `ballast diff` reports.
#[derive(Debug)]
pub struct Diff<'a> {
    pub old: &'a Imported,
    pub new: &'a Imported,
    pub changes: Vec<Change>,
    /// Diff-only rules (HASH-002, HASH-003).
    pub findings: Vec<SidedFinding>,
    /// Findings of `ballast check` on the new file that the old file did not have. Empty when
    /// the formats differ: their rule sets do not overlap, so nothing is "introduced".
    pub introduced: Vec<Finding>,
    /// Findings of `ballast check` on the old file that the new file no longer has.
    pub resolved: Vec<Finding>,
    /// When the formats differ (an HAProxy file against its ballast translation), the new
    /// file's own findings under its rule set: shown, never counted as made by the change.
    pub other_rules: Vec<Finding>,
    pub shifts: Vec<PoolShift>,
    /// The traffic model the prediction ran.
    pub traffic: Traffic,
}

/// Compares two imported configurations. `traffic` is the model for the prediction: when
/// `None`, the new file's `[simulate]`, else the old file's, else the defaults.
pub fn diff<'a>(old: &'a Imported, new: &'a Imported, traffic: Option<Traffic>) -> Diff<'a> {
    let changes = compare::compare(&old.loaded, &new.loaded);
    let traffic = traffic
        .or_else(|| new.loaded.config.simulate.clone())
        .or_else(|| old.loaded.config.simulate.clone())
        .unwrap_or_default();
    let shifts = shift::predict(&old.loaded.config, &new.loaded.config, &changes, &traffic);
    let findings = rules::judge(old, new, &shifts);
    let (introduced, resolved, other_rules) = if old.format == new.format {
        let (i, r) = check_delta(old, new);
        (i, r, Vec::new())
    } else {
        (Vec::new(), Vec::new(), ballast_check::check_imported(new))
    };
    Diff {
        old,
        new,
        changes,
        findings,
        introduced,
        resolved,
        other_rules,
        shifts,
        traffic,
    }
}

/// Findings present on one side only. A finding is the same on both sides when its rule and
/// the text of the line it points at match (line numbers move between versions, and messages
/// quote numbers that the change may alter without creating or fixing anything), or when its
/// rule and message match (the change edited the line — `weight 1` → `weight 8` — but the
/// finding, such as a server without `check`, was there before and is still there).
fn check_delta(old: &Imported, new: &Imported) -> (Vec<Finding>, Vec<Finding>) {
    let before = ballast_check::check_imported(old);
    let after = ballast_check::check_imported(new);
    let line_key = |side: &Imported, f: &Finding| {
        let text = &side.loaded.source.text;
        let line = f.span.as_ref().map_or("", |s| {
            let start = text[..s.start.min(text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            text[start..end].trim()
        });
        (f.rule, line.to_string())
    };
    let message_key = |f: &Finding| (f.rule, f.message.clone());
    let keys = |side: &Imported, findings: &[Finding]| {
        let lines: std::collections::HashSet<_> =
            findings.iter().map(|f| line_key(side, f)).collect();
        let messages: std::collections::HashSet<_> = findings.iter().map(message_key).collect();
        (lines, messages)
    };
    let (before_lines, before_messages) = keys(old, &before);
    let (after_lines, after_messages) = keys(new, &after);
    let introduced = after
        .iter()
        .filter(|f| {
            !before_lines.contains(&line_key(new, f)) && !before_messages.contains(&message_key(f))
        })
        .cloned()
        .collect();
    let resolved = before
        .iter()
        .filter(|f| {
            !after_lines.contains(&line_key(old, f)) && !after_messages.contains(&message_key(f))
        })
        .cloned()
        .collect();
    (introduced, resolved)
}

/// 1-based line of a span's start in a file, 0 without a span.
pub(crate) fn line_of(imported: &Imported, span: &Option<Range<usize>>) -> usize {
    span.as_ref()
        .map_or(0, |s| imported.loaded.source.line_col(s.start).line)
}
