//! The live dashboard's state: what one page shows of the watched load balancers, as JSON —
//! per pool each server's share against its expected share, in flight against its limit and
//! its state; the pool's R over the last minutes; the active alerts with their cause; and the
//! timeline of events (configuration changes with their diffs, alerts, servers down and up,
//! reloads, rollbacks). Pure: built from a [`Watcher`] and its round's [`Outcome`]; the page
//! ([`PAGE`]) and whoever serves it (`serve`'s admin API, `ballast watch --dashboard`) live
//! elsewhere. The JSON shape is documented in docs/dashboard.md.

use std::collections::{BTreeMap, VecDeque};

use ballast_core::event::{Event, EventKind};
use ballast_core::sample::{PoolSample, Promise, Sample, ServerSample, ServerState};
use serde::Serialize;

use crate::alert::{Alert, AlertState};
use crate::change::ConfigChange;
use crate::detect::distribution::{Measure, PoolDistribution, Thresholds, Verdict};
use crate::watch::{Outcome, Watcher};

/// The page: one HTML file with its CSS and script inline, no external asset, polling
/// `GET /dashboard/state` every second.
pub const PAGE: &str = include_str!("../assets/dashboard.html");

/// How many rounds of R each pool keeps: five minutes at one round a second.
const RATIO_ROUNDS: usize = 300;
/// How many events the timeline keeps.
const TIMELINE_EVENTS: usize = 200;

/// The whole document at `/dashboard/state`.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardState {
    /// When it was built, Unix ms.
    pub generated_at_ms: u64,
    /// What serves it: `ballast serve`, `ballast watch`.
    pub title: String,
    /// R above which a pool is skewed (warning) and badly skewed (critical), for the chart.
    pub ratio_warning: f64,
    pub ratio_critical: f64,
    pub instances: Vec<InstanceState>,
}

impl DashboardState {
    pub fn new(title: &str, generated_at_ms: u64, instances: Vec<InstanceState>) -> Self {
        let thresholds = Thresholds::default();
        Self {
            generated_at_ms,
            title: title.to_string(),
            ratio_warning: thresholds.warning,
            ratio_critical: thresholds.critical,
            instances,
        }
    }

    pub fn to_json(&self) -> String {
        // Plain data of strings and numbers: serialising it cannot fail, but never panic.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"error\":{:?}}}",
                format!("cannot serialise the state: {e}")
            )
        })
    }
}

/// One watched load balancer.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceState {
    pub source: String,
    pub instance: String,
    /// When its latest sample was taken, Unix ms (absent before the first).
    pub sampled_at_ms: Option<u64>,
    /// Why it cannot be read now, while it cannot.
    pub unreadable: Option<String>,
    /// The window shares are computed over, ms.
    pub window_ms: u64,
    pub pools: Vec<PoolState>,
    /// Pending and firing alerts, firing and critical first.
    pub alerts: Vec<AlertView>,
    /// Events, oldest first.
    pub timeline: Vec<Event>,
}

/// One pool over the window.
#[derive(Debug, Clone, Serialize)]
pub struct PoolState {
    pub name: String,
    /// What its algorithm promises: `request_shares`, `concurrency`, `key_dependent`,
    /// `fill_in_order`.
    pub promise: Promise,
    /// What shares are of: `requests`, or `in_flight` for pools promising concurrency.
    pub measure: &'static str,
    /// Requests the pool sent in the window (since the last change of a weight or a state in
    /// it, when one changed: shares are against the promise in force).
    pub requests: u64,
    /// The detector's verdict on the window, in words.
    pub verdict: String,
    /// `ok`, `skewed`, `critical`, `not_judged` or `not_enough_traffic`.
    pub status: &'static str,
    /// R over the window, when judged.
    pub peak_ratio: Option<f64>,
    /// R of each recent round, oldest first (null where it was not judged).
    pub ratio_history: Vec<RatioPoint>,
    pub servers: Vec<ServerView>,
}

/// R at one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatioPoint {
    pub at_ms: u64,
    pub peak_ratio: Option<f64>,
}

/// One server over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub name: String,
    /// `up`, `down`, `drain`, `maintenance`.
    pub state: ServerState,
    pub weight: u32,
    pub backup: bool,
    /// Its share of the pool's measure over the window (since the last change of a weight or
    /// state in it), 0..1.
    pub share: f64,
    /// The share its live weight and state promise, 0..1 (0 when out of rotation).
    pub expected_share: f64,
    /// Requests sent to it in the window (as `share`).
    pub requests: u64,
    pub in_flight: u64,
    pub limit: Option<u64>,
    pub queued: u64,
    /// 5xx responses in the window.
    pub errors_5xx: u64,
    pub latency_ms: Option<f64>,
}

/// One active alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub alertname: String,
    pub severity: String,
    /// `pending` or `firing`.
    pub state: &'static str,
    pub pool: String,
    pub server: Option<String>,
    pub summary: String,
    pub cause: String,
    pub runbook: String,
    pub active_since_ms: u64,
    pub starts_at_ms: Option<u64>,
    /// The alert this one is a symptom of (shown, not paged).
    pub inhibited_by: Option<String>,
}

impl AlertView {
    fn of(a: &Alert) -> Self {
        let label = |n: &str| a.label(n).unwrap_or("").to_string();
        let annotation = |n: &str| a.annotation(n).unwrap_or("").to_string();
        Self {
            alertname: label("alertname"),
            severity: label("severity"),
            state: match a.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            },
            pool: label("pool"),
            server: a.label("server").map(str::to_string),
            summary: annotation("summary"),
            cause: annotation("cause"),
            runbook: annotation("runbook"),
            active_since_ms: a.active_since_ms,
            starts_at_ms: a.starts_at_ms,
            inhibited_by: a.inhibited_by.clone(),
        }
    }
}

/// Where the timeline's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimelineSource {
    /// From the rounds: configuration changes, reloads, alerts fired and resolved, servers
    /// whose state changed between samples (`ballast watch`).
    Rounds,
    /// Handed over by the caller with [`Dashboard::set_timeline`] (`serve`, whose own event
    /// log already has them all).
    Given,
}

/// The dashboard of one watched load balancer: keeps what a watcher does not (R per round,
/// the timeline) and builds its [`InstanceState`].
pub struct Dashboard {
    source: String,
    instance: String,
    window_ms: u64,
    ratios: BTreeMap<String, VecDeque<RatioPoint>>,
    verdicts: BTreeMap<String, PoolDistribution>,
    timeline: VecDeque<Event>,
    timeline_source: TimelineSource,
    /// Each server's state in the previous sample: (pool, server) → state.
    states: BTreeMap<(String, String), ServerState>,
    /// With a given timeline: the configuration changes the watcher saw in the file, with
    /// their semantic diff (the caller's log may record only that a version was applied).
    file_changes: VecDeque<Event>,
    unreadable: Option<String>,
}

impl Dashboard {
    /// A dashboard whose timeline is built from the rounds it observes; `window_ms` is the
    /// watcher's detection window, over which shares are shown.
    pub fn new(source: &str, instance: &str, window_ms: u64) -> Self {
        Self {
            source: source.to_string(),
            instance: instance.to_string(),
            window_ms: window_ms.max(1),
            ratios: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            timeline: VecDeque::new(),
            timeline_source: TimelineSource::Rounds,
            states: BTreeMap::new(),
            file_changes: VecDeque::new(),
            unreadable: None,
        }
    }

    /// The caller hands the timeline over with [`Dashboard::set_timeline`] instead (its own
    /// event log has every event, as `serve`'s does).
    pub fn with_given_timeline(mut self) -> Self {
        self.timeline_source = TimelineSource::Given;
        self
    }

    /// Takes one round: the pools' R, and (unless the timeline is given) its events.
    pub fn observe(&mut self, watcher: &Watcher, outcome: &Outcome) {
        self.unreadable = None;
        let Some(sample) = watcher.history().last() else {
            return;
        };
        let at_ms = sample.at_ms;
        for pool in &sample.pools {
            let judged = outcome.distributions.iter().find(|d| d.pool == pool.name);
            let ring = self.ratios.entry(pool.name.clone()).or_default();
            ring.push_back(RatioPoint {
                at_ms,
                peak_ratio: judged.and_then(|d| evenness(&d.verdict)),
            });
            while ring.len() > RATIO_ROUNDS {
                ring.pop_front();
            }
            if let Some(d) = judged {
                self.verdicts.insert(pool.name.clone(), d.clone());
            }
        }
        // Pools gone from the configuration go from the page too.
        self.ratios
            .retain(|name, _| sample.pools.iter().any(|p| &p.name == name));
        self.verdicts
            .retain(|name, _| sample.pools.iter().any(|p| &p.name == name));
        if self.timeline_source == TimelineSource::Rounds {
            for event in self.round_events(sample, outcome) {
                self.record(event);
            }
        } else {
            self.states = server_states(sample);
            if let Some(c) = &outcome.change {
                self.file_changes.push_back(self.change_event(c));
                while self.file_changes.len() > TIMELINE_EVENTS {
                    self.file_changes.pop_front();
                }
            }
        }
    }

    /// The source could not be read this round.
    pub fn set_unreadable(&mut self, why: Option<&str>) {
        self.unreadable = why.map(str::to_string);
    }

    /// Adds an event of the caller's (a command it ran) to the timeline.
    pub fn record(&mut self, event: Event) {
        if matches!(event.kind, EventKind::PoolSnapshot { .. }) {
            return;
        }
        // Events of one round come in time order; one that carries an earlier time (an alert
        // that began to fire in a past round) goes where it belongs.
        let at = self.timeline.partition_point(|e| e.at_ms <= event.at_ms);
        self.timeline.insert(at, event);
        while self.timeline.len() > TIMELINE_EVENTS {
            self.timeline.pop_front();
        }
    }

    /// Replaces the timeline with the caller's events (oldest first), merged with the
    /// configuration changes the watcher saw in the file.
    pub fn set_timeline(&mut self, events: Vec<Event>) {
        self.timeline.clear();
        let changes: Vec<Event> = self.file_changes.iter().cloned().collect();
        for event in events.into_iter().chain(changes) {
            self.record(event);
        }
    }

    /// What the page shows of this load balancer now.
    pub fn state(&self, watcher: &Watcher) -> InstanceState {
        let history: Vec<&Sample> = watcher.history().collect();
        let latest = history.last().copied();
        let pools = latest.map_or_else(Vec::new, |last| {
            let start = last.at_ms.saturating_sub(self.window_ms);
            let window: Vec<&Sample> = history
                .iter()
                .copied()
                .filter(|s| s.at_ms >= start)
                .collect();
            last.pools
                .iter()
                .map(|pool| self.pool_state(pool, &window))
                .collect()
        });
        let mut alerts: Vec<AlertView> =
            watcher.active().iter().map(|a| AlertView::of(a)).collect();
        alerts.sort_by_key(|a| {
            (
                a.state != "firing",
                a.inhibited_by.is_some(),
                a.severity != "critical",
                a.active_since_ms,
            )
        });
        InstanceState {
            source: self.source.clone(),
            instance: self.instance.clone(),
            sampled_at_ms: latest.map(|s| s.at_ms),
            unreadable: self.unreadable.clone(),
            window_ms: self.window_ms,
            pools,
            alerts,
            timeline: self.timeline.iter().cloned().collect(),
        }
    }

    fn pool_state(&self, pool: &PoolSample, window: &[&Sample]) -> PoolState {
        let series: Vec<&PoolSample> = window
            .iter()
            .filter_map(|s| s.pools.iter().find(|p| p.name == pool.name))
            .collect();
        // Shares are set against the promise in force now: a weight or state that changed in
        // the window starts the shares at the sample before the change, so a reload or a
        // server going down does not show the old split against the new expectation.
        let promise = |p: &PoolSample| -> Vec<(String, u32, ServerState, bool)> {
            p.servers
                .iter()
                .map(|s| (s.name.clone(), s.weight, s.state, s.backup))
                .collect()
        };
        let since = (1..series.len())
            .rev()
            .find(|&i| promise(series[i]) != promise(series[i - 1]))
            .map_or(0, |i| i - 1);
        let series = &series[since..];
        let first = series.first().copied().unwrap_or(pool);
        let before = |s: &ServerSample| first.servers.iter().find(|f| f.name == s.name);
        // A counter that went down restarted (a reload): what it counts now is all it sent.
        let delta = |now: u64, then: Option<u64>| match then {
            Some(t) if t <= now => now - t,
            _ => now,
        };
        let sent: Vec<u64> = pool
            .servers
            .iter()
            .map(|s| delta(s.requests, before(s).map(|b| b.requests)))
            .collect();
        let concurrency = pool.promise == Promise::Concurrency;
        let measured: Vec<u64> = if concurrency {
            pool.servers
                .iter()
                .map(|s| {
                    series
                        .iter()
                        .filter_map(|p| p.servers.iter().find(|x| x.name == s.name))
                        .map(|x| x.active)
                        .sum()
                })
                .collect()
        } else {
            sent.clone()
        };
        let total: u64 = measured.iter().sum();
        let expected = expected_shares(&pool.servers);
        let servers = pool
            .servers
            .iter()
            .zip(&sent)
            .zip(&measured)
            .zip(&expected)
            .map(
                |(((s, &requests), &measured), &expected_share)| ServerView {
                    name: s.name.clone(),
                    state: s.state,
                    weight: s.weight,
                    backup: s.backup,
                    share: if total > 0 {
                        measured as f64 / total as f64
                    } else {
                        0.0
                    },
                    expected_share,
                    requests,
                    in_flight: s.active,
                    limit: s.max_connections,
                    queued: s.queued,
                    errors_5xx: delta(s.responses.c5xx, before(s).map(|b| b.responses.c5xx)),
                    latency_ms: s.latency_ms,
                },
            )
            .collect();
        let judged = self.verdicts.get(&pool.name);
        let (verdict, status) =
            judged.map_or_else(|| ("not judged yet".to_string(), "not_judged"), describe);
        PoolState {
            name: pool.name.clone(),
            promise: pool.promise,
            measure: if concurrency { "in_flight" } else { "requests" },
            requests: sent.iter().sum(),
            verdict,
            status,
            peak_ratio: judged.and_then(|d| evenness(&d.verdict)),
            ratio_history: self
                .ratios
                .get(&pool.name)
                .map(|r| r.iter().copied().collect())
                .unwrap_or_default(),
            servers,
        }
    }

    /// The events one round adds: alerts fired and resolved, the configuration change and
    /// the reload it saw, servers whose state changed since the previous sample.
    fn round_events(&mut self, sample: &Sample, outcome: &Outcome) -> Vec<Event> {
        let mut events = Vec::new();
        let states = server_states(sample);
        for ((pool, server), state) in &states {
            let was = self.states.get(&(pool.clone(), server.clone()));
            let (pool, server) = (pool.clone(), server.clone());
            let kind = match (was, state) {
                (Some(ServerState::Up), ServerState::Down) => EventKind::ServerDown {
                    pool,
                    server,
                    reason: format!("{} reports it down", self.source),
                },
                (Some(w), ServerState::Up) if *w != ServerState::Up => {
                    EventKind::ServerUp { pool, server }
                }
                _ => continue,
            };
            events.push(Event {
                at_ms: sample.at_ms,
                kind,
            });
        }
        self.states = states;
        if let Some(c) = &outcome.change {
            events.push(self.change_event(c));
        }
        if let Some(r) = &outcome.reload {
            events.push(Event {
                at_ms: r.at_ms,
                kind: EventKind::Reloaded {
                    source: self.source.clone(),
                    instance: self.instance.clone(),
                    previous: r.previous.clone(),
                    generation: r.generation.clone(),
                },
            });
        }
        let label = |a: &Alert, n: &str| a.label(n).unwrap_or("").to_string();
        for a in &outcome.round.fired {
            events.push(Event {
                at_ms: a.starts_at_ms.unwrap_or(sample.at_ms),
                kind: EventKind::AlertFiring {
                    alertname: label(a, "alertname"),
                    severity: label(a, "severity"),
                    pool: label(a, "pool"),
                    server: a.label("server").map(str::to_string),
                    source: label(a, "source"),
                    instance: label(a, "instance"),
                    summary: a.annotation("summary").unwrap_or("").to_string(),
                    cause: a.annotation("cause").unwrap_or("").to_string(),
                },
            });
        }
        for a in &outcome.round.resolved {
            events.push(Event {
                at_ms: a.ends_at_ms.unwrap_or(sample.at_ms),
                kind: EventKind::AlertResolved {
                    alertname: label(a, "alertname"),
                    pool: label(a, "pool"),
                    server: a.label("server").map(str::to_string),
                    source: label(a, "source"),
                    instance: label(a, "instance"),
                    fired_at_ms: a.starts_at_ms.unwrap_or(a.active_since_ms),
                },
            });
        }
        events
    }
}

impl Dashboard {
    fn change_event(&self, c: &ConfigChange) -> Event {
        Event {
            at_ms: c.at_ms,
            kind: EventKind::ConfigChanged {
                source: self.source.clone(),
                instance: self.instance.clone(),
                file: c.file.clone(),
                previous: c.previous.clone(),
                version: c.version.clone(),
                changes: c.changes.clone(),
                pools: c.pools.clone(),
                introduced: c.introduced.clone(),
                shifts: c.shifts.clone(),
                max_shift_points: c.max_shift_points,
                risky: c.risky,
                unreadable: c.unreadable.clone(),
            },
        }
    }
}

fn server_states(sample: &Sample) -> BTreeMap<(String, String), ServerState> {
    sample
        .pools
        .iter()
        .flat_map(|p| {
            p.servers
                .iter()
                .map(|s| ((p.name.clone(), s.name.clone()), s.state))
        })
        .collect()
}

/// Each server's expected share: its weight over the weights of the servers in rotation, from
/// the primary tier unless no primary server is in rotation (as the balancers choose).
fn expected_shares(servers: &[ServerSample]) -> Vec<f64> {
    let in_rotation = |s: &ServerSample| s.state == ServerState::Up && s.weight > 0;
    let primary_live = servers.iter().any(|s| in_rotation(s) && !s.backup);
    let candidate = |s: &ServerSample| in_rotation(s) && (s.backup != primary_live);
    let total: u64 = servers
        .iter()
        .filter(|s| candidate(s))
        .map(|s| u64::from(s.weight))
        .sum();
    servers
        .iter()
        .map(|s| {
            if total > 0 && candidate(s) {
                f64::from(s.weight) / total as f64
            } else {
                0.0
            }
        })
        .collect()
}

fn evenness(v: &Verdict) -> Option<f64> {
    match v {
        Verdict::AsPromised { evenness } | Verdict::Skewed { evenness, .. } => {
            Some(evenness.peak_ratio).filter(|r| r.is_finite())
        }
        _ => None,
    }
}

/// The verdict in words, and its status word for the page's colours.
fn describe(d: &PoolDistribution) -> (String, &'static str) {
    let measure = match d.measure {
        Measure::Requests => "requests",
        Measure::Concurrency => "requests in flight",
    };
    match &d.verdict {
        Verdict::NotJudged { reason } => (format!("not judged: {reason}"), "not_judged"),
        Verdict::NotEnoughTraffic { observed, needed } => (
            format!("not enough traffic to judge ({observed} of {needed} {measure})"),
            "not_enough_traffic",
        ),
        Verdict::AsPromised { evenness } => (
            format!(
                "as promised: R {:.2}, Jain {:.2} on {measure}",
                evenness.peak_ratio, evenness.jain
            ),
            "ok",
        ),
        Verdict::Skewed {
            level,
            server,
            share,
            expected,
            evenness,
        } => (
            format!(
                "skewed: {server} takes {:.0}% of {measure} against {:.0}% (R {:.2})",
                share * 100.0,
                expected * 100.0,
                evenness.peak_ratio
            ),
            if *level == crate::detect::Level::Critical {
                "critical"
            } else {
                "skewed"
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, sample, server};
    use crate::watch::WatchOptions;

    /// Pool `app` of three servers with these cumulative requests, weights and states.
    fn at(t: u64, requests: [u64; 3], weights: [u32; 3], states: [ServerState; 3]) -> Sample {
        let servers = (0..3)
            .map(|i| {
                let mut s = server(&format!("app-{}", i + 1));
                s.requests = requests[i];
                s.weight = weights[i];
                s.state = states[i];
                s.active = i as u64;
                s.max_connections = Some(10);
                s
            })
            .collect();
        sample(t, vec![pool("app", servers)])
    }

    const UP: ServerState = ServerState::Up;

    #[test]
    fn shares_are_over_the_window_and_expected_shares_follow_weights_and_states() {
        let mut w = Watcher::new("test", "lb-1", WatchOptions::default());
        let mut d = Dashboard::new("test", "lb-1", 5_000);
        // Ten seconds at 100, 100, 800 requests a second; the window is the last five.
        for t in 0..=10u64 {
            let s = at(t, [100 * t, 100 * t, 800 * t], [1, 1, 8], [UP; 3]);
            let o = w.observe(s);
            d.observe(&w, &o);
        }
        let state = d.state(&w);
        let pool = &state.pools[0];
        assert_eq!(pool.name, "app");
        assert_eq!(pool.requests, 5_000, "five seconds of 1000/s");
        let shares: Vec<f64> = pool.servers.iter().map(|s| s.share).collect();
        let expected: Vec<f64> = pool.servers.iter().map(|s| s.expected_share).collect();
        assert_eq!(shares, [0.1, 0.1, 0.8]);
        assert_eq!(expected, [0.1, 0.1, 0.8]);
        assert_eq!(pool.servers[2].in_flight, 2);
        assert_eq!(pool.servers[2].limit, Some(10));
        assert_eq!(pool.status, "ok", "{}", pool.verdict);
        assert_eq!(pool.ratio_history.len(), 11);
        let r = pool.peak_ratio.expect("judged");
        assert!((r - 1.0).abs() < 1e-9, "R {r}");

        // app-2 goes down: out of rotation, its expected share is the others'.
        let s = at(
            11,
            [1_100, 1_100, 8_800],
            [1, 1, 8],
            [UP, ServerState::Down, UP],
        );
        let o = w.observe(s);
        d.observe(&w, &o);
        let state = d.state(&w);
        let expected: Vec<f64> = state.pools[0]
            .servers
            .iter()
            .map(|s| s.expected_share)
            .collect();
        assert_eq!(expected, [1.0 / 9.0, 0.0, 8.0 / 9.0]);
        let downs: Vec<&Event> = state
            .timeline
            .iter()
            .filter(
                |e| matches!(&e.kind, EventKind::ServerDown { server, .. } if server == "app-2"),
            )
            .collect();
        assert_eq!(downs.len(), 1, "{:?}", state.timeline);
        assert_eq!(downs[0].at_ms, 11_000);
    }

    #[test]
    fn a_skew_shows_as_a_firing_alert_in_the_state_and_its_firing_in_the_timeline() {
        let mut w = Watcher::new("test", "lb-1", WatchOptions::default());
        let mut d = Dashboard::new("test", "lb-1", 5_000);
        let mut totals = [0u64; 3];
        for t in 0..20u64 {
            let per_second = if t < 8 {
                [300, 300, 300]
            } else {
                [100, 100, 700]
            };
            for (total, n) in totals.iter_mut().zip(per_second) {
                *total += n;
            }
            let o = w.observe(at(t, totals, [1, 1, 1], [UP; 3]));
            d.observe(&w, &o);
        }
        let state = d.state(&w);
        let alert = state
            .alerts
            .iter()
            .find(|a| a.alertname == "PoolSkewed")
            .expect("a PoolSkewed alert");
        assert_eq!(alert.state, "firing");
        assert_eq!(alert.server.as_deref(), Some("app-3"));
        assert!(!alert.cause.is_empty());
        assert_eq!(state.pools[0].status, "critical");
        let fired = state.timeline.iter().any(|e| {
            matches!(&e.kind, EventKind::AlertFiring { alertname, .. } if alertname == "PoolSkewed")
        });
        assert!(fired, "{:?}", state.timeline);
        // The JSON has the documented top-level keys.
        let json: serde_json::Value =
            serde_json::from_str(&DashboardState::new("t", 1, vec![state]).to_json()).unwrap();
        for key in ["generated_at_ms", "title", "ratio_warning", "instances"] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        let pool = &json["instances"][0]["pools"][0];
        assert_eq!(pool["servers"][2]["name"], "app-3");
        assert_eq!(pool["servers"][2]["state"], "up");
        assert!(pool["ratio_history"].as_array().unwrap().len() == 20);
        assert_eq!(json["instances"][0]["timeline"][0]["event"], "alert_firing");
    }

    #[test]
    fn a_given_timeline_replaces_the_rounds_and_keeps_time_order_and_its_bound() {
        let mut w = Watcher::new("test", "lb-1", WatchOptions::default());
        let mut d = Dashboard::new("ballast", "lb-1", 5_000).with_given_timeline();
        let o = w.observe(at(0, [0; 3], [1; 3], [UP; 3]));
        d.observe(&w, &o);
        let o = w.observe(at(1, [0; 3], [1; 3], [UP, ServerState::Down, UP]));
        d.observe(&w, &o);
        assert!(d.state(&w).timeline.is_empty(), "no event of its own");
        let event = |at_ms: u64| Event {
            at_ms,
            kind: EventKind::ServerUp {
                pool: "app".into(),
                server: "<img src=x onerror=alert(1)>".into(),
            },
        };
        d.set_timeline((0..300).rev().map(event).collect());
        let timeline = d.state(&w).timeline;
        assert_eq!(timeline.len(), TIMELINE_EVENTS);
        assert!(timeline.windows(2).all(|p| p[0].at_ms <= p[1].at_ms));
        assert_eq!(timeline.last().map(|e| e.at_ms), Some(299));
    }

    #[test]
    fn the_page_is_one_file_with_no_external_asset_and_writes_data_as_text() {
        assert!(PAGE.contains("/dashboard/state"));
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!PAGE.contains(external), "the page loads {external}");
        }
        assert!(!PAGE.contains("innerHTML"), "data goes in with textContent");
    }
}
