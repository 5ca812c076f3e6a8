//! `ballast serve`: run the load balancer until SIGTERM or Ctrl-C; SIGHUP reloads.

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
