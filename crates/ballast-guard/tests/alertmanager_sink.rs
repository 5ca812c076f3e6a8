//! The sinks against a real Alertmanager on loopback (its API read back, its own webhook
//! notifications captured by a tiny listener and compared with ours), re-sending and retrying
//! on a virtual clock, and the event log read back as `Event`s.
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ballast_core::event::{Event, EventKind};
use ballast_guard::alert::{Alert, AlertState};
use ballast_guard::sink::Sink;
use ballast_guard::sink::alertmanager::AlertmanagerSink;
use ballast_guard::sink::eventlog::EventLogSink;
use ballast_guard::sink::webhook::WebhookSink;
use common::{Alertmanager, free_port, http_get, peer_available};
use serde_json::Value;

const ALERTMANAGER: &str = "prometheus-alertmanager";

/// A tiny HTTP listener that keeps every POST's path and body (recorded before it answers,
/// so a sender's POST is visible here once the sender has its answer).
struct Capture {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Capture {
    fn start() -> Capture {
        Capture::on(TcpListener::bind("127.0.0.1:0").expect("bind the capture listener"))
    }

    fn on(listener: TcpListener) -> Capture {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (posts2, stop2) = (posts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (posts3, stop3) = (posts2.clone(), stop2.clone());
                        std::thread::spawn(move || capture_connection(conn, &posts3, &stop3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Capture { addr, posts, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The bodies POSTed to `path`, as JSON, in order.
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| serde_json::from_str(b).expect("a JSON body"))
            .collect()
    }

    /// Waits up to `timeout` for a body POSTed to `path` that `wanted` accepts.
    fn wait_for(&self, path: &str, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(body) = self.bodies(path).into_iter().find(|b| wanted(b)) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "no wanted POST to {path} within {timeout:?}; got {:?}",
                self.bodies(path)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn capture_connection(conn: TcpStream, posts: &Mutex<Vec<(String, String)>>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        let mut content_length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
            if line == "\r\n" || line == "\n" {
                if request_line.is_empty() {
                    continue;
                }
                break;
            }
            if request_line.is_empty() {
                request_line = line.trim().to_string();
                continue;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        if parts.next() == Some("POST") {
            let path = parts.next().unwrap_or("").to_string();
            posts
                .lock()
                .unwrap()
                .push((path, String::from_utf8_lossy(&body).into_owned()));
        }
        let response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// An Alertmanager that sends every group to the test's webhook receiver at once.
fn alertmanager_notifying(webhook_url: &str) -> Alertmanager {
    Alertmanager::start_with(&format!(
        "route:\n  receiver: capture\n  group_by: ['instance', 'pool']\n  group_wait: 0s\n  \
         group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: capture\n    \
         webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n"
    ))
}

impl common::Alertmanager {
    /// The alerts `GET /api/v2/alerts` lists with this `alertname`.
    fn alerts_named(&self, alertname: &str) -> Vec<Value> {
        let (status, body) = http_get(self.addr, "/api/v2/alerts");
        assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
        let alerts: Vec<Value> = serde_json::from_str(&body).expect("a JSON array of alerts");
        alerts
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .collect()
    }

    /// Waits up to `timeout` until the alerts named `alertname` satisfy `wanted`.
    fn wait_for(
        &self,
        alertname: &str,
        timeout: Duration,
        wanted: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.alerts_named(alertname);
            if wanted(&alerts) {
                return alerts;
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager's alerts named {alertname} never became what was wanted: {alerts:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ms_of(rfc3339: &Value) -> u64 {
    let text = rfc3339.as_str().expect("a time as a string");
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A firing alert as the lifecycle makes them; `server` is empty for a pool-wide alert.
fn firing(alertname: &str, server: &str, starts_at_ms: u64) -> Arc<Alert> {
    Arc::new(Alert {
        labels: strings(&[
            ("alertname", alertname),
            ("severity", "critical"),
            ("pool", "app"),
            ("server", server),
            ("source", "haproxy"),
            ("instance", "127.0.0.1:8404"),
        ]),
        annotations: strings(&[
            (
                "summary",
                "app-3 takes 61% of pool app's requests (expected 33%)",
            ),
            ("cause", "the load balancer's distribution: weights 5/1/1"),
            ("runbook", "docs/runbook.md#distribution"),
        ]),
        state: AlertState::Firing,
        active_since_ms: starts_at_ms - 2_000,
        starts_at_ms: Some(starts_at_ms),
        ends_at_ms: None,
        inhibited_by: None,
    })
}

fn resolved(alert: Arc<Alert>, ends_at_ms: u64) -> Arc<Alert> {
    let mut alert = Arc::unwrap_or_clone(alert);
    alert.state = AlertState::Resolved;
    alert.ends_at_ms = Some(ends_at_ms);
    Arc::new(alert)
}

/// A JSON value with every leaf replaced by its type: two payloads with the same shape have
/// the same keys, nested the same way, with values of the same JSON types.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// The labels of `alert` Alertmanager keeps (empty values are no label), as JSON.
fn json_labels(labels: &BTreeMap<String, String>) -> Value {
    labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[test]
fn a_firing_alert_is_active_in_alertmanager_re_sent_with_a_later_end_and_gone_after_resolve() {
    if !peer_available(ALERTMANAGER) {
        return;
    }
    let receiver = Capture::start();
    let am = alertmanager_notifying(&receiver.url("/alertmanager"));
    let resend = Duration::from_secs(1);
    let mut sink = AlertmanagerSink::new(&am.url())
        .unwrap()
        .with_resend_interval(resend)
        .with_generator_url("http://127.0.0.1:9/watch");
    let started = now_ms();
    let alert = firing("BallastPoolSkewed", "app-3", started - 5_000);

    let sent = Instant::now();
    sink.deliver(started, std::slice::from_ref(&alert)).unwrap();
    let listed = am.wait_for("BallastPoolSkewed", Duration::from_secs(5), |a| {
        a.len() == 1 && a[0]["status"]["state"] == "active"
    });
    eprintln!(
        "alert active in Alertmanager's API {:?} after the POST",
        sent.elapsed()
    );
    let got = &listed[0];
    assert_eq!(got["labels"], json_labels(&alert.labels));
    assert_eq!(got["annotations"], json_labels(&alert.annotations));
    assert_eq!(got["generatorURL"], "http://127.0.0.1:9/watch");
    assert_eq!(ms_of(&got["startsAt"]), started - 5_000);
    let first_end = ms_of(&got["endsAt"]);
    assert_eq!(
        first_end,
        started + 4 * 1_000,
        "valid for 4 resend intervals"
    );

    // A round within the resend interval sends nothing new; one after it extends the end.
    sink.deliver(started + 500, std::slice::from_ref(&alert))
        .unwrap();
    std::thread::sleep(resend);
    let later = now_ms();
    sink.deliver(later, std::slice::from_ref(&alert)).unwrap();
    let listed = am.wait_for("BallastPoolSkewed", Duration::from_secs(5), |a| {
        a.len() == 1 && ms_of(&a[0]["endsAt"]) > first_end
    });
    assert_eq!(ms_of(&listed[0]["endsAt"]), later + 4 * 1_000);
    assert_eq!(
        ms_of(&listed[0]["startsAt"]),
        started - 5_000,
        "the same alert"
    );

    let resolved_at = now_ms();
    sink.deliver(resolved_at, &[resolved(alert, resolved_at)])
        .unwrap();
    am.wait_for("BallastPoolSkewed", Duration::from_secs(5), |a| {
        a.iter().all(|a| a["status"]["state"] != "active")
    });
    // And Alertmanager told its receiver it resolved.
    receiver.wait_for("/alertmanager", Duration::from_secs(10), |b| {
        b["status"] == "resolved"
    });
}

#[test]
fn our_webhook_payload_has_the_shape_and_values_of_alertmanagers_own() {
    if !peer_available(ALERTMANAGER) {
        return;
    }
    let receiver = Capture::start();
    let am = alertmanager_notifying(&receiver.url("/alertmanager"));
    let mut to_alertmanager = AlertmanagerSink::new(&am.url())
        .unwrap()
        .with_generator_url("http://127.0.0.1:9/watch");
    let mut webhook = WebhookSink::new(&receiver.url("/ballast"))
        .unwrap()
        .with_receiver("capture")
        .with_generator_url("http://127.0.0.1:9/watch")
        .with_external_url(&am.url());
    let started = now_ms();
    // Two alerts of one pool: one group, common labels are those they share.
    let skew = firing("BallastPoolSkewed", "app-3", started - 5_000);
    let pool_wide = firing("BallastPoolQueueing", "", started - 3_000);
    let alerts = [skew.clone(), pool_wide.clone()];

    let sent = Instant::now();
    to_alertmanager.deliver(started, &alerts).unwrap();
    webhook.deliver(started, &alerts).unwrap();
    let theirs = receiver.wait_for("/alertmanager", Duration::from_secs(10), |b| {
        b["alerts"].as_array().is_some_and(|a| a.len() == 2)
    });
    eprintln!(
        "Alertmanager's webhook arrived {:?} after the POST",
        sent.elapsed()
    );
    let ours = receiver.bodies("/ballast");
    assert_eq!(ours.len(), 1, "one notification for the group: {ours:?}");
    compare(&theirs, &ours[0], "firing");

    let resolved_at = now_ms();
    let both_resolved = [
        resolved(skew, resolved_at),
        resolved(pool_wide, resolved_at),
    ];
    to_alertmanager
        .deliver(resolved_at, &both_resolved)
        .unwrap();
    webhook.deliver(resolved_at, &both_resolved).unwrap();
    let theirs = receiver.wait_for("/alertmanager", Duration::from_secs(10), |b| {
        b["status"] == "resolved"
    });
    let ours = receiver.bodies("/ballast");
    assert_eq!(ours.len(), 2, "told once more, of the resolve: {ours:?}");
    compare(&theirs, &ours[1], "resolved");
    // Told once: nothing more while nothing changes.
    webhook.deliver(resolved_at + 1_000, &[]).unwrap();
    assert_eq!(receiver.bodies("/ballast").len(), 2);
}

/// Alertmanager's notification and ours: the same shape, and the same values where they
/// describe the alerts.
fn compare(theirs: &Value, ours: &Value, status: &str) {
    let by_name = |body: &Value| -> BTreeMap<String, Value> {
        body["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_string(),
                    a.clone(),
                )
            })
            .collect()
    };
    let (their_alerts, our_alerts) = (by_name(theirs), by_name(ours));
    assert_eq!(
        their_alerts.keys().collect::<Vec<_>>(),
        our_alerts.keys().collect::<Vec<_>>()
    );
    // Alertmanager orders a group's alerts its own way; shapes compare alert by alert.
    let without_alerts = |body: &Value| {
        let mut body = body.clone();
        body["alerts"] = Value::Null;
        shape(&body)
    };
    assert_eq!(
        without_alerts(theirs),
        without_alerts(ours),
        "theirs: {theirs}\nours: {ours}"
    );
    for (name, their) in &their_alerts {
        let our = &our_alerts[name];
        assert_eq!(
            shape(their),
            shape(our),
            "{name}: theirs {their}\nours {our}"
        );
        for key in [
            "status",
            "labels",
            "annotations",
            "generatorURL",
            "fingerprint",
        ] {
            assert_eq!(their[key], our[key], "{name}: {key}");
        }
        assert_eq!(ms_of(&their["startsAt"]), ms_of(&our["startsAt"]), "{name}");
        assert_eq!(their["status"], status);
        if status == "firing" {
            assert_eq!(
                their["endsAt"], our["endsAt"],
                "{name}: a firing alert's end"
            );
        } else {
            assert_eq!(ms_of(&their["endsAt"]), ms_of(&our["endsAt"]), "{name}");
        }
    }
    for key in [
        "version",
        "status",
        "receiver",
        "groupKey",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "truncatedAlerts",
    ] {
        assert_eq!(
            theirs[key], ours[key],
            "{key}: theirs {theirs}\nours {ours}"
        );
    }
}

#[test]
fn a_firing_alert_is_re_posted_after_the_resend_interval_not_every_round() {
    let fake_alertmanager = Capture::start();
    let mut sink = AlertmanagerSink::new(&fake_alertmanager.url(""))
        .unwrap()
        .with_resend_interval(Duration::from_secs(2));
    let start = now_ms();
    let alert = firing("BallastPoolSkewed", "app-3", start - 1_000);
    // Rounds every 250 ms of a virtual clock over 5 s: sent at 0 s, 2 s and 4 s.
    for round in 0..20 {
        sink.deliver(start + round * 250, std::slice::from_ref(&alert))
            .unwrap();
    }
    let posts = fake_alertmanager.bodies("/api/v2/alerts");
    let ends: Vec<u64> = posts.iter().map(|p| ms_of(&p[0]["endsAt"])).collect();
    assert_eq!(
        ends,
        [start + 8_000, start + 10_000, start + 12_000],
        "{posts:?}"
    );
    for post in &posts {
        assert_eq!(post.as_array().unwrap().len(), 1);
        assert_eq!(ms_of(&post[0]["startsAt"]), start - 1_000);
    }
}

#[test]
fn a_post_to_a_dead_address_is_retried_next_round_and_reported_once() {
    let port = free_port();
    let mut sink = AlertmanagerSink::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_resend_interval(Duration::from_secs(30));
    let start = now_ms();
    let a = firing("BallastPoolSkewed", "app-3", start - 1_000);
    let b = firing("BallastServerSaturated", "app-2", start - 500);

    let error = sink
        .deliver(start, std::slice::from_ref(&a))
        .expect_err("nothing listens there");
    assert!(
        error
            .to_string()
            .contains(&format!("127.0.0.1:{port}/api/v2/alerts")),
        "{error}"
    );
    assert!(
        error.to_string().contains("sent again next round"),
        "{error}"
    );
    // The same outage is not reported again, but is still known.
    assert!(
        sink.deliver(
            start + 1_000,
            &[resolved(a.clone(), start + 1_000), b.clone()]
        )
        .is_ok()
    );
    assert!(sink.last_error().is_some());
    assert_eq!(sink.resolved_backlog(), 1);

    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the dead port");
    let alertmanager = Capture::on(listener);
    // Well within the resend interval: only a retry explains a POST now.
    sink.deliver(start + 2_000, std::slice::from_ref(&b))
        .unwrap();
    assert!(sink.last_error().is_none());
    let posts = alertmanager.bodies("/api/v2/alerts");
    assert_eq!(posts.len(), 1, "{posts:?}");
    let sent: BTreeMap<&str, u64> = posts[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["labels"]["alertname"].as_str().unwrap(),
                ms_of(&p["endsAt"]),
            )
        })
        .collect();
    assert_eq!(
        sent,
        BTreeMap::from([
            ("BallastPoolSkewed", start + 1_000),
            ("BallastServerSaturated", start + 2_000 + 4 * 30_000),
        ])
    );
    sink.deliver(start + 3_000, std::slice::from_ref(&b))
        .unwrap();
    assert_eq!(
        alertmanager.bodies("/api/v2/alerts").len(),
        1,
        "not every round"
    );
}

#[test]
fn the_event_log_has_one_firing_and_one_resolved_line_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // The log is shared with `serve`: lines already there stay.
    let earlier = Event {
        at_ms: 1,
        kind: EventKind::ServerDown {
            pool: "app".into(),
            server: "app-1".into(),
            reason: "check failed".into(),
        },
    };
    std::fs::write(
        &path,
        format!("{}\n", serde_json::to_string(&earlier).unwrap()),
    )
    .unwrap();

    let mut sink = EventLogSink::open(&path).unwrap();
    let start = now_ms();
    let skew = firing("BallastPoolSkewed", "app-3", start - 1_000);
    let queueing = firing("BallastPoolQueueing", "", start - 500);
    for round in 0..5 {
        sink.deliver(start + round * 1_000, &[skew.clone(), queueing.clone()])
            .unwrap();
    }
    sink.deliver(
        start + 5_000,
        &[resolved(skew.clone(), start + 5_000), queueing.clone()],
    )
    .unwrap();
    for round in 6..9 {
        sink.deliver(start + round * 1_000, std::slice::from_ref(&queueing))
            .unwrap();
    }

    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(events.len(), 4, "{text}");
    assert_eq!(events[0], earlier);
    let firing_lines: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AlertFiring { .. }))
        .collect();
    assert_eq!(firing_lines.len(), 2, "{text}");
    let skew_fired = firing_lines
        .iter()
        .find(|e| matches!(&e.kind, EventKind::AlertFiring { alertname, .. } if alertname == "BallastPoolSkewed"))
        .expect("the skew's firing");
    assert_eq!(skew_fired.at_ms, start - 1_000);
    assert_eq!(
        skew_fired.kind,
        EventKind::AlertFiring {
            alertname: "BallastPoolSkewed".into(),
            severity: "critical".into(),
            pool: "app".into(),
            server: Some("app-3".into()),
            source: "haproxy".into(),
            instance: "127.0.0.1:8404".into(),
            summary: skew.annotation("summary").unwrap().into(),
            cause: skew.annotation("cause").unwrap().into(),
        }
    );
    assert!(firing_lines.iter().any(|e| matches!(
        &e.kind,
        EventKind::AlertFiring { alertname, server: None, .. } if alertname == "BallastPoolQueueing"
    )));
    assert_eq!(
        events[3],
        Event {
            at_ms: start + 5_000,
            kind: EventKind::AlertResolved {
                alertname: "BallastPoolSkewed".into(),
                pool: "app".into(),
                server: Some("app-3".into()),
                source: "haproxy".into(),
                instance: "127.0.0.1:8404".into(),
                fired_at_ms: start - 1_000,
            },
        }
    );
}

#[test]
fn a_webhook_that_is_down_is_reported_once_and_told_when_it_is_back() {
    let port = free_port();
    let mut webhook = WebhookSink::new(&format!("http://127.0.0.1:{port}/hook"))
        .unwrap()
        .with_repeat_interval(Duration::from_secs(3600));
    let start = now_ms();
    let alert = firing("BallastPoolSkewed", "app-3", start - 1_000);
    let error = webhook
        .deliver(start, std::slice::from_ref(&alert))
        .expect_err("nothing listens there");
    assert!(error.to_string().contains("/hook"), "{error}");
    assert!(
        webhook
            .deliver(start + 1_000, std::slice::from_ref(&alert))
            .is_ok()
    );
    assert!(webhook.last_error().is_some());

    let receiver = Capture::on(TcpListener::bind(("127.0.0.1", port)).expect("bind the dead port"));
    webhook
        .deliver(start + 2_000, std::slice::from_ref(&alert))
        .unwrap();
    webhook
        .deliver(start + 3_000, std::slice::from_ref(&alert))
        .unwrap();
    assert!(webhook.last_error().is_none());
    let told = receiver.bodies("/hook");
    assert_eq!(
        told.len(),
        1,
        "told once it is back, then not every round: {told:?}"
    );
    assert_eq!(told[0]["status"], "firing");
    assert_eq!(told[0]["alerts"][0]["labels"]["server"], "app-3");
}
