//! Runs N picks of one algorithm over 16 servers, with the same bookkeeping as the criterion
//! bench, for instruction counting: `valgrind --tool=callgrind target/release/examples/pick_loop
//! round-robin 1000000` gives a figure that does not depend on the machine's noise. The
//! algorithm `floor` is smooth weighted round-robin hand-specialised to a slice: the yardstick
//! for what the generic `Balancer::pick` costs on top.

use std::hint::black_box;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use ballast_core::balance::{Balancer, PoolState, hash_key};
use ballast_core::config::{Algorithm, Pool};

fn main() {
    let mut args = std::env::args().skip(1);
    let algorithm = args.next().unwrap_or_else(|| "round-robin".into());
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let name = if algorithm == "floor" {
        "round-robin"
    } else {
        algorithm.as_str()
    };
    let mut text = format!("algorithm = \"{name}\"\n");
    for i in 0..16 {
        text += &format!(
            "[[servers]]\nname = \"app-{i}\"\naddress = \"10.0.0.{i}:80\"\nweight = {}\n",
            1 + i % 3
        );
    }
    let pool: Pool = toml::from_str(&text).expect(
        "algorithm name: round-robin, least-connections, power-of-two, random, consistent-hash",
    );
    let hashing = pool.algorithm == Algorithm::ConsistentHash;
    let mut balancer = Balancer::new(&pool);
    let mut state = PoolState::from_pool(&pool);
    for (i, s) in state.servers.iter_mut().enumerate() {
        s.in_flight = 8 + (i as u32 % 5);
    }
    let keys: Vec<u64> = (0..4096u64).map(|k| hash_key(&k.to_le_bytes())).collect();
    let mut rng = SmallRng::seed_from_u64(1);
    let started = std::time::Instant::now();
    if algorithm == "floor" {
        let mut current = vec![0i64; 16];
        for _ in 0..n {
            let i = floor_swrr(&mut current, black_box(&state.servers));
            state.servers[i].in_flight += 1;
            let j = (i + 7) % 16;
            state.servers[j].in_flight = state.servers[j].in_flight.saturating_sub(1);
        }
        eprintln!(
            "floor: {:.1} M/s",
            n as f64 / started.elapsed().as_secs_f64() / 1e6
        );
        return;
    }
    for k in 0..n {
        let key = hashing.then(|| keys[k & 4095]);
        let i = balancer
            .pick(black_box(&state), key, &mut rng)
            .expect("a server");
        state.servers[i].in_flight += 1;
        let j = (i + 7) % 16;
        state.servers[j].in_flight = state.servers[j].in_flight.saturating_sub(1);
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{algorithm}: {n} picks in {secs:.3}s = {:.1} M/s",
        n as f64 / secs / 1e6
    );
}

/// The floor: smooth weighted round-robin specialised to a plain slice, no view, no tiers.
fn floor_swrr(current: &mut [i64], servers: &[ballast_core::balance::ServerLoad]) -> usize {
    let mut total = 0i64;
    let mut best = usize::MAX;
    let mut best_score = i64::MIN;
    for (i, (c, s)) in current.iter_mut().zip(servers).enumerate() {
        let w = if s.available & !s.full() {
            i64::from(s.weight)
        } else {
            0
        };
        *c += w;
        total += w;
        if w > 0 && *c > best_score {
            best_score = *c;
            best = i;
        }
    }
    current[best] -= total;
    best
}
