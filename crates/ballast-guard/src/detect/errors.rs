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

use ballast_core::sample::{PoolSample, ResponseClasses, Sample, ServerSample, ServerState};

use super::{
    Finding, Layer, Level, RuleSpec, figures, increase, percent, pool_series, server_series, span,
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
    let over = span(window);
    for (index, pool) in now.pools.iter().enumerate() {
        let series = pool_series(window, index, &pool.name);
        let servers: Vec<ServerWindow> = pool
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerWindow::of(s, &server_series(&series, i, &s.name)))
            .collect();
        let context = PoolContext {
            pool,
            over: &over,
            t: thresholds,
        };
        context.error_ratios(&servers, &mut found);
        context.success_outliers(&servers, &mut found);
        context.latency_outliers(&servers, &mut found);
        context.no_server(&mut found);
        context.flapping(&servers, &mut found);
    }
    found
}

/// How a counter behaved through the window.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rise<T> {
    /// It went down: a restart; nothing to judge.
    Restarted,
    /// Seen once: no difference to take.
    Unknown,
    Rose(T),
}

/// One server's window, reduced to what the rules need.
struct ServerWindow<'a> {
    now: &'a ServerSample,
    responses: Rise<ResponseClasses>,
    requests: Rise<u64>,
    /// Its mean reported latency through the window.
    latency_ms: Option<f64>,
    /// Up↔down changes between consecutive samples.
    flaps: usize,
}

impl<'a> ServerWindow<'a> {
    fn of(now: &'a ServerSample, series: &[&ServerSample]) -> Self {
        let rise = |values: &dyn Fn(&ServerSample) -> u64| -> Rise<u64> {
            if series.len() < 2 {
                return Rise::Unknown;
            }
            match increase(series.iter().map(|s| values(s))) {
                Some(n) => Rise::Rose(n),
                None => Rise::Restarted,
            }
        };
        let classes = [
            rise(&|s| s.responses.c1xx),
            rise(&|s| s.responses.c2xx),
            rise(&|s| s.responses.c3xx),
            rise(&|s| s.responses.c4xx),
            rise(&|s| s.responses.c5xx),
            rise(&|s| s.responses.other),
        ];
        let responses = if classes.contains(&Rise::Restarted) {
            Rise::Restarted
        } else if let [
            Rise::Rose(c1xx),
            Rise::Rose(c2xx),
            Rise::Rose(c3xx),
            Rise::Rose(c4xx),
            Rise::Rose(c5xx),
            Rise::Rose(other),
        ] = classes
        {
            Rise::Rose(ResponseClasses {
                c1xx,
                c2xx,
                c3xx,
                c4xx,
                c5xx,
                other,
            })
        } else {
            Rise::Unknown
        };
        let latencies = series
            .iter()
            .filter_map(|s| s.latency_ms)
            .filter(|l| l.is_finite() && *l >= 0.0);
        let (sum, count) = latencies.fold((0.0, 0u32), |(s, n), l| (s + l, n + 1));
        let flaps = series
            .windows(2)
            .filter(|w| {
                matches!(
                    (w[0].state, w[1].state),
                    (ServerState::Up, ServerState::Down) | (ServerState::Down, ServerState::Up)
                )
            })
            .count();
        ServerWindow {
            now,
            responses,
            requests: rise(&|s| s.requests),
            latency_ms: (count > 0).then(|| sum / f64::from(count)),
            flaps,
        }
    }

    fn counted(&self) -> Option<Counted> {
        match self.responses {
            Rise::Rose(r) => Some(Counted::of(&r)),
            _ => None,
        }
    }
}

/// Responses and errors over a window.
#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    responses: u64,
    c5xx: u64,
    other: u64,
}

impl Counted {
    fn of(r: &ResponseClasses) -> Self {
        Counted {
            responses: [r.c1xx, r.c2xx, r.c3xx, r.c4xx, r.c5xx, r.other]
                .into_iter()
                .fold(0u64, u64::saturating_add),
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

    fn figures(&self) -> std::collections::BTreeMap<String, f64> {
        figures(&[
            ("responses", self.responses as f64),
            ("errors", self.errors() as f64),
            ("c5xx", self.c5xx as f64),
            ("other", self.other as f64),
            ("ratio", self.error_ratio()),
        ])
    }

    fn breakdown(&self) -> String {
        format!(
            "{} errors of {} responses: {} 5xx, {} with no response",
            self.errors(),
            self.responses,
            self.c5xx,
            self.other
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
    t: &'a ErrorThresholds,
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
            let Some(c) = s.counted().filter(|c| c.responses >= self.t.min_responses) else {
                continue;
            };
            let Some(level) = self.level(c.error_ratio()) else {
                continue;
            };
            let place = format!("server {name}/{}", s.now.name);
            found.push(Finding {
                rule: SERVER_ERROR_RATE,
                level,
                layer: Layer::Backend,
                pool: Some(name.clone()),
                server: Some(s.now.name.clone()),
                summary: format!(
                    "{place} failed {} of its responses in the last {}",
                    percent(c.error_ratio()),
                    self.over
                ),
                description: format!("{place}: {} in the last {}.", c.breakdown(), self.over),
                figures: c.figures(),
            });
        }
        // The pool's total means nothing if any of its counters restarted.
        if servers.iter().any(|s| s.responses == Rise::Restarted) {
            return;
        }
        let total = servers
            .iter()
            .filter_map(ServerWindow::counted)
            .fold(Counted::default(), Counted::add);
        if total.responses < self.t.min_responses {
            return;
        }
        let Some(level) = self.level(total.error_ratio()) else {
            return;
        };
        let mut worst: Vec<(&str, Counted)> = servers
            .iter()
            .filter_map(|s| Some((s.now.name.as_str(), s.counted()?)))
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
        figs.insert("queued".into(), queued as f64);
        found.push(Finding {
            rule: POOL_ERROR_RATE,
            level,
            layer,
            pool: Some(name.clone()),
            server: None,
            summary: format!(
                "pool {name} failed {} of its responses in the last {}",
                percent(total.error_ratio()),
                self.over
            ),
            description: format!(
                "pool {name}: {} in the last {}; most from {}.{queue_note}",
                total.breakdown(),
                self.over,
                worst.join(", ")
            ),
            figures: figs,
        });
    }

    fn success_outliers(&self, servers: &[ServerWindow], found: &mut Vec<Finding>) {
        let judged: Vec<(&ServerWindow, Counted)> = servers
            .iter()
            .filter_map(|s| Some((s, s.counted()?)))
            .filter(|(_, c)| c.responses >= self.t.outlier_min_responses)
            .collect();
        let n = judged.len();
        if n < self.t.outlier_min_servers.max(3) {
            return;
        }
        let rates: Vec<f64> = judged.iter().map(|(_, c)| 1.0 - c.error_ratio()).collect();
        let sum: f64 = rates.iter().sum();
        let sum_sq: f64 = rates.iter().map(|r| r * r).sum();
        for ((s, c), &rate) in judged.iter().zip(&rates) {
            let (mean, sd) = others_mean_sd(sum, sum_sq, n, rate);
            let threshold = mean - self.t.outlier_stdev_factor * sd;
            if !(rate < threshold && mean - rate >= self.t.outlier_min_gap) {
                continue;
            }
            let place = format!("server {}/{}", self.pool.name, s.now.name);
            let mut figs = c.figures();
            figs.extend(figures(&[
                ("success_rate", rate),
                ("others_mean", mean),
                ("others_stdev", sd),
                ("threshold", threshold),
                ("servers", n as f64),
            ]));
            found.push(Finding {
                rule: SERVER_ERROR_OUTLIER,
                level: Level::Warning,
                layer: Layer::Backend,
                pool: Some(self.pool.name.clone()),
                server: Some(s.now.name.clone()),
                summary: format!(
                    "{place} stands out from its pool: {} success against {} on the other {} \
                     servers",
                    percent(rate),
                    percent(mean),
                    n - 1
                ),
                description: format!(
                    "{place}: {} success ({}) in the last {}; the other {} servers average {} \
                     (σ {}), threshold {}. The others are healthy: not a shared dependency.",
                    percent(rate),
                    c.breakdown(),
                    self.over,
                    n - 1,
                    percent(mean),
                    percent(sd),
                    percent(threshold)
                ),
                figures: figs,
            });
        }
    }

    fn latency_outliers(&self, servers: &[ServerWindow], found: &mut Vec<Finding>) {
        let judged: Vec<(&ServerWindow, f64)> = servers
            .iter()
            .filter(|s| matches!(s.requests, Rise::Rose(r) if r >= self.t.latency_min_requests))
            .filter_map(|s| Some((s, s.latency_ms?)))
            .collect();
        let n = judged.len();
        if n < self.t.outlier_min_servers.max(3) {
            return;
        }
        let mut sorted: Vec<f64> = judged.iter().map(|j| j.1).collect();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let sum: f64 = sorted.iter().sum();
        let sum_sq: f64 = sorted.iter().map(|l| l * l).sum();
        for &(s, latency) in &judged {
            let (mean, sd) = others_mean_sd(sum, sum_sq, n, latency);
            let threshold = mean + self.t.outlier_stdev_factor * sd;
            let stands_out = latency > threshold
                && latency >= median * self.t.latency_median_factor
                && latency - median >= self.t.latency_min_gap_ms;
            if !stands_out {
                continue;
            }
            let place = format!("server {}/{}", self.pool.name, s.now.name);
            found.push(Finding {
                rule: SERVER_LATENCY_OUTLIER,
                level: Level::Warning,
                layer: Layer::Backend,
                pool: Some(self.pool.name.clone()),
                server: Some(s.now.name.clone()),
                summary: format!(
                    "{place} is slower than its pool: {latency:.0} ms against a median of \
                     {median:.0} ms over {n} servers"
                ),
                description: format!(
                    "{place} answered in {latency:.0} ms on average in the last {}; the other \
                     {} servers average {mean:.0} ms (σ {sd:.0} ms), threshold {threshold:.0} \
                     ms. The other servers' latency is normal: not a shared dependency such as \
                     the database.",
                    self.over,
                    n - 1
                ),
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
                summary: format!("pool {name} has no server up: {n} servers, {parts}"),
                description: format!(
                    "none of the {n} servers of pool {name} takes traffic ({parts}): every \
                     request to it fails."
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
                summary: format!("pool {name} has no server in rotation: {n} servers, {parts}"),
                description: format!(
                    "none of the {n} servers of pool {name} takes traffic ({parts}), and none \
                     failed: all were taken out, so every request to it fails."
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
            let place = format!("server {}/{}", self.pool.name, s.now.name);
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
                summary: format!(
                    "{place} is flapping: {} up/down changes in the last {}",
                    s.flaps, self.over
                ),
                description: format!(
                    "{place} changed between up and down {} times in the last {} (alert from \
                     {}); it is {state} now. Each fall moves its traffic onto the rest.",
                    s.flaps, self.over, self.t.flap_changes
                ),
                figures: figures(&[("changes", s.flaps as f64)]),
            });
        }
    }
}
