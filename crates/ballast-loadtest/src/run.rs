//! Sending the plan: tokio and the raw HTTP/1.1 keep-alive connections of `h1` (or the
//! HTTP/2 streams of `h2`), opened by `connect` (TLS from `tls`). Each worker records its
//! outcomes into the run's tally itself, and the run reports progress every second. The
//! decisions (what to send when, what counts, how many workers the open model keeps) are in
//! `plan`, `tally` and `workers`; this is the I/O. `replay` sends through the same senders.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::{SocketAddr, ToSocketAddrs};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rustls_pki_types::ServerName;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::connect::Dialer;
use crate::h1::Connection;
use crate::plan::{Load, Plan, Protocol, Schedule, Stop};
use crate::requests::Requests;
use crate::tally::{Failure, Outcome, Tally};
use crate::workers::Sizing;

/// What the progress callback sees once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Since the start, the warm-up included.
    pub elapsed: Duration,
    pub warming_up: bool,
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the last second.
    pub rate: f64,
    /// p99 latency so far, ms.
    pub p99_ms: f64,
}

/// A finished run: the tally and the length of its measured part.
pub struct Finished {
    pub tally: Tally,
    pub measured: Duration,
}

/// A closed-model worker's way to the target: its own HTTP/1.1 connection, or the HTTP/2
/// connection it shares with the other streams of its connection.
enum Lane {
    Http1(Option<Connection>),
    Http2(Arc<crate::h2::Slot>),
}

/// What the workers record into, under one lock: the tally and the marks the measured part's
/// length is read from. Each worker records its own answers, so a request costs no hand-off
/// to a collector task.
struct Collected {
    tally: Tally,
    /// When the last measured answer came.
    last_answer: Instant,
    /// When the last measured request went out.
    last_sent: Instant,
}

/// The run's records, shared by its workers.
struct Records {
    collected: Mutex<Collected>,
    warmup_end: Instant,
}

impl Records {
    /// One request's result: `warmup` ones are only counted. `sent_at` is when it went out
    /// (the open model's workers: when one took it from the queue), `answered` when it ended.
    fn record(
        &self,
        outcome: &Outcome,
        latency: Duration,
        warmup: bool,
        sent_at: Instant,
        answered: Instant,
    ) {
        let mut c = self.collected.lock().unwrap_or_else(|p| p.into_inner());
        if warmup {
            c.tally.warmup_requests += 1;
        } else {
            c.tally.record(outcome, latency);
            c.last_answer = c.last_answer.max(answered);
            c.last_sent = c.last_sent.max(sent_at);
        }
    }
}

/// Runs the plan to its end; `progress` is called about once a second.
pub async fn run(plan: Plan, mut progress: impl FnMut(&Progress) + Send) -> Finished {
    let wire = Arc::new(Wire::of(&plan));
    let plan = Arc::new(plan);
    let start = Instant::now();
    let warmup_end = start + plan.warmup;
    let records = Arc::new(Records {
        collected: Mutex::new(Collected {
            tally: Tally::default(),
            last_answer: start,
            last_sent: warmup_end,
        }),
        warmup_end,
    });
    let mut driver = {
        let (plan, wire, records) = (Arc::clone(&plan), Arc::clone(&wire), Arc::clone(&records));
        tokio::spawn(async move {
            match plan.load {
                Load::Open {
                    rate,
                    arrival,
                    max_connections,
                } => open(plan, wire, rate, arrival, max_connections, start, records).await,
                Load::Closed { connections } => {
                    closed(plan, wire, connections, start, records).await
                }
            }
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_count = 0u64;
    loop {
        tokio::select! {
            _ = &mut driver => break,
            _ = tick.tick() => {
                let now = Instant::now();
                let c = records.collected.lock().unwrap_or_else(|p| p.into_inner());
                let count = c.tally.requests() + c.tally.warmup_requests;
                let report = Progress {
                    elapsed: now - start,
                    warming_up: now < warmup_end,
                    requests: c.tally.requests(),
                    errors: c.tally.errors(),
                    rate: (count - last_count) as f64,
                    p99_ms: c.tally.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                };
                drop(c);
                progress(&report);
                last_count = count;
            }
        }
    }
    let Collected {
        mut tally,
        last_answer,
        last_sent,
    } = std::mem::replace(
        &mut *records.collected.lock().unwrap_or_else(|p| p.into_inner()),
        Collected {
            tally: Tally::default(),
            last_answer: start,
            last_sent: start,
        },
    );
    tally.connections_opened = wire.dialer.opened();
    // A generator that fell behind its schedule sent its last request after the measured
    // part's end: the achieved rate is over the time it took, not the time it was given.
    let measured = match plan.stop {
        Stop::After(d) => d.max(last_sent.saturating_duration_since(records.warmup_end)),
        Stop::Requests(_) => last_answer.saturating_duration_since(records.warmup_end),
    };
    Finished { tally, measured }
}

/// Whether the run should send a request meant for `offset` after the start, given how many
/// measured requests were already started.
fn still_sending(plan: &Plan, offset: Duration, measured_started: u64) -> bool {
    match plan.stop {
        Stop::After(d) => offset < plan.warmup + d,
        Stop::Requests(n) => measured_started < n,
    }
}

/// One request of the open model, due at `intended`.
struct Job {
    offset: Duration,
    intended: Instant,
    warmup: bool,
}

/// The open model's due requests, which its workers take in turn.
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    /// Wakes a worker waiting for a job (or, once `closed`, all of them).
    ready: Notify,
    /// Workers waiting for a job now.
    waiting: AtomicUsize,
    /// No job will be added: a worker that finds the queue empty ends.
    closed: AtomicBool,
    /// The pool's sizing, told of every answer.
    sizing: Mutex<Sizing>,
}

impl Queue {
    fn pop(&self) -> Option<Job> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Requests waiting, and when the oldest of them was meant to go.
    fn waiting_jobs(&self) -> (usize, Option<Instant>) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        (jobs.len(), jobs.front().map(|j| j.intended))
    }

    fn sizing(&self) -> std::sync::MutexGuard<'_, Sizing> {
        self.sizing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    async fn next(&self) -> Option<Job> {
        loop {
            if let Some(job) = self.pop() {
                return Some(job);
            }
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Counted as waiting and registered before the queue is looked at again, so a
            // job the scheduler adds in between is seen here or wakes this worker.
            self.waiting.fetch_add(1, Ordering::Relaxed);
            notified.as_mut().enable();
            let job = self.pop();
            if job.is_some() || self.closed.load(Ordering::Acquire) {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return job;
            }
            notified.await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The open model: each request at its intended time, whatever the earlier ones take.
///
/// A scheduler puts each request in a queue when it is due and wakes a waiting worker (a
/// connection, or over HTTP/2 a stream); a worker that finishes a request takes the next one
/// waiting without a hand-off. A request no worker takes at once waits, and the wait counts in
/// its latency, measured from the intended time (no coordinated omission). A request finding
/// no worker free starts one only when `workers::Sizing` says another would help. Workers
/// rather than a task per request: the generator's own cost per request is what bounds the
/// rates it holds.
async fn open(
    plan: Arc<Plan>,
    wire: Arc<Wire>,
    rate: f64,
    arrival: ballast_core::traffic::ArrivalKind,
    max_connections: u32,
    start: Instant,
    records: Arc<Records>,
) {
    let (workers, http2) = match plan.transport.protocol {
        Protocol::Http1 => (max_connections as usize, None),
        Protocol::Http2 { streams } => (
            max_connections as usize * streams as usize,
            Some(Arc::new(crate::h2::Pool::new(max_connections, streams))),
        ),
    };
    let queue = Arc::new(Queue {
        jobs: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        waiting: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        sizing: Mutex::new(Sizing::new(rate, workers, start)),
    });
    let mut tasks = JoinSet::new();
    let mut started = 0usize;
    let start_worker = |tasks: &mut JoinSet<()>| {
        let (plan, wire, http2, records, queue) = (
            Arc::clone(&plan),
            Arc::clone(&wire),
            http2.clone(),
            Arc::clone(&records),
            Arc::clone(&queue),
        );
        tasks.spawn(async move {
            let mut connection: Option<Connection> = None;
            let mut scratch = Vec::new();
            let head_only = plan.method == "HEAD";
            // The answers that tell the time a request takes: not those that waited for a
            // connection to be made, unless every request makes one.
            let learn_always = http2.is_some() || plan.transport.connection_per_request;
            while let Some(job) = queue.next().await {
                let reused = connection.is_some();
                // The timeout runs from the intended time: a request that waited for a worker
                // until it expired is a timeout too, so an overloaded run drains within one
                // timeout of its end instead of serving its whole backlog.
                let deadline = job.intended + plan.timeout;
                let sent_at = Instant::now();
                let outcome = if sent_at >= deadline {
                    Outcome::Failed(Failure::Timeout)
                } else {
                    // Seeded by its place in the schedule: the same requests whichever worker
                    // sends them.
                    let mut rng = SmallRng::seed_from_u64(plan.seed ^ job.offset.as_nanos() as u64);
                    let request = wire.requests.next(&mut rng, &mut scratch);
                    match &http2 {
                        // One timer a request: each of these ends at the deadline.
                        None => {
                            let dialer = &wire.dialer;
                            send_on(&plan, dialer, request, head_only, &mut connection, deadline)
                                .await
                        }
                        Some(pool) => {
                            let send =
                                send_http2(&plan, &wire.dialer, request, Http2Source::Pool(pool));
                            tokio::time::timeout_at(deadline.into(), send)
                                .await
                                .unwrap_or(Outcome::Failed(Failure::Timeout))
                        }
                    }
                };
                let answered = Instant::now();
                let latency = answered - job.intended;
                records.record(&outcome, latency, job.warmup, sent_at, answered);
                // Only answers tell the time one takes (not a request that expired unsent).
                let answer = matches!(outcome, Outcome::Response { .. });
                if answer && (reused || learn_always) {
                    queue.sizing().back(answered - sent_at, answered);
                }
            }
        });
    };
    let mut measured_started = 0u64;
    let mut schedule = Schedule::new(rate, arrival, plan.seed).peekable();
    let mut cpu = CpuSampler::new();
    while let Some(next) = schedule
        .peek()
        .copied()
        .filter(|&offset| still_sending(&plan, offset, measured_started))
    {
        // Requests waiting for a worker: the loop wakes to grow the pool if they still do.
        let oldest = queue.waiting_jobs().1;
        let grow_at = oldest.and_then(|o| queue.sizing().grow_at(o, started));
        tokio::select! {
            // Tokio's timer has millisecond resolution: several requests may be due at once
            // when it wakes; each keeps its intended time, so none is timed short.
            _ = tokio::time::sleep_until((start + next).into()) => {
                let now = Instant::now();
                let mut jobs = queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
                while let Some(&offset) = schedule.peek() {
                    if start + offset > now || !still_sending(&plan, offset, measured_started) {
                        break;
                    }
                    schedule.next();
                    let warmup = offset < plan.warmup;
                    if !warmup {
                        measured_started += 1;
                    }
                    jobs.push_back(Job { offset, intended: start + offset, warmup });
                }
            }
            _ = tokio::time::sleep_until(grow_at.unwrap_or(start).into()), if grow_at.is_some() => {}
        }
        let now = Instant::now();
        let (waiting_jobs, oldest) = queue.waiting_jobs();
        let waiting_workers = queue.waiting.load(Ordering::Relaxed);
        for _ in 0..waiting_jobs.min(waiting_workers) {
            queue.ready.notify_one();
        }
        let unserved = waiting_jobs.saturating_sub(waiting_workers);
        let starts = {
            let mut sizing = queue.sizing();
            // However the loop woke: a request due well before now says the generator is
            // behind.
            sizing.woke(now.saturating_duration_since(start + next));
            if let Some(share) = cpu.sample(now) {
                sizing.busy(share);
            }
            sizing.starts(started, unserved, oldest, now)
        };
        for _ in 0..starts {
            start_worker(&mut tasks);
        }
        started += starts;
    }
    // The workers take what is left, then end.
    queue.closed.store(true, Ordering::Release);
    queue.ready.notify_waiters();
    while tasks.join_next().await.is_some() {}
}

/// The share of its threads' time the process used, sampled every few milliseconds.
struct CpuSampler {
    threads: f64,
    at: Instant,
    cpu: Duration,
}

impl CpuSampler {
    /// How often a share is worked out: long enough for the clock's reading to matter.
    const EVERY: Duration = Duration::from_millis(10);

    fn new() -> CpuSampler {
        CpuSampler {
            threads: tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .max(1) as f64,
            at: Instant::now(),
            cpu: Self::process_cpu(),
        }
    }

    fn process_cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Duration::new(
            t.tv_sec.max(0) as u64,
            t.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }

    /// The share since the last sample, when one is due at `now`.
    fn sample(&mut self, now: Instant) -> Option<f64> {
        let wall = now.saturating_duration_since(self.at);
        if wall < Self::EVERY {
            return None;
        }
        let cpu = Self::process_cpu();
        let used = cpu.saturating_sub(self.cpu);
        (self.at, self.cpu) = (now, cpu);
        Some(used.as_secs_f64() / (wall.as_secs_f64() * self.threads))
    }
}

/// The closed model: each connection sends its next request when the last one answered.
async fn closed(
    plan: Arc<Plan>,
    wire: Arc<Wire>,
    connections: u32,
    start: Instant,
    records: Arc<Records>,
) {
    let started = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    // Over HTTP/2 each connection has `streams` workers sharing it: `-c` times `--streams`
    // requests in flight.
    let streams = match plan.transport.protocol {
        Protocol::Http1 => 1,
        Protocol::Http2 { streams } => streams,
    };
    let workers = (0..connections).flat_map(|_| {
        let lane = match plan.transport.protocol {
            Protocol::Http1 => None,
            Protocol::Http2 { .. } => Some(Arc::new(crate::h2::Slot::default())),
        };
        (0..streams).map(move |_| lane.clone())
    });
    for (index, lane) in workers.enumerate() {
        let (plan, wire, records, started) = (
            Arc::clone(&plan),
            Arc::clone(&wire),
            Arc::clone(&records),
            Arc::clone(&started),
        );
        tasks.spawn(async move {
            let mut lane = match lane {
                Some(slot) => Lane::Http2(slot),
                None => Lane::Http1(None),
            };
            let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_add(index as u64));
            let mut scratch = Vec::new();
            let head_only = plan.method == "HEAD";
            loop {
                let sent = Instant::now();
                let offset = sent - start;
                let warmup = offset < plan.warmup;
                if !warmup {
                    let n = started.fetch_add(1, Ordering::Relaxed);
                    if !still_sending(&plan, offset, n) {
                        return;
                    }
                } else if let Stop::After(d) = plan.stop
                    && offset >= plan.warmup + d
                {
                    return;
                }
                let request = wire.requests.next(&mut rng, &mut scratch);
                let outcome = match &mut lane {
                    Lane::Http1(connection) => {
                        let deadline = sent + plan.timeout;
                        send_on(
                            &plan,
                            &wire.dialer,
                            request,
                            head_only,
                            connection,
                            deadline,
                        )
                        .await
                    }
                    Lane::Http2(slot) => {
                        send_http2(&plan, &wire.dialer, request, Http2Source::Slot(slot)).await
                    }
                };
                let answered = Instant::now();
                records.record(&outcome, answered - sent, warmup, sent, answered);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends one request over HTTP/1.1 on `connection`, opening one with `dialer` first if
/// there is none (or it closed); leaves it `None` when the connection cannot be used again.
/// `head_only`: the request is a HEAD, whose answer has no body.
pub(crate) async fn send_on(
    plan: &Plan,
    dialer: &Dialer,
    request: &[u8],
    head_only: bool,
    connection: &mut Option<Connection>,
    deadline: Instant,
) -> Outcome {
    let attempt = async {
        let reused = connection.is_some();
        if connection.is_none() {
            *connection = Some(Connection::over(dialer.dial().await?));
        }
        let Some(c) = connection.as_mut() else {
            return Err(Failure::Broken);
        };
        let result = c.exchange(request, &plan.served_by, head_only).await;
        let answered_any = c.answered_any();
        match result {
            Ok(answer) => Ok(answer),
            // A kept-alive connection the server closed between requests: one more try on a
            // new connection (the request never reached it).
            Err(Failure::Broken) if reused && !answered_any => {
                let mut fresh = Connection::over(dialer.dial().await?);
                let answer = fresh.exchange(request, &plan.served_by, head_only).await;
                *connection = Some(fresh);
                answer
            }
            Err(e) => Err(e),
        }
    };
    match tokio::time::timeout_at(deadline.into(), attempt).await {
        Ok(Ok(answer)) => {
            if !answer.keep_alive || plan.transport.connection_per_request {
                *connection = None;
            }
            Outcome::Response {
                status: answer.status,
                backend: answer.backend,
            }
        }
        Ok(Err(failure)) => {
            *connection = None;
            Outcome::Failed(failure)
        }
        Err(_) => {
            *connection = None;
            Outcome::Failed(Failure::Timeout)
        }
    }
}

/// Where an HTTP/2 request finds its connection.
#[derive(Clone, Copy)]
pub(crate) enum Http2Source<'a> {
    /// The closed model's connection shared by its stream workers.
    Slot(&'a crate::h2::Slot),
    /// The open model's connections.
    Pool(&'a crate::h2::Pool),
}

/// Tries a request the server did not process gets over HTTP/2 (a GOAWAY or a refused
/// stream), each on another connection, all within the request's timeout: a server closing
/// connections after a few requests (nginx's `keepalive_requests`) or draining on reload
/// loses no request of a load test. Several, because a request refused once tends to be
/// among the last on the next connection too; bounded, for a server that refuses every one.
const HTTP2_TRIES: usize = 10;

/// Sends one request over HTTP/2: on a new connection of its own with
/// `--no-keepalive`, else on the connection `source` gives; sent again on another connection
/// when the server says it did not process it.
pub(crate) async fn send_http2(
    plan: &Plan,
    dialer: &Dialer,
    request: &[u8],
    source: Http2Source<'_>,
) -> Outcome {
    use crate::h2::Exchange;
    let tls = plan.target.tls;
    let once = |retry: bool| async move {
        // A request sent again on the closed model's shared connection would queue behind
        // its fellow workers' next requests, and a server taking a few a connection would
        // refuse it again: it goes on a connection of its own.
        let own_connection = plan.transport.connection_per_request
            || (retry && matches!(source, Http2Source::Slot(_)));
        if own_connection {
            // Dropped after the answer: with no stream left the client closes it (GOAWAY).
            let own = crate::h2::Connection::open(dialer, tls)
                .await
                .map_err(Exchange::Failed)?;
            return own.exchange(request, &plan.served_by).await;
        }
        match source {
            Http2Source::Slot(slot) => {
                let connection = slot.get(dialer, tls).await.map_err(Exchange::Failed)?;
                connection.exchange(request, &plan.served_by).await
            }
            Http2Source::Pool(pool) => {
                let lease = pool.lease(dialer, tls).await.map_err(Exchange::Failed)?;
                lease.connection.exchange(request, &plan.served_by).await
            }
        }
    };
    let attempts = async {
        let mut tries = 1;
        loop {
            match once(tries > 1).await {
                Err(Exchange::Unprocessed) if tries < HTTP2_TRIES => tries += 1,
                Err(Exchange::Unprocessed) => return Err(Failure::Broken),
                Err(Exchange::Failed(failure)) => return Err(failure),
                Ok(answer) => return Ok(answer),
            }
        }
    };
    match tokio::time::timeout(plan.timeout, attempts).await {
        Ok(Ok(answer)) => Outcome::Response {
            status: answer.status,
            backend: answer.backend,
        },
        Ok(Err(failure)) => Outcome::Failed(failure),
        // The stream is reset as its handles drop; the connection serves the others on.
        Err(_) => Outcome::Failed(Failure::Timeout),
    }
}

/// What goes on the wire, prepared once: the target's address, the requests, the dialer that
/// opens connections (from the source addresses in turn, with TLS for `https://`).
pub struct Wire {
    pub addr: SocketAddr,
    pub requests: Requests,
    pub dialer: Dialer,
}

impl Wire {
    fn of(plan: &Plan) -> Wire {
        let urls = if plan.urls.is_empty() {
            vec![(plan.target.clone(), 1.0)]
        } else {
            plan.urls.clone()
        };
        let mut headers = plan.headers.clone();
        if plan.transport.connection_per_request && plan.transport.protocol == Protocol::Http1 {
            // Tells the server too, so it closes its side after the answer (and a balancer
            // does not keep the client connection open for another request).
            headers.push(("Connection".into(), "close".into()));
        }
        let addr = target_addr(plan);
        Wire {
            addr,
            requests: Requests::new(&urls, plan.key.as_ref(), &plan.method, &headers, &plan.body),
            dialer: Dialer::new(addr, plan.sources.clone(), tls_setup(plan)),
        }
    }
}

/// The target's address (the first its host resolves to; loopback at its port otherwise).
pub(crate) fn target_addr(plan: &Plan) -> SocketAddr {
    (plan.target.host.as_str(), plan.target.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], plan.target.port)))
}

/// The TLS set-up a `Dialer` takes.
pub(crate) type TlsSetup = Option<Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>>;

/// None for `http://`; for `https://` the client config and the name checked, or `None`
/// when they cannot be made, which leaves every connection failing (`tls::probe`, run
/// before, has said why).
pub(crate) fn tls_setup(plan: &Plan) -> TlsSetup {
    plan.target.tls.then(|| {
        let config = crate::tls::client_config(&plan.transport.tls, plan.transport.protocol);
        let name = crate::tls::server_name(&plan.target);
        match (config, name) {
            (Ok(config), Ok(name)) => Some((config, name)),
            _ => None,
        }
    })
}
