//! `ballast demo`: everything on an embedded default. Four in-process servers of different
//! speeds, the balancer on `examples/demo.toml` with its guard and canary, light open-loop
//! traffic, and the story every outage report tells, in about half a minute: healthy traffic; a
//! change `check` passes with only a warning goes live; the guard's alert names it within
//! seconds; the canary rolls it back; the postmortem draft is written. `--quiet-run` keeps the
//! healthy version and only shows the live distribution. `--scenario` picks the class of
//! outage (`demo/scenario.rs` says what differs between them).

#[path = "demo/scenario.rs"]
mod scenario;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use ballast_core::config::parse_duration;
use ballast_core::event::EventKind;
use ballast_proxy::demo_backend::DemoBackend;
use ballast_proxy::{Options, Proxy};

use crate::stdout::say;

/// The configuration the demo runs (also in examples/demo.toml, checked by the tests).
const DEMO_CONFIG: &str = include_str!("../../../examples/demo.toml");

/// The outage every postmortem describes, caught and undone in about half a minute.
///
/// Starts four servers in process (two fast, one medium, one slow), the balancer in front of
/// them (least-connections, health checks, limits, the guard and its canary) and light
/// traffic from clients that all carry the same `X-Tenant` header, as clients behind one
/// proxy do. Then:
///   1. healthy traffic for 15 s (open the dashboard URL it prints);
///   2. a change goes live: pool `app` hashes on `X-Tenant`. `ballast check` passes it with
///      warnings only, as CI would;
///   3. every request now goes to one server: the guard's alert fires within seconds and
///      names the change as the likely trigger;
///   4. the canary reverts to the previous configuration, without dropping a request;
///   5. the postmortem draft (Markdown and HTML) is written next to the event log and its
///      path printed.
///
/// --scenario picks another outage (`--scenario list` prints them):
///   hash    (the default) the story above: PoolSkewed
///   limit   every server's max_connections drops from 300 to 1 while the servers answer
///           in 40-160 ms: requests queue, then 503; PoolSaturated
///   drain   two of four servers drained (weight 0); the other two hit their limit of 6
///           connections: PoolSaturated
/// Each change passes `check` with warnings only, and each story takes about half a minute.
///
/// With --quiet-run the change never comes: the healthy version runs, with a summary of the
/// distribution every two seconds, until Ctrl-C or --duration.
///
/// Examples:
///   ballast demo                          # the story, about half a minute
///   ballast demo --scenario limit         # a connection limit far below the traffic
///   ballast demo --quiet-run              # the healthy balancer until Ctrl-C
///   ballast demo --quiet-run --duration 20s --rate 300
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// With --quiet-run: stop after this long (default: run until Ctrl-C). The story ends by
    /// itself.
    #[arg(long)]
    duration: Option<String>,
    /// Requests per second of background traffic.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Listener port (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Admin API port (0 picks a free one); the dashboard is at its `/`.
    #[arg(long, default_value_t = 9900)]
    admin_port: u16,
    /// Keep the healthy version: no change, no outage, only the live distribution.
    #[arg(long)]
    quiet_run: bool,
    /// Where the configuration, the event log and the postmortem go (default: a new
    /// directory under the system's temporary directory, kept after the demo).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// The outage to stage: hash (the default), limit or drain; `list` prints them.
    #[arg(long, default_value = "hash", value_name = "NAME")]
    scenario: String,
}

pub fn run(args: DemoArgs) -> u8 {
    let duration = match args.duration.as_deref().map(parse_duration).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --duration {e}");
            return 2;
        }
    };
    if args.scenario == "list" {
        print!("{}", scenario::list());
        return 0;
    }
    let scenario = match scenario::find(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --scenario: {e}");
            return 2;
        }
    };
    if args.rate == 0 || args.rate > 10_000 {
        eprintln!("error: --rate must be between 1 and 10,000 requests per second");
        return 2;
    }
    // The story prints every event it needs; the event log has them all.
    crate::init_logging_with("warn");
    let runtime = match crate::runtime(None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(demo(args, scenario, duration))
}

async fn demo(args: DemoArgs, scenario: &scenario::Scenario, duration: Option<Duration>) -> u8 {
    let speeds = scenario.servers;
    // The scenario's healthy version first: its edits match the embedded default's addresses.
    let mut config = (scenario.healthy)(DEMO_CONFIG)
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", args.port))
        .replace("127.0.0.1:9900", &format!("127.0.0.1:{}", args.admin_port));
    let mut backends = Vec::new();
    for (i, (name, ms)) in speeds.iter().enumerate() {
        match DemoBackend::start(name, "127.0.0.1:0", Duration::from_millis(*ms)).await {
            Ok(b) => {
                config = config.replace(&format!("127.0.0.1:{}", 9101 + i), &b.addr.to_string());
                backends.push(b);
            }
            Err(e) => {
                eprintln!("error: cannot start demo server {name}: {e}");
                return 1;
            }
        }
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "ballast-demo-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ))
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return 1;
    }
    let events = dir.join("events.jsonl");
    // A fresh log per run: the postmortem reads this run only.
    let _ = std::fs::remove_file(&events);
    let config = config.replacen(
        "[global]\n",
        &format!(
            "[global]\nevent_log = {}\n",
            toml_string(&events.display().to_string())
        ),
        1,
    ) + "\n[rollback]\n# The canary watches each reload this long (60s by default).\nwindow = \"30s\"\n";
    let path = dir.join("demo.toml");
    if let Err(e) = std::fs::write(&path, &config) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return 1;
    }
    let proxy = match Proxy::start(&path, Options::default()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "error: {e}\n(is port {} or {} in use? try --port 0 --admin-port 0)",
                args.port, args.admin_port
            );
            return 1;
        }
    };
    let Some(listener) = proxy.listener_addr("web") else {
        return 1;
    };
    crate::rollback::install_differ(&proxy);
    // The story announces the rollback itself, after the alert that decided it.
    crate::rollback::announce_on_stdout(false);
    let alerts = ballast_core::config::Alerts::default();
    let rollback = ballast_core::config::Rollback {
        window: Some(ballast_core::config::Dur(Duration::from_secs(30))),
        ..ballast_core::config::Rollback::default()
    };
    if let Err(e) = crate::serve_cmd::guard::start(Arc::clone(&proxy), &path, &alerts, &rollback) {
        eprintln!("error: cannot start the guard: {e}");
        return 1;
    }
    let servers: Vec<String> = speeds
        .iter()
        .map(|(name, ms)| format!("{name} {ms}ms"))
        .collect();
    say!(
        "ballast demo, scenario {}: four servers ({}), least-connections",
        scenario.name,
        servers.join(", ")
    );
    say!("  balancer   http://{listener}/            (try: curl -i http://{listener}/)");
    if let Some(admin) = proxy.admin_addr() {
        say!("  dashboard  http://{admin}/              (open it now: it follows the story live)");
        say!("  status     http://{admin}/status");
        say!("  metrics    http://{admin}/metrics");
    }
    say!("  config     {} (from examples/demo.toml)", path.display());
    say!("  events     {}", events.display());
    say!(
        "  traffic    {} requests/s, every client with `X-Tenant: acme`; Ctrl-C stops\n",
        args.rate
    );

    let traffic = tokio::spawn(send_traffic(listener, args.rate));
    let served = Served::new(&backends, "the start");
    if !args.quiet_run {
        let code = tokio::select! {
            code = story(&proxy, scenario, &backends, &path, &config, &dir, &events) => code,
            _ = tokio::signal::ctrl_c() => 0,
        };
        traffic.abort();
        proxy.drain(Duration::from_secs(2)).await;
        return code;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => print_summary(&proxy, &served, &backends, started.elapsed()),
            _ = tokio::signal::ctrl_c() => break,
            _ = sleep_or_forever(duration.map(|d| d.saturating_sub(started.elapsed()))) => break,
        }
    }
    traffic.abort();
    print_summary(&proxy, &served, &backends, started.elapsed());
    proxy.drain(Duration::from_secs(2)).await;
    0
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Open-loop traffic: one request every 1/rate seconds, whatever the answers take.
async fn send_traffic(listener: std::net::SocketAddr, rate: u32) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let client = Arc::new(client);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let uri: hyper::Uri = match format!("http://{listener}/").parse() {
        Ok(u) => u,
        Err(_) => return,
    };
    loop {
        tick.tick().await;
        let client = Arc::clone(&client);
        let uri = uri.clone();
        tokio::spawn(async move {
            let Ok(request) = hyper::Request::get(uri)
                .header("X-Tenant", "acme")
                .body(Empty::<Bytes>::new())
            else {
                return;
            };
            if let Ok(res) = client.request(request).await {
                use http_body_util::BodyExt;
                let _ = res.into_body().collect().await;
            }
        });
    }
}

/// The requests each demo server had served when the story last moved on (the start, the
/// change, the rollback): the summaries count from there, so no window mixes the healthy
/// version with the changed one.
struct Served {
    since: &'static str,
    at: Instant,
    hits: BTreeMap<String, u64>,
}

impl Served {
    fn new(backends: &[DemoBackend], since: &'static str) -> Served {
        Served {
            since,
            at: Instant::now(),
            hits: backends
                .iter()
                .map(|b| (b.name.clone(), b.hits()))
                .collect(),
        }
    }
}

fn print_summary(proxy: &Proxy, served: &Served, backends: &[DemoBackend], elapsed: Duration) {
    let status = proxy.status();
    let Some(pool) = status["pools"].as_array().and_then(|p| p.first()) else {
        return;
    };
    let shares: BTreeMap<String, u64> = backends
        .iter()
        .map(|b| {
            let before = served.hits.get(&b.name).copied().unwrap_or(0);
            (b.name.clone(), b.hits().saturating_sub(before))
        })
        .collect();
    let total: u64 = shares.values().sum();
    let since = served.at.elapsed().as_secs_f64();
    // The balancer's own R covers its last few seconds: quoted only when they all lie after
    // the story's last step.
    let window = pool["recent_window_seconds"].as_u64().unwrap_or(0);
    let ratio = if since >= window as f64 {
        format!(
            "; last {window}s: peak ratio R {:.2}",
            pool["recent_peak_ratio"].as_f64().unwrap_or(0.0)
        )
    } else {
        String::new()
    };
    say!(
        "{:>5.0}s  pool `{}` ({}), since {} ({since:.0}s, {total} requests){ratio}",
        elapsed.as_secs_f64(),
        pool["name"].as_str().unwrap_or(""),
        pool["algorithm"].as_str().unwrap_or(""),
        served.since,
    );
    let mut rows = BTreeMap::new();
    for s in pool["servers"].as_array().into_iter().flatten() {
        rows.insert(s["name"].as_str().unwrap_or("").to_string(), s.clone());
    }
    for (name, s) in rows {
        let share = match total {
            0 => 0.0,
            _ => shares.get(&name).copied().unwrap_or(0) as f64 / total as f64,
        };
        let bar = "#".repeat((share * 40.0).round() as usize);
        say!(
            "        {name:<7} {:>5.1}%  {bar:<40} in flight {:>3}  {}",
            share * 100.0,
            s["in_flight"].as_u64().unwrap_or(0),
            if s["up"].as_bool().unwrap_or(false) {
                "up"
            } else {
                "DOWN"
            }
        );
    }
}

/// A TOML basic string: JSON's escaping is valid TOML.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// How long each step of the story may take before the demo says it did not happen.
const HEALTHY: Duration = Duration::from_secs(15);
const ALERT_WITHIN: Duration = Duration::from_secs(20);
const ROLLBACK_WITHIN: Duration = Duration::from_secs(35);
const RESOLVE_WITHIN: Duration = Duration::from_secs(20);

/// The outage, told step by step as it happens; returns the exit code.
async fn story(
    proxy: &Arc<Proxy>,
    scenario: &scenario::Scenario,
    backends: &[DemoBackend],
    path: &std::path::Path,
    config: &str,
    dir: &std::path::Path,
    events: &std::path::Path,
) -> u8 {
    let started = Instant::now();
    let at = || format!("[{:>4.0}s]", started.elapsed().as_secs_f64());
    let mut served = Served::new(backends, "the start");
    say!("{} 1. healthy: least-connections over four servers", at());
    for _ in 0..3 {
        tokio::time::sleep(HEALTHY / 3).await;
        print_summary(proxy, &served, backends, started.elapsed());
    }

    let changed = (scenario.change)(config);
    say!("\n{} 2. a change goes live: {}", at(), scenario.announce);
    if let Err(e) = std::fs::write(path, &changed) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return 1;
    }
    match ballast_import::import_file(path, &ballast_import::Options::default()) {
        Ok(imported) => {
            let findings = ballast_check::check_imported(&imported);
            let count = |s| findings.iter().filter(|f| f.severity == s).count();
            say!(
                "        ballast check: {} error(s), {} warning(s): CI would pass it",
                count(ballast_core::Severity::Error),
                count(ballast_core::Severity::Warning)
            );
            for f in findings
                .iter()
                .filter(|f| f.severity == ballast_core::Severity::Warning)
            {
                say!("          warning[{}]: {}", f.rule, f.message);
            }
        }
        Err(e) => say!("        ballast check cannot read it: {e}"),
    }
    let change_ms = unix_ms();
    served = Served::new(backends, "the change");
    match proxy.reload().await {
        ballast_proxy::ReloadOutcome::Applied { version } => {
            say!("        reloaded: version {version} is live");
            if let Some(changes) = proxy.events().iter().rev().find_map(|e| match &e.kind {
                EventKind::ConfigApplied { changes, .. } if e.at_ms >= change_ms => {
                    Some(changes.clone())
                }
                _ => None,
            }) {
                for line in changes {
                    say!("          {line}");
                }
            }
        }
        other => {
            say!("        the reload did not apply: {other:?}");
            return 1;
        }
    }

    say!("\n{} 3. {}", at(), scenario.consequence);
    let firing = wait_for(proxy, change_ms, ALERT_WITHIN, |k| match k {
        EventKind::AlertFiring {
            alertname,
            severity,
            ..
        } => severity == "critical" && alertname != "ConfigChangeRisky",
        _ => false,
    })
    .await;
    let Some(firing) = firing else {
        say!(
            "        no critical alert within {} s: the story stops here",
            ALERT_WITHIN.as_secs()
        );
        return 1;
    };
    let detect = Duration::from_millis(firing.at_ms.saturating_sub(change_ms));
    if let EventKind::AlertFiring {
        alertname,
        severity,
        server,
        summary,
        cause,
        ..
    } = &firing.kind
    {
        say!(
            "{} ALERT {alertname} ({severity}) on pool app{}, {:.1} s after the change:",
            at(),
            server
                .as_deref()
                .map(|s| format!(", server {s}"))
                .unwrap_or_default(),
            detect.as_secs_f64()
        );
        say!("        {summary}");
        for sentence in cause.split(". ").filter(|s| !s.is_empty()) {
            say!(
                "        {}",
                sentence.trim_end_matches('.').to_string() + "."
            );
        }
    }
    print_summary(proxy, &served, backends, started.elapsed());

    say!("\n{} 4. the canary judges the reload", at());
    let rolled = wait_for(proxy, change_ms, ROLLBACK_WITHIN, |k| {
        matches!(k, EventKind::ConfigRolledBack { .. })
    })
    .await;
    let restore = match &rolled {
        Some(event) => {
            if let EventKind::ConfigRolledBack {
                reverted,
                restored,
                evidence,
                ..
            } = &event.kind
            {
                say!(
                    "{} ROLLED BACK: version {reverted} reverted, {restored} serving again",
                    at()
                );
                for line in evidence {
                    say!("        {line}");
                }
            }
            served = Served::new(backends, "the rollback");
            Some(Duration::from_millis(event.at_ms.saturating_sub(change_ms)))
        }
        None => {
            say!(
                "        the canary kept the change for {} s: no critical regression it could \
                 pin on it",
                ROLLBACK_WITHIN.as_secs()
            );
            None
        }
    };
    let resolved = wait_for(proxy, change_ms, RESOLVE_WITHIN, |k| {
        match (k, &firing.kind) {
            (
                EventKind::AlertResolved { alertname, .. },
                EventKind::AlertFiring {
                    alertname: fired, ..
                },
            ) => alertname == fired,
            _ => false,
        }
    })
    .await;
    if resolved.is_some() {
        say!("{} resolved: the alert has stopped firing", at());
    }
    // Rounds enough for the summary's window and the log's snapshots to show the recovery.
    tokio::time::sleep(Duration::from_secs(8)).await;
    print_summary(proxy, &served, backends, started.elapsed());

    say!("\n{} 5. the review", at());
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let log = ballast_guard::postmortem::parse_log(&text);
    let range = ballast_guard::postmortem::Range {
        from_ms: None,
        to_ms: None,
    };
    let mut written = Vec::new();
    for (format, name) in [
        (ballast_guard::postmortem::Format::Markdown, "postmortem.md"),
        (ballast_guard::postmortem::Format::Html, "postmortem.html"),
    ] {
        match ballast_guard::postmortem::draft(&log, &range, format) {
            Ok((draft, _)) => {
                let file = dir.join(name);
                match std::fs::write(&file, draft) {
                    Ok(()) => written.push(file),
                    Err(e) => say!("        cannot write {}: {e}", file.display()),
                }
            }
            Err(e) => say!("        no draft: {e}"),
        }
    }
    for file in &written {
        say!("        postmortem draft: {}", file.display());
    }
    say!(
        "\ndetected in {:.1} s{} after the change went live; the outage reports behind ballast took \
         2.5 to 4 hours.",
        detect.as_secs_f64(),
        restore
            .map(|r| format!(", restored in {:.1} s", r.as_secs_f64()))
            .unwrap_or_default()
    );
    if written.is_empty() || rolled.is_none() {
        1
    } else {
        0
    }
}

/// The first event since `since_ms` that `wanted` accepts, polled from the proxy's recent
/// events, or `None` after `within`.
async fn wait_for(
    proxy: &Proxy,
    since_ms: u64,
    within: Duration,
    wanted: impl Fn(&EventKind) -> bool,
) -> Option<ballast_core::event::Event> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(e) = proxy
            .events()
            .into_iter()
            .find(|e| e.at_ms >= since_ms && wanted(&e.kind))
        {
            return Some(e);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
