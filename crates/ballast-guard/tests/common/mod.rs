//! What the guard's integration tests against real load balancers and monitoring share: peers
//! in their own process group, free loopback ports, tiny HTTP backends, a plain HTTP client.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether `binary` can run. A missing peer fails the test unless BALLAST_SKIP_PEERS is set,
/// so CI never skips in silence.
pub fn peer_available(binary: &str) -> bool {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("BALLAST_SKIP_PEERS").is_some(),
            "{binary} is not installed: run ./scripts/test.sh, which installs it (or set BALLAST_SKIP_PEERS=1 to skip knowingly)"
        );
    }
    found
}

/// A peer started in a process group of its own, stopped as a whole group on drop: an nginx
/// master killed alone orphans its workers, which keep listening.
pub struct PeerGroup(std::process::Child);

impl PeerGroup {
    pub fn spawn(mut command: Command) -> PeerGroup {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the peer");
        PeerGroup(child)
    }

    /// Like [`PeerGroup::spawn`], keeping the output the command was given (files the test
    /// reads back).
    pub fn spawn_with_output_of(mut command: Command) -> PeerGroup {
        use std::os::unix::process::CommandExt;
        PeerGroup(command.process_group(0).spawn().expect("start the peer"))
    }

    /// Like [`PeerGroup::spawn`], its output sent where the test says (files it reads back).
    pub fn spawn_with_output(mut command: Command, stdout: Stdio, stderr: Stdio) -> PeerGroup {
        use std::os::unix::process::CommandExt;
        PeerGroup(
            command
                .process_group(0)
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .expect("start the peer"),
        )
    }

    /// The group leader's process id (to signal it, as with SIGHUP for a reload).
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Whether the group leader has exited (a peer that could not bind its ports).
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_some()
    }
}

impl Drop for PeerGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL");
        let _ = self.0.wait();
    }
}

/// A loopback port free now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts on `addr`, up to `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A tiny HTTP/1.1 backend on loopback: answers every request `200` with `X-Served-By: NAME`
/// (after `delay`, when set), keep-alive, one thread per connection. Stops on drop.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Backend::start_with_delay(name, Duration::ZERO)
    }

    pub fn start_with_delay(name: &str, delay: Duration) -> Backend {
        Backend::start_with(name, delay, true)
    }

    /// A backend that answers without the `X-Served-By` header (an application that does not
    /// name itself): only the balancer's counters can attribute its responses.
    pub fn start_without_header(name: &str) -> Backend {
        Backend::start_with(name, Duration::ZERO, false)
    }

    fn start_with(name: &str, delay: Duration, names_itself: bool) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (stop2, served2, name2) = (stop.clone(), served.clone(), name.to_string());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (stop3, served3, name3) =
                            (stop2.clone(), served2.clone(), name2.clone());
                        std::thread::spawn(move || {
                            serve_connection(conn, &name3, delay, names_itself, &stop3, &served3)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            addr,
            name: name.to_string(),
            served,
            stop,
        }
    }
}

impl Backend {
    /// Stops listening: new connections to it are refused (a server that died).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_connection(
    conn: TcpStream,
    name: &str,
    delay: Duration,
    names_itself: bool,
    stop: &AtomicBool,
    served: &AtomicU64,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut content_length = 0usize;
        let mut close = false;
        let mut line = String::new();
        // Request line, then headers to the blank line.
        let mut got_request = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
            if line == "\r\n" || line == "\n" {
                if got_request {
                    break;
                }
                continue;
            }
            got_request = true;
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            close |= lower.starts_with("connection:") && lower.contains("close");
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        served.fetch_add(1, Ordering::Relaxed);
        let body = format!("{name}\n");
        let served_by = if names_itself {
            format!("X-Served-By: {name}\r\n")
        } else {
            String::new()
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{served_by}Connection: keep-alive\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// One plain HTTP/1.1 GET on a new connection: the status and the body (empty on error).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A real Alertmanager on loopback (Debian's `prometheus-alertmanager`) in its own process
/// group, with its configuration and storage in a tempdir; stopped on drop. Shared by the
/// guard's sink tests and the binary's end-to-end tests.
pub struct Alertmanager {
    pub addr: SocketAddr,
    _peer: PeerGroup,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one whose configuration is `routing` (its `route:` and `receivers:`), ready to
    /// answer when this returns.
    pub fn start_with(routing: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("a tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, routing).expect("write alertmanager.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new("prometheus-alertmanager");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // Otherwise it names itself by the machine's hostname in `externalURL`.
            .arg(format!("--web.external-url=http://{addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let peer = PeerGroup::spawn(command);
        let deadline = Instant::now() + Duration::from_secs(15);
        while http10_get(addr, "/-/ready").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "Alertmanager at {addr} never ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Alertmanager {
            addr,
            _peer: peer,
            _dir: dir,
        }
    }

    /// One that notifies nobody: the test reads what it holds through its API.
    pub fn start_holding() -> Alertmanager {
        Alertmanager::start_with(
            "route:\n  receiver: hold\n  group_by: ['instance', 'pool']\n  group_wait: 0s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hold\n",
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every alert `GET /api/v2/alerts` lists.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http10_get(self.addr, "/api/v2/alerts");
        assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
        serde_json::from_str(&body).expect("a JSON array of alerts")
    }
}

/// A GET in HTTP/1.0, so the answer is never chunked (Alertmanager chunks large ones in
/// HTTP/1.1, which `http_get` does not join): the status and the body.
pub fn http10_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    if conn
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A webhook receiver on loopback that keeps every POST's JSON body and answers 200: what an
/// Alertmanager webhook receiver sees. No packaged receiver exists to stand in for it.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a receiver");
        let addr = listener.local_addr().expect("its address");
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        // The thread ends with the test process; each connection is read with a timeout.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Some(body) = read_post(conn) {
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(body);
                }
            }
        });
        WebhookReceiver { addr, bodies }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every payload received so far, oldest first.
    pub fn payloads(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Reads one HTTP/1.1 POST (headers, then `Content-Length` bytes), answers 200 and closes.
fn read_post(mut conn: TcpStream) -> Option<serde_json::Value> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).ok()?;
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    serde_json::from_slice(&body).ok()
}
