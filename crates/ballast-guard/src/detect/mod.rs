//! Detectors: pure judgements over a window of samples of one load balancer. Each returns
//! [`Finding`]s with the figures behind them; deciding to alert (for how long, how loud, what
//! it inhibits) is the alert lifecycle's job (`crate::alert`), not theirs.
//!
//! A detector says what is wrong *now*, in this window. "For two minutes" and "for three
//! consecutive windows" are `for` durations of the rule (`RuleSpec::for_ms`), applied by the
//! lifecycle, so every detector stays a function of its window alone.

pub mod distribution;
pub mod errors;
pub mod saturation;

use std::collections::BTreeMap;

use serde::Serialize;

/// How loud a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// Where a problem sits: the question every outage report spent hours on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The load balancer spreads traffic unevenly (weights, hashing, a server taken out).
    Distribution,
    /// The load balancer's own limits (server, backend, frontend, process, workers).
    Limits,
    /// One backend server misbehaves (errors, latency, down, flapping).
    Backend,
    /// The traffic itself changed (a surge against its baseline).
    Traffic,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Distribution => "the load balancer's distribution",
            Layer::Limits => "the load balancer's limits",
            Layer::Backend => "one backend",
            Layer::Traffic => "the traffic",
        }
    }
}

/// One thing a detector found in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule that found it: an `alertname` from [`RULES`].
    pub rule: &'static str,
    pub level: Level,
    pub layer: Layer,
    pub pool: Option<String>,
    pub server: Option<String>,
    /// One line for a page: what, where, how much.
    pub summary: String,
    /// The figures behind it, in a sentence or two.
    pub description: String,
    /// The numbers, by name (`peak_ratio`, `share`, `expected`, `sessions`, `limit`…), for JSON
    /// output, the dashboard and the postmortem.
    pub figures: BTreeMap<String, f64>,
}

/// A rule: what a detector's finding is called, how long it must hold before it fires, and
/// what its runbook section says. `docs/runbook.md` is generated from this table.
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    pub alertname: &'static str,
    pub layer: Layer,
    /// How long the finding must hold (in consecutive rounds) before the alert fires.
    pub for_ms: u64,
    /// What it means, for the runbook.
    pub meaning: &'static str,
    /// What to check first and what to do, for the runbook.
    pub response: &'static str,
}

/// Every rule the detectors raise; each detector module owns its `RULES` and their wording.
pub fn all_rules() -> impl Iterator<Item = &'static RuleSpec> {
    distribution::RULES
        .iter()
        .chain(saturation::RULES)
        .chain(errors::RULES)
        .chain(crate::change::RULES)
}

/// The rule of a given name.
pub fn rule(alertname: &str) -> Option<&'static RuleSpec> {
    all_rules().find(|r| r.alertname == alertname)
}
