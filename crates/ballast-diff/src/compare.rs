//! The semantic diff of two models: pools by name, servers within a pool by name and then by
//! address (so an HAProxy `server web1 10.0.0.1:80` and an nginx `server 10.0.0.1:80` are the
//! same server), listeners by address, and the global limit. Each change carries the spans of
//! what it compares on both sides.

use std::ops::Range;

use ballast_core::Loaded;
use ballast_core::config::{Config, Pool, Server};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `global`, `pool app`, `listener 0.0.0.0:80`.
    pub scope: String,
    pub kind: ChangeKind,
    /// What changed: `server web3`, `weight of server web1`, `algorithm`.
    pub what: String,
    pub old: Option<String>,
    pub new: Option<String>,
    #[serde(skip)]
    pub old_span: Option<Range<usize>>,
    #[serde(skip)]
    pub new_span: Option<Range<usize>>,
}

/// Servers of two versions of a pool paired: `(old index, new index)`, with `None` for a
/// server present on one side only.
pub fn pair_servers(old: &[Server], new: &[Server]) -> Vec<(Option<usize>, Option<usize>)> {
    let mut taken = vec![false; new.len()];
    let mut pairs: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    let mut unmatched = Vec::new();
    for (i, s) in old.iter().enumerate() {
        match new
            .iter()
            .enumerate()
            .position(|(j, n)| !taken[j] && n.name == s.name)
        {
            Some(j) => {
                taken[j] = true;
                pairs.push((Some(i), Some(j)));
            }
            None => unmatched.push(i),
        }
    }
    for i in unmatched {
        match new
            .iter()
            .enumerate()
            .position(|(j, n)| !taken[j] && n.address == old[i].address)
        {
            Some(j) => {
                taken[j] = true;
                pairs.push((Some(i), Some(j)));
            }
            None => pairs.push((Some(i), None)),
        }
    }
    pairs.extend(
        taken
            .iter()
            .enumerate()
            .filter(|(_, t)| !**t)
            .map(|(j, _)| (None, Some(j))),
    );
    pairs
}

struct Cmp<'a> {
    old: &'a Loaded,
    new: &'a Loaded,
    out: Vec<Change>,
}

impl Cmp<'_> {
    fn push(
        &mut self,
        scope: &str,
        kind: ChangeKind,
        what: impl Into<String>,
        values: (Option<String>, Option<String>),
        paths: (&str, &str),
    ) {
        self.out.push(Change {
            scope: scope.to_string(),
            kind,
            what: what.into(),
            old: values.0,
            new: values.1,
            old_span: (!paths.0.is_empty())
                .then(|| self.old.locate(paths.0))
                .flatten(),
            new_span: (!paths.1.is_empty())
                .then(|| self.new.locate(paths.1))
                .flatten(),
        });
    }

    /// Records a change when the two renderings differ.
    fn field(&mut self, scope: &str, what: &str, old: String, new: String, paths: (&str, &str)) {
        if old != new {
            self.push(
                scope,
                ChangeKind::Changed,
                what,
                (Some(old), Some(new)),
                paths,
            );
        }
    }
}

fn limit(v: Option<u32>) -> String {
    v.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

fn dur(v: Option<&ballast_core::config::Dur>) -> String {
    v.map_or_else(|| "unset".into(), |d| format!("{:?}", d.0))
}

/// How a pool balances, in the terms of its own load balancer when emulated.
pub fn algorithm(p: &Pool) -> String {
    match &p.emulate {
        Some(e) => e.describe(),
        None => match &p.hash_key {
            Some(k) => format!("{} on {}", p.algorithm.as_str(), k.describe()),
            None => p.algorithm.as_str().to_string(),
        },
    }
}

fn health(p: &Pool) -> String {
    match &p.health {
        None => "none".into(),
        Some(h) => format!(
            "{:?} {} every {:?}, fall {}, rise {}",
            h.kind, h.path, h.interval.0, h.fall, h.rise
        ),
    }
}

fn passive(p: &Pool) -> String {
    match &p.passive {
        None => "none".into(),
        Some(e) => format!(
            "{} failures, ejected {:?}",
            e.consecutive_failures, e.base_ejection.0
        ),
    }
}

/// Every difference between two models.
pub fn compare(old: &Loaded, new: &Loaded) -> Vec<Change> {
    let mut c = Cmp {
        old,
        new,
        out: Vec::new(),
    };
    let (o, n): (&Config, &Config) = (&old.config, &new.config);
    c.field(
        "global",
        "max connections",
        limit(o.global.max_connections),
        limit(n.global.max_connections),
        ("global.max_connections", "global.max_connections"),
    );
    listeners(&mut c, o, n);
    for (name, op) in &o.pools {
        let path = format!("pools.{name}");
        match n.pools.get(name) {
            None => c.push(
                &format!("pool {name}"),
                ChangeKind::Removed,
                format!("pool {name}"),
                (Some(format!("{} servers", op.servers.len())), None),
                (&path, ""),
            ),
            Some(np) => pool(&mut c, name, op, np),
        }
    }
    for (name, np) in &n.pools {
        if !o.pools.contains_key(name) {
            c.push(
                &format!("pool {name}"),
                ChangeKind::Added,
                format!("pool {name}"),
                (None, Some(format!("{} servers", np.servers.len()))),
                ("", &format!("pools.{name}")),
            );
        }
    }
    c.out
}

fn listeners(c: &mut Cmp, o: &Config, n: &Config) {
    for (oname, ol) in &o.listeners {
        let scope = format!("listener {}", ol.address);
        let op = format!("listeners.{oname}");
        match n.listeners.iter().find(|(_, l)| l.address == ol.address) {
            None => c.push(
                &scope,
                ChangeKind::Removed,
                format!("listener {}", ol.address),
                (Some(format!("to pool {}", ol.pool)), None),
                (&op, ""),
            ),
            Some((nname, nl)) => {
                let np = format!("listeners.{nname}");
                c.field(
                    &scope,
                    "pool",
                    ol.pool.clone(),
                    nl.pool.clone(),
                    (&format!("{op}.pool"), &format!("{np}.pool")),
                );
                c.field(
                    &scope,
                    "protocol",
                    format!("{:?}", ol.protocol).to_lowercase(),
                    format!("{:?}", nl.protocol).to_lowercase(),
                    (&format!("{op}.protocol"), &format!("{np}.protocol")),
                );
                c.field(
                    &scope,
                    "max connections",
                    limit(ol.max_connections),
                    limit(nl.max_connections),
                    (
                        &format!("{op}.max_connections"),
                        &format!("{np}.max_connections"),
                    ),
                );
                for (what, a, b, key) in [
                    (
                        "header-read timeout",
                        ol.timeouts.header_read.as_ref(),
                        nl.timeouts.header_read.as_ref(),
                        "header_read",
                    ),
                    (
                        "idle timeout",
                        ol.timeouts.idle.as_ref(),
                        nl.timeouts.idle.as_ref(),
                        "idle",
                    ),
                    (
                        "request timeout",
                        ol.timeouts.request.as_ref(),
                        nl.timeouts.request.as_ref(),
                        "request",
                    ),
                ] {
                    c.field(
                        &scope,
                        what,
                        dur(a),
                        dur(b),
                        (
                            &format!("{op}.timeouts.{key}"),
                            &format!("{np}.timeouts.{key}"),
                        ),
                    );
                }
            }
        }
    }
    for (nname, nl) in &n.listeners {
        if !o.listeners.values().any(|l| l.address == nl.address) {
            c.push(
                &format!("listener {}", nl.address),
                ChangeKind::Added,
                format!("listener {}", nl.address),
                (None, Some(format!("to pool {}", nl.pool))),
                ("", &format!("listeners.{nname}")),
            );
        }
    }
}

fn pool(c: &mut Cmp, name: &str, o: &Pool, n: &Pool) {
    let scope = format!("pool {name}");
    let p = format!("pools.{name}");
    let at = |f: &str| format!("{p}.{f}");
    c.field(
        &scope,
        "algorithm",
        algorithm(o),
        algorithm(n),
        (&at("algorithm"), &at("algorithm")),
    );
    c.field(
        &scope,
        "connect timeout",
        dur(o.connect_timeout.as_ref()),
        dur(n.connect_timeout.as_ref()),
        (&at("connect_timeout"), &at("connect_timeout")),
    );
    c.field(
        &scope,
        "response timeout",
        dur(o.response_timeout.as_ref()),
        dur(n.response_timeout.as_ref()),
        (&at("response_timeout"), &at("response_timeout")),
    );
    c.field(
        &scope,
        "retry attempts",
        o.retries.attempts.to_string(),
        n.retries.attempts.to_string(),
        (&at("retries.attempts"), &at("retries.attempts")),
    );
    c.field(
        &scope,
        "health check",
        health(o),
        health(n),
        (&at("health"), &at("health")),
    );
    c.field(
        &scope,
        "passive ejection",
        passive(o),
        passive(n),
        (&at("passive"), &at("passive")),
    );
    c.field(
        &scope,
        "backups",
        format!("{:?}", o.backups).to_lowercase(),
        format!("{:?}", n.backups).to_lowercase(),
        (&at("backups"), &at("backups")),
    );
    for (oi, ni) in pair_servers(&o.servers, &n.servers) {
        match (oi, ni) {
            (Some(i), None) => {
                let s = &o.servers[i];
                c.push(
                    &scope,
                    ChangeKind::Removed,
                    format!("server {}", label(s)),
                    (Some(describe(s)), None),
                    (&at(&format!("servers[{i}]")), ""),
                );
            }
            (None, Some(j)) => {
                let s = &n.servers[j];
                c.push(
                    &scope,
                    ChangeKind::Added,
                    format!("server {}", label(s)),
                    (None, Some(describe(s))),
                    ("", &at(&format!("servers[{j}]"))),
                );
            }
            (Some(i), Some(j)) => {
                let (a, b) = (&o.servers[i], &n.servers[j]);
                let (op, np) = (at(&format!("servers[{i}]")), at(&format!("servers[{j}]")));
                let f = |field: &str| (format!("{op}.{field}"), format!("{np}.{field}"));
                let label = |what: &str| format!("{what} of server {}", label(b));
                for (what, x, y, field) in [
                    ("address", a.address.clone(), b.address.clone(), "address"),
                    (
                        "weight",
                        a.weight.to_string(),
                        b.weight.to_string(),
                        "weight",
                    ),
                    (
                        "max connections",
                        limit(a.max_connections),
                        limit(b.max_connections),
                        "max_connections",
                    ),
                    (
                        "max queue",
                        a.max_queue.to_string(),
                        b.max_queue.to_string(),
                        "max_queue",
                    ),
                    (
                        "backup",
                        a.backup.to_string(),
                        b.backup.to_string(),
                        "backup",
                    ),
                    (
                        "ring text",
                        a.ring_key.clone().unwrap_or_else(|| a.address.clone()),
                        b.ring_key.clone().unwrap_or_else(|| b.address.clone()),
                        "address",
                    ),
                    ("down", a.down.to_string(), b.down.to_string(), "down"),
                    (
                        "id",
                        a.id.map_or("position".into(), |i| i.to_string()),
                        b.id.map_or("position".into(), |i| i.to_string()),
                        "id",
                    ),
                ] {
                    let (pa, pb) = f(field);
                    c.field(&scope, &label(what), x, y, (&pa, &pb));
                }
            }
            (None, None) => {}
        }
    }
}

/// A server as people know it: its name, or for nginx (whose servers are named by their
/// address) the address as written.
pub fn label(s: &Server) -> String {
    let written = s.ring_key.as_deref().unwrap_or(&s.address);
    if s.name.replace('_', ".") == written.replace('_', ".") {
        written.to_string()
    } else {
        s.name.clone()
    }
}

fn describe(s: &Server) -> String {
    let mut d = format!("{} weight {}", s.address, s.weight);
    if let Some(m) = s.max_connections {
        d.push_str(&format!(" max {m}"));
    }
    if s.backup {
        d.push_str(" backup");
    }
    if s.down {
        d.push_str(" down");
    }
    d
}
