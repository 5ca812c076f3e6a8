//! Distribution: does a pool spread its traffic the way its algorithm promises?
//!
//! Over a window (the samples of one pool, oldest first) each candidate server's observed
//! figure is set against its expected share (its live weight over the candidates' total) and
//! judged by the weight-normalised peak ratio R (`ballast-core::distribution`). What is judged
//! depends on the promise: round-robin and weighted random promise request shares, so the
//! requests sent in the window are counted and the verdict is gated by a χ² test; least
//! connections and power-of-two promise even concurrency per weight (a slow server rightly gets
//! fewer requests there), so the in-flight counts summed over the window's samples are judged,
//! and the request figure is kept as information only. Hashing pools follow their keys, so
//! they are judged on requests with a wider band; `first` fills servers in order and is left
//! to the saturation detector. Below a volume floor the answer is "not enough traffic", never
//! an alert.

use ballast_core::distribution::{Evenness, evenness};
use ballast_core::sample::{PoolSample, Promise, Sample, ServerSample};

use super::window::{Rise, ServerWindow};
use super::{Figures, Finding, Layer, Text, pool_series};

/// When a pool's spread is worth an alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// R above which a pool is skewed (a warning).
    pub warning: f64,
    /// R above which it is badly skewed (critical).
    pub critical: f64,
    /// The χ² p-value below which a request skew is not chance.
    pub p_value: f64,
    /// The fewest requests (or summed in-flight counts) in a window worth judging.
    pub min_volume: u64,
    /// The smallest expected count per server worth judging (the χ² test needs 5).
    pub min_expected: f64,
    /// How much wider the band is for pools whose shares follow their keys.
    pub key_dependent_widening: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warning: 1.5,
            critical: 2.0,
            p_value: 0.001,
            min_volume: 100,
            min_expected: 5.0,
            key_dependent_widening: 1.25,
        }
    }
}

/// What a pool's spread is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Requests the balancer sent in the window.
    Requests,
    /// In-flight requests, summed over the window's samples.
    Concurrency,
}

pub use super::Level;
use super::RuleSpec;

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[RuleSpec {
    alertname: "PoolSkewed",
    layer: Layer::Distribution,
    // Three consecutive one-second rounds: one noisy window never pages.
    for_ms: 2_000,
    meaning: "One server of the pool takes more than its share of what the pool's algorithm \
        promises to spread (requests for round-robin, random and hashing; requests in flight \
        for least-connections and power-of-two), by more than the threshold (R > 1.5 warning, \
        R > 2 critical), and a χ² test says it is not chance. The hot server is the `server` \
        label.",
    response: "Compare the live weights and states with the configuration (`show servers \
        state`, `/status`): a weight changed at runtime, a server drained or in maintenance, a \
        backup taking traffic. For a hashing pool, look at the key: one client address behind \
        a proxy, a header or cookie with one value. If the alert names a configuration change \
        as the trigger, `ballast diff` the two versions and revert the change; `ballast \
        simulate` the fixed file before deploying it.",
}];

/// Every pool of the window's latest sample, judged over the samples that have it.
pub fn judge_all(window: &[Sample], thresholds: &Thresholds) -> Vec<PoolDistribution> {
    let Some(latest) = window.last() else {
        return Vec::new();
    };
    latest
        .pools
        .iter()
        .enumerate()
        .filter_map(|(index, pool)| judge(&pool_series(window, index, &pool.name), thresholds))
        .collect()
}

/// The findings of a window: a `PoolSkewed` for each skewed pool, naming the hot server.
pub fn detect(window: &[Sample], thresholds: &Thresholds) -> Vec<Finding> {
    judge_all(window, thresholds)
        .iter()
        .filter_map(finding)
        .collect()
}

/// The finding for a skewed pool, `None` for every other verdict.
pub fn finding(d: &PoolDistribution) -> Option<Finding> {
    let Verdict::Skewed {
        level,
        server,
        share,
        expected,
        evenness,
    } = &d.verdict
    else {
        return None;
    };
    let what = match d.measure {
        Measure::Requests => "requests",
        Measure::Concurrency => "requests in flight",
    };
    let gate = match d.measure {
        Measure::Requests => format!(", χ² p = {:.1e}", evenness.chi2_p),
        Measure::Concurrency => String::new(),
    };
    let figures = Figures::from([
        ("peak_ratio", evenness.peak_ratio),
        ("share", *share),
        ("expected", *expected),
        ("jain", evenness.jain),
        ("chi2_p", evenness.chi2_p),
    ]);
    Some(Finding {
        rule: "PoolSkewed",
        level: *level,
        layer: Layer::Distribution,
        pool: Some(d.pool.clone()),
        server: Some(server.clone()),
        text: Text::written(
            format!(
                "pool {} sends {:.0}% of its {what} to {server}, {:.1}× its share of {:.0}%",
                d.pool,
                share * 100.0,
                evenness.peak_ratio,
                expected * 100.0
            ),
            format!(
                "The pool's algorithm promises {}; over the window {server} took {:.1}% of the \
             {what} against the {:.1}% {} (R = {:.2}, Jain's index {:.2}{gate}).",
                d.promise.as_str(),
                share * 100.0,
                expected * 100.0,
                if d.keyed {
                    "the keys seen predict for it through nginx's own hash: the balancer does not \
                 send the keys where its algorithm does (a server it took out, another \
                 configuration running)"
                } else {
                    "its live weight gives it"
                },
                evenness.peak_ratio,
                evenness.jain
            ),
        ),
        figures,
    })
}

/// The verdict on one pool over one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The algorithm promises no even spread (`first`), or fewer than two servers compete.
    NotJudged { reason: String },
    /// Too little traffic to tell skew from chance.
    NotEnoughTraffic { observed: u64, needed: u64 },
    /// As promised.
    AsPromised { evenness: Evenness },
    /// One server takes more than its share.
    Skewed {
        level: Level,
        server: String,
        /// Its share of the window's figure, and the share its weight promises.
        share: f64,
        expected: f64,
        evenness: Evenness,
    },
}

/// A pool's distribution over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolDistribution {
    pub pool: String,
    pub promise: Promise,
    pub measure: Measure,
    pub verdict: Verdict,
    /// The other measure, shown and never alerted on (requests of a least-connections pool).
    pub information: Option<Evenness>,
    /// Each server's expected share (a candidate's live weight over the candidates' total; 0
    /// for a server out of rotation), one per server of the latest sample, in its order: a
    /// fleet round judges every pool, and naming each server again would cost a string per
    /// server. Empty when the pool is not judged on shares (`first`). The event log's pool
    /// snapshots take their expected shares from here, so they agree with the verdict.
    pub expected_shares: Vec<f64>,
    /// Judged against the shares its keys predict (a hashing pool whose keys are visible),
    /// not its weights.
    pub keyed: bool,
}

/// Judges one pool over `window`: its samples, oldest first, all of the same pool.
pub fn judge(window: &[&PoolSample], thresholds: &Thresholds) -> Option<PoolDistribution> {
    judge_servers(window, &super::window::servers(window), thresholds)
}

/// [`judge`] with the pool's servers through the window already reduced
/// (`window::servers_into`), as the watcher's round shares them with the error detector.
pub(crate) fn judge_servers(
    window: &[&PoolSample],
    servers: &[ServerWindow],
    thresholds: &Thresholds,
) -> Option<PoolDistribution> {
    let last = window.last()?;
    let promise = last.promise;
    let measure = match promise {
        Promise::Concurrency => Measure::Concurrency,
        _ => Measure::Requests,
    };
    let done = |verdict| PoolDistribution {
        pool: last.name.clone(),
        promise,
        measure,
        verdict,
        information: None,
        expected_shares: Vec::new(),
        keyed: false,
    };
    if promise == Promise::FillInOrder {
        return Some(done(Verdict::NotJudged {
            reason: "`first` fills servers in order: its shares are not meant to be even".into(),
        }));
    }
    let candidates = candidates_of(servers);
    let total_weight: u64 = candidates.iter().map(|c| u64::from(c.now.weight)).sum();
    let expected = |c: &Candidate| f64::from(c.now.weight) / total_weight.max(1) as f64;
    let mut expected_shares = vec![0.0; last.servers.len()];
    for c in &candidates {
        expected_shares[c.index] = expected(c);
    }
    let done = move |verdict| PoolDistribution {
        expected_shares,
        ..done(verdict)
    };
    if candidates.len() < 2 {
        return Some(done(Verdict::NotJudged {
            reason: format!(
                "{} server(s) in rotation for the whole window: nothing to compare",
                candidates.len()
            ),
        }));
    }
    // Weights that changed within the window promise two things at once: judge the next one.
    if candidates.iter().any(|c| c.weight_changed) {
        return Some(done(Verdict::NotJudged {
            reason: "a weight changed in this window".into(),
        }));
    }
    // A hashing pool whose keys the source sees is judged on what they predict, with the
    // normal band: the balancer's fidelity to its keys. What the keys themselves do to the
    // shares is the key detector's (`PoolKeyConcentrated`).
    if promise == Promise::KeyDependent
        && let Some(predicted) = super::keys::predicted_increase(window, &candidates, thresholds)
    {
        return Some(judge_on_keys(done, candidates, &predicted, thresholds));
    }
    if candidates.iter().any(|c| c.sent.is_none()) {
        return Some(done(Verdict::NotJudged {
            reason: "the request counters restarted in this window (a reload)".into(),
        }));
    }
    // (count, expected share) of the measure judged and of the other one, built together.
    type Pairs = Vec<(u64, f64)>;
    let (judged, other): (Pairs, Pairs) = candidates
        .iter()
        .map(|c| {
            let (sent, in_flight) = (c.sent.unwrap_or(0), c.in_flight);
            let e = expected(c);
            match measure {
                Measure::Requests => ((sent, e), (in_flight, e)),
                Measure::Concurrency => ((in_flight, e), (sent, e)),
            }
        })
        .unzip();
    let mut result = done(verdict(
        &judged,
        &candidates,
        measure,
        widening(promise, thresholds),
        thresholds,
    ));
    let other_total: u64 = other.iter().map(|o| o.0).sum();
    result.information = (other_total > 0).then(|| evenness(&other));
    Some(result)
}

/// A hashing pool judged against the shares its keys predict: the servers the keys send
/// nothing to are left out (nothing is promised to them), and one server left is not judged.
fn judge_on_keys(
    done: impl FnOnce(Verdict) -> PoolDistribution,
    candidates: Vec<Candidate>,
    predicted: &[u64],
    thresholds: &Thresholds,
) -> PoolDistribution {
    let total: u64 = predicted.iter().sum();
    let Some(sent): Option<Vec<u64>> = candidates.iter().map(|c| c.sent).collect() else {
        return done(Verdict::NotJudged {
            reason: "the request counters restarted in this window (a reload)".into(),
        });
    };
    let (judged, kept): (Vec<(u64, f64)>, Vec<Candidate>) = candidates
        .into_iter()
        .zip(sent.iter().zip(predicted))
        .filter(|(_, (_, p))| **p > 0)
        .map(|(c, (s, p))| ((*s, *p as f64 / total as f64), c))
        .unzip();
    if kept.len() < 2 {
        return done(Verdict::NotJudged {
            reason: format!(
                "the window's keys all hash to {}: the shares are what the keys say",
                kept.first().map_or("one server", |c| c.now.name.as_str())
            ),
        });
    }
    let mut result = done(verdict(&judged, &kept, Measure::Requests, 1.0, thresholds));
    result.keyed = true;
    result
}

/// A candidate server's figures over the window, gathered in one pass over its samples.
pub(crate) struct Candidate<'a> {
    /// The server in the window's latest sample (its name and live weight), at `index` there.
    pub(crate) now: &'a ServerSample,
    index: usize,
    /// Requests sent in the window; `None` when the counter went down (a reload).
    sent: Option<u64>,
    /// Its in-flight counts summed over the window's samples.
    in_flight: u64,
    /// Its weight was not the same in every sample of the window.
    weight_changed: bool,
}

/// The servers that compete for traffic throughout the window: in rotation (up, weight above
/// 0) in every sample, from the primary tier unless no primary is, as the balancers choose.
pub(crate) fn candidates<'a>(window: &[&'a PoolSample]) -> Vec<Candidate<'a>> {
    candidates_of(&super::window::servers(window))
}

/// [`candidates`] from the pool's servers through the window (`window::servers_into`).
pub(crate) fn candidates_of<'a>(servers: &[ServerWindow<'a>]) -> Vec<Candidate<'a>> {
    let mut live = Vec::with_capacity(servers.len());
    live.extend(servers.iter().filter(|s| s.in_rotation).map(|s| Candidate {
        now: s.now,
        index: s.index,
        sent: match s.requests {
            Rise::Rose(sent) => Some(sent),
            // One sample: nothing sent yet.
            Rise::Unknown => Some(0),
            // A counter that went down restarted (a reload): the window says nothing.
            Rise::Restarted => None,
        },
        in_flight: s.in_flight,
        weight_changed: s.weight_changed,
    }));
    if live.iter().any(|c| !c.now.backup) {
        live.retain(|c| !c.now.backup);
    }
    live
}

fn widening(promise: Promise, t: &Thresholds) -> f64 {
    if promise == Promise::KeyDependent {
        t.key_dependent_widening
    } else {
        1.0
    }
}

fn verdict(
    observed: &[(u64, f64)],
    servers: &[Candidate],
    measure: Measure,
    widening: f64,
    t: &Thresholds,
) -> Verdict {
    let total: u64 = observed.iter().map(|o| o.0).sum();
    let smallest_share = observed.iter().map(|o| o.1).fold(1.0, f64::min);
    // Enough for the volume floor and for every server's expected count.
    let needed = t
        .min_volume
        .max((t.min_expected / smallest_share).ceil() as u64);
    if total < needed {
        return Verdict::NotEnoughTraffic {
            observed: total,
            needed,
        };
    }
    let e = evenness(observed);
    // Summed in-flight counts are not independent draws: R alone judges concurrency.
    let significant = measure == Measure::Concurrency || e.chi2_p < t.p_value;
    let level = if e.peak_ratio > t.critical * widening {
        Some(Level::Critical)
    } else if e.peak_ratio > t.warning * widening {
        Some(Level::Warning)
    } else {
        None
    };
    match level.filter(|_| significant) {
        Some(level) => {
            let (count, expected) = observed[e.peak_index];
            Verdict::Skewed {
                level,
                server: servers[e.peak_index].now.name.clone(),
                share: count as f64 / total as f64,
                expected,
                evenness: e,
            }
        }
        None => Verdict::AsPromised { evenness: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_core::sample::{ResponseClasses, ServerState};

    fn server(name: &str, weight: u32, requests: u64, active: u64) -> ServerSample {
        ServerSample {
            state_for_s: None,
            name: name.into(),
            requests,
            active,
            queued: 0,
            max_connections: None,
            max_queue: None,
            weight,
            state: ServerState::Up,
            backup: false,
            responses: ResponseClasses::default(),
            latency_ms: None,
        }
    }

    fn pool(promise: Promise, servers: Vec<ServerSample>) -> PoolSample {
        PoolSample {
            noted: Default::default(),
            predicted: None,
            name: "app".into(),
            promise,
            servers,
            queued: 0,
        }
    }

    /// A window of `rounds` samples in which each server gains `rate[i]` requests per round
    /// (plus a small deterministic, increasing wobble) and holds `active[i]` in flight.
    fn series(
        promise: Promise,
        weights: &[u32],
        rate: &[u64],
        active: &[u64],
        rounds: u64,
    ) -> Vec<PoolSample> {
        (0..=rounds)
            .map(|t| {
                pool(
                    promise,
                    weights
                        .iter()
                        .enumerate()
                        .map(|(i, &w)| {
                            // Uneven but never decreasing, as a real counter.
                            let wobble = t * (i as u64 + 1) / 4;
                            server(&format!("s{i}"), w, rate[i] * t + wobble, active[i])
                        })
                        .collect(),
                )
            })
            .collect()
    }

    fn run(samples: &[PoolSample]) -> PoolDistribution {
        let window: Vec<&PoolSample> = samples.iter().collect();
        judge(&window, &Thresholds::default()).expect("a window")
    }

    #[test]
    fn an_even_round_robin_pool_is_as_promised() {
        let s = series(
            Promise::RequestShares,
            &[1, 1, 1],
            &[100, 100, 100],
            &[3, 3, 3],
            10,
        );
        let d = run(&s);
        assert!(matches!(d.verdict, Verdict::AsPromised { .. }), "{d:?}");
        assert_eq!(d.measure, Measure::Requests);
    }

    #[test]
    fn weights_are_the_promise_not_equal_shares() {
        let s = series(Promise::RequestShares, &[3, 1], &[300, 100], &[1, 1], 10);
        assert!(matches!(run(&s).verdict, Verdict::AsPromised { .. }));
    }

    #[test]
    fn one_server_taking_most_requests_is_skewed_and_named() {
        // Weights 1:1:1, but s2 gets 8 of every 10 requests: R = 0.8 / (1/3) = 2.4.
        let s = series(
            Promise::RequestShares,
            &[1, 1, 1],
            &[10, 10, 80],
            &[1, 1, 8],
            10,
        );
        match run(&s).verdict {
            Verdict::Skewed {
                level,
                server,
                share,
                expected,
                evenness,
            } => {
                assert_eq!(level, Level::Critical);
                assert_eq!(server, "s2");
                assert!((share - 0.8).abs() < 0.01, "{share}");
                assert!((expected - 1.0 / 3.0).abs() < 1e-9);
                assert!(evenness.peak_ratio > 2.0 && evenness.chi2_p < 1e-6);
            }
            other => panic!("{other:?}"),
        }
        // 1.6 × its share is a warning.
        let s = series(Promise::RequestShares, &[1, 1], &[20, 80], &[1, 1], 10);
        assert!(matches!(
            run(&s).verdict,
            Verdict::Skewed {
                level: Level::Warning,
                ..
            }
        ));
    }

    #[test]
    fn little_traffic_is_not_enough_to_tell() {
        let s = series(
            Promise::RequestShares,
            &[1, 1, 1],
            &[1, 1, 5],
            &[0, 0, 1],
            5,
        );
        assert!(
            matches!(run(&s).verdict, Verdict::NotEnoughTraffic { .. }),
            "{:?}",
            run(&s)
        );
    }

    #[test]
    fn least_connections_is_judged_on_concurrency_not_requests() {
        // A slow server (s1) rightly gets fewer requests while in-flight counts stay even:
        // no alert, and the request skew is kept as information.
        let s = series(Promise::Concurrency, &[1, 1], &[150, 50], &[10, 10], 10);
        let d = run(&s);
        assert_eq!(d.measure, Measure::Concurrency);
        assert!(matches!(d.verdict, Verdict::AsPromised { .. }), "{d:?}");
        assert!(d.information.is_some_and(|i| i.peak_ratio > 1.4));
        // A server hoarding connections is what it does not promise.
        let s = series(Promise::Concurrency, &[1, 1], &[100, 100], &[30, 3], 10);
        assert!(matches!(run(&s).verdict, Verdict::Skewed { .. }));
    }

    #[test]
    fn hashing_pools_have_a_wider_band() {
        // R = 1.6 would warn under round-robin; keys may make it.
        let s = series(Promise::KeyDependent, &[1, 1], &[20, 80], &[1, 1], 10);
        assert!(matches!(run(&s).verdict, Verdict::AsPromised { .. }));
        let s = series(
            Promise::KeyDependent,
            &[1, 1, 1, 1, 1],
            &[1, 1, 1, 1, 96],
            &[0, 0, 0, 0, 9],
            10,
        );
        assert!(matches!(run(&s).verdict, Verdict::Skewed { .. }));
        // One key value (every client behind one proxy address) on three servers: R = 3,
        // the outage the band must still catch, at critical.
        let s = series(
            Promise::KeyDependent,
            &[1, 1, 1],
            &[0, 0, 100],
            &[0, 0, 5],
            10,
        );
        assert!(
            matches!(
                run(&s).verdict,
                Verdict::Skewed {
                    level: Level::Critical,
                    ..
                }
            ),
            "{:?}",
            run(&s)
        );
        // Two servers and one key: R = 2, a warning.
        let s = series(Promise::KeyDependent, &[1, 1], &[0, 100], &[0, 5], 10);
        assert!(matches!(
            run(&s).verdict,
            Verdict::Skewed {
                level: Level::Warning,
                ..
            }
        ));
    }

    #[test]
    fn first_is_left_to_saturation() {
        let s = series(Promise::FillInOrder, &[1, 1], &[100, 0], &[5, 0], 10);
        assert!(matches!(run(&s).verdict, Verdict::NotJudged { .. }));
    }

    #[test]
    fn drained_down_and_backup_servers_are_not_candidates() {
        let mut s = series(
            Promise::RequestShares,
            &[1, 1, 1, 1],
            &[100, 100, 0, 0],
            &[1, 1, 0, 0],
            10,
        );
        for p in &mut s {
            p.servers[2].weight = 0; // drained
            p.servers[3].backup = true;
        }
        let d = run(&s);
        assert!(matches!(d.verdict, Verdict::AsPromised { .. }), "{d:?}");
        // A server down at any point of the window is left out of it.
        s[5].servers[1].state = ServerState::Down;
        assert!(matches!(run(&s).verdict, Verdict::NotJudged { .. }));
        // With every primary out, the backups are the pool.
        let mut b = series(
            Promise::RequestShares,
            &[1, 1, 1],
            &[0, 100, 100],
            &[0, 1, 1],
            10,
        );
        for p in &mut b {
            p.servers[0].state = ServerState::Down;
            p.servers[1].backup = true;
            p.servers[2].backup = true;
        }
        assert!(matches!(run(&b).verdict, Verdict::AsPromised { .. }));
    }

    #[test]
    fn a_counter_restart_judges_nothing() {
        let mut s = series(Promise::RequestShares, &[1, 1], &[100, 100], &[1, 1], 10);
        s[6].servers[0].requests = 3;
        assert!(matches!(run(&s).verdict, Verdict::NotJudged { .. }));
    }

    #[test]
    fn servers_are_followed_by_name_when_their_order_changes() {
        // s2 is hot; in the older samples the servers are listed in reverse, so looking them
        // up at their latest index finds the wrong server and the name must decide.
        let s = series(
            Promise::RequestShares,
            &[1, 1, 1],
            &[10, 10, 80],
            &[1, 1, 8],
            10,
        );
        let mut shuffled = s.clone();
        let latest = shuffled.len() - 1;
        for p in &mut shuffled[..latest] {
            p.servers.reverse();
        }
        let (plain, reordered) = (run(&s), run(&shuffled));
        assert!(
            matches!(&reordered.verdict, Verdict::Skewed { server, .. } if server == "s2"),
            "{reordered:?}"
        );
        assert_eq!(plain, reordered);
        // A server missing from an older sample (added mid-window) is no candidate.
        let mut added = s.clone();
        added[0].servers.remove(2);
        assert!(matches!(run(&added).verdict, Verdict::AsPromised { .. }));
    }
}
