//! The rule file as YAML text: groups of recording and alerting rules, written by hand so
//! every string is quoted safely (a PromQL expression or a Go template can hold `"`, `{{`, `#`
//! and `:` that a plain YAML scalar would misread).

use std::fmt::Write;
use std::time::Duration;

use super::format_duration;

/// A rule group: rules evaluated in order, so a rule may read what an earlier one recorded.
pub(crate) struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

pub(crate) enum Rule {
    Record { name: String, expr: String },
    Alert(AlertRule),
}

pub(crate) struct AlertRule {
    pub name: &'static str,
    pub expr: String,
    pub hold: Duration,
    /// `severity`, `source` and any templated labels (`pool`, `frontend`).
    pub labels: Vec<(&'static str, String)>,
    /// `summary`, `description`, `cause`, `runbook`.
    pub annotations: Vec<(&'static str, String)>,
}

/// A string as a YAML scalar: a literal block when it spans lines, else a double-quoted
/// string (JSON's escaping is valid YAML).
fn scalar(out: &mut String, indent: usize, text: &str) {
    if text.contains('\n') {
        out.push_str("|-\n");
        for line in text.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{:indent$}{line}", "");
            }
        }
    } else {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string());
        out.push_str(&quoted);
        out.push('\n');
    }
}

/// The file: a header of `#` comments, then `groups:`.
pub(crate) fn render(header: &str, groups: &[Group]) -> String {
    let mut out = String::new();
    for line in header.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
    out.push_str("groups:\n");
    for group in groups {
        out.push_str("  - name: ");
        scalar(&mut out, 6, &group.name);
        out.push_str("    rules:\n");
        for rule in &group.rules {
            match rule {
                Rule::Record { name, expr } => {
                    out.push_str("      - record: ");
                    scalar(&mut out, 10, name);
                    out.push_str("        expr: ");
                    scalar(&mut out, 10, expr);
                }
                Rule::Alert(alert) => {
                    out.push_str("      - alert: ");
                    scalar(&mut out, 10, alert.name);
                    out.push_str("        expr: ");
                    scalar(&mut out, 10, &alert.expr);
                    let _ = writeln!(out, "        for: {}", format_duration(alert.hold));
                    out.push_str("        labels:\n");
                    for (key, value) in &alert.labels {
                        let _ = write!(out, "          {key}: ");
                        scalar(&mut out, 12, value);
                    }
                    out.push_str("        annotations:\n");
                    for (key, value) in &alert.annotations {
                        let _ = write!(out, "          {key}: ");
                        scalar(&mut out, 12, value);
                    }
                }
            }
        }
    }
    out
}
