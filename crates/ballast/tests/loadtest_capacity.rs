//! `ballast loadtest --find-capacity`: against backends of a known capacity (a concurrency C
//! and a service time S serve C/S requests a second), the search finds that capacity within
//! 10% (SLO p99<100ms, errors<0.1%), and behind `ballast serve` it names the backend that saturated first.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::PeerGroup;
use common::{free_port, wait_for_port};

/// A backend that serves at most `concurrency` requests at once, each taking `service`: its
/// capacity is concurrency / service requests a second. Requests beyond it wait their turn.
struct LimitedBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl LimitedBackend {
    fn start(name: &str, concurrency: usize, service: Duration) -> LimitedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let slots = Arc::new((Mutex::new(concurrency), Condvar::new()));
        let (stop2, name) = (stop.clone(), name.to_string());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (stop3, slots, name) = (stop2.clone(), slots.clone(), name.clone());
                        std::thread::spawn(move || serve(conn, &name, service, &slots, &stop3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        LimitedBackend { addr, stop }
    }
}

impl Drop for LimitedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Keep-alive GETs: each waits for a slot, holds it for the service time, then answers.
fn serve(
    mut conn: TcpStream,
    name: &str,
    service: Duration,
    slots: &(Mutex<usize>, Condvar),
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = conn.set_nodelay(true);
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            {
                let (free, freed) = slots;
                let mut n = free.lock().unwrap();
                while *n == 0 {
                    n = freed.wait(n).unwrap();
                }
                *n -= 1;
            }
            std::thread::sleep(service);
            {
                let (free, freed) = slots;
                *free.lock().unwrap() += 1;
                freed.notify_one();
            }
            let body = format!("{name}\n");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Served-By: {name}\r\n\r\n{body}",
                body.len()
            );
            if conn.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// The SLO of both searches. Service times are 40 ms, long against the scheduling delays of a
/// loaded two-core machine (a 20 ms sleep there takes up to 30), which would otherwise lower
/// the backend's real capacity below C/S; 100 ms leaves room for a little queueing.
const SLO: &str = "p99<100ms,errors<0.1%";

/// Runs the search; its JSON result and its stderr (the progress lines).
fn find_capacity(url: &str, args: &[&str]) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["loadtest", url, "--find-capacity", "--slo", SLO])
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run ballast loadtest");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "{text}{stderr}");
    let json = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    (json, stderr)
}

#[test]
fn the_search_finds_a_backends_capacity_within_ten_percent() {
    // 8 at once, 40 ms each: 200 requests a second.
    let backend = LimitedBackend::start("limited", 8, Duration::from_millis(40));
    let began = Instant::now();
    let (result, progress) = find_capacity(
        &format!("http://{}/", backend.addr),
        &[
            "--start-rate",
            "120",
            "--step-duration",
            "1s",
            "--step-warmup",
            "200ms",
            "--precision",
            "5%",
        ],
    );
    let capacity = result["capacity"].as_f64().expect("a capacity");
    assert!(
        (capacity - 200.0).abs() <= 20.0,
        "capacity {capacity} req/s against 200: {result:#}\n{progress}"
    );
    let steps = result["steps"].as_array().unwrap();
    // Every step is on stderr as it ends, and each met-or-missed verdict follows its figures.
    assert_eq!(
        progress.lines().filter(|l| l.starts_with("step ")).count(),
        steps.len(),
        "{progress}"
    );
    let failing = result["first_failing_rate"]
        .as_f64()
        .expect("a failing rate");
    assert!(
        failing > capacity && failing <= capacity * 1.05 + 1e-9,
        "{result:#}"
    );
    // A failing step is failing for the SLO's reasons: its p99 or its errors are past it.
    for s in steps.iter().filter(|s| s["met_slo"] == false) {
        assert!(
            s["p99_ms"].as_f64().unwrap() >= 100.0 || s["error_ratio"].as_f64().unwrap() >= 0.001,
            "{s:#}"
        );
    }
    assert_eq!(result["saturated"]["backend"], "limited", "{result:#}");
    assert!(
        began.elapsed() < Duration::from_secs(25),
        "took {:?}",
        began.elapsed()
    );
}

#[test]
fn behind_ballast_serve_the_search_names_the_backend_that_saturated_first() {
    // Round-robin sends each backend half: the slow one (4 at once, 40 ms: 100/s) caps the
    // pool at 200/s while the fast one (64 at once, 2 ms) is far from its limit.
    let slow = LimitedBackend::start("slow", 4, Duration::from_millis(40));
    let fast = LimitedBackend::start("fast", 64, Duration::from_millis(2));
    let dir = tempfile::tempdir().unwrap();
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let file = dir.path().join("ballast.toml");
    let config = format!(
        "[listeners.web]\naddress = \"{listener}\"\npool = \"app\"\nserved_by_header = \"X-Served-By\"\n\n[pools.app]\nalgorithm = \"round-robin\"\n[[pools.app.servers]]\nname = \"slow\"\naddress = \"{}\"\n[[pools.app.servers]]\nname = \"fast\"\naddress = \"{}\"\n",
        slow.addr, fast.addr
    );
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    command
        .args(["serve", "--threads", "1", "-c"])
        .arg(&file)
        .env("RUST_LOG", "warn");
    let _serve = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    assert!(
        wait_for_port(listener, Duration::from_secs(10)),
        "serve did not start"
    );
    let config_path = file.display().to_string();
    let (result, progress) = find_capacity(
        &format!("http://{listener}/"),
        &[
            "--start-rate",
            "120",
            "--step-duration",
            "1s",
            "--step-warmup",
            "200ms",
            "--precision",
            "8%",
            "--config",
            &config_path,
        ],
    );
    let capacity = result["capacity"].as_f64().expect("a capacity");
    assert!(
        (capacity - 200.0).abs() <= 20.0,
        "capacity {capacity} req/s against 200: {result:#}\n{progress}"
    );
    let saturated = &result["saturated"];
    assert_eq!(saturated["backend"], "slow", "{result:#}");
    assert!(saturated["p99_ms"].as_f64().unwrap() >= 100.0, "{result:#}");
    assert!(
        (saturated["expected_share"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{result:#}"
    );
}

/// An open model the generator cannot hold says so: one connection to a backend of capacity
/// 20/s cannot send 100/s, so the 200 requests of a 2 s run go out over about 10 s and the
/// achieved rate is about 20/s, below its target (the rate once reported the schedule's own
/// 100/s whatever went out when), with the latency from the intended times showing the wait.
#[test]
fn an_open_model_the_generator_cannot_hold_reports_the_rate_it_sent() {
    let backend = LimitedBackend::start("slow", 1, Duration::from_millis(50));
    let url = format!("http://{}/", backend.addr);
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args([
            "loadtest",
            &url,
            "--rate",
            "100",
            "-d",
            "2s",
            "--max-connections",
            "1",
        ])
        .args(["--timeout", "30s", "--format", "json"])
        .output()
        .expect("run ballast loadtest");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let json: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let (rate, target) = (
        json["rate"].as_f64().unwrap(),
        json["target_rate"].as_f64().unwrap(),
    );
    assert_eq!(target, 100.0, "{json}");
    assert_eq!(json["requests"].as_u64(), Some(200), "{json}");
    assert!((10.0..40.0).contains(&rate), "achieved {rate}/s: {json}");
    assert!(json["seconds"].as_f64().unwrap() > 5.0, "{json}");
    assert!(
        json["latency_ms"]["p50"].as_f64().unwrap() > 1_000.0,
        "{json}"
    );
}
