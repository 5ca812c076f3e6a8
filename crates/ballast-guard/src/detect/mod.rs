//! Detectors: pure judgements over a window of samples of one load balancer. Each returns
//! [`Finding`]s with the figures behind them; deciding to alert (for how long, how loud, what
//! it inhibits) is the alert lifecycle's job (`crate::alert`), not theirs.
//!
//! A detector says what is wrong *now*, in this window. "For two minutes" and "for three
//! consecutive windows" are `for` durations of the rule (`RuleSpec::for_ms`), applied by the
//! lifecycle, so every detector stays a function of its window alone.

pub mod distribution;
pub mod drift;
pub mod errors;
pub mod keys;
pub mod saturation;
pub mod unreached;

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
        .chain(keys::RULES)
        .chain(drift::RULES)
        .chain(saturation::RULES)
        .chain(errors::RULES)
        .chain(unreached::RULES)
        .chain(crate::change::RULES)
        .chain(crate::canary::RULES)
}

/// The rule of a given name.
pub fn rule(alertname: &str) -> Option<&'static RuleSpec> {
    all_rules().find(|r| r.alertname == alertname)
}

// What the detectors share to read a window: the same pool or server through every sample,
// counter increases that know a restart when they see one, and the words for figures.

/// The item named `name` in `items`. Sources list pools and servers in a stable order, so the
/// same position is tried first; a search by name is the fallback (one added mid-window).
pub(crate) fn by_name<'a, T>(
    items: &'a [T],
    hint: usize,
    name: &str,
    name_of: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    let same = |a: &str| a.as_ptr() == name.as_ptr() && a.len() == name.len() || a == name;
    match items.get(hint) {
        // The window's last sample names itself: the same string, no comparison.
        Some(item) if same(name_of(item)) => Some(item),
        _ => items.iter().find(|item| name_of(item) == name),
    }
}

/// Pool `name` through the window, oldest first; samples without it are skipped.
pub(crate) fn pool_series<'a>(
    window: &'a [ballast_core::sample::Sample],
    hint: usize,
    name: &str,
) -> Vec<&'a ballast_core::sample::PoolSample> {
    window
        .iter()
        .filter_map(|s| by_name(&s.pools, hint, name, |p| &p.name))
        .collect()
}

/// How much a cumulative counter rose through a series. `None` with fewer than two values, or
/// when it went down anywhere: the load balancer restarted, and the window says nothing.
pub(crate) fn increase(values: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut values = values.into_iter();
    let first = values.next()?;
    let mut last = first;
    let mut seen_two = false;
    for v in values {
        if v < last {
            return None;
        }
        last = v;
        seen_two = true;
    }
    seen_two.then_some(last - first)
}

/// The window's length in words ("45 s", "2 min 30 s"), for summaries.
pub(crate) fn span(window: &[ballast_core::sample::Sample]) -> String {
    let ms = match (window.first(), window.last()) {
        (Some(first), Some(last)) => last.at_ms.saturating_sub(first.at_ms),
        _ => 0,
    };
    let seconds = ms.div_ceil(1000);
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// A ratio as a percentage: "84%", "12.5%", "0.4%". Written straight into the text it is
/// formatted in: a fleet round formats thousands of them, and a `String` each was a measurable
/// part of it (BENCHMARKS.md, the guard).
pub(crate) fn percent(ratio: f64) -> Percent {
    Percent(ratio)
}

/// A ratio shown as a percentage; see [`percent`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percent(f64);

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.0 * 100.0;
        let tenths = (p * 10.0).round();
        let rounded = tenths / 10.0;
        if rounded.fract() == 0.0 {
            write!(f, "{}%", whole(rounded))
        } else if tenths.abs() < EXACT_INTEGERS {
            // `{rounded:.1}`, from the integer count of tenths: the float printer's exact
            // path falls back to big-number arithmetic on many values.
            let t = tenths as i64;
            let sign = if t < 0 { "-" } else { "" };
            let t = t.unsigned_abs();
            write!(f, "{sign}{}.{}%", t / 10, t % 10)
        } else {
            write!(f, "{rounded:.1}%")
        }
    }
}

/// Floats below this magnitude are exact integers when whole (2⁵³).
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// `v` as `format!("{v:.0}")` writes it (ties to even, `-0` kept), through integer
/// formatting when it fits: the float printer's exact path falls back to big-number
/// arithmetic (Dragon4) on whole values such as 100.0, which a fleet round meets thousands of
/// times.
pub(crate) fn whole(v: f64) -> Whole {
    Whole(v)
}

/// A float shown with no decimals; see [`whole`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Whole(f64);

impl std::fmt::Display for Whole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let rounded = v.round_ties_even();
        // NaN, infinities and values too large for exact integers: the float printer.
        if !rounded.is_finite() || rounded.abs() >= EXACT_INTEGERS {
            return write!(f, "{v:.0}");
        }
        let n = rounded as i64;
        if n == 0 && v.is_sign_negative() {
            f.write_str("-0")
        } else {
            write!(f, "{n}")
        }
    }
}

/// "server POOL/SERVER", the way every server finding names its place, written where it is
/// formatted rather than built as a `String` first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerPlace<'a> {
    pub(crate) pool: &'a str,
    pub(crate) server: &'a str,
}

impl std::fmt::Display for ServerPlace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server {}/{}", self.pool, self.server)
    }
}

/// Figures by name, for [`Finding::figures`].
pub(crate) fn figures(named: &[(&str, f64)]) -> BTreeMap<String, f64> {
    named.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[cfg(test)]
mod tests {
    use super::{percent, whole};

    /// Values around every rounding edge the detectors' figures meet: ratios, latencies,
    /// thresholds below zero, ties, negative zero, huge and non-finite values.
    fn edges() -> Vec<f64> {
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            -0.3,
            -2.5,
            1e15,
            9.1e15,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            values.push(unit * 2.0 - 0.5);
            values.push(unit * 3000.0);
            values.push(f64::from(i) / 1000.0);
            values.push(f64::from(i) / 20.0 - 100.0);
        }
        values
    }

    #[test]
    fn whole_writes_what_the_float_printer_writes() {
        for v in edges() {
            assert_eq!(whole(v).to_string(), format!("{v:.0}"), "{v:e}");
        }
    }

    #[test]
    fn percent_writes_what_it_wrote_as_a_string() {
        // The former implementation, kept as the reference.
        let reference = |ratio: f64| {
            let p = ratio * 100.0;
            let rounded = (p * 10.0).round() / 10.0;
            if rounded.fract() == 0.0 {
                format!("{rounded:.0}%")
            } else {
                format!("{rounded:.1}%")
            }
        };
        for v in edges() {
            assert_eq!(percent(v).to_string(), reference(v), "{v:e}");
        }
        assert_eq!(percent(0.84).to_string(), "84%");
        assert_eq!(percent(0.125).to_string(), "12.5%");
        assert_eq!(percent(-0.0004).to_string(), "-0%");
        assert_eq!(percent(-0.004).to_string(), "-0.4%");
    }
}

/// Builders of synthetic samples for the detectors' tests, on a virtual clock.
#[cfg(test)]
pub(crate) mod testing {
    use ballast_core::sample::{
        PoolSample, Promise, ResponseClasses, Sample, ServerSample, ServerState,
    };

    /// An idle server in rotation, with no limits and no responses yet.
    pub(crate) fn server(name: &str) -> ServerSample {
        ServerSample {
            name: name.into(),
            requests: 0,
            active: 0,
            queued: 0,
            max_connections: None,
            max_queue: None,
            weight: 1,
            state: ServerState::Up,
            backup: false,
            responses: ResponseClasses::default(),
            latency_ms: None,
        }
    }

    pub(crate) fn pool(name: &str, servers: Vec<ServerSample>) -> PoolSample {
        PoolSample {
            predicted: None,
            name: name.into(),
            promise: Promise::RequestShares,
            servers,
            queued: 0,
        }
    }

    /// A sample at `second` seconds on the virtual clock.
    pub(crate) fn sample(second: u64, pools: Vec<PoolSample>) -> Sample {
        Sample {
            at_ms: second * 1000,
            source: "test".into(),
            instance: "lb-1".into(),
            pools,
            frontends: Vec::new(),
            process: None,
            ..Default::default()
        }
    }

    /// Responses with `ok` 2xx, `c5xx` 5xx and `other` with no status.
    pub(crate) fn responses(ok: u64, c5xx: u64, other: u64) -> ResponseClasses {
        ResponseClasses {
            c2xx: ok,
            c5xx,
            other,
            ..ResponseClasses::default()
        }
    }
}
