//! nginx as a source, against a real nginx on loopback: requests counted per server as the
//! backends count them, through rotation and truncation, retries, `stub_status` and
//! `worker_connections`, "no live upstreams", "upstream timed out", and the distribution
//! detector over two samples.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_core::sample::{LogFile, LoggedErrorKind, Sample, ServerSample};
use ballast_guard::detect::distribution::{Thresholds, Verdict, judge};
use ballast_guard::source::Source;
use ballast_guard::source::nginx::{NginxOptions, NginxSource, log};
use common::{Backend, PeerGroup, free_port, http_get, wait_for_port};

/// A real nginx in a tempdir: one worker, ballast's access log, an error log at `warn`, a
/// `stub_status` page.
struct Nginx {
    master: PeerGroup,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    /// `http` holds the upstreams; `locations` the `location` blocks of the one server.
    fn start(worker_connections: u32, http: &str, locations: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("a tempdir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections {worker_connections}; }}\n\
             http {{\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               log_format ballast '{format}';\n\
               access_log {d}/access.log ballast;\n\
               {http}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 {locations}\n\
                 location = /nginx_status {{ stub_status; }}\n\
               }}\n\
             }}\n",
            format = log::format_string(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off; master_process on;"]);
        let master = PeerGroup::spawn(command);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            wait_for_port(addr, Duration::from_secs(5)),
            "nginx did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        Nginx { master, dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn get(&self, path: &str) -> u16 {
        http_get(self.addr(), path).0
    }

    fn options(&self) -> NginxOptions {
        let mut o = NginxOptions::new(self.path("nginx.conf"), self.path("access.log"));
        o.error_log = Some(self.path("error.log"));
        o.stub_status = Some(format!("http://127.0.0.1:{}/nginx_status", self.port));
        o
    }

    fn source(&self) -> NginxSource {
        NginxSource::new(self.options()).unwrap_or_else(|e| panic!("{e}: {:?}", e.fix))
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.master.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} the nginx master");
    }
}

fn upstream(name: &str, servers: &[(&Backend, &str)]) -> String {
    let mut s = format!("upstream {name} {{\n");
    for (b, params) in servers {
        s.push_str(&format!("  server {} {params};\n", b.addr));
    }
    s.push_str("}\n");
    s
}

fn server<'a>(sample: &'a Sample, pool: &str, backend: &Backend) -> &'a ServerSample {
    let name = backend.addr.to_string();
    sample
        .pools
        .iter()
        .find(|p| p.name == pool)
        .and_then(|p| p.servers.iter().find(|s| s.name == name))
        .unwrap_or_else(|| panic!("{pool}/{name} in {:?}", sample.pools))
}

fn total_requests(sample: &Sample, pool: &str) -> u64 {
    sample
        .pools
        .iter()
        .filter(|p| p.name == pool)
        .flat_map(|p| &p.servers)
        .map(|s| s.requests)
        .sum()
}

fn logged(
    sample: &Sample,
    log: LogFile,
    kind: LoggedErrorKind,
) -> Vec<(Option<&str>, Option<&str>, u64)> {
    sample
        .log_errors
        .iter()
        .filter(|e| e.log == log && e.kind == kind)
        .map(|e| (e.pool.as_deref(), e.server.as_deref(), e.count))
        .collect()
}

/// Samples until `done` holds (lines land in the log just after the response), up to 5 s.
fn sample_until(
    source: &mut NginxSource,
    clock: &mut u64,
    done: impl Fn(&Sample) -> bool,
) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        *clock += 1000;
        let s = source.sample(*clock).expect("a sample");
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn served(b: &Backend) -> u64 {
    b.served.load(Ordering::Relaxed)
}

#[test]
fn per_server_requests_equal_what_each_backend_counted() {
    if !common::peer_available("nginx") {
        return;
    }
    let backends: Vec<Backend> = (1..=3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let http = upstream(
        "app",
        &[
            (&backends[0], "weight=1"),
            (&backends[1], "weight=2"),
            (&backends[2], "weight=3"),
        ],
    );
    let nginx = Nginx::start(64, &http, "location / { proxy_pass http://app; }");
    let mut source = nginx.source();
    let mut clock = 0;
    let first = source.sample(clock).unwrap();
    assert_eq!(total_requests(&first, "app"), 0);
    let s = server(&first, "app", &backends[2]);
    assert_eq!(s.weight, 3);
    assert_eq!(first.process.as_ref().unwrap().max_connections, Some(64));
    const N: u64 = 120;
    for _ in 0..N {
        assert_eq!(nginx.get("/"), 200);
    }
    let last = sample_until(&mut source, &mut clock, |s| total_requests(s, "app") >= N);
    let counted: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| (server(&last, "app", b).requests, served(b)))
        .collect();
    for (sampled, backend) in &counted {
        assert_eq!(
            sampled, backend,
            "per server (sample, backend): {counted:?}"
        );
    }
    assert_eq!(counted.iter().map(|c| c.1).sum::<u64>(), N);
    // Weights 1:2:3 over 120 requests, as nginx's smooth round-robin spreads them.
    assert_eq!(
        counted.iter().map(|c| c.0).collect::<Vec<_>>(),
        [20, 40, 60]
    );
    let b3 = server(&last, "app", &backends[2]);
    assert_eq!(b3.responses.c2xx, 60);
    assert!(b3.latency_ms.is_some());
    // Every line parsed (the source's own stub_status reads are lines too).
    assert_eq!(source.attribution().lines().1, 0);
    assert!(source.attribution().lines().0 > N);
    // The stub_status page was read too (these requests are nginx's own).
    let process = last.process.as_ref().unwrap();
    assert!(process.accepted.unwrap() >= N && process.handled == process.accepted);
    assert_eq!(source.config_files(), vec![nginx.path("nginx.conf")]);
}

#[test]
fn rotation_and_truncation_mid_traffic_lose_no_line() {
    if !common::peer_available("nginx") {
        return;
    }
    let backends: Vec<Backend> = (1..=2).map(|i| Backend::start(&format!("b{i}"))).collect();
    let http = upstream("app", &[(&backends[0], ""), (&backends[1], "")]);
    let nginx = Nginx::start(64, &http, "location / { proxy_pass http://app; }");
    let mut source = nginx.source();
    let mut clock = 0;
    source.sample(clock).unwrap();
    // Traffic from another thread; the lock lets the test hold it between two requests.
    let between_requests = Arc::new(Mutex::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (lock, stop, sent, addr) = (
            between_requests.clone(),
            stop.clone(),
            sent.clone(),
            nginx.addr(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 2000 {
                let _held = lock.lock().unwrap();
                assert_eq!(http_get(addr, "/").0, 200);
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
    let mut tick = |source: &mut NginxSource| {
        clock += 1000;
        source.sample(clock).expect("a sample")
    };
    pause(150);
    tick(&mut source);
    // Rotation as logrotate does it: rename, then USR1 to the master to reopen.
    std::fs::rename(nginx.path("access.log"), nginx.path("access.log.1")).unwrap();
    pause(100);
    tick(&mut source); // the path names nothing now: the old file is read on
    nginx.signal("-USR1");
    for _ in 0..5 {
        pause(60);
        tick(&mut source);
    }
    assert!(nginx.path("access.log").exists(), "nginx reopened its log");
    let rotated = std::fs::read_to_string(nginx.path("access.log.1")).unwrap();
    assert!(rotated.lines().count() > 0);
    // Truncation (copytruncate) right after a read; the file then grows again.
    {
        let _held = between_requests.lock().unwrap();
        tick(&mut source);
        std::fs::OpenOptions::new()
            .write(true)
            .open(nginx.path("access.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    for _ in 0..5 {
        pause(60);
        tick(&mut source);
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let n = sent.load(Ordering::Relaxed);
    assert!(n > 20, "too little traffic: {n}");
    let last = sample_until(&mut source, &mut clock, |s| total_requests(s, "app") >= n);
    for b in &backends {
        assert_eq!(server(&last, "app", b).requests, served(b), "{}", b.name);
    }
    assert_eq!(total_requests(&last, "app"), n);
    assert_eq!(source.attribution().lines().1, 0);
    assert!(source.attribution().lines().0 > n);
}

#[test]
fn a_retry_is_attributed_to_the_server_that_answered() {
    if !common::peer_available("nginx") {
        return;
    }
    let live = Backend::start("live");
    let dead_port = free_port();
    // `max_fails=0`: nginx never takes the dead server out, so it keeps being tried first.
    let http = format!(
        "upstream app {{\n  server 127.0.0.1:{dead_port} max_fails=0;\n  server {} max_fails=0;\n}}\n",
        live.addr
    );
    let nginx = Nginx::start(64, &http, "location / { proxy_pass http://app; }");
    let mut source = nginx.source();
    let mut clock = 0;
    source.sample(clock).unwrap();
    const N: u64 = 10;
    for _ in 0..N {
        assert_eq!(nginx.get("/"), 200);
    }
    let last = sample_until(&mut source, &mut clock, |s| total_requests(s, "app") >= N);
    let dead = format!("127.0.0.1:{dead_port}");
    let retried = std::fs::read_to_string(nginx.path("access.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("\"{dead}, {}\"", live.addr)))
        .count() as u64;
    assert!(retried > 0, "no request tried the dead server first");
    assert_eq!(server(&last, "app", &live).requests, N);
    assert_eq!(served(&live), N);
    let app = last.pools.iter().find(|p| p.name == "app").unwrap();
    let dead_sample = app.servers.iter().find(|s| s.name == dead).unwrap();
    assert_eq!(dead_sample.requests, 0);
    assert_eq!(
        logged(&last, LogFile::Access, LoggedErrorKind::NextUpstream),
        [(Some("app"), Some(dead.as_str()), retried)]
    );
    // The error log says the same, as "connect() failed".
    let last = sample_until(&mut source, &mut clock, |s| {
        !logged(s, LogFile::Error, LoggedErrorKind::ConnectFailed).is_empty()
    });
    assert_eq!(
        logged(&last, LogFile::Error, LoggedErrorKind::ConnectFailed),
        [(Some("app"), Some(dead.as_str()), retried)]
    );
}

#[test]
fn worker_connections_too_few_show_as_handled_below_accepts_and_in_the_error_log() {
    if !common::peer_available("nginx") {
        return;
    }
    let b = Backend::start("b1");
    let http = upstream("app", &[(&b, "")]);
    let nginx = Nginx::start(20, &http, "location / { proxy_pass http://app; }");
    let mut source = nginx.source();
    let mut clock = 0;
    let before = source.sample(clock).unwrap();
    let p = before.process.clone().unwrap();
    assert_eq!(p.max_connections, Some(20));
    assert_eq!(p.accepted, p.handled);
    // Clients that sent half a request hold their slot, and nginx cannot reuse it (an idle
    // connection it would close to make room): 30 of them against 20 slots.
    let mut held = Vec::new();
    for _ in 0..30 {
        if let Ok(mut c) = std::net::TcpStream::connect(nginx.addr()) {
            let _ = std::io::Write::write_all(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n");
            held.push(c);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let after = sample_until(&mut source, &mut clock, |s| {
        !logged(
            s,
            LogFile::Error,
            LoggedErrorKind::WorkerConnectionsNotEnough,
        )
        .is_empty()
    });
    let p = after.process.clone().unwrap();
    let (accepted, handled) = (p.accepted.unwrap(), p.handled.unwrap());
    let not_enough = logged(
        &after,
        LogFile::Error,
        LoggedErrorKind::WorkerConnectionsNotEnough,
    );
    assert!(
        handled < accepted,
        "accepted {accepted}, handled {handled}\n{}",
        std::fs::read_to_string(nginx.path("error.log")).unwrap_or_default()
    );
    assert_eq!(not_enough.len(), 1, "{not_enough:?}");
    assert!(not_enough[0].2 >= accepted - handled, "{not_enough:?}");
}

#[test]
fn no_live_upstreams_and_upstream_timed_out_are_counted_where_they_happened() {
    if !common::peer_available("nginx") {
        return;
    }
    let (d1, d2) = (free_port(), free_port());
    let slow = Backend::start_with_delay("slow", Duration::from_secs(3));
    let http = format!(
        "upstream dead {{\n  server 127.0.0.1:{d1} max_fails=1 fail_timeout=30s;\n  server 127.0.0.1:{d2} max_fails=1 fail_timeout=30s;\n}}\n{}",
        upstream("slow", &[(&slow, "")])
    );
    let nginx = Nginx::start(
        64,
        &http,
        "location /dead { proxy_pass http://dead; }\n location /slow { proxy_pass http://slow; proxy_read_timeout 1s; }",
    );
    let mut source = nginx.source();
    let mut clock = 0;
    source.sample(clock).unwrap();
    // The first request fails on both servers and takes them out; the next find none.
    for _ in 0..3 {
        assert_eq!(nginx.get("/dead"), 502);
    }
    let timed_out: Vec<_> = (0..2)
        .map(|_| {
            let addr = nginx.addr();
            std::thread::spawn(move || http_get(addr, "/slow").0)
        })
        .collect();
    for t in timed_out {
        assert_eq!(t.join().unwrap(), 504);
    }
    let last = sample_until(&mut source, &mut clock, |s| {
        logged(s, LogFile::Error, LoggedErrorKind::UpstreamTimedOut)
            .iter()
            .map(|e| e.2)
            .sum::<u64>()
            >= 2
    });
    assert_eq!(
        logged(&last, LogFile::Error, LoggedErrorKind::NoLiveUpstreams),
        [(Some("dead"), None, 2)]
    );
    assert_eq!(
        logged(&last, LogFile::Access, LoggedErrorKind::NoLiveUpstreams),
        [(Some("dead"), None, 2)]
    );
    let slow_name = slow.addr.to_string();
    assert_eq!(
        logged(&last, LogFile::Error, LoggedErrorKind::UpstreamTimedOut),
        [(Some("slow"), Some(slow_name.as_str()), 2)]
    );
    let s = server(&last, "slow", &slow);
    assert_eq!((s.requests, s.responses.c5xx), (2, 2));
    assert!(s.latency_ms.is_some_and(|ms| ms >= 1000.0), "{s:?}");
}

/// Two samples of one pool, judged by the distribution detector.
fn judged(a: &Sample, b: &Sample, pool: &str) -> Verdict {
    let pick = |s: &Sample| s.pools.iter().find(|p| p.name == pool).unwrap().clone();
    let window = [pick(a), pick(b)];
    let refs: Vec<_> = window.iter().collect();
    judge(&refs, &Thresholds::default()).unwrap().verdict
}

#[test]
fn weights_1_1_8_through_the_distribution_detector() {
    if !common::peer_available("nginx") {
        return;
    }
    let backends: Vec<Backend> = (1..=3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let weights = |w: [u32; 3]| {
        upstream(
            "app",
            &[
                (&backends[0], &format!("weight={}", w[0])),
                (&backends[1], &format!("weight={}", w[1])),
                (&backends[2], &format!("weight={}", w[2])),
            ],
        )
    };
    let nginx = Nginx::start(
        64,
        &weights([1, 1, 8]),
        "location / { proxy_pass http://app; }",
    );
    // The same log read against the file nginx runs, and against a file that says 1,1,1 (as
    // when the file was edited back but the reload failed or never happened).
    let mut running = nginx.source();
    let equal_conf = nginx.path("equal.conf");
    let text = std::fs::read_to_string(nginx.path("nginx.conf")).unwrap();
    let equal_text = text.replace("weight=8", "weight=1");
    assert_ne!(text, equal_text);
    std::fs::write(&equal_conf, equal_text).unwrap();
    let mut options = nginx.options();
    options.config = equal_conf;
    let mut intended = NginxSource::new(options).unwrap();
    let mut clock = 0;
    let (r0, i0) = (
        running.sample(clock).unwrap(),
        intended.sample(clock).unwrap(),
    );
    const N: u64 = 300;
    for _ in 0..N {
        assert_eq!(nginx.get("/"), 200);
    }
    let r1 = sample_until(&mut running, &mut clock, |s| total_requests(s, "app") >= N);
    let i1 = sample_until(&mut intended, &mut 0, |s| total_requests(s, "app") >= N);
    assert_eq!(served(&backends[2]), 240);
    // Against the weights nginx runs, 80% on b3 is what they promise.
    let v = judged(&r0, &r1, "app");
    assert!(matches!(v, Verdict::AsPromised { .. }), "{v:?}");
    // Against 1,1,1, b3 takes 2.4 times its share.
    match judged(&i0, &i1, "app") {
        Verdict::Skewed { server, share, .. } => {
            assert_eq!(server, backends[2].addr.to_string());
            assert!((share - 0.8).abs() < 0.01, "{share}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_log_or_page_is_an_error_with_a_fix() {
    if !common::peer_available("nginx") {
        return;
    }
    let b = Backend::start("b1");
    let nginx = Nginx::start(
        64,
        &upstream("app", &[(&b, "")]),
        "location / { proxy_pass http://app; }",
    );
    let mut options = nginx.options();
    options.access_log = nginx.path("no-such.log");
    let e = NginxSource::new(options).unwrap_err();
    assert!(e.what.contains("no-such.log"), "{e}");
    assert!(e.fix.unwrap().contains("log_format ballast"));
    let mut options = nginx.options();
    options.stub_status = Some(format!("http://127.0.0.1:{}/no-status", nginx.port));
    let mut source = NginxSource::new(options).unwrap();
    let e = source.sample(0).unwrap_err();
    assert!(e.what.contains("stub_status"), "{e}");
    assert!(e.fix.unwrap().contains("stub_status;"));
    let mut options = nginx.options();
    options.config = nginx.path("none.conf");
    assert!(NginxSource::new(options).is_err());
}
