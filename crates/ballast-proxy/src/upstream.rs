//! Connections to servers: connect with a timeout, speak HTTP/1.1, and keep idle keep-alive
//! connections per server. No client pool decides anything here: the balancer has already
//! chosen the server, and this module only gets a connection to it.
//!
//! An idle connection is reused only while younger than the pool's `idle_timeout`, which is
//! set below common backend keep-alive timeouts so a server never closes a connection just as
//! ballast sends on it.
//!
//! A pooled connection has no task of its own: its I/O (hyper's client dispatcher) is driven
//! by the request using it, inside that request's task, while it waits for the response head
//! and while the client pulls the response body. A spawned connection task would cost two
//! cross-task wake-ups per request and direction; the measurements are in BENCHMARKS.md
//! ("per-request CPU"). Only an upgradable connection (a WebSocket's) keeps a task, because
//! hyper hands its I/O over to the tunnel from there.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Any boxed error, as bodies carry them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent to servers and to clients.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// hyper's client dispatcher for one connection: reads and writes its socket when polled.
type Driver = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, ProxyBody>;

/// One HTTP/1.1 connection to a server: the request side and, unless it runs in a task of its
/// own (upgradable connections), the dispatcher that the user of the connection drives.
pub struct Connection {
    sender: SendRequest<ProxyBody>,
    /// None once the dispatcher has ended (the connection is closed) or when it was spawned.
    driver: Option<Pin<Box<Driver>>>,
}

impl Connection {
    /// Runs the connection's I/O as far as it can go now, registering `cx` for its next
    /// progress. A dispatcher that ends (closed or failed) is dropped: its error surfaces on the
    /// request it was serving, as it did from a spawned task.
    pub fn poll_drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = &mut self.driver
            && driver.as_mut().poll(cx).is_ready()
        {
            self.driver = None;
        }
    }

    /// Whether this connection's I/O is driven by its user (false: it has a task of its own).
    pub fn is_driven_inline(&self) -> bool {
        self.driver.is_some()
    }

    /// Whether the server side has closed (or the dispatcher ended).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Whether a request can be sent now.
    pub fn is_ready(&self) -> bool {
        self.sender.is_ready()
    }

    /// Waits until a request can be sent, driving the connection meanwhile.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        poll_fn(|cx| {
            self.poll_drive(cx);
            self.sender.poll_ready(cx)
        })
        .await
    }

    /// Sends `request` and waits for the response head, driving the connection meanwhile. A
    /// request that never left (the connection had closed) comes back in the error.
    pub async fn try_send_request(
        &mut self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<ProxyBody>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        let driver = &mut self.driver;
        poll_fn(|cx| {
            let Some(d) = driver else {
                return response.as_mut().poll(cx);
            };
            if d.as_mut().poll(cx).is_ready() {
                *driver = None;
                return response.as_mut().poll(cx);
            }
            // Only the dispatcher, polled just now with `cx`, can complete the response: the
            // answer is looked at without registering this task a second time, which would
            // wake it once more for every response.
            response
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        })
        .await
    }
}

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
            let (mut conn, since) = {
                let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
                // Nothing drives an idle connection, so a server's close of one is only seen
                // when it is taken: the oldest, past `max_idle`, are closed here instead of
                // lingering half-closed at the bottom of the stack.
                let stale = conns
                    .iter()
                    .take_while(|(_, since)| since.elapsed() >= max_idle)
                    .count();
                conns.drain(..stale);
                conns.pop()?
            };
            if since.elapsed() >= max_idle {
                continue;
            }
            // Reads what arrived while the connection sat idle (a close, typically). This task
            // is not registered for more: it would be woken by its own request below, whose
            // sending drives the connection anyway.
            conn.poll_drive(&mut Context::from_waker(Waker::noop()));
            if conn.is_closed() {
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

    /// Returns a connection after a complete exchange. One still busy with it (a request body
    /// still being sent after the response) is closed instead: nobody would drive it here.
    pub fn checkin(&self, mut conn: Connection) {
        conn.poll_drive(&mut Context::from_waker(Waker::noop()));
        if conn.is_closed() || (conn.is_driven_inline() && !conn.is_ready()) {
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
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake {
            address: address.to_string(),
            source,
        })?;
    if !upgradable {
        return Ok(Connection {
            sender,
            driver: Some(Box::pin(conn)),
        });
    }
    tokio::spawn(async move {
        // Ends when the connection is handed over to a tunnel or closes; errors here surface
        // on the request that used it.
        let _ = conn.with_upgrades().await;
    });
    Ok(Connection {
        sender,
        driver: None,
    })
}
