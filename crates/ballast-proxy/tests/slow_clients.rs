//! Clients that hold server slots by being slow (issue #12, items 2 and 9): a client that stops
//! reading a response (HTTP/1.1, or HTTP/2 with a zero flow-control window) is cut at the send
//! timeout or at the request deadline and its server slot freed; the streams of one HTTP/2
//! connection take request places under the per-IP and listener caps.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ballast_proxy::{Options, Proxy};
use bytes::Bytes;
use common::{ConfigFile, raw_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Size of the response the slow clients ask for: far beyond every socket and hyper buffer.
const BIG: u64 = 256 * 1024 * 1024;

/// A backend that answers `/big` with [`BIG`] bytes as fast as it is taken, `/hang` never, and
/// anything else with a short body; it counts the connections that asked for `/hang`.
async fn backend(hanging: Arc<AtomicUsize>) -> SocketAddr {
    raw_server(move |mut s| {
        let hanging = Arc::clone(&hanging);
        async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&seen).into_owned();
                seen.clear();
                if head.starts_with("GET /big") {
                    let start = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                    if s.write_all(start.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut sent = 0;
                    while sent < BIG {
                        if s.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent += chunk.len() as u64;
                    }
                } else if head.starts_with("GET /hang") {
                    hanging.fetch_add(1, Ordering::SeqCst);
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                    }
                    return;
                } else if s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await
}

async fn start(text: &str) -> (Arc<Proxy>, ConfigFile) {
    let config = ConfigFile::new(text);
    let proxy = Proxy::start(&config.path, Options { seed: Some(7) })
        .await
        .expect("proxy starts");
    (proxy, config)
}

/// A listener `web` on a pool of one server with two slots and no queue: a third request while
/// both are held is refused at once.
fn two_slot_config(backend: SocketAddr, timeouts: &str) -> String {
    format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\ntimeouts = {{ {timeouts} }}\n\
         [pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"{backend}\"\n\
         max_connections = 2\nmax_queue = 0\n"
    )
}

/// The status of one `GET path` on a fresh connection from `source` (an address on loopback),
/// within 5 s.
async fn status_from(source: &str, addr: SocketAddr, path: &str) -> Option<u16> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{source}:0").parse().ok()?).ok()?;
    let mut stream = socket.connect(addr).await.ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    read_status(&mut stream).await
}

async fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let line = String::from_utf8_lossy(&seen).into_owned();
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// An HTTP/1.1 client that asks for `/big`, reads the status line and stops reading.
async fn stalled_h1_reader(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_status(&mut s).await, Some(200));
    s
}

/// An HTTP/2 client that opens its streams with a zero flow-control window and asks for
/// `/big`: the response head arrives, no byte of the body can.
async fn stalled_h2_reader(addr: SocketAddr) -> (h2::RecvStream, h2::client::SendRequest<Bytes>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/big"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("response head in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    (response.into_body(), client)
}

/// Polls `GET /small` until it is answered 200; the time from `since`, within `bound`.
async fn served_again_after(addr: SocketAddr, since: Instant, bound: Duration) -> Duration {
    loop {
        if status_from("127.0.0.1", addr, "/small").await == Some(200) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < bound,
            "the stalled readers still hold both slots after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both slots are held: a third request is refused while the readers are stalled.
async fn assert_slots_held(addr: SocketAddr) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_from("127.0.0.1", addr, "/small").await,
        Some(503),
        "the two stalled readers hold both slots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_readers_that_stop_reading_are_cut_at_the_send_timeout() {
    let server = backend(Arc::default()).await;
    let (proxy, _config) =
        start(&two_slot_config(server, "send = \"2s\", request = \"60s\"")).await;
    let addr = proxy.listener_addr("web").unwrap();
    let since = Instant::now();
    let _readers = [stalled_h1_reader(addr).await, stalled_h1_reader(addr).await];
    assert_slots_held(addr).await;
    let took = served_again_after(addr, since, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1800), "freed at {took:?}");
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_slow_readers_are_cut_at_the_request_deadline() {
    // The client takes a little now and then, so it is never idle for the send timeout: the
    // request deadline has to hold on its own.
    let server = backend(Arc::default()).await;
    let (proxy, _config) =
        start(&two_slot_config(server, "send = \"60s\", request = \"2s\"")).await;
    let addr = proxy.listener_addr("web").unwrap();
    let since = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(stalled_h1_reader(addr).await);
    }
    let trickle = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            for r in &mut readers {
                if r.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_slots_held(addr).await;
    let took = served_again_after(addr, since, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1800), "freed at {took:?}");
    trickle.abort();
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_with_a_zero_window_are_cut_at_the_send_timeout() {
    let server = backend(Arc::default()).await;
    let (proxy, _config) =
        start(&two_slot_config(server, "send = \"2s\", request = \"60s\"")).await;
    let addr = proxy.listener_addr("web").unwrap();
    let since = Instant::now();
    let mut readers = [stalled_h2_reader(addr).await, stalled_h2_reader(addr).await];
    assert_slots_held(addr).await;
    let took = served_again_after(addr, since, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1800), "freed at {took:?}");
    // The stalled stream is reset, its connection kept: it can still get a response head.
    let (body, client) = &mut readers[0];
    let ended = tokio::time::timeout(Duration::from_secs(2), body.data()).await;
    assert!(
        matches!(ended, Ok(Some(Err(_))) | Ok(None)),
        "the stalled stream ended"
    );
    let req = http::Request::get(format!("http://{addr}/small"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    proxy.drain(Duration::from_secs(1)).await;
}

/// What one HTTP/2 connection's streams to a hanging backend got: the statuses that came
/// back within a second, and the streams still held (kept open: dropping one resets it).
struct Streams {
    answered: Vec<u16>,
    _held: Vec<h2::client::ResponseFuture>,
    _client: h2::client::SendRequest<Bytes>,
}

/// Opens `n` streams asking for `/hang` on one HTTP/2 connection.
async fn h2_streams_to_a_hanging_backend(addr: SocketAddr, n: usize) -> Streams {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut pending = Vec::new();
    for _ in 0..n {
        client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}/hang"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        pending.push(response);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut answered = Vec::new();
    let mut held = Vec::new();
    for mut response in pending {
        match tokio::time::timeout(Duration::from_millis(5), &mut response).await {
            Ok(Ok(r)) => answered.push(r.status().as_u16()),
            Ok(Err(e)) => panic!("a stream failed: {e}"),
            Err(_) => held.push(response),
        }
    }
    Streams {
        answered,
        _held: held,
        _client: client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_count_against_the_per_ip_cap() {
    let hanging = Arc::new(AtomicUsize::new(0));
    let server = backend(Arc::clone(&hanging)).await;
    let text = format!(
        "[global]\nmax_connections_per_ip = 4\n\
         [listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n\
         [pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"{server}\"\n"
    );
    let (proxy, _config) = start(&text).await;
    let addr = proxy.listener_addr("web").unwrap();
    let streams = h2_streams_to_a_hanging_backend(addr, 20).await;
    assert_eq!(
        hanging.load(Ordering::SeqCst),
        4,
        "one connection's streams reach the server only as far as the per-IP cap"
    );
    assert_eq!(
        streams.answered,
        vec![503; 16],
        "the streams beyond the cap are refused"
    );
    // Another client is served, and this one is at its cap.
    assert_eq!(status_from("127.0.0.2", addr, "/small").await, Some(200));
    assert_eq!(status_from("127.0.0.1", addr, "/small").await, Some(503));
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_count_against_the_listener_cap_and_others_are_served() {
    let hanging = Arc::new(AtomicUsize::new(0));
    let server = backend(Arc::clone(&hanging)).await;
    let text = format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\nmax_connections = 6\n\
         max_concurrent_streams = 50\n\
         [listeners.other]\naddress = \"127.0.0.3:0\"\npool = \"app\"\n\
         [pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"{server}\"\n"
    );
    let (proxy, _config) = start(&text).await;
    let addr = proxy.listener_addr("web").unwrap();
    let streams = h2_streams_to_a_hanging_backend(addr, 30).await;
    assert_eq!(
        hanging.load(Ordering::SeqCst),
        6,
        "one connection's streams reach the server only as far as the listener cap"
    );
    assert_eq!(streams.answered, vec![503; 24]);
    let other = proxy.listener_addr("other").unwrap();
    assert_eq!(status_from("127.0.0.1", other, "/small").await, Some(200));
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_is_what_an_http2_client_is_told() {
    let server = backend(Arc::default()).await;
    for (setting, expected) in [("", 100), ("max_concurrent_streams = 7\n", 7)] {
        let text = format!(
            "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n{setting}\
             [pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"{server}\"\n"
        );
        let (proxy, _config) = start(&text).await;
        let addr = proxy.listener_addr("web").unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
        // The server's settings arrive with its first frames; a request makes sure they did.
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}/small"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let driven = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                r = response => r.map(|r| r.status().as_u16()).ok(),
                _ = &mut conn => None,
            }
        })
        .await
        .ok()
        .flatten();
        assert_eq!(driven, Some(200));
        assert_eq!(conn.max_concurrent_send_streams(), expected, "{setting}");
        proxy.drain(Duration::from_secs(1)).await;
    }
}
