//! The watcher: one watched load balancer's samples kept over minutes, judged every round by
//! every detector over the detection window, turned into alerts with their cause statements,
//! and its configuration changes and reloads noticed. Pure given its samples (the caller
//! takes them from a source and delivers the alerts to sinks), so it runs the same under
//! `ballast watch`, inside `serve` and on a virtual clock in tests.

use std::collections::VecDeque;

use std::sync::Arc;

use ballast_core::sample::{Counters, Gauge, Sample, SamplePart};
use serde::Serialize;

use crate::alert::{Lifecycle, LifecycleOptions, Round};
use crate::change::{ChangeWatcher, ConfigChange, Reload};
use crate::detect::Finding;
use crate::detect::distribution::{self, PoolDistribution, Thresholds};
use crate::detect::drift::{self, DriftThresholds};
use crate::detect::errors::{self, ErrorThresholds};
use crate::detect::saturation::{self, SaturationThresholds};
use crate::verdict::{self, Context};

/// How a watcher judges.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The detection window: the last this-many ms of samples are judged each round.
    pub window_ms: u64,
    /// How much history is kept (baselines, the postmortem's "before").
    pub history_ms: u64,
    /// A change or reload this long before an alert is named as its likely trigger.
    pub trigger_window_ms: u64,
    pub distribution: Thresholds,
    pub drift: DriftThresholds,
    pub saturation: SaturationThresholds,
    pub errors: ErrorThresholds,
    pub lifecycle: LifecycleOptions,
    /// Requests that reached no server ("no live upstreams").
    pub unreached: crate::detect::unreached::UnreachedThresholds,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            window_ms: 5_000,
            history_ms: 600_000,
            trigger_window_ms: 900_000,
            distribution: Thresholds::default(),
            drift: DriftThresholds::default(),
            saturation: SaturationThresholds::default(),
            errors: ErrorThresholds::default(),
            lifecycle: LifecycleOptions::default(),
            unreached: Default::default(),
        }
    }
}

/// What one round found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub round: Round,
    /// Each pool's distribution over the window, for the live view.
    pub distributions: Vec<PoolDistribution>,
    pub change: Option<ConfigChange>,
    pub reload: Option<Reload>,
}

/// What [`Watcher::take`] found as a sample arrived, for [`Watcher::judge`].
#[derive(Debug)]
pub struct Intake {
    pub now_ms: u64,
    pub change: Option<ConfigChange>,
    pub reload: Option<Reload>,
}

/// One watched load balancer.
pub struct Watcher {
    options: WatchOptions,
    history: VecDeque<Sample>,
    lifecycle: Lifecycle,
    changes: Vec<ConfigChange>,
    reloads: Vec<Reload>,
    config: Option<ChangeWatcher>,
    /// The configuration the running process loaded: the file when watching began, then as
    /// it was at each reload. An edit not yet reloaded is not live, and drift against it would
    /// blame the running weights for the file's new ones.
    live_config: Option<ballast_core::config::Config>,
    /// Gauge and counter arrays of samples that left the window, for the next samples'
    /// (`Noted`).
    spare_gauges: Vec<Vec<Gauge>>,
    spare_counters: Vec<Vec<Counters>>,
    spare_latency: Vec<Vec<(f64, u64)>>,
}

/// A line of the watcher's own record (JSON lines under `--format json`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    Sample(&'a Sample),
    Alert(&'a crate::alert::Alert),
    ConfigChange(&'a ConfigChange),
    Reload(&'a Reload),
}

impl Watcher {
    pub fn new(source: &str, instance: &str, options: WatchOptions) -> Self {
        Self {
            lifecycle: Lifecycle::new(source, instance, options.lifecycle),
            options,
            history: VecDeque::new(),
            changes: Vec::new(),
            reloads: Vec::new(),
            config: None,
            live_config: None,
            spare_gauges: Vec::new(),
            spare_counters: Vec::new(),
            spare_latency: Vec::new(),
        }
    }

    /// Watches a configuration file for changes too.
    pub fn with_config(mut self, config: ChangeWatcher) -> Self {
        self.live_config = config.current().map(|i| i.loaded.config.clone());
        self.config = Some(config);
        self
    }

    /// Says which configuration the process runs now, when the caller knows better than the
    /// file: `serve` after its canary re-applied the previous version while the file still
    /// holds the reverted one (drift is then judged against what runs, not the file).
    pub fn set_live_config(&mut self, config: ballast_core::config::Config) {
        self.live_config = Some(config);
    }

    pub fn history(&self) -> impl Iterator<Item = &Sample> {
        self.history.iter()
    }

    /// Every pending and firing alert now.
    pub fn active(&self) -> Vec<std::sync::Arc<crate::alert::Alert>> {
        self.lifecycle.active()
    }

    pub fn changes(&self) -> &[ConfigChange] {
        &self.changes
    }

    /// The reloads seen within the trigger window, oldest first.
    pub fn reloads(&self) -> &[Reload] {
        &self.reloads
    }

    /// Takes one sample and judges the window that ends with it: [`Watcher::take`], then
    /// [`Watcher::judge`].
    pub fn observe(&mut self, sample: Sample) -> Outcome {
        let intake = self.take(sample);
        self.judge(intake)
    }

    /// The first half of a round: the sample noted and kept, the reload it shows and the
    /// configuration change found noticed, the history trimmed. Apart from [`Watcher::judge`]
    /// so the costs of the two are measured apart (`bench/guard.sh`).
    pub fn take(&mut self, mut sample: Sample) -> Intake {
        let now = sample.at_ms;
        let mut intake = Intake {
            now_ms: now,
            change: None,
            reload: None,
        };
        let generation = |s: &Sample| s.process.as_ref().and_then(|p| p.generation.clone());
        if let (Some(previous), Some(current)) = (
            self.history.back().and_then(generation),
            generation(&sample),
        ) && previous != current
        {
            let reload = Reload {
                at_ms: now,
                previous,
                generation: current,
            };
            self.reloads.push(reload.clone());
            intake.reload = Some(reload);
        }
        if let Some(change) = self.config.as_mut().and_then(|c| c.poll(now)) {
            self.changes.push(change.clone());
            intake.change = Some(change);
        }
        let current = || {
            self.config
                .as_ref()
                .and_then(ChangeWatcher::current)
                .map(|i| i.loaded.config.clone())
        };
        // A process that says nothing of its reloads runs, for all the watcher knows, the file.
        if intake.reload.is_some() || generation(&sample).is_none() {
            self.live_config = current();
        }
        while self
            .history
            .front()
            .is_some_and(|s| now.saturating_sub(s.at_ms) > self.options.history_ms)
        {
            self.history.pop_front();
        }
        // The gauges and counters noted on samples that left the window are read no more:
        // their arrays are reused for the new sample's.
        let start = now.saturating_sub(self.options.window_ms);
        let left = self.history.partition_point(|s| s.at_ms < start);
        for old in self.history.range_mut(..left).rev() {
            if old
                .pools
                .iter()
                .all(|p| p.noted.gauges.is_empty() && p.noted.counters.is_empty())
            {
                break;
            }
            let (mut gauges, mut counters) = (None, None);
            for pool in &mut old.pools {
                gauges = Some(std::mem::take(&mut pool.noted.gauges));
                counters = Some(std::mem::take(&mut pool.noted.counters));
            }
            // The last part of each whole gives it back (unless someone kept a copy).
            if let Some(mut whole) = gauges.and_then(SamplePart::into_whole) {
                whole.clear();
                self.spare_gauges.push(whole);
            }
            if let Some(mut whole) = counters.and_then(SamplePart::into_whole) {
                whole.clear();
                self.spare_counters.push(whole);
            }
        }
        // Noted once as each pool arrives (`Noted`): its layout, so servers are matched by
        // place (`detect::same_layout`); whether it continues the sample before, and its
        // gauges, so a window of such samples is read from its ends (`detect::window`).
        // The gauges and counters of the whole sample go into one array each, pool after pool.
        let previous = self.history.back();
        let mut gauges = self.spare_gauges.pop().unwrap_or_default();
        let mut counters = self.spare_counters.pop().unwrap_or_default();
        for pool in &sample.pools {
            gauges.extend(pool.servers.iter().map(Gauge::of));
            counters.extend(pool.servers.iter().map(Counters::of));
        }
        let (gauges, counters) = (Arc::new(gauges), Arc::new(counters));
        let mut start = 0;
        for (index, pool) in sample.pools.iter_mut().enumerate() {
            if pool.noted.layout == 0 {
                pool.noted.layout = pool.servers_layout();
            }
            let end = start + pool.servers.len();
            pool.noted.gauges = SamplePart::new(gauges.clone(), start, end);
            pool.noted.counters = SamplePart::new(counters.clone(), start, end);
            start = end;
            let before = previous
                .and_then(|p| crate::detect::by_name(&p.pools, index, &pool.name, |p| &p.name));
            pool.noted.continues =
                before.is_some_and(|before| crate::detect::window::continues(before, pool));
            let sums = self.spare_latency.pop().unwrap_or_default();
            pool.noted.latency = Some(crate::verdict::latency_run(before, pool, now, sums));
        }
        self.history.push_back(sample);
        // The latency sums are read as far back as the latency baseline reaches.
        let history = self.history.make_contiguous();
        if let Some((first, _)) = crate::verdict::latency_span(history, self.options.window_ms) {
            for old in history[..first].iter_mut().rev() {
                if old.pools.iter().all(|p| p.noted.latency.is_none()) {
                    break;
                }
                for pool in &mut old.pools {
                    if let Some(mut run) = pool.noted.latency.take() {
                        run.servers.clear();
                        self.spare_latency.push(run.servers);
                    }
                }
            }
        }
        let trigger_window = self.options.trigger_window_ms;
        self.changes
            .retain(|c| now.saturating_sub(c.at_ms) <= trigger_window);
        self.reloads
            .retain(|r| now.saturating_sub(r.at_ms) <= trigger_window);
        intake
    }

    /// The second half of a round: every detector over the window that ends with the sample
    /// taken, the findings turned into alerts with their cause statements.
    pub fn judge(&mut self, intake: Intake) -> Outcome {
        let Intake {
            now_ms: now,
            change,
            reload,
        } = intake;
        let mut outcome = Outcome {
            change,
            reload,
            ..Outcome::default()
        };
        let trigger_window = self.options.trigger_window_ms;
        let history: &[Sample] = self.history.make_contiguous();
        let start = now.saturating_sub(self.options.window_ms);
        let window = &history[history.partition_point(|s| s.at_ms < start)..];
        let mut findings = Vec::new();
        if window.len() >= 2 {
            // Distribution and errors a pool at a time, from one reduction of each server's
            // samples (at fleet scale the window does not stay in cache).
            let errors_round = errors::ErrorRound::new(window, &self.options.errors);
            let mut error_findings = Vec::new();
            let mut series = Vec::with_capacity(window.len());
            let mut servers = Vec::new();
            if let Some(latest) = window.last() {
                outcome.distributions.reserve(latest.pools.len());
                for (index, pool) in latest.pools.iter().enumerate() {
                    crate::detect::pool_series_into(window, index, &pool.name, &mut series);
                    crate::detect::window::servers_into(&series, &mut servers);
                    outcome.distributions.extend(distribution::judge_servers(
                        &series,
                        &servers,
                        &self.options.distribution,
                    ));
                    errors_round.pool(pool, &servers, &mut error_findings);
                }
            }
            findings.extend(
                outcome
                    .distributions
                    .iter()
                    .filter_map(distribution::finding),
            );
            findings.extend(crate::detect::keys::detect(
                window,
                &self.options.distribution,
            ));
            findings.extend(saturation::detect(window, &self.options.saturation));
            findings.append(&mut error_findings);
            findings.extend(crate::detect::unreached::detect(
                window,
                &self.options.unreached,
            ));
        }
        // Drift is judged against the configuration the process loaded when it is read, else
        // the history's start.
        let reference = self.live_config.as_ref();
        findings.extend(drift::detect(history, reference, &self.options.drift));
        // A risky change stays a finding for the attribution window.
        findings.extend(self.changes.iter().flat_map(ConfigChange::findings));

        let ctx = Context {
            history,
            window_ms: self.options.window_ms,
            changes: &self.changes,
            reloads: &self.reloads,
            trigger_window_ms: trigger_window,
        };
        let explainer = verdict::Explainer::new(ctx);
        outcome.round = self
            .lifecycle
            .observe(now, &findings, &|f| explainer.explain(f));
        outcome.findings = findings;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, sample, server};

    /// A tiny deterministic generator (xorshift) for traffic noise.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Requests in one second at `rate`, split over servers by `shares`, each server's
        /// count drawn binomially-ish (rate × share ± noise).
        fn round(&mut self, rate: f64, shares: &[f64]) -> Vec<u64> {
            shares
                .iter()
                .map(|s| {
                    let mean = rate * s;
                    // Normal approximation of Poisson noise via the sum of uniforms.
                    let z: f64 = (0..12).map(|_| self.next()).sum::<f64>() - 6.0;
                    (mean + z * mean.sqrt()).max(0.0).round() as u64
                })
                .collect()
        }
    }

    /// Runs `secs` one-second rounds; `shares_at(t)` and `weights_at(t)` give the traffic's
    /// split and the live weights. Returns the first time each alert name fired.
    fn run(
        secs: u64,
        rate: f64,
        shares_at: impl Fn(u64) -> Vec<f64>,
        weights_at: impl Fn(u64) -> Vec<u32>,
    ) -> Vec<(u64, String)> {
        let mut w = Watcher::new("test", "lb-1", WatchOptions::default());
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let mut totals = [0u64; 3];
        let mut fired = Vec::new();
        for t in 0..secs {
            for (total, n) in totals.iter_mut().zip(noise.round(rate, &shares_at(t))) {
                *total += n;
            }
            let weights = weights_at(t);
            let servers = (0..3)
                .map(|i| {
                    let mut s = server(&format!("app-{}", i + 1));
                    s.requests = totals[i];
                    s.weight = weights[i];
                    s
                })
                .collect();
            let outcome = w.observe(sample(t, vec![pool("app", servers)]));
            for a in &outcome.round.fired {
                fired.push((t, a.label("alertname").unwrap_or("").to_string()));
            }
        }
        fired
    }

    /// An HAProxy configuration of pool `app` with weights `w`.
    fn haproxy(w: [u32; 3]) -> String {
        format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    \
             timeout server 10s\nfrontend web\n    bind :8080\n    default_backend app\n\
             backend app\n    balance roundrobin\n    server app-1 127.0.0.1:9001 weight {} check\n    \
             server app-2 127.0.0.1:9002 weight {} check\n    server app-3 127.0.0.1:9003 weight {} check\n",
            w[0], w[1], w[2]
        )
    }

    #[test]
    fn an_edit_not_yet_reloaded_is_no_drift_and_the_reload_makes_it_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, haproxy([1, 1, 1])).unwrap();
        let config = ChangeWatcher::new(&path, Vec::new(), ballast_import::Options::default());
        let mut w = Watcher::new("test", "lb-1", WatchOptions::default()).with_config(config);
        let at = |t: u64, weights: [u32; 3], generation: &str| {
            let servers = (0..3)
                .map(|i| {
                    let mut s = server(&format!("app-{}", i + 1));
                    s.weight = weights[i];
                    s
                })
                .collect();
            let mut s = sample(t, vec![pool("app", servers)]);
            s.process = Some(ballast_core::sample::ProcessSample {
                generation: Some(generation.into()),
                ..Default::default()
            });
            s
        };
        let fired = |o: &Outcome| -> Vec<String> {
            o.round
                .fired
                .iter()
                .map(|a| a.label("alertname").unwrap_or("").to_string())
                .collect()
        };
        assert!(fired(&w.observe(at(0, [1, 1, 1], "pid 1"))).is_empty());
        // The file now says 1,1,8; the process still runs 1,1,1: a risky change, no drift.
        std::fs::write(&path, haproxy([1, 1, 8])).unwrap();
        let edited = w.observe(at(1, [1, 1, 1], "pid 1"));
        assert_eq!(fired(&edited), ["ConfigChangeRisky"], "{:?}", edited.round);
        // Reloaded: the live weights are the file's, still no drift.
        let reloaded = w.observe(at(2, [1, 1, 8], "pid 2"));
        assert!(reloaded.reload.is_some());
        assert!(fired(&reloaded).is_empty(), "{:?}", reloaded.round);
        // A runtime change after the reload drifts from what was loaded.
        let changed = w.observe(at(3, [1, 1, 1], "pid 2"));
        assert_eq!(
            fired(&changed),
            ["PoolSharesShifted"],
            "{:?}",
            changed.round
        );
    }

    #[test]
    fn five_minutes_of_fair_noisy_traffic_raise_nothing() {
        for rate in [30.0, 3_000.0] {
            let fired = run(300, rate, |_| vec![1.0 / 3.0; 3], |_| vec![1, 1, 1]);
            assert!(fired.is_empty(), "at {rate}/s: {fired:?}");
        }
    }

    #[test]
    fn a_skew_at_60s_fires_within_ten_seconds_and_names_the_server() {
        let skewed = |t: u64| {
            if t < 60 {
                vec![1.0 / 3.0; 3]
            } else {
                vec![0.15, 0.15, 0.7]
            }
        };
        let fired = run(90, 600.0, skewed, |_| vec![1, 1, 1]);
        let (at, name) = fired.first().expect("an alert").clone();
        assert_eq!(name, "PoolSkewed");
        assert!((60..=70).contains(&at), "fired at {at}");
    }

    #[test]
    fn a_runtime_weight_change_fires_at_once_though_traffic_follows_it() {
        let weights = |t: u64| if t < 60 { vec![1, 1, 1] } else { vec![1, 1, 8] };
        let shares = |t: u64| {
            if t < 60 {
                vec![1.0 / 3.0; 3]
            } else {
                vec![0.1, 0.1, 0.8]
            }
        };
        let fired = run(90, 600.0, shares, weights);
        assert_eq!(
            fired.first(),
            Some(&(60, "PoolSharesShifted".to_string())),
            "{fired:?}"
        );
        assert!(!fired.iter().any(|(_, n)| n == "PoolSkewed"), "{fired:?}");
    }
}
