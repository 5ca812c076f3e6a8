//! The HAProxy source against a real HAProxy on loopback: request counts through the Unix
//! socket, the TCP socket, the stats page's CSV and the exporter equal what each backend
//! counted; runtime-API changes, queues at `maxconn` and reloads show in the next samples;
//! the source and the distribution detector agree end to end; failures carry a fix.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ballast_core::sample::{PoolSample, Promise, Sample, ServerSample, ServerState};
use ballast_guard::detect::distribution::{Thresholds, Verdict, judge};
use ballast_guard::source::Source;
use ballast_guard::source::haproxy::transport::{self, SocketAddress};
use ballast_guard::source::haproxy::{Endpoint, HaproxySource};
use common::{Backend, PeerGroup};

/// A real HAProxy with a frontend `web` → backend `app`, a stats frontend serving the page and
/// the exporter, and both a Unix and a TCP stats socket.
struct Haproxy {
    peer: PeerGroup,
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    tcp: String,
    front: SocketAddr,
    stats: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy with `app`'s body (`balance ...` and `server` lines) and the socket
    /// level given.
    fn start(app: &str, level: &str) -> Haproxy {
        // `noreuseport`: a port another test's HAProxy took between `free_port` and the bind
        // fails this one's start, instead of the two sharing it and answering each other's
        // requests; then it starts again on new ports.
        for _ in 0..3 {
            if let Some(h) = Haproxy::try_start(app, level) {
                return h;
            }
        }
        panic!("HAProxy did not start on free ports in three tries");
    }

    fn try_start(app: &str, level: &str) -> Option<Haproxy> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let socket = dir.path().join("admin.sock");
        let tcp = format!("127.0.0.1:{}", common::free_port());
        let front: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let stats: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let text = format!(
            "global\n    noreuseport\n    stats socket {sock} mode 600 level {level}\n    stats socket ipv4@{tcp} level {level}\n    maxconn 200\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n    timeout queue 10s\n\
             frontend web\n    bind {front}\n    default_backend app\n\
             frontend stats\n    bind {stats}\n    stats enable\n    stats uri /stats\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n\
             backend app\n{app}\n",
            sock = socket.display(),
        );
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, text).unwrap();
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&config)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "the test's configuration is invalid: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let peer = spawn_haproxy(&config, None);
        let mut h = Haproxy {
            peer,
            dir,
            config,
            socket,
            tcp,
            front,
            stats,
        };
        h.wait_ready();
        // A bind that failed ends the process at once; give it the time to.
        std::thread::sleep(Duration::from_millis(100));
        (!h.peer.exited()).then_some(h)
    }

    fn wait_ready(&self) {
        assert!(
            common::wait_for_port(self.front, Duration::from_secs(5))
                && common::wait_for_port(self.stats, Duration::from_secs(5)),
            "HAProxy did not start"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn unix(&self) -> Endpoint {
        Endpoint::Socket(SocketAddress::Unix(self.socket.clone()))
    }

    fn tcp(&self) -> Endpoint {
        Endpoint::Socket(SocketAddress::Tcp(self.tcp.clone()))
    }

    fn page(&self) -> Endpoint {
        Endpoint::StatsPage(format!("http://{}/stats;csv", self.stats))
    }

    fn exporter(&self) -> Endpoint {
        Endpoint::Exporter(format!("http://{}/metrics", self.stats))
    }

    fn endpoints(&self) -> [Endpoint; 4] {
        [self.unix(), self.tcp(), self.page(), self.exporter()]
    }

    fn command(&self, command: &str) -> String {
        transport::command(&SocketAddress::Unix(self.socket.clone()), command)
            .unwrap_or_else(|e| panic!("`{command}`: {e}"))
    }

    /// `n` requests through the frontend, each on its own connection; all must succeed.
    fn send(&self, n: usize) {
        for i in 0..n {
            let (status, _) = common::http_get(self.front, "/");
            assert_eq!(status, 200, "request {i} through HAProxy");
        }
    }
}

fn spawn_haproxy(config: &Path, replacing: Option<u32>) -> PeerGroup {
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(config);
    if let Some(pid) = replacing {
        command.arg("-sf").arg(pid.to_string());
    }
    PeerGroup::spawn(command)
}

fn servers_section(balance: &str, servers: &[(&Backend, &str)]) -> String {
    let mut text = format!("    balance {balance}\n");
    for (b, extra) in servers {
        text.push_str(&format!("    server {} {} {extra}\n", b.name, b.addr));
    }
    text
}

fn sample(endpoint: Endpoint) -> Sample {
    let shown = endpoint.to_string();
    HaproxySource::new(endpoint, None)
        .sample(0)
        .unwrap_or_else(|e| panic!("a sample from {shown}: {e} (fix: {:?})", e.fix))
}

fn pool<'a>(s: &'a Sample, name: &str) -> &'a PoolSample {
    s.pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("pool {name} in {s:?}"))
}

fn server<'a>(s: &'a Sample, name: &str) -> &'a ServerSample {
    pool(s, "app")
        .servers
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("server {name}"))
}

fn served(b: &Backend) -> u64 {
    b.served.load(Ordering::Relaxed)
}

#[test]
fn per_server_requests_equal_what_each_backend_counted_through_every_endpoint() {
    if !common::peer_available("haproxy") {
        return;
    }
    let backends: Vec<Backend> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let section = servers_section(
        "roundrobin",
        &[
            (&backends[0], "weight 1"),
            (&backends[1], "weight 2"),
            (&backends[2], "weight 3 maxconn 50 maxqueue 7"),
        ],
    );
    let h = Haproxy::start(&section, "admin");
    h.send(61);
    let counted: Vec<u64> = backends.iter().map(served).collect();
    assert_eq!(counted.iter().sum::<u64>(), 61);
    for endpoint in h.endpoints() {
        let shown = endpoint.to_string();
        let s = sample(endpoint);
        assert_eq!(s.source, "haproxy");
        for b in &backends {
            let x = server(&s, &b.name);
            assert_eq!(x.requests, served(b), "{} through {shown}", b.name);
            assert_eq!(x.state, ServerState::Up, "{shown}");
            assert_eq!(
                x.responses.c2xx,
                served(b),
                "{} 2xx through {shown}",
                b.name
            );
        }
        let s3 = server(&s, "s3");
        assert_eq!(
            (s3.weight, s3.max_connections, s3.max_queue),
            (3, Some(50), Some(7)),
            "{shown}"
        );
        assert!(s.frontends.iter().any(|f| f.name == "web"), "{shown}");
        match s.process {
            // The stats page's CSV carries no process figures.
            None => assert!(shown.ends_with(";csv"), "{shown}"),
            Some(p) => {
                assert_eq!(p.max_connections, Some(200), "{shown}");
                assert!(p.generation.is_some(), "{shown}");
            }
        }
    }
    // Round-robin with weights 1:2:3 spreads 61 requests that way, to within one turn.
    let expected = [61.0 / 6.0, 61.0 * 2.0 / 6.0, 61.0 * 3.0 / 6.0];
    for (c, e) in counted.iter().zip(expected) {
        assert!((*c as f64 - e).abs() <= 3.0, "{counted:?}");
    }
}

#[test]
fn runtime_api_changes_show_in_the_next_sample() {
    if !common::peer_available("haproxy") {
        return;
    }
    let backends: Vec<Backend> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let section = servers_section(
        "roundrobin",
        &backends.iter().map(|b| (b, "")).collect::<Vec<_>>(),
    );
    let h = Haproxy::start(&section, "admin");
    let mut source = HaproxySource::new(h.unix(), None);
    let before = source.sample(1).unwrap();
    assert_eq!(server(&before, "s3").weight, 1);
    assert_eq!(server(&before, "s2").state, ServerState::Up);
    h.command("set weight app/s3 0");
    h.command("disable server app/s2");
    h.command("set server app/s1 state drain");
    let after = source.sample(2).unwrap();
    assert_eq!(server(&after, "s3").weight, 0);
    assert_eq!(server(&after, "s2").state, ServerState::Maintenance);
    assert_eq!(server(&after, "s1").state, ServerState::Drain);
    // The same through the other endpoints.
    for endpoint in [h.tcp(), h.page(), h.exporter()] {
        let shown = endpoint.to_string();
        let s = sample(endpoint);
        assert_eq!(server(&s, "s3").weight, 0, "{shown}");
        assert_eq!(server(&s, "s2").state, ServerState::Maintenance, "{shown}");
        assert_eq!(server(&s, "s1").state, ServerState::Drain, "{shown}");
    }
    // Back in service, it is seen again.
    h.command("enable server app/s2");
    h.command("set server app/s1 state ready");
    let restored = source.sample(3).unwrap();
    assert_eq!(server(&restored, "s2").state, ServerState::Up);
    assert_eq!(server(&restored, "s1").state, ServerState::Up);
}

/// Judges `app` over two samples taken around `n` requests.
fn judge_around(
    h: &Haproxy,
    n: usize,
) -> (
    ballast_guard::detect::distribution::PoolDistribution,
    Sample,
) {
    let mut source = HaproxySource::new(h.unix(), None);
    let first = source.sample(0).unwrap();
    h.send(n);
    let second = source.sample(1000).unwrap();
    let window = [pool(&first, "app"), pool(&second, "app")];
    let d = judge(&window, &Thresholds::default()).expect("a verdict");
    (d, second)
}

#[test]
fn the_source_and_the_distribution_detector_agree_end_to_end() {
    if !common::peer_available("haproxy") {
        return;
    }
    // Equal weights under round-robin: as promised.
    let backends: Vec<Backend> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let equal = servers_section(
        "roundrobin",
        &backends.iter().map(|b| (b, "weight 1")).collect::<Vec<_>>(),
    );
    let h = Haproxy::start(&equal, "admin");
    let (d, _) = judge_around(&h, 150);
    assert!(matches!(d.verdict, Verdict::AsPromised { .. }), "{d:?}");
    drop(h);

    // Weights 1,1,8: s3 takes 80%, and that is what the weights promise.
    let weighted = servers_section(
        "roundrobin",
        &[
            (&backends[0], "weight 1"),
            (&backends[1], "weight 1"),
            (&backends[2], "weight 8"),
        ],
    );
    let before: Vec<u64> = backends.iter().map(served).collect();
    let h = Haproxy::start(&weighted, "admin");
    let (d, s) = judge_around(&h, 150);
    let got: Vec<u64> = backends
        .iter()
        .zip(&before)
        .map(|(b, was)| served(b) - was)
        .collect();
    assert_eq!(got.iter().sum::<u64>(), 150);
    assert!(got[2] >= 115, "s3 served {got:?}");
    assert_eq!(server(&s, "s3").weight, 8);
    assert!(
        matches!(d.verdict, Verdict::AsPromised { .. }),
        "weights are the promise: {d:?}"
    );
    drop(h);

    // A skew no weight promises: traffic pinned by its key. Every client here is 127.0.0.1,
    // so `balance source` sends all of it to one server of five (R = 5, past the hashing
    // band's critical 4).
    let five: Vec<Backend> = ["h1", "h2", "h3", "h4", "h5"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let hashed = servers_section("source", &five.iter().map(|b| (b, "")).collect::<Vec<_>>());
    let h = Haproxy::start(&hashed, "admin");
    let (d, s) = judge_around(&h, 150);
    assert_eq!(pool(&s, "app").promise, Promise::KeyDependent);
    let hot = five.iter().max_by_key(|b| served(b)).unwrap();
    assert_eq!(served(hot), 150, "one address, one server");
    match &d.verdict {
        Verdict::Skewed { server, share, .. } => {
            assert_eq!(server, &hot.name);
            assert!((share - 1.0).abs() < 1e-9, "{share}");
        }
        other => panic!("one key on five servers must be skewed: {other:?}"),
    }
}

#[test]
fn a_server_at_its_maxconn_queues_and_the_sample_shows_it() {
    if !common::peer_available("haproxy") {
        return;
    }
    let slow: Vec<Backend> = ["s1", "s2"]
        .iter()
        .map(|n| Backend::start_with_delay(n, Duration::from_millis(1500)))
        .collect();
    let section = servers_section(
        "roundrobin",
        &slow.iter().map(|b| (b, "maxconn 2")).collect::<Vec<_>>(),
    );
    let h = Haproxy::start(&section, "admin");
    let front = h.front;
    let clients: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || common::http_get(front, "/").0))
        .collect();
    let mut source = HaproxySource::new(h.unix(), None);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while Instant::now() < deadline {
        let s = source.sample(0).unwrap();
        let app = pool(&s, "app");
        let queued = app.queued + app.servers.iter().map(|x| x.queued).sum::<u64>();
        let active: u64 = app.servers.iter().map(|x| x.active).sum();
        // Once every client has arrived: four in service, six waiting.
        if queued + active == 10 {
            seen = Some((queued, app.clone()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (queued, app) = seen.expect("all ten clients inside HAProxy within 3 s");
    assert_eq!(queued, 6, "{app:?}");
    for x in &app.servers {
        assert_eq!(
            (x.active, x.max_connections),
            (2, Some(2)),
            "{}: at its limit",
            x.name
        );
    }
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
}

#[test]
fn a_reload_changes_the_process_generation() {
    if !common::peer_available("haproxy") {
        return;
    }
    let backend = Backend::start("s1");
    let section = servers_section("roundrobin", &[(&backend, "")]);
    let mut h = Haproxy::start(&section, "admin");
    let mut socket = HaproxySource::new(h.unix(), None);
    let mut exporter = HaproxySource::new(h.exporter(), None);
    let generation =
        |s: &mut HaproxySource| s.sample(0).unwrap().process.unwrap().generation.unwrap();
    let (before, exported_before) = (generation(&mut socket), generation(&mut exporter));
    h.send(5);
    // The exporter's start time has a second's resolution.
    std::thread::sleep(Duration::from_millis(1100));
    let old_pid = h.peer.id();
    let new = spawn_haproxy(&h.config, Some(old_pid));
    let old = std::mem::replace(&mut h.peer, new);
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        // While the new process takes over, the socket may briefly be gone.
        if let Ok(s) = socket.sample(0)
            && let Some(g) = s.process.and_then(|p| p.generation)
            && g != before
        {
            break g;
        }
        assert!(
            Instant::now() < deadline,
            "the generation did not change after `haproxy -sf`"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(after.starts_with("pid "), "{after}");
    assert!(!after.contains(&format!("pid {old_pid} ")), "{after}");
    h.wait_ready();
    let exported_after = generation(&mut exporter);
    assert_ne!(exported_before, exported_after);
    // The new process counts from zero.
    let s = socket.sample(0).unwrap();
    assert_eq!(server(&s, "s1").requests, 0);
    drop(old);
}

#[test]
fn the_configuration_file_supplies_what_the_process_does_not_report() {
    if !common::peer_available("haproxy") {
        return;
    }
    let backends: Vec<Backend> = ["s1", "s2"].iter().map(|n| Backend::start(n)).collect();
    // HAProxy 2.6 reports `random` as `unknown`; one draw promises request shares.
    let mut section = servers_section("random(1)", &[(&backends[0], "")]);
    section.push_str(&format!("    server b1 {} backup\n", backends[1].addr));
    let h = Haproxy::start(&section, "admin");
    let mut bare = HaproxySource::new(h.unix(), None);
    let s = bare.sample(0).unwrap();
    assert_eq!(pool(&s, "app").promise, Promise::Concurrency);
    assert!(
        bare.notes().iter().any(|n| n.contains("random")),
        "{:?}",
        bare.notes()
    );
    let mut with_file = HaproxySource::new(h.unix(), Some(h.config.clone()));
    assert_eq!(with_file.config_files(), vec![h.config.clone()]);
    let s = with_file.sample(0).unwrap();
    assert_eq!(pool(&s, "app").promise, Promise::RequestShares);
    assert!(with_file.notes().is_empty(), "{:?}", with_file.notes());
    // The exporter marks no backups; the file does.
    let mut exporter = HaproxySource::new(h.exporter(), Some(h.config.clone()));
    let s = exporter.sample(0).unwrap();
    assert!(server(&s, "b1").backup && !server(&s, "s1").backup);
    assert_eq!(pool(&s, "app").promise, Promise::RequestShares);
    let mut bare_exporter = HaproxySource::new(h.exporter(), None);
    let s = bare_exporter.sample(0).unwrap();
    assert!(!server(&s, "b1").backup);
    assert!(bare_exporter.notes().iter().any(|n| n.contains("backup")));
}

#[test]
fn a_missing_or_refusing_endpoint_is_an_error_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.sock");
    let e = HaproxySource::new(Endpoint::Socket(SocketAddress::Unix(missing.clone())), None)
        .sample(0)
        .unwrap_err();
    assert!(
        e.what.contains("does not exist") && e.what.contains(&missing.display().to_string()),
        "{e}"
    );
    let fix = e.fix.expect("a fix");
    assert!(
        fix.contains(&format!(
            "stats socket {} mode 660 level admin",
            missing.display()
        )),
        "{fix}"
    );
    assert!(fix.contains("global section"), "{fix}");
    // A socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    // A child another test spawns at the moment the listener is bound holds a copy of it until
    // it execs: a connection made then is accepted into its queue and reset. Once the copy is
    // gone the socket refuses, which is what is checked.
    let mut e = None;
    for _ in 0..20 {
        let error = HaproxySource::new(Endpoint::Socket(SocketAddress::Unix(stale.clone())), None)
            .sample(0)
            .unwrap_err();
        let reset = error.what.contains("reset by peer");
        e = Some(error);
        if !reset {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e = e.unwrap();
    assert!(
        e.what.contains("connection refused") && e.fix.is_some(),
        "{e}"
    );
    let port = common::free_port();
    for endpoint in [
        Endpoint::Socket(SocketAddress::Tcp(format!("127.0.0.1:{port}"))),
        Endpoint::StatsPage(format!("http://127.0.0.1:{port}/stats;csv")),
        Endpoint::Exporter(format!("http://127.0.0.1:{port}/metrics")),
    ] {
        let shown = endpoint.to_string();
        let e = HaproxySource::new(endpoint, None).sample(0).unwrap_err();
        assert!(e.what.contains(&port.to_string()), "{shown}: {e}");
        assert!(e.fix.is_some(), "{shown}");
    }
}

#[test]
fn a_socket_below_admin_level_or_a_wrong_page_is_an_error_with_a_fix() {
    if !common::peer_available("haproxy") {
        return;
    }
    let backend = Backend::start("s1");
    let h = Haproxy::start(&servers_section("roundrobin", &[(&backend, "")]), "user");
    let e = HaproxySource::new(h.unix(), None).sample(0).unwrap_err();
    assert!(e.what.contains("level `user`"), "{e}");
    assert!(e.fix.unwrap().contains("level admin"));
    // The stats page without `;csv` is HTML, not the CSV; a wrong path is a 404.
    let html = Endpoint::StatsPage(format!("http://{}/stats", h.stats));
    let e = HaproxySource::new(html, None).sample(0).unwrap_err();
    assert!(e.fix.unwrap().contains(";csv"), "{}", e.what);
    let e = HaproxySource::new(
        Endpoint::Exporter(format!("http://{}/nothing", h.stats)),
        None,
    )
    .sample(0)
    .unwrap_err();
    assert!(e.fix.unwrap().contains("prometheus-exporter"), "{}", e.what);
    let _ = &h.dir;
}
