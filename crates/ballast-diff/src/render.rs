//! `ballast diff` output: text for people (changes grouped by scope, rule findings as
//! snippets, the predicted shift as a table) and JSON for tools.

use ballast_check::Finding;
use ballast_core::Severity;
use ballast_import::Imported;
use serde_json::{Value, json};

use crate::{ChangeKind, Diff, Side, line_of};

fn at(imported: &Imported, line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("{}:{line}", imported.loaded.source.path.display())
    }
}

fn traffic_line(d: &Diff) -> String {
    let t = &d.traffic;
    format!(
        "{:?} at {} req/s, {} clients, {} key values, seed {}",
        t.duration.0, t.arrival.rate, t.clients.count, t.key.cardinality, t.seed
    )
}

/// Counts of rule findings and introduced check findings at or above `level`.
pub fn failing(d: &Diff, level: Severity) -> usize {
    d.findings
        .iter()
        .filter(|f| f.finding.severity >= level)
        .count()
        + d.introduced.iter().filter(|f| f.severity >= level).count()
}

pub fn text(d: &Diff) -> String {
    let mut out = format!(
        "ballast diff: {} ({}) → {} ({})\n",
        d.old.loaded.source.path.display(),
        d.old.format.as_str(),
        d.new.loaded.source.path.display(),
        d.new.format.as_str()
    );
    if d.changes.is_empty() {
        out.push_str("\nno semantic change\n");
    } else {
        out.push_str(&format!("\nchanges ({}):\n", d.changes.len()));
        let mut scope = "";
        for c in &d.changes {
            if c.scope != scope {
                scope = &c.scope;
                out.push_str(&format!("  {scope}\n"));
            }
            let (mark, values) = match c.kind {
                ChangeKind::Added => ('+', c.new.clone().unwrap_or_default()),
                ChangeKind::Removed => ('-', c.old.clone().unwrap_or_default()),
                ChangeKind::Changed => (
                    '~',
                    format!(
                        "{} → {}",
                        c.old.as_deref().unwrap_or(""),
                        c.new.as_deref().unwrap_or("")
                    ),
                ),
            };
            let old_at = at(d.old, line_of(d.old, &c.old_span));
            let new_at = at(d.new, line_of(d.new, &c.new_span));
            let place = match (old_at.is_empty(), new_at.is_empty()) {
                (false, false) => format!("{old_at} → {new_at}"),
                (false, true) => old_at,
                (true, false) => new_at,
                (true, true) => String::new(),
            };
            out.push_str(&format!("    {mark} {}: {values}", c.what));
            if !place.is_empty() {
                out.push_str(&format!("   ({place})"));
            }
            out.push('\n');
        }
    }
    if !d.findings.is_empty() {
        out.push_str("\nwhat the change does wrong:\n");
        for f in &d.findings {
            let source = match f.side {
                Side::Old => &d.old.loaded.source,
                Side::New => &d.new.loaded.source,
            };
            out.push_str(&f.finding.to_diagnostic().render(Some(source)));
            out.push('\n');
        }
    }
    let loud: Vec<&Finding> = d
        .introduced
        .iter()
        .chain(&d.other_rules)
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    if !loud.is_empty() {
        if d.old.format == d.new.format {
            out.push_str("\nintroduced by the change (ballast check on the new file):\n");
        } else {
            // ballast files and HAProxy/nginx files are judged by different rule sets, so
            // nothing pairs up: the new file's findings are shown, not blamed on the change.
            out.push_str(&format!(
                "\nballast check on the new file (a {} file replaces a {} one and is judged by other rules: shown, not counted as introduced; run `ballast check` on it):\n",
                d.new.format.as_str(),
                d.old.format.as_str()
            ));
        }
        for f in loud {
            out.push_str(&f.to_diagnostic().render(Some(&d.new.loaded.source)));
            out.push('\n');
        }
    }
    let fixed: Vec<&Finding> = d
        .resolved
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    if !fixed.is_empty() {
        out.push_str("\nresolved by the change:\n");
        for f in fixed {
            out.push_str(&format!("  {}: {}\n", f.rule, f.message));
        }
    }
    if !d.shifts.is_empty() {
        out.push_str(&format!(
            "\npredicted distribution of the changed pools (same traffic on both sides: {}):\n",
            traffic_line(d)
        ));
        for s in &d.shifts {
            out.push_str(&format!("  pool {} ({} requests)", s.pool, s.requests));
            if let Some(m) = s.moved {
                out.push_str(&format!(
                    ": {:.1}% of requests go to a different server",
                    m * 100.0
                ));
            }
            out.push('\n');
            out.push_str(&format!(
                "    {:<20} {:<24} {:>7} {:>7} {:>7}\n",
                "server", "address", "old", "new", "shift"
            ));
            for v in &s.servers {
                out.push_str(&format!(
                    "    {:<20} {:<24} {:>6.1}% {:>6.1}% {:>+7.1}\n",
                    v.server,
                    v.address,
                    v.old_share * 100.0,
                    v.new_share * 100.0,
                    v.shift_points
                ));
            }
        }
    }
    let mut shown: Vec<&str> = d.findings.iter().map(|f| f.finding.rule).collect();
    shown.extend(
        d.introduced
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| f.rule),
    );
    let errors = failing(d, Severity::Error);
    let warnings = failing(d, Severity::Warning) - errors;
    let largest = d
        .shifts
        .iter()
        .map(|s| s.max_shift_points)
        .fold(0.0, f64::max);
    out.push_str(&format!(
        "\n{} change{}, {errors} error{}, {warnings} warning{} (diff rules and newly introduced findings); largest share shift {largest:.1} points\n",
        d.changes.len(),
        if d.changes.len() == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    ));
    out.push_str(&ballast_check::output::explain_pointer(&shown));
    out
}

fn finding_json(imported: &Imported, f: &Finding) -> Value {
    let at = f
        .span
        .as_ref()
        .map(|s| imported.loaded.source.line_col(s.start));
    json!({
        "rule": f.rule,
        "severity": f.severity.as_str(),
        "message": f.message,
        "file": imported.loaded.source.path.display().to_string(),
        "line": at.map_or(0, |a| a.line),
        "column": at.map_or(0, |a| a.column),
        "fix": f.fix,
    })
}

pub fn json(d: &Diff) -> Value {
    let changes: Vec<Value> = d
        .changes
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            v["old_line"] = json!(line_of(d.old, &c.old_span));
            v["new_line"] = json!(line_of(d.new, &c.new_span));
            v
        })
        .collect();
    let findings: Vec<Value> = d
        .findings
        .iter()
        .map(|f| {
            let side = match f.side {
                Side::Old => d.old,
                Side::New => d.new,
            };
            finding_json(side, &f.finding)
        })
        .collect();
    json!({
        "old": { "file": d.old.loaded.source.path.display().to_string(), "format": d.old.format.as_str() },
        "new": { "file": d.new.loaded.source.path.display().to_string(), "format": d.new.format.as_str() },
        "changes": changes,
        "findings": findings,
        "introduced": d.introduced.iter().map(|f| finding_json(d.new, f)).collect::<Vec<_>>(),
        "other_rules": d.other_rules.iter().map(|f| finding_json(d.new, f)).collect::<Vec<_>>(),
        "resolved": d.resolved.iter().map(|f| finding_json(d.old, f)).collect::<Vec<_>>(),
        "prediction": {
            "traffic": serde_json::to_value(&d.traffic).unwrap_or(Value::Null),
            "pools": serde_json::to_value(&d.shifts).unwrap_or(Value::Null),
        },
    })
}
