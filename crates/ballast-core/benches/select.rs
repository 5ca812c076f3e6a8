//! Balancing decisions per second over 16 servers, per algorithm. Each iteration is one pick
//! plus the in-flight bookkeeping a caller does (one increment, one decrement elsewhere), so
//! least-connections and bounded-load hashing see changing loads, as they would live.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use ballast_core::balance::{Balancer, PoolState, hash_key};
use ballast_core::config::{Algorithm, Pool};

const SERVERS: usize = 16;

fn pool(algorithm: Algorithm) -> Pool {
    let mut text = format!(
        "algorithm = \"{}\"\nbalance_factor = 1.25\n",
        algorithm.as_str()
    );
    for i in 0..SERVERS {
        text += &format!(
            "[[servers]]\nname = \"app-{i}\"\naddress = \"10.0.0.{i}:80\"\nweight = {}\n",
            1 + i % 3
        );
    }
    toml::from_str(&text).expect("bench pool")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("select_16_servers");
    group.throughput(Throughput::Elements(1));
    let keys: Vec<u64> = (0..4096u64).map(|k| hash_key(&k.to_le_bytes())).collect();
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::PowerOfTwo,
        Algorithm::Random,
        Algorithm::ConsistentHash,
    ] {
        let p = pool(algorithm);
        let mut balancer = Balancer::new(&p);
        let mut state = PoolState::from_pool(&p);
        // A steady state with some load, so least-loaded and bounded-load logic does work.
        for (i, s) in state.servers.iter_mut().enumerate() {
            s.in_flight = 8 + (i as u32 % 5);
        }
        let mut rng = SmallRng::seed_from_u64(1);
        let mut n = 0usize;
        group.bench_function(algorithm.as_str(), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let key = (algorithm == Algorithm::ConsistentHash).then(|| keys[n & 4095]);
                let i = balancer
                    .pick(black_box(&state), key, &mut rng)
                    .expect("a server");
                state.servers[i].in_flight += 1;
                let j = (i + 7) % SERVERS;
                state.servers[j].in_flight = state.servers[j].in_flight.saturating_sub(1);
                black_box(i)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
