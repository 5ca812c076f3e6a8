//! Test harness: real HTTP backends on loopback, a minimal client, and configurations written
//! to temporary files. Every socket is on 127.0.0.1; every wait is bounded.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A backend that answers with its name, after an optional delay. `/echo` answers with the
/// request headers it received, one `name: value` per line.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let (n, h) = (name.to_string(), Arc::clone(&hits));
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stopped.changed() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (n, h) = (n.clone(), Arc::clone(&h));
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (n, h) = (n.clone(), Arc::clone(&h));
                        async move {
                            let health_check = req
                                .headers()
                                .get("user-agent")
                                .is_some_and(|v| v == "ballast-health");
                            if !health_check {
                                h.fetch_add(1, Ordering::SeqCst);
                            }
                            let body = if req.uri().path() == "/echo" {
                                req.headers()
                                    .iter()
                                    .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
                                    .collect()
                            } else {
                                n.clone()
                            };
                            let _ = req.into_body().collect().await;
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut r = Response::new(Full::new(Bytes::from(body)));
                            r.headers_mut().insert("x-backend", n.parse().unwrap());
                            r.headers_mut()
                                .insert("keep-alive", "timeout=30".parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
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
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            stop,
        }
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

/// A response as the tests look at it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// One HTTP/1.1 request on a fresh connection, bounded by 10 s.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    request(addr, "GET", path, headers, "").await
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, String> {
    let work = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test.local");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "client timed out".to_string())?
}

/// Writes a configuration to a temporary file; the directory lives as long as the guard.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { dir, path }
    }

    pub fn rewrite(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

/// `[[pools.NAME.servers]]` entries for backends, with extra keys per server.
pub fn servers(pool: &str, backends: &[&Backend], extra: &str) -> String {
    backends
        .iter()
        .map(|b| {
            format!(
                "[[pools.{pool}.servers]]\nname = \"{}\"\naddress = \"{}\"\n{extra}\n",
                b.name, b.addr
            )
        })
        .collect()
}
