//! The review's figures, computed from the event log alone: where the incident begins and ends,
//! its onset, time to detect and to restore, its impact from the pool snapshots, the trigger
//! and what ended it. Renderers (`markdown`, `html`) only lay these out.
//!
//! An incident opens with the first alert firing (a symptom: every alert but
//! `ConfigChangeRisky`, which warns of a change and is its trigger's evidence, and
//! `ConfigRolledBack`, which says the restore happened)
//! and closes when every alert that fired in it has resolved and none fires again within
//! [`MARGIN_MS`]. Its span runs from the configuration change (or reload) before the first
//! alert, within [`TRIGGER_WINDOW_MS`], to the restore plus the margin.

use std::collections::{BTreeMap, BTreeSet};

use ballast_core::event::{Event, EventKind, ServerSnapshot};

use super::BadLine;
use crate::change::clock;

/// A change this long before the first alert is its candidate trigger (the guard's own
/// attribution window).
pub const TRIGGER_WINDOW_MS: u64 = 900_000;
/// After the last resolve: an alert firing within it belongs to the same incident, and the
/// span keeps it to show the recovery.
pub const MARGIN_MS: u64 = 60_000;
/// How far before the incident snapshots count as the baseline.
pub const BASELINE_MS: u64 = 300_000;
/// A share this many times the expected one is a departure (the detector's warning R).
pub const DEPARTED_RATIO: f64 = 1.5;

/// A snapshot this long after the alert still covers the time the alert fired.
const SNAPSHOT_SLACK_MS: u64 = 10_000;

/// serve applies a file at once; the guard sees the same edit on its next look, up to a
/// round later: an apply this shortly before a `config_changed` is that change going live.
const PAIRING_MS: u64 = 5_000;

const CHANGE_ALERT: &str = "ConfigChangeRisky";

/// Alerts about the configuration itself, not symptoms: a risky change (the trigger's
/// evidence) and serve's rollback (the restore's). Neither opens an incident or holds it open.
pub(crate) fn symptom(alertname: &str) -> bool {
    alertname != CHANGE_ALERT && alertname != "ConfigRolledBack"
}

/// The part of the log to look in (Unix ms, both ends included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

impl Range {
    pub fn contains(&self, at_ms: u64) -> bool {
        self.from_ms.is_none_or(|f| at_ms >= f) && self.to_ms.is_none_or(|t| at_ms <= t)
    }

    pub fn describe(&self) -> String {
        match (self.from_ms, self.to_ms) {
            (None, None) => "the log".into(),
            (Some(f), None) => format!("the log from {}", super::date_time(f)),
            (None, Some(t)) => format!("the log up to {}", super::date_time(t)),
            (Some(f), Some(t)) => format!(
                "the log from {} to {}",
                super::date_time(f),
                super::date_time(t)
            ),
        }
    }
}

/// One incident: from its first alert to its restore.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub first_alert_ms: u64,
    /// The last resolve, or the rollback when one came before it; `None` while an alert is
    /// still firing at the end of the log.
    pub restored_ms: Option<u64>,
    /// What the review covers: the trigger (or the first alert) to the restore plus the margin.
    pub start_ms: u64,
    pub end_ms: u64,
}

/// An alert of the incident.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSeen {
    pub at_ms: u64,
    pub resolved_ms: Option<u64>,
    pub alertname: String,
    pub severity: String,
    pub pool: String,
    pub server: Option<String>,
    pub instance: String,
    pub summary: String,
    pub cause: String,
}

/// The configuration change before the first alert and what made it live.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub at_ms: u64,
    /// `config_changed` (seen by the guard) or `config_applied` (serve's own reload).
    pub event: &'static str,
    pub file: String,
    pub previous: Option<String>,
    pub version: String,
    pub changes: Vec<String>,
    pub introduced: Vec<String>,
    pub shifts: Vec<String>,
    pub max_shift_points: Option<f64>,
    /// The reload that made it live (time and what), when the log has one.
    pub live: Option<(u64, String)>,
}

/// When the incident began, and why that time.
#[derive(Debug, Clone, PartialEq)]
pub struct Onset {
    pub at_ms: u64,
    pub basis: String,
}

/// One server over the incident.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerImpact {
    pub pool: String,
    pub server: String,
    pub requests: u64,
    pub errors_5xx: u64,
    /// 5xx in windows where the server was at its limit or had requests queued.
    pub errors_at_limit: u64,
    pub max_in_flight: u64,
    pub limit: Option<u64>,
    pub max_queued: u64,
}

/// What the incident cost, from the snapshots that overlap it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impact {
    /// Onset to restore (to the end of the log while ongoing).
    pub duration_ms: u64,
    pub requests: u64,
    pub errors_5xx: u64,
    pub errors_at_limit: u64,
    pub servers: Vec<ServerImpact>,
    pub pools_affected: Vec<String>,
    pub servers_affected: Vec<String>,
    /// `saturation_began` and `all_servers_down` events in the span, by kind.
    pub limit_events: BTreeMap<String, usize>,
    /// Snapshots the figures come from (0: the log has none; the figures are unknown).
    pub snapshots: usize,
}

/// One snapshot of the affected pool, for the evidence and the charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at_ms: u64,
    /// The snapshot covers (at_ms - window_ms, at_ms].
    pub window_ms: u64,
    pub peak_ratio: Option<f64>,
    pub servers: Vec<ServerSnapshot>,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    RolledBack {
        at_ms: u64,
        reverted: String,
        restored: String,
        changes: Vec<String>,
        evidence: Vec<String>,
    },
    /// The last configuration change or reload before the alerts resolved.
    Change {
        at_ms: u64,
        what: String,
    },
    /// The alerts resolved with no change in the log.
    Resolved {
        at_ms: u64,
    },
    Ongoing,
}

/// Everything the review says.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub incident: Incident,
    /// Every incident in the range (this one first); the review names the others.
    pub incidents: Vec<Incident>,
    pub bad_lines: Vec<BadLine>,
    pub alerts: Vec<AlertSeen>,
    pub trigger: Option<Trigger>,
    pub onset: Onset,
    /// The pool and server the first alert (or the snapshots) point at.
    pub pool: Option<String>,
    pub hot_server: Option<String>,
    pub impact: Impact,
    pub series: Vec<Point>,
    pub ruled_out: Vec<String>,
    pub resolution: Resolution,
    /// Onset to restore, and first alert to restore.
    pub time_to_restore_ms: Option<u64>,
    pub detect_to_restore_ms: Option<u64>,
    pub action_items: Vec<String>,
    /// The shares the log's snapshots show before the onset and during the incident, for the
    /// servers that moved (`app: medium 25% → 100%`), and the largest move in points.
    pub observed_shift: Option<(String, f64)>,
    /// Every event of the span, time-ordered: (time, one line).
    pub timeline: Vec<(u64, String)>,
}

impl Review {
    /// First alert minus onset.
    pub fn time_to_detect_ms(&self) -> u64 {
        self.incident
            .first_alert_ms
            .saturating_sub(self.onset.at_ms)
    }

    pub fn first_alert(&self) -> Option<&AlertSeen> {
        self.alerts.iter().find(|a| symptom(&a.alertname))
    }
}

/// The events sorted by time, file order kept among equal times.
fn sorted(events: &[Event]) -> Vec<&Event> {
    let mut v: Vec<&Event> = events.iter().collect();
    v.sort_by_key(|e| e.at_ms);
    v
}

type AlertKey = (String, String, Option<String>, String, String);

/// The key of a symptom alert's event: `Some((true, key))` for a firing, `Some((false, key))`
/// for a resolve, `None` for anything else.
fn alert_key(kind: &EventKind) -> Option<(bool, AlertKey)> {
    let (EventKind::AlertFiring {
        alertname,
        pool,
        server,
        source,
        instance,
        ..
    }
    | EventKind::AlertResolved {
        alertname,
        pool,
        server,
        source,
        instance,
        ..
    }) = kind
    else {
        return None;
    };
    symptom(alertname).then(|| {
        (
            matches!(kind, EventKind::AlertFiring { .. }),
            (
                alertname.clone(),
                pool.clone(),
                server.clone(),
                source.clone(),
                instance.clone(),
            ),
        )
    })
}

/// A change of what the load balancer runs: its time and whether it is an edit (or only a
/// reload).
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ConfigChanged { .. }
            | EventKind::ConfigApplied {
                previous: Some(_),
                ..
            }
            | EventKind::Reloaded { .. }
    )
}

/// The incidents whose first alert is in `range`, oldest first.
pub fn incidents(events: &[Event], range: &Range) -> Vec<Incident> {
    let events = sorted(events);
    let last_ms = events.last().map_or(0, |e| e.at_ms);
    let mut found: Vec<(u64, Option<u64>, Option<u64>)> = Vec::new(); // first, resolved, rollback
    let mut open: BTreeSet<AlertKey> = BTreeSet::new();
    // The current incident: its first alert, when the last alert resolved, its rollback.
    let mut current: Option<(u64, Option<u64>, Option<u64>)> = None;
    for e in &events {
        let key = alert_key(&e.kind);
        if let Some((true, key)) = key {
            if !range.contains(e.at_ms) && current.is_none() {
                continue;
            }
            match &mut current {
                Some((_, quiet_since, _))
                    if quiet_since.is_none_or(|q| e.at_ms <= q + MARGIN_MS) =>
                {
                    *quiet_since = None;
                }
                _ => {
                    if let Some(done) = current.take() {
                        found.push(done);
                    }
                    if !range.contains(e.at_ms) {
                        continue;
                    }
                    current = Some((e.at_ms, None, None));
                }
            }
            open.insert(key);
        } else if let Some((false, key)) = key {
            if open.remove(&key)
                && open.is_empty()
                && let Some((_, quiet_since, _)) = &mut current
            {
                *quiet_since = Some(e.at_ms);
            }
        } else if matches!(e.kind, EventKind::ConfigRolledBack { .. })
            && let Some((_, _, rollback)) = &mut current
        {
            rollback.get_or_insert(e.at_ms);
        }
    }
    found.extend(current);
    let mut out: Vec<Incident> = Vec::new();
    for (first, quiet_since, rollback) in found {
        let restored_ms = match (quiet_since, rollback) {
            (Some(q), Some(r)) => Some(q.min(r)),
            (q, _) => q,
        };
        let previous_end = out.last().map_or(0, |i: &Incident| i.end_ms);
        let start_ms = trigger(&events, first, previous_end).map_or(first, |t| {
            t.live.as_ref().map_or(t.at_ms, |l| l.0.min(t.at_ms))
        });
        let end_ms = match (quiet_since, rollback) {
            (Some(q), r) => q.max(r.unwrap_or(0)) + MARGIN_MS,
            (None, _) => last_ms.max(first),
        };
        let end_ms = range.to_ms.map_or(end_ms, |t| end_ms.min(t).max(first));
        let start_ms = range
            .from_ms
            .map_or(start_ms, |f| start_ms.max(f).min(first));
        out.push(Incident {
            first_alert_ms: first,
            restored_ms,
            start_ms,
            end_ms,
        });
    }
    out
}

/// The review of `incident` (one of `all`).
pub fn review(
    events: &[Event],
    incident: &Incident,
    all: &[Incident],
    bad_lines: &[BadLine],
) -> Review {
    let events = sorted(events);
    let span: Vec<&Event> = events
        .iter()
        .copied()
        .filter(|e| e.at_ms >= incident.start_ms && e.at_ms <= incident.end_ms)
        .collect();
    let alerts = alerts_of(&span, incident);
    let first = alerts.iter().find(|a| symptom(&a.alertname));
    let trigger = trigger(&span, incident.first_alert_ms, incident.start_ms);
    let pool = first.map(|a| a.pool.clone()).filter(|p| !p.is_empty());
    let instance = first.map(|a| a.instance.clone()).unwrap_or_default();
    let snapshots_of = |pool: &str| -> Vec<Point> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::PoolSnapshot {
                    pool: p,
                    instance: i,
                    peak_ratio,
                    servers,
                    window_ms,
                    ..
                } if p == pool && (instance.is_empty() || *i == instance) => Some(Point {
                    at_ms: e.at_ms,
                    window_ms: *window_ms,
                    peak_ratio: *peak_ratio,
                    servers: servers.clone(),
                }),
                _ => None,
            })
            .collect()
    };
    let pool_series = pool.as_deref().map(snapshots_of).unwrap_or_default();
    let hot_server = alerts
        .iter()
        .filter(|a| symptom(&a.alertname))
        .find_map(|a| a.server.clone())
        .or_else(|| hottest(&pool_series, incident.first_alert_ms));
    let baseline: Vec<&Point> = pool_series
        .iter()
        .filter(|p| p.at_ms < incident.start_ms && incident.start_ms - p.at_ms <= BASELINE_MS)
        .collect();
    let onset = onset(
        &pool_series,
        &baseline,
        hot_server.as_deref(),
        trigger.as_ref(),
        incident,
    );
    let rollback = span.iter().find_map(|e| match &e.kind {
        EventKind::ConfigRolledBack {
            reverted,
            restored,
            changes,
            evidence,
            ..
        } if e.at_ms >= incident.first_alert_ms => Some(Resolution::RolledBack {
            at_ms: e.at_ms,
            reverted: reverted.clone(),
            restored: restored.clone(),
            changes: changes.clone(),
            evidence: evidence.clone(),
        }),
        _ => None,
    });
    let resolution = match (rollback, incident.restored_ms) {
        (Some(r), _) => r,
        (None, None) => Resolution::Ongoing,
        (None, Some(restored)) => {
            let changes: Vec<&&Event> = span
                .iter()
                .filter(|e| {
                    e.at_ms > incident.first_alert_ms && e.at_ms <= restored && is_change(&e.kind)
                })
                .collect();
            // The last change, told by its edit (with the diff) when one is close to it.
            let last = changes.last().map(|e| e.at_ms);
            let told = changes
                .iter()
                .rev()
                .filter(|e| last.is_some_and(|l| l - e.at_ms <= PAIRING_MS))
                .find(|e| !matches!(e.kind, EventKind::Reloaded { .. }))
                .or(changes.last());
            told.map_or(Resolution::Resolved { at_ms: restored }, |e| {
                Resolution::Change {
                    at_ms: e.at_ms,
                    what: describe(&e.kind),
                }
            })
        }
    };
    let end_of_log = events.last().map_or(incident.end_ms, |e| e.at_ms);
    let restored = incident.restored_ms;
    let impact = impact(
        &events,
        &span,
        &alerts,
        onset.at_ms,
        restored.unwrap_or(end_of_log),
    );
    let series = pool_series
        .iter()
        .filter(|p| p.at_ms >= incident.start_ms && p.at_ms <= incident.end_ms)
        .cloned()
        .collect();
    let ruled_out = ruled_out(
        &events,
        &alerts,
        &pool_series,
        &baseline,
        hot_server.as_deref(),
        &onset,
        restored.unwrap_or(end_of_log),
        trigger.as_ref(),
        &resolution,
        incident,
    );
    let action_items = action_items(trigger.as_ref());
    let observed_shift = pool.as_deref().and_then(|pool| {
        let during = during_points(&pool_series, onset.at_ms, restored.unwrap_or(end_of_log));
        observed_shift(pool, &baseline, &during)
    });
    let timeline = span.iter().map(|e| (e.at_ms, describe(&e.kind))).collect();
    Review {
        incident: incident.clone(),
        incidents: all.to_vec(),
        bad_lines: bad_lines.to_vec(),
        time_to_restore_ms: restored.map(|r| r.saturating_sub(onset.at_ms)),
        detect_to_restore_ms: restored.map(|r| r.saturating_sub(incident.first_alert_ms)),
        alerts,
        trigger,
        onset,
        pool,
        hot_server,
        impact,
        series,
        ruled_out,
        resolution,
        action_items,
        observed_shift,
        timeline,
    }
}

/// A snapshot this far past the onset or the restore still counts as within them: the guard
/// cuts its windows at the first sample after a reload, up to a round later.
const CUT_SLACK_MS: u64 = 1_500;

/// The snapshots of the incident: those that lie within onset..restore (the guard cuts its
/// windows at reloads, so a rolled-back change has one of its own), else every one whose
/// window overlaps it (a log written without cuts).
fn during_points(series: &[Point], onset_ms: u64, restored_ms: u64) -> Vec<&Point> {
    let restored_ms = restored_ms.max(onset_ms + 1);
    let window = |p: &Point| if p.window_ms > 0 { p.window_ms } else { 10_000 };
    let overlapping: Vec<&Point> = series
        .iter()
        .filter(|p| p.at_ms > onset_ms && p.at_ms.saturating_sub(window(p)) < restored_ms)
        .collect();
    let within: Vec<&Point> = overlapping
        .iter()
        .copied()
        .filter(|p| {
            p.at_ms.saturating_sub(window(p)) + CUT_SLACK_MS >= onset_ms
                && p.at_ms <= restored_ms + CUT_SLACK_MS
        })
        .collect();
    let answered = |ps: &[&Point]| ps.iter().flat_map(|p| &p.servers).any(|s| s.requests > 0);
    if answered(&within) {
        within
    } else {
        overlapping
    }
}

/// Each server's share of the requests over `points`.
fn shares_over(points: &[&Point]) -> BTreeMap<String, f64> {
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for s in points.iter().flat_map(|p| &p.servers) {
        *requests.entry(s.server.clone()).or_default() += s.requests;
    }
    let total: u64 = requests.values().sum();
    requests
        .into_iter()
        .map(|(server, n)| (server, n as f64 / total.max(1) as f64))
        .collect()
}

/// What the traffic in the log did: the shares before against the shares during, the servers
/// that moved by 2 points or more.
fn observed_shift(pool: &str, before: &[&Point], during: &[&Point]) -> Option<(String, f64)> {
    let has_requests = |ps: &[&Point]| ps.iter().flat_map(|p| &p.servers).any(|s| s.requests > 0);
    if !has_requests(before) || !has_requests(during) {
        return None;
    }
    let (b, d) = (shares_over(before), shares_over(during));
    let mut moved = Vec::new();
    let mut max_points: f64 = 0.0;
    for (server, now) in &d {
        let then = b.get(server).copied().unwrap_or(0.0);
        let points = (now - then).abs() * 100.0;
        max_points = max_points.max(points);
        if points >= 2.0 {
            moved.push(format!(
                "{server} {:.0}% → {:.0}%",
                then * 100.0,
                now * 100.0
            ));
        }
    }
    if moved.is_empty() {
        moved.push("no server's share moved by 2 points or more".into());
    }
    Some((format!("{pool}: {}", moved.join(", ")), max_points))
}

/// The incident's alerts (and the change alerts of its span), with their resolves.
fn alerts_of(span: &[&Event], incident: &Incident) -> Vec<AlertSeen> {
    let mut alerts: Vec<AlertSeen> = Vec::new();
    for e in span {
        match &e.kind {
            EventKind::AlertFiring {
                alertname,
                severity,
                pool,
                server,
                instance,
                summary,
                cause,
                ..
            } => alerts.push(AlertSeen {
                at_ms: e.at_ms,
                resolved_ms: None,
                alertname: alertname.clone(),
                severity: severity.clone(),
                pool: pool.clone(),
                server: server.clone(),
                instance: instance.clone(),
                summary: summary.clone(),
                cause: cause.clone(),
            }),
            EventKind::AlertResolved {
                alertname,
                pool,
                server,
                instance,
                fired_at_ms,
                ..
            } => {
                if let Some(a) = alerts.iter_mut().find(|a| {
                    a.resolved_ms.is_none()
                        && a.alertname == *alertname
                        && a.pool == *pool
                        && a.server == *server
                        && a.instance == *instance
                        && a.at_ms == *fired_at_ms
                }) {
                    a.resolved_ms = Some(e.at_ms);
                }
            }
            _ => {}
        }
    }
    // The incident's symptoms begin at its first alert; earlier change alerts are evidence.
    alerts.retain(|a| !symptom(&a.alertname) || a.at_ms >= incident.first_alert_ms);
    alerts
}

/// The latest configuration edit at or before the first alert (and within the attribution
/// window, not before `not_before`), and the reload that made it live.
fn trigger(events: &[&Event], first_alert_ms: u64, not_before: u64) -> Option<Trigger> {
    // A rollback's own apply and reload (the restored version, from the rollback on) undo a
    // change; they can share the first alert's millisecond but are never its trigger.
    let rollbacks: Vec<(u64, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConfigRolledBack { restored, .. } => Some((e.at_ms, restored.as_str())),
            _ => None,
        })
        .collect();
    let restoring = |e: &Event| {
        let version = match &e.kind {
            EventKind::ConfigApplied { version, .. } => version.as_str(),
            EventKind::Reloaded { generation, .. } => generation.as_str(),
            _ => return false,
        };
        rollbacks
            .iter()
            .any(|(at, restored)| e.at_ms >= *at && version == *restored)
    };
    let before: Vec<&&Event> = events
        .iter()
        .filter(|e| {
            e.at_ms <= first_alert_ms
                && e.at_ms >= not_before
                && first_alert_ms - e.at_ms <= TRIGGER_WINDOW_MS
                && !restoring(e)
        })
        .collect();
    let edit = before.iter().rev().find(|e| {
        matches!(
            e.kind,
            EventKind::ConfigChanged { .. }
                | EventKind::ConfigApplied {
                    previous: Some(_),
                    ..
                }
        )
    });
    let Some(edit) = edit else {
        // A reload alone (a restart, a runtime change) is the trigger when nothing was edited.
        let reload = before
            .iter()
            .rev()
            .find(|e| matches!(e.kind, EventKind::Reloaded { .. }))?;
        return Some(Trigger {
            at_ms: reload.at_ms,
            event: "reloaded",
            file: String::new(),
            previous: None,
            version: String::new(),
            changes: Vec::new(),
            introduced: Vec::new(),
            shifts: Vec::new(),
            max_shift_points: None,
            live: Some((reload.at_ms, describe(&reload.kind))),
        });
    };
    let mut trigger = match &edit.kind {
        EventKind::ConfigChanged {
            file,
            previous,
            version,
            changes,
            introduced,
            shifts,
            max_shift_points,
            ..
        } => Trigger {
            at_ms: edit.at_ms,
            event: "config_changed",
            file: file.clone(),
            previous: Some(previous.clone()),
            version: version.clone(),
            changes: changes.clone(),
            introduced: introduced.clone(),
            shifts: shifts.clone(),
            max_shift_points: Some(*max_shift_points),
            live: None,
        },
        EventKind::ConfigApplied {
            version,
            previous,
            file,
            changes,
        } => Trigger {
            at_ms: edit.at_ms,
            event: "config_applied",
            file: file.clone(),
            previous: previous.clone(),
            version: version.clone(),
            changes: changes.clone(),
            introduced: Vec::new(),
            shifts: Vec::new(),
            max_shift_points: None,
            // serve applies what it reloads: the apply is the reload.
            live: Some((edit.at_ms, format!("serve applied configuration {version}"))),
        },
        _ => return None,
    };
    if trigger.event == "config_changed" {
        // What made it live: the first reload after it, or serve's own apply of the same
        // file a moment before the guard's next look at it saw the edit.
        let after = before.iter().find(|e| {
            e.at_ms >= trigger.at_ms
                && matches!(
                    e.kind,
                    EventKind::Reloaded { .. } | EventKind::ConfigApplied { .. }
                )
        });
        let applied_just_before = before.iter().rev().find(|e| {
            e.at_ms < trigger.at_ms
                && trigger.at_ms - e.at_ms <= PAIRING_MS
                && matches!(e.kind, EventKind::ConfigApplied { .. })
        });
        if let Some(live) = applied_just_before.or(after) {
            trigger.live = Some((live.at_ms, describe(&live.kind)));
            // serve's own diff is the same change, told by the process that applied it.
            if trigger.changes.is_empty()
                && let EventKind::ConfigApplied { changes, .. } = &live.kind
            {
                trigger.changes = changes.clone();
            }
        }
    }
    Some(trigger)
}

/// The server with the largest share against its expected one in the first snapshot at or
/// after `at_ms`.
fn hottest(series: &[Point], at_ms: u64) -> Option<String> {
    let p = series.iter().find(|p| p.at_ms >= at_ms)?;
    p.servers
        .iter()
        .filter(|s| s.requests > 0)
        .max_by(|a, b| {
            excess(a)
                .partial_cmp(&excess(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|s| s.server.clone())
}

fn excess(s: &ServerSnapshot) -> f64 {
    if s.expected_share > 0.0 {
        s.share / s.expected_share
    } else if s.share > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

fn error_ratio(s: &ServerSnapshot) -> f64 {
    if s.requests == 0 {
        if s.errors_5xx > 0 { 1.0 } else { 0.0 }
    } else {
        s.errors_5xx as f64 / s.requests as f64
    }
}

fn at_limit(s: &ServerSnapshot) -> bool {
    s.queued > 0 || s.limit.is_some_and(|l| l > 0 && s.in_flight >= l)
}

/// Why a snapshot's server departed from what it should be, if it did.
pub fn departure(s: &ServerSnapshot, baseline_error_ratio: f64) -> Option<String> {
    if s.expected_share > 0.0 && s.share > DEPARTED_RATIO * s.expected_share {
        return Some(format!(
            "{} took {:.0}% against its expected {:.0}%",
            s.server,
            s.share * 100.0,
            s.expected_share * 100.0
        ));
    }
    if s.expected_share == 0.0 && s.share >= 0.05 && s.state == "up" {
        return Some(format!(
            "{} took {:.0}% with no expected share",
            s.server,
            s.share * 100.0
        ));
    }
    let ratio = error_ratio(s);
    if s.errors_5xx > 0 && ratio > 0.01_f64.max(2.0 * baseline_error_ratio) {
        return Some(format!(
            "{} answered {} 5xx ({:.1}% of its requests)",
            s.server,
            s.errors_5xx,
            ratio * 100.0
        ));
    }
    if at_limit(s) {
        return Some(format!(
            "{} was at its limit ({} in flight, limit {}, {} queued)",
            s.server,
            s.in_flight,
            s.limit.map_or("none".into(), |l| l.to_string()),
            s.queued
        ));
    }
    None
}

fn baseline_error_ratio(baseline: &[&Point], server: &str) -> f64 {
    let (errors, requests) = baseline
        .iter()
        .flat_map(|p| p.servers.iter().filter(|s| s.server == server))
        .fold((0u64, 0u64), |(e, r), s| (e + s.errors_5xx, r + s.requests));
    if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    }
}

/// The onset: the change going live, or the start of the first snapshot window in which the
/// hot server departed, whichever is later (a departure seen in a window that began after
/// the reload began in that window; one whose window holds the reload began at the reload).
fn onset(
    series: &[Point],
    baseline: &[&Point],
    hot: Option<&str>,
    trigger: Option<&Trigger>,
    incident: &Incident,
) -> Onset {
    let live = trigger.and_then(|t| t.live.as_ref());
    let first_alert = incident.first_alert_ms;
    // The run of departing snapshots that leads up to the alert: from the snapshot whose
    // window holds the alert back to the first of the run (not before the trigger's edit).
    let departed = hot.and_then(|hot| {
        let base = baseline_error_ratio(baseline, hot);
        let why = |p: &Point| {
            let s = p.servers.iter().find(|s| s.server == hot)?;
            departure(s, base)
        };
        let not_before = trigger.map_or(0, |t| {
            t.at_ms.min(t.live.as_ref().map_or(u64::MAX, |l| l.0))
        });
        let mut j = series
            .iter()
            .rposition(|p| p.at_ms <= first_alert + SNAPSHOT_SLACK_MS)?;
        while why(&series[j]).is_none() {
            if j == 0 || series[j].at_ms + SNAPSHOT_SLACK_MS < first_alert {
                return None;
            }
            j -= 1;
        }
        while j > 0 && series[j - 1].at_ms > not_before && why(&series[j - 1]).is_some() {
            j -= 1;
        }
        let p = &series[j];
        why(p).map(|w| (p, w))
    });
    let window_start = |p: &Point, all: &[Point]| -> u64 {
        // The snapshot's window starts where the one before it ended.
        all.iter()
            .rev()
            .find(|q| q.at_ms < p.at_ms)
            .map_or(p.at_ms.saturating_sub(10_000), |q| q.at_ms)
    };
    let onset = match (live, departed) {
        (Some((at, what)), Some((p, why))) => {
            let start = window_start(p, series);
            if start > *at && start < first_alert {
                Onset {
                    at_ms: start,
                    basis: format!(
                        "the first snapshot that departed from the expected figures ({}: {why}) \
                         covers the time from {}; the change was live since {} ({what})",
                        clock(p.at_ms),
                        clock(start),
                        clock(*at)
                    ),
                }
            } else {
                Onset {
                    at_ms: *at,
                    basis: format!(
                        "the change went live ({what}); the snapshot of {} shows the departure: \
                         {why}",
                        clock(p.at_ms)
                    ),
                }
            }
        }
        (Some((at, what)), None) => Onset {
            at_ms: *at,
            basis: format!(
                "the change went live ({what}); no snapshot of the hot server departs from its \
                 expected figures before the alert"
            ),
        },
        (None, Some((p, why))) => {
            let start = window_start(p, series);
            Onset {
                at_ms: start.min(first_alert),
                basis: format!(
                    "the first snapshot that departed from the expected figures ({}: {why}) \
                     covers the time from {}",
                    clock(p.at_ms),
                    clock(start)
                ),
            }
        }
        (None, None) => Onset {
            at_ms: first_alert,
            basis: "no change and no snapshot before the first alert show an earlier start: the \
                    onset is taken to be the first alert"
                .into(),
        },
    };
    Onset {
        at_ms: onset.at_ms.min(first_alert),
        ..onset
    }
}

/// The figures of every snapshot whose window overlaps onset..restored.
fn impact(
    events: &[&Event],
    span: &[&Event],
    alerts: &[AlertSeen],
    onset_ms: u64,
    restored_ms: u64,
) -> Impact {
    let mut servers: BTreeMap<(String, String), ServerImpact> = BTreeMap::new();
    let mut snapshots = 0;
    for e in events {
        let EventKind::PoolSnapshot {
            pool,
            window_ms,
            servers: figures,
            ..
        } = &e.kind
        else {
            continue;
        };
        // A window (at - window, at] overlapping (onset, restored].
        if e.at_ms <= onset_ms || e.at_ms.saturating_sub(*window_ms) >= restored_ms {
            continue;
        }
        snapshots += 1;
        for s in figures {
            let i = servers
                .entry((pool.clone(), s.server.clone()))
                .or_insert_with(|| ServerImpact {
                    pool: pool.clone(),
                    server: s.server.clone(),
                    ..ServerImpact::default()
                });
            i.requests += s.requests;
            i.errors_5xx += s.errors_5xx;
            if at_limit(s) {
                i.errors_at_limit += s.errors_5xx;
            }
            i.max_in_flight = i.max_in_flight.max(s.in_flight);
            i.max_queued = i.max_queued.max(s.queued);
            i.limit = s.limit.or(i.limit);
        }
    }
    let servers: Vec<ServerImpact> = servers.into_values().collect();
    let mut pools: BTreeSet<String> = BTreeSet::new();
    let mut affected: BTreeSet<String> = BTreeSet::new();
    for a in alerts.iter().filter(|a| symptom(&a.alertname)) {
        if !a.pool.is_empty() {
            pools.insert(a.pool.clone());
        }
        if let Some(s) = &a.server {
            affected.insert(format!("{}/{s}", a.pool));
        }
    }
    for s in servers.iter().filter(|s| s.errors_5xx > 0) {
        pools.insert(s.pool.clone());
        affected.insert(format!("{}/{}", s.pool, s.server));
    }
    let mut limit_events = BTreeMap::new();
    for e in span {
        let kind = match e.kind {
            EventKind::SaturationBegan { .. } => "saturation_began",
            EventKind::AllServersDown { .. } => "all_servers_down",
            EventKind::ServerDown { .. } => "server_down",
            EventKind::ServerEjected { .. } => "server_ejected",
            _ => continue,
        };
        *limit_events.entry(kind.to_string()).or_insert(0) += 1;
    }
    Impact {
        duration_ms: restored_ms.saturating_sub(onset_ms),
        requests: servers.iter().map(|s| s.requests).sum(),
        errors_5xx: servers.iter().map(|s| s.errors_5xx).sum(),
        errors_at_limit: servers.iter().map(|s| s.errors_at_limit).sum(),
        servers,
        pools_affected: pools.into_iter().collect(),
        servers_affected: affected.into_iter().collect(),
        limit_events,
        snapshots,
    }
}

/// The pool's requests per second over points.
fn rate(points: &[&Point], window: impl Fn(&Point) -> u64) -> Option<f64> {
    let requests: u64 = points
        .iter()
        .flat_map(|p| &p.servers)
        .map(|s| s.requests)
        .sum();
    let ms: u64 = points.iter().map(|p| window(p)).sum();
    (ms > 0).then(|| requests as f64 * 1000.0 / ms as f64)
}

/// Mean latency of the servers other than `hot` over points (request-weighted).
fn others_latency(points: &[&Point], hot: &str) -> Option<f64> {
    let (sum, n) = points
        .iter()
        .flat_map(|p| &p.servers)
        .filter(|s| s.server != hot)
        // A server that answered nothing in a window says nothing of what requests saw.
        .filter(|s| s.requests > 0)
        .filter_map(|s| s.latency_ms.map(|l| (l, s.requests)))
        .fold((0.0, 0u64), |(sum, n), (l, r)| (sum + l * r as f64, n + r));
    (n > 0).then(|| sum / n as f64)
}

/// What the data rules out: the alerts' own statements, then the snapshots' and the log's.
#[allow(clippy::too_many_arguments)]
fn ruled_out(
    events: &[&Event],
    alerts: &[AlertSeen],
    series: &[Point],
    baseline: &[&Point],
    hot: Option<&str>,
    onset: &Onset,
    restored_ms: u64,
    trigger: Option<&Trigger>,
    resolution: &Resolution,
    incident: &Incident,
) -> Vec<String> {
    let mut out = Vec::new();
    // Each alert name's first statement: the later firings of one alert repeat it.
    let mut quoted = BTreeSet::new();
    for a in alerts.iter().filter(|a| symptom(&a.alertname)) {
        if !quoted.insert(a.alertname.clone()) {
            continue;
        }
        let text = a.cause.trim_end_matches('.');
        for clause in text.split(". ").flat_map(|s| s.split("; ")).map(str::trim) {
            let lower = clause.to_lowercase();
            if lower.starts_with("request rate") || lower.starts_with("the other servers") {
                out.push(format!(
                    "{clause} (the cause of {} at {})",
                    a.alertname,
                    clock(a.at_ms)
                ));
            }
        }
    }
    // Each snapshot says the window it covers; a log without it (0) covers the time since
    // the one before.
    let window_of = |p: &Point| -> u64 {
        if p.window_ms > 0 {
            return p.window_ms;
        }
        series
            .iter()
            .rev()
            .find(|q| q.at_ms < p.at_ms)
            .map_or(10_000, |q| p.at_ms - q.at_ms)
            .min(60_000)
    };
    // During: the snapshots within onset..restore, else those whose windows overlap it (a
    // short incident's only snapshot may be written after the restore and still cover it).
    let during = during_points(series, onset.at_ms, restored_ms);
    match (rate(baseline, window_of), rate(&during, window_of)) {
        (Some(before), Some(now)) if before > 0.0 => {
            let ratio = now / before;
            out.push(if ratio > 2.0 {
                format!(
                    "the pool's request rate was {ratio:.1}× its baseline ({now:.1}/s against \
                     {before:.1}/s in the snapshots before): a traffic surge contributes"
                )
            } else if ratio < 0.5 {
                format!(
                    "the pool's request rate fell to {now:.1}/s from {before:.1}/s: less \
                     traffic reached it"
                )
            } else {
                format!(
                    "the pool's request rate was {now:.1}/s during the incident against \
                     {before:.1}/s in the snapshots before it: at its baseline, not a traffic \
                     surge"
                )
            });
        }
        (None, _) => out.push(
            "the log has no pool snapshot before the incident: it cannot say whether traffic \
             was at its baseline"
                .into(),
        ),
        (Some(_), _) => out.push(
            "the log has no pool snapshot with requests during the incident: it cannot say \
             whether traffic was at its baseline"
                .into(),
        ),
    }
    if let Some(hot) = hot {
        match (others_latency(baseline, hot), others_latency(&during, hot)) {
            (Some(before), Some(now)) => out.push(if now > 2.0 * before.max(1.0) {
                format!(
                    "the other servers were slower too ({now:.0} ms against {before:.0} ms \
                     before): a shared dependency may be involved"
                )
            } else {
                format!(
                    "the servers other than {hot} kept their latency ({now:.0} ms against \
                     {before:.0} ms before): not a shared dependency such as the database"
                )
            }),
            (before, _) => out.push(format!(
                "the snapshots carry no latency of the servers other than {hot} {}: the log \
                 cannot say whether they stayed fast",
                if before.is_none() {
                    "before the incident"
                } else {
                    "during it"
                }
            )),
        }
    }
    let from = incident.start_ms.saturating_sub(TRIGGER_WINDOW_MS);
    let known: Vec<u64> = trigger
        .map(|t| {
            let mut v = vec![t.at_ms];
            v.extend(t.live.as_ref().map(|l| l.0));
            v
        })
        .unwrap_or_default();
    let resolved_by = match resolution {
        Resolution::Change { at_ms, .. } | Resolution::RolledBack { at_ms, .. } => Some(*at_ms),
        _ => None,
    };
    let others: Vec<&&Event> = events
        .iter()
        .filter(|e| {
            e.at_ms >= from
                && e.at_ms <= restored_ms
                && is_change(&e.kind)
                && !known.iter().any(|k| e.at_ms.abs_diff(*k) <= PAIRING_MS)
                && resolved_by.is_none_or(|r| e.at_ms.abs_diff(r) > PAIRING_MS)
        })
        .collect();
    if others.is_empty() {
        out.push(format!(
            "no other configuration change or reload of the load balancer is in the log from {} \
             to {}; deploys of the backends are not in it ({})",
            clock(from.max(events.first().map_or(from, |e| e.at_ms))),
            clock(restored_ms),
            super::TO_BE_WRITTEN
                .trim_end_matches('_')
                .trim_start_matches('_')
        ));
    } else {
        out.push(format!(
            "other changes are in the log around the incident, not ruled out: {}",
            others
                .iter()
                .map(|e| format!("{} {}", clock(e.at_ms), describe(&e.kind)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    out
}

/// The `check` rules the change's findings name, as CI items.
fn action_items(trigger: Option<&Trigger>) -> Vec<String> {
    let mut items = Vec::new();
    let Some(t) = trigger else {
        items.push(format!(
            "No configuration change preceded the incident in the log: {}",
            super::TO_BE_WRITTEN
        ));
        return items;
    };
    let mut seen = BTreeSet::new();
    for finding in &t.introduced {
        let Some(rule) = finding.split_whitespace().next() else {
            continue;
        };
        if seen.insert(rule.to_string()) {
            items.push(format!(
                "Add `ballast check --deny warnings` to CI for {}: rule `{rule}` flags this \
                 change before it ships (`{finding}`).",
                t.file
            ));
        }
    }
    if items.is_empty() {
        items.push(format!(
            "`ballast check` found nothing new in this change; which rule would have caught it: \
             {}",
            super::TO_BE_WRITTEN
        ));
    }
    if let Some(points) = t.max_shift_points.filter(|p| *p >= 10.0) {
        items.push(format!(
            "Run `ballast diff OLD NEW` in review of {}: it predicts a share shift of {points:.0} \
             points ({}).",
            t.file,
            t.shifts.join("; ")
        ));
    }
    items
}

/// One line for the timeline.
pub fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::ConfigApplied {
            version,
            previous,
            file,
            changes,
        } => {
            let mut s = format!("config_applied: {file} as serve's configuration {version}");
            if let Some(p) = previous {
                s.push_str(&format!(" (replacing {p})"));
            }
            if !changes.is_empty() {
                s.push_str(&format!(": {}", changes.join("; ")));
            }
            s
        }
        EventKind::ConfigRefused {
            version, reasons, ..
        } => format!(
            "config_refused: version {version}: {}",
            reasons.first().map_or("", String::as_str)
        ),
        EventKind::ServerUp { pool, server } => format!("server_up: {pool}/{server}"),
        EventKind::ServerDown {
            pool,
            server,
            reason,
        } => format!("server_down: {pool}/{server}: {reason}"),
        EventKind::ServerEjected {
            pool,
            server,
            failures,
            for_ms,
        } => format!(
            "server_ejected: {pool}/{server} after {failures} failures, for {} s",
            for_ms / 1000
        ),
        EventKind::ServerRecovered { pool, server } => {
            format!("server_recovered: {pool}/{server}")
        }
        EventKind::SaturationBegan {
            pool,
            server,
            limit,
        } => format!("saturation_began: {pool}/{server} at its limit of {limit}"),
        EventKind::SaturationEnded { pool, server } => {
            format!("saturation_ended: {pool}/{server}")
        }
        EventKind::AllServersDown { pool, policy } => {
            format!("all_servers_down: pool {pool} ({policy})")
        }
        EventKind::AllServersDownEnded { pool } => format!("all_servers_down_ended: pool {pool}"),
        EventKind::AlertFiring {
            alertname,
            severity,
            summary,
            ..
        } => format!("alert_firing: {alertname} [{severity}] {summary}"),
        EventKind::AlertResolved {
            alertname,
            pool,
            server,
            ..
        } => format!(
            "alert_resolved: {alertname} pool {pool}{}",
            server
                .as_ref()
                .map_or(String::new(), |s| format!(" server {s}"))
        ),
        EventKind::ConfigChanged {
            file,
            changes,
            introduced,
            unreadable,
            ..
        } => {
            let mut s = format!("config_changed: {file}");
            if !changes.is_empty() {
                s.push_str(&format!(": {}", changes.join("; ")));
            }
            if let Some(u) = unreadable {
                s.push_str(&format!(" (unreadable: {u})"));
            }
            if !introduced.is_empty() {
                s.push_str(&format!(" [adds {}]", introduced.join("; ")));
            }
            s
        }
        EventKind::Reloaded {
            source,
            instance,
            previous,
            generation,
        } => format!("reloaded: {source} {instance} (generation {previous} → {generation})"),
        EventKind::ConfigRolledBack {
            reverted,
            restored,
            alertname,
            ..
        } => format!(
            "config_rolled_back: serve's configuration {reverted} → {restored} (on {alertname})"
        ),
        EventKind::CommandRan {
            command,
            alertname,
            exit_code,
            detail,
            ..
        } => format!(
            "command_ran: `{command}` on {alertname}, exit {}{}",
            exit_code.map_or("none".into(), |c| c.to_string()),
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            }
        ),
        EventKind::LoadTestRan {
            target,
            model,
            requests,
            rate,
            p99_ms,
            error_ratio,
            peak_ratio,
            capacity,
            ..
        } => format!(
            "loadtest_ran: {model} on {target}: {requests} requests at {rate:.0} req/s, p99 \
             {p99_ms:.1} ms, errors {:.2}%, R {peak_ratio:.2}{}",
            error_ratio * 100.0,
            capacity.map_or(String::new(), |c| format!(", capacity {c:.0} req/s"))
        ),
        EventKind::PoolSnapshot {
            pool,
            peak_ratio,
            servers,
            ..
        } => {
            let figures: Vec<String> = servers
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.0}%/{:.0}%{}",
                        s.server,
                        s.share * 100.0,
                        s.expected_share * 100.0,
                        if s.errors_5xx > 0 {
                            format!(" 5xx {}", s.errors_5xx)
                        } else {
                            String::new()
                        }
                    )
                })
                .collect();
            format!(
                "pool_snapshot: {pool} R {} · {}",
                peak_ratio.map_or("–".into(), |r| format!("{r:.2}")),
                figures.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64, kind: EventKind) -> Event {
        Event {
            at_ms: 1_000_000 + s * 1000,
            kind,
        }
    }

    fn firing(name: &str, server: Option<&str>, cause: &str) -> EventKind {
        EventKind::AlertFiring {
            alertname: name.into(),
            severity: "critical".into(),
            pool: "app".into(),
            server: server.map(Into::into),
            source: "ballast".into(),
            instance: "lb".into(),
            summary: format!("{name} summary"),
            cause: cause.into(),
        }
    }

    fn resolved(name: &str, server: Option<&str>, fired_s: u64) -> EventKind {
        EventKind::AlertResolved {
            alertname: name.into(),
            pool: "app".into(),
            server: server.map(Into::into),
            source: "ballast".into(),
            instance: "lb".into(),
            fired_at_ms: 1_000_000 + fired_s * 1000,
        }
    }

    /// A snapshot of app-1..3 with `requests` each and `errors` 5xx on app-3, weights 1,1,1.
    fn snapshot(requests: [u64; 3], errors: u64, latency: [f64; 3]) -> EventKind {
        let total: u64 = requests.iter().sum();
        EventKind::PoolSnapshot {
            source: "ballast".into(),
            instance: "lb".into(),
            pool: "app".into(),
            window_ms: 10_000,
            algorithm: "request shares".into(),
            peak_ratio: Some(
                requests.iter().copied().max().unwrap_or(0) as f64 * 3.0 / total.max(1) as f64,
            ),
            servers: (0..3)
                .map(|i| ServerSnapshot {
                    server: format!("app-{}", i + 1),
                    requests: requests[i],
                    share: requests[i] as f64 / total.max(1) as f64,
                    expected_share: 1.0 / 3.0,
                    in_flight: 1,
                    limit: Some(10),
                    queued: 0,
                    errors_5xx: if i == 2 { errors } else { 0 },
                    latency_ms: Some(latency[i]),
                    state: "up".into(),
                })
                .collect(),
        }
    }

    fn change() -> EventKind {
        EventKind::ConfigChanged {
            source: "ballast".into(),
            instance: "lb".into(),
            file: "ballast.toml".into(),
            previous: "v1".into(),
            version: "v2".into(),
            changes: vec!["pool app: ~ weight of server app-3: 1 → 8".into()],
            pools: vec!["app".into()],
            introduced: vec![
                "SKEW-001 warning line 12: one server has 80% of the weight".into(),
                "SKEW-001 warning line 13: again".into(),
                "LIM-102 warning line 14: limit".into(),
            ],
            shifts: vec!["app: app-3 33% → 80%".into()],
            max_shift_points: 47.0,
            risky: true,
            unreadable: None,
        }
    }

    /// Baseline at 0..30 s, change at 35 s, reload at 38 s, skew from the snapshot of 40 s
    /// on, alert at 44 s, resolved at 90 s.
    fn log() -> Vec<Event> {
        let even = || snapshot([1000, 1000, 1000], 0, [10.0, 10.0, 10.0]);
        let hot = || snapshot([300, 300, 2400], 120, [11.0, 11.0, 80.0]);
        vec![
            at(10, even()),
            at(20, even()),
            at(30, even()),
            at(35, change()),
            at(
                38,
                EventKind::Reloaded {
                    source: "ballast".into(),
                    instance: "lb".into(),
                    previous: "v1".into(),
                    generation: "v2".into(),
                },
            ),
            at(40, hot()),
            at(
                44,
                firing(
                    "PoolSkewed",
                    Some("app-3"),
                    "It is the load balancer's distribution: skew. Likely trigger: x. Request \
                     rate is 300/s, at its baseline of 300/s: not a traffic surge; the other \
                     servers' latency is normal (11 ms, 10 ms before): not a shared dependency \
                     such as the database.",
                ),
            ),
            at(50, hot()),
            at(60, hot()),
            at(70, hot()),
            at(80, even()),
            at(90, resolved("PoolSkewed", Some("app-3"), 44)),
            at(100, even()),
        ]
    }

    fn review_of(events: &[Event]) -> Review {
        let all = incidents(events, &Range::default());
        review(events, &all[0], &all, &[])
    }

    #[test]
    fn the_incident_runs_from_the_change_to_the_resolve_plus_the_margin() {
        let all = incidents(&log(), &Range::default());
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(i.first_alert_ms, 1_044_000);
        assert_eq!(i.start_ms, 1_035_000);
        assert_eq!(i.restored_ms, Some(1_090_000));
        assert_eq!(i.end_ms, 1_090_000 + MARGIN_MS);
    }

    #[test]
    fn onset_is_the_reload_when_the_window_holding_it_departs_and_ttd_counts_from_it() {
        let r = review_of(&log());
        // The 40 s snapshot covers 30..40 s, which holds the reload at 38 s.
        assert_eq!(r.onset.at_ms, 1_038_000, "{}", r.onset.basis);
        assert_eq!(r.time_to_detect_ms(), 6_000);
        assert_eq!(r.time_to_restore_ms, Some(52_000));
        assert_eq!(r.detect_to_restore_ms, Some(46_000));
        assert_eq!(r.hot_server.as_deref(), Some("app-3"));
    }

    #[test]
    fn without_a_change_the_onset_is_the_first_departing_snapshots_window() {
        let events: Vec<Event> = log().into_iter().filter(|e| !is_change(&e.kind)).collect();
        let r = review_of(&events);
        assert!(r.trigger.is_none());
        // The first departing snapshot (40 s) covers 30..40 s.
        assert_eq!(r.onset.at_ms, 1_030_000, "{}", r.onset.basis);
        assert_eq!(r.time_to_detect_ms(), 14_000);
    }

    #[test]
    fn impact_sums_the_snapshots_that_overlap_onset_to_restore() {
        let r = review_of(&log());
        // Snapshots at 40, 50, 60, 70 (hot) and 80, 90? no: 80 (even) overlaps ..90; 100 not.
        assert_eq!(r.impact.snapshots, 5);
        assert_eq!(r.impact.errors_5xx, 4 * 120);
        assert_eq!(r.impact.requests, 4 * 3000 + 3000);
        assert_eq!(r.impact.errors_at_limit, 0);
        assert_eq!(r.impact.duration_ms, 52_000);
        assert_eq!(r.impact.pools_affected, ["app"]);
        assert_eq!(r.impact.servers_affected, ["app/app-3"]);
    }

    #[test]
    fn errors_at_the_limit_are_counted_apart() {
        let mut events = log();
        for e in &mut events {
            if let EventKind::PoolSnapshot { servers, .. } = &mut e.kind
                && servers[2].errors_5xx > 0
            {
                servers[2].in_flight = 10;
            }
        }
        let r = review_of(&events);
        assert_eq!(r.impact.errors_at_limit, 4 * 120);
        assert_eq!(r.impact.servers[2].max_in_flight, 10);
    }

    #[test]
    fn the_trigger_is_the_change_made_live_by_the_reload_and_its_rules_become_ci_items() {
        let r = review_of(&log());
        let t = r.trigger.as_ref().expect("a trigger");
        assert_eq!(t.at_ms, 1_035_000);
        assert_eq!(t.live.as_ref().map(|l| l.0), Some(1_038_000));
        let ci: Vec<&String> = r
            .action_items
            .iter()
            .filter(|i| i.contains("--deny warnings"))
            .collect();
        assert_eq!(ci.len(), 2, "{:?}", r.action_items);
        assert!(ci[0].contains("`SKEW-001`") && ci[1].contains("`LIM-102`"));
        assert!(r.action_items.iter().any(|i| i.contains("47 points")));
    }

    #[test]
    fn the_ruled_out_list_quotes_the_cause_and_measures_traffic_and_latency() {
        let r = review_of(&log());
        let text = r.ruled_out.join("\n");
        assert!(
            text.contains("Request rate is 300/s, at its baseline"),
            "{text}"
        );
        assert!(
            text.contains("the other servers' latency is normal"),
            "{text}"
        );
        // 3000 requests per 10 s before and during.
        assert!(
            text.contains("300.0/s during the incident against 300.0/s"),
            "{text}"
        );
        assert!(text.contains("kept their latency"), "{text}");
        assert!(text.contains("no other configuration change"), "{text}");
    }

    #[test]
    fn a_second_change_during_the_incident_is_not_ruled_out_but_ends_it() {
        let mut events = log();
        events.push(at(
            75,
            EventKind::ConfigApplied {
                version: "v3".into(),
                previous: Some("v2".into()),
                file: "ballast.toml".into(),
                changes: vec!["pool app: ~ weight of server app-3: 8 → 1".into()],
            },
        ));
        let r = review_of(&events);
        match &r.resolution {
            Resolution::Change { at_ms, what } => {
                assert_eq!(*at_ms, 1_075_000);
                assert!(what.contains("8 → 1"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// serve's canary can revert in the very round the alert fires: the rollback's apply
    /// shares the alert's millisecond and must not pass for its trigger.
    #[test]
    fn a_rollback_in_the_alerts_own_round_is_not_its_trigger() {
        let mut events = log();
        let rollback = EventKind::ConfigRolledBack {
            file: "ballast.toml".into(),
            reverted: "v2".into(),
            restored: "v1".into(),
            changes: vec!["pool app: ~ weight of server app-3: 1 → 8".into()],
            alertname: "PoolSkewed".into(),
            pool: "app".into(),
            evidence: vec!["R 2.4".into()],
        };
        let restored = EventKind::ConfigApplied {
            version: "v1".into(),
            previous: Some("v2".into()),
            file: "ballast.toml".into(),
            changes: vec!["pool app: ~ weight of server app-3: 8 → 1".into()],
        };
        // Inserted right after the alert of 44 s, at the same second.
        let alert_at = events
            .iter()
            .position(|e| matches!(e.kind, EventKind::AlertFiring { .. }))
            .unwrap();
        events.insert(alert_at + 1, at(44, rollback));
        events.insert(alert_at + 2, at(44, restored));
        let r = review_of(&events);
        let trigger = r.trigger.expect("a trigger");
        assert_eq!(
            trigger.at_ms, 1_035_000,
            "the edit of 35 s, not the restore"
        );
        assert_eq!(
            trigger.changes,
            vec!["pool app: ~ weight of server app-3: 1 → 8".to_string()]
        );
    }

    #[test]
    fn a_snapshot_written_after_the_restore_still_covers_the_incident() {
        // The demo's shape: change, alert and rollback within one snapshot window; the only
        // snapshot of the incident is written after the restore.
        let even = || snapshot([1000, 1000, 1000], 0, [10.0, 10.0, 10.0]);
        let hot = snapshot([300, 300, 2400], 0, [11.0, 11.0, 80.0]);
        let events = vec![
            at(10, even()),
            at(20, even()),
            at(30, even()),
            at(33, change()),
            at(36, firing("PoolSkewed", Some("app-3"), "It is skew.")),
            at(
                37,
                EventKind::ConfigRolledBack {
                    file: "ballast.toml".into(),
                    reverted: "v2".into(),
                    restored: "v1".into(),
                    changes: Vec::new(),
                    alertname: "PoolSkewed".into(),
                    pool: "app".into(),
                    evidence: Vec::new(),
                },
            ),
            at(38, resolved("PoolSkewed", Some("app-3"), 36)),
            at(40, hot),
            at(50, even()),
        ];
        let r = review_of(&events);
        let text = r.ruled_out.join("\n");
        assert!(
            text.contains("300.0/s during the incident against 300.0/s"),
            "{text}"
        );
        assert!(
            text.contains("kept their latency (11 ms against 10 ms"),
            "{text}"
        );
        assert!(!text.contains("no pool snapshot"), "{text}");
        // The traffic the log shows moved app-3 from a third to 80%.
        let (moved, points) = r.observed_shift.clone().expect("observed");
        assert!(moved.contains("app-3 33% → 80%"), "{moved}");
        assert!((points - 46.7).abs() < 0.1, "{points}");
    }

    #[test]
    fn a_rollback_restores_at_its_time() {
        let mut events = log();
        events.push(at(
            70,
            EventKind::ConfigRolledBack {
                file: "ballast.toml".into(),
                reverted: "v2".into(),
                restored: "v1".into(),
                changes: vec!["pool app: ~ weight of server app-3: 1 → 8".into()],
                alertname: "PoolSkewed".into(),
                pool: "app".into(),
                evidence: vec!["R 2.4".into()],
            },
        ));
        let r = review_of(&events);
        assert!(matches!(
            r.resolution,
            Resolution::RolledBack {
                at_ms: 1_070_000,
                ..
            }
        ));
        assert_eq!(r.incident.restored_ms, Some(1_070_000));
        assert_eq!(r.time_to_restore_ms, Some(32_000));
    }

    #[test]
    fn alerts_apart_by_more_than_the_margin_are_two_incidents_and_a_flap_is_one() {
        let mut events = log();
        // A re-fire 30 s after the resolve: the same incident.
        events.push(at(120, firing("PoolSkewed", Some("app-3"), "")));
        events.push(at(130, resolved("PoolSkewed", Some("app-3"), 120)));
        // Much later: another one.
        events.push(at(600, firing("ServerErrors", Some("app-1"), "")));
        let all = incidents(&events, &Range::default());
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].restored_ms, Some(1_130_000));
        assert_eq!(all[1].first_alert_ms, 1_600_000);
        assert_eq!(all[1].restored_ms, None);
        // The range picks the second.
        let later = Range {
            from_ms: Some(1_500_000),
            to_ms: None,
        };
        let picked = incidents(&events, &later);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].first_alert_ms, 1_600_000);
    }

    #[test]
    fn a_change_alert_alone_is_no_incident() {
        let events = vec![at(1, change()), at(2, firing(CHANGE_ALERT, None, ""))];
        assert!(incidents(&events, &Range::default()).is_empty());
    }
}
