//! The HTTP data plane. A connection is *admitted* (global, listener and per-IP caps, else an
//! immediate 503), then served by hyper (HTTP/1.1 or h2c) under our own connection timeouts:
//! `header_read` from the connection's start to its first request head and from the first byte
//! of every later head, `idle` between keep-alive requests. Each request goes through named
//! phases:
//!
//! 1. **read**: refuse ambiguous framing (CL + TE: 400, seen by `framing`), Host faults
//!    (400) and CONNECT (405) (`request_rules`), and oversized bodies (413);
//! 2. **route**: the listener's pool in the running snapshot;
//! 3. **pick**: the pool's balancer (ballast-core) chooses, with the request's key;
//! 4. **queue**: a full server makes the request wait for a slot, bounded by `max_queue` and
//!    `queue_timeout` (else 503 with Retry-After);
//! 5. **connect**: an idle keep-alive connection or a new one; a failure goes back to *pick*
//!    while retry attempts and budget remain (the request has not been sent);
//! 6. **forward**: hop-by-hop headers out, X-Forwarded-For/Proto in, response timeout;
//! 7. **respond**: hop-by-hop headers out of the response, optional served-by header;
//! 8. **release**: at the end of the response body the slot is freed and the connection goes
//!    back to the idle pool.
//!
//! A WebSocket upgrade takes the same phases on a fresh upstream connection; its 101 hands
//! the connection over to a tunnel (`upgrade`) that holds the slot until it closes.
//!
//! A failed exchange counts against the server for passive ejection only when the client's
//! side was in order (`upload`): a malformed, aborted, oversized or stalled request body is
//! the client's failure (400, 413, 408).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use ballast_core::balance::RequestParts;
use ballast_core::config::Listener;
use ballast_core::event::EventKind;

use crate::Shared;
use crate::admission::{Admitted, accept_loop};
use crate::body::{Completion, TrackedBody};
use crate::framing::Watched;
use crate::headers::{X_FORWARDED_FOR, X_FORWARDED_PROTO, client_ip, strip_hop_by_hop};
use crate::request_rules;
use crate::runtime::{PoolRuntime, ServerRuntime};
use crate::send_timeout::{Cut, ResponseWatch, SendTimed, StreamExecutor, stream_watch};
use crate::streams::ConnectionStreams;
use crate::upgrade::{self, Handoff};
use crate::upload::{ClientFault, UploadBody, UploadProgress};
use crate::upstream::{ProxyBody, connect};

/// Seconds a client is told to wait before retrying a refused request.
const RETRY_AFTER_SECONDS: &str = "1";

/// A plain response with a text body.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// 503 with Retry-After: the answer to every overload, given at once.
fn overloaded(why: &str) -> Response<ProxyBody> {
    let mut r = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 service unavailable: {why}\n"),
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    r
}

/// Accepts connections on one listener until `stop` turns true, terminating TLS when the
/// listener has an acceptor.
pub async fn run_listener(
    shared: Arc<Shared>,
    name: String,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let serve = |admitted: Admitted| {
        let (shared, name, stop, tls) =
            (Arc::clone(&shared), name.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let Admitted {
                stream,
                peer,
                spec,
                permit,
            } = admitted;
            let gauge = shared
                .metrics
                .active_connections
                .get_or_create(&listener_labels(&name))
                .clone();
            gauge.inc();
            let _ = stream.set_nodelay(true);
            match tls {
                None => {
                    crate::fast::serve(
                        Arc::clone(&shared),
                        name.clone(),
                        spec,
                        stream,
                        peer,
                        false,
                        stop,
                    )
                    .await
                }
                Some(acceptor) => {
                    // The handshake shares the header-read bound: a client that stalls it holds
                    // a slot no longer than one that stalls its headers.
                    let bound = spec.timeouts.header_read();
                    let bound = if bound.is_zero() {
                        Duration::from_secs(10)
                    } else {
                        bound
                    };
                    match tokio::time::timeout(bound, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            // HTTP/2 chosen in the handshake goes to hyper; HTTP/1.1 takes the
                            // fast path.
                            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let (shared, name) = (Arc::clone(&shared), name.clone());
                            match h2 {
                                true => {
                                    serve_connection(
                                        shared, name, spec, tls_stream, peer, true, stop,
                                    )
                                    .await
                                }
                                false => {
                                    crate::fast::serve(
                                        shared, name, spec, tls_stream, peer, true, stop,
                                    )
                                    .await
                                }
                            }
                        }
                        _ => shared.metrics.reject(&name, "tls_handshake"),
                    }
                }
            }
            gauge.dec();
            drop(permit);
        });
    };
    let refuse = |stream, cause, spare: Option<crate::fd_reserve::Spare>| {
        tokio::spawn(async move {
            let stream = refuse_connection(stream, cause).await;
            match spare {
                Some(spare) => spare.close_into(stream),
                None => drop(stream),
            }
        });
    };
    accept_loop(&shared, &name, listener, stop.clone(), serve, refuse).await;
}

fn listener_labels(name: &str) -> crate::metrics::ListenerLabels {
    crate::metrics::ListenerLabels {
        listener: name.to_string(),
    }
}

/// Answers a connection over a cap with an immediate 503 and closes it. The request head is
/// read first (briefly, bounded) and the close lingers, because closing a socket with unread
/// data sends a reset that can destroy the 503 before the client reads it. The connection is
/// handed back for closing, into a spare descriptor when it took one.
async fn refuse_connection(mut stream: TcpStream, cause: &'static str) -> TcpStream {
    use tokio::io::AsyncReadExt;
    let body = format!("503 service unavailable: {cause}\n");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER_SECONDS}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Out of descriptors, each refusal holds one of a few spares: answer in a hurry, so the
    // clients queued behind it are answered too.
    let (head_wait, linger) = if cause == "out_of_descriptors" {
        (Duration::from_millis(50), Duration::from_millis(200))
    } else {
        (Duration::from_millis(200), Duration::from_secs(1))
    };
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(head_wait, async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(linger, async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Linger until the client closes, so our answer is not reset away.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    stream
}

/// Requests in progress on one client connection, how many have begun and when the last one
/// ended, for the connection's own timeouts.
struct Activity {
    active: AtomicU32,
    begun: AtomicU64,
    last_ms: AtomicU64,
    started: Instant,
}

/// Which of a connection's own timeouts ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No complete request head within `header_read`: the connection is closed.
    HeaderRead,
    /// No request for `idle` after the last one: the connection is shut down gracefully.
    Idle,
    /// The response in progress waited on the client past the send timeout, or outlived the
    /// request deadline: the connection is closed, which frees the server slot.
    Cut(Cut),
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// When the connection's current timeout runs out (milliseconds since it started) and
    /// which one it is; None while a request is in progress (the request timeout bounds it).
    /// `head_started` is when the head being read began to arrive.
    fn deadline(
        &self,
        head_started: Option<Instant>,
        header_read: Duration,
        idle: Duration,
    ) -> Option<(u64, Expiry)> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        if self.begun.load(Ordering::Acquire) == 0 {
            // The first request head, from the moment the connection was accepted.
            return (!header_read.is_zero()).then(|| (ms(header_read), Expiry::HeaderRead));
        }
        if let Some(at) = head_started
            && !header_read.is_zero()
        {
            let began = ms(at.saturating_duration_since(self.started));
            return Some((began + ms(header_read), Expiry::HeaderRead));
        }
        (!idle.is_zero()).then(|| {
            (
                self.last_ms.load(Ordering::Acquire) + ms(idle),
                Expiry::Idle,
            )
        })
    }
}

struct ActiveRequest<'a>(&'a Activity);

impl<'a> ActiveRequest<'a> {
    fn begin(a: &'a Activity) -> Self {
        a.active.fetch_add(1, Ordering::AcqRel);
        a.begun.fetch_add(1, Ordering::AcqRel);
        Self(a)
    }
}

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) async fn serve_connection<I>(
    shared: Arc<Shared>,
    name: String,
    spec: Listener,
    stream: I,
    peer: SocketAddr,
    secure: bool,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        active: AtomicU32::new(0),
        begun: AtomicU64::new(0),
        last_ms: AtomicU64::new(0),
        started: Instant::now(),
    });
    let mut builder = auto::Builder::new(StreamExecutor {
        shared: Arc::clone(&shared),
        listener: Arc::from(name.as_str()),
    });
    let header_read = spec.timeouts.header_read();
    // Over HTTP/1.1 one response at a time, watched by this connection's timer loop; over
    // HTTP/2 each stream has its own, watched in its task (StreamExecutor).
    let response_watch = Arc::new(ResponseWatch::default());
    let streams = Arc::new(ConnectionStreams::new(&shared, &name, peer.ip()));
    // hyper's own header-read timer runs from the end of the previous response, so it would
    // close keep-alive connections after `header_read` and never start for a client that
    // sends nothing (the HTTP/2 detection reads first): the bounds are ours, below.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(spec.max_header_bytes() as usize)
        .max_headers(spec.max_headers() as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(spec.max_concurrent_streams())
        .max_header_list_size(spec.max_header_bytes());
    let (stream, framing) = Watched::new(stream);
    let watch = Arc::clone(&framing);
    let handoff = Arc::new(Handoff::new(Arc::clone(&framing)));
    let service = {
        let activity = Arc::clone(&activity);
        let name = name.clone();
        let shared = Arc::clone(&shared);
        let response_watch = Arc::clone(&response_watch);
        let handoff = Arc::clone(&handoff);
        service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let name = name.clone();
            let activity = Arc::clone(&activity);
            let response_watch = Arc::clone(&response_watch);
            let streams = Arc::clone(&streams);
            let handoff = Arc::clone(&handoff);
            let multiplexed = req.version() >= http::Version::HTTP_2;
            let ambiguous = !multiplexed
                && framing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_verdict();
            async move {
                let _active = ActiveRequest::begin(&activity);
                let watch = multiplexed
                    .then(stream_watch)
                    .flatten()
                    .unwrap_or(response_watch);
                // One snapshot for the whole request: its listener's timeouts here, the rest
                // in `handle`.
                let snapshot = shared.snapshot.load_full();
                let spec = snapshot.loaded.config.listeners.get(name.as_str());
                let (request_timeout, send_timeout) = spec
                    .map_or((Duration::ZERO, Duration::ZERO), |l| {
                        (l.timeouts.request(), l.timeouts.send())
                    });
                watch.begin(request_timeout, send_timeout);
                let timed = |r: Response<ProxyBody>, watch, place| {
                    Ok::<_, Infallible>(r.map(|body| SendTimed::new(body, watch, place)))
                };
                let place = if multiplexed {
                    match streams.take(&shared) {
                        Ok(place) => Some(place),
                        Err(cause) => {
                            shared.metrics.reject(&name, cause);
                            return timed(overloaded(cause), watch, None);
                        }
                    }
                } else {
                    None
                };
                if ambiguous {
                    shared.metrics.reject(&name, "bad_request");
                    return timed(
                        text_response(
                            StatusCode::BAD_REQUEST,
                            "400 bad request: Content-Length with Transfer-Encoding\n",
                        ),
                        watch,
                        place,
                    );
                }
                timed(
                    handle(shared, &snapshot, &name, peer, secure, req, handoff).await,
                    watch,
                    place,
                )
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = spec.timeouts.idle();
    let mut closing = false;
    // One timer per connection, never re-armed per request: it fires at the deadline or after
    // `check_every`, whichever is first, and the deadline is recomputed then. Checking at least
    // every `header_read` finds a head that began between requests while its deadline (its
    // first byte plus `header_read`) is still ahead, so it is cut exactly then.
    let check_every = [
        header_read,
        idle,
        spec.timeouts.request(),
        spec.timeouts.send(),
    ]
    .into_iter()
    .filter(|d| !d.is_zero())
    .min()
    .unwrap_or(Duration::from_secs(3600))
    .as_millis() as u64;
    let next_check = || -> (tokio::time::Instant, Option<Expiry>) {
        let head_started = watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .head_started();
        let now = activity.now_ms();
        if response_watch.in_progress() {
            // The response's own bounds hold while it is being sent, not the connection's.
            let next = match response_watch.check() {
                Ok(cut) => return (tokio::time::Instant::now(), Some(Expiry::Cut(cut))),
                Err(at) => at.min(activity.started + Duration::from_millis(now + check_every)),
            };
            return (tokio::time::Instant::from_std(next), None);
        }
        let at_ms = match activity.deadline(head_started, header_read, idle) {
            Some((ms, why)) if ms <= now => return (tokio::time::Instant::now(), Some(why)),
            Some((ms, _)) => ms.min(now + check_every),
            None => now + check_every,
        };
        let at = activity.started + Duration::from_millis(at_ms);
        (tokio::time::Instant::from_std(at), None)
    };
    let timer = tokio::time::sleep_until(next_check().0);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            () = &mut timer => match next_check() {
                (_, Some(Expiry::Cut(cut))) => {
                    shared.metrics.reject(&name, cut.cause());
                    break;
                }
                // Shutting down: only the response in progress is still watched.
                (_, Some(_)) if closing => timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_millis(check_every)),
                (_, Some(Expiry::HeaderRead)) => {
                    // hyper would keep reading a head it has started: closing is ours.
                    shared.metrics.reject(&name, "header_timeout");
                    break;
                }
                (_, Some(Expiry::Idle)) => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                (at, None) => timer.as_mut().reset(at),
            },
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
    // An upgraded connection lives on as a tunnel in this task, keeping its admission permit.
    if let Some(tunnel) = handoff.take() {
        tunnel.await;
    }
}

/// A request as the key extraction sees it.
struct KeyParts<'a> {
    client: IpAddr,
    req: &'a http::request::Parts,
}

impl RequestParts for KeyParts<'_> {
    fn client_ip(&self) -> Option<IpAddr> {
        Some(self.client)
    }
    fn path(&self) -> Option<&str> {
        Some(self.req.uri.path())
    }
    fn query(&self) -> Option<&str> {
        self.req.uri.query()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request, bounded by the listener's request timeout.
async fn handle(
    shared: Arc<Shared>,
    snapshot: &crate::runtime::Snapshot,
    listener: &str,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
    handoff: Arc<Handoff>,
) -> Response<ProxyBody> {
    let Some(spec) = snapshot.loaded.config.listeners.get(listener) else {
        return overloaded("listener removed");
    };
    let started = Instant::now();
    let request_timeout = spec.timeouts.request();
    let logged = shared
        .access_log
        .as_ref()
        .map(|_| (req.method().clone(), req.uri().path().to_string()));
    let deadline =
        (!request_timeout.is_zero()).then(|| tokio::time::Instant::now() + request_timeout);
    let client = Downstream {
        peer,
        secure,
        deadline,
        started,
    };
    let trace = Trace {
        upload: Arc::default(),
        served_by: shared.access_log.as_ref().map(|_| Default::default()),
        handoff,
    };
    let work = proxy(&shared, listener, spec, snapshot, &client, &trace, req);
    let response = if request_timeout.is_zero() {
        work.await
    } else {
        match tokio::time::timeout(request_timeout, work).await {
            Ok(r) => r,
            Err(_) => match trace.upload.fault_at_timeout() {
                Some(fault) => client_fault(&shared, listener, fault),
                None => {
                    shared.metrics.reject(listener, "request_timeout");
                    text_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        "504 gateway timeout: request timeout\n",
                    )
                }
            },
        }
    };
    if let (Some(log), Some((method, path))) = (&shared.access_log, logged) {
        let served_by = trace.served_by.and_then(|s| s.into_inner().ok()).flatten();
        log.write(
            listener,
            served_by.as_ref().map_or(peer.ip(), |s| s.client),
            &method,
            &path,
            response.status(),
            served_by.as_ref(),
            started.elapsed(),
        );
    }
    response
}

/// What the request path leaves behind for its caller, which may have cut it short at the
/// request timeout: how far the client's body got, and (with an access log) the server the
/// request reached.
struct Trace {
    upload: Arc<UploadProgress>,
    served_by: Option<std::sync::Mutex<Option<ServedBy>>>,
    /// Where a request that is answered 101 leaves its tunnel for the connection's task.
    handoff: Arc<Handoff>,
}

impl Trace {
    fn reached(&self, client: IpAddr, pool: &PoolRuntime, server: &ServerRuntime) {
        if let Some(slot) = &self.served_by {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(ServedBy {
                client,
                pool: pool.name.clone(),
                server: server.spec.name.clone(),
            });
        }
    }
}

/// The answer to a client that failed its part of the exchange; the server is not blamed.
fn client_fault(shared: &Shared, listener: &str, fault: ClientFault) -> Response<ProxyBody> {
    match fault {
        ClientFault::BadBody => {
            shared.metrics.reject(listener, "bad_body");
            text_response(
                StatusCode::BAD_REQUEST,
                "400 bad request: the request body was malformed or cut short\n",
            )
        }
        ClientFault::TooLarge => {
            shared.metrics.reject(listener, "body_too_large");
            text_response(StatusCode::PAYLOAD_TOO_LARGE, "413 content too large\n")
        }
        ClientFault::Stalled => {
            shared.metrics.reject(listener, "body_timeout");
            text_response(
                StatusCode::REQUEST_TIMEOUT,
                "408 request timeout: the request body did not arrive in time\n",
            )
        }
    }
}

/// What is known about the client side of a request.
#[derive(Clone, Copy)]
struct Downstream {
    peer: SocketAddr,
    /// Arrived over TLS.
    secure: bool,
    /// When the whole request, response body included, must be done.
    deadline: Option<tokio::time::Instant>,
    /// When the request arrived, for the latency histogram.
    started: Instant,
}

/// Who asked and which server answered, for the access log.
pub struct ServedBy {
    /// The client address after trusted-proxy resolution.
    pub client: IpAddr,
    pub pool: String,
    pub server: String,
}

async fn proxy(
    shared: &Arc<Shared>,
    listener: &str,
    spec: &Listener,
    snapshot: &crate::runtime::Snapshot,
    downstream: &Downstream,
    trace: &Trace,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Downstream {
        peer,
        secure,
        deadline,
        started,
    } = *downstream;
    // Phase read.
    // (Content-Length with Transfer-Encoding was refused before this, by the framing watcher:
    // hyper has already dropped the Content-Length by the time the request reaches us.)
    if let Some(refused) = request_rules::refusal(req.method(), req.version(), req.headers()) {
        shared.metrics.reject(listener, refused.cause);
        let mut response = text_response(refused.status, refused.message);
        if refused.status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static(request_rules::ALLOWED_METHODS),
            );
        }
        return response;
    }
    let max_body = spec.max_body_bytes();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        shared.metrics.reject(listener, "body_too_large");
        return text_response(StatusCode::PAYLOAD_TOO_LARGE, "413 content too large\n");
    }

    // Phase route.
    let Some(pool) = snapshot.pools.get(&spec.pool).cloned() else {
        return overloaded("no such pool");
    };
    let (mut parts, body) = req.into_parts();
    let upgrade = upgrade::requested(&parts);
    let mut client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    let trusted = snapshot
        .trusted
        .get(listener)
        .map_or(&[][..], Vec::as_slice);
    let client = client_ip(peer.ip(), &parts.headers, trusted);
    let key = pool.keys.read(&KeyParts {
        client,
        req: &parts,
    });
    prepare_upstream_request(&mut parts, peer.ip(), secure);
    if let Some(protocol) = &upgrade {
        upgrade::restore_headers(&mut parts.headers, protocol.clone());
    }
    request_rules::frame_body(&mut parts.headers, hyper::body::Body::is_end_stream(&body));
    // A request that is idempotent and carries no body can be rebuilt and sent again if the
    // server fails after receiving it; any other request is sent once.
    let replayable = (parts.method.is_idempotent() && hyper::body::Body::is_end_stream(&body))
        .then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
    let upload = Arc::clone(&trace.upload);
    // A request without a body (most) sends an empty one: no size limit to watch, and no box
    // around the client's empty stream.
    let inner = match hyper::body::Body::is_end_stream(&body) {
        true => empty_body(),
        false => Limited::new(body, max_body as usize).boxed(),
    };
    let body: ProxyBody = UploadBody::new(inner, Arc::clone(&upload)).boxed();
    let mut request = Request::from_parts(parts, body);

    let mut attempts_left = pool.spec.retries.attempts;
    loop {
        // Phase pick.
        let now = shared.clock.now();
        let Some(index) = pool.pick_reporting(key, now, &shared.events) else {
            shared.metrics.reject(listener, "no_server");
            return overloaded("no server available");
        };
        let server = &pool.servers[index];

        // Phase queue.
        let slot = match server.try_acquire() {
            Some(slot) => slot,
            None => {
                note_saturation(shared, &pool, server);
                match wait_for_slot(server).await {
                    Ok(slot) => slot,
                    Err(cause) => {
                        shared.metrics.reject(listener, cause);
                        return overloaded(cause);
                    }
                }
            }
        };

        // Phase connect. The slot is ours from here; dropping it (any early exit, or this
        // future being dropped) gives it back.
        trace.reached(client, &pool, server);
        // An upgrade needs a connection of its own that hyper can hand over.
        let upgrading = upgrade.is_some();
        let pooled = match upgrading {
            true => None,
            false => server.state.idle.checkout(pool.spec.idle_timeout()).await,
        };
        let opened = |address, timeout| async move {
            match upgrading {
                true => upgrade::connect(address, timeout).await,
                false => connect(address, timeout).await,
            }
        };
        let mut conn = match pooled {
            Some(c) => c,
            None => match opened(&server.spec.address, pool.spec.connect_timeout()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(pool = %pool.name, server = %server.spec.name, "{e}");
                    drop(slot);
                    crate::health::record_outcome(shared, &pool, index, false);
                    if attempts_left > 0 && pool.allow_retry(now) {
                        attempts_left -= 1;
                        count_retry(shared, &pool);
                        continue;
                    }
                    shared.metrics.reject(listener, "connect_failed");
                    return text_response(
                        StatusCode::BAD_GATEWAY,
                        "502 bad gateway: cannot connect to a server\n",
                    );
                }
            },
        };

        // Phase forward.
        set_host(&mut request, &server.spec.address);
        let sent =
            tokio::time::timeout(pool.spec.response_timeout(), conn.try_send_request(request))
                .await;
        let response = match sent {
            Err(_) => {
                drop(slot);
                // A server waiting for a body the client does not send has not failed.
                if let Some(fault) = upload.fault_at_timeout() {
                    return client_fault(shared, listener, fault);
                }
                crate::health::record_outcome(shared, &pool, index, false);
                return text_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 gateway timeout: the server did not answer in time\n",
                );
            }
            Ok(Err(mut e)) => {
                drop(slot);
                match e.take_message() {
                    // Never sent (a reused connection that had closed): safe to try again.
                    Some(unsent) if attempts_left > 0 => {
                        attempts_left -= 1;
                        count_retry(shared, &pool);
                        request = unsent;
                        continue;
                    }
                    _ => {
                        let cause = e.into_error();
                        // The client's body failed (framing, abort, size): not the server.
                        if let Some(fault) = upload.fault() {
                            return client_fault(shared, listener, fault);
                        }
                        crate::health::record_outcome(shared, &pool, index, false);
                        tracing::warn!(pool = %pool.name, server = %server.spec.name, "forwarding failed: {cause}");
                        if let Some((method, uri, headers)) = &replayable
                            && attempts_left > 0
                            && pool.allow_retry(shared.clock.now())
                        {
                            attempts_left -= 1;
                            count_retry(shared, &pool);
                            let mut again = Request::new(empty_body());
                            *again.method_mut() = method.clone();
                            *again.uri_mut() = uri.clone();
                            *again.headers_mut() = headers.clone();
                            request = again;
                            continue;
                        }
                        return text_response(
                            StatusCode::BAD_GATEWAY,
                            "502 bad gateway: the server failed\n",
                        );
                    }
                }
            }
            Ok(Ok(r)) => r,
        };

        // Phase respond.
        let status = response.status();
        // A server answering a body the client broke off is judged on nothing.
        if upload.fault().is_none() {
            crate::health::record_outcome(shared, &pool, index, !status.is_server_error());
        }
        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = client_upgrade.take()
        {
            server.metrics.count(status);
            server
                .metrics
                .latency
                .observe(started.elapsed().as_secs_f64());
            server.state.record_latency(started.elapsed());
            let held = upgrade::Held {
                slot,
                conn,
                idle: spec.timeouts.tunnel(),
                pool: pool.name.clone(),
                server: server.spec.name.clone(),
            };
            return upgrade::switch(response, client, held, &trace.handoff, &shared.tunnels);
        }
        let (mut head, upstream_body) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        if let Some(name) = &spec.served_by_header
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&server.spec.name),
            )
        {
            head.headers.insert(name, value);
        }
        server.metrics.count(status);
        // Phase release, when the body ends.
        let latency = server.metrics.latency.clone();
        let state = Arc::clone(&server.state);
        let completion = Completion {
            state: slot.hand_over(),
            conn: Some(conn),
            on_end: Some(Box::new(move |_clean| {
                let elapsed = started.elapsed();
                latency.observe(elapsed.as_secs_f64());
                state.record_latency(elapsed);
            })),
        };
        let body = TrackedBody::new(upstream_body, completion, deadline).boxed();
        return Response::from_parts(head, body);
    }
}

pub(crate) fn count_retry(shared: &Shared, pool: &PoolRuntime) {
    shared
        .metrics
        .retries
        .get_or_create(&crate::metrics::PoolLabels {
            pool: pool.name.clone(),
        })
        .inc();
}

fn empty_body() -> ProxyBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Headers for the server: hop-by-hop out, X-Forwarded-For and -Proto in, origin-form URI.
fn prepare_upstream_request(parts: &mut http::request::Parts, peer: IpAddr, secure: bool) {
    let authority = request_rules::authority_host(&parts.uri);
    strip_hop_by_hop(&mut parts.headers);
    let forwarded = match parts
        .headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        parts.headers.insert(X_FORWARDED_FOR, v);
    }
    let proto = if secure { "https" } else { "http" };
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    // The URI's authority (absolute form, h2's :authority) wins over a Host header; servers
    // behind us speak HTTP/1.1 and read Host.
    if let Some(host) = authority {
        parts.headers.insert(HOST, host);
    }
    // An origin-form URI (nearly every HTTP/1.1 request) is already what the server gets.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if let Ok(uri) = path.parse::<Uri>() {
            parts.uri = uri;
        }
    }
    parts.version = http::Version::HTTP_11;
}

/// A request without any Host (HTTP/1.0 clients) gets the server's address.
fn set_host(request: &mut Request<ProxyBody>, address: &str) {
    if !request.headers().contains_key(HOST)
        && let Ok(v) = HeaderValue::from_str(address)
    {
        request.headers_mut().insert(HOST, v);
    }
}

/// Waits for a connection slot on a full server, within its queue bounds. The queue place is
/// a guard too: a request abandoned while waiting leaves the queue.
pub(crate) async fn wait_for_slot(
    server: &ServerRuntime,
) -> Result<crate::runtime::Slot, &'static str> {
    struct QueuePlace<'a>(&'a std::sync::atomic::AtomicU32);
    impl Drop for QueuePlace<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let state = &server.state;
    let max_queue = server.spec.max_queue;
    state
        .queued
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
            (q < max_queue).then_some(q + 1)
        })
        .map_err(|_| "queue_full")?;
    let _place = QueuePlace(&state.queued);
    let deadline = tokio::time::Instant::now() + server.spec.queue_timeout();
    loop {
        let notified = state.slot_freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(slot) = server.try_acquire() {
            return Ok(slot);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => return Err("queue_timeout"),
        }
    }
}

pub(crate) fn note_saturation(shared: &Shared, pool: &PoolRuntime, server: &ServerRuntime) {
    if !server.state.saturated.swap(true, Ordering::AcqRel) {
        shared.events.emit(EventKind::SaturationBegan {
            pool: pool.name.clone(),
            server: server.spec.name.clone(),
            limit: server.limit,
        });
    }
}
