//! Prometheus metrics (prometheus-client, an explicit registry per proxy). Counters and
//! histograms are updated on the request path; gauges that mirror live state (in flight,
//! queue depth, health, shares) are refreshed from the snapshot when `/metrics` is scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use ballast_core::event::ActiveAlert;

use crate::runtime::Snapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub pool: String,
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerClassLabels {
    pub pool: String,
    pub server: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub listener: String,
    /// Why: `global_limit`, `listener_limit`, `per_ip_limit`, `queue_full`, `queue_timeout`,
    /// `no_server`, `connect_failed`, `header_too_large`, `body_too_large`, `bad_request`,
    /// `bad_body` (malformed or cut-short request body), `body_timeout` (a timeout while the
    /// server waited for the client's body), `header_timeout` (no request head within
    /// `header_read`), `request_timeout`.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub alertname: String,
    pub severity: String,
    pub pool: String,
    /// Empty for a pool-wide alert.
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<ServerClassLabels, Counter>,
    pub rejections: Family<RejectLabels, Counter>,
    pub latency: Family<ServerLabels, Histogram, fn() -> Histogram>,
    pub retries: Family<PoolLabels, Counter>,
    pub active_connections: Family<ListenerLabels, Gauge>,
    in_flight: Family<ServerLabels, Gauge>,
    queue_depth: Family<ServerLabels, Gauge>,
    healthy: Family<ServerLabels, Gauge>,
    share: Family<ServerLabels, FloatGauge>,
    peak_ratio: Family<PoolLabels, FloatGauge>,
    config: Family<VersionLabels, Gauge>,
    // The limits and live weights below let Prometheus rules (`ballast rules prometheus`)
    // judge shares and saturation from /metrics alone, as they do from HAProxy's exporter.
    weight: Family<ServerLabels, Gauge>,
    server_max_connections: Family<ServerLabels, Gauge>,
    server_max_queue: Family<ServerLabels, Gauge>,
    listener_max_connections: Family<ListenerLabels, Gauge>,
    alerts: Family<AlertLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ballast");
        let m = Self {
            requests: Family::default(),
            rejections: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            retries: Family::default(),
            active_connections: Family::default(),
            in_flight: Family::default(),
            queue_depth: Family::default(),
            healthy: Family::default(),
            share: Family::default(),
            peak_ratio: Family::default(),
            config: Family::default(),
            weight: Family::default(),
            server_max_connections: Family::default(),
            server_max_queue: Family::default(),
            listener_max_connections: Family::default(),
            alerts: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered by a server, by status class",
            m.requests.clone(),
        );
        registry.register(
            "rejections",
            "Requests or connections refused here, by cause",
            m.rejections.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request to the end of the response body",
            m.latency.clone(),
        );
        registry.register(
            "retries",
            "Attempts retried on another server",
            m.retries.clone(),
        );
        registry.register(
            "active_connections",
            "Client connections open, per listener",
            m.active_connections.clone(),
        );
        registry.register(
            "in_flight",
            "Requests in flight on a server",
            m.in_flight.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a slot on a server",
            m.queue_depth.clone(),
        );
        registry.register(
            "server_up",
            "1 when a server is in rotation (healthy and not ejected)",
            m.healthy.clone(),
        );
        registry.register(
            "share",
            "Share of a pool's balancing decisions that chose a server, since start",
            m.share.clone(),
        );
        registry.register(
            "peak_ratio",
            "Peak normalised share R = max(share / expected share) of a pool",
            m.peak_ratio.clone(),
        );
        registry.register(
            "config_info",
            "The running configuration version (value 1)",
            m.config.clone(),
        );
        registry.register(
            "server_weight",
            "The weight a server competes with now: its configured weight, 0 while it is marked down, and 0 for a backup while a primary is in rotation",
            m.weight.clone(),
        );
        registry.register(
            "server_max_connections",
            "A server's max_connections (absent when unlimited)",
            m.server_max_connections.clone(),
        );
        registry.register(
            "server_max_queue",
            "Requests that may wait for a slot on a server (max_queue)",
            m.server_max_queue.clone(),
        );
        registry.register(
            "listener_max_connections",
            "A listener's connection limit (max_connections, or its default)",
            m.listener_max_connections.clone(),
        );
        registry.register(
            "alerts",
            "Alerts of the guard inside serve firing now (value 1 each)",
            m.alerts.clone(),
        );
        Self { registry, ..m }
    }

    /// Refreshes the live-state gauges from `snapshot` and renders the Prometheus text format.
    pub fn render(&self, snapshot: &Snapshot, alerts: &[ActiveAlert]) -> String {
        self.alerts.clear();
        for a in alerts.iter().filter(|a| a.state == "firing") {
            self.alerts
                .get_or_create(&AlertLabels {
                    alertname: a.label("alertname").to_string(),
                    severity: a.label("severity").to_string(),
                    pool: a.label("pool").to_string(),
                    server: a.label("server").to_string(),
                })
                .set(1);
        }
        self.in_flight.clear();
        self.queue_depth.clear();
        self.healthy.clear();
        self.share.clear();
        self.peak_ratio.clear();
        self.config.clear();
        self.weight.clear();
        self.server_max_connections.clear();
        self.server_max_queue.clear();
        self.listener_max_connections.clear();
        for (name, listener) in &snapshot.loaded.config.listeners {
            self.listener_max_connections
                .get_or_create(&ListenerLabels {
                    listener: name.clone(),
                })
                .set(i64::from(listener.effective_max_connections()));
        }
        self.config
            .get_or_create(&VersionLabels {
                version: snapshot.version.clone(),
            })
            .set(1);
        for pool in snapshot.pools.values() {
            let stats = crate::status::pool_shares(pool);
            let primary_available = pool
                .servers
                .iter()
                .any(|s| !s.spec.backup && !s.spec.down && s.state.available());
            for (server, share) in pool.servers.iter().zip(&stats.shares) {
                let labels = ServerLabels {
                    pool: pool.name.clone(),
                    server: server.spec.name.clone(),
                };
                let s = &server.state;
                self.in_flight
                    .get_or_create(&labels)
                    .set(i64::from(s.in_flight.load(Ordering::Relaxed)));
                self.queue_depth
                    .get_or_create(&labels)
                    .set(i64::from(s.queued.load(Ordering::Relaxed)));
                self.healthy
                    .get_or_create(&labels)
                    .set(i64::from(s.available()));
                self.share.get_or_create(&labels).set(*share);
                let idle_backup = server.spec.backup && primary_available;
                let weight = if server.spec.down || idle_backup {
                    0
                } else {
                    server.spec.weight
                };
                self.weight.get_or_create(&labels).set(i64::from(weight));
                if let Some(limit) = server.spec.max_connections {
                    self.server_max_connections
                        .get_or_create(&labels)
                        .set(i64::from(limit));
                }
                self.server_max_queue
                    .get_or_create(&labels)
                    .set(i64::from(server.spec.max_queue));
            }
            self.peak_ratio
                .get_or_create(&PoolLabels {
                    pool: pool.name.clone(),
                })
                .set(stats.peak_ratio);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn reject(&self, listener: &str, cause: &str) {
        self.rejections
            .get_or_create(&RejectLabels {
                listener: listener.to_string(),
                cause: cause.to_string(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
