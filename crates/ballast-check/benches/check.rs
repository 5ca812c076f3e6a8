//! `check` of a 10,000-line configuration: load (parse, spans, validation) plus every rule.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use ballast_core::{SourceFile, load_source};

/// A realistic large file: 40 listeners and pools of 30 servers each, about 10,000 lines.
pub fn large_config() -> String {
    let mut s =
        String::from("[global]\nmax_connections = 100000\nmax_connections_per_ip = 500\n\n");
    for p in 0..40 {
        s += &format!(
            "[listeners.l{p}]\naddress = \"0.0.0.0:{}\"\nmax_connections = 2000\npool = \"p{p}\"\ntimeouts = {{ header_read = \"5s\", idle = \"60s\", request = \"30s\" }}\n\n",
            8000 + p
        );
        s += &format!(
            "[pools.p{p}]\nalgorithm = \"least-connections\"\nconnect_timeout = \"1s\"\n\n[pools.p{p}.health]\npath = \"/healthz\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\n"
        );
        for i in 0..30 {
            s += &format!(
                "# server {i} of pool {p}\n[[pools.p{p}.servers]]\nname = \"p{p}-s{i}\"\naddress = \"10.{p}.0.{i}:8080\"\nweight = {}\nmax_connections = 200\nmax_queue = 50\n\n",
                1 + i % 4
            );
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = large_config();
    let lines = text.lines().count();
    assert!(lines >= 10_000, "{lines} lines");
    c.bench_function(&format!("check_{lines}_lines"), |b| {
        b.iter(|| {
            let loaded = load_source(SourceFile::new("big.toml", text.clone())).expect("valid");
            black_box(ballast_check::check(&loaded))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
