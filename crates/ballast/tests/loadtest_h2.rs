//! How `ballast loadtest`'s requests travel, checked by the peers' own counts on loopback: a
//! new connection per request (`--no-keepalive`) against a backend counting the connections
//! it accepted; HTTP/2 (`--http2`, h2c and over TLS) through `ballast serve`, nginx and
//! HAProxy with every answer attributed as the backends counted them; TLS certificates
//! refused unless `--insecure` or `--cacert` says otherwise.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Backend, free_port, wait_for_port};
use common::{PeerGroup, peer_available};

/// An HTTP/1.1 backend that counts the connections it accepts and the requests it answers
/// (keep-alive unless the request says `Connection: close`).
struct CountingBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CountingBackend {
    fn start() -> CountingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted2, served2, stop2) = (accepted.clone(), served.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        accepted2.fetch_add(1, Ordering::Relaxed);
                        let served = served2.clone();
                        std::thread::spawn(move || answer(conn, &served));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        CountingBackend {
            addr,
            accepted,
            served,
            stop,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for CountingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(conn: TcpStream, served: &AtomicU64) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut close = false;
        let mut line = String::new();
        let mut any = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            any = true;
            let lower = line.to_ascii_lowercase();
            close |= lower.starts_with("connection:") && lower.contains("close");
        }
        if !any {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        let connection = if close { "close" } else { "keep-alive" };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Served-By: counted\r\nConnection: {connection}\r\n\r\nok\n"
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn run_loadtest(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .arg("loadtest")
        .arg(url)
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run ballast loadtest")
}

/// Runs `ballast loadtest` with `args`; its JSON report (the run must succeed).
fn loadtest(url: &str, args: &[&str]) -> Value {
    let out = run_loadtest(url, args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Waits (briefly) for the backend's count to catch up with the last answer: its counter is
/// bumped before the response is written, so this is for the accept thread only.
fn settled(read: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut last = read();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn no_keepalive_opens_one_connection_per_request_in_both_models() {
    // Closed model, keep-alive: 4 connections carry all 300 requests.
    let backend = CountingBackend::start();
    let url = format!("http://{}/", backend.addr);
    let kept = loadtest(&url, &["-n", "300", "-c", "4"]);
    assert_eq!(kept["requests"], 300, "{kept:#}");
    assert_eq!(backend.served(), 300);
    let accepted = settled(|| backend.accepted());
    // The command's own reachability check is one more connection.
    assert!(
        (2..=5).contains(&accepted),
        "keep-alive: {accepted} connections for 300 requests on -c 4"
    );
    assert!(
        kept["connections_opened"].as_u64().unwrap() <= 4,
        "{kept:#}"
    );

    // Closed model, a connection per request.
    let backend = CountingBackend::start();
    let url = format!("http://{}/", backend.addr);
    let fresh = loadtest(&url, &["-n", "300", "-c", "4", "--no-keepalive"]);
    assert_eq!(fresh["requests"], 300, "{fresh:#}");
    assert_eq!(fresh["errors"], 0, "{fresh:#}");
    assert_eq!(backend.served(), 300);
    assert_eq!(
        settled(|| backend.accepted()),
        300 + 1,
        "one connection per request, and the reachability check"
    );
    assert_eq!(fresh["connections_opened"], 300, "{fresh:#}");

    // Open model, a connection per request.
    let backend = CountingBackend::start();
    let url = format!("http://{}/", backend.addr);
    let open = loadtest(
        &url,
        &["--rate", "300", "--duration", "1s", "--no-keepalive"],
    );
    let requests = open["requests"].as_u64().unwrap();
    assert!((280..=301).contains(&requests), "{open:#}");
    assert_eq!(open["errors"], 0, "{open:#}");
    assert_eq!(backend.served(), requests);
    assert_eq!(settled(|| backend.accepted()), requests + 1);

    // Open model, keep-alive: at most --max-connections connections.
    let backend = CountingBackend::start();
    let url = format!("http://{}/", backend.addr);
    let open = loadtest(
        &url,
        &[
            "--rate",
            "300",
            "--duration",
            "1s",
            "--max-connections",
            "3",
        ],
    );
    let requests = open["requests"].as_u64().unwrap();
    assert_eq!(backend.served(), requests);
    let accepted = settled(|| backend.accepted());
    assert!(
        (2..=4).contains(&accepted) && accepted < requests,
        "keep-alive open model: {accepted} connections for {requests} requests"
    );
}

/// Three backends named as the configurations name their servers.
fn backends() -> Vec<Backend> {
    (1..=3)
        .map(|i| Backend::start(&format!("app-{i}")))
        .collect()
}

/// Each backend's attributed count (by `key`) equals what it served; nothing unattributed.
fn attributed_as_served_by(report: &Value, backends: &[Backend], key: impl Fn(&Backend) -> String) {
    assert_eq!(report["unattributed"], 0, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    let listed = report["backends"].as_array().expect("backends");
    let mut total = 0;
    for b in backends {
        let row = listed
            .iter()
            .find(|r| r["name"] == key(b).as_str())
            .unwrap_or_else(|| panic!("no row for {} in {report:#}", key(b)));
        let served = b.served.load(Ordering::Relaxed);
        assert_eq!(
            row["requests"].as_u64(),
            Some(served),
            "{} served {served}: {row:#}",
            b.name
        );
        total += served;
    }
    assert_eq!(report["requests"].as_u64(), Some(total), "{report:#}");
}

/// `ballast serve` round-robin over `backends`, with `extra` lines in its listener (TLS).
fn serve(backends: &[Backend], dir: &std::path::Path, extra: &str) -> (SocketAddr, PeerGroup) {
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = format!(
        "[listeners.web]\naddress = \"{listener}\"\npool = \"app\"\nserved_by_header = \"X-Served-By\"\n{extra}\n[pools.app]\nalgorithm = \"round-robin\"\n"
    );
    for b in backends {
        config += &format!(
            "[[pools.app.servers]]\nname = \"{}\"\naddress = \"{}\"\n",
            b.name, b.addr
        );
    }
    let file = dir.join("ballast.toml");
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    command
        .args(["serve", "--threads", "1", "-c"])
        .arg(&file)
        .env("RUST_LOG", "warn");
    let serve = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    assert!(
        wait_for_port(listener, Duration::from_secs(10)),
        "serve did not start"
    );
    (listener, serve)
}

#[test]
fn http2_through_ballast_serve_is_attributed_as_the_backends_served() {
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let (listener, _serve) = serve(&backends, dir.path(), "");
    let url = format!("http://{listener}/");
    // Closed model: 2 connections of 4 streams each.
    let closed = loadtest(
        &url,
        &["--http2", "-c", "2", "--streams", "4", "-n", "1200"],
    );
    attributed_as_served_by(&closed, &backends, |b| b.name.clone());
    assert_eq!(closed["requests"], 1200, "{closed:#}");
    assert_eq!(closed["connections_opened"], 2, "{closed:#}");
    for b in &backends {
        let share = closed["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == b.name.as_str())
            .unwrap()["share"]
            .as_f64()
            .unwrap();
        assert!((share - 1.0 / 3.0).abs() < 0.01, "{closed:#}");
    }

    // Open model: its requests spread over at most 2 connections.
    let before: Vec<u64> = backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .collect();
    let open = loadtest(
        &url,
        &[
            "--http2",
            "--rate",
            "400",
            "--duration",
            "1s",
            "--streams",
            "8",
            "--max-connections",
            "2",
        ],
    );
    let requests = open["requests"].as_u64().unwrap();
    assert!((380..=400).contains(&requests), "{open:#}");
    assert_eq!(open["errors"], 0, "{open:#}");
    let opened = open["connections_opened"].as_u64().unwrap();
    assert!((1..=2).contains(&opened), "{open:#}");
    let served: u64 = backends
        .iter()
        .zip(before)
        .map(|(b, n)| b.served.load(Ordering::Relaxed) - n)
        .sum();
    assert_eq!(served, requests);

    // A connection per request over HTTP/2 too.
    let fresh = loadtest(&url, &["--http2", "-c", "2", "-n", "100", "--no-keepalive"]);
    assert_eq!(fresh["requests"], 100, "{fresh:#}");
    assert_eq!(fresh["errors"], 0, "{fresh:#}");
    assert_eq!(fresh["connections_opened"], 100, "{fresh:#}");
}

fn nginx_conf(dir: &std::path::Path, port: u16, backends: &[Backend], listen: &str) -> String {
    let mut upstream = String::new();
    for b in backends {
        upstream += &format!("        server {};\n", b.addr);
    }
    format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n    upstream app {{\n{upstream}        keepalive 16;\n    }}\n    server {{\n        listen 127.0.0.1:{port} {listen};\n        location / {{\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_pass http://app;\n            add_header X-Upstream $upstream_addr always;\n            add_header X-Protocol $server_protocol always;\n        }}\n    }}\n}}\n",
        dir = dir.display()
    )
}

fn start_nginx(dir: &std::path::Path, conf: &str, port: u16) -> PeerGroup {
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let mut command = Command::new("nginx");
    command.arg("-c").arg(&file).arg("-p").arg(dir);
    let nginx = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wait_for_port(listener, Duration::from_millis(200)) {
        assert!(Instant::now() < deadline, "nginx did not start");
    }
    nginx
}

/// nginx's `listen ... http2` without `ssl` speaks HTTP/2 by prior knowledge only: an answer
/// at all shows the request went as HTTP/2, and `$server_protocol` says so too.
#[test]
fn http2_through_nginx_h2c_is_attributed_as_the_backends_served() {
    if !peer_available("nginx") {
        return;
    }
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = start_nginx(
        dir.path(),
        &nginx_conf(dir.path(), port, &backends, "http2"),
        port,
    );
    let url = format!("http://127.0.0.1:{port}/");
    let report = loadtest(
        &url,
        &[
            "--http2",
            "-c",
            "2",
            "--streams",
            "3",
            "-n",
            "900",
            "--served-by",
            "X-Upstream",
        ],
    );
    attributed_as_served_by(&report, &backends, |b| b.addr.to_string());
    let protocol = loadtest(&url, &["--http2", "-n", "5", "--served-by", "X-Protocol"]);
    assert_eq!(protocol["backends"][0]["name"], "HTTP/2.0", "{protocol:#}");
    // Plain HTTP/1.1 to the same listener gets no answer nginx could attribute.
    let h1 = run_loadtest(&url, &["-n", "5", "--served-by", "X-Upstream"]);
    let h1: Value = serde_json::from_slice(&h1.stdout).unwrap_or_default();
    assert_ne!(
        h1["unattributed"].as_u64().unwrap_or(0) + h1["errors"].as_u64().unwrap_or(0),
        0,
        "{h1:#}"
    );
}

/// HAProxy's `bind ... proto h2` speaks HTTP/2 by prior knowledge on a plain bind.
#[test]
fn http2_through_haproxy_h2c_is_attributed_as_the_backends_served() {
    if !peer_available("haproxy") {
        return;
    }
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\nfrontend web\n    bind {listener} proto h2\n    default_backend app\n\nbackend app\n    balance roundrobin\n    http-response set-header X-Served-By %s\n"
    );
    for (b, w) in backends.iter().zip([1, 2, 3]) {
        cfg += &format!("    server {} {} weight {w}\n", b.name, b.addr);
    }
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, &cfg).unwrap();
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&file);
    let _haproxy = PeerGroup::spawn_with_output(command, Stdio::null(), Stdio::null());
    assert!(
        wait_for_port(listener, Duration::from_secs(10)),
        "haproxy did not start"
    );
    let config_path = file.display().to_string();
    let report = loadtest(
        &format!("http://{listener}/"),
        &[
            "--http2",
            "-c",
            "3",
            "--streams",
            "2",
            "-n",
            "1200",
            "--config",
            &config_path,
        ],
    );
    attributed_as_served_by(&report, &backends, |b| b.name.clone());
    for (b, want) in backends.iter().zip([1.0 / 6.0, 2.0 / 6.0, 0.5]) {
        let row = report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == b.name.as_str())
            .unwrap();
        let share = row["share"].as_f64().unwrap();
        assert!((share - want).abs() < 0.02, "{report:#}");
    }
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert.pem, key.pem).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn a_self_signed_certificate_is_refused_unless_insecure_or_its_cacert() {
    let backends = backends();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (listener, _serve) = serve(
        &backends,
        dir.path(),
        &format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            key.display()
        ),
    );
    let url = format!("https://{listener}/");
    let refused = run_loadtest(&url, &["-n", "10"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&listener.to_string())
            && stderr.contains("--insecure")
            && stderr.contains("--cacert")
            && stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(
        backends
            .iter()
            .map(|b| b.served.load(Ordering::Relaxed))
            .sum::<u64>(),
        0
    );

    // --insecure: HTTP/1.1 over TLS, closed model.
    let insecure = loadtest(&url, &["-n", "300", "-c", "3", "--insecure"]);
    attributed_as_served_by(&insecure, &backends, |b| b.name.clone());
    assert_eq!(insecure["connections_opened"], 3, "{insecure:#}");

    // --cacert: the certificate checked, HTTP/2 agreed by ALPN, the open model, a new
    // connection (and handshake) per request.
    let cacert = cert.display().to_string();
    let before: u64 = backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .sum();
    let h2 = loadtest(
        &url,
        &[
            "-n",
            "300",
            "-c",
            "2",
            "--streams",
            "3",
            "--http2",
            "--cacert",
            &cacert,
        ],
    );
    assert_eq!(h2["requests"], 300, "{h2:#}");
    assert_eq!(h2["errors"], 0, "{h2:#}");
    assert_eq!(h2["connections_opened"], 2, "{h2:#}");
    let fresh = loadtest(
        &url,
        &[
            "--rate",
            "100",
            "-d",
            "1s",
            "--no-keepalive",
            "--cacert",
            &cacert,
        ],
    );
    assert_eq!(fresh["errors"], 0, "{fresh:#}");
    assert_eq!(fresh["connections_opened"], fresh["requests"], "{fresh:#}");
    let after: u64 = backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .sum();
    assert_eq!(after - before, 300 + fresh["requests"].as_u64().unwrap());
}

/// nginx answering every request itself over `listen` (`extra` in its server block), with
/// `X-Served-By: $served_by`.
fn nginx_answering(
    dir: &std::path::Path,
    port: u16,
    listen: &str,
    extra: &str,
    served_by: &str,
) -> String {
    format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n    server {{\n        listen 127.0.0.1:{port} {listen};\n{extra}        location / {{\n            add_header X-Served-By {served_by} always;\n            return 200 \"ok\\n\";\n        }}\n    }}\n}}\n",
        dir = dir.display()
    )
}

/// nginx ends an HTTP/2 connection after `keepalive_requests` with a GOAWAY naming the last
/// stream it took; the streams the client had opened past it were never processed. They are
/// sent again on a new connection, so a load test of a server that closes connections this
/// way loses no request (before, each was counted `broken`).
#[test]
fn http2_streams_a_goaway_left_unprocessed_are_sent_again() {
    if !peer_available("nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = nginx_answering(
        dir.path(),
        port,
        "http2",
        "        keepalive_requests 7;\n",
        "$server_protocol",
    );
    let _nginx = start_nginx(dir.path(), &conf, port);
    let url = format!("http://127.0.0.1:{port}/");
    for model in [
        &["-c", "2", "--streams", "8", "-n", "700"][..],
        &[
            "--rate",
            "2000",
            "-d",
            "1s",
            "--streams",
            "8",
            "--max-connections",
            "2",
        ],
    ] {
        let mut args = vec!["--http2"];
        args.extend_from_slice(model);
        let report = loadtest(&url, &args);
        assert_eq!(report["errors"], 0, "{args:?}: {report:#}");
        assert_eq!(report["backends"][0]["name"], "HTTP/2.0", "{report:#}");
        let requests = report["requests"].as_u64().unwrap();
        assert!(requests >= 700, "{args:?}: {report:#}");
        // At most 7 requests a connection: nginx did close them all along the run.
        let opened = report["connections_opened"].as_u64().unwrap();
        assert!(
            opened >= requests / 7,
            "{args:?}: {opened} connections: {report:#}"
        );
    }
}

/// A private CA, a server certificate for 127.0.0.1 and a client certificate, both signed by
/// it, in `dir`: (ca.pem, server.pem, server.key, client.pem, client.key).
fn private_pki(dir: &std::path::Path) -> [std::path::PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ballast test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "loadtest-client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let files = [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ]
    .map(|f| dir.join(f));
    for (file, text) in files.iter().zip([
        ca.pem(),
        server.pem(),
        server_key.serialize_pem(),
        client.pem(),
        client_key.serialize_pem(),
    ]) {
        std::fs::write(file, text).unwrap();
    }
    files
}

/// nginx over TLS and HTTP/2 that verifies client certificates (`ssl_verify_client on`)
/// refuses a load test without one and answers one with `--client-cert`; `--replay` goes over
/// the same https:// and HTTP/2, each recorded client address on one shared connection.
#[test]
fn mutual_tls_and_replay_over_https_and_http2_through_nginx() {
    if !peer_available("nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [ca, server, server_key, client, client_key] = private_pki(dir.path());
    let port = free_port();
    let tls = format!(
        "        ssl_certificate {};\n        ssl_certificate_key {};\n        ssl_client_certificate {};\n        ssl_verify_client on;\n",
        server.display(),
        server_key.display(),
        ca.display()
    );
    let conf = nginx_answering(
        dir.path(),
        port,
        "ssl http2",
        &tls,
        "$server_protocol-$ssl_client_s_dn",
    );
    let _nginx = start_nginx(dir.path(), &conf, port);
    let url = format!("https://127.0.0.1:{port}/");
    let (ca, client, client_key) = (
        ca.display().to_string(),
        client.display().to_string(),
        client_key.display().to_string(),
    );

    // No client certificate: nginx answers 400 to every request, and names no backend.
    let refused = loadtest(&url, &["--cacert", &ca, "-n", "20"]);
    assert_eq!(refused["unattributed"], 20, "{refused:#}");
    // With one, over HTTP/1.1 and HTTP/2, both models.
    let identity = [
        "--cacert",
        &ca,
        "--client-cert",
        &client,
        "--client-key",
        &client_key,
    ];
    for extra in [
        &["-n", "200", "-c", "2"][..],
        &["--http2", "--streams", "4", "--rate", "400", "-d", "1s"],
    ] {
        let mut args = identity.to_vec();
        args.extend_from_slice(extra);
        let report = loadtest(&url, &args);
        assert_eq!(report["errors"], 0, "{args:?}: {report:#}");
        assert_eq!(report["unattributed"], 0, "{args:?}: {report:#}");
        let name = report["backends"][0]["name"].as_str().unwrap().to_string();
        let protocol = if extra.contains(&"--http2") {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(name, format!("{protocol}-CN=loadtest-client"), "{report:#}");
    }
    // A key that is not the certificate's is refused before the run, by name.
    let wrong = run_loadtest(
        &url,
        &[
            "--cacert",
            &ca,
            "--client-cert",
            &client,
            "--client-key",
            &dir.path().join("server.key").display().to_string(),
            "-n",
            "5",
        ],
    );
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--client-key"), "{stderr}");

    // Replay: 60 records from two client addresses, over https:// and HTTP/2.
    let records = dir.path().join("records.jsonl");
    let lines: String = (0..60)
        .map(|i| {
            format!(
                "{{\"t\": {}, \"client\": \"127.0.0.{}\", \"path\": \"/r{i}\"}}\n",
                i as f64 * 0.005,
                2 + i % 2
            )
        })
        .collect();
    std::fs::write(&records, lines).unwrap();
    let records = records.display().to_string();
    for http2 in [false, true] {
        let mut args = identity.to_vec();
        args.extend_from_slice(&["--replay", &records]);
        if http2 {
            args.push("--http2");
        }
        let report = loadtest(&url, &args);
        assert_eq!(report["requests"], 60, "{report:#}");
        assert_eq!(report["errors"], 0, "{report:#}");
        let protocol = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert_eq!(
            report["backends"][0]["name"],
            format!("{protocol}-CN=loadtest-client").as_str(),
            "{report:#}"
        );
        if http2 {
            // One connection a client address.
            assert_eq!(report["connections_opened"], 2, "{report:#}");
        }
    }
}
