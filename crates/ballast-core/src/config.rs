//! The ballast configuration model: listeners, pools, servers, health, limits, admin.
//!
//! This is the one model every tool reads (`check`, `simulate`, later `serve`, `diff` and the
//! HAProxy/nginx importers). It is plain data, deserialized from TOML with unknown keys
//! rejected; where a field is optional its effective default is a named constant here, so the
//! checker, the simulator and the proxy agree on what "unset" means.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::emulation::{Emulation, HaproxyHash, HaproxyKey, HashFunction, HashLookup};
use crate::traffic::Traffic;

/// Default per-listener connection cap when `max_connections` is unset.
pub const DEFAULT_LISTENER_MAX_CONNECTIONS: u32 = 10_000;
/// Default process-wide connection cap when `global.max_connections` is unset.
pub const DEFAULT_GLOBAL_MAX_CONNECTIONS: u32 = 20_000;
/// Default time a client has to send the request head (slowloris protection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive client connection is kept.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on a whole request, from first byte to last byte of the response.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response may wait for the client to take more of it (nginx's `send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Streams one HTTP/2 connection may have open at once (each also takes a request place).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Connections the admin API accepts at once; beyond it they are closed at once.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 64;
/// Default time to establish a connection to a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time a tunnel (an upgraded connection: WebSocket) may pass no bytes either way
/// before it is closed, as HAProxy's `timeout tunnel` is commonly set.
pub const DEFAULT_TUNNEL_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default time a server has to start answering.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a request may wait in a server's queue.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bounded-load factor for consistent hashing (the paper's c).
pub const DEFAULT_BALANCE_FACTOR: f64 = 1.25;
/// Default time an idle upstream keep-alive connection is kept. Below the common backend
/// keep-alive timeouts (Node.js closes after 5s), so ballast never reuses a connection the
/// server is about to close.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Default cap on the request head (request line and headers), in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Default cap on the number of request headers.
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// Default cap on a request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default admin listener.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9900";
/// Largest accepted server weight.
pub const MAX_WEIGHT: u32 = 1_000;

/// A whole ballast configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: Global,
    pub admin: Option<Admin>,
    #[serde(default)]
    pub listeners: BTreeMap<String, Listener>,
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
    /// The traffic model `ballast simulate` runs when no other is given.
    pub simulate: Option<Traffic>,
    /// Where `serve`'s own guard sends its alerts. Absent: the guard still judges and shows
    /// its alerts in `/status`, `/metrics` and the event log, and sends them nowhere.
    pub alerts: Option<Alerts>,
    /// The canary after every reload in `serve`. Absent: on, with a 60 s window.
    pub rollback: Option<Rollback>,
}

/// Default length of the canary window after a reload (`[rollback] window`).
pub const DEFAULT_ROLLBACK_WINDOW: Duration = Duration::from_secs(60);

/// The canary of `serve`: for `window` after every applied reload the guard compares the
/// pools with the minutes before it, and a critical regression the change caused reverts to
/// the previous configuration (through the same path as a reload). The reverted version is
/// refused by later reloads until the file changes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// Revert a reload that the canary finds critical (false: reloads are never reverted).
    #[serde(default = "default_alerts_enabled")]
    pub enabled: bool,
    /// How long after a reload its canary watches, e.g. `"60s"`.
    pub window: Option<Dur>,
}

impl Rollback {
    pub fn window(&self) -> Duration {
        self.window.map_or(DEFAULT_ROLLBACK_WINDOW, |d| d.0)
    }
}

impl Default for Rollback {
    fn default() -> Self {
        Self {
            enabled: true,
            window: None,
        }
    }
}

/// The guard inside `serve`: every second it samples the proxy's own counters and runs the
/// detectors of `ballast watch` on them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Run the guard inside `serve` (false: no judging at all).
    #[serde(default = "default_alerts_enabled")]
    pub enabled: bool,
    /// Alertmanager base URLs to POST alerts to (`/api/v2/alerts`), e.g. `http://127.0.0.1:9093`.
    #[serde(default)]
    pub alertmanager: Vec<String>,
    /// URLs to POST Alertmanager's webhook JSON (version 4) to, grouped by pool.
    #[serde(default)]
    pub webhook: Vec<String>,
}

fn default_alerts_enabled() -> bool {
    true
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            enabled: true,
            alertmanager: Vec::new(),
            webhook: Vec::new(),
        }
    }
}

/// Process-wide limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Connections across all listeners; excess is refused with 503.
    pub max_connections: Option<u32>,
    /// Connections from one client address across all listeners.
    pub max_connections_per_ip: Option<u32>,
    /// Where `serve` appends its event log (JSON lines). Unset: no event log file.
    pub event_log: Option<String>,
    /// Where `serve` appends its access log (JSON lines naming the chosen server). Unset: none.
    pub access_log: Option<String>,
}

impl Global {
    pub fn effective_max_connections(&self) -> u32 {
        self.max_connections
            .unwrap_or(DEFAULT_GLOBAL_MAX_CONNECTIONS)
    }
}

/// The admin API listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// Bearer token required for changes, and for any bind beyond loopback.
    pub token: Option<String>,
    /// Connections the admin API holds at once. Unset: [`DEFAULT_ADMIN_MAX_CONNECTIONS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl Admin {
    pub fn effective_max_connections(&self) -> u32 {
        self.max_connections
            .unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS)
    }
}

fn default_admin_address() -> String {
    DEFAULT_ADMIN_ADDRESS.to_string()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Tcp,
}

/// A socket that accepts clients and routes them to one pool.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: String,
    #[serde(default)]
    pub protocol: Protocol,
    pub max_connections: Option<u32>,
    /// Name of the pool this listener routes to.
    pub pool: String,
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
    /// Peers whose X-Forwarded-For is believed (CIDRs). Empty: the socket peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Response header naming the server that answered (e.g. "X-Served-By"). Off when unset.
    pub served_by_header: Option<String>,
    /// Largest request head accepted; beyond it, 431.
    pub max_header_bytes: Option<u32>,
    /// Most request headers accepted; beyond it, 431.
    pub max_headers: Option<u32>,
    /// Largest request body accepted; beyond it, 413.
    pub max_body_bytes: Option<u64>,
    /// Terminate TLS on this listener (HTTP/2 is offered by ALPN).
    pub tls: Option<ListenerTls>,
    /// Streams an HTTP/2 client may open at once on one connection. Unset:
    /// [`DEFAULT_MAX_CONCURRENT_STREAMS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
}

/// Certificate and key for a TLS listener, PEM files.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain, leaf first.
    pub cert: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

impl Listener {
    pub fn effective_max_connections(&self) -> u32 {
        self.max_connections
            .unwrap_or(DEFAULT_LISTENER_MAX_CONNECTIONS)
    }
    pub fn max_header_bytes(&self) -> u32 {
        self.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES)
    }
    pub fn max_headers(&self) -> u32 {
        self.max_headers.unwrap_or(DEFAULT_MAX_HEADERS)
    }
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)
    }
    pub fn max_concurrent_streams(&self) -> u32 {
        self.max_concurrent_streams
            .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS)
    }
}

/// Client-side timeouts. `"0s"` disables one, which `check` reports.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// Time to receive the full request head.
    pub header_read: Option<Dur>,
    /// Idle time allowed between requests on a keep-alive connection.
    pub idle: Option<Dur>,
    /// Bound on a whole request, including queueing, retries and the response.
    pub request: Option<Dur>,
    /// Time a response may wait for the client to take more of it (nginx's `send_timeout`):
    /// a client that stops reading is cut and its server slot freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Dur>,
    /// Idle time allowed on a tunnel (an upgraded connection: WebSocket) with no bytes either
    /// way; `request` does not bound a tunnel.
    pub tunnel: Option<Dur>,
}

impl ListenerTimeouts {
    pub fn header_read(&self) -> Duration {
        self.header_read
            .map_or(DEFAULT_HEADER_READ_TIMEOUT, |d| d.0)
    }
    pub fn idle(&self) -> Duration {
        self.idle.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0)
    }
    pub fn request(&self) -> Duration {
        self.request.map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0)
    }
    pub fn send(&self) -> Duration {
        self.send.map_or(DEFAULT_SEND_TIMEOUT, |d| d.0)
    }
    pub fn tunnel(&self) -> Duration {
        self.tunnel.map_or(DEFAULT_TUNNEL_TIMEOUT, |d| d.0)
    }
}

/// How a pool picks a server.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Smooth weighted round-robin (nginx's): exact shares, interleaved.
    #[default]
    RoundRobin,
    /// Fewest in-flight requests per unit of weight; ties rotate.
    LeastConnections,
    /// Two random servers, the one with fewer in flight per unit of weight.
    PowerOfTwo,
    /// Consistent hashing with bounded loads on a request key.
    ConsistentHash,
    /// Weighted random.
    Random,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::LeastConnections => "least-connections",
            Algorithm::PowerOfTwo => "power-of-two",
            Algorithm::ConsistentHash => "consistent-hash",
            Algorithm::Random => "random",
        }
    }
}

/// Where a hashing pool reads its key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HashKey {
    /// The client address (after trusted-proxy resolution).
    ClientIp,
    /// A request header, by name (case-insensitive).
    Header { name: String },
    /// A cookie, by name.
    Cookie { name: String },
    /// The request path, without the query string.
    Path,
    /// A query-string parameter, by name.
    Query { name: String },
}

impl HashKey {
    /// Whether a request can arrive without this key (then it falls back, see `balance`).
    pub fn is_optional(&self) -> bool {
        matches!(
            self,
            HashKey::Header { .. } | HashKey::Cookie { .. } | HashKey::Query { .. }
        )
    }

    /// Whether the key can be read from a TCP connection (only the client address can).
    pub fn readable_in_tcp(&self) -> bool {
        matches!(self, HashKey::ClientIp)
    }

    pub fn describe(&self) -> String {
        match self {
            HashKey::ClientIp => "the client IP".to_string(),
            HashKey::Header { name } => format!("header `{name}`"),
            HashKey::Cookie { name } => format!("cookie `{name}`"),
            HashKey::Path => "the path".to_string(),
            HashKey::Query { name } => format!("query parameter `{name}`"),
        }
    }
}

/// What a pool does when no server is available.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AllDownPolicy {
    /// Answer 503 at once (the safe default: no traffic to servers known to be failing).
    #[default]
    FailClosed,
    /// Ignore health and balance over every server that has weight.
    FailOpen,
}

impl AllDownPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AllDownPolicy::FailClosed => "fail-closed",
            AllDownPolicy::FailOpen => "fail-open",
        }
    }
}

/// Which backup servers take traffic when every primary is unavailable.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BackupMode {
    /// Every available backup, balanced by the pool's algorithm.
    #[default]
    All,
    /// Only the first available backup in configuration order.
    First,
}

/// A group of servers behind one balancing algorithm.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default)]
    pub algorithm: Algorithm,
    pub hash_key: Option<HashKey>,
    /// Bounded-load factor c for consistent hashing: no server exceeds ⌈c · average⌉ in flight.
    pub balance_factor: Option<f64>,
    pub connect_timeout: Option<Dur>,
    pub response_timeout: Option<Dur>,
    /// How long an idle keep-alive connection to a server is kept; keep it below the
    /// servers' own keep-alive timeout.
    pub idle_timeout: Option<Dur>,
    #[serde(default)]
    pub retries: Retries,
    pub health: Option<HealthCheck>,
    pub passive: Option<PassiveEjection>,
    #[serde(default)]
    pub all_down: AllDownPolicy,
    /// Reproduce a foreign load balancer's algorithm exactly (set by the HAProxy and nginx
    /// importers). When set it makes the decisions, and `algorithm` names the closest native
    /// algorithm for the rules written against the native model.
    pub emulate: Option<Emulation>,
    /// Which backups serve when no primary can: all of them (the default), or only the first
    /// available one (HAProxy without `option allbackups`).
    #[serde(default)]
    pub backups: BackupMode,
    #[serde(default)]
    pub servers: Vec<Server>,
}

impl Pool {
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
            .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0)
    }
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
            .map_or(DEFAULT_RESPONSE_TIMEOUT, |d| d.0)
    }
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
            .map_or(DEFAULT_UPSTREAM_IDLE_TIMEOUT, |d| d.0)
    }
    pub fn balance_factor(&self) -> f64 {
        self.balance_factor.unwrap_or(DEFAULT_BALANCE_FACTOR)
    }
    /// The key a hashing pool uses; client IP when none is given.
    pub fn effective_hash_key(&self) -> HashKey {
        self.hash_key.clone().unwrap_or(HashKey::ClientIp)
    }
    pub fn primaries(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| !s.backup)
    }
}

/// Retries on connect failure, to another server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Extra attempts after the first (0 disables retries).
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// Retries allowed as a percentage of requests over the last ten seconds.
    #[serde(default = "default_retry_budget")]
    pub budget_percent: u32,
}

fn default_retry_attempts() -> u32 {
    1
}
fn default_retry_budget() -> u32 {
    20
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: default_retry_attempts(),
            budget_percent: default_retry_budget(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    #[default]
    Http,
    Tcp,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// No traffic until `rise` checks pass (the safe default).
    #[default]
    Down,
    Up,
}

/// Active health checking.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub kind: CheckKind,
    /// Path for HTTP checks.
    #[serde(default = "default_check_path")]
    pub path: String,
    #[serde(default = "default_check_interval")]
    pub interval: Dur,
    #[serde(default = "default_check_timeout")]
    pub timeout: Dur,
    /// Consecutive successes to mark a server up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures to mark a server down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Status codes counted as healthy for HTTP checks.
    #[serde(default = "default_expect_status")]
    pub expect_status: Vec<u16>,
    #[serde(default)]
    pub initial: InitialState,
}

fn default_check_path() -> String {
    "/".to_string()
}
fn default_check_interval() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_check_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_expect_status() -> Vec<u16> {
    vec![200]
}

/// Passive ejection: take a server out after consecutive failures seen on real traffic.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveEjection {
    /// Consecutive connect failures or 5xx answers that eject a server.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection lasts this long; each repeat doubles it.
    #[serde(default = "default_base_ejection")]
    pub base_ejection: Dur,
    /// Never eject more than this share of a pool's servers.
    #[serde(default = "default_max_ejected_percent")]
    pub max_ejected_percent: u32,
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_base_ejection() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_max_ejected_percent() -> u32 {
    50
}

/// One backend server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub name: String,
    pub address: String,
    /// Share of traffic relative to the pool's other servers. 0 drains the server.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Requests in flight at once; beyond it requests queue. Unset: unlimited.
    pub max_connections: Option<u32>,
    /// Requests that may wait for a slot; beyond it they get 503 at once.
    #[serde(default)]
    pub max_queue: u32,
    pub queue_timeout: Option<Dur>,
    /// Used only when no primary server is available.
    #[serde(default)]
    pub backup: bool,
    /// Ramp a recovering server's weight up over this time.
    pub slow_start: Option<Dur>,
    /// Administratively down (nginx `down`, HAProxy `disabled`): never picked, but it keeps
    /// its place and weight in hash tables, so marking a server down remaps nothing.
    #[serde(default)]
    pub down: bool,
    /// HAProxy's numeric server id (`id`), which places its consistent-hash ring nodes.
    /// Unset: the server's position, counting from 1, as HAProxy numbers them.
    pub id: Option<u32>,
    /// The text nginx's `hash ... consistent` places on its ring: the `server` as written
    /// (`10.0.0.1` and `10.0.0.1:80` land on different points). Unset: the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_key: Option<String>,
}

fn default_weight() -> u32 {
    1
}

impl Server {
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout.map_or(DEFAULT_QUEUE_TIMEOUT, |d| d.0)
    }
}

/// A duration written as a human string: `"2s"`, `"500ms"`, `"1m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a duration such as "2s", "500ms" or "1m 30s""#)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// Parses `"2s"`, `"500ms"`, `"1m 30s"`; refuses bare numbers and anything over a day, which is
/// never a sensible timeout and usually a unit slip.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(r#"`{t}` has no unit: write "{t}s" or "{t}ms""#));
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        format!(r#"`{t}` is not a duration ({e}); write it like "2s", "500ms" or "1m 30s""#)
    })?;
    if d > Duration::from_secs(86_400) {
        return Err(format!(
            "`{t}` is longer than a day; that is never a sensible timeout"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_table_defaults_to_on_for_a_minute_and_refuses_unknown_keys() {
        let c: Config = toml::from_str("[rollback]\nwindow = \"30s\"\n").unwrap();
        let r = c.rollback.unwrap();
        assert!(r.enabled);
        assert_eq!(r.window(), Duration::from_secs(30));
        let off: Config = toml::from_str("[rollback]\nenabled = false\n").unwrap();
        assert!(!off.rollback.unwrap().enabled);
        assert_eq!(Rollback::default().window(), DEFAULT_ROLLBACK_WINDOW);
        assert!(toml::from_str::<Config>("").unwrap().rollback.is_none());
        let typo = toml::from_str::<Config>("[rollback]\nwindows = \"1m\"\n").unwrap_err();
        assert!(typo.to_string().contains("windows"), "{typo}");
        assert!(toml::from_str::<Config>("[rollback]\nwindow = 60\n").is_err());
    }

    #[test]
    fn alerts_table_defaults_to_enabled_and_refuses_unknown_keys() {
        let c: Config = toml::from_str(
            "[alerts]\nalertmanager = [\"http://127.0.0.1:9093\"]\nwebhook = [\"http://h/x\"]\n",
        )
        .unwrap();
        let alerts = c.alerts.unwrap();
        assert!(alerts.enabled);
        assert_eq!(alerts.alertmanager, ["http://127.0.0.1:9093"]);
        assert_eq!(alerts.webhook, ["http://h/x"]);
        let off: Config = toml::from_str("[alerts]\nenabled = false\n").unwrap();
        assert!(!off.alerts.unwrap().enabled);
        assert!(toml::from_str::<Config>("").unwrap().alerts.is_none());
        let typo = toml::from_str::<Config>("[alerts]\nalertmanagers = []\n").unwrap_err();
        assert!(typo.to_string().contains("unknown field"), "{typo}");
    }

    #[test]
    fn durations_need_units_and_stay_sane() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("2 parsecs").is_err());
        assert!(
            parse_duration("400d")
                .unwrap_err()
                .contains("longer than a day")
        );
    }
}
