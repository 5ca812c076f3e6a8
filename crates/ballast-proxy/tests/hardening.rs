//! `ballast serve` against hostile and unlucky clients (issue #12): a client's mistake is
//! never counted against a server, the listener timeouts act as named, and the access log
//! names the pool and server of every request that reached one.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_proxy::{Options, Proxy};
use common::{ConfigFile, backend, event_kinds, get, raw_server, servers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD: &str = "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n";

/// Passive ejection that would take the only server out after three failures.
const PASSIVE: &str = "[pools.app.passive]\nconsecutive_failures = 3\nbase_ejection = \"30s\"\nmax_ejected_percent = 100\n";

async fn start(config: &ConfigFile) -> Arc<Proxy> {
    Proxy::start(&config.path, Options { seed: Some(7) })
        .await
        .expect("proxy starts")
}

/// Reads from `stream` until a status line is complete (or the stream ends), within 5 s.
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
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Sends raw bytes on a fresh connection and returns the status the proxy answered.
async fn raw_status(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(bytes).await.ok()?;
    read_status(&mut stream).await
}

fn ejected(proxy: &Proxy) -> bool {
    proxy.status()["pools"][0]["servers"][0]["ejected"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_answer_400_and_do_not_eject_the_server() {
    let a = backend("a", Duration::ZERO).await;
    let text = format!("{HEAD}[pools.app]\n{PASSIVE}") + &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let malformed: [&[u8]; 4] = [
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
        b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n",
    ];
    let mut statuses = Vec::new();
    for bytes in malformed {
        statuses.push(raw_status(addr, bytes).await);
    }
    assert_eq!(
        statuses,
        vec![Some(400); 4],
        "a framing error in the client's body is the client's"
    );
    assert!(!ejected(&proxy), "{}", proxy.status());
    assert!(
        !event_kinds(&proxy).contains(&"server_ejected".to_string()),
        "{:?}",
        event_kinds(&proxy)
    );
    let good = get(addr, "/", &[]).await.unwrap();
    assert_eq!(good.status, 200, "{}", good.body);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_abort_or_stall_their_upload_do_not_eject_the_server() {
    let a = backend("a", Duration::ZERO).await;
    let text = format!("{HEAD}[pools.app]\nresponse_timeout = \"300ms\"\n{PASSIVE}")
        + &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    // Aborted mid-upload: a tenth of the body, then the client is gone.
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head).await.unwrap();
        s.write_all(&[b'x'; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!ejected(&proxy), "aborted uploads: {}", proxy.status());
    // Stalled mid-upload past the response timeout: the server waited on the client.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head).await.unwrap();
        s.write_all(&[b'x'; 100]).await.unwrap();
        let started = Instant::now();
        let status = read_status(&mut s).await;
        stalled.push((status, started.elapsed()));
    }
    for (status, took) in &stalled {
        assert_eq!(
            *status,
            Some(408),
            "a stalled upload is the client's timeout"
        );
        assert!(*took < Duration::from_secs(2), "cut at {took:?}");
    }
    assert!(!ejected(&proxy), "stalled uploads: {}", proxy.status());
    assert!(!event_kinds(&proxy).contains(&"server_ejected".to_string()));
    let good = get(addr, "/", &[]).await.unwrap();
    assert_eq!(good.status, 200, "{}", good.body);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_a_fully_sent_request_is_still_ejected() {
    // The control for the tests above: the server's own timeouts still count.
    let silent = raw_server(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    let text = format!(
        "{HEAD}[pools.app]\nresponse_timeout = \"200ms\"\n{PASSIVE}[[pools.app.servers]]\nname = \"silent\"\naddress = \"{silent}\"\n"
    );
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = common::request(addr, "POST", "/up", &[], "a whole body")
            .await
            .unwrap();
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, vec![504; 3]);
    assert!(ejected(&proxy), "{}", proxy.status());
    assert_eq!(get(addr, "/", &[]).await.unwrap().status, 503);
    proxy.drain(Duration::from_secs(1)).await;
}

/// A listener with a short header-read bound and a longer idle bound.
async fn timeouts_proxy(
    header_read: &str,
    idle: &str,
) -> (Arc<Proxy>, ConfigFile, common::Backend) {
    let a = backend("a", Duration::ZERO).await;
    let text = HEAD.replace(
        "pool = \"app\"\n",
        &format!(
            "pool = \"app\"\ntimeouts = {{ header_read = \"{header_read}\", idle = \"{idle}\" }}\n"
        ),
    ) + "[pools.app]\n"
        + &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    (proxy, config, a)
}

/// Waits (at most `bound`) for the proxy to close `stream`, answering nothing more than what
/// `read_status` already took; how long it took, or None if it stayed open.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// One keep-alive request on an open connection; the status and the whole body read.
async fn keep_alive_get(stream: &mut TcpStream) -> Option<u16> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // The demo backend answers with its name ("a\n"): read until the body is in.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.ends_with(b"\r\n\r\na\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    let text = String::from_utf8_lossy(&seen).into_owned();
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_cut_at_header_read_not_idle() {
    let (proxy, _config, _a) = timeouts_proxy("300ms", "5s").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(3))
        .await
        .expect("a silent connection is closed at header_read (300ms), not held for idle (5s)");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_lives_for_idle_and_a_new_head_gets_header_read() {
    let (proxy, _config, _a) = timeouts_proxy("300ms", "1200ms").await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut kept).await, Some(200));
    // Idle longer than header_read, shorter than idle: the connection is still there.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        keep_alive_get(&mut kept).await,
        Some(200),
        "a keep-alive connection is kept for idle (1200ms), not closed at header_read (300ms)"
    );
    // Then closed once idle has passed.
    let took = closed_within(&mut kept, Duration::from_secs(4))
        .await
        .expect("closed at idle");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(2500),
        "{took:?}"
    );

    // A next head that starts but never ends is cut at header_read from its first byte.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut partial).await, Some(200));
    tokio::time::sleep(Duration::from_millis(100)).await;
    partial.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let took = closed_within(&mut partial, Duration::from_secs(3))
        .await
        .expect("a stalled head is cut");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "a started head has header_read (300ms), not idle (1200ms): {took:?}"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_pool_and_server_for_every_request_that_reached_one() {
    let a = backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = format!(
        "[global]\naccess_log = \"{}\"\n{}[pools.app]\nresponse_timeout = \"5s\"\n",
        log.display(),
        HEAD.replace(
            "pool = \"app\"\n",
            "pool = \"app\"\ntimeouts = { request = \"400ms\" }\n"
        )
    ) + &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    assert_eq!(get(addr, "/ok", &[]).await.unwrap().status, 200);
    // A slow upload, cut by the request timeout while the server waits for the body.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    assert_eq!(read_status(&mut slow).await, Some(408));
    // A malformed body.
    assert_eq!(
        raw_status(
            addr,
            b"POST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"
        )
        .await,
        Some(400)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_path = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"))
            .clone()
    };
    for (path, status) in [("/ok", 200), ("/slow", 408), ("/bad", 400)] {
        let line = by_path(path);
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["pool"], "app", "{line}");
        assert_eq!(line["server"], "a", "{line}");
    }
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rebinding_the_same_address_still_works() {
    // The replacement socket binds while the old one serves: ballast's own sockets share.
    let echo = raw_server(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await;
    let a = backend("a", Duration::ZERO).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = |protocol: &str, server: SocketAddr| {
        format!(
            "[listeners.web]\naddress = \"127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\npool = \"app\"\n[pools.app]\n[[pools.app.servers]]\nname = \"s\"\naddress = \"{server}\"\n"
        )
    };
    let config = ConfigFile::new(&text("http", a.addr));
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    assert_eq!(get(addr, "/", &[]).await.unwrap().status, 200);
    config.rewrite(&text("tcp", echo));
    let outcome = proxy.reload().await;
    assert!(
        matches!(outcome, ballast_proxy::ReloadOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(proxy.listener_addr("web"), Some(addr));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut back))
        .await
        .expect("the new TCP listener answers")
        .unwrap();
    assert_eq!(&back, b"ping");
    proxy.drain(Duration::from_secs(1)).await;
}
