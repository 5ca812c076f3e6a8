//! Rendering findings and the rule list: human text (rustc-style snippets), the JSON contract
//! other tools read, SARIF 2.1.0 for code-scanning UIs, and Markdown for `docs/rules.md`.

use serde_json::{Value, json};

use crate::{Finding, Rule, rules};
use ballast_core::{Severity, SourceFile};

/// The findings of one file.
pub struct FileReport {
    pub source: SourceFile,
    pub findings: Vec<Finding>,
}

impl FileReport {
    fn path(&self) -> String {
        self.source.path.display().to_string()
    }
}

/// rustc-style text, then a one-line summary.
pub fn text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    let mut counts = [0usize; 3];
    for r in reports {
        for f in &r.findings {
            out.push_str(&f.to_diagnostic().render(Some(&r.source)));
            out.push('\n');
            counts[f.severity as usize] += 1;
        }
    }
    let [info, warning, error] = counts;
    let files = reports.len();
    out.push_str(&format!(
        "{} file{} checked: {error} error{}, {warning} warning{}, {info} info\n",
        files,
        if files == 1 { "" } else { "s" },
        if error == 1 { "" } else { "s" },
        if warning == 1 { "" } else { "s" },
    ));
    out
}

/// The JSON contract: `{"findings": [{"rule", "severity", "message", "file", "line", "column", "fix"}]}`,
/// lines and columns 1-based (0 when a finding has no location).
pub fn json(reports: &[FileReport]) -> Value {
    let findings: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            r.findings.iter().map(move |f| {
                let at = f.span.as_ref().map(|s| r.source.line_col(s.start));
                json!({
                    "rule": f.rule,
                    "severity": f.severity.as_str(),
                    "message": f.message,
                    "file": r.path(),
                    "line": at.map_or(0, |a| a.line),
                    "column": at.map_or(0, |a| a.column),
                    "fix": f.fix,
                })
            })
        })
        .collect();
    json!({ "findings": findings })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// SARIF 2.1.0, one run, with the whole catalogue as the driver's rules.
pub fn sarif(reports: &[FileReport]) -> Value {
    let driver_rules: Vec<Value> = rules()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": r.explain },
                "defaultConfiguration": { "level": sarif_level(r.severity) },
                "help": { "text": r.explain },
                "properties": { "category": r.category },
            })
        })
        .collect();
    let results: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            r.findings.iter().map(move |f| {
                let index = rules().position(|rule| rule.id == f.rule);
                let mut location = json!({
                    "physicalLocation": { "artifactLocation": { "uri": r.path() } }
                });
                if let Some(span) = &f.span {
                    let (start, end) = (r.source.line_col(span.start), r.source.line_col(span.end));
                    location["physicalLocation"]["region"] = json!({
                        "startLine": start.line, "startColumn": start.column,
                        "endLine": end.line, "endColumn": end.column,
                    });
                }
                json!({
                    "ruleId": f.rule,
                    "ruleIndex": index,
                    "level": sarif_level(f.severity),
                    "message": { "text": format!("{} Fix: {}", f.message, f.fix) },
                    "locations": [location],
                })
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "ballast",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": driver_rules,
            }},
            "results": results,
        }],
    })
}

/// The catalogue as text: one line per rule.
pub fn rules_text() -> String {
    let mut out = String::new();
    for r in rules() {
        out.push_str(&format!(
            "{:<9} {:<8} {:<36} {}\n",
            r.id,
            r.severity.as_str(),
            r.name,
            r.summary
        ));
    }
    out
}

/// The catalogue as JSON.
pub fn rules_json() -> Value {
    Value::Array(
        rules()
            .map(|r| {
                json!({
                    "id": r.id, "name": r.name, "severity": r.severity.as_str(),
                    "category": r.category, "applies_to": r.applies_to(),
                    "summary": r.summary, "explain": r.explain,
                })
            })
            .collect(),
    )
}

/// The catalogue as Markdown: the content of `docs/rules.md`.
pub fn rules_markdown() -> String {
    let mut out = String::from(
        "# ballast check: rules\n\n\
         Generated by `ballast check --list-rules --format markdown`; do not edit by hand.\n\n\
         Rules with ids in the 100s judge ballast's own model; rules with the catalogue's ids \
         (`SKEW-001`) judge HAProxy and nginx files as written, and `diff` rules judge a change \
         (`ballast diff OLD NEW`).\n\n\
         | id | name | severity | applies to | what it catches |\n| --- | --- | --- | --- | --- |\n",
    );
    for r in rules() {
        out.push_str(&format!(
            "| [{}](#{}) | {} | {} | {} | {} |\n",
            r.id,
            r.id.to_lowercase(),
            r.name,
            r.severity.as_str(),
            r.applies_to(),
            r.summary
        ));
    }
    for r in rules() {
        out.push_str(&format!(
            "\n## {}\n\n`{}` · {} · {} · {}\n\n{}\n",
            r.id,
            r.name,
            r.severity.as_str(),
            r.category,
            r.applies_to(),
            r.explain
        ));
    }
    out
}

/// `--explain RULE` text.
pub fn explain(r: &Rule) -> String {
    format!(
        "{} ({}) · {} · {} · applies to {}\n{}\n\n{}\n",
        r.id,
        r.name,
        r.severity.as_str(),
        r.category,
        r.applies_to(),
        r.summary,
        r.explain
    )
}
