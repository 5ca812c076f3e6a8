//! What the catalogue rules read from a foreign file beyond the model: the directives as
//! written, resolved the way the load balancer resolves them (HAProxy `defaults` inheritance
//! and `default-server`; nginx inheritance from `http` to `server` to `location`), each with
//! the span of the line that set it. The model holds what ballast can run; these facts hold
//! what a reviewer of the file would read, so a finding can point at the directive at fault.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::NginxContext;
use crate::nginx::Node;
use crate::words::{Directive, Version, Word, haproxy_time, parse_time};

/// Facts of an imported file, by format.
#[derive(Debug, Clone)]
pub enum Facts {
    /// ballast's own format: the model is everything.
    Ballast,
    Haproxy(HaproxyFacts),
    Nginx(NginxFacts),
}

/// An HAProxy file: its `global` directives and its proxies with what they inherit.
#[derive(Debug, Clone)]
pub struct HaproxyFacts {
    pub version: Version,
    /// The `global` section's header, when there is one.
    pub global_header: Option<Range<usize>>,
    pub global: Vec<Directive>,
    pub proxies: Vec<HaproxyProxy>,
}

/// A `frontend`, `backend` or `listen` section.
#[derive(Debug, Clone)]
pub struct HaproxyProxy {
    /// `frontend`, `backend` or `listen`.
    pub kind: String,
    pub name: String,
    pub header: Range<usize>,
    /// The `defaults` directives it inherits (shared by every proxy of that `defaults`).
    pub inherited: Arc<[Directive]>,
    /// The section's own directives, in order.
    pub own: Vec<Directive>,
    /// `bind` lines.
    pub binds: Vec<Directive>,
    /// `use_backend` and `default_backend` targets; `true` for the default.
    pub routes: Vec<(Word, bool)>,
    pub servers: Vec<HaproxyServer>,
}

/// One server (a `server-template` expands to several with the same span).
#[derive(Debug, Clone)]
pub struct HaproxyServer {
    pub name: String,
    pub address: Word,
    pub span: Range<usize>,
    /// `default-server` parameters (shared by the servers of the section).
    pub inherited: Arc<[Param]>,
    /// The line's own parameters.
    pub params: Vec<Param>,
    /// The flags rules ask about for every server, resolved once (see [`Self::flag`]).
    pub backup: bool,
    pub disabled: bool,
    pub check: bool,
}

/// A server keyword and its value as written.
#[derive(Debug, Clone)]
pub struct Param {
    pub keyword: String,
    pub value: Option<Word>,
    /// The keyword and its value.
    pub span: Range<usize>,
}

impl HaproxyFacts {
    pub fn global(&self, name: &str) -> Option<&Directive> {
        self.global.iter().rev().find(|d| d.name() == name)
    }
}

impl HaproxyProxy {
    pub fn is_backend(&self) -> bool {
        self.kind != "frontend"
    }
    pub fn is_frontend(&self) -> bool {
        self.kind != "backend"
    }

    /// Inherited directives then own, in order: the last one of a kind is in force.
    pub fn settings(&self) -> impl DoubleEndedIterator<Item = &Directive> {
        self.inherited.iter().chain(self.own.iter())
    }

    /// The directive in force named `name` (the last one, own or inherited).
    pub fn setting(&self, name: &str) -> Option<&Directive> {
        self.settings().rev().find(|d| d.name() == name)
    }

    /// `option <name>` or `no option <name>` in force: `(enabled, directive)`.
    pub fn option(&self, name: &str) -> Option<(bool, &Directive)> {
        self.settings().rev().find_map(|d| match d.name() {
            "option" if d.arg(0).is_some_and(|w| w.text == name) => Some((true, d)),
            "no" if d.arg(0).is_some_and(|w| w.text == "option")
                && d.arg(1).is_some_and(|w| w.text == name) =>
            {
                Some((false, d))
            }
            _ => None,
        })
    }

    pub fn option_on(&self, name: &str) -> bool {
        self.option(name).is_some_and(|(on, _)| on)
    }

    /// `timeout <name> <time>` in force.
    pub fn timeout(&self, name: &str) -> Option<(Duration, &Directive)> {
        self.settings().rev().find_map(|d| {
            (d.name() == "timeout" && d.arg(0).is_some_and(|w| w.text == name))
                .then(|| d.arg(1).and_then(|w| haproxy_time(&w.text)).map(|t| (t, d)))
                .flatten()
        })
    }

    /// A numeric directive in force (`maxconn 100`, `retries 3`).
    pub fn number(&self, name: &str) -> Option<(u64, &Directive)> {
        let d = self.setting(name)?;
        Some((d.arg(0)?.text.parse().ok()?, d))
    }

    /// Whether `mode http` is in force (HAProxy's default mode is tcp).
    pub fn http(&self) -> bool {
        self.setting("mode")
            .and_then(|d| d.arg(0))
            .is_some_and(|w| w.text == "http")
    }

    /// The `balance` algorithm word in force, e.g. `source`, `hdr(host)`.
    pub fn balance(&self) -> Option<(&str, &Directive)> {
        let d = self.setting("balance")?;
        Some((d.arg(0)?.text.as_str(), d))
    }

    /// Whether `hash-type consistent` is in force.
    pub fn consistent(&self) -> bool {
        self.setting("hash-type")
            .and_then(|d| d.arg(0))
            .is_some_and(|w| w.text == "consistent")
    }

    /// Servers that take traffic in normal operation (not backup, not disabled).
    pub fn active_servers(&self) -> impl Iterator<Item = &HaproxyServer> {
        self.servers.iter().filter(|s| !s.backup && !s.disabled)
    }
}

impl HaproxyServer {
    pub fn new(
        name: String,
        address: Word,
        span: Range<usize>,
        (inherited, params): (Arc<[Param]>, Vec<Param>),
    ) -> Self {
        let mut s = Self {
            name,
            address,
            span,
            inherited,
            params,
            backup: false,
            disabled: false,
            check: false,
        };
        (s.backup, s.disabled, s.check) = (s.flag("backup"), s.flag("disabled"), s.flag("check"));
        s
    }

    /// Every parameter, the one in force first: the line's own from its end, then
    /// `default-server`'s from its end.
    fn latest_first(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().rev().chain(self.inherited.iter().rev())
    }

    /// The value of `keyword` in force (the line's own over `default-server`).
    pub fn param(&self, keyword: &str) -> Option<&Param> {
        self.latest_first().find(|p| p.keyword == keyword)
    }

    /// Whether a flag (`check`, `backup`, `ssl`) is on: set and not cancelled by `no-<flag>`
    /// after it.
    pub fn flag(&self, keyword: &str) -> bool {
        self.latest_first()
            .find(|p| p.keyword == keyword || p.keyword.strip_prefix("no-") == Some(keyword))
            .is_some_and(|p| p.keyword == keyword)
    }

    pub fn number(&self, keyword: &str) -> Option<u64> {
        self.param(keyword)?.value.as_ref()?.text.parse().ok()
    }

    pub fn time(&self, keyword: &str) -> Option<Duration> {
        haproxy_time(&self.param(keyword)?.value.as_ref()?.text)
    }

    /// Where a keyword is written, else the server line.
    pub fn span_of(&self, keyword: &str) -> Range<usize> {
        self.param(keyword)
            .map_or_else(|| self.span.clone(), |p| p.span.clone())
    }

    pub fn weight(&self) -> u64 {
        self.number("weight").unwrap_or(1)
    }

    /// Whether the address is a name that needs resolving rather than an IP.
    pub fn is_fqdn(&self) -> bool {
        let t = self.address.text.as_str();
        let host = t
            .rsplit_once(':')
            .map_or(t, |(h, p)| if p.parse::<u16>().is_ok() { h } else { t });
        let host = host.trim_start_matches("ipv4@").trim_start_matches("ipv6@");
        !host.is_empty()
            && !host.starts_with('/')
            && !host.starts_with("unix@")
            && !host.starts_with('[')
            && !host.contains(':')
            && host.parse::<std::net::IpAddr>().is_err()
            && host.chars().any(|c| c.is_ascii_alphabetic())
    }
}

/// An nginx file: the tree (includes expanded) plus the version.
#[derive(Debug, Clone)]
pub struct NginxFacts {
    pub version: Version,
    /// The tree as nginx reads it: a fragment (a conf.d file) is wrapped in the `http` or
    /// `stream` block that includes it, so the tree always starts at the main context.
    pub tree: Vec<Node>,
    /// The context the file's own top level was read in: `Main` for a whole nginx.conf;
    /// `Http` or `Stream` for a fragment, whose main-context settings (`worker_processes`,
    /// `events`) live in a file ballast has not seen.
    pub context: NginxContext,
}

/// An `upstream` block.
#[derive(Debug)]
pub struct Upstream<'a> {
    pub name: &'a Word,
    pub directive: &'a Directive,
    pub body: &'a [Node],
    /// `http` or `stream`.
    pub context: &'a str,
}

/// A `proxy_pass` and the blocks it inherits from, outermost first (`http`, `server`,
/// `location`...).
#[derive(Debug)]
pub struct ProxyPass<'a> {
    pub directive: &'a Directive,
    /// The upstream name or address it reaches, variables replaced by the one constant that
    /// `set` or `map` gives them (see [`resolve_pass_host`]); `None` when chosen per request.
    pub host: Option<String>,
    pub levels: Vec<&'a [Node]>,
    /// The enclosing `server` block.
    pub server: &'a [Node],
    pub context: &'a str,
}

impl NginxFacts {
    /// A main-context directive.
    pub fn main(&self, name: &str) -> Option<&Directive> {
        last(&self.tree, name)
    }

    /// A directive of the `events` block.
    pub fn events(&self, name: &str) -> Option<&Directive> {
        blocks(&self.tree, "events")
            .filter_map(|b| last(b, name))
            .last()
    }

    /// `http` and `stream` blocks with their names.
    pub fn contexts(&self) -> impl Iterator<Item = (&str, &[Node])> {
        self.tree.iter().filter_map(|n| {
            let name = n.directive.name();
            (name == "http" || name == "stream")
                .then_some(())
                .and(n.block.as_deref().map(|b| (name, b)))
        })
    }

    pub fn upstreams(&self) -> Vec<Upstream<'_>> {
        let mut out = Vec::new();
        for (context, block) in self.contexts() {
            for n in block.iter().filter(|n| n.directive.name() == "upstream") {
                if let (Some(name), Some(body)) = (n.directive.arg(0), n.block.as_deref()) {
                    out.push(Upstream {
                        name,
                        directive: &n.directive,
                        body,
                        context,
                    });
                }
            }
        }
        out
    }

    /// Every `server` block with its context and enclosing block.
    pub fn servers(&self) -> Vec<(&str, &[Node], &[Node])> {
        let mut out = Vec::new();
        for (context, block) in self.contexts() {
            for n in block.iter().filter(|n| n.directive.name() == "server") {
                if let Some(body) = n.block.as_deref() {
                    out.push((context, block, body));
                }
            }
        }
        out
    }

    pub fn proxy_passes(&self) -> Vec<ProxyPass<'_>> {
        let mut out = Vec::new();
        for (context, outer, body) in self.servers() {
            collect_proxy_passes(context, vec![outer, body], body, &mut out);
        }
        out
    }
}

fn collect_proxy_passes<'a>(
    context: &'a str,
    levels: Vec<&'a [Node]>,
    server: &'a [Node],
    out: &mut Vec<ProxyPass<'a>>,
) {
    let here = *levels.last().expect("a level");
    if let Some(d) = last(here, "proxy_pass") {
        let maps = levels.first().copied().unwrap_or_default();
        out.push(ProxyPass {
            directive: d,
            host: d
                .arg(0)
                .and_then(|w| resolve_pass_host(&w.text, &levels[1..], maps)),
            levels: levels.clone(),
            server,
            context,
        });
    }
    for n in here.iter().filter(|n| n.directive.name() == "location") {
        if let Some(b) = n.block.as_deref() {
            let mut l = levels.clone();
            l.push(b);
            collect_proxy_passes(context, l, server, out);
        }
    }
}

impl<'a> ProxyPass<'a> {
    /// The target host part: `backend` of `http://backend/path` (variables resolved when a
    /// `set` or `map` makes them one constant).
    pub fn upstream_name(&self) -> Option<&str> {
        self.host.as_deref()
    }

    pub fn is_https(&self) -> bool {
        self.directive
            .arg(0)
            .is_some_and(|w| w.text.starts_with("https://"))
    }

    /// The directive in force at the `proxy_pass`: nginx takes the innermost level that has
    /// one (array directives such as `proxy_set_header` are inherited only when the level
    /// has none of its own).
    pub fn effective(&self, name: &str) -> Option<&'a Directive> {
        self.levels.iter().rev().find_map(|b| last(b, name))
    }

    /// Every occurrence at the innermost level that has any (`proxy_set_header`).
    pub fn effective_all(&self, name: &str) -> Vec<&'a Directive> {
        for b in self.levels.iter().rev() {
            let found: Vec<_> = b
                .iter()
                .filter(|n| n.directive.name() == name)
                .map(|n| &n.directive)
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    pub fn time(&self, name: &str) -> Option<(Duration, &'a Directive)> {
        let d = self.effective(name)?;
        Some((parse_time(&d.arg(0)?.text, 1000)?, d))
    }
}

impl<'a> Upstream<'a> {
    pub fn directive(&self, name: &str) -> Option<&'a Directive> {
        last(self.body, name)
    }

    /// The balancing method and its directive (`None`: round-robin).
    pub fn method(&self) -> Option<&'a Directive> {
        self.body.iter().rev().map(|n| &n.directive).find(|d| {
            matches!(
                d.name(),
                "ip_hash" | "hash" | "least_conn" | "random" | "least_time"
            )
        })
    }

    pub fn servers(&self) -> impl Iterator<Item = NginxServer<'a>> {
        self.body
            .iter()
            .filter(|n| n.directive.name() == "server")
            .map(|n| NginxServer {
                directive: &n.directive,
            })
    }
}

/// A `server` line of an upstream.
#[derive(Debug, Clone, Copy)]
pub struct NginxServer<'a> {
    pub directive: &'a Directive,
}

impl<'a> NginxServer<'a> {
    pub fn address(&self) -> &'a str {
        self.directive.arg(0).map_or("", |w| w.text.as_str())
    }

    /// `key=value` parameter.
    pub fn param(&self, key: &str) -> Option<(&'a str, &'a Word)> {
        self.directive.args().iter().skip(1).find_map(|w| {
            let (k, v) = w.text.split_once('=')?;
            (k == key).then_some((v, w))
        })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.directive.args().iter().skip(1).any(|w| w.text == name)
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.param(key)?.0.parse().ok()
    }

    pub fn weight(&self) -> u64 {
        self.number("weight").unwrap_or(1)
    }

    /// Whether the address is a host name (resolved once at start without `resolve`).
    pub fn is_hostname(&self) -> bool {
        is_host_name(self.address())
    }
}

/// Whether an nginx `host[:port]` (a `server` address, a `proxy_pass` host) is a name nginx
/// resolves rather than an address: not an IP, not a unix socket, not a variable.
pub fn is_host_name(host_port: &str) -> bool {
    if host_port.starts_with("unix:") || host_port.contains('$') {
        return false;
    }
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => host_port,
    };
    // Anything that does not parse as an address is resolved as a name (`nginx -t` fails
    // when it does not resolve), digits-only oddities included.
    host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[')
}

/// The upstream name or address a `proxy_pass` (or `uwsgi_pass`, `fastcgi_pass`...) names, as
/// written: `app` of `http://app/path`, `unix:/run/app.sock` of
/// `http://unix:/run/app.sock:/path`, `10.0.0.1:8080` of a stream `proxy_pass 10.0.0.1:8080;`.
pub fn pass_host(target: &str) -> &str {
    let t = target.find("://").map_or(target, |i| &target[i + 3..]);
    if let Some(path) = t.strip_prefix("unix:") {
        // The socket path ends at the `:` that starts the URI, if any.
        let end = path.find(':').map_or(t.len(), |i| i + "unix:".len());
        return &t[..end];
    }
    t.split('/').next().unwrap_or("")
}

/// The host a `proxy_pass` reaches once its variables are replaced: `set $backend app;` in the
/// location or server (innermost first, the last `set` of a level), or a `map` of the `http`
/// or `stream` block (`maps`) whose every value is the same. `None` when a variable has no
/// such constant (a `map` of several upstreams, `set_by_lua_block`, `$host`): nginx chooses per
/// request. `levels` are the `server` and `location` blocks, outermost first.
pub fn resolve_pass_host(target: &str, levels: &[&[Node]], maps: &[Node]) -> Option<String> {
    let host = pass_host(target);
    if !host.contains('$') {
        return Some(host.to_string());
    }
    let mut out = String::new();
    let mut rest = host;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}')?;
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        let value = variable_constant(name, levels, maps)?;
        if value.contains('$') {
            return None;
        }
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    // `set $upstream http://app:8080;` holds a whole URL.
    Some(pass_host(&out).to_string())
}

/// The one value `set` or `map` gives `$name`, if there is one.
fn variable_constant<'a>(name: &str, levels: &[&'a [Node]], maps: &'a [Node]) -> Option<&'a str> {
    let is_var = |w: Option<&Word>| {
        w.is_some_and(|w| {
            let t = w.text.strip_prefix('$').unwrap_or("");
            t == name || t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) == Some(name)
        })
    };
    for level in levels.iter().rev() {
        if let Some(n) = level
            .iter()
            .rev()
            .find(|n| n.directive.name() == "set" && is_var(n.directive.arg(0)))
        {
            return n.directive.arg(1).map(|w| w.text.as_str());
        }
        // A variable another module sets per request (`set_by_lua_block $v { ... }`).
        if level
            .iter()
            .any(|n| n.directive.name().starts_with("set_by_") && is_var(n.directive.arg(0)))
        {
            return None;
        }
    }
    let map = maps
        .iter()
        .rev()
        .find(|n| n.directive.name() == "map" && is_var(n.directive.arg(1)))?;
    let mut values =
        map.block
            .as_deref()?
            .iter()
            .filter_map(|entry| match entry.directive.name() {
                "hostnames" | "volatile" => None,
                _ => Some(entry.directive.arg(0).map(|w| w.text.as_str())),
            });
    let first = values.next()??;
    values.all(|v| v == Some(first)).then_some(first)
}

/// Blocks of the directives named `name`.
pub fn blocks<'a>(nodes: &'a [Node], name: &'a str) -> impl Iterator<Item = &'a [Node]> {
    nodes
        .iter()
        .filter(move |n| n.directive.name() == name)
        .filter_map(|n| n.block.as_deref())
}

/// The last simple directive named `name` in a block.
pub fn last<'a>(nodes: &'a [Node], name: &str) -> Option<&'a Directive> {
    nodes
        .iter()
        .rev()
        .find(|n| n.directive.name() == name)
        .map(|n| &n.directive)
}

/// Every directive in the tree, depth first, for rules that look anywhere (`stub_status`).
pub fn walk<'a>(nodes: &'a [Node], out: &mut Vec<(&'a Directive, &'a [Node])>) {
    for n in nodes {
        out.push((&n.directive, nodes));
        if let Some(b) = &n.block {
            walk(b, out);
        }
    }
}
