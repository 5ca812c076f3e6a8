//! The `ballast` command: parses the command line and hands each subcommand to its module.
#![forbid(unsafe_code)]

mod check_cmd;
mod convert_cmd;
mod dashboard_http;
mod demo_cmd;
mod diff_cmd;
mod input;
mod loadtest_cmd;
mod on_critical;
mod postmortem_cmd;
mod rollback;
mod rules_cmd;
mod serve_cmd;
mod simulate_cmd;
mod stdout;
mod watch_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ballast: find load-balancer misconfigurations before they become outages.
///
/// Start here:
///   ballast demo                                      # an outage caught, rolled back, written up
///   ballast check examples/ballast.toml               # what is wrong, where, and how to fix it
///   ballast simulate examples/skewed-hash.toml        # the distribution this config will produce
///   ballast check --explain LIM-102                   # why a rule matters, with its source
///   ballast diff old.cfg new.cfg                      # what a change does, before it ships
///   ballast convert haproxy.cfg -o ballast.toml       # an HAProxy or nginx file in ballast's format
///   ballast watch haproxy:/run/haproxy/admin.sock     # is the running load balancer the problem?
///   ballast rules prometheus > ballast-rules.yml      # the same signals for a fleet's Prometheus
///   ballast loadtest http://127.0.0.1:8080/ -c 20     # load, every answer attributed to its backend
///   ballast postmortem --events events.jsonl          # the draft of the incident review
///
/// Exit codes: 0 when all is well, 1 when a check or an assertion fails, 2 when an input
/// cannot be read or parsed.
#[derive(Parser)]
#[command(
    name = "ballast",
    version,
    verbatim_doc_comment,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(demo_cmd::DemoArgs),
    Serve(serve_cmd::ServeArgs),
    Check(check_cmd::CheckArgs),
    Simulate(simulate_cmd::SimulateArgs),
    Diff(diff_cmd::DiffArgs),
    Convert(convert_cmd::ConvertArgs),
    Watch(watch_cmd::WatchArgs),
    Rules(rules_cmd::RulesArgs),
    Loadtest(Box<loadtest_cmd::LoadtestArgs>),
    Postmortem(postmortem_cmd::PostmortemArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Demo(args) => demo_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Check(args) => check_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::Diff(args) => diff_cmd::run(args),
        Command::Convert(args) => convert_cmd::run(args),
        Command::Watch(args) => watch_cmd::run(args),
        Command::Rules(args) => rules_cmd::run(args),
        Command::Loadtest(args) => loadtest_cmd::run(*args),
        Command::Postmortem(args) => postmortem_cmd::run(args),
    };
    ExitCode::from(code)
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info for ballast, warn otherwise).
pub(crate) fn init_logging() {
    init_logging_with("warn,ballast=info,ballast_proxy=info");
}

/// Logs to stderr at `default` unless `RUST_LOG` says otherwise.
pub(crate) fn init_logging_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: a log redirected to a file gets no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The async runtime: `threads` workers (default: the cores this process may run on). With
/// one, a single-threaded runtime, which has no work stealing to pay for.
pub(crate) fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
