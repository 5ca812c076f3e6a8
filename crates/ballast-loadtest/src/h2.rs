//! The HTTP/2 client (the `h2` crate): prior knowledge over plain TCP (h2c) or `h2` agreed by
//! ALPN over TLS. A connection carries several requests at once, each on its own stream; its
//! frames are driven by a task of its own. The requests come serialised as HTTP/1.1 (what
//! `requests` builds, replayed requests too) and are turned into HTTP/2 heads here, so every
//! way of building requests works over both protocols.
//!
//! Two ways to share connections: a `Slot` holds the one connection that a closed-model
//! connection's `--streams` workers share (re-opened when it closes; a replay has one per
//! client address); a `Pool` spreads the open model's requests over up to `--max-connections`
//! open connections, opening one only when every open one carries `--streams` requests. A
//! connection that got a GOAWAY takes no new stream, and the requests the server did not
//! process on it (`Exchange::Unprocessed`) are sent again by `run`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;
use h2::client::SendRequest;

use crate::connect::{Dialer, Stream};
use crate::h1::Answer;
use crate::tally::Failure;

/// Request headers HTTP/2 forbids (RFC 9113 §8.2.2); `Host` becomes `:authority`.
const CONNECTION_SPECIFIC: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// One HTTP/2 connection.
pub struct Connection {
    send: SendRequest<Bytes>,
    /// Set when the connection's frame task ends (closed, GOAWAY, broken).
    closed: Arc<AtomicBool>,
    /// Requests on it now, as the pools count them.
    in_flight: AtomicU32,
    scheme: &'static str,
}

impl Connection {
    /// The HTTP/2 preface and settings over `stream`; its frames then run in a task of their own.
    pub async fn handshake(stream: Stream, tls: bool) -> Result<Connection, Failure> {
        // Windows larger than the 64 KiB default, so a large response does not wait a round
        // trip for WINDOW_UPDATE on loopback.
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|_| Failure::Connect)?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        tokio::spawn(async move {
            let _ = connection.await;
            flag.store(true, Ordering::Relaxed);
        });
        Ok(Connection {
            send,
            closed,
            in_flight: AtomicU32::new(0),
            scheme: if tls { "https" } else { "http" },
        })
    }

    /// Dials and handshakes a new connection.
    pub async fn open(dialer: &Dialer, tls: bool) -> Result<Connection, Failure> {
        Connection::handshake(dialer.dial().await?, tls).await
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Sends `request` (serialised as HTTP/1.1) on a new stream and reads its response to the
    /// end of its body; the body is dropped as it arrives, its flow-control window given back.
    /// A request the server did not process (`Exchange::Unprocessed`) may be sent again on
    /// another connection; this one then takes no new stream.
    pub async fn exchange(&self, request: &[u8], served_by: &str) -> Result<Answer, Exchange> {
        let (head, body) = to_http2(request, self.scheme).map_err(Exchange::Failed)?;
        let unprocessed = |e: h2::Error| {
            if !unprocessed(&e) {
                return Exchange::Failed(Failure::Broken);
            }
            // A GOAWAY ends the connection for new streams; one refused stream does not.
            if e.is_go_away() {
                self.closed.store(true, Ordering::Relaxed);
            }
            Exchange::Unprocessed
        };
        // Waits while the server's SETTINGS_MAX_CONCURRENT_STREAMS are all in use. A
        // connection that cannot open a stream any more (going away, or broken) sent nothing
        // of this request; a request h2 itself refuses would be refused again.
        let not_sent = |e: h2::Error| {
            if e.is_go_away() || e.is_io() || e.is_reset() {
                self.closed.store(true, Ordering::Relaxed);
                Exchange::Unprocessed
            } else {
                Exchange::Failed(Failure::Broken)
            }
        };
        let mut send = self.send.clone().ready().await.map_err(not_sent)?;
        let (response, mut stream) = send.send_request(head, body.is_empty()).map_err(not_sent)?;
        if !body.is_empty() {
            stream.send_data(body, true).map_err(unprocessed)?;
        }
        let response = response.await.map_err(unprocessed)?;
        let status = response.status().as_u16();
        let backend = response
            .headers()
            .get(served_by)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string());
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|_| Exchange::Failed(Failure::Broken))?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok(Answer {
            status,
            backend,
            keep_alive: true,
        })
    }
}

/// How an exchange that got no answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// The server says it did not process the request: a graceful GOAWAY whose last stream
    /// is below it, or the stream refused (RFC 9113 §8.7). Safe to send again.
    Unprocessed,
    Failed(Failure),
}

/// Whether a stream's error says the server never processed its request. A GOAWAY with
/// NO_ERROR fails only the streams above its last stream id (the ones below are answered);
/// REFUSED_STREAM, as a reset or a GOAWAY's code, means the same by definition.
fn unprocessed(e: &h2::Error) -> bool {
    match e.reason() {
        Some(h2::Reason::REFUSED_STREAM) => e.is_remote(),
        Some(h2::Reason::NO_ERROR) => e.is_go_away() && e.is_remote(),
        _ => false,
    }
}

/// A serialised HTTP/1.1 request as an HTTP/2 head and body.
fn to_http2(request: &[u8], scheme: &str) -> Result<(http::Request<()>, Bytes), Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(request) else {
        return Err(Failure::Broken);
    };
    let authority = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .unwrap_or_default();
    let uri = format!(
        "{scheme}://{authority}{}",
        parsed.path.ok_or(Failure::Broken)?
    );
    let mut builder = http::Request::builder()
        .method(parsed.method.ok_or(Failure::Broken)?)
        .uri(uri)
        .version(http::Version::HTTP_2);
    for h in parsed.headers.iter() {
        if !CONNECTION_SPECIFIC
            .iter()
            .any(|c| h.name.eq_ignore_ascii_case(c))
        {
            builder = builder.header(h.name, h.value);
        }
    }
    let head = builder.body(()).map_err(|_| Failure::Broken)?;
    Ok((head, Bytes::copy_from_slice(&request[head_len..])))
}

/// A request's hold on a pooled connection; gives its place back when dropped.
pub struct Lease {
    pub connection: Arc<Connection>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.connection.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection a closed-model connection's stream workers share.
#[derive(Default)]
pub struct Slot {
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Slot {
    /// The open connection, or a new one when there is none or it closed.
    pub async fn get(&self, dialer: &Dialer, tls: bool) -> Result<Arc<Connection>, Failure> {
        // Held while dialing, so the workers of one slot open one connection, not one each.
        let mut held = self.connection.lock().await;
        if let Some(c) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        *held = None;
        let fresh = Arc::new(Connection::open(dialer, tls).await?);
        *held = Some(Arc::clone(&fresh));
        Ok(fresh)
    }
}

/// The open model's HTTP/2 connections.
pub struct Pool {
    connections: tokio::sync::Mutex<Vec<Arc<Connection>>>,
    max_connections: usize,
    streams: u32,
}

impl Pool {
    pub fn new(max_connections: u32, streams: u32) -> Pool {
        Pool {
            connections: tokio::sync::Mutex::new(Vec::new()),
            max_connections: max_connections.max(1) as usize,
            streams: streams.max(1),
        }
    }

    /// A place on the least busy open connection with one free, else on a new connection
    /// (while there are fewer than `max_connections`), else on the least busy one (its
    /// stream then waits for the server's concurrency limit). The caller bounds how many
    /// requests are in flight at once.
    pub async fn lease(&self, dialer: &Dialer, tls: bool) -> Result<Lease, Failure> {
        let mut held = self.connections.lock().await;
        held.retain(|c| !c.is_closed());
        let least_busy = held
            .iter()
            .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))
            .cloned();
        let connection = match least_busy {
            Some(c) if c.in_flight.load(Ordering::Relaxed) < self.streams => c,
            Some(c) if held.len() >= self.max_connections => c,
            _ => {
                // Dialed under the lock: the requests arriving meanwhile then find this
                // connection's free streams instead of each opening one.
                let fresh = Arc::new(Connection::open(dialer, tls).await?);
                held.push(Arc::clone(&fresh));
                fresh
            }
        };
        connection.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Lease { connection })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::serialise;

    #[test]
    fn an_http1_request_becomes_an_http2_head_without_connection_headers() {
        let bytes = serialise(
            "POST",
            "/a?b=1",
            "example.com:8080",
            &[
                ("X-Tenant".into(), "t1".into()),
                ("Connection".into(), "close".into()),
            ],
            b"{}",
        );
        let (head, body) = to_http2(&bytes, "http").unwrap();
        assert_eq!(head.method(), http::Method::POST);
        assert_eq!(head.uri().to_string(), "http://example.com:8080/a?b=1");
        assert_eq!(head.uri().authority().unwrap().as_str(), "example.com:8080");
        assert_eq!(head.headers()["x-tenant"], "t1");
        assert_eq!(head.headers()["content-length"], "2");
        assert!(head.headers().get("connection").is_none());
        assert!(head.headers().get("host").is_none());
        assert_eq!(&body[..], b"{}");
        assert_eq!(
            to_http2(b"GARBAGE\r\n\r\n", "http").unwrap_err(),
            Failure::Broken
        );
    }
}
