//! Sending the plan: tokio and the raw HTTP/1.1 keep-alive connections of `h1` (or the
//! HTTP/2 streams of `h2`), opened by `connect` (TLS from `tls`), one outcome per request into a collector that owns the tally and reports progress every second. The
//! decisions (what to send when, what counts) are in `plan` and `tally`; this is the I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::net::{SocketAddr, ToSocketAddrs};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::connect::Dialer;
use crate::h1::Connection;
use crate::plan::{Load, Plan, Protocol, Schedule, Stop};
use crate::requests::Requests;
use crate::tally::{Failure, Outcome, Tally};

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

/// One request's result on its way to the collector.
struct Record {
    outcome: Outcome,
    latency: Duration,
    warmup: bool,
    /// When it went out (the open model's workers: when one took it from the schedule).
    sent_at: Instant,
}

/// Runs the plan to its end; `progress` is called about once a second.
pub async fn run(plan: Plan, mut progress: impl FnMut(&Progress) + Send) -> Finished {
    let wire = Arc::new(Wire::of(&plan));
    let plan = Arc::new(plan);
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let start = Instant::now();
    let warmup_end = start + plan.warmup;
    let driver = {
        let plan = Arc::clone(&plan);
        let wire = Arc::clone(&wire);
        tokio::spawn(async move {
            match plan.load {
                Load::Open {
                    rate,
                    arrival,
                    max_connections,
                } => open(plan, wire, rate, arrival, max_connections, start, tx).await,
                Load::Closed { connections } => closed(plan, wire, connections, start, tx).await,
            }
        })
    };
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_count = 0u64;
    let mut measured_start: Option<Instant> = None;
    let mut last_answer = start;
    let mut last_sent = warmup_end;
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(r) = record else { break };
                if r.warmup {
                    tally.warmup_requests += 1;
                } else {
                    measured_start.get_or_insert(warmup_end);
                    tally.record(&r.outcome, r.latency);
                    last_answer = Instant::now();
                    last_sent = last_sent.max(r.sent_at);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let count = tally.requests() + tally.warmup_requests;
                progress(&Progress {
                    elapsed: now - start,
                    warming_up: now < warmup_end,
                    requests: tally.requests(),
                    errors: tally.errors(),
                    rate: (count - last_count) as f64,
                    p99_ms: tally.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                });
                last_count = count;
            }
        }
    }
    let _ = driver.await;
    tally.connections_opened = wire.dialer.opened();
    // A generator that fell behind its schedule sent its last request after the measured
    // part's end: the achieved rate is over the time it took, not the time it was given.
    let measured = match plan.stop {
        Stop::After(d) => d.max(last_sent.saturating_duration_since(warmup_end)),
        Stop::Requests(_) => last_answer.saturating_duration_since(warmup_end),
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

/// The open model: each request at its intended time, whatever the earlier ones take.
///
/// A scheduler hands each due request to an idle worker (a connection, or over HTTP/2 a
/// stream); when none is idle the request waits in a backlog, and the wait counts in its
/// latency, measured from the intended time (no coordinated omission). Workers rather than a
/// task per request: the generator's own cost per request is what bounds the rates it holds.
async fn open(
    plan: Arc<Plan>,
    wire: Arc<Wire>,
    rate: f64,
    arrival: ballast_core::traffic::ArrivalKind,
    max_connections: u32,
    start: Instant,
    tx: mpsc::UnboundedSender<Record>,
) {
    let (workers, http2) = match plan.transport.protocol {
        Protocol::Http1 => (max_connections as usize, None),
        Protocol::Http2 { streams } => (
            max_connections as usize * streams as usize,
            Some(Arc::new(crate::h2::Pool::new(max_connections, streams))),
        ),
    };
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<usize>();
    let mut queues: Vec<mpsc::UnboundedSender<Job>> = Vec::new();
    let mut tasks = JoinSet::new();
    // Worker `id`, started when a request finds none idle and fewer than `workers` run, so
    // `--max-connections` × `--streams` bounds the workers without starting them all.
    let start_worker = |id: usize, tasks: &mut JoinSet<()>| {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
        let (plan, wire, http2, tx, idle_tx) = (
            Arc::clone(&plan),
            Arc::clone(&wire),
            http2.clone(),
            tx.clone(),
            idle_tx.clone(),
        );
        tasks.spawn(async move {
            let mut connection: Option<Connection> = None;
            let mut scratch = Vec::new();
            while let Some(job) = jobs.recv().await {
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
                        None => send_on(&plan, &wire, request, &mut connection, deadline).await,
                        Some(pool) => {
                            let send = send_http2(&plan, &wire, request, Http2Source::Pool(pool));
                            tokio::time::timeout_at(deadline.into(), send)
                                .await
                                .unwrap_or(Outcome::Failed(Failure::Timeout))
                        }
                    }
                };
                let _ = tx.send(Record {
                    outcome,
                    latency: job.intended.elapsed(),
                    warmup: job.warmup,
                    sent_at,
                });
                if idle_tx.send(id).is_err() {
                    return;
                }
            }
        });
        queue
    };
    let mut idle: Vec<usize> = Vec::new();
    let mut backlog: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    let mut measured_started = 0u64;
    let mut schedule = Schedule::new(rate, arrival, plan.seed).peekable();
    loop {
        let next = schedule
            .peek()
            .copied()
            .filter(|&offset| still_sending(&plan, offset, measured_started));
        if next.is_none() && backlog.is_empty() {
            break;
        }
        tokio::select! {
            worker = idle_rx.recv() => match worker {
                Some(id) => idle.push(id),
                None => break,
            },
            // Tokio's timer has millisecond resolution: several requests may be due at once
            // when it wakes; each keeps its intended time, so none is timed short.
            _ = tokio::time::sleep_until((start + next.unwrap_or_default()).into()), if next.is_some() => {
                let now = Instant::now();
                while let Some(&offset) = schedule.peek() {
                    if start + offset > now || !still_sending(&plan, offset, measured_started) {
                        break;
                    }
                    schedule.next();
                    let warmup = offset < plan.warmup;
                    if !warmup {
                        measured_started += 1;
                    }
                    backlog.push_back(Job { offset, intended: start + offset, warmup });
                }
            }
        }
        // Workers back by now are used before another is started.
        while let Ok(id) = idle_rx.try_recv() {
            idle.push(id);
        }
        while !backlog.is_empty() {
            let id = match idle.pop() {
                Some(id) => id,
                None if queues.len() < workers => {
                    queues.push(start_worker(queues.len(), &mut tasks));
                    queues.len() - 1
                }
                None => break,
            };
            if let Some(job) = backlog.pop_front() {
                let _ = queues[id].send(job);
            }
        }
    }
    // Each worker ends when its queue is closed and empty.
    drop(queues);
    drop(idle_tx);
    while tasks.join_next().await.is_some() {}
}

/// The closed model: each connection sends its next request when the last one answered.
async fn closed(
    plan: Arc<Plan>,
    wire: Arc<Wire>,
    connections: u32,
    start: Instant,
    tx: mpsc::UnboundedSender<Record>,
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
        let (plan, wire, tx, started) = (
            Arc::clone(&plan),
            Arc::clone(&wire),
            tx.clone(),
            Arc::clone(&started),
        );
        tasks.spawn(async move {
            let mut lane = match lane {
                Some(slot) => Lane::Http2(slot),
                None => Lane::Http1(None),
            };
            let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_add(index as u64));
            let mut scratch = Vec::new();
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
                        send_on(&plan, &wire, request, connection, sent + plan.timeout).await
                    }
                    Lane::Http2(slot) => {
                        send_http2(&plan, &wire, request, Http2Source::Slot(slot)).await
                    }
                };
                let _ = tx.send(Record {
                    outcome,
                    latency: sent.elapsed(),
                    warmup,
                    sent_at: sent,
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends one request on `connection`, opening one first if there is none (or it closed);
/// leaves it `None` when the connection cannot be used again.
async fn send_on(
    plan: &Plan,
    wire: &Wire,
    request: &[u8],
    connection: &mut Option<Connection>,
    deadline: Instant,
) -> Outcome {
    let head_only = plan.method == "HEAD";
    let attempt = async {
        let reused = connection.is_some();
        if connection.is_none() {
            *connection = Some(Connection::over(wire.dialer.dial().await?));
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
                let mut fresh = Connection::over(wire.dialer.dial().await?);
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
enum Http2Source<'a> {
    /// The closed model's connection shared by its stream workers.
    Slot(&'a crate::h2::Slot),
    /// The open model's connections.
    Pool(&'a crate::h2::Pool),
}

/// Sends one request over HTTP/2: on a new connection of its own with
/// `--no-keepalive`, else on the connection `source` gives.
async fn send_http2(plan: &Plan, wire: &Wire, request: &[u8], source: Http2Source<'_>) -> Outcome {
    let tls = plan.target.tls;
    let attempt = async {
        if plan.transport.connection_per_request {
            // Dropped after the answer: with no stream left the client closes it (GOAWAY).
            let own = crate::h2::Connection::open(&wire.dialer, tls).await?;
            return own.exchange(request, &plan.served_by).await;
        }
        match source {
            Http2Source::Slot(slot) => {
                let connection = slot.get(&wire.dialer, tls).await?;
                connection.exchange(request, &plan.served_by).await
            }
            Http2Source::Pool(pool) => {
                let lease = pool.lease(&wire.dialer, tls).await?;
                lease.connection.exchange(request, &plan.served_by).await
            }
        }
    };
    match tokio::time::timeout(plan.timeout, attempt).await {
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
        let addr = (plan.target.host.as_str(), plan.target.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], plan.target.port)));
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
        // A TLS setup that fails leaves every connection failing; `tls::probe`, run before,
        // has said why.
        let tls = plan.target.tls.then(|| {
            let config = crate::tls::client_config(&plan.transport.tls, plan.transport.protocol);
            let name = crate::tls::server_name(&plan.target);
            match (config, name) {
                (Ok(config), Ok(name)) => Some((config, name)),
                _ => None,
            }
        });
        Wire {
            addr,
            requests: Requests::new(&urls, plan.key.as_ref(), &plan.method, &headers, &plan.body),
            dialer: Dialer::new(addr, plan.sources.clone(), tls),
        }
    }
}
