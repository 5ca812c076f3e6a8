//! `--replay FILE`: recorded requests sent again, in the JSON-lines format `simulate --replay`
//! reads (`ballast_sim::replay::parse`, reused: `{"t": seconds, "client": "ip", "method",
//! "path", "headers"}`). Each record goes out at its recorded time (an open model: the intended
//! time is the start plus its `t` less the first record's, and its latency runs from there) or,
//! with a rate, evenly spaced at that rate; with its method, path and headers, from its client
//! address when that is one of this host's loopback addresses (127.0.0.0/8), else from the
//! system's choice. Over the plan's protocol and scheme (HTTP/1.1 or HTTP/2, `http://` or
//! `https://`, sent by `run`'s senders): HTTP/1.1 connections are kept alive per source
//! address; over HTTP/2 each source address has one connection its requests share, as one
//! client would. At most `max_connections` requests are out at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_sim::ReplayRequest;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::connect::Dialer;
use crate::h1::{self, Connection};
use crate::plan::{Load, Plan, Protocol};
use crate::run::{Finished, Http2Source, Progress};
use crate::tally::{Failure, Outcome, Tally};

/// Reads a replay file's text: `simulate --replay`'s parser, and then what this sender needs
/// on top (a method, path and headers that can go on the wire as they are).
pub fn parse(text: &str) -> Result<Vec<ReplayRequest>, String> {
    let records = ballast_sim::replay::parse(text).map_err(|e| {
        format!(
            "line {}: {}; each line is {{\"t\": seconds, \"client\": \"ip\", \"method\": \"GET\", \"path\": \"/x\", \"headers\": {{}}}}",
            e.line, e.message
        )
    })?;
    if records.is_empty() {
        return Err("the file records no request".into());
    }
    for (i, r) in records.iter().enumerate() {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        let printable = |s: &str| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        let bad = if !token(&r.method) {
            Some(format!("method `{}` is not an HTTP method", r.method))
        } else if !r.path.starts_with('/') || r.path.contains(' ') || !printable(&r.path) {
            Some(format!(
                "path `{}` must start with / and hold no spaces or control characters",
                r.path.escape_default()
            ))
        } else {
            r.headers
                .iter()
                .find(|(n, v)| !token(n) || !printable(v))
                .map(|(n, v)| {
                    format!(
                        "header `{}: {}` is not a valid HTTP header",
                        n.escape_default(),
                        v.escape_default()
                    )
                })
        };
        if let Some(bad) = bad {
            // Records are sorted by time; say which by its time and place in that order.
            return Err(format!("record {} (t = {}): {bad}", i + 1, r.t));
        }
    }
    Ok(records)
}

/// Headers the sender writes itself, so a record's are left out.
const OWN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// One record's bytes: its `Host` when it has one (else the target's), its other headers.
pub fn serialise(record: &ReplayRequest, authority: &str) -> Vec<u8> {
    let host = record
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or(authority, |(_, v)| v.as_str());
    let headers: Vec<(String, String)> = record
        .headers
        .iter()
        .filter(|(n, _)| !OWN_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    h1::serialise(&record.method, &record.path, host, &headers, b"")
}

/// The address a record is sent from: its client when it is loopback IPv4 (all of
/// 127.0.0.0/8 is local on Linux), else none (the system's choice).
pub fn source_of(record: &ReplayRequest) -> Option<IpAddr> {
    match record.client {
        IpAddr::V4(v4) if v4.is_loopback() => Some(record.client),
        _ => None,
    }
}

/// When each record is meant to go out, from the start: its recorded time less the first
/// record's, or `i / rate` with a rate.
pub fn intended_offsets(records: &[ReplayRequest], rate: Option<f64>) -> Vec<Duration> {
    let first = records.first().map_or(0.0, |r| r.t);
    records
        .iter()
        .enumerate()
        .map(|(i, r)| match rate {
            Some(rate) => Duration::from_secs_f64(i as f64 / rate),
            None => Duration::from_secs_f64((r.t - first).max(0.0)),
        })
        .collect()
}

/// One source address's way to the target: its dialer (bound to that address, TLS for
/// `https://`), its idle HTTP/1.1 connections, or over HTTP/2 the connection it shares.
struct Lane {
    dialer: Dialer,
    idle: Mutex<Vec<Connection>>,
    http2: crate::h2::Slot,
}

/// The lanes by source address, and slots bounding the requests out.
struct Pool {
    lanes: Mutex<HashMap<Option<IpAddr>, Arc<Lane>>>,
    slots: Semaphore,
    addr: std::net::SocketAddr,
    tls: crate::run::TlsSetup,
}

impl Pool {
    fn lane(&self, source: Option<IpAddr>) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let lane = lanes.entry(source).or_insert_with(|| {
            Arc::new(Lane {
                dialer: Dialer::new(self.addr, source.into_iter().collect(), self.tls.clone()),
                idle: Mutex::new(Vec::new()),
                http2: crate::h2::Slot::default(),
            })
        });
        Arc::clone(lane)
    }

    /// TCP connections the lanes opened.
    fn opened(&self) -> u64 {
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.values().map(|lane| lane.dialer.opened()).sum()
    }
}

struct Record {
    outcome: Outcome,
    latency: Duration,
    warmup: bool,
}

/// Sends the records to the plan's target (its method, URLs and keys are not used: each
/// record says its own), with the plan's served-by header, timeout, warm-up and
/// `max_connections` (from an open load; 1000 otherwise). `progress` about once a second.
pub async fn run(
    plan: Plan,
    records: Arc<Vec<ReplayRequest>>,
    rate: Option<f64>,
    mut progress: impl FnMut(&Progress) + Send,
) -> Finished {
    let max_connections = match plan.load {
        Load::Open {
            max_connections, ..
        } => max_connections,
        Load::Closed { .. } => 1000,
    };
    let pool = Arc::new(Pool {
        lanes: Mutex::new(HashMap::new()),
        slots: Semaphore::new(max_connections.max(1) as usize),
        addr: crate::run::target_addr(&plan),
        tls: crate::run::tls_setup(&plan),
    });
    let plan = Arc::new(plan);
    let offsets = intended_offsets(&records, rate);
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let start = Instant::now();
    let driver = {
        let (plan, pool) = (Arc::clone(&plan), Arc::clone(&pool));
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            for (i, offset) in offsets.into_iter().enumerate() {
                let intended = start + offset;
                if intended > Instant::now() {
                    tokio::time::sleep_until(intended.into()).await;
                }
                let (plan, pool, records, tx) = (
                    Arc::clone(&plan),
                    Arc::clone(&pool),
                    Arc::clone(&records),
                    tx.clone(),
                );
                tasks.spawn(async move {
                    let record = &records[i];
                    let request = serialise(record, &plan.target.authority);
                    let deadline = intended + plan.timeout;
                    let outcome = tokio::time::timeout_at(
                        deadline.into(),
                        send(
                            &pool,
                            &plan,
                            source_of(record),
                            &request,
                            record.method == "HEAD",
                            deadline,
                        ),
                    )
                    .await
                    .unwrap_or(Outcome::Failed(Failure::Timeout));
                    let _ = tx.send(Record {
                        outcome,
                        latency: intended.elapsed(),
                        warmup: offset < plan.warmup,
                    });
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_count = 0u64;
    let mut last_answer = start;
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(r) = record else { break };
                if r.warmup {
                    tally.warmup_requests += 1;
                } else {
                    tally.record(&r.outcome, r.latency);
                    last_answer = Instant::now();
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let count = tally.requests() + tally.warmup_requests;
                progress(&Progress {
                    elapsed: now - start,
                    warming_up: now < start + plan.warmup,
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
    tally.connections_opened = pool.opened();
    Finished {
        tally,
        measured: last_answer.saturating_duration_since(start + plan.warmup),
    }
}

/// One request from `source`'s lane: over HTTP/1.1 on an idle connection of its (or a new
/// one, retried once on a fresh one when a kept-alive one turns out closed); over HTTP/2 on
/// its shared connection.
async fn send(
    pool: &Pool,
    plan: &Plan,
    source: Option<IpAddr>,
    request: &[u8],
    head_only: bool,
    deadline: Instant,
) -> Outcome {
    let Ok(_slot) = pool.slots.acquire().await else {
        return Outcome::Failed(Failure::Broken);
    };
    let lane = pool.lane(source);
    if let Protocol::Http2 { .. } = plan.transport.protocol {
        let shared = Http2Source::Slot(&lane.http2);
        return crate::run::send_http2(plan, &lane.dialer, request, shared).await;
    }
    let idle = || lane.idle.lock().unwrap_or_else(|p| p.into_inner());
    let mut connection = idle().pop();
    let outcome = crate::run::send_on(
        plan,
        &lane.dialer,
        request,
        head_only,
        &mut connection,
        deadline,
    )
    .await;
    if let Some(kept) = connection {
        idle().push(kept);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_checked_and_timed() {
        let text = "{\"t\": 1.5, \"client\": \"127.0.0.9\", \"path\": \"/b\", \"headers\": {\"X-Tenant\": \"k1\", \"Host\": \"shop\"}}\n\
                    {\"t\": 1.0, \"client\": \"10.0.0.1\", \"method\": \"POST\", \"path\": \"/a?x=1\"}\n";
        let records = parse(text).unwrap();
        assert_eq!(records[0].path, "/a?x=1", "sorted by time");
        assert_eq!(
            intended_offsets(&records, None),
            [Duration::ZERO, Duration::from_millis(500)]
        );
        assert_eq!(
            intended_offsets(&records, Some(10.0)),
            [Duration::ZERO, Duration::from_millis(100)]
        );
        assert_eq!(source_of(&records[0]), None, "10.0.0.1 is not local");
        assert_eq!(source_of(&records[1]).unwrap().to_string(), "127.0.0.9");
        let post = String::from_utf8(serialise(&records[0], "127.0.0.1:80")).unwrap();
        assert!(
            post.starts_with("POST /a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n"),
            "{post}"
        );
        assert!(post.contains("Content-Length: 0\r\n"));
        let get = String::from_utf8(serialise(&records[1], "127.0.0.1:80")).unwrap();
        assert!(
            get.starts_with("GET /b HTTP/1.1\r\nHost: shop\r\n"),
            "{get}"
        );
        assert!(get.contains("\r\nX-Tenant: k1\r\n"));
        assert_eq!(get.matches("Host:").count(), 1);

        assert!(parse("").unwrap_err().contains("no request"));
        assert!(
            parse("{\"t\": 0, \"client\": \"x\"}")
                .unwrap_err()
                .contains("line 1")
        );
        let injected =
            "{\"t\": 0, \"client\": \"127.0.0.1\", \"headers\": {\"X\": \"a\\r\\nEvil: 1\"}}";
        assert!(
            parse(injected)
                .unwrap_err()
                .contains("not a valid HTTP header")
        );
        let spaced = "{\"t\": 0, \"client\": \"127.0.0.1\", \"path\": \"/a b\"}";
        assert!(parse(spaced).unwrap_err().contains("path"));
    }
}
