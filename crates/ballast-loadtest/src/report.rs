//! A run's result: per backend its requests, its share against the share it should have had
//! (the configuration's weights when given, else an even split over the backends that
//! answered), errors and latency percentiles; over the run, the achieved rate, the evenness
//! figures (R, Jain's index, χ² p: the same `ballast_core::distribution::evenness` the
//! simulator and the guard use) and the latency of every request. As a table, as JSON (a
//! stable shape: docs/loadtest.md), and as named metrics for `--assert`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use ballast_core::distribution::{Evenness, evenness};
use ballast_sim::assert::Metrics;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::counters::CounterReport;
use crate::predict::Prediction;
use crate::tally::{BackendTally, Tally};

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One backend's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendReport {
    pub name: String,
    pub requests: u64,
    /// Its share of the attributed responses, 0..1.
    pub share: f64,
    /// The share it should have had, when known (`None`: a backend the configuration does not
    /// name).
    pub expected_share: Option<f64>,
    /// share / expected share.
    pub ratio: Option<f64>,
    /// Responses by class: `1xx` … `5xx`.
    pub responses: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    /// `simulate`'s predicted share for it (`--prediction`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_share: Option<f64>,
    /// share − predicted share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_minus_predicted: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The measured part's length (the warm-up left out), seconds.
    pub seconds: f64,
    pub requests: u64,
    /// Requests per second achieved over the measured part (its length stretched to the last
    /// measured send when the generator fell behind its schedule).
    pub rate: f64,
    /// The rate the open model aimed at.
    pub target_rate: Option<f64>,
    /// Requests without an answer, or with a 5xx.
    pub errors: u64,
    pub error_ratio: f64,
    /// Requests without an answer, by why.
    pub failures: BTreeMap<String, u64>,
    /// Responses without the attribution header (`served_by`).
    pub unattributed: u64,
    pub served_by: String,
    pub latency_ms: Latency,
    pub backends: Vec<BackendReport>,
    /// Weight-normalised peak ratio over the backends' shares (1.0 = as expected).
    pub peak_ratio: f64,
    pub jain: f64,
    pub chi2_p: f64,
    /// Where the expected shares came from: `configuration` or `even`.
    pub expected_from: String,
    pub warmup_requests: u64,
    /// The balancer's own counters beside the header (`--admin`, `--stats-socket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<CounterReport>,
    /// What `simulate` predicts for the same configuration and traffic (`--prediction`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// TCP connections the generator opened, the warm-up's included: about `-c` with
    /// keep-alive, one per request with `--no-keepalive`.
    pub connections_opened: u64,
}

impl Report {
    /// The metrics `--assert` may name; latencies in ms, `errors` as a fraction (`0.1%`).
    pub const METRICS: &'static [&'static str] = &[
        "requests",
        "rate",
        "errors",
        "failed",
        "unattributed",
        "mean",
        "p50",
        "p90",
        "p99",
        "p999",
        "max",
        "peak_ratio",
        "jain",
        "chi2_p",
        "disagreements",
    ];

    /// Builds the report. `expected` maps a backend's name (as the attribution header gives
    /// it) to the share it should take; empty means an even split over those that answered.
    pub fn build(
        tally: &Tally,
        measured: Duration,
        target_rate: Option<f64>,
        served_by: &str,
        expected: &BTreeMap<String, f64>,
    ) -> Report {
        let attributed: u64 = tally.backends.values().map(|b| b.requests).sum();
        let mut names: Vec<&String> = tally.backends.keys().collect();
        for name in expected.keys() {
            if !tally.backends.contains_key(name) {
                names.push(name);
            }
        }
        names.sort();
        names.dedup();
        let even = 1.0 / tally.backends.len().max(1) as f64;
        let empty = BackendTally {
            requests: 0,
            classes: [0; 5],
            latency_us: Histogram::new(3).unwrap_or_else(|_| unreachable!("valid precision")),
        };
        let backends: Vec<BackendReport> = names
            .into_iter()
            .map(|name| {
                let b = tally.backends.get(name).unwrap_or(&empty);
                let share = if attributed == 0 {
                    0.0
                } else {
                    b.requests as f64 / attributed as f64
                };
                let expected_share = if expected.is_empty() {
                    Some(even)
                } else {
                    expected.get(name).copied()
                };
                BackendReport {
                    name: name.clone(),
                    requests: b.requests,
                    share,
                    expected_share,
                    ratio: expected_share.filter(|e| *e > 0.0).map(|e| share / e),
                    responses: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                        .iter()
                        .zip(b.classes)
                        .filter(|(_, n)| *n > 0)
                        .map(|(c, n)| (c.to_string(), n))
                        .collect(),
                    latency_ms: Latency::of(&b.latency_us),
                    predicted_share: None,
                    measured_minus_predicted: None,
                }
            })
            .collect();
        let e = evenness_over(backends.iter().map(|b| (b.requests, b.expected_share)));
        let requests = tally.requests();
        let errors = tally.errors();
        let seconds = measured.as_secs_f64();
        Report {
            seconds,
            requests,
            rate: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            target_rate,
            errors,
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            failures: tally
                .failures
                .iter()
                .map(|(k, n)| (k.as_str().to_string(), *n))
                .collect(),
            unattributed: tally.unattributed.requests,
            served_by: served_by.to_string(),
            latency_ms: Latency::of(&tally.latency_us),
            backends,
            peak_ratio: e.peak_ratio,
            jain: e.jain,
            chi2_p: e.chi2_p,
            expected_from: if expected.is_empty() {
                "even".into()
            } else {
                "configuration".into()
            },
            warmup_requests: tally.warmup_requests,
            counters: None,
            prediction: None,
            connections_opened: tally.connections_opened,
        }
    }

    /// The final table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "{} requests in {:.1} s: {:.0} req/s{}; {} errors ({:.2}%)",
            self.requests,
            self.seconds,
            self.rate,
            self.target_rate
                .map(|t| format!(" (target {t:.0})"))
                .unwrap_or_default(),
            self.errors,
            self.error_ratio * 100.0
        );
        let _ = writeln!(
            out,
            "latency ms: mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.mean, l.p50, l.p90, l.p99, l.p999, l.max
        );
        if !self.failures.is_empty() {
            let f: Vec<String> = self
                .failures
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "no answer: {}", f.join(", "));
        }
        let _ = writeln!(
            out,
            "\n{:<24} {:>9} {:>7} {:>8} {:>6} {:>8} {:>8} {:>8} {:>6}",
            "backend",
            "requests",
            "share",
            "expected",
            "ratio",
            "p50 ms",
            "p99 ms",
            "max ms",
            "5xx"
        );
        for b in &self.backends {
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>6.1}% {:>8} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>6}",
                truncate(&b.name, 24),
                b.requests,
                b.share * 100.0,
                b.expected_share
                    .map(|e| format!("{:.1}%", e * 100.0))
                    .unwrap_or_else(|| "-".into()),
                b.ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "-".into()),
                b.latency_ms.p50,
                b.latency_ms.p99,
                b.latency_ms.max,
                b.responses.get("5xx").copied().unwrap_or(0)
            );
        }
        if self.unattributed > 0 {
            let _ = writeln!(
                out,
                "{:<24} {:>9}  (no `{}` header: answered by the balancer itself?)",
                "(unattributed)", self.unattributed, self.served_by
            );
        }
        let _ = writeln!(
            out,
            "\npeak ratio R {:.2}  Jain {:.3}  χ² p {:.3}  (expected shares: {})",
            self.peak_ratio, self.jain, self.chi2_p, self.expected_from
        );
        if let Some(p) = &self.prediction {
            out += &p.table(&self.backends);
        }
        if let Some(c) = &self.counters {
            out += &c.table();
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

impl Metrics for Report {
    fn names(&self) -> &'static [&'static str] {
        Report::METRICS
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let l = &self.latency_ms;
        Some(match name {
            "requests" => self.requests as f64,
            "rate" => self.rate,
            "errors" => self.error_ratio,
            "failed" => self.failures.values().sum::<u64>() as f64,
            "unattributed" => self.unattributed as f64,
            "mean" => l.mean,
            "p50" => l.p50,
            "p90" => l.p90,
            "p99" => l.p99,
            "p999" => l.p999,
            "max" => l.max,
            "peak_ratio" => self.peak_ratio,
            "jain" => self.jain,
            "chi2_p" => self.chi2_p,
            "disagreements" => self
                .counters
                .as_ref()
                .map_or(0.0, |c| c.disagreements.len() as f64),
            _ => return None,
        })
    }
}

/// Evenness (R, Jain, χ²) over the backends expected to take traffic: each backend's requests
/// and expected share, the shares renormalised over those expected to take any.
pub(crate) fn evenness_over(backends: impl Iterator<Item = (u64, Option<f64>)>) -> Evenness {
    let judged: Vec<(u64, f64)> = backends
        .filter_map(|(requests, expected)| expected.filter(|e| *e > 0.0).map(|e| (requests, e)))
        .collect();
    let total_expected: f64 = judged.iter().map(|j| j.1).sum();
    let judged: Vec<(u64, f64)> = judged
        .into_iter()
        .map(|(n, e)| (n, e / total_expected.max(f64::MIN_POSITIVE)))
        .collect();
    evenness(&judged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::{Failure, Outcome};

    fn tally(counts: &[(&str, u64)]) -> Tally {
        let mut t = Tally::default();
        for (name, n) in counts {
            for _ in 0..*n {
                t.record(
                    &Outcome::Response {
                        status: 200,
                        backend: Some(name.to_string()),
                    },
                    Duration::from_millis(1),
                );
            }
        }
        t
    }

    #[test]
    fn shares_are_judged_against_the_configuration_or_an_even_split() {
        let t = tally(&[("a", 600), ("b", 200), ("c", 200)]);
        let even = Report::build(
            &t,
            Duration::from_secs(10),
            None,
            "X-Served-By",
            &BTreeMap::new(),
        );
        assert_eq!(even.requests, 1000);
        assert!((even.rate - 100.0).abs() < 1e-9);
        assert!((even.peak_ratio - 1.8).abs() < 1e-9, "{}", even.peak_ratio);
        assert!(even.chi2_p < 0.001);
        let weights: BTreeMap<String, f64> = [("a", 0.6), ("b", 0.2), ("c", 0.2)]
            .map(|(n, s)| (n.to_string(), s))
            .into();
        let weighted = Report::build(&t, Duration::from_secs(10), None, "X-Served-By", &weights);
        assert!((weighted.peak_ratio - 1.0).abs() < 1e-9);
        assert_eq!(weighted.expected_from, "configuration");
        assert!(weighted.table().contains("peak ratio R 1.00"));
    }

    #[test]
    fn a_configured_backend_that_answered_nothing_is_listed_with_zero() {
        let t = tally(&[("a", 100)]);
        let expected: BTreeMap<String, f64> = [("a", 0.5), ("b", 0.5)]
            .map(|(n, s)| (n.to_string(), s))
            .into();
        let r = Report::build(&t, Duration::from_secs(1), None, "X-Served-By", &expected);
        assert_eq!(r.backends.len(), 2);
        assert_eq!(r.backends[1].name, "b");
        assert_eq!(r.backends[1].requests, 0);
        assert!((r.peak_ratio - 2.0).abs() < 1e-9);
    }

    #[test]
    fn metrics_answer_assertions() {
        let mut t = tally(&[("a", 99)]);
        t.record(&Outcome::Failed(Failure::Timeout), Duration::from_secs(2));
        let r = Report::build(
            &t,
            Duration::from_secs(1),
            Some(100.0),
            "X-Served-By",
            &BTreeMap::new(),
        );
        let conditions =
            ballast_sim::assert::parse_for("errors<2%,failed==1,p50<5ms,max>=1s", Report::METRICS)
                .unwrap();
        let verdicts = ballast_sim::assert::evaluate(&conditions, &r);
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:?}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["failures"]["timeout"], 1);
        assert_eq!(json["backends"][0]["name"], "a");
    }
}
