//! The request rules of `ballast serve` (issue #12 items 7 and 8): which Host a server sees
//! (RFC 9112 §3.2, RFC 9113 §8.3.1), what a client's fault is answered, that a GET or HEAD
//! with a body reaches the server with it, and that CONNECT is refused. The server behind the
//! proxy is a real HTTP server that reports what it received in response headers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use ballast_proxy::{Options, Proxy};
use common::ConfigFile;

/// A server that answers every request with what it saw: `x-seen-host` (every Host value,
/// joined by ` | `), `x-seen-method`, `x-seen-upgrade`, `x-seen-uri`, `x-seen-body`, and counts requests.
struct Echo {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let counter = Arc::clone(&counter);
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let hosts: Vec<String> = req
                            .headers()
                            .get_all("host")
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect();
                        let upgrade = req
                            .headers()
                            .get("upgrade")
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .unwrap_or_default();
                        let method = req.method().to_string();
                        let uri = req.uri().to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body = match body {
                            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                            Err(e) => format!("<body error: {e}>"),
                        };
                        let response = Response::builder()
                            .header("x-seen-host", hosts.join(" | "))
                            .header("x-seen-method", method)
                            .header("x-seen-upgrade", upgrade)
                            .header("x-seen-uri", uri)
                            .header("x-seen-body", body.clone())
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Echo { addr, requests }
}

async fn start(echo: &Echo) -> (ConfigFile, Arc<Proxy>, SocketAddr) {
    let text = format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n\n[pools.app]\n[pools.app.passive]\nconsecutive_failures = 1\nbase_ejection = \"30s\"\nmax_ejected_percent = 100\n\n[[pools.app.servers]]\nname = \"echo\"\naddress = \"{}\"\n",
        echo.addr
    );
    let config = ConfigFile::new(&text);
    let proxy = Proxy::start(&config.path, Options { seed: Some(7) })
        .await
        .expect("proxy starts");
    let addr = proxy.listener_addr("web").unwrap();
    (config, proxy, addr)
}

/// A raw response: status and headers (names lowercased).
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes on a fresh connection and reads the response head, within 5 s.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw { status, headers }
}

fn ejected(proxy: &Proxy) -> bool {
    proxy.status()["pools"][0]["servers"][0]["ejected"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_faults_are_the_clients_400_and_never_reach_or_eject_the_server() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let two = raw(
        addr,
        b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    )
    .await;
    assert_eq!(two.status, 400, "two Host headers (RFC 9112 §3.2)");
    let none = raw(addr, b"GET /x HTTP/1.1\r\nX-Other: 1\r\n\r\n").await;
    assert_eq!(none.status, 400, "HTTP/1.1 without Host (RFC 9112 §3.2)");
    let absolute_without_host = raw(addr, b"GET http://a.example/x HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        absolute_without_host.status, 400,
        "an HTTP/1.1 client must send Host even with an absolute URI"
    );
    assert_eq!(
        echo.requests.load(Ordering::SeqCst),
        0,
        "no faulty request reached the server"
    );
    // One failure would eject the server (consecutive_failures = 1): none counted.
    assert!(!ejected(&proxy), "{}", proxy.status());
    let good = raw(addr, b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    assert_eq!(good.status, 200);
    assert_eq!(good.header("x-seen-host"), Some("a.example"));
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_may_omit_host_and_the_server_gets_its_own_address() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let r = raw(addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-seen-host"),
        Some(echo.addr.to_string().as_str())
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_by_hop_list_naming_host_does_not_remove_it() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let r = raw(
        addr,
        b"GET /x HTTP/1.1\r\nHost: b.example\r\nConnection: host, x-gone\r\nX-Gone: 1\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-host"), Some("b.example"));
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_request_is_forwarded_with_the_uris_authority_as_host() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let r = raw(
        addr,
        b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-seen-host"),
        Some("a.example"),
        "RFC 9112 §3.2.2"
    );
    assert_eq!(
        r.header("x-seen-uri"),
        Some("/x?q=1"),
        "origin-form upstream"
    );
    let with_port = raw(
        addr,
        b"GET http://user@a.example:8080/y HTTP/1.1\r\nHost: b.example\r\n\r\n",
    )
    .await;
    assert_eq!(
        with_port.header("x-seen-host"),
        Some("a.example:8080"),
        "the authority's host and port, without userinfo"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_h2_the_authority_wins_over_a_host_header() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("http://a.example/x")
        .header("host", "b.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-seen-host"],
        "a.example",
        "RFC 9113 §8.3.1: :authority wins"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_or_head_with_a_body_reaches_the_server_with_it() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let chunked = raw(
        addr,
        b"GET /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(chunked.status, 200);
    assert_eq!(
        chunked.header("x-seen-body"),
        Some("hello world"),
        "chunked GET"
    );
    let sized = raw(
        addr,
        b"GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(sized.header("x-seen-body"), Some("hello"), "sized GET");
    let head = raw(
        addr,
        b"HEAD /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nping\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-seen-method"), Some("HEAD"));
    assert_eq!(head.header("x-seen-body"), Some("ping"), "chunked HEAD");
    let empty = raw(addr, b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        empty.header("x-seen-body"),
        Some(""),
        "a plain GET has none"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_with_405_and_allow() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    let r = raw(
        addr,
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405);
    let allow = r.header("allow").expect("405 names the allowed methods");
    assert!(
        allow.contains("GET") && !allow.contains("CONNECT"),
        "{allow}"
    );
    assert_eq!(echo.requests.load(Ordering::SeqCst), 0);
    assert!(!ejected(&proxy));
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_anything_but_websocket_is_not_passed_on() {
    let echo = echo_server().await;
    let (_config, proxy, addr) = start(&echo).await;
    // h2c through a proxy would take the client past the proxy's own HTTP/2 handling.
    let r = raw(
        addr,
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "served as a plain request");
    assert_eq!(r.header("x-seen-upgrade"), Some(""));
    proxy.drain(Duration::from_secs(1)).await;
}
