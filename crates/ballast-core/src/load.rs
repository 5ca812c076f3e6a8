//! Loading a ballast configuration: read, parse, deserialize with spans, validate.
//!
//! Loading fails (and `check` exits 2) only for files that cannot mean anything: bad TOML, an
//! unknown key, a wrong type, a reference to a missing pool, a duplicate server name, a number
//! out of range. Everything that is valid but unwise is left to the rules in `ballast-check`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::{Config, MAX_WEIGHT};
use crate::source::{Diagnostic, SourceFile, SpanMap};

/// A configuration together with the file it came from and where each key sits in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub source: SourceFile,
    pub spans: SpanMap,
    pub config: Config,
}

impl Loaded {
    /// A short, stable identifier of this configuration's text: the first 16 hex digits of its
    /// XXH3 hash. Two files with the same bytes have the same version.
    pub fn version(&self) -> String {
        format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(self.source.text.as_bytes())
        )
    }

    /// Where `path` (like `pools.app.servers[0].weight`) is written, or its nearest ancestor.
    pub fn locate(&self, path: &str) -> Option<Range<usize>> {
        self.spans.locate(path)
    }
}

/// Why a file could not be loaded; holds the source when it could be read, for snippets.
#[derive(Debug)]
pub struct LoadError {
    pub source: Option<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(self.source.as_ref()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for LoadError {}

/// Reads and loads a configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let source = SourceFile::read(path).map_err(|e| LoadError {
        source: e.lossy,
        diagnostics: vec![e.diagnostic],
    })?;
    load_source(source)
}

/// Loads a configuration already in memory.
pub fn load_source(source: SourceFile) -> Result<Loaded, LoadError> {
    match parse_with_spans::<Config>(&source) {
        Ok((config, spans)) => {
            let loaded = Loaded {
                source,
                spans,
                config,
            };
            let problems = validate(&loaded);
            if problems.is_empty() {
                Ok(loaded)
            } else {
                Err(LoadError {
                    source: Some(loaded.source),
                    diagnostics: problems,
                })
            }
        }
        Err(d) => Err(LoadError {
            source: Some(source),
            diagnostics: vec![*d],
        }),
    }
}

/// Parses TOML into `T`, keeping the span of every key and value.
pub fn parse_with_spans<T: for<'de> Deserialize<'de>>(
    source: &SourceFile,
) -> Result<(T, SpanMap), Box<Diagnostic>> {
    if source.text.trim().is_empty() {
        return Err(Box::new(
            Diagnostic::error(format!("{} is empty", source.path.display())).with_fix(
                "a configuration needs at least one [listeners.NAME] and one [pools.NAME]; see examples/",
            ),
        ));
    }
    let table = DeTable::parse(&source.text).map_err(|e| Box::new(toml_diagnostic(e)))?;
    let mut spans = SpanMap::default();
    walk_table(table.get_ref(), "", &mut spans);
    let value = T::deserialize(toml::de::Deserializer::from(table))
        .map_err(|e| Box::new(toml_diagnostic(e)))?;
    Ok((value, spans))
}

fn toml_diagnostic(e: toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_string();
    let fix = if message.starts_with("unknown field") {
        "remove the key or fix its spelling; the expected keys are listed above"
    } else if message.starts_with("missing field") {
        "add the missing key to this table"
    } else if message.contains("duplicate key") {
        "each key may appear once per table; names of listeners, pools and servers must be unique"
    } else {
        "see examples/ for a valid configuration"
    };
    let mut d = Diagnostic::error(message).with_fix(fix);
    if let Some(span) = e.span() {
        d = d.with_span(span);
    }
    d
}

fn walk_table(table: &DeTable<'_>, prefix: &str, spans: &mut SpanMap) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        walk_value(value, path, Some(key.span()), spans);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: String,
    key: Option<Range<usize>>,
    spans: &mut SpanMap,
) {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, &path, spans),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                walk_value(item, format!("{path}[{i}]"), None, spans);
            }
        }
        _ => {}
    }
    spans.insert(path, key, value.span());
}

/// Where a model came from, which decides what it must hold to mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// ballast's own file, which `serve` runs: it needs listeners, pools with servers and
    /// IP:port addresses.
    Native,
    /// An HAProxy or nginx file, judged as its own load balancer would judge it: a proxy that
    /// balances nothing (a stats page, a redirect), a file without listeners (an nginx
    /// fragment of upstreams) and unix-socket addresses (`unix:/run/app.sock`) are legal there.
    Imported,
}

/// Checks that make a native configuration meaningless if they fail.
pub fn validate(loaded: &Loaded) -> Vec<Diagnostic> {
    validate_as(loaded, Origin::Native)
}

/// [`validate`] for a model of the given origin.
pub fn validate_as(loaded: &Loaded, origin: Origin) -> Vec<Diagnostic> {
    let native = origin == Origin::Native;
    let mut out = Vec::new();
    let c = &loaded.config;
    let at = |path: &str| loaded.locate(path);
    let mut err = |path: &str, msg: String, fix: &str| {
        let mut d = Diagnostic::error(msg).with_fix(fix);
        if let Some(s) = at(path) {
            d = d.with_span(s);
        }
        out.push(d);
    };

    if native && c.listeners.is_empty() {
        err(
            "",
            "no listeners: nothing would accept traffic".into(),
            "add a [listeners.NAME] table with `address` and `pool`",
        );
    }
    if native && c.pools.is_empty() {
        err(
            "",
            "no pools: there is nowhere to send traffic".into(),
            "add a [pools.NAME] table with at least one [[pools.NAME.servers]]",
        );
    }
    for (name, l) in &c.listeners {
        let p = format!("listeners.{name}");
        if l.address.parse::<SocketAddr>().is_err() && (native || !is_unix_address(&l.address)) {
            err(
                &format!("{p}.address"),
                format!(
                    "listener `{name}` address `{}` is not an IP:port",
                    l.address
                ),
                r#"write it like "0.0.0.0:8080" or "[::1]:8080""#,
            );
        }
        if !c.pools.contains_key(&l.pool) {
            let known: Vec<_> = c.pools.keys().map(String::as_str).collect();
            err(
                &format!("{p}.pool"),
                format!(
                    "listener `{name}` routes to pool `{}`, which does not exist",
                    l.pool
                ),
                &format!(
                    "define [pools.{}] or use one of: {}",
                    l.pool,
                    known.join(", ")
                ),
            );
        }
        if l.max_connections == Some(0) {
            err(
                &format!("{p}.max_connections"),
                format!("listener `{name}` has max_connections = 0 and would refuse every client"),
                "remove the key for the default, or set the number of connections to admit",
            );
        }
        // 8,192 is the smallest read buffer the HTTP/1 server accepts.
        if l.max_header_bytes
            .is_some_and(|b| !(8192..=1 << 20).contains(&b))
        {
            err(
                &format!("{p}.max_header_bytes"),
                format!(
                    "max_header_bytes {} must be between 8,192 and 1,048,576",
                    l.max_header_bytes.unwrap_or(0)
                ),
                "the default, 65,536, fits every sane request head",
            );
        }
        if l.max_headers.is_some_and(|h| !(1..=1000).contains(&h)) {
            err(
                &format!("{p}.max_headers"),
                format!(
                    "max_headers {} must be between 1 and 1,000",
                    l.max_headers.unwrap_or(0)
                ),
                "the default is 100",
            );
        }
        if l.max_body_bytes == Some(0) {
            err(
                &format!("{p}.max_body_bytes"),
                "max_body_bytes = 0 refuses every request with a body".into(),
                "remove the key for the default (10 MiB), or set the largest body you accept",
            );
        }
        if let Some(h) = &l.served_by_header
            && (h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            err(
                &format!("{p}.served_by_header"),
                format!("`{h}` is not a valid header name"),
                "use letters, digits and dashes, such as \"X-Served-By\"",
            );
        }
        if let Some(tls) = &l.tls {
            if tls.cert.is_empty() || tls.key.is_empty() {
                err(
                    &format!("{p}.tls"),
                    "tls needs both `cert` and `key` (PEM file paths)".into(),
                    "tls = { cert = \"/etc/ballast/site.pem\", key = \"/etc/ballast/site.key\" }",
                );
            }
            if l.protocol == crate::config::Protocol::Tcp {
                err(
                    &format!("{p}.tls"),
                    format!("listener `{name}` is TCP; TLS termination is for HTTP listeners"),
                    "remove `tls` (TCP mode forwards TLS untouched), or make the listener protocol = \"http\"",
                );
            }
        }
        for (i, cidr) in l.trusted_proxies.iter().enumerate() {
            if parse_cidr(cidr).is_none() {
                err(
                    &format!("{p}.trusted_proxies[{i}]"),
                    format!("`{cidr}` is not an address or CIDR"),
                    r#"write it like "10.0.0.0/8" or "192.0.2.7""#,
                );
            }
        }
    }
    if c.global.max_connections == Some(0) {
        err(
            "global.max_connections",
            "global max_connections = 0 refuses every client".into(),
            "remove the key for the default, or set a positive limit",
        );
    }
    if c.global.max_connections_per_ip == Some(0) {
        err(
            "global.max_connections_per_ip",
            "max_connections_per_ip = 0 refuses every client".into(),
            "remove the key to disable the per-IP cap, or set a positive limit",
        );
    }
    if let Some(admin) = &c.admin
        && admin.address.parse::<SocketAddr>().is_err()
    {
        err(
            "admin.address",
            format!("admin address `{}` is not an IP:port", admin.address),
            r#"write it like "127.0.0.1:9900""#,
        );
    }
    for (name, pool) in &c.pools {
        let p = format!("pools.{name}");
        if native && pool.servers.is_empty() {
            err(
                &p,
                format!("pool `{name}` has no servers"),
                &format!("add a [[pools.{name}.servers]] with `name` and `address`"),
            );
        }
        if let Some(f) = pool.balance_factor
            && !(f.is_finite() && (1.0..=100.0).contains(&f) && f > 1.0)
        {
            err(
                &format!("{p}.balance_factor"),
                format!(
                    "balance_factor {f} must be a number above 1.0 (it bounds load at ⌈factor × average⌉)"
                ),
                "use a value between 1.25 and 2.0",
            );
        }
        if pool.retries.budget_percent > 100 {
            err(
                &format!("{p}.retries.budget_percent"),
                format!(
                    "retry budget {}% is above 100%",
                    pool.retries.budget_percent
                ),
                "use a percentage between 0 and 100 (20 is a common choice)",
            );
        }
        // HAProxy and nginx accept any retry count; the catalogue's rules judge it there.
        if native && pool.retries.attempts > 100 {
            err(
                &format!("{p}.retries.attempts"),
                format!(
                    "{} retry attempts per request would multiply load during an outage",
                    pool.retries.attempts
                ),
                "use at most a few attempts (1 to 3)",
            );
        }
        if let Some(h) = &pool.health {
            let hp = format!("{p}.health");
            if h.rise == 0 || h.fall == 0 {
                err(
                    &hp,
                    "health rise and fall must be at least 1".into(),
                    "the defaults are rise = 2, fall = 3",
                );
            }
            if h.interval.0.is_zero() {
                err(
                    &format!("{hp}.interval"),
                    "health check interval of 0 would check without pause".into(),
                    r#"use an interval such as "2s""#,
                );
            }
            if h.timeout.0.is_zero() {
                err(
                    &format!("{hp}.timeout"),
                    "health check timeout of 0 fails every check".into(),
                    r#"use a timeout below the interval, such as "1s""#,
                );
            }
            for (i, s) in h.expect_status.iter().enumerate() {
                if !(100..=599).contains(s) {
                    err(
                        &format!("{hp}.expect_status[{i}]"),
                        format!("{s} is not an HTTP status code"),
                        "use codes between 100 and 599",
                    );
                }
            }
            if h.expect_status.is_empty() {
                err(
                    &format!("{hp}.expect_status"),
                    "expect_status is empty: every check would fail".into(),
                    "list the healthy status codes, such as [200]",
                );
            }
            if !h.path.starts_with('/') {
                err(
                    &format!("{hp}.path"),
                    format!("health path `{}` must start with /", h.path),
                    "for example \"/healthz\"",
                );
            }
        }
        if let Some(pe) = &pool.passive {
            if pe.max_ejected_percent > 100 {
                err(
                    &format!("{p}.passive.max_ejected_percent"),
                    format!(
                        "max_ejected_percent {} is above 100",
                        pe.max_ejected_percent
                    ),
                    "use a percentage between 0 and 100",
                );
            }
            if pe.consecutive_failures == 0 {
                err(
                    &format!("{p}.passive.consecutive_failures"),
                    "consecutive_failures = 0 would eject servers that never failed".into(),
                    "use at least 1 (5 is the default)",
                );
            }
        }
        let mut names = HashSet::new();
        for (i, s) in pool.servers.iter().enumerate() {
            // Built only for an error: this loop runs for every server of large files.
            let sp = |field: &str| format!("{p}.servers[{i}].{field}");
            if s.name.is_empty() {
                err(
                    &sp("name"),
                    "server name is empty".into(),
                    "give every server a unique name",
                );
            } else if !names.insert(s.name.as_str()) {
                err(
                    &sp("name"),
                    format!("server name `{}` appears twice in pool `{name}`", s.name),
                    "server names identify servers across reloads and in reports: make them unique",
                );
            }
            if !valid_host_port(&s.address) && (native || !is_unix_address(&s.address)) {
                err(
                    &sp("address"),
                    format!(
                        "server `{}` address `{}` is not HOST:PORT",
                        s.name, s.address
                    ),
                    r#"write it like "10.0.0.5:8080" or "app-1.internal:8080""#,
                );
            }
            if s.weight > MAX_WEIGHT {
                err(
                    &sp("weight"),
                    if native {
                        format!(
                            "weight {} of server `{}` is above the maximum {MAX_WEIGHT}",
                            s.weight, s.name
                        )
                    } else {
                        // The load balancer may accept it; ballast's model stops here (a
                        // consistent-hash ring holds points in proportion to weight).
                        format!(
                            "weight {} of server `{}` is above the {MAX_WEIGHT} ballast models (the load balancer itself may accept it)",
                            s.weight, s.name
                        )
                    },
                    "weights are relative: divide them all by a common factor",
                );
            }
            if s.max_connections == Some(0) {
                err(
                    &sp("max_connections"),
                    format!(
                        "server `{}` has max_connections = 0 and could never serve",
                        s.name
                    ),
                    "to drain a server set `weight = 0`; otherwise set a positive limit",
                );
            }
        }
    }
    if let Some(t) = &c.simulate {
        out.extend(crate::traffic::validate(
            t,
            "simulate",
            &loaded.spans,
            Some(c),
        ));
    }
    out
}

/// Whether `s` is a unix-socket address as imported models write it: `unix:/run/app.sock`
/// (HAProxy's `unix@`, `abns@` and bare paths, nginx's `unix:` are all written so).
pub fn is_unix_address(s: &str) -> bool {
    s.strip_prefix("unix:").is_some_and(|p| !p.is_empty())
}

/// Whether `s` is `HOST:PORT` with a numeric port (IPv6 hosts in brackets).
pub fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(':')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// Parses `addr` or `addr/prefix` into an address and a prefix length.
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max)?,
        None => max,
    };
    Some((ip, prefix))
}
