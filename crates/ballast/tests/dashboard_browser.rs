//! The dashboard in a real browser: a real `ballast serve` with three backends and traffic,
//! its page at `/` on the admin listener loaded by Debian's headless Chromium, driven through
//! chromedriver's W3C WebDriver HTTP API (a few plain HTTP calls). The test waits until the
//! page lists the pool and its servers, stops a backend and waits until the page shows it
//! down, reloads a risky weight change and waits until the page shows the alert and its
//! cause, then saves a screenshot to `target/dashboard-screenshot.png`. A second test runs
//! `ballast watch --dashboard` on a real HAProxy and reads the state and the page over HTTP.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::clients::ClientThreads;
use common::serve::ServeProcess;
use common::{
    Backend, PeerGroup, haproxy, http, loopback, peer_available, wait_for, wait_for_port,
};

const TOKEN: &str = "dashboard-test-token-0123456789";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One HTTP/1.1 exchange on a fresh connection: the status (0 when it failed), the head and
/// the body (chunked bodies joined).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let r = http::exchange(addr, method, path, headers, body, Duration::from_secs(10));
    (r.status, r.head, r.body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    exchange(addr, "GET", path, &[], "")
}

/// Client threads sending GETs to `addr` until dropped or `bound` passes.
struct Traffic {
    sent: Arc<AtomicU64>,
    _threads: ClientThreads,
}

impl Traffic {
    fn start(addr: SocketAddr, clients: usize, gap: Duration, bound: Duration) -> Traffic {
        let sent = Arc::new(AtomicU64::new(0));
        let mut threads = ClientThreads::new();
        threads.spawn(clients, bound, |_| {
            let sent = sent.clone();
            move || {
                if get(addr, "/").0 == 200 {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(gap);
            }
        });
        Traffic {
            sent,
            _threads: threads,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chromium through chromedriver

/// chromedriver in its own process group (its Chromium with it), with one session.
struct Browser {
    driver: SocketAddr,
    session: String,
    _dir: tempfile::TempDir,
    _peer: PeerGroup,
}

impl Browser {
    fn start() -> Browser {
        let dir = tempfile::tempdir().expect("a temp dir");
        let driver = loopback();
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={}", driver.port()));
        let peer = PeerGroup::spawn_with_output(
            command,
            Stdio::from(File::create(dir.path().join("chromedriver.out")).unwrap()),
            Stdio::from(File::create(dir.path().join("chromedriver.err")).unwrap()),
        );
        assert!(
            wait_for_port(driver, Duration::from_secs(10)),
            "chromedriver did not listen on {driver}"
        );
        // Debian's /usr/bin/chromium is a wrapper script; the browser itself is under lib.
        let binary = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("chromium");
        let profile = dir.path().join("profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,800", "--hide-scrollbars",
                    // Its crash handler would leave the process group (and outlive the test).
                    "--disable-crash-reporter", "--disable-breakpad",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let (status, _, body) = exchange(
            driver,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &capabilities.to_string(),
        );
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session ({status}): {body}"))
            .to_string();
        let browser = Browser {
            driver,
            session,
            _dir: dir,
            _peer: peer,
        };
        browser.viewport(1280, 800);
        browser
    }

    /// Sizes the window so that the page itself (the viewport) is `width` × `height`.
    fn viewport(&self, width: u64, height: u64) {
        let script = "return [window.outerWidth - window.innerWidth, \
                      window.outerHeight - window.innerHeight]";
        let frame = self
            .command(
                "POST",
                "/execute/sync",
                Some(json!({"script": script, "args": []})),
            )
            .unwrap_or_default();
        let (dw, dh) = (
            frame[0].as_u64().unwrap_or(0),
            frame[1].as_u64().unwrap_or(0),
        );
        let _ = self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width + dw, "height": height + dh})),
        );
    }

    /// A WebDriver command: its `value`, or the error WebDriver answered.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if method == "POST" {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let (status, _, text) = exchange(self.driver, method, &path, headers, &body);
        let answer: Value =
            serde_json::from_str(&text).map_err(|e| format!("{status} {text}: {e}"))?;
        if status == 200 {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{status}: {}", answer["value"]))
        }
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// The text of every element `css` matches, through find-elements and element text;
    /// `None` when an element went stale in between (the page redraws every second).
    fn texts(&self, css: &str) -> Option<Vec<String>> {
        let found = self
            .command(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        found
            .as_array()?
            .iter()
            .map(|e| {
                let id = e[ELEMENT].as_str()?;
                self.command("GET", &format!("/element/{id}/text"), None)
                    .ok()?
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    /// Waits until `css` matches elements whose texts `wanted` accepts; their texts.
    fn wait_for(
        &self,
        what: &str,
        css: &str,
        timeout: Duration,
        wanted: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(texts) = self.texts(css) {
                if !texts.is_empty() && wanted(&texts) {
                    return texts;
                }
                last = Some(texts);
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} ({css}) within {timeout:?}; it showed {last:?}; \
                 whole page: {:?}",
                self.texts("body")
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// A PNG of the viewport.
    fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .command("GET", "/screenshot", None)
            .expect("a screenshot");
        base64_decode(encoded.as_str().unwrap_or("")).expect("the screenshot is base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium cleanly; the process group goes with the peer after.
        let _ = exchange(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            "",
        );
    }
}

/// Standard base64 (WebDriver's screenshot encoding), padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join("dashboard-screenshot.png")
}

// ---------------------------------------------------------------------------------------------
// ballast serve

struct Serve {
    listener: SocketAddr,
    process: ServeProcess,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn text(
        admin: SocketAddr,
        listener: SocketAddr,
        servers: &[(String, SocketAddr)],
        weights: &[u32],
    ) -> String {
        let mut text = format!(
            "[admin]\naddress = \"{admin}\"\ntoken = \"{TOKEN}\"\n\n\
             [listeners.web]\naddress = \"{listener}\"\npool = \"app\"\n\n\
             [pools.app]\nalgorithm = \"round-robin\"\n\n\
             [pools.app.health]\ninterval = \"300ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 1\n\
             initial = \"up\"\n\n"
        );
        for ((name, addr), w) in servers.iter().zip(weights) {
            text.push_str(&format!(
                "[[pools.app.servers]]\nname = \"{name}\"\naddress = \"{addr}\"\nweight = {w}\n\n"
            ));
        }
        text
    }

    fn start(servers: &[(String, SocketAddr)]) -> Serve {
        let dir = tempfile::tempdir().expect("a temp dir");
        let admin = loopback();
        let listener = loopback();
        let text = Serve::text(admin, listener, servers, &[1, 1, 1]);
        let process = ServeProcess::start(dir.path(), &text, admin, &["--threads", "1"]);
        Serve {
            listener,
            process,
            _dir: dir,
        }
    }

    fn admin(&self) -> SocketAddr {
        self.process.admin
    }

    fn reload(&self, servers: &[(String, SocketAddr)], weights: &[u32]) {
        self.process
            .write(&Serve::text(self.admin(), self.listener, servers, weights));
        let (status, body) = self.process.reload_over_http(TOKEN);
        assert_eq!(
            status,
            200,
            "POST /reload: {body} {}",
            self.process.stderr()
        );
    }
}

#[test]
fn the_page_in_chromium_shows_the_pool_a_server_going_down_and_the_alert_with_its_cause() {
    if !peer_available("chromedriver") || !peer_available("chromium") {
        return;
    }
    let started = Instant::now();
    let backends: Vec<Backend> = ["app-1", "app-2", "app-3"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let servers: Vec<(String, SocketAddr)> =
        backends.iter().map(|b| (b.name.clone(), b.addr)).collect();
    let serve = Serve::start(&servers);
    let traffic = Traffic::start(
        serve.listener,
        2,
        Duration::from_millis(15),
        Duration::from_secs(30),
    );

    // The state is readable without the token and has the pool; the page is one HTML file
    // that may load nothing from elsewhere.
    let state: Value = wait_for("the guard's first state", Duration::from_secs(5), || {
        let (status, _, body) = get(serve.admin(), "/dashboard/state");
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    });
    assert_eq!(state["title"], "ballast serve");
    assert_eq!(state["instances"][0]["pools"][0]["name"], "app");
    let (status, head, page) = get(serve.admin(), "/");
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(page.contains("/dashboard/state"));
    let (status, _, _) = exchange(serve.admin(), "POST", "/", &[], "");
    assert_eq!(status, 405, "the page offers no action");

    let browser = Browser::start();
    browser.open(&format!("http://{}/", serve.admin()));
    let names = browser.wait_for(
        "the pool and its three servers",
        "[data-pool=\"app\"] tr[data-server] td.sname",
        Duration::from_secs(8),
        |t| t.len() == 3,
    );
    assert_eq!(names, ["app-1", "app-2", "app-3"]);
    browser.wait_for(
        "every server up",
        "[data-pool=\"app\"] tr[data-server] .state",
        Duration::from_secs(5),
        |t| t.iter().all(|s| s.eq_ignore_ascii_case("up")),
    );
    // Traffic shows as shares near a third each.
    browser.wait_for(
        "shares from the traffic",
        "[data-pool=\"app\"] tr[data-server] .share",
        Duration::from_secs(8),
        |t| {
            t.iter().all(|s| {
                s.trim_end_matches('%')
                    .parse::<f64>()
                    .is_ok_and(|p| (20.0..=47.0).contains(&p))
            })
        },
    );

    // app-2 stops answering: its health checks fail and the page shows it down.
    let mut backends = backends;
    drop(backends.remove(1));
    let stopped = Instant::now();
    browser.wait_for(
        "app-2 down",
        "[data-pool=\"app\"] tr[data-server=\"app-2\"] .state",
        Duration::from_secs(8),
        |t| t[0].eq_ignore_ascii_case("down"),
    );
    let down_after = stopped.elapsed();
    browser.wait_for(
        "the server_down event in the timeline",
        "li[data-event=\"server_down\"] .what",
        Duration::from_secs(5),
        |t| t.iter().any(|s| s.contains("app-2")),
    );

    // A reload moves app-3 to weight 8 (app-2 stays configured, and down): the guard alerts,
    // naming the change.
    serve.reload(&servers, &[1, 1, 8]);
    let alerted = Instant::now();
    // The alert the reload caused names the change in its cause.
    let causes = browser.wait_for(
        "an alert on pool app whose cause names the weight change",
        ".alert[data-pool=\"app\"] .cause",
        Duration::from_secs(10),
        |t| {
            t.iter()
                .any(|c| c.starts_with("Cause: ") && c.contains("weight of server app-3: 1 → 8"))
        },
    );
    let alert_after = alerted.elapsed();
    let alerts = browser
        .texts(".alert[data-pool=\"app\"] .name")
        .unwrap_or_default();
    assert!(
        alerts.iter().any(|n| matches!(
            n.as_str(),
            "ConfigChangeRisky" | "PoolSharesShifted" | "PoolSkewed"
        )),
        "{alerts:?}"
    );
    let diff = browser.wait_for(
        "the configuration diff in the timeline",
        "li[data-event^=\"config_\"] ul.lines li",
        Duration::from_secs(5),
        |t| t.iter().any(|l| l.contains("weight")),
    );
    // Let the shares after the change fill in before the picture.
    std::thread::sleep(Duration::from_millis(2500));
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let path = screenshot_path();
    std::fs::write(&path, &png).expect("write the screenshot");
    let sent = traffic.sent.load(Ordering::Relaxed);
    drop(traffic);
    eprintln!(
        "DASHBOARD screenshot={} bytes={} down_shown_after={:.1}s alert_shown_after={:.1}s \
         requests={sent} total={:.1}s",
        path.canonicalize().unwrap_or(path.clone()).display(),
        png.len(),
        down_after.as_secs_f64(),
        alert_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("DASHBOARD alerts={alerts:?} causes={causes:?} diff={diff:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---------------------------------------------------------------------------------------------
// ballast watch --dashboard on HAProxy

#[test]
fn watch_dashboard_on_haproxy_serves_the_page_and_a_state_with_its_pools() {
    if !peer_available("haproxy") {
        return;
    }
    let started = Instant::now();
    let backends: Vec<Backend> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let dir = tempfile::tempdir().expect("a temp dir");
    let socket = dir.path().join("admin.sock");
    let front = loopback();
    let config = dir.path().join("haproxy.cfg");
    let mut text = format!(
        "global\n    stats socket {} mode 600 level admin\n    maxconn 200\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    \
         timeout server 10s\nfrontend web\n    bind {front}\n    default_backend app\n\
         backend app\n    balance roundrobin\n",
        socket.display()
    );
    for b in &backends {
        text.push_str(&format!("    server {} {} maxconn 50\n", b.name, b.addr));
    }
    std::fs::write(&config, text).unwrap();
    let _haproxy = haproxy::spawn(&config, None);
    assert!(
        wait_for_port(front, Duration::from_secs(5)),
        "HAProxy listens"
    );
    wait_for("HAProxy's stats socket", Duration::from_secs(5), || {
        haproxy::command(&socket, "show info").filter(|i| i.contains("Pid:"))
    });

    let dashboard = loopback();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    command
        .arg("watch")
        .arg(format!("haproxy:{}", socket.display()))
        .arg("--config")
        .arg(&config)
        .args(["--format", "json", "--duration", "25s", "--dashboard"])
        .arg(dashboard.to_string());
    let watch = PeerGroup::spawn_with_output(
        command,
        Stdio::from(File::create(dir.path().join("watch.out")).unwrap()),
        Stdio::from(File::create(dir.path().join("watch.err")).unwrap()),
    );
    let watch_err = || std::fs::read_to_string(dir.path().join("watch.err")).unwrap_or_default();
    assert!(
        wait_for_port(dashboard, Duration::from_secs(5)),
        "the dashboard did not listen on {dashboard}: {}",
        watch_err()
    );
    let traffic = Traffic::start(front, 2, Duration::from_millis(10), Duration::from_secs(20));

    // The page, read-only.
    let (status, head, page) = get(dashboard, "/");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    assert!(page.contains("<title>ballast dashboard</title>") && page.contains("/dashboard/state"));
    assert_eq!(exchange(dashboard, "POST", "/", &[], "").0, 405);
    assert_eq!(get(dashboard, "/nothing").0, 404);

    // The state lists HAProxy's pool and its servers, with shares from the traffic.
    let state: Value = wait_for(
        "a state with traffic on pool app",
        Duration::from_secs(10),
        || {
            let (_, _, body) = get(dashboard, "/dashboard/state");
            let state: Value = serde_json::from_str(&body).ok()?;
            let pool = &state["instances"][0]["pools"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "app")?
                .clone();
            (pool["requests"].as_u64()? >= 50).then_some(state)
        },
    );
    let instance = &state["instances"][0];
    assert_eq!(instance["source"], "haproxy");
    assert_eq!(instance["instance"], socket.display().to_string());
    let pool = instance["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "app")
        .unwrap();
    let servers = pool["servers"].as_array().unwrap();
    let names: Vec<&str> = servers.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["s1", "s2", "s3"]);
    let shares: f64 = servers.iter().filter_map(|s| s["share"].as_f64()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "shares sum to 1: {pool:#}");
    for s in servers {
        assert_eq!(s["state"], "up", "{s:#}");
        assert_eq!(s["limit"], 50, "maxconn is the limit: {s:#}");
        let expected = s["expected_share"].as_f64().unwrap();
        assert!((expected - 1.0 / 3.0).abs() < 1e-6, "{s:#}");
    }

    // A server put in maintenance shows so, and leaves the expected shares.
    let reply = haproxy::command(&socket, "disable server app/s2").unwrap_or_default();
    assert!(reply.trim().is_empty(), "HAProxy refused: {reply}");
    let s2: Value = wait_for("s2 in maintenance", Duration::from_secs(5), || {
        let (_, _, body) = get(dashboard, "/dashboard/state");
        let state: Value = serde_json::from_str(&body).ok()?;
        let s2 = state["instances"][0]["pools"][0]["servers"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "s2")?
            .clone();
        (s2["state"] == "maintenance").then_some(s2)
    });
    assert_eq!(s2["expected_share"], 0.0, "{s2:#}");
    drop(traffic);
    drop(watch);
    eprintln!(
        "DASHBOARD-WATCH haproxy pools={} total={:.1}s",
        instance["pools"].as_array().map_or(0, Vec::len),
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
