//! Agreement with the peers' own checks: a corpus of HAProxy and nginx configurations (a valid
//! base and one-line mutations of it, the mistakes people make) is given to `haproxy -c` and
//! `nginx -t`, and to ballast. Whatever the peer rejects, ballast must refuse (an import error)
//! or report as not modelled (an IMPORT note at the line the peer names): never accept in
//! silence. Whatever the peer accepts, ballast must import, except the few files where ballast
//! is stricter on purpose (listed with the reason). The peers must be installed
//! (`scripts/test.sh` installs them); BALLAST_SKIP_PEERS=1 skips knowingly.

use std::path::Path;
use std::process::Command;

mod common;
use common::peer_available;

use ballast_import::{Options, import_file};

/// What ballast makes of a file: refused (with the rendered errors), or imported with notes
/// of what it does not model at these lines.
enum Verdict {
    Refused(String),
    Noted(Vec<usize>),
}

fn ballast_verdict(path: &Path) -> Verdict {
    match import_file(path, &Options::default()) {
        Err(e) => Verdict::Refused(e.render()),
        Ok(imported) => Verdict::Noted(
            imported
                .notes
                .iter()
                .filter_map(|n| n.span.as_ref())
                .map(|s| imported.loaded.source.line_col(s.start).line)
                .collect(),
        ),
    }
}

/// The line of `path` that the peer's message names (`file.conf:12`), if any.
fn peer_line(message: &str, path: &Path) -> Option<usize> {
    let at = format!("{}:", path.display());
    let rest = &message[message.find(&at)? + at.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Runs the corpus through `peer` and ballast; returns the disagreements.
fn agree(
    format: &str,
    base: &str,
    mutations: &[(&str, &str, &str)],
    stricter: &[(&str, &str)],
    peer: impl Fn(&Path) -> (bool, String),
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let base_path = dir.path().join(format!("base.{format}"));
    std::fs::write(&base_path, base).unwrap();
    let (ok, why) = peer(&base_path);
    assert!(
        ok,
        "the base {format} configuration must pass its peer's check:\n{why}"
    );
    let mut problems = Vec::new();
    if let Verdict::Refused(e) = ballast_verdict(&base_path) {
        problems.push(format!(
            "base: the peer accepts it, ballast refuses it:\n{e}"
        ));
    }
    let mut rejected = 0;
    for (name, from, to) in mutations {
        assert!(base.contains(from), "{name}: `{from}` is not in the base");
        let path = dir.path().join(format!("{name}.{format}"));
        std::fs::write(&path, base.replacen(from, to, 1)).unwrap();
        let (peer_ok, peer_says) = peer(&path);
        let verdict = ballast_verdict(&path);
        let deliberate = stricter.iter().any(|(n, _)| n == name);
        match (peer_ok, &verdict) {
            (false, Verdict::Noted(lines)) => {
                let noted = match peer_line(&peer_says, &path) {
                    Some(line) => lines.contains(&line),
                    None => !lines.is_empty(),
                };
                if !noted {
                    problems.push(format!(
                        "{name}: the peer rejects it and ballast accepts it without a note there (notes at {lines:?})\n  peer: {}",
                        peer_says.trim()
                    ));
                }
            }
            (true, Verdict::Refused(e)) if !deliberate => problems.push(format!(
                "{name}: the peer accepts it and ballast refuses it:\n{e}"
            )),
            (true, Verdict::Noted(_)) if deliberate => problems.push(format!(
                "{name}: listed as refused by ballast on purpose, but ballast accepts it"
            )),
            (false, _) if deliberate => problems.push(format!(
                "{name}: listed as accepted by the peer, but the peer rejects it: {peer_says}"
            )),
            _ => {}
        }
        rejected += usize::from(!peer_ok);
    }
    assert!(
        rejected * 2 >= mutations.len(),
        "the corpus should be mostly mistakes the peer rejects ({rejected} of {})",
        mutations.len()
    );
    problems
}

const HAPROXY_BASE: &str = "global
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    retries 3

frontend web
    bind 127.0.0.1:18080
    maxconn 2000
    default_backend app

backend app
    balance roundrobin
    hash-type map-based
    option httpchk GET /health
    server web1 10.0.0.1:80 check weight 10 maxconn 100
    server web2 10.0.0.2:80 check weight 20 maxconn 100

backend other
    balance source
    server web3 10.0.0.3:80 check
";

/// One-line mutations: (name, text in the base, replacement).
const HAPROXY_MUTATIONS: &[(&str, &str, &str)] = &[
    (
        "misspelled-keyword",
        "    balance roundrobin",
        "    balanse roundrobin",
    ),
    ("unknown-algorithm", "balance roundrobin", "balance fastest"),
    (
        "unknown-server-keyword",
        "check weight 10",
        "chek weight 10",
    ),
    ("weight-above-256", "weight 20", "weight 300"),
    ("weight-not-a-number", "weight 20", "weight heavy"),
    (
        "maxconn-missing-value",
        "weight 10 maxconn 100",
        "weight 10 maxconn",
    ),
    ("negative-retries", "retries 3", "retries -1"),
    ("bad-time-unit", "timeout connect 5s", "timeout connect 5x"),
    ("bad-mode", "mode http", "mode htttp"),
    (
        "missing-default-backend",
        "default_backend app",
        "default_backend ap",
    ),
    (
        "missing-use-backend",
        "default_backend app",
        "default_backend app\n    use_backend nowhere if TRUE",
    ),
    (
        "server-in-frontend",
        "    maxconn 2000",
        "    maxconn 2000\n    server stray 10.0.0.9:80",
    ),
    (
        "server-without-address",
        "    server web3 10.0.0.3:80 check",
        "    server web3",
    ),
    (
        "hash-factor-too-small",
        "    balance source",
        "    balance source\n    hash-type consistent\n    hash-balance-factor 50",
    ),
    (
        "unknown-hash-function",
        "hash-type map-based",
        "hash-type map-based md5",
    ),
    ("unknown-hash-type", "hash-type map-based", "hash-type ring"),
    (
        "url-param-without-name",
        "balance roundrobin",
        "balance url_param",
    ),
    ("hdr-without-name", "balance roundrobin", "balance hdr()"),
    (
        "unknown-option",
        "option httpchk GET /health",
        "option httpcheck GET /health",
    ),
    (
        "unterminated-quote",
        "option httpchk GET /health",
        "option httpchk GET \"/health",
    ),
    (
        "directive-before-section",
        "global\n",
        "maxconn 10\nglobal\n",
    ),
    ("frontend-without-name", "frontend web", "frontend"),
    ("duplicate-backend", "backend other", "backend app"),
    (
        "global-maxconn-not-a-number",
        "    maxconn 4000",
        "    maxconn lots",
    ),
    (
        "bind-bad-port",
        "bind 127.0.0.1:18080",
        "bind 127.0.0.1:99999",
    ),
    ("removed-keyword", "timeout server 30s", "srvtimeout 30s"),
    ("unknown-section", "backend other", "backnd other"),
    (
        "defaults-from-missing",
        "backend other",
        "backend other from nothing",
    ),
    // Valid variations: the peer accepts them, so must ballast.
    ("valid-leastconn", "balance roundrobin", "balance leastconn"),
    (
        "valid-consistent",
        "hash-type map-based",
        "hash-type consistent sdbm avalanche",
    ),
    (
        "valid-backup",
        "server web3 10.0.0.3:80 check",
        "server web3 10.0.0.3:80 check backup",
    ),
];

/// Files HAProxy 2.6 accepts and ballast refuses on purpose: HAProxy reads these numbers with
/// atoi, so a typo silently becomes 0 (a drained server, no limit, no retries).
const HAPROXY_STRICTER: &[(&str, &str)] = &[
    (
        "weight-not-a-number",
        "`weight heavy` is weight 0 in HAProxy: a silently drained server",
    ),
    (
        "maxconn-missing-value",
        "`maxconn` with no value is 0 (no limit) in HAProxy",
    ),
    (
        "negative-retries",
        "`retries -1` is accepted by HAProxy; a retry count is never negative",
    ),
    (
        "global-maxconn-not-a-number",
        "`maxconn lots` is 0 in HAProxy: the limit falls back to the fd limit",
    ),
];

fn haproxy_check(path: &Path) -> (bool, String) {
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run haproxy -c");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn whatever_haproxy_c_rejects_ballast_refuses_or_notes() {
    if !peer_available("haproxy") {
        return;
    }
    let problems = agree(
        "cfg",
        HAPROXY_BASE,
        HAPROXY_MUTATIONS,
        HAPROXY_STRICTER,
        haproxy_check,
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

const NGINX_BASE: &str = "worker_processes 1;

events {
    worker_connections 1024;
}

http {
    upstream app {
        least_conn;
        server 10.0.0.1:80 weight=2 max_fails=3 fail_timeout=10s;
        server 10.0.0.2:80;
    }

    upstream other {
        hash $request_uri consistent;
        server 10.0.0.3:80;
        server 10.0.0.4:80;
    }

    server {
        listen 127.0.0.1:18080;
        location / {
            proxy_connect_timeout 5s;
            proxy_pass http://app;
        }
        location /other {
            proxy_pass http://other;
        }
    }
}
";

const NGINX_MUTATIONS: &[(&str, &str, &str)] = &[
    (
        "missing-semicolon",
        "server 10.0.0.2:80;",
        "server 10.0.0.2:80",
    ),
    (
        "unbalanced-brace",
        "            proxy_pass http://other;\n        }",
        "            proxy_pass http://other;\n",
    ),
    (
        "misspelled-directive",
        "        least_conn;",
        "        least_con;",
    ),
    (
        "misspelled-http-directive",
        "    upstream other {",
        "    upstrem other {",
    ),
    (
        "misspelled-location-directive",
        "proxy_connect_timeout 5s;",
        "proxy_conect_timeout 5s;",
    ),
    ("method-with-argument", "least_conn;", "least_conn fast;"),
    ("weight-zero", "weight=2", "weight=0"),
    ("weight-not-a-number", "weight=2", "weight=two"),
    ("unknown-server-parameter", "weight=2", "wieght=2"),
    ("max-fails-not-a-number", "max_fails=3", "max_fails=x"),
    ("bad-fail-timeout", "fail_timeout=10s", "fail_timeout=10q"),
    ("hash-without-key", "hash $request_uri consistent;", "hash;"),
    (
        "hash-bad-parameter",
        "hash $request_uri consistent;",
        "hash $request_uri consistant;",
    ),
    (
        "listen-outside-server",
        "    server {\n        listen",
        "    listen 127.0.0.1:18081;\n    server {\n        listen",
    ),
    (
        "proxy-pass-unknown-upstream",
        "proxy_pass http://other;",
        "proxy_pass http://othr;",
    ),
    (
        "bad-timeout",
        "proxy_connect_timeout 5s;",
        "proxy_connect_timeout 5q;",
    ),
    (
        "worker-connections-not-a-number",
        "worker_connections 1024;",
        "worker_connections many;",
    ),
    (
        "worker-processes-not-a-number",
        "worker_processes 1;",
        "worker_processes some;",
    ),
    (
        "no-events",
        "events {\n    worker_connections 1024;\n}\n",
        "",
    ),
    (
        "empty-upstream",
        "        server 10.0.0.3:80;\n        server 10.0.0.4:80;\n",
        "",
    ),
    ("duplicate-upstream", "upstream other {", "upstream app {"),
    (
        "backup-after-hash",
        "        server 10.0.0.4:80;",
        "        server 10.0.0.4:80 backup;",
    ),
    (
        "upstream-at-top-level",
        "worker_processes 1;",
        "worker_processes 1;\nupstream stray { server 10.0.0.9:80; }",
    ),
    ("random-bad-argument", "least_conn;", "random three;"),
    ("bad-port", "server 10.0.0.2:80;", "server 10.0.0.2:99999;"),
    ("unknown-block", "    server {\n", "    sever {\n"),
    // NGINX Plus directives, which nginx open source does not know.
    ("plus-least-time", "least_conn;", "least_time header;"),
    (
        "plus-sticky",
        "least_conn;",
        "least_conn;\n        sticky cookie srv_id;",
    ),
    (
        "plus-queue",
        "least_conn;",
        "least_conn;\n        queue 100 timeout=70;",
    ),
    (
        "plus-health-check",
        "proxy_connect_timeout 5s;",
        "proxy_connect_timeout 5s;\n            health_check;",
    ),
    (
        "plus-slow-start",
        "server 10.0.0.2:80;",
        "server 10.0.0.2:80 slow_start=30s;",
    ),
    // Template placeholders and mangled addresses.
    (
        "placeholder-angle",
        "server 10.0.0.2:80;",
        "server <backend_ip>:80;",
    ),
    (
        "placeholder-braces",
        "server 10.0.0.2:80;",
        "server {backend_ip}:80;",
    ),
    (
        "placeholder-port",
        "proxy_pass http://other;",
        "proxy_pass http://some-ip:some-port;",
    ),
    (
        "doubled-port",
        "server 10.0.0.2:80;",
        "server 10.0.0.2:80:80;",
    ),
    (
        "listen-without-space",
        "listen 127.0.0.1:18080;",
        "listen:18080;",
    ),
    (
        "uwsgi-pass-without-port",
        "proxy_pass http://other;",
        "uwsgi_pass other_uwsgi;",
    ),
    (
        "proxy-pass-without-scheme",
        "proxy_pass http://other;",
        "proxy_pass 10.0.0.3:80;",
    ),
    (
        "proxy-pass-in-server",
        "        listen 127.0.0.1:18080;",
        "        listen 127.0.0.1:18080;\n        proxy_pass http://app;",
    ),
    (
        "missing-include",
        "    server {\n",
        "    include /nonexistent-ballast-dir/site.conf;\n    server {\n",
    ),
    (
        "duplicate-listen",
        "listen 127.0.0.1:18080;",
        "listen 127.0.0.1:18080;\n        listen 127.0.0.1:18080;",
    ),
    (
        "duplicate-default-server",
        "listen 127.0.0.1:18080;",
        "listen 127.0.0.1:18080 default_server;\n    }\n    server {\n        listen 127.0.0.1:18080 default_server;",
    ),
    // Valid variations.
    (
        "valid-glob-include-matching-nothing",
        "    server {\n",
        "    include /nonexistent-ballast-dir/*.conf;\n    server {\n",
    ),
    (
        "valid-listen-unix",
        "listen 127.0.0.1:18080;",
        "listen unix:/tmp/ballast-peer-check.sock;",
    ),
    ("valid-no-listen", "        listen 127.0.0.1:18080;\n", ""),
    (
        "valid-proxy-pass-variable",
        "proxy_pass http://other;",
        "set $pool other;\n            proxy_pass http://$pool;",
    ),
    (
        "valid-unix-server",
        "server 10.0.0.4:80;",
        "server unix:/tmp/ballast-app.sock;",
    ),
    ("valid-ip-hash", "least_conn;", "ip_hash;"),
    ("valid-random-two", "least_conn;", "random two;"),
    ("valid-backup-round-robin", "        least_conn;\n", ""),
    (
        "server-name-empty",
        "listen 127.0.0.1:18080;",
        "listen 127.0.0.1:18080;\n        server_name ;",
    ),
    (
        "http2-too-new",
        "listen 127.0.0.1:18080;",
        "listen 127.0.0.1:18080;\n        http2 on;",
    ),
    (
        "valid-random-two-least-conn",
        "least_conn;",
        "random two least_conn;",
    ),
];

fn nginx_check(path: &Path) -> (bool, String) {
    let dir = path.parent().unwrap();
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(path)
        .output()
        .expect("run nginx -t");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn whatever_nginx_t_rejects_ballast_refuses_or_notes() {
    if !peer_available("nginx") {
        return;
    }
    let problems = agree("conf", NGINX_BASE, NGINX_MUTATIONS, &[], nginx_check);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// What HAProxy refuses in files from the wild (directives its version removed, a missing
/// final newline, an address on the `listen` line, placeholders) must be an *error* in
/// ballast at the line HAProxy names, not an info note; what it accepts (sections that balance
/// nothing, unix sockets, `no KEYWORD`, a bare `balance`, variables with defaults) must import
/// without one. Each mutation of the base is judged by `haproxy -c` itself.
#[test]
fn haproxy_refusals_from_the_wild_are_errors_at_the_peer_line() {
    if !peer_available("haproxy") {
        return;
    }
    let mutations: &[(&str, &str, &str)] = &[
        (
            "reqadd",
            "    retries 3",
            "    retries 3\n    reqadd X-Proto:\\ https",
        ),
        (
            "rspdel",
            "    retries 3",
            "    retries 3\n    rspdel ^Server:.*",
        ),
        (
            "block",
            "    default_backend app",
            "    default_backend app\n    block if TRUE",
        ),
        (
            "option-forceclose",
            "    retries 3",
            "    retries 3\n    option forceclose",
        ),
        (
            "option-http-tunnel",
            "    retries 3",
            "    retries 3\n    option http-tunnel",
        ),
        ("contimeout", "timeout connect 5s", "contimeout 5s"),
        (
            "redispatch-keyword",
            "    retries 3",
            "    retries 3\n    redispatch",
        ),
        (
            "global-debug",
            "    maxconn 4000",
            "    maxconn 4000\n    debug",
        ),
        (
            "global-nbproc",
            "    maxconn 4000",
            "    maxconn 4000\n    nbproc 2",
        ),
        (
            "listen-address",
            "backend other\n",
            "listen legacy 127.0.0.1:18081\n    server x 10.0.0.9:80\n\nbackend other\n",
        ),
        (
            "no-final-newline",
            "10.0.0.3:80 check\n",
            "10.0.0.3:80 check",
        ),
        (
            "placeholder",
            "server web3 10.0.0.3:80",
            "server web3 <web3-ip>:80",
        ),
        (
            "rise-zero",
            "server web3 10.0.0.3:80 check",
            "server web3 10.0.0.3:80 check rise 0",
        ),
        (
            "duplicate-server",
            "server web3 10.0.0.3:80 check",
            "server web3 10.0.0.3:80 check\n    server web3 10.0.0.4:80",
        ),
        (
            "no-final-newline-blanks",
            "10.0.0.3:80 check\n",
            "10.0.0.3:80 check\n   ",
        ),
        (
            "placeholder-exes",
            "server web3 10.0.0.3:80",
            "server web3 10.0.0.XXX:80",
        ),
        (
            "newer-section",
            "backend other\n",
            "crt-store web\n    crt-base /etc/ssl\n\nbackend other\n",
        ),
        (
            "newer-option",
            "    retries 3",
            "    retries 3\n    option forwarded",
        ),
        (
            "inter-zero",
            "server web3 10.0.0.3:80 check",
            "server web3 10.0.0.3:80 check inter 0",
        ),
        (
            "server-keyword-alone",
            "    balance source",
            "    balance source\n    rise 1",
        ),
        (
            "check-alone",
            "    balance source",
            "    balance source\n    check",
        ),
        // Accepted by HAProxy.
        (
            "time-with-letters",
            "timeout client 30s",
            "timeout client 15min",
        ),
        (
            "check-timeout-zero",
            "    retries 3",
            "    retries 3\n    timeout check 0",
        ),
        ("many-retries", "    retries 3", "    retries 200"),
        (
            "stats-page",
            "backend other\n",
            "listen stats\n    bind 127.0.0.1:18404\n    stats enable\n    stats uri /\n\nbackend other\n",
        ),
        (
            "redirect-only",
            "backend other\n",
            "frontend tls\n    bind 127.0.0.1:18443\n    http-request redirect scheme https\n\nbackend other\n",
        ),
        (
            "no-log",
            "    retries 3",
            "    retries 3\n    no log\n    no option redispatch",
        ),
        ("bare-balance", "balance roundrobin", "balance"),
        (
            "unix-server",
            "server web3 10.0.0.3:80 check",
            "server web3 unix@/run/web3.sock\n    server web4 /run/web4.sock",
        ),
        (
            "unix-bind",
            "bind 127.0.0.1:18080",
            "bind 127.0.0.1:18080\n    bind unix@/tmp/ballast-peer-check.sock",
        ),
        (
            "variable-default",
            "    maxconn 2000",
            "    maxconn \"${BALLAST_UNSET_FOR_TEST-2000}\"",
        ),
        ("maxconn-zero", "    maxconn 2000", "    maxconn 0"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut refused = 0;
    for (name, from, to) in mutations {
        assert!(
            HAPROXY_BASE.contains(from),
            "{name}: `{from}` is not in the base"
        );
        let path = dir.path().join(format!("{name}.cfg"));
        std::fs::write(&path, HAPROXY_BASE.replacen(from, to, 1)).unwrap();
        let (peer_ok, peer_says) = haproxy_check(&path);
        refused += usize::from(!peer_ok);
        let ballast = import_file(&path, &Options::default());
        let error_lines: Vec<usize> = match &ballast {
            Err(_) => Vec::new(),
            Ok(i) => i
                .notes
                .iter()
                .filter(|n| n.severity == ballast_core::Severity::Error)
                .filter_map(|n| n.span.as_ref())
                .map(|s| i.loaded.source.line_col(s.start).line)
                .collect(),
        };
        match (peer_ok, &ballast) {
            (true, Err(e)) => problems.push(format!(
                "{name}: HAProxy accepts it, ballast refuses it:\n{}",
                e.render()
            )),
            (true, Ok(_)) if !error_lines.is_empty() => problems.push(format!(
                "{name}: HAProxy accepts it, ballast reports errors at {error_lines:?}"
            )),
            (false, Ok(_)) => {
                let at = peer_line(&peer_says, &path);
                if !at.map_or(!error_lines.is_empty(), |l| error_lines.contains(&l)) {
                    problems.push(format!(
                        "{name}: HAProxy refuses it at line {at:?}, ballast's errors are at {error_lines:?}\n  peer: {}",
                        peer_says.trim()
                    ));
                }
            }
            _ => {}
        }
    }
    assert!(refused >= 10, "most of these are refusals: {refused}");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
