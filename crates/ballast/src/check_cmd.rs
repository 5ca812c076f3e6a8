//! `ballast check`: load each file, run the catalogue, print findings, choose the exit code.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use std::collections::HashMap;

use ballast_check::Finding;
use ballast_check::output::{self, FileReport};
use ballast_core::{Diagnostic, Severity, SourceFile};

use crate::input::InputArgs;

/// Check configurations for misconfigurations that cause outages.
///
/// Reads ballast, HAProxy and nginx configurations (the format is detected; --as names it).
/// ballast files are judged by ballast's own rules (SKEW-101 ...); HAProxy and nginx files by
/// the misconfiguration catalogue's (SKEW-001 ... SEC-005), which read the directives as
/// written. Each finding names a rule, says what would happen in operational terms, points at
/// the line at fault and says how to fix it. Directives ballast does not model are listed at
/// info level.
///
/// Examples:
///   ballast check ballast.toml
///   ballast check /etc/haproxy/haproxy.cfg /etc/nginx/nginx.conf
///   ballast check --as haproxy --haproxy-version 1.8 old.cfg
///   ballast check --format sarif conf/*.toml > ballast.sarif
///   ballast check --deny warnings ballast.toml     # fail CI on warnings too
///   ballast check --explain LIM-102
///   ballast check --explain CONN-004                  # a catalogue rule for HAProxy/nginx files
///   ballast check --list-rules --format markdown > docs/rules.md
///
/// Exit codes: 0 when nothing reaches the denied level, 1 when something does, 2 when a file
/// cannot be read or parsed.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// Configuration files to check.
    #[arg(required_unless_present_any = ["explain", "list_rules"])]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Lowest severity that fails the check (exit 1).
    #[arg(long, value_enum, default_value_t = Deny::Errors)]
    deny: Deny,
    /// Explain a rule (by id, such as LIM-102, or by name) and exit.
    #[arg(long, value_name = "RULE")]
    explain: Option<String>,
    /// List every rule and exit (text, JSON with --format json, Markdown with --format markdown).
    #[arg(long)]
    list_rules: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Sarif,
    /// Only for --list-rules.
    Markdown,
}

/// The lowest severity that fails a command (`check`, `diff`).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Deny {
    Errors,
    Warnings,
    Info,
}

impl Deny {
    pub(crate) fn level(self) -> Severity {
        match self {
            Deny::Errors => Severity::Error,
            Deny::Warnings => Severity::Warning,
            Deny::Info => Severity::Info,
        }
    }
}

pub fn run(args: CheckArgs) -> u8 {
    let mut stdout = std::io::stdout().lock();
    if let Some(id) = &args.explain {
        return match ballast_check::find_rule(id) {
            Some(rule) => {
                let _ = write!(stdout, "{}", output::explain(rule));
                0
            }
            None => {
                eprintln!("error: no rule `{id}`; `ballast check --list-rules` lists them");
                2
            }
        };
    }
    if args.list_rules {
        let text = match args.format {
            Format::Json | Format::Sarif => format!("{:#}\n", output::rules_json()),
            Format::Markdown => output::rules_markdown(),
            Format::Text => output::rules_text(),
        };
        let _ = write!(stdout, "{text}");
        return 0;
    }
    if matches!(args.format, Format::Markdown) {
        eprintln!("error: --format markdown is only for --list-rules");
        return 2;
    }
    let mut reports = Vec::new();
    let mut unreadable = false;
    for path in &args.files {
        match args.input.load(path) {
            Ok(imported) => {
                let mut findings = ballast_check::check_imported(&imported);
                // Directives kept but not modelled are reported, never dropped in silence.
                if matches!(args.format, Format::Text) {
                    findings.extend(grouped_notes(&imported.notes, &imported.loaded.source));
                } else {
                    findings.extend(imported.notes.iter().map(note_finding));
                }
                findings.sort_by_key(|f| f.span.as_ref().map_or(0, |s| s.start));
                reports.push(FileReport {
                    source: imported.loaded.source,
                    findings,
                });
            }
            Err(e) => {
                unreadable = true;
                eprintln!("{}", e.render());
            }
        }
    }
    let rendered = match args.format {
        Format::Text => output::text(&reports),
        Format::Json => format!("{:#}\n", output::json(&reports)),
        Format::Sarif => format!("{:#}\n", output::sarif(&reports)),
        Format::Markdown => unreachable!("refused above"),
    };
    let _ = write!(stdout, "{rendered}");
    if unreadable {
        return 2;
    }
    let denied = reports
        .iter()
        .flat_map(|r| &r.findings)
        .any(|f| f.severity >= args.deny.level());
    u8::from(denied)
}

fn note_finding(n: &Diagnostic) -> Finding {
    Finding {
        rule: "IMPORT",
        severity: n.severity,
        message: n.message.clone(),
        span: n.span.clone(),
        fix: n.fix.clone().unwrap_or_default(),
    }
}

/// For people: notes about the same directive for the same reason become one finding that
/// lists every line, so 240 `use_backend` lines give one note instead of 240 snippets. JSON
/// and SARIF keep one finding per line for tools.
fn grouped_notes(notes: &[Diagnostic], source: &SourceFile) -> Vec<Finding> {
    let mut groups: Vec<((String, String), Vec<&Diagnostic>)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for n in notes {
        let Some((what, why)) = ballast_import::not_modelled_parts(&n.message) else {
            // Only not-modelled notes are grouped; anything else stands alone.
            groups.push(((String::new(), String::new()), vec![n]));
            continue;
        };
        let key = (
            what.split_whitespace().next().unwrap_or("").to_string(),
            why.to_string(),
        );
        match index.get(&key) {
            Some(&i) => groups[i].1.push(n),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![n]));
            }
        }
    }
    groups
        .into_iter()
        .map(|((keyword, why), members)| {
            if members.len() == 1 {
                return note_finding(members[0]);
            }
            let lines: Vec<String> = members
                .iter()
                .filter_map(|n| n.span.as_ref())
                .map(|s| source.line_col(s.start).line.to_string())
                .collect();
            let mut finding = note_finding(members[0]);
            finding.message = format!(
                "`{keyword}` is kept but not modelled on {} lines ({}): {why}",
                members.len(),
                lines.join(", ")
            );
            finding
        })
        .collect()
}
