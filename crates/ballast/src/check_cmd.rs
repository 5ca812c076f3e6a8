//! `ballast check`: load each file, run the catalogue, print findings, choose the exit code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use ballast_check::output::{self, FileReport};
use ballast_check::{DescriptorLimit, Finding};
use ballast_core::{Diagnostic, LoadError, Severity, SourceFile};

use crate::input::InputArgs;
use crate::stdout;

/// Check configurations for misconfigurations that cause outages.
///
/// Reads ballast, HAProxy and nginx configurations (the format is detected; --as names it).
/// ballast files are judged by ballast's own rules (SKEW-101 ...); HAProxy and nginx files by
/// the misconfiguration catalogue's (SKEW-001 ... SEC-005), which read the directives as
/// written. Each finding names a rule, says what would happen in operational terms, points at
/// the line at fault and says how to fix it; `--explain RULE` says why the rule matters.
/// Directives ballast does not model are listed at info level (IMPORT). A file that cannot
/// be loaded is reported on stderr, counted in the summary and, in JSON and SARIF, given as
/// LOAD findings (one per reason, with line and fix), and the exit code is 2.
///
/// A directory is read as the *.toml, *.cfg and *.conf files directly in it (not its
/// subdirectories); beside an nginx.conf the other *.conf files are its includes and are
/// read through it, not on their own.
///
/// Examples:
///   ballast check ballast.toml
///   ballast check /etc/haproxy/haproxy.cfg /etc/nginx/nginx.conf
///   ballast check conf/                               # every configuration in conf/
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
    /// Configuration files to check, or directories of them.
    #[arg(required_unless_present_any = ["explain", "list_rules"])]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Lowest severity that fails the check (exit 1). Errors by default: `check` judges
    /// everything in the file, old faults included, and a warning is worth reading but not
    /// always worth blocking a deployment over. `ballast diff` fails on warnings by default
    /// because it judges only what a change introduces.
    #[arg(long, value_enum, default_value_t = Deny::Errors)]
    deny: Deny,
    /// Explain a rule (by id, such as LIM-102, or by name) and exit.
    #[arg(long, value_name = "RULE")]
    explain: Option<String>,
    /// List every rule and exit (text, JSON with --format json, Markdown with --format markdown).
    #[arg(long)]
    list_rules: bool,
    /// The file-descriptor limit of the machine the file is for, which LIM-110 judges the
    /// connection caps against. Default: this machine's limit (its hard RLIMIT_NOFILE, which
    /// `serve` raises its soft limit to), so the same file can give other findings elsewhere.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    descriptor_limit: Option<u64>,
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
    if let Some(id) = &args.explain {
        return match ballast_check::find_rule(id) {
            Some(rule) => exit_after(&output::explain(rule), 0),
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
        return exit_after(&text, 0);
    }
    if matches!(args.format, Format::Markdown) {
        eprintln!("error: --format markdown is only for --list-rules");
        return 2;
    }
    let options = ballast_check::CheckOptions {
        descriptor_limit: args
            .descriptor_limit
            .map_or(DescriptorLimit::ThisMachine, DescriptorLimit::Given),
    };
    let mut reports = Vec::new();
    for arg in &args.files {
        let files = match configurations_in(arg) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("{}", e.render());
                reports.push(FileReport::unloadable(arg, &e));
                continue;
            }
        };
        for path in files {
            match args.input.load(&path) {
                Ok(imported) => {
                    let mut findings = ballast_check::check_imported_with(&imported, &options);
                    // Directives kept but not modelled are reported, never dropped in silence.
                    if matches!(args.format, Format::Text) {
                        findings.extend(grouped_notes(&imported.notes, &imported.loaded.source));
                    } else {
                        findings.extend(imported.notes.iter().map(note_finding));
                    }
                    findings.sort_by_key(|f| f.span.as_ref().map_or(0, |s| s.start));
                    reports.push(FileReport::checked(imported.loaded.source, findings));
                }
                Err(e) => {
                    // People read the reasons on stderr as it happens; tools read them as
                    // LOAD findings in the report.
                    eprintln!("{}", e.render());
                    reports.push(FileReport::unloadable(&path, &e));
                }
            }
        }
    }
    let rendered = match args.format {
        Format::Text => output::text(&reports),
        Format::Json => format!("{:#}\n", output::json(&reports)),
        Format::Sarif => format!("{:#}\n", output::sarif(&reports)),
        Format::Markdown => unreachable!("refused above"),
    };
    let code = if reports.iter().any(|r| !r.loaded) {
        2
    } else {
        let denied = reports
            .iter()
            .flat_map(|r| &r.findings)
            .any(|f| f.severity >= args.deny.level());
        u8::from(denied)
    };
    exit_after(&rendered, code)
}

/// Prints `text` and returns `code`, or 2 when the output could not be written.
fn exit_after(text: &str, code: u8) -> u8 {
    if stdout::print(text) { code } else { 2 }
}

/// The file names that say what a file is: `check DIR` reads these.
const CONFIGURATION_SUFFIXES: [&str; 3] = [".toml", ".cfg", ".conf"];

/// The files an argument names: a file is itself; a directory gives the configurations
/// directly in it (`*.toml`, `*.cfg`, `*.conf`, in name order; subdirectories are not
/// entered). Beside an `nginx.conf`, the other `*.conf` files are taken as what it includes
/// (`fastcgi.conf`, …) and read through it, as nginx does, not on their own. A directory
/// without any is refused with what to name instead.
fn configurations_in(arg: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if !arg.is_dir() {
        return Ok(vec![arg.to_path_buf()]);
    }
    let refuse = |message: String, fix: String| LoadError {
        source: None,
        diagnostics: vec![Diagnostic::error(message).with_fix(fix)],
    };
    let entries = std::fs::read_dir(arg).map_err(|e| {
        refuse(
            format!("cannot read directory {}: {e}", arg.display()),
            "check the path and its permissions".into(),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| CONFIGURATION_SUFFIXES.iter().any(|s| n.ends_with(s)))
        })
        .collect();
    if files
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == "nginx.conf"))
    {
        files.retain(|p| {
            p.file_name().is_some_and(|n| n == "nginx.conf")
                || p.extension().is_some_and(|e| e != "conf")
        });
    }
    files.sort();
    if files.is_empty() {
        return Err(refuse(
            format!(
                "{} holds no configuration ballast can read: in a directory it checks the *.toml, *.cfg and *.conf files, not those of its subdirectories",
                arg.display()
            ),
            format!(
                "name the files to check, such as `ballast check {}/*/*.conf`, or the main file (haproxy.cfg, nginx.conf), which reads its includes",
                arg.display().to_string().trim_end_matches('/')
            ),
        ));
    }
    Ok(files)
}

/// An importer's note as a finding: its own rule id (`IMPORT` unless it names another rule)
/// and its own severity (a missing include file is a warning, a directive not modelled info).
fn note_finding(n: &Diagnostic) -> Finding {
    let rule = n
        .code
        .as_deref()
        .and_then(ballast_check::find_rule)
        .map_or("IMPORT", |r| r.id);
    Finding {
        rule,
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
    type Key = (String, String, Severity);
    let mut groups: Vec<(Key, Vec<&Diagnostic>)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for n in notes {
        let Some((what, why)) = ballast_import::not_modelled_parts(&n.message) else {
            // Only not-modelled notes are grouped; anything else stands alone.
            groups.push(((String::new(), String::new(), n.severity), vec![n]));
            continue;
        };
        let key = (
            what.split_whitespace().next().unwrap_or("").to_string(),
            why.to_string(),
            n.severity,
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
        .map(|((keyword, why, _), members)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn note(severity: Severity, code: Option<&str>, message: &str, at: usize) -> Diagnostic {
        Diagnostic {
            severity,
            code: code.map(str::to_string),
            message: message.into(),
            span: Some(at..at + 1),
            label: None,
            fix: Some("fix it".into()),
        }
    }

    #[test]
    fn importer_notes_keep_their_severity_and_code() {
        let missing = note(
            Severity::Warning,
            Some("IMPORT"),
            "include conf.d/*.conf matches no file",
            0,
        );
        let f = note_finding(&missing);
        assert_eq!((f.rule, f.severity), ("IMPORT", Severity::Warning));
        let by_rule = note_finding(&note(Severity::Info, Some("SKEW-001"), "x", 0));
        assert_eq!(by_rule.rule, "SKEW-001");
        let unknown = note_finding(&note(Severity::Info, Some("NOPE-9"), "x", 0));
        assert_eq!(unknown.rule, "IMPORT");
    }

    #[test]
    fn grouping_never_merges_notes_of_different_severity() {
        let source = SourceFile::new("x.cfg", "a\nb\nc\n");
        let message = "`x y` is kept but not modelled: why";
        assert!(ballast_import::not_modelled_parts(message).is_some());
        let notes = [
            note(Severity::Warning, Some("IMPORT"), message, 0),
            note(Severity::Info, Some("IMPORT"), message, 2),
            note(Severity::Info, Some("IMPORT"), message, 4),
        ];
        let grouped = grouped_notes(&notes, &source);
        assert_eq!(grouped.len(), 2, "{grouped:?}");
        assert_eq!(grouped[0].severity, Severity::Warning);
        assert_eq!(grouped[1].severity, Severity::Info);
        assert!(
            grouped[1].message.contains("on 2 lines (2, 3)"),
            "{grouped:?}"
        );
    }
}
