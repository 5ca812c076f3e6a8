//! Fidelity against the real thing: real HAProxy and nginx (Debian's packages) balance requests
//! from many source addresses in 127.0.0.0/8 with chosen paths and headers over four backends
//! on loopback; `ballast simulate --replay --trace` on the same configuration must make the
//! same choice for every request (deterministic algorithms), or the same shares within one
//! percentage point (random ones).
//!
//! The peers must be installed (`scripts/test.sh` installs them). Set BALLAST_SKIP_PEERS=1 to
//! skip on a machine without them; CI never sets it.

mod common;
use common::{PeerGroup, peer_available};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Four backends answering with their own address in the body.
struct Backends {
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
}

impl Backends {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut ports = Vec::new();
        for _ in 0..4 {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
            let port = listener.local_addr().unwrap().port();
            ports.push(port);
            let stop = stop.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    thread::spawn(move || serve(conn, port));
                }
            });
        }
        Self { ports, stop }
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in &self.ports {
            let _ = TcpStream::connect(("127.0.0.1", *p));
        }
    }
}

/// A keep-alive HTTP/1.1 responder: every request gets `127.0.0.1:<port>`.
fn serve(conn: TcpStream, port: u16) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    let body = format!("127.0.0.1:{port}");
    loop {
        let mut line = String::new();
        let mut length = 0usize;
        // Request line and headers.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let mut sink = vec![0u8; length];
        if reader.read_exact(&mut sink).is_err() {
            return;
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("peer did not listen on {port}");
}

/// One request as sent (and as written to the replay file).
#[derive(Clone)]
struct Req {
    client: Ipv4Addr,
    path: String,
    headers: Vec<(String, String)>,
}

/// Sends each request on a new connection from its own source address; returns the backend
/// address that answered each.
fn send_all(port: u16, reqs: &[Req]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket
                .bind(&SocketAddr::V4(SocketAddrV4::new(r.client, 0)).into())
                .expect("bind a 127.0.0.0/8 source address");
            socket
                .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
                .expect("connect to peer");
            let mut s: TcpStream = socket.into();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut head = format!(
                "GET {} HTTP/1.1\r\nHost: fidelity.test\r\nConnection: close\r\n",
                r.path
            );
            for (k, v) in &r.headers {
                head += &format!("{k}: {v}\r\n");
            }
            head += "\r\n";
            s.write_all(head.as_bytes()).unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).unwrap();
            assert!(
                response.starts_with("HTTP/1.1 200"),
                "peer answered: {response}"
            );
            response
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .collect()
}

/// The requests of one run: `n` of them from 127.0.0.0/8 addresses spread over /24s, with
/// paths, a user header and a query parameter drawn from small sets.
fn requests(n: usize) -> Vec<Req> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            let client = Ipv4Addr::new(
                127,
                (r % 7) as u8,
                ((r >> 8) % 13) as u8,
                1 + ((r >> 16) % 200) as u8,
            );
            let user = (r >> 24) % 37;
            Req {
                client,
                path: format!(
                    "/item/{}/view?user=u{user}&page={}",
                    (r >> 32) % 101,
                    (r >> 40) % 3
                ),
                headers: vec![("X-User".into(), format!("user-{user}"))],
            }
        })
        .collect()
}

fn write_replay(dir: &Path, reqs: &[Req]) -> PathBuf {
    let path = dir.join("replay.jsonl");
    let mut text = String::new();
    for (i, r) in reqs.iter().enumerate() {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let line = serde_json::json!({
            // Requests are sent one after another, so none overlaps: spaced a simulated
            // second apart, each finds every server idle, as it did for real.
            "t": i as f64,
            "client": r.client.to_string(),
            "path": r.path,
            "headers": headers,
        });
        text += &format!("{line}\n");
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `ballast simulate --replay --trace`: the backend address chosen for each request.
fn predict(config: &Path, replay: &Path, dir: &Path) -> Vec<String> {
    let trace = dir.join("trace.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["simulate", "-q", "--format", "json", "--replay"])
        .arg(replay)
        .arg("--trace")
        .arg(&trace)
        .arg(config)
        .output()
        .expect("run ballast simulate");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["address"].as_str().unwrap_or("-").to_string()
        })
        .collect()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ballast-fidelity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_haproxy(
    name: &str,
    backend: &str,
    weights: &[u32],
    reqs: &[Req],
) -> (Vec<String>, Vec<String>) {
    let dir = tempdir(name);
    let b = Backends::start();
    let port = free_port();
    let servers: String = b
        .ports
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (p, w))| format!("    server s{} 127.0.0.1:{p} weight {w}\n", i + 1))
        .collect();
    let cfg = format!(
        "global\n    nbthread 1\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend app\nbackend app\n{backend}{servers}"
    );
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, cfg).unwrap();
    let mut haproxy = Command::new("haproxy");
    haproxy.args(["-db", "-f"]).arg(&config);
    measure_and_predict(haproxy, &config, &dir, port, reqs)
}

fn run_nginx(
    name: &str,
    upstream: &str,
    weights: &[u32],
    reqs: &[Req],
) -> (Vec<String>, Vec<String>) {
    let dir = tempdir(name);
    let b = Backends::start();
    let port = free_port();
    let servers: String = b
        .ports
        .iter()
        .zip(weights)
        .map(|(p, w)| format!("        server 127.0.0.1:{p} weight={w};\n"))
        .collect();
    let cfg = format!(
        "worker_processes 1;\nerror_log stderr;\npid {pid};\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {tmp};\n    proxy_temp_path {tmp};\n    fastcgi_temp_path {tmp};\n    uwsgi_temp_path {tmp};\n    scgi_temp_path {tmp};\n    upstream app {{\n{upstream}{servers}    }}\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ proxy_pass http://app; }}\n    }}\n}}\n",
        pid = dir.join("nginx.pid").display(),
        tmp = dir.display(),
    );
    let config = dir.join("nginx.conf");
    std::fs::write(&config, cfg).unwrap();
    let mut nginx = Command::new("nginx");
    nginx
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&config)
        .args(["-g", "daemon off;"]);
    measure_and_predict(nginx, &config, &dir, port, reqs)
}

/// Starts the peer, sends the requests through it on `port`, stops it, then asks ballast for
/// its prediction on the same configuration: (real choices, predicted choices).
fn measure_and_predict(
    peer: Command,
    config: &Path,
    dir: &Path,
    port: u16,
    reqs: &[Req],
) -> (Vec<String>, Vec<String>) {
    let peer = PeerGroup::spawn(peer);
    wait_for(port);
    let real = send_all(port, reqs);
    drop(peer);
    let predicted = predict(config, &write_replay(dir, reqs), dir);
    (real, predicted)
}

/// Every choice identical, with the first difference shown.
fn assert_identical(what: &str, real: &[String], predicted: &[String]) {
    assert_eq!(real.len(), predicted.len(), "{what}: request counts differ");
    if let Some(i) = real.iter().zip(predicted).position(|(a, b)| a != b) {
        panic!(
            "{what}: request {i} went to {} but ballast predicted {} ({} of {} agree)",
            real[i],
            predicted[i],
            real.iter().zip(predicted).filter(|(a, b)| a == b).count(),
            real.len()
        );
    }
    // The run must exercise more than one server, or identical choices prove little.
    let mut distinct = real.to_vec();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 1,
        "{what}: every request went to {}",
        real[0]
    );
}

/// Shares per backend within one percentage point.
fn assert_shares(what: &str, real: &[String], predicted: &[String]) {
    let share =
        |v: &[String], k: &str| v.iter().filter(|x| *x == k).count() as f64 / v.len() as f64;
    let mut keys = real.to_vec();
    keys.sort();
    keys.dedup();
    for k in &keys {
        let (a, b) = (share(real, k), share(predicted, k));
        assert!(
            (a - b).abs() <= 0.01,
            "{what}: {k} served {:.2}% for real, {:.2}% predicted",
            a * 100.0,
            b * 100.0
        );
    }
}

const HAPROXY_DETERMINISTIC: &[(&str, &str, &[u32])] = &[
    ("roundrobin", "    balance roundrobin\n", &[5, 1, 3, 2]),
    ("static-rr", "    balance static-rr\n", &[2, 1, 3, 1]),
    ("source", "    balance source\n", &[1, 1, 1, 1]),
    (
        "source-consistent",
        "    balance source\n    hash-type consistent\n",
        &[1, 2, 1, 1],
    ),
    ("uri", "    balance uri\n", &[1, 1, 2, 1]),
    (
        "uri-whole-consistent-crc32",
        "    balance uri whole\n    hash-type consistent crc32\n",
        &[1, 1, 1, 1],
    ),
    (
        "hdr-djb2",
        "    balance hdr(X-User)\n    hash-type map-based djb2\n",
        &[3, 1, 1, 1],
    ),
    (
        "url_param-wt6-avalanche",
        "    balance url_param user\n    hash-type consistent wt6 avalanche\n",
        &[1, 1, 1, 2],
    ),
];

#[test]
fn haproxy_choices_are_predicted_request_by_request() {
    if !peer_available("haproxy") {
        return;
    }
    let reqs = requests(400);
    for (name, backend, weights) in HAPROXY_DETERMINISTIC {
        let (real, predicted) = run_haproxy(name, backend, weights, &reqs);
        assert_identical(&format!("HAProxy {name}"), &real, &predicted);
    }
}

const NGINX_DETERMINISTIC: &[(&str, &str, &[u32])] = &[
    ("round-robin", "", &[5, 1, 3, 2]),
    ("ip_hash", "        ip_hash;\n", &[1, 1, 1, 1]),
    ("hash", "        hash $request_uri;\n", &[1, 2, 1, 1]),
    (
        "hash-consistent",
        "        hash $request_uri consistent;\n",
        &[1, 1, 1, 1],
    ),
    (
        "hash-header-consistent",
        "        hash $http_x_user consistent;\n",
        &[2, 1, 1, 1],
    ),
];

#[test]
fn nginx_choices_are_predicted_request_by_request() {
    if !peer_available("nginx") {
        return;
    }
    let reqs = requests(400);
    for (name, upstream, weights) in NGINX_DETERMINISTIC {
        let (real, predicted) = run_nginx(name, upstream, weights, &reqs);
        assert_identical(&format!("nginx {name}"), &real, &predicted);
    }
}

#[test]
fn random_algorithms_agree_on_shares() {
    if !peer_available("haproxy") || !peer_available("nginx") {
        return;
    }
    // Enough requests that sampling noise (both sides) stays well inside one point.
    let reqs = requests(20_000);
    let (real, predicted) = run_haproxy("random", "    balance random\n", &[1, 2, 3, 4], &reqs);
    assert_shares("HAProxy random", &real, &predicted);
    let (real, predicted) = run_nginx("random-two", "        random two;\n", &[1, 2, 3, 4], &reqs);
    assert_shares("nginx random two", &real, &predicted);
}
