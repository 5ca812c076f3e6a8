//! HAProxy configurations: sections and directives with spans, then the mapping onto the model.
//!
//! Sections are `global`, `defaults` (named ones too, and `from` on proxies), `frontend`,
//! `backend` and `listen`; other sections (`resolvers`, `peers`, ...) are kept and noted. A
//! proxy's settings start from the `defaults` section before it (or the one it names with
//! `from`) and its own directives override them, as in HAProxy.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ballast_core::Config;
use ballast_core::config::{
    Algorithm, BackupMode, CheckKind, Dur, HashKey, HealthCheck, InitialState, ListenerTimeouts,
    Pool, Protocol, Retries, Server,
};
use ballast_core::emulation::{Emulation, HaproxyHash, HaproxyKey, HashFunction, HashLookup};
use ballast_core::source::{Diagnostic, SourceFile, SpanMap};

use crate::builder::{self, Builder, model_name};
use crate::facts::{HaproxyFacts, HaproxyProxy, HaproxyServer, Param};
use crate::words::{Directive, Version, Word, haproxy_time, haproxy_time_read_part};
use crate::{Options, not_modelled};

/// Sections whose directives ballast reads.
const PROXY_SECTIONS: &[&str] = &["frontend", "backend", "listen"];
/// Sections HAProxy knows that ballast keeps without modelling.
const OTHER_SECTIONS: &[&str] = &[
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "crt-store",
    "traces",
    "log-forward",
];

/// Whether a line starting with `word` opens a section.
pub(crate) fn is_section_keyword(word: &str) -> bool {
    word == "global"
        || word == "defaults"
        || PROXY_SECTIONS.contains(&word)
        || OTHER_SECTIONS.contains(&word)
}

/// One section: its header line and its directives in order.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: String,
    pub name: Option<Word>,
    /// `from <defaults>` on the header.
    pub from: Option<Word>,
    pub header: Directive,
    pub directives: Vec<Directive>,
}

/// The environment a file's `$NAME`, `${NAME}` and `${NAME-default}` are expanded from.
pub struct Env<'a>(pub &'a [(String, String)]);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        // The last definition wins, so `--env` given after the process environment overrides it.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A file split into sections, with what ballast noted while reading it.
pub struct Parsed {
    pub sections: Vec<Section>,
    /// Lines HAProxy refuses that ballast reads anyway (errors), and lines left out because
    /// they name an unset environment variable (info).
    pub notes: Vec<Diagnostic>,
}

/// Splits a file into sections of directives. Errors are what leaves nothing to read;
/// what HAProxy refuses but ballast can still read is an error among the notes.
pub fn parse(text: &str, env: &Env, version: Version) -> Result<Parsed, Vec<Diagnostic>> {
    let mut sections: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let mut unset = Vec::new();
        let words = match split_words(line, start, env, &mut unset) {
            Ok(w) => w,
            Err(d) => {
                errors.push(*d);
                continue;
            }
        };
        // HAProxy refuses a last line without LF even when it holds only blanks.
        if !line.ends_with('\n') && !line.is_empty() && version >= Version::new(2, 6, 0) {
            let text_start = start + (line.len() - line.trim_start().len()).min(line.len() - 1);
            notes.push(crate::error_note(
                &format!("the last line has no line feed: HAProxy {version} refuses the file (\"Missing LF on last line, file might have been truncated\")"),
                text_start..start + line.trim_end().len().max(text_start - start + 1),
                "end the file with a newline",
            ));
        }
        let Some(first) = words.first() else { continue };
        let span = first.span.start..words.last().map_or(first.span.end, |w| w.span.end);
        let directive = Directive { words, span };
        let keyword = directive.name().to_string();
        if !unset.is_empty() {
            // HAProxy would read the variable as empty; ballast cannot know what the
            // deployment sets, so it reads the file as if the line were absent and says so.
            unset.sort();
            unset.dedup();
            let names: Vec<String> = unset.iter().map(|n| format!("`{n}`")).collect();
            let mut note = not_modelled(
                &directive.text(),
                directive.span.clone(),
                &format!(
                    "the environment variable {} is not set here, so ballast reads the file as if this line were absent",
                    names.join(", ")
                ),
            );
            note.fix = Some(format!(
                "give the value ballast should assume: --env {}=VALUE",
                unset[0]
            ));
            notes.push(note);
            if !is_section_keyword(&keyword) {
                continue;
            }
        }
        if let Some(since) = section_since(&keyword)
            && version < since
        {
            notes.push(crate::error_note(
                &format!("the `{keyword}` section needs HAProxy {since}: HAProxy {version} refuses it (unknown keyword)"),
                directive.span.clone(),
                &format!("remove the section, or check with --haproxy-version {since} if you run that version"),
            ));
        }
        if is_section_keyword(&keyword) {
            let name = directive.arg(0).filter(|w| w.text != "from").cloned();
            let from = directive
                .args()
                .iter()
                .position(|w| w.text == "from")
                .and_then(|i| directive.arg(i + 1).cloned());
            if PROXY_SECTIONS.contains(&keyword.as_str()) && name.is_none() {
                errors.push(
                    Diagnostic::error(format!("`{keyword}` needs a name"))
                        .with_span(directive.span.clone())
                        .with_fix(format!("write `{keyword} <name>`")),
                );
            }
            // `listen NAME ADDR`: the address on the header line, from HAProxy 1.x.
            if matches!(keyword.as_str(), "frontend" | "listen")
                && let Some(addr) = directive.arg(1).filter(|w| w.text != "from")
                && version >= Version::new(2, 6, 0)
            {
                notes.push(crate::error_note(
                    &format!(
                        "an address on the `{keyword}` line (`{}`): HAProxy {version} refuses it (\"please use the 'bind' keyword for listening addresses\")",
                        addr.text
                    ),
                    addr.span.clone(),
                    &format!("move it to a line of its own inside the section: `bind {}`", addr.text),
                ));
            }
            sections.push(Section {
                kind: keyword,
                name,
                from,
                header: directive,
                directives: Vec::new(),
            });
            continue;
        }
        match sections.last_mut() {
            Some(s) => s.directives.push(directive),
            None => errors.push(
                Diagnostic::error(format!("`{keyword}` appears before any section"))
                    .with_span(directive.span.clone())
                    .with_fix("start the file with `global`, `defaults`, `frontend`, `backend` or `listen`"),
            ),
        }
    }
    if errors.is_empty() {
        Ok(Parsed { sections, notes })
    } else {
        Err(errors)
    }
}

/// HAProxy's word splitting: whitespace separates, `#` starts a comment, `"..."` (with
/// backslash escapes) and `'...'` quote, a backslash escapes the next character, and
/// `$NAME`, `${NAME}` and `${NAME-default}` outside single quotes are environment variables
/// (the names of unset ones are pushed to `unset`).
fn split_words(
    line: &str,
    base: usize,
    env: &Env,
    unset: &mut Vec<String>,
) -> Result<Vec<Word>, Box<Diagnostic>> {
    let bytes = line.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            break;
        }
        let start = i;
        // Most words have no quote or escape: one exact allocation, sliced from the line.
        let end = bytes[i..]
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .map_or(bytes.len(), |n| i + n);
        if !bytes[start..end]
            .iter()
            .any(|b| matches!(b, b'\\' | b'"' | b'\'' | b'$'))
        {
            words.push(Word {
                text: line[start..end].to_string(),
                span: base + start..base + end,
            });
            i = end;
            continue;
        }
        let mut text = Vec::new();
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            match bytes[i] {
                b'#' if text.is_empty() && i == start => break,
                b'\\' if i + 1 < bytes.len() => {
                    text.push(bytes[i + 1]);
                    i += 2;
                }
                q @ (b'"' | b'\'') => {
                    let open = i;
                    i += 1;
                    loop {
                        if i >= bytes.len() || bytes[i] == b'\n' {
                            return Err(Box::new(
                                Diagnostic::error("unterminated quote")
                                    .with_span(base + open..base + i)
                                    .with_fix("close the quote on the same line"),
                            ));
                        }
                        if bytes[i] == q {
                            i += 1;
                            break;
                        }
                        if q == b'"' && bytes[i] == b'\\' && i + 1 < bytes.len() {
                            text.push(bytes[i + 1]);
                            i += 2;
                            continue;
                        }
                        if q == b'"'
                            && bytes[i] == b'$'
                            && let Some(n) = expand(&line[i..], env, &mut text, unset)
                        {
                            i += n;
                            continue;
                        }
                        text.push(bytes[i]);
                        i += 1;
                    }
                }
                // `expand` writes nothing when `$` starts no variable.
                b'$' => match expand(&line[i..], env, &mut text, unset) {
                    Some(n) => i += n,
                    None => {
                        text.push(b'$');
                        i += 1;
                    }
                },
                other => {
                    text.push(other);
                    i += 1;
                }
            }
        }
        words.push(Word {
            text: String::from_utf8(text)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            span: base + start..base + i,
        });
    }
    Ok(words)
}

/// Expands the variable at the start of `at` (`$NAME`, `${NAME}`, `${NAME-default}`) into
/// `out`, returning how many bytes it took; `None` when `at` starts no variable (a `$` that
/// is text, as in a regular expression's `^/api$`).
fn expand(at: &str, env: &Env, out: &mut Vec<u8>, unset: &mut Vec<String>) -> Option<usize> {
    let rest = at.strip_prefix('$')?;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (name, default, taken) = if let Some(braced) = rest.strip_prefix('{') {
        let close = braced.find('}')?;
        let inner = &braced[..close];
        let (name, default) = match inner.split_once('-') {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        (name, default, close + 3)
    } else {
        let len = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
        (&rest[..len], None, len + 1)
    };
    if name.is_empty()
        || !name.chars().all(is_name)
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    match (env.get(name), default) {
        (Some(v), _) => out.extend_from_slice(v.as_bytes()),
        (None, Some(d)) => out.extend_from_slice(d.as_bytes()),
        (None, None) => unset.push(name.to_string()),
    }
    Some(taken)
}

/// A setting and where it was written.
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    span: Range<usize>,
}

/// Per-server parameters, from `default-server` or a `server` line.
#[derive(Debug, Clone, Default)]
struct ServerParams {
    weight: Option<At<u32>>,
    maxconn: Option<At<u32>>,
    maxqueue: Option<At<u32>>,
    check: Option<Range<usize>>,
    inter: Option<At<Duration>>,
    rise: Option<At<u32>>,
    fall: Option<At<u32>>,
    slowstart: Option<At<Duration>>,
    backup: Option<Range<usize>>,
    disabled: Option<Range<usize>>,
    id: Option<At<u32>>,
    /// Every keyword as written, for the catalogue rules: `default-server`'s (shared by
    /// the section's servers, not copied into each) and the line's own.
    inherited: Arc<[Param]>,
    own: Vec<Param>,
}

impl ServerParams {
    /// Makes this line's parameters the ones later lines inherit (`default-server`).
    fn seal(&mut self) {
        self.inherited = self.inherited.iter().chain(&self.own).cloned().collect();
        self.own.clear();
    }
}

/// Everything a proxy inherits from `defaults` and may override.
#[derive(Debug, Clone, Default)]
struct Settings {
    mode: Option<At<Protocol>>,
    maxconn: Option<At<u32>>,
    balance: Option<Directive>,
    hash_type: Option<Directive>,
    hash_balance_factor: Option<At<u32>>,
    timeouts: HashMap<String, At<Duration>>,
    retries: Option<At<u32>>,
    options: HashMap<String, At<bool>>,
    httpchk: Option<Directive>,
    expect_status: Option<At<u16>>,
    default_server: ServerParams,
    /// Every directive applied, for the catalogue rules: those inherited from `defaults`
    /// (shared by its proxies, not copied into each) and the section's own.
    inherited: Arc<[Directive]>,
    own: Vec<Directive>,
}

impl Settings {
    /// Makes the directives applied so far the ones proxies inherit (end of `defaults`).
    fn seal(&mut self) {
        self.inherited = self.inherited.iter().chain(&self.own).cloned().collect();
        self.own.clear();
    }
}

/// A `server` line.
#[derive(Debug, Clone)]
struct ServerLine {
    name: Word,
    address: Word,
    params: ServerParams,
    span: Range<usize>,
}

/// A proxy section as read: (kind, name, settings, servers, header span, routes, binds).
type ProxyParts<'a> = (
    &'a str,
    Word,
    Settings,
    Vec<ServerLine>,
    Range<usize>,
    Vec<(Word, bool)>,
    Vec<Directive>,
);

pub(crate) fn import(
    source: &SourceFile,
    options: &Options,
) -> Result<(Config, SpanMap, Vec<Diagnostic>, HaproxyFacts), Vec<Diagnostic>> {
    let version = options.haproxy_version;
    let Parsed {
        sections,
        mut notes,
    } = parse(&source.text, &Env(&options.env), version)?;
    let mut facts = HaproxyFacts {
        version: options.haproxy_version,
        global_header: None,
        global: Vec::new(),
        proxies: Vec::new(),
    };
    let mut errors = Vec::new();
    let mut b = Builder::default();

    let mut named_defaults: HashMap<String, Settings> = HashMap::new();
    // `tune.h2.max-concurrent-streams`: every HTTP listener's `max_concurrent_streams`.
    let mut h2_streams: Option<At<u32>> = None;
    let mut current = Settings::default();
    let mut proxies: Vec<ProxyParts> = Vec::new();
    for section in &sections {
        match section.kind.as_str() {
            "global" => {
                facts.global_header = Some(section.header.span.clone());
                facts.global.extend(section.directives.iter().cloned());
                for d in &section.directives {
                    let removed = match d.name() {
                        "nbproc" if version >= Version::new(2, 5, 0) => Some((
                            "`nbproc` is not supported since HAProxy 2.5",
                            "remove it: HAProxy runs threads on every core it may use (`nbthread` sets how many)",
                        )),
                        "debug" if version >= Version::new(2, 6, 0) => Some((
                            "`debug` is no global keyword in HAProxy 2.6",
                            "remove it; run `haproxy -d` to debug in the foreground",
                        )),
                        _ => None,
                    };
                    if let Some((what, fix)) = removed {
                        notes.push(crate::error_note(
                            &format!("{what}: HAProxy {version} refuses the file"),
                            d.span.clone(),
                            fix,
                        ));
                        continue;
                    }
                    match d.name() {
                        "maxconn" => {
                            if let Some(n) = number(d, 0, &mut errors) {
                                b.config.global.max_connections = Some(n);
                                b.at("global.max_connections", d.span.clone());
                            }
                        }
                        "tune.h2.max-concurrent-streams" => {
                            if let Some(n) = number(d, 0, &mut errors) {
                                h2_streams = Some(At {
                                    value: n,
                                    span: d.span.clone(),
                                });
                            }
                        }
                        // Not in the model, but the catalogue rules read them (CONN-003,
                        // CONN-008, OPS-001/002/007, SEC-002/003).
                        "ulimit-n" | "nbproc" | "hard-stop-after" | "server-state-file"
                        | "zero-warning" | "ssl-server-verify" | "ssl-default-bind-options"
                        | "ssl-default-server-options" => notes.push(not_modelled(
                            &d.text(),
                            d.span.clone(),
                            "a process setting outside the model; `ballast check`'s catalogue rules read it",
                        )),
                        _ => notes.push(not_modelled(
                            &d.text(),
                            d.span.clone(),
                            "a process setting that does not change balancing or capacity",
                        )),
                    }
                }
            }
            "defaults" => {
                let mut s = match &section.from {
                    Some(f) => named_defaults.get(&f.text).cloned().unwrap_or_default(),
                    None => Settings::default(),
                };
                for d in &section.directives {
                    apply(&mut s, d, version, &mut errors, &mut notes);
                }
                s.seal();
                if let Some(n) = &section.name {
                    named_defaults.insert(n.text.clone(), s.clone());
                }
                current = s;
            }
            kind if PROXY_SECTIONS.contains(&kind) => {
                let Some(name) = &section.name else { continue };
                // A frontend may share a backend's name; a listen is both, and two of the
                // same side may not share one.
                let sides = |k: &str| match k {
                    "frontend" => 1,
                    "backend" => 2,
                    _ => 3,
                };
                if let Some(first) = proxies
                    .iter()
                    .find(|p| p.1.text == name.text && sides(p.0) & sides(kind) != 0)
                {
                    errors.push(
                        Diagnostic::error(format!(
                            "{kind} `{}` has the same name as the {} at line {}",
                            name.text,
                            first.0,
                            source.line_col(first.1.span.start).line
                        ))
                        .with_span(name.span.clone())
                        .with_fix("rename one of them: HAProxy refuses two proxies of the same side with one name"),
                    );
                    continue;
                }
                let mut s = match &section.from {
                    Some(f) => match named_defaults.get(&f.text) {
                        Some(d) => d.clone(),
                        None => {
                            errors.push(
                                Diagnostic::error(format!(
                                    "no defaults section named `{}`",
                                    f.text
                                ))
                                .with_span(f.span.clone())
                                .with_fix("name an existing `defaults <name>` section"),
                            );
                            continue;
                        }
                    },
                    None => current.clone(),
                };
                let mut servers = Vec::new();
                let mut routes: Vec<(Word, bool)> = Vec::new();
                let mut binds: Vec<Directive> = Vec::new();
                for d in &section.directives {
                    match d.name() {
                        "server" if kind != "frontend" => {
                            if let Some(line) = server_line(d, &s.default_server, &mut errors) {
                                servers.push(line);
                            }
                        }
                        "server-template" if kind != "frontend" => {
                            servers.extend(server_template(d, &s.default_server, &mut errors));
                        }
                        "bind" if kind != "backend" => binds.push(d.clone()),
                        "default_backend" if kind != "backend" => match d.arg(0) {
                            Some(w) => routes.push((w.clone(), true)),
                            None => errors.push(missing_arg(d, "a backend name")),
                        },
                        "use_backend" if kind != "backend" => match d.arg(0) {
                            Some(w) => {
                                routes.push((w.clone(), false));
                                notes.push(not_modelled(
                                    &d.text(),
                                    d.span.clone(),
                                    "conditional routing; listeners are modelled with their default_backend",
                                ));
                            }
                            None => errors.push(missing_arg(d, "a backend name")),
                        },
                        _ => apply(&mut s, d, version, &mut errors, &mut notes),
                    }
                }
                proxies.push((
                    kind,
                    name.clone(),
                    s,
                    servers,
                    section.header.span.clone(),
                    routes,
                    binds,
                ));
            }
            _ => notes.push(not_modelled(
                &section.header.text(),
                section.header.span.clone(),
                "this section does not change balancing or capacity",
            )),
        }
    }

    let backends: HashMap<&str, usize> = proxies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.0 != "frontend")
        .map(|(i, p)| (p.1.text.as_str(), i))
        .collect();

    // Pools: every backend and listen section with servers.
    let mut pool_names: HashMap<String, String> = HashMap::new();
    for (kind, name, s, servers, header, _, _) in &proxies {
        if *kind == "frontend" {
            continue;
        }
        if servers.is_empty() {
            // HAProxy accepts a proxy without servers: it serves a stats page, redirects or
            // answers itself (or answers 503). The catalogue rules still read it as written.
            notes.push(not_modelled(
                &format!("{kind} {}", name.text),
                header.clone(),
                "it has no `server` lines, so it balances nothing (a stats page, a redirect or an answer HAProxy makes itself) and is no pool in the model",
            ));
            continue;
        }
        let pool_name = model_name(&name.text);
        pool_names.insert(name.text.clone(), pool_name.clone());
        let p = format!("pools.{pool_name}");
        b.at(&p, header.clone());
        let pool = build_pool(&mut b, &p, s, servers, version, &mut errors, &mut notes);
        b.config.pools.insert(pool_name, pool);
    }

    // Listeners: each bind of a frontend or listen section, routed to its default backend.
    for (kind, name, s, _, header, routes, binds) in &proxies {
        if *kind == "backend" {
            continue;
        }
        for (route, _) in routes {
            if !backends.contains_key(route.text.as_str()) && !route.text.contains('%') {
                errors.push(
                    Diagnostic::error(format!("no backend named `{}`", route.text))
                        .with_span(route.span.clone())
                        .with_fix("define the backend, or fix the name"),
                );
            }
        }
        let pool = if *kind == "listen" {
            Some(name.text.clone())
        } else {
            routes
                .iter()
                .find(|(_, default)| *default)
                .or_else(|| routes.first())
                .map(|(w, _)| w.text.clone())
        };
        let backend_settings = pool
            .as_deref()
            .and_then(|p| backends.get(p))
            .map(|&i| &proxies[i].2);
        let Some(pool) = pool.and_then(|p| pool_names.get(&p).cloned()) else {
            // A listen without servers was noted with the pools.
            if routes.is_empty() && *kind == "frontend" {
                notes.push(not_modelled(
                    &format!("{kind} {}", name.text),
                    header.clone(),
                    "it routes to no backend, so it has no listener in the model",
                ));
            }
            continue;
        };
        for (i, bind) in binds.iter().enumerate() {
            let Some(addr) = bind.arg(0) else {
                errors.push(missing_arg(bind, "an address such as :80"));
                continue;
            };
            let Some(address) = bind_address(&addr.text) else {
                notes.push(not_modelled(
                    &bind.text(),
                    bind.span.clone(),
                    "only IP:port and unix-socket binds are modelled (`fd@` and `sockpair@` name an inherited socket, not an address)",
                ));
                continue;
            };
            let lname = if i == 0 {
                model_name(&name.text)
            } else {
                format!("{}-{}", model_name(&name.text), i + 1)
            };
            let l = format!("listeners.{lname}");
            b.at(&l, bind.span.clone());
            b.at(format!("{l}.address"), addr.span.clone());
            let protocol = s.mode.as_ref().map_or(Protocol::Tcp, |m| m.value);
            if let Some(m) = &s.mode {
                b.at(format!("{l}.protocol"), m.span.clone());
            }
            // HAProxy < 2.0 capped a frontend without maxconn at 2000.
            // `maxconn 0` on a frontend means unset: the process's maxconn applies.
            let max_connections = match s.maxconn.as_ref().filter(|m| m.value > 0) {
                Some(m) => {
                    b.at(format!("{l}.max_connections"), m.span.clone());
                    Some(m.value)
                }
                None if version < Version::new(2, 0, 0) => Some(2000),
                None => b.config.global.max_connections,
            };
            let t = |k: &str| s.timeouts.get(k);
            let mut timeouts = ListenerTimeouts::default();
            if let Some(h) = t("http-request").or(t("client")) {
                timeouts.header_read = Some(Dur(h.value));
                b.at(format!("{l}.timeouts.header_read"), h.span.clone());
            }
            if let Some(k) = t("http-keep-alive").or(t("http-request")).or(t("client")) {
                timeouts.idle = Some(Dur(k.value));
                b.at(format!("{l}.timeouts.idle"), k.span.clone());
            }
            // `timeout client` is the client side's inactivity bound, a client that stops
            // taking the response included.
            if let Some(c) = t("client") {
                timeouts.send = Some(Dur(c.value));
                b.at(format!("{l}.timeouts.send"), c.span.clone());
            }
            // `timeout tunnel` is a backend's setting (HAProxy ignores a frontend's): the one of
            // the backend this listener routes to, the listen section itself for a listen.
            if let Some(tt) = backend_settings.and_then(|bs| bs.timeouts.get("tunnel")) {
                timeouts.tunnel = Some(Dur(tt.value));
                b.at(format!("{l}.timeouts.tunnel"), tt.span.clone());
            }
            for w in &bind.args()[1..] {
                if w.text == "ssl" {
                    notes.push(not_modelled(
                        &bind.text(),
                        bind.span.clone(),
                        "TLS termination is analysed for capacity and balancing only",
                    ));
                    break;
                }
            }
            let mut listener =
                builder::listener(address, protocol, max_connections, pool.clone(), timeouts);
            if protocol == Protocol::Http
                && let Some(h2) = &h2_streams
            {
                listener.max_concurrent_streams = Some(h2.value);
                b.at(format!("{l}.max_concurrent_streams"), h2.span.clone());
            }
            b.config.listeners.insert(lname, listener);
        }
    }
    facts.proxies = proxies
        .into_iter()
        .map(
            |(kind, name, s, servers, header, routes, binds)| HaproxyProxy {
                kind: kind.to_string(),
                name: name.text,
                header,
                inherited: s.inherited,
                own: s.own,
                binds,
                routes,
                servers: servers
                    .into_iter()
                    .map(|sv| {
                        HaproxyServer::new(
                            sv.name.text,
                            sv.address,
                            sv.span,
                            (sv.params.inherited, sv.params.own),
                        )
                    })
                    .collect(),
            },
        )
        .collect();
    if errors.is_empty() {
        Ok((b.config, b.spans, notes, facts))
    } else {
        Err(errors)
    }
}

/// Applies one directive of a `defaults`, `frontend`, `backend` or `listen` section.
fn apply(
    s: &mut Settings,
    d: &Directive,
    version: Version,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) {
    let at = |span: &Range<usize>| span.clone();
    s.own.push(d.clone());
    if let Some((since, instead)) = removed_directive(d.name())
        && version >= since
    {
        notes.push(crate::error_note(
            &format!(
                "`{}` is not supported since HAProxy {since}: HAProxy {version} refuses the file",
                d.name()
            ),
            d.span.clone(),
            instead,
        ));
        return;
    }
    match d.name() {
        "mode" => match d.arg(0).map(|w| w.text.as_str()) {
            Some("http") => s.mode = Some(At { value: Protocol::Http, span: at(&d.span) }),
            Some("tcp") => s.mode = Some(At { value: Protocol::Tcp, span: at(&d.span) }),
            _ => errors.push(
                Diagnostic::error(format!("`{}`: mode must be http or tcp", d.text()))
                    .with_span(d.span.clone())
                    .with_fix("write `mode http` or `mode tcp`"),
            ),
        },
        "maxconn" => {
            if let Some(n) = number(d, 0, errors) {
                s.maxconn = Some(At { value: n, span: at(&d.span) });
            }
        }
        // A bare `balance` is roundrobin, as in HAProxy.
        "balance" => s.balance = Some(d.clone()),
        "hash-type" => s.hash_type = Some(d.clone()),
        "hash-balance-factor" => {
            if let Some(n) = number(d, 0, errors) {
                if n != 0 && n <= 100 {
                    errors.push(
                        Diagnostic::error("hash-balance-factor must be 0 or greater than 100")
                            .with_span(d.span.clone())
                            .with_fix("use a value between 125 and 200, or 0 to disable it"),
                    );
                }
                s.hash_balance_factor = Some(At { value: n, span: at(&d.span) });
            }
        }
        "timeout" => match (d.arg(0), d.arg(1)) {
            (Some(which), Some(value)) => match haproxy_time(&value.text) {
                Some(t) => {
                    if let Some(read) = haproxy_time_read_part(&value.text) {
                        notes.push(crate::note(
                            ballast_core::Severity::Warning,
                            format!(
                                "`{}`: HAProxy reads `{read}` and warns that the letters after the unit will be an error in later versions",
                                value.text
                            ),
                            value.span.clone(),
                            format!("write `{read}`"),
                        ));
                    }
                    s.timeouts.insert(which.text.clone(), At { value: t, span: at(&d.span) });
                }
                None => errors.push(
                    Diagnostic::error(format!("`{}` is not a time", value.text))
                        .with_span(value.span.clone())
                        .with_fix("write a number with a unit: 5s, 500ms, 1m (a bare number is milliseconds)"),
                ),
            },
            _ => errors.push(missing_arg(d, "a timeout name and a time, such as `timeout connect 5s`")),
        },
        // Before 2.1 (after, `removed_directive` refused them above).
        old @ ("contimeout" | "clitimeout" | "srvtimeout") => match d.arg(0) {
            Some(value) => match haproxy_time(&value.text) {
                Some(t) => {
                    let which = match old {
                        "contimeout" => "connect",
                        "clitimeout" => "client",
                        _ => "server",
                    };
                    s.timeouts.insert(which.to_string(), At { value: t, span: at(&d.span) });
                }
                None => errors.push(
                    Diagnostic::error(format!("`{}` is not a time", value.text))
                        .with_span(value.span.clone())
                        .with_fix("write a number with a unit: 5s, 500ms, 1m (a bare number is milliseconds)"),
                ),
            },
            None => errors.push(missing_arg(d, "a time")),
        },
        "retries" => {
            if let Some(n) = number(d, 0, errors) {
                s.retries = Some(At { value: n, span: at(&d.span) });
            }
        }
        // `no log`, `no option X`: `no` negates the keyword after it.
        "no" if d.arg(0).is_none_or(|w| w.text != "option") => match d.arg(0) {
            Some(_) => notes.push(not_modelled(
                &d.text(),
                d.span.clone(),
                "it does not change balancing or capacity",
            )),
            None => errors.push(missing_arg(d, "a keyword to negate, such as `no log`")),
        },
        "option" | "no" => {
            let negate = d.name() == "no";
            let words = if negate { &d.args()[1..] } else { d.args() };
            let Some(opt) = words.first() else {
                errors.push(missing_arg(d, "an option name"));
                return;
            };
            if let Some(since) = option_since(&opt.text)
                && version < since
            {
                notes.push(crate::error_note(
                    &format!(
                        "`option {}` needs HAProxy {since}: HAProxy {version} refuses it (unknown option)",
                        opt.text
                    ),
                    d.span.clone(),
                    &format!("remove it, or check with --haproxy-version {since} if you run that version"),
                ));
                return;
            }
            if let Some((since, instead)) = removed_option(&opt.text)
                && version >= since
            {
                notes.push(crate::error_note(
                    &format!(
                        "`option {}` is not supported since HAProxy {since}: HAProxy {version} refuses the file",
                        opt.text
                    ),
                    d.span.clone(),
                    instead,
                ));
                return;
            }
            if opt.text == "httpchk" {
                s.httpchk = (!negate).then(|| d.clone());
            }
            let modelled = ["httpchk", "redispatch", "allbackups", "tcp-check"];
            if !modelled.contains(&opt.text.as_str()) {
                notes.push(not_modelled(&d.text(), d.span.clone(), "this option does not change balancing or capacity"));
            }
            s.options.insert(opt.text.clone(), At { value: !negate, span: at(&d.span) });
        }
        "http-check" => {
            let w: Vec<&str> = d.args().iter().map(|w| w.text.as_str()).collect();
            if let ["expect", "status", code, ..] = w.as_slice() {
                match code.parse::<u16>() {
                    Ok(c) if !(100..=599).contains(&c) => notes.push(crate::error_note(
                        &format!("`http-check expect status {c}`: no server answers {c}, so every check fails and every server of the backend is marked down"),
                        d.span.clone(),
                        "expect the status a healthy server answers, such as `http-check expect status 200`",
                    )),
                    Ok(c) => s.expect_status = Some(At { value: c, span: at(&d.span) }),
                    Err(_) => notes.push(not_modelled(&d.text(), d.span.clone(), "only a single expected status is modelled")),
                }
            } else {
                notes.push(not_modelled(&d.text(), d.span.clone(), "only `http-check expect status` is modelled"));
            }
        }
        "default-server" => {
            let mut p = s.default_server.clone();
            parse_server_params(d, 0, &mut p, errors);
            p.seal();
            s.default_server = p;
        }
        "cookie" | "stick" | "stick-table" | "stick-on" | "stick-store-request" | "stick-store-response" | "stick-match" | "persist" => notes.push(not_modelled(
            &d.text(),
            d.span.clone(),
            "persistence sends a returning client back to its server before the algorithm is asked, so predictions hold for first requests only; `ballast check`'s catalogue rules read it",
        )),
        "fullconn" | "load-server-state-from-file" | "stats" => notes.push(not_modelled(
            &d.text(),
            d.span.clone(),
            "outside the model; `ballast check`'s catalogue rules read it",
        )),
        // The commonest misplacement: a server parameter on a line of its own.
        k if SERVER_ONLY_KEYWORDS.contains(&k) => notes.push(crate::error_note(
            &format!("`{k}` is a server parameter, not a section keyword: HAProxy refuses it here (unknown keyword)"),
            d.span.clone(),
            &format!("put it on the `server` lines, or on a `default-server {}` line for every server of the section", d.text().trim_start_matches(k).trim()),
        )),
        _ => notes.push(not_modelled(&d.text(), d.span.clone(), "it does not change balancing or capacity")),
    }
}

/// Server parameters that are no proxy keyword (`maxconn`, `cookie`, `id`, `disabled` are
/// both, so they are not here): HAProxy refuses them on a line of their own.
const SERVER_ONLY_KEYWORDS: &[&str] = &[
    "rise",
    "fall",
    "inter",
    "fastinter",
    "downinter",
    "weight",
    "maxqueue",
    "slowstart",
    "check",
    "backup",
    "agent-check",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "init-addr",
    "resolve-prefer",
];

/// Proxy directives HAProxy removed: the version that refuses them and what to write instead.
fn removed_directive(name: &str) -> Option<(Version, &'static str)> {
    let v2_1 = Version::new(2, 1, 0);
    let instead = match name {
        "contimeout" => "write `timeout connect` instead",
        "clitimeout" => "write `timeout client` instead",
        "srvtimeout" => "write `timeout server` instead",
        "redispatch" => "write `option redispatch` instead",
        "block" => "write `http-request deny` instead (same syntax)",
        "reqadd" => "write `http-request add-header` instead",
        "rspadd" => "write `http-response add-header` instead",
        "reqrep" => "write `http-request replace-path`, `replace-uri` or `replace-header` instead",
        "reqirep" => "write `http-request replace-header` instead",
        "rsprep" | "rspirep" => "write `http-response replace-header` instead",
        "reqdel" | "reqidel" => "write `http-request del-header` instead",
        "rspdel" | "rspidel" => "write `http-response del-header` instead",
        "reqdeny" | "reqideny" => "write `http-request deny` instead",
        "rspdeny" | "rspideny" => "write `http-response deny` instead",
        "reqallow" | "reqiallow" => "write `http-request allow` instead",
        "reqtarpit" | "reqitarpit" => "write `http-request tarpit` instead",
        "reqpass" | "reqipass" => "remove it: it has no replacement",
        "reqsetbe" | "reqisetbe" => "write `use_backend <name> if <condition>` instead",
        _ => return None,
    };
    Some((v2_1, instead))
}

/// Sections newer than some versions: the first version that knows them.
fn section_since(keyword: &str) -> Option<Version> {
    match keyword {
        "crt-store" => Some(Version::new(3, 0, 0)),
        "traces" => Some(Version::new(3, 1, 0)),
        _ => None,
    }
}

/// Options newer than some versions: the first version that knows them.
fn option_since(name: &str) -> Option<Version> {
    match name {
        "forwarded" => Some(Version::new(2, 9, 0)),
        _ => None,
    }
}

/// Options HAProxy removed: the version that refuses them and what to do instead.
fn removed_option(name: &str) -> Option<(Version, &'static str)> {
    match name {
        "forceclose" => Some((
            Version::new(2, 0, 0),
            "remove it (or write `option httpclose` if you really need the server connection closed)",
        )),
        "http-tunnel" => Some((Version::new(2, 1, 0), "remove it: it is no longer needed")),
        _ => None,
    }
}

fn server_line(
    d: &Directive,
    defaults: &ServerParams,
    errors: &mut Vec<Diagnostic>,
) -> Option<ServerLine> {
    let (Some(name), Some(address)) = (d.arg(0), d.arg(1)) else {
        errors.push(missing_arg(
            d,
            "a name and an address: `server web1 10.0.0.1:80`",
        ));
        return None;
    };
    let mut params = defaults.clone();
    parse_server_params(d, 2, &mut params, errors);
    Some(ServerLine {
        name: name.clone(),
        address: address.clone(),
        params,
        span: d.span.clone(),
    })
}

/// `server-template <prefix> <num | range> <fqdn>[:<port>] [params]`: `num` servers named
/// prefix1..prefixN, all at the same name (resolved at run time by HAProxy).
fn server_template(
    d: &Directive,
    defaults: &ServerParams,
    errors: &mut Vec<Diagnostic>,
) -> Vec<ServerLine> {
    let (Some(prefix), Some(count), Some(address)) = (d.arg(0), d.arg(1), d.arg(2)) else {
        errors.push(missing_arg(
            d,
            "a prefix, a count and an address: `server-template web 5 app.internal:80`",
        ));
        return Vec::new();
    };
    let range = match count.text.split_once('-') {
        Some((a, z)) => a.parse::<u32>().ok().zip(z.parse::<u32>().ok()),
        None => count.text.parse::<u32>().ok().map(|n| (1, n)),
    };
    let Some((first, last)) = range.filter(|(a, z)| a <= z && z - a < 10_000) else {
        errors.push(
            Diagnostic::error(format!("`{}` is not a server count or range", count.text))
                .with_span(count.span.clone())
                .with_fix("write a number such as 5, or a range such as 1-5"),
        );
        return Vec::new();
    };
    let mut params = defaults.clone();
    parse_server_params(d, 3, &mut params, errors);
    (first..=last)
        .map(|n| ServerLine {
            name: Word {
                text: format!("{}{n}", prefix.text),
                span: prefix.span.clone(),
            },
            address: address.clone(),
            params: params.clone(),
            span: d.span.clone(),
        })
        .collect()
}

/// Server keywords that take one argument and do not change balancing or capacity.
const SERVER_KEYWORDS_WITH_ARG: &[&str] = &[
    "addr",
    "agent-addr",
    "agent-inter",
    "agent-port",
    "agent-send",
    "alpn",
    "ca-file",
    "check-alpn",
    "check-proto",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "cookie",
    "crl-file",
    "crt",
    "downinter",
    "error-limit",
    "fastinter",
    "init-addr",
    "log-proto",
    "max-reuse",
    "minconn",
    "namespace",
    "npn",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "pool-low-conn",
    "pool-max-conn",
    "pool-purge-delay",
    "port",
    "proto",
    "redir",
    "resolve-net",
    "resolve-opts",
    "resolve-prefer",
    "resolvers",
    "shard",
    "sni",
    "socks4",
    "source",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-ut",
    "track",
    "verify",
    "verifyhost",
    "ws",
    "hash-key",
    "set-proxy-v2-tlv-fmt",
    "proxy-v2-options",
    "curves",
    "sigalgs",
];
/// Server keywords without an argument that do not change balancing or capacity.
const SERVER_FLAGS: &[&str] = &[
    "agent-check",
    "allow-0rtt",
    "check-send-proxy",
    "check-ssl",
    "check-via-socks4",
    "enabled",
    "force-sslv3",
    "force-tlsv10",
    "force-tlsv11",
    "force-tlsv12",
    "force-tlsv13",
    "no-agent-check",
    "no-backup",
    "no-check",
    "no-check-ssl",
    "no-send-proxy",
    "no-send-proxy-v2",
    "no-send-proxy-v2-ssl",
    "no-send-proxy-v2-ssl-cn",
    "no-ssl",
    "no-ssl-reuse",
    "no-sslv3",
    "no-tls-tickets",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "no-verifyhost",
    "no-tfo",
    "non-stick",
    "send-proxy",
    "send-proxy-v2",
    "send-proxy-v2-ssl",
    "send-proxy-v2-ssl-cn",
    "ssl",
    "ssl-reuse",
    "stick",
    "tfo",
    "tls-tickets",
];

fn parse_server_params(
    d: &Directive,
    from: usize,
    p: &mut ServerParams,
    errors: &mut Vec<Diagnostic>,
) {
    let args = d.args();
    let mut i = from;
    while i < args.len() {
        let w = &args[i];
        let span = w.span.start..args.get(i + 1).map_or(w.span.end, |v| v.span.end);
        let num = |errors: &mut Vec<Diagnostic>| -> Option<u32> {
            match args.get(i + 1).map(|v| v.text.parse::<u32>()) {
                Some(Ok(n)) => Some(n),
                _ => {
                    errors.push(
                        Diagnostic::error(format!("`{}` needs a number", w.text))
                            .with_span(w.span.clone())
                            .with_fix(format!("write `{} <number>`", w.text)),
                    );
                    None
                }
            }
        };
        let time = |errors: &mut Vec<Diagnostic>| -> Option<Duration> {
            match args.get(i + 1).and_then(|v| haproxy_time(&v.text)) {
                Some(t) => Some(t),
                None => {
                    errors.push(
                        Diagnostic::error(format!("`{}` needs a time", w.text))
                            .with_span(w.span.clone())
                            .with_fix(format!("write `{} 2s`", w.text)),
                    );
                    None
                }
            }
        };
        let start = i;
        match w.text.as_str() {
            "weight" => {
                if let Some(n) = num(errors) {
                    if n > 256 {
                        errors.push(
                            Diagnostic::error(format!("weight {n} is not within 0 and 256"))
                                .with_span(span.clone())
                                .with_fix(
                                    "HAProxy weights go from 0 to 256; scale them down together",
                                ),
                        );
                    }
                    p.weight = Some(At {
                        value: n.min(256),
                        span,
                    });
                }
                i += 2;
            }
            "maxconn" => {
                p.maxconn = num(errors).map(|value| At { value, span });
                i += 2;
            }
            "maxqueue" => {
                p.maxqueue = num(errors).map(|value| At { value, span });
                i += 2;
            }
            "rise" | "fall" => {
                let n = num(errors);
                if n == Some(0) {
                    let default = if w.text == "rise" { 2 } else { 3 };
                    errors.push(
                        Diagnostic::error(format!(
                            "`{0} 0`: HAProxy refuses it ('{0}' has to be > 0)",
                            w.text
                        ))
                        .with_span(span.clone())
                        .with_fix(format!(
                            "write `{} <n>` with n of at least 1 (HAProxy's default is {default})",
                            w.text
                        )),
                    );
                }
                let value = n.filter(|&n| n > 0).map(|value| At { value, span });
                if w.text == "rise" {
                    p.rise = value;
                } else {
                    p.fall = value;
                }
                i += 2;
            }
            "id" => {
                p.id = num(errors).map(|value| At { value, span });
                i += 2;
            }
            "inter" => {
                p.inter = time(errors).map(|value| At { value, span });
                if p.inter.as_ref().is_some_and(|t| t.value.is_zero()) {
                    errors.push(
                        Diagnostic::error(
                            "`inter 0`: HAProxy refuses it (invalid value 0 for argument 'inter')",
                        )
                        .with_span(w.span.clone())
                        .with_fix(
                            "write the time between checks, such as `inter 2s` (HAProxy's default)",
                        ),
                    );
                }
                i += 2;
            }
            "slowstart" => {
                p.slowstart = time(errors).map(|value| At { value, span });
                i += 2;
            }
            "check" => {
                p.check = Some(w.span.clone());
                i += 1;
            }
            "backup" => {
                p.backup = Some(w.span.clone());
                i += 1;
            }
            "disabled" => {
                p.disabled = Some(w.span.clone());
                i += 1;
            }
            k if SERVER_FLAGS.contains(&k) => i += 1,
            k if SERVER_KEYWORDS_WITH_ARG.contains(&k) => {
                if args.get(i + 1).is_none() {
                    errors.push(
                        Diagnostic::error(format!("`{k}` needs an argument"))
                            .with_span(w.span.clone())
                            .with_fix("see the HAProxy manual, section 5.2"),
                    );
                }
                i += 2;
            }
            k => {
                errors.push(
                    Diagnostic::error(format!("unknown server keyword `{k}`"))
                        .with_span(w.span.clone())
                        .with_fix("HAProxy refuses unknown keywords (`haproxy -c` fails); check the spelling"),
                );
                i += 1;
            }
        }
        let value = (i - start == 2)
            .then(|| args.get(start + 1).cloned())
            .flatten();
        p.own.push(Param {
            keyword: w.text.clone(),
            span: w.span.start..value.as_ref().map_or(w.span.end, |v| v.span.end),
            value,
        });
    }
}

fn build_pool(
    b: &mut Builder,
    p: &str,
    s: &Settings,
    servers: &[ServerLine],
    version: Version,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> Pool {
    let (algorithm, hash_key, emulate) = balance(b, p, s, version, errors, notes);
    let any_check = servers.iter().any(|sv| sv.params.check.is_some());
    let t = |k: &str| s.timeouts.get(k);
    let health = any_check.then(|| {
        let first = servers
            .iter()
            .find(|sv| sv.params.check.is_some())
            .expect("one has check");
        let sp = &first.params;
        if let Some(c) = &sp.check {
            b.at(format!("{p}.health"), c.clone());
        }
        let inter = sp
            .inter
            .as_ref()
            .map_or(Duration::from_secs(2), |i| i.value);
        if let Some(i) = &sp.inter {
            b.at(format!("{p}.health.interval"), i.span.clone());
        }
        if let Some(r) = &sp.rise {
            b.at(format!("{p}.health.rise"), r.span.clone());
        }
        if let Some(f) = &sp.fall {
            b.at(format!("{p}.health.fall"), f.span.clone());
        }
        let (kind, path) = match &s.httpchk {
            Some(d) => {
                b.at(format!("{p}.health.kind"), d.span.clone());
                // `option httpchk [<method>] [<uri>]`: the URI is the last word when given.
                let uri = d
                    .args()
                    .iter()
                    .skip(1)
                    .last()
                    .map(|w| w.text.clone())
                    .filter(|u| u.starts_with('/'));
                (CheckKind::Http, uri.unwrap_or_else(|| "/".into()))
            }
            None => (CheckKind::Tcp, "/".into()),
        };
        HealthCheck {
            kind,
            path,
            interval: Dur(inter),
            // `timeout check 0` is unset: the check then times out after `inter`.
            timeout: Dur(t("check")
                .map(|c| c.value)
                .filter(|c| !c.is_zero())
                .unwrap_or(inter)),
            rise: sp.rise.as_ref().map_or(2, |r| r.value),
            fall: sp.fall.as_ref().map_or(3, |f| f.value),
            expect_status: match &s.expect_status {
                Some(e) => vec![e.value],
                None => (200..400).collect(),
            },
            initial: InitialState::Up,
        }
    });
    let retries = s.retries.as_ref().map_or(3, |r| r.value);
    if let Some(r) = &s.retries {
        b.at(format!("{p}.retries.attempts"), r.span.clone());
    }
    if let Some(c) = t("connect") {
        b.at(format!("{p}.connect_timeout"), c.span.clone());
    }
    if let Some(c) = t("server") {
        b.at(format!("{p}.response_timeout"), c.span.clone());
    }
    // `timeout queue` defaults to `timeout connect`.
    let queue_timeout = t("queue").or(t("connect"));
    let all_backups = s.options.get("allbackups").is_some_and(|o| o.value);
    if let Some(o) = s.options.get("allbackups") {
        b.at(format!("{p}.backups"), o.span.clone());
    }
    let mut model_servers = Vec::new();
    let mut seen: HashMap<&str, &ServerLine> = HashMap::with_capacity(servers.len());
    for (i, sv) in servers.iter().enumerate() {
        let sp = builder::indexed(p, "servers", i);
        b.at(&sp, sv.span.clone());
        b.at(builder::field(&sp, "name"), sv.name.span.clone());
        b.at(builder::field(&sp, "address"), sv.address.span.clone());
        let q = &sv.params;
        for (field, span) in [
            ("weight", q.weight.as_ref().map(|w| w.span.clone())),
            (
                "max_connections",
                q.maxconn.as_ref().map(|w| w.span.clone()),
            ),
            ("max_queue", q.maxqueue.as_ref().map(|w| w.span.clone())),
            ("slow_start", q.slowstart.as_ref().map(|w| w.span.clone())),
            ("backup", q.backup.clone()),
            ("down", q.disabled.clone()),
        ] {
            if let Some(span) = span {
                b.at(builder::field(&sp, field), span);
            }
        }
        // A server queues only when it has a maxconn; then maxqueue 0 (the default) means
        // an unbounded queue in HAProxy.
        let has_maxconn = q.maxconn.as_ref().is_some_and(|m| m.value > 0);
        let max_queue = match q.maxqueue.as_ref().map(|m| m.value) {
            _ if !has_maxconn => 0,
            Some(0) | None => 1_000_000,
            Some(n) => n,
        };
        if let Some(first) = seen.insert(&sv.name.text, sv) {
            errors.push(
                Diagnostic::error(format!(
                    "another server named `{}` (at {}) is already in this backend: HAProxy refuses two servers of one name",
                    sv.name.text, first.address.text
                ))
                .with_span(sv.name.span.clone())
                .with_fix("give every server of the backend a distinct name"),
            );
        }
        if let Some(fix) = builder::placeholder(&sv.address.text) {
            errors.push(
                Diagnostic::error(format!(
                    "server `{}` has the address `{}`, which looks like a placeholder left from a template: HAProxy cannot resolve it",
                    sv.name.text, sv.address.text
                ))
                .with_span(sv.address.span.clone())
                .with_fix(fix),
            );
        }
        model_servers.push(Server {
            name: model_name(&sv.name.text),
            address: server_address(&sv.address.text),
            weight: q.weight.as_ref().map_or(1, |w| w.value),
            max_connections: q.maxconn.as_ref().map(|m| m.value).filter(|&m| m > 0),
            max_queue,
            queue_timeout: queue_timeout.map(|t| Dur(t.value)),
            backup: q.backup.is_some(),
            slow_start: q.slowstart.as_ref().map(|s| Dur(s.value)),
            down: q.disabled.is_some(),
            id: q.id.as_ref().map(|i| i.value),
            ring_key: None,
        });
    }
    Pool {
        algorithm,
        hash_key,
        balance_factor: None,
        connect_timeout: t("connect").map(|c| Dur(c.value)),
        response_timeout: t("server").map(|c| Dur(c.value)),
        idle_timeout: None,
        retries: Retries {
            attempts: retries,
            ..Retries::default()
        },
        health,
        passive: None,
        all_down: Default::default(),
        emulate: Some(emulate),
        backups: if all_backups {
            BackupMode::All
        } else {
            BackupMode::First
        },
        servers: model_servers,
    }
}

/// `balance` and `hash-type` as an emulated algorithm, plus the closest native one.
fn balance(
    b: &mut Builder,
    p: &str,
    s: &Settings,
    version: Version,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> (Algorithm, Option<HashKey>, Emulation) {
    if let Some(d) = &s.balance {
        b.at(format!("{p}.algorithm"), d.span.clone());
        b.at(format!("{p}.emulate"), d.span.clone());
    }
    let default = if version >= Version::new(3, 3, 0) {
        "random"
    } else {
        "roundrobin"
    };
    let word = s
        .balance
        .as_ref()
        .and_then(|d| d.arg(0))
        .map_or(default, |w| w.text.as_str());
    let args: Vec<&str> = s
        .balance
        .as_ref()
        .map(|d| d.args().iter().skip(1).map(|w| w.text.as_str()).collect())
        .unwrap_or_default();
    let (lookup, function, avalanche) = hash_type(s.hash_type.as_ref(), errors);
    if let Some(h) = &s.hash_type {
        b.at(format!("{p}.hash_type"), h.span.clone());
    }
    let hash = |key: HaproxyKey| {
        Emulation::HaproxyHash(HaproxyHash {
            key,
            lookup,
            function,
            avalanche,
            balance_factor: s.hash_balance_factor.as_ref().map_or(0, |f| f.value),
        })
    };
    let (name, inner) = match word.split_once('(') {
        Some((n, rest)) => (n, rest.strip_suffix(')')),
        None => (word, None),
    };
    match name {
        "roundrobin" => (Algorithm::RoundRobin, None, Emulation::HaproxyRoundrobin),
        "static-rr" => (Algorithm::RoundRobin, None, Emulation::HaproxyStaticRr),
        "leastconn" => (
            Algorithm::LeastConnections,
            None,
            Emulation::HaproxyLeastconn,
        ),
        "first" => (Algorithm::RoundRobin, None, Emulation::HaproxyFirst),
        "random" => {
            let draws = inner.and_then(|n| n.parse().ok()).unwrap_or(2);
            let algorithm = if draws >= 2 {
                Algorithm::PowerOfTwo
            } else {
                Algorithm::Random
            };
            (algorithm, None, Emulation::HaproxyRandom { draws })
        }
        "source" => (
            Algorithm::ConsistentHash,
            Some(HashKey::ClientIp),
            hash(HaproxyKey::Source),
        ),
        "uri" => {
            let mut whole = false;
            let (mut len, mut depth) = (0, 0);
            let mut path_only = false;
            let mut it = args.iter();
            while let Some(a) = it.next() {
                match *a {
                    "whole" => whole = true,
                    "path-only" => path_only = true,
                    "len" => len = it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                    "depth" => depth = it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                    _ => {}
                }
            }
            (
                Algorithm::ConsistentHash,
                Some(HashKey::Path),
                hash(HaproxyKey::Uri {
                    whole,
                    len,
                    depth,
                    path_only,
                }),
            )
        }
        "url_param" => match args.first() {
            Some(n) => (
                Algorithm::ConsistentHash,
                Some(HashKey::Query {
                    name: n.to_string(),
                }),
                hash(HaproxyKey::UrlParam {
                    name: n.to_string(),
                }),
            ),
            None => {
                if let Some(d) = &s.balance {
                    errors.push(missing_arg(
                        d,
                        "a parameter name: `balance url_param userid`",
                    ));
                }
                (Algorithm::RoundRobin, None, Emulation::HaproxyRoundrobin)
            }
        },
        "hdr" => match inner.filter(|n| !n.is_empty()) {
            Some(h) => (
                Algorithm::ConsistentHash,
                Some(HashKey::Header {
                    name: h.to_string(),
                }),
                hash(HaproxyKey::Hdr {
                    name: h.to_string(),
                    use_domain_only: args.contains(&"use_domain_only"),
                }),
            ),
            None => {
                if let Some(d) = &s.balance {
                    errors.push(
                        Diagnostic::error("`balance hdr` needs a header name")
                            .with_span(d.span.clone())
                            .with_fix("write it like `balance hdr(Host)`"),
                    );
                }
                (Algorithm::RoundRobin, None, Emulation::HaproxyRoundrobin)
            }
        },
        "rdp-cookie" | "hash" => {
            if let Some(d) = &s.balance {
                notes.push(not_modelled(
                    &d.text(),
                    d.span.clone(),
                    "this hash key is not emulated; predictions balance this backend by roundrobin",
                ));
            }
            (Algorithm::RoundRobin, None, Emulation::HaproxyRoundrobin)
        }
        other => {
            if let Some(d) = &s.balance {
                errors.push(
                    Diagnostic::error(format!("unknown balancing algorithm `{other}`"))
                        .with_span(d.span.clone())
                        .with_fix("use roundrobin, static-rr, leastconn, first, source, uri, url_param, hdr(<name>), random, rdp-cookie or hash"),
                );
            }
            (Algorithm::RoundRobin, None, Emulation::HaproxyRoundrobin)
        }
    }
}

/// `hash-type <map-based|consistent> [<function> [avalanche]]`. A bare `consistent` implies
/// sdbm with avalanche.
fn hash_type(
    d: Option<&Directive>,
    errors: &mut Vec<Diagnostic>,
) -> (HashLookup, HashFunction, bool) {
    let Some(d) = d else {
        return (HashLookup::MapBased, HashFunction::Sdbm, false);
    };
    let lookup = match d.arg(0).map(|w| w.text.as_str()) {
        Some("consistent") => HashLookup::Consistent,
        Some("map-based") => HashLookup::MapBased,
        _ => {
            errors.push(
                Diagnostic::error(format!("`{}`: expected map-based or consistent", d.text()))
                    .with_span(d.span.clone())
                    .with_fix("write `hash-type consistent` or `hash-type map-based`"),
            );
            HashLookup::MapBased
        }
    };
    let Some(f) = d.arg(1) else {
        return (lookup, HashFunction::Sdbm, lookup == HashLookup::Consistent);
    };
    let function = match f.text.as_str() {
        "sdbm" => HashFunction::Sdbm,
        "djb2" => HashFunction::Djb2,
        "wt6" => HashFunction::Wt6,
        "crc32" => HashFunction::Crc32,
        other => {
            errors.push(
                Diagnostic::error(format!("unknown hash function `{other}`"))
                    .with_span(f.span.clone())
                    .with_fix("use sdbm, djb2, wt6 or crc32"),
            );
            HashFunction::Sdbm
        }
    };
    let avalanche = match d.arg(2).map(|w| w.text.as_str()) {
        Some("avalanche") => true,
        None => false,
        Some(other) => {
            errors.push(
                Diagnostic::error(format!("unknown hash modifier `{other}`"))
                    .with_span(d.arg(2).map_or(d.span.clone(), |w| w.span.clone()))
                    .with_fix("the only modifier is `avalanche`"),
            );
            false
        }
    };
    (lookup, function, avalanche)
}

/// `*:80`, `:80`, `0.0.0.0:80`, `ipv4@1.2.3.4:80`, `[::]:80` or `:::80` as an IP:port;
/// `unix@/run/x.sock`, `/run/x.sock` and `abns@name` as `unix:/run/x.sock` / `unix:@name`.
/// `None` for what has no address (`fd@3`, `sockpair@4`) or is not one.
fn bind_address(text: &str) -> Option<String> {
    if let Some(unix) = unix_address(text) {
        return Some(unix);
    }
    let t = text
        .strip_prefix("ipv4@")
        .or_else(|| text.strip_prefix("ipv6@"))
        .unwrap_or(text);
    let t = t.split(',').next()?;
    let (host, port) = t.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = match host {
        "" | "*" => "0.0.0.0".to_string(),
        "::" | "[::]" => "[::]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    let addr = format!("{host}:{port}");
    addr.parse::<std::net::SocketAddr>().ok().map(|_| addr)
}

/// A server address as the model writes it: HOST:PORT (port 80 when HAProxy would reuse the
/// client's destination port, which the model cannot express).
fn server_address(text: &str) -> String {
    if let Some(unix) = unix_address(text) {
        return unix;
    }
    let t = text
        .strip_prefix("ipv4@")
        .or_else(|| text.strip_prefix("ipv6@"))
        .unwrap_or(text);
    builder::with_default_port(t)
}

/// HAProxy's unix-socket addresses in the model's form: `unix@/p` and `/p` are `unix:/p`,
/// the abstract namespace's `abns@name` is `unix:@name`.
fn unix_address(text: &str) -> Option<String> {
    let path = text.split(',').next()?;
    if let Some(p) = path.strip_prefix("unix@").filter(|p| !p.is_empty()) {
        Some(format!("unix:{p}"))
    } else if path.starts_with('/') {
        Some(format!("unix:{path}"))
    } else {
        path.strip_prefix("abns@")
            .filter(|p| !p.is_empty())
            .map(|p| format!("unix:@{p}"))
    }
}

fn number(d: &Directive, i: usize, errors: &mut Vec<Diagnostic>) -> Option<u32> {
    match d.arg(i) {
        Some(w) => match w.text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(
                    Diagnostic::error(format!("`{}` is not a number", w.text))
                        .with_span(w.span.clone())
                        .with_fix(format!("write `{} <number>`", d.name())),
                );
                None
            }
        },
        None => {
            errors.push(missing_arg(d, "a number"));
            None
        }
    }
}

fn missing_arg(d: &Directive, what: &str) -> Diagnostic {
    Diagnostic::error(format!("`{}` needs {what}", d.name()))
        .with_span(d.span.clone())
        .with_fix(format!(
            "write `{} <...>`; see the HAProxy manual",
            d.name()
        ))
}
