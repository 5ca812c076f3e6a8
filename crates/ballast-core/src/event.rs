//! The typed events of ballast's one event log: everything worth knowing later (a
//! configuration applied or refused, a server going down, an alert) is one `Event`, written
//! as one JSON line. The proxy appends them; alerts, the dashboard and `postmortem` read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One event: when it happened (Unix milliseconds) and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A configuration went live. `previous` is the version it replaced; `changes` is the
    /// semantic diff against it, one line each (`pool app: ~ weight of server app-3: 1 → 8`),
    /// empty for the first version.
    ConfigApplied {
        version: String,
        previous: Option<String>,
        file: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<String>,
    },
    /// A configuration was refused; the running one keeps serving.
    ConfigRefused {
        version: String,
        running: Option<String>,
        file: String,
        reasons: Vec<String>,
    },
    /// Active checks brought a server into rotation.
    ServerUp {
        pool: String,
        server: String,
    },
    /// Active checks took a server out of rotation.
    ServerDown {
        pool: String,
        server: String,
        reason: String,
    },
    /// Passive ejection took a server out after failures on real traffic.
    ServerEjected {
        pool: String,
        server: String,
        failures: u32,
        for_ms: u64,
    },
    /// An ejected server's ejection ended.
    ServerRecovered {
        pool: String,
        server: String,
    },
    /// A server reached its connection limit; requests now queue or get 503.
    SaturationBegan {
        pool: String,
        server: String,
        limit: u32,
    },
    SaturationEnded {
        pool: String,
        server: String,
    },
    /// No server of the pool can take traffic; `policy` says what happens to requests.
    AllServersDown {
        pool: String,
        policy: String,
    },
    AllServersDownEnded {
        pool: String,
    },
    /// An alert of the guard began to fire (written once per firing, at the time it began).
    /// Labels and annotations it lacks are empty strings; `server` is absent for a pool-wide
    /// alert. The dashboard and `postmortem` read these fields: keep their names.
    AlertFiring {
        alertname: String,
        severity: String,
        pool: String,
        server: Option<String>,
        source: String,
        instance: String,
        summary: String,
        cause: String,
    },
    /// A watched load balancer's configuration file changed (seen by the guard, which hashes
    /// the file and its includes every round). `changes` is the semantic diff, `introduced`
    /// the `check` findings the new file adds, `shifts` the predicted shares per pool.
    ConfigChanged {
        source: String,
        instance: String,
        file: String,
        previous: String,
        version: String,
        changes: Vec<String>,
        pools: Vec<String>,
        introduced: Vec<String>,
        shifts: Vec<String>,
        max_shift_points: f64,
        risky: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unreadable: Option<String>,
    },
    /// The watched load balancer reloaded: its generation (HAProxy's process id and start,
    /// nginx's workers, ballast's configuration version) changed between two samples.
    Reloaded {
        source: String,
        instance: String,
        previous: String,
        generation: String,
    },
    /// The canary of a reload found a critical regression the change caused and `serve`
    /// reverted to the previous configuration: `reverted` is the version undone, `restored`
    /// the version serving again, `changes` the diff that was undone, `evidence` the
    /// alerts and figures that decided it.
    ConfigRolledBack {
        file: String,
        reverted: String,
        restored: String,
        changes: Vec<String>,
        alertname: String,
        pool: String,
        evidence: Vec<String>,
    },
    /// `ballast watch --on-critical CMD` ran the user's command for an incident.
    CommandRan {
        command: String,
        alertname: String,
        pool: String,
        /// The exit code, or absent when it could not run or was killed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Why it could not run, or its last line of error output.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A pool's distribution over the last window (written every few seconds by the guard,
    /// so the dashboard and the postmortem can chart shares and errors over time).
    PoolSnapshot {
        source: String,
        instance: String,
        pool: String,
        /// The length of the window the figures cover, ms.
        window_ms: u64,
        /// The pool's algorithm, as the model names it.
        algorithm: String,
        /// The weight-normalised peak ratio over the window, when there was enough traffic.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_ratio: Option<f64>,
        servers: Vec<ServerSnapshot>,
    },
    /// `ballast loadtest` ran (`--events FILE`): its figures, so the postmortem and the
    /// dashboard can show the load beside what the balancer did. `at_ms` is when it began.
    LoadTestRan {
        /// The URL (the first one when several were drawn).
        target: String,
        /// `closed`, `open` or `capacity` (a `--find-capacity` search).
        model: String,
        /// The measured part's length, s (the whole search's for `capacity`).
        seconds: f64,
        requests: u64,
        /// Achieved requests per second.
        rate: f64,
        /// The open model's target rate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_rate: Option<f64>,
        /// Requests without an answer or with a 5xx, over all requests.
        error_ratio: f64,
        p50_ms: f64,
        p99_ms: f64,
        /// Weight-normalised peak ratio over the backends' shares.
        peak_ratio: f64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        backends: Vec<LoadTestBackend>,
        /// A capacity search's result: the highest rate meeting the SLO, req/s.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capacity: Option<f64>,
        /// A capacity search's backend that saturated first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        saturated: Option<String>,
        /// `--assert` conditions that failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed_assertions: Vec<String>,
    },
    /// A firing alert resolved (written once, at the time it resolved); `fired_at_ms` is when
    /// it began to fire, so the pair can be found without scanning back.
    AlertResolved {
        alertname: String,
        pool: String,
        server: Option<String>,
        source: String,
        instance: String,
        fired_at_ms: u64,
    },
}

/// One backend's figures in a [`EventKind::LoadTestRan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LoadTestBackend {
    pub name: String,
    pub requests: u64,
    /// Its share of the attributed responses, 0..1.
    pub share: f64,
    /// The share the configuration promises it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_share: Option<f64>,
    pub p99_ms: f64,
    #[serde(default)]
    pub errors_5xx: u64,
}

/// One server's figures in a [`EventKind::PoolSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServerSnapshot {
    pub server: String,
    /// Requests (picks) it took in the snapshot's window.
    pub requests: u64,
    /// Its share of the pool's requests in the window, 0..1.
    pub share: f64,
    /// The share its live weight, state and the pool's algorithm promise, 0..1.
    pub expected_share: f64,
    /// Requests in flight (sessions) at the end of the window.
    pub in_flight: u64,
    /// Its connection limit, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Requests queued for it at the end of the window.
    #[serde(default)]
    pub queued: u64,
    /// 5xx responses in the window.
    #[serde(default)]
    pub errors_5xx: u64,
    /// Mean latency over the window, ms, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// `up`, `down`, `drain`, `maint`, `backup` ... as the source reports it.
    pub state: String,
}

/// An alert of the guard inside `serve` that is active now (pending or firing), as plain data
/// the proxy shows in `/status` (`alerts`) and `/metrics` (`ballast_alerts`) without depending
/// on the guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// `alertname`, `severity`, `pool`, `server` (when one), `source`, `instance`.
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    pub summary: String,
    /// What the guard found the likely cause to be (the layer, the change that triggered it).
    pub cause: String,
    /// When it began to fire (Unix ms); absent while pending.
    pub starts_at_ms: Option<u64>,
    /// The alert this one is a symptom of, when inhibited (shown, not paged).
    pub inhibited_by: Option<String>,
}

impl ActiveAlert {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}
