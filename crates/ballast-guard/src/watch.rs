//! The watcher: one watched load balancer's samples kept over minutes, judged every round by
//! every detector over the detection window, turned into alerts with their cause statements,
//! and its configuration changes and reloads noticed. Pure given its samples (the caller
//! takes them from a source and delivers the alerts to sinks), so it runs the same under
//! `ballast watch`, inside `serve` and on a virtual clock in tests.

use std::collections::VecDeque;

use ballast_core::sample::Sample;
use serde::Serialize;

use crate::alert::{Lifecycle, LifecycleOptions, Round};
use crate::change::{ChangeWatcher, ConfigChange, Reload};
use crate::detect::distribution::{self, PoolDistribution};
use crate::detect::{Finding, distribution::Thresholds};
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
    pub lifecycle: LifecycleOptions,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            window_ms: 5_000,
            history_ms: 600_000,
            trigger_window_ms: 900_000,
            distribution: Thresholds::default(),
            lifecycle: LifecycleOptions::default(),
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

/// One watched load balancer.
pub struct Watcher {
    options: WatchOptions,
    history: VecDeque<Sample>,
    lifecycle: Lifecycle,
    changes: Vec<ConfigChange>,
    reloads: Vec<Reload>,
    config: Option<ChangeWatcher>,
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
        }
    }

    /// Watches a configuration file for changes too.
    pub fn with_config(mut self, config: ChangeWatcher) -> Self {
        self.config = Some(config);
        self
    }

    pub fn history(&self) -> impl Iterator<Item = &Sample> {
        self.history.iter()
    }

    pub fn changes(&self) -> &[ConfigChange] {
        &self.changes
    }

    /// Takes one sample and judges the window that ends with it.
    pub fn observe(&mut self, sample: Sample) -> Outcome {
        let now = sample.at_ms;
        let mut outcome = Outcome::default();
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
            outcome.reload = Some(reload);
        }
        if let Some(change) = self.config.as_mut().and_then(|c| c.poll(now)) {
            self.changes.push(change.clone());
            outcome.change = Some(change);
        }
        self.history.push_back(sample);
        while self
            .history
            .front()
            .is_some_and(|s| now.saturating_sub(s.at_ms) > self.options.history_ms)
        {
            self.history.pop_front();
        }
        let trigger_window = self.options.trigger_window_ms;
        self.changes
            .retain(|c| now.saturating_sub(c.at_ms) <= trigger_window);
        self.reloads
            .retain(|r| now.saturating_sub(r.at_ms) <= trigger_window);

        let history: Vec<Sample> = self.history.iter().cloned().collect();
        let start = now.saturating_sub(self.options.window_ms);
        let window: Vec<Sample> = history
            .iter()
            .filter(|s| s.at_ms >= start)
            .cloned()
            .collect();
        let mut findings = Vec::new();
        if window.len() >= 2 {
            outcome.distributions = distribution::judge_all(&window, &self.options.distribution);
            findings.extend(
                outcome
                    .distributions
                    .iter()
                    .filter_map(distribution::finding),
            );
        }
        // A risky change stays a finding for the attribution window.
        findings.extend(self.changes.iter().flat_map(ConfigChange::findings));

        let ctx = Context {
            history: &history,
            window_ms: self.options.window_ms,
            changes: &self.changes,
            reloads: &self.reloads,
            trigger_window_ms: trigger_window,
        };
        outcome.round = self
            .lifecycle
            .observe(now, &findings, &|f| verdict::explain(f, &ctx));
        outcome.findings = findings;
        outcome
    }
}
