//! `ballast convert`: an imported HAProxy or nginx configuration written as ballast's own
//! TOML file.
//!
//! The model is written as it was imported (pools keep `emulate`, which `serve` and
//! `simulate` both honour, so the algorithm is the foreign one exactly), with a comment naming
//! the source line of every listener, pool, server and health check, and every directive the
//! model does not hold listed, grouped, with its lines. What native ballast cannot run is
//! never written as a file that fails to load: a file without listeners (an nginx fragment of
//! upstreams) needs `--listen`, a unix-socket server needs `--map-address`, and without them
//! [`convert`] refuses, saying which option to give. The text is loaded back before it is
//! returned, and must give the same model (a writer bug is refused, not written).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use ballast_core::config::{Config, Dur, Emulation, Protocol};
use ballast_core::load::valid_host_port;
use ballast_core::source::{Diagnostic, SourceFile};
use toml::{Table, Value};

use crate::facts::Facts;
use crate::{Format, Imported, builder, not_modelled_parts};

/// The longest timeout a native file accepts (`ballast check` refuses longer ones as a unit
/// slip); longer foreign timeouts are written as this, with a comment.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Members of one not-translated group listed one per line; the rest by line number only.
const LISTED_PER_GROUP: usize = 12;
/// Source lines quoted in comments are cut to this many characters.
const QUOTED_LINE_CHARS: usize = 110;

/// What the caller decides for the things native ballast cannot run as written.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Give every pool that no listener routes to a listener of its own: the first at this
    /// address, the next ones on the following ports. Required when the file has no listener.
    pub listen: Option<SocketAddr>,
    /// Server addresses to replace, `(as the model writes it, HOST:PORT)`: how a unix-socket
    /// server (`unix:/run/app.sock`) gets the TCP address ballast connects to.
    pub map_address: Vec<(String, String)>,
    /// Where the output goes, for the file's own "check it" comment; `None` for stdout.
    pub output_name: Option<String>,
}

/// A converted configuration.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The ballast TOML file.
    pub text: String,
    /// The model it loads as.
    pub config: Config,
    pub summary: Summary,
}

/// What a conversion did, in numbers, for the command's one-line report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub listeners: usize,
    pub pools: usize,
    pub servers: usize,
    /// Directives listed as not translated.
    pub not_translated: usize,
    /// Listeners made by `--listen`.
    pub added_listeners: usize,
    /// Server addresses replaced by `--map-address`.
    pub mapped_addresses: usize,
    /// Timeouts longer than a day written as a day.
    pub capped_timeouts: usize,
}

/// Converts an imported HAProxy or nginx configuration to a native ballast file, or says why
/// it cannot (diagnostics located in the input file, with the option that resolves each).
pub fn convert(
    imported: &Imported,
    options: &ConvertOptions,
) -> Result<Converted, Vec<Diagnostic>> {
    let lb = match imported.format {
        Format::Haproxy => "HAProxy",
        Format::Nginx => "nginx",
        Format::Ballast => {
            return Err(vec![
                Diagnostic::error(format!(
                    "{} is already a ballast configuration; there is nothing to convert",
                    imported.loaded.source.path.display()
                ))
                .with_fix("give an HAProxy or nginx file (name its format with --as haproxy or --as nginx if it is not detected)"),
            ]);
        }
    };
    let mut w = Writer {
        imported,
        lb,
        config: imported.loaded.config.clone(),
        comments: HashMap::new(),
        summary: Summary::default(),
        errors: Vec::new(),
    };
    w.refuse_empty();
    w.map_addresses(&options.map_address);
    w.refuse_unix_servers();
    w.add_listeners(options.listen);
    if !w.errors.is_empty() {
        return Err(w.errors);
    }
    w.cap_timeouts();
    w.describe();
    let text = w.render(options);
    // The text must load as the model it was written from.
    let name = options
        .output_name
        .clone()
        .unwrap_or_else(|| "converted.toml".into());
    match ballast_core::load_source(SourceFile::new(name, text.clone())) {
        Ok(loaded) if loaded.config == w.config => {}
        Ok(_) => {
            return Err(vec![Diagnostic::error(
                "the written file does not load as the model it was written from (a bug in ballast convert)",
            ).with_fix("please report it with the input file; `ballast check` and `ballast diff` still read the original")]);
        }
        Err(e) => {
            return Err(vec![Diagnostic::error(format!(
                "the written file would not load (a bug in ballast convert): {}",
                e.render().trim_end()
            )).with_fix("please report it with the input file; `ballast check` and `ballast diff` still read the original")]);
        }
    }
    w.summary.listeners = w.config.listeners.len();
    w.summary.pools = w.config.pools.len();
    w.summary.servers = w.config.pools.values().map(|p| p.servers.len()).sum();
    Ok(Converted {
        text,
        config: w.config,
        summary: w.summary,
    })
}

/// The conversion under way: the model being adjusted and the comments gathered for it, by
/// model path (`pools.app`, `pools.app.servers[2]`, `pools.app.emulate`).
struct Writer<'a> {
    imported: &'a Imported,
    /// The load balancer's name as people write it.
    lb: &'static str,
    config: Config,
    comments: HashMap<String, Vec<String>>,
    summary: Summary,
    errors: Vec<Diagnostic>,
}

impl Writer<'_> {
    fn comment(&mut self, path: &str, line: impl Into<String>) {
        self.comments
            .entry(path.to_string())
            .or_default()
            .push(line.into());
    }

    fn span(&self, path: &str) -> Option<std::ops::Range<usize>> {
        self.imported
            .loaded
            .spans
            .value(path)
            .or_else(|| self.imported.loaded.spans.key(path))
    }

    /// `line N: <the line as written>` for a model path that came from the file.
    fn origin(&self, path: &str) -> Option<String> {
        let span = self.span(path)?;
        let source = &self.imported.loaded.source;
        let line = source.line_col(span.start).line;
        Some(format!(
            "line {line}: {}",
            quote_line(source.line_text(line))
        ))
    }

    /// Nothing to balance: refused, since a native file needs pools with servers.
    fn refuse_empty(&mut self) {
        let path = self.imported.loaded.source.path.display().to_string();
        if self.config.pools.is_empty() {
            let (what, fix) = match self.imported.format {
                Format::Haproxy => (
                    "no backend or listen section with servers",
                    "ballast converts load balancing; a file of stats pages and redirects has none to convert",
                ),
                _ => (
                    "no upstream and no proxy_pass to an address",
                    "ballast converts load balancing; a file that only serves files or redirects has none to convert",
                ),
            };
            self.errors.push(
                Diagnostic::error(format!("{path} balances no traffic: {what}")).with_fix(fix),
            );
        }
        for (name, pool) in &self.config.pools {
            if pool.servers.is_empty() {
                let mut d = Diagnostic::error(format!(
                    "`{name}` has no servers; ballast cannot run a pool without one"
                ))
                .with_fix("add its servers, or remove it and what routes to it");
                if let Some(s) = self.span(&format!("pools.{name}")) {
                    d = d.with_span(s);
                }
                self.errors.push(d);
            }
        }
    }

    /// Applies `--map-address FROM=TO`; a FROM that matches no server is refused (a typo
    /// would otherwise leave the server it meant unchanged).
    fn map_addresses(&mut self, map: &[(String, String)]) {
        for (from, to) in map {
            if !valid_host_port(to) || to.starts_with("unix:") {
                self.errors.push(
                    Diagnostic::error(format!(
                        "--map-address {from}={to}: `{to}` is not HOST:PORT"
                    ))
                    .with_fix("give the TCP address the server listens on, such as --map-address unix:/run/app.sock=127.0.0.1:8000"),
                );
                continue;
            }
            // HAProxy writes `unix@/run/app.sock` and `abns@name`; the model (and the
            // refusal) `unix:/run/app.sock` and `unix:@name`.
            let from = match (from.strip_prefix("unix@"), from.strip_prefix("abns@")) {
                (Some(path), _) => format!("unix:{path}"),
                (_, Some(name)) => format!("unix:@{name}"),
                _ => from.clone(),
            };
            let from = &from;
            let mut matched = Vec::new();
            // A listener on a unix socket listens on the TCP address given instead.
            if to.parse::<SocketAddr>().is_ok() {
                for (lname, l) in &mut self.config.listeners {
                    if l.address == *from {
                        l.address = to.clone();
                        matched.push(format!("listeners.{lname}"));
                    }
                }
            }
            for (pname, pool) in &mut self.config.pools {
                // nginx's consistent hash places a server by its text as written: keep that
                // text, so the ring (and every request's server) is the same.
                let keeps_ring = matches!(
                    pool.emulate,
                    Some(Emulation::NginxHash {
                        consistent: true,
                        ..
                    })
                );
                for (i, s) in pool.servers.iter_mut().enumerate() {
                    if s.address == *from {
                        if keeps_ring && s.ring_key.is_none() {
                            s.ring_key = Some(s.address.clone());
                        }
                        s.address = to.clone();
                        matched.push(format!("pools.{pname}.servers[{i}]"));
                    }
                }
            }
            if matched.is_empty() {
                let known: BTreeSet<&str> = self
                    .config
                    .pools
                    .values()
                    .flat_map(|p| p.servers.iter().map(|s| s.address.as_str()))
                    .collect();
                let known: Vec<&str> = known.into_iter().take(10).collect();
                self.errors.push(
                    Diagnostic::error(format!(
                        "--map-address {from}={to}: no server has the address `{from}`"
                    ))
                    .with_fix(format!(
                        "give an address as the conversion names it; the servers' addresses include: {}",
                        known.join(", ")
                    )),
                );
            }
            for path in matched {
                self.summary.mapped_addresses += 1;
                self.comment(
                    &format!("{path}.address"),
                    format!(
                        "STAND-IN given by --map-address for the {} address `{from}`; {}",
                        self.lb,
                        if path.starts_with("listeners.") {
                            "confirm clients can reach ballast here"
                        } else {
                            "confirm the server answers here"
                        }
                    ),
                );
            }
        }
    }

    /// Servers whose address native ballast cannot connect to (unix sockets): refused with
    /// the `--map-address` that resolves each.
    fn refuse_unix_servers(&mut self) {
        let mut found = Vec::new();
        for (pname, pool) in &self.config.pools {
            for (i, s) in pool.servers.iter().enumerate() {
                if !valid_host_port(&s.address) {
                    found.push((
                        format!("pools.{pname}.servers[{i}]"),
                        s.name.clone(),
                        s.address.clone(),
                    ));
                }
            }
        }
        // Listeners too: native ballast binds TCP sockets only.
        for (lname, l) in &self.config.listeners {
            if l.address.parse::<SocketAddr>().is_err() {
                let mut d = Diagnostic::error(format!(
                    "listener `{lname}` listens on `{}`, a unix socket; ballast listens on TCP only",
                    l.address
                ))
                .with_fix(format!(
                    "give the TCP address to listen on instead: --map-address {}=127.0.0.1:8080",
                    l.address
                ));
                if let Some(s) = self.span(&format!("listeners.{lname}")) {
                    d = d.with_span(s);
                }
                self.errors.push(d);
            }
        }
        for (path, name, address) in found {
            let what = if address.starts_with("unix:") {
                "a unix socket; ballast connects to servers over TCP only"
            } else {
                "not an address ballast can connect to"
            };
            let mut d = Diagnostic::error(format!("server `{name}` at `{address}` is {what}"))
                .with_fix(format!(
                    "have the application listen on TCP as well and give that address: --map-address {address}=127.0.0.1:8000"
                ));
            if let Some(s) = self.span(&path) {
                d = d.with_span(s);
            }
            self.errors.push(d);
        }
    }

    /// `--listen`: a listener for every pool no listener routes to, on consecutive ports.
    /// Without it, a file with no listener at all is refused (native ballast needs one).
    fn add_listeners(&mut self, listen: Option<SocketAddr>) {
        let routed: BTreeSet<&str> = self
            .config
            .listeners
            .values()
            .map(|l| l.pool.as_str())
            .collect();
        let unrouted: Vec<String> = self
            .config
            .pools
            .keys()
            .filter(|p| !routed.contains(p.as_str()))
            .cloned()
            .collect();
        let Some(first) = listen else {
            if self.config.listeners.is_empty() && !self.config.pools.is_empty() {
                let (what, pools) = match self.imported.format {
                    Format::Haproxy => {
                        ("no frontend or listen section binds an address", "backend")
                    }
                    _ => (
                        "no server block listens and passes to an upstream (an included fragment?)",
                        "upstream",
                    ),
                };
                self.errors.push(
                    Diagnostic::error(format!(
                        "{} has no listener: {what}; ballast needs one to accept traffic",
                        self.imported.loaded.source.path.display()
                    ))
                    .with_fix(format!(
                        "give the address to listen on: --listen 127.0.0.1:8080 (each {pools} then gets its own listener, on that port and the next ones: {})",
                        unrouted.join(", ")
                    )),
                );
            }
            for p in unrouted {
                self.comment(
                    &format!("pools.{p}"),
                    "no listener routes to this pool; `ballast convert --listen ADDR` gives it one",
                );
            }
            return;
        };
        let taken: BTreeSet<SocketAddr> = self
            .config
            .listeners
            .values()
            .filter_map(|l| l.address.parse().ok())
            .collect();
        let mut port = u32::from(first.port());
        for pool in unrouted {
            while port <= u32::from(u16::MAX)
                && taken.contains(&SocketAddr::new(first.ip(), port as u16))
            {
                port += 1;
            }
            let Ok(p) = u16::try_from(port) else {
                self.errors.push(
                    Diagnostic::error(format!(
                        "--listen {first}: no free port left above it for `{pool}`"
                    ))
                    .with_fix("give a lower port, such as --listen 127.0.0.1:8080"),
                );
                return;
            };
            port += 1;
            let address = SocketAddr::new(first.ip(), p).to_string();
            let mut name = pool.clone();
            let mut n = 2;
            while self.config.listeners.contains_key(&name) {
                name = format!("{pool}-{n}");
                n += 1;
            }
            let protocol = self.pool_protocol(&pool);
            let l = format!("listeners.{name}");
            self.comment(
                &l,
                format!(
                    "STAND-IN added by --listen: no listener of the {} file routes to `{pool}`; confirm the address and the protocol ({})",
                    self.lb,
                    match protocol {
                        Protocol::Http => "http",
                        Protocol::Tcp => "tcp",
                    }
                ),
            );
            self.config.listeners.insert(
                name,
                builder::listener(address, protocol, None, pool, Default::default()),
            );
            self.summary.added_listeners += 1;
        }
    }

    /// The protocol a pool was written for: HAProxy's `mode` in force in its backend, nginx's
    /// `stream` context; http otherwise.
    fn pool_protocol(&self, pool: &str) -> Protocol {
        let tcp = match &self.imported.facts {
            Facts::Haproxy(f) => f
                .proxies
                .iter()
                .find(|p| p.is_backend() && builder::model_name(&p.name) == pool)
                .is_some_and(|p| !p.http()),
            Facts::Nginx(f) => f
                .upstreams()
                .iter()
                .any(|u| builder::model_name(&u.name.text) == pool && u.context == "stream"),
            Facts::Ballast => false,
        };
        if tcp { Protocol::Tcp } else { Protocol::Http }
    }

    /// Timeouts over a day are written as a day, which is what a native file accepts.
    fn cap_timeouts(&mut self) {
        let mut capped: Vec<(String, Duration)> = Vec::new();
        let mut cap = |d: &mut Option<Dur>, path: String| {
            if let Some(v) = d
                && v.0 > LONGEST_TIMEOUT
            {
                capped.push((path, v.0));
                v.0 = LONGEST_TIMEOUT;
            }
        };
        for (name, l) in &mut self.config.listeners {
            let p = format!("listeners.{name}.timeouts");
            cap(&mut l.timeouts.header_read, format!("{p}.header_read"));
            cap(&mut l.timeouts.idle, format!("{p}.idle"));
            cap(&mut l.timeouts.request, format!("{p}.request"));
        }
        for (name, pool) in &mut self.config.pools {
            let p = format!("pools.{name}");
            cap(&mut pool.connect_timeout, format!("{p}.connect_timeout"));
            cap(&mut pool.response_timeout, format!("{p}.response_timeout"));
            cap(&mut pool.idle_timeout, format!("{p}.idle_timeout"));
            if let Some(h) = &mut pool.health {
                let mut interval = Some(h.interval);
                cap(&mut interval, format!("{p}.health.interval"));
                h.interval = interval.unwrap_or(h.interval);
                let mut timeout = Some(h.timeout);
                cap(&mut timeout, format!("{p}.health.timeout"));
                h.timeout = timeout.unwrap_or(h.timeout);
            }
            if let Some(e) = &mut pool.passive {
                let mut base = Some(e.base_ejection);
                cap(&mut base, format!("{p}.passive.base_ejection"));
                e.base_ejection = base.unwrap_or(e.base_ejection);
            }
            for (i, s) in pool.servers.iter_mut().enumerate() {
                cap(
                    &mut s.queue_timeout,
                    format!("{p}.servers[{i}].queue_timeout"),
                );
                cap(&mut s.slow_start, format!("{p}.servers[{i}].slow_start"));
            }
        }
        for (path, was) in capped {
            self.summary.capped_timeouts += 1;
            self.comment(
                &path,
                format!(
                    "STAND-IN: {} has {}s here; ballast accepts at most a day",
                    self.lb,
                    was.as_secs()
                ),
            );
        }
    }

    /// The comments naming where each listener, pool, server and health check came from,
    /// and how each pool balances.
    fn describe(&mut self) {
        let mut found: Vec<(String, String)> = Vec::new();
        for name in self.config.listeners.keys() {
            let p = format!("listeners.{name}");
            if let Some(o) = self.origin(&p) {
                found.push((p, o));
            }
        }
        for (name, pool) in &self.config.pools {
            let p = format!("pools.{name}");
            if let Some(o) = self.origin(&p) {
                found.push((p.clone(), o));
            }
            if let Some(e) = &pool.emulate {
                found.push((
                    format!("{p}.emulate"),
                    format!(
                        "{}, emulated exactly by `ballast serve` and `simulate`; `algorithm` is the nearest native one, for `ballast check`'s rules",
                        e.describe()
                    ),
                ));
            }
            if pool.health.is_some()
                && let Some(o) = self.origin(&format!("{p}.health"))
            {
                found.push((format!("{p}.health"), o));
            }
            for i in 0..pool.servers.len() {
                let sp = format!("{p}.servers[{i}]");
                if let Some(o) = self.origin(&sp) {
                    found.push((sp, o));
                }
            }
        }
        for (path, line) in found {
            // The origin goes first: stand-in notes gathered earlier follow it.
            self.comments.entry(path).or_default().insert(0, line);
        }
    }

    /// The header and the not-translated list, then the model.
    fn render(&mut self, options: &ConvertOptions) -> String {
        let source = &self.imported.loaded.source;
        let input = source.path.display().to_string();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# ballast configuration converted from {} ({}) by `ballast convert`.",
            sanitize(&input),
            self.lb
        );
        out.push_str(&format!(
            "#\n# Every pool keeps `emulate`: `ballast serve` and `ballast simulate` reproduce {}'s own\n\
             # algorithm exactly (the same server for every request), with its backup and limit rules.\n\
             # Each listener, pool and server names the line of {} it came from.\n",
            self.lb,
            sanitize(&input)
        ));
        let output = options.output_name.as_deref().unwrap_or("THIS_FILE.toml");
        let _ = writeln!(
            out,
            "# Check it:  ballast check {}   and   ballast diff {} {}",
            sanitize(output),
            sanitize(&input),
            sanitize(output)
        );
        let stand_ins = self.summary.added_listeners
            + self.summary.mapped_addresses
            + self.summary.capped_timeouts;
        if stand_ins > 0 {
            let _ = writeln!(
                out,
                "#\n# {stand_ins} STAND-IN value(s) below were not in {}: confirm each before serving.",
                sanitize(&input)
            );
        }
        self.not_translated(&mut out);
        let mut value = Value::try_from(&self.config).unwrap_or(Value::Table(Table::new()));
        elide_defaults(&mut value);
        if let Value::Table(t) = &value {
            emit_table(&mut out, &[], t, &self.comments);
        }
        out
    }

    /// The notes, grouped by directive and reason, each with its lines.
    fn not_translated(&mut self, out: &mut String) {
        let source = &self.imported.loaded.source;
        let notes = &self.imported.notes;
        if notes.is_empty() {
            let _ = writeln!(
                out,
                "#\n# Not translated: nothing; every directive of the file is in the model."
            );
            return;
        }
        self.summary.not_translated = notes.len();
        // (keyword, reason) -> members (line, directive text), in order of first appearance.
        let mut groups: Vec<(NoteGroup, Vec<NoteMember>)> = Vec::new();
        let mut index: HashMap<NoteGroup, usize> = HashMap::new();
        for n in notes {
            let line = n.span.as_ref().map(|s| source.line_col(s.start).line);
            let (key, text) = match not_modelled_parts(&n.message) {
                Some((what, why)) => (
                    (
                        what.split_whitespace().next().unwrap_or("").to_string(),
                        why.to_string(),
                    ),
                    what.to_string(),
                ),
                None => ((String::new(), n.message.clone()), n.message.clone()),
            };
            match index.get(&key) {
                Some(&i) => groups[i].1.push((line, text)),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![(line, text)]));
                }
            }
        }
        let _ = writeln!(
            out,
            "#\n# Not translated: {} directive{} of {} {} no counterpart in this file, so ballast\n\
             # does not do what {} {}. Review each before switching.",
            notes.len(),
            if notes.len() == 1 { "" } else { "s" },
            sanitize(&source.path.display().to_string()),
            if notes.len() == 1 { "has" } else { "have" },
            if notes.len() == 1 { "it" } else { "they" },
            if notes.len() == 1 { "does" } else { "do" },
        );
        for ((keyword, why), members) in groups {
            if keyword.is_empty() {
                let _ = writeln!(out, "#   {}", sanitize(&why));
            } else {
                let _ = writeln!(out, "#   `{}`: {}", sanitize(&keyword), sanitize(&why));
            }
            for (line, text) in members.iter().take(LISTED_PER_GROUP) {
                let at = line.map_or_else(|| "(no line)".to_string(), |l| format!("line {l}"));
                if keyword.is_empty() {
                    let _ = writeln!(out, "#     {at}");
                } else {
                    let _ = writeln!(out, "#     {at}: {}", quote_line(text));
                }
            }
            if members.len() > LISTED_PER_GROUP {
                let rest: Vec<String> = members[LISTED_PER_GROUP..]
                    .iter()
                    .map(|(l, _)| l.map_or_else(|| "?".into(), |l| l.to_string()))
                    .collect();
                let _ = writeln!(
                    out,
                    "#     and {} more on lines {}",
                    rest.len(),
                    wrap_list(&rest)
                );
            }
        }
    }
}

/// Notes listed together: the directive's keyword and the reason it is not modelled.
type NoteGroup = (String, String);
/// One note of a group: its line, when located, and the directive as written.
type NoteMember = (Option<usize>, String);

/// A list of line numbers, wrapped into comment lines.
fn wrap_list(items: &[String]) -> String {
    let mut out = String::new();
    let mut width = 0;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
            width += 2;
        }
        if width > 70 {
            out.push_str("\n#       ");
            width = 0;
        }
        out.push_str(item);
        width += item.len();
    }
    out
}

/// A line of the source fit for a comment: control characters replaced, cut when long.
fn quote_line(text: &str) -> String {
    let t = sanitize(text.trim());
    if t.chars().count() > QUOTED_LINE_CHARS {
        let cut: String = t.chars().take(QUOTED_LINE_CHARS).collect();
        format!("{cut}…")
    } else {
        t
    }
}

/// TOML comments may hold any character but the control ones (tab aside).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// Arrays of numbers longer than this (HAProxy's 200–399 check statuses) are written over
/// several lines, this many a line, after a comment giving their ranges.
const LONG_ARRAY: usize = 16;

/// `200–399, 404`: consecutive runs of numbers.
fn ranges(numbers: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j].saturating_add(1) {
            j += 1;
        }
        parts.push(if j == i {
            numbers[i].to_string()
        } else {
            format!("{}–{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// Keys whose tables are written inline (`emulate = { lb = "nginx-ip-hash" }`), as
/// docs/configuration.md writes them.
const INLINE_KEYS: &[&str] = &["emulate", "hash_key", "tls"];
/// Keys written even at their default, because they say what a pool or server is.
const ALWAYS_WRITTEN: &[&str] = &["algorithm", "weight"];
/// The order keys are written in within a table; the others follow alphabetically.
const KEY_ORDER: &[&str] = &[
    "name",
    "address",
    "protocol",
    "pool",
    "weight",
    "backup",
    "down",
    "algorithm",
    "emulate",
    "hash_key",
    "lb",
    "key",
    "from",
];

/// Removes the values a native file would get by default anyway (shorter, and what is
/// written is what the source chose), leaving [`ALWAYS_WRITTEN`] keys.
fn elide_defaults(root: &mut Value) {
    let defaults = Defaults::new();
    let Value::Table(root) = root else { return };
    elide(root, &defaults.config);
    if let Some(Value::Table(listeners)) = root.get_mut("listeners") {
        for (_, l) in listeners.iter_mut() {
            if let Value::Table(l) = l {
                elide(l, &defaults.listener);
            }
        }
    }
    if let Some(Value::Table(pools)) = root.get_mut("pools") {
        for (_, p) in pools.iter_mut() {
            let Value::Table(p) = p else { continue };
            elide(p, &defaults.pool);
            if let Some(Value::Table(h)) = p.get_mut("health") {
                elide(h, &defaults.health);
            }
            if let Some(Value::Table(e)) = p.get_mut("passive") {
                elide(e, &defaults.passive);
            }
            if let Some(Value::Array(servers)) = p.get_mut("servers") {
                for s in servers {
                    if let Value::Table(s) = s {
                        elide(s, &defaults.server);
                    }
                }
            }
        }
    }
}

/// The serialized defaults of each table a converted file holds.
struct Defaults {
    config: Table,
    listener: Table,
    pool: Table,
    health: Table,
    passive: Table,
    server: Table,
}

impl Defaults {
    fn new() -> Self {
        fn of<T: serde::de::DeserializeOwned + serde::Serialize>(text: &str) -> Table {
            toml::from_str::<T>(text)
                .ok()
                .and_then(|v| Value::try_from(v).ok())
                .and_then(|v| match v {
                    Value::Table(t) => Some(t),
                    _ => None,
                })
                .unwrap_or_default()
        }
        use ballast_core::config as c;
        Self {
            config: of::<Config>(""),
            listener: of::<c::Listener>("address = \"\"\npool = \"\""),
            pool: of::<c::Pool>(""),
            health: of::<c::HealthCheck>(""),
            passive: of::<c::PassiveEjection>(""),
            server: of::<c::Server>("name = \"\"\naddress = \"\""),
        }
    }
}

/// Drops the keys equal to their default, and recursively within tables both have.
fn elide(table: &mut Table, default: &Table) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for k in keys {
        let Some(d) = default.get(&k) else { continue };
        if ALWAYS_WRITTEN.contains(&k.as_str()) {
            continue;
        }
        let remove = match (table.get_mut(&k), d) {
            (Some(v), d) if v == d => true,
            (Some(Value::Table(t)), Value::Table(dt)) => {
                elide(t, dt);
                t.is_empty()
            }
            _ => false,
        };
        if remove {
            table.remove(&k);
        }
    }
}

fn ordered(table: &Table) -> Vec<(&String, &Value)> {
    let mut keys: Vec<(&String, &Value)> = table.iter().collect();
    keys.sort_by_key(|(k, _)| {
        (
            KEY_ORDER
                .iter()
                .position(|o| o == k)
                .unwrap_or(KEY_ORDER.len()),
            (*k).clone(),
        )
    });
    keys
}

/// Whether a value is written under its own `[header]` (or `[[header]]`) rather than as
/// `key = value`.
fn is_section(key: &str, value: &Value) -> bool {
    if INLINE_KEYS.contains(&key) {
        return false;
    }
    match value {
        Value::Table(_) => true,
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_table),
        _ => false,
    }
}

/// Writes one table: its plain keys, then its sub-tables and arrays of tables under headers.
fn emit_table(
    out: &mut String,
    path: &[(String, Option<usize>)],
    table: &Table,
    comments: &HashMap<String, Vec<String>>,
) {
    let here = model_path(path);
    for (k, v) in ordered(table) {
        if is_section(k, v) {
            continue;
        }
        let kp = join(&here, k);
        write_comments(out, comments.get(&kp));
        if let Value::Array(a) = v
            && a.len() > LONG_ARRAY
            && a.iter().all(Value::is_integer)
        {
            let numbers: Vec<i64> = a.iter().filter_map(Value::as_integer).collect();
            let _ = writeln!(out, "# {}", ranges(&numbers));
            let _ = writeln!(out, "{} = [", toml_key(k));
            for chunk in numbers.chunks(LONG_ARRAY) {
                let items: Vec<String> = chunk.iter().map(i64::to_string).collect();
                let _ = writeln!(out, "    {},", items.join(", "));
            }
            out.push_str("]\n");
            continue;
        }
        let _ = writeln!(out, "{} = {}", toml_key(k), inline(v));
    }
    for (k, v) in ordered(table) {
        if !is_section(k, v) {
            continue;
        }
        let mut sub = path.to_vec();
        match v {
            Value::Table(t) => {
                sub.push((k.clone(), None));
                let sp = model_path(&sub);
                let has_plain = t.iter().any(|(k, v)| !is_section(k, v));
                let c = comments.get(&sp);
                if has_plain || t.is_empty() || c.is_some() {
                    out.push('\n');
                    write_comments(out, c);
                    let _ = writeln!(out, "[{}]", header(&sub));
                }
                emit_table(out, &sub, t, comments);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Value::Table(t) = item else { continue };
                    let mut sub = path.to_vec();
                    sub.push((k.clone(), Some(i)));
                    out.push('\n');
                    write_comments(out, comments.get(&model_path(&sub)));
                    let _ = writeln!(out, "[[{}]]", header(&sub));
                    emit_table(out, &sub, t, comments);
                }
            }
            _ => {}
        }
    }
}

/// Comment lines are wrapped at this width; quoted source lines are kept whole.
const COMMENT_WIDTH: usize = 96;

fn write_comments(out: &mut String, lines: Option<&Vec<String>>) {
    for line in lines.into_iter().flatten() {
        let line = sanitize(line);
        if line.starts_with("line ") {
            let _ = writeln!(out, "# {line}");
            continue;
        }
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.is_empty()
                && current.chars().count() + 1 + word.chars().count() > COMMENT_WIDTH
            {
                let _ = writeln!(out, "# {current}");
                current = String::from(" ");
            }
            if !current.is_empty() && current != " " {
                current.push(' ');
            }
            current.push_str(word);
        }
        if !current.trim().is_empty() {
            let _ = writeln!(out, "# {current}");
        }
    }
}

/// The model path of a position (`pools.app.servers[2]`), as `SpanMap` and the comments
/// name it.
fn model_path(path: &[(String, Option<usize>)]) -> String {
    let mut s = String::new();
    for (k, i) in path {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(k);
        if let Some(i) = i {
            let _ = write!(s, "[{i}]");
        }
    }
    s
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// A table header: the keys, quoted where needed, without the array indices.
fn header(path: &[(String, Option<usize>)]) -> String {
    path.iter()
        .map(|(k, _)| toml_key(k))
        .collect::<Vec<_>>()
        .join(".")
}

/// A key, bare when TOML allows it, else quoted.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// A value written on one line.
fn inline(v: &Value) -> String {
    match v {
        Value::Table(t) => {
            if t.is_empty() {
                return "{}".into();
            }
            let items: Vec<String> = ordered(t)
                .into_iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, import_source};
    use ballast_core::config::{BackupMode, HashLookup};

    fn import(name: &str, text: &str) -> Imported {
        import_source(SourceFile::new(name, text), &Options::default())
            .unwrap_or_else(|e| panic!("{name} does not import: {}", e.render()))
    }

    fn convert_ok(imported: &Imported, options: &ConvertOptions) -> Converted {
        convert(imported, options).unwrap_or_else(|e| {
            panic!(
                "not converted: {}",
                e.iter()
                    .map(|d| d.render(Some(&imported.loaded.source)))
                    .collect::<String>()
            )
        })
    }

    /// The written text loaded as a native file, as `ballast check` would.
    fn reload(c: &Converted) -> Config {
        ballast_core::load_source(SourceFile::new("out.toml", c.text.clone()))
            .unwrap_or_else(|e| panic!("output does not load: {}\n{}", e.render(), c.text))
            .config
    }

    /// The comment lines right above the first line equal to `line`, or above the table
    /// header of that line when it is the first key of an array entry (`name = "web2"`).
    fn comments_above<'t>(text: &'t str, line: &str) -> Vec<&'t str> {
        let lines: Vec<&str> = text.lines().collect();
        let mut at = lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no line `{line}` in\n{text}"));
        if line.starts_with("name = ") && at > 0 && lines[at - 1].starts_with("[[") {
            at -= 1;
        }
        lines[..at]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect()
    }

    const HAPROXY: &str = "\
defaults
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 20s
    option httplog

frontend web
    bind :8080
    default_backend app

backend app
    balance roundrobin
    option httpchk GET /healthz
    server web1 10.0.0.1:80 weight 3 maxconn 50 check
    server web2 10.0.0.2:80 weight 1 maxconn 20 check
    server spare 10.0.0.9:80 backup check
";

    #[test]
    fn haproxy_roundrobin_keeps_servers_weights_limits_health_and_algorithm() {
        let imported = import("lb.cfg", HAPROXY);
        let c = convert_ok(&imported, &ConvertOptions::default());
        let native = reload(&c);
        assert_eq!(
            native, imported.loaded.config,
            "the model changed:\n{}",
            c.text
        );
        let pool = &native.pools["app"];
        assert_eq!(pool.emulate, Some(Emulation::HaproxyRoundrobin));
        let weights: Vec<u32> = pool.servers.iter().map(|s| s.weight).collect();
        assert_eq!(weights, [3, 1, 1]);
        assert_eq!(pool.servers[0].max_connections, Some(50));
        assert_eq!(pool.servers[1].max_connections, Some(20));
        let health = pool.health.as_ref().expect("health check kept");
        assert_eq!(health.path, "/healthz");
        assert_eq!(
            pool.connect_timeout.map(|d| d.0),
            Some(Duration::from_secs(3))
        );
        // Each server names its line; the pool says its algorithm is emulated.
        let above = comments_above(&c.text, "name = \"web2\"");
        assert!(
            above
                .iter()
                .any(|l| l.starts_with("# line 16: server web2 10.0.0.2:80")),
            "{above:?}"
        );
        let above = comments_above(&c.text, "[pools.app]");
        assert!(
            above
                .iter()
                .any(|l| l.starts_with("# line 12: backend app")),
            "{above:?}"
        );
        let above = comments_above(&c.text, "emulate = { lb = \"haproxy-roundrobin\" }");
        assert!(
            above
                .iter()
                .any(|l| l.contains("HAProxy balance roundrobin, emulated exactly")),
            "{above:?}"
        );
        let above = comments_above(&c.text, "[listeners.web]");
        assert!(
            above.iter().any(|l| l.starts_with("# line 9: bind :8080")),
            "{above:?}"
        );
        // What does not translate is listed with its line.
        assert!(
            c.text.contains("#     line 6: option httplog"),
            "{}",
            c.text
        );
        assert_eq!(c.summary.not_translated, imported.notes.len());
        assert!(c.summary.not_translated > 0);
        assert_eq!(
            (c.summary.listeners, c.summary.pools, c.summary.servers),
            (1, 1, 3)
        );
    }

    #[test]
    fn a_backup_server_stays_a_backup_with_haproxys_first_backup_rule() {
        let imported = import("lb.cfg", HAPROXY);
        let c = convert_ok(&imported, &ConvertOptions::default());
        let pool = &reload(&c).pools["app"];
        let spare = pool
            .servers
            .iter()
            .find(|s| s.name == "spare")
            .expect("spare kept");
        assert!(spare.backup);
        assert!(!pool.servers[0].backup);
        // HAProxy without `option allbackups` sends to the first backup only.
        assert_eq!(pool.backups, BackupMode::First);
        let with_all = import(
            "lb.cfg",
            &HAPROXY.replace(
                "    balance roundrobin\n",
                "    balance roundrobin\n    option allbackups\n",
            ),
        );
        let c = convert_ok(&with_all, &ConvertOptions::default());
        assert_eq!(reload(&c).pools["app"].backups, BackupMode::All);
    }

    const NGINX: &str = "\
events {}
http {
    upstream sticky {
        ip_hash;
        server 10.0.0.1:80 weight=2 max_fails=3 fail_timeout=20s;
        server 10.0.0.2:80 max_conns=100;
    }
    upstream plain {
        server 10.0.2.1:80;
        server 10.0.2.2:80 backup;
    }
    upstream cache {
        hash $request_uri consistent;
        server 10.0.1.1;
        server 10.0.1.2:8080 weight=5;
    }
    server {
        listen 80;
        location / { proxy_pass http://sticky; }
    }
    server {
        listen 8081;
        location / { proxy_pass http://cache; }
    }
    server {
        listen 8082;
        location / { proxy_pass http://plain; }
    }
}
";

    #[test]
    fn nginx_ip_hash_and_consistent_hash_are_kept_exactly() {
        let imported = import("nginx.conf", NGINX);
        let c = convert_ok(&imported, &ConvertOptions::default());
        let native = reload(&c);
        assert_eq!(
            native, imported.loaded.config,
            "the model changed:\n{}",
            c.text
        );
        assert_eq!(native.pools["sticky"].emulate, Some(Emulation::NginxIpHash));
        assert_eq!(
            native.pools["cache"].emulate,
            Some(Emulation::NginxHash {
                key: "$request_uri".into(),
                consistent: true
            })
        );
        // ketama places `10.0.1.1` (as written, no port) on the ring: that text survives.
        let first = &native.pools["cache"].servers[0];
        assert_eq!(
            first.ring_key.as_deref().unwrap_or(&first.address),
            "10.0.1.1"
        );
        let sticky = &native.pools["sticky"];
        assert_eq!(sticky.servers[0].weight, 2);
        assert_eq!(sticky.servers[1].max_connections, Some(100));
        let plain = &native.pools["plain"];
        assert!(plain.servers[1].backup && !plain.servers[0].backup);
        assert!(
            c.text.contains("nginx ip_hash, emulated exactly"),
            "{}",
            c.text
        );
        assert!(
            c.text
                .contains("nginx hash $request_uri consistent, emulated exactly"),
            "{}",
            c.text
        );
    }

    #[test]
    fn a_unix_socket_server_is_refused_until_mapped_to_tcp() {
        let text = NGINX.replace("server 10.0.1.1;", "server unix:/run/app.sock;");
        assert!(
            text.lines().nth(13).is_some_and(|l| l.contains("unix:")),
            "{text}"
        );
        let imported = import("nginx.conf", &text);
        let problems = convert(&imported, &ConvertOptions::default()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert!(
            p.message.contains("unix:/run/app.sock") && p.message.contains("unix socket"),
            "{}",
            p.message
        );
        let fix = p.fix.as_deref().unwrap_or("");
        assert!(
            fix.contains("--map-address unix:/run/app.sock=127.0.0.1:8000"),
            "{fix}"
        );
        let line = imported
            .loaded
            .source
            .line_col(p.span.clone().expect("located").start)
            .line;
        assert_eq!(line, 14);

        let options = ConvertOptions {
            map_address: vec![("unix:/run/app.sock".into(), "127.0.0.1:8000".into())],
            ..ConvertOptions::default()
        };
        let c = convert_ok(&imported, &options);
        let native = reload(&c);
        let s = &native.pools["cache"].servers[0];
        assert_eq!(s.address, "127.0.0.1:8000");
        // The ring still places the server where nginx does.
        assert_eq!(s.ring_key.as_deref(), Some("unix:/run/app.sock"));
        assert_eq!(c.summary.mapped_addresses, 1);
        let above = comments_above(&c.text, "address = \"127.0.0.1:8000\"");
        assert!(
            above
                .iter()
                .any(|l| l.contains("STAND-IN given by --map-address")),
            "{above:?}"
        );
        // Everything else is the imported model.
        let mut expected = imported.loaded.config.clone();
        let e = &mut expected.pools.get_mut("cache").unwrap().servers[0];
        e.ring_key = Some("unix:/run/app.sock".into());
        e.address = "127.0.0.1:8000".into();
        assert_eq!(native, expected);

        // HAProxy's spelling of the same socket is understood.
        let haproxy_spelling = ConvertOptions {
            map_address: vec![("unix@/run/app.sock".into(), "127.0.0.1:8000".into())],
            ..ConvertOptions::default()
        };
        assert_eq!(reload(&convert_ok(&imported, &haproxy_spelling)), expected);

        // A mapping that matches nothing is a typo, not a silent no-op.
        let typo = ConvertOptions {
            map_address: vec![("unix:/run/ap.sock".into(), "127.0.0.1:8000".into())],
            ..ConvertOptions::default()
        };
        let problems = convert(&imported, &typo).unwrap_err();
        assert!(problems.iter().any(|d| {
            d.message
                .contains("no server has the address `unix:/run/ap.sock`")
        }));
    }

    #[test]
    fn a_file_without_listeners_needs_listen_and_gets_one_per_pool() {
        let text = "\
backend db
    mode tcp
    server pg1 10.0.0.1:5432 check
backend web
    mode http
    server w1 10.0.0.2:80
";
        let imported = import("backends.cfg", text);
        let problems = convert(&imported, &ConvertOptions::default()).unwrap_err();
        assert!(
            problems[0].message.contains("has no listener"),
            "{:?}",
            problems[0]
        );
        assert!(
            problems[0]
                .fix
                .as_deref()
                .unwrap_or("")
                .contains("--listen 127.0.0.1:8080")
        );

        let options = ConvertOptions {
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            ..ConvertOptions::default()
        };
        let c = convert_ok(&imported, &options);
        let native = reload(&c);
        let db = &native.listeners["db"];
        assert_eq!(
            (db.address.as_str(), db.pool.as_str(), db.protocol),
            ("127.0.0.1:8080", "db", Protocol::Tcp)
        );
        let web = &native.listeners["web"];
        assert_eq!(
            (web.address.as_str(), web.pool.as_str(), web.protocol),
            ("127.0.0.1:8081", "web", Protocol::Http)
        );
        assert_eq!(c.summary.added_listeners, 2);
        assert!(
            comments_above(&c.text, "[listeners.db]")
                .iter()
                .any(|l| l.contains("STAND-IN added by --listen"))
        );
        // The pools are untouched.
        assert_eq!(native.pools, imported.loaded.config.pools);
    }

    #[test]
    fn listen_skips_ports_in_use_and_leaves_routed_pools_alone() {
        let text = "\
frontend web
    bind 127.0.0.1:8080
    default_backend app
backend app
    server a 10.0.0.1:80
backend other
    server b 10.0.0.2:80
";
        let imported = import("lb.cfg", text);
        // Without --listen the unrouted pool is kept and says how to give it a listener.
        let c = convert_ok(&imported, &ConvertOptions::default());
        assert!(
            comments_above(&c.text, "[pools.other]")
                .iter()
                .any(|l| l.contains("no listener routes to this pool"))
        );
        let options = ConvertOptions {
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            ..ConvertOptions::default()
        };
        let native = reload(&convert_ok(&imported, &options));
        assert_eq!(native.listeners.len(), 2);
        assert_eq!(native.listeners["other"].address, "127.0.0.1:8081");
        assert_eq!(native.listeners["web"].pool, "app");
    }

    #[test]
    fn timeouts_over_a_day_are_written_as_a_day_and_said() {
        let text = HAPROXY.replace("timeout server 20s", "timeout server 3d");
        let imported = import("lb.cfg", &text);
        let c = convert_ok(&imported, &ConvertOptions::default());
        let native = reload(&c);
        assert_eq!(
            native.pools["app"].response_timeout.map(|d| d.0),
            Some(LONGEST_TIMEOUT)
        );
        assert_eq!(c.summary.capped_timeouts, 1);
        assert!(
            c.text.contains("STAND-IN: HAProxy has 259200s here"),
            "{}",
            c.text
        );
    }

    #[test]
    fn hash_options_and_odd_names_survive_the_round_trip() {
        let text = "\
frontend fe
    mode http
    bind :80
    default_backend be.v2
backend be.v2
    mode http
    balance uri whole len 12 depth 2
    hash-type consistent djb2 avalanche
    hash-balance-factor 150
    server s-1 [::1]:81 id 7 weight 256
    server s-2 app.internal:81 disabled
";
        let imported = import("lb.cfg", text);
        let c = convert_ok(&imported, &ConvertOptions::default());
        let native = reload(&c);
        assert_eq!(native, imported.loaded.config, "{}", c.text);
        let pool = native.pools.values().next().unwrap();
        let Some(Emulation::HaproxyHash(h)) = &pool.emulate else {
            panic!("{:?}", pool.emulate)
        };
        assert_eq!(h.lookup, HashLookup::Consistent);
        assert_eq!(h.balance_factor, 150);
        assert_eq!(pool.servers[0].id, Some(7));
        assert!(pool.servers[1].down);
    }

    #[test]
    fn a_ballast_file_or_a_file_that_balances_nothing_is_refused() {
        let native = import(
            "a.toml",
            "[listeners.a]\naddress = \"127.0.0.1:1\"\npool = \"p\"\n[pools.p]\n[[pools.p.servers]]\nname = \"s\"\naddress = \"127.0.0.1:2\"\n",
        );
        let e = convert(&native, &ConvertOptions::default()).unwrap_err();
        assert!(e[0].message.contains("already a ballast configuration"));
        let stats = import(
            "stats.cfg",
            "listen stats\n    mode http\n    bind :9000\n    stats enable\n",
        );
        let e = convert(&stats, &ConvertOptions::default()).unwrap_err();
        assert!(e[0].message.contains("balances no traffic"), "{:?}", e[0]);
    }

    /// Every prefix of the sample files that imports either converts to a file that loads as
    /// the same model or is refused with a message; none panics.
    #[test]
    fn every_importable_prefix_converts_or_is_refused() {
        let options = ConvertOptions {
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            ..ConvertOptions::default()
        };
        for (name, text) in [("lb.cfg", HAPROXY), ("nginx.conf", NGINX)] {
            let cuts = text.match_indices('\n').map(|(i, _)| i + 1);
            for cut in cuts {
                let Ok(imported) =
                    import_source(SourceFile::new(name, &text[..cut]), &Options::default())
                else {
                    continue;
                };
                match convert(&imported, &options) {
                    Ok(c) => {
                        let native = reload(&c);
                        assert_eq!(native.pools, imported.loaded.config.pools, "{}", c.text);
                    }
                    Err(problems) => assert!(
                        !problems.is_empty() && problems.iter().all(|p| !p.message.is_empty())
                    ),
                }
            }
        }
    }

    #[test]
    fn long_not_translated_groups_still_name_every_line() {
        let mut text =
            String::from("frontend web\n    mode http\n    bind :80\n    default_backend app\n");
        for i in 0..30 {
            text.push_str(&format!("    http-request set-header X-N{i} v\n"));
        }
        text.push_str("backend app\n    server a 10.0.0.1:80\n");
        let imported = import("lb.cfg", &text);
        let c = convert_ok(&imported, &ConvertOptions::default());
        let listed = (5..35).all(|line| {
            c.text.contains(&format!("line {line}: http-request"))
                || c.text
                    .lines()
                    .filter(|l| l.starts_with("#     and ") || l.starts_with("#       "))
                    .any(|l| l.split([' ', ',']).any(|w| w == line.to_string()))
        });
        assert!(listed, "{}", c.text);
        assert!(c.text.contains("and 18 more on lines"), "{}", c.text);
    }
}
