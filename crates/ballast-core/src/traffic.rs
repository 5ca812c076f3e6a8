//! The traffic model that `ballast simulate` runs: arrivals, clients, hash keys, service times
//! and failures. Plain data, read from a `[simulate]` table; the simulator in `ballast-sim`
//! gives it meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Dur;

/// A traffic model.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Which listener's pool to drive; the only (or first) listener when unset.
    pub listener: Option<String>,
    /// Seed for every random draw; the same seed gives the same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time to generate arrivals for.
    #[serde(default = "default_duration")]
    pub duration: Dur,
    #[serde(default)]
    pub arrival: Arrival,
    #[serde(default)]
    pub clients: Clients,
    /// Hash-key values for header, cookie, path and query keys.
    #[serde(default)]
    pub key: KeyModel,
    /// Service time for every server unless `servers.NAME` says otherwise.
    #[serde(default)]
    pub service: Service,
    /// Per-server overrides, by server name.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerModel>,
    /// Failures and recoveries at given times.
    #[serde(default)]
    pub events: Vec<ServerEvent>,
}

fn default_seed() -> u64 {
    1
}
fn default_duration() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            listener: None,
            seed: default_seed(),
            duration: default_duration(),
            arrival: Arrival::default(),
            clients: Clients::default(),
            key: KeyModel::default(),
            service: Service::default(),
            servers: BTreeMap::new(),
            events: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalKind {
    /// Exponential gaps between arrivals (an open-loop Poisson process).
    #[default]
    Poisson,
    /// Evenly spaced arrivals.
    Constant,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    #[serde(default)]
    pub kind: ArrivalKind,
    /// Requests per second.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

fn default_rate() -> f64 {
    1_000.0
}

impl Default for Arrival {
    fn default() -> Self {
        Self {
            kind: ArrivalKind::default(),
            rate: default_rate(),
        }
    }
}

/// Who sends the requests: `count` distinct source addresses, popularity skewed by a Zipf
/// exponent (0 = uniform). A handful of addresses models clients behind a NAT or another proxy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    #[serde(default = "default_client_count")]
    pub count: u32,
    #[serde(default)]
    pub zipf: f64,
}

fn default_client_count() -> u32 {
    10_000
}

impl Default for Clients {
    fn default() -> Self {
        Self {
            count: default_client_count(),
            zipf: 0.0,
        }
    }
}

/// Values of the hash key: `cardinality` distinct values with a Zipf skew; `missing_percent`
/// of requests carry no key at all.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyModel {
    #[serde(default = "default_key_cardinality")]
    pub cardinality: u32,
    #[serde(default)]
    pub zipf: f64,
    #[serde(default)]
    pub missing_percent: f64,
}

fn default_key_cardinality() -> u32 {
    100_000
}

impl Default for KeyModel {
    fn default() -> Self {
        Self {
            cardinality: default_key_cardinality(),
            zipf: 0.0,
            missing_percent: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceDistribution {
    #[default]
    Exponential,
    Constant,
    /// Log-normal with a shape (sigma) of 1: a long tail.
    Lognormal,
}

/// How long a server takes to answer, and how many requests it works on at once.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub distribution: ServiceDistribution,
    #[serde(default = "default_service_mean")]
    pub mean: Dur,
    /// Requests the server processes in parallel; more wait inside the server.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_service_mean() -> Dur {
    Dur(std::time::Duration::from_millis(20))
}
fn default_concurrency() -> u32 {
    64
}

impl Default for Service {
    fn default() -> Self {
        Self {
            distribution: ServiceDistribution::default(),
            mean: default_service_mean(),
            concurrency: default_concurrency(),
        }
    }
}

/// Per-server service override.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerModel {
    pub service: Service,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerAction {
    Fail,
    Recover,
}

/// A server failing or recovering at a simulated time.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerEvent {
    pub at: Dur,
    pub server: String,
    pub action: ServerAction,
}

/// Checks that make a traffic model meaningless. `prefix` is where the model sits in its file
/// (`simulate`), for spans; `config`, when given, lets server names be checked.
pub fn validate(
    t: &Traffic,
    prefix: &str,
    spans: &crate::source::SpanMap,
    config: Option<&crate::config::Config>,
) -> Vec<crate::source::Diagnostic> {
    use crate::source::Diagnostic;
    let mut out = Vec::new();
    let mut err = |path: &str, msg: String, fix: &str| {
        let mut d = Diagnostic::error(msg).with_fix(fix);
        if let Some(s) = spans.locate(&format!("{prefix}.{path}")) {
            d = d.with_span(s);
        }
        out.push(d);
    };
    let r = t.arrival.rate;
    if !(r.is_finite() && r > 0.0 && r <= 1e8) {
        err(
            "arrival.rate",
            format!("arrival rate {r} must be above 0 and at most 100,000,000 per second"),
            "use requests per second, such as 2000",
        );
    }
    if t.duration.0.is_zero() {
        err(
            "duration",
            "simulated duration is 0: nothing would arrive".into(),
            r#"use a duration such as "60s""#,
        );
    }
    if r.is_finite() && r * t.duration.0.as_secs_f64() > 2e9 {
        err(
            "duration",
            format!(
                "rate × duration is {:.0} requests; the simulator stops at 2,000,000,000",
                r * t.duration.0.as_secs_f64()
            ),
            "shorten the duration or lower the rate",
        );
    }
    if t.clients.count == 0 {
        err(
            "clients.count",
            "clients.count = 0: nobody sends requests".into(),
            "use at least 1",
        );
    }
    for (path, z) in [("clients.zipf", t.clients.zipf), ("key.zipf", t.key.zipf)] {
        if !(z.is_finite() && (0.0..=10.0).contains(&z)) {
            err(
                path,
                format!("Zipf exponent {z} must be between 0 (uniform) and 10"),
                "1.0 is a classic web skew",
            );
        }
    }
    if t.key.cardinality == 0 {
        err(
            "key.cardinality",
            "key.cardinality = 0: no key values to draw".into(),
            "use at least 1",
        );
    }
    let m = t.key.missing_percent;
    if !(m.is_finite() && (0.0..=100.0).contains(&m)) {
        err(
            "key.missing_percent",
            format!("missing_percent {m} must be between 0 and 100"),
            "use a percentage",
        );
    }
    let services = std::iter::once(("service".to_string(), &t.service)).chain(
        t.servers
            .iter()
            .map(|(n, s)| (format!("servers.{n}.service"), &s.service)),
    );
    for (path, s) in services {
        if s.concurrency == 0 {
            err(
                &format!("{path}.concurrency"),
                "service concurrency = 0: the server could never answer".into(),
                "use the number of requests the server works on at once",
            );
        }
        if s.mean.0.is_zero() && s.distribution != ServiceDistribution::Constant {
            err(
                &format!("{path}.mean"),
                "mean service time of 0".into(),
                r#"use a time such as "20ms""#,
            );
        }
    }
    if let Some(c) = config {
        let known = |name: &str| {
            c.pools
                .values()
                .any(|p| p.servers.iter().any(|s| s.name == name))
        };
        for name in t.servers.keys() {
            if !known(name) {
                err(
                    &format!("servers.{name}"),
                    format!("no server is named `{name}`"),
                    "use the `name` of a server in one of the pools",
                );
            }
        }
        for (i, e) in t.events.iter().enumerate() {
            if !known(&e.server) {
                err(
                    &format!("events[{i}].server"),
                    format!("event names server `{}`, which does not exist", e.server),
                    "use the `name` of a server in one of the pools",
                );
            }
        }
        if let Some(l) = &t.listener
            && !c.listeners.contains_key(l)
        {
            err(
                "listener",
                format!("listener `{l}` does not exist"),
                "name one of the [listeners.NAME] tables",
            );
        }
    }
    out
}
