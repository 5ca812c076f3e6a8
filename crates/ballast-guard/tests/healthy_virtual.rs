//! Healthy runs on a virtual clock: ten minutes of Poisson traffic over pools of every
//! algorithm that promises an even spread (round-robin, weighted round-robin, random,
//! power-of-two, least-connections), at a low (≈20 req/s) and a high (≈5,000 req/s) rate per
//! pool, judged every second by the real watcher, must never fire an alert.
//!
//! Servers are picked by `ballast-core`'s own `Balancer` (the code `serve` and `simulate`
//! run), with a seeded RNG as the simulator injects it; service times are exponential, and
//! a request is in flight from its pick to its completion, so the samples carry what a live
//! load balancer would report. A small background of 5xx (0.1%) keeps the error detectors
//! judging real ratios rather than zeros.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ballast_core::balance::{Balancer, PoolState};
use ballast_core::config::Pool;
use ballast_core::load::parse_with_spans;
use ballast_core::sample::{
    FrontendSample, PoolSample, ProcessSample, Promise, ResponseClasses, Sample, ServerSample,
    ServerState,
};
use ballast_core::source::SourceFile;
use ballast_guard::alert::AlertState;
use ballast_guard::watch::{WatchOptions, Watcher};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const NS_PER_S: u64 = 1_000_000_000;

/// A uniform draw in (0, 1).
fn uniform(rng: &mut SmallRng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// An exponential draw with this mean, in nanoseconds.
fn exponential(rng: &mut SmallRng, mean_ns: f64) -> u64 {
    (-uniform(rng).ln() * mean_ns) as u64
}

/// One pool under traffic: the configuration, the real balancer, and each server's counters.
struct PoolRun {
    name: String,
    promise: Promise,
    pool: Pool,
    balancer: Balancer,
    state: PoolState,
    rate: f64,
    service_mean_ns: f64,
    next_arrival_ns: u64,
    /// (completion time, server, failed).
    completions: BinaryHeap<Reverse<(u64, usize, bool)>>,
    requests: Vec<u64>,
    ok: Vec<u64>,
    failed: Vec<u64>,
    /// Service times completed since the last sample, summed, and their count.
    latency_sum_ns: Vec<u64>,
    latency_count: Vec<u64>,
    balancer_rng: SmallRng,
    traffic_rng: SmallRng,
}

impl PoolRun {
    fn new(name: &str, algorithm: &str, weights: &[u32], rate: f64, seed: u64) -> PoolRun {
        let servers: String = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!(
                    "[[servers]]\nname = \"{name}-{}\"\naddress = \"127.0.0.1:{}\"\nweight = {w}\n",
                    i + 1,
                    9000 + i
                )
            })
            .collect();
        let text = format!("algorithm = \"{algorithm}\"\n{servers}");
        let (pool, _) = parse_with_spans::<Pool>(&SourceFile::new("pool.toml", text))
            .unwrap_or_else(|e| panic!("pool {name}: {e:?}"));
        let n = pool.servers.len();
        let mut traffic_rng = SmallRng::seed_from_u64(seed ^ 0x5eed_7a7f_f1c0_0001);
        let next_arrival_ns = exponential(&mut traffic_rng, NS_PER_S as f64 / rate);
        PoolRun {
            name: name.to_string(),
            promise: Promise::of(&pool),
            balancer: Balancer::new(&pool),
            state: PoolState::from_pool(&pool),
            pool,
            rate,
            service_mean_ns: 20e6,
            next_arrival_ns,
            completions: BinaryHeap::new(),
            requests: vec![0; n],
            ok: vec![0; n],
            failed: vec![0; n],
            latency_sum_ns: vec![0; n],
            latency_count: vec![0; n],
            balancer_rng: SmallRng::seed_from_u64(seed),
            traffic_rng,
        }
    }

    fn complete_until(&mut self, t_ns: u64) {
        while let Some(&Reverse((at, server, failed))) = self.completions.peek() {
            if at > t_ns {
                break;
            }
            self.completions.pop();
            let s = &mut self.state.servers[server];
            s.in_flight = s.in_flight.saturating_sub(1);
            if failed {
                self.failed[server] += 1;
            } else {
                self.ok[server] += 1;
            }
        }
    }

    /// Runs arrivals and completions up to `t_ns`.
    fn run_until(&mut self, t_ns: u64) {
        while self.next_arrival_ns <= t_ns {
            let now = self.next_arrival_ns;
            self.complete_until(now);
            let picked = self
                .balancer
                .pick(&self.state, None, &mut self.balancer_rng);
            let server = picked.unwrap_or_else(|| panic!("pool {} picked no server", self.name));
            self.state.servers[server].in_flight += 1;
            self.requests[server] += 1;
            let service = exponential(&mut self.traffic_rng, self.service_mean_ns);
            let failed = uniform(&mut self.traffic_rng) < 0.001;
            self.latency_sum_ns[server] += service;
            self.latency_count[server] += 1;
            self.completions
                .push(Reverse((now + service, server, failed)));
            self.next_arrival_ns =
                now + exponential(&mut self.traffic_rng, NS_PER_S as f64 / self.rate).max(1);
        }
        self.complete_until(t_ns);
    }

    /// The pool as a source reports it now; the latency is the mean of the service times of
    /// the requests sent since the last sample.
    fn sample(&mut self) -> PoolSample {
        let servers = self
            .pool
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let latency_ms = (self.latency_count[i] > 0)
                    .then(|| self.latency_sum_ns[i] as f64 / self.latency_count[i] as f64 / 1e6);
                self.latency_sum_ns[i] = 0;
                self.latency_count[i] = 0;
                ServerSample {
                    state_for_s: None,
                    name: s.name.clone(),
                    requests: self.requests[i],
                    active: u64::from(self.state.servers[i].in_flight),
                    queued: 0,
                    max_connections: None,
                    max_queue: None,
                    weight: s.weight,
                    state: ServerState::Up,
                    backup: false,
                    responses: ResponseClasses {
                        c2xx: self.ok[i],
                        c5xx: self.failed[i],
                        ..ResponseClasses::default()
                    },
                    latency_ms,
                }
            })
            .collect();
        PoolSample {
            noted: Default::default(),
            name: self.name.clone(),
            promise: self.promise,
            servers,
            queued: 0,
            predicted: None,
        }
    }

    fn in_flight(&self) -> u64 {
        self.state
            .servers
            .iter()
            .map(|s| u64::from(s.in_flight))
            .sum()
    }
}

/// What a healthy run showed.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    /// Pending alerts by rule and pool, counted once each time one appears.
    pending: std::collections::BTreeMap<String, u64>,
    /// Alerts that fired: (second, alertname, pool, server, summary).
    fired: Vec<(u64, String, String, String, String)>,
    requests: u64,
}

/// The algorithms that promise an even spread, with their weights.
const POOLS: &[(&str, &str, &[u32])] = &[
    ("rr", "round-robin", &[1, 1, 1, 1, 1]),
    ("wrr", "round-robin", &[1, 2, 3, 1, 3]),
    ("random", "random", &[1, 1, 2, 2]),
    ("p2c", "power-of-two", &[1, 1, 1, 1, 1]),
    ("least", "least-connections", &[1, 1, 2, 1]),
];

/// `minutes` of traffic over every pool of [`POOLS`] at the low and the high rate, one
/// load balancer sampled every second.
fn healthy_run(seed: u64, minutes: u64) -> Tally {
    let mut pools: Vec<PoolRun> = Vec::new();
    for (i, &(name, algorithm, weights)) in POOLS.iter().enumerate() {
        for (rate_name, rate) in [("low", 20.0), ("high", 5_000.0)] {
            let pool_seed = seed.wrapping_mul(1000).wrapping_add(i as u64 * 2 + 1);
            pools.push(PoolRun::new(
                &format!("{name}-{rate_name}"),
                algorithm,
                weights,
                rate,
                pool_seed + u64::from(rate_name == "high"),
            ));
        }
    }
    let mut watcher = Watcher::new("ballast", "virtual", WatchOptions::default());
    let mut tally = Tally::default();
    let mut pending_before = std::collections::BTreeSet::new();
    for second in 0..=minutes * 60 {
        let t_ns = second * NS_PER_S;
        for p in &mut pools {
            p.run_until(t_ns);
        }
        let in_flight: u64 = pools.iter().map(PoolRun::in_flight).sum();
        let sample = Sample {
            at_ms: second * 1000,
            source: "ballast".into(),
            instance: "virtual".into(),
            pools: pools.iter_mut().map(PoolRun::sample).collect(),
            frontends: vec![FrontendSample {
                name: "web".into(),
                active: in_flight,
                max_connections: Some(10_000),
                refused: 0,
            }],
            process: Some(ProcessSample {
                started_unix_s: None,
                active: in_flight,
                max_connections: Some(100_000),
                generation: Some("1".into()),
                ..ProcessSample::default()
            }),
            ..Sample::default()
        };
        let outcome = watcher.observe(sample);
        tally.rounds += 1;
        let mut pending_now = std::collections::BTreeSet::new();
        for alert in &outcome.round.active {
            if alert.state != AlertState::Pending {
                continue;
            }
            let key = alert.fingerprint();
            if !pending_before.contains(&key) {
                let what = format!(
                    "{} {}",
                    alert.label("alertname").unwrap_or(""),
                    alert.label("pool").unwrap_or("")
                );
                *tally.pending.entry(what).or_default() += 1;
            }
            pending_now.insert(key);
        }
        pending_before = pending_now;
        for alert in &outcome.round.fired {
            tally.fired.push((
                second,
                alert.label("alertname").unwrap_or("").to_string(),
                alert.label("pool").unwrap_or("").to_string(),
                alert.label("server").unwrap_or("").to_string(),
                alert.annotation("summary").unwrap_or("").to_string(),
            ));
        }
    }
    tally.requests = pools.iter().map(|p| p.requests.iter().sum::<u64>()).sum();
    tally
}

#[test]
fn ten_minutes_of_healthy_poisson_traffic_fire_nothing_across_seeds() {
    // One thread per seed: each run is a few seconds of picks on its own.
    let runs: Vec<(u64, Tally)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [1, 2, 3]
            .map(|seed| scope.spawn(move || (seed, healthy_run(seed, 10))))
            .into_iter()
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a healthy run"))
            .collect()
    });
    let mut report = Vec::new();
    for (seed, tally) in runs {
        // The traffic was real: ≈ 5,020 req/s per pair of pools for ten minutes.
        let expected = POOLS.len() as f64 * 5_020.0 * 600.0;
        assert!(
            (tally.requests as f64 - expected).abs() < expected * 0.02,
            "seed {seed}: {} requests, expected about {expected}",
            tally.requests
        );
        assert_eq!(tally.rounds, 601);
        println!(
            "HEALTHY-VIRTUAL seed={seed} rounds={} requests={} fired={} pending={:?}",
            tally.rounds,
            tally.requests,
            tally.fired.len(),
            tally.pending
        );
        report.push((seed, tally));
    }
    let fired: Vec<_> = report
        .iter()
        .flat_map(|(seed, t)| t.fired.iter().map(move |f| (seed, f)))
        .collect();
    assert!(
        fired.is_empty(),
        "healthy runs fired alerts (seed, (second, alertname, pool, server, summary)): {fired:#?}"
    );
}

/// The harness can tell a fault from health: the same traffic with one server of the
/// round-robin pool weighted 6 against 1s while the samples still report weight 1 (a
/// runtime change the sample missed is the same as traffic the weights do not explain)
/// fires a distribution alert. Without this, "nothing fired" could mean nothing was judged.
#[test]
fn the_same_harness_fires_on_a_skew() {
    let mut skewed = PoolRun::new("rr-high", "round-robin", &[1, 1, 1, 1, 1], 5_000.0, 7);
    skewed.state.servers[0].weight = 6;
    let mut watcher = Watcher::new("ballast", "virtual", WatchOptions::default());
    let mut fired = Vec::new();
    for second in 0..=30 {
        skewed.run_until(second * NS_PER_S);
        let sample = Sample {
            at_ms: second * 1000,
            source: "ballast".into(),
            instance: "virtual".into(),
            pools: vec![skewed.sample()],
            ..Sample::default()
        };
        let outcome = watcher.observe(sample);
        fired.extend(
            outcome
                .round
                .fired
                .iter()
                .filter_map(|a| a.label("alertname").map(str::to_string)),
        );
    }
    assert!(
        fired.iter().any(|a| a == "PoolSkewed"),
        "a 6:1:1:1:1 spread reported as 1:1:1:1:1 fired only {fired:?}"
    );
}
