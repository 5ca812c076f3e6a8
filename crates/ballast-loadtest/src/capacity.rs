//! The capacity search (`--find-capacity --slo 'p99<50ms,errors<0.1%'`): open-model steps at a
//! rising rate (doubling from a start rate) until one misses the SLO, then bisection between
//! the last rate that met it and the first that did not, to the highest rate that meets it;
//! and which backend saturated first, read from the first failing step. The search itself
//! ([`Search`]) is a pure state machine over step verdicts; [`find_capacity`] runs its steps.

use std::time::{Duration, Instant};

use ballast_sim::assert::{Condition, Metrics, Op, evaluate};
use serde::Serialize;

use crate::plan::{Load, Plan, Stop};
use crate::report::{BackendReport, Report};
use crate::run::{self, Finished};

/// How the search goes.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    /// The first step's rate, requests per second.
    pub start_rate: f64,
    /// No step goes above it; a target that meets the SLO there is reported as "at least".
    pub max_rate: f64,
    /// Each step's measured length.
    pub step: Duration,
    /// Each step's warm-up (connections opened, caches warm), left out of its figures.
    pub step_warmup: Duration,
    /// Bisection stops when the failing rate is within this fraction above the passing one.
    pub precision: f64,
    /// The whole search stops by then, with the best bracket found so far.
    pub budget: Duration,
    /// Run a step that missed the SLO once more before the miss counts.
    pub confirm_misses: bool,
}

impl SearchSpec {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.start_rate.is_finite() && self.start_rate > 0.0) {
            return Err(format!(
                "--start-rate {} must be above 0 requests per second",
                self.start_rate
            ));
        }
        if !(self.max_rate.is_finite() && self.max_rate >= self.start_rate) {
            return Err(format!(
                "--max-rate {} must be at least the start rate {}",
                self.max_rate, self.start_rate
            ));
        }
        if self.step < Duration::from_millis(100) {
            return Err("--step-duration must be at least 100ms".into());
        }
        if !(self.precision > 0.0 && self.precision < 1.0) {
            return Err(format!(
                "--precision {} must be a fraction between 0 and 1, e.g. 5%",
                self.precision
            ));
        }
        Ok(())
    }
}

/// Which phase a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Doubling until a step fails.
    Raise,
    /// Halving the bracket between the last pass and the first failure.
    Bisect,
}

/// The search's state: the bracket and the next rate to try.
#[derive(Debug, Clone)]
pub struct Search {
    spec: SearchSpec,
    /// The highest rate that met the SLO so far.
    pub passed: Option<f64>,
    /// The lowest rate that missed it so far.
    pub failed: Option<f64>,
}

impl Search {
    pub fn new(spec: SearchSpec) -> Search {
        Search {
            spec,
            passed: None,
            failed: None,
        }
    }

    /// The next rate to try and its phase; `None` when the search is done.
    pub fn next_rate(&self) -> Option<(f64, Phase)> {
        match (self.passed, self.failed) {
            (None, None) => Some((self.spec.start_rate, Phase::Raise)),
            // The start rate already fails: nothing below it is searched (lower --start-rate).
            (None, Some(_)) => None,
            (Some(pass), None) => {
                if pass >= self.spec.max_rate {
                    None
                } else {
                    Some(((pass * 2.0).min(self.spec.max_rate), Phase::Raise))
                }
            }
            (Some(pass), Some(fail)) => {
                if fail <= pass * (1.0 + self.spec.precision) {
                    None
                } else {
                    Some(((pass + fail) / 2.0, Phase::Bisect))
                }
            }
        }
    }

    /// Takes one step's verdict.
    pub fn record(&mut self, rate: f64, met: bool) {
        if met {
            self.passed = Some(self.passed.map_or(rate, |p| p.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
    }
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub phase: Phase,
    pub target_rate: f64,
    /// Achieved over the step.
    pub rate: f64,
    pub requests: u64,
    pub p99_ms: f64,
    pub error_ratio: f64,
    pub met_slo: bool,
    /// The step missed the SLO once and was run again; these are the second run's figures.
    pub retried: bool,
    /// The SLO's conditions that failed, with their actual values.
    pub failed: Vec<String>,
}

/// The backend that saturated first: the one furthest past the SLO at the first failing step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saturation {
    pub backend: String,
    /// The first failing step's target rate.
    pub at_rate: f64,
    pub p99_ms: f64,
    /// Its 5xx over its responses.
    pub error_ratio: f64,
    pub share: f64,
    pub expected_share: Option<f64>,
}

/// The search's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    pub slo: String,
    /// The highest rate that met the SLO (`None`: even the start rate missed it).
    pub capacity: Option<f64>,
    /// The lowest rate that missed it (`None`: none did, up to --max-rate).
    pub first_failing_rate: Option<f64>,
    /// True when the search stopped at --max-rate with every step meeting the SLO: the
    /// capacity is at least that.
    pub at_max_rate: bool,
    /// True when the time budget ended the search before the bracket was narrow enough.
    pub out_of_time: bool,
    pub saturated: Option<Saturation>,
    pub steps: Vec<Step>,
    pub seconds: f64,
}

impl Capacity {
    /// The text summary.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "step  phase    target/s  achieved/s   p99 ms  errors  SLO ({})",
            self.slo
        );
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>4}  {:<7} {:>9.1} {:>11.1} {:>8.2} {:>6.2}%  {}",
                i + 1,
                match s.phase {
                    Phase::Raise => "raise",
                    Phase::Bisect => "bisect",
                },
                s.target_rate,
                s.rate,
                s.p99_ms,
                s.error_ratio * 100.0,
                if s.met_slo {
                    "met".to_string()
                } else {
                    format!("missed: {}", s.failed.join(", "))
                }
            );
        }
        out.push('\n');
        match self.capacity {
            Some(c) if self.at_max_rate => {
                let _ = writeln!(
                    out,
                    "capacity: at least {c:.1} req/s (every step met the SLO up to --max-rate)"
                );
            }
            Some(c) => {
                let _ = write!(out, "capacity: {c:.1} req/s meets the SLO");
                if let Some(f) = self.first_failing_rate {
                    let _ = write!(out, "; {f:.1} req/s does not");
                }
                out.push('\n');
            }
            None => {
                let _ = writeln!(
                    out,
                    "capacity: below {:.1} req/s (the first step already missed the SLO; lower \
                     --start-rate)",
                    self.first_failing_rate.unwrap_or(0.0)
                );
            }
        }
        if self.out_of_time {
            out.push_str("(the time budget ended the search before the bracket was narrow)\n");
        }
        if let Some(s) = &self.saturated {
            let _ = writeln!(
                out,
                "saturated first: {} at {:.1} req/s: p99 {:.2} ms, errors {:.2}%, share {:.1}%{}",
                s.backend,
                s.at_rate,
                s.p99_ms,
                s.error_ratio * 100.0,
                s.share * 100.0,
                s.expected_share
                    .map(|e| format!(" (expected {:.1}%)", e * 100.0))
                    .unwrap_or_default()
            );
        }
        out
    }
}

/// A backend's own figures, named as the SLO names the run's.
struct BackendMetrics<'a>(&'a BackendReport);

impl BackendMetrics<'_> {
    fn error_ratio(&self) -> f64 {
        let b = self.0;
        if b.requests == 0 {
            0.0
        } else {
            b.responses.get("5xx").copied().unwrap_or(0) as f64 / b.requests as f64
        }
    }
}

impl Metrics for BackendMetrics<'_> {
    fn names(&self) -> &'static [&'static str] {
        &["errors", "mean", "p50", "p90", "p99", "p999", "max"]
    }
    fn metric(&self, name: &str) -> Option<f64> {
        let l = &self.0.latency_ms;
        Some(match name {
            "errors" => self.error_ratio(),
            "mean" => l.mean,
            "p50" => l.p50,
            "p90" => l.p90,
            "p99" => l.p99,
            "p999" => l.p999,
            "max" => l.max,
            _ => return None,
        })
    }
}

/// How far past an upper bound `actual` is (1.0 = at the bound; above 1 = past it).
fn pressure(condition: &Condition, actual: f64) -> Option<f64> {
    if !matches!(condition.op, Op::Lt | Op::Le) || !actual.is_finite() {
        return None;
    }
    Some(if condition.value > 0.0 {
        actual / condition.value
    } else if actual > 0.0 {
        f64::INFINITY
    } else {
        0.0
    })
}

/// The backend furthest past the SLO's upper bounds in `report` (by p99 when the SLO bounds
/// nothing a backend has).
pub fn saturated_backend(report: &Report, slo: &[Condition], at_rate: f64) -> Option<Saturation> {
    let score = |b: &BackendReport| -> f64 {
        let m = BackendMetrics(b);
        let worst = slo
            .iter()
            .filter_map(|c| m.metric(&c.metric).and_then(|a| pressure(c, a)))
            .fold(f64::NEG_INFINITY, f64::max);
        if worst == f64::NEG_INFINITY {
            b.latency_ms.p99
        } else {
            worst
        }
    };
    report
        .backends
        .iter()
        .filter(|b| b.requests > 0)
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .map(|b| Saturation {
            backend: b.name.clone(),
            at_rate,
            p99_ms: b.latency_ms.p99,
            error_ratio: BackendMetrics(b).error_ratio(),
            share: b.share,
            expected_share: b.expected_share,
        })
}

/// Runs the search: each step an open-model run of `base` at the step's rate; `report` turns a
/// finished step into its report (expected shares and all), `on_step` sees each step as it ends.
pub async fn find_capacity(
    base: &Plan,
    spec: SearchSpec,
    slo: &[Condition],
    slo_text: &str,
    report: impl Fn(&Finished, f64) -> Report,
    mut on_step: impl FnMut(usize, &Step),
) -> Capacity {
    let began = Instant::now();
    let mut search = Search::new(spec.clone());
    let mut steps = Vec::new();
    let mut saturated = None;
    let mut out_of_time = false;
    let max_connections = match base.load {
        Load::Open {
            max_connections, ..
        } => max_connections,
        Load::Closed { connections } => connections.max(1000),
    };
    let arrival = match base.load {
        Load::Open { arrival, .. } => arrival,
        Load::Closed { .. } => ballast_core::traffic::ArrivalKind::Constant,
    };
    while let Some((rate, phase)) = search.next_rate() {
        // A step takes its warm-up, its length, and up to a timeout to drain.
        let step_cost = spec.step_warmup + spec.step + base.timeout;
        if began.elapsed() + step_cost > spec.budget && !steps.is_empty() {
            out_of_time = true;
            break;
        }
        let mut plan = base.clone();
        plan.load = Load::Open {
            rate,
            arrival,
            max_connections,
        };
        plan.stop = Stop::After(spec.step);
        plan.warmup = spec.step_warmup;
        let finished = run::run(plan.clone(), |_| {}).await;
        let mut r = report(&finished, rate);
        let mut verdicts = evaluate(slo, &r);
        let mut met = verdicts.iter().all(|v| v.passed);
        // A miss is confirmed by a second run before it counts: one burst of noise (another
        // process on the machine, a GC pause in the target) must not end the raise or move
        // the bracket below the real capacity.
        let retried = !met && spec.confirm_misses;
        if retried {
            let again = run::run(plan, |_| {}).await;
            r = report(&again, rate);
            verdicts = evaluate(slo, &r);
            met = verdicts.iter().all(|v| v.passed);
        }
        if !met && search.failed.is_none() {
            saturated = saturated_backend(&r, slo, rate);
        }
        search.record(rate, met);
        let step = Step {
            phase,
            target_rate: rate,
            rate: r.rate,
            requests: r.requests,
            p99_ms: r.latency_ms.p99,
            error_ratio: r.error_ratio,
            met_slo: met,
            retried,
            failed: verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(|v| format!("{} (actual {:.4})", v.condition, v.actual))
                .collect(),
        };
        on_step(steps.len() + 1, &step);
        steps.push(step);
    }
    Capacity {
        slo: slo_text.to_string(),
        capacity: search.passed,
        first_failing_rate: search.failed,
        at_max_rate: search.failed.is_none() && search.passed.is_some(),
        out_of_time,
        saturated,
        steps,
        seconds: began.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec() -> SearchSpec {
        SearchSpec {
            start_rate: 50.0,
            max_rate: 10_000.0,
            step: Duration::from_secs(1),
            step_warmup: Duration::ZERO,
            precision: 0.05,
            budget: Duration::from_secs(60),
            confirm_misses: true,
        }
    }

    /// Drives the search against a target that meets the SLO up to `capacity`.
    fn search_against(capacity: f64, spec: SearchSpec) -> (Search, Vec<(f64, Phase)>) {
        let mut s = Search::new(spec);
        let mut tried = Vec::new();
        while let Some((rate, phase)) = s.next_rate() {
            tried.push((rate, phase));
            s.record(rate, rate <= capacity);
            assert!(tried.len() < 100, "the search does not end: {tried:?}");
        }
        (s, tried)
    }

    #[test]
    fn doubling_then_bisection_lands_within_the_precision() {
        let (s, tried) = search_against(200.0, spec());
        assert_eq!(
            tried[..4].iter().map(|t| t.0).collect::<Vec<_>>(),
            [50.0, 100.0, 200.0, 400.0]
        );
        assert!(tried[..4].iter().all(|t| t.1 == Phase::Raise));
        assert!(tried[4..].iter().all(|t| t.1 == Phase::Bisect));
        let (pass, fail) = (s.passed.unwrap(), s.failed.unwrap());
        assert!(pass <= 200.0 && fail > 200.0, "{pass}..{fail}");
        assert!(fail <= pass * 1.05, "{pass}..{fail}");

        // A capacity between two doublings.
        let (s, _) = search_against(333.0, spec());
        let pass = s.passed.unwrap();
        assert!((pass - 333.0).abs() / 333.0 < 0.05, "{pass}");
    }

    #[test]
    fn the_search_stops_at_the_max_rate_and_at_a_failing_start() {
        let mut capped = spec();
        capped.max_rate = 120.0;
        let (s, tried) = search_against(1e9, capped);
        assert_eq!(
            tried.iter().map(|t| t.0).collect::<Vec<_>>(),
            [50.0, 100.0, 120.0]
        );
        assert_eq!((s.passed, s.failed), (Some(120.0), None));

        let (s, tried) = search_against(10.0, spec());
        assert_eq!(tried.len(), 1);
        assert_eq!((s.passed, s.failed), (None, Some(50.0)));
    }

    #[test]
    fn nonsense_specs_are_refused() {
        let mut bad = spec();
        bad.max_rate = 10.0;
        assert!(bad.validate().unwrap_err().contains("--max-rate"));
        let mut bad = spec();
        bad.precision = 0.0;
        assert!(bad.validate().unwrap_err().contains("--precision"));
        let mut bad = spec();
        bad.start_rate = f64::NAN;
        assert!(bad.validate().is_err());
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn the_backend_furthest_past_the_slo_is_the_saturated_one() {
        use crate::tally::{Outcome, Tally};
        let mut t = Tally::default();
        let answer = |backend: &str, status| Outcome::Response {
            status,
            backend: Some(backend.to_string()),
        };
        for _ in 0..100 {
            t.record(&answer("fast", 200), Duration::from_millis(2));
            t.record(&answer("slow", 200), Duration::from_millis(80));
        }
        let r = Report::build(
            &t,
            Duration::from_secs(1),
            Some(200.0),
            "X-Served-By",
            &BTreeMap::new(),
        );
        let slo = ballast_sim::assert::parse_for("p99<50ms,errors<0.1%", Report::METRICS).unwrap();
        let s = saturated_backend(&r, &slo, 200.0).unwrap();
        assert_eq!(s.backend, "slow");
        assert!((s.p99_ms - 80.0).abs() < 1.0, "{s:?}");
        assert!((s.share - 0.5).abs() < 1e-9);

        // Errors weigh in too: a fast backend answering 5xx is past `errors<0.1%` without bound.
        for _ in 0..10 {
            t.record(&answer("fast", 503), Duration::from_millis(1));
        }
        let r = Report::build(
            &t,
            Duration::from_secs(1),
            Some(200.0),
            "X-Served-By",
            &BTreeMap::new(),
        );
        assert_eq!(saturated_backend(&r, &slo, 200.0).unwrap().backend, "fast");
    }
}
