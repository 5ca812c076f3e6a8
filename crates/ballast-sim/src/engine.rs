//! The event loop: arrivals, completions, queue timeouts, failures, detection and recovery.
//!
//! Model of a server: it works on up to `concurrency` requests at once and keeps the rest
//! waiting inside it (that wait is the server's, not the balancer's). The balancer counts a
//! request in flight from dispatch to the end of its response, and queues requests of its own
//! only when the server is at `max_connections`. A failed server refuses connections; it is
//! taken out of rotation after `interval × fall` by active checks, after
//! `consecutive_failures` refused attempts by passive ejection, or never when the pool has
//! neither. A refused attempt is retried on another pick while attempts and budget remain.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use ballast_core::balance::{
    Balancer, ClientAddress, KeyReader, PoolState, PoolView, ServerLoad, slow_start_weight,
};
use ballast_core::config::Pool;
use ballast_core::health::ejection_duration;
use ballast_core::retry::RetryBudget;
use ballast_core::traffic::{ServerAction, Traffic};

use crate::model::{Arrivals, Popularity, ServiceTime};
use crate::replay::ReplayRequest;
use crate::report::{Report, ServerStats};

/// What happened to a request at the moment the balancer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent to the server.
    Sent,
    /// Waiting in the server's queue at the balancer.
    Queued,
    /// The server's queue was full: 503.
    RejectedQueueFull,
    /// No server available: 503.
    NoServer,
    /// Every attempt hit a failed server.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Queued => "queued",
            Outcome::RejectedQueueFull => "rejected_queue_full",
            Outcome::NoServer => "no_server",
            Outcome::Failed => "failed",
        }
    }
}

/// One balancing decision, for `--trace`.
#[derive(Debug, Clone)]
pub struct TraceRecord<'a> {
    /// Request number, from 0, in arrival order.
    pub seq: u64,
    /// Arrival time in seconds.
    pub t: f64,
    pub server: Option<&'a str>,
    pub address: Option<&'a str>,
    pub outcome: Outcome,
}

/// A simulation of one pool under one traffic model.
pub struct Simulation<'a> {
    pool_name: &'a str,
    pool: &'a Pool,
    traffic: &'a Traffic,
}

/// Seed offset for the traffic stream, so traffic and balancer draws are independent.
const TRAFFIC_STREAM: u64 = 0x5eed_7a7f_f1c0_0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Completion,
    ServerEvent,
    /// Health checks notice the server is down (or passive ejection ends, when `up`).
    Detect {
        up: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: u64,
    seq: u64,
    kind: EventKind,
    server: u32,
    generation: u32,
}

struct Server {
    service: ServiceTime,
    busy: u32,
    /// Requests waiting inside the server for a worker.
    waiting_inside: u32,
    /// Requests waiting at the balancer for a connection slot: (arrival, deadline).
    queue: VecDeque<(u64, u64)>,
    max_queue: u32,
    queue_timeout_ns: u64,
    slow_start_ns: u64,
    /// Bumped on failure, so completions scheduled before it are ignored.
    generation: u32,
    dead: bool,
    consecutive_failures: u32,
    /// Taken out by passive ejection (as opposed to by health checks).
    ejected: bool,
    /// Ejections so far, each doubling the next one's length.
    ejections: u32,
    /// When the server last became available (for slow start).
    since: Option<u64>,
}

/// The balancer's view: plain state plus slow start at the current virtual time.
struct View<'s> {
    state: &'s PoolState,
    servers: &'s [Server],
    now: u64,
}

impl PoolView for View<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.state.len()
    }
    #[inline]
    fn server(&self, i: usize) -> ServerLoad {
        let mut load = self.state.servers[i];
        let s = &self.servers[i];
        if let Some(since) = s.since
            && s.slow_start_ns > 0
            && self.now < since + s.slow_start_ns
        {
            load.weight = slow_start_weight(
                load.weight,
                Duration::from_nanos(since),
                Duration::from_nanos(s.slow_start_ns),
                Duration::from_nanos(self.now),
            );
        }
        load
    }
}

/// Where requests come from.
enum Arrival<'r> {
    Model {
        arrivals: Arrivals,
        clients: Popularity,
        keys: Popularity,
        missing_percent: f64,
        end: u64,
        next: u64,
    },
    Replay {
        requests: &'r [ReplayRequest],
        index: usize,
    },
}

struct Run<'a, 'r> {
    pool: &'a Pool,
    keys: KeyReader,
    balancer: Balancer,
    balancer_rng: SmallRng,
    traffic_rng: SmallRng,
    state: PoolState,
    servers: Vec<Server>,
    stats: Vec<ServerStats>,
    heap: BinaryHeap<Reverse<Event>>,
    event_seq: u64,
    now: u64,
    arrival: Arrival<'r>,
    key_buf: String,
    report: Report,
    retry_budget: RetryBudget,
    retries: u64,
    detect_down_ns: Option<u64>,
    detect_up_ns: u64,
    /// (consecutive failures, base ejection, max ejected percent).
    passive: Option<(u32, Duration, u32)>,
}

impl<'a> Simulation<'a> {
    pub fn new(pool_name: &'a str, pool: &'a Pool, traffic: &'a Traffic) -> Self {
        Self {
            pool_name,
            pool,
            traffic,
        }
    }

    /// Runs the traffic model.
    pub fn run(
        &self,
        trace: Option<&mut dyn FnMut(&TraceRecord)>,
        progress: Option<&mut dyn FnMut(f64)>,
    ) -> Report {
        let t = self.traffic;
        let end = t.duration.0.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        let arrival = Arrival::Model {
            arrivals: Arrivals::new(t),
            clients: Popularity::new(t.clients.count, t.clients.zipf),
            keys: Popularity::new(t.key.cardinality, t.key.zipf),
            missing_percent: t.key.missing_percent,
            end,
            next: 0,
        };
        self.execute(arrival, end, trace, progress)
    }

    /// Replays recorded requests (sorted by time), with service times from the model.
    pub fn replay(
        &self,
        requests: &[ReplayRequest],
        trace: Option<&mut dyn FnMut(&TraceRecord)>,
        progress: Option<&mut dyn FnMut(f64)>,
    ) -> Report {
        let end = requests.last().map_or(0, |r| (r.t * 1e9) as u64);
        self.execute(Arrival::Replay { requests, index: 0 }, end, trace, progress)
    }

    fn execute(
        &self,
        arrival: Arrival<'_>,
        end: u64,
        mut trace: Option<&mut dyn FnMut(&TraceRecord)>,
        mut progress: Option<&mut dyn FnMut(f64)>,
    ) -> Report {
        let pool = self.pool;
        let t = self.traffic;
        let servers: Vec<Server> = pool
            .servers
            .iter()
            .map(|s| Server {
                service: ServiceTime::new(
                    t.servers.get(&s.name).map_or(&t.service, |m| &m.service),
                ),
                busy: 0,
                waiting_inside: 0,
                queue: VecDeque::new(),
                max_queue: s.max_queue,
                queue_timeout_ns: s.queue_timeout().as_nanos() as u64,
                slow_start_ns: s.slow_start.map_or(0, |d| d.0.as_nanos() as u64),
                generation: 0,
                dead: false,
                consecutive_failures: 0,
                ejected: false,
                ejections: 0,
                since: None,
            })
            .collect();
        let mut run = Run {
            pool,
            keys: KeyReader::new(pool),
            balancer: Balancer::new(pool),
            balancer_rng: SmallRng::seed_from_u64(t.seed),
            traffic_rng: SmallRng::seed_from_u64(t.seed ^ TRAFFIC_STREAM),
            state: PoolState::from_pool(pool),
            stats: (0..servers.len()).map(|_| ServerStats::new()).collect(),
            servers,
            heap: BinaryHeap::new(),
            event_seq: 0,
            now: 0,
            arrival,
            key_buf: String::with_capacity(64),
            report: Report::new(self.pool_name, pool),
            retry_budget: RetryBudget::new(pool.retries.budget_percent),
            retries: 0,
            detect_down_ns: pool
                .health
                .as_ref()
                .map(|h| (h.interval.0 * h.fall + h.timeout.0).as_nanos() as u64),
            detect_up_ns: pool
                .health
                .as_ref()
                .map_or(0, |h| (h.interval.0 * h.rise).as_nanos() as u64),
            passive: pool.passive.as_ref().map(|p| {
                (
                    p.consecutive_failures,
                    p.base_ejection.0,
                    p.max_ejected_percent,
                )
            }),
        };
        for (i, e) in t.events.iter().enumerate() {
            if pool.servers.iter().any(|s| s.name == e.server) {
                run.schedule(
                    e.at.0.as_nanos() as u64,
                    EventKind::ServerEvent,
                    i as u32,
                    0,
                );
            }
        }
        let mut seq = 0u64;
        loop {
            let next_arrival = run.peek_arrival();
            let next_event = run.heap.peek().map(|Reverse(e)| e.at);
            match (next_arrival, next_event) {
                (Some(a), Some(e)) if e <= a => run.handle_event(t),
                (Some(a), _) => {
                    run.now = a;
                    let key = run.take_arrival();
                    let record = run.arrive(key);
                    if let Some(cb) = trace.as_deref_mut() {
                        let server = record.1.map(|i| &pool.servers[i]);
                        cb(&TraceRecord {
                            seq,
                            t: a as f64 / 1e9,
                            server: server.map(|s| s.name.as_str()),
                            address: server.map(|s| s.address.as_str()),
                            outcome: record.0,
                        });
                    }
                    seq += 1;
                    if seq.is_multiple_of(65_536)
                        && let Some(p) = progress.as_deref_mut()
                    {
                        p(if end == 0 { 1.0 } else { a as f64 / end as f64 });
                    }
                }
                (None, Some(_)) => run.handle_event(t),
                (None, None) => break,
            }
        }
        if let Some(p) = progress {
            p(1.0);
        }
        run.report.simulated_seconds = run.now as f64 / 1e9;
        run.report.retries = run.retries;
        run.report.finish(run.stats);
        run.report
    }
}

impl Run<'_, '_> {
    fn schedule(&mut self, at: u64, kind: EventKind, server: u32, generation: u32) {
        self.event_seq += 1;
        self.heap.push(Reverse(Event {
            at,
            seq: self.event_seq,
            kind,
            server,
            generation,
        }));
    }

    fn peek_arrival(&self) -> Option<u64> {
        match &self.arrival {
            Arrival::Model { next, end, .. } => (*next < *end).then_some(*next),
            Arrival::Replay { requests, index } => requests.get(*index).map(|r| (r.t * 1e9) as u64),
        }
    }

    /// Consumes the pending arrival: returns its key hash (if the pool hashes) and advances.
    fn take_arrival(&mut self) -> Option<u64> {
        let rng = &mut self.traffic_rng;
        match &mut self.arrival {
            Arrival::Model {
                arrivals,
                clients,
                keys,
                missing_percent,
                next,
                ..
            } => {
                let key = if !self.keys.needs_key() {
                    None
                } else if self.keys.reads_only_client_address() {
                    let client = clients.sample(rng) as u32;
                    let ip = Ipv4Addr::from(0x0a00_0000u32.wrapping_add(client));
                    if self.keys.is_client_address_text() {
                        dotted_quad(ip, &mut self.key_buf);
                        self.keys.read_value(self.key_buf.as_bytes())
                    } else {
                        self.keys.read(&ClientAddress(IpAddr::V4(ip)))
                    }
                } else {
                    {
                        let missing = *missing_percent > 0.0
                            && (rand::Rng::next_u64(rng) as f64 / u64::MAX as f64) * 100.0
                                < *missing_percent;
                        if missing {
                            None
                        } else {
                            let k = keys.sample(rng);
                            self.key_buf.clear();
                            self.key_buf.push('k');
                            self.key_buf.push_str(itoa::Buffer::new().format(k));
                            self.keys.read_value(self.key_buf.as_bytes())
                        }
                    }
                };
                *next += arrivals.next_gap(rng);
                key
            }
            Arrival::Replay { requests, index } => {
                let r = &requests[*index];
                *index += 1;
                self.keys.read(r)
            }
        }
    }

    /// Balances one arriving request; returns its outcome and the server it went to.
    fn arrive(&mut self, key: Option<u64>) -> (Outcome, Option<usize>) {
        self.report.requests += 1;
        let now = Duration::from_nanos(self.now);
        self.retry_budget.note_request(now);
        let attempts = self.pool.retries.attempts;
        let mut last = None;
        for attempt in 0..=attempts {
            if attempt > 0 {
                if !self.retry_budget.allow(now) {
                    break;
                }
                self.retries += 1;
            }
            let view = View {
                state: &self.state,
                servers: &self.servers,
                now: self.now,
            };
            let Some(i) = self.balancer.pick(&view, key, &mut self.balancer_rng) else {
                self.report.no_server += 1;
                return (Outcome::NoServer, None);
            };
            last = Some(i);
            self.stats[i].picked += 1;
            if self.servers[i].dead {
                self.refused(i);
                continue;
            }
            self.servers[i].consecutive_failures = 0;
            if !self.state.servers[i].full() {
                self.dispatch(i, 0);
                return (Outcome::Sent, Some(i));
            }
            let now = self.now;
            let s = &mut self.servers[i];
            expire(s, now, &mut self.stats[i]);
            if s.queue.len() < s.max_queue as usize {
                s.queue.push_back((now, now + s.queue_timeout_ns));
                let st = &mut self.stats[i];
                st.peak_queue = st.peak_queue.max(s.queue.len() as u32);
                return (Outcome::Queued, Some(i));
            }
            self.stats[i].rejected_queue_full += 1;
            return (Outcome::RejectedQueueFull, Some(i));
        }
        self.report.failed += 1;
        (Outcome::Failed, last)
    }

    /// A connection attempt to a failed server was refused: passive ejection may take it out.
    fn refused(&mut self, i: usize) {
        self.stats[i].refused += 1;
        let Some((threshold, base, max_percent)) = self.passive else {
            return;
        };
        let ejected = self.servers.iter().filter(|s| s.ejected).count();
        let allowed = self.servers.len() * max_percent as usize / 100;
        let s = &mut self.servers[i];
        s.consecutive_failures += 1;
        if s.consecutive_failures >= threshold && !s.ejected && ejected < allowed {
            self.state.servers[i].available = false;
            s.ejected = true;
            s.consecutive_failures = 0;
            let duration = ejection_duration(base, s.ejections);
            s.ejections += 1;
            let generation = s.generation;
            self.schedule(
                self.now + duration.as_nanos() as u64,
                EventKind::Detect { up: true },
                i as u32,
                generation,
            );
        }
    }

    fn dispatch(&mut self, i: usize, waited_ns: u64) {
        self.state.servers[i].in_flight += 1;
        let st = &mut self.stats[i];
        st.peak_in_flight = st.peak_in_flight.max(self.state.servers[i].in_flight);
        let _ = st.queue_wait_us.record(waited_ns / 1_000);
        let s = &mut self.servers[i];
        if s.busy < s.service.concurrency {
            s.busy += 1;
            let d = s.service.sample(&mut self.traffic_rng);
            let generation = s.generation;
            self.schedule(self.now + d, EventKind::Completion, i as u32, generation);
        } else {
            s.waiting_inside += 1;
        }
    }

    fn handle_event(&mut self, t: &Traffic) {
        let Some(Reverse(e)) = self.heap.pop() else {
            return;
        };
        self.now = e.at;
        let i = e.server as usize;
        match e.kind {
            EventKind::Completion => {
                if self.servers[i].generation != e.generation {
                    return;
                }
                self.complete(i);
            }
            EventKind::ServerEvent => self.server_event(&t.events[i]),
            EventKind::Detect { up } => {
                if self.servers[i].generation != e.generation {
                    return;
                }
                self.state.servers[i].available = up;
                if up {
                    self.servers[i].ejected = false;
                    self.servers[i].since = Some(self.now);
                }
            }
        }
    }

    fn complete(&mut self, i: usize) {
        self.state.servers[i].in_flight -= 1;
        self.stats[i].completed += 1;
        let s = &mut self.servers[i];
        if s.waiting_inside > 0 {
            s.waiting_inside -= 1;
            let d = s.service.sample(&mut self.traffic_rng);
            let generation = s.generation;
            self.schedule(self.now + d, EventKind::Completion, i as u32, generation);
        } else {
            s.busy -= 1;
        }
        let now = self.now;
        let s = &mut self.servers[i];
        expire(s, now, &mut self.stats[i]);
        if !self.state.servers[i].full()
            && let Some((arrived, _)) = self.servers[i].queue.pop_front()
        {
            self.dispatch(i, now - arrived);
        }
    }

    fn server_event(&mut self, e: &ballast_core::traffic::ServerEvent) {
        let Some(i) = self.pool.servers.iter().position(|s| s.name == e.server) else {
            return;
        };
        let now = self.now;
        let s = &mut self.servers[i];
        s.generation += 1;
        let generation = s.generation;
        match e.action {
            ServerAction::Fail => {
                if s.dead {
                    return;
                }
                s.dead = true;
                let lost = u64::from(s.busy + s.waiting_inside) + s.queue.len() as u64;
                s.busy = 0;
                s.waiting_inside = 0;
                s.queue.clear();
                self.state.servers[i].in_flight = 0;
                self.stats[i].failed_in_flight += lost;
                if let Some(d) = self.detect_down_ns {
                    self.schedule(
                        now + d,
                        EventKind::Detect { up: false },
                        i as u32,
                        generation,
                    );
                }
            }
            ServerAction::Recover => {
                if !s.dead {
                    return;
                }
                s.dead = false;
                s.consecutive_failures = 0;
                if self.state.servers[i].available {
                    return;
                }
                if self.detect_down_ns.is_some() {
                    self.schedule(
                        now + self.detect_up_ns,
                        EventKind::Detect { up: true },
                        i as u32,
                        generation,
                    );
                } else {
                    self.state.servers[i].available = true;
                    s.since = Some(now);
                }
            }
        }
    }
}

/// Drops queued requests whose deadline has passed. Deadlines in one server's queue are in
/// arrival order (one timeout per server), so only the head needs looking at.
fn expire(s: &mut Server, now: u64, stats: &mut ServerStats) {
    while let Some(&(_, deadline)) = s.queue.front() {
        if deadline > now {
            break;
        }
        s.queue.pop_front();
        stats.rejected_queue_timeout += 1;
    }
}

/// Writes `ip` as the proxy would see it (`Ipv4Addr`'s text form), without the formatting
/// machinery: this runs once per simulated request.
fn dotted_quad(ip: Ipv4Addr, out: &mut String) {
    out.clear();
    let mut digits = itoa::Buffer::new();
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quad_matches_the_standard_text_form() {
        let mut buf = String::new();
        for x in [
            0u32,
            1,
            255,
            256,
            0x0a00_0000,
            0x0a01_02ff,
            0xc000_0207,
            u32::MAX,
        ] {
            let ip = Ipv4Addr::from(x);
            dotted_quad(ip, &mut buf);
            assert_eq!(buf, ip.to_string());
        }
    }
}
