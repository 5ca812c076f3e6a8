//! The dashboard in the binary: what the guard inside `serve` hands its proxy each round (the
//! page and the state, served by the admin API at `/` and `/dashboard/state`), and the tiny
//! read-only HTTP server of `ballast watch --dashboard ADDR` (std's TcpListener, GET only,
//! a bounded number of connections, loopback unless told otherwise). The state itself is
//! `ballast_guard::dashboard`'s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_guard::dashboard::{Dashboard, DashboardState, PAGE};
use ballast_guard::watch::{Outcome, WatchOptions, Watcher};
use ballast_proxy::Proxy;

/// Connections served at once; more are answered 503 and closed (a page polls once a second,
/// so a handful of viewers need a handful).
const MAX_CONNECTIONS: usize = 32;
/// A request head longer than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The dashboard of the guard inside `serve`: its timeline is the proxy's own event log.
pub fn serve_dashboard(instance: &str, options: &WatchOptions) -> Dashboard {
    Dashboard::new("ballast", instance, options.window_ms).with_given_timeline()
}

/// One round of the guard inside `serve`: the dashboard takes the round and the proxy's
/// events, and the proxy gets the page and the new state.
pub fn update_serve(
    proxy: &Proxy,
    dashboard: &mut Dashboard,
    watcher: &Watcher,
    outcome: &Outcome,
) {
    dashboard.observe(watcher, outcome);
    dashboard.set_timeline(proxy.events());
    let state = DashboardState::new("ballast serve", unix_ms(), vec![dashboard.state(watcher)]);
    proxy.set_dashboard(PAGE, state.to_json());
}

/// `ballast watch --dashboard ADDR`: one [`Dashboard`] per watched load balancer, and the
/// server that shows them.
pub struct WatchDashboard {
    boards: Vec<Dashboard>,
    state: Arc<Mutex<Arc<String>>>,
    addr: SocketAddr,
}

impl WatchDashboard {
    /// Binds `addr` (`127.0.0.1:9900`, `:9900` or `9900` for loopback) and serves the page;
    /// `watched` are the (kind, instance) of each watched load balancer, in order.
    pub fn start(
        addr: &str,
        watched: &[(String, String)],
        window_ms: u64,
    ) -> Result<WatchDashboard, String> {
        let addr = parse_addr(addr)?;
        let listener = TcpListener::bind(addr).map_err(|e| {
            format!(
                "--dashboard {addr}: cannot listen there: {e}; pick a free port (or another \
                 address)"
            )
        })?;
        let addr = listener.local_addr().unwrap_or(addr);
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: --dashboard {addr} is not loopback: anyone who can reach it reads the \
                 dashboard (it needs no token; it shows pools, servers, alerts and the \
                 configuration diffs)"
            );
        }
        let dashboard = WatchDashboard {
            boards: watched
                .iter()
                .map(|(kind, instance)| Dashboard::new(kind, instance, window_ms))
                .collect(),
            state: Arc::new(Mutex::new(Arc::new(String::new()))),
            addr,
        };
        let state = Arc::clone(&dashboard.state);
        std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || accept(&listener, &state))
            .map_err(|e| format!("--dashboard: cannot start its thread: {e}"))?;
        Ok(dashboard)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One round of watched load balancer `index`: its outcome, or why it could not be read.
    pub fn round(
        &mut self,
        index: usize,
        watcher: &Watcher,
        outcome: Option<&Outcome>,
        failing: Option<&str>,
    ) {
        let Some(board) = self.boards.get_mut(index) else {
            return;
        };
        if let Some(outcome) = outcome {
            board.observe(watcher, outcome);
        }
        board.set_unreadable(failing);
    }

    /// Builds the state from every watcher (in the order given at start) and serves it.
    pub fn publish<'a>(&self, watchers: impl Iterator<Item = &'a Watcher>) {
        let instances = self
            .boards
            .iter()
            .zip(watchers)
            .map(|(board, watcher)| board.state(watcher))
            .collect();
        let json = DashboardState::new("ballast watch", unix_ms(), instances).to_json();
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(json);
    }
}

/// `127.0.0.1:9900`, `[::1]:9900`, `localhost:9900`; `:9900` and `9900` mean loopback.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!("--dashboard {text}: not an address; write it as 127.0.0.1:9900 (or :9900)")
        })
}

fn accept(listener: &TcpListener, state: &Arc<Mutex<Arc<String>>>) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            continue;
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                b"503: too many dashboard connections; try again\n",
                false,
            );
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (state, open) = (Arc::clone(state), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("dashboard-conn".into())
            .spawn(move || {
                handle(stream, &state);
                open.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            // The closure (and its count) went with the failed spawn.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One request on one connection, then close.
fn handle(mut stream: TcpStream, state: &Mutex<Arc<String>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
                b"431: request head too large\n",
                false,
            );
            return;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            b"405: the dashboard is read-only (GET / and GET /dashboard/state)\n",
            false,
        );
        return;
    }
    let _ = match path {
        "/" => respond(
            &mut stream,
            "200 OK",
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
            head_only,
        ),
        "/dashboard/state" => {
            let json = Arc::clone(&state.lock().unwrap_or_else(|p| p.into_inner()));
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                json.as_bytes(),
                head_only,
            )
        }
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"404: try / (the dashboard) or /dashboard/state (its JSON)\n",
            head_only,
        ),
    };
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        ballast_proxy::DASHBOARD_POLICY
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_loopback_and_a_bad_address_says_how_to_write_it() {
        assert_eq!(
            parse_addr("9900").unwrap(),
            "127.0.0.1:9900".parse().unwrap()
        );
        assert_eq!(
            parse_addr(":9900").unwrap(),
            "127.0.0.1:9900".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:9900").unwrap(),
            "[::1]:9900".parse().unwrap()
        );
        let e = parse_addr("nowhere").unwrap_err();
        assert!(e.contains("127.0.0.1:9900"), "{e}");
    }
}
