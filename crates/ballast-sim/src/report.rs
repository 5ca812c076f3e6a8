//! What a simulation measured, per server and for the pool, and the statistics that judge the
//! distribution: share against expected share, peak normalised share R, Jain's fairness index
//! and a χ² goodness-of-fit p-value.

use ballast_core::distribution::evenness;
use hdrhistogram::Histogram;
use serde::Serialize;

use ballast_core::config::Pool;

/// Counters of one server during a run.
pub struct ServerStats {
    /// Balancing decisions that chose this server (retries count again).
    pub picked: u64,
    pub completed: u64,
    /// Connection attempts refused because the server had failed.
    pub refused: u64,
    /// Requests lost when the server failed under them.
    pub failed_in_flight: u64,
    pub rejected_queue_full: u64,
    pub rejected_queue_timeout: u64,
    pub peak_in_flight: u32,
    pub peak_queue: u32,
    /// Time spent in the balancer's queue, microseconds (0 for requests sent at once).
    pub queue_wait_us: Histogram<u64>,
}

impl ServerStats {
    pub fn new() -> Self {
        Self {
            picked: 0,
            completed: 0,
            refused: 0,
            failed_in_flight: 0,
            rejected_queue_full: 0,
            rejected_queue_timeout: 0,
            peak_in_flight: 0,
            peak_queue: 0,
            queue_wait_us: crate::engine::new_histogram(),
        }
    }
}

impl Default for ServerStats {
    fn default() -> Self {
        Self::new()
    }
}

/// One server's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub name: String,
    pub address: String,
    pub weight: u32,
    pub backup: bool,
    pub picked: u64,
    pub completed: u64,
    /// Share of all decisions.
    pub share: f64,
    /// Weight over the total weight of serving primaries; 0 for backups and drained servers.
    pub expected_share: f64,
    /// share / expected_share (`null` when nothing is expected).
    pub ratio: Option<f64>,
    pub peak_in_flight: u32,
    /// Connection limit, `null` when unlimited.
    pub limit: Option<u32>,
    pub peak_queue: u32,
    pub queue_wait_p50_ms: f64,
    pub queue_wait_p99_ms: f64,
    pub queue_wait_max_ms: f64,
    pub rejected_queue_full: u64,
    pub rejected_queue_timeout: u64,
    pub refused: u64,
    pub failed_in_flight: u64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pool: String,
    /// The algorithm that makes the decisions: the emulated one for a pool imported from
    /// HAProxy or nginx (`HAProxy balance source, hash-type map-based`), else ballast's own.
    pub algorithm: String,
    pub requests: u64,
    pub simulated_seconds: f64,
    pub servers: Vec<ServerReport>,
    /// Peak normalised share R = max(share / expected share) over serving primaries.
    pub peak_ratio: f64,
    /// Jain's fairness index of share / expected share: 1 is perfectly proportional.
    pub jain: f64,
    /// χ² goodness-of-fit p-value of the decisions against weight-proportional shares.
    pub chi2_p: f64,
    /// Requests refused with 503: queue full, queue timeout, or no server available.
    pub rejected: u64,
    pub no_server: u64,
    /// Requests that failed: every attempt hit a failed server, or the server failed under them.
    pub failed: u64,
    pub retries: u64,
    pub queue_wait_p99_ms: f64,
    pub queue_wait_max_ms: f64,
    /// max over limited servers of peak in flight / limit.
    pub peak_concurrency_ratio: f64,
    #[serde(skip)]
    weights: Vec<(String, String, u32, bool, Option<u32>)>,
    #[serde(skip)]
    expected: Vec<f64>,
}

impl Report {
    pub(crate) fn new(pool_name: &str, pool: &Pool) -> Self {
        Self {
            pool: pool_name.to_string(),
            algorithm: pool
                .emulate
                .as_ref()
                .map_or_else(|| pool.algorithm.as_str().to_string(), |e| e.describe()),
            requests: 0,
            simulated_seconds: 0.0,
            servers: Vec::new(),
            peak_ratio: 0.0,
            jain: 0.0,
            chi2_p: 0.0,
            rejected: 0,
            no_server: 0,
            failed: 0,
            retries: 0,
            queue_wait_p99_ms: 0.0,
            queue_wait_max_ms: 0.0,
            peak_concurrency_ratio: 0.0,
            expected: ballast_core::balance::expected_shares(pool),
            weights: pool
                .servers
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        s.address.clone(),
                        s.weight,
                        s.backup,
                        s.max_connections,
                    )
                })
                .collect(),
        }
    }

    pub(crate) fn finish(&mut self, stats: Vec<ServerStats>) {
        let decisions: u64 = stats.iter().map(|s| s.picked).sum();
        let mut all_waits = crate::engine::new_histogram();
        for (((name, address, weight, backup, limit), s), &expected) in
            self.weights.iter().zip(&stats).zip(&self.expected)
        {
            let share = if decisions == 0 {
                0.0
            } else {
                s.picked as f64 / decisions as f64
            };
            let ms = |us: u64| us as f64 / 1000.0;
            let _ = all_waits.add(&s.queue_wait_us);
            self.servers.push(ServerReport {
                name: name.clone(),
                address: address.clone(),
                weight: *weight,
                backup: *backup,
                picked: s.picked,
                completed: s.completed,
                share,
                expected_share: expected,
                ratio: (expected > 0.0).then(|| share / expected),
                peak_in_flight: s.peak_in_flight,
                limit: *limit,
                peak_queue: s.peak_queue,
                queue_wait_p50_ms: ms(s.queue_wait_us.value_at_quantile(0.5)),
                queue_wait_p99_ms: ms(s.queue_wait_us.value_at_quantile(0.99)),
                queue_wait_max_ms: ms(s.queue_wait_us.max()),
                rejected_queue_full: s.rejected_queue_full,
                rejected_queue_timeout: s.rejected_queue_timeout,
                refused: s.refused,
                failed_in_flight: s.failed_in_flight,
            });
            self.rejected += s.rejected_queue_full + s.rejected_queue_timeout;
            self.failed += s.failed_in_flight;
        }
        self.rejected += self.no_server;
        self.queue_wait_p99_ms = all_waits.value_at_quantile(0.99) as f64 / 1000.0;
        self.queue_wait_max_ms = all_waits.max() as f64 / 1000.0;
        let even = evenness(
            &self
                .servers
                .iter()
                .filter(|s| s.expected_share > 0.0)
                .map(|s| (s.picked, s.expected_share))
                .collect::<Vec<_>>(),
        );
        self.peak_ratio = even.peak_ratio;
        self.jain = even.jain;
        self.chi2_p = even.chi2_p;
        self.peak_concurrency_ratio = self
            .servers
            .iter()
            .filter_map(|s| s.limit.map(|l| f64::from(s.peak_in_flight) / f64::from(l)))
            .fold(0.0, f64::max);
    }

    /// A human-readable table.
    pub fn text(&self) -> String {
        let mut out = format!(
            "pool `{}` ({}): {} requests over {:.1}s simulated\n\n",
            self.pool, self.algorithm, self.requests, self.simulated_seconds
        );
        out += &format!(
            "{:<16} {:>6} {:>8} {:>8} {:>6} {:>11} {:>9} {:>9} {:>9} {:>9}  {}\n",
            "server",
            "weight",
            "share",
            "expect",
            "R",
            "peak/limit",
            "wait p50",
            "wait p99",
            "wait max",
            "rejected",
            "tier"
        );
        for s in &self.servers {
            let limit = s.limit.map_or("∞".to_string(), |l| l.to_string());
            out += &format!(
                "{:<16} {:>6} {:>7.2}% {:>7.2}% {:>6} {:>11} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>9}  {}\n",
                truncate(&s.name, 16),
                s.weight,
                s.share * 100.0,
                s.expected_share * 100.0,
                s.ratio.map_or("-".to_string(), |r| format!("{r:.2}")),
                format!("{}/{}", s.peak_in_flight, limit),
                s.queue_wait_p50_ms,
                s.queue_wait_p99_ms,
                s.queue_wait_max_ms,
                s.rejected_queue_full + s.rejected_queue_timeout,
                // Backups take traffic only when no primary can, so their expected share is 0.
                if s.backup { "backup" } else { "primary" },
            );
        }
        out += &format!(
            "\npeak ratio R = {:.3}   Jain = {:.4}   χ² p = {:.4}\nrejected {} (no server {}), failed {}, retries {}, queue wait p99 {:.1}ms\n",
            self.peak_ratio,
            self.jain,
            self.chi2_p,
            self.rejected,
            self.no_server,
            self.failed,
            self.retries,
            self.queue_wait_p99_ms
        );
        if self.peak_ratio > 1.5 {
            let worst = self
                .servers
                .iter()
                .filter(|s| s.ratio.is_some())
                .max_by(|a, b| {
                    a.ratio
                        .partial_cmp(&b.ratio)
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
            if let Some(w) = worst {
                out += &format!(
                    "\nSKEW: `{}` takes {:.1}% of requests against an expected {:.1}% ({:.2}× its share)\n",
                    w.name,
                    w.share * 100.0,
                    w.expected_share * 100.0,
                    w.ratio.unwrap_or(0.0)
                );
            }
        }
        out
    }

    /// Looks up a metric by name, for `--assert`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "peak_ratio" => self.peak_ratio,
            "jain" => self.jain,
            "chi2_p" => self.chi2_p,
            "rejected" => self.rejected as f64,
            "no_server" => self.no_server as f64,
            "failed" => self.failed as f64,
            "retries" => self.retries as f64,
            "requests" => self.requests as f64,
            "queue_wait_p99_ms" => self.queue_wait_p99_ms,
            "queue_wait_max_ms" => self.queue_wait_max_ms,
            "peak_concurrency_ratio" => self.peak_concurrency_ratio,
            _ => return None,
        })
    }

    pub const METRICS: &'static [&'static str] = &[
        "peak_ratio",
        "jain",
        "chi2_p",
        "rejected",
        "no_server",
        "failed",
        "retries",
        "requests",
        "queue_wait_p99_ms",
        "queue_wait_max_ms",
        "peak_concurrency_ratio",
    ];
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
