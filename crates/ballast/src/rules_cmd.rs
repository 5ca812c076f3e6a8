//! `ballast rules`: the guard's signals for the tools a team already runs — Prometheus
//! recording and alerting rules for a fleet, and the runbook every alert links to.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use ballast_guard::rules::{Families, RulesOptions, parse_duration};

use crate::stdout;

/// Write Prometheus rules, or the runbook, from the guard's detectors.
///
/// `ballast rules prometheus` writes one rule file (YAML) whose recording and alerting rules
/// compute the guard's signals from HAProxy's built-in exporter and from ballast's /metrics,
/// across any number of instances: the weight-normalised peak ratio R per pool gated by a χ²
/// test and a volume floor (PoolSkewed), weights concentrating traffic on one server
/// (PoolConcentrated), sessions and queues against their limits, 5xx ratios, pools with no
/// server up, and reloads. Alerts carry the same labels as `ballast watch`'s (alertname,
/// severity, pool, server, instance) and link to docs/runbook.md.
///
/// Examples:
///   ballast rules prometheus > /etc/prometheus/rules/ballast.yml && promtool check rules /etc/prometheus/rules/ballast.yml
///   ballast rules prometheus --family haproxy --config /etc/haproxy/haproxy.cfg
///   ballast rules prometheus --family haproxy --window 2m --skew-for 5m
///   ballast rules runbook > docs/runbook.md
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct RulesArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Prometheus recording and alerting rules (YAML) for HAProxy's exporter and ballast.
    Prometheus(Box<PrometheusArgs>),
    /// The runbook (Markdown): what every alert means and what to do.
    Runbook,
}

#[derive(Args)]
struct PrometheusArgs {
    /// Whose metrics: haproxy, ballast or both.
    #[arg(long, default_value = "both")]
    family: String,
    /// The window of every rate, share and ratio (at least four scrape intervals).
    #[arg(long, default_value = "1m")]
    window: String,
    /// How long a skew must hold before it fires.
    #[arg(long, default_value = "3m")]
    skew_for: String,
    /// How long 80% of a limit, or a queue, must hold before it fires.
    #[arg(long, default_value = "2m")]
    saturation_for: String,
    /// How long a 5xx ratio must hold before it fires.
    #[arg(long, default_value = "2m")]
    errors_for: String,
    /// R above which a pool is skewed (warning).
    #[arg(long, default_value_t = 1.5)]
    warning: f64,
    /// R above which a pool is badly skewed (critical).
    #[arg(long, default_value_t = 2.0)]
    critical: f64,
    /// The fewest requests in a window worth judging.
    #[arg(long, default_value_t = 100)]
    min_volume: u64,
    /// Leave out PoolConcentrated (for fleets whose uneven weights are meant).
    #[arg(long)]
    no_concentration: bool,
    /// Where the runbook is, for the alerts' `runbook` links.
    #[arg(long, default_value = "docs/runbook.md")]
    runbook: String,
    /// A load balancer's configuration (HAProxy, nginx or ballast; repeat for a fleet): each
    /// pool is then judged on what its algorithm promises — least-connections and
    /// power-of-two on requests in flight, hashing in a wider band, `first` not at all.
    /// Without it every pool is judged on request shares.
    #[arg(long, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: RulesArgs) -> u8 {
    match args.what {
        What::Runbook => {
            if stdout::print(&ballast_guard::runbook::markdown()) {
                0
            } else {
                2
            }
        }
        What::Prometheus(p) => prometheus(*p),
    }
}

fn prometheus(p: PrometheusArgs) -> u8 {
    let options = (|| -> Result<RulesOptions, ballast_guard::rules::RulesError> {
        Ok(RulesOptions {
            families: Families::parse(&p.family)?,
            window: parse_duration(&p.window)?,
            skew_for: parse_duration(&p.skew_for)?,
            saturation_for: parse_duration(&p.saturation_for)?,
            errors_for: parse_duration(&p.errors_for)?,
            warning: p.warning,
            critical: p.critical,
            min_volume: p.min_volume,
            concentration: !p.no_concentration,
            runbook: p.runbook.clone(),
            ..RulesOptions::default()
        })
    })();
    let mut options = match options.and_then(|o| o.validate().map(|()| o)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    for path in &p.config {
        let imported = match ballast_import::import_file(path, &ballast_import::Options::default())
        {
            Ok(i) => i,
            Err(e) => {
                // The rendered error names the file and what is wrong in it.
                eprintln!("{e}");
                return 2;
            }
        };
        for name in options.learn_promises(&imported.loaded.config) {
            eprintln!(
                "warning: pool `{name}` balances differently in {} than in an earlier --config: \
                 its rules judge it by the looser promise",
                path.display()
            );
        }
    }
    let text = ballast_guard::rules::prometheus(&options);
    match &p.output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                2
            }
        },
        None => {
            if stdout::print(&text) {
                0
            } else {
                2
            }
        }
    }
}
