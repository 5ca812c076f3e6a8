//! What reading an nginx access log costs: parse and attribute lines (in memory), and the
//! same through the tailer from a file on disk. The target is tailing 10,000 lines/s
//! for at most 5% of a core, i.e. at least 200,000 lines/s on one core.

use std::hint::black_box;
use std::io::Write;

use ballast_guard::source::nginx::tail::{Start, Tailer};
use ballast_guard::source::nginx::{Attribution, log};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SERVERS: usize = 10;

fn attribution() -> Attribution {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.conf");
    let mut conf = String::from("events {}\nhttp {\n  upstream app {\n");
    for i in 0..SERVERS {
        conf.push_str(&format!(
            "    server 10.0.0.{}:8080 weight={};\n",
            i + 1,
            i % 3 + 1
        ));
    }
    conf.push_str("  }\n  server { listen 80; location / { proxy_pass http://app; } }\n}\n");
    std::fs::write(&path, conf).unwrap();
    let options = ballast_import::Options {
        format: Some(ballast_import::Format::Nginx),
        ..Default::default()
    };
    let imported = ballast_import::import_file(&path, &options).unwrap();
    Attribution::from_config(&imported.loaded.config)
}

/// A realistic mix: most requests answered by one server, some retried, a few without an
/// upstream, URIs with query strings and an escaped quote now and then.
fn lines(n: usize) -> Vec<String> {
    assert!(log::format_string().starts_with(log::MARKER));
    (0..n)
        .map(|i| {
            let s = i % SERVERS + 1;
            let (addr, status, time) = match i % 50 {
                0 => (
                    format!("10.0.0.{}:8080, 10.0.0.{s}:8080", (s % SERVERS) + 1),
                    "502, 200".to_string(),
                    "0.001, 0.012".to_string(),
                ),
                1 => ("-".to_string(), "-".to_string(), "-".to_string()),
                _ => (format!("10.0.0.{s}:8080"), "200".into(), "0.012".into()),
            };
            format!(
                "ballast1 \"1796128323.{:03}\" \"200\" \"0.013\" \"{addr}\" \"{status}\" \"{time}\" \"app\" \"192.168.{}.{}\" \"shop.example.org\" \"/product/{i}?ref=home&q=a\\x22b\"",
                i % 1000,
                i % 250,
                i % 200
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    const N: usize = 10_000;
    let lines = lines(N);
    let mut group = c.benchmark_group("nginx_access_log");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(log::parse_line(black_box(l)).ok());
            }
        })
    });
    let mut a = attribution();
    group.bench_function("parse_and_attribute", |b| {
        b.iter(|| {
            for l in &lines {
                a.access_line(black_box(l.as_bytes()));
            }
        })
    });
    assert_eq!(a.lines().1, 0, "{:?}", a.first_error());
    // Through the tailer: each iteration appends the 10,000 lines to a file and polls them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "").unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    let mut tailer = Tailer::open(&path, Start::End).unwrap();
    let mut a = attribution();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    group.bench_function("append_tail_parse_and_attribute", |b| {
        b.iter(|| {
            file.write_all(text.as_bytes()).unwrap();
            tailer.poll(|l| a.access_line(l)).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
