//! A small real HTTP server for demos and tests: answers with its name after a delay, and
//! `/echo` answers with the request headers it received. Health checks (User-Agent
//! `ballast-health`) are answered but not counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct DemoBackend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl DemoBackend {
    /// Starts on `bind` (use port 0 for any free port).
    pub async fn start(name: &str, bind: &str, delay: Duration) -> std::io::Result<DemoBackend> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(
            listener,
            name.to_string(),
            delay,
            Arc::clone(&hits),
            stopped,
        ));
        Ok(DemoBackend {
            name: name.to_string(),
            addr,
            hits,
            stop,
        })
    }

    /// Stops accepting and closes every connection: the server is dead.
    pub fn kill(&self) {
        let _ = self.stop.send(true);
    }

    /// Requests served, health checks not counted.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(
    listener: TcpListener,
    name: String,
    delay: Duration,
    hits: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stopped.changed() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let (name, hits) = (name.clone(), Arc::clone(&hits));
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (name, hits) = (name.clone(), Arc::clone(&hits));
                async move { Ok::<_, Infallible>(answer(req, &name, delay, &hits).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    name: &str,
    delay: Duration,
    hits: &AtomicU64,
) -> Response<Full<Bytes>> {
    let health_check = req
        .headers()
        .get("user-agent")
        .is_some_and(|v| v == "ballast-health");
    if !health_check {
        hits.fetch_add(1, Ordering::SeqCst);
    }
    let body = if req.uri().path() == "/echo" {
        req.headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
            .collect()
    } else {
        format!("{name}\n")
    };
    let _ = req.into_body().collect().await;
    if !delay.is_zero() && !health_check {
        tokio::time::sleep(delay).await;
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    if let Ok(v) = name.parse() {
        r.headers_mut().insert("x-backend", v);
    }
    r.headers_mut()
        .insert("keep-alive", http::HeaderValue::from_static("timeout=30"));
    r
}
