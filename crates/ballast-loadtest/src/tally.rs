//! The figures of a run as it goes: per backend (named by the response's attribution header),
//! requests, responses by status class and a latency histogram (HdrHistogram: bounded memory
//! whatever the run's length, microsecond resolution up to a minute); failures without a
//! response by kind. Pure: the runner records outcomes, the report reads the tally.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An answer, and the backend it names (`None`: the header was missing, as on a 503 the
    /// balancer wrote itself).
    Response {
        status: u16,
        backend: Option<String>,
    },
    /// No answer.
    Failed(Failure),
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// The connection broke mid-request or the answer was not HTTP.
    Broken,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Broken => "broken",
        }
    }
}

/// Latencies are kept from 1 µs to 60 s at 3 significant digits; longer ones are clamped.
const MAX_MICROS: u64 = 60_000_000;

/// One backend's figures, or the figures of responses no backend claimed.
#[derive(Debug, Clone)]
pub struct BackendTally {
    pub requests: u64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; 5],
    pub latency_us: Histogram<u64>,
}

impl BackendTally {
    fn new() -> BackendTally {
        BackendTally {
            requests: 0,
            classes: [0; 5],
            latency_us: new_histogram(),
        }
    }

    pub fn errors_5xx(&self) -> u64 {
        self.classes[4]
    }
}

fn new_histogram() -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// Everything recorded so far.
#[derive(Debug, Clone)]
pub struct Tally {
    pub backends: BTreeMap<String, BackendTally>,
    /// Responses without the attribution header.
    pub unattributed: BackendTally,
    pub failures: BTreeMap<Failure, u64>,
    /// Every request's latency (responses and failures), for the run's own percentiles.
    pub latency_us: Histogram<u64>,
    /// Requests sent during the warm-up and left out of every figure above.
    pub warmup_requests: u64,
    /// TCP connections the generator opened, the warm-up's included.
    pub connections_opened: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            backends: BTreeMap::new(),
            unattributed: BackendTally::new(),
            failures: BTreeMap::new(),
            latency_us: new_histogram(),
            warmup_requests: 0,
            connections_opened: 0,
        }
    }
}

impl Tally {
    /// Records one request's outcome and its latency (from its intended send time).
    pub fn record(&mut self, outcome: &Outcome, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        self.latency_us.saturating_record(micros);
        match outcome {
            Outcome::Response { status, backend } => {
                let tally = match backend {
                    Some(name) => {
                        if !self.backends.contains_key(name) {
                            self.backends.insert(name.clone(), BackendTally::new());
                        }
                        self.backends
                            .get_mut(name)
                            .unwrap_or_else(|| unreachable!("inserted above"))
                    }
                    None => &mut self.unattributed,
                };
                tally.requests += 1;
                if let Some(class) = (1..=5).position(|c| u64::from(*status) / 100 == c) {
                    tally.classes[class] += 1;
                }
                tally.latency_us.saturating_record(micros);
            }
            Outcome::Failed(kind) => *self.failures.entry(*kind).or_insert(0) += 1,
        }
    }

    /// Requests recorded (answered or failed), the warm-up left out.
    pub fn requests(&self) -> u64 {
        self.latency_us.len()
    }

    /// Requests that failed: no answer, or a 5xx.
    pub fn errors(&self) -> u64 {
        self.failures.values().sum::<u64>()
            + self.unattributed.errors_5xx()
            + self
                .backends
                .values()
                .map(BackendTally::errors_5xx)
                .sum::<u64>()
    }

    /// Adds another tally's figures (one per worker, merged at the end).
    pub fn merge(&mut self, other: &Tally) {
        for (name, b) in &other.backends {
            let mine = self
                .backends
                .entry(name.clone())
                .or_insert_with(BackendTally::new);
            add(mine, b);
        }
        add(&mut self.unattributed, &other.unattributed);
        for (kind, n) in &other.failures {
            *self.failures.entry(*kind).or_insert(0) += n;
        }
        let _ = self.latency_us.add(&other.latency_us);
        self.warmup_requests += other.warmup_requests;
        self.connections_opened += other.connections_opened;
    }
}

fn add(into: &mut BackendTally, from: &BackendTally) {
    into.requests += from.requests;
    for (a, b) in into.classes.iter_mut().zip(from.classes) {
        *a += b;
    }
    let _ = into.latency_us.add(&from.latency_us);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, backend: Option<&str>) -> Outcome {
        Outcome::Response {
            status,
            backend: backend.map(str::to_string),
        }
    }

    #[test]
    fn outcomes_land_on_their_backend_with_their_class_and_latency() {
        let mut t = Tally::default();
        t.record(&answer(200, Some("a")), Duration::from_millis(2));
        t.record(&answer(200, Some("a")), Duration::from_millis(4));
        t.record(&answer(502, Some("b")), Duration::from_millis(1));
        t.record(&answer(503, None), Duration::from_micros(100));
        t.record(&Outcome::Failed(Failure::Timeout), Duration::from_secs(5));
        assert_eq!(t.requests(), 5);
        assert_eq!(t.backends["a"].requests, 2);
        assert_eq!(t.backends["a"].classes[1], 2);
        assert_eq!(t.backends["b"].errors_5xx(), 1);
        assert_eq!(t.unattributed.requests, 1);
        assert_eq!(t.errors(), 3, "the 502, the balancer's 503 and the timeout");
        let p100 = t.backends["a"].latency_us.value_at_quantile(1.0);
        assert!((3_990..=4_010).contains(&p100), "{p100}");
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.record(&answer(200, Some("x")), Duration::from_millis(1));
        b.record(&answer(200, Some("x")), Duration::from_millis(1));
        b.record(&answer(200, Some("y")), Duration::from_millis(1));
        b.record(&Outcome::Failed(Failure::Connect), Duration::from_millis(1));
        b.warmup_requests = 3;
        b.connections_opened = 2;
        a.merge(&b);
        assert_eq!(a.backends["x"].requests, 2);
        assert_eq!(a.backends["y"].requests, 1);
        assert_eq!(a.failures[&Failure::Connect], 1);
        assert_eq!(a.requests(), 4);
        assert_eq!(a.warmup_requests, 3);
        assert_eq!(a.connections_opened, 2);
    }
}
