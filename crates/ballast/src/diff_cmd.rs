//! `ballast diff`: compare two configurations of any formats, judge the change, predict its
//! effect on the distribution, and choose the exit code for CI.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use ballast_core::config::parse_duration;
use ballast_diff::render;

use crate::check_cmd::Deny;
use crate::input::InputArgs;
use crate::simulate_cmd::read_traffic;
use crate::stdout;

/// Compare two configurations and predict what the change does.
///
/// OLD and NEW may be ballast, HAProxy or nginx files, in any pairing (an HAProxy file against
/// its ballast translation included). The report lists the semantic changes (servers added,
/// removed or changed; weights; algorithm; limits; timeouts; health), the diff-only rules
/// (HASH-002: a server removed from a hash pool instead of marked down; HASH-003: a server's
/// ring identity changed in a consistent-hash pool), the `ballast check` findings the change
/// introduces or resolves, and the predicted share of every server of the changed pools
/// before and after, simulated with each side's own balancing code under one traffic model.
///
/// Examples:
///   ballast diff haproxy.cfg haproxy.cfg.new
///   ballast diff /etc/nginx/nginx.conf ballast.toml --format json
///   ballast diff old.toml new.toml --max-shift 10      # fail CI if a share moves > 10 points
///   git show HEAD~1:lb.cfg > /tmp/old.cfg && ballast diff /tmp/old.cfg lb.cfg
///
/// Exit codes: 0 when nothing reaches the denied level and no share moves beyond --max-shift,
/// 1 otherwise, 2 when a file cannot be read or parsed.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DiffArgs {
    /// The configuration before the change.
    old: PathBuf,
    /// The configuration after the change.
    new: PathBuf,
    /// Output: text for people, json for tools.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Lowest severity of a diff rule, or of a finding the change introduces, that fails (exit
    /// 1). Warnings by default, unlike `ballast check` (errors): a diff judges only what the
    /// change adds, so old faults never fail it, and its own HASH-002 (keys moving to other
    /// servers) is a warning a change should not ship with unnoticed (HASH-003 is info).
    #[arg(long, value_enum, default_value_t = Deny::Warnings)]
    deny: Deny,
    /// Fail (exit 1) when a server's predicted share moves by more than this many percentage points.
    #[arg(long, value_name = "POINTS")]
    max_shift: Option<f64>,
    /// A TOML file with a [simulate] table: the traffic model of the prediction (default: the
    /// new file's [simulate], else the old file's, else 60s at 1000 req/s from 10,000 clients).
    #[arg(long, value_name = "FILE")]
    traffic: Option<PathBuf>,
    /// Override the simulated duration, such as 10s.
    #[arg(long)]
    duration: Option<String>,
    /// Seed of the prediction's random draws.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: DiffArgs) -> u8 {
    let load = |path: &PathBuf| {
        args.input.load(path).map_err(|e| {
            eprintln!("{}", e.render().trim_end());
        })
    };
    let (Ok(old), Ok(new)) = (load(&args.old), load(&args.new)) else {
        return 2;
    };
    let mut traffic = match &args.traffic {
        Some(path) => match read_traffic(path, &new.loaded.config) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("{}", e.0.trim_end());
                return 2;
            }
        },
        None => None,
    };
    if args.duration.is_some() || args.seed.is_some() {
        let t = traffic.get_or_insert_with(|| {
            new.loaded
                .config
                .simulate
                .clone()
                .or_else(|| old.loaded.config.simulate.clone())
                .unwrap_or_default()
        });
        if let Some(d) = &args.duration {
            match parse_duration(d) {
                Ok(d) => t.duration.0 = d,
                Err(e) => {
                    eprintln!("error: --duration {e}");
                    return 2;
                }
            }
        }
        if let Some(s) = args.seed {
            t.seed = s;
        }
    }
    let d = ballast_diff::diff(&old, &new, traffic);
    let rendered = match args.format {
        Format::Text => render::text(&d),
        Format::Json => format!("{:#}\n", render::json(&d)),
    };
    if !stdout::print(&rendered) {
        return 2;
    }
    let level = args.deny.level();
    let shifted = args
        .max_shift
        .is_some_and(|limit| d.shifts.iter().any(|s| s.max_shift_points > limit));
    u8::from(render::failing(&d, level) > 0 || shifted)
}
