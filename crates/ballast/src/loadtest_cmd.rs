//! `ballast loadtest URL`: load with every response attributed to its backend. Parses the
//! command line into a `ballast_loadtest::Plan`, reads the expected shares from a
//! configuration, runs (or runs the capacity search), prints progress and the report, judges
//! `--assert`, and appends the run's event to the event log.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use ballast_core::config::parse_duration;
use ballast_core::event::{Event, EventKind, LoadTestBackend};
use ballast_core::traffic::ArrivalKind;
use std::sync::Arc;

use ballast_loadtest::capacity::{Phase, SearchSpec, find_capacity};
use ballast_loadtest::counters::{
    self, Attribute, Counted, CounterReport, Counters, count_around, run_counted,
};
use ballast_loadtest::plan::{Load, Plan, Protocol, Stop, Target, TlsChecks, Transport};
use ballast_loadtest::report::Report;
use ballast_loadtest::requests::{self, KeyPlace, KeySpec};
use ballast_loadtest::run::{self, Progress};
use ballast_loadtest::{predict, replay};

use crate::stdout;

/// Send load and attribute every response to the backend that answered it.
///
/// Open model (`--rate`): requests at a fixed rate (evenly spaced, or `--arrival poisson`)
/// whatever the answers take, each timed from when it was meant to go out, so a stalled
/// backend shows as latency instead of hiding behind a lower rate (no coordinated omission).
/// Closed model (`--connections`, the default): N keep-alive connections, each sending its
/// next request when the last one answered.
///
/// HTTP/1.1 by default; `--http2` speaks HTTP/2 (prior knowledge on http://, ALPN h2 on
/// https://), each connection carrying `--streams` requests at once. `--no-keepalive` opens a
/// new connection for every request. https:// checks the certificate against the system's
/// roots (or `--cacert FILE`); `--insecure` accepts any (self-signed) certificate.
///
/// Every response is attributed to its backend by a response header (`--served-by`,
/// `X-Served-By` by default: ballast's `served_by_header`, HAProxy's `http-response
/// set-header X-Served-By %s`, nginx's `add_header X-Served-By $upstream_addr always`). Per
/// backend: requests, share against the share it should have (the weights of `--config`,
/// else an even split), latency percentiles from an HdrHistogram, 5xx; over the run: the
/// achieved rate, the peak ratio R, Jain's index and a χ² p-value.
///
/// The balancer's own per-server counters (`--admin` for ballast serve, `--stats-socket` for
/// HAProxy), read before and after the run, attribute it too, a 5xx the balancer wrote and a
/// backend that omits the header included, and are compared with the header (`--attribute`).
/// `--prediction` sets `simulate`'s prediction for the same configuration and traffic beside
/// each backend's share; `--replay` sends recorded requests (`simulate --replay`'s format).
///
/// Examples:
///   ballast loadtest http://127.0.0.1:8080/ --connections 50 --duration 10s
///   ballast loadtest http://127.0.0.1:8080/ --rate 2000 --arrival poisson --warmup 2s
///   ballast loadtest http://127.0.0.1:8080/ --rate 500 --config haproxy.cfg --assert 'p99<20ms,peak_ratio<1.5,errors==0'
///   ballast loadtest http://127.0.0.1:8080/api -X POST -H 'Content-Type: application/json' --body '{"a":1}' --format json
///   ballast loadtest http://127.0.0.1:8080/ --find-capacity --slo 'p99<50ms,errors<0.1%' --config ballast.toml
///   ballast loadtest --url http://127.0.0.1:8080/a=3 --url http://127.0.0.1:8080/b=1 --key header:X-Tenant --key-skew zipf:1.1
///   ballast loadtest http://127.0.0.1:8080/ --source-range 127.0.0.2-127.0.0.50 -c 49 --events events.jsonl
///   ballast loadtest http://127.0.0.1:8080/ -n 5000 --admin 127.0.0.1:9900 --assert disagreements==0
///   ballast loadtest http://127.0.0.1:8080/ -n 5000 --stats-socket /run/haproxy.sock --attribute counters
///   ballast loadtest http://127.0.0.1:8080/ --key header:X-Tenant --key-cardinality 3 --config ballast.toml --prediction
///   ballast loadtest http://127.0.0.1:8080/ --replay access.jsonl --config ballast.toml --prediction
///   ballast loadtest http://127.0.0.1:8080/ --http2 -c 4 --streams 25
///   ballast loadtest https://127.0.0.1:8443/ --cacert ca.pem --no-keepalive --rate 200
///
/// Exit codes: 0 when the run finished (and every --assert held), 1 when an assertion failed,
/// 2 when the arguments or the configuration cannot be used.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct LoadtestArgs {
    /// The URL to load (http://host:port/path or https://...).
    #[arg(required_unless_present_any = ["weighted_urls", "url_file"])]
    url: Option<String>,
    /// A URL drawn with a weight, `URL=WEIGHT` (repeat for more; the weight defaults to 1).
    /// Every URL is on the same host and port: the balancer.
    #[arg(long = "url", value_name = "URL=WEIGHT")]
    weighted_urls: Vec<String>,
    /// A file of URLs, one `URL=WEIGHT` or `WEIGHT URL` a line (`#` comments).
    #[arg(long = "urls", value_name = "FILE")]
    url_file: Option<PathBuf>,
    /// Put a hash-key value in each request: `header:X-Tenant`, `cookie:session` or
    /// `query:user`. Values `k0`, `k1`, ... drawn as `simulate` draws them.
    #[arg(long, value_name = "PLACE:NAME")]
    key: Option<String>,
    /// With --key: how many distinct values.
    #[arg(long, default_value_t = 100_000, requires = "key")]
    key_cardinality: u32,
    /// With --key: how the values are skewed: `uniform` or `zipf:1.1` (k0 the most popular).
    #[arg(long, default_value = "uniform", requires = "key")]
    key_skew: String,
    /// With --key: the fraction of requests sent without it (`5%`).
    #[arg(long, default_value = "0%", requires = "key")]
    key_missing: String,
    /// Bind new connections to these source addresses in turn, `127.0.0.2-127.0.0.50`
    /// (loopback tests of source hashing; all of 127.0.0.0/8 is local on Linux).
    #[arg(long, value_name = "FROM-TO")]
    source_range: Option<String>,
    /// Open model: requests per second (with --replay: the records evenly at this rate
    /// instead of their recorded times).
    #[arg(long, conflicts_with = "connections")]
    rate: Option<f64>,
    /// Open model: how arrivals are spaced: constant or poisson.
    #[arg(long, default_value = "constant", requires = "rate")]
    arrival: String,
    /// Open model: at most this many connections at once; a request finding none free waits,
    /// and the wait counts in its latency.
    #[arg(long, default_value_t = 1000)]
    max_connections: u32,
    /// Closed model: this many connections, each waiting for its answer (default 10).
    #[arg(long, short = 'c')]
    connections: Option<u32>,
    /// How long to send, after the warm-up.
    #[arg(long, short = 'd', default_value = "10s", conflicts_with = "requests")]
    duration: String,
    /// Stop after this many requests (after the warm-up) instead of a duration.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Sent first and left out of every figure.
    #[arg(long, default_value = "0s")]
    warmup: String,
    /// The request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeat for more).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    headers: Vec<String>,
    /// The request body.
    #[arg(long)]
    body: Option<String>,
    /// The response header that names the backend.
    #[arg(long, default_value = "X-Served-By")]
    served_by: String,
    /// The balancer's configuration (HAProxy, nginx or ballast): expected shares from its
    /// weights.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The pool the URL reaches, in --config and in the balancer's counters (default: the
    /// configuration's first listener's pool; for the counters, the pool whose counters moved).
    #[arg(long)]
    pool: Option<String>,
    /// Read `ballast serve`'s per-server counters from its admin API (127.0.0.1:9900 or a URL)
    /// before and after the run, and attribute the run by them too.
    #[arg(long, value_name = "ADDRESS", conflicts_with_all = ["stats_socket", "find_capacity"])]
    admin: Option<String>,
    /// Read HAProxy's per-server counters (`lbtot`) from its stats socket (a path or
    /// HOST:PORT; level admin) before and after the run, and attribute the run by them too.
    #[arg(long, value_name = "PATH|HOST:PORT", conflicts_with = "find_capacity")]
    stats_socket: Option<String>,
    /// How responses are attributed: `header` (--served-by), `counters` (the balancer's own,
    /// with --admin or --stats-socket: the figures and --assert come from them) or `both` (the
    /// header's figures, the counters beside them, any disagreement named). Default: both with
    /// a counter source, else header.
    #[arg(long, value_name = "HOW")]
    attribute: Option<String>,
    /// With --config: set `simulate`'s prediction for the same configuration and traffic (the
    /// same URLs, keys, sources, or the --replay file) beside each backend's measured share.
    #[arg(long, requires = "config", conflicts_with = "find_capacity")]
    prediction: bool,
    /// Send recorded requests (the JSON lines `simulate --replay` reads) at their recorded
    /// times, or evenly at --rate; method, path, headers and the client address (bound when it
    /// is in 127.0.0.0/8) from each record. The URL gives the balancer's address, over
    /// http:// or https://; with --http2 each client address shares one connection.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["find_capacity", "connections", "requests", "key", "weighted_urls", "url_file", "source_range", "body", "duration", "warmup", "no_keepalive", "streams"])]
    replay: Option<PathBuf>,
    /// A request with no answer by then is a timeout (default 10s; in a capacity search, 1s
    /// or twice the SLO's longest latency bound, so an overloaded step drains quickly).
    #[arg(long)]
    timeout: Option<String>,
    /// Conditions for the exit code: `p99<20ms,peak_ratio<1.5,errors==0` (metrics: requests,
    /// rate, errors (a fraction: 0.1%), failed, unattributed, mean, p50, p90, p99, p999, max
    /// (ms), peak_ratio, jain, chi2_p, disagreements (header against counters)).
    #[arg(long = "assert", value_name = "CONDITIONS")]
    assertions: Option<String>,
    /// Output: text or json.
    #[arg(long, default_value = "text")]
    format: String,
    /// A new connection for every request, closed after its answer (HTTP/1.1 sends
    /// `Connection: close`): connection setup, and the TLS handshake on https://, in every
    /// request's latency.
    #[arg(long)]
    no_keepalive: bool,
    /// HTTP/2: prior knowledge (h2c) on http://, ALPN h2 on https://.
    #[arg(long)]
    http2: bool,
    /// With --http2: requests each connection carries at once (closed model: -c × streams in
    /// flight; open model: a new connection only when every open one carries this many).
    #[arg(long, default_value_t = 1, requires = "http2")]
    streams: u32,
    /// https://: accept any certificate (self-signed, expired, another name) without checking.
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,
    /// https://: check the certificate against the CA certificates (PEM) in this file instead
    /// of the system's roots.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// https:// with mutual TLS: the client certificate (PEM, its chain after it) sent when
    /// the server asks for one; its file may hold the private key too.
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert, when it is in a file of its own.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Seed of the arrival gaps (poisson).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: the cores this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Append one `load_test_ran` event with the run's figures to this event log (the JSON
    /// lines `serve` writes to its `[global] event_log`), for `postmortem` and the dashboard.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Capacity search: open-model steps at a rising rate (doubling from --start-rate), then
    /// bisection, to the highest rate that meets --slo; and which backend saturated first.
    #[arg(long, requires = "slo", conflicts_with_all = ["connections", "requests", "assertions"])]
    find_capacity: bool,
    /// The capacity search's SLO, in --assert's grammar: `p99<50ms,errors<0.1%`.
    #[arg(long, value_name = "CONDITIONS")]
    slo: Option<String>,
    /// Capacity search: the first step's rate (requests per second).
    #[arg(long, default_value_t = 100.0)]
    start_rate: f64,
    /// Capacity search: no step goes above this rate.
    #[arg(long, default_value_t = 100_000.0)]
    max_rate: f64,
    /// Capacity search: each step's measured length.
    #[arg(long, default_value = "3s")]
    step_duration: String,
    /// Capacity search: each step's warm-up, left out of its figures.
    #[arg(long, default_value = "500ms")]
    step_warmup: String,
    /// Capacity search: bisect until the failing rate is within this much above the passing one.
    #[arg(long, default_value = "5%")]
    precision: String,
    /// Capacity search: count a step's miss at once instead of running the step again to
    /// confirm it (faster; on a quiet machine).
    #[arg(long)]
    no_confirm: bool,
    /// Capacity search: the whole search's time budget.
    #[arg(long, default_value = "120s")]
    search_time: String,
}

pub fn run(args: LoadtestArgs) -> u8 {
    let Prepared {
        plan,
        expected,
        conditions,
        configured,
    } = match prepare(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let runtime = match crate::runtime(args.threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 2;
        }
    };
    let target_rate = match plan.load {
        Load::Open { rate, .. } => Some(rate),
        Load::Closed { .. } => None,
    };
    if plan.target.tls {
        // One handshake now: a refused certificate is one error naming the fix, not a run of
        // connect failures.
        let addr = std::net::SocketAddr::new(
            plan.target.host.parse().unwrap_or([127, 0, 0, 1].into()),
            plan.target.port,
        );
        let probe = ballast_loadtest::tls::probe(
            addr,
            &plan.target,
            &plan.transport.tls,
            plan.transport.protocol,
        );
        if let Err(e) = runtime.block_on(probe) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    if args.find_capacity {
        return run_capacity(&args, plan, &expected, &runtime);
    }
    let started_ms = unix_ms();
    let live = std::io::stderr().is_terminal();
    let progress = move |p: &Progress| {
        if live {
            eprint!(
                "\r\x1b[K{:>5.0}s {}{:>8.0} req/s  {} requests  {} errors  p99 {:.2} ms",
                p.elapsed.as_secs_f64(),
                if p.warming_up { "(warm-up) " } else { "" },
                p.rate,
                p.requests,
                p.errors,
                p.p99_ms
            );
        }
    };
    let attributed = match attributed_run(&args, &plan, &runtime, progress) {
        Ok(a) => a,
        Err(e) => {
            if live {
                eprint!("\r\x1b[K");
            }
            eprintln!("error: {e}");
            return 2;
        }
    };
    if live {
        eprint!("\r\x1b[K");
    }
    let report = match attributed_report(&args, &plan, attributed, &expected, configured.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let written = match args.format.as_str() {
        "json" => stdout::print(&format!(
            "{}\n",
            serde_json::to_string(&report).unwrap_or_default()
        )),
        _ => stdout::print(&report.table()),
    };
    if !written {
        return 2;
    }
    let verdicts = ballast_sim::assert::evaluate(&conditions, &report);
    let failed: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.passed)
        .map(|v| format!("{} (actual {:.4})", v.condition, v.actual))
        .collect();
    for f in &failed {
        eprintln!("assertion failed: {f}");
    }
    if let Some(path) = &args.events {
        let model = if args.replay.is_some() {
            "replay"
        } else if target_rate.is_some() {
            "open"
        } else {
            "closed"
        };
        let event = load_test_event(
            &args,
            started_ms,
            model,
            &report,
            None,
            None,
            failed.clone(),
        );
        if let Err(e) = append_event(path, &event) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    u8::from(!failed.is_empty())
}

/// `--find-capacity`: the search, its progress on stderr step by step, and its result.
fn run_capacity(
    args: &LoadtestArgs,
    mut plan: Plan,
    expected: &Expected,
    runtime: &tokio::runtime::Runtime,
) -> u8 {
    let slo_text = args.slo.clone().unwrap_or_default();
    let prepared = (|| -> Result<_, String> {
        let slo = ballast_sim::assert::parse_for(&slo_text, Report::METRICS)
            .map_err(|e| format!("--slo: {e}"))?;
        let spec = SearchSpec {
            start_rate: args.start_rate,
            max_rate: args.max_rate,
            step: parse_duration(&args.step_duration)
                .map_err(|e| format!("--step-duration {e}"))?,
            step_warmup: parse_duration(&args.step_warmup)
                .map_err(|e| format!("--step-warmup {e}"))?,
            precision: parse_fraction(&args.precision)
                .ok_or_else(|| format!("--precision `{}`: write 5% or 0.05", args.precision))?,
            budget: parse_duration(&args.search_time).map_err(|e| format!("--search-time {e}"))?,
            confirm_misses: !args.no_confirm,
        };
        spec.validate()?;
        Ok((slo, spec))
    })();
    let (slo, spec) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if args.timeout.is_none() {
        // Past the SLO's longest latency bound a request's exact latency no longer matters;
        // cutting it there lets an overloaded step end promptly.
        let longest_ms = slo
            .iter()
            .filter(|c| ["mean", "p50", "p90", "p99", "p999", "max"].contains(&c.metric.as_str()))
            .map(|c| c.value)
            .fold(0.0, f64::max);
        plan.timeout =
            Duration::from_secs(1).max(Duration::from_secs_f64(longest_ms * 2.0 / 1000.0));
    }
    let started_ms = unix_ms();
    let served_by = plan.served_by.clone();
    let last_report = std::cell::RefCell::new(None::<Report>);
    let result = runtime.block_on(find_capacity(
        &plan,
        spec,
        &slo,
        &slo_text,
        |finished, rate| {
            let report = Report::build(
                &finished.tally,
                finished.measured,
                Some(rate),
                &served_by,
                &choose_keys(expected, &finished.tally),
            );
            *last_report.borrow_mut() = Some(report.clone());
            report
        },
        |n, step| {
            eprintln!(
                "step {n} ({}): {:.1} req/s target, {:.1} achieved, p99 {:.2} ms, errors {:.2}%: {}",
                match step.phase {
                    Phase::Raise => "raise",
                    Phase::Bisect => "bisect",
                },
                step.target_rate,
                step.rate,
                step.p99_ms,
                step.error_ratio * 100.0,
                match (step.met_slo, step.retried) {
                    (true, false) => "meets the SLO".to_string(),
                    (true, true) => "meets the SLO (on a second run, after a miss)".to_string(),
                    (false, _) => format!("misses it ({})", step.failed.join(", ")),
                }
            );
        },
    ));
    let written = match args.format.as_str() {
        "json" => stdout::print(&format!(
            "{}\n",
            serde_json::to_string(&result).unwrap_or_default()
        )),
        _ => stdout::print(&result.table()),
    };
    if !written {
        return 2;
    }
    if let (Some(path), Some(mut report)) = (&args.events, last_report.into_inner()) {
        // The event carries the last step's figures, the whole search's length.
        report.seconds = result.seconds;
        let event = load_test_event(
            args,
            started_ms,
            "capacity",
            &report,
            result.capacity,
            result.saturated.as_ref().map(|s| s.backend.clone()),
            Vec::new(),
        );
        if let Err(e) = append_event(path, &event) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    // The search found a rate meeting the SLO; none at all is a failure for CI.
    u8::from(result.capacity.is_none())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The run as one event of the log.
fn load_test_event(
    args: &LoadtestArgs,
    at_ms: u64,
    model: &str,
    report: &Report,
    capacity: Option<f64>,
    saturated: Option<String>,
    failed_assertions: Vec<String>,
) -> Event {
    let target = args
        .url
        .clone()
        .or_else(|| args.weighted_urls.first().cloned())
        .unwrap_or_default();
    Event {
        at_ms,
        kind: EventKind::LoadTestRan {
            target,
            model: model.to_string(),
            seconds: report.seconds,
            requests: report.requests,
            rate: report.rate,
            target_rate: report.target_rate,
            error_ratio: report.error_ratio,
            p50_ms: report.latency_ms.p50,
            p99_ms: report.latency_ms.p99,
            peak_ratio: report.peak_ratio,
            backends: report
                .backends
                .iter()
                .map(|b| LoadTestBackend {
                    name: b.name.clone(),
                    requests: b.requests,
                    share: b.share,
                    expected_share: b.expected_share,
                    p99_ms: b.latency_ms.p99,
                    errors_5xx: b.responses.get("5xx").copied().unwrap_or(0),
                })
                .collect(),
            capacity,
            saturated,
            failed_assertions,
        },
    }
}

/// Appends one JSON line (one write, so lines of concurrent writers do not interleave).
fn append_event(path: &std::path::Path, event: &Event) -> Result<(), String> {
    use std::io::Write;
    let mut line = serde_json::to_string(event).map_err(|e| e.to_string())?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| {
            format!(
                "cannot append the run's event to {}: {e} (check the directory exists and is writable)",
                path.display()
            )
        })
}

/// `5%` or `0.05`.
fn parse_fraction(text: &str) -> Option<f64> {
    let v = match text.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => text.trim().parse::<f64>().ok()?,
    };
    v.is_finite().then_some(v)
}

/// Expected shares keyed two ways: by server name (ballast, HAProxy's `%s`) and by address
/// (nginx's `$upstream_addr`).
struct Expected {
    by_name: BTreeMap<String, f64>,
    by_address: BTreeMap<String, f64>,
}

/// The keying whose names the responses actually carried; an even split, with a warning,
/// when the responses name none of the configuration's servers.
fn choose_keys(
    expected: &Expected,
    tally: &ballast_loadtest::tally::Tally,
) -> BTreeMap<String, f64> {
    let overlap =
        |m: &BTreeMap<String, f64>| tally.backends.keys().filter(|k| m.contains_key(*k)).count();
    let (by_name, by_address) = (overlap(&expected.by_name), overlap(&expected.by_address));
    if expected.by_name.is_empty() {
        BTreeMap::new()
    } else if by_name == 0 && by_address == 0 {
        let names: Vec<&str> = tally.backends.keys().map(String::as_str).collect();
        let seen = match names.len() {
            n if n > 8 => format!("{} and {} more", names[..8].join(", "), n - 8),
            _ => names.join(", "),
        };
        eprintln!(
            "warning: the responses name backends {seen}, which the configuration names \
             neither by server name nor by address: shares are judged against an even split"
        );
        BTreeMap::new()
    } else if by_address > by_name {
        expected.by_address.clone()
    } else {
        expected.by_name.clone()
    }
}

/// The command line made into a run: the plan, the expected shares, the `--assert`
/// conditions, and the configured pool (for `--prediction`).
struct Prepared {
    plan: Plan,
    expected: Expected,
    conditions: Vec<ballast_sim::assert::Condition>,
    configured: Option<ConfiguredPool>,
}

/// The URLs: the positional one (weight 1), the `--url` ones, the `--urls` file's.
fn urls(args: &LoadtestArgs) -> Result<Vec<(Target, f64)>, String> {
    let mut urls = Vec::new();
    if let Some(url) = &args.url {
        urls.push((Target::parse(url)?, 1.0));
    }
    for u in &args.weighted_urls {
        urls.push(requests::parse_weighted_url(u)?);
    }
    if let Some(path) = &args.url_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --urls {}: {e}", path.display()))?;
        urls.extend(
            requests::parse_url_file(&text)
                .map_err(|e| format!("--urls {}: {e}", path.display()))?,
        );
    }
    let first = urls.first().ok_or("give a URL")?.0.clone();
    if let Some((other, _)) = urls.iter().find(|(t, _)| {
        (t.tls, t.host.as_str(), t.port) != (first.tls, first.host.as_str(), first.port)
    }) {
        return Err(format!(
            "every URL must be on the same scheme, host and port (the balancer): {} is not {}",
            other.authority, first.authority
        ));
    }
    Ok(urls)
}

fn prepare(args: &LoadtestArgs) -> Result<Prepared, String> {
    // clap's `requires` cannot see that a flag is absent when it has a default (false), so
    // --slo without --find-capacity is refused here instead of being ignored.
    if args.slo.is_some() && !args.find_capacity {
        return Err(
            "--slo is the capacity search's objective: add --find-capacity, or check a \
                    plain run with --assert 'p99<50ms,errors<0.1%'"
                .into(),
        );
    }
    let mut urls = urls(args)?;
    let mut target = urls[0].0.clone();
    let scheme = if target.tls { "https" } else { "http" };
    let shown = format!("{scheme}://{}{}", target.authority, target.path);
    // Resolve once and try one connection first: a wrong host or a balancer that is not
    // listening is an error now, not ten seconds of failed requests.
    if target.host.is_empty() {
        return Err(format!(
            "{shown} names no host; write it like http://127.0.0.1:8080/"
        ));
    }
    let cannot_resolve = |why: String| {
        format!(
            "cannot resolve `{}` in {shown}: {why}; check the host name, or give an address \
             such as 127.0.0.1",
            target.host
        )
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(target.host.as_str(), target.port))
        .map_err(|e| cannot_resolve(e.to_string()))?
        .next()
        .ok_or_else(|| cannot_resolve("no address".into()))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        format!("cannot connect to {addr} ({shown}): {e}; is the balancer listening there?")
    })?;
    target.host = addr.ip().to_string();
    for (t, _) in &mut urls {
        t.host = target.host.clone();
    }
    let key = match &args.key {
        Some(place) => Some(KeySpec {
            place: KeyPlace::parse(place)?,
            cardinality: args.key_cardinality,
            zipf: requests::parse_skew(&args.key_skew)?,
            missing: parse_fraction(&args.key_missing)
                .ok_or_else(|| format!("--key-missing `{}`: write 5% or 0.05", args.key_missing))?,
        }),
        None => None,
    };
    let sources = match &args.source_range {
        Some(range) => {
            let sources = requests::parse_source_range(range)?;
            // Bind once now: an address the host does not have is an error before the run.
            let probe = std::net::TcpListener::bind((sources[0], 0));
            if let Err(e) = probe {
                return Err(format!(
                    "--source-range: cannot bind {}: {e}; use addresses this host has \
                     (127.0.0.0/8 on Linux)",
                    sources[0]
                ));
            }
            sources
        }
        None => Vec::new(),
    };
    let arrival = match args.arrival.as_str() {
        "constant" => ArrivalKind::Constant,
        "poisson" => ArrivalKind::Poisson,
        other => return Err(format!("--arrival `{other}`: use constant or poisson")),
    };
    let load = match (args.rate, args.connections) {
        (Some(rate), _) => Load::Open {
            rate,
            arrival,
            max_connections: args.max_connections,
        },
        (None, connections) => Load::Closed {
            connections: connections.unwrap_or(10),
        },
    };
    let stop = match args.requests {
        Some(n) => Stop::Requests(n),
        None => Stop::After(parse_duration(&args.duration).map_err(|e| format!("--duration {e}"))?),
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: write it as `Name: value`"))?;
        let (name, value) = (name.trim(), value.trim());
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || hyper::header::HeaderValue::from_str(value).is_err()
        {
            return Err(format!("--header `{h}` is not a valid HTTP header"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    if hyper::Method::from_bytes(args.method.as_bytes()).is_err() {
        return Err(format!("--method `{}` is not an HTTP method", args.method));
    }
    if hyper::header::HeaderName::from_bytes(args.served_by.as_bytes()).is_err() {
        return Err(format!(
            "--served-by `{}` is not a header name",
            args.served_by
        ));
    }
    let mut plan = Plan {
        target,
        load,
        stop,
        warmup: parse_duration(&args.warmup).map_err(|e| format!("--warmup {e}"))?,
        method: args.method.to_ascii_uppercase(),
        headers,
        body: args.body.clone().unwrap_or_default().into_bytes(),
        served_by: args.served_by.clone(),
        timeout: match &args.timeout {
            Some(t) => parse_duration(t).map_err(|e| format!("--timeout {e}"))?,
            None => Duration::from_secs(10),
        },
        seed: args.seed,
        urls: if urls.len() > 1 { urls } else { Vec::new() },
        key,
        sources,
        transport: Transport {
            protocol: if args.http2 {
                Protocol::Http2 {
                    streams: args.streams,
                }
            } else {
                Protocol::Http1
            },
            connection_per_request: args.no_keepalive,
            tls: TlsChecks {
                insecure: args.insecure,
                ca_file: args.cacert.clone(),
                client_cert: args.client_cert.clone(),
                client_key: args.client_key.clone(),
            },
        },
    };
    if !plan.target.tls && (args.insecure || args.cacert.is_some() || args.client_cert.is_some()) {
        return Err("--insecure, --cacert and --client-cert apply to https:// URLs only".into());
    }
    plan.validate()?;
    if plan.timeout < Duration::from_millis(1) {
        return Err("--timeout must be at least 1ms".into());
    }
    let configured = match &args.config {
        Some(path) => Some(configured_pool(path, args.pool.as_deref())?),
        None => None,
    };
    let expected = match &configured {
        Some(c) => expected_shares(&c.name, &c.pool)?,
        None => Expected {
            by_name: BTreeMap::new(),
            by_address: BTreeMap::new(),
        },
    };
    if args.find_capacity && args.rate.is_none() {
        plan.load = Load::Open {
            rate: args.start_rate,
            arrival,
            max_connections: args.max_connections,
        };
    }
    let conditions = match &args.assertions {
        Some(spec) => ballast_sim::assert::parse_for(spec, Report::METRICS)
            .map_err(|e| format!("--assert: {e}"))?,
        None => Vec::new(),
    };
    if !matches!(args.format.as_str(), "text" | "json") {
        return Err(format!("--format `{}`: use text or json", args.format));
    }
    Ok(Prepared {
        plan,
        expected,
        conditions,
        configured,
    })
}

/// The pool the URL reaches in a configuration, with the configuration's traffic model (its
/// `[simulate]` table, else the defaults) for `--prediction`.
struct ConfiguredPool {
    name: String,
    pool: ballast_core::config::Pool,
    traffic: ballast_core::traffic::Traffic,
}

/// Imports a configuration (any format ballast reads) and picks its pool: `--pool`, else the
/// first listener's, else the first.
fn configured_pool(path: &std::path::Path, pool: Option<&str>) -> Result<ConfiguredPool, String> {
    let imported =
        ballast_import::import_file(path, &ballast_import::Options::default()).map_err(|e| {
            // The caller prints `error: ` before the message; the diagnostics begin with it.
            let text = e.to_string();
            format!(
                "--config: {}",
                text.strip_prefix("error: ").unwrap_or(&text)
            )
        })?;
    let config = &imported.loaded.config;
    let name = match pool {
        Some(p) => p.to_string(),
        None => config
            .listeners
            .values()
            .next()
            .map(|l| l.pool.clone())
            .or_else(|| config.pools.keys().next().cloned())
            .ok_or_else(|| format!("{} has no pool", path.display()))?,
    };
    let Some(pool) = config.pools.get(&name) else {
        let known: Vec<&String> = config.pools.keys().collect();
        return Err(format!(
            "{} has no pool `{name}`; it has: {known:?} (choose with --pool)",
            path.display()
        ));
    };
    Ok(ConfiguredPool {
        name,
        pool: pool.clone(),
        traffic: config.simulate.clone().unwrap_or_default(),
    })
}

/// The shares a pool's weights promise to the servers in rotation (not down, weight above 0,
/// primaries unless there are none).
fn expected_shares(name: &str, pool: &ballast_core::config::Pool) -> Result<Expected, String> {
    let live: Vec<_> = pool
        .servers
        .iter()
        .filter(|s| !s.down && s.weight > 0)
        .collect();
    let primaries: Vec<_> = live.iter().filter(|s| !s.backup).copied().collect();
    let serving = if primaries.is_empty() {
        live
    } else {
        primaries
    };
    let total: u32 = serving.iter().map(|s| s.weight).sum();
    if total == 0 {
        return Err(format!("pool `{name}` has no server in rotation"));
    }
    let share = |w: u32| f64::from(w) / f64::from(total);
    Ok(Expected {
        by_name: serving
            .iter()
            .map(|s| (s.name.clone(), share(s.weight)))
            .collect(),
        by_address: serving
            .iter()
            .map(|s| (s.address.clone(), share(s.weight)))
            .collect(),
    })
}

/// A finished run, and the balancer's counters over it when they were read.
struct Attributed {
    finished: run::Finished,
    counted: Option<Counted>,
    attribute: Attribute,
    /// The records sent, with `--replay`.
    records: Option<Arc<Vec<ballast_sim::ReplayRequest>>>,
}

/// Runs the plan (or sends the `--replay` records), reading the counters of `--admin` or
/// `--stats-socket` around it.
fn attributed_run(
    args: &LoadtestArgs,
    plan: &Plan,
    runtime: &tokio::runtime::Runtime,
    progress: impl FnMut(&Progress) + Send,
) -> Result<Attributed, String> {
    let mut counters = match (&args.admin, &args.stats_socket) {
        (Some(admin), _) => Some(Counters::ballast(admin)),
        (None, Some(socket)) => Some(Counters::haproxy(socket)?),
        (None, None) => None,
    };
    let attribute = match (&args.attribute, &counters) {
        (Some(how), _) => Attribute::parse(how)?,
        (None, Some(_)) => Attribute::Both,
        (None, None) => Attribute::Header,
    };
    if attribute != Attribute::Header && counters.is_none() {
        return Err(
            "--attribute counters or both reads the balancer's counters: give --admin \
             ADDRESS (ballast serve) or --stats-socket PATH (HAProxy)"
                .into(),
        );
    }
    if attribute == Attribute::Header {
        counters = None;
    }
    let records = match &args.replay {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --replay {}: {e}", path.display()))?;
            Some(Arc::new(
                replay::parse(&text).map_err(|e| format!("--replay {}: {e}", path.display()))?,
            ))
        }
        None => None,
    };
    let rate = args.rate;
    let (finished, counted) = match (&records, counters.as_mut()) {
        (Some(records), counters) => {
            let send = || {
                runtime.block_on(replay::run(
                    plan.clone(),
                    Arc::clone(records),
                    rate,
                    progress,
                ))
            };
            match counters {
                Some(c) => {
                    let (f, counted) = count_around(c, args.pool.as_deref(), send)?;
                    (f, Some(counted))
                }
                None => (send(), None),
            }
        }
        (None, Some(c)) => {
            let (f, counted) =
                run_counted(runtime, plan.clone(), c, args.pool.as_deref(), progress)?;
            (f, Some(counted))
        }
        (None, None) => (runtime.block_on(run::run(plan.clone(), progress)), None),
    };
    Ok(Attributed {
        finished,
        counted,
        attribute,
        records,
    })
}

/// The report of an attributed run: by the header or the counters, the other set beside it,
/// and `simulate`'s prediction when asked.
fn attributed_report(
    args: &LoadtestArgs,
    plan: &Plan,
    attributed: Attributed,
    expected: &Expected,
    configured: Option<&ConfiguredPool>,
) -> Result<Report, String> {
    let Attributed {
        finished,
        counted,
        attribute,
        records,
    } = attributed;
    let target_rate = match (&records, plan.load) {
        (None, Load::Open { rate, .. }) => Some(rate),
        (Some(_), _) => args.rate,
        _ => None,
    };
    let tally = &finished.tally;
    let mut report = match (&counted, attribute) {
        (Some(counted), Attribute::Counters) => Report::build(
            &counters::retally(tally, counted),
            finished.measured,
            target_rate,
            &plan.served_by,
            &expected.by_name,
        ),
        _ => Report::build(
            tally,
            finished.measured,
            target_rate,
            &plan.served_by,
            &choose_keys(expected, tally),
        ),
    };
    if let Some(counted) = &counted {
        let compare = attribute == Attribute::Both || !tally.backends.is_empty();
        let counters = CounterReport::build(counted, tally, compare, &expected.by_name);
        for d in &counters.disagreements {
            eprintln!("warning: the header and the counters disagree: {d}");
        }
        report.counters = Some(counters);
    }
    if args.prediction
        && let Some(c) = configured
    {
        let by_address = keyed_by_address(expected, tally);
        let mut traffic = c.traffic.clone();
        traffic.seed = plan.seed;
        let prediction = match &records {
            Some(records) => {
                predict::predict(&c.name, &c.pool, &traffic, records, "replay", by_address)
            }
            None => {
                let rate = target_rate.unwrap_or(report.rate);
                // The prediction is the model's expectation: at least 10,000 requests, so its
                // own draws add little noise to the comparison.
                let count = report.requests.max(10_000);
                let drawn = predict::requests_of_plan(plan, count, rate);
                predict::predict(&c.name, &c.pool, &traffic, &drawn, "plan", by_address)
            }
        };
        predict::apply(&mut report, prediction);
    }
    Ok(report)
}

/// Whether the responses name the configuration's servers by address (nginx) rather than by
/// name: the keying `choose_keys` picks.
fn keyed_by_address(expected: &Expected, tally: &ballast_loadtest::tally::Tally) -> bool {
    let overlap =
        |m: &BTreeMap<String, f64>| tally.backends.keys().filter(|k| m.contains_key(*k)).count();
    overlap(&expected.by_address) > overlap(&expected.by_name)
}
