//! The canary of a reload: for a window after a configuration goes live, the pools the change
//! touched are compared with the minutes before it, and the decision to revert is taken here,
//! purely (no I/O, a virtual clock in tests). `serve` runs it every round of its guard and does
//! the revert; this module only decides and says why.
//!
//! A revert is decided on the guard's verdict, never on one noisy window:
//! - a critical alert, firing, that began after the reload on a pool the change touched, and
//!   whose cause names this reload as its likely trigger; or
//! - a critical regression of one pool against its own baseline (the minutes before the
//!   reload) held for several consecutive rounds: its distribution (R), its 5xx ratio, its
//!   latency, or a server at its connection limit.
//!
//! The decision carries its evidence: the figures before and after, one line each.

use std::collections::BTreeMap;

use ballast_core::distribution::evenness;
use ballast_core::sample::{PoolSample, Promise, Sample, ServerState};

use crate::alert::{Alert, AlertState};
use crate::change::clock;
use crate::detect::{Layer, Level, RuleSpec, percent};

/// The alert `serve` raises when its canary reverted a reload.
pub const CONFIG_ROLLED_BACK: &str = "ConfigRolledBack";

/// The rules this module raises.
pub const RULES: &[RuleSpec] = &[RuleSpec {
    alertname: CONFIG_ROLLED_BACK,
    layer: Layer::Distribution,
    // The revert is a fact: it happened, once.
    for_ms: 0,
    meaning: "The canary of `ballast serve` found a critical regression caused by the last \
        reload (an alert that names the reload as its trigger, or a pool's distribution, 5xx \
        ratio, latency or saturation far worse than in the minutes before it, for several \
        rounds) and re-applied the previous configuration through the same path as a reload. \
        Service is restored; the file still holds the reverted version, which later reloads \
        refuse until the file changes. A warning, not a page: nothing is broken any more, but \
        someone must fix the file. It stays active until a new version is applied (or 15 \
        minutes).",
    response: "Read the alert's description: the evidence (figures before and after) and the \
        diff that was undone. `ballast diff` the file against the version serving now \
        (`GET /config` on the admin API), fix the change, `ballast check` and `ballast \
        simulate` it, then reload. To re-apply the same change on purpose, edit the file (any \
        byte) so it is a new version; `[rollback] enabled = false` turns the revert off.",
}];

/// How the canary judges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryOptions {
    /// How long after the reload the canary watches, ms.
    pub window_ms: u64,
    /// How much history before the reload is its baseline, ms.
    pub baseline_ms: u64,
    /// The recent stretch after the reload judged each round against the baseline, ms.
    pub recent_ms: u64,
    /// How many consecutive rounds a regression must hold to revert.
    pub sustain_rounds: u32,
    /// The fewest requests a pool must take (in the baseline and in the recent stretch) for
    /// its ratios to be judged.
    pub min_requests: u64,
    /// R after the reload at or above which a pool is critically skewed (widened for pools
    /// whose shares follow keys); the baseline must have been below `skew_baseline_below`.
    pub skew_critical: f64,
    pub skew_baseline_below: f64,
    pub key_dependent_widening: f64,
    /// A 5xx ratio at or above this, and `error_factor` times the baseline's, is critical.
    pub error_ratio: f64,
    pub error_factor: f64,
    /// Mean latency `latency_factor` times the baseline's and at least `latency_floor_ms`
    /// more is critical.
    pub latency_factor: f64,
    pub latency_floor_ms: f64,
}

impl Default for CanaryOptions {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            baseline_ms: 120_000,
            recent_ms: 2_000,
            // Ten one-second rounds: long enough that the guard's own alert, when it has one,
            // decides first and names the change; this is the backstop for what it misses.
            sustain_rounds: 10,
            min_requests: 50,
            skew_critical: 2.0,
            skew_baseline_below: 1.5,
            key_dependent_widening: 1.25,
            error_ratio: 0.05,
            error_factor: 5.0,
            latency_factor: 3.0,
            latency_floor_ms: 50.0,
        }
    }
}

/// The reload a canary watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadUnderTest {
    /// When the new configuration was first seen live (the watcher's reload time), ms.
    pub at_ms: u64,
    /// The version it replaced (the one a revert restores).
    pub previous: String,
    /// The version under test.
    pub version: String,
    /// The pools the change touched; empty: every pool is watched.
    pub pools: Vec<String>,
}

/// What the canary decided this round.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Still inside the window, nothing critical caused by the change (yet).
    Watching,
    /// The window is over without a critical regression: the change stays.
    Passed,
    /// Revert the reload.
    Revert(RevertVerdict),
}

/// Why a reload is reverted.
#[derive(Debug, Clone, PartialEq)]
pub struct RevertVerdict {
    /// The alert that decided it, or the regression's name (`CanaryErrorRatio`...).
    pub alertname: String,
    pub pool: String,
    pub server: Option<String>,
    /// One line: what was found, for the refusal of later reloads.
    pub reason: String,
    /// The alerts and figures that decided it, before and after, one line each.
    pub evidence: Vec<String>,
}

/// A regression the baseline comparison can find, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Signal {
    Skew,
    Errors,
    Latency,
    Saturation,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Skew => "CanaryDistribution",
            Signal::Errors => "CanaryErrorRatio",
            Signal::Latency => "CanaryLatency",
            Signal::Saturation => "CanarySaturation",
        }
    }
}

/// The canary of one reload.
#[derive(Debug, Clone)]
pub struct Canary {
    options: CanaryOptions,
    reload: ReloadUnderTest,
    /// Consecutive rounds each (pool, signal) has held.
    strikes: BTreeMap<(String, Signal), u32>,
    decided: bool,
}

impl Canary {
    pub fn new(reload: ReloadUnderTest, options: CanaryOptions) -> Self {
        Self {
            options,
            reload,
            strikes: BTreeMap::new(),
            decided: false,
        }
    }

    pub fn reload(&self) -> &ReloadUnderTest {
        &self.reload
    }

    /// One round at `now_ms`: `history` is the watcher's samples (oldest first, minutes of
    /// them), `alerts` its active alerts. Once it has decided (revert or passed) it keeps
    /// answering `Passed`: one reload is reverted at most once.
    pub fn judge(
        &mut self,
        now_ms: u64,
        history: &[Sample],
        alerts: &[std::sync::Arc<Alert>],
    ) -> Decision {
        if self.decided {
            return Decision::Passed;
        }
        if now_ms > self.reload.at_ms.saturating_add(self.options.window_ms) {
            self.decided = true;
            return Decision::Passed;
        }
        let at = self.reload.at_ms;
        let before_start = at.saturating_sub(self.options.baseline_ms);
        let before: Vec<&Sample> = history
            .iter()
            .filter(|s| s.at_ms >= before_start && s.at_ms < at)
            .collect();
        let recent_start = now_ms.saturating_sub(self.options.recent_ms).max(at);
        let recent: Vec<&Sample> = history
            .iter()
            .filter(|s| s.at_ms >= recent_start && s.at_ms <= now_ms)
            .collect();
        if let Some(alert) = alerts.iter().find(|a| self.caused_by_reload(a)) {
            let pool = alert.label("pool").unwrap_or("").to_string();
            let mut evidence = vec![format!(
                "{} ({}, firing since {}): {}",
                alert.label("alertname").unwrap_or(""),
                alert.label("severity").unwrap_or(""),
                alert.starts_at_ms.map_or_else(String::new, clock),
                alert.annotation("summary").unwrap_or("")
            )];
            if let Some(cause) = alert.annotation("cause") {
                evidence.push(format!("cause: {cause}"));
            }
            evidence.extend(figures(&pool, &before, &recent).lines());
            self.decided = true;
            return Decision::Revert(RevertVerdict {
                alertname: alert.label("alertname").unwrap_or("").to_string(),
                pool,
                server: alert.label("server").map(str::to_string),
                reason: format!(
                    "{} fired on pool {}: {}",
                    alert.label("alertname").unwrap_or(""),
                    alert.label("pool").unwrap_or(""),
                    alert.annotation("summary").unwrap_or("")
                ),
                evidence,
            });
        }
        // The baseline comparison, pool by pool: a regression counts only while it holds.
        let mut held: Vec<(String, Signal, String)> = Vec::new();
        for pool in self.watched_pools(&recent) {
            let judged = figures(&pool, &before, &recent);
            let (Some(b), Some(a)) = (judged.before, judged.after) else {
                continue;
            };
            for (signal, line) in self.regressions(&pool, &b, &a) {
                held.push((pool.clone(), signal, line));
            }
        }
        self.strikes
            .retain(|key, _| held.iter().any(|(p, s, _)| (p, s) == (&key.0, &key.1)));
        for (pool, signal, line) in held {
            let strikes = self.strikes.entry((pool.clone(), signal)).or_insert(0);
            *strikes += 1;
            if *strikes >= self.options.sustain_rounds {
                let mut evidence = vec![format!(
                    "{line}, for {} consecutive rounds since the reload of {}",
                    strikes,
                    clock(at)
                )];
                evidence.extend(figures(&pool, &before, &recent).lines());
                self.decided = true;
                return Decision::Revert(RevertVerdict {
                    alertname: signal.name().to_string(),
                    pool,
                    server: None,
                    reason: line,
                    evidence,
                });
            }
        }
        Decision::Watching
    }

    /// Whether the guard's alert is a critical regression this reload caused.
    fn caused_by_reload(&self, a: &Alert) -> bool {
        let touched = |pool: Option<&str>| {
            self.reload.pools.is_empty()
                || pool.is_some_and(|p| self.reload.pools.iter().any(|x| x == p))
        };
        let names_reload = a.annotation("cause").is_some_and(|c| {
            c.split_once("Likely trigger:").is_some_and(|(_, t)| {
                t.contains(&format!("reload of {}", clock(self.reload.at_ms)))
            })
        });
        a.state == AlertState::Firing
            && a.label("severity") == Some(Level::Critical.as_str())
            && a.label("alertname") != Some("ConfigChangeRisky")
            && a.label("alertname") != Some(CONFIG_ROLLED_BACK)
            && a.active_since_ms >= self.reload.at_ms
            && touched(a.label("pool"))
            && names_reload
    }

    fn watched_pools(&self, recent: &[&Sample]) -> Vec<String> {
        let Some(last) = recent.last() else {
            return Vec::new();
        };
        last.pools
            .iter()
            .map(|p| p.name.clone())
            .filter(|p| self.reload.pools.is_empty() || self.reload.pools.contains(p))
            .collect()
    }

    /// The critical regressions of one pool, with their line of evidence.
    fn regressions(&self, pool: &str, b: &Figures, a: &Figures) -> Vec<(Signal, String)> {
        let o = &self.options;
        let mut out = Vec::new();
        let judged = b.requests >= o.min_requests && a.requests >= o.min_requests;
        if judged && let (Some(rb), Some(ra)) = (b.peak_ratio, a.peak_ratio) {
            let critical = if a.promise == Promise::KeyDependent {
                o.skew_critical * o.key_dependent_widening
            } else {
                o.skew_critical
            };
            if a.promise != Promise::Concurrency
                && a.promise != Promise::FillInOrder
                && ra >= critical
                && rb < o.skew_baseline_below
            {
                out.push((
                    Signal::Skew,
                    format!(
                        "pool {pool}: R {rb:.2} before the reload → {ra:.2} after ({} takes {} of \
                         the requests)",
                        a.peak_server,
                        percent(a.peak_share)
                    ),
                ));
            }
        }
        if judged
            && a.error_ratio >= o.error_ratio
            && a.error_ratio >= o.error_factor * b.error_ratio
        {
            out.push((
                Signal::Errors,
                format!(
                    "pool {pool}: 5xx {} before the reload → {} after",
                    percent(b.error_ratio),
                    percent(a.error_ratio)
                ),
            ));
        }
        if let (Some(lb), Some(la)) = (b.latency_ms, a.latency_ms)
            && la >= o.latency_factor * lb
            && la - lb >= o.latency_floor_ms
        {
            out.push((
                Signal::Latency,
                format!(
                    "pool {pool}: mean latency {lb:.0} ms before the reload → {la:.0} ms after"
                ),
            ));
        }
        if !a.at_limit.is_empty() && b.at_limit.is_empty() {
            out.push((
                Signal::Saturation,
                format!(
                    "pool {pool}: {} at its connection limit after the reload, none before",
                    a.at_limit.join(", ")
                ),
            ));
        }
        out
    }
}

/// One pool's figures over a stretch of samples.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    promise: Promise,
    requests: u64,
    rate_per_s: f64,
    peak_ratio: Option<f64>,
    peak_server: String,
    peak_share: f64,
    error_ratio: f64,
    latency_ms: Option<f64>,
    /// Servers whose in-flight count reached their limit in some sample.
    at_limit: Vec<String>,
}

/// A pool's figures before and after, and their evidence lines.
struct BeforeAfter {
    pool: String,
    before: Option<Figures>,
    after: Option<Figures>,
}

fn figures(pool: &str, before: &[&Sample], after: &[&Sample]) -> BeforeAfter {
    BeforeAfter {
        pool: pool.to_string(),
        before: pool_figures(pool, before),
        after: pool_figures(pool, after),
    }
}

impl BeforeAfter {
    /// The evidence lines: each figure before → after.
    fn lines(&self) -> Vec<String> {
        let (Some(b), Some(a)) = (&self.before, &self.after) else {
            return match &self.after {
                Some(a) => vec![format!(
                    "pool {}: no baseline before the reload; after it {} requests, 5xx {}",
                    self.pool,
                    a.requests,
                    percent(a.error_ratio)
                )],
                None => Vec::new(),
            };
        };
        let pool = &self.pool;
        let r = |f: &Figures| {
            f.peak_ratio
                .map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
        };
        let ms = |f: &Figures| {
            f.latency_ms
                .map_or_else(|| "n/a".into(), |l| format!("{l:.0} ms"))
        };
        let limit = |f: &Figures| {
            if f.at_limit.is_empty() {
                "none".to_string()
            } else {
                f.at_limit.join(", ")
            }
        };
        vec![
            format!(
                "pool {pool}: R {} before → {} after (hottest {} {} → {} {})",
                r(b),
                r(a),
                b.peak_server,
                percent(b.peak_share),
                a.peak_server,
                percent(a.peak_share)
            ),
            format!(
                "pool {pool}: request rate {:.1}/s before → {:.1}/s after",
                b.rate_per_s, a.rate_per_s
            ),
            format!(
                "pool {pool}: 5xx {} before → {} after",
                percent(b.error_ratio),
                percent(a.error_ratio)
            ),
            format!(
                "pool {pool}: mean latency {} before → {} after",
                ms(b),
                ms(a)
            ),
            format!(
                "pool {pool}: servers at their connection limit: {} before → {} after",
                limit(b),
                limit(a)
            ),
        ]
    }
}

/// A pool's figures over `samples` (oldest first); `None` with fewer than two samples of it.
fn pool_figures(pool: &str, samples: &[&Sample]) -> Option<Figures> {
    let series: Vec<&PoolSample> = samples
        .iter()
        .filter_map(|s| s.pools.iter().find(|p| p.name == pool))
        .collect();
    let (first, last) = (series.first()?, series.last()?);
    if series.len() < 2 {
        return None;
    }
    let span_s = {
        let times: Vec<u64> = samples
            .iter()
            .filter(|s| s.pools.iter().any(|p| p.name == pool))
            .map(|s| s.at_ms)
            .collect();
        (times.last()? - times.first()?) as f64 / 1000.0
    };
    // Increases per server present at both ends; a counter that went down is a restart and
    // counts from zero.
    let delta = |now: u64, then: u64| if now >= then { now - then } else { now };
    let mut counts = Vec::new();
    let (mut c5xx, mut responses) = (0u64, 0u64);
    for s in &last.servers {
        let Some(old) = first.servers.iter().find(|o| o.name == s.name) else {
            continue;
        };
        let n = delta(s.requests, old.requests);
        let r = |c: &ballast_core::sample::ResponseClasses| {
            c.c1xx + c.c2xx + c.c3xx + c.c4xx + c.c5xx + c.other
        };
        c5xx += delta(
            s.responses.c5xx + s.responses.other,
            old.responses.c5xx + old.responses.other,
        );
        responses += delta(r(&s.responses), r(&old.responses));
        counts.push((s, n));
    }
    let requests: u64 = counts.iter().map(|c| c.1).sum();
    // Expected shares from the live weights at the end: the servers in rotation, backups
    // only when no primary is.
    let serving = |backup: bool| {
        counts
            .iter()
            .filter(move |(s, _)| s.state == ServerState::Up && s.weight > 0 && s.backup == backup)
    };
    let tier = serving(false).next().is_none();
    let total_weight: u64 = serving(tier).map(|(s, _)| u64::from(s.weight)).sum();
    let candidates: Vec<(&str, u64, f64)> = serving(tier)
        .map(|(s, n)| {
            (
                s.name.as_str(),
                *n,
                f64::from(s.weight) / total_weight as f64,
            )
        })
        .collect();
    let (peak_ratio, peak_server, peak_share) = if requests > 0 && candidates.len() >= 2 {
        let e = evenness(&candidates.iter().map(|c| (c.1, c.2)).collect::<Vec<_>>());
        let peak = &candidates[e.peak_index.min(candidates.len() - 1)];
        (
            Some(e.peak_ratio),
            peak.0.to_string(),
            peak.1 as f64 / requests.max(1) as f64,
        )
    } else {
        (None, String::new(), 0.0)
    };
    // Each round's latency weighed by the requests it answered: a slow server that took few
    // requests must not outweigh the fast ones that took most.
    let (mut latency_sum, mut latency_requests) = (0.0, 0u64);
    for pair in series.windows(2) {
        for s in &pair[1].servers {
            let (Some(latency), Some(old)) = (
                s.latency_ms,
                pair[0].servers.iter().find(|o| o.name == s.name),
            ) else {
                continue;
            };
            let n = delta(s.requests, old.requests);
            latency_sum += latency * n as f64;
            latency_requests += n;
        }
    }
    let mut at_limit: Vec<String> = series
        .iter()
        .flat_map(|p| &p.servers)
        .filter(|s| s.max_connections.is_some_and(|m| m > 0 && s.active >= m))
        .map(|s| s.name.clone())
        .collect();
    at_limit.sort();
    at_limit.dedup();
    Some(Figures {
        promise: last.promise,
        requests,
        rate_per_s: if span_s > 0.0 {
            requests as f64 / span_s
        } else {
            0.0
        },
        peak_ratio,
        peak_server,
        peak_share,
        error_ratio: if responses > 0 {
            c5xx as f64 / responses as f64
        } else {
            0.0
        },
        latency_ms: (latency_requests > 0).then(|| latency_sum / latency_requests as f64),
        at_limit,
    })
}

/// The semantic diff from `old` to `new`, one line each (`pool app: ~ weight of server app-3:
/// 1 → 8`), and the pools it touched: what `config_applied` and `config_rolled_back` carry.
pub fn change_lines(
    old: &ballast_core::Loaded,
    new: &ballast_core::Loaded,
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut pools: Vec<String> = Vec::new();
    for c in ballast_diff::compare::compare(old, new) {
        let values = match c.kind {
            ballast_diff::ChangeKind::Added => {
                format!("+ {}: {}", c.what, c.new.as_deref().unwrap_or(""))
            }
            ballast_diff::ChangeKind::Removed => {
                format!("- {}: {}", c.what, c.old.as_deref().unwrap_or(""))
            }
            ballast_diff::ChangeKind::Changed => format!(
                "~ {}: {} → {}",
                c.what,
                c.old.as_deref().unwrap_or(""),
                c.new.as_deref().unwrap_or("")
            ),
        };
        lines.push(format!("{}: {values}", c.scope));
        if let Some(pool) = c.scope.strip_prefix("pool ")
            && !pools.iter().any(|p| p == pool)
        {
            pools.push(pool.to_string());
        }
    }
    (lines, pools)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, responses, sample, server};

    /// Cumulative per-server counts on a virtual clock: each second `per_second(t)` gives each
    /// server's new requests, 5xx and in-flight count, `weights` the live weights.
    struct Traffic {
        requests: [u64; 3],
        c5xx: [u64; 3],
    }

    impl Traffic {
        fn new() -> Self {
            Self {
                requests: [0; 3],
                c5xx: [0; 3],
            }
        }

        fn second(
            &mut self,
            t: u64,
            new: [u64; 3],
            errors: [u64; 3],
            latency: f64,
            active: [u64; 3],
        ) -> Sample {
            let servers = (0..3)
                .map(|i| {
                    self.requests[i] += new[i];
                    self.c5xx[i] += errors[i];
                    let mut s = server(&format!("app-{}", i + 1));
                    s.requests = self.requests[i];
                    s.responses = responses(self.requests[i] - self.c5xx[i], self.c5xx[i], 0);
                    s.latency_ms = Some(latency);
                    s.active = active[i];
                    s.max_connections = Some(10);
                    s
                })
                .collect();
            sample(t, vec![pool("app", servers)])
        }
    }

    fn reload_at(t: u64) -> ReloadUnderTest {
        ReloadUnderTest {
            at_ms: t * 1000,
            previous: "v1".into(),
            version: "v2".into(),
            pools: vec!["app".into()],
        }
    }

    fn alert(name: &str, severity: &str, since_s: u64, cause: &str) -> Alert {
        Alert {
            labels: BTreeMap::from([
                ("alertname".to_string(), name.to_string()),
                ("severity".to_string(), severity.to_string()),
                ("pool".to_string(), "app".to_string()),
                ("server".to_string(), "app-3".to_string()),
            ]),
            annotations: BTreeMap::from([
                (
                    "summary".to_string(),
                    "pool app sends 100% to app-3".to_string(),
                ),
                ("cause".to_string(), cause.to_string()),
            ]),
            state: AlertState::Firing,
            active_since_ms: since_s * 1000,
            starts_at_ms: Some(since_s * 1000 + 2000),
            ends_at_ms: None,
            inhibited_by: None,
        }
    }

    /// 60 s of even traffic, a reload at 60, then `after(t)` per second until `until`;
    /// returns the round (second) and decision of the first non-`Watching` answer.
    fn run(
        until: u64,
        after: impl Fn(u64) -> ([u64; 3], [u64; 3], f64, [u64; 3]),
        alerts_at: impl Fn(u64) -> Vec<Alert>,
    ) -> Option<(u64, Decision)> {
        let mut traffic = Traffic::new();
        let mut history = Vec::new();
        let mut canary = Canary::new(reload_at(60), CanaryOptions::default());
        for t in 0..until {
            let s = if t < 60 {
                traffic.second(t, [20, 20, 20], [0, 0, 0], 5.0, [1, 1, 1])
            } else {
                let (n, e, l, a) = after(t);
                traffic.second(t, n, e, l, a)
            };
            history.push(s);
            if t < 60 {
                continue;
            }
            let alerts: Vec<_> = alerts_at(t).into_iter().map(std::sync::Arc::new).collect();
            match canary.judge(t * 1000, &history, &alerts) {
                Decision::Watching => {}
                other => return Some((t, other)),
            }
        }
        None
    }

    fn healthy(_: u64) -> ([u64; 3], [u64; 3], f64, [u64; 3]) {
        ([21, 19, 20], [0, 0, 0], 5.5, [1, 1, 1])
    }

    #[test]
    fn a_healthy_reload_passes_at_the_end_of_the_window() {
        let (at, d) = run(200, healthy, |_| Vec::new()).expect("a decision");
        assert_eq!(d, Decision::Passed);
        assert_eq!(at, 121, "passes just after the 60 s window");
    }

    #[test]
    fn a_critical_alert_naming_the_reload_reverts_with_its_evidence() {
        let cause = "It is the load balancer's distribution: ... Likely trigger: the \
                     configuration change of 00:00:58 to ballast.toml (algorithm: round-robin → \
                     consistent-hash), live since the reload of 00:01:00.";
        let skewed = |_| ([0, 0, 60], [0, 0, 0], 5.0, [0, 0, 1]);
        let (at, d) = run(100, skewed, |t| {
            if t >= 63 {
                vec![alert("PoolSkewed", "critical", 60, cause)]
            } else {
                vec![]
            }
        })
        .expect("a decision");
        let Decision::Revert(v) = d else {
            panic!("{d:?}")
        };
        // The alert decides, before the baseline comparison has held for ten rounds.
        assert_eq!(at, 63);
        assert_eq!(v.alertname, "PoolSkewed");
        assert_eq!(v.pool, "app");
        let text = v.evidence.join("\n");
        assert!(text.contains("R 1.0"), "{text}");
        assert!(text.contains("→ 3.00 after"), "{text}");
    }

    #[test]
    fn an_alert_on_the_reload_decides_at_once_and_names_itself() {
        let cause = "It is ... Likely trigger: the reload of 00:01:00 (generation v1 → v2).";
        let (at, d) = run(100, healthy, |t| {
            if t >= 65 {
                vec![alert("ServerAtConnectionLimit", "critical", 64, cause)]
            } else {
                vec![]
            }
        })
        .expect("a decision");
        let Decision::Revert(v) = d else {
            panic!("{d:?}")
        };
        assert_eq!(at, 65);
        assert_eq!(v.alertname, "ServerAtConnectionLimit");
        assert_eq!(v.server.as_deref(), Some("app-3"));
        assert!(
            v.evidence[0].contains("firing since 00:01:06"),
            "{:?}",
            v.evidence
        );
        assert!(v.evidence[1].starts_with("cause: "), "{:?}", v.evidence);
        assert!(
            v.evidence
                .iter()
                .any(|l| l.contains("5xx 0% before → 0% after")),
            "{:?}",
            v.evidence
        );
    }

    #[test]
    fn alerts_that_do_not_blame_this_reload_never_revert() {
        let other = "It is ... Likely trigger: the reload of 00:00:30 (generation v0 → v1).";
        let none = "It is one backend: app-3 is slow.";
        let names = "It is ... Likely trigger: the reload of 00:01:00 (generation v1 → v2).";
        let cases = [
            alert("PoolSkewed", "critical", 65, other),
            alert("PoolSkewed", "critical", 65, none),
            alert("PoolSkewed", "warning", 65, names),
            // Began before the reload: not caused by it.
            alert("PoolSkewed", "critical", 59, names),
            alert("ConfigChangeRisky", "critical", 65, names),
            {
                let mut pending = alert("PoolSkewed", "critical", 65, names);
                pending.state = AlertState::Pending;
                pending
            },
            {
                let mut elsewhere = alert("PoolSkewed", "critical", 65, names);
                elsewhere.labels.insert("pool".into(), "other".into());
                elsewhere
            },
        ];
        for a in cases {
            let (_, d) = run(200, healthy, |_| vec![a.clone()]).expect("a decision");
            assert_eq!(d, Decision::Passed, "{a:?}");
        }
    }

    #[test]
    fn a_few_noisy_rounds_are_no_regression_but_ten_are() {
        // Three seconds of 5xx from 70, then clean: passes.
        let blip = |t: u64| {
            if (70..73).contains(&t) {
                ([20, 20, 20], [20, 20, 20], 5.0, [1, 1, 1])
            } else {
                healthy(t)
            }
        };
        // A bad second stays in the two-second recent stretch for two rounds, never ten; three
        // bad seconds in a row neither.
        let (_, decided) = run(200, blip, |_| Vec::new()).expect("a decision");
        assert_eq!(decided, Decision::Passed);

        // Errors that hold: reverted on the tenth round, with the figures.
        let failing = |_| ([20, 20, 20], [4, 4, 4], 5.0, [1, 1, 1]);
        let (at, d) = run(100, failing, |_| Vec::new()).expect("a decision");
        let Decision::Revert(v) = d else {
            panic!("{d:?}")
        };
        assert_eq!(at, 70, "ten rounds: 61 to 70");
        assert_eq!(v.alertname, "CanaryErrorRatio");
        assert!(
            v.reason.contains("5xx 0% before the reload → 20% after"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn latency_saturation_and_skew_against_the_baseline_revert() {
        let slow = |_| ([20, 20, 20], [0, 0, 0], 400.0, [1, 1, 1]);
        let (_, d) = run(100, slow, |_| Vec::new()).unwrap();
        assert!(
            matches!(&d, Decision::Revert(v) if v.alertname == "CanaryLatency" && v.reason.contains("5 ms before the reload → 400 ms after")),
            "{d:?}"
        );
        let full = |_| ([20, 20, 20], [0, 0, 0], 5.0, [1, 1, 10]);
        let (_, d) = run(100, full, |_| Vec::new()).unwrap();
        assert!(
            matches!(&d, Decision::Revert(v) if v.alertname == "CanarySaturation" && v.reason.contains("app-3")),
            "{d:?}"
        );
        let hot = |_| ([2, 2, 56], [0, 0, 0], 5.0, [1, 1, 1]);
        let (_, d) = run(100, hot, |_| Vec::new()).unwrap();
        assert!(
            matches!(&d, Decision::Revert(v) if v.alertname == "CanaryDistribution" && v.reason.contains("app-3 takes 93.3%")),
            "{d:?}"
        );
    }

    #[test]
    fn a_decided_canary_stays_quiet_and_empty_input_is_no_panic() {
        let mut c = Canary::new(reload_at(60), CanaryOptions::default());
        assert_eq!(c.judge(61_000, &[], &[]), Decision::Watching);
        assert_eq!(c.judge(500_000, &[], &[]), Decision::Passed);
        assert_eq!(c.judge(61_000, &[], &[]), Decision::Passed);
    }
}
