//! `ballast postmortem`: reads an event log, finds the incident and writes the draft of its
//! review. The figures and the layout are `ballast_guard::postmortem`'s; this module parses
//! the arguments, reads the file and chooses the exit code.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};

use ballast_guard::postmortem::{self, DraftError, Range};

use crate::stdout;

/// Draft the post-incident review of an outage from ballast's event log.
///
/// The incident is found in the log: it opens with the first alert firing in the range, goes
/// back to the configuration change or reload before it, and ends when every alert has
/// resolved (or the change was rolled back), plus a minute. The draft has the SRE and
/// PagerDuty templates' sections with the log's own figures: summary, impact (duration,
/// requests failed by cause, pools and servers), detection (onset, first alert, time to
/// detect), trigger (the change and its diff, the reload that made it live), timeline, the
/// evidence (R, the hot server's share against its expected share, its saturation), what the
/// data rules out, resolution (time to restore) and action items (the `check` rules that flag
/// the change, for CI). What only people can write is marked "To be written by the team".
///
/// When the range holds several incidents, the first is drafted and the others are listed with
/// the --from that drafts each.
///
/// Times (--from, --to): RFC 3339 (2026-12-01T10:02:00Z), a clock time today in UTC (10:02,
/// 10:02:30), or a duration ago (30m, 2h).
///
/// Examples:
///   ballast postmortem --events /var/log/ballast/events.jsonl
///   ballast postmortem --events events.jsonl --from 10:00 --to 11:00 --format html -o review.html
///
/// Exit codes: 0 when a review is written, 1 when the range holds no incident, 2 when the log
/// cannot be read or an argument is wrong. Lines of the log that are not events are reported
/// with their numbers on stderr and skipped.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct PostmortemArgs {
    /// The event log (JSON lines): `[global] event_log` of serve, or `ballast watch --event-log`.
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// Look for the incident from this time on.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Look for the incident up to this time.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Markdown, or one self-contained HTML page with inline SVG charts.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Write the review to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Markdown,
    Html,
}

pub fn run(args: PostmortemArgs) -> u8 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let time = |flag: &str, text: &Option<String>| -> Result<Option<u64>, u8> {
        text.as_deref()
            .map(|t| postmortem::parse_time(t, now_ms))
            .transpose()
            .map_err(|e| {
                eprintln!("error: --{flag} {e}");
                2
            })
    };
    let range = match (time("from", &args.from), time("to", &args.to)) {
        (Ok(from_ms), Ok(to_ms)) => Range { from_ms, to_ms },
        (Err(code), _) | (_, Err(code)) => return code,
    };
    if let (Some(f), Some(t)) = (range.from_ms, range.to_ms)
        && f > t
    {
        eprintln!("error: --from is after --to: swap them");
        return 2;
    }
    let text = match std::fs::read(&args.events) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            eprintln!(
                "error: cannot read the event log {}: {e}; give the file of serve's `[global] \
                 event_log` or of `ballast watch --event-log`",
                args.events.display()
            );
            return 2;
        }
    };
    let log = postmortem::parse_log(&text);
    for bad in &log.bad_lines {
        eprintln!(
            "warning: {} line {}: not an event, skipped ({})",
            args.events.display(),
            bad.line,
            bad.error
        );
    }
    let format = match args.format {
        Format::Markdown => postmortem::Format::Markdown,
        Format::Html => postmortem::Format::Html,
    };
    let (review, incidents) = match postmortem::draft(&log, &range, format) {
        Ok(drafted) => drafted,
        Err(e @ DraftError::NoIncident { .. }) => {
            eprintln!("{}: {e}", args.events.display());
            return 1;
        }
    };
    if incidents.len() > 1 {
        eprintln!(
            "note: {} incidents in the range; this draft is of the first (it lists the others)",
            incidents.len()
        );
    }
    match &args.output {
        Some(path) => match std::fs::write(path, review) {
            Ok(()) => {
                eprintln!("review written to {}", path.display());
                0
            }
            Err(e) => {
                eprintln!(
                    "error: cannot write {}: {e}; check that its directory exists and is \
                     writable",
                    path.display()
                );
                2
            }
        },
        None => {
            if stdout::print(&review) {
                0
            } else {
                2
            }
        }
    }
}
