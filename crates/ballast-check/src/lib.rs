//! ballast-check: the rule catalogue over ballast's configuration model.
//!
//! A [`Rule`] has a stable id (`SKEW-101`), a name, a severity, a one-line summary and a longer
//! explanation that cites where the knowledge comes from. Running the catalogue over a
//! [`Loaded`] configuration yields [`Finding`]s that name the consequence in operational terms,
//! point at the line at fault, and say how to fix it. Rule ids in the 100s are ballast's own
//! model; the catalogue ids they derive from (`../shared/research/misconfig-catalog.md`) are
//! cited in each explanation. Pure: no I/O.
#![forbid(unsafe_code)]

mod context;
pub mod output;
mod rules;

use std::ops::Range;

use ballast_core::{Diagnostic, Loaded, Severity};

pub use context::Context;
pub use rules::RULES;

/// One rule of the catalogue.
pub struct Rule {
    /// Stable identifier, used in output, `--explain` and suppressions.
    pub id: &'static str,
    /// Short kebab-case name.
    pub name: &'static str,
    pub severity: Severity,
    /// Category: skew, limits, timeouts, health, hashing, security, operations.
    pub category: &'static str,
    /// One line: what the rule catches.
    pub summary: &'static str,
    /// Why it matters, what to do, and the source of the knowledge.
    pub explain: &'static str,
    pub(crate) check: fn(&Context, &mut Sink),
}

/// One problem found in a configuration.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub span: Option<Range<usize>>,
    pub fix: String,
}

impl Finding {
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic {
            severity: self.severity,
            code: Some(self.rule.to_string()),
            message: self.message.clone(),
            span: self.span.clone(),
            label: None,
            fix: Some(self.fix.clone()),
        }
    }
}

/// Collects the findings of one rule, locating each by its model path.
pub struct Sink<'a> {
    rule: &'static Rule,
    loaded: &'a Loaded,
    findings: Vec<Finding>,
}

impl Sink<'_> {
    /// Reports a finding at the key or value found at `path` (e.g. `pools.app.servers[1]`).
    pub fn emit(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding {
            rule: self.rule.id,
            severity: self.rule.severity,
            message: message.into(),
            span: self.loaded.locate(path),
            fix: fix.into(),
        });
    }
}

/// Runs every rule; findings come sorted by position in the file, then by rule id.
pub fn check(loaded: &Loaded) -> Vec<Finding> {
    let ctx = Context::new(loaded);
    let mut all = Vec::new();
    for rule in RULES {
        let mut sink = Sink {
            rule,
            loaded,
            findings: Vec::new(),
        };
        (rule.check)(&ctx, &mut sink);
        all.append(&mut sink.findings);
    }
    all.sort_by(|a, b| {
        let pos = |f: &Finding| f.span.as_ref().map_or(0, |s| s.start);
        pos(a).cmp(&pos(b)).then(a.rule.cmp(b.rule))
    });
    all
}

/// Looks a rule up by id (case-insensitive) or by name.
pub fn find_rule(id_or_name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id_or_name) || r.name == id_or_name)
}
