//! Samples: a time-stamped snapshot of one running load balancer — every pool and server with
//! its counters, live weight, state and limits, its frontends and the process — as plain data.
//!
//! Every watched load balancer is turned into these (HAProxy's stats, nginx's access log and
//! `stub_status`, ballast's own counters), so the guard's detectors judge them all the same
//! way. They live here, beside the events, so `serve` can build them from its counters without
//! depending on the guard, and the guard never depends on the proxy. Counters are cumulative
//! (as the load balancers report them); detectors take differences over a window.

use serde::{Deserialize, Serialize};

use crate::config::{Algorithm, Pool};
use crate::emulation::Emulation;

/// One snapshot of one load balancer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken, Unix milliseconds (or virtual milliseconds in tests).
    pub at_ms: u64,
    /// What kind of load balancer it came from: `ballast`, `haproxy`, `nginx`.
    pub source: String,
    /// Which one: an address, a socket path or a file.
    pub instance: String,
    pub pools: Vec<PoolSample>,
    #[serde(default)]
    pub frontends: Vec<FrontendSample>,
    pub process: Option<ProcessSample>,
    /// Problems the load balancer wrote in its logs, as cumulative counts by kind and place
    /// (nginx's error log: "worker_connections are not enough", "no live upstreams",
    /// "upstream timed out"; its access log: attempts passed to the next server, lines that
    /// did not parse). Empty for sources that have no logs to read.
    #[serde(default)]
    pub log_errors: Vec<LoggedError>,
}

/// One pool (an HAProxy backend, an nginx upstream, a ballast pool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSample {
    pub name: String,
    /// What the pool's algorithm promises, which decides how its distribution is judged.
    pub promise: Promise,
    pub servers: Vec<ServerSample>,
    /// Requests waiting in the pool's own queue (HAProxy queues in the backend too).
    #[serde(default)]
    pub queued: u64,
    /// For a hashing pool whose keys the source sees (nginx's access log carrying the key's
    /// variables): where the load balancer's own algorithm, emulated as `ballast simulate`
    /// runs it, sends the requests seen. `None` when the pool does not hash or its keys are
    /// not visible; the distribution is then judged with a wider band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<KeyPrediction>,
    /// What the guard's watcher notes on the sample as it arrives, so a window of samples
    /// is read cheaply; empty when not noted. Not serialized.
    #[serde(skip)]
    pub noted: Noted,
}

/// What the guard's watcher notes on a pool's sample as it arrives. At fleet scale a round
/// reads every pool through a window of samples that are no longer in cache, and reading the
/// older samples' names, then their servers' whole records, was most of a round (BENCHMARKS.md,
/// the guard); these let the window be read from less.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Noted {
    /// A fingerprint of the servers' names in order ([`PoolSample::servers_layout`]), 0 when
    /// not taken: two samples of a pool with the same fingerprint list the same servers at the
    /// same places, so a server is matched through a window by its place, never by its name.
    pub layout: u64,
    /// This sample continues the pool's sample before it without a break: the same layout,
    /// no counter gone down, no server's state, weight or tier changed. A window of such
    /// samples is read from its two ends and its gauges alone.
    pub continues: bool,
    /// Each server's gauges at its place, compactly: the window's samples are summed from
    /// these (empty when not taken).
    pub gauges: SamplePart<Gauge>,
    /// Each server's counters and standing at its place, compactly: a window's ends and the
    /// step from one sample to the next are read from these (empty when not taken).
    pub counters: SamplePart<Counters>,
    /// Each server's latency weighted by its requests, summed through the pool's unbroken run
    /// of samples up to this one, so a stretch of the run is read from its two ends (the
    /// guard's latency baseline reads half a minute). `None` when not taken.
    pub latency: Option<LatencyRun>,
}

/// A pool's part of an array noted for its whole sample, pool after pool: a round reads the
/// pools in order, so each sample's gauges are read as one stream, which the processor
/// fetches ahead, rather than as a thousand small arrays, each a miss (BENCHMARKS.md, the
/// guard). Reads as the slice it is.
#[derive(Debug, Clone)]
pub struct SamplePart<T> {
    whole: std::sync::Arc<Vec<T>>,
    start: usize,
    end: usize,
}

impl<T> SamplePart<T> {
    /// The part `start..end` of `whole` (empty where that is not within it).
    pub fn new(whole: std::sync::Arc<Vec<T>>, start: usize, end: usize) -> Self {
        let (start, end) = if start <= end && end <= whole.len() {
            (start, end)
        } else {
            (0, 0)
        };
        Self { whole, start, end }
    }

    /// The whole array this is a part of, given back by its last part to be used again.
    pub fn into_whole(self) -> Option<Vec<T>> {
        std::sync::Arc::try_unwrap(self.whole).ok()
    }
}

impl<T> Default for SamplePart<T> {
    fn default() -> Self {
        Self {
            whole: Default::default(),
            start: 0,
            end: 0,
        }
    }
}

impl<T> std::ops::Deref for SamplePart<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.whole[self.start..self.end]
    }
}

impl<'a, T> IntoIterator for &'a SamplePart<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: PartialEq> PartialEq for SamplePart<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// A part that is all of its array, as a pool noted on its own has.
impl<T> From<Vec<T>> for SamplePart<T> {
    fn from(whole: Vec<T>) -> Self {
        let end = whole.len();
        Self::new(std::sync::Arc::new(whole), 0, end)
    }
}

/// A pool's latency sums through a run of samples: every sample of the pool from the run's
/// first to this one, each with the same servers at the same places.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyRun {
    /// The `at_ms` of the run's first sample: two samples with the same are of one run.
    pub since_ms: u64,
    /// At each server's place: its latency times the requests it answered from one sample
    /// to the next, summed through the run, and those requests. A step counts only where the
    /// latency counts in a mean ([`ServerSample::counted_latency_ms`]).
    pub servers: Vec<(f64, u64)>,
}

/// One server's counters and standing in one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counters {
    pub requests: u64,
    /// 1xx, 2xx, 3xx, 4xx, 5xx and other responses, in that order.
    pub responses: [u64; 6],
    pub weight: u32,
    pub state: ServerState,
    pub backup: bool,
}

impl Counters {
    pub fn of(s: &ServerSample) -> Counters {
        Counters {
            requests: s.requests,
            responses: s.responses.by_class(),
            weight: s.weight,
            state: s.state,
            backup: s.backup,
        }
    }

    /// Whether these follow `before` without a break: no counter went down, the state, the
    /// weight and the tier are the same.
    pub fn continue_from(&self, before: &Counters) -> bool {
        self.requests >= before.requests
            && self.state == before.state
            && self.weight == before.weight
            && self.backup == before.backup
            && self
                .responses
                .iter()
                .zip(&before.responses)
                .all(|(now, then)| now >= then)
    }
}

/// One server's gauges in one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauge {
    pub active: u64,
    /// The latency reported, or a negative number when none is, or none that is a finite
    /// figure of 0 or more (such a figure does not count in a mean).
    pub latency_ms: f64,
}

impl Gauge {
    pub fn of(s: &ServerSample) -> Gauge {
        Gauge {
            active: s.active,
            latency_ms: s.counted_latency_ms().unwrap_or(-1.0),
        }
    }
}

impl PoolSample {
    /// The fingerprint of the pool's server names, in order (never 0): each name mixed in
    /// eight bytes at a time, its last word marked with its length so names cannot run into
    /// each other. Taken every round for every pool (50,000 names in a fleet's round), so a
    /// multiply and a shift per word rather than keyed: nothing here is an attacker's input to
    /// a map, and a fingerprint is only ever compared with another of the same process.
    pub fn servers_layout(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |word: u64| {
            hash = (hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            hash ^= hash >> 29;
        };
        for s in &self.servers {
            let bytes = s.name.as_bytes();
            let mut words = bytes.chunks_exact(8);
            for word in &mut words {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                mix(u64::from_le_bytes(w));
            }
            let mut last = [0u8; 8];
            let rest = words.remainder();
            last[..rest.len()].copy_from_slice(rest);
            // The eighth byte of the last word is free (at most seven remain).
            mix(u64::from_le_bytes(last) ^ ((bytes.len() as u64 & 0xff) << 56));
        }
        hash.max(1)
    }
}

/// What a hashing pool's keys predict: the requests seen, sent through the emulated
/// algorithm with the live weights of the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyPrediction {
    /// The key as configured (`$remote_addr`, `$http_x_user`; `ip_hash`: the client address).
    pub key: String,
    /// Requests the emulation sends to each server for the keys seen, cumulative, aligned
    /// with the pool's `servers`.
    pub requests: Vec<u64>,
    /// Requests whose key the log did not carry (not predicted), cumulative.
    #[serde(default)]
    pub unseen: u64,
    /// Distinct key values in the interval since the previous sample.
    #[serde(default)]
    pub distinct_keys: u64,
    /// The commonest key value of that interval, and its share of the interval's keyed
    /// requests.
    #[serde(default)]
    pub top_key: Option<String>,
    #[serde(default)]
    pub top_key_share: f64,
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    pub name: String,
    /// Requests (or connections, in TCP mode) the balancer sent it, cumulative.
    pub requests: u64,
    /// Connections or requests in flight now.
    pub active: u64,
    /// Requests waiting in this server's queue now.
    #[serde(default)]
    pub queued: u64,
    pub max_connections: Option<u64>,
    pub max_queue: Option<u64>,
    /// The weight in force now (a runtime change included), not the configured one.
    pub weight: u32,
    pub state: ServerState,
    #[serde(default)]
    pub backup: bool,
    /// Responses by class, cumulative.
    #[serde(default)]
    pub responses: ResponseClasses,
    /// Recent mean response time, when the source reports one.
    pub latency_ms: Option<f64>,
    /// Seconds since the server's state last changed (up, down, drain, maintenance), by the
    /// balancer's own clock, when it keeps one (HAProxy's `lastchg`). Dates a runtime change
    /// that no file records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_for_s: Option<u64>,
}

impl ServerSample {
    /// A server named `name` in rotation at weight 1, idle: no requests, connections, limits
    /// or responses yet. What a sample's other figures are set over.
    pub fn idle(name: &str) -> ServerSample {
        ServerSample {
            state_for_s: None,
            name: name.to_string(),
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

    /// Its reported latency when it is one that counts in a mean: a finite figure of 0 or
    /// more.
    pub fn counted_latency_ms(&self) -> Option<f64> {
        self.latency_ms.filter(|l| l.is_finite() && *l >= 0.0)
    }
}

/// Responses by status class, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseClasses {
    pub c1xx: u64,
    pub c2xx: u64,
    pub c3xx: u64,
    pub c4xx: u64,
    pub c5xx: u64,
    /// Connection errors, timeouts, aborted responses: no status at all.
    pub other: u64,
}

impl ResponseClasses {
    /// The counts in class order: 1xx, 2xx, 3xx, 4xx, 5xx, other; to compare and subtract
    /// them together.
    pub fn by_class(&self) -> [u64; 6] {
        [
            self.c1xx, self.c2xx, self.c3xx, self.c4xx, self.c5xx, self.other,
        ]
    }

    /// From counts in class order ([`ResponseClasses::by_class`]).
    pub fn from_classes([c1xx, c2xx, c3xx, c4xx, c5xx, other]: [u64; 6]) -> ResponseClasses {
        ResponseClasses {
            c1xx,
            c2xx,
            c3xx,
            c4xx,
            c5xx,
            other,
        }
    }
}

/// Whether a server takes new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Healthy and in rotation.
    Up,
    /// Failed its checks (or ejected).
    Down,
    /// Kept for current connections, given no new ones (HAProxy DRAIN, weight 0).
    Drain,
    /// Taken out by an operator (HAProxy MAINT, nginx `down`).
    Maintenance,
}

/// A frontend (HAProxy) or listener (ballast, nginx `listen`): connections against its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontendSample {
    pub name: String,
    pub active: u64,
    pub max_connections: Option<u64>,
    /// Connections refused at its limit, cumulative, when the source counts them.
    #[serde(default)]
    pub refused: u64,
}

/// The process: connections against its limit, and who it is (a reload changes it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    pub active: u64,
    pub max_connections: Option<u64>,
    /// What changes when the load balancer reloads: a process id, a configuration version.
    pub generation: Option<String>,
    /// Client connections accepted, cumulative (nginx `stub_status` `accepts`).
    #[serde(default)]
    pub accepted: Option<u64>,
    /// Client connections handled, cumulative (nginx `stub_status` `handled`): below
    /// `accepted` when a resource limit such as `worker_connections` made the process close
    /// connections it had accepted.
    #[serde(default)]
    pub handled: Option<u64>,
    /// When the process started, in Unix seconds (HAProxy's `Start_time_sec`): the earliest a
    /// runtime change it does not date (a weight set over its API) can have been made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_s: Option<u64>,
}

/// A kind of problem counted from a load balancer's logs, at one place, cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedError {
    /// Which log it was read from.
    pub log: LogFile,
    pub kind: LoggedErrorKind,
    /// The pool it concerns, when the line names one (or its server belongs to one).
    pub pool: Option<String>,
    /// The server it concerns (a server name of the pool; for an address the configuration
    /// does not know, the address as logged).
    pub server: Option<String>,
    /// How many times, since the source started.
    pub count: u64,
}

/// The log a [`LoggedError`] was counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFile {
    Access,
    Error,
}

/// What a load balancer's log said went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoggedErrorKind {
    /// A worker had no free connection slot (nginx "N worker_connections are not enough"):
    /// connections were closed or upstream connections not made.
    WorkerConnectionsNotEnough,
    /// No server of the pool could be chosen (nginx "no live upstreams"; in the access log,
    /// `$upstream_addr` holding the pool's name with status 502).
    NoLiveUpstreams,
    /// The server did not answer in time (nginx "upstream timed out").
    UpstreamTimedOut,
    /// A connection to the server failed (nginx "connect() failed").
    ConnectFailed,
    /// An attempt on the server failed and the request was passed to another server (an
    /// earlier address of an `$upstream_addr` list).
    NextUpstream,
    /// The log named an address the configuration has no server for (the configuration read
    /// is not the one running).
    UnknownAddress,
    /// A line that could not be read (another log format, a torn line).
    Unparsed,
    /// The load balancer answered a 5xx itself, reaching no server: in nginx's access log,
    /// `$status` 502, 503 or 504 with `$upstream_addr` empty, `-` or the group's name (no
    /// live upstreams, `limit_req`/`limit_conn` 503s). Counted toward the pool's error rate.
    AnsweredByBalancer,
}

/// What a pool's algorithm promises about its distribution. "Even" means different things:
/// round-robin and weights promise request shares; least-connections and power-of-two promise
/// even concurrency per weight (a slow server rightly gets fewer requests there); hashing
/// promises only what the keys make of it; `first` promises to fill servers in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promise {
    /// Requests in proportion to weights.
    RequestShares,
    /// In-flight requests in proportion to weights.
    Concurrency,
    /// Shares follow the traffic's keys.
    KeyDependent,
    /// Servers filled one after the other: shares are not meant to be even.
    FillInOrder,
}

impl Promise {
    /// What a configured pool promises: from the algorithm it emulates, else the native one.
    pub fn of(pool: &Pool) -> Promise {
        match &pool.emulate {
            Some(e) => match e {
                Emulation::HaproxyRoundrobin
                | Emulation::HaproxyStaticRr
                | Emulation::NginxRoundRobin => Promise::RequestShares,
                Emulation::HaproxyLeastconn | Emulation::NginxLeastConn => Promise::Concurrency,
                // More than one draw keeps the least loaded: a concurrency promise.
                Emulation::HaproxyRandom { draws } if *draws > 1 => Promise::Concurrency,
                Emulation::HaproxyRandom { .. } => Promise::RequestShares,
                Emulation::NginxRandom { two } if *two => Promise::Concurrency,
                Emulation::NginxRandom { .. } => Promise::RequestShares,
                Emulation::HaproxyFirst => Promise::FillInOrder,
                Emulation::HaproxyHash(_)
                | Emulation::NginxIpHash
                | Emulation::NginxHash { .. } => Promise::KeyDependent,
            },
            None => match pool.algorithm {
                Algorithm::RoundRobin | Algorithm::Random => Promise::RequestShares,
                Algorithm::LeastConnections | Algorithm::PowerOfTwo => Promise::Concurrency,
                Algorithm::ConsistentHash => Promise::KeyDependent,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Promise::RequestShares => "request shares",
            Promise::Concurrency => "concurrency",
            Promise::KeyDependent => "key-dependent shares",
            Promise::FillInOrder => "fill in order",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(names: &[&str]) -> PoolSample {
        PoolSample {
            servers: names.iter().map(|name| ServerSample::idle(name)).collect(),
            name: "app".into(),
            promise: Promise::RequestShares,
            queued: 0,
            predicted: None,
            noted: Noted::default(),
        }
    }

    #[test]
    fn a_layout_differs_when_the_names_or_their_order_do() {
        let layouts = [
            vec![],
            vec![""],
            vec!["", ""],
            vec!["app-1"],
            vec!["app-1", "app-2"],
            vec!["app-2", "app-1"],
            vec!["ab", "c"],
            vec!["a", "bc"],
            vec!["abc"],
            vec!["backend1"],
            vec!["backend10"],
            vec!["backend1", "0"],
            vec!["backend-server-01.example.internal:8080"],
            vec!["backend-server-01.example.internal:8081"],
        ];
        let prints: Vec<u64> = layouts.iter().map(|l| pool(l).servers_layout()).collect();
        for (i, a) in prints.iter().enumerate() {
            assert_ne!(*a, 0);
            for (j, b) in prints.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{:?} and {:?}", layouts[i], layouts[j]);
            }
        }
        // The same names give the same fingerprint.
        assert_eq!(
            pool(&["app-1", "app-2"]).servers_layout(),
            pool(&["app-1", "app-2"]).servers_layout()
        );
    }
}
