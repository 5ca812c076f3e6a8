//! A healthy run in real time on `ballast serve`: pools balanced by `round-robin`, `random`
//! and `power-of-two`, each at a low (≈20 req/s) and a high rate, with Poisson-ish traffic
//! (exponential gaps) from client threads, watched by a real `ballast watch ballast:ADMIN
//! --format json` alerting a real Alertmanager, and judged by the guard inside `serve` too.
//! Nothing may alert: no alert line from the watch, none listed by Alertmanager, none active in
//! serve's `/status`.
//!
//! The run lasts 25 s by default; `BALLAST_SOAK_SECONDS` sets another length (the soak in
//! `bench/soak-healthy.sh` runs 5 minutes). It prints
//! `GUARD-HEALTHY seconds=.. samples=.. requests=.. false_alerts=..` before asserting.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Alertmanager, Backend, free_port, http_get};
use common::{PeerGroup, peer_available};

const ALERTMANAGER: &str = "prometheus-alertmanager";
const TOKEN: &str = "healthy-guard-token-0123456789";

/// Each pool: its name, its algorithm (docs/configuration.md), its weights, and its traffic:
/// client threads and the mean gap each waits between requests.
const POOLS: &[(&str, &str, &[u32], usize, u64)] = &[
    ("rr-low", "round-robin", &[1, 1, 1], 1, 50),
    ("rr-high", "round-robin", &[1, 2, 1, 2], 4, 25),
    ("random-low", "random", &[1, 1, 1], 1, 50),
    ("random-high", "random", &[1, 1, 2, 2], 4, 25),
    ("p2c-low", "power-of-two", &[1, 1, 1], 1, 50),
    ("p2c-high", "power-of-two", &[1, 1, 1, 1], 4, 25),
];

/// Exponential gaps from a small deterministic generator (xorshift): Poisson arrivals per
/// client thread.
struct Gaps(u64);

impl Gaps {
    fn next(&mut self, mean: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let uniform = ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        mean.mul_f64(-uniform.ln()).min(mean * 8)
    }
}

/// Client threads sending GETs to one listener until `until`; answered counts by status.
struct Clients {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(
        addr: SocketAddr,
        threads: usize,
        mean_gap: Duration,
        until: Instant,
        seed: u64,
    ) -> Self {
        let (ok, failed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let threads = (0..threads)
            .map(|i| {
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                let mut gaps = Gaps(0x9e37_79b9_7f4a_7c15 ^ (seed * 131 + i as u64 + 1));
                std::thread::spawn(move || {
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        match http_get(addr, "/").0 {
                            200 => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        std::thread::sleep(gaps.next(mean_gap));
                    }
                })
            })
            .collect();
        Clients {
            ok,
            failed,
            stop,
            threads,
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[test]
fn healthy_random_power_of_two_and_round_robin_pools_raise_no_alert() {
    if !peer_available(ALERTMANAGER) {
        return;
    }
    let seconds: u64 = std::env::var("BALLAST_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let am = Alertmanager::start_holding();
    let dir = tempfile::tempdir().expect("a temp dir");
    let admin = addr();

    // One listener and pool per entry of POOLS, each server a named backend.
    let mut backends: Vec<Vec<Backend>> = Vec::new();
    let mut listeners = Vec::new();
    let mut text = format!("[admin]\naddress = \"{admin}\"\ntoken = \"{TOKEN}\"\n\n");
    for &(pool, algorithm, weights, _, _) in POOLS {
        let listener = addr();
        listeners.push(listener);
        text.push_str(&format!(
            "[listeners.{pool}]\naddress = \"{listener}\"\npool = \"{pool}\"\n\n\
             [pools.{pool}]\nalgorithm = \"{algorithm}\"\n"
        ));
        let servers: Vec<Backend> = (1..=weights.len())
            .map(|i| Backend::start(&format!("{pool}-{i}")))
            .collect();
        for (b, w) in servers.iter().zip(weights) {
            text.push_str(&format!(
                "[[pools.{pool}.servers]]\nname = \"{}\"\naddress = \"{}\"\nweight = {w}\n",
                b.name, b.addr
            ));
        }
        text.push('\n');
        backends.push(servers);
    }
    let file = dir.path().join("ballast.toml");
    std::fs::write(&file, &text).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ballast"));
    serve
        .args(["serve", "--threads", "1", "-c"])
        .arg(&file)
        .env("RUST_LOG", "warn");
    let _serve = PeerGroup::spawn_with_output(
        serve,
        Stdio::from(File::create(dir.path().join("serve.out")).unwrap()),
        Stdio::from(File::create(dir.path().join("serve.err")).unwrap()),
    );
    let serve_err = || std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(admin, "/healthz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ballast serve did not start: {}",
            serve_err()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let watch_out = dir.path().join("watch.out");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_ballast"));
    watch
        .arg("watch")
        .arg(format!("ballast:{admin}"))
        .args(["--alertmanager", &am.url(), "--format", "json"])
        .arg("--config")
        .arg(&file)
        .arg("--duration")
        .arg(format!("{}s", seconds + 1));
    let _watch = PeerGroup::spawn_with_output(
        watch,
        Stdio::from(File::create(&watch_out).unwrap()),
        Stdio::from(File::create(dir.path().join("watch.err")).unwrap()),
    );

    let until = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<Clients> = POOLS
        .iter()
        .zip(&listeners)
        .enumerate()
        .map(|(i, (&(_, _, _, threads, gap_ms), &listener))| {
            Clients::start(
                listener,
                threads,
                Duration::from_millis(gap_ms),
                until,
                i as u64,
            )
        })
        .collect();
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let answered: Vec<(u64, u64)> = clients
        .iter()
        .map(|c| {
            (
                c.ok.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
            )
        })
        .collect();
    drop(clients);

    let records: Vec<Value> = std::fs::read_to_string(&watch_out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let samples = records.iter().filter(|r| r["type"] == "sample").count();
    let watch_alerts: Vec<&Value> = records.iter().filter(|r| r["type"] == "alert").collect();
    let (_, status) = http_get(admin, "/status");
    let status: Value = serde_json::from_str(&status).expect("/status is JSON");
    let serve_alerts = status["alerts"].as_array().cloned().unwrap_or_default();
    let listed: Vec<Value> = am
        .alerts()
        .into_iter()
        .filter(|a| a["labels"]["instance"] == admin.to_string())
        .collect();
    let requests: u64 = answered.iter().map(|a| a.0).sum();
    println!(
        "GUARD-HEALTHY seconds={seconds} samples={samples} requests={requests} \
         false_alerts={} (watch {}, serve {}, alertmanager {}) answered={answered:?}",
        watch_alerts.len() + serve_alerts.len() + listed.len(),
        watch_alerts.len(),
        serve_alerts.len(),
        listed.len()
    );

    // The run was real: every pool answered at its rate, every server took requests, and the
    // watch judged a sample a second.
    for (&(pool, _, _, threads, gap_ms), &(ok, failed)) in POOLS.iter().zip(&answered) {
        let offered = seconds as f64 * threads as f64 * 1000.0 / gap_ms as f64;
        assert!(
            ok as f64 >= offered * 0.5,
            "pool {pool}: {ok} answered of about {offered:.0} offered ({failed} failed)"
        );
        assert_eq!(failed, 0, "pool {pool}: {failed} requests failed");
    }
    for servers in &backends {
        for b in servers {
            assert!(
                b.served.load(Ordering::Relaxed) > 0,
                "{} served nothing",
                b.name
            );
        }
    }
    assert!(
        samples as u64 >= seconds * 3 / 4,
        "ballast watch took only {samples} samples in {seconds} s: {}",
        std::fs::read_to_string(dir.path().join("watch.err")).unwrap_or_default()
    );
    assert!(
        watch_alerts.is_empty(),
        "ballast watch alerted on a healthy run: {watch_alerts:#?}"
    );
    assert!(
        serve_alerts.is_empty(),
        "the guard inside serve has alerts on a healthy run: {serve_alerts:#?}"
    );
    assert!(
        listed.is_empty(),
        "Alertmanager has alerts from a healthy run: {listed:#?}"
    );
}
