//! `ballast simulate`: run a pool's own balancing code against a traffic model or a recorded
//! log, print the predicted distribution, write the trace, judge the assertions.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::json;

use ballast_core::config::{Pool, parse_duration};
use ballast_core::load::parse_with_spans;
use ballast_core::traffic::Traffic;
use ballast_core::{Diagnostic, SourceFile};

use ballast_import::{Format as ImportFormat, Imported};
use ballast_sim::{Simulation, TraceRecord, assert, replay};

use crate::input::InputArgs;
use crate::stdout;

/// Predict how a configuration distributes traffic, with its own balancing code.
///
/// The traffic model comes from the configuration's [simulate] table, from --traffic FILE (a
/// TOML file with a [simulate] table), or from defaults; --rate, --duration and --seed
/// override it. --replay FILE replays recorded requests instead of generating them, one JSON
/// object per line:
///   {"t": 0.25, "client": "192.0.2.7", "method": "GET", "path": "/x?u=1", "headers": {"X-User": "42"}}
///
/// Examples:
///   ballast simulate examples/ballast.toml
///   ballast simulate examples/skewed-hash.toml --assert 'peak_ratio<1.5,rejected==0'
///   ballast simulate ballast.toml --replay access.jsonl --trace choices.jsonl
///   ballast simulate /etc/haproxy/haproxy.cfg --pool app   # the backend `app`
///
/// The pool simulated is the one of --pool, else of --listener, else of the traffic model's
/// listener, else of the first listener; a file without listeners simulates its first pool.
/// A file that balances nothing (an HAProxy stats page, nginx without upstreams) exits 2.
/// Pools imported from HAProxy and nginx run the emulated algorithm (shown in the report).
///
/// Metrics for --assert: peak_ratio, jain, chi2_p, rejected, no_server, failed, retries,
/// requests, queue_wait_p99_ms, queue_wait_max_ms, peak_concurrency_ratio.
///
/// Exit codes: 0 when every assertion holds, 1 when one fails, 2 when an input cannot be read.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SimulateArgs {
    /// The configuration to simulate: ballast, HAProxy or nginx (detected; --as names it).
    file: PathBuf,
    #[command(flatten)]
    input: InputArgs,
    /// A TOML file with a [simulate] table to use instead of the configuration's.
    #[arg(long, value_name = "FILE")]
    traffic: Option<PathBuf>,
    /// Replay recorded requests (JSON lines) instead of generating traffic.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// The listener whose pool to simulate (default: the traffic model's, else the first).
    #[arg(long, conflicts_with = "pool")]
    listener: Option<String>,
    /// The pool to simulate, by name (an HAProxy backend, an nginx upstream): for a file
    /// without listeners (an nginx fragment of upstreams) or a pool no listener names.
    #[arg(long)]
    pool: Option<String>,
    /// Override the arrival rate (requests per second).
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Override the simulated duration, such as 30s.
    #[arg(long)]
    duration: Option<String>,
    /// Override the random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write every balancing decision as a JSON line to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Conditions that must hold, such as 'peak_ratio<1.5,rejected==0'.
    #[arg(long = "assert", value_name = "CONDITIONS")]
    assertions: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficFile {
    simulate: Traffic,
}

/// An input problem: printed, and the command exits 2.
pub(crate) struct InputError(pub(crate) String);

pub fn run(args: SimulateArgs) -> u8 {
    match simulate(&args) {
        Ok(code) => code,
        Err(InputError(message)) => {
            eprintln!("{}", message.trim_end());
            2
        }
    }
}

fn simulate(args: &SimulateArgs) -> Result<u8, InputError> {
    let imported = args
        .input
        .load(&args.file)
        .map_err(|e| InputError(e.render()))?;
    let config = &imported.loaded.config;
    let mut traffic = match &args.traffic {
        Some(path) => read_traffic(path, config)?,
        None => config.simulate.clone().unwrap_or_default(),
    };
    if let Some(rate) = args.rate {
        traffic.arrival.rate = rate;
    }
    if let Some(d) = &args.duration {
        traffic.duration.0 =
            parse_duration(d).map_err(|e| InputError(format!("error: --duration {e}")))?;
    }
    if let Some(seed) = args.seed {
        traffic.seed = seed;
    }
    let problems =
        ballast_core::traffic::validate(&traffic, "simulate", &Default::default(), Some(config));
    if let Some(p) = problems.first() {
        return Err(InputError(p.render(None)));
    }
    let (pool_name, pool) = choose_pool(args, &imported, traffic.listener.as_deref())?;
    let conditions = match &args.assertions {
        Some(spec) => {
            assert::parse(spec).map_err(|e| InputError(format!("error: --assert: {e}")))?
        }
        None => Vec::new(),
    };
    let requests = match &args.replay {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| InputError(format!("error: cannot read {}: {e}", path.display())))?;
            Some(replay::parse(&text).map_err(|e| {
                InputError(format!("error: {}:{}: {}\n  = help: each line is {{\"t\": seconds, \"client\": \"ip\", \"method\": \"GET\", \"path\": \"/x\", \"headers\": {{}}}}", path.display(), e.line, e.message))
            })?)
        }
        None => None,
    };

    let mut trace_out = match &args.trace {
        Some(path) => Some(BufWriter::new(File::create(path).map_err(|e| {
            InputError(format!("error: cannot write {}: {e}", path.display()))
        })?)),
        None => None,
    };
    let mut trace_error = None;
    let mut write_trace = |r: &TraceRecord| {
        if let Some(w) = trace_out.as_mut()
            && let Err(e) = writeln!(
                w,
                "{}",
                json!({"seq": r.seq, "t": r.t, "server": r.server, "address": r.address, "outcome": r.outcome.as_str()})
            )
        {
            // The trace's reader went away (`--trace /dev/stdout | head`): stop tracing
            // quietly and finish the run. Any other error is reported.
            if !stdout::is_broken_pipe(&e) {
                trace_error = Some(e);
            }
            trace_out = None;
        }
    };
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(1000);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "simulating {bar:40} {percent}% {elapsed}/{eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut progress = |f: f64| {
        if let Some(b) = &bar {
            b.set_position((f * 1000.0) as u64);
        }
    };
    let sim = Simulation::new(pool_name, pool, &traffic);
    let trace_cb: Option<&mut dyn FnMut(&TraceRecord)> = if args.trace.is_some() {
        Some(&mut write_trace)
    } else {
        None
    };
    let report = match &requests {
        Some(r) => sim.replay(r, trace_cb, Some(&mut progress)),
        None => sim.run(trace_cb, Some(&mut progress)),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(e) = trace_error {
        return Err(InputError(format!("error: writing the trace failed: {e}")));
    }
    if let Some(mut w) = trace_out
        && let Err(e) = w.flush()
        && !stdout::is_broken_pipe(&e)
    {
        return Err(InputError(format!("error: writing the trace failed: {e}")));
    }

    let verdicts = assert::evaluate(&conditions, &report);
    let failed = verdicts.iter().any(|v| !v.passed);
    let rendered = match args.format {
        Format::Text => {
            let mut out = report.text();
            for v in &verdicts {
                out += &format!(
                    "assert {:<28} {} (actual {})\n",
                    v.condition,
                    if v.passed { "ok" } else { "FAILED" },
                    fmt_num(v.actual)
                );
            }
            out
        }
        Format::Json => {
            let mut value = serde_json::to_value(&report).unwrap_or_default();
            value["assertions"] = json!(verdicts.iter().map(|v| json!({"condition": v.condition, "actual": v.actual, "passed": v.passed})).collect::<Vec<_>>());
            format!("{value:#}\n")
        }
    };
    // A reader that stops early (`| head -1`) still gets the verdict in the exit code.
    if !stdout::print(&rendered) {
        return Ok(2);
    }
    Ok(u8::from(failed))
}

/// The pool to simulate: `--pool`, else the pool of `--listener`, of the traffic model's
/// listener or of the first listener; without listeners (an nginx fragment of upstreams),
/// the first pool. A file without any pool balances nothing and is refused.
fn choose_pool<'a>(
    args: &SimulateArgs,
    imported: &'a Imported,
    traffic_listener: Option<&str>,
) -> Result<(&'a str, &'a Pool), InputError> {
    let config = &imported.loaded.config;
    let names = |keys: Vec<&String>| {
        keys.into_iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if config.pools.is_empty() {
        return Err(InputError(balances_nothing(imported)));
    }
    if let Some(name) = &args.pool {
        return config
            .pools
            .get_key_value(name)
            .map(|(k, p)| (k.as_str(), p))
            .ok_or_else(|| {
                InputError(format!(
                    "error: no pool `{name}` in {}; it has: {}",
                    args.file.display(),
                    names(config.pools.keys().collect())
                ))
            });
    }
    let listener = args.listener.as_deref().or(traffic_listener);
    let listener = match listener {
        Some(name) => Some((
            name,
            config.listeners.get(name).ok_or_else(|| {
                InputError(format!(
                    "error: no listener `{name}` in {}; it has: {}",
                    args.file.display(),
                    if config.listeners.is_empty() {
                        "none (name a pool with --pool)".to_string()
                    } else {
                        names(config.listeners.keys().collect())
                    }
                ))
            })?,
        )),
        None => config.listeners.iter().next().map(|(k, l)| (k.as_str(), l)),
    };
    match listener {
        Some((name, l)) => config
            .pools
            .get_key_value(&l.pool)
            .map(|(k, p)| (k.as_str(), p))
            .ok_or_else(|| {
                InputError(format!(
                    "error: listener `{name}` sends to `{}`, which is not a pool of the file; name one with --pool: {}",
                    l.pool,
                    names(config.pools.keys().collect())
                ))
            }),
        None => {
            let (k, p) = config
                .pools
                .iter()
                .next()
                .ok_or_else(|| InputError(balances_nothing(imported)))?;
            if config.pools.len() > 1 {
                // In the file's own words: what feeds a pool, and what a pool is called.
                let (unfed, pools) = match imported.format {
                    ImportFormat::Haproxy => ("no frontend has a default_backend", "backends"),
                    ImportFormat::Nginx => ("no server block proxies to an upstream", "upstreams"),
                    ImportFormat::Ballast => ("no listener", "pools"),
                };
                eprintln!(
                    "note: {}: {unfed}; simulating `{k}`, the first of its {pools} ({}): --pool NAME picks another",
                    args.file.display(),
                    names(config.pools.keys().collect())
                );
            }
            Ok((k.as_str(), p))
        }
    }
}

/// Why a file with no pool cannot be simulated, in the file's own words.
fn balances_nothing(imported: &Imported) -> String {
    let path = imported.loaded.source.path.display();
    let (what, fix) = match imported.format {
        ImportFormat::Haproxy => (
            "no backend or listen section has a server (a stats page or a redirect balances nothing)",
            "simulate a file with a `backend` (or `listen`) that has `server` lines",
        ),
        ImportFormat::Nginx => (
            "it has no `upstream` with servers and no `proxy_pass` to balance",
            "simulate a file with an `upstream` block of `server` lines",
        ),
        ImportFormat::Ballast => ("it has no pool", "add a [pools.NAME] table with servers"),
    };
    Diagnostic::error(format!(
        "{path} balances nothing: {what}, so there is no pool to simulate"
    ))
    .with_fix(fix)
    .render(None)
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

pub(crate) fn read_traffic(
    path: &Path,
    config: &ballast_core::Config,
) -> Result<Traffic, InputError> {
    let source = SourceFile::read(path).map_err(|e| InputError(e.render()))?;
    let (file, spans) = parse_with_spans::<TrafficFile>(&source)
        .map_err(|d| InputError(d.render(Some(&source))))?;
    let problems =
        ballast_core::traffic::validate(&file.simulate, "simulate", &spans, Some(config));
    if !problems.is_empty() {
        return Err(InputError(
            problems
                .iter()
                .map(|d| d.render(Some(&source)))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    Ok(file.simulate)
}
