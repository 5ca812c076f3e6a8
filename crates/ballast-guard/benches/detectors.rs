//! One sample round of the guard's detectors at fleet scale: saturation, errors and
//! distribution over 1,000 pools × 50 servers, a window of two samples (the target is
//! ≤ 10 ms per round). The pools carry limits, queues, responses by class and latencies, with
//! a few servers at their limits, failing or slow, so every rule's path is taken.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use ballast_core::sample::{
    FrontendSample, PoolSample, ProcessSample, Promise, ResponseClasses, Sample, ServerSample,
    ServerState,
};
use ballast_guard::detect::distribution::{self, Thresholds};
use ballast_guard::detect::errors::{self, ErrorThresholds};
use ballast_guard::detect::saturation::{self, SaturationThresholds};

const POOLS: usize = 1000;
const SERVERS: usize = 50;

/// Server `s` of pool `p` at round `round` (0 or 1): 200 requests a round per unit of weight,
/// 1% errors, about 25 ms. In a troubled fleet every 97th server is at its limit, every 89th
/// fails 30%, every 83rd is slow and every 211th down.
fn server(p: usize, s: usize, round: u64, troubled: bool) -> ServerSample {
    let n = p * SERVERS + s;
    let odd = |every: usize| troubled && n.is_multiple_of(every);
    let weight = 1 + (s % 3) as u32;
    let requests = 200 * u64::from(weight) * (round + 1) + (n as u64 % 7);
    let failing = odd(89);
    let c5xx = if failing {
        requests * 3 / 10
    } else {
        requests / 100
    };
    ServerSample {
        state_for_s: None,
        name: format!("app-{p}-{s}"),
        requests,
        // In flight in proportion to weight, as least-connections keeps it.
        active: if odd(97) {
            50
        } else {
            8 * u64::from(weight) + (n as u64 % 3)
        },
        queued: if odd(97) { 3 } else { 0 },
        max_connections: Some(50),
        max_queue: Some(100),
        weight,
        state: if odd(211) {
            ServerState::Down
        } else {
            ServerState::Up
        },
        backup: false,
        responses: ResponseClasses {
            c2xx: requests - c5xx,
            c5xx,
            ..ResponseClasses::default()
        },
        latency_ms: Some(if odd(83) {
            800.0
        } else {
            20.0 + (n % 11) as f64
        }),
    }
}

fn fleet_sample(round: u64, troubled: bool) -> Sample {
    let promises = [
        Promise::RequestShares,
        Promise::Concurrency,
        Promise::KeyDependent,
    ];
    Sample {
        at_ms: 1_000 * round,
        source: "bench".into(),
        instance: "lb-1".into(),
        pools: (0..POOLS)
            .map(|p| PoolSample {
                noted: Default::default(),
                predicted: None,
                name: format!("pool-{p}"),
                promise: promises[p % promises.len()],
                servers: (0..SERVERS)
                    .map(|s| server(p, s, round, troubled))
                    .collect(),
                queued: (troubled && p.is_multiple_of(13)).into(),
            })
            .collect(),
        frontends: vec![FrontendSample {
            name: "www".into(),
            active: 30_000,
            max_connections: Some(50_000),
            refused: 0,
        }],
        process: Some(ProcessSample {
            started_unix_s: None,
            active: 30_000,
            max_connections: Some(100_000),
            generation: Some("1".into()),
            accepted: Some(1_000_000 * (round + 1)),
            handled: Some(1_000_000 * (round + 1)),
        }),
        ..Default::default()
    }
}

/// Distribution takes one pool's samples; the round pairs them by position, falling back to
/// the name, as the detectors do.
fn distribution_round(window: &[Sample], t: &Thresholds) -> usize {
    let now = &window[window.len() - 1];
    let mut skewed = 0;
    for (i, pool) in now.pools.iter().enumerate() {
        let series: Vec<&PoolSample> = window
            .iter()
            .filter_map(|s| match s.pools.get(i) {
                Some(p) if p.name == pool.name => Some(p),
                _ => s.pools.iter().find(|p| p.name == pool.name),
            })
            .collect();
        if let Some(d) = distribution::judge(&series, t)
            && matches!(d.verdict, distribution::Verdict::Skewed { .. })
        {
            skewed += 1;
        }
    }
    skewed
}

/// A watcher with the default options (a 5 s window of 1 s samples) and a minute of history,
/// filled first, then `rounds` more rounds: every round runs every detector, drift, the cause
/// statements and the alert lifecycle, as `ballast watch` does. A round's cost does not grow
/// with history beyond the half minute the latency baseline reads, so a minute stands for the
/// ten minutes kept by default (and keeps the bench at 60 samples of 11 MB). Prints the CPU
/// time of the steady rounds alone (the thread's time on CPU from the scheduler, so building
/// the samples is left out and a busy machine does not inflate it) and of the slowest one.
fn watcher_rounds(rounds: u32, troubled: bool) {
    use ballast_guard::watch::{WatchOptions, Watcher};
    let on_cpu_ns = || -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .expect("/proc/thread-self/schedstat")
    };
    // BENCH_HISTORY_S shortens the history, for a profiler's sake.
    let history_s: u64 = std::env::var("BENCH_HISTORY_S")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(60);
    let options = WatchOptions {
        history_ms: history_s * 1_000,
        ..WatchOptions::default()
    };
    let fill = options.history_ms / 1_000 + 1;
    let mut watcher = Watcher::new("bench", "lb-1", options);
    // CPU time of the round's two halves: taking the sample (noting it, keeping it, dropping
    // the oldest) and judging the window.
    let (mut taking, mut judging, mut slowest) = (0u64, 0u64, 0u64);
    let (mut wall, mut wall_judging) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for round in 0..fill + u64::from(rounds) {
        let sample = fleet_sample(round, troubled);
        let steady = round >= fill;
        let (before, started) = (on_cpu_ns(), std::time::Instant::now());
        let intake = if steady {
            steady_take(&mut watcher, sample)
        } else {
            watcher.take(sample)
        };
        let (taken, taken_at) = (on_cpu_ns(), std::time::Instant::now());
        if steady {
            black_box(steady_judge(&mut watcher, intake));
        } else {
            black_box(watcher.judge(intake));
        }
        let (judged, elapsed) = (on_cpu_ns(), started.elapsed());
        if steady {
            taking += taken - before;
            judging += judged - taken;
            slowest = slowest.max(judged - before);
            wall += elapsed;
            wall_judging += taken_at.elapsed();
            // BENCH_EACH=1: every steady round's two halves, in wall time (exact, where the
            // scheduler's figure is a tick).
            if std::env::var_os("BENCH_EACH").is_some() {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                eprintln!(
                    "round {round}: taking {:.2} ms, judging {:.2} ms (wall)",
                    ms(elapsed - taken_at.elapsed()),
                    ms(taken_at.elapsed())
                );
            }
        }
    }
    // The scheduler's figure can be as coarse as a tick; the wall time beside it is exact but
    // counts whatever else the machine ran.
    let per_round = |ns: u64| ns as f64 / f64::from(rounds.max(1)) / 1e6;
    println!(
        "watcher steady round over {rounds} rounds: {:.2} ms mean on CPU ({:.2} ms wall), \
         {:.2} ms taking the sample, {:.2} ms judging ({:.2} ms wall); {:.2} ms slowest",
        per_round(taking + judging),
        wall.as_secs_f64() * 1e3 / f64::from(rounds.max(1)),
        per_round(taking),
        per_round(judging),
        wall_judging.as_secs_f64() * 1e3 / f64::from(rounds.max(1)),
        slowest as f64 / 1e6
    );
}

/// The steady rounds' two halves under names of their own, so a profiler can count them
/// alone: `valgrind --tool=callgrind --toggle-collect=detectors::steady_judge`.
#[inline(never)]
fn steady_take(
    watcher: &mut ballast_guard::watch::Watcher,
    sample: Sample,
) -> ballast_guard::watch::Intake {
    watcher.take(sample)
}

#[inline(never)]
fn steady_judge(
    watcher: &mut ballast_guard::watch::Watcher,
    intake: ballast_guard::watch::Intake,
) -> ballast_guard::watch::Outcome {
    watcher.judge(intake)
}

fn bench(c: &mut Criterion) {
    let healthy = [fleet_sample(0, false), fleet_sample(1, false)];
    let troubled = [fleet_sample(0, true), fleet_sample(1, true)];
    let (st, et, dt) = (
        SaturationThresholds::default(),
        ErrorThresholds::default(),
        Thresholds::default(),
    );
    // BENCH_ROUNDS=n runs n plain rounds and nothing else, for `perf stat -e task-clock`: CPU
    // time per round, which a machine shared with builds does not inflate as wall time.
    if let Some(rounds) = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<u32>().ok())
    {
        // BENCH_FLEET=healthy judges the fleet without trouble; BENCH_ONLY=saturation|errors|
        // distribution runs one detector alone.
        let window = match std::env::var("BENCH_FLEET").as_deref() {
            Ok("healthy") => &healthy,
            _ => &troubled,
        };
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        // BENCH_ONLY=watcher: the whole round `ballast watch` runs (every detector, drift, the
        // cause statements, the alert lifecycle) over its default 5 s window of 1 s samples.
        if only == "watcher" {
            let troubled = std::env::var("BENCH_FLEET").as_deref() != Ok("healthy");
            watcher_rounds(rounds, troubled);
            std::process::exit(0);
        }
        let runs = |name: &str| only.is_empty() || only == name;
        for _ in 0..rounds {
            if runs("saturation") {
                black_box(saturation::detect(black_box(window), &st));
            }
            if runs("errors") {
                black_box(errors::detect(black_box(window), &et));
            }
            if runs("distribution") {
                black_box(distribution_round(black_box(window), &dt));
            }
        }
        std::process::exit(0);
    }
    for (fleet, window) in [("healthy", &healthy), ("troubled", &troubled)] {
        let saturation_found = saturation::detect(window, &st).len();
        let errors_found = errors::detect(window, &et).len();
        let skewed = distribution_round(window, &dt);
        eprintln!(
            "one round over the {fleet} fleet of {POOLS} pools × {SERVERS} servers: \
             {saturation_found} saturation findings, {errors_found} error findings, {skewed} \
             skewed pools"
        );
        // The healthy fleet raises nothing; the troubled one takes every rule's path.
        let total = saturation_found + errors_found + skewed;
        assert_eq!(fleet == "troubled", total > 0, "{fleet}: {total} findings");

        let mut group = c.benchmark_group(format!("{fleet}_1000_pools_x_50_servers"));
        group.sample_size(20);
        group.bench_function("saturation", |b| {
            b.iter(|| saturation::detect(black_box(window), &st))
        });
        group.bench_function("errors", |b| {
            b.iter(|| errors::detect(black_box(window), &et))
        });
        group.bench_function("distribution", |b| {
            b.iter(|| distribution_round(black_box(window), &dt))
        });
        group.bench_function("round_all_three", |b| {
            b.iter(|| {
                (
                    saturation::detect(black_box(window), &st),
                    errors::detect(black_box(window), &et),
                    distribution_round(black_box(window), &dt),
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
