//! The guard's own events for the event log: a watcher's round (its [`Outcome`] and the
//! history it judged) turned into `config_changed`, `reloaded` and, every snapshot interval,
//! one `pool_snapshot` per pool. A reload cuts the snapshots' windows: the round that sees it
//! writes the figures up to the sample before it, and the next window starts there, so no
//! snapshot mixes the traffic before a change with the traffic after it. Pure: `ballast watch --event-log` and serve's guard thread
//! call [`events`] after every round and append what it returns, so the postmortem, the
//! dashboard and the rollback read one record whichever process watched.

use std::collections::HashMap;

use ballast_core::event::{Event, EventKind, ServerSnapshot};
use ballast_core::sample::{PoolSample, Sample, ServerSample, ServerState};

use crate::change::{ConfigChange, Reload};
use crate::detect::distribution::{PoolDistribution, Verdict};
use crate::watch::{Outcome, Watcher};

/// How often pools are snapshotted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOptions {
    /// A snapshot is written each time the clock crosses a multiple of this many ms, covering
    /// the figures since the sample this long before.
    pub snapshot_interval_ms: u64,
}

impl Default for EventOptions {
    fn default() -> Self {
        Self {
            snapshot_interval_ms: 10_000,
        }
    }
}

/// The events of the round that ended with the history's latest sample: the configuration
/// change and the reload the watcher saw, and the pools' snapshots when one is due.
/// `history` is the watcher's history, oldest first, its last sample the one just observed.
pub fn events(outcome: &Outcome, history: &[&Sample], options: &EventOptions) -> Vec<Event> {
    let reloads: Vec<u64> = outcome.reload.iter().map(|r| r.at_ms).collect();
    events_cut(outcome, history, &reloads, options)
}

/// [`events`], with the times of the reloads the watcher remembers (`cuts_ms`, oldest first,
/// this round's included): the snapshots' windows start no earlier than the last of them.
pub fn events_cut(
    outcome: &Outcome,
    history: &[&Sample],
    cuts_ms: &[u64],
    options: &EventOptions,
) -> Vec<Event> {
    let Some(latest) = history.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(change) = &outcome.change {
        out.push(config_changed(change, latest));
    }
    let interval = options.snapshot_interval_ms.max(1);
    if let Some(reload) = &outcome.reload {
        out.push(reloaded(reload, latest));
        // The figures since the last snapshot, up to the sample before the reload: the
        // version that served them alone. Expected shares from that sample's weights (the
        // detector's verdict of this round already judges the new version).
        if let [.., before, _] = history {
            let up_to = &history[..history.len() - 1];
            let boundary = before.at_ms / interval * interval;
            let since_boundary = up_to.partition_point(|s| s.at_ms < boundary);
            let first = since_boundary.max(cut_start(up_to, cuts_ms, before.at_ms));
            if first + 1 < up_to.len() {
                out.extend(snapshots(&up_to[first..], None));
            }
        }
    }
    if snapshot_due(history, interval) {
        let start = latest.at_ms.saturating_sub(interval);
        // The window begins at the last sample at or before its start (the counters'
        // baseline), or at the last before the latest reload.
        let first = history
            .partition_point(|s| s.at_ms <= start)
            .saturating_sub(1)
            .max(cut_start(history, cuts_ms, latest.at_ms));
        if first + 1 < history.len() {
            out.extend(snapshots(&history[first..], Some(&outcome.distributions)));
        }
    }
    out
}

/// The index of the last sample before the latest cut at or before `until_ms` (0 without one).
fn cut_start(history: &[&Sample], cuts_ms: &[u64], until_ms: u64) -> usize {
    cuts_ms
        .iter()
        .filter(|&&c| c <= until_ms)
        .max()
        .map_or(0, |&c| {
            history.partition_point(|s| s.at_ms < c).saturating_sub(1)
        })
}

/// [`events`] over a watcher's own history, for the callers that hold the watcher.
pub fn of_round(outcome: &Outcome, watcher: &Watcher, options: &EventOptions) -> Vec<Event> {
    let history: Vec<&Sample> = watcher.history().collect();
    let mut cuts: Vec<u64> = watcher.reloads().iter().map(|r| r.at_ms).collect();
    cuts.extend(outcome.reload.iter().map(|r| r.at_ms));
    events_cut(outcome, &history, &cuts, options)
}

fn config_changed(c: &ConfigChange, sample: &Sample) -> Event {
    Event {
        at_ms: c.at_ms,
        kind: EventKind::ConfigChanged {
            source: sample.source.clone(),
            instance: sample.instance.clone(),
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

fn reloaded(r: &Reload, sample: &Sample) -> Event {
    Event {
        at_ms: r.at_ms,
        kind: EventKind::Reloaded {
            source: sample.source.clone(),
            instance: sample.instance.clone(),
            previous: r.previous.clone(),
            generation: r.generation.clone(),
        },
    }
}

/// Whether the latest sample is the first past a multiple of the interval. Decided from the
/// two latest samples' times alone, so the function needs no state of its own and a restarted
/// watcher keeps the same cadence.
fn snapshot_due(history: &[&Sample], interval_ms: u64) -> bool {
    let interval = interval_ms.max(1);
    match history {
        [.., previous, latest] => latest.at_ms / interval > previous.at_ms / interval,
        _ => false,
    }
}

/// One snapshot per pool of the window's last sample, over the window (its first sample is
/// the counters' baseline). Without the detector's distributions, the expected shares are what
/// the last sample's weights promise and R is not given.
fn snapshots(window: &[&Sample], distributions: Option<&[PoolDistribution]>) -> Vec<Event> {
    let (Some(first), Some(latest)) = (window.first(), window.last()) else {
        return Vec::new();
    };
    let window_ms = latest.at_ms - first.at_ms;
    latest
        .pools
        .iter()
        .map(|pool| {
            let distribution = distributions.and_then(|d| d.iter().find(|d| d.pool == pool.name));
            Event {
                at_ms: latest.at_ms,
                kind: EventKind::PoolSnapshot {
                    source: latest.source.clone(),
                    instance: latest.instance.clone(),
                    pool: pool.name.clone(),
                    window_ms,
                    algorithm: pool.promise.as_str().to_string(),
                    peak_ratio: distribution.and_then(peak_ratio),
                    servers: servers(pool, window, distribution),
                },
            }
        })
        .collect()
}

/// R of the distribution detector's last verdict, when it judged the pool.
fn peak_ratio(d: &PoolDistribution) -> Option<f64> {
    match &d.verdict {
        Verdict::AsPromised { evenness } | Verdict::Skewed { evenness, .. } => {
            Some(evenness.peak_ratio)
        }
        Verdict::NotJudged { .. } | Verdict::NotEnoughTraffic { .. } => None,
    }
}

/// What one server did over the window.
#[derive(Default)]
struct Totals {
    requests: u64,
    errors_5xx: u64,
    /// Σ latency × requests and Σ requests of the rounds that reported a latency.
    latency_weighted: f64,
    latency_requests: u64,
}

fn servers(
    pool: &PoolSample,
    window: &[&Sample],
    distribution: Option<&PoolDistribution>,
) -> Vec<ServerSnapshot> {
    let mut totals: HashMap<&str, Totals> = HashMap::new();
    let mut previous: HashMap<&str, &ServerSample> = HashMap::new();
    for sample in window {
        let Some(p) = sample.pools.iter().find(|p| p.name == pool.name) else {
            continue;
        };
        for s in &p.servers {
            if let Some(before) = previous.get(s.name.as_str()) {
                let requests = increase(before.requests, s.requests);
                let t = totals.entry(s.name.as_str()).or_default();
                t.requests += requests;
                t.errors_5xx += increase(before.responses.c5xx, s.responses.c5xx);
                if let Some(latency) = s.latency_ms {
                    // A round without requests still says something of a latency gauge.
                    let weight = requests.max(1);
                    t.latency_weighted += latency * weight as f64;
                    t.latency_requests += weight;
                }
            }
            previous.insert(s.name.as_str(), s);
        }
    }
    let pool_requests: u64 = totals.values().map(|t| t.requests).sum();
    let serving = crate::detect::saturation::in_rotation(pool);
    let serving_weight: u64 = serving.iter().map(|s| u64::from(s.weight)).sum();
    // The detector's shares follow the servers of the sample it judged (this one, unless the
    // pool changed shape since); none when it judges no shares (`first`).
    let expected = |index: usize, name: &str| match distribution {
        Some(d) if d.expected_shares.len() == pool.servers.len() => d.expected_shares[index],
        Some(d) if d.expected_shares.is_empty() => 0.0,
        _ => serving
            .iter()
            .find(|s| s.name == name)
            .filter(|_| serving_weight > 0)
            .map_or(0.0, |s| f64::from(s.weight) / serving_weight as f64),
    };
    pool.servers
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let t = totals.remove(s.name.as_str()).unwrap_or_default();
            ServerSnapshot {
                server: s.name.clone(),
                requests: t.requests,
                share: if pool_requests == 0 {
                    0.0
                } else {
                    t.requests as f64 / pool_requests as f64
                },
                expected_share: expected(index, &s.name),
                in_flight: s.active,
                limit: s.max_connections,
                queued: s.queued,
                errors_5xx: t.errors_5xx,
                latency_ms: (t.latency_requests > 0)
                    .then(|| t.latency_weighted / t.latency_requests as f64),
                state: state(s).to_string(),
            }
        })
        .collect()
}

/// A counter's increase between two samples; one that went down restarted (a reload) and
/// counts from zero.
fn increase(before: u64, now: u64) -> u64 {
    if now >= before { now - before } else { now }
}

fn state(s: &ServerSample) -> &'static str {
    match s.state {
        ServerState::Up if s.backup => "backup",
        ServerState::Up => "up",
        ServerState::Down => "down",
        ServerState::Drain => "drain",
        ServerState::Maintenance => "maint",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, responses, sample, server};
    use crate::watch::WatchOptions;

    /// Runs a watcher over `secs` one-second rounds in which app-1..3 take `rates[i]`
    /// requests per second (app-3 answering 5xx for `failing` of them), and gathers every
    /// event `events` returns.
    fn run(secs: u64, rates: [u64; 3], weights: [u32; 3], failing: u64) -> Vec<Event> {
        run_reloading(secs, rates, weights, failing, None)
    }

    /// [`run`], the process reloading (a new generation) at second `reload_at`.
    fn run_reloading(
        secs: u64,
        rates: [u64; 3],
        weights: [u32; 3],
        failing: u64,
        reload_at: Option<u64>,
    ) -> Vec<Event> {
        let mut w = Watcher::new("test", "lb-1", WatchOptions::default());
        let mut all = Vec::new();
        for t in 0..=secs {
            let servers = (0..3)
                .map(|i| {
                    let mut s = server(&format!("app-{}", i + 1));
                    s.requests = rates[i] * t;
                    s.weight = weights[i];
                    s.active = i as u64;
                    s.latency_ms = Some(10.0 * (i + 1) as f64);
                    let bad = if i == 2 { failing * t } else { 0 };
                    s.responses = responses(s.requests - bad, bad, 0);
                    s
                })
                .collect();
            let mut s = sample(t, vec![pool("app", servers)]);
            let generation = if reload_at.is_some_and(|r| t >= r) {
                "v2"
            } else {
                "v1"
            };
            s.process = Some(ballast_core::sample::ProcessSample {
                generation: Some(generation.into()),
                ..Default::default()
            });
            let outcome = w.observe(s);
            all.extend(of_round(&outcome, &w, &EventOptions::default()));
        }
        all
    }

    fn snapshots(events: &[Event]) -> Vec<(u64, &[ServerSnapshot], Option<f64>, u64)> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::PoolSnapshot {
                    servers,
                    peak_ratio,
                    window_ms,
                    ..
                } => Some((e.at_ms, servers.as_slice(), *peak_ratio, *window_ms)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_snapshot_every_ten_seconds_with_the_window_figures_and_the_detectors_expected_shares() {
        let all = run(30, [100, 100, 400], [1, 1, 2], 20);
        let snaps = snapshots(&all);
        let times: Vec<u64> = snaps.iter().map(|s| s.0).collect();
        assert_eq!(times, [10_000, 20_000, 30_000]);
        let (_, servers, r, window_ms) = snaps[1];
        assert_eq!(window_ms, 10_000);
        let requests: Vec<u64> = servers.iter().map(|s| s.requests).collect();
        assert_eq!(requests, [1_000, 1_000, 4_000]);
        assert!((servers[2].share - 4.0 / 6.0).abs() < 1e-9);
        // Weights 1,1,2: the detector's expected shares, not the observed ones.
        let expected: Vec<f64> = servers.iter().map(|s| s.expected_share).collect();
        assert_eq!(expected, [0.25, 0.25, 0.5]);
        assert_eq!(servers[2].errors_5xx, 200);
        assert_eq!(servers[0].errors_5xx, 0);
        assert_eq!(servers[1].in_flight, 1);
        assert_eq!(servers[2].latency_ms, Some(30.0));
        assert_eq!(servers[0].state, "up");
        // R: app-3 takes 4/6 against its 1/2.
        let r = r.expect("judged");
        assert!((r - (4.0 / 6.0) / 0.5).abs() < 0.01, "R = {r}");
    }

    #[test]
    fn a_reload_cuts_the_snapshot_windows_so_none_mixes_before_and_after() {
        let all = run_reloading(30, [100, 100, 400], [1, 1, 2], 0, Some(15));
        let snaps = snapshots(&all);
        let times: Vec<(u64, u64)> = snaps.iter().map(|s| (s.0, s.3)).collect();
        // 10..14 written when the reload is seen at 15, then 14..20 and 20..30.
        assert_eq!(
            times,
            [
                (10_000, 10_000),
                (14_000, 4_000),
                (20_000, 6_000),
                (30_000, 10_000)
            ]
        );
        let requests: Vec<u64> = snaps[1].1.iter().map(|s| s.requests).collect();
        assert_eq!(requests, [400, 400, 1_600]);
        // Without the detector's verdict the expected shares are the weights'.
        let expected: Vec<f64> = snaps[1].1.iter().map(|s| s.expected_share).collect();
        assert_eq!(expected, [0.25, 0.25, 0.5]);
        assert_eq!(snaps[1].2, None);
        // Every request is in exactly one snapshot from 0 to 30 s.
        let total: u64 = snaps.iter().flat_map(|s| s.1).map(|s| s.requests).sum();
        assert_eq!(total, 600 * 30);
    }

    #[test]
    fn a_counter_that_restarts_counts_from_zero_not_as_a_huge_increase() {
        assert_eq!(increase(500, 20), 20);
        assert_eq!(increase(20, 500), 480);
    }

    #[test]
    fn changes_and_reloads_become_events_with_the_samples_source() {
        let change = ConfigChange {
            at_ms: 5_000,
            file: "haproxy.cfg".into(),
            previous: "aa".into(),
            version: "bb".into(),
            changes: vec!["pool app: ~ weight of server app-3: 1 → 8".into()],
            pools: vec!["app".into()],
            introduced: vec!["SKEW-001 warning line 12: weight 8".into()],
            max_shift_points: 41.0,
            shifts: vec!["app: app-3 33% → 80%".into()],
            risky: true,
            unreadable: None,
        };
        let outcome = Outcome {
            change: Some(change),
            reload: Some(Reload {
                at_ms: 6_000,
                previous: "pid 1".into(),
                generation: "pid 2".into(),
            }),
            ..Outcome::default()
        };
        let s = sample(6, Vec::new());
        let out = events(&outcome, &[&s], &EventOptions::default());
        assert_eq!(out.len(), 2, "{out:?}");
        match &out[0].kind {
            EventKind::ConfigChanged {
                source,
                introduced,
                max_shift_points,
                risky,
                ..
            } => {
                assert_eq!(source, "test");
                assert_eq!(introduced.len(), 1);
                assert_eq!(*max_shift_points, 41.0);
                assert!(*risky);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&out[1].kind, EventKind::Reloaded { generation, .. } if generation == "pid 2")
        );
    }
}
