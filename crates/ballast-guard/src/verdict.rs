//! The verdict: the `cause` statement every alert carries. It places the problem in a layer
//! (the load balancer's distribution or limits, one backend, the traffic), names the likely
//! trigger (a configuration change or reload that touched the pool shortly before), and lists
//! what the data rules out, in the words of the wrong turns outage reports describe: "request
//! rate is at its baseline: not a traffic surge"; "the other servers' latency is normal: not a
//! shared dependency such as the database". Only what the samples show is said.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use ballast_core::sample::{LatencyRun, PoolSample, Sample};

use crate::change::{ConfigChange, Reload, clock};
use crate::detect::{Finding, Layer, by_name};

/// What a cause statement may draw on.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The watched load balancer's samples, oldest first (minutes of them).
    pub history: &'a [Sample],
    /// How much of the end of the history is the detection window (the "now").
    pub window_ms: u64,
    pub changes: &'a [ConfigChange],
    pub reloads: &'a [Reload],
    /// A change or reload this long before an alert is named as its likely trigger.
    pub trigger_window_ms: u64,
}

/// The least history, before the window, that makes a baseline.
const BASELINE_MIN_MS: u64 = 20_000;

/// How far before the window the other servers' latency baseline reaches: the half minute
/// before, so a round costs the same whatever history is kept.
const LATENCY_BASELINE_MS: u64 = 30_000;

/// The cause statements of one round. What they draw on is the same for every finding of the
/// round (the request rate against its baseline, each pool's latency through the window), so it
/// is worked out once, when the first finding needs it: a troubled fleet has thousands.
pub struct Explainer<'a> {
    ctx: Context<'a>,
    traffic: OnceCell<Option<String>>,
    /// The latest sample's pools by name, for findings that name theirs.
    pools: OnceCell<HashMap<&'a str, usize>>,
    latency: RefCell<HashMap<String, Option<Rc<PoolLatency<'a>>>>>,
}

impl<'a> Explainer<'a> {
    pub fn new(ctx: Context<'a>) -> Self {
        Explainer {
            ctx,
            traffic: OnceCell::new(),
            pools: OnceCell::new(),
            latency: RefCell::new(HashMap::new()),
        }
    }

    /// The cause statement for one finding.
    pub fn explain(&self, f: &Finding) -> String {
        let ctx = &self.ctx;
        let mut out = format!("It is {}: {}.", f.layer.as_str(), f.summary());
        if f.layer == Layer::Traffic {
            out = format!("It is the traffic: {}.", f.summary());
        }
        if let Some(trigger) = trigger(f, ctx) {
            out.push_str(&format!(" Likely trigger: {trigger}."));
        }
        let ruled_out = self.rules_out(f).join("; ");
        let mut chars = ruled_out.chars();
        if let Some(first) = chars.next() {
            out.push_str(&format!(" {}{}.", first.to_uppercase(), chars.as_str()));
        }
        out
    }

    /// What the data rules out (or, when it does not, what it shows instead).
    pub fn rules_out(&self, f: &Finding) -> Vec<String> {
        let mut out = Vec::new();
        if f.layer != Layer::Traffic
            && let Some(t) = self.traffic.get_or_init(|| traffic(&self.ctx))
        {
            out.push(t.clone());
        }
        if let (Some(pool), Some(server)) = (&f.pool, &f.server)
            && let Some(l) = self.others_latency(pool, server)
        {
            out.push(l);
        }
        out
    }

    /// The other servers of the pool: is their latency what it was before the window?
    fn others_latency(&self, pool: &str, server: &str) -> Option<String> {
        let known = self.latency.borrow().get(pool).cloned();
        let latency = match known {
            Some(l) => l,
            None => {
                let pools = self.pools.get_or_init(|| {
                    self.ctx.history.last().map_or_else(HashMap::new, |last| {
                        let names = last.pools.iter().enumerate();
                        names.map(|(i, p)| (p.name.as_str(), i)).collect()
                    })
                });
                let l = pools
                    .get(pool)
                    .and_then(|&index| PoolLatency::of(index, &self.ctx))
                    .map(Rc::new);
                self.latency
                    .borrow_mut()
                    .insert(pool.to_string(), l.clone());
                l
            }
        }?;
        let place = latency.place(server);
        let now = latency.now.without(place)?;
        match latency.before.without(place) {
            Some(b) if now > 2.0 * b.max(1.0) => Some(format!(
                "the other servers are slower too ({now:.0} ms against {b:.0} ms before): a \
                 shared dependency may be involved"
            )),
            Some(b) => Some(format!(
                "the other servers' latency is normal ({now:.0} ms, {b:.0} ms before): not a \
                 shared dependency such as the database"
            )),
            None => None,
        }
    }
}

/// The cause statement for one finding (one finding's [`Explainer::explain`]).
pub fn explain(f: &Finding, ctx: &Context) -> String {
    Explainer::new(*ctx).explain(f)
}

/// A pool's latency through the window and through the half minute before it.
struct PoolLatency<'a> {
    /// The pool in the history's latest sample.
    latest: &'a PoolSample,
    now: Weighted,
    before: Weighted,
}

/// Latency weighted by requests over a stretch of samples: the pool's sums, and each server's
/// part of them by its place in the latest sample (so "the others" is the pool's minus one
/// server's).
struct Weighted {
    sum: f64,
    requests: u64,
    servers: Vec<(f64, u64)>,
}

impl Weighted {
    /// Each round's latency counts as often as the requests it answered, so a slow server
    /// that took few requests does not outweigh the fast ones that took most. `latest` is the
    /// pool in the history's last sample, at `hint` there.
    fn of(samples: &[Sample], latest: &PoolSample, hint: usize) -> Weighted {
        Self::from_run(samples, latest, hint).unwrap_or_else(|| Self::walk(samples, latest, hint))
    }

    /// From the latency sums at the stretch's two ends, when both are of one run with the
    /// latest sample's servers (the watcher's samples, mostly).
    fn from_run(samples: &[Sample], latest: &PoolSample, hint: usize) -> Option<Weighted> {
        let pool = latest.name.as_str();
        let first = by_name(&samples.first()?.pools, hint, pool, |p| &p.name)?;
        let last = by_name(&samples.last()?.pools, hint, pool, |p| &p.name)?;
        let (start, end) = (first.noted.latency.as_ref()?, last.noted.latency.as_ref()?);
        let one_run = start.since_ms == end.since_ms
            && crate::detect::same_layout(&[first, last, latest])
            && start.servers.len() == latest.servers.len()
            && end.servers.len() == latest.servers.len();
        if !one_run {
            return None;
        }
        let servers: Vec<(f64, u64)> = end
            .servers
            .iter()
            .zip(&start.servers)
            .map(|(e, s)| (e.0 - s.0, e.1.saturating_sub(s.1)))
            .collect();
        Some(Weighted {
            sum: servers.iter().map(|s| s.0).sum(),
            requests: servers.iter().map(|s| s.1).sum(),
            servers,
        })
    }

    /// Pair by pair through the stretch.
    fn walk(samples: &[Sample], latest: &PoolSample, hint: usize) -> Weighted {
        let mut w = Weighted {
            sum: 0.0,
            requests: 0,
            servers: vec![(0.0, 0); latest.servers.len()],
        };
        let pool = latest.name.as_str();
        for pair in samples.windows(2) {
            let (Some(old), Some(new)) = (
                by_name(&pair[0].pools, hint, pool, |p| &p.name),
                by_name(&pair[1].pools, hint, pool, |p| &p.name),
            ) else {
                continue;
            };
            let same_layout = crate::detect::same_layout(&[old, new]);
            let places_as_latest = crate::detect::same_layout(&[new, latest]);
            for (i, s) in new.servers.iter().enumerate() {
                let (Some(latency), Some(o)) = (
                    s.counted_latency_ms(),
                    crate::detect::server_in(old, i, &s.name, same_layout),
                ) else {
                    continue;
                };
                let n = s.requests.saturating_sub(o.requests);
                let part = latency * n as f64;
                w.sum += part;
                w.requests += n;
                let place = if places_as_latest {
                    Some(i)
                } else {
                    latest.servers.iter().position(|l| l.name == s.name)
                };
                if let Some(own) = place.and_then(|p| w.servers.get_mut(p)) {
                    own.0 += part;
                    own.1 += n;
                }
            }
        }
        w
    }

    /// The mean of every server but the one at `place` in the latest sample, if they answered
    /// anything.
    fn without(&self, place: Option<usize>) -> Option<f64> {
        let (own_sum, own_requests) = place
            .and_then(|p| self.servers.get(p).copied())
            .unwrap_or_default();
        let requests = self.requests - own_requests;
        (requests > 0).then(|| (self.sum - own_sum) / requests as f64)
    }
}

/// The samples a pool's latency is read from, as places in `history`: the first of the
/// baseline, and the last before the window of `window_ms` (where the window's pairs start,
/// and the baseline's end).
pub(crate) fn latency_span(history: &[Sample], window_ms: u64) -> Option<(usize, usize)> {
    let last = history.last()?;
    let window_start = last.at_ms.saturating_sub(window_ms);
    let split = history
        .partition_point(|s| s.at_ms < window_start)
        .saturating_sub(1);
    let split = split.min(history.len() - 1);
    let baseline_start = history[split].at_ms.saturating_sub(LATENCY_BASELINE_MS);
    let first = history[..split].partition_point(|s| s.at_ms < baseline_start);
    Some((first, split))
}

/// The latency sums [`Noted::latency`](ballast_core::sample::Noted) carries for `pool`, a
/// sample taken at `at_ms` whose gauges and layout are noted: `before`'s (the pool in the
/// sample before) carried on by one step, or a run begun here when there is no such sample or
/// its servers are not the same. `sums` is an array to reuse.
pub(crate) fn latency_run(
    before: Option<&PoolSample>,
    pool: &PoolSample,
    at_ms: u64,
    mut sums: Vec<(f64, u64)>,
) -> LatencyRun {
    sums.clear();
    let carried = before.and_then(|b| {
        let run = b.noted.latency.as_ref()?;
        let same = crate::detect::same_layout(&[b, pool])
            && run.servers.len() == pool.servers.len()
            && b.servers.len() == pool.servers.len()
            && pool.noted.gauges.len() == pool.servers.len();
        same.then_some((b, run))
    });
    let Some((before, run)) = carried else {
        sums.resize(pool.servers.len(), (0.0, 0));
        return LatencyRun {
            since_ms: at_ms,
            servers: sums,
        };
    };
    // The step the walk over the samples takes ([`Weighted::walk`]): a server's latency now
    // times the requests it answered since the sample before.
    sums.extend(pool.servers.iter().enumerate().map(|(i, s)| {
        let (sum, requests) = run.servers[i];
        let latency = pool.noted.gauges[i].latency_ms;
        if latency < 0.0 {
            return (sum, requests);
        }
        let old = before
            .noted
            .counters
            .get(i)
            .map_or(before.servers[i].requests, |c| c.requests);
        let n = s.requests.saturating_sub(old);
        (sum + latency * n as f64, requests + n)
    }));
    LatencyRun {
        since_ms: run.since_ms,
        servers: sums,
    }
}

impl<'a> PoolLatency<'a> {
    /// Pool `hint` of the history's latest sample.
    fn of(hint: usize, ctx: &Context<'a>) -> Option<PoolLatency<'a>> {
        let last = ctx.history.last()?;
        let latest = last.pools.get(hint)?;
        let (first, split) = latency_span(ctx.history, ctx.window_ms)?;
        Some(PoolLatency {
            latest,
            now: Weighted::of(&ctx.history[split..], latest, hint),
            before: Weighted::of(&ctx.history[first..=split], latest, hint),
        })
    }

    /// Where `server` is in the latest sample.
    fn place(&self, server: &str) -> Option<usize> {
        self.latest.servers.iter().position(|s| s.name == server)
    }
}

/// The latest configuration change touching the finding's pool (or any reload) within the
/// trigger window before the latest sample.
pub fn trigger(f: &Finding, ctx: &Context) -> Option<String> {
    // A change alert is its own trigger.
    if f.rule == "ConfigChangeRisky" {
        return None;
    }
    let now = ctx.history.last()?.at_ms;
    let recent = |at: u64| at <= now && now - at <= ctx.trigger_window_ms;
    let change = ctx
        .changes
        .iter()
        .rev()
        .filter(|c| recent(c.at_ms))
        .find(|c| {
            f.pool
                .as_ref()
                .is_none_or(|p| c.pools.iter().any(|x| x == p))
        });
    let reload = ctx.reloads.iter().rev().find(|r| recent(r.at_ms));
    match (change, reload) {
        (Some(c), Some(r)) if r.at_ms >= c.at_ms => Some(format!(
            "{}, live since the reload of {}",
            c.headline(),
            clock(r.at_ms)
        )),
        (Some(c), _) => Some(c.headline()),
        (None, Some(r)) => Some(format!(
            "the reload of {} (generation {} → {})",
            clock(r.at_ms),
            r.previous,
            r.generation
        )),
        (None, None) => None,
    }
}

/// The whole load balancer's request rate now against its own baseline.
fn traffic(ctx: &Context) -> Option<String> {
    let last = ctx.history.last()?;
    let now = last.at_ms;
    let window_start = now.saturating_sub(ctx.window_ms);
    let first = ctx.history.first()?;
    let at_window = ctx.history.iter().find(|s| s.at_ms >= window_start)?;
    if at_window.at_ms.saturating_sub(first.at_ms) < BASELINE_MIN_MS {
        return None;
    }
    let rate = |a: &Sample, b: &Sample| -> Option<f64> {
        let dt = b.at_ms.checked_sub(a.at_ms).filter(|&d| d > 0)? as f64 / 1000.0;
        let (ta, tb) = (total_requests(a), total_requests(b));
        Some(tb.checked_sub(ta)? as f64 / dt)
    };
    let current = rate(at_window, last)?;
    let baseline = rate(first, at_window)?;
    if baseline < 1.0 && current < 1.0 {
        return None;
    }
    let ratio = if baseline > 0.0 {
        current / baseline
    } else {
        f64::INFINITY
    };
    Some(if ratio > 2.0 {
        format!(
            "request rate is {:.1}× its baseline ({} against {}): a traffic surge contributes",
            ratio,
            per_second(current),
            per_second(baseline)
        )
    } else if ratio < 0.5 {
        format!(
            "request rate fell to {} from a baseline of {}: less traffic reaches the load balancer",
            per_second(current),
            per_second(baseline)
        )
    } else {
        format!(
            "request rate is {}, at its baseline of {}: not a traffic surge",
            per_second(current),
            per_second(baseline)
        )
    })
}

fn total_requests(s: &Sample) -> u64 {
    s.pools
        .iter()
        .flat_map(|p| &p.servers)
        .map(|x| x.requests)
        .sum()
}

fn per_second(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}/s")
    } else {
        format!("{rate:.1}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Figures, Level, Text};
    use ballast_core::sample::{PoolSample, Promise, ResponseClasses, ServerSample, ServerState};

    /// Samples every second for `secs`: each server gains `rate` requests a second, with
    /// `latency` ms, and after `hot_from` s app-3 gains `hot_rate` instead.
    fn history(secs: u64, rate: u64, hot_from: u64, hot_rate: u64, latency: f64) -> Vec<Sample> {
        let mut counts = [0u64; 3];
        (0..=secs)
            .map(|t| {
                if t > 0 {
                    for (i, c) in counts.iter_mut().enumerate() {
                        *c += if i == 2 && t > hot_from {
                            hot_rate
                        } else {
                            rate
                        };
                    }
                }
                Sample {
                    at_ms: 1_000_000 + t * 1000,
                    source: "haproxy".into(),
                    instance: "x".into(),
                    pools: vec![PoolSample {
                        noted: Default::default(),
                        predicted: None,
                        name: "app".into(),
                        promise: Promise::RequestShares,
                        queued: 0,
                        servers: (0..3)
                            .map(|i| ServerSample {
                                state_for_s: None,
                                name: format!("app-{}", i + 1),
                                requests: counts[i],
                                active: 1,
                                queued: 0,
                                max_connections: None,
                                max_queue: None,
                                weight: 1,
                                state: ServerState::Up,
                                backup: false,
                                responses: ResponseClasses::default(),
                                latency_ms: Some(latency),
                            })
                            .collect(),
                    }],
                    frontends: Vec::new(),
                    process: None,
                    ..Default::default()
                }
            })
            .collect()
    }

    fn skew() -> Finding {
        Finding {
            rule: "PoolSkewed",
            level: Level::Critical,
            layer: Layer::Distribution,
            pool: Some("app".into()),
            server: Some("app-3".into()),
            text: Text::written("pool app sends 60% of its requests to app-3", ""),
            figures: Figures::new(),
        }
    }

    fn change(at_ms: u64, pools: &[&str]) -> ConfigChange {
        ConfigChange {
            at_ms,
            file: "/etc/haproxy/haproxy.cfg".into(),
            previous: "a".into(),
            version: "b".into(),
            changes: vec!["pool app: ~ weight of server app-3: 1 → 8".into()],
            pools: pools.iter().map(|p| p.to_string()).collect(),
            introduced: Vec::new(),
            max_shift_points: 47.0,
            shifts: Vec::new(),
            risky: true,
            unreadable: None,
        }
    }

    #[test]
    fn a_skew_at_steady_traffic_after_a_change_names_the_change_and_rules_out_a_surge() {
        // 100/s per server for 50 s, then app-3 takes 200/s: the total rises by a third, well
        // within what "at its baseline" allows.
        let h = history(60, 100, 50, 200, 3.0);
        let changes = [change(1_000_000 + 49_000, &["app"])];
        let ctx = Context {
            history: &h,
            window_ms: 5_000,
            changes: &changes,
            reloads: &[],
            trigger_window_ms: 900_000,
        };
        let cause = explain(&skew(), &ctx);
        assert!(
            cause.starts_with("It is the load balancer's distribution: pool app"),
            "{cause}"
        );
        assert!(
            cause.contains("Likely trigger: the configuration change of"),
            "{cause}"
        );
        assert!(cause.contains("weight of server app-3: 1 → 8"), "{cause}");
        assert!(cause.contains("at its baseline"), "{cause}");
        assert!(
            cause.contains(". Request rate is "),
            "a sentence of its own: {cause}"
        );
        assert!(cause.contains("not a traffic surge"), "{cause}");
        assert!(
            cause.contains("the other servers' latency is normal (3 ms, 3 ms before)"),
            "{cause}"
        );
    }

    #[test]
    fn the_other_servers_latency_is_weighed_by_their_requests() {
        // app-1 answers 900 requests a second in 2 ms, app-2 10 a second in 200 ms: the
        // requests saw about 4 ms, not the 101 ms of an unweighted mean.
        let mut h = history(60, 0, 60, 0, 0.0);
        for (t, s) in h.iter_mut().enumerate() {
            let servers = &mut s.pools[0].servers;
            servers[0].requests = 900 * t as u64;
            servers[0].latency_ms = Some(2.0);
            servers[1].requests = 10 * t as u64;
            servers[1].latency_ms = Some(200.0);
        }
        let ctx = Context {
            history: &h,
            window_ms: 5_000,
            changes: &[],
            reloads: &[],
            trigger_window_ms: 900_000,
        };
        let said = Explainer::new(ctx)
            .others_latency("app", "app-3")
            .expect("a latency statement");
        assert!(said.contains("(4 ms, 4 ms before)"), "{said}");
    }

    #[test]
    fn a_change_to_another_pool_or_long_ago_is_not_the_trigger() {
        let h = history(60, 100, 50, 100, 3.0);
        let changes = [
            change(1_000_000 + 49_000, &["other"]),
            change(1_000_000 - 1_000_000, &["app"]),
        ];
        let ctx = Context {
            history: &h,
            window_ms: 5_000,
            changes: &changes,
            reloads: &[],
            trigger_window_ms: 900_000,
        };
        assert_eq!(trigger(&skew(), &ctx), None);
    }

    #[test]
    fn a_surge_is_said_to_contribute() {
        let h = history(60, 100, 50, 1_000, 3.0);
        let ctx = Context {
            history: &h,
            window_ms: 5_000,
            changes: &[],
            reloads: &[],
            trigger_window_ms: 900_000,
        };
        let cause = explain(&skew(), &ctx);
        assert!(cause.contains("a traffic surge contributes"), "{cause}");
    }

    #[test]
    fn without_a_baseline_nothing_is_ruled_out() {
        let h = history(10, 100, 5, 300, 3.0);
        let ctx = Context {
            history: &h,
            window_ms: 5_000,
            changes: &[],
            reloads: &[],
            trigger_window_ms: 900_000,
        };
        assert!(!explain(&skew(), &ctx).contains("baseline"));
    }

    #[test]
    fn the_latency_sums_noted_on_arrival_read_a_stretch_as_the_walk_does() {
        // 80 s of three servers with changing latencies, through a watcher: app-2 reports no
        // latency for a while, app-1's counter resets at 40 s, the pool is missing at 30 s and
        // app-3 is renamed at 60 s (each of the last two breaks the run).
        let mut h = history(80, 50, 80, 50, 0.0);
        for (t, s) in h.iter_mut().enumerate() {
            let servers = &mut s.pools[0].servers;
            for (i, server) in servers.iter_mut().enumerate() {
                server.latency_ms = Some(1.0 + (t * (i + 2) % 17) as f64);
                server.requests += (t * t * (i + 1)) as u64 % 23 * t as u64;
            }
            if (10..15).contains(&t) {
                servers[1].latency_ms = None;
            }
            if t >= 40 {
                servers[0].requests -= 1_500;
            }
            if t >= 60 {
                servers[2].name = "app-9".into();
            }
        }
        h[30].pools[0].name = "elsewhere".into();
        let mut watcher = crate::watch::Watcher::new("haproxy", "x", Default::default());
        for sample in h {
            watcher.take(sample);
        }
        let noted: Vec<Sample> = watcher.history().cloned().collect();
        let latest = &noted.last().unwrap().pools[0];
        let (mut from_runs, mut walked) = (0, 0);
        for a in 0..noted.len() {
            for b in a + 1..noted.len() {
                let stretch = &noted[a..=b];
                let walk = Weighted::walk(stretch, latest, 0);
                let Some(run) = Weighted::from_run(stretch, latest, 0) else {
                    walked += 1;
                    continue;
                };
                from_runs += 1;
                assert_eq!(run.requests, walk.requests, "{a}..={b}");
                assert!((run.sum - walk.sum).abs() < 1e-6, "{a}..={b}");
                for (r, w) in run.servers.iter().zip(&walk.servers) {
                    assert_eq!(r.1, w.1, "{a}..={b}");
                    assert!((r.0 - w.0).abs() < 1e-6, "{a}..={b}");
                }
            }
        }
        // The run since the rename reaches back to 60 s, and the sums are kept as far back as
        // the baseline reads (35 s); stretches across the rename are walked.
        assert!(from_runs >= 100, "{from_runs} read from the sums");
        assert!(walked > 1_000, "{walked} walked");
        // The window the explainer reads is read from the sums; its baseline, across the
        // rename, is walked.
        let (first, split) = latency_span(&noted, 5_000).unwrap();
        assert!(Weighted::from_run(&noted[split..], latest, 0).is_some());
        assert!(Weighted::from_run(&noted[first..=split], latest, 0).is_none());
    }
}
