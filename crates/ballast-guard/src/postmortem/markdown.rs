//! The review's text: [`sections`] lays a [`Review`] out as titled sections of paragraphs,
//! lists, tables and code (the SRE and PagerDuty templates' order), and [`render`] writes them
//! as Markdown. The HTML page renders the same sections, so the two never say different things.

use super::TO_BE_WRITTEN;
use super::model::{Resolution, Review};
use crate::change::clock;

/// One block of a section. Text may hold `code` spans, **bold** and the team's mark.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Paragraph(String),
    List(Vec<String>),
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Code(Vec<String>),
    /// Where the HTML page draws a chart (`shares` or `errors`); nothing in Markdown.
    Chart(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The anchor (`summary`, `impact`…), stable for tests and links.
    pub id: &'static str,
    pub title: &'static str,
    pub blocks: Vec<Block>,
}

/// A code span of `text`. A backtick inside (a diff line quoting `X-Tenant`) would close the
/// span early, so inner ones become single quotes.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

pub use crate::change::duration;

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.2}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The title line.
pub fn title(r: &Review) -> String {
    let what = r
        .first_alert()
        .map_or("an alert".to_string(), |a| a.alertname.clone());
    let pool = r
        .pool
        .as_ref()
        .map_or(String::new(), |p| format!(" on pool {p}"));
    format!(
        "Incident review: {what}{pool}, {}",
        super::date_time(r.incident.first_alert_ms)
    )
}

/// Notes before the summary: the log's bad lines, the other incidents of the range.
fn notes(r: &Review) -> Vec<String> {
    let mut notes = vec![
        "Status: **draft**, written by `ballast postmortem` from the event log. Every figure \
         below is from the log; the parts marked _To be written by the team._ are not in it."
            .to_string(),
    ];
    if !r.bad_lines.is_empty() {
        let shown: Vec<String> = r
            .bad_lines
            .iter()
            .take(5)
            .map(|b| format!("line {} ({})", b.line, b.error))
            .collect();
        notes.push(format!(
            "{} line(s) of the log are not events and were skipped: {}{}.",
            r.bad_lines.len(),
            shown.join("; "),
            if r.bad_lines.len() > 5 { "; …" } else { "" }
        ));
    }
    if r.incidents.len() > 1 {
        let others: Vec<String> = r
            .incidents
            .iter()
            .skip(1)
            .map(|i| {
                format!(
                    "first alert {} (`--from {}`)",
                    clock(i.first_alert_ms),
                    clock(i.start_ms)
                )
            })
            .collect();
        notes.push(format!(
            "The range holds {} incidents; this draft is of the first. The others: {}.",
            r.incidents.len(),
            others.join(", ")
        ));
    }
    notes
}

pub fn sections(r: &Review) -> Vec<Section> {
    vec![
        Section {
            id: "summary",
            title: "Summary",
            blocks: summary(r),
        },
        Section {
            id: "impact",
            title: "Impact",
            blocks: impact(r),
        },
        Section {
            id: "detection",
            title: "Detection",
            blocks: detection(r),
        },
        Section {
            id: "trigger",
            title: "Trigger",
            blocks: trigger(r),
        },
        Section {
            id: "timeline",
            title: "Timeline (UTC)",
            blocks: timeline(r),
        },
        Section {
            id: "evidence",
            title: "Evidence for the root cause",
            blocks: evidence(r),
        },
        Section {
            id: "ruled-out",
            title: "What the data rules out",
            blocks: vec![Block::List(r.ruled_out.clone())],
        },
        Section {
            id: "resolution",
            title: "Resolution",
            blocks: resolution(r),
        },
        Section {
            id: "action-items",
            title: "Action items",
            blocks: vec![
                Block::List(r.action_items.clone()),
                Block::Paragraph(format!("Owners, priorities and tickets: {TO_BE_WRITTEN}")),
            ],
        },
        Section {
            id: "lessons",
            title: "Lessons learned",
            blocks: vec![Block::List(vec![
                format!("What went well: {TO_BE_WRITTEN}"),
                format!("What went wrong: {TO_BE_WRITTEN}"),
                format!("Where we got lucky: {TO_BE_WRITTEN}"),
            ])],
        },
    ]
}

fn restored_text(r: &Review) -> String {
    match r.incident.restored_ms {
        Some(at) => clock(at),
        None => "the end of the log (still firing)".into(),
    }
}

fn summary(r: &Review) -> Vec<Block> {
    let mut text = format!(
        "From {} to {} ({}),",
        clock(r.onset.at_ms),
        restored_text(r),
        duration(r.impact.duration_ms)
    );
    match r.first_alert() {
        Some(a) if !a.summary.is_empty() => text.push_str(&format!(" {}.", a.summary)),
        Some(a) => text.push_str(&format!(" {} fired on pool {}.", a.alertname, a.pool)),
        None => text.push_str(" alerts fired."),
    }
    if let Some(t) = &r.trigger {
        let what = t
            .changes
            .first()
            .map_or(String::new(), |c| format!(" ({})", code(c)));
        text.push_str(&format!(
            " The likely trigger is the change of {} to `{}`{what}",
            clock(t.at_ms),
            if t.file.is_empty() {
                "the running process"
            } else {
                &t.file
            },
        ));
        if let Some((at, _)) = &t.live {
            text.push_str(&format!(", live since {}", clock(*at)));
        }
        text.push('.');
    }
    if let Some(a) = r.first_alert() {
        text.push_str(&format!(
            " The guard alerted {} after the onset (`{}`, {}).",
            duration(r.time_to_detect_ms()),
            a.alertname,
            a.severity
        ));
    }
    text.push_str(&match &r.resolution {
        Resolution::RolledBack { at_ms, .. } => format!(
            " ballast rolled the change back at {}, {} after the onset.",
            clock(*at_ms),
            duration(at_ms.saturating_sub(r.onset.at_ms))
        ),
        Resolution::Change { at_ms, .. } => format!(
            " The change of {} ended it; the alerts resolved at {}.",
            clock(*at_ms),
            restored_text(r)
        ),
        Resolution::Resolved { at_ms } => format!(
            " The alerts resolved at {} with no configuration change in the log.",
            clock(*at_ms)
        ),
        Resolution::Ongoing => " At the end of the log an alert is still firing.".into(),
    });
    if r.impact.snapshots > 0 {
        text.push_str(&format!(
            " {} of {} requests ({}) got a 5xx.",
            r.impact.errors_5xx,
            r.impact.requests,
            percent(r.impact.errors_5xx, r.impact.requests)
        ));
    }
    let mut blocks: Vec<Block> = notes(r).into_iter().map(Block::Paragraph).collect();
    blocks.push(Block::Paragraph(text));
    blocks.push(Block::Paragraph(format!(
        "What users saw, in words: {TO_BE_WRITTEN}"
    )));
    blocks
}

fn impact(r: &Review) -> Vec<Block> {
    let i = &r.impact;
    let mut items = vec![format!(
        "Duration: {} (onset {} to restore {}).",
        duration(i.duration_ms),
        clock(r.onset.at_ms),
        restored_text(r)
    )];
    if i.snapshots == 0 {
        items.push(
            "Requests failed: unknown: the log has no pool snapshot over the incident (the \
             guard writes one every 10 s)."
                .into(),
        );
    } else {
        items.push(format!(
            "Requests: {} in the {} pool snapshot(s) over the incident; {} got a 5xx ({}).",
            i.requests,
            i.snapshots,
            i.errors_5xx,
            percent(i.errors_5xx, i.requests)
        ));
        items.push(format!(
            "By cause: {} 5xx while the server was at its connection limit or queueing \
             (rejected or timed out in the queue); {} 5xx from servers below their limit \
             (their own errors).",
            i.errors_at_limit,
            i.errors_5xx - i.errors_at_limit
        ));
    }
    if !i.limit_events.is_empty() {
        let listed: Vec<String> = i
            .limit_events
            .iter()
            .map(|(k, n)| format!("`{k}` ×{n}"))
            .collect();
        items.push(format!("Capacity events: {}.", listed.join(", ")));
    }
    items.push(format!(
        "Pools affected: {}. Servers affected: {}.",
        list_or_none(&i.pools_affected),
        list_or_none(&i.servers_affected)
    ));
    let mut blocks = vec![Block::List(items)];
    if !i.servers.is_empty() {
        blocks.push(Block::Table {
            head: [
                "pool",
                "server",
                "requests",
                "5xx",
                "5xx at limit",
                "max in flight",
                "limit",
                "max queued",
            ]
            .map(String::from)
            .to_vec(),
            rows: i
                .servers
                .iter()
                .map(|s| {
                    vec![
                        s.pool.clone(),
                        s.server.clone(),
                        s.requests.to_string(),
                        s.errors_5xx.to_string(),
                        s.errors_at_limit.to_string(),
                        s.max_in_flight.to_string(),
                        s.limit.map_or("–".into(), |l| l.to_string()),
                        s.max_queued.to_string(),
                    ]
                })
                .collect(),
        });
    }
    blocks.push(Block::Paragraph(format!(
        "Customers, accounts and support requests affected: {TO_BE_WRITTEN}"
    )));
    blocks
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none seen".into()
    } else {
        items.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ")
    }
}

fn detection(r: &Review) -> Vec<Block> {
    let mut items = vec![format!(
        "Onset: {}: {}.",
        clock(r.onset.at_ms),
        r.onset.basis
    )];
    if let Some(a) = r.first_alert() {
        items.push(format!(
            "First alert: {} `{}` [{}]{}: {}",
            clock(a.at_ms),
            a.alertname,
            a.severity,
            a.server
                .as_ref()
                .map_or(String::new(), |s| format!(" on {}/{s}", a.pool)),
            a.summary
        ));
    }
    items.push(format!(
        "Time to detect: {} (first alert minus onset).",
        duration(r.time_to_detect_ms())
    ));
    let mut blocks = vec![Block::List(items)];
    blocks.push(Block::Table {
        head: ["fired", "resolved", "alert", "severity", "pool", "server"]
            .map(String::from)
            .to_vec(),
        rows: r
            .alerts
            .iter()
            .map(|a| {
                vec![
                    clock(a.at_ms),
                    match a.resolved_ms {
                        Some(at) => clock(at),
                        // Facts, not conditions: a change was made, a rollback done.
                        None if !super::model::symptom(&a.alertname) => "event".into(),
                        None => "–".into(),
                    },
                    a.alertname.clone(),
                    a.severity.clone(),
                    a.pool.clone(),
                    a.server.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    });
    if r.alerts
        .iter()
        .any(|a| a.resolved_ms.is_none() && !super::model::symptom(&a.alertname))
    {
        blocks.push(Block::Paragraph(
            "`ConfigChangeRisky` and `ConfigRolledBack` are events, not conditions: a change \
             was made, a rollback was done. They never resolve (\"event\" above); the incident \
             ends when its symptoms resolve."
                .into(),
        ));
    }
    if let Some(a) = r.first_alert()
        && !a.cause.is_empty()
    {
        blocks.push(Block::Paragraph(format!(
            "The first alert's cause statement: {}",
            a.cause
        )));
    }
    blocks
}

fn trigger(r: &Review) -> Vec<Block> {
    let Some(t) = &r.trigger else {
        return vec![Block::Paragraph(format!(
            "No configuration change or reload is in the log in the {} before the first alert. \
             What set it off: {TO_BE_WRITTEN}",
            duration(super::model::TRIGGER_WINDOW_MS)
        ))];
    };
    let mut items = Vec::new();
    if t.event == "reloaded" {
        items.push(format!(
            "A reload with no edit of the file in the log: {} {}.",
            clock(t.at_ms),
            t.live.as_ref().map_or("", |l| l.1.as_str())
        ));
    } else {
        // Two numbering schemes meet here: the guard's hash of the file's contents, and the
        // configuration version serve gives what it applies (its reloads and rollbacks).
        let scheme = if t.event == "config_changed" {
            "file contents hash"
        } else {
            "serve's configuration"
        };
        items.push(format!(
            "{} `{}`: `{}` changed{} to {scheme} `{}`.",
            clock(t.at_ms),
            t.event,
            t.file,
            t.previous
                .as_ref()
                .map_or(String::new(), |p| format!(" from {scheme} `{p}`")),
            if t.version.is_empty() {
                "–"
            } else {
                &t.version
            }
        ));
        if let Some((at, what)) = &t.live {
            items.push(format!("Made live by: {} {what}.", clock(*at)));
        } else {
            items.push(
                "Made live by: no reload follows it in the log before the first alert.".into(),
            );
        }
        // Only where serve applied it are there two numbers for one version.
        if t.event == "config_changed"
            && t.live
                .as_ref()
                .is_some_and(|l| l.1.starts_with("config_applied"))
        {
            items.push(
                "The file contents hash is the guard's name for a version of the file; serve \
                 names what it applies by its own configuration version (in `config_applied`, \
                 `reloaded` and `config_rolled_back`): the two do not match by design."
                    .into(),
            );
        }
        if let Some(points) = t.max_shift_points {
            items.push(format!(
                "Predicted shift (`ballast simulate` on its default traffic, evenly spread \
                 keys, not the traffic in the log): {points:.0} points{}.",
                {
                    // A pool the simulation moved nowhere says nothing (`app: `).
                    let shifts: Vec<&str> = t
                        .shifts
                        .iter()
                        .map(String::as_str)
                        .filter(|s| !s.trim_end().ends_with(':'))
                        .collect();
                    if shifts.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", shifts.join("; "))
                    }
                }
            ));
        }
    }
    if let Some((moved, points)) = &r.observed_shift {
        items.push(format!(
            "Shift the log's snapshots show (before the onset against during the incident): \
             {points:.0} points: {moved}."
        ));
    }
    let mut blocks = vec![Block::List(items)];
    if !t.changes.is_empty() {
        blocks.push(Block::Paragraph("The diff (`ballast diff`):".into()));
        blocks.push(Block::Code(t.changes.clone()));
    }
    if t.event == "config_changed" {
        blocks.push(Block::Paragraph(if t.introduced.is_empty() {
            "`ballast check` finds nothing new in the changed file.".into()
        } else {
            "What `ballast check` finds in the changed file that it did not before:".into()
        }));
        if !t.introduced.is_empty() {
            blocks.push(Block::Code(t.introduced.clone()));
        }
    }
    blocks
}

fn timeline(r: &Review) -> Vec<Block> {
    let mut lines: Vec<(u64, u8, String)> = r
        .timeline
        .iter()
        .map(|(at, text)| (*at, 1, format!("`{}` {text}", clock(*at))))
        .collect();
    // The derived moments, marked as such, among the events.
    lines.push((
        r.onset.at_ms,
        0,
        format!(
            "`{}` **onset** (derived, see Detection)",
            clock(r.onset.at_ms)
        ),
    ));
    if let Some(at) = r.incident.restored_ms {
        lines.push((
            at,
            2,
            format!("`{}` **restored** (derived, see Resolution)", clock(at)),
        ));
    }
    lines.sort_by_key(|l| (l.0, l.1));
    vec![Block::List(lines.into_iter().map(|l| l.2).collect())]
}

fn evidence(r: &Review) -> Vec<Block> {
    let Some(pool) = &r.pool else {
        return vec![Block::Paragraph(format!(
            "The alerts name no pool. {TO_BE_WRITTEN}"
        ))];
    };
    if r.series.is_empty() {
        return vec![Block::Paragraph(format!(
            "The log has no snapshot of pool `{pool}` over the incident. {TO_BE_WRITTEN}"
        ))];
    }
    let hot = r.hot_server.clone().unwrap_or_default();
    let mut blocks = vec![Block::Paragraph(format!(
        "Pool `{pool}`, snapshot by snapshot (each covers the seconds since the one before): R is \
         the weight-normalised peak ratio (1 is even, the guard warns above 1.5), and `{hot}` \
         is the server the alert names."
    ))];
    blocks.push(Block::Table {
        head: vec![
            "time".into(),
            "R".into(),
            format!("{hot} share"),
            "expected".into(),
            "in flight / limit".into(),
            "queued".into(),
            format!("{hot} 5xx"),
            "pool 5xx".into(),
        ],
        rows: r
            .series
            .iter()
            .map(|p| {
                let s = p.servers.iter().find(|s| s.server == hot);
                let pool_errors: u64 = p.servers.iter().map(|s| s.errors_5xx).sum();
                vec![
                    clock(p.at_ms),
                    p.peak_ratio.map_or("–".into(), |r| format!("{r:.2}")),
                    s.map_or("–".into(), |s| format!("{:.1}%", s.share * 100.0)),
                    s.map_or("–".into(), |s| {
                        format!("{:.1}%", s.expected_share * 100.0)
                    }),
                    s.map_or("–".into(), |s| {
                        format!(
                            "{} / {}",
                            s.in_flight,
                            s.limit.map_or("–".into(), |l| l.to_string())
                        )
                    }),
                    s.map_or("–".into(), |s| s.queued.to_string()),
                    s.map_or("–".into(), |s| s.errors_5xx.to_string()),
                    pool_errors.to_string(),
                ]
            })
            .collect(),
    });
    blocks.push(Block::Chart("shares"));
    blocks.push(Block::Chart("errors"));
    blocks.push(Block::Paragraph(format!(
        "The root cause in words (five whys): {TO_BE_WRITTEN}"
    )));
    blocks
}

fn resolution(r: &Review) -> Vec<Block> {
    let mut items = vec![match &r.resolution {
        Resolution::RolledBack {
            at_ms,
            reverted,
            restored,
            ..
        } => format!(
            "{} `config_rolled_back`: ballast reverted serve's configuration `{reverted}` and serves `{restored}` \
             again.",
            clock(*at_ms)
        ),
        Resolution::Change { at_ms, what } => {
            format!("{} the change that ended it: {what}", clock(*at_ms))
        }
        Resolution::Resolved { at_ms } => format!(
            "{} the alerts resolved with no configuration change in the log. What was done: \
             {TO_BE_WRITTEN}",
            clock(*at_ms)
        ),
        Resolution::Ongoing => {
            "Not restored: an alert is still firing at the end of the log.".to_string()
        }
    }];
    if let (Some(ttr), Some(dtr)) = (r.time_to_restore_ms, r.detect_to_restore_ms) {
        items.push(format!(
            "Time to restore: {} from the onset, {} from the first alert.",
            duration(ttr),
            duration(dtr)
        ));
    }
    let mut blocks = vec![Block::List(items)];
    if let Resolution::RolledBack {
        changes, evidence, ..
    } = &r.resolution
    {
        if !evidence.is_empty() {
            blocks.push(Block::Paragraph("The canary's evidence:".into()));
            blocks.push(Block::Code(evidence.clone()));
        }
        if !changes.is_empty() {
            blocks.push(Block::Paragraph("The diff it undid:".into()));
            blocks.push(Block::Code(changes.clone()));
        }
    }
    blocks
}

/// The review as Markdown.
pub fn render(r: &Review) -> String {
    let mut out = format!("# {}\n", title(r));
    for section in sections(r) {
        out.push_str(&format!("\n## {}\n", section.title));
        for block in &section.blocks {
            match block {
                Block::Paragraph(text) => out.push_str(&format!("\n{text}\n")),
                Block::List(items) => {
                    out.push('\n');
                    for item in items {
                        out.push_str(&format!("- {item}\n"));
                    }
                }
                Block::Table { head, rows } => {
                    out.push('\n');
                    out.push_str(&row(head));
                    out.push_str(&row(&vec!["---".to_string(); head.len()]));
                    for r in rows {
                        out.push_str(&row(r));
                    }
                }
                Block::Code(lines) => {
                    out.push_str("\n```\n");
                    for l in lines {
                        out.push_str(l);
                        out.push('\n');
                    }
                    out.push_str("```\n");
                }
                Block::Chart(_) => {}
            }
        }
    }
    out
}

fn row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", cells.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(46_000), "46 s");
        assert_eq!(duration(3_990), "4 s");
        assert_eq!(duration(1_499), "1 s");
        assert_eq!(duration(65_000), "1 min 05 s");
        assert_eq!(duration(3_720_000), "1 h 02 min");
    }
}
