//! Sending the plan: tokio and the raw HTTP/1.1 keep-alive connections of `h1` (or the
//! HTTP/2 streams of `h2`), opened by `connect` (TLS from `tls`), one outcome per request into a collector that owns the tally and reports progress every second. The
//! decisions (what to send when, what counts) are in `plan` and `tally`; this is the I/O.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::net::{SocketAddr, ToSocketAddrs};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use tokio::sync::{Semaphore, mpsc};
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
    let measured = match plan.stop {
        Stop::After(d) => d,
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

/// The open model: each request at its intended time, whatever the earlier ones take.
async fn open(
    plan: Arc<Plan>,
    wire: Arc<Wire>,
    rate: f64,
    arrival: ballast_core::traffic::ArrivalKind,
    max_connections: u32,
    start: Instant,
    tx: mpsc::UnboundedSender<Record>,
) {
    let (slots, http2) = match plan.transport.protocol {
        Protocol::Http1 => (max_connections as usize, None),
        Protocol::Http2 { streams } => (
            max_connections as usize * streams as usize,
            Some(crate::h2::Pool::new(max_connections, streams)),
        ),
    };
    let pool = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
        slots: Semaphore::new(slots),
        http2,
    });
    let mut tasks = JoinSet::new();
    let mut measured_started = 0u64;
    let mut schedule = Schedule::new(rate, arrival, plan.seed).peekable();
    while let Some(&offset) = schedule.peek() {
        if !still_sending(&plan, offset, measured_started) {
            break;
        }
        let intended = start + offset;
        let now = Instant::now();
        if intended > now {
            // Tokio's timer has millisecond resolution: several requests may be due at once
            // when it wakes; each keeps its intended time, so none is timed short.
            tokio::time::sleep_until(intended.into()).await;
        }
        schedule.next();
        let warmup = offset < plan.warmup;
        if !warmup {
            measured_started += 1;
        }
        let (plan, wire, pool, tx) = (
            Arc::clone(&plan),
            Arc::clone(&wire),
            Arc::clone(&pool),
            tx.clone(),
        );
        tasks.spawn(async move {
            // The timeout runs from the intended time: a request still waiting for a free
            // connection when it expires is a timeout too, so an overloaded run drains within
            // one timeout of its end instead of serving its whole queue.
            let deadline = intended + plan.timeout;
            let mut rng = SmallRng::seed_from_u64(plan.seed ^ offset.as_nanos() as u64);
            let mut scratch = Vec::new();
            let request = wire.requests.next(&mut rng, &mut scratch);
            let outcome =
                tokio::time::timeout_at(deadline.into(), pool.send(&plan, &wire, request))
                    .await
                    .unwrap_or(Outcome::Failed(Failure::Timeout));
            let _ = tx.send(Record {
                outcome,
                latency: intended.elapsed(),
                warmup,
            });
        });
        // Reap finished tasks as we go, so the set stays the size of what is in flight.
        while tasks.try_join_next().is_some() {}
    }
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
                    Lane::Http1(connection) => send_on(&plan, &wire, request, connection).await,
                    Lane::Http2(slot) => {
                        send_http2(&plan, &wire, request, Http2Source::Slot(slot)).await
                    }
                };
                let _ = tx.send(Record {
                    outcome,
                    latency: sent.elapsed(),
                    warmup,
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The open model's connections: idle ones to reuse, and slots bounding how many are busy
/// (over HTTP/2, how many requests: `--max-connections` times `--streams`).
struct Pool {
    idle: Mutex<Vec<Connection>>,
    slots: Semaphore,
    http2: Option<crate::h2::Pool>,
}

impl Pool {
    async fn send(&self, plan: &Plan, wire: &Wire, request: &[u8]) -> Outcome {
        // Waiting for a slot counts in the request's latency: it was meant to go out already.
        let Ok(_slot) = self.slots.acquire().await else {
            return Outcome::Failed(Failure::Broken);
        };
        if let Some(http2) = &self.http2 {
            return send_http2(plan, wire, request, Http2Source::Pool(http2)).await;
        }
        let mut connection = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let outcome = send_on(plan, wire, request, &mut connection).await;
        if let Some(c) = connection {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
        outcome
    }
}

/// Sends one request on `connection`, opening one first if there is none (or it closed);
/// leaves it `None` when the connection cannot be used again.
async fn send_on(
    plan: &Plan,
    wire: &Wire,
    request: &[u8],
    connection: &mut Option<Connection>,
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
    match tokio::time::timeout(plan.timeout, attempt).await {
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
