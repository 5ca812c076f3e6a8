//! ballast-proxy: the data plane behind `ballast serve`.
//!
//! Servers are chosen only by ballast-core's `Balancer`, through a live view of this crate's
//! atomics, so what `ballast simulate` predicts is what this proxy does. Modules:
//! `fast` (the HTTP/1.1 fast path, over `wire`'s pure reading and writing of heads and bodies),
//! `http` (the request path on hyper, phase by phase, for everything else), `tcp` (layer 4), `upstream` (connections to
//! servers), `body` (in-flight accounting to the end of the body), `upload` (whose failure
//! a failed exchange is), `admission` (connection
//! caps), `streams` (HTTP/2 streams under those caps), `send_timeout` (slow readers),
//! `health` (active checks, passive ejection), `runtime` (live state and snapshots),
//! `admin`, `metrics`, `status`, `events`, `accesslog`, `headers`, `request_rules` (Host,
//! CONNECT, bodies on GET/HEAD), `upgrade` (WebSocket tunnels).
#![forbid(unsafe_code)]

mod accesslog;
mod admin;
mod admission;
mod bind;
mod body;
pub mod demo_backend;
mod events;
mod fast;
mod fd_reserve;
mod framing;
mod headers;
mod health;
mod http;
mod metrics;
mod observed;
mod request_rules;
mod runtime;
mod sample;
mod send_timeout;
mod status;
mod streams;
mod tcp;
mod tls;
mod upgrade;
mod upload;
mod upstream;
mod wire;

/// The Content-Security-Policy of the dashboard page: only its own inline style and script,
/// fetches to its own origin (`ballast watch --dashboard` sends it too).
pub use admin::DASHBOARD_POLICY;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use ballast_core::config::Protocol;
use ballast_core::event::{ActiveAlert, Event, EventKind};
use ballast_core::{Loaded, Severity, load_file};

use crate::accesslog::AccessLog;
use crate::admission::ConnectionCounts;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::runtime::{Clock, Snapshot};

/// State every task of a running proxy shares.
pub(crate) struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub clock: Clock,
    pub metrics: Metrics,
    pub events: EventLog,
    pub access_log: Option<AccessLog>,
    pub connections: Arc<ConnectionCounts>,
    /// Spare descriptors, released to answer 503 when the process runs out (`fd_reserve`).
    pub fd_reserve: Arc<fd_reserve::FdReserve>,
    /// The active alerts of the guard `serve` runs on this proxy (plain data, set from
    /// outside: the proxy never depends on the guard).
    pub alerts: std::sync::Mutex<Vec<ActiveAlert>>,
    /// The dashboard's page and its latest state document, set from outside like the alerts
    /// (the guard builds them; the admin API serves `/` and `/dashboard/state`).
    pub dashboard: std::sync::Mutex<Option<Dashboard>>,
    /// Closes the WebSocket tunnels at the end of a drain.
    pub tunnels: upgrade::Tunnels,
}

/// What the admin API serves as the dashboard: a page (one self-contained HTML file) and the
/// JSON it polls.
#[derive(Clone)]
pub(crate) struct Dashboard {
    pub page: &'static str,
    pub state: Arc<String>,
}

/// How to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seed for the balancers' random draws (power-of-two, random). Unset: from the OS.
    pub seed: Option<u64>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Load(String),
    #[error("the configuration has error-level findings and is not applied:\n{0}")]
    Refused(String),
    #[error("cannot bind {what} on {address}: {source}")]
    Bind {
        what: String,
        address: String,
        source: std::io::Error,
    },
    #[error("TLS on listener `{listener}`: {reason}")]
    Tls { listener: String, reason: String },
    #[error("cannot open {what} {path}: {source}")]
    Log {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied {
        version: String,
    },
    /// The file is byte-for-byte the running configuration.
    Unchanged {
        version: String,
    },
    /// Refused; the running configuration keeps serving. Reasons are rendered diagnostics.
    Refused {
        reasons: Vec<String>,
    },
}

/// What a rollback undoes and why: the guard of `serve` decides it and computes the diff
/// (the proxy does not depend on the guard or on ballast-diff).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollbackRequest {
    /// The version to undo: it must be the one running, or nothing happens.
    pub reverted: String,
    /// The alert (or regression) that decided it, and its pool.
    pub alertname: String,
    pub pool: String,
    /// One line, for the refusal of later reloads of the same version ("PoolSkewed fired on
    /// pool app: ...").
    pub reason: String,
    /// The figures that decided it, one line each.
    pub evidence: Vec<String>,
    /// The diff undone, one line each.
    pub changes: Vec<String>,
}

/// Computes the semantic diff between two configurations for `config_applied` (set by the
/// binary, which has ballast-diff).
pub type Differ = Arc<dyn Fn(&Loaded, &Loaded) -> Vec<String> + Send + Sync>;

/// A version the canary rolled back: later reloads of the same file content are refused.
#[derive(Debug, Clone)]
struct Reverted {
    version: String,
    message: String,
}

struct RunningListener {
    address: String,
    /// What the listener's TLS is (paths and file contents), to rebind when it changes.
    tls: Option<String>,
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A socket bound for a listener, with its TLS acceptor, not yet serving.
struct Bound {
    name: String,
    spec: ballast_core::config::Listener,
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

/// A running proxy.
pub struct Proxy {
    pub(crate) shared: Arc<Shared>,
    path: PathBuf,
    seed: u64,
    listeners: std::sync::Mutex<HashMap<String, RunningListener>>,
    checks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    admin: std::sync::Mutex<Option<(SocketAddr, watch::Sender<bool>)>>,
    reloading: tokio::sync::Mutex<()>,
    /// The configuration the running one replaced: what a rollback re-applies.
    previous: std::sync::Mutex<Option<Arc<Loaded>>>,
    reverted: std::sync::Mutex<Option<Reverted>>,
    differ: std::sync::Mutex<Option<Differ>>,
}

/// Error-level findings of the catalogue, rendered; empty when the configuration may go live.
fn blocking_findings(loaded: &Loaded) -> Vec<String> {
    ballast_check::check(loaded)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_diagnostic().render(Some(&loaded.source)))
        .collect()
}

/// Binds a listener; an address is shared only with this process's own sockets (a reload's
/// replacement), never with another process (see `bind`).
async fn bind(address: &str) -> std::io::Result<TcpListener> {
    bind::bind_listener(address).await
}

impl Proxy {
    /// Loads, checks and starts the configuration at `path`. A configuration with error-level
    /// findings is refused, as on reload.
    pub async fn start(path: &Path, options: Options) -> Result<Arc<Proxy>, StartError> {
        let loaded = load_file(path).map_err(|e| StartError::Load(e.render()))?;
        let blocking = blocking_findings(&loaded);
        if !blocking.is_empty() {
            return Err(StartError::Refused(blocking.join("\n")));
        }
        fd_reserve::raise_limit_and_warn(&loaded.config);
        let global = &loaded.config.global;
        let events =
            EventLog::open(global.event_log.as_deref().map(Path::new)).map_err(|source| {
                StartError::Log {
                    what: "event log",
                    path: global.event_log.clone().unwrap_or_default(),
                    source,
                }
            })?;
        let access_log = match &global.access_log {
            Some(p) => Some(
                AccessLog::open(Path::new(p)).map_err(|source| StartError::Log {
                    what: "access log",
                    path: p.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let seed = options.seed.unwrap_or_else(|| {
            use rand::Rng;
            rand::rng().next_u64()
        });
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(Arc::new(loaded), None, seed, &metrics);
        let version = snapshot.version.clone();
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            clock: Clock::new(),
            metrics,
            events,
            access_log,
            connections: Arc::default(),
            fd_reserve: fd_reserve::FdReserve::open(fd_reserve::SPARES),
            alerts: Default::default(),
            dashboard: Default::default(),
            tunnels: Default::default(),
        });
        let proxy = Arc::new(Proxy {
            shared,
            path: path.to_path_buf(),
            seed,
            listeners: Default::default(),
            checks: Default::default(),
            admin: Default::default(),
            reloading: tokio::sync::Mutex::new(()),
            previous: Default::default(),
            reverted: Default::default(),
            differ: Default::default(),
        });
        let snapshot = proxy.shared.snapshot.load_full();
        let mut bound = Vec::new();
        for (name, l) in &snapshot.loaded.config.listeners {
            let acceptor = match &l.tls {
                Some(t) => Some(tls::acceptor(t).map_err(|reason| StartError::Tls {
                    listener: name.clone(),
                    reason,
                })?),
                None => None,
            };
            let listener = bind(&l.address).await.map_err(|source| StartError::Bind {
                what: format!("listener `{name}`"),
                address: l.address.clone(),
                source,
            })?;
            bound.push(Bound {
                name: name.clone(),
                spec: l.clone(),
                listener,
                acceptor,
            });
        }
        for b in bound {
            proxy.spawn_listener(b);
        }
        if let Some(admin) = &snapshot.loaded.config.admin {
            let listener = bind(&admin.address)
                .await
                .map_err(|source| StartError::Bind {
                    what: "the admin API".into(),
                    address: admin.address.clone(),
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| StartError::Bind {
                what: "the admin API".into(),
                address: admin.address.clone(),
                source,
            })?;
            let (tx, rx) = watch::channel(false);
            tokio::spawn(admin::run(Arc::clone(&proxy), listener, rx));
            *proxy.admin.lock().unwrap_or_else(|p| p.into_inner()) = Some((local, tx));
        }
        *proxy.checks.lock().unwrap_or_else(|p| p.into_inner()) =
            health::start_checks(&proxy.shared, &snapshot);
        tokio::spawn(watch_servers(Arc::downgrade(&proxy.shared)));
        proxy.shared.events.emit(EventKind::ConfigApplied {
            version,
            previous: None,
            file: path.display().to_string(),
            changes: Vec::new(),
        });
        Ok(proxy)
    }

    fn spawn_listener(&self, b: Bound) {
        let local = b
            .listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = watch::channel(false);
        let shared = Arc::clone(&self.shared);
        let name = b.name;
        let task = match b.spec.protocol {
            Protocol::Http => tokio::spawn(http::run_listener(
                shared,
                name.clone(),
                b.listener,
                b.acceptor,
                rx,
            )),
            Protocol::Tcp => tokio::spawn(tcp::run_listener(shared, name.clone(), b.listener, rx)),
        };
        tracing::info!(listener = %name, %local, tls = b.spec.tls.is_some(), "listening");
        let running = RunningListener {
            address: b.spec.address.clone(),
            tls: b.spec.tls.as_ref().map(tls::fingerprint),
            local,
            stop: tx,
            task,
        };
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, running);
    }

    /// The address a listener is bound to (useful when the configuration says port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.lock().ok()?.get(name).map(|l| l.local)
    }

    /// The admin API's bound address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.lock().ok()?.as_ref().map(|a| a.0)
    }

    /// The running configuration, as loaded.
    pub fn loaded(&self) -> Arc<Loaded> {
        Arc::clone(&self.shared.snapshot.load().loaded)
    }

    /// The configuration the running one replaced (what [`Proxy::roll_back`] re-applies).
    pub fn previous_loaded(&self) -> Option<Arc<Loaded>> {
        self.previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The running configuration's version.
    pub fn version(&self) -> String {
        self.shared.snapshot.load().version.clone()
    }

    /// Re-reads the configuration file. Refused (and reported) when it cannot be loaded, has
    /// error-level findings, is the version the canary rolled back (until the file changes),
    /// or a new listener cannot bind; the running configuration then keeps serving untouched.
    /// Otherwise server state carries over by identity and only listeners whose address
    /// changed are rebound.
    pub async fn reload(self: &Arc<Self>) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().await;
        let running = self.shared.snapshot.load_full();
        let loaded = match load_file(&self.path) {
            Ok(l) => l,
            Err(e) => return self.refuse(&running, String::new(), vec![e.render()]),
        };
        let version = loaded.version();
        if version == running.version {
            return ReloadOutcome::Unchanged { version };
        }
        let refused = {
            let mut reverted = self.reverted.lock().unwrap_or_else(|p| p.into_inner());
            let same = reverted
                .as_ref()
                .filter(|r| r.version == version)
                .map(|r| r.message.clone());
            // The file changed since the rollback: a new version is judged afresh.
            if same.is_none() {
                *reverted = None;
            }
            same
        };
        if let Some(message) = refused {
            return self.refuse(&running, version, vec![message]);
        }
        self.apply(Arc::new(loaded), running, None).await
    }

    /// Re-applies the configuration the running one replaced, through the same path as a
    /// reload (checks, listeners, snapshot swap, health checks, `config_applied`), after
    /// writing `config_rolled_back`; later reloads of the reverted version are then refused
    /// until the file changes. Returns the restored version, or why nothing was done (the
    /// running version is not `request.reverted`, there is no previous configuration, or it
    /// was refused).
    pub async fn roll_back(self: &Arc<Self>, request: RollbackRequest) -> Result<String, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let running = self.shared.snapshot.load_full();
        if running.version != request.reverted {
            return Err(format!(
                "version {} is running, not {}: another reload came first",
                running.version, request.reverted
            ));
        }
        let Some(previous) = self
            .previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Err("no previous configuration to restore (the first one is running)".into());
        };
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let announce = EventKind::ConfigRolledBack {
            file: self.path.display().to_string(),
            reverted: request.reverted.clone(),
            restored: previous.version(),
            changes: request.changes.clone(),
            alertname: request.alertname.clone(),
            pool: request.pool.clone(),
            evidence: request.evidence.clone(),
        };
        match self.apply(previous, running, Some(announce)).await {
            ReloadOutcome::Applied { version } => {
                *self.reverted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Reverted {
                    version: request.reverted.clone(),
                    message: format!(
                        "version {} was rolled back at {} UTC because {}; edit the file to apply \
                         a new version",
                        request.reverted,
                        clock(at_ms),
                        request.reason
                    ),
                });
                Ok(version)
            }
            ReloadOutcome::Unchanged { version } => Err(format!("{version} is already running")),
            ReloadOutcome::Refused { reasons } => Err(reasons.join("\n")),
        }
    }

    /// Sets how `config_applied` gets its semantic diff (the binary has ballast-diff).
    pub fn set_differ(&self, differ: Differ) {
        *self.differ.lock().unwrap_or_else(|p| p.into_inner()) = Some(differ);
    }

    fn refuse(&self, running: &Snapshot, version: String, reasons: Vec<String>) -> ReloadOutcome {
        self.shared.events.emit(EventKind::ConfigRefused {
            version,
            running: Some(running.version.clone()),
            file: self.path.display().to_string(),
            reasons: reasons.clone(),
        });
        ReloadOutcome::Refused { reasons }
    }

    /// The one path by which a configuration goes live after start: a reload and a rollback
    /// alike. `announce` is written once nothing can refuse any more, before the swap.
    async fn apply(
        self: &Arc<Self>,
        loaded: Arc<Loaded>,
        running: Arc<Snapshot>,
        announce: Option<EventKind>,
    ) -> ReloadOutcome {
        let file = self.path.display().to_string();
        let refuse =
            |version: String, reasons: Vec<String>| self.refuse(&running, version, reasons);
        let version = loaded.version();
        if version == running.version {
            return ReloadOutcome::Unchanged { version };
        }
        let blocking = blocking_findings(&loaded);
        if !blocking.is_empty() {
            return refuse(version, blocking);
        }
        // Bind what is new before anything changes, so a bind failure refuses cleanly.
        let mut fresh = Vec::new();
        {
            let current: HashMap<String, (String, Option<String>)> = self
                .listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(n, l)| (n.clone(), (l.address.clone(), l.tls.clone())))
                .collect();
            for (name, l) in &loaded.config.listeners {
                let identity = (l.address.clone(), l.tls.as_ref().map(tls::fingerprint));
                let changed = current.get(name) != Some(&identity)
                    || running
                        .loaded
                        .config
                        .listeners
                        .get(name)
                        .map(|o| o.protocol)
                        != Some(l.protocol);
                if !changed {
                    continue;
                }
                let acceptor = match &l.tls {
                    Some(t) => match tls::acceptor(t) {
                        Ok(a) => Some(a),
                        Err(reason) => {
                            return refuse(version, vec![format!("listener `{name}`: {reason}")]);
                        }
                    },
                    None => None,
                };
                // A listener keeping its address while its TLS changes is rebound on the same
                // address: sockets are bound with SO_REUSEPORT, so the new one binds while the
                // old one still serves, and a failure still refuses the reload.
                match bind(&l.address).await {
                    Ok(listener) => fresh.push(Bound {
                        name: name.clone(),
                        spec: l.clone(),
                        listener,
                        acceptor,
                    }),
                    Err(e) => {
                        return refuse(
                            version,
                            vec![format!("listener `{name}` cannot bind {}: {e}", l.address)],
                        );
                    }
                }
            }
        }
        let differ = self
            .differ
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let changes = differ.map_or_else(Vec::new, |d| d(&running.loaded, &loaded));
        if let Some(event) = announce {
            self.shared.events.emit(event);
        }
        let snapshot = Arc::new(Snapshot::build(
            loaded,
            Some(&running),
            self.seed,
            &self.shared.metrics,
        ));
        self.shared.snapshot.store(Arc::clone(&snapshot));
        *self.previous.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::clone(&running.loaded));
        // Stop listeners that were removed or are being replaced.
        {
            let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let replaced: Vec<String> = fresh.iter().map(|f| f.name.clone()).collect();
            listeners.retain(|name, l| {
                let keep =
                    snapshot.loaded.config.listeners.contains_key(name) && !replaced.contains(name);
                if !keep {
                    let _ = l.stop.send(true);
                }
                keep
            });
        }
        for b in fresh {
            self.spawn_listener(b);
        }
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        for task in checks.drain(..) {
            task.abort();
        }
        *checks = health::start_checks(&self.shared, &snapshot);
        drop(checks);
        fd_reserve::warn_on_reload(&snapshot.loaded.config);
        self.shared.events.emit(EventKind::ConfigApplied {
            version: version.clone(),
            previous: Some(running.version.clone()),
            file,
            changes,
        });
        ReloadOutcome::Applied { version }
    }

    /// Stops accepting, lets open connections finish their requests, and returns when they
    /// have or `grace` has passed. Returns the number of connections still open.
    pub async fn drain(&self, grace: Duration) -> u32 {
        for l in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = l.stop.send(true);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.connections.global() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Tunnels (WebSocket) run until they close or the drain's deadline: that is now.
        self.shared.tunnels.close_all();
        for task in self
            .checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        if let Some((_, stop)) = self.admin.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(true);
        }
        for l in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            l.task.abort();
        }
        self.shared.connections.global()
    }

    /// The current `/status` document.
    pub fn status(&self) -> serde_json::Value {
        status::status(
            &self.shared.snapshot.load(),
            self.shared.events.recent(),
            &self.alerts(),
        )
    }

    /// Replaces the active alerts shown in `/status` and `/metrics` (`ballast_alerts`): the
    /// guard that judges this proxy's samples hands them back here each round.
    pub fn set_alerts(&self, alerts: Vec<ActiveAlert>) {
        *self.shared.alerts.lock().unwrap_or_else(|p| p.into_inner()) = alerts;
    }

    /// The active alerts last set by [`Proxy::set_alerts`].
    pub fn alerts(&self) -> Vec<ActiveAlert> {
        self.shared
            .alerts
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Sets the dashboard the admin API serves: `page` at `/` and `state_json` at
    /// `/dashboard/state`. The guard inside `serve` hands them over each round, as it does the
    /// alerts; until it does, `/` answers 404 with the reason.
    pub fn set_dashboard(&self, page: &'static str, state_json: String) {
        *self
            .shared
            .dashboard
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Dashboard {
            page,
            state: Arc::new(state_json),
        });
    }

    /// Appends an event from outside the proxy (the guard's alerts) to its event log, with
    /// the time it carries.
    pub fn record_event(&self, event: Event) {
        self.shared.events.record(event);
    }

    /// Recent events, oldest first.
    pub fn events(&self) -> Vec<ballast_core::event::Event> {
        self.shared.events.recent()
    }

    /// The guard's sample of this proxy now, from its own counters; `instance` is its admin
    /// address (or `ballast` when it has none).
    pub fn sample(&self) -> ballast_core::sample::Sample {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let instance = self
            .admin
            .lock()
            .ok()
            .and_then(|a| a.as_ref().map(|(addr, _)| addr.to_string()))
            .unwrap_or_else(|| "ballast".into());
        sample::sample(&self.shared, at_ms, &instance)
    }
}

/// `HH:MM:SS` of a Unix time in ms, UTC (as the guard's cause statements write it).
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Reports when a saturated server has room again, and samples pick counts once a second for
/// the recent shares.
async fn watch_servers(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let snapshot = shared.snapshot.load();
        for pool in snapshot.pools.values() {
            for s in &pool.servers {
                let st = &s.state;
                if ticks.is_multiple_of(4) {
                    st.sample_picks();
                    st.sample_latency();
                }
                if st.saturated.load(Ordering::Acquire)
                    && st.in_flight.load(Ordering::Acquire) < s.limit
                    && st.queued.load(Ordering::Acquire) == 0
                    && st.saturated.swap(false, Ordering::AcqRel)
                {
                    shared.events.emit(EventKind::SaturationEnded {
                        pool: pool.name.clone(),
                        server: s.spec.name.clone(),
                    });
                }
            }
        }
    }
}
