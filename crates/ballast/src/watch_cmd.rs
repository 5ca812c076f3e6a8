//! `ballast watch`: samples running load balancers (ballast, HAProxy, nginx) every interval,
//! judges them with the guard's detectors, shows them live and sends the alerts to sinks. The
//! judging is `ballast_guard::watch::Watcher`'s; this module parses sources, drives the
//! rounds, and renders.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};

use ballast_guard::alert::{Alert, AlertState};
use ballast_guard::change::ChangeWatcher;
use ballast_guard::detect::Level;
use ballast_guard::detect::distribution::{Measure, PoolDistribution, Verdict};
use ballast_guard::events::{self, EventOptions};
use ballast_guard::sink::Sink;
use ballast_guard::sink::alertmanager::AlertmanagerSink;
use ballast_guard::sink::eventlog::EventLogSink;
use ballast_guard::sink::webhook::WebhookSink;
use ballast_guard::source::ballast::BallastSource;
use ballast_guard::source::haproxy::{Endpoint, HaproxySource};
use ballast_guard::source::nginx::{NginxOptions, NginxSource};
use ballast_guard::source::{Source, SourceError};
use ballast_guard::watch::{Outcome, Record, WatchOptions, Watcher};

use crate::stdout;

/// Watch running load balancers and say, within seconds, when one of them is the problem.
///
/// Each SOURCE is sampled every --interval: every pool's requests per server, in flight
/// against limits, live weights and states, responses and latency. The guard's detectors judge
/// each pool on what its algorithm promises (request shares, or concurrency for least
/// connections), its connection limits and queues, its errors and outliers, and its weights
/// against the configuration; every alert says which layer it is in (the load balancer's
/// distribution or limits, one backend, the traffic), names the configuration change or
/// reload that likely triggered it, and what the data rules out. Runbook: docs/runbook.md.
///
/// Sources:
///   ballast:127.0.0.1:9900                 ballast serve's admin API
///   haproxy:/run/haproxy/admin.sock        HAProxy's stats socket (a path or host:port)
///   haproxy:http://127.0.0.1:8404/stats;csv    its stats page, as CSV
///   haproxy:http://127.0.0.1:8404/metrics      its Prometheus exporter
///   nginx:/var/log/nginx/ballast-access.log    nginx's access log (needs --config and the
///                                          log_format from --nginx-log-format)
///
/// Examples:
///   ballast watch haproxy:/run/haproxy/admin.sock --config /etc/haproxy/haproxy.cfg
///   ballast watch --once haproxy:/run/haproxy/admin.sock    # is it the load balancer? 0 no, 1 yes
///   ballast watch nginx:/var/log/nginx/ballast-access.log --config /etc/nginx/nginx.conf \
///       --stub-status http://127.0.0.1/nginx_status --error-log /var/log/nginx/error.log
///   ballast watch ballast:127.0.0.1:9900 --alertmanager http://127.0.0.1:9093
///   ballast watch haproxy:/run/haproxy/admin.sock --dashboard 127.0.0.1:9900   # a live page
///   ballast watch --nginx-log-format                        # the nginx lines to add
///
/// Output: a live view redrawn in place on a terminal; otherwise one line per alert fired or
/// resolved, configuration change and reload (--format json: every sample and alert as JSON
/// lines). Exit codes: 0 when it stops with no alert firing (--once: nothing found), 1 when an
/// alert is firing (--once: a finding), 2 when a source cannot be read at start.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct WatchArgs {
    /// What to watch: ballast:ADMIN, haproxy:SOCKET|URL, nginx:ACCESS_LOG.
    #[arg(value_name = "SOURCE", required_unless_present = "nginx_log_format")]
    sources: Vec<String>,
    /// The watched load balancer's configuration file: for configuration changes (each is
    /// diffed and judged), expected shares and weights drifting from it; required for nginx.
    /// With several sources, give it once per source, in order.
    #[arg(long, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// nginx's stub_status URL: active connections against worker_processes × worker_connections.
    #[arg(long, value_name = "URL")]
    stub_status: Option<String>,
    /// nginx's error log: "worker_connections are not enough", "no live upstreams", timeouts.
    #[arg(long, value_name = "FILE")]
    error_log: Option<PathBuf>,
    /// nginx's pid file, to see its reloads (default: the configuration's `pid`, else
    /// /run/nginx.pid).
    #[arg(long, value_name = "FILE")]
    nginx_pid_file: Option<PathBuf>,
    /// Print the log_format and access_log lines ballast reads in nginx's access log, and exit
    /// (with --config: also the variables its hashing pools read).
    #[arg(long)]
    nginx_log_format: bool,
    /// Time between samples.
    #[arg(long, default_value = "1s", value_parser = duration)]
    interval: Duration,
    /// How much of the recent past each round judges (the detection window).
    #[arg(long, default_value = "5s", value_parser = duration)]
    window: Duration,
    /// Take samples for --window, report what the detectors find, and exit: 0 when nothing
    /// points at the load balancer, 1 when something does (the incident checklist's first
    /// question, as a command).
    #[arg(long)]
    once: bool,
    /// Stop after this long (default: run until interrupted).
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Fire alerts as soon as they are found, instead of after each rule's `for` duration.
    #[arg(long = "for", value_name = "DURATION", value_parser = duration)]
    for_override: Option<Duration>,
    /// Alertmanager to send alerts to (POST /api/v2/alerts), such as http://127.0.0.1:9093.
    #[arg(long, value_name = "URL")]
    alertmanager: Vec<String>,
    /// A webhook to POST Alertmanager's webhook JSON (version 4) to, grouped by pool.
    #[arg(long, value_name = "URL")]
    webhook: Vec<String>,
    /// Append alert, configuration-change, reload and pool-snapshot (every 10 s) events to this
    /// file (JSON lines): what `ballast postmortem --events FILE` drafts the review from.
    #[arg(long, value_name = "FILE")]
    event_log: Option<PathBuf>,
    /// Output: text for people, json for tools (every sample and alert as JSON lines).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Serve a live dashboard at ADDR (`127.0.0.1:9900`, or `:9900` for loopback): pools,
    /// shares against expected, R over time, alerts with their cause, the timeline with
    /// configuration diffs. Read-only, no token: keep it on loopback (docs/dashboard.md).
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    dashboard: Option<String>,
    /// Run CMD (through `sh -c`) once per incident when an alert reaches critical and firing,
    /// such as restoring the previous file and reloading. Its environment: BALLAST_ALERTNAME,
    /// BALLAST_POOL, BALLAST_SERVER, BALLAST_SUMMARY, BALLAST_CAUSE, BALLAST_SEVERITY,
    /// BALLAST_INSTANCE, BALLAST_CHANGE_DIFF and BALLAST_CHANGE_FILE (the likely trigger's
    /// diff lines and file). Each run is a command_ran event (docs/watch.md).
    #[arg(long, value_name = "CMD")]
    on_critical: Option<String>,
    /// How long --on-critical's command may run before its process group is killed.
    #[arg(long, default_value = "60s", value_parser = duration)]
    on_critical_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write it as 1s, 500ms, 2m)"))
}

/// One watched load balancer: where its samples come from and who judges them.
struct Watched {
    source: Box<dyn Source>,
    watcher: Watcher,
    /// The last error, so a source that stays down is reported once, not every round.
    failing: Option<String>,
}

pub fn run(args: WatchArgs) -> u8 {
    if args.nginx_log_format {
        let lines = match args.config.first() {
            None => ballast_guard::source::nginx::log_format_lines(),
            Some(config) => match ballast_guard::source::nginx::log_format_lines_for(config) {
                Ok(lines) => lines,
                Err(e) => {
                    eprintln!("error: {}", describe(&e));
                    return 2;
                }
            },
        };
        return if stdout::print(&lines) { 0 } else { 2 };
    }
    let mut options = WatchOptions {
        window_ms: args.window.as_millis() as u64,
        ..WatchOptions::default()
    };
    options.lifecycle.for_override_ms = args
        .for_override
        .map(|d| d.as_millis() as u64)
        .or(args.once.then_some(0));
    let mut watched = Vec::new();
    for (i, spec) in args.sources.iter().enumerate() {
        let config = args.config.get(i).cloned();
        // A source unreadable at start is refused with its fix; later failures are reported
        // and retried every round (a load balancer restarting must not stop the watch).
        let opened = open_source(spec, config.clone(), &args).and_then(|mut source| {
            let first = source.sample(unix_ms())?;
            Ok((source, first))
        });
        match opened {
            Ok((source, first)) => {
                let mut watcher = Watcher::new(source.kind(), &source.instance(), options.clone());
                if let Some(main) = config.or_else(|| source.config_files().first().cloned()) {
                    let extra: Vec<PathBuf> = source.config_files().into_iter().skip(1).collect();
                    watcher = watcher.with_config(ChangeWatcher::new(
                        &main,
                        extra,
                        ballast_import::Options::default(),
                    ));
                }
                watcher.observe(first);
                watched.push(Watched {
                    source,
                    watcher,
                    failing: None,
                });
            }
            Err(e) => {
                eprintln!("error: {spec}: {}", e.what);
                if let Some(fix) = &e.fix {
                    eprintln!("  fix: {fix}");
                }
                return 2;
            }
        }
    }
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for url in &args.alertmanager {
        match AlertmanagerSink::new(url) {
            Ok(s) => sinks.push(Box::new(s)),
            Err(e) => return refuse(&e.to_string()),
        }
    }
    for url in &args.webhook {
        match WebhookSink::new(url) {
            Ok(s) => sinks.push(Box::new(s)),
            Err(e) => return refuse(&e.to_string()),
        }
    }
    if let Some(path) = &args.event_log {
        match EventLogSink::open(path) {
            Ok(s) => sinks.push(Box::new(s)),
            Err(e) => return refuse(&e.to_string()),
        }
    }
    // The guard's own events (changes, reloads, pool snapshots) go to the same log.
    let mut guard_log = match args
        .event_log
        .as_deref()
        .map(EventLogSink::open)
        .transpose()
    {
        Ok(log) => log,
        Err(e) => return refuse(&e.to_string()),
    };
    if args.once {
        return once(&mut watched, &args);
    }
    let mut dashboard = match &args.dashboard {
        Some(addr) => {
            let ids: Vec<(String, String)> = watched
                .iter()
                .map(|w| (w.source.kind().to_string(), w.source.instance()))
                .collect();
            match crate::dashboard_http::WatchDashboard::start(addr, &ids, options.window_ms) {
                Ok(d) => {
                    d.publish(watched.iter().map(|w| &w.watcher));
                    eprintln!("dashboard on http://{}/", d.addr());
                    Some(d)
                }
                Err(e) => return refuse(&e),
            }
        }
        None => None,
    };
    let live = args.format == Format::Text && std::io::stdout().is_terminal();
    let mut on_critical = args.on_critical.clone().map(|cmd| {
        crate::on_critical::OnCritical::new(
            cmd,
            args.on_critical_timeout,
            args.event_log.clone(),
            args.format == Format::Json,
        )
    });
    let started = Instant::now();
    let mut next = Instant::now();
    loop {
        let now_ms = unix_ms();
        for (i, w) in watched.iter_mut().enumerate() {
            let outcome = take(w, now_ms);
            if let Some(d) = &mut dashboard {
                d.round(i, &w.watcher, outcome.as_ref(), w.failing.as_deref());
            }
            let Some(outcome) = outcome else {
                continue;
            };
            if let Some(on_critical) = &mut on_critical {
                on_critical.round(i, &w.watcher);
            }
            let delivered = outcome.round.to_deliver();
            for sink in &mut sinks {
                if let Err(e) = sink.deliver(now_ms, &delivered) {
                    eprintln!("warning: {e} (kept, tried again next round)");
                }
            }
            if let Some(log) = &mut guard_log {
                let events = events::of_round(&outcome, &w.watcher, &EventOptions::default());
                if let Err(e) = log.record(events) {
                    eprintln!("warning: {e}");
                }
            }
            report(w, &outcome, args.format, live);
        }
        if let Some(d) = &dashboard {
            d.publish(watched.iter().map(|w| &w.watcher));
        }
        if live {
            let view = render_live(&watched);
            // Home and clear, then the view: redrawn in place.
            if !stdout::print(&format!("\x1b[H\x1b[2J{view}")) {
                return 2;
            }
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        next += args.interval;
        let wait = next.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
    }
    if let Some(on_critical) = on_critical {
        on_critical.finish();
    }
    let firing = watched.iter().any(|w| {
        w.watcher
            .active()
            .iter()
            .any(|a| a.state == AlertState::Firing && a.inhibited_by.is_none())
    });
    u8::from(firing)
}

fn refuse(what: &str) -> u8 {
    eprintln!("error: {what}");
    2
}

/// `--once`: samples over the window, every detector's findings without `for` durations.
fn once(watched: &mut [Watched], args: &WatchArgs) -> u8 {
    let rounds = (args.window.as_millis() / args.interval.as_millis().max(1)).max(1) as usize;
    let mut last: Vec<Option<Outcome>> = (0..watched.len()).map(|_| None).collect();
    for round in 0..=rounds {
        let now_ms = unix_ms();
        for (i, w) in watched.iter_mut().enumerate() {
            if let Some(o) = take(w, now_ms) {
                last[i] = Some(o);
            }
        }
        if round < rounds {
            std::thread::sleep(args.interval);
        }
    }
    let mut found = false;
    let mut out = String::new();
    for (w, outcome) in watched.iter().zip(&last) {
        let Some(outcome) = outcome else {
            out.push_str(&format!(
                "{} {}: no sample ({})\n",
                w.source.kind(),
                w.source.instance(),
                w.failing.as_deref().unwrap_or("unreadable")
            ));
            found = true;
            continue;
        };
        if args.format == Format::Json {
            for a in &outcome.round.active {
                out.push_str(&json_line(&Record::Alert(a)));
            }
            found |= !outcome.round.active.is_empty();
            continue;
        }
        out.push_str(&format!("{} {}\n", w.source.kind(), w.source.instance()));
        for d in &outcome.distributions {
            out.push_str(&format!("  {}\n", distribution_line(d)));
        }
        let alerts: Vec<&Alert> = outcome.round.active.iter().map(|a| &**a).collect();
        if alerts.is_empty() {
            out.push_str("  nothing points at the load balancer\n");
        }
        for a in alerts {
            found = true;
            out.push_str(&alert_block(a));
        }
    }
    if !stdout::print(&out) {
        return 2;
    }
    u8::from(found)
}

/// One round of one watched load balancer; a failing source is reported when it starts and
/// when it recovers.
fn take(w: &mut Watched, now_ms: u64) -> Option<Outcome> {
    match w.source.sample(now_ms) {
        Ok(sample) => {
            for note in w.source.take_notes() {
                eprintln!("note: {} {}: {note}", w.source.kind(), w.source.instance());
            }
            if w.failing.take().is_some() {
                eprintln!(
                    "{} {}: readable again",
                    w.source.kind(),
                    w.source.instance()
                );
            }
            Some(w.watcher.observe(sample))
        }
        Err(e) => {
            let text = describe(&e);
            if w.failing.as_deref() != Some(text.as_str()) {
                eprintln!(
                    "warning: {} {}: {text}",
                    w.source.kind(),
                    w.source.instance()
                );
                w.failing = Some(text);
            }
            None
        }
    }
}

fn describe(e: &SourceError) -> String {
    match &e.fix {
        Some(fix) => format!("{} (fix: {fix})", e.what),
        None => e.what.clone(),
    }
}

/// Plain or JSON lines for what changed this round.
fn report(w: &Watched, outcome: &Outcome, format: Format, live: bool) {
    let who = format!("{} {}", w.source.kind(), w.source.instance());
    if format == Format::Json {
        let mut text = String::new();
        if let Some(sample) = w.watcher.history().last() {
            text.push_str(&json_line(&Record::Sample(sample)));
        }
        if let Some(c) = &outcome.change {
            text.push_str(&json_line(&Record::ConfigChange(c)));
        }
        if let Some(r) = &outcome.reload {
            text.push_str(&json_line(&Record::Reload(r)));
        }
        for a in outcome.round.fired.iter().chain(&outcome.round.resolved) {
            text.push_str(&json_line(&Record::Alert(a)));
        }
        stdout::print(&text);
        return;
    }
    if live {
        return;
    }
    if let Some(c) = &outcome.change {
        stdout::say!(
            "{} {who}: configuration changed: {}",
            stamp(c.at_ms),
            c.headline()
        );
    }
    if let Some(r) = &outcome.reload {
        stdout::say!(
            "{} {who}: reloaded ({} → {})",
            stamp(r.at_ms),
            r.previous,
            r.generation
        );
    }
    for a in &outcome.round.fired {
        stdout::say!(
            "{} {who}: FIRING {}",
            stamp(a.starts_at_ms.unwrap_or(0)),
            alert_line(a)
        );
        if let Some(cause) = a.annotation("cause") {
            stdout::say!("    cause: {cause}");
        }
    }
    for a in &outcome.round.resolved {
        stdout::say!(
            "{} {who}: resolved {}",
            stamp(a.ends_at_ms.unwrap_or(0)),
            alert_line(a)
        );
    }
}

fn json_line(record: &Record) -> String {
    serde_json::to_string(record).unwrap_or_default() + "\n"
}

fn alert_line(a: &Alert) -> String {
    let mut line = format!(
        "[{}] {}",
        a.label("severity").unwrap_or(""),
        a.label("alertname").unwrap_or("")
    );
    if let Some(summary) = a.annotation("summary") {
        line.push_str(&format!(": {summary}"));
    }
    if let Some(by) = &a.inhibited_by {
        line.push_str(&format!(" (symptom of {by})"));
    }
    line
}

fn alert_block(a: &Alert) -> String {
    let mut out = format!("  {}\n", alert_line(a));
    if let Some(cause) = a.annotation("cause") {
        out.push_str(&format!("    cause: {cause}\n"));
    }
    // The figures behind it and, for a runtime change, since when: the checklist's answer.
    if let Some(detail) = a.annotation("description") {
        out.push_str(&format!("    detail: {detail}\n"));
    }
    if let Some(runbook) = a.annotation("runbook") {
        out.push_str(&format!("    runbook: {runbook}\n"));
    }
    out
}

fn distribution_line(d: &PoolDistribution) -> String {
    let measure = match d.measure {
        Measure::Requests => "requests",
        Measure::Concurrency => "in flight",
    };
    let verdict = match &d.verdict {
        Verdict::NotJudged { reason } => format!("not judged: {reason}"),
        Verdict::NotEnoughTraffic { observed, needed } => {
            format!("not enough traffic to judge ({observed} of {needed} {measure})")
        }
        Verdict::AsPromised { evenness } => format!(
            "as promised: R {:.2}, Jain {:.2} on {measure}",
            evenness.peak_ratio, evenness.jain
        ),
        Verdict::Skewed {
            level,
            server,
            share,
            expected,
            evenness,
        } => format!(
            "{}: {server} takes {:.0}% of {measure} against {:.0}% (R {:.2})",
            if *level == Level::Critical {
                "SKEWED"
            } else {
                "skewed"
            },
            share * 100.0,
            expected * 100.0,
            evenness.peak_ratio
        ),
    };
    format!("pool {} ({}): {verdict}", d.pool, d.promise.as_str())
}

/// The live view: per watched load balancer, its pools with each server's share against its
/// expected share, in flight against its limit and state; then its active alerts.
fn render_live(watched: &[Watched]) -> String {
    let mut out = format!("ballast watch — {} (Ctrl-C to stop)\n\n", stamp(unix_ms()));
    for w in watched {
        out.push_str(&format!("{} {}", w.source.kind(), w.source.instance()));
        if let Some(e) = &w.failing {
            out.push_str(&format!("  — unreadable: {e}"));
        }
        out.push('\n');
        let history: Vec<_> = w.watcher.history().collect();
        let (Some(first), Some(last)) = (
            history
                .iter()
                .rev()
                .take_while(|s| last_ms(&history) - s.at_ms <= 5_000)
                .last(),
            history.last(),
        ) else {
            continue;
        };
        for pool in &last.pools {
            let before = first.pools.iter().find(|p| p.name == pool.name);
            let sent = |name: &str, now: u64| {
                before
                    .and_then(|p| p.servers.iter().find(|s| s.name == name))
                    .map_or(0, |s| now.saturating_sub(s.requests))
            };
            let total: u64 = pool.servers.iter().map(|s| sent(&s.name, s.requests)).sum();
            let weights: u64 = pool
                .servers
                .iter()
                .filter(|s| s.state == ballast_core::sample::ServerState::Up && !s.backup)
                .map(|s| u64::from(s.weight))
                .sum();
            out.push_str(&format!(
                "  pool {} ({}): {} requests in the last 5 s\n",
                pool.name,
                pool.promise.as_str(),
                total
            ));
            out.push_str("    server                 state        weight  share  expected  in flight  queued\n");
            for s in &pool.servers {
                let share = if total > 0 {
                    sent(&s.name, s.requests) as f64 / total as f64 * 100.0
                } else {
                    0.0
                };
                let expected =
                    if weights > 0 && s.state == ballast_core::sample::ServerState::Up && !s.backup
                    {
                        f64::from(s.weight) / weights as f64 * 100.0
                    } else {
                        0.0
                    };
                let limit = s.max_connections.map_or(String::new(), |m| format!("/{m}"));
                out.push_str(&format!(
                    "    {:<22} {:<12} {:>6}  {:>4.0}%  {:>7.0}%  {:>9}  {:>6}\n",
                    s.name,
                    format!("{:?}", s.state).to_lowercase(),
                    s.weight,
                    share,
                    expected,
                    format!("{}{limit}", s.active),
                    s.queued
                ));
            }
        }
        let alerts = w.watcher.active();
        if alerts.is_empty() {
            out.push_str("  no alert\n");
        }
        for a in &alerts {
            let state = match a.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "FIRING",
                AlertState::Resolved => "resolved",
            };
            out.push_str(&format!("  {state} {}\n", alert_line(a)));
            if let Some(cause) = a.annotation("cause") {
                out.push_str(&format!("    cause: {cause}\n"));
            }
        }
        out.push('\n');
    }
    out
}

fn last_ms(history: &[&ballast_core::sample::Sample]) -> u64 {
    history.last().map_or(0, |s| s.at_ms)
}

/// Opens one SOURCE argument.
fn open_source(
    spec: &str,
    config: Option<PathBuf>,
    args: &WatchArgs,
) -> Result<Box<dyn Source>, SourceError> {
    let (kind, target) = spec.split_once(':').ok_or_else(|| {
        SourceError::new(format!("`{spec}` does not say what it is"))
            .with_fix("write ballast:ADMIN_ADDRESS, haproxy:SOCKET_OR_URL or nginx:ACCESS_LOG")
    })?;
    match kind {
        "ballast" => Ok(Box::new(BallastSource::new(target))),
        "haproxy" => Ok(Box::new(HaproxySource::new(
            Endpoint::parse(target)?,
            config,
        ))),
        "nginx" => {
            let config = config.ok_or_else(|| {
                SourceError::new("watching nginx needs its configuration file").with_fix(
                    "add --config /etc/nginx/nginx.conf: nginx's weights and servers come from it",
                )
            })?;
            let mut options = NginxOptions::new(config, target);
            options.stub_status = args.stub_status.clone();
            options.error_log = args.error_log.clone();
            options.pid_file = args.nginx_pid_file.clone();
            Ok(Box::new(NginxSource::new(options)?))
        }
        other => Err(SourceError::new(format!("unknown source kind `{other}`"))
            .with_fix("write ballast:ADMIN_ADDRESS, haproxy:SOCKET_OR_URL or nginx:ACCESS_LOG")),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `10:02:03` UTC.
fn stamp(ms: u64) -> String {
    ballast_guard::change::clock(ms)
}
