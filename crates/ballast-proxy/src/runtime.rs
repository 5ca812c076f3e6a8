//! The live state of a running configuration: per-server counters and health, per-pool
//! balancers, and the snapshot that ties them to one configuration version.
//!
//! A server's *spec* (address, weight, limits) comes from the configuration and is replaced on
//! reload; its *state* (in flight, health, ejection, idle connections) lives in an `Arc` that a
//! reload carries over when the server keeps its identity (pool, name and address), so a
//! reload neither forgets that a server is down nor resets in-flight accounting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Notify;

use ballast_core::Loaded;
use ballast_core::balance::{Balancer, KeyReader, PoolView, ServerLoad, slow_start_weight};
use ballast_core::config::{InitialState, Pool, Server};
use ballast_core::retry::RetryBudget;

use crate::upstream::{IdleConnections, IdleStreams};

/// Monotonic time since the proxy started, the `now` handed to the pure core.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
    /// The proxy clock at `instant`, for a caller that has just read the clock.
    pub fn at(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.epoch)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds over which `/status` reports the recent share.
pub const RECENT_WINDOW_SECS: usize = 10;

/// Sentinel for "no slow-start ramp running".
const NO_RAMP: u64 = u64::MAX;

/// What survives a reload for a server that keeps its identity.
pub struct ServerState {
    pub in_flight: AtomicU32,
    pub queued: AtomicU32,
    /// Active health checks say up (or there are no active checks).
    pub healthy: AtomicBool,
    /// Passive ejection has taken the server out.
    pub ejected: AtomicBool,
    /// When the server last became available, in nanoseconds of the proxy clock.
    pub available_since_ns: AtomicU64,
    pub consecutive_failures: AtomicU32,
    pub ejections: AtomicU32,
    pub saturated: AtomicBool,
    /// Woken when a connection slot frees, for requests queued on this server.
    pub slot_freed: Notify,
    pub idle: IdleConnections,
    /// Idle sockets of the HTTP/1.1 fast path.
    pub idle_streams: IdleStreams,
    /// Balancing decisions that chose this server, for shares.
    pub picks: AtomicU64,
    /// `picks` sampled once a second over the last ten seconds, oldest first, for the recent
    /// share.
    pub pick_samples: Mutex<std::collections::VecDeque<u64>>,
    /// Response times of answered requests, summed in microseconds, and their count.
    pub latency_sum_us: AtomicU64,
    pub latency_count: AtomicU64,
    /// The mean response time over the last second (f64 bits, ms; NaN before any), and the
    /// sums it was computed from, for the guard's samples.
    pub recent_latency_ms: AtomicU64,
    latency_mark: Mutex<(u64, u64)>,
}

impl ServerState {
    fn new(initial_up: bool) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            healthy: AtomicBool::new(initial_up),
            ejected: AtomicBool::new(false),
            available_since_ns: AtomicU64::new(NO_RAMP),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            saturated: AtomicBool::new(false),
            slot_freed: Notify::new(),
            idle: IdleConnections::default(),
            idle_streams: IdleStreams::default(),
            picks: AtomicU64::new(0),
            pick_samples: Mutex::new(std::collections::VecDeque::with_capacity(
                RECENT_WINDOW_SECS + 1,
            )),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            recent_latency_ms: AtomicU64::new(f64::NAN.to_bits()),
            latency_mark: Mutex::new((0, 0)),
        }
    }

    /// Counts one answered request's response time.
    pub fn record_latency(&self, elapsed: Duration) {
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Updates the recent mean response time from what was answered since the last call;
    /// called once a second. A second without answers keeps the previous mean.
    pub fn sample_latency(&self) {
        let (sum, count) = (
            self.latency_sum_us.load(Ordering::Relaxed),
            self.latency_count.load(Ordering::Relaxed),
        );
        let mut mark = self.latency_mark.lock().unwrap_or_else(|p| p.into_inner());
        let (dsum, dcount) = (sum.saturating_sub(mark.0), count.saturating_sub(mark.1));
        if dcount > 0 {
            let ms = dsum as f64 / dcount as f64 / 1000.0;
            self.recent_latency_ms
                .store(ms.to_bits(), Ordering::Relaxed);
        }
        *mark = (sum, count);
    }

    /// The recent mean response time, when any request was answered.
    pub fn recent_latency(&self) -> Option<f64> {
        let ms = f64::from_bits(self.recent_latency_ms.load(Ordering::Relaxed));
        (!ms.is_nan()).then_some(ms)
    }

    pub fn available(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.ejected.load(Ordering::Acquire)
    }

    /// Records the current pick count; called once a second.
    pub fn sample_picks(&self) {
        let mut samples = self.pick_samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() > RECENT_WINDOW_SECS {
            samples.pop_front();
        }
        samples.push_back(self.picks.load(Ordering::Relaxed));
    }

    /// Picks over the recent window (since the oldest sample).
    pub fn recent_picks(&self) -> u64 {
        let now = self.picks.load(Ordering::Relaxed);
        let samples = self.pick_samples.lock().unwrap_or_else(|p| p.into_inner());
        now - samples.front().copied().unwrap_or(0).min(now)
    }

    /// Gives a connection slot back and wakes one request queued on this server.
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_one();
    }
}

/// One connection slot held on a server; released on drop unless handed over.
pub struct Slot {
    state: Option<Arc<ServerState>>,
}

impl Slot {
    /// Hands the slot to whoever releases it later (the response body's completion).
    pub fn hand_over(mut self) -> Arc<ServerState> {
        self.state.take().expect("a slot is handed over once")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.release();
        }
    }
}

/// One server of a running pool.
pub struct ServerRuntime {
    pub spec: Server,
    /// `max_connections`, or `u32::MAX` when unlimited.
    pub limit: u32,
    pub state: Arc<ServerState>,
    /// This server's metric handles, resolved once so requests do no label lookups.
    pub metrics: ServerMetrics,
}

/// Handles to one server's request counters (by status class 1xx..5xx) and latency histogram.
pub struct ServerMetrics {
    pub by_class: [prometheus_client::metrics::counter::Counter; 5],
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

impl ServerMetrics {
    fn resolve(metrics: &crate::metrics::Metrics, pool: &str, server: &str) -> Self {
        let class = |c: &str| {
            metrics
                .requests
                .get_or_create(&crate::metrics::ServerClassLabels {
                    pool: pool.to_string(),
                    server: server.to_string(),
                    class: c.to_string(),
                })
                .clone()
        };
        Self {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            latency: metrics
                .latency
                .get_or_create(&crate::metrics::ServerLabels {
                    pool: pool.to_string(),
                    server: server.to_string(),
                })
                .clone(),
        }
    }

    /// Counts one answered request by its status.
    pub fn count(&self, status: http::StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].inc();
    }
}

impl ServerRuntime {
    /// Takes a connection slot if the server is below its limit. The slot gives itself back
    /// when dropped, so a request abandoned at any await (timeout, client gone) cannot leak it.
    pub fn try_acquire(&self) -> Option<Slot> {
        self.state
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                state: Some(Arc::clone(&self.state)),
            })
    }

    /// Marks the server available from `now` on, starting its slow-start ramp.
    pub fn became_available(&self, now: Duration) {
        let ns = if self.spec.slow_start.is_some() {
            now.as_nanos() as u64
        } else {
            NO_RAMP
        };
        self.state.available_since_ns.store(ns, Ordering::Release);
    }

    fn load(&self, now: Duration) -> ServerLoad {
        let s = &self.state;
        let mut weight = self.spec.weight;
        let since = s.available_since_ns.load(Ordering::Acquire);
        if since != NO_RAMP
            && let Some(ramp) = self.spec.slow_start
        {
            weight = slow_start_weight(weight, Duration::from_nanos(since), ramp.0, now);
        }
        ServerLoad {
            available: s.available(),
            weight,
            in_flight: s.in_flight.load(Ordering::Acquire),
            limit: self.limit,
        }
    }
}

/// The balancer's view of a running pool at one instant.
pub struct LiveView<'a> {
    pub servers: &'a [ServerRuntime],
    pub now: Duration,
}

impl PoolView for LiveView<'_> {
    fn len(&self) -> usize {
        self.servers.len()
    }
    fn server(&self, i: usize) -> ServerLoad {
        self.servers[i].load(self.now)
    }
}

/// One running pool: its configuration, servers and balancer.
pub struct PoolRuntime {
    pub name: String,
    pub spec: Pool,
    /// Reads and prepares each request's hash key for this pool's algorithm.
    pub keys: KeyReader,
    pub servers: Vec<ServerRuntime>,
    /// The balancer and its RNG, locked only for the pick itself.
    picker: Mutex<(Balancer, SmallRng)>,
    /// Set while no server can take traffic, so the event fires once per episode.
    pub all_down: AtomicBool,
    retry_budget: Mutex<RetryBudget>,
}

impl PoolRuntime {
    /// Picks a server for a request with the given key hash.
    /// Takes one retry from the pool's budget if any is left.
    pub fn allow_retry(&self, now: Duration) -> bool {
        self.retry_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(now)
    }

    /// Picks a server and reports the start and end of an all-servers-down episode: no server
    /// picked (fail-closed), or one picked that is not available (fail-open engaged).
    pub fn pick_reporting(
        &self,
        key: Option<u64>,
        now: Duration,
        events: &crate::events::EventLog,
    ) -> Option<usize> {
        let picked = self.pick(key, now);
        let all_down = picked.is_none_or(|i| !self.servers[i].state.available());
        if all_down != self.all_down.swap(all_down, Ordering::AcqRel) {
            events.emit(if all_down {
                ballast_core::event::EventKind::AllServersDown {
                    pool: self.name.clone(),
                    policy: self.spec.all_down.as_str().to_string(),
                }
            } else {
                ballast_core::event::EventKind::AllServersDownEnded {
                    pool: self.name.clone(),
                }
            });
        }
        picked
    }

    pub fn pick(&self, key: Option<u64>, now: Duration) -> Option<usize> {
        self.retry_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_request(now);
        let view = LiveView {
            servers: &self.servers,
            now,
        };
        let mut guard = self.picker.lock().unwrap_or_else(|p| p.into_inner());
        let (balancer, rng) = &mut *guard;
        let picked = balancer.pick(&view, key, rng);
        if let Some(i) = picked {
            self.servers[i].state.picks.fetch_add(1, Ordering::Relaxed);
        }
        picked
    }
}

/// Everything a running configuration needs, swapped whole on reload.
pub struct Snapshot {
    pub loaded: Arc<Loaded>,
    pub version: String,
    pub pools: HashMap<String, Arc<PoolRuntime>>,
    /// Each listener's trusted proxies, parsed once.
    pub trusted: HashMap<String, Vec<(std::net::IpAddr, u8)>>,
}

impl Snapshot {
    /// Builds the runtime for `loaded`, carrying server state over from `previous` for every
    /// server that keeps its pool, name and address.
    pub fn build(
        loaded: Arc<Loaded>,
        previous: Option<&Snapshot>,
        seed: u64,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let mut pools = HashMap::new();
        for (index, (name, pool)) in loaded.config.pools.iter().enumerate() {
            let old = previous.and_then(|p| p.pools.get(name));
            let servers = pool
                .servers
                .iter()
                .map(|spec| {
                    let carried = old.and_then(|o| {
                        o.servers
                            .iter()
                            .find(|s| s.spec.name == spec.name && s.spec.address == spec.address)
                            .map(|s| Arc::clone(&s.state))
                    });
                    let initial_up = pool
                        .health
                        .as_ref()
                        .is_none_or(|h| h.initial == InitialState::Up);
                    ServerRuntime {
                        spec: spec.clone(),
                        limit: spec.max_connections.unwrap_or(u32::MAX),
                        state: carried.unwrap_or_else(|| Arc::new(ServerState::new(initial_up))),
                        metrics: ServerMetrics::resolve(metrics, name, &spec.name),
                    }
                })
                .collect();
            let rng = SmallRng::seed_from_u64(seed.wrapping_add(index as u64));
            pools.insert(
                name.clone(),
                Arc::new(PoolRuntime {
                    name: name.clone(),
                    spec: pool.clone(),
                    keys: KeyReader::new(pool),
                    servers,
                    picker: Mutex::new((Balancer::new(pool), rng)),
                    all_down: AtomicBool::new(false),
                    retry_budget: Mutex::new(RetryBudget::new(pool.retries.budget_percent)),
                }),
            );
        }
        let trusted = loaded
            .config
            .listeners
            .iter()
            .map(|(name, l)| {
                let ranges = l
                    .trusted_proxies
                    .iter()
                    .filter_map(|c| ballast_core::load::parse_cidr(c))
                    .collect();
                (name.clone(), ranges)
            })
            .collect();
        Self {
            version: loaded.version(),
            loaded,
            pools,
            trusted,
        }
    }
}
