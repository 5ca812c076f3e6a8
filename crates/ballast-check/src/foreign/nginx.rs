//! The catalogue's checks on nginx files: upstreams with their servers, every `proxy_pass`
//! with the directives it inherits, and the worker arithmetic. Each function is one rule.

use std::time::Duration;

use ballast_core::Severity;
use ballast_import::facts::{NginxServer, ProxyPass, Upstream, is_host_name, last, walk};
use ballast_import::nginx::Node;
use ballast_import::{Directive, Version};

use super::{NginxView, looks_like_cache, span};
use crate::Sink;
use crate::context::{human, thousands};

/// The balancing method's name (`round-robin` when none is written).
fn method<'a>(u: &Upstream<'a>) -> &'a str {
    u.method().map_or("round-robin", |d| d.name())
}

/// The `hash` key of an upstream.
fn hash_key<'a>(u: &Upstream<'a>) -> Option<&'a ballast_import::Word> {
    u.method()
        .filter(|d| d.name() == "hash")
        .and_then(|d| d.arg(0))
}

fn consistent(u: &Upstream) -> bool {
    u.method()
        .is_some_and(|d| d.name() == "hash" && d.arg(1).is_some_and(|w| w.text == "consistent"))
}

/// Where to point for a file-wide absence: the `events` block, else the first directive.
fn top_span(v: &NginxView) -> Option<std::ops::Range<usize>> {
    v.facts
        .tree
        .iter()
        .find(|n| n.directive.name() == "events")
        .or_else(|| v.facts.tree.first())
        .map(|n| n.directive.span.clone())
}

fn client_chosen(key: &str) -> bool {
    [
        "$http_",
        "$arg_",
        "$cookie_",
        "${http_",
        "${arg_",
        "${cookie_",
    ]
    .iter()
    .any(|p| key.contains(p))
}

// ---- distribution skew ----

pub fn skew_001(v: &NginxView, sink: &mut Sink) {
    // realip may be set in `http`, `server` or `location`: any of them tells nginx the
    // real client address somewhere.
    let mut all = Vec::new();
    walk(&v.facts.tree, &mut all);
    let realip = all
        .iter()
        .any(|(d, _)| matches!(d.name(), "set_real_ip_from" | "real_ip_header"));
    for u in &v.upstreams {
        let Some(d) = u.method() else { continue };
        let on_address = d.name() == "ip_hash"
            || hash_key(u)
                .is_some_and(|k| k.text == "$remote_addr" || k.text == "$binary_remote_addr");
        if on_address {
            sink.emit_span(
                span(d),
                format!(
                    "upstream `{}` hashes on the client address: behind NAT, a CDN or another load balancer many clients share one address and land on one server{}",
                    u.name.text,
                    if realip { "" } else { " (and there is no set_real_ip_from, so behind a proxy every client is that proxy)" }
                ),
                "hash on something that varies per user (`hash $cookie_session consistent`), or configure set_real_ip_from/real_ip_header for the proxies in front",
            );
        }
    }
}

pub fn skew_002(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        if let Some(d) = u.method().filter(|d| d.name() == "ip_hash") {
            sink.emit_span(
                span(d),
                format!("upstream `{}` uses ip_hash, which hashes only the first three octets of an IPv4 address: a whole /24 (an office NAT, a pod network) lands on one server", u.name.text),
                "use `hash $remote_addr consistent;`",
            );
        }
    }
}

pub fn skew_003(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let Some(d) = u.method().filter(|d| d.name() == "ip_hash") else {
            continue;
        };
        for pass in v.passes_to(&u.name.text) {
            let listens: Vec<_> = pass
                .server
                .iter()
                .filter(|n| n.directive.name() == "listen")
                .collect();
            // `set_real_ip_from unix:` trusts the proxy on the socket: the realip module
            // then replaces the connection's address, which ip_hash reads.
            let real_ip = pass.levels.iter().any(|b| {
                b.iter().any(|n| {
                    n.directive.name() == "set_real_ip_from"
                        && n.directive.arg(0).is_some_and(|w| w.text == "unix:")
                })
            });
            if !real_ip
                && !listens.is_empty()
                && listens.iter().all(|n| {
                    n.directive
                        .arg(0)
                        .is_some_and(|w| w.text.starts_with("unix:"))
                })
            {
                sink.emit_span(
                    span(d),
                    format!("upstream `{}` uses ip_hash but is reached from a server listening only on a unix socket: every client has the same pseudo address, so one server takes all requests", u.name.text),
                    "take the client address from the proxy in front (`set_real_ip_from unix:;` with `real_ip_header X-Forwarded-For;`), or use round-robin",
                );
                break;
            }
        }
    }
}

pub fn skew_004(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let Some(key) = hash_key(u) else { continue };
        let names_of_feeders = || {
            v.passes_to(&u.name.text)
                .flat_map(|p| {
                    p.server
                        .iter()
                        .filter(|n| n.directive.name() == "server_name")
                })
                .flat_map(|n| n.directive.args().iter().map(|w| w.text.clone()))
                .collect::<Vec<_>>()
        };
        let why = if !key.text.contains('$') {
            Some("a constant".to_string())
        } else if key.text == "$scheme" {
            Some("`$scheme`, which has two values".to_string())
        } else if matches!(key.text.as_str(), "$host" | "$server_name" | "$http_host") {
            let names = names_of_feeders();
            (names.len() == 1 && !names[0].contains('*') && !names[0].starts_with('~')).then(|| {
                format!(
                    "`{}` on a virtual host with one name ({})",
                    key.text, names[0]
                )
            })
        } else {
            None
        };
        if let Some(why) = why {
            sink.emit_span(
                Some(key.span.clone()),
                format!("upstream `{}` hashes on {why}: every request has the same key and goes to one server", u.name.text),
                "hash on a key with many values ($request_uri, a session cookie), or use round-robin",
            );
        }
    }
}

pub fn skew_005(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        if let Some(key) = hash_key(u).filter(|k| client_chosen(&k.text)) {
            sink.emit_span(
                Some(key.span.clone()),
                format!("upstream `{}` hashes on `{}`, which a request may lack: those requests get an empty key and lose their affinity", u.name.text, key.text),
                "make sure every client sends it, or give the key a fallback with `map`",
            );
        }
    }
}

pub fn skew_012(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let servers: Vec<NginxServer> = u
            .servers()
            .filter(|s| !s.flag("backup") && !s.flag("down"))
            .collect();
        let (Some(min), Some(max)) = (
            servers.iter().min_by_key(|s| s.weight()),
            servers.iter().max_by_key(|s| s.weight()),
        ) else {
            continue;
        };
        if max.weight() > min.weight().saturating_mul(50) {
            sink.emit_level(
                Severity::Warning,
                max.param("weight").map(|(_, w)| w.span.clone()),
                format!("weights in upstream `{}` go from {} to {}: the small server is nearly idle, and takes {}× its usual load if the large one fails", u.name.text, min.weight(), max.weight(), max.weight() / min.weight().max(1)),
                "keep weight ratios within 1:50; take servers out with `down`",
            );
        }
    }
}

pub fn skew_014(v: &NginxView, sink: &mut Sink) {
    if !v.many_workers() {
        return;
    }
    for u in &v.upstreams {
        if u.directive("zone").is_some() {
            continue;
        }
        let least = u.method().filter(|d| d.name() == "least_conn");
        let limited = u.servers().find_map(|s| s.param("max_conns"));
        if let Some(d) = least {
            sink.emit_span(
                span(d),
                format!("upstream `{}` uses least_conn without a `zone`: each worker counts only its own connections, so the balance is per worker, not global", u.name.text),
                "add `zone <name> 64k;` to the upstream",
            );
        } else if let Some((_, w)) = limited {
            sink.emit_span(
                Some(w.span.clone()),
                format!("upstream `{}` uses max_conns without a `zone` and several workers: each worker keeps its own counters and round-robin state", u.name.text),
                "add `zone <name> 64k;` to the upstream",
            );
        }
    }
}

// ---- connection limits ----

pub fn conn_009(v: &NginxView, sink: &mut Sink) {
    // A conf.d fragment has no main context: its nginx.conf sets the workers.
    if v.whole_file() && v.facts.main("worker_processes").is_none() {
        sink.emit_span(
            top_span(v),
            format!("no worker_processes: nginx runs one worker, so it proxies at most {} concurrent requests (1 × worker_connections {} / 2) on one core", thousands(v.capacity()), v.worker_connections),
            "set `worker_processes auto;`",
        );
    }
}

pub fn conn_010(v: &NginxView, sink: &mut Sink) {
    if !v.whole_file() {
        return;
    }
    let need = v.worker_connections.saturating_mul(2);
    match v.facts.main("worker_rlimit_nofile") {
        Some(d) => {
            let n: u64 = d.arg(0).and_then(|w| w.text.parse().ok()).unwrap_or(0);
            if n < need {
                sink.emit_span(
                    span(d),
                    format!("worker_rlimit_nofile {} is below 2 × worker_connections ({}): workers hit EMFILE before their connection limit", thousands(n), thousands(need)),
                    format!("set worker_rlimit_nofile to at least {}", thousands(need)),
                );
            }
        }
        None if v.worker_connections > 512 => sink.emit_span(
            v.facts.events("worker_connections").and_then(span),
            format!("worker_connections {} with no worker_rlimit_nofile: the workers' descriptor limit is the environment's (often 1,024), so they fail with EMFILE first", thousands(v.worker_connections)),
            format!("set `worker_rlimit_nofile {};` or more", thousands(need)),
        ),
        None => {}
    }
}

pub fn conn_011(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        if u.directive("zone").is_some() {
            continue;
        }
        if let Some((n, w)) = u.servers().find_map(|s| s.param("max_conns")) {
            sink.emit_span(
                Some(w.span.clone()),
                format!("max_conns={n} in upstream `{}` without a `zone`: the limit applies per worker ({} × {n} in all) and restarts with every reload", u.name.text, v.workers),
                "add `zone <name> 64k;` to the upstream",
            );
        }
    }
}

pub fn conn_012(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        if u.directive("queue").is_some() {
            continue;
        }
        let servers: Vec<NginxServer> = u.servers().filter(|s| !s.flag("down")).collect();
        if servers
            .iter()
            .all(|s| s.number("max_conns").is_none_or(|m| m == 0))
        {
            continue;
        }
        let unlimited = servers
            .iter()
            .any(|s| s.number("max_conns").is_none_or(|m| m == 0));
        let sum: u64 = servers
            .iter()
            .filter_map(|s| s.number("max_conns"))
            .fold(0u64, u64::saturating_add);
        let mut msg = format!(
            "upstream `{}` limits servers with max_conns and has no queue: at saturation nginx fails at once with \"no live upstreams\" ({})",
            u.name.text,
            if u.context == "stream" {
                "the connection is closed"
            } else {
                "502"
            }
        );
        if !unlimited && v.whole_file() && sum < v.capacity() {
            msg.push_str(&format!(
                "; the servers take {} requests while nginx admits {}",
                thousands(sum),
                thousands(v.capacity())
            ));
        }
        let fix = if u.context == "stream" {
            "size max_conns for the expected concurrency, and make the clients reconnect with backoff"
        } else {
            "size max_conns for the expected concurrency, and make the clients retry 502 with backoff"
        };
        sink.emit_span(span(u.directive), msg, fix);
    }
}

/// The `Connection` header a `proxy_pass` sends, as set by the `proxy_set_header`s in force.
fn connection_header<'a>(pass: &ProxyPass<'a>) -> Option<&'a ballast_import::Word> {
    pass.effective_all("proxy_set_header")
        .into_iter()
        .rev()
        .find(|d| {
            d.arg(0)
                .is_some_and(|w| w.text.eq_ignore_ascii_case("connection"))
        })
        .and_then(|d| d.arg(1))
}

/// Whether a location passes the client's upgrade on (`Connection upgrade`, or a `map` such
/// as `$connection_upgrade`): an upgraded connection is a tunnel, never reused, so upstream
/// keepalive does not apply to it.
fn is_websocket(pass: &ProxyPass) -> bool {
    connection_header(pass)
        .is_some_and(|w| w.text.eq_ignore_ascii_case("upgrade") || w.text.starts_with('$'))
}

pub fn conn_013(v: &NginxView, sink: &mut Sink) {
    if v.facts.version >= Version::new(1, 29, 7) {
        return;
    }
    for u in v.upstreams.iter().filter(|u| u.context == "http") {
        let keepalive = u
            .body
            .iter()
            .position(|n| n.directive.name() == "keepalive");
        let Some(k) = keepalive else {
            if v.passes_to(&u.name.text).any(|p| !is_websocket(p)) {
                sink.emit_span(
                    span(u.directive),
                    format!("upstream `{}` has no keepalive: before nginx 1.29.7 every request opens a new connection to a server, piling up TIME_WAIT and exhausting ephemeral ports", u.name.text),
                    "add `keepalive 32;` and, where it is proxied, `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";`",
                );
            }
            continue;
        };
        if let Some(m) = u.body.iter().position(|n| {
            matches!(
                n.directive.name(),
                "ip_hash" | "hash" | "least_conn" | "random"
            )
        }) && m > k
        {
            sink.emit_span(
                span(&u.body[k].directive),
                format!("`keepalive` comes before the balancing method in upstream `{}`: before 1.29.7 the method then replaces keepalive's peer handling and upstream keepalive is lost", u.name.text),
                "put the balancing directive before `keepalive`",
            );
        }
        for pass in v.passes_to(&u.name.text) {
            let http11 = pass
                .effective("proxy_http_version")
                .and_then(|d| d.arg(0))
                .is_some_and(|w| w.text == "1.1");
            let connection = connection_header(pass);
            let connection_cleared = connection
                .is_some_and(|w| w.text.is_empty() || w.text.eq_ignore_ascii_case("keep-alive"));
            let websocket = is_websocket(pass);
            // proxy_set_header is inherited only by blocks with none of their own: a
            // `Connection ""` further out is lost as soon as the location sets any header.
            let lost_outer = !connection_cleared
                && pass.levels.iter().any(|b| {
                    b.iter().any(|n| {
                        n.directive.name() == "proxy_set_header"
                            && n.directive
                                .arg(0)
                                .is_some_and(|w| w.text.eq_ignore_ascii_case("connection"))
                            && n.directive.arg(1).is_some_and(|w| w.text.is_empty())
                    })
                });
            if !http11 || !(connection_cleared || websocket) {
                let why = if !http11 {
                    "speaks HTTP/1.0 to it"
                } else if lost_outer {
                    "does not clear the Connection header (it sets proxy_set_header of its own, so the outer `proxy_set_header Connection \"\"` is not inherited)"
                } else {
                    "does not clear the Connection header"
                };
                sink.emit_span(
                    span(pass.directive),
                    format!("upstream `{}` has keepalive but this location {why}: before 1.29.7 the connections are not reused", u.name.text),
                    "add `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";` here",
                );
            }
        }
    }
}

pub fn conn_014(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let Some(d) = u.directive("keepalive") else {
            continue;
        };
        let Some(k) = d.arg(0).and_then(|w| w.text.parse::<u64>().ok()) else {
            continue;
        };
        let idle = k.saturating_mul(v.workers);
        if let Some(min) = u
            .servers()
            .filter_map(|s| s.number("max_conns"))
            .filter(|&m| m > 0)
            .min()
            && idle > min
        {
            sink.emit_span(
                span(d),
                format!("keepalive {k} × {} workers keeps up to {idle} idle connections per server, above the smallest max_conns {min}: idle connections can crowd out new ones", v.workers),
                "keep keepalive × workers below what each server accepts",
            );
        }
    }
}

// ---- timeouts and retries ----

pub fn tmo_003(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let n = u.servers().filter(|s| !s.flag("down")).count() as u32;
        if n < 3 {
            continue;
        }
        let stream = u.context == "stream";
        for pass in v.passes_to(&u.name.text) {
            let tries = pass
                .effective("proxy_next_upstream_tries")
                .and_then(|d| d.arg(0))
                .map_or(0, |w| w.text.parse::<u32>().unwrap_or(0));
            let limit = pass
                .time("proxy_next_upstream_timeout")
                .map_or(Duration::ZERO, |(t, _)| t);
            let off = pass
                .effective("proxy_next_upstream")
                .is_some_and(|d| d.arg(0).is_some_and(|w| w.text == "off"));
            if tries != 0 || !limit.is_zero() || off {
                continue;
            }
            let connect = pass
                .time("proxy_connect_timeout")
                .map_or(Duration::from_secs(60), |(t, _)| t);
            if stream {
                // The stream module moves on only when connecting fails: once connected,
                // the session stays with that server.
                sink.emit_span(
                    span(pass.directive),
                    format!("connections to upstream `{}` may try all {n} servers in turn when connecting fails (proxy_next_upstream_tries and _timeout unset): up to {} (proxy_connect_timeout {} × {n}) before the client is connected or dropped", u.name.text, human(connect.saturating_mul(n)), human(connect)),
                    "set `proxy_next_upstream_tries 2;` and `proxy_next_upstream_timeout 10s;` (or a shorter proxy_connect_timeout)",
                );
            } else {
                let read = pass
                    .time("proxy_read_timeout")
                    .map_or(Duration::from_secs(60), |(t, _)| t);
                sink.emit_span(
                    span(pass.directive),
                    format!("requests to upstream `{}` may try all {n} servers in turn (proxy_next_upstream_tries and _timeout unset): up to {} per request, multiplying load during a brownout", u.name.text, human(connect.saturating_add(read).saturating_mul(n))),
                    "set `proxy_next_upstream_tries 2;` and `proxy_next_upstream_timeout 10s;`",
                );
            }
        }
    }
}

pub fn tmo_004(v: &NginxView, sink: &mut Sink) {
    let mut seen = Vec::new();
    for pass in &v.passes {
        if let Some(d) = pass.effective("proxy_next_upstream")
            && d.args().iter().any(|w| w.text == "non_idempotent")
            && !seen.contains(&d.span)
        {
            seen.push(d.span.clone());
            sink.emit_span(span(d), "proxy_next_upstream non_idempotent retries POST, PATCH and LOCK on another server: their side effects happen twice", "remove non_idempotent, and make writes idempotent before retrying them");
        }
    }
}

// ---- health ----

/// Whether nginx treats the upstream as a single server: one primary `server` line (`down`
/// included, backups not). nginx never marks that server failed, so max_fails and the
/// responses counted as failures do not apply to it. (A host name resolving to several
/// addresses would be several servers; like the model, a line counts as one.)
fn single(u: &Upstream) -> bool {
    u.servers().filter(|s| !s.flag("backup")).count() == 1
}

/// What clients get when no server of the upstream is live: 502s over HTTP, closed
/// connections in `stream`.
fn refusals(u: &Upstream) -> &'static str {
    if u.context == "stream" {
        "closed connections"
    } else {
        "502s"
    }
}

pub fn hc_004(v: &NginxView, sink: &mut Sink) {
    for u in v.upstreams.iter().filter(|u| !single(u)) {
        let servers: Vec<NginxServer> = u.servers().filter(|s| !s.flag("down")).collect();
        if servers.is_empty() {
            continue;
        }
        if servers.iter().all(|s| s.number("max_fails") == Some(0)) {
            sink.emit_span(span(u.directive), format!("every server of upstream `{}` has max_fails=0: a dead server is never taken out", u.name.text), "use max_fails=3 fail_timeout=10s");
        } else if (2..=3).contains(&servers.len())
            && servers
                .iter()
                .all(|s| s.param("max_fails").is_none() && s.param("fail_timeout").is_none())
        {
            sink.emit_span(
                span(u.directive),
                format!("upstream `{}` has {} servers on the defaults max_fails=1 fail_timeout=10s: one error takes a server out for 10s, and a correlated blip gives \"no live upstreams\" {}", u.name.text, servers.len(), refusals(u)),
                "set max_fails=3 fail_timeout=10s (or more servers)",
            );
        }
    }
}

pub fn hc_005(v: &NginxView, sink: &mut Sink) {
    let mut seen = Vec::new();
    for pass in &v.passes {
        let Some(d) = pass.effective("proxy_next_upstream") else {
            continue;
        };
        let codes: Vec<&str> = d
            .args()
            .iter()
            .map(|w| w.text.as_str())
            .filter(|t| {
                matches!(
                    *t,
                    "http_500" | "http_502" | "http_503" | "http_504" | "http_429"
                )
            })
            .collect();
        let Some(u) = pass
            .upstream_name()
            .and_then(|n| v.upstreams.iter().find(|u| u.name.text == n))
        else {
            continue;
        };
        if codes.is_empty()
            || single(u)
            || seen.contains(&d.span)
            || u.servers().all(|s| s.number("max_fails") == Some(0))
        {
            continue;
        }
        seen.push(d.span.clone());
        sink.emit_span(
            span(d),
            format!("proxy_next_upstream {} counts those responses as server failures: one request that fails everywhere (a query of death) takes every server of `{}` out", codes.join(" "), u.name.text),
            "retry only on error and timeout, or set max_fails=0 on servers whose 5xx are the request's fault",
        );
    }
}

pub fn hc_006(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        // nginx counts the primary servers (`down` ones included, backups not) to decide
        // whether an upstream is a single server that is never marked failed.
        let primary: Vec<NginxServer> = u.servers().filter(|s| !s.flag("backup")).collect();
        let live = primary.iter().filter(|s| !s.flag("down")).count();
        let Some(placeholder) = primary.iter().find(|s| s.flag("down")) else {
            continue;
        };
        if live != 1 {
            continue;
        }
        sink.emit_span(
            span(placeholder.directive),
            format!("upstream `{}` has one live server next to `down` entries: nginx no longer treats it as a single server, so one error marks it failed and gives \"no live upstreams\" for fail_timeout", u.name.text),
            "remove the placeholder `down` entries, or add a second live server",
        );
    }
}

pub fn hc_007(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let m = method(u);
        if !matches!(m, "hash" | "ip_hash" | "random") {
            continue;
        }
        for s in u.servers().filter(|s| s.flag("backup")) {
            let w = s
                .directive
                .args()
                .iter()
                .find(|w| w.text == "backup")
                .expect("flag");
            sink.emit_span(
                Some(w.span.clone()),
                format!("`backup` in upstream `{}`, which uses {m}: nginx rejects it when {m} comes first and otherwise reaches the backup only through the round-robin fallback", u.name.text),
                "remove `backup`, or use round-robin or least_conn",
            );
        }
    }
}

// ---- hashing ----

pub fn hash_001(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        let Some(d) = u
            .method()
            .filter(|d| matches!(d.name(), "hash" | "ip_hash"))
        else {
            continue;
        };
        if consistent(u) {
            continue;
        }
        let caches = looks_like_cache(&u.name.text)
            || u.servers().any(|s| looks_like_cache(s.address()))
            || v.passes_to(&u.name.text).any(|p| {
                p.effective("proxy_cache")
                    .is_some_and(|d| d.arg(0).is_some_and(|w| w.text != "off"))
            });
        if caches {
            sink.emit_span(span(d), format!("upstream `{}` is a cache tier hashed without `consistent`: adding or removing one server remaps most keys, the hit ratio collapses and the origin is stampeded", u.name.text), "use `hash <key> consistent;`");
        }
    }
}

pub fn hash_006(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        if let Some(key) =
            hash_key(u).filter(|k| client_chosen(&k.text) || k.text.contains("x_forwarded_for"))
        {
            sink.emit_span(
                Some(key.span.clone()),
                format!("upstream `{}` hashes on `{}`, which the client chooses: anyone can steer load onto one server", u.name.text, key.text),
                "hash on a value nginx or an authenticated layer sets, such as $remote_addr behind set_real_ip_from",
            );
        }
    }
}

// ---- operations ----

pub fn ops_003(v: &NginxView, sink: &mut Sink) {
    if v.facts.main("worker_shutdown_timeout").is_some() {
        return;
    }
    let mut seen = Vec::new();
    for pass in &v.passes {
        let long = pass
            .time("proxy_read_timeout")
            .filter(|(t, _)| *t >= Duration::from_secs(300));
        let upgrade = pass
            .effective_all("proxy_set_header")
            .into_iter()
            .find(|d| {
                d.arg(0)
                    .is_some_and(|w| w.text.eq_ignore_ascii_case("upgrade"))
            });
        let at = long.map(|(_, d)| d).or(upgrade);
        if let Some(d) = at
            && !seen.contains(&d.span)
        {
            seen.push(d.span.clone());
            sink.emit_span(span(d), "long-lived proxied connections and no worker_shutdown_timeout: after each reload old workers live on with them, piling up memory and per-worker limits", "set `worker_shutdown_timeout 60s;` (or what a client can tolerate)");
        }
    }
}

/// Whether `host[:port]` names this machine (RFC 6761: `localhost` never changes address).
fn is_localhost(host_port: &str) -> bool {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

pub fn ops_004(v: &NginxView, sink: &mut Sink) {
    for u in &v.upstreams {
        for s in u
            .servers()
            .filter(|s| s.is_hostname() && !is_localhost(s.address()) && !s.flag("resolve"))
        {
            sink.emit_span(
                span(s.directive),
                format!("server `{}` of upstream `{}` is a host name resolved once at start-up: when its address changes, traffic keeps going to the old one", s.address(), u.name.text),
                "add `resolve` (1.27.3+, with `zone` and a `resolver`), or reload on DNS changes",
            );
        }
    }
    for pass in &v.passes {
        let Some(name) = pass.upstream_name() else {
            continue;
        };
        if v.upstreams.iter().any(|u| u.name.text == name) {
            continue;
        }
        let host = name.rsplit_once(':').map_or(name, |(h, _)| h);
        if is_host_name(name) && !is_localhost(name) {
            sink.emit_span(span(pass.directive), format!("proxy_pass to the host name `{host}` is resolved once at start-up: a changed address is never seen"), "use a variable with a `resolver`, or an upstream with `resolve`");
        }
    }
}

// ---- security ----

pub fn sec_001(v: &NginxView, sink: &mut Sink) {
    for pass in v.passes.iter().filter(|p| p.is_https()) {
        let verified = pass
            .effective("proxy_ssl_verify")
            .and_then(|d| d.arg(0))
            .is_some_and(|w| w.text == "on");
        if !verified {
            sink.emit_span(span(pass.directive), "proxy_pass over https without `proxy_ssl_verify on`: the server's certificate is not checked, so the connection can be intercepted", "add `proxy_ssl_verify on;` and `proxy_ssl_trusted_certificate <bundle>;`");
        }
    }
}

pub fn sec_003(v: &NginxView, sink: &mut Sink) {
    let mut all = Vec::new();
    walk(&v.facts.tree, &mut all);
    for (d, _) in all
        .iter()
        .filter(|(d, _)| d.name() == "ssl_protocols" || d.name() == "proxy_ssl_protocols")
    {
        if d.args()
            .iter()
            // nginx reads protocol names without case (`tlsv1` is TLSv1).
            .any(|w| {
                ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"]
                    .iter()
                    .any(|old| old.eq_ignore_ascii_case(&w.text))
            })
        {
            sink.emit_span(
                span(d),
                format!(
                    "`{}` allows TLS versions below 1.2, which are broken",
                    d.text()
                ),
                format!("`{} TLSv1.2 TLSv1.3;`", d.name()),
            );
        }
    }
}

/// Each `stub_status` with the blocks around it, outermost first (`http`, `server`,
/// `location`...).
fn stub_statuses<'a>(
    nodes: &'a [Node],
    chain: &mut Vec<&'a [Node]>,
    out: &mut Vec<(&'a Directive, Vec<&'a [Node]>)>,
) {
    chain.push(nodes);
    for n in nodes {
        if n.directive.name() == "stub_status" {
            out.push((&n.directive, chain.clone()));
        }
        if let Some(b) = &n.block {
            stub_statuses(b, chain, out);
        }
    }
    chain.pop();
}

/// Whether an nginx `listen` address is reachable from this machine only.
fn local_listen(d: &Directive) -> bool {
    let Some(a) = d.arg(0) else { return false };
    let a = a.text.as_str();
    if a.starts_with("unix:") {
        return true;
    }
    let host = match a.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => a,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn sec_004(v: &NginxView, sink: &mut Sink) {
    let mut found = Vec::new();
    stub_statuses(&v.facts.tree, &mut Vec::new(), &mut found);
    for (d, chain) in found {
        // allow/deny and auth_basic are inherited by blocks that set none of their own: a
        // rule in any enclosing block guards the page.
        let guarded = chain.iter().any(|b| {
            last(b, "allow").is_some()
                || last(b, "deny").is_some()
                || last(b, "auth_basic").is_some()
        });
        // Served by a server that listens on loopback addresses only: only this machine
        // reaches it. The `server` block is the one holding `listen`s.
        let local = chain.iter().rev().find_map(|b| {
            let listens: Vec<&Directive> = b
                .iter()
                .filter(|n| n.directive.name() == "listen")
                .map(|n| &n.directive)
                .collect();
            (!listens.is_empty()).then(|| listens.iter().all(|l| local_listen(l)))
        });
        if !guarded && local != Some(true) {
            sink.emit_span(span(d), "stub_status without allow/deny: anyone who reaches it reads the connection counters", "add `allow 127.0.0.1; deny all;` to the location");
        }
    }
}

pub fn sec_005(v: &NginxView, sink: &mut Sink) {
    let mut all = Vec::new();
    walk(&v.facts.tree, &mut all);
    for (d, _) in all.iter().filter(|(d, _)| d.name() == "set_real_ip_from") {
        if d.arg(0)
            .is_some_and(|w| w.text == "0.0.0.0/0" || w.text == "::/0")
        {
            sink.emit_span(span(d), "set_real_ip_from trusts every address: any client can claim any IP in X-Forwarded-For, skewing ip_hash, limits and logs", "list only the addresses of the proxies in front");
        }
    }
}
