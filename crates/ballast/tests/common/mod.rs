//! What the binary's end-to-end tests share: peers (HAProxy, nginx, Alertmanager, `ballast
//! serve`) in process groups of their own, free loopback ports, waiting for a port or a
//! condition with a deadline, configuration files in a tempdir, plain HTTP/1.1 exchanges,
//! event logs and JSON lines read back, and a small random generator for client gaps.
//!
//! The guard's helpers (PeerGroup, Backend, Alertmanager, a webhook receiver) live in
//! `crates/ballast-guard/tests/common` and are re-exported from here, so a test binary includes
//! one `mod common;` and gets both.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

pub mod clients;
#[path = "../../../ballast-guard/tests/common/mod.rs"]
mod guard;
pub mod haproxy;
pub mod http;
pub mod serve;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// Each binary uses a part of them.
#[allow(unused_imports)]
pub use guard::{
    Alertmanager, Backend, PeerGroup, WebhookReceiver, free_port, http_get, http10_get,
    peer_available, wait_for_port,
};

/// `127.0.0.1` on a port free now.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `ready` every 50 ms until it holds; fails the test, naming `what`, past `timeout`.
/// Gives how long it took.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Polls `found` every 50 ms until it gives a value; fails the test, naming `what`, past
/// `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every line of a JSON-lines file (an event log, `--format json` output) that parses; none
/// when the file is not there yet. A line still being written is skipped, not an error.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A file's text, empty when it cannot be read (a peer's log, for a failure message).
pub fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A tiny xorshift generator for client gaps and header values, without a dependency.
pub struct Noise(pub u64);

impl Noise {
    /// One seeded from the clock and `salt`: every run draws differently.
    pub fn from_clock(salt: u64) -> Noise {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Noise((now ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// Uniform in (0, 1): never 0, so its logarithm is finite.
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.unit() * n as f64) as u64).min(n.saturating_sub(1))
    }

    /// An exponential draw of mean 1, capped at 8 so one client never stalls for long.
    pub fn exponential(&mut self) -> f64 {
        (-self.unit().ln()).min(8.0)
    }

    /// An exponential gap with this mean (capped at 8×): Poisson arrivals.
    pub fn gap(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(self.exponential())
    }
}

/// The `ballast` binary under test run to its end with `args` (from the crate's folder, so
/// `tests/fixtures/...` paths resolve): its status and output.
pub fn ballast(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the ballast binary")
}
