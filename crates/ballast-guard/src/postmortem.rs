//! `ballast postmortem`: the draft of an incident review from ballast's event log. The log is
//! read leniently (a bad line is reported with its number and skipped: the review of a
//! truncated log is still useful), the incident is found in it (`model`), and the review is
//! written as Markdown (`markdown`) or one self-contained HTML page with inline SVG charts
//! (`html`). Only what the log shows is written; the sections only a person can write are
//! marked [`TO_BE_WRITTEN`].

pub mod html;
pub mod markdown;
pub mod model;

use ballast_core::event::Event;

pub use model::{Incident, Range, Review};

/// The mark of a section only the team can write (customer impact in words, lessons, owners).
pub const TO_BE_WRITTEN: &str = "_To be written by the team._";

/// A line of the log that is not an event.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub error: String,
}

/// The events of a log, in file order, and the lines that were not events.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub events: Vec<Event>,
    pub bad_lines: Vec<BadLine>,
}

/// Reads an event log (JSON lines). Blank lines are skipped; any other line that is not an
/// event is reported and skipped, never fatal.
pub fn parse_log(text: &str) -> Log {
    let mut log = Log::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(event) => log.events.push(event),
            Err(e) => log.bad_lines.push(BadLine {
                line: index + 1,
                error: e.to_string(),
            }),
        }
    }
    log
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
}

/// Why no review can be drafted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DraftError {
    #[error(
        "no incident in {range}: no alert fired there ({events} events read); widen --from and \
         --to, or check that the guard wrote to this log (`ballast watch --event-log FILE`, or \
         `[global] event_log` with `[alerts]` in serve)"
    )]
    NoIncident { range: String, events: usize },
}

/// The draft of the first incident in `range`, and every incident found there (the review
/// says when there are more than one, with the range that drafts each).
pub fn draft(
    log: &Log,
    range: &Range,
    format: Format,
) -> Result<(String, Vec<Incident>), DraftError> {
    let incidents = model::incidents(&log.events, range);
    let Some(first) = incidents.first() else {
        return Err(DraftError::NoIncident {
            range: range.describe(),
            events: log.events.len(),
        });
    };
    let review = model::review(&log.events, first, &incidents, &log.bad_lines);
    let text = match format {
        Format::Markdown => markdown::render(&review),
        Format::Html => html::render(&review),
    };
    Ok((text, incidents))
}

/// Parses a time for `--from` and `--to`: RFC 3339 (`2026-12-01T10:02:00Z`), a clock time
/// today in UTC (`10:02`, `10:02:30`), or a duration ago (`30m`, `2h`), against `now_ms`.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .map_err(|_| format!("`{text}` is before 1970"));
    }
    if let Some(ms) = clock_today(text, now_ms) {
        return Ok(ms);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_ms.saturating_sub(ago.as_millis() as u64));
    }
    Err(format!(
        "`{text}` is not a time: write it as RFC 3339 (2026-12-01T10:02:00Z), a clock time \
         today in UTC (10:02 or 10:02:30), or a duration ago (30m, 2h)"
    ))
}

/// `HH:MM` or `HH:MM:SS` on the UTC day of `now_ms`.
fn clock_today(text: &str, now_ms: u64) -> Option<u64> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let number = |p: &str| p.parse::<u64>().ok();
    let (h, m) = (number(parts[0])?, number(parts[1])?);
    let s = parts.get(2).map_or(Some(0), |p| number(p))?;
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let day_start = now_ms / 86_400_000 * 86_400_000;
    Some(day_start + (h * 3600 + m * 60 + s) * 1000)
}

/// `2026-12-01 10:02:03 UTC` for Unix ms.
pub fn date_time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_reported_with_its_number_and_the_rest_is_read() {
        let text = "{\"at_ms\":1000,\"event\":\"server_up\",\"pool\":\"app\",\"server\":\"a\"}\n\
                    \n\
                    {\"at_ms\":2000,\"event\":\"server_d\n\
                    not json\n\
                    {\"at_ms\":3000,\"event\":\"server_up\",\"pool\":\"app\",\"server\":\"b\"}\n";
        let log = parse_log(text);
        assert_eq!(log.events.len(), 2);
        let lines: Vec<usize> = log.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4]);
    }

    #[test]
    fn times_are_rfc3339_clock_times_today_or_durations_ago() {
        let now = parse_time("2026-12-01T15:30:00Z", 0).unwrap();
        assert_eq!(
            parse_time("10:02", now).unwrap(),
            parse_time("2026-12-01T10:02:00Z", 0).unwrap()
        );
        assert_eq!(
            parse_time("10:02:30", now).unwrap(),
            parse_time("2026-12-01T10:02:30Z", 0).unwrap()
        );
        assert_eq!(parse_time("30m", now).unwrap(), now - 1_800_000);
        let e = parse_time("yesterday", now).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
        assert!(parse_time("25:00", now).is_err());
        assert_eq!(date_time(now), "2026-12-01 15:30:00 UTC");
    }
}
