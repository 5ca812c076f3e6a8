//! WebSocket through `ballast serve` (issue #12, "WebSocket and Upgrade"), against a real
//! WebSocket implementation on loopback (tokio-tungstenite) on both sides: messages both ways,
//! the close handshake, the tunnel held in flight on its server until it closes, the tunnel
//! idle timeout, a full server refusing an upgrade with 503, and a tunnel that outlives a
//! reload and is closed at the end of a drain.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use ballast_proxy::{Options, Proxy, ReloadOutcome};
use common::ConfigFile;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket server that greets every client with `welcome`, then echoes each message.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                if ws.send(Message::text("welcome")).await.is_err() {
                    return;
                }
                while let Some(Ok(message)) = ws.next().await {
                    let echo = matches!(message, Message::Text(_) | Message::Binary(_));
                    if matches!(message, Message::Close(_))
                        || (echo && ws.send(message).await.is_err())
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config_text(backend: SocketAddr, listener_extra: &str, server_extra: &str) -> String {
    format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n{listener_extra}\n\n[pools.app]\n\n[[pools.app.servers]]\nname = \"ws\"\naddress = \"{backend}\"\n{server_extra}\n"
    )
}

async fn start(text: &str) -> (ConfigFile, Arc<Proxy>, SocketAddr) {
    let config = ConfigFile::new(text);
    let proxy = Proxy::start(&config.path, Options { seed: Some(7) })
        .await
        .expect("proxy starts");
    let addr = proxy.listener_addr("web").unwrap();
    (config, proxy, addr)
}

async fn open(addr: SocketAddr) -> Result<Client, tungstenite::Error> {
    let url = format!("ws://{addr}/chat");
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("the upgrade is answered within 5 s")
    .map(|(ws, _)| ws)
}

/// The next text message, within 5 s.
async fn next_text(ws: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the tunnel is open")
            .expect("a well-formed message");
        if let Message::Text(t) = message {
            return t.to_string();
        }
    }
}

fn in_flight(proxy: &Proxy) -> u64 {
    proxy.status()["pools"][0]["servers"][0]["in_flight"]
        .as_u64()
        .expect("in_flight in /status")
}

/// Waits (up to 3 s) for the server's in-flight count to reach `want`.
async fn in_flight_becomes(proxy: &Proxy, want: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if in_flight(proxy) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Reads until the tunnel ends (a close frame, the end of the stream or an error), within
/// `bound`; returns how long it took, or None if it was still open.
async fn ends_within(ws: &mut Client, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(bound, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_pass_both_ways_and_the_tunnel_is_in_flight_until_it_closes() {
    let backend = echo_server().await;
    let (_config, proxy, addr) = start(&config_text(backend, "", "")).await;
    let mut ws = open(addr).await.expect("the upgrade goes through");
    assert_eq!(next_text(&mut ws).await, "welcome", "server to client");
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next_text(&mut ws).await, text, "client to server and back");
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    assert_eq!(in_flight(&proxy), 1, "the open tunnel holds its slot");
    ws.close(None).await.unwrap();
    assert!(
        ends_within(&mut ws, Duration::from_secs(3)).await.is_some(),
        "the close handshake passes"
    );
    assert!(
        in_flight_becomes(&proxy, 0).await,
        "the slot is given back when the tunnel closes: {}",
        proxy.status()
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_its_limit_refuses_a_new_upgrade_with_503() {
    let backend = echo_server().await;
    let (_config, proxy, addr) = start(&config_text(backend, "", "max_connections = 1")).await;
    let mut first = open(addr).await.expect("the first upgrade goes through");
    assert_eq!(next_text(&mut first).await, "welcome");
    match open(addr).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503, "a full server, as for any request")
        }
        Err(e) => panic!("expected a 503, got {e}"),
        Ok(_) => panic!("a second tunnel got past max_connections = 1"),
    }
    first.close(None).await.unwrap();
    assert!(
        ends_within(&mut first, Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(in_flight_becomes(&proxy, 0).await);
    let mut again = open(addr).await.expect("the slot is free again");
    assert_eq!(next_text(&mut again).await, "welcome");
    proxy.drain(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tunnel_is_closed_at_the_tunnel_timeout() {
    let backend = echo_server().await;
    let text = config_text(backend, "timeouts = { tunnel = \"400ms\" }", "");
    let (_config, proxy, addr) = start(&text).await;
    let mut ws = open(addr).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "welcome");
    // Traffic keeps it open past the timeout.
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        assert_eq!(next_text(&mut ws).await, format!("{i}"));
    }
    let took = ends_within(&mut ws, Duration::from_secs(3))
        .await
        .expect("a silent tunnel is closed");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "closed {took:?} after the last message, with a 400ms tunnel timeout"
    );
    assert!(in_flight_becomes(&proxy, 0).await, "{}", proxy.status());
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_outlives_a_reload_and_is_closed_at_the_end_of_the_drain() {
    let backend = echo_server().await;
    let (config, proxy, addr) = start(&config_text(backend, "", "")).await;
    let mut ws = open(addr).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "welcome");
    config.rewrite(&config_text(backend, "", "weight = 3"));
    assert!(matches!(
        proxy.reload().await,
        ReloadOutcome::Applied { .. }
    ));
    ws.send(Message::text("after the reload")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "after the reload");
    assert_eq!(in_flight(&proxy), 1);
    let started = Instant::now();
    let open_at_end = proxy.drain(Duration::from_millis(500)).await;
    let drained = started.elapsed();
    assert!(
        drained >= Duration::from_millis(450),
        "the drain waits for the open tunnel: {drained:?}"
    );
    assert!(open_at_end <= 1, "{open_at_end}");
    assert!(
        ends_within(&mut ws, Duration::from_secs(2)).await.is_some(),
        "the tunnel is closed at the drain's deadline"
    );
    assert!(in_flight_becomes(&proxy, 0).await);
}
