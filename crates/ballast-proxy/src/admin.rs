//! The admin API, on its own listener (loopback by default): `/healthz`, `/metrics`
//! (Prometheus text), `/status` (JSON), `/config` (the running configuration and its version),
//! `POST /reload`, and the guard's read-only dashboard (`/` and `/dashboard/state`). Changes need the configured bearer token; without a token configured,
//! changes over HTTP are refused (SIGHUP still reloads).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ballast_core::config::DEFAULT_ADMIN_MAX_CONNECTIONS;
use tokio::io::AsyncWriteExt;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::text_response;
use crate::upstream::ProxyBody;
use crate::{Proxy, ReloadOutcome};

pub async fn run(proxy: Arc<Proxy>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let open = Arc::new(AtomicU32::new(0));
    loop {
        let (mut stream, _) = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off as the data plane does, never
                    // spin (a spinning admin loop starves the data plane of its core).
                    tracing::warn!("admin API: accept failed: {e}");
                    tokio::time::sleep(crate::admission::ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let cap = proxy
            .shared
            .snapshot
            .load()
            .loaded
            .config
            .admin
            .as_ref()
            .map_or(DEFAULT_ADMIN_MAX_CONNECTIONS, |a| {
                a.effective_max_connections()
            });
        let taken = open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        });
        if taken.is_err() {
            // Idle admin connections must not eat the descriptors the data plane needs.
            proxy.shared.metrics.reject("admin", "admin_limit");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                    let _ = stream.write_all(ADMIN_FULL.as_bytes()).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        }
        let place = AdminPlace(Arc::clone(&open));
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let _place = place;
            let service = service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(route(&proxy, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The answer to an admin connection over `admin.max_connections`.
const ADMIN_FULL: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 50\r\n\r\n503 service unavailable: admin connections at cap\n";

/// One admin connection's place under the cap; given back when dropped.
struct AdminPlace(Arc<AtomicU32>);

impl Drop for AdminPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = text_response(status, format!("{value:#}\n"));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn route(proxy: &Arc<Proxy>, req: Request<Incoming>) -> Response<ProxyBody> {
    let shared = &proxy.shared;
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok\n"),
        (&Method::GET, "/" | "/dashboard/state") => dashboard(proxy, req.uri().path()),
        (&Method::GET, "/metrics") => {
            let mut r = text_response(
                StatusCode::OK,
                shared
                    .metrics
                    .render(&shared.snapshot.load(), &proxy.alerts()),
            );
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, "/status") => json_response(
            StatusCode::OK,
            &crate::status::status(
                &shared.snapshot.load(),
                shared.events.recent(),
                &proxy.alerts(),
            ),
        ),
        (&Method::GET, "/sample") => json_response(
            StatusCode::OK,
            &serde_json::to_value(proxy.sample()).unwrap_or_default(),
        ),
        (&Method::GET, "/config") => {
            // The text holds the admin token and key paths: only for who holds the token.
            if let Some(refusal) = refusal_unless_authorized(shared, &req, "read the configuration")
            {
                return refusal;
            }
            let s = shared.snapshot.load();
            json_response(
                StatusCode::OK,
                &json!({
                    "version": s.version,
                    "file": s.loaded.source.path.display().to_string(),
                    "text": s.loaded.source.text,
                }),
            )
        }
        (&Method::POST, "/reload") => {
            if let Some(refusal) = refusal_unless_authorized(
                shared,
                &req,
                "allow changes over HTTP (SIGHUP reloads without one)",
            ) {
                return refusal;
            }
            match proxy.reload().await {
                ReloadOutcome::Applied { version } => json_response(
                    StatusCode::OK,
                    &json!({"applied": true, "version": version}),
                ),
                ReloadOutcome::Unchanged { version } => json_response(
                    StatusCode::OK,
                    &json!({"applied": false, "unchanged": true, "version": version}),
                ),
                ReloadOutcome::Refused { reasons } => json_response(
                    StatusCode::CONFLICT,
                    &json!({"applied": false, "reasons": reasons}),
                ),
            }
        }
        (
            _,
            "/" | "/dashboard/state" | "/healthz" | "/metrics" | "/status" | "/sample" | "/config"
            | "/reload",
        ) => text_response(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n"),
        _ => text_response(
            StatusCode::NOT_FOUND,
            "404 not found: try / (the dashboard), /status, /sample, /metrics, /config, /healthz, \
             POST /reload\n",
        ),
    }
}

/// The dashboard's page or state. Both are readable without the token: they hold no secret
/// (no configuration text beyond the timeline's diffs, no token) and offer no action.
fn dashboard(proxy: &Arc<Proxy>, path: &str) -> Response<ProxyBody> {
    let current = proxy
        .shared
        .dashboard
        .lock()
        .map(|d| d.clone())
        .unwrap_or_default();
    let Some(current) = current else {
        return text_response(
            StatusCode::NOT_FOUND,
            "404 not found: the dashboard is drawn by the guard, which is not running yet or is \
             turned off (`[alerts] enabled = false`); /status has the same figures\n",
        );
    };
    let (body, content_type) = if path == "/" {
        (
            bytes::Bytes::from_static(current.page.as_bytes()),
            "text/html; charset=utf-8",
        )
    } else {
        (
            bytes::Bytes::from(current.state.as_bytes().to_vec()),
            "application/json",
        )
    };
    let mut r = text_response(StatusCode::OK, body);
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page is one file: nothing may load from elsewhere, and it may only poll its origin.
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_POLICY),
    );
    r
}

/// The dashboard's Content-Security-Policy: inline style and script of the page itself, fetches
/// to its own origin, nothing else.
pub const DASHBOARD_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// `None` when a request presents `Authorization: Bearer <admin.token>`; otherwise the
/// refusal to send (403 when no token is configured, 401 when it is wrong or missing).
fn refusal_unless_authorized(
    shared: &crate::Shared,
    req: &Request<Incoming>,
    to: &str,
) -> Option<Response<ProxyBody>> {
    let token = shared
        .snapshot
        .load()
        .loaded
        .config
        .admin
        .as_ref()
        .and_then(|a| a.token.clone());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Some(text_response(
            StatusCode::FORBIDDEN,
            format!("403 forbidden: set admin.token to {to}\n"),
        ));
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(token.as_str()) {
        return Some(text_response(
            StatusCode::UNAUTHORIZED,
            "401 unauthorized: send Authorization: Bearer <admin.token>\n",
        ));
    }
    None
}
