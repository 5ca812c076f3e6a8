//! Errors and latency: 5xx ratios per pool and server, servers whose success rate or latency
//! stands out from their pool, pools with no server to take traffic, flapping servers.
//!
//! Responses are cumulative counters, so ratios are over the window's increase; a counter that
//! went down is a restart, and nothing is judged from that server (nor from its pool's total).
//! An error is a 5xx or a response with no status at all (`other`: a connection error, a
//! timeout, an abort). Below a volume floor a ratio is noise, never an alert.
//!
//! Outliers follow Envoy's success-rate rule (threshold = mean − 1.9·σ, servers with at least
//! 100 requests), with one change: each server is set against the mean and σ of the *other*
//! servers. Against statistics that include the server itself, no single server can ever lie
//! more than √(n−1) σ from the mean (Samuelson's inequality), so with 3 or 4 servers the rule
//! could never fire and with 5 only if the other four are identical. A floor on the gap (5
//! points of success rate, 50 ms of latency and twice the median) keeps a healthy pool's
//! noise, where σ of the others is tiny, from counting.

use ballast_core::sample::{PoolSample, ResponseClasses, Sample, ServerState};

use super::window::{Rise, ServerWindow};
use super::{
    Figures, Finding, Layer, Level, RuleSpec, ServerPlace, Text, Words, figures, percent, span,
    span_ms, span_of, whole,
};

/// When errors, outliers and flapping are worth an alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorThresholds {
    /// The error ratio (5xx and no-status over all responses) of a warning.
    pub warning_ratio: f64,
    /// The error ratio of a critical finding.
    pub critical_ratio: f64,
    /// The fewest responses in a window for a pool's or a server's ratio to be judged.
    pub min_responses: u64,
    /// k in mean − k·σ (success rate) and mean + k·σ (latency), as Envoy's outlier detection.
    pub outlier_stdev_factor: f64,
    /// The fewest servers with enough traffic for a pool to have outliers.
    pub outlier_min_servers: usize,
    /// The fewest responses a server needs in the window to count in the success-rate rule.
    pub outlier_min_responses: u64,
    /// How far below the others' mean success rate an outlier must be, at least (0.05 = 5
    /// points).
    pub outlier_min_gap: f64,
    /// The fewest requests a server needs in the window for its latency to count (an idle
    /// server's average is stale).
    pub latency_min_requests: u64,
    /// How many times the pool's median latency an outlier must reach, at least.
    pub latency_median_factor: f64,
    /// How many milliseconds above the pool's median an outlier must be, at least, so 1 ms
    /// against 2 ms is not an alert.
    pub latency_min_gap_ms: f64,
    /// How many up↔down changes in a window make a server flapping.
    pub flap_changes: usize,
}

impl Default for ErrorThresholds {
    fn default() -> Self {
        Self {
            warning_ratio: 0.05,
            critical_ratio: 0.20,
            min_responses: 100,
            outlier_stdev_factor: 1.9,
            outlier_min_servers: 3,
            outlier_min_responses: 100,
            outlier_min_gap: 0.05,
            latency_min_requests: 20,
            latency_median_factor: 2.0,
            latency_min_gap_ms: 50.0,
            flap_changes: 4,
        }
    }
}

pub const POOL_ERROR_RATE: &str = "PoolErrorRate";
pub const SERVER_ERROR_RATE: &str = "ServerErrorRate";
pub const SERVER_ERROR_OUTLIER: &str = "ServerErrorOutlier";
pub const SERVER_LATENCY_OUTLIER: &str = "ServerLatencyOutlier";
pub const POOL_ALL_DOWN: &str = "PoolAllServersDown";
pub const POOL_ALL_OUT: &str = "PoolAllServersOut";
pub const SERVER_FLAPPING: &str = "ServerFlapping";

const ONE_MINUTE_MS: u64 = 60 * 1000;

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[
    RuleSpec {
        alertname: POOL_ERROR_RATE,
        layer: Layer::Backend,
        // The published HAProxy rules: a 5% ratio over [1m], for 1m.
        for_ms: ONE_MINUTE_MS,
        meaning: "A pool answered 5% (warning) or 20% (critical) of its responses with a 5xx \
                  or no response at all, with at least 100 responses in the window. Placed in \
                  the backends, or in the balancer's limits when requests were queued (its own \
                  503s after the queue timeout count among them).",
        response: "See whether one server makes the errors (ServerErrorRate, \
                   ServerErrorOutlier: that server) or all do (a shared dependency, a bad \
                   deploy); with queues, see the saturation alerts first.",
    },
    RuleSpec {
        alertname: SERVER_ERROR_RATE,
        layer: Layer::Backend,
        for_ms: ONE_MINUTE_MS,
        meaning: "A server answered 5% (warning) or 20% (critical) of its responses with a 5xx \
                  or no response, with at least 100 responses in the window.",
        response: "Check the server's logs and health; drain it (`set server ... state drain`, \
                   weight 0) while the others have room.",
    },
    RuleSpec {
        alertname: SERVER_ERROR_OUTLIER,
        layer: Layer::Backend,
        for_ms: ONE_MINUTE_MS,
        meaning: "A server's success rate stands out below its pool's: under the other servers' \
                  mean − 1.9σ and 5 points below it (Envoy's outlier rule), with at least 3 \
                  servers of 100 responses. The others are healthy: not a shared dependency.",
        response: "That server alone is failing: drain it and look at it (its host, its deploy, \
                   its own dependencies).",
    },
    RuleSpec {
        alertname: SERVER_LATENCY_OUTLIER,
        layer: Layer::Backend,
        for_ms: ONE_MINUTE_MS,
        meaning: "A server's response time stands out above its pool's: over the other \
                  servers' mean + 1.9σ, at least twice the median and 50 ms above it. The other \
                  servers' latency is normal: not a shared dependency such as the database.",
        response: "That server is slow: check its host (CPU, disk, GC), its deploy; under \
                   least-connections it rightly gets fewer requests, under round-robin it \
                   queues. Drain it if it holds connections.",
    },
    RuleSpec {
        alertname: POOL_ALL_DOWN,
        layer: Layer::Backend,
        for_ms: 0,
        meaning: "No server of a pool takes traffic now, and at least one failed its health \
                  checks: every request to the pool fails (HAProxy 503, nginx \"no live \
                  upstreams\" 502).",
        response: "Bring a server back (the failed ones' health checks, logs); if they are \
                   down for a shared reason (network, dependency), fix that.",
    },
    RuleSpec {
        alertname: POOL_ALL_OUT,
        layer: Layer::Distribution,
        for_ms: 0,
        meaning: "No server of a pool takes traffic now, and none failed: all were taken out \
                  (maintenance, drain, weight 0) by an operator or a configuration change.",
        response: "Put a server back in rotation (`set server ... state ready`, its weight); \
                   look for the change that took the last one out.",
    },
    RuleSpec {
        alertname: SERVER_FLAPPING,
        layer: Layer::Backend,
        for_ms: 0,
        meaning: "A server went up and down 4 times or more in the window: its health checks \
                  see it failing intermittently, and each fall moves its traffic onto the rest.",
        response: "Check the server (overload near its limit, a crash loop) and its health \
                   check (too tight a timeout, `rise`/`fall` too low).",
    },
];

/// What holds for one load balancer's window, `window` its samples oldest first.
pub fn detect(window: &[Sample], thresholds: &ErrorThresholds) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(now) = window.last() else {
        return found;
    };
    let round = ErrorRound::new(window, thresholds);
    let mut series = Vec::with_capacity(window.len());
    let mut servers = Vec::new();
    for (index, pool) in now.pools.iter().enumerate() {
        super::pool_series_into(window, index, &pool.name, &mut series);
        super::window::servers_into(&series, &mut servers);
        round.pool(pool, &servers, &mut found);
    }
    found
}

/// The detector over one window, a pool at a time: [`detect`] runs it over every pool, and
/// the watcher's round runs it pool by pool beside the distribution detector, so each pool's
/// samples are read from memory once for both.
pub struct ErrorRound<'w> {
    window: &'w [Sample],
    over: String,
    over_ms: u64,
    thresholds: &'w ErrorThresholds,
}

impl<'w> ErrorRound<'w> {
    pub fn new(window: &'w [Sample], thresholds: &'w ErrorThresholds) -> Self {
        ErrorRound {
            window,
            over: span(window),
            over_ms: span_of(window),
            thresholds,
        }
    }

    /// Judges `pool` of the window's latest sample from `servers`, its servers through the
    /// pool's samples (`window::servers_into`).
    pub(crate) fn pool(
        &self,
        pool: &'w PoolSample,
        servers: &[ServerWindow<'w>],
        found: &mut Vec<Finding>,
    ) {
        let context = PoolContext {
            pool,
            over: &self.over,
            over_ms: self.over_ms,
            t: self.thresholds,
            answered_by_balancer: super::unreached::answered_by_balancer(self.window, &pool.name),
        };
        context.error_ratios(servers, found);
        context.success_outliers(servers, found);
        context.latency_outliers(servers, found);
        context.no_server(found);
        context.flapping(servers, found);
    }
}

/// A server's responses through the window, counted, when they rose.
fn counted(s: &ServerWindow) -> Option<Counted> {
    match &s.responses {
        Rise::Rose(r) => Some(Counted::of(r)),
        _ => None,
    }
}

/// Responses and errors over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counted {
    responses: u64,
    c5xx: u64,
    other: u64,
}

impl Counted {
    fn of(r: &ResponseClasses) -> Self {
        Counted {
            responses: r.by_class().into_iter().fold(0u64, u64::saturating_add),
            c5xx: r.c5xx,
            other: r.other,
        }
    }

    fn errors(&self) -> u64 {
        self.c5xx.saturating_add(self.other)
    }

    fn error_ratio(&self) -> f64 {
        if self.responses == 0 {
            0.0
        } else {
            self.errors() as f64 / self.responses as f64
        }
    }

    fn add(self, other: Counted) -> Counted {
        Counted {
            responses: self.responses.saturating_add(other.responses),
            c5xx: self.c5xx.saturating_add(other.c5xx),
            other: self.other.saturating_add(other.other),
        }
    }

    fn figures(&self) -> Figures {
        figures(&[
            ("responses", self.responses as f64),
            ("errors", self.errors() as f64),
            ("c5xx", self.c5xx as f64),
            ("other", self.other as f64),
            ("ratio", self.error_ratio()),
        ])
    }

    fn breakdown(&self) -> Breakdown {
        Breakdown(*self)
    }
}

/// "N errors of M responses: A 5xx, B with no response", written where it is formatted.
struct Breakdown(Counted);

impl std::fmt::Display for Breakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.0;
        write!(
            f,
            "{} errors of {} responses: {} 5xx, {} with no response",
            c.errors(),
            c.responses,
            c.c5xx,
            c.other
        )
    }
}

/// The mean and population standard deviation of all values but one, from their sum and sum
/// of squares (O(1) per server, so a pool of 50 costs no more than 50 steps).
fn others_mean_sd(sum: f64, sum_sq: f64, n: usize, x: f64) -> (f64, f64) {
    let m = (n - 1) as f64;
    let mean = (sum - x) / m;
    let variance = ((sum_sq - x * x) / m - mean * mean).max(0.0);
    (mean, variance.sqrt())
}

struct PoolContext<'a> {
    pool: &'a PoolSample,
    over: &'a str,
    /// The window's length, for words written later.
    over_ms: u64,
    t: &'a ErrorThresholds,
    /// The pool's requests the balancer failed itself in the window, no server reached
    /// (nginx's "no live upstreams" 502s): errors of the pool that no server counts.
    answered_by_balancer: u64,
}

impl PoolContext<'_> {
    fn level(&self, ratio: f64) -> Option<Level> {
        if ratio >= self.t.critical_ratio {
            Some(Level::Critical)
        } else if ratio >= self.t.warning_ratio {
            Some(Level::Warning)
        } else {
            None
        }
    }

    fn error_ratios(&self, servers: &[ServerWindow], found: &mut Vec<Finding>) {
        let name = &self.pool.name;
        for s in servers {
            let Some(c) = counted(s).filter(|c| c.responses >= self.t.min_responses) else {
                continue;
            };
            let Some(level) = self.level(c.error_ratio()) else {
                continue;
            };
            let over_ms = self.over_ms;
            found.push(Finding {
                rule: SERVER_ERROR_RATE,
                level,
                layer: Layer::Backend,
                pool: Some(name.clone()),
                server: Some(s.now.name.clone()),
                text: Text::later(move |f| {
                    let (place, over) = (f.place(), span_ms(over_ms));
                    Words {
                        summary: format!(
                            "{place} failed {} of its responses in the last {over}",
                            percent(c.error_ratio()),
                        ),
                        description: format!("{place}: {} in the last {over}.", c.breakdown()),
                    }
                }),
                figures: c.figures(),
            });
        }
        // The pool's total means nothing if any of its counters restarted.
        if servers.iter().any(|s| s.responses == Rise::Restarted) {
            return;
        }
        let local = self.answered_by_balancer;
        let total = servers
            .iter()
            .filter_map(counted)
            .fold(Counted::default(), Counted::add)
            .add(Counted {
                responses: local,
                c5xx: local,
                other: 0,
            });
        if total.responses < self.t.min_responses {
            return;
        }
        let Some(level) = self.level(total.error_ratio()) else {
            return;
        };
        let mut worst: Vec<(&str, Counted)> = servers
            .iter()
            .filter_map(|s| Some((s.now.name.as_str(), counted(s)?)))
            .filter(|(_, c)| c.errors() > 0)
            .collect();
        worst.sort_by(|a, b| b.1.errors().cmp(&a.1.errors()).then(a.0.cmp(b.0)));
        let worst: Vec<String> = worst
            .iter()
            .take(3)
            .map(|(n, c)| format!("{n} {} ({})", c.errors(), percent(c.error_ratio())))
            .collect();
        let queued = self.pool.queued + self.pool.servers.iter().map(|s| s.queued).sum::<u64>();
        // Requests waiting for a slot are dropped with the balancer's own 503: then the pool's
        // errors may be its limits, not its servers.
        let (layer, queue_note) = if queued > 0 {
            (
                Layer::Limits,
                format!(
                    " {queued} requests are queued: some 5xx may be the balancer's own 503s \
                     after its queue timeout."
                ),
            )
        } else {
            (Layer::Backend, String::new())
        };
        let mut figs = total.figures();
        figs.insert("queued", queued as f64);
        figs.insert("answered_by_balancer", local as f64);
        let worst = if local > 0 {
            let mut w = vec![format!("the balancer itself {local} (no server reached)")];
            w.extend(worst);
            w
        } else {
            worst
        };
        found.push(Finding {
            rule: POOL_ERROR_RATE,
            level,
            layer,
            pool: Some(name.clone()),
            server: None,
            text: Text::written(
                format!(
                    "pool {name} failed {} of its responses in the last {}",
                    percent(total.error_ratio()),
                    self.over
                ),
                format!(
                    "pool {name}: {} in the last {}; most from {}.{queue_note}",
                    total.breakdown(),
                    self.over,
                    worst.join(", ")
                ),
            ),
            figures: figs,
        });
    }

    fn success_outliers(&self, servers: &[ServerWindow], found: &mut Vec<Finding>) {
        // Walked twice (the pool's sums, then each server against them) rather than
        // collected: a fleet round does this for every pool.
        let judged = || {
            servers
                .iter()
                .filter_map(|s| Some((s, counted(s)?)))
                .filter(|(_, c)| c.responses >= self.t.outlier_min_responses)
                .map(|(s, c)| (s, c, 1.0 - c.error_ratio()))
        };
        let (mut n, mut sum, mut sum_sq) = (0usize, 0.0, 0.0);
        for (_, _, rate) in judged() {
            n += 1;
            sum += rate;
            sum_sq += rate * rate;
        }
        if n < self.t.outlier_min_servers.max(3) {
            return;
        }
        for (s, c, rate) in judged() {
            let (mean, sd) = others_mean_sd(sum, sum_sq, n, rate);
            let threshold = mean - self.t.outlier_stdev_factor * sd;
            if !(rate < threshold && mean - rate >= self.t.outlier_min_gap) {
                continue;
            }
            let over_ms = self.over_ms;
            // One map built from every figure at once: the outlier's figures are its
            // counts' and the comparison's.
            let figs = figures(&[
                ("responses", c.responses as f64),
                ("errors", c.errors() as f64),
                ("c5xx", c.c5xx as f64),
                ("other", c.other as f64),
                ("ratio", c.error_ratio()),
                ("success_rate", rate),
                ("others_mean", mean),
                ("others_stdev", sd),
                ("threshold", threshold),
                ("servers", n as f64),
            ]);
            found.push(Finding {
                rule: SERVER_ERROR_OUTLIER,
                level: Level::Warning,
                layer: Layer::Backend,
                pool: Some(self.pool.name.clone()),
                server: Some(s.now.name.clone()),
                text: Text::later(move |f| {
                    let (place, over) = (f.place(), span_ms(over_ms));
                    Words {
                        summary: format!(
                            "{place} stands out from its pool: {} success against {} on the \
                             other {} servers",
                            percent(rate),
                            percent(mean),
                            n - 1
                        ),
                        description: format!(
                            "{place}: {} success ({}) in the last {over}; the other {} servers \
                             average {} (σ {}), threshold {}. The others are healthy: not a \
                             shared dependency.",
                            percent(rate),
                            c.breakdown(),
                            n - 1,
                            percent(mean),
                            percent(sd),
                            percent(threshold)
                        ),
                    }
                }),
                figures: figs,
            });
        }
    }

    fn latency_outliers(&self, servers: &[ServerWindow], found: &mut Vec<Finding>) {
        let judged = || {
            servers
                .iter()
                .filter(|s| matches!(s.requests, Rise::Rose(r) if r >= self.t.latency_min_requests))
                .filter_map(|s| Some((s, s.latency_ms?)))
        };
        let (mut n, mut sum, mut sum_sq) = (0usize, 0.0, 0.0);
        for (_, latency) in judged() {
            n += 1;
            sum += latency;
            sum_sq += latency * latency;
        }
        if n < self.t.outlier_min_servers.max(3) {
            return;
        }
        // The median costs a selection: only worth it once a server is above the others' band.
        let mut median = None;
        for (s, latency) in judged() {
            let (mean, sd) = others_mean_sd(sum, sum_sq, n, latency);
            let threshold = mean + self.t.outlier_stdev_factor * sd;
            if latency <= threshold {
                continue;
            }
            let median = *median.get_or_insert_with(|| {
                let mut latencies: Vec<f64> = judged().map(|j| j.1).collect();
                let (below, middle, _) = latencies.select_nth_unstable_by(n / 2, f64::total_cmp);
                if n % 2 == 1 {
                    *middle
                } else {
                    let lower = below
                        .iter()
                        .copied()
                        .max_by(f64::total_cmp)
                        .unwrap_or(*middle);
                    (lower + *middle) / 2.0
                }
            });
            let stands_out = latency >= median * self.t.latency_median_factor
                && latency - median >= self.t.latency_min_gap_ms;
            if !stands_out {
                continue;
            }
            let over_ms = self.over_ms;
            let (ms, median_ms, mean_ms, sd_ms, threshold_ms) = (
                whole(latency),
                whole(median),
                whole(mean),
                whole(sd),
                whole(threshold),
            );
            found.push(Finding {
                rule: SERVER_LATENCY_OUTLIER,
                level: Level::Warning,
                layer: Layer::Backend,
                pool: Some(self.pool.name.clone()),
                server: Some(s.now.name.clone()),
                text: Text::later(move |f| {
                    let place = f.place();
                    Words {
                        summary: format!(
                            "{place} is slower than its pool: {ms} ms against a median of \
                             {median_ms} ms over {n} servers"
                        ),
                        description: format!(
                            "{place} answered in {ms} ms on average in the last {}; the other \
                             {} servers average {mean_ms} ms (σ {sd_ms} ms), threshold \
                             {threshold_ms} ms. The other servers' latency is normal: not a \
                             shared dependency such as the database.",
                            span_ms(over_ms),
                            n - 1
                        ),
                    }
                }),
                figures: figures(&[
                    ("latency_ms", latency),
                    ("median_ms", median),
                    ("others_mean_ms", mean),
                    ("others_stdev_ms", sd),
                    ("threshold_ms", threshold),
                    ("servers", n as f64),
                ]),
            });
        }
    }

    fn no_server(&self, found: &mut Vec<Finding>) {
        let servers = &self.pool.servers;
        let live = servers
            .iter()
            .any(|s| s.state == ServerState::Up && s.weight > 0);
        if servers.is_empty() || live {
            return;
        }
        let count = |state| servers.iter().filter(|s| s.state == state).count();
        let down = count(ServerState::Down);
        let maintenance = count(ServerState::Maintenance);
        // Drained: in DRAIN, or up with weight 0 (which means drain).
        let drained = servers.len() - down - maintenance;
        let n = servers.len();
        let name = &self.pool.name;
        let mut parts = Vec::new();
        if down > 0 {
            parts.push(format!("{down} down (failed checks)"));
        }
        if maintenance > 0 {
            parts.push(format!("{maintenance} in maintenance"));
        }
        if drained > 0 {
            parts.push(format!("{drained} drained or weight 0"));
        }
        let parts = parts.join(", ");
        let figs = figures(&[
            ("servers", n as f64),
            ("down", down as f64),
            ("maintenance", maintenance as f64),
            ("drained", drained as f64),
        ]);
        let finding = if down > 0 {
            Finding {
                rule: POOL_ALL_DOWN,
                level: Level::Critical,
                layer: Layer::Backend,
                pool: Some(name.clone()),
                server: None,
                text: Text::written(
                    format!("pool {name} has no server up: {n} servers, {parts}"),
                    format!(
                        "none of the {n} servers of pool {name} takes traffic ({parts}): every \
                     request to it fails."
                    ),
                ),
                figures: figs,
            }
        } else {
            Finding {
                rule: POOL_ALL_OUT,
                level: Level::Critical,
                layer: Layer::Distribution,
                pool: Some(name.clone()),
                server: None,
                text: Text::written(
                    format!("pool {name} has no server in rotation: {n} servers, {parts}"),
                    format!(
                        "none of the {n} servers of pool {name} takes traffic ({parts}), and none \
                     failed: all were taken out, so every request to it fails."
                    ),
                ),
                figures: figs,
            }
        };
        found.push(finding);
    }

    fn flapping(&self, servers: &[ServerWindow], found: &mut Vec<Finding>) {
        for s in servers {
            if s.flaps < self.t.flap_changes.max(1) {
                continue;
            }
            let place = ServerPlace {
                pool: &self.pool.name,
                server: &s.now.name,
            };
            let state = match s.now.state {
                ServerState::Up => "up",
                ServerState::Down => "down",
                ServerState::Drain => "draining",
                ServerState::Maintenance => "in maintenance",
            };
            found.push(Finding {
                rule: SERVER_FLAPPING,
                level: Level::Warning,
                layer: Layer::Backend,
                pool: Some(self.pool.name.clone()),
                server: Some(s.now.name.clone()),
                text: Text::written(
                    format!(
                        "{place} is flapping: {} up/down changes in the last {}",
                        s.flaps, self.over
                    ),
                    format!(
                        "{place} changed between up and down {} times in the last {} (alert from \
                     {}); it is {state} now. Each fall moves its traffic onto the rest.",
                        s.flaps, self.over, self.t.flap_changes
                    ),
                ),
                figures: figures(&[("changes", s.flaps as f64)]),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rule;
    use crate::detect::testing::{pool, responses, sample, server};
    use ballast_core::sample::ServerSample;

    /// Per server per round: 2xx, 5xx, no status.
    type Rate = (u64, u64, u64);

    /// `rounds + 1` samples 10 s apart of pool `app`, server `s{i}` gaining `rates[i]` per
    /// round (its requests are the sum).
    fn traffic(rates: &[Rate], rounds: u64) -> Vec<Sample> {
        (0..=rounds)
            .map(|t| {
                let servers = rates
                    .iter()
                    .enumerate()
                    .map(|(i, &(ok, bad, other))| ServerSample {
                        state_for_s: None,
                        requests: (ok + bad + other) * t,
                        responses: responses(ok * t, bad * t, other * t),
                        ..server(&format!("s{i}"))
                    })
                    .collect();
                sample(t * 10, vec![pool("app", servers)])
            })
            .collect()
    }

    fn run(window: &[Sample]) -> Vec<Finding> {
        detect(window, &ErrorThresholds::default())
    }

    fn of_rule<'a>(found: &'a [Finding], rule: &str) -> Vec<&'a Finding> {
        found.iter().filter(|f| f.rule == rule).collect()
    }

    fn servers_of(found: &[Finding], rule: &str) -> Vec<String> {
        of_rule(found, rule)
            .iter()
            .filter_map(|f| f.server.clone())
            .collect()
    }

    #[test]
    fn a_server_failing_a_tenth_warns_and_a_third_is_critical() {
        // s2 fails 10 of 100 per round; the others are clean.
        let found = run(&traffic(&[(100, 0, 0), (100, 0, 0), (90, 10, 0)], 6));
        let rate = of_rule(&found, SERVER_ERROR_RATE);
        assert_eq!(rate.len(), 1, "{found:#?}");
        assert_eq!(rate[0].server.as_deref(), Some("s2"));
        assert_eq!(rate[0].level, Level::Warning);
        assert_eq!(rate[0].figures["errors"], 60.0);
        assert_eq!(rate[0].figures["responses"], 600.0);
        assert!((rate[0].figures["ratio"] - 0.1).abs() < 1e-12);
        assert_eq!(
            rate[0].summary(),
            "server app/s2 failed 10% of its responses in the last 1 min"
        );
        // No status at all counts as an error too.
        let found = run(&traffic(&[(100, 0, 0), (100, 0, 0), (60, 10, 30)], 6));
        let rate = of_rule(&found, SERVER_ERROR_RATE);
        assert_eq!(
            (rate[0].level, rate[0].figures["other"]),
            (Level::Critical, 180.0)
        );
        // The pool: 40 errors of 300 per round is 13%.
        let pool_rate = of_rule(&found, POOL_ERROR_RATE);
        assert_eq!(pool_rate.len(), 1);
        assert_eq!(
            (pool_rate[0].level, pool_rate[0].layer),
            (Level::Warning, Layer::Backend)
        );
        assert!(
            pool_rate[0]
                .description()
                .contains("most from s2 240 (40%)"),
            "{}",
            pool_rate[0].description()
        );
    }

    #[test]
    fn client_errors_are_not_server_errors() {
        let mut window = traffic(&[(100, 0, 0), (100, 0, 0), (100, 0, 0)], 6);
        for (t, s) in window.iter_mut().enumerate() {
            s.pools[0].servers[1].responses.c4xx = 80 * t as u64;
        }
        assert!(run(&window).is_empty(), "{:?}", run(&window));
    }

    #[test]
    fn little_traffic_is_not_an_error_rate() {
        // Half of 48 responses fail: below the floor of 100.
        let window = traffic(&[(4, 4, 0), (4, 0, 0)], 6);
        assert!(run(&window).is_empty(), "{:?}", run(&window));
        // Spread over many servers, each under the floor, the pool is not.
        let window = traffic(&[(9, 1, 0); 10], 6);
        let found = run(&window);
        assert!(of_rule(&found, SERVER_ERROR_RATE).is_empty());
        assert_eq!(of_rule(&found, POOL_ERROR_RATE).len(), 1, "{found:#?}");
    }

    #[test]
    fn a_counter_restart_judges_nothing() {
        let mut window = traffic(&[(100, 50, 0), (100, 50, 0), (100, 50, 0)], 6);
        // s0 restarted mid-window: its counters fell back.
        window[4].pools[0].servers[0].responses = responses(10, 5, 0);
        window[5].pools[0].servers[0].responses = responses(110, 55, 0);
        window[6].pools[0].servers[0].responses = responses(210, 105, 0);
        let found = run(&window);
        assert_eq!(servers_of(&found, SERVER_ERROR_RATE), ["s1", "s2"]);
        assert!(of_rule(&found, POOL_ERROR_RATE).is_empty(), "{found:#?}");
    }

    #[test]
    fn queued_requests_place_a_pools_errors_in_its_limits() {
        let mut window = traffic(&[(70, 30, 0), (70, 30, 0), (70, 30, 0)], 6);
        window[6].pools[0].queued = 40;
        let found = run(&window);
        let pool_rate = of_rule(&found, POOL_ERROR_RATE);
        assert_eq!(
            (pool_rate[0].level, pool_rate[0].layer),
            (Level::Critical, Layer::Limits)
        );
        assert!(pool_rate[0].description().contains("balancer's own 503s"));
    }

    #[test]
    fn a_healthy_pool_with_noise_raises_nothing() {
        // 0.3% to 1.5% errors, latencies 18 to 31 ms: ordinary.
        let mut window = traffic(
            &[
                (997, 3, 0),
                (990, 9, 1),
                (985, 15, 0),
                (993, 6, 1),
                (996, 4, 0),
            ],
            6,
        );
        let latencies = [18.0, 31.0, 24.0, 22.0, 27.0];
        for (t, s) in window.iter_mut().enumerate() {
            for (i, server) in s.pools[0].servers.iter_mut().enumerate() {
                server.latency_ms = Some(latencies[i] + (t % 3) as f64);
            }
        }
        assert!(run(&window).is_empty(), "{:?}", run(&window));
    }

    #[test]
    fn a_server_whose_success_stands_out_is_an_outlier() {
        // s3 succeeds 92%, the others 99.5–100%: below the ratio alert, not below Envoy's rule.
        let found = run(&traffic(
            &[
                (200, 0, 0),
                (199, 1, 0),
                (200, 0, 0),
                (184, 16, 0),
                (199, 1, 0),
            ],
            6,
        ));
        assert!(
            of_rule(&found, SERVER_ERROR_RATE)
                .iter()
                .all(|f| f.server.as_deref() == Some("s3"))
        );
        assert_eq!(
            servers_of(&found, SERVER_ERROR_OUTLIER),
            ["s3"],
            "{found:#?}"
        );
        let outlier = of_rule(&found, SERVER_ERROR_OUTLIER)[0];
        assert!((outlier.figures["success_rate"] - 0.92).abs() < 1e-9);
        assert!(outlier.figures["threshold"] > 0.92);
        assert_eq!(outlier.figures["servers"], 5.0);
        assert!(
            outlier
                .summary()
                .contains("92% success against 99.8% on the other 4 servers"),
            "{}",
            outlier.summary()
        );
    }

    #[test]
    fn three_servers_are_enough_for_an_outlier() {
        // Against statistics that include it, no server of 3 can be 1.9σ out; against the
        // others it can.
        let found = run(&traffic(&[(200, 0, 0), (199, 1, 0), (150, 50, 0)], 6));
        assert_eq!(servers_of(&found, SERVER_ERROR_OUTLIER), ["s2"]);
        // Two servers are not a pool to stand out from.
        let found = run(&traffic(&[(200, 0, 0), (150, 50, 0)], 6));
        assert!(of_rule(&found, SERVER_ERROR_OUTLIER).is_empty());
    }

    #[test]
    fn an_outlier_needs_volume_and_a_real_gap() {
        // s2 failed 1 in 2, but with 60 responses in the window.
        let found = run(&traffic(
            &[(200, 0, 0), (200, 0, 0), (200, 0, 0), (5, 5, 0)],
            6,
        ));
        assert!(
            of_rule(&found, SERVER_ERROR_OUTLIER).is_empty(),
            "{found:#?}"
        );
        // 98% against 100%: σ of the others is 0, but 2 points are no outlier.
        let found = run(&traffic(
            &[(200, 0, 0), (200, 0, 0), (200, 0, 0), (196, 4, 0)],
            6,
        ));
        assert!(found.is_empty(), "{found:#?}");
    }

    fn with_latency(latencies: &[f64], requests_per_round: u64) -> Vec<Sample> {
        let mut window = traffic(&vec![(requests_per_round, 0, 0); latencies.len()], 6);
        for s in &mut window {
            for (server, &l) in s.pools[0].servers.iter_mut().zip(latencies) {
                server.latency_ms = Some(l);
            }
        }
        window
    }

    #[test]
    fn a_slow_server_stands_out_from_its_pool() {
        let found = run(&with_latency(&[20.0, 22.0, 25.0, 21.0, 400.0], 50));
        assert_eq!(
            servers_of(&found, SERVER_LATENCY_OUTLIER),
            ["s4"],
            "{found:#?}"
        );
        let slow = of_rule(&found, SERVER_LATENCY_OUTLIER)[0];
        assert_eq!(
            (slow.figures["latency_ms"], slow.figures["median_ms"]),
            (400.0, 22.0)
        );
        assert!(
            slow.description()
                .contains("not a shared dependency such as the database")
        );
        // Three servers suffice.
        let found = run(&with_latency(&[20.0, 24.0, 300.0], 50));
        assert_eq!(servers_of(&found, SERVER_LATENCY_OUTLIER), ["s2"]);
    }

    #[test]
    fn small_or_shared_latency_differences_are_not_outliers() {
        // 1 ms against 3 ms is three times, but 2 ms.
        assert!(run(&with_latency(&[1.0, 1.0, 1.0, 3.0], 50)).is_empty());
        // Everyone slow together is a shared cause, not one server.
        assert!(run(&with_latency(&[400.0, 420.0, 390.0, 410.0], 50)).is_empty());
        // An idle server's average is stale: s3 answered 2 requests in the window.
        let mut idle = with_latency(&[20.0, 22.0, 25.0, 900.0], 50);
        for (t, s) in idle.iter_mut().enumerate() {
            let s3 = &mut s.pools[0].servers[3];
            s3.requests = 1000 + (t as u64).min(2);
            s3.responses = responses(s3.requests, 0, 0);
        }
        assert!(run(&idle).is_empty(), "{:?}", run(&idle));
        // Two slow servers of four: neither stands out against the other three.
        let found = run(&with_latency(&[20.0, 22.0, 400.0, 420.0], 50));
        assert!(
            of_rule(&found, SERVER_LATENCY_OUTLIER).is_empty(),
            "{found:#?}"
        );
    }

    fn states(pattern: &[&[ServerState]]) -> Vec<Sample> {
        pattern
            .iter()
            .enumerate()
            .map(|(t, row)| {
                let servers = row
                    .iter()
                    .enumerate()
                    .map(|(i, &state)| ServerSample {
                        state_for_s: None,
                        state,
                        ..server(&format!("s{i}"))
                    })
                    .collect();
                sample(t as u64 * 5, vec![pool("app", servers)])
            })
            .collect()
    }

    use ServerState::{Down, Drain, Maintenance as Maint, Up};

    #[test]
    fn a_pool_with_every_server_down_is_critical_now() {
        let found = run(&states(&[&[Up, Up, Down], &[Down, Down, Down]]));
        let down = of_rule(&found, POOL_ALL_DOWN);
        assert_eq!(down.len(), 1, "{found:#?}");
        assert_eq!(
            (down[0].level, down[0].layer),
            (Level::Critical, Layer::Backend)
        );
        assert_eq!(down[0].figures["servers"], 3.0);
        assert_eq!(
            down[0].summary(),
            "pool app has no server up: 3 servers, 3 down (failed checks)"
        );
        // Down and in maintenance: still failed.
        let found = run(&states(&[&[Down, Maint, Down]]));
        assert!(
            of_rule(&found, POOL_ALL_DOWN)[0]
                .summary()
                .ends_with("2 down (failed checks), 1 in maintenance")
        );
        // One server up is enough; so is a backup.
        assert!(run(&states(&[&[Down, Up, Down]])).is_empty());
        let mut backup = states(&[&[Down, Down, Up]]);
        backup[0].pools[0].servers[2].backup = true;
        assert!(run(&backup).is_empty());
    }

    #[test]
    fn servers_taken_out_are_not_down_by_failure() {
        let found = run(&states(&[&[Maint, Drain, Maint]]));
        assert!(of_rule(&found, POOL_ALL_DOWN).is_empty());
        let out = of_rule(&found, POOL_ALL_OUT);
        assert_eq!(out.len(), 1, "{found:#?}");
        assert_eq!(out[0].layer, Layer::Distribution);
        assert_eq!(
            (out[0].figures["maintenance"], out[0].figures["drained"]),
            (2.0, 1.0)
        );
        // Up with weight 0 means drain.
        let mut weightless = states(&[&[Up, Up]]);
        for s in &mut weightless[0].pools[0].servers {
            s.weight = 0;
        }
        assert_eq!(of_rule(&run(&weightless), POOL_ALL_OUT).len(), 1);
    }

    #[test]
    fn a_server_going_up_and_down_is_flapping() {
        let found = run(&states(&[
            &[Up, Up],
            &[Down, Up],
            &[Up, Up],
            &[Down, Up],
            &[Up, Up],
        ]));
        assert_eq!(servers_of(&found, SERVER_FLAPPING), ["s0"]);
        assert_eq!(of_rule(&found, SERVER_FLAPPING)[0].figures["changes"], 4.0);
        // Three changes are not yet flapping.
        assert!(run(&states(&[&[Up, Up], &[Down, Up], &[Up, Up], &[Down, Up]])).is_empty());
        // An operator's maintenance, back and forth, is not a failure.
        assert!(
            run(&states(&[
                &[Up],
                &[Maint],
                &[Up],
                &[Maint],
                &[Up],
                &[Drain],
                &[Up]
            ]))
            .is_empty()
        );
        // Configurable.
        let t = ErrorThresholds {
            flap_changes: 2,
            ..ErrorThresholds::default()
        };
        assert_eq!(detect(&states(&[&[Up], &[Down], &[Up]]), &t).len(), 1);
    }

    #[test]
    fn a_server_added_mid_window_counts_from_its_arrival() {
        let mut window = traffic(&[(100, 0, 0), (100, 0, 0)], 6);
        // s2 arrives in the last sample with counters that began before: nothing to difference.
        window[6].pools[0].servers.push(ServerSample {
            state_for_s: None,
            responses: responses(0, 500, 0),
            requests: 500,
            ..server("s2")
        });
        assert!(run(&window).is_empty(), "{:?}", run(&window));
    }

    #[test]
    fn every_finding_names_a_known_rule_with_its_for() {
        let mut window = traffic(
            &[
                (200, 0, 0),
                (199, 1, 0),
                (200, 0, 0),
                (100, 100, 0),
                (199, 1, 0),
            ],
            6,
        );
        for s in &mut window {
            s.pools[0].servers[1].latency_ms = Some(900.0);
            for (i, server) in s.pools[0].servers.iter_mut().enumerate() {
                server.latency_ms.get_or_insert(20.0 + i as f64);
            }
            s.pools.push(pool(
                "down",
                vec![ServerSample {
                    state_for_s: None,
                    state: Down,
                    ..server("d0")
                }],
            ));
            s.pools.push(pool(
                "out",
                vec![ServerSample {
                    state_for_s: None,
                    state: Maint,
                    ..server("m0")
                }],
            ));
        }
        for (t, s) in window.iter_mut().enumerate() {
            s.pools[0].servers[4].state = if t % 2 == 0 { Up } else { Down };
        }
        let found = run(&window);
        let raised: std::collections::BTreeSet<&str> = found.iter().map(|f| f.rule).collect();
        let own: std::collections::BTreeSet<&str> = RULES.iter().map(|r| r.alertname).collect();
        assert_eq!(raised, own, "{found:#?}");
        for f in &found {
            let spec = rule(f.rule).expect("a known rule");
            let expected_for = match f.rule {
                POOL_ALL_DOWN | POOL_ALL_OUT | SERVER_FLAPPING => 0,
                _ => 60_000,
            };
            assert_eq!(spec.for_ms, expected_for, "{}", f.rule);
            assert!(
                !f.summary().is_empty() && !f.description().is_empty() && !f.figures.is_empty()
            );
            assert!(f.pool.is_some());
        }
    }
}
