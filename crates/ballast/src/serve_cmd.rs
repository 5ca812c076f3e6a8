//! `ballast serve`: run the load balancer until SIGTERM or Ctrl-C; SIGHUP reloads. Also the
//! guard inside serve: every second the proxy's own sample is judged by the detectors of
//! `ballast watch`, its alerts sent to the `[alerts]` sinks, written to the event log and
//! handed back to the proxy for `/status` and `/metrics`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use ballast_core::config::parse_duration;
use ballast_proxy::{Options, Proxy, ReloadOutcome};

use crate::stdout::say;

/// Run the load balancer.
///
/// The configuration is checked first: one with error-level findings is refused, here and on
/// every reload, and the running configuration keeps serving.
///
///   SIGHUP             reload the file (also: POST /reload on the admin API, with the token)
///   SIGTERM, Ctrl-C    stop accepting, let open requests finish (see --drain), exit
///
/// The guard runs inside: every second the proxy's own counters are judged by the detectors of
/// `ballast watch`; active alerts are in /status (`alerts`) and /metrics (`ballast_alerts`),
/// firings and resolves in the event log, and sent to the `[alerts]` table's Alertmanagers and
/// webhooks (docs/configuration.md).
///
/// Examples:
///   ballast serve -c examples/ballast.toml
///   ballast serve -c ballast.toml --drain 60s
///   RUST_LOG=ballast=debug ballast serve -c ballast.toml
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// How long open requests may finish after SIGTERM.
    #[arg(long, default_value = "30s")]
    drain: String,
    /// Seed for the random balancers (power-of-two, random), for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: the cores this process may run on). With 1, a single-threaded
    /// runtime without work stealing.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: ServeArgs) -> u8 {
    let drain = match parse_duration(&args.drain) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --drain {e}");
            return 2;
        }
    };
    crate::init_logging();
    let runtime = match crate::runtime(args.threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(args, drain))
}

async fn serve(args: ServeArgs, drain: Duration) -> u8 {
    let proxy = match Proxy::start(&args.config, Options { seed: args.seed }).await {
        Ok(p) => p,
        Err(e) => {
            match &e {
                // The rendered diagnostics carry their own `error:`.
                ballast_proxy::StartError::Load(rendered) => eprintln!("{}", rendered.trim_end()),
                other => eprintln!("error: {other}"),
            }
            if let Ok(text) = std::fs::read_to_string(&args.config)
                && let Some(
                    format @ (ballast_import::Format::Haproxy | ballast_import::Format::Nginx),
                ) = ballast_import::detect(&text, &args.config)
            {
                eprintln!(
                    "help: this looks like {} configuration; `serve` runs ballast's own format: `ballast convert {} -o ballast.toml`, then `ballast serve -c ballast.toml`",
                    if format == ballast_import::Format::Haproxy {
                        "an HAProxy"
                    } else {
                        "an nginx"
                    },
                    args.config.display()
                );
            }
            return 2;
        }
    };
    let config = ballast_core::load_file(&args.config)
        .map(|l| l.config)
        .unwrap_or_default();
    for name in config.listeners.keys() {
        if let Some(addr) = proxy.listener_addr(name) {
            say!("listener `{name}` on {addr}");
        }
    }
    if let Some(admin) = proxy.admin_addr() {
        say!("admin API on http://{admin}/status (also /metrics, /config, /healthz)");
    }
    say!(
        "configuration {} applied; SIGHUP reloads, SIGTERM drains",
        proxy.version()
    );
    crate::rollback::install_differ(&proxy);
    let alerts = config.alerts.clone().unwrap_or_default();
    if alerts.enabled {
        let rollback = config.rollback.clone().unwrap_or_default();
        match guard::start(
            std::sync::Arc::clone(&proxy),
            &args.config,
            &alerts,
            &rollback,
        ) {
            Ok(sinks) => {
                say!("guard: judging this proxy every second; alerts to {sinks}");
                if let Some(admin) = proxy.admin_addr() {
                    say!("dashboard on http://{admin}/");
                }
            }
            Err(e) => {
                eprintln!("error: [alerts] {e}");
                let _ = proxy.drain(Duration::ZERO).await;
                return 2;
            }
        }
    }
    wait_for_signals(&proxy).await;
    say!("draining for up to {drain:?}");
    let open = proxy.drain(drain).await;
    if open > 0 {
        say!("{open} connections still open at the end of the drain");
    }
    0
}

#[cfg(unix)]
async fn wait_for_signals(proxy: &std::sync::Arc<Proxy>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match proxy.reload().await {
                ReloadOutcome::Applied { version } => say!("reloaded: configuration {version} applied"),
                ReloadOutcome::Unchanged { version } => say!("reload: {version} is already running"),
                ReloadOutcome::Refused { reasons } => {
                    eprintln!("reload refused; the running configuration keeps serving:");
                    for r in reasons {
                        eprintln!("{r}");
                    }
                }
            },
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_proxy: &std::sync::Arc<Proxy>) {
    let _ = tokio::signal::ctrl_c().await;
}

/// The guard inside serve: a thread (the detectors and sinks block) that judges the proxy's
/// own sample every second.
pub(crate) mod guard {
    use std::io::Write;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use ballast_core::config::Alerts;
    use ballast_core::event::{ActiveAlert, Event};
    use ballast_guard::alert::{Alert, AlertState};
    use ballast_guard::change::ChangeWatcher;
    use ballast_guard::events::{self, EventOptions};
    use ballast_guard::sink::Sink;
    use ballast_guard::sink::alertmanager::AlertmanagerSink;
    use ballast_guard::sink::eventlog::EventLogSink;
    use ballast_guard::sink::webhook::WebhookSink;
    use ballast_guard::watch::{WatchOptions, Watcher};
    use ballast_proxy::Proxy;

    const INTERVAL: Duration = Duration::from_secs(1);

    /// Starts the guard; returns the sinks it delivers to, in words, or why a sink is wrong.
    pub fn start(
        proxy: Arc<Proxy>,
        config: &Path,
        alerts: &Alerts,
        rollback: &ballast_core::config::Rollback,
    ) -> Result<String, String> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for url in &alerts.alertmanager {
            sinks.push(Box::new(
                AlertmanagerSink::new(url).map_err(|e| format!("alertmanager: {e}"))?,
            ));
        }
        for url in &alerts.webhook {
            sinks.push(Box::new(
                WebhookSink::new(url).map_err(|e| format!("webhook: {e}"))?,
            ));
        }
        let mut names: Vec<String> = sinks.iter().map(|s| s.name()).collect();
        names.push("the event log".into());
        // The event log sink's once-per-transition bookkeeping, writing into the proxy's own
        // event log (its file, if any, and `/status`'s recent events).
        sinks.push(Box::new(EventLogSink::to_writer(
            "serve's event log",
            IntoProxyLog {
                proxy: Arc::clone(&proxy),
                pending: Vec::new(),
            },
        )));
        let instance = proxy
            .admin_addr()
            .map_or_else(|| "ballast".to_string(), |a| a.to_string());
        let options = WatchOptions::default();
        let dashboard = crate::dashboard_http::serve_dashboard(&instance, &options);
        let watcher = Watcher::new("ballast", &instance, options).with_config(ChangeWatcher::new(
            config,
            Vec::new(),
            ballast_import::Options::default(),
        ));
        let rollback = crate::rollback::Rollback::new(Arc::clone(&proxy), rollback, &instance);
        std::thread::Builder::new()
            .name("guard".into())
            .spawn(move || run(&proxy, watcher, sinks, dashboard, rollback))
            .map_err(|e| format!("cannot start the guard's thread: {e}"))?;
        Ok(names.join(", "))
    }

    fn run(
        proxy: &Arc<Proxy>,
        mut watcher: Watcher,
        mut sinks: Vec<Box<dyn Sink>>,
        mut dashboard: ballast_guard::dashboard::Dashboard,
        mut rollback: crate::rollback::Rollback,
    ) {
        let mut next = Instant::now();
        // A sink that keeps failing is reported when its error changes, not every second.
        let mut last_errors: Vec<Option<String>> = vec![None; sinks.len()];
        loop {
            let sample = proxy.sample();
            let now_ms = sample.at_ms;
            let outcome = watcher.observe(sample);
            // The guard's changes, reloads and pool snapshots, in serve's event log.
            for event in events::of_round(&outcome, &watcher, &EventOptions::default()) {
                proxy.record_event(event);
            }
            let mut delivered = outcome.round.to_deliver();
            delivered.extend(rollback.take_delivery());
            for (sink, last) in sinks.iter_mut().zip(&mut last_errors) {
                match sink.deliver(now_ms, &delivered) {
                    Ok(()) => *last = None,
                    Err(e) => {
                        let text = e.to_string();
                        if last.as_deref() != Some(text.as_str()) {
                            eprintln!("warning: guard: {text} (kept, tried again next round)");
                        }
                        *last = Some(text);
                    }
                }
            }
            // After delivery: the alert that decides a revert is in the log before the revert.
            rollback.round(now_ms, &outcome, &mut watcher);
            let active = watcher.active().into_iter().chain(rollback.active());
            proxy.set_alerts(active.map(|a| active_alert(&a)).collect());
            crate::dashboard_http::update_serve(proxy, &mut dashboard, &watcher, &outcome);
            next += INTERVAL;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }

    fn active_alert(a: &Alert) -> ActiveAlert {
        ActiveAlert {
            labels: a.labels.clone(),
            state: match a.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            }
            .to_string(),
            summary: a.annotation("summary").unwrap_or("").to_string(),
            cause: a.annotation("cause").unwrap_or("").to_string(),
            starts_at_ms: a.starts_at_ms,
            inhibited_by: a.inhibited_by.clone(),
        }
    }

    /// Takes the event log sink's JSON lines and records each event in the proxy's log.
    struct IntoProxyLog {
        proxy: Arc<Proxy>,
        pending: Vec<u8>,
    }

    impl Write for IntoProxyLog {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.pending.extend_from_slice(buf);
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if let Ok(event) = serde_json::from_slice::<Event>(&line) {
                    self.proxy.record_event(event);
                }
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
