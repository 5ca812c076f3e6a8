//! The HTTP/1.1 fast path against servers that frame their answers every way HTTP/1.1 allows
//! (length, chunked with trailers, until close, no body), clients that pipeline, switch to
//! requests the fast path hands to hyper, or leave while their server thinks, and a server
//! that breaks its chunked framing. Every server is a raw socket on loopback, so what the
//! client reads is compared with what the server wrote, byte for byte.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ballast_proxy::{Options, Proxy};
use common::{ConfigFile, raw_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one request head (and a Content-Length body) off a server's socket.
async fn read_request(s: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            while pending.len() < end + 4 + length {
                let n = s.read(&mut buf).await.ok().filter(|&n| n > 0)?;
                pending.extend_from_slice(&buf[..n]);
            }
            let whole = String::from_utf8_lossy(&pending[..end + 4 + length]).into_owned();
            pending.drain(..end + 4 + length);
            return Some(whole);
        }
        let n = s.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    }
}

/// A server that answers every request with `reply(request)` and counts its connections.
async fn scripted(reply: fn(&str) -> Vec<u8>, close_after: bool) -> (SocketAddr, Arc<AtomicU32>) {
    let accepted = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&accepted);
    let addr = raw_server(move |mut s| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut pending = Vec::new();
            while let Some(request) = read_request(&mut s, &mut pending).await {
                if s.write_all(&reply(&request)).await.is_err() || close_after {
                    return;
                }
            }
        }
    })
    .await;
    (addr, accepted)
}

async fn start(server: SocketAddr, extra: &str) -> (ConfigFile, Arc<Proxy>) {
    let text = format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n[admin]\naddress = \"127.0.0.1:0\"\n[pools.app]\nretries = {{ attempts = 0 }}\n[[pools.app.servers]]\nname = \"s\"\naddress = \"{server}\"\n{extra}\n"
    );
    let config = ConfigFile::new(&text);
    let proxy = Proxy::start(&config.path, Options { seed: Some(3) })
        .await
        .expect("proxy starts");
    (config, proxy)
}

/// Reads from the client's socket until `want` bytes or the socket closes, within 5 s.
async fn read_some(s: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < want {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    (got, closed)
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_answers_pass_intact_and_both_connections_are_kept() {
    let (server, accepted) = scripted(|_| CHUNKED.to_vec(), false).await;
    let (_config, proxy) = start(server, "").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    let body_start = CHUNKED.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &CHUNKED[body_start..];
    for round in 0..3 {
        client
            .write_all(b"GET /c HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (got, closed) = read_some(&mut client, head.len() + body.len()).await;
        assert!(!closed, "round {round}: the client's connection stays open");
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("{head}{}", String::from_utf8_lossy(body)),
            "round {round}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one server connection carried all three"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_runs_until_the_server_closes_closes_the_client_too() {
    let (server, _) = scripted(|_| b"HTTP/1.1 200 OK\r\n\r\nall of it".to_vec(), true).await;
    let (_config, proxy) = start(server, "").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_some(&mut client, usize::MAX).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "the end of the body is the close: {text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nall of it"), "{text}");
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_no_content_answers_have_no_body_and_the_connection_goes_on() {
    let (server, accepted) = scripted(
        |request| match request.starts_with("HEAD") {
            true => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            false => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        },
        false,
    )
    .await;
    let (_config, proxy) = start(server, "").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let want = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let (got, closed) = read_some(&mut client, want.len()).await;
    assert!(!closed);
    assert_eq!(
        String::from_utf8_lossy(&got),
        want,
        "pipelined, answered in order"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_mid_connection_is_served_by_the_general_path_and_so_is_the_rest() {
    let (server, _) = scripted(
        |request| {
            let body = request.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            let method = request.split(' ').next().unwrap_or("").to_string();
            let text = format!("{method}:{body}");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
            .into_bytes()
        },
        false,
    )
    .await;
    let (_config, proxy) = start(server, "").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut all = String::new();
    for request in [
        &b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody",
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        client.write_all(request).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        all += &String::from_utf8_lossy(&buf[..n]);
    }
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 3, "{all}");
    assert!(
        all.contains("\r\n\r\nGET:") && all.contains("\r\n\r\nPOST:body"),
        "{all}"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_its_server_thinks_frees_the_servers_slot() {
    // The first connection's request hangs; every later one is answered at once.
    let first = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&first);
    let server = raw_server(move |mut s| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut pending = Vec::new();
            while read_request(&mut s, &mut pending).await.is_some() {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    let (_config, proxy) = start(server, "max_connections = 1\nmax_queue = 0").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut leaving = TcpStream::connect(addr).await.unwrap();
    leaving
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let in_flight = || proxy.status()["pools"][0]["servers"][0]["in_flight"].as_u64();
    assert_eq!(in_flight(), Some(1), "the hanging request holds the slot");
    drop(leaving);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while in_flight() != Some(0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        in_flight(),
        Some(0),
        "the slot was given back when the client left"
    );
    let reply = common::get(addr, "/", &[]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_breaks_its_chunked_framing_is_not_reused_and_the_client_is_closed() {
    let (server, accepted) = scripted(
        |_| b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX".to_vec(),
        false,
    )
    .await;
    let (_config, proxy) = start(server, "").await;
    let addr = proxy.listener_addr("web").unwrap();
    for _ in 0..2 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let (got, closed) = read_some(&mut client, usize::MAX).await;
        assert!(closed, "{}", String::from_utf8_lossy(&got));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the broken connection was not pooled"
    );
    proxy.drain(Duration::from_secs(1)).await;
}
