//! Regression tests for findings the catalogue rules gave on real HAProxy and nginx files
//! whose claim was not true of the file (issue #9). Each test pairs the file the rule must
//! leave alone with a close variant it must still report, so a rule silenced altogether fails
//! too.

use ballast_check::{Finding, check_imported};
use ballast_core::{Severity, SourceFile};
use ballast_import::{Imported, Options};

fn check(name: &str, text: &str) -> (Imported, Vec<Finding>) {
    let imported = ballast_import::import_source(SourceFile::new(name, text), &Options::default())
        .unwrap_or_else(|e| panic!("{name} does not import:\n{}", e.render()));
    let findings = check_imported(&imported);
    (imported, findings)
}

/// The findings of `rule` as (line, severity, message).
fn of(name: &str, text: &str, rule: &str) -> Vec<(usize, Severity, String)> {
    let (imported, findings) = check(name, text);
    findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| {
            let line = f
                .span
                .as_ref()
                .map_or(0, |s| imported.loaded.source.line_col(s.start).line);
            (line, f.severity, f.message.clone())
        })
        .collect()
}

fn haproxy(rule: &str, text: &str) -> Vec<(usize, Severity, String)> {
    of("t.cfg", text, rule)
}

fn nginx(rule: &str, text: &str) -> Vec<(usize, Severity, String)> {
    of("t.conf", text, rule)
}

const HAPROXY_HEAD: &str = "global
    maxconn 1000
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
";

fn with_head(body: &str) -> String {
    format!("{HAPROXY_HEAD}{body}")
}

#[test]
fn skew_013_leaves_one_server_backends_alone() {
    let one = with_head(
        "listen db
    mode tcp
    bind :5432
    balance roundrobin
    server a 10.0.0.1:5432 check
    server spare 10.0.0.2:5432 check backup
",
    );
    assert_eq!(haproxy("SKEW-013", &one), vec![]);
    // A proxy without servers that merely inherits `timeout tunnel` (a stats page).
    let none = with_head(
        "defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
listen stats
    bind :8404
    stats enable
    stats auth admin:secret
",
    );
    assert_eq!(haproxy("SKEW-013", &none), vec![]);
    let two = one.replace("check backup", "check");
    assert_eq!(haproxy("SKEW-013", &two).len(), 1);
}

#[test]
fn skew_013_says_what_roundrobin_does() {
    let two = with_head(
        "listen db
    mode tcp
    bind :5432
    server a 10.0.0.1:5432 check
    server b 10.0.0.2:5432 check
",
    );
    let found = haproxy("SKEW-013", &two);
    assert_eq!(found.len(), 1);
    // roundrobin hands out new connections in turn; it does not equalise open connections.
    assert!(
        !found[0].2.contains("equalises connection counts"),
        "{found:?}"
    );
    assert!(found[0].2.contains("in turn"), "{found:?}");
}

/// Hashing on one server cannot skew, hot-spot or be steered: there is no other server.
#[test]
fn hashing_rules_leave_one_server_backends_alone() {
    let cases = [
        ("balance source", vec!["SKEW-001", "SKEW-006"]),
        ("balance hdr(X-User)", vec!["SKEW-005", "HASH-006"]),
        ("balance url_param id", vec!["SKEW-005", "HASH-006"]),
        (
            "balance uri\n    hash-type consistent",
            vec!["HASH-005", "CONN-006"],
        ),
    ];
    for (balance, rules) in cases {
        let one = with_head(&format!(
            "defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout queue 5s
    timeout http-request 5s
frontend web
    bind :80
    default_backend app
backend app
    {balance}
    option redispatch
    server a 10.0.0.1:80 check maxconn 100
"
        ));
        let two = format!("{one}    server b 10.0.0.2:80 check maxconn 100\n");
        for rule in rules {
            assert_eq!(
                haproxy(rule, &one),
                vec![],
                "{rule} on one server, {balance}"
            );
            assert!(
                !haproxy(rule, &two).is_empty(),
                "{rule} no longer reports two servers, {balance}"
            );
        }
    }
}

#[test]
fn sec_004_ignores_stats_in_tcp_mode() {
    let tcp = with_head(
        "listen st
    mode tcp
    bind :9000
    stats enable
    stats uri /stats
    server a 10.0.0.1:80
",
    );
    assert_eq!(haproxy("SEC-004", &tcp), vec![]);
    let http = tcp.replace("mode tcp", "mode http");
    assert_eq!(haproxy("SEC-004", &http).len(), 1);
    // `stats` in tcp-mode `defaults`, inherited by tcp proxies only.
    let inherited = "global
    maxconn 1000
defaults
    mode tcp
    stats enable
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen db
    bind :5432
    server a 10.0.0.1:5432
";
    assert_eq!(haproxy("SEC-004", inherited), vec![]);
}

#[test]
fn sec_004_ignores_stats_bound_to_loopback() {
    let local = with_head(
        "listen st
    mode http
    bind 127.0.0.1:9000
    bind [::1]:9000
    stats enable
",
    );
    assert_eq!(haproxy("SEC-004", &local), vec![]);
    let public = local.replace("bind [::1]:9000", "bind :9001");
    assert_eq!(haproxy("SEC-004", &public).len(), 1);
}

#[test]
fn hc_003_uses_fastinter_for_detection() {
    // inter 20s × fall 3 would be 60s; with fastinter 1s the server is down 22s after it
    // fails (one inter to the first failure, then two checks at fastinter).
    let fast = with_head(
        "backend app
    server a 10.0.0.1:80 check inter 20s fastinter 1s fall 3
    server b 10.0.0.2:80 check inter 20s fastinter 1s fall 3
",
    );
    let slow_detection: Vec<_> = haproxy("HC-003", &fast)
        .into_iter()
        .filter(|(_, _, m)| m.contains("declared down"))
        .collect();
    assert_eq!(slow_detection, vec![]);
    // A long fastinter slows detection even with a short inter: 2s + 2 × 20s.
    let slow = with_head(
        "backend app
    server a 10.0.0.1:80 check inter 2s fastinter 20s fall 3
",
    );
    let found = haproxy("HC-003", &slow);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("42s"), "{found:?}");
    assert!(found[0].2.contains("fastinter 20s"), "{found:?}");
}

#[test]
fn hc_003_reports_slow_recovery_from_downinter_at_info() {
    let text = with_head(
        "backend app
    server a 10.0.0.1:80 check downinter 5m rise 2
",
    );
    let found = haproxy("HC-003", &text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, Severity::Info);
    // downinter 5m to the first good check, then one more at fastinter (= inter 2s).
    assert!(
        found[0].2.contains("302s") || found[0].2.contains("5m2s"),
        "{found:?}"
    );
    let quick = text.replace("downinter 5m", "downinter 5s");
    assert_eq!(haproxy("HC-003", &quick), vec![]);
}

#[test]
fn ops_005_leaves_localhost_and_addresses_alone() {
    let text = with_head(
        "backend app
    server a localhost:8080 check
    server b LOCALHOST:8081 check
    server d 127.0.0.1:8083 check
    server e [::1]:8084 check
    server f ipv6@::1:8085 check
    server g ipv4@10.0.0.7:8086 check
",
    );
    assert_eq!(haproxy("OPS-005", &text), vec![]);
    let named = format!("{text}    server h app.internal:8087 check\n");
    let found = haproxy("OPS-005", &named);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("app.internal"));
}

#[test]
fn conn_005_says_queued_requests_wait_forever_without_any_timeout() {
    let text = "global
    maxconn 1000
defaults
    mode http
    timeout client 30s
    timeout server 30s
frontend web
    bind :80
    default_backend app
backend app
    server a 10.0.0.1:80 check maxconn 10
    server b 10.0.0.2:80 check maxconn 10
";
    let found = haproxy("CONN-005", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("forever"), "{found:?}");
    assert!(!found[0].2.contains("unset"), "{found:?}");
    let with_connect = text.replace(
        "timeout client 30s",
        "timeout client 30s\n    timeout connect 4s",
    );
    let found = haproxy("CONN-005", &with_connect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].2.contains("4s") && found[0].2.contains("503"),
        "{found:?}"
    );
}

#[test]
fn ops_001_is_a_warning_only_when_there_is_state_to_keep() {
    let plain = with_head(
        "backend app
    server a 10.0.0.1:80
    server b 10.0.0.2:80
",
    );
    let found = haproxy("OPS-001", &plain);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, Severity::Info);
    for (what, text) in [
        ("check", plain.replace(":80\n", ":80 check\n")),
        (
            "agent-check",
            plain.replace(":80\n", ":80 agent-check agent-port 9999\n"),
        ),
        ("slowstart", plain.replace(":80\n", ":80 slowstart 30s\n")),
        (
            "admin socket",
            plain.replace(
                "    maxconn 1000\n",
                "    maxconn 1000\n    stats socket /run/haproxy.sock mode 600 level admin\n",
            ),
        ),
    ] {
        let found = haproxy("OPS-001", &text);
        assert_eq!(found.len(), 1, "{what}: {found:?}");
        assert_eq!(found[0].1, Severity::Warning, "{what}");
    }
}

#[test]
fn sec_003_haproxy_reports_max_version_below_1_2() {
    let text = with_head(
        "frontend web
    mode http
    bind :443 ssl crt /etc/haproxy/site.pem ssl-max-ver TLSv1.1
    default_backend app
backend app
    server a 10.0.0.1:80
",
    );
    let found = haproxy("SEC-003", &text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("only"), "{found:?}");
    let modern = text.replace("ssl-max-ver TLSv1.1", "ssl-min-ver TLSv1.2");
    assert_eq!(haproxy("SEC-003", &modern), vec![]);
}

// ---- nginx ----

#[test]
fn hc_006_ignores_backups() {
    let text = "events {}
http {
    upstream app {
        server 10.0.0.1:80;
        server 10.0.0.2:80 backup;
    }
    server {
        listen 80;
        location / { proxy_pass http://app; }
    }
}
";
    assert_eq!(nginx("HC-006", text), vec![]);
    let placeholder = text.replace("10.0.0.2:80 backup", "10.0.0.2:80 down");
    let found = nginx("HC-006", &placeholder);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 5);
    // Down placeholder and a backup: still the down entry that matters.
    let both = placeholder.replace(
        "server 10.0.0.2:80 down;",
        "server 10.0.0.3:80 backup;\n        server 10.0.0.2:80 down;",
    );
    assert_eq!(nginx("HC-006", &both).len(), 1);
}

fn keepalive_upstream(location: &str) -> String {
    format!(
        "events {{}}
http {{
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream app {{
        server 10.0.0.1:80;
        server 10.0.0.2:80;
        keepalive 16;
    }}
    server {{
        listen 80;
        location /ws {{
{location}
            proxy_pass http://app;
        }}
    }}
}}
"
    )
}

#[test]
fn conn_013_leaves_websocket_locations_alone() {
    for connection in ["$connection_upgrade", "upgrade", "\"Upgrade\""] {
        let text = keepalive_upstream(&format!(
            "            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection {connection};"
        ));
        assert_eq!(nginx("CONN-013", &text), vec![], "Connection {connection}");
    }
    let plain = keepalive_upstream("            proxy_http_version 1.1;");
    assert_eq!(nginx("CONN-013", &plain).len(), 1);
}

#[test]
fn tmo_003_in_stream_counts_connect_timeouts_only() {
    let text = "events {}
stream {
    upstream db {
        server 10.0.0.1:5432;
        server 10.0.0.2:5432;
        server 10.0.0.3:5432;
    }
    server {
        listen 5432;
        proxy_connect_timeout 5s;
        proxy_timeout 10m;
        proxy_pass db;
    }
}
";
    let found = nginx("TMO-003", text);
    assert_eq!(found.len(), 1, "{found:?}");
    // 3 × proxy_connect_timeout 5s, nothing of a read timeout.
    assert!(found[0].2.contains("15s"), "{found:?}");
    assert!(found[0].2.contains("connecting fails"), "{found:?}");
    let bounded = text.replace(
        "proxy_pass db;",
        "proxy_next_upstream_tries 2;\n        proxy_pass db;",
    );
    assert_eq!(nginx("TMO-003", &bounded), vec![]);
}

#[test]
fn sec_003_nginx_matches_protocol_names_without_case() {
    for protocols in ["tlsv1 TLSv1.2", "TLSV1.1 TLSv1.2", "sslv3 TLSv1.2", "SSLv3"] {
        let text = format!(
            "events {{}}
http {{
    server {{
        listen 443 ssl;
        ssl_protocols {protocols};
    }}
}}
"
        );
        assert_eq!(nginx("SEC-003", &text).len(), 1, "{protocols}");
    }
    let modern = "events {}
http {
    server {
        listen 443 ssl;
        ssl_protocols tlsv1.2 TLSv1.3;
    }
}
";
    assert_eq!(nginx("SEC-003", modern), vec![]);
}

#[test]
fn ops_004_leaves_localhost_upstream_servers_alone() {
    let text = "events {}
http {
    upstream app {
        server localhost:8080;
        server 127.0.0.1:8081;
    }
    server {
        listen 80;
        location / { proxy_pass http://app; }
    }
}
";
    assert_eq!(nginx("OPS-004", text), vec![]);
    let named = text.replace("localhost:8080", "app.internal:8080");
    assert_eq!(nginx("OPS-004", &named).len(), 1);
}

/// nginx never marks the only primary server of an upstream failed (backups are not
/// counted): max_fails and the responses counted as failures do not apply to it.
#[test]
fn hc_004_and_hc_005_leave_single_primary_upstreams_alone() {
    let text = "events {}
http {
    upstream app {
        server 10.0.0.1:80;
        server 10.0.0.2:80 backup;
    }
    server {
        listen 80;
        location / {
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
            proxy_pass http://app;
        }
    }
}
";
    assert_eq!(nginx("HC-004", text), vec![]);
    assert_eq!(nginx("HC-005", text), vec![]);
    let two = text.replace("10.0.0.2:80 backup", "10.0.0.2:80");
    assert_eq!(nginx("HC-004", &two).len(), 1);
    assert_eq!(nginx("HC-005", &two).len(), 1);
    let all_zero = text.replace(
        ";\n        server 10.0.0.2",
        " max_fails=0;\n        server 10.0.0.2",
    );
    let all_zero = all_zero.replace("backup;", "backup max_fails=0;");
    assert_eq!(nginx("HC-004", &all_zero), vec![]);
}

#[test]
fn conn_013_without_keepalive_ignores_websocket_only_upstreams() {
    let text = "events {}
http {
    upstream ws {
        server 10.0.0.1:80;
        server 10.0.0.2:80;
    }
    server {
        listen 80;
        location /socket {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection \"upgrade\";
            proxy_pass http://ws;
        }
    }
}
";
    assert_eq!(nginx("CONN-013", text), vec![]);
    let plain = text.replace(
        "    }\n}\n",
        "        location / { proxy_pass http://ws; }\n    }\n}\n",
    );
    let found = nginx("CONN-013", &plain);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("no keepalive"), "{found:?}");
}

#[test]
fn conn_013_says_when_an_outer_connection_header_is_not_inherited() {
    let text = "events {}
http {
    upstream app {
        server 10.0.0.1:80;
        server 10.0.0.2:80;
        keepalive 16;
    }
    server {
        listen 80;
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        location / {
            proxy_set_header Host $host;
            proxy_pass http://app;
        }
    }
}
";
    let found = nginx("CONN-013", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("not inherited"), "{found:?}");
    let inherited = text.replace("            proxy_set_header Host $host;\n", "");
    assert_eq!(nginx("CONN-013", &inherited), vec![]);
}

/// HAProxy 2.6 derives maxconn from the hard descriptor limit, not the soft `ulimit -n`
/// (measured: `show info` says Maxconn 9986 under `ulimit -Sn 1024` with a hard limit of
/// 20000).
#[test]
fn conn_003_names_the_hard_descriptor_limit() {
    let text = "global
    log stdout local0
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen app
    bind :80
    server a 10.0.0.1:80
";
    let found = haproxy("CONN-003", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("ulimit -Hn"), "{found:?}");
    assert!(!found[0].2.contains("with `ulimit -n 1024`"), "{found:?}");
}

#[test]
fn ops_002_quotes_the_directive_once() {
    let text = "global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 3h
    timeout server 3h
listen mq
    bind :5672
    server a 10.0.0.1:5672 check
";
    let found = haproxy("OPS-002", text);
    assert_eq!(found.len(), 1, "{found:?}");
    // Was "timeout client 3h of 180m and no hard-stop-after".
    assert!(
        found[0]
            .2
            .starts_with("`timeout client 3h` and no hard-stop-after"),
        "{found:?}"
    );
}

/// A `stream` proxy has no HTTP status to give: clients see a closed connection.
#[test]
fn stream_findings_do_not_promise_http_statuses() {
    let text = "events {}
stream {
    upstream db {
        server 10.0.0.1:5432 max_conns=50;
        server 10.0.0.2:5432 max_conns=50;
    }
    server {
        listen 5432;
        proxy_pass db;
    }
}
";
    for rule in ["HC-004", "CONN-012"] {
        let found = nginx(rule, text);
        assert_eq!(found.len(), 1, "{rule}: {found:?}");
        assert!(!found[0].2.contains("502"), "{rule}: {found:?}");
        assert!(found[0].2.contains("closed"), "{rule}: {found:?}");
    }
    let http = text
        .replace("stream {", "http {")
        .replace("proxy_pass db;", "location / { proxy_pass http://db; }");
    for rule in ["HC-004", "CONN-012"] {
        let found = nginx(rule, &http);
        assert_eq!(found.len(), 1, "{rule}: {found:?}");
        assert!(found[0].2.contains("502"), "{rule}: {found:?}");
    }
}

#[test]
fn tcp_backends_are_told_about_connections_not_503s() {
    let text = "global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen db
    bind :5432
    server a 10.0.0.1:5432 check maxconn 50
    server b 10.0.0.2:5432 check maxconn 50
";
    let found = haproxy("CONN-005", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        !found[0].2.contains("503") && !found[0].2.contains("requests"),
        "{found:?}"
    );
    assert!(found[0].2.contains("closed connection"), "{found:?}");
}

/// With `set_real_ip_from unix:` the realip module gives each request the address the
/// proxy in front sends, and ip_hash hashes that: clients are not one pseudo address.
#[test]
fn skew_003_trusts_realip_on_unix_sockets() {
    let text = "events {}
http {
    upstream app {
        ip_hash;
        server 10.0.0.1:80 max_fails=3;
        server 10.0.0.2:80 max_fails=3;
    }
    server {
        listen unix:/run/nginx.sock;
        set_real_ip_from unix:;
        real_ip_header X-Forwarded-For;
        location / { proxy_pass http://app; }
    }
}
";
    assert_eq!(nginx("SKEW-003", text), vec![]);
    let untrusted = text.replace("        set_real_ip_from unix:;\n", "");
    let found = nginx("SKEW-003", &untrusted);
    assert_eq!(found.len(), 1, "{found:?}");
    // The fix no longer suggests hashing a client-chosen header (which HASH-006 reports).
    let (_, findings) = check("t.conf", &untrusted);
    let fix = &findings
        .iter()
        .find(|f| f.rule == "SKEW-003")
        .expect("SKEW-003")
        .fix;
    assert!(!fix.contains("$http_x_forwarded_for"), "{fix}");
}

#[test]
fn skew_001_sees_set_real_ip_from_in_a_server_block() {
    let text = "events {}
http {
    upstream app {
        ip_hash;
        server 10.0.0.1:80;
        server 10.0.0.2:80;
    }
    server {
        listen 80;
        set_real_ip_from 10.0.0.0/8;
        location / { proxy_pass http://app; }
    }
}
";
    let found = nginx("SKEW-001", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        !found[0].2.contains("there is no set_real_ip_from"),
        "{found:?}"
    );
    let without = text.replace("        set_real_ip_from 10.0.0.0/8;\n", "");
    assert!(
        nginx("SKEW-001", &without)[0]
            .2
            .contains("there is no set_real_ip_from")
    );
}

/// Measured on HAProxy 2.6 with `timeout client 1s`, `timeout connect 1s`, `retries 3` and
/// a server refusing connections: over HTTP the client gets a 503 after 3s (all retries
/// ran); in tcp mode the connection is closed after 1s.
#[test]
fn tmo_002_only_where_timeout_client_runs_during_retries() {
    let http = "global
    maxconn 1000
defaults
    mode http
    timeout connect 10s
    timeout client 5s
    timeout server 10s
    timeout http-request 5s
frontend web
    bind :80
    default_backend app
backend app
    server a 10.0.0.1:80 check
    server b 10.0.0.2:80 check
";
    assert_eq!(haproxy("TMO-002", http), vec![]);
    let tcp = http.replace("mode http", "mode tcp");
    let found = haproxy("TMO-002", &tcp);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("43s"), "{found:?}");
}

/// Over HTTP a soft-stop closes idle keep-alive connections at once (measured on 2.6: the
/// old process left within 0.1s with `timeout client 30m`); established tunnels follow
/// `timeout tunnel` once it is set.
#[test]
fn ops_002_follows_the_timeout_that_keeps_connections_alive() {
    let text = "global
    maxconn 1000
defaults
    mode http
    timeout connect 5s
    timeout client 30m
    timeout server 30s
    timeout tunnel 1m
    timeout http-request 5s
frontend web
    bind :80
    default_backend app
backend app
    server a 10.0.0.1:80 check
";
    assert_eq!(haproxy("OPS-002", text), vec![]);
    let no_tunnel = text.replace("    timeout tunnel 1m\n", "");
    let found = haproxy("OPS-002", &no_tunnel);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("tunnels"), "{found:?}");
    let long_tunnel = text.replace("timeout tunnel 1m", "timeout tunnel 1h");
    let found = haproxy("OPS-002", &long_tunnel);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.starts_with("`timeout tunnel 1h`"), "{found:?}");
}

#[test]
fn ops_002_on_a_shared_defaults_line_speaks_for_its_tcp_proxies() {
    let text = "global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
listen stats
    mode http
    bind :8080
    stats enable
    stats auth admin:secret
listen db
    bind :5432
    server a 10.0.0.1:5432 check
";
    let found = haproxy("OPS-002", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("its connections"), "{found:?}");
}

/// allow/deny are inherited from the server block by a location that sets none, and a
/// server listening on loopback only is reached from this machine only.
#[test]
fn sec_004_nginx_sees_inherited_rules_and_loopback_listeners() {
    let inherited = "events {}
http {
    server {
        listen 8080;
        allow 10.0.0.0/8;
        deny all;
        location = /status { stub_status; }
    }
}
";
    assert_eq!(nginx("SEC-004", inherited), vec![]);
    let local = "events {}
http {
    server {
        listen 127.0.0.1:8080;
        listen [::1]:8080;
        location = /status { stub_status; }
    }
}
";
    assert_eq!(nginx("SEC-004", local), vec![]);
    let open = local.replace("listen [::1]:8080;", "listen 8081;");
    assert_eq!(nginx("SEC-004", &open).len(), 1);
    let unguarded = inherited.replace("        allow 10.0.0.0/8;\n        deny all;\n", "");
    assert_eq!(nginx("SEC-004", &unguarded).len(), 1);
}

#[test]
fn worker_rules_leave_conf_d_fragments_to_the_nginx_conf_that_includes_them() {
    let fragment = "upstream app {\n    server 10.0.0.1:80;\n    server 10.0.0.2:80;\n}\nserver {\n    listen 80;\n    location / { proxy_pass http://app; }\n}\n";
    assert!(nginx("CONN-009", fragment).is_empty());
    let whole = format!("events {{ }}\nhttp {{\n{fragment}}}\n");
    assert_eq!(
        nginx("CONN-009", &whole).len(),
        1,
        "a whole file without worker_processes"
    );
}

#[test]
fn skew_008_leaves_random_with_two_draws_alone() {
    let backend = |balance: &str| {
        with_head(&format!(
            "backend app\n    balance {balance}\n    server a 10.0.0.1:80\n    server b 10.0.0.2:80\n    server c 10.0.0.3:80\n"
        ))
    };
    assert!(haproxy("SKEW-008", &backend("random")).is_empty());
    assert!(haproxy("SKEW-008", &backend("random(2)")).is_empty());
    assert_eq!(haproxy("SKEW-008", &backend("random(1)")).len(), 1);
}
