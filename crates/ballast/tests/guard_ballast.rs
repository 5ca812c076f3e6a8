//! The guard end to end against ballast itself: a real `ballast serve` on loopback with named
//! backends, watched by a real `ballast watch ballast:ADMIN` (and, for the last test, judged by
//! the guard inside `serve` with no watch at all), alerting a real Alertmanager. For each
//! outage class the test makes the fault, measures the time until the alert is listed by
//! Alertmanager's `GET /api/v2/alerts`, and checks its labels and its `cause`. A healthy run
//! over round-robin pools raises nothing.
//!
//! Timings are printed as `GUARD-TIMING source=ballast class=<c> alert=<name> seconds=<x.y>`.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::clients::ClientThreads;
use common::http::{get, request};
use common::serve::{ServeProcess, server_entries};
use common::{
    Alertmanager, Backend, Noise, PeerGroup, WebhookReceiver, loopback, peer_available, wait_until,
};

const ALERTMANAGER: &str = "prometheus-alertmanager";
const TOKEN: &str = "e2e-guard-token-0123456789";
/// The target with 1 s sampling.
const TARGET: Duration = Duration::from_secs(10);

/// Client threads sending requests to a listener until stopped (or `bound` passes), each
/// waiting a random (exponential) gap of `mean_gap` between its requests. The header they
/// send can be changed while they run.
struct Clients {
    header: Arc<Mutex<Option<(String, String)>>>,
    ok: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
    _threads: ClientThreads,
}

impl Clients {
    fn start(addr: SocketAddr, threads: usize, mean_gap: Duration, bound: Duration) -> Clients {
        let header: Arc<Mutex<Option<(String, String)>>> = Arc::default();
        let ok = Arc::new(AtomicU64::new(0));
        let unavailable = Arc::new(AtomicU64::new(0));
        let mut set = ClientThreads::new();
        set.spawn(threads, bound, |i| {
            let (header, ok, unavailable) = (header.clone(), ok.clone(), unavailable.clone());
            let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) * 0x2545_f491));
            move || {
                let header = header.lock().unwrap().clone();
                let headers: Vec<(&str, &str)> = header
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                match request(addr, "GET", "/", &headers).0 {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    503 => unavailable.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                std::thread::sleep(noise.gap(mean_gap));
            }
        });
        Clients {
            header,
            ok,
            unavailable,
            _threads: set,
        }
    }

    fn set_header(&self, value: Option<(&str, &str)>) {
        *self.header.lock().unwrap() = value.map(|(n, v)| (n.to_string(), v.to_string()));
    }
}

impl common::Alertmanager {
    /// Every alert it lists from this instance.
    fn alerts_of(&self, instance: &str) -> Vec<Value> {
        let (status, body) = get(self.addr, "/api/v2/alerts");
        assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
        let alerts: Vec<Value> = serde_json::from_str(&body).expect("a JSON array of alerts");
        alerts
            .into_iter()
            .filter(|a| a["labels"]["instance"] == instance)
            .collect()
    }

    /// Waits for an alert named `alertname` from `instance` matching `wanted`; the alert and
    /// the time since `fault`.
    fn wait_for(
        &self,
        instance: &str,
        alertname: &str,
        fault: Instant,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.alerts_of(instance);
            if let Some(a) = alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == alertname && wanted(a))
            {
                return (a.clone(), fault.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "no {alertname} from {instance} at Alertmanager within {timeout:?}; it lists: {}",
                serde_json::to_string_pretty(&alerts).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `ballast serve` child process with its configuration file, in a tempdir of its own.
struct Serve {
    listener: SocketAddr,
    process: ServeProcess,
    dir: tempfile::TempDir,
}

/// `[[pools.POOL.servers]]` entries.
fn servers(pool: &str, backends: &[&Backend], weights: &[u32], extra: &str) -> String {
    let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    server_entries(pool, &addresses, weights, extra)
}

impl Serve {
    /// Starts serve with `body` (pools, more listeners) after a head with the admin API
    /// (with a token) and a listener `web` routing to pool `app`; `head_extra` goes first.
    fn start(head_extra: &str, body: &str) -> Serve {
        let dir = tempfile::tempdir().expect("a temp dir");
        let admin = loopback();
        let listener = loopback();
        let text = Serve::text(admin, listener, head_extra, body);
        let process = ServeProcess::start(dir.path(), &text, admin, &["--threads", "1"]);
        Serve {
            listener,
            process,
            dir,
        }
    }

    fn text(admin: SocketAddr, listener: SocketAddr, head_extra: &str, body: &str) -> String {
        format!(
            "{head_extra}\n[admin]\naddress = \"{admin}\"\ntoken = \"{TOKEN}\"\n\n\
             [listeners.web]\naddress = \"{listener}\"\npool = \"app\"\n\n{body}"
        )
    }

    fn admin(&self) -> SocketAddr {
        self.process.admin
    }

    fn file(&self) -> &std::path::Path {
        &self.process.file
    }

    fn instance(&self) -> String {
        self.admin().to_string()
    }

    /// Rewrites the file (same head) and reloads through `POST /reload`; the fault's moment.
    fn reload_over_http(&self, head_extra: &str, body: &str) -> Instant {
        self.process
            .write(&Serve::text(self.admin(), self.listener, head_extra, body));
        let at = Instant::now();
        let (status, answer) = self.process.reload_over_http(TOKEN);
        assert_eq!(status, 200, "POST /reload: {answer}");
        assert!(answer.contains("\"applied\": true"), "{answer}");
        at
    }

    /// Rewrites the file and reloads with SIGHUP; the fault's moment.
    fn reload_with_sighup(&self, head_extra: &str, body: &str) -> Instant {
        let before = self.process.version();
        self.process
            .write(&Serve::text(self.admin(), self.listener, head_extra, body));
        let at = Instant::now();
        self.process.sighup();
        wait_until("the SIGHUP reload applied", Duration::from_secs(5), || {
            self.process.version() != before
        });
        at
    }
}

/// A `ballast watch` child process, its JSON lines kept in a file.
struct Watch {
    out: PathBuf,
    _peer: PeerGroup,
}

impl Watch {
    fn start(serve: &Serve, with_config: bool, am: &Alertmanager, bound: Duration) -> Watch {
        let name = if with_config {
            "watch"
        } else {
            "watch-history"
        };
        let out = serve.dir.path().join(format!("{name}.out"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
        command
            .arg("watch")
            .arg(format!("ballast:{}", serve.admin()))
            .args(["--alertmanager", &am.url(), "--format", "json"])
            .arg("--duration")
            .arg(format!("{}s", bound.as_secs()));
        if with_config {
            command.arg("--config").arg(serve.file());
        }
        let peer = PeerGroup::spawn_with_output(
            command,
            Stdio::from(File::create(&out).unwrap()),
            Stdio::from(File::create(serve.dir.path().join(format!("{name}.err"))).unwrap()),
        );
        Watch { out, _peer: peer }
    }

    /// The JSON lines written so far.
    fn records(&self) -> Vec<Value> {
        common::json_lines(&self.out)
    }

    /// Waits until it has judged `rounds` samples, so it has a history before the fault.
    fn wait_for_samples(&self, rounds: usize) {
        wait_until(
            &format!("ballast watch took {rounds} samples"),
            Duration::from_secs(15),
            || {
                self.records()
                    .iter()
                    .filter(|r| r["type"] == "sample")
                    .count()
                    >= rounds
            },
        );
    }
}

/// One measured class.
struct Timing {
    class: &'static str,
    alert: String,
    seconds: f64,
}

/// Checks what every alert must carry and returns its timing.
fn checked(
    class: &'static str,
    serve: &Serve,
    alert: &Value,
    elapsed: Duration,
    pool: &str,
    server: Option<&str>,
    layer_words: &str,
) -> Timing {
    let labels = &alert["labels"];
    let name = labels["alertname"].as_str().unwrap_or("").to_string();
    assert!(
        matches!(labels["severity"].as_str(), Some("warning" | "critical")),
        "{class}: severity of {alert:#}"
    );
    assert_eq!(labels["pool"], pool, "{class}: pool of {alert:#}");
    if let Some(server) = server {
        assert_eq!(labels["server"], server, "{class}: server of {alert:#}");
    }
    assert_eq!(labels["source"], "ballast", "{class}: source of {alert:#}");
    assert_eq!(
        labels["instance"],
        serve.instance(),
        "{class}: instance of {alert:#}"
    );
    let cause = alert["annotations"]["cause"].as_str().unwrap_or("");
    assert!(
        cause.contains(layer_words),
        "{class}: the cause of {name} should name {layer_words:?}: {cause}"
    );
    eprintln!(
        "GUARD-TIMING source=ballast class={class} alert={name} seconds={:.1}",
        elapsed.as_secs_f64()
    );
    eprintln!("GUARD-CAUSE source=ballast class={class} alert={name}: {cause}");
    assert!(
        !cause
            .split(". ")
            .skip(1)
            .any(|sentence| sentence.starts_with(|c: char| c.is_lowercase())),
        "{class}: every sentence of the cause should begin with a capital: {cause}"
    );
    assert!(
        elapsed <= TARGET,
        "{class}: {name} took {elapsed:?} to reach Alertmanager (target {TARGET:?})"
    );
    Timing {
        class,
        alert: name,
        seconds: elapsed.as_secs_f64(),
    }
}

const DISTRIBUTION: &str = "the load balancer's distribution";
const LIMITS: &str = "the load balancer's limits";

fn fast_backends(n: usize) -> Vec<Backend> {
    (1..=n)
        .map(|i| Backend::start(&format!("app-{i}")))
        .collect()
}

fn rr_pool(backends: &[Backend], weights: &[u32]) -> String {
    let refs: Vec<&Backend> = backends.iter().collect();
    format!(
        "[pools.app]\nalgorithm = \"round-robin\"\n{}",
        servers("app", &refs, weights, "")
    )
}

/// (a) A reload to weights 1,1,8: the change is risky (watch with the file), and the live
/// shares shifted from where the history began (watch without it).
fn class_a_weights(am: &Alertmanager) -> Vec<Timing> {
    let backends = fast_backends(3);
    let serve = Serve::start("", &rr_pool(&backends, &[1, 1, 1]));
    let watch = Watch::start(&serve, true, am, Duration::from_secs(40));
    let history = Watch::start(&serve, false, am, Duration::from_secs(40));
    let _clients = Clients::start(
        serve.listener,
        2,
        Duration::from_millis(40),
        Duration::from_secs(40),
    );
    watch.wait_for_samples(4);
    history.wait_for_samples(4);
    let fault = serve.reload_with_sighup("", &rr_pool(&backends, &[1, 1, 8]));
    let (risky, risky_after) = am.wait_for(
        &serve.instance(),
        "ConfigChangeRisky",
        fault,
        TARGET * 2,
        |_| true,
    );
    let (shifted, shifted_after) = am.wait_for(
        &serve.instance(),
        "PoolSharesShifted",
        fault,
        TARGET * 2,
        |_| true,
    );
    let risky_cause = risky["annotations"]["cause"].as_str().unwrap_or("");
    assert!(
        risky_cause.contains("weight") && risky_cause.contains(&serve.file().display().to_string()),
        "ConfigChangeRisky should name the weight change in the file: {risky_cause}"
    );
    vec![
        checked(
            "a",
            &serve,
            &risky,
            risky_after,
            "app",
            None,
            "configuration change",
        ),
        checked(
            "a",
            &serve,
            &shifted,
            shifted_after,
            "app",
            Some("app-3"),
            DISTRIBUTION,
        ),
    ]
}

/// (b) A pool hashing on a header; the clients' header values collapse to one.
fn class_b_one_key(am: &Alertmanager) -> Vec<Timing> {
    let backends = fast_backends(3);
    let refs: Vec<&Backend> = backends.iter().collect();
    let pool = format!(
        "[pools.app]\nalgorithm = \"consistent-hash\"\nhash_key = {{ source = \"header\", name = \"X-Tenant\" }}\n{}",
        servers("app", &refs, &[1, 1, 1], "")
    );
    let serve = Serve::start("", &pool);
    let watch = Watch::start(&serve, true, am, Duration::from_secs(40));
    let clients = Clients::start(
        serve.listener,
        4,
        Duration::from_millis(40),
        Duration::from_secs(40),
    );
    // Many tenants first: the ring spreads them.
    let spread = Arc::new(AtomicBool::new(true));
    let rotor = {
        let (spread, header) = (spread.clone(), clients.header.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while spread.load(Ordering::Relaxed) {
                i += 1;
                *header.lock().unwrap() = Some(("X-Tenant".into(), format!("tenant-{}", i % 997)));
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    watch.wait_for_samples(6);
    spread.store(false, Ordering::Relaxed);
    rotor.join().unwrap();
    clients.set_header(Some(("X-Tenant", "acme")));
    let fault = Instant::now();
    let (skewed, after) = am.wait_for(&serve.instance(), "PoolSkewed", fault, TARGET * 2, |_| true);
    // With the clients stopped: consistent hashing with bounded loads sends a request past a
    // server over its bound, and the key's own server is the busy one.
    drop(clients);
    let hot = acme_server(&serve);
    vec![checked(
        "b",
        &serve,
        &skewed,
        after,
        "app",
        Some(&hot),
        DISTRIBUTION,
    )]
}

fn slow_pool(backends: &[Backend]) -> String {
    let refs: Vec<&Backend> = backends.iter().collect();
    format!(
        "[pools.app]\nalgorithm = \"round-robin\"\nretries = {{ attempts = 0 }}\n{}",
        servers(
            "app",
            &refs,
            &[1, 1, 1],
            "max_connections = 2\nmax_queue = 0"
        )
    )
}

/// The server a request with `X-Tenant: acme` lands on (the backends answer their name).
fn acme_server(serve: &Serve) -> String {
    let (status, body) = request(serve.listener, "GET", "/", &[("X-Tenant", "acme")]);
    assert_eq!(status, 200, "{body}");
    body.trim().to_string()
}

/// (c) `max_connections = 2` on slow servers, twelve concurrent clients: at the limit, 503s.
fn class_c_connection_limit(am: &Alertmanager) -> Vec<Timing> {
    let backends: Vec<Backend> = (1..=3)
        .map(|i| Backend::start_with_delay(&format!("app-{i}"), Duration::from_millis(300)))
        .collect();
    let serve = Serve::start("", &slow_pool(&backends));
    let watch = Watch::start(&serve, true, am, Duration::from_secs(40));
    watch.wait_for_samples(3);
    let fault = Instant::now();
    let clients = Clients::start(
        serve.listener,
        12,
        Duration::from_millis(20),
        Duration::from_secs(20),
    );
    let (at_limit, after) = am.wait_for(
        &serve.instance(),
        "ServerAtConnectionLimit",
        fault,
        TARGET * 2,
        |_| true,
    );
    let server = at_limit["labels"]["server"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(server.starts_with("app-"), "{at_limit:#}");
    let timing = checked("c", &serve, &at_limit, after, "app", Some(&server), LIMITS);
    assert!(
        clients.unavailable.load(Ordering::Relaxed) > 0,
        "clients beyond the limits should get 503s ({} answered 200)",
        clients.ok.load(Ordering::Relaxed)
    );
    vec![timing]
}

/// (d) A reload giving one server weight 0: the others take its share.
fn class_d_weight_zero(am: &Alertmanager) -> Vec<Timing> {
    let backends = fast_backends(3);
    let serve = Serve::start("", &rr_pool(&backends, &[1, 1, 1]));
    let history = Watch::start(&serve, false, am, Duration::from_secs(40));
    let _clients = Clients::start(
        serve.listener,
        2,
        Duration::from_millis(40),
        Duration::from_secs(40),
    );
    history.wait_for_samples(4);
    let fault = serve.reload_over_http("", &rr_pool(&backends, &[1, 0, 1]));
    let (shifted, after) = am.wait_for(
        &serve.instance(),
        "PoolSharesShifted",
        fault,
        TARGET * 2,
        |_| true,
    );
    let description = shifted["annotations"]["description"].as_str().unwrap_or("");
    assert!(
        description.contains("app-2"),
        "the shift should name the server taken out: {description}"
    );
    // The server label names one that gained the most: not the one taken out.
    let gained = shifted["labels"]["server"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(gained == "app-1" || gained == "app-3", "{shifted:#}");
    vec![checked(
        "d",
        &serve,
        &shifted,
        after,
        "app",
        Some(&gained),
        DISTRIBUTION,
    )]
}

/// (e) A bad reload: round-robin becomes hashing on a header every client sends with one
/// value; the skew names the change as its trigger.
fn class_e_bad_reload(am: &Alertmanager) -> Vec<Timing> {
    let backends = fast_backends(3);
    let refs: Vec<&Backend> = backends.iter().collect();
    // serve's own canary would revert the change within a round of its alert, and the probe of
    // acme's server below would then see round-robin: this class is about the watch's alert.
    const NO_ROLLBACK: &str = "[rollback]\nenabled = false\n";
    let serve = Serve::start(NO_ROLLBACK, &rr_pool(&backends, &[1, 1, 1]));
    let watch = Watch::start(&serve, true, am, Duration::from_secs(40));
    let clients = Clients::start(
        serve.listener,
        4,
        Duration::from_millis(40),
        Duration::from_secs(40),
    );
    clients.set_header(Some(("X-Tenant", "acme")));
    watch.wait_for_samples(6);
    let hashed = format!(
        "[pools.app]\nalgorithm = \"consistent-hash\"\nhash_key = {{ source = \"header\", name = \"X-Tenant\" }}\n{}",
        servers("app", &refs, &[1, 1, 1], "")
    );
    let fault = serve.reload_over_http(NO_ROLLBACK, &hashed);
    let (skewed, after) = am.wait_for(&serve.instance(), "PoolSkewed", fault, TARGET * 2, |_| true);
    let cause = skewed["annotations"]["cause"].as_str().unwrap_or("");
    assert!(
        cause.contains("Likely trigger: the configuration change")
            && cause.contains(&serve.file().display().to_string())
            && cause.contains("live since the reload"),
        "the skew should name the reload of the edited file as its trigger: {cause}"
    );
    // With the clients stopped: consistent hashing with bounded loads sends a request past a
    // server over its bound, and the key's own server is the busy one.
    drop(clients);
    let hot = acme_server(&serve);
    vec![checked(
        "e",
        &serve,
        &skewed,
        after,
        "app",
        Some(&hot),
        DISTRIBUTION,
    )]
}

/// One outage class's run against a shared Alertmanager.
type Class = fn(&Alertmanager) -> Vec<Timing>;

#[test]
fn every_outage_class_reaches_alertmanager_within_ten_seconds() {
    if !peer_available(ALERTMANAGER) {
        return;
    }
    let am = Alertmanager::start_holding();
    let classes: [(&str, Class); 5] = [
        ("a", class_a_weights),
        ("b", class_b_one_key),
        ("c", class_c_connection_limit),
        ("d", class_d_weight_zero),
        ("e", class_e_bad_reload),
    ];
    let results: Vec<(&str, std::thread::Result<Vec<Timing>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = classes
            .iter()
            .map(|(name, run)| (*name, scope.spawn(|| run(&am))))
            .collect();
        handles.into_iter().map(|(n, h)| (n, h.join())).collect()
    });
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    for (_, r) in &results {
        if let Ok(timings) = r {
            for t in timings {
                eprintln!("class {}: {} after {:.1} s", t.class, t.alert, t.seconds);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "classes failed: {failed:?} (their panics are above)"
    );
}

#[test]
fn healthy_round_robin_pools_at_a_low_and_a_high_rate_raise_nothing() {
    if !peer_available(ALERTMANAGER) {
        return;
    }
    let am = Alertmanager::start_holding();
    let backends = fast_backends(3);
    let more = fast_backends(4);
    let more_refs: Vec<&Backend> = more.iter().collect();
    let busy: SocketAddr = loopback();
    let body = format!(
        "{}\n[listeners.busy]\naddress = \"{busy}\"\npool = \"busy\"\n\n[pools.busy]\nalgorithm = \"round-robin\"\n{}",
        rr_pool(&backends, &[1, 1, 1]),
        servers("busy", &more_refs, &[1, 1, 2, 2], "")
    );
    let serve = Serve::start("", &body);
    let watch = Watch::start(&serve, true, &am, Duration::from_secs(33));
    // About 25 requests a second on `app` (a window just above the least worth judging), about
    // 150 on `busy`.
    let low = Clients::start(
        serve.listener,
        2,
        Duration::from_millis(80),
        Duration::from_secs(32),
    );
    let high = Clients::start(busy, 6, Duration::from_millis(40), Duration::from_secs(32));
    std::thread::sleep(Duration::from_secs(32));
    let (low_ok, high_ok) = (
        low.ok.load(Ordering::Relaxed),
        high.ok.load(Ordering::Relaxed),
    );
    drop((low, high));
    assert!(
        low_ok >= 500 && high_ok >= 2_000,
        "traffic too thin to judge: {low_ok} and {high_ok} answered"
    );
    let records = watch.records();
    let samples = records.iter().filter(|r| r["type"] == "sample").count();
    assert!(samples >= 25, "ballast watch took only {samples} samples");
    let alerts: Vec<&Value> = records.iter().filter(|r| r["type"] == "alert").collect();
    assert!(
        alerts.is_empty(),
        "a healthy run raised alerts: {alerts:#?}"
    );
    let (_, status) = get(serve.admin(), "/status");
    let status: Value = serde_json::from_str(&status).expect("/status is JSON");
    assert_eq!(
        status["alerts"],
        serde_json::json!([]),
        "the guard inside serve raised alerts on a healthy run"
    );
    let listed = am.alerts_of(&serve.instance());
    assert!(
        listed.is_empty(),
        "Alertmanager has alerts from a healthy run: {listed:#?}"
    );
}

/// Part of issue #10 item 7: `serve` judges its own counters with no `ballast watch`, sends to
/// the `[alerts]` Alertmanager, and shows the alert in `/status`, `/metrics` and its event log.
#[test]
fn serve_alone_alerts_alertmanager_and_shows_the_alert_in_status_and_metrics() {
    if !peer_available(ALERTMANAGER) {
        return;
    }
    let am = Alertmanager::start_holding();
    let hook = WebhookReceiver::start();
    let backends: Vec<Backend> = (1..=3)
        .map(|i| Backend::start_with_delay(&format!("app-{i}"), Duration::from_millis(300)))
        .collect();
    let events = tempfile::tempdir().unwrap();
    let event_log = events.path().join("events.jsonl");
    let head = format!(
        "[global]\nevent_log = \"{}\"\n\n[alerts]\nalertmanager = [\"{}\"]\nwebhook = [\"{}\"]\n",
        event_log.display(),
        am.url(),
        hook.url()
    );
    let serve = Serve::start(&head, &slow_pool(&backends));
    std::thread::sleep(Duration::from_secs(2));
    let fault = Instant::now();
    let clients = Clients::start(
        serve.listener,
        12,
        Duration::from_millis(20),
        Duration::from_secs(20),
    );
    let (alert, after) = am.wait_for(
        &serve.instance(),
        "ServerAtConnectionLimit",
        fault,
        TARGET * 2,
        |_| true,
    );
    let server = alert["labels"]["server"].as_str().unwrap_or("").to_string();
    checked(
        "c-serve",
        &serve,
        &alert,
        after,
        "app",
        Some(&server),
        LIMITS,
    );
    assert!(
        clients.unavailable.load(Ordering::Relaxed) > 0,
        "no 503 at the limits"
    );

    // The webhook: Alertmanager's webhook JSON (version 4) with the same alert, firing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let delivered = loop {
        let found = hook.payloads().into_iter().find(|p| {
            p["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["alertname"] == "ServerAtConnectionLimit"
                        && a["labels"]["server"] == server.as_str()
                        && a["status"] == "firing"
                })
            })
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook received no firing ServerAtConnectionLimit for {server}: {:#?}",
            hook.payloads()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(delivered["version"], "4", "{delivered:#}");
    assert_eq!(delivered["status"], "firing", "{delivered:#}");
    assert_eq!(delivered["groupLabels"]["pool"], "app", "{delivered:#}");
    let hooked = delivered["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["server"] == server.as_str())
        .expect("the alert found above");
    assert!(
        hooked["annotations"]["cause"]
            .as_str()
            .unwrap_or("")
            .contains(LIMITS)
            && hooked["labels"]["source"] == "ballast",
        "{hooked:#}"
    );

    // /status: the alerts array, while it fires.
    let (_, status) = get(serve.admin(), "/status");
    let status: Value = serde_json::from_str(&status).expect("/status is JSON");
    let listed = status["alerts"].as_array().cloned().unwrap_or_default();
    let shown = listed
        .iter()
        .find(|a| a["labels"]["alertname"] == "ServerAtConnectionLimit" && a["state"] == "firing")
        .unwrap_or_else(|| panic!("/status lists no firing ServerAtConnectionLimit: {listed:#?}"));
    assert_eq!(shown["labels"]["pool"], "app");
    assert!(
        shown["summary"]
            .as_str()
            .unwrap_or("")
            .contains("connection limit"),
        "{shown:#}"
    );
    assert!(
        shown["cause"].as_str().unwrap_or("").contains(LIMITS),
        "{shown:#}"
    );

    // /metrics: one gauge per firing alert.
    let (_, metrics) = get(serve.admin(), "/metrics");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("ballast_alerts{") && l.contains("alertname=\"ServerAtConnectionLimit\"")
        })
        .unwrap_or_else(|| panic!("no ballast_alerts gauge for it in /metrics:\n{metrics}"));
    assert!(
        line.contains("pool=\"app\"")
            && line.contains("severity=\"critical\"")
            && line.ends_with(" 1"),
        "{line}"
    );

    // The event log: the firing, once.
    let log = std::fs::read_to_string(&event_log).unwrap_or_default();
    let firings = log
        .lines()
        .filter(|l| {
            l.contains("\"event\":\"alert_firing\"")
                && l.contains(&format!("\"server\":\"{server}\""))
                && l.contains("ServerAtConnectionLimit")
        })
        .count();
    // Written once per firing, not once per round (it may resolve and fire again if a sample
    // catches the server between requests).
    assert!(
        (1..=2).contains(&firings),
        "{firings} alert_firing events for {server} in the event log:\n{log}"
    );
    drop(clients);
}
