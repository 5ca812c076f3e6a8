//! The HTTP/1.1 fast path: a client connection served in its own task, request by request,
//! with the server's socket driven from the same task and the bytes passed on as they came.
//! No hyper, no channel between tasks, one timer per connection.
//!
//! It takes the plain requests `wire` picks (GET, HEAD and OPTIONS without a body, one Host,
//! origin form) and runs them through the same phases as the hyper path (`http`): route,
//! pick with ballast-core's balancer, queue, connect, forward, respond, release, with the same
//! limits, retries, passive health, metrics, access log and timeouts. The first request it
//! does not take (an HTTP/2 preface, a body, an Upgrade, a head it cannot read) hands the
//! connection, with the bytes already read, to the hyper path for the rest of its life.
//!
//! Timeouts hold as on the hyper path: `header_read` from the connection's start to its first
//! head and from the first byte of each later head, `idle` between requests, the pool's
//! `response_timeout` for the server's head, the listener's `request` deadline over the whole
//! exchange and its `send` timeout for a client that stops reading. The connection's one
//! alarm is moved only when a deadline comes before it, so most requests arm no timer.
//!
//! A pooled socket the server closed while it sat idle shows as a close before any byte of
//! the answer: the request goes again once, on a new connection to the same server, and the
//! server is not blamed.

use std::cell::RefCell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use ballast_core::config::Listener;

use crate::Shared;
use crate::headers::client_ip_among;
use crate::http::{ServedBy, count_retry, note_saturation, wait_for_slot};
use crate::runtime::{PoolRuntime, ServerRuntime, Snapshot};
use crate::send_timeout::Cut;
use crate::upstream::connect_stream;
use crate::wire::{self, Answer, ChunkedEnd, Framing, Parsed, ParsedResponse, ResponseHead};

/// A client buffer's first size; it grows to the listener's `max_header_bytes` for a head
/// that needs it.
const CLIENT_BUFFER: usize = 4 * 1024;

/// The buffer a server's answer is read into.
const SERVER_BUFFER: usize = 16 * 1024;

/// How long closing a connection may wait on the client.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Far enough to mean "no deadline" for a timer.
const NEVER: Duration = Duration::from_secs(30 * 24 * 3600);

thread_local! {
    /// Server buffers not in use on this thread: an exchange borrows one, so an idle
    /// keep-alive connection holds none.
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A server buffer borrowed for one exchange.
struct ServerBuffer(Vec<u8>);

impl ServerBuffer {
    fn take() -> Self {
        let spare = SPARE_BUFFERS.with(|s| s.borrow_mut().pop());
        Self(spare.unwrap_or_else(|| vec![0; SERVER_BUFFER]))
    }
}

impl Drop for ServerBuffer {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        SPARE_BUFFERS.with(|s| {
            let mut spare = s.borrow_mut();
            if spare.len() < 64 {
                spare.push(buf);
            }
        });
    }
}

/// How the fast path leaves a connection.
enum End {
    Close,
    /// The bytes from `start` on go to the hyper path, with the connection.
    Handover,
}

/// The client's side: its stream, what has been read of it, and the connection's alarm.
struct Client<I> {
    io: I,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    alarm: Pin<Box<Sleep>>,
}

/// Why a wait ended without its operation.
enum Interrupted {
    Expired,
    Stopped,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Client<I> {
    /// Reads more of the client's bytes, until `deadline` or, if `stopped` is given, until it
    /// completes (the listener is stopping).
    async fn fill<S: Future<Output = ()>>(
        &mut self,
        deadline: tokio::time::Instant,
        mut stopped: Option<Pin<&mut S>>,
    ) -> Result<std::io::Result<usize>, Interrupted> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let (io, room) = (&mut self.io, &mut self.buf[self.end..]);
        let read_or_stop = async {
            let stop = async {
                match stopped.as_mut() {
                    Some(s) => s.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                read = io.read(room) => Some(read),
                () = stop => None,
            }
        };
        match before(&mut self.alarm, deadline, read_or_stop).await {
            None => Err(Interrupted::Expired),
            Some(None) => Err(Interrupted::Stopped),
            Some(Some(read)) => {
                if let Ok(n) = read {
                    self.end += n;
                }
                Ok(read)
            }
        }
    }

    /// Writes all of `bytes`, each write within the send timeout and all before `deadline`.
    async fn send(
        &mut self,
        bytes: &[u8],
        deadline: tokio::time::Instant,
        send_timeout: Duration,
    ) -> Result<(), Failed> {
        let mut sent = 0;
        while sent < bytes.len() {
            // Most writes go through at once: the clock is read only for one that waits.
            let at_once = std::future::poll_fn(|cx| {
                Poll::Ready(Pin::new(&mut self.io).poll_write(cx, &bytes[sent..]))
            })
            .await;
            if let Poll::Ready(written) = at_once {
                match written {
                    Ok(0) | Err(_) => return Err(Failed::ClientGone),
                    Ok(n) => sent += n,
                }
                continue;
            }
            let by = match send_timeout.is_zero() {
                true => deadline,
                false => deadline.min(tokio::time::Instant::now() + send_timeout),
            };
            let Some(written) = before(&mut self.alarm, by, self.io.write(&bytes[sent..])).await
            else {
                return Err(Failed::Cut(match tokio::time::Instant::now() >= deadline {
                    true => Cut::RequestDeadline,
                    false => Cut::SendTimeout,
                }));
            };
            match written {
                Ok(0) | Err(_) => return Err(Failed::ClientGone),
                Ok(n) => sent += n,
            }
        }
        Ok(())
    }
}

/// Why an exchange stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// The response in progress was cut (send timeout or request deadline): the client's
    /// connection closes.
    Cut(Cut),
    ClientGone,
    /// The server broke off its answer or sent a body that is not what its head said: the
    /// client's connection closes, the only way left to tell it.
    ServerBroke,
}

/// What an exchange leaves the connection as.
enum Outcome {
    KeepAlive,
    Close,
}

/// Serves a client connection on the fast path, handing it to the hyper path at the first
/// request the fast path does not take.
pub(crate) async fn serve<I>(
    shared: Arc<Shared>,
    name: String,
    spec: Listener,
    io: I,
    peer: SocketAddr,
    secure: bool,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut client = Client {
        io,
        buf: vec![0; CLIENT_BUFFER],
        start: 0,
        end: 0,
        alarm: Box::pin(tokio::time::sleep(NEVER)),
    };
    match requests(&shared, &name, &spec, &mut client, peer, secure, &stop).await {
        End::Close => {
            // Bounded: over TLS the close_notify is a write, and a client that stopped
            // reading (cut at the send timeout) would hold the connection here.
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, client.io.shutdown()).await;
        }
        End::Handover => {
            let Client {
                io,
                buf,
                start,
                end,
                ..
            } = client;
            let read = buf[start..end].to_vec();
            crate::http::serve_connection(
                shared,
                name,
                spec,
                Rewind::new(read, io),
                peer,
                secure,
                stop,
            )
            .await;
        }
    }
}

/// Moves the alarm earlier if `deadline` comes before it: never later, so most requests arm
/// nothing.
fn arm(alarm: &mut Pin<Box<Sleep>>, deadline: tokio::time::Instant) {
    if alarm.deadline() > deadline {
        alarm.as_mut().reset(deadline);
    }
}

/// Runs `work` until it completes, or None once `deadline` has passed, on the connection's
/// alarm (moved earlier only if `deadline` comes before it).
async fn before<F: Future>(
    alarm: &mut Pin<Box<Sleep>>,
    deadline: tokio::time::Instant,
    work: F,
) -> Option<F::Output> {
    arm(alarm, deadline);
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return Some(out),
            () = alarm.as_mut() => {
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                alarm.as_mut().reset(deadline);
            }
        }
    }
}

/// `bound` after `from`; a zero bound (the setting's "off") is no deadline.
fn after(from: tokio::time::Instant, bound: Duration) -> tokio::time::Instant {
    from + if bound.is_zero() { NEVER } else { bound }
}

/// The connection's requests, one after another.
async fn requests<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    name: &str,
    spec: &Listener,
    client: &mut Client<I>,
    peer: SocketAddr,
    secure: bool,
    stop: &watch::Receiver<bool>,
) -> End {
    let header_read = spec.timeouts.header_read();
    let idle = spec.timeouts.idle();
    let max_head = spec.max_header_bytes() as usize;
    let max_headers = (spec.max_headers() as usize).clamp(1, wire::MAX_HEADERS);
    let opened = tokio::time::Instant::now();
    let mut first = true;
    let mut last_end = opened;
    // When the first byte of the head being read arrived.
    let mut head_started: Option<tokio::time::Instant> = None;
    // One wait for the stop for the connection's life, not one per request: waiting on a
    // watch takes its lock to join and to leave. It is polled only between requests, and the
    // connection ends when it completes.
    let mut watcher = stop.clone();
    let stopped = async move {
        let _ = watcher.changed().await;
    };
    let mut stopped = std::pin::pin!(stopped);
    let downstream = Downstream {
        ip: peer.ip(),
        text: peer.ip().to_string(),
        secure,
    };
    let mut upstream_head = Vec::with_capacity(1024);
    let mut response_head = Vec::with_capacity(1024);
    let mut route: Option<Route> = None;
    loop {
        if client.end > client.start {
            // The running configuration's parts this connection uses, looked up again only
            // when a reload has swapped it. A listener or pool gone from it: the hyper path
            // answers that.
            let running = shared.snapshot.load();
            if route
                .as_ref()
                .is_none_or(|r| !Arc::ptr_eq(&r.snapshot, &running))
            {
                route = Route::new(Arc::clone(&running), name);
            }
            drop(running);
            let Some(route) = &route else {
                return End::Handover;
            };
            let mut storage =
                [const { MaybeUninit::<httparse::Header>::uninit() }; wire::MAX_HEADERS];
            let prepared = match wire::parse_request(
                &client.buf[client.start..client.end],
                &mut storage[..max_headers],
                max_head,
            ) {
                Parsed::Fast(head) => Some(prepare(
                    route,
                    &head,
                    &downstream,
                    shared,
                    &mut upstream_head,
                )),
                Parsed::Other => return End::Handover,
                Parsed::Partial if client.end - client.start >= max_head => return End::Handover,
                Parsed::Partial => None,
            };
            if let Some(prepared) = prepared {
                client.start += prepared.head_len;
                head_started = None;
                first = false;
                let mut ended = None;
                let outcome = exchange(
                    shared,
                    route,
                    name,
                    client,
                    &prepared,
                    &upstream_head,
                    &mut response_head,
                    &mut ended,
                )
                .await;
                last_end = tokio::time::Instant::from_std(ended.unwrap_or_else(Instant::now));
                match outcome {
                    Outcome::Close => return End::Close,
                    Outcome::KeepAlive if prepared.close || *stop.borrow() => return End::Close,
                    Outcome::KeepAlive => continue,
                }
            }
            // A partial head: room for the rest.
            if client.start == 0 && client.end == client.buf.len() {
                let grown = (client.buf.len() * 2).min(max_head.max(CLIENT_BUFFER) + 1);
                client.buf.resize(grown, 0);
            }
        }
        let between = client.end == client.start;
        if between && *stop.borrow() {
            return End::Close;
        }
        let (deadline, idle_wait) = match (first, between, head_started) {
            (true, _, _) => (after(opened, header_read), false),
            (false, true, _) => (after(last_end, idle), true),
            (false, false, Some(at)) => (after(at, header_read), false),
            // Bytes of a head that did not come whole: its clock starts now (the bytes have
            // just arrived), not at every read.
            (false, false, None) => {
                let at = *head_started.get_or_insert_with(tokio::time::Instant::now);
                (after(at, header_read), false)
            }
        };
        let read = client
            .fill(deadline, between.then_some(stopped.as_mut()))
            .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(Interrupted::Stopped) => return End::Close,
            Ok(Ok(_)) => {}
            Err(Interrupted::Expired) => {
                if !idle_wait {
                    shared.metrics.reject(name, "header_timeout");
                }
                return End::Close;
            }
        }
    }
}

/// The client's side as the server is told of it.
struct Downstream {
    ip: IpAddr,
    /// The address as text, written into every X-Forwarded-For.
    text: String,
    /// Arrived over TLS.
    secure: bool,
}

/// A request taken by the fast path, read off its head before the buffer moves on.
struct Prepared {
    method: wire::Method,
    close: bool,
    key: Option<u64>,
    client: IpAddr,
    /// The path, for the access log.
    logged_path: Option<String>,
    head_len: usize,
}

/// A head as the key extraction sees it.
struct KeyParts<'a, 'h, 'b> {
    client: IpAddr,
    head: &'a wire::RequestHead<'h, 'b>,
}

impl ballast_core::balance::RequestParts for KeyParts<'_, '_, '_> {
    fn client_ip(&self) -> Option<IpAddr> {
        Some(self.client)
    }
    fn path(&self) -> Option<&str> {
        Some(self.head.path())
    }
    fn query(&self) -> Option<&str> {
        self.head.query()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
}

/// What a connection's requests need from one running configuration: its listener's settings
/// and pool, looked up once.
struct Route {
    snapshot: Arc<Snapshot>,
    pool: Arc<PoolRuntime>,
    trusted: Vec<(IpAddr, u8)>,
    request_timeout: Duration,
    send_timeout: Duration,
    /// The served-by header, when set and a valid header name.
    served_by: Option<String>,
}

impl Route {
    /// None when the listener or its pool is gone from `snapshot`.
    fn new(snapshot: Arc<Snapshot>, listener: &str) -> Option<Self> {
        let spec = snapshot.loaded.config.listeners.get(listener)?;
        let pool = Arc::clone(snapshot.pools.get(&spec.pool)?);
        let trusted = snapshot.trusted.get(listener).cloned().unwrap_or_default();
        let served_by = spec
            .served_by_header
            .clone()
            .filter(|n| http::HeaderName::from_bytes(n.as_bytes()).is_ok());
        let (request_timeout, send_timeout) = (spec.timeouts.request(), spec.timeouts.send());
        Some(Self {
            snapshot,
            pool,
            trusted,
            request_timeout,
            send_timeout,
            served_by,
        })
    }
}

/// Reads what the exchange needs off the head and writes the server's head into `upstream`.
fn prepare(
    route: &Route,
    head: &wire::RequestHead,
    peer: &Downstream,
    shared: &Shared,
    upstream: &mut Vec<u8>,
) -> Prepared {
    let client = client_ip_among(peer.ip, head.forwarded_for(), &route.trusted);
    let key = route.pool.keys.read(&KeyParts { client, head });
    wire::write_upstream_request(upstream, head, &peer.text, peer.secure);
    Prepared {
        method: head.method,
        close: head.close,
        key,
        client,
        logged_path: shared.access_log.as_ref().map(|_| head.path().to_string()),
        head_len: head.len,
    }
}

/// An answer of the proxy's own, as bytes.
fn canned(
    out: &mut Vec<u8>,
    status: StatusCode,
    message: &str,
    retry_after: bool,
    head_request: bool,
) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        message.len(),
        if retry_after {
            "retry-after: 1\r\n"
        } else {
            ""
        },
    );
    if !head_request {
        out.extend_from_slice(message.as_bytes());
    }
}

/// How an attempt on one server ended before its answer's head.
enum Attempt {
    Answered(ResponseHead, usize),
    /// A reused socket closed before any byte of the answer: it was stale.
    Stale,
    /// The server failed (reset, close, or an answer that is not HTTP).
    ServerFailed(&'static str),
    /// No answer within the pool's response timeout.
    ServerTimeout,
    RequestDeadline,
    ClientGone,
}

/// One request: pick, queue, connect, forward, respond, release. An answered exchange leaves
/// the time it ended in `ended` (read once, for its latency and the idle clock after it).
#[allow(clippy::too_many_arguments)]
async fn exchange<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    route: &Route,
    listener: &str,
    client: &mut Client<I>,
    prepared: &Prepared,
    upstream_head: &[u8],
    response_head: &mut Vec<u8>,
    ended: &mut Option<Instant>,
) -> Outcome {
    // The clock is read here and once at the end; what comes between reads it only when it
    // has waited (a queue, a new connection, a write that did not go through at once).
    let started = Instant::now();
    let send_timeout = route.send_timeout;
    let served_by_header = route.served_by.as_deref();
    let deadline = after(
        tokio::time::Instant::from_std(started),
        route.request_timeout,
    );
    let head_request = prepared.method == wire::Method::Head;
    let pool = &route.pool;
    let mut reached: Option<usize> = None;
    let mut buffer = ServerBuffer::take();

    // The proxy's own answers: written, logged, and the connection kept unless it broke.
    macro_rules! answer {
        ($status:expr, $cause:expr, $message:expr, $retry_after:expr) => {{
            if let Some(cause) = $cause {
                shared.metrics.reject(listener, cause);
            }
            canned(response_head, $status, $message, $retry_after, head_request);
            let sent = client.send(response_head, deadline, send_timeout).await;
            log(
                shared,
                listener,
                prepared,
                pool,
                reached,
                $status.as_u16(),
                started,
            );
            return match sent {
                Ok(()) => Outcome::KeepAlive,
                Err(_) => Outcome::Close,
            };
        }};
    }

    let mut attempts_left = pool.spec.retries.attempts;
    // Whether time has passed since `started` that counts: a queue, a connect, a retry.
    let mut waited = false;
    loop {
        // Phase pick.
        let now = match waited {
            true => shared.clock.now(),
            false => shared.clock.at(started),
        };
        let Some(index) = pool.pick_reporting(prepared.key, now, &shared.events) else {
            answer!(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("no_server"),
                "503 service unavailable: no server available\n",
                true
            );
        };
        let server = &pool.servers[index];

        // Phase queue.
        let slot = match server.try_acquire() {
            Some(slot) => slot,
            None => {
                note_saturation(shared, pool, server);
                waited = true;
                let queued = tokio::select! {
                    biased;
                    w = wait_for_slot(server) => Some(w),
                    () = tokio::time::sleep_until(deadline) => None,
                };
                match queued {
                    Some(Ok(slot)) => slot,
                    Some(Err(cause)) => answer!(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some(cause),
                        &format!("503 service unavailable: {cause}\n"),
                        true
                    ),
                    None => answer!(
                        StatusCode::GATEWAY_TIMEOUT,
                        Some("request_timeout"),
                        "504 gateway timeout: request timeout\n",
                        false
                    ),
                }
            }
        };
        reached = Some(index);
        // Dropped (given back) as soon as the server has failed, before any retry.
        let mut slot = Some(slot);

        // Phases connect and forward; a stale pooled socket is replaced once.
        let mut fresh_only = false;
        let next = loop {
            let pooled = match fresh_only {
                true => None,
                false => server
                    .state
                    .idle_streams
                    .checkout(pool.spec.idle_timeout(), started),
            };
            let reused = pooled.is_some();
            let mut socket = match pooled {
                Some(s) => s,
                None => {
                    waited = true;
                    match connect_stream(&server.spec.address, pool.spec.connect_timeout()).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(pool = %pool.name, server = %server.spec.name, "{e}");
                            drop(slot.take());
                            if server_failed(shared, pool, index, &mut attempts_left) {
                                break None;
                            }
                            answer!(
                                StatusCode::BAD_GATEWAY,
                                Some("connect_failed"),
                                "502 bad gateway: cannot connect to a server\n",
                                false
                            );
                        }
                    }
                }
            };
            let answer = Answer {
                head_request,
                client_closes: prepared.close,
                served_by: served_by_header.map(|h| (h, server.spec.name.as_str())),
            };
            let sent_at = match waited {
                true => tokio::time::Instant::now(),
                false => tokio::time::Instant::from_std(started),
            };
            let response_by = after(sent_at, pool.spec.response_timeout()).min(deadline);
            let attempt = forward(
                client,
                &mut socket,
                upstream_head,
                &mut buffer.0,
                &answer,
                response_head,
                response_by,
                deadline,
            )
            .await;
            match attempt {
                Attempt::Answered(head, filled) => break Some((socket, head, filled)),
                Attempt::Stale if reused => fresh_only = true,
                Attempt::Stale | Attempt::ServerFailed(_) => {
                    drop(slot.take());
                    let why = match attempt {
                        Attempt::ServerFailed(why) => why,
                        _ => "closed before answering",
                    };
                    tracing::warn!(pool = %pool.name, server = %server.spec.name, "forwarding failed: {why}");
                    if server_failed(shared, pool, index, &mut attempts_left) {
                        break None;
                    }
                    answer!(
                        StatusCode::BAD_GATEWAY,
                        None,
                        "502 bad gateway: the server failed\n",
                        false
                    );
                }
                Attempt::ServerTimeout => {
                    drop(slot.take());
                    crate::health::record_outcome(shared, pool, index, false);
                    answer!(
                        StatusCode::GATEWAY_TIMEOUT,
                        None,
                        "504 gateway timeout: the server did not answer in time\n",
                        false
                    );
                }
                Attempt::RequestDeadline => {
                    drop(slot.take());
                    answer!(
                        StatusCode::GATEWAY_TIMEOUT,
                        Some("request_timeout"),
                        "504 gateway timeout: request timeout\n",
                        false
                    );
                }
                Attempt::ClientGone => return Outcome::Close,
            }
        };
        let Some((socket, head, filled)) = next else {
            // A retry: back to pick.
            continue;
        };

        // Phase respond.
        let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
        crate::health::record_outcome(shared, pool, index, !status.is_server_error());
        server.metrics.count(status);
        let relayed = relay(
            client,
            socket,
            &mut slot,
            &head,
            &mut buffer.0,
            filled,
            response_head,
            deadline,
            send_timeout,
            server,
            started,
        )
        .await;
        // Phase release: the slot went with the server's last byte, or goes now, however the
        // body ended.
        drop(slot);
        let end = Instant::now();
        *ended = Some(end);
        let elapsed = end - started;
        server.metrics.latency.observe(elapsed.as_secs_f64());
        server.state.record_latency(elapsed);
        log(
            shared,
            listener,
            prepared,
            pool,
            reached,
            head.status,
            started,
        );
        return match relayed {
            Ok(()) if !head.client_closes => Outcome::KeepAlive,
            Ok(()) => Outcome::Close,
            Err(Failed::Cut(cut)) => {
                shared.metrics.reject(listener, cut.cause());
                Outcome::Close
            }
            Err(Failed::ClientGone | Failed::ServerBroke) => Outcome::Close,
        };
    }
}

/// Counts a failure against the server for passive health, and says whether the request may
/// go again (to a server picked afresh): attempts and the pool's retry budget allowing. Every
/// fast-path request is idempotent and has no body, so any may be sent again.
fn server_failed(
    shared: &Arc<Shared>,
    pool: &Arc<PoolRuntime>,
    index: usize,
    attempts_left: &mut u32,
) -> bool {
    crate::health::record_outcome(shared, pool, index, false);
    if *attempts_left > 0 && pool.allow_retry(shared.clock.now()) {
        *attempts_left -= 1;
        count_retry(shared, pool);
        return true;
    }
    false
}

/// Sends the request on `socket` and reads the answer's head, watching the client for a
/// close meanwhile (its further bytes, a pipelined request, are kept).
#[allow(clippy::too_many_arguments)]
async fn forward<I: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<I>,
    socket: &mut TcpStream,
    upstream_head: &[u8],
    buf: &mut [u8],
    answer: &Answer<'_>,
    response_head: &mut Vec<u8>,
    response_by: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Attempt {
    let expired = || match tokio::time::Instant::now() >= deadline {
        true => Attempt::RequestDeadline,
        false => Attempt::ServerTimeout,
    };
    let Some(written) = before(
        &mut client.alarm,
        response_by,
        socket.write_all(upstream_head),
    )
    .await
    else {
        return expired();
    };
    if written.is_err() {
        return Attempt::Stale;
    }
    let mut filled = 0;
    // Any byte of an answer (an interim one included) seen: a close is no longer staleness.
    let mut heard = false;
    loop {
        let (io, room) = (&mut client.io, &mut client.buf[client.end..]);
        let has_room = !room.is_empty();
        let server_or_client = async {
            tokio::select! {
                biased;
                r = socket.read(&mut buf[filled..]) => Ok(r),
                r = io.read(room), if has_room => Err(r),
            }
        };
        let read = match before(&mut client.alarm, response_by, server_or_client).await {
            None => return expired(),
            Some(Ok(read)) => read,
            Some(Err(Ok(0) | Err(_))) => return Attempt::ClientGone,
            Some(Err(Ok(n))) => {
                client.end += n;
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) if !heard => return Attempt::Stale,
            Ok(0) | Err(_) => return Attempt::ServerFailed("closed mid-head"),
            Ok(n) => {
                filled += n;
                heard = true;
            }
        }
        loop {
            match wire::parse_response(&buf[..filled], answer, response_head) {
                ParsedResponse::Final(head) => return Attempt::Answered(head, filled),
                ParsedResponse::Interim(n) => {
                    buf.copy_within(n..filled, 0);
                    filled -= n;
                }
                ParsedResponse::Partial if filled == buf.len() => {
                    return Attempt::ServerFailed("head too large");
                }
                ParsedResponse::Partial => break,
                ParsedResponse::Invalid => return Attempt::ServerFailed("not HTTP/1.1"),
            }
        }
    }
}

/// Where a body's bytes end in what was read, as the framing says.
struct BodyEnd {
    framing: Framing,
    left: u64,
    chunked: ChunkedEnd,
}

impl BodyEnd {
    fn new(framing: Framing) -> Self {
        Self {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunked: ChunkedEnd::default(),
        }
    }

    /// How many of `bytes` are the body's, and whether the body ends with them.
    fn take(&mut self, bytes: &[u8]) -> Result<(usize, bool), wire::BadChunk> {
        Ok(match self.framing {
            Framing::Empty => (0, true),
            Framing::Length(_) => {
                let n = (self.left as usize).min(bytes.len());
                self.left -= n as u64;
                (n, self.left == 0)
            }
            Framing::Chunked => match self.chunked.feed(bytes)? {
                Some(n) => (n, true),
                None => (bytes.len(), false),
            },
            Framing::UntilClose => (bytes.len(), false),
        })
    }
}

/// Passes the answer on to the client: the head with what came of the body, then the rest of
/// the body as it comes. When the server's part is over (its last byte read, before the
/// client is sent it, as the hyper path does) the slot is given back and a socket whose
/// exchange ended cleanly goes back to the idle pool: the next request a client sends on
/// seeing this answer finds the server's load as it is.
#[allow(clippy::too_many_arguments)]
async fn relay<I: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<I>,
    socket: TcpStream,
    slot: &mut Option<crate::runtime::Slot>,
    head: &ResponseHead,
    buf: &mut [u8],
    filled: usize,
    response_head: &mut Vec<u8>,
    deadline: tokio::time::Instant,
    send_timeout: Duration,
    server: &ServerRuntime,
    started: Instant,
) -> Result<(), Failed> {
    let mut socket = Some(socket);
    let mut server_done = |socket: &mut Option<TcpStream>, reusable: bool| {
        drop(slot.take());
        if let Some(socket) = socket.take()
            && reusable
            && !head.server_closes
        {
            server.state.idle_streams.checkin(socket, started);
        }
    };
    let mut body = BodyEnd::new(head.framing);
    let first = &buf[head.len..filled];
    let Ok((taken, mut done)) = body.take(first) else {
        return Err(Failed::ServerBroke);
    };
    // Bytes after the answer: the server is out of step, its socket is not reused.
    let mut reusable = taken == first.len();
    if done {
        server_done(&mut socket, reusable);
    }
    response_head.extend_from_slice(&first[..taken]);
    client.send(response_head, deadline, send_timeout).await?;
    while let Some(reading) = socket.as_mut().filter(|_| !done) {
        let Some(read) = before(&mut client.alarm, deadline, reading.read(buf)).await else {
            return Err(Failed::Cut(Cut::RequestDeadline));
        };
        let n = match read {
            Ok(0) if head.framing == Framing::UntilClose => {
                server_done(&mut socket, false);
                break;
            }
            Ok(0) | Err(_) => return Err(Failed::ServerBroke),
            Ok(n) => n,
        };
        let Ok((taken, ended)) = body.take(&buf[..n]) else {
            return Err(Failed::ServerBroke);
        };
        reusable &= taken == n;
        done = ended;
        if done {
            server_done(&mut socket, reusable);
        }
        client.send(&buf[..taken], deadline, send_timeout).await?;
    }
    Ok(())
}

fn log(
    shared: &Shared,
    listener: &str,
    prepared: &Prepared,
    pool: &PoolRuntime,
    reached: Option<usize>,
    status: u16,
    started: Instant,
) {
    let (Some(log), Some(path)) = (&shared.access_log, &prepared.logged_path) else {
        return;
    };
    let served = reached.map(|i| ServedBy {
        client: prepared.client,
        pool: pool.name.clone(),
        server: pool.servers[i].spec.name.clone(),
    });
    log.write(
        listener,
        prepared.client,
        &prepared.method.as_http(),
        path,
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        served.as_ref(),
        started.elapsed(),
    );
}

/// A stream whose first bytes were already read: they are read again first.
pub(crate) struct Rewind<I> {
    read: Vec<u8>,
    at: usize,
    inner: I,
}

impl<I> Rewind<I> {
    fn new(read: Vec<u8>, inner: I) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = (this.read.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
