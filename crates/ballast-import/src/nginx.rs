//! nginx configurations: a tree of directives and blocks with spans, `include` resolved, then
//! the mapping onto the model.
//!
//! Every `upstream` becomes a pool with its balancing method emulated; every `server` block
//! whose locations `proxy_pass` to an upstream (or an address) becomes a listener per
//! `listen`. Directives in included files are located at their `include` line, since spans
//! point into the main file.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ballast_core::Config;
use ballast_core::config::{
    Algorithm, BackupMode, Dur, HashKey, ListenerTimeouts, PassiveEjection, Pool, Protocol, Retries,
};
use ballast_core::emulation::Emulation;
use ballast_core::source::{Diagnostic, SourceFile, SpanMap};

use crate::builder::{self, Builder, model_name};
use crate::facts::{NginxFacts, is_host_name};
use crate::words::{Directive, Word, parse_time};
use crate::{Options, not_modelled};

/// How deep `include`s may nest before ballast assumes a loop.
const MAX_INCLUDE_DEPTH: usize = 10;

/// A directive, with its block when it opens one.
#[derive(Debug, Clone)]
pub struct Node {
    pub directive: Directive,
    pub block: Option<Vec<Node>>,
}

/// Parses nginx syntax into a tree. `dir` resolves `include` (None: includes are an error).
pub fn parse(text: &str, dir: Option<&Path>) -> Result<Vec<Node>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let tokens = tokenize(text, &mut errors);
    let mut pos = 0;
    let nodes = build(&tokens, &mut pos, false, &mut errors);
    let nodes = match dir {
        Some(d) => expand_includes(nodes, d, 0, &mut errors),
        None => nodes,
    };
    if errors.is_empty() {
        Ok(nodes)
    } else {
        Err(errors)
    }
}

#[derive(Debug, Clone)]
enum Token {
    Word(Word),
    Semicolon(usize),
    Open(usize),
    Close(usize),
}

fn tokenize(text: &str, errors: &mut Vec<Diagnostic>) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b';' => {
                out.push(Token::Semicolon(i));
                i += 1;
            }
            b'{' => {
                out.push(Token::Open(i));
                i += 1;
            }
            b'}' => {
                out.push(Token::Close(i));
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                let start = i;
                i += 1;
                let mut word = Vec::new();
                loop {
                    if i >= b.len() {
                        errors.push(
                            Diagnostic::error("unterminated quote")
                                .with_span(start..b.len())
                                .with_fix("close the quote"),
                        );
                        break;
                    }
                    if b[i] == b'\\' && i + 1 < b.len() {
                        word.push(b[i + 1]);
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        i += 1;
                        break;
                    }
                    word.push(b[i]);
                    i += 1;
                }
                out.push(Token::Word(Word {
                    text: String::from_utf8_lossy(&word).into_owned(),
                    span: start..i,
                }));
            }
            _ => {
                let start = i;
                let mut word = Vec::new();
                while i < b.len()
                    && !b[i].is_ascii_whitespace()
                    && !matches!(b[i], b';' | b'{' | b'}')
                {
                    // `${var}` keeps its braces inside a word.
                    if b[i] == b'$' && i + 1 < b.len() && b[i + 1] == b'{' {
                        while i < b.len() && b[i] != b'}' {
                            word.push(b[i]);
                            i += 1;
                        }
                        if i < b.len() {
                            word.push(b'}');
                            i += 1;
                        }
                        continue;
                    }
                    if b[i] == b'\\' && i + 1 < b.len() {
                        word.push(b[i + 1]);
                        i += 2;
                        continue;
                    }
                    word.push(b[i]);
                    i += 1;
                }
                out.push(Token::Word(Word {
                    text: String::from_utf8_lossy(&word).into_owned(),
                    span: start..i,
                }));
            }
        }
    }
    out
}

fn build(
    tokens: &[Token],
    pos: &mut usize,
    in_block: bool,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    while *pos < tokens.len() {
        let t = tokens[*pos].clone();
        *pos += 1;
        match t {
            Token::Word(w) => words.push(w),
            Token::Semicolon(at) => {
                if words.is_empty() {
                    errors.push(
                        Diagnostic::error("unexpected `;`")
                            .with_span(at..at + 1)
                            .with_fix("remove the stray semicolon"),
                    );
                    continue;
                }
                let span = words[0].span.start..at + 1;
                nodes.push(Node {
                    directive: Directive {
                        words: std::mem::take(&mut words),
                        span,
                    },
                    block: None,
                });
            }
            Token::Open(at) => {
                if words.is_empty() {
                    errors.push(
                        Diagnostic::error("unexpected `{`")
                            .with_span(at..at + 1)
                            .with_fix("a block needs a directive name before `{`"),
                    );
                }
                let span = words.first().map_or(at, |w| w.span.start)..at + 1;
                let block = build(tokens, pos, true, errors);
                if !words.is_empty() {
                    nodes.push(Node {
                        directive: Directive {
                            words: std::mem::take(&mut words),
                            span,
                        },
                        block: Some(block),
                    });
                }
            }
            Token::Close(at) => {
                if !words.is_empty() {
                    let w = &words[0];
                    errors.push(
                        Diagnostic::error(format!("`{}` is not terminated by `;`", w.text))
                            .with_span(
                                w.span.start..words.last().map_or(w.span.end, |l| l.span.end),
                            )
                            .with_fix("end the directive with `;`"),
                    );
                    words.clear();
                }
                if !in_block {
                    errors.push(
                        Diagnostic::error("unexpected `}`")
                            .with_span(at..at + 1)
                            .with_fix("remove it, or open the block it closes"),
                    );
                    continue;
                }
                return nodes;
            }
        }
    }
    if let Some(w) = words.first() {
        errors.push(
            Diagnostic::error(format!("`{}` is not terminated by `;`", w.text))
                .with_span(w.span.clone())
                .with_fix("end the directive with `;`"),
        );
    }
    if in_block {
        let at = tokens.last().map_or(0, |t| match t {
            Token::Word(w) => w.span.end,
            Token::Semicolon(a) | Token::Open(a) | Token::Close(a) => *a,
        });
        errors.push(
            Diagnostic::error("unexpected end of file: a block is not closed")
                .with_span(at..at)
                .with_fix("add the missing `}`"),
        );
    }
    nodes
}

/// Replaces each `include` with the nodes of the files it names (a glob, relative to `dir`),
/// every span set to the `include` directive's.
fn expand_includes(
    nodes: Vec<Node>,
    dir: &Path,
    depth: usize,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Node> {
    let mut out = Vec::new();
    for node in nodes {
        if node.directive.name() != "include" || node.block.is_some() {
            out.push(Node {
                block: node.block.map(|b| expand_includes(b, dir, depth, errors)),
                directive: node.directive,
            });
            continue;
        }
        let span = node.directive.span.clone();
        let Some(pattern) = node.directive.arg(0) else {
            errors.push(
                Diagnostic::error("`include` needs a file or glob")
                    .with_span(span)
                    .with_fix("write `include conf.d/*.conf;`"),
            );
            continue;
        };
        if depth >= MAX_INCLUDE_DEPTH {
            errors.push(
                Diagnostic::error("includes nest too deeply (a loop?)")
                    .with_span(span)
                    .with_fix("check which files include each other"),
            );
            continue;
        }
        let full = if Path::new(&pattern.text).is_absolute() {
            pattern.text.clone()
        } else {
            dir.join(&pattern.text).to_string_lossy().into_owned()
        };
        let has_glob = pattern.text.contains(['*', '?', '[']);
        let paths: Vec<_> = match glob::glob(&full) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                errors.push(
                    Diagnostic::error(format!("bad include pattern: {e}"))
                        .with_span(span)
                        .with_fix("fix the glob"),
                );
                continue;
            }
        };
        if paths.is_empty() && !has_glob {
            errors.push(
                Diagnostic::error(format!("included file {full} does not exist"))
                    .with_span(span)
                    .with_fix("nginx refuses a missing include without a wildcard; fix the path"),
            );
            continue;
        }
        let mut paths = paths;
        paths.sort();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(
                        Diagnostic::error(format!("cannot read included {}: {e}", path.display()))
                            .with_span(span.clone())
                            .with_fix("check the file"),
                    );
                    continue;
                }
            };
            let mut inner_errors = Vec::new();
            let tokens = tokenize(&text, &mut inner_errors);
            let mut pos = 0;
            let inner = build(&tokens, &mut pos, false, &mut inner_errors);
            for e in inner_errors {
                errors.push(
                    Diagnostic::error(format!("in included {}: {}", path.display(), e.message))
                        .with_span(span.clone())
                        .with_fix(e.fix.unwrap_or_default()),
                );
            }
            let inner = relocate(inner, &span);
            out.extend(expand_includes(inner, dir, depth + 1, errors));
        }
    }
    out
}

fn relocate(nodes: Vec<Node>, span: &Range<usize>) -> Vec<Node> {
    nodes
        .into_iter()
        .map(|mut n| {
            n.directive.span = span.clone();
            for w in &mut n.directive.words {
                w.span = span.clone();
            }
            n.block = n.block.map(|b| relocate(b, span));
            n
        })
        .collect()
}

fn find<'a>(nodes: &'a [Node], name: &str) -> impl Iterator<Item = &'a Node> {
    nodes.iter().filter(move |n| n.directive.name() == name)
}

/// The last occurrence of a simple directive in a block.
fn last<'a>(nodes: &'a [Node], name: &str) -> Option<&'a Directive> {
    find(nodes, name).last().map(|n| &n.directive)
}

/// Proxy settings that `http`, `server` and `location` blocks inherit downwards.
#[derive(Debug, Clone, Default)]
struct ProxySettings {
    connect_timeout: Option<(Duration, Range<usize>)>,
    read_timeout: Option<(Duration, Range<usize>)>,
    next_upstream_tries: Option<(u32, Range<usize>)>,
    client_header_timeout: Option<(Duration, Range<usize>)>,
    keepalive_timeout: Option<(Duration, Range<usize>)>,
}

impl ProxySettings {
    fn inherit(&self, block: &[Node], errors: &mut Vec<Diagnostic>) -> Self {
        let mut s = self.clone();
        let time = |name: &str, errors: &mut Vec<Diagnostic>| {
            let d = last(block, name)?;
            let w = d.arg(0)?;
            match parse_time(&w.text, 1000) {
                Some(t) => Some((t, d.span.clone())),
                None => {
                    errors.push(
                        Diagnostic::error(format!("`{}` is not a time", w.text))
                            .with_span(w.span.clone())
                            .with_fix("write it like 60s, 500ms or 1m (a bare number is seconds)"),
                    );
                    None
                }
            }
        };
        if let Some(t) = time("proxy_connect_timeout", errors) {
            s.connect_timeout = Some(t);
        }
        if let Some(t) = time("proxy_read_timeout", errors) {
            s.read_timeout = Some(t);
        }
        if let Some(t) = time("client_header_timeout", errors) {
            s.client_header_timeout = Some(t);
        }
        if let Some(t) = time("keepalive_timeout", errors) {
            s.keepalive_timeout = Some(t);
        }
        if let Some(d) = last(block, "proxy_next_upstream_tries")
            && let Some(n) = d.arg(0).and_then(|w| w.text.parse().ok())
        {
            s.next_upstream_tries = Some((n, d.span.clone()));
        }
        s
    }
}

pub(crate) fn import(
    source: &SourceFile,
    options: &Options,
) -> Result<(Config, SpanMap, Vec<Diagnostic>, NginxFacts), Vec<Diagnostic>> {
    let dir = source.path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let tree = parse(&source.text, dir)?;
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut b = Builder::default();

    let workers = match last(&tree, "worker_processes").and_then(|d| d.arg(0)) {
        Some(w) if w.text == "auto" => {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        }
        Some(w) => w.text.parse().unwrap_or_else(|_| {
            errors.push(
                Diagnostic::error(format!("`{}` is not a number of workers", w.text))
                    .with_span(w.span.clone())
                    .with_fix("write a number or `auto`"),
            );
            1
        }),
        None => 1,
    };
    let worker_connections = find(&tree, "events")
        .filter_map(|n| n.block.as_deref())
        .filter_map(|b| last(b, "worker_connections"))
        .last();
    let connections = match worker_connections.and_then(|d| d.arg(0)) {
        Some(w) => w.text.parse::<u32>().unwrap_or_else(|_| {
            errors.push(
                Diagnostic::error(format!("invalid number `{}`", w.text))
                    .with_span(w.span.clone())
                    .with_fix("write a number of connections per worker, such as 1024"),
            );
            512
        }),
        None => 512,
    };
    if find(&tree, "events").next().is_none() {
        errors.push(
            Diagnostic::error("no `events` section in the configuration")
                .with_span(tree.first().map_or(0..0, |n| n.directive.span.clone()))
                .with_fix("add `events { worker_connections 1024; }` at the top level (nginx refuses to start without it)"),
        );
    }
    // Each proxied request holds two connections (client and upstream).
    let capacity = workers.saturating_mul(connections) / 2;
    b.config.global.max_connections = Some(capacity);
    if let Some(d) = worker_connections {
        b.at("global.max_connections", d.span.clone());
    }

    for node in &tree {
        let name = node.directive.name();
        match (name, node.block.as_deref()) {
            ("http", Some(block)) => context(
                &mut b,
                block,
                Protocol::Http,
                capacity,
                &mut errors,
                &mut notes,
            ),
            ("stream", Some(block)) => context(
                &mut b,
                block,
                Protocol::Tcp,
                capacity,
                &mut errors,
                &mut notes,
            ),
            (
                "events"
                | "worker_processes"
                | "worker_rlimit_nofile"
                | "user"
                | "pid"
                | "error_log",
                _,
            ) => {}
            ("upstream" | "server" | "location" | "proxy_pass" | "listen", _) => errors.push(
                Diagnostic::error(format!("`{name}` is not allowed here"))
                    .with_span(node.directive.span.clone())
                    .with_fix("put it inside an `http { ... }` or `stream { ... }` block, as nginx requires"),
            ),
            _ => notes.push(not_modelled(
                &node.directive.text(),
                node.directive.span.clone(),
                "it does not change balancing or capacity",
            )),
        }
    }
    if errors.is_empty() {
        // No nginx default that the model reads changes between versions; the version is
        // for the version-dependent rules (keepalive by default from 1.29.7).
        let facts = NginxFacts {
            version: options.nginx_version,
            tree,
        };
        Ok((b.config, b.spans, notes, facts))
    } else {
        Err(errors)
    }
}

/// An `http` or `stream` block: its upstreams become pools, its servers listeners.
fn context(
    b: &mut Builder,
    block: &[Node],
    protocol: Protocol,
    capacity: u32,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) {
    let settings = ProxySettings::default().inherit(block, errors);
    note_unread(
        block,
        &["upstream", "server"],
        &["listen", "location", "proxy_pass"],
        errors,
        notes,
    );
    let mut upstreams: HashMap<String, String> = HashMap::new();
    for node in find(block, "upstream") {
        let Some(name) = node.directive.arg(0) else {
            errors.push(
                Diagnostic::error("`upstream` needs a name")
                    .with_span(node.directive.span.clone())
                    .with_fix("write `upstream backend { ... }`"),
            );
            continue;
        };
        let Some(body) = node.block.as_deref() else {
            continue;
        };
        let pool_name = model_name(&name.text);
        if upstreams
            .insert(name.text.clone(), pool_name.clone())
            .is_some()
        {
            errors.push(
                Diagnostic::error(format!("duplicate upstream `{}`", name.text))
                    .with_span(name.span.clone())
                    .with_fix("upstream names must be unique"),
            );
            continue;
        }
        let p = format!("pools.{pool_name}");
        b.at(&p, node.directive.span.clone());
        let pool = upstream(b, &p, body, &settings, errors, notes);
        if pool.servers.is_empty() {
            errors.push(
                Diagnostic::error(format!("no servers are inside upstream `{}`", name.text))
                    .with_span(node.directive.span.clone())
                    .with_fix("add a `server ADDRESS;` line: nginx refuses an empty upstream"),
            );
        }
        b.config.pools.insert(pool_name, pool);
    }
    let mut listener_count = 0;
    for (si, server) in find(block, "server").enumerate() {
        let Some(body) = server.block.as_deref() else {
            continue;
        };
        let s = settings.inherit(body, errors);
        note_unread(
            body,
            &["listen", "location", "proxy_pass"],
            &["upstream", "server"],
            errors,
            notes,
        );
        for loc in find(body, "location").filter_map(|n| n.block.as_deref()) {
            note_unread(
                loc,
                &["proxy_pass", "location"],
                &["upstream", "server", "listen"],
                errors,
                notes,
            );
        }
        // The upstream this server proxies to: its own proxy_pass (stream) or its locations'.
        let mut targets: Vec<(Word, ProxySettings)> = Vec::new();
        if let Some(d) = last(body, "proxy_pass")
            && let Some(w) = d.arg(0)
        {
            targets.push((w.clone(), s.clone()));
        }
        for loc in find(body, "location") {
            if let Some(lb) = loc.block.as_deref()
                && let Some(d) = last(lb, "proxy_pass")
                && let Some(w) = d.arg(0)
            {
                targets.push((w.clone(), s.inherit(lb, errors)));
            }
        }
        let Some((target, ls)) = targets.first().cloned() else {
            continue;
        };
        for (other, _) in &targets[1..] {
            let name = proxied_host(&other.text);
            let why = if !upstreams.contains_key(name) && is_host_name(name) {
                "no upstream has this name, so nginx resolves it as a host name at start-up (and `nginx -t` fails when it does not resolve); the listener is modelled with its first proxy_pass"
            } else {
                "routing by location; the listener is modelled with its first proxy_pass"
            };
            notes.push(not_modelled(&other.text, other.span.clone(), why));
        }
        let upstream_name = proxied_host(&target.text).to_string();
        let pool = match upstreams.get(&upstream_name) {
            Some(p) => p.clone(),
            None => {
                if upstream_name.contains('$') {
                    notes.push(not_modelled(
                        &target.text,
                        target.span.clone(),
                        "a proxy_pass with variables is resolved per request",
                    ));
                    continue;
                }
                // A direct address: a one-server pool.
                if is_host_name(&upstream_name) {
                    notes.push(not_modelled(
                        &target.text,
                        target.span.clone(),
                        "no upstream has this name, so nginx resolves it as a host name at start-up (and `nginx -t` fails when it does not resolve); ballast models it as one server",
                    ));
                }
                let pool_name = model_name(&upstream_name);
                if !b.config.pools.contains_key(&pool_name) {
                    let p = format!("pools.{pool_name}");
                    b.at(&p, target.span.clone());
                    b.at(format!("{p}.servers[0]"), target.span.clone());
                    b.config.pools.insert(
                        pool_name.clone(),
                        Pool {
                            algorithm: Algorithm::RoundRobin,
                            hash_key: None,
                            balance_factor: None,
                            connect_timeout: ls
                                .connect_timeout
                                .as_ref()
                                .map(|t| Dur(t.0))
                                .or(Some(Dur(Duration::from_secs(60)))),
                            response_timeout: ls
                                .read_timeout
                                .as_ref()
                                .map(|t| Dur(t.0))
                                .or(Some(Dur(Duration::from_secs(60)))),
                            idle_timeout: None,
                            retries: Retries {
                                attempts: 0,
                                ..Retries::default()
                            },
                            health: None,
                            passive: None,
                            all_down: Default::default(),
                            emulate: Some(Emulation::NginxRoundRobin),
                            backups: BackupMode::All,
                            servers: vec![builder::server(
                                model_name(&upstream_name),
                                builder::with_default_port(&upstream_name),
                            )],
                        },
                    );
                }
                pool_name
            }
        };
        if let Some((tries, span)) = &ls.next_upstream_tries
            && let Some(p) = b.config.pools.get_mut(&pool)
        {
            p.retries.attempts = tries.saturating_sub(1);
            let at = span.clone();
            b.at(format!("pools.{pool}.retries.attempts"), at);
        }
        for listen in find(body, "listen") {
            let d = &listen.directive;
            let Some(addr) = d.arg(0) else {
                errors.push(
                    Diagnostic::error("`listen` needs an address or port")
                        .with_span(d.span.clone())
                        .with_fix("write `listen 80;`"),
                );
                continue;
            };
            let Some(address) = listen_address(&addr.text) else {
                notes.push(not_modelled(
                    &d.text(),
                    d.span.clone(),
                    "only IP:port listeners are modelled",
                ));
                continue;
            };
            listener_count += 1;
            let lname = format!("server{}-{}", si + 1, listener_count);
            let l = format!("listeners.{lname}");
            b.at(&l, d.span.clone());
            b.at(format!("{l}.address"), addr.span.clone());
            b.at(format!("{l}.pool"), target.span.clone());
            let mut timeouts = ListenerTimeouts::default();
            if protocol == Protocol::Http {
                timeouts.header_read = Some(Dur(s
                    .client_header_timeout
                    .as_ref()
                    .map_or(Duration::from_secs(60), |t| t.0)));
                timeouts.idle = Some(Dur(s
                    .keepalive_timeout
                    .as_ref()
                    .map_or(Duration::from_secs(75), |t| t.0)));
            }
            b.config.listeners.insert(
                lname,
                builder::listener(address, protocol, Some(capacity), pool.clone(), timeouts),
            );
        }
    }
}

/// The upstream name or address a `proxy_pass` names: `app` of `http://app/path`.
fn proxied_host(target: &str) -> &str {
    let t = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .unwrap_or(target);
    t.split('/').next().unwrap_or("")
}

/// Directives of a block that the model reads, besides the inherited proxy settings.
const INHERITED: &[&str] = &[
    "proxy_connect_timeout",
    "proxy_read_timeout",
    "client_header_timeout",
    "keepalive_timeout",
    "proxy_next_upstream_tries",
];

/// Notes every directive of `block` that the model does not read, and refuses the ones nginx
/// does not allow at this level.
fn note_unread(
    block: &[Node],
    read: &[&str],
    misplaced: &[&str],
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) {
    for n in block {
        let d = &n.directive;
        let name = d.name();
        if misplaced.contains(&name) {
            errors.push(
                Diagnostic::error(format!("`{name}` is not allowed here"))
                    .with_span(d.span.clone())
                    .with_fix("move it to the block nginx expects it in (listen in server, server in upstream or http, upstream in http)"),
            );
        } else if !read.contains(&name) && !INHERITED.contains(&name) {
            notes.push(not_modelled(
                &d.text(),
                d.span.clone(),
                "it does not change balancing or capacity",
            ));
        }
    }
}

/// An `upstream` block as a pool.
fn upstream(
    b: &mut Builder,
    p: &str,
    body: &[Node],
    settings: &ProxySettings,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> Pool {
    let mut emulate = Emulation::NginxRoundRobin;
    let mut algorithm = Algorithm::RoundRobin;
    let mut hash_key = None;
    let mut servers = Vec::new();
    let mut passive: Option<PassiveEjection> = None;
    let mut names: HashMap<String, u32> = HashMap::new();
    // Where the balancing method is written (the last one wins, as in nginx).
    let mut method: Option<Range<usize>> = None;
    let mut method_name: Option<&str> = None;
    for node in body {
        let d = &node.directive;
        let method_args = match d.name() {
            "ip_hash" | "least_conn" => Some(0..=0),
            "random" => Some(0..=2),
            "hash" => Some(1..=2),
            _ => None,
        };
        if let Some(range) = method_args {
            if !range.contains(&d.args().len()) {
                errors.push(
                    Diagnostic::error(format!(
                        "invalid number of arguments in `{}`",
                        d.name()
                    ))
                    .with_span(d.span.clone())
                    .with_fix("see the nginx upstream module: `ip_hash;`, `least_conn;`, `random [two];`, `hash KEY [consistent];`"),
                );
                continue;
            }
            method_name = Some(d.name());
        }
        match d.name() {
            "ip_hash" => {
                (emulate, algorithm, hash_key) = (
                    Emulation::NginxIpHash,
                    Algorithm::ConsistentHash,
                    Some(HashKey::ClientIp),
                );
                method = Some(d.span.clone());
            }
            "hash" => {
                let Some(key) = d.arg(0) else {
                    errors.push(
                        Diagnostic::error("`hash` needs a key")
                            .with_span(d.span.clone())
                            .with_fix("write `hash $request_uri consistent;`"),
                    );
                    continue;
                };
                let consistent = match d.arg(1).map(|w| w.text.as_str()) {
                    None => false,
                    Some("consistent") => true,
                    Some(other) => {
                        errors.push(
                            Diagnostic::error(format!("invalid parameter `{other}`"))
                                .with_span(d.span.clone())
                                .with_fix("the only parameter of `hash` is `consistent`"),
                        );
                        false
                    }
                };
                let template = ballast_core::balance::NginxTemplate::parse(&key.text);
                for v in template.unsupported() {
                    notes.push(not_modelled(
                        &format!("${v}"),
                        key.span.clone(),
                        "this variable is not evaluated; predictions treat it as empty",
                    ));
                }
                hash_key = Some(native_key(&template));
                (emulate, algorithm) = (
                    Emulation::NginxHash {
                        key: key.text.clone(),
                        consistent,
                    },
                    Algorithm::ConsistentHash,
                );
                method = Some(d.span.clone());
                b.at(format!("{p}.hash_key"), key.span.clone());
            }
            "least_conn" => {
                (emulate, algorithm) = (Emulation::NginxLeastConn, Algorithm::LeastConnections);
                method = Some(d.span.clone());
            }
            "random" => {
                let two = d.arg(0).is_some_and(|w| w.text == "two");
                if let Some(w) = d
                    .args()
                    .iter()
                    .find(|w| w.text != "two" && !w.text.starts_with("least_time="))
                {
                    errors.push(
                        Diagnostic::error(format!("invalid parameter `{}`", w.text))
                            .with_span(w.span.clone())
                            .with_fix("write `random;` or `random two;`"),
                    );
                }
                (emulate, algorithm) = (
                    Emulation::NginxRandom { two },
                    if two {
                        Algorithm::PowerOfTwo
                    } else {
                        Algorithm::Random
                    },
                );
                method = Some(d.span.clone());
            }
            "server" => {
                let Some(addr) = d.arg(0) else {
                    errors.push(
                        Diagnostic::error("`server` needs an address")
                            .with_span(d.span.clone())
                            .with_fix("write `server 10.0.0.1:8080;`"),
                    );
                    continue;
                };
                let i = servers.len();
                let sp = builder::indexed(p, "servers", i);
                b.at(&sp, d.span.clone());
                b.at(builder::field(&sp, "address"), addr.span.clone());
                b.at(builder::field(&sp, "name"), addr.span.clone());
                let count = names.entry(addr.text.clone()).or_insert(0);
                *count += 1;
                let name = if *count == 1 {
                    model_name(&addr.text)
                } else {
                    format!("{}#{}", model_name(&addr.text), count)
                };
                let mut server = builder::server(name, addr.text.clone());
                let mut max_fails = 1u32;
                let mut fail_timeout = Duration::from_secs(10);
                for w in &d.args()[1..] {
                    let (k, v) = w.text.split_once('=').unwrap_or((w.text.as_str(), ""));
                    let num = |errors: &mut Vec<Diagnostic>| -> Option<u32> {
                        v.parse()
                            .map_err(|_| {
                                errors.push(
                                    Diagnostic::error(format!("invalid parameter `{}`", w.text))
                                        .with_span(w.span.clone())
                                        .with_fix(format!("write `{k}=<number>`")),
                                );
                            })
                            .ok()
                    };
                    match k {
                        "weight" => {
                            if let Some(n) = num(errors) {
                                if n == 0 {
                                    errors.push(Diagnostic::error("invalid parameter `weight=0`").with_span(w.span.clone()).with_fix("nginx weights start at 1; use `down` to take a server out"));
                                }
                                server.weight = n.max(1);
                                b.at(builder::field(&sp, "weight"), w.span.clone());
                            }
                        }
                        "max_conns" => {
                            if let Some(n) = num(errors) {
                                server.max_connections = (n > 0).then_some(n);
                                b.at(builder::field(&sp, "max_connections"), w.span.clone());
                            }
                        }
                        "max_fails" => {
                            if let Some(n) = num(errors) {
                                max_fails = n;
                            }
                        }
                        "fail_timeout" => match parse_time(v, 1000) {
                            Some(t) => fail_timeout = t,
                            None => errors.push(Diagnostic::error(format!("invalid parameter `{}`", w.text)).with_span(w.span.clone()).with_fix("write it like fail_timeout=10s")),
                        },
                        "backup" => {
                            // nginx checks this when it reads the server line, so only a
                            // method written before it refuses it (HC-007 covers the rest).
                            if let Some(m) = method_name.filter(|m| *m != "least_conn") {
                                errors.push(
                                    Diagnostic::error(format!("balancing method `{m}` does not support parameter `backup`"))
                                        .with_span(w.span.clone())
                                        .with_fix("remove `backup`, or use round-robin or least_conn"),
                                );
                            }
                            server.backup = true;
                            b.at(builder::field(&sp, "backup"), w.span.clone());
                        }
                        "down" => {
                            server.down = true;
                            b.at(builder::field(&sp, "down"), w.span.clone());
                        }
                        "resolve" | "route" | "service" | "slow_start" | "drain" => {
                            notes.push(not_modelled(&w.text, w.span.clone(), "a server parameter that does not change the choice of server"));
                        }
                        _ => errors.push(Diagnostic::error(format!("invalid parameter `{}`", w.text)).with_span(w.span.clone()).with_fix("nginx refuses unknown server parameters; see the upstream module's `server` directive")),
                    }
                }
                if !ballast_core::load::valid_host_port(&server.address)
                    && !server.address.starts_with("unix:")
                {
                    // ketama hashes the text as written; the model's address gains the port.
                    server.ring_key = Some(server.address.clone());
                    server.address = builder::with_default_port(&server.address);
                }
                if max_fails > 0 {
                    passive = Some(PassiveEjection {
                        consecutive_failures: max_fails,
                        base_ejection: Dur(fail_timeout),
                        max_ejected_percent: 100,
                    });
                }
                servers.push(server);
            }
            "keepalive" | "keepalive_timeout" | "keepalive_requests" | "keepalive_time"
            | "zone" => {}
            _ => notes.push(not_modelled(
                &d.text(),
                d.span.clone(),
                "it does not change the choice of server",
            )),
        }
    }
    if let Some(span) = method {
        b.at(format!("{p}.emulate"), span.clone());
        b.at(format!("{p}.algorithm"), span);
    }
    let n = servers.len() as u32;
    Pool {
        algorithm,
        hash_key,
        balance_factor: None,
        connect_timeout: Some(Dur(settings
            .connect_timeout
            .as_ref()
            .map_or(Duration::from_secs(60), |t| t.0))),
        response_timeout: Some(Dur(settings
            .read_timeout
            .as_ref()
            .map_or(Duration::from_secs(60), |t| t.0))),
        idle_timeout: None,
        // proxy_next_upstream tries every server by default (proxy_next_upstream_tries 0).
        retries: Retries {
            attempts: match &settings.next_upstream_tries {
                Some((t, _)) if *t > 0 => t - 1,
                _ => n.saturating_sub(1),
            },
            ..Retries::default()
        },
        health: None,
        passive,
        all_down: Default::default(),
        emulate: Some(emulate),
        backups: BackupMode::All,
        servers,
    }
}

/// The closest native key for an nginx hash key (what the native rules reason about).
fn native_key(t: &ballast_core::balance::NginxTemplate) -> HashKey {
    let vars: Vec<&str> = t.variables().collect();
    match vars.as_slice() {
        ["remote_addr"] | ["binary_remote_addr"] => HashKey::ClientIp,
        [v] if v.starts_with("http_") => HashKey::Header {
            name: v["http_".len()..].replace('_', "-"),
        },
        [v] if v.starts_with("cookie_") => HashKey::Cookie {
            name: v["cookie_".len()..].to_string(),
        },
        [v] if v.starts_with("arg_") => HashKey::Query {
            name: v["arg_".len()..].to_string(),
        },
        _ => HashKey::Path,
    }
}

/// `80`, `*:80`, `127.0.0.1:8080`, `[::]:80` (parameters after the address are ignored).
fn listen_address(text: &str) -> Option<String> {
    let addr = if let Ok(port) = text.parse::<u16>() {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = text.strip_prefix("*:") {
        format!("0.0.0.0:{port}")
    } else if text.contains(':') {
        text.to_string()
    } else {
        format!("{text}:80")
    };
    addr.parse::<std::net::SocketAddr>().ok().map(|_| addr)
}
