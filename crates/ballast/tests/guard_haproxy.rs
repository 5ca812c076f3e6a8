//! `ballast watch` end to end against a real HAProxy 2.6 and a real Alertmanager on loopback.
//! Each outage class is made by the test on a running HAProxy — (a) `set weight` over the
//! runtime API, (b) hashing on a header with one value, (c) `maxconn 2` with slow backends and
//! 20 concurrent clients, (d) `disable server`, (e) a risky edit reloaded with `haproxy -sf` —
//! and the alert is read back from Alertmanager's `GET /api/v2/alerts`: its labels, its
//! `cause`, and the time from the fault to the alert being visible there, printed as
//! `GUARD-TIMING source=haproxy class=<c> alert=<name> seconds=<x.y>`. A healthy run (random
//! gaps, a low and a high rate over round-robin) must raise nothing at all.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::clients::ClientThreads;
use common::watch::JsonLinesChild;
use common::{Alertmanager, Backend, Noise, PeerGroup, haproxy, http, loopback, wait_for_port};
use serde_json::Value;

const ALERTMANAGER: &str = "prometheus-alertmanager";
/// The target with 1 s sampling: fault to alert at Alertmanager.
const TARGET: Duration = Duration::from_secs(10);
/// How long the test waits for an alert before it gives up (past the target, so a late alert
/// is measured and reported, not just missing).
const GIVE_UP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// HAProxy

/// A real HAProxy: frontend `web` → backend `app`, an admin-level stats socket, its
/// configuration file in a temp dir (edited and reloaded by class (e)).
struct Haproxy {
    peer: PeerGroup,
    /// Processes replaced by a reload, left to finish their soft stop; stopped on drop.
    replaced: Vec<PeerGroup>,
    config: PathBuf,
    socket: PathBuf,
    front: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with `app`'s body (`balance ...` and `server` lines).
    fn start(app: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("a temp dir");
        let socket = dir.path().join("admin.sock");
        let front: SocketAddr = loopback();
        let config = dir.path().join("haproxy.cfg");
        write_config(&config, &socket, front, app);
        let h = Haproxy {
            peer: haproxy::spawn(&config, None),
            replaced: Vec::new(),
            config,
            socket,
            front,
            _dir: dir,
        };
        assert!(
            wait_for_port(h.front, Duration::from_secs(5)),
            "HAProxy did not listen on {}",
            h.front
        );
        haproxy::wait_for_socket(&h.socket, Duration::from_secs(5));
        h
    }

    /// Rewrites the configuration file with `app`'s body (not yet loaded).
    fn edit(&self, app: &str) {
        write_config(&self.config, &self.socket, self.front, app);
    }

    /// `haproxy -sf OLD`: a new process reads the file and takes over; waits until the stats
    /// socket answers from the new process.
    fn reload(&mut self) {
        let old_pid = self.pid();
        let new = haproxy::spawn(&self.config, Some(self.peer.id()));
        let old = std::mem::replace(&mut self.peer, new);
        self.replaced.push(old);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.try_pid().is_none_or(|p| p == old_pid) {
            assert!(Instant::now() < deadline, "the reload never took over");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> String {
        self.try_pid().expect("HAProxy's pid from `show info`")
    }

    fn try_pid(&self) -> Option<String> {
        haproxy::pid(&self.socket)
    }

    fn try_command(&self, command: &str) -> Option<String> {
        haproxy::command(&self.socket, command)
    }

    /// A runtime API command; HAProxy answers an accepted `set`/`disable` with an empty line.
    fn runtime(&self, command: &str) {
        let reply = self
            .try_command(command)
            .unwrap_or_else(|| panic!("`{command}` over the stats socket"));
        assert!(
            reply.trim().is_empty(),
            "HAProxy refused `{command}`: {reply}"
        );
    }

    /// The `instance` label `ballast watch` gives this HAProxy: its socket as given.
    fn instance(&self) -> String {
        self.socket.display().to_string()
    }
}

/// Writes the whole configuration with `app`'s body, checked by `haproxy -c` first.
fn write_config(config: &Path, socket: &Path, front: SocketAddr, app: &str) {
    let text = format!(
        "global\n    stats socket {sock} mode 600 level admin\n    maxconn 500\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    \
         timeout server 10s\n    timeout queue 10s\n\
         frontend web\n    bind {front}\n    default_backend app\n\
         backend app\n{app}",
        sock = socket.display(),
    );
    haproxy::write_checked(config, &text);
}

/// `balance` and one `server` line per backend, each with `extra[i]`.
fn app_section(balance: &str, backends: &[Backend], extra: &[&str]) -> String {
    let mut text = format!("    balance {balance}\n");
    for (b, e) in backends.iter().zip(extra) {
        text.push_str(&format!("    server {} {} {e}\n", b.name, b.addr));
    }
    text
}

fn backends(delay: Duration) -> Vec<Backend> {
    ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start_with_delay(n, delay))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

impl common::Alertmanager {
    /// Polls until an alert named `alertname` from `instance` that `wanted` accepts is
    /// visible, measured from `fault`; prints the `GUARD-TIMING` line, and fails past the
    /// target.
    fn wait_for(
        &self,
        class: &str,
        instance: &str,
        alertname: &str,
        fault: Instant,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        loop {
            let alerts = self.alerts();
            if let Some(a) = alerts.iter().find(|a| {
                label(a, "alertname") == alertname && label(a, "instance") == instance && wanted(a)
            }) {
                let seconds = fault.elapsed().as_secs_f64();
                eprintln!(
                    "GUARD-TIMING source=haproxy class={class} alert={alertname} seconds={seconds:.1}"
                );
                assert!(
                    fault.elapsed() <= TARGET,
                    "class {class}: {alertname} took {seconds:.1} s, past the {TARGET:?} target"
                );
                return a.clone();
            }
            assert!(
                fault.elapsed() < GIVE_UP,
                "class {class}: no {alertname} from {instance} at Alertmanager within {GIVE_UP:?}; \
                 it holds {}",
                summary(&alerts)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or("")
}

fn annotation<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["annotations"][name].as_str().unwrap_or("")
}

/// Alerts in a line each, for failure messages.
fn summary(alerts: &[Value]) -> String {
    if alerts.is_empty() {
        return "no alert".into();
    }
    alerts
        .iter()
        .map(|a| {
            format!(
                "\n  {} {} server={} — {}",
                label(a, "alertname"),
                label(a, "severity"),
                label(a, "server"),
                annotation(a, "summary")
            )
        })
        .collect()
}

/// Checks the labels every alert of this file carries.
fn assert_labels(alert: &Value, severity: &str, server: Option<&str>, instance: &str) {
    let shown = alert.to_string();
    assert_eq!(label(alert, "severity"), severity, "{shown}");
    assert_eq!(label(alert, "pool"), "app", "{shown}");
    assert_eq!(label(alert, "source"), "haproxy", "{shown}");
    assert_eq!(label(alert, "instance"), instance, "{shown}");
    match server {
        Some(s) => assert_eq!(label(alert, "server"), s, "{shown}"),
        None => assert!(alert["labels"].get("server").is_none(), "{shown}"),
    }
    assert!(
        annotation(alert, "runbook").contains("runbook.md#"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------------
// ballast watch

/// `ballast watch` as a child process, its JSON lines collected; killed on drop.
struct Watch(JsonLinesChild);

impl Watch {
    fn start(h: &Haproxy, am: &Alertmanager, with_config: bool, duration: Duration) -> Watch {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
        command
            .arg("watch")
            .arg(format!("haproxy:{}", h.socket.display()))
            .args(["--alertmanager", &am.url()])
            .args(["--format", "json", "--interval", "1s"])
            .arg(format!("--duration={}s", duration.as_secs()));
        if with_config {
            command.arg("--config").arg(&h.config);
        }
        let w = Watch(JsonLinesChild::spawn(command));
        // Its first sample: the history (and the configuration) read before any fault.
        w.0.wait_for_record("sample", Duration::from_secs(10));
        w
    }

    fn of_type(&self, kind: &str) -> Vec<Value> {
        self.0.records(kind)
    }

    /// Waits for the process to end by its `--duration`; gives its exit code and every line
    /// it wrote.
    fn finish(self, within: Duration) -> (i32, Vec<Value>) {
        self.0.finish(within)
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic

/// What each request's `x-tenant` header is.
const NO_TENANT: u8 = 0;
/// One of a thousand tenants, at random: a hashed pool spreads them.
const MANY_TENANTS: u8 = 1;
/// Every request from one tenant.
const ONE_TENANT: u8 = 2;

/// Clients sending requests to HAProxy, each on its own connection, with random
/// (exponential) gaps of mean `gap` — Poisson-ish arrivals — until stopped or `bound`.
struct Traffic {
    tenants: Arc<AtomicU8>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    clients: ClientThreads,
}

impl Traffic {
    fn start(front: SocketAddr, clients: usize, gap: Duration, bound: Duration) -> Traffic {
        let t = Traffic {
            tenants: Arc::new(AtomicU8::new(NO_TENANT)),
            ok: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            clients: ClientThreads::new(),
        };
        t.more(front, clients, gap, bound)
    }

    /// Adds `clients` more to the running traffic.
    fn more(mut self, front: SocketAddr, clients: usize, gap: Duration, bound: Duration) -> Self {
        let started = self.clients.len() as u64;
        let (tenants, ok, failed) = (&self.tenants, &self.ok, &self.failed);
        self.clients.spawn(clients, bound, |i| {
            let (tenants, ok, failed) = (tenants.clone(), ok.clone(), failed.clone());
            let mut rng = Noise::from_clock(i as u64 + started * 7919);
            move || {
                let tenant = match tenants.load(Ordering::Relaxed) {
                    MANY_TENANTS => Some(format!("tenant-{}", rng.below(1000))),
                    ONE_TENANT => Some("tenant-big".to_string()),
                    _ => None,
                };
                if request(front, tenant.as_deref()) == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if !gap.is_zero() {
                    std::thread::sleep(gap.mul_f64(rng.exponential()));
                }
            }
        });
        self
    }

    fn set_tenants(&self, mode: u8) {
        self.tenants.store(mode, Ordering::Relaxed);
    }

    /// Stops every client; gives (answered 200, failed).
    fn stop(mut self) -> (u64, u64) {
        self.clients.stop();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One GET through HAProxy on a new connection; its status (0 when it failed).
fn request(front: SocketAddr, tenant: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
    http::exchange(front, "GET", "/", &headers, "", Duration::from_secs(15)).status
}

fn served(backends: &[Backend]) -> Vec<u64> {
    backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .collect()
}

/// Every alert Alertmanager holds is one of `expected`: the fault raised nothing else.
fn assert_only(am: &Alertmanager, class: &str, expected: &[&str]) {
    let alerts = am.alerts();
    let stray: Vec<Value> = alerts
        .iter()
        .filter(|a| !expected.contains(&label(a, "alertname")))
        .cloned()
        .collect();
    assert!(
        stray.is_empty(),
        "class {class}: alerts besides {expected:?}: {}",
        summary(&stray)
    );
}

/// No alert yet from `instance`: what follows is the fault's doing.
fn assert_quiet_before_fault(am: &Alertmanager, class: &str) {
    let alerts = am.alerts();
    assert!(
        alerts.is_empty(),
        "class {class}: alerts before the fault: {}",
        summary(&alerts)
    );
}

// ---------------------------------------------------------------------------------------------
// (a) weights that send most traffic to one server

fn a_runtime_weight(class: &str, with_config: bool) {
    if !common::peer_available("haproxy") || !common::peer_available(ALERTMANAGER) {
        return;
    }
    let b = backends(Duration::ZERO);
    let h = Haproxy::start(&app_section(
        "roundrobin",
        &b,
        &["weight 1", "weight 1", "weight 1"],
    ));
    let am = Alertmanager::start_holding();
    let watch = Watch::start(&h, &am, with_config, Duration::from_secs(25));
    let traffic = Traffic::start(
        h.front,
        4,
        Duration::from_millis(40),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_quiet_before_fault(&am, class);

    let fault = Instant::now();
    h.runtime("set weight app/s3 8");
    let alert = am.wait_for(class, &h.instance(), "PoolSharesShifted", fault, |_| true);
    // 1,1,1 → 1,1,8: s3 promised 80% instead of 33%, 47 points.
    assert_labels(&alert, "critical", Some("s3"), &h.instance());
    let cause = annotation(&alert, "cause");
    assert!(
        cause.starts_with("It is the load balancer's distribution"),
        "{cause}"
    );
    assert!(cause.contains("weight of s3 1 → 8"), "{cause}");
    assert!(
        cause.contains("80% of its traffic instead of 33%"),
        "{cause}"
    );
    let against = if with_config {
        "the configuration file"
    } else {
        "the start of the history"
    };
    assert!(
        annotation(&alert, "description").contains(against),
        "{}",
        annotation(&alert, "description")
    );
    // The traffic follows the new weights: that is no skew of the distribution.
    std::thread::sleep(Duration::from_secs(3));
    let before = served(&b);
    std::thread::sleep(Duration::from_secs(1));
    let after = served(&b);
    let sent: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        sent[2] * 10 >= sent.iter().sum::<u64>() * 6,
        "s3 takes most after `set weight`: {sent:?}"
    );
    let alerts = am.alerts();
    assert!(
        !alerts.iter().any(|a| label(a, "alertname") == "PoolSkewed"),
        "traffic as the live weights promise is not a skew: {}",
        summary(&alerts)
    );
    assert_only(&am, class, &["PoolSharesShifted"]);
    let (ok, failed) = traffic.stop();
    assert!(ok > 500 && failed == 0, "{ok} answered, {failed} failed");
    let fired: Vec<Value> = watch
        .of_type("alert")
        .into_iter()
        .filter(|a| label(a, "alertname") == "PoolSharesShifted")
        .collect();
    assert!(
        fired.iter().any(|a| a["state"] == "firing"),
        "the JSON output has the firing alert too: {fired:?}"
    );
}

#[test]
fn a_runtime_set_weight_shifts_the_shares_against_the_configuration() {
    a_runtime_weight("a-weight-config", true);
}

#[test]
fn a_runtime_set_weight_shifts_the_shares_against_the_history_without_a_configuration() {
    a_runtime_weight("a-weight-history", false);
}

// ---------------------------------------------------------------------------------------------
// (b) hashing on a key with few values

#[test]
fn b_a_hashed_pool_with_one_header_value_is_skewed() {
    let class = "b-hash-one-key";
    if !common::peer_available("haproxy") || !common::peer_available(ALERTMANAGER) {
        return;
    }
    let b = backends(Duration::ZERO);
    let h = Haproxy::start(&app_section("hdr(x-tenant)", &b, &["", "", ""]));
    let am = Alertmanager::start_holding();
    let watch = Watch::start(&h, &am, true, Duration::from_secs(25));
    let traffic = Traffic::start(
        h.front,
        4,
        Duration::from_millis(30),
        Duration::from_secs(20),
    );
    traffic.set_tenants(MANY_TENANTS);
    // A full window of a thousand tenants hashed over three servers: judged and fair.
    std::thread::sleep(Duration::from_secs(7));
    assert_quiet_before_fault(&am, class);

    let before = served(&b);
    let fault = Instant::now();
    traffic.set_tenants(ONE_TENANT);
    let alert = am.wait_for(class, &h.instance(), "PoolSkewed", fault, |_| true);
    let after = served(&b);
    let sent: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let hot = (0..3).max_by_key(|&i| sent[i]).unwrap();
    assert!(
        sent[hot] * 10 >= sent.iter().sum::<u64>() * 9,
        "one tenant, one server: {sent:?}"
    );
    // One key on three servers: R = 3, past the hashing band's critical 2.5.
    assert_labels(&alert, "critical", Some(&b[hot].name), &h.instance());
    let cause = annotation(&alert, "cause");
    assert!(
        cause.starts_with("It is the load balancer's distribution"),
        "{cause}"
    );
    assert!(cause.contains(&b[hot].name), "{cause}");
    // What the data rules out: the other servers answer as fast as before.
    assert!(
        cause.contains("The other servers' latency is normal"),
        "{cause}"
    );
    assert_only(&am, class, &["PoolSkewed"]);
    let (ok, failed) = traffic.stop();
    assert!(ok > 300 && failed == 0, "{ok} answered, {failed} failed");
    assert!(
        watch
            .of_type("alert")
            .iter()
            .any(|a| label(a, "alertname") == "PoolSkewed"),
        "the JSON output has the alert too"
    );
}

// ---------------------------------------------------------------------------------------------
// (c) a connection limit far below the traffic

#[test]
fn c_maxconn_2_with_slow_backends_and_20_clients_is_at_the_limit() {
    let class = "c-maxconn";
    if !common::peer_available("haproxy") || !common::peer_available(ALERTMANAGER) {
        return;
    }
    let b = backends(Duration::from_millis(200));
    let h = Haproxy::start(&app_section(
        "roundrobin",
        &b,
        &["maxconn 2", "maxconn 2", "maxconn 2"],
    ));
    let am = Alertmanager::start_holding();
    let _watch = Watch::start(&h, &am, true, Duration::from_secs(20));
    // One slow client: never more than one in flight, far from the limit.
    let traffic = Traffic::start(
        h.front,
        1,
        Duration::from_millis(200),
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_quiet_before_fault(&am, class);

    let fault = Instant::now();
    let traffic = traffic.more(h.front, 20, Duration::ZERO, Duration::from_secs(8));
    let alert = am.wait_for(
        class,
        &h.instance(),
        "ServerAtConnectionLimit",
        fault,
        |_| true,
    );
    let server = label(&alert, "server").to_string();
    assert!(["s1", "s2", "s3"].contains(&server.as_str()), "{alert}");
    assert_labels(&alert, "critical", Some(&server), &h.instance());
    let cause = annotation(&alert, "cause");
    assert!(
        cause.starts_with("It is the load balancer's limits"),
        "{cause}"
    );
    assert!(cause.contains("2 of 2 sessions"), "{cause}");
    // Every server is full: the pool has no room (a capacity problem, not a skew).
    let saturated = am.wait_for(class, &h.instance(), "PoolSaturated", fault, |_| true);
    assert_labels(&saturated, "critical", None, &h.instance());
    let alerts = am.alerts();
    assert!(
        !alerts.iter().any(|a| label(a, "alertname") == "PoolSkewed"),
        "round-robin at its limit is no skew: {}",
        summary(&alerts)
    );
    assert_only(&am, class, &["ServerAtConnectionLimit", "PoolSaturated"]);
    let (ok, failed) = traffic.stop();
    assert!(ok > 20, "{ok} answered, {failed} failed");
}

// ---------------------------------------------------------------------------------------------
// (d) a server taken out

#[test]
fn d_a_disabled_server_concentrates_load_on_the_rest() {
    let class = "d-disable-server";
    if !common::peer_available("haproxy") || !common::peer_available(ALERTMANAGER) {
        return;
    }
    let b = backends(Duration::ZERO);
    let h = Haproxy::start(&app_section(
        "roundrobin",
        &b,
        &["weight 1", "weight 1", "weight 1"],
    ));
    let am = Alertmanager::start_holding();
    let _watch = Watch::start(&h, &am, true, Duration::from_secs(20));
    let traffic = Traffic::start(
        h.front,
        4,
        Duration::from_millis(40),
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_quiet_before_fault(&am, class);

    let fault = Instant::now();
    h.runtime("disable server app/s2");
    let alert = am.wait_for(class, &h.instance(), "PoolSharesShifted", fault, |_| true);
    // s1 and s3 go from 33% to 50%: 17 points, a warning; either may be named.
    let server = label(&alert, "server").to_string();
    assert!(["s1", "s3"].contains(&server.as_str()), "{alert}");
    assert_labels(&alert, "warning", Some(&server), &h.instance());
    let cause = annotation(&alert, "cause");
    assert!(
        cause.starts_with("It is the load balancer's distribution"),
        "{cause}"
    );
    assert!(cause.contains("s2 in maintenance"), "{cause}");
    assert!(
        cause.contains("50% of its traffic instead of 33%"),
        "{cause}"
    );
    assert_only(&am, class, &["PoolSharesShifted"]);
    let (ok, failed) = traffic.stop();
    assert!(ok > 300 && failed == 0, "{ok} answered, {failed} failed");
}

// ---------------------------------------------------------------------------------------------
// (e) a reload with a bad change

#[test]
fn e_a_risky_edit_reloaded_fires_at_once_and_is_named_as_the_trigger() {
    let class = "e-reload";
    if !common::peer_available("haproxy") || !common::peer_available(ALERTMANAGER) {
        return;
    }
    // Each server can hold 6; nine clients spread by round-robin hold about 3 on each.
    let b = backends(Duration::from_millis(100));
    let before = [
        "weight 1 maxconn 6",
        "weight 1 maxconn 6",
        "weight 1 maxconn 6",
    ];
    let mut h = Haproxy::start(&app_section("roundrobin", &b, &before));
    let am = Alertmanager::start_holding();
    let watch = Watch::start(&h, &am, true, Duration::from_secs(25));
    let traffic = Traffic::start(h.front, 9, Duration::ZERO, Duration::from_secs(18));
    std::thread::sleep(Duration::from_secs(4));
    assert_quiet_before_fault(&am, class);

    let fault = Instant::now();
    let after = [
        "weight 1 maxconn 6",
        "weight 1 maxconn 6",
        "weight 8 maxconn 6",
    ];
    h.edit(&app_section("roundrobin", &b, &after));
    h.reload();
    let change = am.wait_for(class, &h.instance(), "ConfigChangeRisky", fault, |_| true);
    // No `check` finding is added (the servers had none before either): a warning, for the
    // share the new weights promise s3.
    assert_labels(&change, "warning", None, &h.instance());
    let cause = annotation(&change, "cause");
    assert!(
        cause.starts_with("It is the load balancer's distribution"),
        "{cause}"
    );
    assert!(cause.contains("weight of server s3: 1 → 8"), "{cause}");
    assert!(
        cause.contains("moves a server's predicted share by 47 points"),
        "{cause}"
    );
    assert!(!cause.contains("check finding"), "{cause}");
    assert!(
        annotation(&change, "description").contains("s3 33% → 80%"),
        "{}",
        annotation(&change, "description")
    );
    assert!(cause.contains(&h.config.display().to_string()), "{cause}");

    // Now s3 is sent 80% of the requests: its 6 connections fill, and that alert names the
    // change (and the reload that made it live) as its trigger.
    let full = am.wait_for(
        class,
        &h.instance(),
        "ServerAtConnectionLimit",
        fault,
        |a| label(a, "server") == "s3",
    );
    assert_labels(&full, "critical", Some("s3"), &h.instance());
    let cause = annotation(&full, "cause");
    assert!(
        cause.starts_with("It is the load balancer's limits"),
        "{cause}"
    );
    assert!(
        cause.contains("Likely trigger: the configuration change of"),
        "{cause}"
    );
    assert!(cause.contains("weight of server s3: 1 → 8"), "{cause}");
    assert!(cause.contains("live since the reload of"), "{cause}");
    assert_only(
        &am,
        class,
        &["ConfigChangeRisky", "ServerAtConnectionLimit"],
    );
    let (ok, failed) = traffic.stop();
    assert!(ok > 100, "{ok} answered, {failed} failed");
    assert!(
        !watch.of_type("config_change").is_empty() && !watch.of_type("reload").is_empty(),
        "the JSON output has the change and the reload"
    );
}

// ---------------------------------------------------------------------------------------------
// A healthy run

#[test]
fn healthy_random_traffic_at_a_low_and_a_high_rate_raises_nothing() {
    if !common::peer_available("haproxy") || !common::peer_available(ALERTMANAGER) {
        return;
    }
    let b = backends(Duration::ZERO);
    let h = Haproxy::start(&app_section(
        "roundrobin",
        &b,
        &[
            "weight 1 maxconn 50",
            "weight 1 maxconn 50",
            "weight 1 maxconn 50",
        ],
    ));
    let am = Alertmanager::start_holding();
    let watch = Watch::start(&h, &am, true, Duration::from_secs(32));
    // Low: about 5 requests a second, too few to judge most windows.
    let low = Traffic::start(
        h.front,
        2,
        Duration::from_millis(400),
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(15));
    let (low_ok, low_failed) = low.stop();
    // High: about 200 a second.
    let high = Traffic::start(
        h.front,
        8,
        Duration::from_millis(40),
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(15));
    let (high_ok, high_failed) = high.stop();
    assert!(
        low_ok >= 30 && low_failed == 0,
        "low: {low_ok} answered, {low_failed} failed"
    );
    assert!(
        high_ok >= 1500 && high_failed == 0,
        "high: {high_ok} answered, {high_failed} failed"
    );
    let counted: u64 = served(&b).iter().sum();
    assert_eq!(counted, low_ok + high_ok);
    let alerts = am.alerts();
    assert!(alerts.is_empty(), "a healthy run: {}", summary(&alerts));
    let (code, lines) = watch.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "ballast watch exits 0 when no alert fires");
    let samples = lines.iter().filter(|l| l["type"] == "sample").count();
    assert!(samples >= 28, "one sample a second for 32 s: {samples}");
    let alert_lines: Vec<&Value> = lines.iter().filter(|l| l["type"] == "alert").collect();
    assert!(alert_lines.is_empty(), "a healthy run: {alert_lines:?}");
    let alerts = am.alerts();
    assert!(alerts.is_empty(), "a healthy run: {}", summary(&alerts));
}

// ---------------------------------------------------------------------------------------------
// `watch --once`: the incident checklist's first question, on a HAProxy skewed at run time

#[test]
fn once_on_a_runtime_skewed_haproxy_names_pool_server_size_and_since_when() {
    if !common::peer_available("haproxy") {
        return;
    }
    let b = backends(Duration::ZERO);
    let h = Haproxy::start(&app_section(
        "roundrobin",
        &b,
        &["weight 1", "weight 1", "weight 1"],
    ));
    let traffic = Traffic::start(
        h.front,
        4,
        Duration::from_millis(40),
        Duration::from_secs(15),
    );
    // Two runtime changes no file records: s2 into maintenance (HAProxy dates it, `lastchg`),
    // s3's weight set to 5 (HAProxy does not date it: only its process start bounds it).
    h.runtime("disable server app/s2");
    h.runtime("set weight app/s3 5");
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .arg("watch")
        .arg("--once")
        .args(["--window", "3s", "--interval", "1s"])
        .arg("--config")
        .arg(&h.config)
        .arg(format!("haproxy:{}", h.socket.display()))
        .output()
        .expect("run ballast watch --once");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "it is the load balancer:\n{text}"
    );
    assert!(took < Duration::from_secs(10), "--once took {took:?}");
    // Which pool, which server, by how much: s3 promised 83% instead of 33%.
    assert!(text.contains("PoolSharesShifted"), "{text}");
    assert!(text.contains("pool app"), "{text}");
    assert!(
        text.contains("s3 83% of its traffic instead of 33%"),
        "{text}"
    );
    // Since when: the maintenance by HAProxy's own clock, the weight bounded by the process.
    let since = text
        .split("s2 in maintenance for ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|secs| secs.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no dated maintenance in:\n{text}"));
    assert!(
        (3..=12).contains(&since),
        "s2 in maintenance for {since} s:\n{text}"
    );
    assert!(text.contains("weight of s3 1 → 5"), "{text}");
    assert!(
        text.contains("The weights were set at run time")
            && text.contains("after the process started at"),
        "{text}"
    );
    let (ok, failed) = traffic.stop();
    assert!(ok > 50 && failed == 0, "{ok} answered, {failed} failed");
}
