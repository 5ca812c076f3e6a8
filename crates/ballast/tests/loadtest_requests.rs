//! What `ballast loadtest` puts in its requests, as a real backend on loopback sees them: URLs
//! drawn by weight, hash-key values from the simulator's key model in a header, a cookie or a
//! query parameter, and connections from the source addresses of `--source-range`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One request as the backend read it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: BTreeMap<String, String>,
    peer: IpAddr,
}

/// A backend that records every request it answers.
struct RecordingBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingBackend {
    fn start() -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        let seen = seen2.clone();
                        std::thread::spawn(move || record(conn, peer.ip(), &seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        RecordingBackend { addr, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn record(conn: TcpStream, peer: IpAddr, seen: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        seen.lock().unwrap().push(Seen {
            target,
            headers,
            peer,
        });
        let reply = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Served-By: rec\r\n\r\nok\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn loadtest(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .arg("loadtest")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run ballast loadtest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn urls_are_drawn_by_weight_and_header_keys_follow_the_zipf_model() {
    let backend = RecordingBackend::start();
    let a = format!("http://{}/a=3", backend.addr);
    let b = format!("http://{}/b=1", backend.addr);
    let report = loadtest(&[
        "--url",
        &a,
        "--url",
        &b,
        "--key",
        "header:X-Tenant",
        "--key-cardinality",
        "10",
        "--key-skew",
        "zipf:1.1",
        "-n",
        "4000",
        "-c",
        "4",
    ]);
    let seen = backend.seen();
    assert_eq!(report["requests"].as_u64(), Some(seen.len() as u64));
    assert_eq!(seen.len(), 4000);
    let to_a = seen.iter().filter(|s| s.target == "/a").count() as f64 / 4000.0;
    assert!(
        (to_a - 0.75).abs() < 0.03,
        "/a took {to_a} at weight 3 of 4"
    );
    assert!(seen.iter().all(|s| s.target == "/a" || s.target == "/b"));
    let mut tenants: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        *tenants.entry(s.headers["x-tenant"].as_str()).or_insert(0) += 1;
    }
    let expected: BTreeSet<String> = (0..10).map(|k| format!("k{k}")).collect();
    assert_eq!(
        tenants
            .keys()
            .map(|k| k.to_string())
            .collect::<BTreeSet<_>>(),
        expected,
        "{tenants:?}"
    );
    // Zipf over 10 values with exponent 1.1: k0 takes 1/H(10, 1.1) of the requests.
    let h: f64 = (1..=10).map(|i| 1.0 / f64::from(i).powf(1.1)).sum();
    let k0 = tenants["k0"] as f64 / 4000.0;
    assert!((k0 - 1.0 / h).abs() < 0.03, "k0 {k0} against {}", 1.0 / h);
}

#[test]
fn keys_go_in_a_cookie_or_a_query_parameter() {
    let backend = RecordingBackend::start();
    let url = format!("http://{}/p?x=1", backend.addr);
    loadtest(&[
        &url,
        "--key",
        "cookie:sid",
        "--key-cardinality",
        "5",
        "-n",
        "200",
        "-c",
        "2",
    ]);
    let seen = backend.seen();
    assert_eq!(seen.len(), 200);
    for s in &seen {
        let cookie = &s.headers["cookie"];
        let value = cookie.strip_prefix("sid=k").expect("sid=kN");
        assert!(value.parse::<u32>().unwrap() < 5, "{cookie}");
        assert_eq!(s.target, "/p?x=1");
    }
    let backend = RecordingBackend::start();
    let url = format!("http://{}/p?x=1", backend.addr);
    loadtest(&[
        &url,
        "--key",
        "query:user",
        "--key-missing",
        "50%",
        "-n",
        "400",
        "-c",
        "2",
    ]);
    let seen = backend.seen();
    let with = seen
        .iter()
        .filter(|s| s.target.starts_with("/p?x=1&user=k"))
        .count();
    assert!(
        seen.iter()
            .all(|s| s.target == "/p?x=1" || s.target.starts_with("/p?x=1&user=k"))
    );
    assert!(
        (140..260).contains(&with),
        "{with} of 400 with half missing"
    );
}

#[test]
fn connections_come_from_the_source_range() {
    let backend = RecordingBackend::start();
    let url = format!("http://{}/", backend.addr);
    loadtest(&[
        &url,
        "--source-range",
        "127.0.0.2-127.0.0.5",
        "-c",
        "8",
        "-n",
        "400",
    ]);
    let peers: BTreeSet<String> = backend.seen().iter().map(|s| s.peer.to_string()).collect();
    let want: BTreeSet<String> = (2..=5).map(|i| format!("127.0.0.{i}")).collect();
    assert_eq!(peers, want);

    // An address the host does not have is refused before any load.
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args([
            "loadtest",
            &url,
            "--source-range",
            "192.0.2.1-192.0.2.3",
            "-n",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot bind 192.0.2.1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
