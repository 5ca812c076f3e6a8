//! Connections to servers: connect with a timeout, speak HTTP/1.1, and keep idle keep-alive
//! connections per server. No client pool decides anything here: the balancer has already
//! chosen the server, and this module only gets a connection to it.
//!
//! An idle connection is reused only while younger than the pool's `idle_timeout`, which is
//! set below common backend keep-alive timeouts so a server never closes a connection just as
//! ballast sends on it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Any boxed error, as bodies carry them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent to servers and to clients.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// One HTTP/1.1 connection to a server.
pub type Connection = SendRequest<ProxyBody>;

/// How long a pooled connection may take to become ready before a new one is opened instead.
const READY_WAIT: Duration = Duration::from_millis(50);

/// Most idle connections kept per server.
pub const MAX_IDLE_PER_SERVER: usize = 256;

/// Idle keep-alive connections to one server.
#[derive(Default)]
pub(crate) struct IdleConnections {
    conns: Mutex<Vec<(Connection, Instant)>>,
}

impl IdleConnections {
    /// The most recently used idle connection that is open, younger than `max_idle` and ready
    /// for a request. A connection put back at the end of a body may not be ready yet (its
    /// task has not run), so readiness is awaited briefly rather than the connection dropped.
    pub async fn checkout(&self, max_idle: Duration) -> Option<Connection> {
        loop {
            let (mut conn, since) = self.conns.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if since.elapsed() >= max_idle || conn.is_closed() {
                continue;
            }
            if conn.is_ready() {
                return Some(conn);
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.ready()).await {
                return Some(conn);
            }
        }
    }

    /// Returns a connection after a complete exchange.
    pub fn checkin(&self, conn: Connection) {
        if conn.is_closed() {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() < MAX_IDLE_PER_SERVER {
            conns.push((conn, Instant::now()));
        }
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }
}

/// Idle keep-alive connections to one server as plain sockets, for the HTTP/1.1 fast path
/// (`fast`), which speaks to servers itself. A socket the server closed while it sat here is
/// found when a request is sent on it, and replaced without blame (`fast`).
#[derive(Default)]
pub(crate) struct IdleStreams {
    streams: Mutex<Vec<(TcpStream, Instant)>>,
}

impl IdleStreams {
    /// The most recently used idle socket younger than `max_idle` at `now` (the caller's
    /// clock reading, so a request reads the clock once).
    pub fn checkout(&self, max_idle: Duration, now: Instant) -> Option<TcpStream> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((stream, since)) = streams.pop() {
            if now.saturating_duration_since(since) < max_idle {
                return Some(stream);
            }
        }
        None
    }

    /// Returns a socket after a complete exchange, idle since `since` (at the latest: an
    /// earlier time only makes it expire sooner).
    pub fn checkin(&self, stream: TcpStream, since: Instant) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.len() < MAX_IDLE_PER_SERVER {
            streams.push((stream, since));
        }
    }

    /// Idle sockets held now.
    pub fn len(&self) -> usize {
        self.streams.lock().map_or(0, |s| s.len())
    }
}

/// Why a connection to a server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {address} timed out after {after:?}")]
    Timeout { address: String, after: Duration },
    #[error("connect to {address} failed: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {address} failed: {source}")]
    Handshake {
        address: String,
        source: hyper::Error,
    },
}

/// Opens a new HTTP/1.1 connection to `address` within `timeout`.
pub async fn connect(address: &str, timeout: Duration) -> Result<Connection, ConnectError> {
    open(address, timeout, false).await
}

/// Opens a new HTTP/1.1 connection; an `upgradable` one can be handed over after a 101 (a
/// WebSocket tunnel), and is never pooled.
pub(crate) async fn open(
    address: &str,
    timeout: Duration,
    upgradable: bool,
) -> Result<Connection, ConnectError> {
    let stream = connect_stream(address, timeout).await?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake {
            address: address.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        // Ends when the connection closes (or is handed over to a tunnel); errors here
        // surface on the request that used it.
        if upgradable {
            let _ = conn.with_upgrades().await;
        } else {
            let _ = conn.await;
        }
    });
    Ok(sender)
}

/// Opens a TCP connection to `address` within `timeout`, without delay on small writes.
pub(crate) async fn connect_stream(
    address: &str,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                address: address.to_string(),
                after: timeout,
            });
        }
        Ok(Err(source)) => {
            return Err(ConnectError::Io {
                address: address.to_string(),
                source,
            });
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
