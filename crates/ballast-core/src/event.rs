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
    /// A configuration went live. `previous` is the version it replaced.
    ConfigApplied {
        version: String,
        previous: Option<String>,
        file: String,
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
