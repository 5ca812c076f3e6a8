//! `--replay FILE`: recorded requests sent again, in the JSON-lines format `simulate --replay`
//! reads (`ballast_sim::replay::parse`, reused: `{"t": seconds, "client": "ip", "method",
//! "path", "headers"}`). Each record goes out at its recorded time (an open model: the intended
//! time is the start plus its `t` less the first record's, and its latency runs from there) or,
//! with a rate, evenly spaced at that rate; with its method, path and headers, from its client
//! address when that is one of this host's loopback addresses (127.0.0.0/8), else from the
//! system's choice. Connections are kept alive per source address, at most `max_connections`
//! busy at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_sim::ReplayRequest;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::h1::{self, Connection};
use crate::plan::{Load, Plan};
use crate::run::{Finished, Progress};
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

/// Idle connections by source address, and slots bounding the busy ones.
struct Pool {
    idle: Mutex<HashMap<Option<IpAddr>, Vec<Connection>>>,
    slots: Semaphore,
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
    let addr = (plan.target.host.as_str(), plan.target.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], plan.target.port)));
    let max_connections = match plan.load {
        Load::Open {
            max_connections, ..
        } => max_connections,
        Load::Closed { .. } => 1000,
    };
    let pool = Arc::new(Pool {
        idle: Mutex::new(HashMap::new()),
        slots: Semaphore::new(max_connections.max(1) as usize),
    });
    let plan = Arc::new(plan);
    let offsets = intended_offsets(&records, rate);
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let start = Instant::now();
    let driver = {
        let plan = Arc::clone(&plan);
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
                            addr,
                            source_of(record),
                            &request,
                            record.method == "HEAD",
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
    Finished {
        tally,
        measured: last_answer.saturating_duration_since(start + plan.warmup),
    }
}

/// One exchange on an idle connection from `source` (or a new one), retried once on a fresh
/// connection when a kept-alive one turns out closed before any answer.
async fn send(
    pool: &Pool,
    plan: &Plan,
    addr: SocketAddr,
    source: Option<IpAddr>,
    request: &[u8],
    head_only: bool,
) -> Outcome {
    let Ok(_slot) = pool.slots.acquire().await else {
        return Outcome::Failed(Failure::Broken);
    };
    let reused = pool
        .idle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&source)
        .and_then(Vec::pop);
    let was_reused = reused.is_some();
    let mut connection = match reused {
        Some(c) => c,
        None => match Connection::open(addr, source).await {
            Ok(c) => c,
            Err(f) => return Outcome::Failed(f),
        },
    };
    let mut result = connection
        .exchange(request, &plan.served_by, head_only)
        .await;
    if matches!(result, Err(Failure::Broken)) && was_reused && !connection.answered_any() {
        connection = match Connection::open(addr, source).await {
            Ok(c) => c,
            Err(f) => return Outcome::Failed(f),
        };
        result = connection
            .exchange(request, &plan.served_by, head_only)
            .await;
    }
    match result {
        Ok(answer) => {
            if answer.keep_alive {
                pool.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(source)
                    .or_default()
                    .push(connection);
            }
            Outcome::Response {
                status: answer.status,
                backend: answer.backend,
            }
        }
        Err(f) => Outcome::Failed(f),
    }
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
