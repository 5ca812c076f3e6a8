//! Test harness: real HTTP backends on loopback, a minimal client, and configurations written
//! to temporary files. Every socket is on 127.0.0.1; every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A real backend on loopback (the same one `ballast demo` runs).
pub type Backend = ballast_proxy::demo_backend::DemoBackend;

/// Starts a backend on a free loopback port.
pub async fn backend(name: &str, delay: Duration) -> Backend {
    Backend::start(name, "127.0.0.1:0", delay)
        .await
        .expect("backend binds")
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

/// A raw TCP server on loopback that runs `handle` on every accepted connection, for servers
/// that misbehave in ways a real HTTP server will not (echo, trickle, die mid-request).
pub async fn raw_server<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// The proxy's recent events as JSON, oldest first.
pub fn events(proxy: &ballast_proxy::Proxy) -> Vec<serde_json::Value> {
    proxy
        .events()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

/// The kinds of the proxy's recent events (`config_applied`, `server_ejected`, ...), oldest first.
pub fn event_kinds(proxy: &ballast_proxy::Proxy) -> Vec<String> {
    events(proxy)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}
