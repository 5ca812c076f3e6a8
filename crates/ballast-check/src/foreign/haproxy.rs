//! The catalogue's checks on HAProxy files: proxies with what they inherit from `defaults`,
//! servers with their `default-server` parameters. Each function is one rule.

use std::time::Duration;

use ballast_core::Severity;
use ballast_import::Version;
use ballast_import::facts::{HaproxyProxy, HaproxyServer};

use super::{HaproxyView, looks_like_cache, span};
use crate::Sink;
use crate::context::{human, thousands};

/// The `balance` algorithm in force, with the version's default when unset.
fn algorithm<'a>(v: &HaproxyView, p: &'a HaproxyProxy) -> &'a str {
    match p.balance() {
        Some((w, _)) => w.split('(').next().unwrap_or(w),
        None if v.facts.version >= Version::new(3, 3, 0) => "random",
        None => "roundrobin",
    }
}

fn hashes(alg: &str) -> bool {
    matches!(
        alg,
        "source" | "uri" | "url_param" | "hdr" | "rdp-cookie" | "hash"
    )
}

/// Where to point for a backend-wide fault: the `balance` line, else the section header.
fn balance_span(p: &HaproxyProxy) -> Option<std::ops::Range<usize>> {
    p.balance()
        .map_or_else(|| Some(p.header.clone()), |(_, d)| span(d))
}

fn factor(p: &HaproxyProxy) -> Option<(u64, &ballast_import::Directive)> {
    p.number("hash-balance-factor").filter(|(n, _)| *n > 0)
}

/// Whether the backend has a choice to make: with fewer than two servers in normal
/// operation no algorithm can skew, pile up or hot-spot anything.
fn balances(p: &HaproxyProxy) -> bool {
    p.active_servers().nth(1).is_some()
}

/// What a client gets when the backend refuses it: an HTTP 503, or a closed connection in
/// `mode tcp`.
fn refusal(p: &HaproxyProxy) -> &'static str {
    if p.http() {
        "a 503"
    } else {
        "a closed connection"
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

// ---- distribution skew ----

pub fn skew_001(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends().filter(|(_, p)| balances(p)) {
        if let Some(("source", d)) = p.balance() {
            let proxied = v
                .facts
                .proxies
                .iter()
                .flat_map(|f| &f.binds)
                .any(|b| b.args().iter().any(|w| w.text == "accept-proxy"));
            sink.emit_span(
                span(d),
                format!(
                    "backend `{}` hashes on the client address: behind NAT, a CDN or another load balancer many clients share one address and land on one server{}",
                    p.name,
                    if proxied { "" } else { " (no bind has accept-proxy, so behind an L4 balancer every client is that balancer)" }
                ),
                "hash on something that varies per user (`balance hdr(X-User)`, a cookie), or use roundrobin/leastconn with cookie persistence",
            );
        }
    }
}

pub fn skew_005(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let alg = algorithm(v, p);
        if matches!(alg, "hdr" | "url_param" | "rdp-cookie") && balances(p) {
            let d = p.balance().map(|(_, d)| d);
            sink.emit_span(
                d.and_then(span),
                format!("backend `{}` hashes on an optional request field (`{alg}`): requests without it fall back to round-robin, losing their affinity", p.name),
                "make sure every client sends the field, or accept that those requests are spread without stickiness",
            );
        }
    }
}

pub fn skew_006(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let Some(("source", d)) = p.balance() else {
            continue;
        };
        if !balances(p) {
            continue;
        }
        let ht = p.setting("hash-type");
        let avalanche = match ht {
            Some(h) => {
                h.args().iter().any(|w| w.text == "avalanche")
                    || (h.arg(0).is_some_and(|w| w.text == "consistent") && h.arg(1).is_none())
            }
            None => false,
        };
        if !avalanche {
            sink.emit_span(
                span(d),
                format!("backend `{}` uses `balance source` without avalanche: the source \"hash\" is the address's words XORed, so neighbouring client addresses cluster on the same servers", p.name),
                "add `hash-type consistent` (which implies avalanche) or `hash-type map-based sdbm avalanche`",
            );
        }
    }
}

pub fn skew_007(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let alg = algorithm(v, p);
        if !hashes(alg) || alg == "source" || p.consistent() {
            continue;
        }
        let ht = p.setting("hash-type");
        let function = ht
            .and_then(|d| d.arg(1))
            .map_or("sdbm", |w| w.text.as_str());
        if ht.is_some_and(|d| d.args().iter().any(|w| w.text == "avalanche")) {
            continue;
        }
        let weights: Vec<u64> = p
            .active_servers()
            .map(|s| s.weight())
            .filter(|&w| w > 0)
            .collect();
        let g = weights.iter().fold(0, |a, &w| gcd(a, w));
        if g == 0 {
            continue;
        }
        let total: u64 = weights.iter().fold(0u64, |t, w| t.saturating_add(w / g));
        let bad = match function {
            "sdbm" => total.is_multiple_of(64),
            "djb2" => total.is_multiple_of(33),
            _ => false,
        };
        if bad {
            sink.emit_span(
                ht.and_then(span).or_else(|| balance_span(p)),
                format!("backend `{}` maps {function} hashes onto a total weight of {total}, a multiple of {}: HAProxy documents that {function} distributes badly then", p.name, if function == "sdbm" { 64 } else { 33 }),
                "add `avalanche` to hash-type, or use wt6 or crc32",
            );
        }
    }
}

pub fn skew_008(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let alg = algorithm(v, p);
        // `random` draws twice by default and keeps the less loaded: the ring's lumps matter
        // only with a single draw.
        let single_draw = alg == "random"
            && p.balance()
                .is_some_and(|(w, _)| w.replace(' ', "") == "random(1)");
        if !(single_draw || p.consistent() && hashes(alg)) {
            continue;
        }
        let servers: Vec<&HaproxyServer> = p.active_servers().collect();
        if servers.len() < 2
            || servers.len() > 16
            || servers.iter().any(|s| s.weight() != 1)
            || factor(p).is_some()
        {
            continue;
        }
        sink.emit_span(
            p.setting("hash-type").and_then(span).or_else(|| balance_span(p)),
            format!("backend `{}` places {} servers of weight 1 on the ring with 16 nodes each: shares are lumpy (so few points per server leave some with much longer arcs than others: at 10 servers the busiest takes about 1.4× the mean)", p.name, servers.len()),
            "raise every weight together (for example to 10 or 100), or set `hash-balance-factor 150`",
        );
    }
}

pub fn skew_009(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if let Some((_, d)) = factor(p)
            && !p.consistent()
            && algorithm(v, p) != "random"
        {
            sink.emit_span(
                span(d),
                format!("backend `{}` sets hash-balance-factor, which only consistent hashing and random read: it has no effect here", p.name),
                "add `hash-type consistent`, or remove the factor",
            );
        }
    }
}

pub fn skew_010(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if algorithm(v, p) != "first" {
            continue;
        }
        for s in p
            .active_servers()
            .filter(|s| s.number("maxconn").is_none_or(|m| m == 0))
        {
            sink.emit_span(
                Some(s.span.clone()),
                format!("`balance first` fills servers in order up to their maxconn, and server `{}` has none: it takes every connection and the others idle", s.name),
                "give every server a `maxconn`",
            );
        }
    }
}

pub fn skew_011(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let backups: Vec<&HaproxyServer> = p.servers.iter().filter(|s| s.backup).collect();
        if backups.len() >= 2 && !p.option_on("allbackups") {
            sink.emit_span(
                Some(backups[1].span.clone()),
                format!("backend `{}` has {} backup servers and no `option allbackups`: on failover only `{}` takes the whole load", p.name, backups.len(), backups[0].name),
                "add `option allbackups` so every backup shares the failover load",
            );
        }
    }
}

pub fn skew_012(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let active: Vec<&HaproxyServer> = p.active_servers().collect();
        if active.is_empty() {
            continue;
        }
        if active.iter().all(|s| s.weight() == 0) {
            sink.emit_span(
                Some(active[0].span_of("weight")),
                format!("every active server of backend `{}` has weight 0: the backend serves nothing but persistent traffic", p.name),
                "give at least one server a positive weight",
            );
            continue;
        }
        let weighted = active.iter().filter(|s| s.weight() > 0);
        let (Some(min), Some(max)) = (
            weighted.clone().min_by_key(|s| s.weight()),
            weighted.max_by_key(|s| s.weight()),
        ) else {
            continue;
        };
        if max.weight() > min.weight().saturating_mul(50) {
            sink.emit_level(
                Severity::Warning,
                Some(max.span_of("weight")),
                format!("weights in backend `{}` go from {} to {}: the small server is nearly idle, and takes {}× its usual load if the large one fails", p.name, min.weight(), max.weight(), max.weight() / min.weight()),
                "keep weight ratios within 1:50",
            );
        }
    }
}

pub fn skew_013(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if algorithm(v, p) != "roundrobin" || !balances(p) {
            continue;
        }
        let tunnel = p.timeout("tunnel");
        if tunnel.is_some() || !p.http() {
            sink.emit_span(
                tunnel.and_then(|(_, d)| span(d)).or_else(|| balance_span(p)),
                format!("backend `{}` balances {} by roundrobin: it hands out new connections in turn whatever each server still holds, so long-lived connections pile up on the slowest servers", p.name, if tunnel.is_some() { "tunnels" } else { "TCP connections" }),
                "consider `balance leastconn` for long-lived connections",
            );
        }
    }
}

// ---- connection and queue limits ----

pub fn conn_001(v: &HaproxyView, sink: &mut Sink) {
    if v.facts.version >= Version::new(2, 0, 0) {
        return;
    }
    for (_, p) in v.frontends() {
        if p.number("maxconn").is_none() && !p.binds.is_empty() {
            sink.emit_span(
                Some(p.header.clone()),
                format!("{} `{}` has no maxconn: before HAProxy 2.0 it is capped at 2,000 connections whatever the global maxconn says", p.kind, p.name),
                "set `maxconn` in the frontend or in `defaults`",
            );
        }
    }
}

pub fn conn_002(v: &HaproxyView, sink: &mut Sink) {
    let Some(global) = v.global_maxconn() else {
        return;
    };
    for (_, p) in v.frontends() {
        if let Some((n, d)) = p.number("maxconn")
            && n > global
        {
            sink.emit_span(
                span(d),
                format!("{} `{}` admits {} connections but the global maxconn is {}: the global cap is reached first and stops accepting for every proxy", p.kind, p.name, thousands(n), thousands(global)),
                "keep each frontend's maxconn at or below the global maxconn",
            );
        }
    }
}

pub fn conn_003(v: &HaproxyView, sink: &mut Sink) {
    let maxconn = v.facts.global("maxconn");
    let ulimit = v.facts.global("ulimit-n");
    let at = v.facts.global_header.clone();
    match (maxconn, ulimit) {
        // HAProxy 2.6 raises its soft descriptor limit to the hard one and derives maxconn
        // from that (`show info` reports Maxconn 9986 under `ulimit -Sn 1024 -Hn 20000`).
        (None, None) => sink.emit_span(
            at,
            if v.facts.version >= Version::new(2, 6, 0) {
                "no global maxconn and no ulimit-n: HAProxy derives its connection limit from the hard file-descriptor limit (`ulimit -Hn`) of wherever it runs, about half of it: about 500 connections where that is 1,024, half a million where it is a million, so the same file admits very different loads on different machines"
            } else {
                "no global maxconn and no ulimit-n: HAProxy derives its connection limit from the file-descriptor limit of wherever it runs, about half of it (about 500 connections where `ulimit -n` is 1,024), so the same file admits very different loads on different machines"
            },
            "set `maxconn` in `global` (and `ulimit-n` if the environment's limit is low)",
        ),
        (Some(m), Some(u)) => {
            let m: u64 = m.arg(0).and_then(|w| w.text.parse().ok()).unwrap_or(0);
            let n: u64 = u.arg(0).and_then(|w| w.text.parse().ok()).unwrap_or(0);
            if n < m.saturating_mul(2) {
                sink.emit_span(
                    span(u),
                    format!("ulimit-n {} is below twice the global maxconn {}: each proxied connection needs two descriptors, so accept fails first", thousands(n), thousands(m)),
                    "remove ulimit-n (HAProxy computes it) or make it at least 2 × maxconn plus a margin",
                );
            }
        }
        _ => {}
    }
}

pub fn conn_004(v: &HaproxyView, sink: &mut Sink) {
    for (i, p) in v.backends() {
        let active: Vec<&HaproxyServer> = p.active_servers().collect();
        if active.is_empty() {
            continue;
        }
        let limits: Option<Vec<u64>> = active
            .iter()
            .map(|s| {
                let c = s.number("maxconn").filter(|&c| c > 0)?;
                let q = s.number("maxqueue").filter(|&q| q > 0)?;
                Some(c.saturating_add(q))
            })
            .collect();
        let (Some(limits), Some(admitted)) = (limits, v.admitted(i)) else {
            continue;
        };
        let hold: u64 = limits.iter().fold(0u64, |t, &l| t.saturating_add(l));
        let largest = limits.iter().copied().max().unwrap_or(0);
        if hold < admitted {
            sink.emit_span(
                Some(p.header.clone()),
                format!("backend `{}` holds {} connections (servers' maxconn + maxqueue) but its frontends admit {}: the other {} get {} at saturation", p.name, thousands(hold), thousands(admitted), thousands(admitted - hold), refusal(p)),
                "raise the servers' maxconn/maxqueue or add servers, or lower the frontends' maxconn to what the backend can hold",
            );
        } else if active.len() > 1 && hold - largest < admitted {
            sink.emit_span(
                Some(p.header.clone()),
                format!("with its largest server down, backend `{}` holds {} connections but its frontends admit {}: one failure leaves {} with nowhere to go", p.name, thousands(hold - largest), thousands(admitted), thousands(admitted - (hold - largest))),
                "size the servers so that the backend survives losing its largest one",
            );
        }
    }
}

pub fn conn_005(v: &HaproxyView, sink: &mut Sink) {
    for (i, p) in v.backends() {
        let limited = p
            .servers
            .iter()
            .find(|s| s.number("maxconn").is_some_and(|m| m > 0));
        let Some(server) = limited else { continue };
        match p.timeout("queue") {
            // Unset, HAProxy waits `timeout connect` in the queue; with neither, forever.
            None => match p.timeout("connect").filter(|(t, _)| !t.is_zero()) {
                Some((connect, _)) => sink.emit_span(
                    Some(server.span_of("maxconn")),
                    format!("servers of backend `{}` have maxconn but there is no `timeout queue`: queued {} wait only `timeout connect` ({}) before {}, so a brief saturation becomes errors", p.name, if p.http() { "requests" } else { "connections" }, human(connect), refusal(p)),
                    "set `timeout queue` to how long a client may wait for a slot (and below timeout client)",
                ),
                None => sink.emit_span(
                    Some(server.span_of("maxconn")),
                    format!("servers of backend `{}` have maxconn but neither `timeout queue` nor `timeout connect` is set: when the servers are full, {} wait in the queue forever, holding their client connections until maxconn is exhausted", p.name, if p.http() { "requests" } else { "connections" }),
                    "set `timeout queue` to how long a client may wait for a slot (below timeout client), and `timeout connect`",
                ),
            },
            Some((q, d)) => {
                if let Some((c, _)) = v.client_timeout(i)
                    && q > c
                {
                    sink.emit_span(
                        span(d),
                        format!("timeout queue {} exceeds timeout client {}: clients give up while their requests still wait, and are served after they left", human(q), human(c)),
                        "keep timeout queue below timeout client",
                    );
                }
            }
        }
    }
}

pub fn conn_006(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if !hashes(algorithm(v, p))
            || !balances(p)
            || factor(p).is_some()
            || p.setting("hash-preserve-affinity").is_some()
        {
            continue;
        }
        if let Some(s) = p
            .active_servers()
            .find(|s| s.number("maxconn").is_some_and(|m| m > 0))
        {
            sink.emit_span(
                Some(s.span_of("maxconn")),
                format!("backend `{}` hashes requests to servers with a maxconn: a hot key queues on its one server and gets 503 while the others idle, and redispatch does not help", p.name),
                "set `hash-balance-factor 150` with `hash-type consistent` (or `hash-preserve-affinity` on 3.2+)",
            );
        }
    }
}

pub fn conn_007(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if p.setting("fullconn").is_some() {
            continue;
        }
        if let Some(s) = p.servers.iter().find(|s| s.param("minconn").is_some()) {
            sink.emit_span(
                Some(s.span_of("minconn")),
                format!("server `{}` has minconn but backend `{}` has no fullconn: it defaults to 10% of its frontends' maxconn, so the dynamic limit stays near minconn for long", s.name, p.name),
                "set `fullconn` in the backend explicitly",
            );
        }
    }
}

pub fn conn_008(v: &HaproxyView, sink: &mut Sink) {
    let Some(d) = v.facts.global("nbproc") else {
        return;
    };
    let n: u64 = d.arg(0).and_then(|w| w.text.parse().ok()).unwrap_or(1);
    if n > 1 {
        sink.emit_span(
            span(d),
            format!("nbproc {n}: maxconn is per process, so the servers see up to {n}× their maxconn; and moving to threads (nbproc is gone since 2.5) divides capacity by {n} unless maxconn is retuned"),
            "use `nbthread` and size maxconn for the one process",
        );
    }
}

// ---- timeouts and retries ----

pub fn tmo_001(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.proxies() {
        let mut missing = Vec::new();
        if p.is_frontend() && p.timeout("client").is_none_or(|(t, _)| t.is_zero()) {
            missing.push("client");
        }
        if p.is_backend() && !p.servers.is_empty() {
            for t in ["connect", "server"] {
                if p.timeout(t).is_none_or(|(t, _)| t.is_zero()) {
                    missing.push(t);
                }
            }
        }
        if !missing.is_empty() {
            sink.emit_span(
                Some(p.header.clone()),
                format!("{} `{}` has no timeout {}: stalled connections hold their slots forever until maxconn is exhausted", p.kind, p.name, missing.join(", no timeout ")),
                format!("set {} (in `defaults` for every proxy)", missing.iter().map(|m| format!("`timeout {m}`")).collect::<Vec<_>>().join(", ")),
            );
        }
    }
}

pub fn tmo_002(v: &HaproxyView, sink: &mut Sink) {
    // Only `mode tcp` runs the client's inactivity timeout while HAProxy retries: in HTTP
    // mode the request has been read and the client is expected to send nothing, so the
    // retries complete (measured on 2.6: `timeout client 1s`, three refused retries, a 503
    // after 3s over HTTP, the connection closed after 1s in tcp mode).
    for (i, p) in v.backends().filter(|(_, p)| !p.http()) {
        let Some((connect, cd)) = p.timeout("connect") else {
            continue;
        };
        let retries = p.number("retries");
        let r = retries.as_ref().map_or(3, |(n, _)| *n);
        let turn = connect.min(Duration::from_secs(1));
        // Numbers from the file can be anything: saturate rather than overflow.
        let r32 = u32::try_from(r).unwrap_or(u32::MAX);
        let worst = connect
            .saturating_mul(r32.saturating_add(1))
            .saturating_add(turn.saturating_mul(r32));
        if let Some((client, _)) = v.client_timeout(i)
            && worst > client
        {
            sink.emit_span(
                retries.and_then(|(_, d)| span(d)).or_else(|| span(cd)),
                format!("backend `{}`: {} retries of timeout connect {} take up to {} in the worst case, beyond timeout client {}: the idle client is dropped before the last retry", p.name, r, human(connect), human(worst), human(client)),
                "lower retries or timeout connect so that (retries+1) × connect fits in timeout client",
            );
        }
    }
}

pub fn tmo_006(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.frontends() {
        if p.http() && p.timeout("http-request").is_none() && !p.binds.is_empty() {
            sink.emit_span(
                Some(p.header.clone()),
                format!("{} `{}` is HTTP with no `timeout http-request`: only the inactivity timeout client bounds a request's headers, so slowloris clients hold slots", p.kind, p.name),
                "set `timeout http-request 10s` (in `defaults`)",
            );
        }
    }
}

// ---- health checks ----

pub fn hc_001(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if p.servers.len() < 2 {
            continue;
        }
        for s in &p.servers {
            if !s.check && s.param("track").is_none() {
                sink.emit_span(
                    Some(s.span.clone()),
                    format!("server `{}` of backend `{}` has no `check`: it is always considered up, so when it dies its share of requests fails", s.name, p.name),
                    "add `check` to the server (or to `default-server`)",
                );
            }
        }
    }
}

pub fn hc_002(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let httpchk = p.option("httpchk").filter(|(on, _)| *on).map(|(_, d)| d);
        let rules = p.settings().find(|d| d.name() == "http-check");
        let checked = p.servers.iter().any(|s| s.check);
        if let Some(d) = httpchk.or(rules)
            && !checked
            && !p.servers.is_empty()
        {
            sink.emit_span(
                span(d),
                format!("backend `{}` configures HTTP checks but no server has `check`: no check ever runs", p.name),
                "add `check` to the servers",
            );
        } else if let Some(d) = rules
            && httpchk.is_none()
        {
            sink.emit_span(
                span(d),
                format!("backend `{}` has http-check rules without `option httpchk`: they are ignored and checks stay at the TCP level", p.name),
                "add `option httpchk`",
            );
        }
    }
}

pub fn hc_003(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        for s in p.servers.iter().filter(|s| s.check) {
            let inter = s.time("inter").unwrap_or(Duration::from_secs(2));
            // HAProxy checks every `inter` while a server is fully up, every `fastinter`
            // in transition (after a first failure until `fall`, after a first success
            // until `rise`) and every `downinter` while fully down; unset, both are inter.
            let fastinter = s.time("fastinter").unwrap_or(inter);
            let downinter = s.time("downinter").unwrap_or(inter);
            let fall = s.number("fall").unwrap_or(3);
            let rise = s.number("rise").unwrap_or(2);
            let after_first = |first: Duration, count: u64| {
                let more = u32::try_from(count.saturating_sub(1)).unwrap_or(u32::MAX);
                first.saturating_add(fastinter.saturating_mul(more))
            };
            let detect = after_first(inter, fall);
            if detect > Duration::from_secs(30) {
                let later = after_first(Duration::ZERO, fall);
                let how = if fall > 1 && fastinter != inter {
                    format!(
                        "up to inter {} to the first failed check, then {} more at fastinter {}",
                        human(inter),
                        fall.saturating_sub(1),
                        human(fastinter)
                    )
                } else {
                    format!("inter {} × fall {fall}", human(inter))
                };
                let at = if later > inter && s.param("fastinter").is_some() {
                    "fastinter"
                } else {
                    "inter"
                };
                sink.emit_span(
                    Some(s.span_of(at)),
                    format!("server `{}` is declared down only about {} after it fails ({how}): requests keep failing on it meanwhile", s.name, human(detect)),
                    "keep the detection time under about 10s (for example inter 2s fall 3, or a short fastinter)",
                );
            }
            let recover = after_first(downinter, rise);
            if recover > Duration::from_secs(120) {
                sink.emit_level(
                    Severity::Info,
                    Some(s.span_of(if s.param("downinter").is_some() { "downinter" } else { "inter" })),
                    format!("server `{}` comes back only about {} after it recovers (up to downinter {} to the first good check, then {} more at fastinter {} for rise {rise}): the backend runs without it meanwhile", s.name, human(recover), human(downinter), rise.saturating_sub(1), human(fastinter)),
                    "shorten downinter (or inter), or set a short fastinter",
                );
            }
            if fall == 1 || rise == 1 {
                let which = if fall == 1 { "fall" } else { "rise" };
                sink.emit_span(
                    Some(s.span_of(which)),
                    format!("server `{}` has {which} 1: a single check result flips its state, so it flaps on any blip", s.name),
                    "use fall 3 and rise 2 (the defaults)",
                );
            }
            if let Some(slow) = s.time("slowstart")
                && slow <= inter
            {
                sink.emit_span(
                    Some(s.span_of("slowstart")),
                    format!("server `{}` has slowstart {} not above inter {}: the ramp has no steps and the server takes full load at once", s.name, human(slow), human(inter)),
                    "make slowstart several times inter (for example 30s with inter 2s)",
                );
            }
        }
    }
}

pub fn hc_008(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let cookie = p.setting("cookie");
        let sticky = cookie.is_some() || hashes(algorithm(v, p));
        if !sticky || p.servers.len() < 2 {
            continue;
        }
        if let Some((0, d)) = p.number("retries") {
            sink.emit_span(span(d), format!("backend `{}` pins clients to servers with retries 0: a dead server's clients are never moved", p.name), "set retries 3 and `option redispatch`");
        } else if !p.option_on("redispatch") {
            sink.emit_span(
                cookie.and_then(span).or_else(|| balance_span(p)),
                format!("backend `{}` pins clients to servers ({}) without `option redispatch`: clients of a dead server keep being sent to it until its check fails, and retries stay on it", p.name, if cookie.is_some() { "cookie persistence" } else { "hashing" }),
                "add `option redispatch`",
            );
        }
    }
}

// ---- hashing ----

pub fn hash_001(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let alg = algorithm(v, p);
        if !hashes(alg) || p.consistent() {
            continue;
        }
        if looks_like_cache(&p.name)
            || p.servers
                .iter()
                .any(|s| looks_like_cache(&s.name) || looks_like_cache(&s.address.text))
        {
            sink.emit_span(
                balance_span(p),
                format!("backend `{}` looks like a cache tier hashed map-based: adding or removing one server remaps most keys, the hit ratio collapses and the origin is stampeded", p.name),
                "add `hash-type consistent`",
            );
        }
    }
}

pub fn hash_004(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if !p.consistent() || !hashes(algorithm(v, p)) {
            continue;
        }
        if p.servers
            .iter()
            .any(|s| s.param("id").is_none() && s.param("hash-key").is_none())
        {
            sink.emit_span(
                p.setting("hash-type").and_then(span),
                format!("backend `{}` places servers on the ring by their id, which is their position: another balancer listing them in another order (or an inserted server) maps keys differently", p.name),
                "give servers explicit `id`s, or `hash-key addr-port` (2.8+)",
            );
        }
    }
}

pub fn hash_005(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if !(p.consistent() && hashes(algorithm(v, p)) && balances(p)) {
            continue;
        }
        match factor(p) {
            None => sink.emit_span(
                p.setting("hash-type").and_then(span),
                format!("backend `{}` hashes consistently without a bounded load: one hot key overloads its owner", p.name),
                "set `hash-balance-factor 150`",
            ),
            Some((f, d)) if !(125..=200).contains(&f) => sink.emit_level(
                Severity::Info,
                span(d),
                format!("hash-balance-factor {f} is outside the documented reasonable range 125–200"),
                "use a factor between 125 and 200",
            ),
            Some(_) => {}
        }
    }
}

pub fn hash_006(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if let Some((w, d)) = p.balance()
            && (w.starts_with("hdr(") || w == "url_param")
            && balances(p)
        {
            sink.emit_span(
                span(d),
                format!("backend `{}` hashes on `{w}`, which the client chooses: anyone can steer load onto one server", p.name),
                "hash on a value the balancer or an authenticated layer sets, or bound the load with hash-type consistent and hash-balance-factor",
            );
        }
    }
}

// ---- operations ----

pub fn ops_001(v: &HaproxyView, sink: &mut Sink) {
    if v.facts.proxies.iter().all(|p| p.servers.is_empty()) {
        return;
    }
    let state_file = v.facts.global("server-state-file").is_some();
    let loads = v
        .facts
        .proxies
        .iter()
        .any(|p| p.setting("load-server-state-from-file").is_some());
    if state_file && loads {
        return;
    }
    // The state is worth keeping when it differs from the file's: health learnt by checks
    // (and a slowstart ramp), or weights and drains set at run time over an admin socket
    // or the stats page's admin mode. Without any, a reload loses little: say so softly.
    let servers = || v.facts.proxies.iter().flat_map(|p| &p.servers);
    let checked = servers().any(|s| s.check || s.flag("agent-check"));
    let ramped = servers().any(|s| s.param("slowstart").is_some());
    let admin_socket = v.facts.global.iter().any(|d| {
        d.name() == "stats"
            && d.arg(0).is_some_and(|w| w.text == "socket")
            && d.args()
                .windows(2)
                .any(|w| w[0].text == "level" && w[1].text == "admin")
    });
    let admin_page = v.facts.proxies.iter().any(|p| {
        p.settings()
            .any(|d| d.name() == "stats" && d.arg(0).is_some_and(|w| w.text == "admin"))
    });
    let mut kept = Vec::new();
    if checked {
        kept.push("health");
    }
    if ramped {
        kept.push("slowstart ramps");
    }
    if admin_socket || admin_page {
        kept.push("drains and weights set at run time");
    }
    let at = v
        .facts
        .global_header
        .clone()
        .or_else(|| v.facts.proxies.first().map(|p| p.header.clone()));
    let fix = "set `server-state-file` in global and `load-server-state-from-file global` in defaults, and save the state (`show servers state` on the stats socket) before each reload";
    if kept.is_empty() {
        sink.emit_level(
            Severity::Info,
            at,
            "no server-state-file with load-server-state-from-file: a reload starts every server from the file's settings (nothing here checks health or changes weights at run time, so little is lost today)",
            fix,
        );
    } else {
        sink.emit_span(
            at,
            format!("no server-state-file with load-server-state-from-file: a reload forgets {}, so failed or drained servers come back into rotation", kept.join(", ")),
            fix,
        );
    }
}

pub fn ops_002(v: &HaproxyView, sink: &mut Sink) {
    if v.facts.global("hard-stop-after").is_some() {
        return;
    }
    // A `defaults` line is inherited by many proxies: report it once, saying the worst of
    // what it does to any of them.
    let mut lines: Vec<(&ballast_import::Directive, bool)> = Vec::new();
    for (_, p) in v.proxies() {
        // What keeps an old process alive is an established connection: `timeout tunnel`
        // governs those once set (it supersedes client and server), else timeout client.
        // Over HTTP a soft-stop closes idle keep-alive connections at once (measured on
        // 2.6: the old process left within 0.1s despite `timeout client 30m`), so there
        // only tunnels (WebSocket, CONNECT) stay, on timeout client when no tunnel is set.
        let (tunnel, (t, d)) = match p.timeout("tunnel") {
            Some(t) => (true, t),
            None => match p.timeout("client") {
                Some(t) => (false, t),
                None => continue,
            },
        };
        if t <= Duration::from_secs(300) {
            continue;
        }
        let every_connection = tunnel || !p.http();
        match lines.iter_mut().find(|(l, _)| l.span == d.span) {
            Some((_, all)) => *all |= every_connection,
            None => lines.push((d, every_connection)),
        }
    }
    for (d, every_connection) in lines {
        let what = if every_connection {
            "its connections"
        } else {
            "its tunnels (WebSocket and CONNECT use timeout client when no `timeout tunnel` is set)"
        };
        sink.emit_span(
            span(d),
            format!("`{}` and no hard-stop-after: after each reload the old process lives on as long as {what} do, piling up memory, descriptors and connections to the servers", d.text()),
            "set `hard-stop-after` in global (for example 30m)",
        );
    }
}

pub fn ops_005(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        let mut reported: Option<&std::ops::Range<usize>> = None;
        for s in p
            .servers
            .iter()
            .filter(|s| needs_resolving(s) && s.param("resolvers").is_none())
        {
            // A server-template's servers share one line: report it once.
            if reported == Some(&s.span) {
                continue;
            }
            reported = Some(&s.span);
            sink.emit_span(
                Some(s.span.clone()),
                format!("server `{}` is a host name ({}) without `resolvers`: it is resolved once at start-up, and a changed address is never seen", s.name, s.address.text),
                "add a `resolvers` section and `resolvers <name>` on the server",
            );
        }
    }
}

/// Whether a server's address is a name whose address can change: not an IP, not a socket,
/// and not `localhost` (RFC 6761: it always means this machine).
fn needs_resolving(s: &HaproxyServer) -> bool {
    if !s.is_fqdn() {
        return false;
    }
    let t = s.address.text.as_str();
    // `ipv4@name` and `ipv6@name` are resolved; other prefixes (`abns@`, `sockpair@`, `fd@`)
    // are not network addresses.
    let t = match t.split_once('@') {
        Some(("ipv4" | "ipv6" | "tcp" | "tcp4" | "tcp6", rest)) => rest,
        Some(_) => return false,
        None => t,
    };
    let host = t
        .rsplit_once(':')
        .map_or(t, |(h, _)| h)
        .to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host != "localhost" && !host.ends_with(".localhost")
}

pub fn ops_006(v: &HaproxyView, sink: &mut Sink) {
    for (_, p) in v.backends() {
        if algorithm(v, p) == "roundrobin" && p.servers.len() > 4095 {
            sink.emit_span(
                balance_span(p),
                format!(
                    "backend `{}` has {} servers; roundrobin supports at most 4095",
                    p.name,
                    p.servers.len()
                ),
                "split the backend, or use another algorithm",
            );
        }
    }
}

pub fn ops_007(v: &HaproxyView, sink: &mut Sink) {
    if v.facts.global("zero-warning").is_none() {
        sink.emit_span(
            v.facts.global_header.clone(),
            "no `zero-warning`: HAProxy's own warnings (missing timeouts, ignored rules) do not fail a reload or CI",
            "add `zero-warning` to global, and run `haproxy -c -dD` in CI",
        );
    }
}

// ---- security ----

pub fn sec_002(v: &HaproxyView, sink: &mut Sink) {
    if let Some(d) = v.facts.global("ssl-server-verify")
        && d.arg(0).is_some_and(|w| w.text == "none")
    {
        sink.emit_span(span(d), "ssl-server-verify none: no server certificate is checked, so TLS to the servers can be intercepted", "remove it and give servers a `ca-file`");
    }
    for (_, p) in v.backends() {
        for s in &p.servers {
            if s.param("verify")
                .and_then(|q| q.value.as_ref())
                .is_some_and(|w| w.text == "none")
                && s.flag("ssl")
            {
                sink.emit_span(
                    Some(s.span_of("verify")),
                    format!("server `{}` uses TLS with `verify none`: its certificate is not checked, so the connection can be intercepted", s.name),
                    "use `verify required ca-file <bundle>`",
                );
            }
        }
    }
}

pub fn sec_003(v: &HaproxyView, sink: &mut Sink) {
    // HAProxy itself refuses other spellings than `TLSv1.0`; matching without case still
    // reads what the file means.
    let weak = |t: &str| {
        ["SSLv3", "TLSv1.0", "TLSv1.1"]
            .iter()
            .any(|w| w.eq_ignore_ascii_case(t))
    };
    let allows_old = |args: &[ballast_import::Word]| -> Option<&'static str> {
        args.windows(2)
            .find_map(|w| {
                let key = match w[0].text.as_str() {
                    "ssl-min-ver" => "ssl-min-ver",
                    "ssl-max-ver" => "ssl-max-ver",
                    _ => return None,
                };
                weak(&w[1].text).then_some(key)
            })
            .or_else(|| {
                args.iter()
                    .find(|w| {
                        ["force-sslv3", "force-tlsv10", "force-tlsv11"]
                            .iter()
                            .any(|f| f.eq_ignore_ascii_case(&w.text))
                    })
                    .map(|_| "force")
            })
    };
    let report = |at, what: &str, key: &str, sink: &mut Sink| {
        let only = if key == "ssl-max-ver" { "only " } else { "" };
        sink.emit_span(
            at,
            format!("{what} allows {only}TLS versions below 1.2, which are broken"),
            "use `ssl-min-ver TLSv1.2` (and no ssl-max-ver or force- option below it)",
        );
    };
    for d in &v.facts.global {
        if d.name().starts_with("ssl-default-")
            && let Some(key) = allows_old(d.args())
        {
            report(span(d), d.name(), key, sink);
        }
    }
    for p in &v.facts.proxies {
        for b in &p.binds {
            if let Some(key) = allows_old(b.args()) {
                report(span(b), "this bind", key, sink);
            }
        }
    }
}

/// Whether a `bind` address is reachable from this machine only (loopback or a unix socket).
fn loopback(addr: &str) -> bool {
    if addr.starts_with('/') || addr.starts_with("unix@") || addr.starts_with("abns@") {
        return true;
    }
    let addr = addr.trim_start_matches("ipv4@").trim_start_matches("ipv6@");
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn sec_004(v: &HaproxyView, sink: &mut Sink) {
    for (i, p) in v.proxies() {
        // HAProxy ignores `stats` outside `mode http` (and says so at start-up).
        if !p.http() {
            continue;
        }
        // Served only on loopback addresses: only this machine reaches the page.
        let binds: Vec<&ballast_import::Directive> = if p.is_frontend() {
            p.binds.iter().collect()
        } else {
            v.feeders(i).flat_map(|f| &f.binds).collect()
        };
        if !binds.is_empty()
            && binds
                .iter()
                .all(|b| b.arg(0).is_some_and(|w| loopback(&w.text)))
        {
            continue;
        }
        let stats = |w: &str| {
            p.settings()
                .find(|d| d.name() == "stats" && d.arg(0).is_some_and(|a| a.text == w))
        };
        let enabled = stats("enable").or_else(|| stats("uri"));
        if let Some(d) = enabled
            && stats("auth").is_none()
            && stats("http-request").is_none()
        {
            sink.emit_span(
                span(d),
                format!("{} `{}` serves the stats page without `stats auth`: anyone who reaches it sees the topology{}", p.kind, p.name, if stats("admin").is_some() { ", and can disable servers" } else { "" }),
                "add `stats auth <user>:<password>` or restrict it with an ACL",
            );
        }
    }
}
