//! The canary of `ballast serve` end to end: a real serve on loopback with three named
//! backends under continuous traffic reloads a bad change (round-robin becomes hashing on a
//! header every client sends with one value, bounded-load factor 10: one server takes it all),
//! the guard inside
//! serve fires `PoolSkewed` naming the reload, and the canary re-applies the previous version
//! within its window. No request fails, the events come in order (config_applied,
//! alert_firing, config_rolled_back, config_applied of the restored version), the previous
//! distribution is back, a second reload of the unchanged bad file is refused with the
//! rollback's reason, and a fresh edit applies. With `[rollback] enabled = false` the same
//! change alerts and stays.
//!
//! Timings are printed as `ROLLBACK-TIMING reload_to_alert=<s> reload_to_rollback=<s>`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::clients::ClientThreads;
use common::http::request;
use common::serve::{ServeProcess, server_entries};
use common::{Backend, loopback};

const TOKEN: &str = "rollback-test-token-0123456789";

/// Client threads, each sending `X-Tenant: acme` on fresh connections every few ms until
/// dropped (or 40 s): every answer is counted, failures apart, and answers by backend name.
struct Clients {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    by_server: Arc<Mutex<Vec<(Instant, String)>>>,
    threads: ClientThreads,
}

impl Clients {
    fn start(addr: SocketAddr, threads: usize, gap: Duration) -> Clients {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let by_server: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let mut set = ClientThreads::new();
        set.spawn(threads, Duration::from_secs(40), |_| {
            let (ok, failed, by_server) = (ok.clone(), failed.clone(), by_server.clone());
            move || {
                let (status, body) = request(addr, "GET", "/", &[("X-Tenant", "acme")]);
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                    by_server
                        .lock()
                        .unwrap()
                        .push((Instant::now(), body.trim().to_string()));
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(gap);
            }
        });
        Clients {
            ok,
            failed,
            by_server,
            threads: set,
        }
    }

    /// The share of each backend in the answers received since `since`.
    fn shares_since(&self, since: Instant) -> Vec<(String, f64)> {
        let answers = self.by_server.lock().unwrap();
        let recent: Vec<&String> = answers
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, s)| s)
            .collect();
        let mut names: Vec<String> = recent.iter().map(|s| s.to_string()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let c = recent.iter().filter(|s| ***s == n).count();
                (n, c as f64 / recent.len().max(1) as f64)
            })
            .collect()
    }

    fn stop(mut self) -> (u64, u64) {
        self.threads.stop();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A `ballast serve` with an event log, in a tempdir of its own.
struct Serve {
    listener: SocketAddr,
    events: PathBuf,
    process: ServeProcess,
    _dir: tempfile::TempDir,
}

fn round_robin(backends: &[Backend], weights: [u32; 3]) -> String {
    format!(
        "[pools.app]\nalgorithm = \"round-robin\"\n{}",
        servers(backends, weights)
    )
}

fn hashed_on_tenant(backends: &[Backend]) -> String {
    format!(
        "[pools.app]\nalgorithm = \"consistent-hash\"\nbalance_factor = 10.0\nhash_key = {{ source = \"header\", name = \"X-Tenant\" }}\n{}",
        servers(backends, [1, 1, 1])
    )
}

fn servers(backends: &[Backend], weights: [u32; 3]) -> String {
    let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    server_entries("app", &addresses, &weights, "")
}

/// The whole file: the event log, the `[rollback]` table, the admin API, a listener `web`
/// routing to pool `app`, then `body`.
fn text(
    events: &std::path::Path,
    admin: SocketAddr,
    listener: SocketAddr,
    rollback: &str,
    body: &str,
) -> String {
    format!(
        "[global]\nevent_log = \"{}\"\n\n{rollback}\n\n[admin]\naddress = \"{admin}\"\ntoken = \"{TOKEN}\"\n\n\
         [listeners.web]\naddress = \"{listener}\"\npool = \"app\"\n\n{body}",
        events.display()
    )
}

impl Serve {
    fn start(rollback: &str, body: &str) -> Serve {
        let dir = tempfile::tempdir().expect("a temp dir");
        let events = dir.path().join("events.jsonl");
        let admin = loopback();
        let listener = loopback();
        let text = text(&events, admin, listener, rollback, body);
        let process = ServeProcess::start(dir.path(), &text, admin, &[]);
        Serve {
            listener,
            events,
            process,
            _dir: dir,
        }
    }

    /// Rewrites the file (not yet reloaded).
    fn write(&self, rollback: &str, body: &str) {
        let admin = self.process.admin;
        let text = text(&self.events, admin, self.listener, rollback, body);
        self.process.write(&text);
    }

    fn output(&self, name: &str) -> String {
        self.process.output(name)
    }

    /// `POST /reload`: its status and JSON answer.
    fn reload(&self) -> (u16, Value) {
        let (status, body) = self.process.reload_over_http(TOKEN);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn version(&self) -> String {
        self.process.version()
    }

    fn events(&self) -> Vec<Value> {
        common::json_lines(&self.events)
    }

    /// Waits for the first event that `wanted` accepts; when it came, after `from`.
    fn wait_for_event(
        &self,
        what: &str,
        from: Instant,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let deadline = from + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| wanted(e)) {
                return (e, from.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; events: {:#?}\nserve's output: {}\n{}",
                self.events(),
                self.output("serve.out"),
                self.output("serve.err")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn is(event: &Value, kind: &str) -> bool {
    event["event"] == kind
}

fn position(events: &[Value], wanted: impl Fn(&Value) -> bool) -> Option<usize> {
    events.iter().position(wanted)
}

fn backends() -> Vec<Backend> {
    (1..=3)
        .map(|i| Backend::start(&format!("app-{i}")))
        .collect()
}

#[test]
fn a_bad_reload_under_load_is_rolled_back_without_a_failed_request_and_not_applied_again() {
    let backends = backends();
    let serve = Serve::start(
        "[rollback]\nwindow = \"30s\"",
        &round_robin(&backends, [1, 1, 1]),
    );
    let good = serve.version();
    let clients = Clients::start(serve.listener, 4, Duration::from_millis(15));
    // A baseline for the guard and the canary.
    std::thread::sleep(Duration::from_secs(6));

    serve.write("[rollback]\nwindow = \"30s\"", &hashed_on_tenant(&backends));
    let fault = Instant::now();
    let (status, answer) = serve.reload();
    assert_eq!(status, 200, "{answer}");
    let bad = answer["version"].as_str().unwrap_or("").to_string();
    assert!(answer["applied"] == true && bad != good, "{answer}");

    let (alert, to_alert) =
        serve.wait_for_event("PoolSkewed", fault, Duration::from_secs(20), |e| {
            is(e, "alert_firing") && e["alertname"] == "PoolSkewed"
        });
    assert_eq!(alert["pool"], "app");
    assert!(
        alert["cause"]
            .as_str()
            .unwrap_or("")
            .contains("live since the reload of"),
        "{alert:#}"
    );
    let (rolled, to_rollback) =
        serve.wait_for_event("config_rolled_back", fault, Duration::from_secs(30), |e| {
            is(e, "config_rolled_back")
        });
    println!(
        "ROLLBACK-TIMING reload_to_alert={:.1} reload_to_rollback={:.1}",
        to_alert.as_secs_f64(),
        to_rollback.as_secs_f64()
    );
    println!("{rolled:#}");
    assert_eq!(rolled["reverted"], bad.as_str(), "{rolled:#}");
    assert_eq!(rolled["restored"], good.as_str(), "{rolled:#}");
    assert_eq!(rolled["alertname"], "PoolSkewed", "{rolled:#}");
    assert_eq!(rolled["pool"], "app");
    let undone: Vec<&str> = rolled["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        undone
            .iter()
            .any(|c| c.contains("algorithm") && c.contains("consistent-hash")),
        "the diff undone: {undone:?}"
    );
    let evidence = rolled["evidence"].to_string();
    assert!(evidence.contains("before →"), "{evidence}");
    assert!(evidence.contains("R "), "{evidence}");

    // The restored version serves, and the previous distribution is back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while serve.version() != good {
        assert!(
            Instant::now() < deadline,
            "the restored version never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let restored_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let shares = clients.shares_since(restored_at);
    assert_eq!(shares.len(), 3, "{shares:?}");
    for (server, share) in &shares {
        assert!(
            (share - 1.0 / 3.0).abs() < 0.1,
            "{server} takes {share:.2} after the rollback: {shares:?}"
        );
    }

    // The events, in order.
    let events = serve.events();
    let applied_bad = position(&events, |e| {
        is(e, "config_applied") && e["version"] == bad.as_str()
    })
    .expect("config_applied of the bad version");
    let firing = position(&events, |e| {
        is(e, "alert_firing") && e["alertname"] == "PoolSkewed"
    })
    .unwrap();
    let rolled_back = position(&events, |e| is(e, "config_rolled_back")).unwrap();
    let applied_good = position(&events, |e| {
        is(e, "config_applied") && e["version"] == good.as_str() && e["previous"] == bad.as_str()
    })
    .expect("config_applied of the restored version");
    assert!(
        applied_bad < firing && firing < rolled_back && rolled_back < applied_good,
        "out of order: {applied_bad} {firing} {rolled_back} {applied_good}: {events:#?}"
    );
    let changes = events[applied_bad]["changes"].to_string();
    assert!(
        changes.contains("algorithm"),
        "config_applied carries the diff: {changes}"
    );
    assert!(
        events[applied_good]["changes"]
            .to_string()
            .contains("algorithm"),
        "{:#}",
        events[applied_good]
    );

    // The unchanged bad file is refused, with why.
    let (status, answer) = serve.reload();
    assert_eq!(status, 409, "{answer}");
    let reasons = answer["reasons"].to_string();
    assert!(
        reasons.contains(&format!("version {bad} was rolled back at"))
            && reasons.contains("PoolSkewed")
            && reasons.contains("edit the file to apply a new version"),
        "{reasons}"
    );
    assert_eq!(serve.version(), good);
    // A fresh edit applies.
    serve.write(
        "[rollback]\nwindow = \"30s\"",
        &round_robin(&backends, [1, 1, 2]),
    );
    let (status, answer) = serve.reload();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], true, "{answer}");

    let (ok, failed) = clients.stop();
    assert_eq!(failed, 0, "{failed} requests failed ({ok} answered)");
    assert!(ok > 1_000, "too little traffic to judge: {ok}");
    assert!(
        serve
            .output("serve.out")
            .contains("rollback: configuration"),
        "{}",
        serve.output("serve.out")
    );
}

#[test]
fn with_rollback_off_the_bad_reload_alerts_and_stays() {
    let backends = backends();
    let head = "[rollback]\nenabled = false";
    let serve = Serve::start(head, &round_robin(&backends, [1, 1, 1]));
    let clients = Clients::start(serve.listener, 4, Duration::from_millis(15));
    std::thread::sleep(Duration::from_secs(6));
    serve.write(head, &hashed_on_tenant(&backends));
    let fault = Instant::now();
    let (status, answer) = serve.reload();
    assert_eq!(status, 200, "{answer}");
    let bad = answer["version"].as_str().unwrap_or("").to_string();
    serve.wait_for_event("PoolSkewed", fault, Duration::from_secs(20), |e| {
        is(e, "alert_firing") && e["alertname"] == "PoolSkewed"
    });
    // Past the point where the canary would have reverted.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !serve.events().iter().any(|e| is(e, "config_rolled_back")),
        "rolled back though [rollback] enabled = false"
    );
    assert_eq!(serve.version(), bad);
    let (_, failed) = clients.stop();
    assert_eq!(failed, 0);
}
