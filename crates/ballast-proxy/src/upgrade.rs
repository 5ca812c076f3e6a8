//! HTTP/1.1 Upgrade (WebSocket) through the proxy: which requests are tunneled, the upstream
//! connection that can be upgraded, and the tunnel itself.
//!
//! A `GET` over HTTP/1.1 with `Connection: upgrade` and `Upgrade: websocket` is picked,
//! queued and limited as any request, and sent on a fresh connection (a pooled one could not
//! be handed over) with its upgrade headers restored after the hop-by-hop ones are removed.
//! When the server answers `101`, the client gets the `101` and, once hyper has handed both
//! connections over, bytes are spliced both ways. The tunnel runs in the client connection's
//! own task, so it keeps that connection's admission permit (connection caps count it, and a
//! drain waits for it), and it holds its server slot until it closes, so the server's
//! in-flight count and `max_connections` see it. It is closed when no byte passes either way
//! for `timeouts.tunnel`, and at the end of a shutdown's drain; a reload leaves it running on
//! the configuration it started under. Other Upgrade protocols (h2c among them, which would let
//! a client past the proxy's HTTP/2 handling) are not tunneled: their headers are removed as
//! before. HTTP/2's extended CONNECT (RFC 8441) is not supported.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::{HeaderMap, Method, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::framing::FramingWatch;
use crate::headers::strip_hop_by_hop;
use crate::observed::{Observed, ReadObserver};
use crate::runtime::Slot;
use crate::upstream::{ConnectError, Connection, ProxyBody};

/// How long hyper may take to hand over the two connections after the 101.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// The protocol this request asks to upgrade to (the `Upgrade` value), when it is one the
/// proxy tunnels: a WebSocket over HTTP/1.1.
pub fn requested(parts: &http::request::Parts) -> Option<HeaderValue> {
    // Most requests have no Upgrade header: that is checked first, and nothing allocates.
    let upgrade = parts.headers.get(UPGRADE)?;
    if parts.version != Version::HTTP_11 || parts.method != Method::GET {
        return None;
    }
    let has = |value: &HeaderValue, token: &str| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let connection_upgrade = parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| has(v, "upgrade"));
    (connection_upgrade && has(upgrade, "websocket")).then(|| upgrade.clone())
}

/// Puts the upgrade headers back after the hop-by-hop ones were removed.
pub fn restore_headers(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, upgrade);
}

/// Opens a connection to `address` whose requests can be upgraded. Never pooled.
pub async fn connect(address: &str, timeout: Duration) -> Result<Connection, ConnectError> {
    crate::upstream::open(address, timeout, true).await
}

/// A tunnel waiting to run, boxed so the connection task can hold it.
pub type Tunnel = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One client connection's pending tunnel: set by the request that got its 101, run by the
/// connection's task once hyper has finished with the connection.
pub struct Handoff {
    tunnel: Mutex<Option<Tunnel>>,
    framing: Arc<Mutex<FramingWatch>>,
}

impl Handoff {
    pub fn new(framing: Arc<Mutex<FramingWatch>>) -> Self {
        Self {
            tunnel: Mutex::new(None),
            framing,
        }
    }

    fn put(&self, tunnel: Tunnel) {
        // The bytes from here on are the tunnel's, not request heads.
        self.framing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop();
        *self.tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(tunnel);
    }

    /// The tunnel to run, if a request of this connection was upgraded.
    pub fn take(&self) -> Option<Tunnel> {
        self.tunnel.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Tunnels of the whole proxy: the signal that closes them at the end of a drain.
pub struct Tunnels {
    closing: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self {
            closing: watch::Sender::new(false),
        }
    }
}

impl Tunnels {
    /// Closes every open tunnel (the drain's deadline has passed).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// One side closed its stream, or failed.
    Closed,
    /// No byte either way for the tunnel timeout.
    Idle,
    /// The drain's deadline passed.
    Drained,
    /// hyper did not hand a connection over.
    NotHandedOver,
}

/// What a tunnel holds while it runs.
pub struct Held {
    /// The server slot, given back when the tunnel closes.
    pub slot: Slot,
    /// The request's side of the upstream connection, kept until hyper hands it over.
    pub conn: Connection,
    /// `timeouts.tunnel`.
    pub idle: Duration,
    pub pool: String,
    pub server: String,
}

/// Answers the client's upgrade with the server's 101 and hands the tunnel to the client
/// connection's task.
pub fn switch(
    mut response: Response<Incoming>,
    client: OnUpgrade,
    held: Held,
    handoff: &Handoff,
    tunnels: &Tunnels,
) -> Response<ProxyBody> {
    let server = hyper::upgrade::on(&mut response);
    let (mut head, _) = response.into_parts();
    let upgrade = head.headers.get(UPGRADE).cloned();
    strip_hop_by_hop(&mut head.headers);
    if let Some(upgrade) = upgrade {
        restore_headers(&mut head.headers, upgrade);
    }
    let closing = tunnels.closing();
    handoff.put(Box::pin(async move {
        let Held {
            slot,
            conn,
            idle,
            pool,
            server: name,
        } = held;
        let ended = tunnel(client, server, conn, idle, closing).await;
        tracing::debug!(pool = %pool, server = %name, "tunnel ended: {ended:?}");
        drop(slot);
    }));
    let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
        http_body_util::Empty::new(),
        |never: std::convert::Infallible| match never {},
    ));
    let mut switched = Response::from_parts(head, body);
    *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    switched
}

async fn tunnel(
    client: OnUpgrade,
    server: OnUpgrade,
    conn: Connection,
    idle: Duration,
    mut closing: watch::Receiver<bool>,
) -> Ended {
    let handed = tokio::time::timeout(HANDOVER_WAIT, async { tokio::join!(client, server) });
    let (Ok(client), Ok(server)) = (match handed.await {
        Ok(pair) => pair,
        Err(_) => return Ended::NotHandedOver,
    }) else {
        return Ended::NotHandedOver;
    };
    drop(conn);
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (mut from_client, mut to_client) = tokio::io::split(Observed::over(
        TokioIo::new(client),
        LastRead::new(started, &last),
    ));
    let (mut from_server, mut to_server) = tokio::io::split(Observed::over(
        TokioIo::new(server),
        LastRead::new(started, &last),
    ));
    // A WebSocket closes with its own handshake, so a side that ends its stream is done: once
    // its last bytes are passed on, the tunnel closes both (no half-open wait for the other).
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::select! {
        () = upstream => Ended::Closed,
        () = downstream => Ended::Closed,
        () = quiet_for(idle, started, &last) => Ended::Idle,
        _ = closing.wait_for(|closing| *closing) => Ended::Drained,
    }
}

/// Returns once no byte has passed for `idle` (never when `idle` is zero: disabled).
async fn quiet_for(idle: Duration, started: Instant, last_ms: &AtomicU64) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let last = started + Duration::from_millis(last_ms.load(Ordering::Acquire));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}

/// The tunnel's clock: notes when bytes last arrived on either side (milliseconds since the
/// tunnel began), for the idle timeout.
struct LastRead {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl LastRead {
    fn new(started: Instant, last_ms: &Arc<AtomicU64>) -> Self {
        Self {
            started,
            last_ms: Arc::clone(last_ms),
        }
    }
}

impl ReadObserver for LastRead {
    fn observe(&mut self, _fresh: &[u8]) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::builder().version(version).uri("/ws");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_websocket_upgrades_over_http_1_1_are_tunneled() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert_eq!(
            requested(&parts(Version::HTTP_11, &ws)).unwrap(),
            "WebSocket"
        );
        assert!(requested(&parts(Version::HTTP_10, &ws)).is_none());
        let h2c = [("connection", "upgrade"), ("upgrade", "h2c")];
        assert!(requested(&parts(Version::HTTP_11, &h2c)).is_none());
        let no_connection = [("upgrade", "websocket")];
        assert!(requested(&parts(Version::HTTP_11, &no_connection)).is_none());
    }
}
