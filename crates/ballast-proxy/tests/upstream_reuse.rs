//! Pooled upstream connections: one that stays open carries the next request, and one the
//! server closed while it sat idle is noticed when taken (a new connection is opened; the
//! request is neither failed, nor retried, nor counted against the server). Whoever drives a
//! pooled connection's I/O (its own task, or the request using it) must keep both true.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ballast_proxy::{Options, Proxy};
use common::{ConfigFile, get, raw_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server answering `answers` keep-alive requests per connection, then closing it; counts
/// the connections it accepted.
async fn counting_server(answers: usize) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let accepted = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&accepted);
    let addr = raw_server(move |mut s| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut buf = vec![0u8; 8192];
            for _ in 0..answers {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(reply).await.is_err() {
                    return;
                }
            }
            // Closes the (idle, keep-alive) connection once its answers are given.
        }
    })
    .await;
    (addr, accepted)
}

async fn start(server: std::net::SocketAddr) -> (ConfigFile, Arc<Proxy>) {
    // No retries: a request sent on a dead pooled connection would surface as a 502.
    let text = format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n[admin]\naddress = \"127.0.0.1:0\"\n[pools.app]\nretries = {{ attempts = 0 }}\n[[pools.app.servers]]\nname = \"s\"\naddress = \"{server}\"\n"
    );
    let config = ConfigFile::new(&text);
    let proxy = Proxy::start(&config.path, Options { seed: Some(7) })
        .await
        .expect("proxy starts");
    (config, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_pooled_connection_carries_the_next_requests() {
    let (server, accepted) = counting_server(usize::MAX).await;
    let (_config, proxy) = start(server).await;
    let addr = proxy.listener_addr("web").unwrap();
    for i in 0..5 {
        let reply = get(addr, "/", &[]).await.unwrap();
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.body, "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "five requests in a row share one upstream connection"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_server_closed_is_replaced_not_failed() {
    let (server, accepted) = counting_server(1).await;
    let (_config, proxy) = start(server).await;
    let addr = proxy.listener_addr("web").unwrap();
    for i in 0..3 {
        let reply = get(addr, "/", &[]).await.unwrap();
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        // The server closes its side after the answer; the pooled connection sees it later.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "each request found the previous connection closed and opened its own"
    );
    let metrics = get(proxy.admin_addr().unwrap(), "/metrics", &[])
        .await
        .unwrap()
        .body;
    assert!(
        !metrics.contains("ballast_retries_total{pool=\"app\"} 1"),
        "no request was retried: {metrics}"
    );
    proxy.drain(Duration::from_secs(1)).await;
}
