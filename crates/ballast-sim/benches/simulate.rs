//! Whole-simulation throughput: simulated requests per second of wall time, for one pool of
//! 16 servers, through arrivals, balancing, queues and completions.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ballast_core::config::{Algorithm, Pool};
use ballast_core::traffic::Traffic;
use ballast_sim::Simulation;

fn pool(algorithm: Algorithm) -> Pool {
    let mut text = format!("algorithm = \"{}\"\n", algorithm.as_str());
    for i in 0..16 {
        text += &format!(
            "[[servers]]\nname = \"app-{i}\"\naddress = \"10.0.0.{i}:80\"\nmax_connections = 64\nmax_queue = 32\n"
        );
    }
    toml::from_str(&text).expect("bench pool")
}

fn bench(c: &mut Criterion) {
    // 200,000 requests: 20,000/s for 10s, 5ms mean service (about 100 in flight).
    let traffic: Traffic = toml::from_str(
        "duration = \"10s\"\narrival = { rate = 20000 }\nclients = { count = 100000, zipf = 0.9 }\nservice = { mean = \"5ms\", concurrency = 16 }\n",
    )
    .expect("bench traffic");
    let mut group = c.benchmark_group("simulate_200k_requests");
    group.sample_size(20);
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::ConsistentHash,
    ] {
        let p = pool(algorithm);
        let requests = Simulation::new("p", &p, &traffic).run(None, None).requests;
        group.throughput(Throughput::Elements(requests));
        group.bench_function(algorithm.as_str(), |b| {
            b.iter(|| Simulation::new("p", &p, &traffic).run(None, None))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
