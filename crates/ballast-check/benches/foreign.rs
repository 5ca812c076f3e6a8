//! `check` of 10,000-line HAProxy and nginx configurations: read (parse with spans, defaults
//! and inheritance, model, validation) plus every catalogue rule, as `ballast check` does.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use ballast_core::SourceFile;
use ballast_import::{Options, import_source};

/// 240 frontends routing to 240 backends of 30 servers each (with a default-server line,
/// checks, limits and options): about 10,000 lines.
fn large_haproxy() -> String {
    let mut s = String::from(
        "global\n    maxconn 200000\n    zero-warning\n    server-state-file /var/lib/haproxy/state\n    hard-stop-after 30m\n\n\
         defaults\n    mode http\n    timeout connect 3s\n    timeout client 30s\n    timeout server 30s\n    timeout http-request 10s\n    timeout queue 10s\n    retries 2\n    option redispatch\n    load-server-state-from-file global\n\n",
    );
    for p in 0..240 {
        s += &format!(
            "frontend f{p}\n    bind 10.1.{}.{}:8080\n    maxconn 1000\n    default_backend b{p}\n    use_backend b{} if {{ path_beg /other }}\n\n",
            p / 200,
            p % 200 + 1,
            (p + 1) % 240
        );
        s += &format!(
            "backend b{p}\n    balance {}\n    option httpchk GET /health\n    http-check expect status 200\n    default-server check inter 2s fall 3 rise 2 maxconn 100 maxqueue 100\n",
            ["roundrobin", "leastconn", "uri", "source"][p % 4]
        );
        for i in 0..30 {
            s += &format!("    server s{i} 10.{p}.0.{i}:8080 weight {}\n", 1 + i % 4);
        }
        s += "\n";
    }
    s
}

/// 250 upstreams of 30 servers and the server blocks that proxy to them: about 10,000 lines.
fn large_nginx() -> String {
    let mut s = String::from(
        "worker_processes auto;\nworker_rlimit_nofile 65535;\n\nevents {\n    worker_connections 8192;\n}\n\nhttp {\n    proxy_connect_timeout 3s;\n    proxy_read_timeout 30s;\n\n",
    );
    for p in 0..250 {
        s += &format!(
            "    upstream u{p} {{\n        zone u{p} 64k;\n        {}\n",
            [
                "least_conn;",
                "hash $request_uri consistent;",
                "ip_hash;",
                "random two;"
            ][p % 4]
        );
        for i in 0..30 {
            s += &format!(
                "        server 10.{}.{}.{i}:8080 weight={} max_fails=3 fail_timeout=10s;\n",
                p / 200,
                p % 200,
                1 + i % 4
            );
        }
        s += "        keepalive 32;\n    }\n\n";
        s += &format!(
            "    server {{\n        listen 10.2.{}.{}:80;\n        location / {{\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_pass http://u{p};\n        }}\n    }}\n\n",
            p / 200,
            p % 200 + 1
        );
    }
    s += "}\n";
    s
}

fn bench(c: &mut Criterion) {
    for (name, path, text) in [
        ("haproxy", "/nonexistent/big.cfg", large_haproxy()),
        ("nginx", "/nonexistent/big.conf", large_nginx()),
    ] {
        let lines = text.lines().count();
        assert!(lines >= 10_000, "{name}: {lines} lines");
        // The file must import cleanly, or the figure would be that of an early error.
        let imported = import_source(SourceFile::new(path, text.clone()), &Options::default())
            .unwrap_or_else(|e| panic!("{name}: {}", e.render()));
        assert!(imported.loaded.config.pools.len() >= 120);
        c.bench_function(&format!("check_{name}_{lines}_lines"), |b| {
            b.iter(|| {
                let imported =
                    import_source(SourceFile::new(path, text.clone()), &Options::default())
                        .expect("valid");
                black_box(ballast_check::check_imported(&imported))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
