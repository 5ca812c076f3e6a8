//! `ballast demo`: everything on an embedded default. Four in-process servers of different
//! speeds, the balancer on `examples/demo.toml`, light open-loop traffic, and a live summary
//! of the distribution.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use ballast_core::config::parse_duration;
use ballast_proxy::demo_backend::DemoBackend;
use ballast_proxy::{Options, Proxy};

use crate::stdout::say;

/// The configuration the demo runs (also in examples/demo.toml, checked by the tests).
const DEMO_CONFIG: &str = include_str!("../../../examples/demo.toml");

/// Run ballast on an embedded example: servers, balancer, traffic and a live summary.
///
/// Starts four servers in process (two fast, one medium, one slow), the balancer in front of
/// them with least-connections, health checks and limits, and sends light traffic. Every two
/// seconds it prints how the traffic is distributed. The balancer stays up for you to try:
/// curl the listener, read /status and /metrics on the admin API.
///
/// Examples:
///   ballast demo                      # runs until Ctrl-C
///   ballast demo --duration 20s --rate 300
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<String>,
    /// Requests per second of background traffic.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Listener port (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Admin API port (0 picks a free one).
    #[arg(long, default_value_t = 9900)]
    admin_port: u16,
}

pub fn run(args: DemoArgs) -> u8 {
    let duration = match args.duration.as_deref().map(parse_duration).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --duration {e}");
            return 2;
        }
    };
    if args.rate == 0 || args.rate > 10_000 {
        eprintln!("error: --rate must be between 1 and 10,000 requests per second");
        return 2;
    }
    crate::init_logging();
    let runtime = match crate::runtime(None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(demo(args, duration))
}

async fn demo(args: DemoArgs, duration: Option<Duration>) -> u8 {
    let speeds = [("fast-1", 2), ("fast-2", 2), ("medium", 10), ("slow", 40)];
    let mut config = DEMO_CONFIG
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
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("error: cannot create a temporary directory");
        return 1;
    };
    let path = dir.path().join("demo.toml");
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
    say!(
        "ballast demo: four servers (fast-1 2ms, fast-2 2ms, medium 10ms, slow 40ms), least-connections"
    );
    say!("  balancer   http://{listener}/            (try: curl -i http://{listener}/)");
    if let Some(admin) = proxy.admin_addr() {
        say!("  status     http://{admin}/status");
        say!("  metrics    http://{admin}/metrics");
    }
    say!("  config     {} (from examples/demo.toml)", path.display());
    say!("  traffic    {} requests/s; Ctrl-C stops\n", args.rate);

    let traffic = tokio::spawn(send_traffic(listener, args.rate));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => print_summary(&proxy, started.elapsed()),
            _ = tokio::signal::ctrl_c() => break,
            _ = sleep_or_forever(duration.map(|d| d.saturating_sub(started.elapsed()))) => break,
        }
    }
    traffic.abort();
    print_summary(&proxy, started.elapsed());
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
            if let Ok(res) = client.get(uri).await {
                use http_body_util::BodyExt;
                let _ = res.into_body().collect().await;
            }
        });
    }
}

fn print_summary(proxy: &Proxy, elapsed: Duration) {
    let status = proxy.status();
    let Some(pool) = status["pools"].as_array().and_then(|p| p.first()) else {
        return;
    };
    let mut rows = BTreeMap::new();
    say!(
        "{:>5.0}s  pool `{}` ({}), last {}s: peak ratio R {:.2}",
        elapsed.as_secs_f64(),
        pool["name"].as_str().unwrap_or(""),
        pool["algorithm"].as_str().unwrap_or(""),
        pool["recent_window_seconds"].as_u64().unwrap_or(0),
        pool["recent_peak_ratio"].as_f64().unwrap_or(0.0)
    );
    for s in pool["servers"].as_array().into_iter().flatten() {
        rows.insert(s["name"].as_str().unwrap_or("").to_string(), s.clone());
    }
    for (name, s) in rows {
        let share = s["recent_share"].as_f64().unwrap_or(0.0);
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
