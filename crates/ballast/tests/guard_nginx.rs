//! `ballast watch` end to end against a real nginx 1.22 and a real Alertmanager on loopback:
//! for each outage class (weights sending most traffic to one server, a hash key with one
//! value, too few worker connections, a server marked `down`, a reload with a bad change) the
//! time from the fault to the alert being visible in Alertmanager's `GET /api/v2/alerts`, its
//! labels and its cause; and a healthy run of Poisson traffic that raises nothing.
//!
//! nginx open source has no runtime API, so weights and states change by editing the file and
//! reloading (`kill -HUP` of the master): those faults are configuration changes.
//!
//! Timings are printed as `GUARD-TIMING source=nginx class=<c> alert=<name> seconds=<x.y>`.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::watch::JsonLinesChild;
use common::{Alertmanager, Backend, Noise, PeerGroup, free_port, http, wait_for_port};
use serde_json::Value;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// The target with one-second sampling.
const TARGET: Duration = Duration::from_secs(10);

fn peers_available() -> bool {
    common::peer_available("nginx") && common::peer_available(ALERTMANAGER)
}

/// The `log_format` line `ballast watch --nginx-log-format --config` prints for a
/// configuration with `upstream`, as the user would paste it (a hashing key's variables
/// included).
fn ballast_log_format(upstream: &str) -> String {
    let dir = tempfile::tempdir().expect("a tempdir");
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "events {{}}\nhttp {{\n{upstream}server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://app; }} }}\n}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["watch", "--nginx-log-format", "--config"])
        .arg(&conf)
        .output()
        .expect("run ballast watch --nginx-log-format");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("log_format ballast "))
        .expect("a log_format line")
        .to_string()
}

/// A real nginx in a tempdir, one worker, in its own process group.
struct Nginx {
    master: PeerGroup,
    dir: tempfile::TempDir,
    port: u16,
    worker_connections: u32,
    /// The log format set at start (from the first configuration), kept through edits.
    format: String,
}

impl Nginx {
    fn start(worker_connections: u32, upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("a tempdir");
        let port = free_port();
        let format = ballast_log_format(upstream);
        let text = Nginx::text(dir.path(), port, worker_connections, upstream, &format);
        std::fs::write(dir.path().join("nginx.conf"), text).unwrap();
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off; master_process on;"]);
        let n = Nginx {
            master: PeerGroup::spawn(command),
            dir,
            port,
            worker_connections,
            format,
        };
        assert!(
            wait_for_port(n.addr(), Duration::from_secs(5)),
            "nginx did not start: {}",
            std::fs::read_to_string(n.path("error.log")).unwrap_or_default()
        );
        n
    }

    fn text(
        dir: &Path,
        port: u16,
        worker_connections: u32,
        upstream: &str,
        format: &str,
    ) -> String {
        let d = dir.display();
        format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections {worker_connections}; }}\n\
             http {{\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               {format}\n\
               access_log {d}/access.log ballast;\n\
             {upstream}\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://app; }}\n\
                 location = /nginx_status {{ stub_status; access_log off; }}\n\
               }}\n\
             }}\n",
            format = format,
        )
    }

    /// Replaces the configuration (written aside, then renamed, so no reader sees half a
    /// file) without reloading.
    fn edit(&self, upstream: &str) {
        let text = Nginx::text(
            self.dir.path(),
            self.port,
            self.worker_connections,
            upstream,
            &self.format,
        );
        let aside = self.path("nginx.conf.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, self.path("nginx.conf")).unwrap();
    }

    /// `kill -HUP` of the master: nginx rereads the file and starts new workers.
    fn reload(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.master.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -HUP the nginx master");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// `upstream app { ... }` with `directive` (`hash ...;`, empty for round-robin) and one
/// `server` line per backend with its parameters.
fn upstream(directive: &str, servers: &[(&Backend, &str)]) -> String {
    let mut s = format!("upstream app {{\n  {directive}\n");
    for (b, params) in servers {
        s.push_str(&format!("  server {} {params};\n", b.addr));
    }
    s.push_str("}\n");
    s
}

impl common::Alertmanager {
    /// Polls until an alert with one of `alertnames` is listed, up to `timeout`.
    fn wait_for_any(&self, alertnames: &[&str], timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self
                .alerts()
                .into_iter()
                .find(|a| alertnames.iter().any(|n| a["labels"]["alertname"] == *n))
            {
                return Some(a);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn names(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}{{{}}}",
                a["labels"]["alertname"].as_str().unwrap_or(""),
                a["labels"]["server"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// `ballast watch` on the nginx, JSON lines on stdout collected; killed on drop.
struct Watch {
    child: JsonLinesChild,
    access_log: PathBuf,
}

impl Watch {
    fn start(nginx: &Nginx, alertmanager: &Alertmanager, duration: Duration) -> Watch {
        let access_log = nginx.path("access.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
        command
            .arg("watch")
            .arg(format!("nginx:{}", access_log.display()))
            .arg("--config")
            .arg(nginx.path("nginx.conf"))
            .arg("--stub-status")
            .arg(format!("http://{}/nginx_status", nginx.addr()))
            .arg("--error-log")
            .arg(nginx.path("error.log"))
            .args(["--alertmanager", &alertmanager.url()])
            .args(["--format", "json", "--interval", "1s", "--window", "5s"])
            .arg("--duration")
            .arg(format!("{}s", duration.as_secs()));
        Watch {
            child: JsonLinesChild::spawn(command),
            access_log,
        }
    }

    /// The records of one `type` printed so far.
    fn records(&self, kind: &str) -> Vec<Value> {
        self.child.records(kind)
    }

    /// Waits for the first sample: the watcher has read the logs and the page once.
    fn wait_started(&self) {
        self.child
            .wait_for_record("sample", Duration::from_secs(10));
    }
}

/// Requests to nginx at a Poisson rate, each on its own connection with an `X-Tenant` header
/// drawn from `tenants` values; bounded by `stop` and by the test's own deadline.
struct Traffic {
    stop: Arc<AtomicBool>,
    /// Requests per second.
    pub rate: Arc<AtomicU64>,
    /// How many distinct `X-Tenant` values the requests carry.
    pub tenants: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: SocketAddr, rate: u64, tenants: u64, seed: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let rate = Arc::new(AtomicU64::new(rate));
        let tenants = Arc::new(AtomicU64::new(tenants));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, r, t, n) = (stop.clone(), rate.clone(), tenants.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut noise = Noise(seed | 1);
            let hard_stop = Instant::now() + Duration::from_secs(90);
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                let per_second = r.load(Ordering::Relaxed).max(1) as f64;
                next += Duration::from_secs_f64(-noise.unit().ln() / per_second);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let tenant = (noise.unit() * t.load(Ordering::Relaxed).max(1) as f64) as u64;
                get(addr, &format!("tenant-{tenant}"));
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        Traffic {
            stop,
            rate,
            tenants,
            sent,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One GET / with `X-Tenant`; the status (0 when the connection failed).
fn get(addr: SocketAddr, tenant: &str) -> u16 {
    let headers = [("X-Tenant", tenant)];
    http::exchange(addr, "GET", "/", &headers, "", Duration::from_secs(2)).status
}

fn backends() -> Vec<Backend> {
    (1..=3)
        .map(|i| Backend::start(&format!("app-{i}")))
        .collect()
}

fn served(backends: &[Backend]) -> Vec<u64> {
    backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .collect()
}

/// The whole set-up of one class: three backends, nginx, Alertmanager, the watcher, traffic.
struct Rig {
    backends: Vec<Backend>,
    nginx: Nginx,
    alertmanager: Alertmanager,
    watch: Watch,
    traffic: Traffic,
}

impl Rig {
    fn start(
        worker_connections: u32,
        upstream_of: impl Fn(&[Backend]) -> String,
        rate: u64,
        tenants: u64,
    ) -> Rig {
        Rig::on(backends(), worker_connections, upstream_of, rate, tenants)
    }

    fn on(
        backends: Vec<Backend>,
        worker_connections: u32,
        upstream_of: impl Fn(&[Backend]) -> String,
        rate: u64,
        tenants: u64,
    ) -> Rig {
        let nginx = Nginx::start(worker_connections, &upstream_of(&backends));
        let alertmanager = Alertmanager::start_holding();
        let watch = Watch::start(&nginx, &alertmanager, Duration::from_secs(45));
        watch.wait_started();
        let traffic = Traffic::start(nginx.addr(), rate, tenants, 0x9e37_79b9_7f4a_7c15);
        Rig {
            backends,
            nginx,
            alertmanager,
            watch,
            traffic,
        }
    }

    /// Healthy traffic for a full window and then some: nothing may be firing before the
    /// fault, or the fault's alert would prove nothing.
    fn settle(&self) {
        std::thread::sleep(Duration::from_secs(7));
        let alerts = self.alertmanager.alerts();
        assert!(
            alerts.is_empty(),
            "alerts before the fault: {:?}",
            names(&alerts)
        );
        assert!(
            self.watch.records("alert").is_empty(),
            "alert lines before the fault: {:?}",
            self.watch.records("alert")
        );
    }

    /// Waits for `alertname` at Alertmanager from the fault at `fault`, prints the timing,
    /// checks the labels every alert carries; returns the alert.
    fn measure(&self, class: &str, alertname: &str, fault: Instant) -> Value {
        self.measure_any(class, &[alertname], fault)
    }

    /// [`Rig::measure`] for the first of several alerts that each tell the fault.
    fn measure_any(&self, class: &str, alertnames: &[&str], fault: Instant) -> Value {
        let alert = self
            .alertmanager
            .wait_for_any(alertnames, TARGET + Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "class {class}: no {alertnames:?} at Alertmanager {:?} after the fault; it holds {:?}; the watcher printed {:?}",
                    TARGET + Duration::from_secs(5),
                    names(&self.alertmanager.alerts()),
                    self.watch.records("alert")
                )
            });
        let seconds = fault.elapsed().as_secs_f64();
        let alertname = alert["labels"]["alertname"].as_str().unwrap_or("");
        eprintln!("GUARD-TIMING source=nginx class={class} alert={alertname} seconds={seconds:.1}");
        assert!(
            seconds <= TARGET.as_secs_f64(),
            "class {class}: {alertname} took {seconds:.1} s, over the target of {TARGET:?}"
        );
        eprintln!(
            "GUARD-CAUSE source=nginx class={class} alert={alertname} cause={}",
            cause(&alert)
        );
        let labels = &alert["labels"];
        assert_eq!(labels["source"], "nginx", "{alert}");
        assert_eq!(
            labels["instance"],
            self.watch.access_log.display().to_string(),
            "{alert}"
        );
        assert!(
            labels["severity"] == "warning" || labels["severity"] == "critical",
            "{alert}"
        );
        alert
    }

    /// What else is at Alertmanager and in the watcher's output now, for the report.
    fn report_others(&self, class: &str) -> Vec<String> {
        let held = names(&self.alertmanager.alerts());
        eprintln!("GUARD-SEEN source=nginx class={class} alertmanager={held:?}");
        held
    }

    fn server_name(&self, i: usize) -> String {
        self.backends[i].addr.to_string()
    }
}

fn cause(alert: &Value) -> &str {
    alert["annotations"]["cause"].as_str().unwrap_or("")
}

/// The index of the backend that served most since `before`.
fn busiest(backends: &[Backend], before: &[u64]) -> (usize, f64) {
    let now = served(backends);
    let sent: Vec<u64> = now.iter().zip(before).map(|(n, b)| n - b).collect();
    let total: u64 = sent.iter().sum();
    let (i, most) = sent
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, n)| (i, *n))
        .unwrap();
    (i, most as f64 / total.max(1) as f64)
}

fn round_robin(weights: [u32; 3]) -> impl Fn(&[Backend]) -> String {
    move |b| {
        upstream(
            "",
            &[
                (&b[0], &format!("weight={}", weights[0])),
                (&b[1], &format!("weight={}", weights[1])),
                (&b[2], &format!("weight={}", weights[2])),
            ],
        )
    }
}

#[test]
fn a_weights_1_1_8_edited_and_reloaded_is_a_risky_configuration_change() {
    if !peers_available() {
        return;
    }
    let rig = Rig::start(256, round_robin([1, 1, 1]), 80, 1000);
    rig.settle();
    let before = served(&rig.backends);
    let fault = Instant::now();
    rig.nginx.edit(&round_robin([1, 1, 8])(&rig.backends));
    rig.nginx.reload();
    let alert = rig.measure("a", "ConfigChangeRisky", fault);
    assert_eq!(alert["labels"]["pool"], "app", "{alert}");
    let cause = cause(&alert);
    assert!(
        cause.contains("the load balancer's distribution") && cause.contains("weight"),
        "{cause}"
    );
    // Traffic follows the new weights; the file says so too, so nothing else is wrong: the
    // live weights are the file's (drift has nothing to say) and 80% on app-3 is its promise.
    std::thread::sleep(Duration::from_secs(8));
    let (hot, share) = busiest(&rig.backends, &before);
    assert_eq!(hot, 2, "the heavy server takes the traffic");
    assert!(share > 0.6, "app-3's share {share}");
    let others = rig.report_others("a");
    assert_eq!(
        others,
        vec!["ConfigChangeRisky{}".to_string()],
        "only the change fires: nginx does what its new file says"
    );
}

#[test]
fn one_tenant_on_a_hashed_pool_is_a_skewed_pool() {
    if !peers_available() {
        return;
    }
    let hashed = |b: &[Backend]| {
        upstream(
            "hash $http_x_tenant;",
            &[(&b[0], ""), (&b[1], ""), (&b[2], "")],
        )
    };
    let rig = Rig::start(256, hashed, 80, 1000);
    // Healthy and judged on the shares the keys predict through nginx's own hash, with the
    // normal band: the emulation must place 1000 tenants where nginx does, or this fails.
    rig.settle();
    let keyed = rig.watch.records("sample").into_iter().rev().find_map(|s| {
        s["pools"][0]["predicted"]["requests"]
            .as_array()
            .map(|r| r.len())
    });
    assert_eq!(keyed, Some(3), "the samples carry the keys' prediction");
    let fault = Instant::now();
    let before = served(&rig.backends);
    rig.traffic.tenants.store(1, Ordering::Relaxed);
    // The keys visible in nginx's log say why: one tenant. The balancer does what its hash
    // says, so the alert is the key's, not PoolSkewed.
    let alert = rig.measure("b", "PoolKeyConcentrated", fault);
    let (hot, share) = busiest(&rig.backends, &before);
    assert!(share > 0.95, "one key goes to one server: {share}");
    assert_eq!(alert["labels"]["pool"], "app", "{alert}");
    assert_eq!(alert["labels"]["server"], rig.server_name(hot), "{alert}");
    assert!(
        cause(&alert).contains("the load balancer's distribution")
            && cause(&alert).contains("$http_x_tenant"),
        "{}",
        cause(&alert)
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("`tenant-")),
        "{alert}"
    );
    let others = rig.report_others("b");
    assert!(
        !others.iter().any(|a| a.starts_with("PoolSkewed")),
        "the balancer follows its keys: {others:?}"
    );
}

#[test]
fn too_few_worker_connections_drop_connections() {
    if !peers_available() {
        return;
    }
    let rig = Rig::start(32, round_robin([1, 1, 1]), 20, 1000);
    rig.settle();
    // Clients that sent half a request hold their slot, and nginx cannot close them to make
    // room: 60 of them against 32 slots, for a second.
    let fault = Instant::now();
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(mut c) = TcpStream::connect(rig.nginx.addr()) {
            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
            held.push(c);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    let alert = rig.measure("c", "WorkersDroppingConnections", fault);
    assert!(
        cause(&alert).contains("the load balancer's limits"),
        "{}",
        cause(&alert)
    );
    rig.report_others("c");
}

#[test]
fn max_conns_2_on_slow_servers_against_more_clients_is_a_saturated_pool() {
    if !peers_available() {
        return;
    }
    let slow = (1..=3)
        .map(|i| Backend::start_with_delay(&format!("app-{i}"), Duration::from_millis(250)))
        .collect();
    let limited = |b: &[Backend]| {
        upstream(
            "",
            &[
                (&b[0], "max_conns=2"),
                (&b[1], "max_conns=2"),
                (&b[2], "max_conns=2"),
            ],
        )
    };
    let rig = Rig::on(slow, 256, limited, 4, 1000);
    rig.settle();
    // Twelve clients back to back against six slots: nginx open source has no queue for
    // `max_conns`, so the rest are refused at once (502, "no live upstreams").
    let fault = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..12)
        .map(|i| {
            let (stop, refused, addr) = (stop.clone(), refused.clone(), rig.nginx.addr());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(15);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    if get(addr, &format!("tenant-{i}")) == 502 {
                        refused.fetch_add(1, Ordering::Relaxed);
                        // A refused client comes back a little later, as a retrying one does.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    let alert = rig.measure_any(
        "c-max-conns",
        &["PoolSaturated", "ServerAtConnectionLimit"],
        fault,
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    assert!(refused.load(Ordering::Relaxed) > 0, "nginx refused nobody");
    assert_eq!(alert["labels"]["pool"], "app", "{alert}");
    assert!(
        cause(&alert).contains("the load balancer's limits"),
        "{}",
        cause(&alert)
    );
    rig.report_others("c-max-conns");
}

#[test]
fn a_server_marked_down_and_reloaded_is_a_risky_configuration_change() {
    if !peers_available() {
        return;
    }
    let rig = Rig::start(256, round_robin([1, 1, 1]), 80, 1000);
    rig.settle();
    let fault = Instant::now();
    let before = served(&rig.backends);
    let down = |b: &[Backend]| upstream("", &[(&b[0], ""), (&b[1], ""), (&b[2], "down")]);
    rig.nginx.edit(&down(&rig.backends));
    rig.nginx.reload();
    let alert = rig.measure("d", "ConfigChangeRisky", fault);
    assert_eq!(alert["labels"]["pool"], "app", "{alert}");
    let cause = cause(&alert);
    assert!(
        cause.contains("the load balancer's distribution") && cause.contains("down"),
        "{cause}"
    );
    std::thread::sleep(Duration::from_secs(6));
    let after = served(&rig.backends);
    let late = after[2] - before[2];
    assert!(
        late < 10,
        "app-3 still served {late} after it was marked down"
    );
    rig.report_others("d");
}

#[test]
fn a_reload_that_hashes_on_a_one_value_header_is_named_as_the_trigger() {
    if !peers_available() {
        return;
    }
    // Every client sends the same tenant: harmless under round-robin.
    let rig = Rig::start(256, round_robin([1, 1, 1]), 80, 1);
    rig.settle();
    let fault = Instant::now();
    let before = served(&rig.backends);
    let hashed = |b: &[Backend]| {
        upstream(
            "hash $http_x_tenant;",
            &[(&b[0], ""), (&b[1], ""), (&b[2], "")],
        )
    };
    rig.nginx.edit(&hashed(&rig.backends));
    rig.nginx.reload();
    let alert = rig.measure("e", "PoolSkewed", fault);
    let (hot, _) = busiest(&rig.backends, &before);
    assert_eq!(alert["labels"]["pool"], "app", "{alert}");
    assert_eq!(alert["labels"]["server"], rig.server_name(hot), "{alert}");
    let cause = cause(&alert);
    assert!(
        cause.contains("the load balancer's distribution")
            && cause.contains("Likely trigger: the configuration change of")
            && cause.contains("nginx.conf")
            && cause.contains("live since the reload of"),
        "{cause}"
    );
    // The reload was seen through nginx's workers: a new worker, the same master.
    let reloads = rig.watch.records("reload");
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    let master = format!("master {} ", rig.nginx.master.id());
    assert!(
        reloads[0]["previous"]
            .as_str()
            .is_some_and(|p| p.starts_with(&master))
            && reloads[0]["generation"]
                .as_str()
                .is_some_and(|g| g.starts_with(&master))
            && reloads[0]["previous"] != reloads[0]["generation"],
        "{reloads:?}"
    );
    rig.report_others("e");
}

#[test]
fn every_server_dead_is_no_live_upstreams() {
    if !peers_available() {
        return;
    }
    let rig = Rig::start(256, round_robin([1, 1, 1]), 80, 1000);
    rig.settle();
    let fault = Instant::now();
    // Every server stops listening: nginx's attempts are refused, it takes each out for
    // `fail_timeout` (max_fails 1) and then has no live upstream for the rest.
    for b in &rig.backends {
        b.stop();
    }
    let alert = rig.measure("no-live-upstreams", "PoolNoLiveUpstreams", fault);
    assert_eq!(alert["labels"]["pool"], "app", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    let cause = cause(&alert);
    assert!(
        cause.contains("one backend") && cause.contains("no live server"),
        "{cause}"
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("attempts on its servers failed")),
        "{alert}"
    );
    rig.report_others("no-live-upstreams");
}

#[test]
fn poisson_traffic_on_round_robin_at_a_low_and_a_high_rate_raises_nothing() {
    if !peers_available() {
        return;
    }
    let rig = Rig::start(256, round_robin([1, 1, 1]), 15, 1000);
    std::thread::sleep(Duration::from_secs(15));
    rig.traffic.rate.store(250, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(15));
    let sent = rig.traffic.sent.load(Ordering::Relaxed);
    assert!(sent > 2000, "only {sent} requests sent");
    let samples = rig.watch.records("sample");
    assert!(samples.len() >= 25, "{} samples", samples.len());
    let alerts = rig.alertmanager.alerts();
    assert!(alerts.is_empty(), "false alerts: {:?}", names(&alerts));
    let lines = rig.watch.records("alert");
    assert!(lines.is_empty(), "alert lines: {lines:?}");
}
