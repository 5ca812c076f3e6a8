//! nginx configurations: a tree of directives and blocks with spans, `include` resolved, then
//! the mapping onto the model.
//!
//! Every `upstream` becomes a pool with its balancing method emulated; every `server` block
//! whose locations `proxy_pass` to an upstream (or an address) becomes a listener per
//! `listen`. Directives in included files are located at their `include` line, since spans
//! point into the main file. A file whose top level is `http` directives (a conf.d fragment)
//! is read inside the `http { }` that includes it. Blocks of code (`content_by_lua_block`)
//! are kept unread: their body is Lua, not nginx directives.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ballast_core::Config;
use ballast_core::config::{
    Algorithm, BackupMode, Dur, HashKey, ListenerTimeouts, PassiveEjection, Pool, Protocol, Retries,
};
use ballast_core::emulation::Emulation;
use ballast_core::source::{Diagnostic, Severity, SourceFile, SpanMap};

use crate::builder::{self, Builder, model_name};
use crate::facts::{NginxFacts, is_host_name, pass_host, resolve_pass_host};
use crate::words::{Directive, Version, Word, parse_time};
use crate::{NginxContext, Options, not_modelled};

/// How deep `include`s may nest before ballast assumes a loop.
const MAX_INCLUDE_DEPTH: usize = 10;

/// A directive, with its block when it opens one.
#[derive(Debug, Clone)]
pub struct Node {
    pub directive: Directive,
    pub block: Option<Vec<Node>>,
    /// The body of a block of code (`content_by_lua_block { ... }`), kept unread: it is Lua or
    /// JavaScript, not nginx directives.
    pub code: Option<Range<usize>>,
    /// Read from one of nginx's own stock files (`fastcgi_params`, `mime.types`): its
    /// directives are not noted one by one, since the site did not write them.
    pub stock: bool,
}

/// Where `include`s are looked for.
struct Includes<'a> {
    /// The main file's directory: nginx resolves relative includes against its configuration
    /// prefix, whatever file they are written in.
    dir: &'a Path,
    /// Where stock files (`mime.types`, `*_params`, `snippets/`) are installed.
    prefix: &'a Path,
}

/// Parses nginx syntax into a tree. `dir` resolves `include` (None: includes are left as
/// directives); stock files missing beside the file are looked for under /etc/nginx.
pub fn parse(text: &str, dir: Option<&Path>) -> Result<Vec<Node>, Vec<Diagnostic>> {
    let mut notes = Vec::new();
    parse_with(text, dir, Path::new("/etc/nginx"), &mut notes)
}

/// [`parse`] with the stock files' `prefix`; warnings about missing includes go to `notes`.
fn parse_with(
    text: &str,
    dir: Option<&Path>,
    prefix: &Path,
    notes: &mut Vec<Diagnostic>,
) -> Result<Vec<Node>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let tokens = tokenize(text, &mut errors);
    let mut pos = 0;
    let nodes = build(&tokens, &mut pos, false, &mut errors);
    let nodes = match dir {
        Some(dir) => expand_includes(nodes, &Includes { dir, prefix }, 0, &mut errors, notes),
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
    /// A block of code: the offsets of its `{` and its `}`.
    Code(usize, usize),
}

/// The language of a block whose body is code, by its directive's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Lua,
    JavaScript,
}

/// `content_by_lua_block`, `init_worker_by_lua_block`, `set_by_lua_block $v { ... }` (the
/// lua-nginx-module and its stream twin) hold Lua; a `js_` block holds njs JavaScript.
fn code_block(name: &str) -> Option<Code> {
    if name.ends_with("_lua_block") {
        Some(Code::Lua)
    } else if name.starts_with("js_") || name.starts_with("njs_") {
        Some(Code::JavaScript)
    } else {
        None
    }
}

/// The length of a template placeholder such as `{ip_address}` at `b[i]`, which nginx would
/// read as the start of a block.
fn placeholder_len(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'{') || (i > 0 && b[i - 1] == b'$') {
        return None;
    }
    let inner = b[i + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        .count();
    let letters = b[i + 1..i + 1 + inner].iter().any(u8::is_ascii_alphabetic);
    (inner > 0 && letters && b.get(i + 1 + inner) == Some(&b'}')).then_some(inner + 2)
}

/// Directives whose arguments are addresses (for the placeholder message).
fn takes_address(name: &str) -> bool {
    matches!(name, "server" | "listen" | "proxy_pass") || name.ends_with("_pass")
}

fn tokenize(text: &str, errors: &mut Vec<Diagnostic>) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // The first word of the directive being read: it decides whether `{` opens code.
    let mut name: Option<(String, Range<usize>)> = None;
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
                name = None;
                i += 1;
            }
            b'{' if name.is_some() && placeholder_len(b, i).is_some() => {
                let w = read_word(b, &mut i);
                placeholder_error(&w, name.as_ref().map(|n| n.0.as_str()), errors);
                out.push(Token::Word(w));
            }
            b'{' => {
                match name
                    .as_ref()
                    .and_then(|(n, span)| Some((code_block(n)?, n, span)))
                {
                    Some((language, n, span)) => match skip_code(b, i + 1, language) {
                        Some(close) => {
                            out.push(Token::Code(i, close));
                            i = close + 1;
                        }
                        None => {
                            errors.push(
                                Diagnostic::error(format!("the code block of `{n}` is not closed"))
                                    .with_span(span.clone())
                                    .with_fix("close it with `}` after the last line of code"),
                            );
                            i = b.len();
                        }
                    },
                    None => {
                        out.push(Token::Open(i));
                        i += 1;
                    }
                }
                name = None;
            }
            b'}' => {
                out.push(Token::Close(i));
                name = None;
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
                let w = Word {
                    text: String::from_utf8_lossy(&word).into_owned(),
                    span: start..i,
                };
                if name.is_none() {
                    name = Some((w.text.clone(), w.span.clone()));
                }
                out.push(Token::Word(w));
            }
            _ => {
                let w = read_word(b, &mut i);
                placeholder_error(&w, name.as_ref().map(|n| n.0.as_str()), errors);
                if name.is_none() {
                    name = Some((w.text.clone(), w.span.clone()));
                }
                out.push(Token::Word(w));
            }
        }
    }
    out
}

/// An unquoted word from `b[*i]`: up to whitespace, `;`, `{` or `}`, keeping `${var}` and
/// template placeholders (`{ip_address}`) inside it.
fn read_word(b: &[u8], i: &mut usize) -> Word {
    let start = *i;
    let mut word = Vec::new();
    while *i < b.len() && !b[*i].is_ascii_whitespace() && !matches!(b[*i], b';' | b'}') {
        if b[*i] == b'{' {
            match placeholder_len(b, *i) {
                Some(n) => {
                    word.extend_from_slice(&b[*i..*i + n]);
                    *i += n;
                    continue;
                }
                None => break,
            }
        }
        // `${var}` keeps its braces inside a word.
        if b[*i] == b'$' && *i + 1 < b.len() && b[*i + 1] == b'{' {
            while *i < b.len() && b[*i] != b'}' {
                word.push(b[*i]);
                *i += 1;
            }
            if *i < b.len() {
                word.push(b'}');
                *i += 1;
            }
            continue;
        }
        if b[*i] == b'\\' && *i + 1 < b.len() {
            word.push(b[*i + 1]);
            *i += 2;
            continue;
        }
        word.push(b[*i]);
        *i += 1;
    }
    Word {
        text: String::from_utf8_lossy(&word).into_owned(),
        span: start..*i,
    }
}

/// Refuses a word holding a template placeholder (`{ip_address}`): nginx reads its `{` as a
/// block and fails.
fn placeholder_error(w: &Word, directive: Option<&str>, errors: &mut Vec<Diagnostic>) {
    let b = w.text.as_bytes();
    if !(0..b.len()).any(|i| placeholder_len(b, i).is_some()) {
        return;
    }
    let what = if directive.is_some_and(takes_address) {
        "address"
    } else {
        "value"
    };
    errors.push(
        Diagnostic::error(format!(
            "`{}` looks like a placeholder left from a template: put the real {what}",
            w.text
        ))
        .with_span(w.span.clone())
        .with_fix(format!(
            "replace it with the real {what} (nginx reads `{{` as the start of a block)"
        )),
    );
}

/// Finds the `}` that closes a block of code whose body starts at `b[i]`, reading strings
/// and comments of its language so that braces inside them do not count.
fn skip_code(b: &[u8], mut i: usize, language: Code) -> Option<usize> {
    let mut depth = 1usize;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'-', Some(b'-')) if language == Code::Lua => {
                i += 2;
                match lua_long_bracket(b, i) {
                    Some(end) => i = end,
                    None => i = line_end(b, i),
                }
            }
            (b'[', _) if language == Code::Lua => i = lua_long_bracket(b, i).unwrap_or(i + 1),
            (b'/', Some(b'/')) if language == Code::JavaScript => i = line_end(b, i),
            (b'/', Some(b'*')) if language == Code::JavaScript => {
                i = find_bytes(b, i + 2, b"*/").map_or(b.len(), |e| e + 2);
            }
            (q @ (b'"' | b'\'' | b'`'), _) if q != b'`' || language == Code::JavaScript => {
                i += 1;
                while i < b.len() && b[i] != q {
                    // A short string ends at its line in Lua and JavaScript alike (template
                    // literals may span lines): a stray quote cannot swallow the file.
                    if b[i] == b'\n' && q != b'`' {
                        break;
                    }
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            (b'{', _) => {
                depth += 1;
                i += 1;
            }
            (b'}', _) => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// A Lua long bracket (`[[ ... ]]`, `[==[ ... ]==]`) at `b[i]`: the offset after it.
fn lua_long_bracket(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let level = b[i + 1..].iter().take_while(|&&c| c == b'=').count();
    if b.get(i + 1 + level) != Some(&b'[') {
        return None;
    }
    let mut close = vec![b']'];
    close.extend(std::iter::repeat_n(b'=', level));
    close.push(b']');
    Some(find_bytes(b, i + 2 + level, &close).map_or(b.len(), |e| e + close.len()))
}

fn line_end(b: &[u8], i: usize) -> usize {
    b[i.min(b.len())..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p)
}

fn find_bytes(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
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
                    code: None,
                    stock: false,
                });
            }
            Token::Code(open, close) => {
                // The tokenizer opens code only after a directive name.
                let span = words.first().map_or(open, |w| w.span.start)..open + 1;
                nodes.push(Node {
                    directive: Directive {
                        words: std::mem::take(&mut words),
                        span,
                    },
                    block: None,
                    code: Some(open + 1..close),
                    stock: false,
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
                        code: None,
                        stock: false,
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
            Token::Semicolon(a) | Token::Open(a) | Token::Close(a) | Token::Code(_, a) => *a,
        });
        errors.push(
            Diagnostic::error("unexpected end of file: a block is not closed")
                .with_span(at..at)
                .with_fix("add the missing `}`"),
        );
    }
    nodes
}

/// The part of an include path nginx installs itself (`mime.types`, `uwsgi_params`,
/// `fastcgi.conf`, `snippets/fastcgi-php.conf`), to look up under the prefix; `None` for the
/// site's own files.
fn stock_include(pattern: &str) -> Option<&str> {
    if let Some(at) = pattern.find("snippets/")
        && (at == 0 || pattern.as_bytes()[at - 1] == b'/')
    {
        return Some(&pattern[at..]);
    }
    let name = pattern.rsplit('/').next()?;
    let stock = name == "mime.types"
        || name.ends_with("_params")
        || matches!(name, "fastcgi.conf" | "koi-utf" | "koi-win" | "win-utf");
    stock.then_some(name)
}

/// Replaces each `include` with the nodes of the files it names (a glob, relative to the main
/// file's directory), every span set to the `include` directive's. A missing file is a
/// warning, not an error: files are usually checked off the machine that holds their
/// includes. Stock files missing there are read from the prefix, or skipped in silence.
fn expand_includes(
    nodes: Vec<Node>,
    at: &Includes,
    depth: usize,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> Vec<Node> {
    let mut out = Vec::new();
    for node in nodes {
        if node.directive.name() != "include" || node.block.is_some() || node.code.is_some() {
            out.push(Node {
                block: node
                    .block
                    .map(|b| expand_includes(b, at, depth, errors, notes)),
                directive: node.directive,
                code: node.code,
                stock: node.stock,
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
            at.dir.join(&pattern.text).to_string_lossy().into_owned()
        };
        let has_glob = pattern.text.contains(['*', '?', '[']);
        let mut paths: Vec<PathBuf> = match glob::glob(&full) {
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
        let stock = stock_include(&pattern.text).is_some();
        if paths.is_empty() && !has_glob {
            match stock_include(&pattern.text) {
                Some(stock) => {
                    let installed = at.prefix.join(stock);
                    if !installed.is_file() {
                        // nginx's own file, absent here too: it holds nothing the checks read.
                        continue;
                    }
                    paths.push(installed);
                }
                None => {
                    notes.push(crate::note(
                        Severity::Warning,
                        format!(
                            "included file {full} does not exist here: the check goes on without it"
                        ),
                        span,
                        "check the file where it is installed, or put the included file beside it (nginx refuses to start without it)",
                    ));
                    continue;
                }
            }
        }
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
            let inner = relocate(inner, &span, stock);
            out.extend(expand_includes(inner, at, depth + 1, errors, notes));
        }
    }
    out
}

fn relocate(nodes: Vec<Node>, span: &Range<usize>, stock: bool) -> Vec<Node> {
    nodes
        .into_iter()
        .map(|mut n| {
            n.directive.span = span.clone();
            for w in &mut n.directive.words {
                w.span = span.clone();
            }
            n.code = n.code.map(|_| span.clone());
            n.stock |= stock;
            n.block = n.block.map(|b| relocate(b, span, stock));
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
    /// `send_timeout`: the listener's `timeouts.send`.
    send_timeout: Option<(Duration, Range<usize>)>,
    /// `http2_max_concurrent_streams`: the listener's `max_concurrent_streams`.
    http2_max_concurrent_streams: Option<(u32, Range<usize>)>,
    /// The `proxy_set_header Upgrade ...` in force here: a location that passes WebSocket
    /// upgrades on, whose `proxy_read_timeout` bounds an idle tunnel. nginx inherits
    /// `proxy_set_header`s only into a level that sets none of its own.
    upgrade_header: Option<Range<usize>>,
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
        if let Some(t) = time("send_timeout", errors) {
            s.send_timeout = Some(t);
        }
        if let Some(d) = last(block, "proxy_next_upstream_tries")
            && let Some(n) = d.arg(0).and_then(|w| w.text.parse().ok())
        {
            s.next_upstream_tries = Some((n, d.span.clone()));
        }
        if let Some(d) = last(block, "http2_max_concurrent_streams")
            && let Some(w) = d.arg(0)
        {
            match w.text.parse::<u32>() {
                Ok(n) => s.http2_max_concurrent_streams = Some((n, d.span.clone())),
                Err(_) => errors.push(
                    Diagnostic::error(format!("`{}` is not a number of streams", w.text))
                        .with_span(w.span.clone())
                        .with_fix(
                            "write a whole number, such as `http2_max_concurrent_streams 128;`",
                        ),
                ),
            }
        }
        let headers: Vec<&Directive> = find(block, "proxy_set_header")
            .map(|n| &n.directive)
            .collect();
        if !headers.is_empty() {
            s.upgrade_header = headers
                .iter()
                .find(|d| {
                    d.arg(0)
                        .is_some_and(|w| w.text.eq_ignore_ascii_case("upgrade"))
                })
                .map(|d| d.span.clone());
        }
        s
    }
}

/// Directives of the main context only: a file holding one is a whole nginx.conf.
const MAIN_ONLY: &[&str] = &[
    "events",
    "http",
    "stream",
    "mail",
    "rtmp",
    "worker_processes",
    "worker_rlimit_nofile",
    "worker_rlimit_core",
    "worker_cpu_affinity",
    "worker_priority",
    "worker_shutdown_timeout",
    "working_directory",
    "user",
    "pid",
    "daemon",
    "master_process",
    "load_module",
    "env",
    "thread_pool",
    "pcre_jit",
    "lock_file",
    "timer_resolution",
    "ssl_engine",
];

/// The context a file's top level is written for: a whole nginx.conf (`events`, `http`,
/// `worker_processes`...), else a fragment of `stream { }` (servers that `proxy_pass`
/// directly, without locations) or of `http { }` (conf.d: `upstream`, `server`, `map`,
/// `log_format`...). An empty file is read as a whole one.
fn top_context(tree: &[Node]) -> NginxContext {
    if tree.is_empty() || tree.iter().any(|n| MAIN_ONLY.contains(&n.directive.name())) {
        return NginxContext::Main;
    }
    let servers: Vec<&[Node]> = find(tree, "server")
        .filter_map(|n| n.block.as_deref())
        .collect();
    let http_only = |b: &[Node]| {
        b.iter().any(|n| {
            matches!(
                n.directive.name(),
                "location" | "server_name" | "root" | "index" | "try_files" | "return"
            )
        })
    };
    let stream = servers.iter().any(|b| last(b, "proxy_pass").is_some())
        && !servers.iter().any(|b| http_only(b))
        && !tree.iter().any(|n| n.directive.name() == "log_format");
    if stream {
        NginxContext::Stream
    } else {
        NginxContext::Http
    }
}

/// Wraps a fragment's top level in the block that includes it, so it reads as nginx reads
/// it. The block is located at the fragment's first directive.
fn wrap(tree: Vec<Node>, block: &str) -> Vec<Node> {
    let span = tree.first().map_or(0..0, |n| n.directive.span.clone());
    vec![Node {
        directive: Directive {
            words: vec![Word {
                text: block.to_string(),
                span: span.clone(),
            }],
            span,
        },
        block: Some(tree),
        code: None,
        stock: false,
    }]
}

/// An info note (rule IMPORT) that is not about one directive left out.
fn info(message: String, span: Range<usize>, fix: &str) -> Diagnostic {
    crate::note(Severity::Info, message, span, fix)
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
    let mut notes = Vec::new();
    let tree = parse_with(&source.text, dir, &options.nginx_prefix, &mut notes)?;
    let mut errors = Vec::new();
    let mut b = Builder::default();

    let context_given = options.nginx_context.is_some();
    let top = options.nginx_context.unwrap_or_else(|| top_context(&tree));
    let tree = match top {
        NginxContext::Main => tree,
        NginxContext::Http | NginxContext::Stream => {
            let block = if top == NginxContext::Http {
                "http"
            } else {
                "stream"
            };
            if let Some(first) = tree.first() {
                let why = if context_given {
                    format!("--context {block}")
                } else {
                    "its top level holds directives of that block and no `events`".to_string()
                };
                notes.push(info(
                    format!("read as a fragment included inside `{block} {{ }}` ({why}); worker_processes and events are in the nginx.conf that includes it"),
                    first.directive.span.clone(),
                    "nothing to change; pass --context main to check it as a whole nginx.conf",
                ));
            }
            wrap(tree, block)
        }
    };
    refuse_unknown(&tree, "main", options.nginx_version, &mut errors);

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
    if top == NginxContext::Main && find(&tree, "events").next().is_none() {
        errors.push(
            Diagnostic::error("no `events` section in the configuration")
                .with_span(tree.first().map_or(0..0, |n| n.directive.span.clone()))
                .with_fix("add `events { worker_connections 1024; }` at the top level (nginx refuses to start without it), or pass --context http if this file is included inside `http { }`"),
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
                options.nginx_version,
                &mut errors,
                &mut notes,
            ),
            ("stream", Some(block)) => context(
                &mut b,
                block,
                Protocol::Tcp,
                capacity,
                options.nginx_version,
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
                    .with_fix("put it inside an `http { ... }` or `stream { ... }` block, as nginx requires (or pass --context http for a file included inside `http { }`)"),
            ),
            _ => note_directive(
                &node.directive,
                node,
                "it does not change balancing or capacity",
                &mut notes,
            ),
        }
    }
    if errors.is_empty() {
        // No nginx default that the model reads changes between versions; the version is
        // for the version-dependent rules (keepalive by default from 1.29.7).
        let facts = NginxFacts {
            version: options.nginx_version,
            tree,
            context: top,
        };
        Ok((b.config, b.spans, notes, facts))
    } else {
        Err(errors)
    }
}

/// NGINX Plus directives, which nginx open source refuses as unknown, with what to write
/// instead. Only directives of the blocks ballast reads (`http`, `server`, `location`,
/// `upstream`, `stream`) are judged, so a third-party module's block keeps its own words.
const PLUS_ONLY: &[(&str, &str)] = &[
    (
        "least_time",
        "use `least_conn;`, the nearest method of nginx open source",
    ),
    (
        "sticky",
        "use `ip_hash;` or `hash $cookie_NAME consistent;` to keep clients on one server",
    ),
    (
        "sticky_cookie_insert",
        "use `ip_hash;` or `hash $cookie_NAME consistent;` to keep clients on one server",
    ),
    (
        "queue",
        "remove it: nginx open source answers 502 at once when every server is at max_conns",
    ),
    (
        "ntlm",
        "remove it: nginx open source cannot proxy NTLM authentication",
    ),
    ("state", "list the servers in the upstream block"),
    (
        "health_check",
        "remove it: nginx open source checks servers passively, through max_fails and fail_timeout",
    ),
    (
        "health_check_timeout",
        "remove it: nginx open source checks servers passively, through max_fails and fail_timeout",
    ),
    ("match", "remove it with the `health_check` that uses it"),
    (
        "zone_sync",
        "remove it: nginx open source shares no state between instances",
    ),
    (
        "api",
        "use `stub_status;` for the counters nginx open source has",
    ),
    (
        "status_zone",
        "remove it: nginx open source has only `stub_status`",
    ),
    ("keyval", "remove it, or use a `map`"),
    ("keyval_zone", "remove it, or use a `map`"),
    (
        "internal_redirect",
        "use `rewrite ... last;` or `error_page`",
    ),
    ("session_log", "remove it"),
    ("session_log_format", "remove it"),
    ("session_log_zone", "remove it"),
    ("mp4_limit_rate", "remove it, or use `limit_rate`"),
    (
        "mp4_limit_rate_after",
        "remove it, or use `limit_rate_after`",
    ),
];

/// The blocks whose directives ballast judges by name.
const KNOWN_BLOCKS: &[&str] = &[
    "main",
    "http",
    "stream",
    "server",
    "location",
    "upstream",
    "if",
    "events",
    "limit_except",
];

/// Refuses what nginx open source refuses by name: NGINX Plus directives, and names that
/// cannot be directives (`listen:80`), at their line.
fn refuse_unknown(block: &[Node], parent: &str, version: Version, errors: &mut Vec<Diagnostic>) {
    for n in block {
        let d = &n.directive;
        let name = d.name();
        if let Some((since, fix)) = newer_directive(name)
            && version < since
        {
            errors.push(
                Diagnostic::error(format!(
                    "unknown directive `{name}` in nginx {version}: it needs nginx {since}"
                ))
                .with_span(d.span.clone())
                .with_fix(fix),
            );
        }
        // Directives nginx refuses without an argument (`server_name ;`).
        if matches!(
            name,
            "server_name" | "proxy_pass" | "listen" | "server" | "include"
        ) && d.args().is_empty()
            && n.block.is_none()
        {
            errors.push(
                Diagnostic::error(format!("invalid number of arguments in `{name}`"))
                    .with_span(d.span.clone())
                    .with_fix(format!("give `{name}` its value, or remove the line")),
            );
        }
        let plus = PLUS_ONLY
            .iter()
            .find(|(p, _)| *p == name)
            .map(|(_, fix)| *fix)
            .or_else(|| {
                (name.starts_with("zone_sync_") || name.starts_with("auth_jwt"))
                    .then_some("remove it: nginx open source does not have it")
            });
        // `queue` and `state` are NGINX Plus words only inside `upstream`.
        let plus = plus.filter(|_| {
            !matches!(name, "queue" | "state" | "ntlm" | "sticky") || parent == "upstream"
        });
        if let Some(fix) = plus {
            errors.push(
                Diagnostic::error(format!(
                    "unknown directive `{name}` in nginx open source; it is NGINX Plus only"
                ))
                .with_span(d.span.clone())
                .with_fix(fix),
            );
        } else if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            let fix = match name.split_once(':') {
                Some((directive, value)) if !directive.is_empty() => {
                    format!(
                        "put a space between the directive and its value: `{directive} {value};`"
                    )
                }
                _ => "check the spelling: nginx directive names are letters, digits and `_`".into(),
            };
            errors.push(
                Diagnostic::error(format!("unknown directive `{name}`"))
                    .with_span(d.span.clone())
                    .with_fix(fix),
            );
        }
        if let Some(body) = n.block.as_deref()
            && KNOWN_BLOCKS.contains(&name)
        {
            refuse_unknown(body, name, version, errors);
        }
    }
}

/// Directives newer than some nginx versions: the first version that has them, and what to
/// write for older ones.
fn newer_directive(name: &str) -> Option<(Version, &'static str)> {
    match name {
        "http2" => Some((
            Version::new(1, 25, 1),
            "write `listen 443 ssl http2;` for this version, or check with --nginx-version 1.25 if you run that",
        )),
        "http3" | "quic_retry" | "quic_gso" | "quic_host_key" | "quic_bpf" => Some((
            Version::new(1, 25, 0),
            "remove it (HTTP/3 needs nginx 1.25), or check with --nginx-version 1.25 if you run that",
        )),
        _ => None,
    }
}

/// An `http` or `stream` block: its upstreams become pools, its servers listeners.
fn context(
    b: &mut Builder,
    block: &[Node],
    protocol: Protocol,
    capacity: u32,
    version: Version,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) {
    let settings = ProxySettings::default().inherit(block, errors);
    let mut misplaced = vec!["listen", "location", "proxy_pass"];
    misplaced.extend(MAIN_ONLY);
    note_unread(block, &["upstream", "server"], &misplaced, errors, notes);
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
        let dialect = Dialect { protocol, version };
        let pool = upstream(b, &p, body, &settings, dialect, errors, notes);
        if pool.servers.is_empty() && find(body, "server").next().is_none() {
            errors.push(
                Diagnostic::error(format!("no servers are inside upstream `{}`", name.text))
                    .with_span(node.directive.span.clone())
                    .with_fix("add a `server ADDRESS;` line: nginx refuses an empty upstream"),
            );
        }
        b.config.pools.insert(pool_name, pool);
    }
    let mut listener_count = 0;
    let mut default_servers: Vec<String> = Vec::new();
    for (si, server) in find(block, "server").enumerate() {
        let Some(body) = server.block.as_deref() else {
            continue;
        };
        let s = settings.inherit(body, errors);
        // A server-level proxy_pass is stream's; http proxies from locations.
        let server_misplaced: &[&str] = match protocol {
            Protocol::Http => &["upstream", "server", "proxy_pass"],
            _ => &["upstream", "server"],
        };
        note_unread(
            body,
            &["listen", "location", "proxy_pass"],
            server_misplaced,
            errors,
            notes,
        );
        check_listens(body, &mut default_servers, errors);
        // The upstream this server proxies to: its own proxy_pass (stream) or its locations'.
        let mut passes: Vec<Pass> = Vec::new();
        if let Some(d) = last(body, "proxy_pass")
            && let Some(w) = d.arg(0)
        {
            passes.push(Pass {
                word: w,
                settings: s.clone(),
                levels: vec![body],
            });
        }
        locations(body, &[body], &s, &upstreams, errors, notes, &mut passes);
        let mut chosen: Option<(String, &Word, ProxySettings)> = None;
        for pass in &passes {
            let w = pass.word;
            if protocol == Protocol::Http && !w.text.starts_with('$') {
                let scheme = w.text.split_once("://").map(|(s, _)| s);
                if !matches!(scheme, Some("http" | "https")) {
                    errors.push(
                        Diagnostic::error(format!("invalid URL prefix in `proxy_pass {}`", w.text))
                            .with_span(w.span.clone())
                            .with_fix(format!(
                                "write `proxy_pass http://{};` (or https://)",
                                pass_host(&w.text)
                            )),
                    );
                    continue;
                }
            }
            let Some(host) = resolve_pass_host(&w.text, &pass.levels, block) else {
                notes.push(not_modelled(
                    &w.text,
                    w.span.clone(),
                    "its upstream is chosen per request (no `set` or `map` makes the variable one constant), so ballast does not model where it goes",
                ));
                continue;
            };
            let known = upstreams.get(&host).cloned();
            // A direct address: checked as nginx checks it, then a one-server pool.
            let address = match &known {
                Some(_) => None,
                None => {
                    let default_port = match protocol {
                        Protocol::Http if w.text.starts_with("https://") => Some(443),
                        Protocol::Http => Some(80),
                        _ => None,
                    };
                    match upstream_address(&host, default_port) {
                        Ok(a) => Some(a),
                        Err(msg) => {
                            if !has_placeholder(&host) {
                                errors.push(
                                    Diagnostic::error(msg)
                                        .with_span(w.span.clone())
                                        .with_fix("proxy to `upstream` name or a HOST:PORT, such as `http://10.0.0.5:8080`"),
                                );
                            }
                            continue;
                        }
                    }
                }
            };
            if chosen.is_some() {
                let why = if known.is_none() && is_host_name(&host) {
                    "no upstream has this name, so nginx resolves it as a host name at start-up (and `nginx -t` fails when it does not resolve); the listener is modelled with its first proxy_pass"
                } else {
                    "routing by location; the listener is modelled with its first proxy_pass"
                };
                notes.push(not_modelled(&w.text, w.span.clone(), why));
                continue;
            }
            let pool = match (known, address) {
                (Some(p), _) => p,
                (None, address) => {
                    let address = address.unwrap_or_default();
                    if is_host_name(&host) {
                        notes.push(not_modelled(
                            &w.text,
                            w.span.clone(),
                            "no upstream has this name, so nginx resolves it as a host name at start-up (and `nginx -t` fails when it does not resolve); ballast models it as one server",
                        ));
                    }
                    let pool_name = model_name(&host);
                    if !b.config.pools.contains_key(&pool_name) {
                        let p = format!("pools.{pool_name}");
                        b.at(&p, w.span.clone());
                        b.at(format!("{p}.servers[0]"), w.span.clone());
                        b.config.pools.insert(
                            pool_name.clone(),
                            direct_pool(&pass.settings, model_name(&host), address),
                        );
                    }
                    pool_name
                }
            };
            chosen = Some((pool, w, pass.settings.clone()));
        }
        let Some((pool, target, ls)) = chosen else {
            continue;
        };
        if let Some((tries, span)) = &ls.next_upstream_tries
            && let Some(p) = b.config.pools.get_mut(&pool)
        {
            p.retries.attempts = tries.saturating_sub(1).min(MAX_MODELLED_RETRIES);
            let at = span.clone();
            b.at(format!("pools.{pool}.retries.attempts"), at);
        }
        let mut timeouts = ListenerTimeouts::default();
        let mut spans: Vec<(&str, Range<usize>)> = Vec::new();
        let mut max_concurrent_streams = None;
        if protocol == Protocol::Http {
            timeouts.header_read = Some(Dur(s
                .client_header_timeout
                .as_ref()
                .map_or(Duration::from_secs(60), |t| t.0)));
            timeouts.idle = Some(Dur(s
                .keepalive_timeout
                .as_ref()
                .map_or(Duration::from_secs(75), |t| t.0)));
            // The location the listener is modelled with decides, as for its pool.
            if let Some((t, span)) = &ls.send_timeout {
                timeouts.send = Some(Dur(*t));
                spans.push(("timeouts.send", span.clone()));
            }
            if let Some((t, span)) = websocket_read_timeout(&passes) {
                timeouts.tunnel = Some(Dur(t));
                spans.push(("timeouts.tunnel", span));
            }
            if let Some((n, span)) = &s.http2_max_concurrent_streams {
                max_concurrent_streams = Some(*n);
                spans.push(("max_concurrent_streams", span.clone()));
            }
        }
        let mut add_listener = |b: &mut Builder, address: String, span: Range<usize>, addr_span| {
            listener_count += 1;
            // http and stream servers are counted apart: their names must not meet.
            let side = if protocol == Protocol::Tcp {
                "stream-"
            } else {
                ""
            };
            let lname = format!("{side}server{}-{}", si + 1, listener_count);
            let l = format!("listeners.{lname}");
            b.at(&l, span);
            b.at(format!("{l}.address"), addr_span);
            b.at(format!("{l}.pool"), target.span.clone());
            for (key, span) in &spans {
                b.at(format!("{l}.{key}"), span.clone());
            }
            let mut listener = builder::listener(
                address,
                protocol,
                Some(capacity),
                pool.clone(),
                timeouts.clone(),
            );
            listener.max_concurrent_streams = max_concurrent_streams;
            b.config.listeners.insert(lname, listener);
        };
        let mut listens = find(body, "listen").peekable();
        if listens.peek().is_none() {
            if protocol == Protocol::Tcp {
                errors.push(
                    Diagnostic::error("no `listen` is defined for this server")
                        .with_span(server.directive.span.clone())
                        .with_fix("a stream server needs `listen PORT;`"),
                );
                continue;
            }
            notes.push(info(
                "`server` has no `listen`: nginx listens on *:80 (0.0.0.0:80; *:8000 when it does not start as root)".into(),
                server.directive.span.clone(),
                "nothing to change; write `listen 80;` to say so",
            ));
            let span = server.directive.span.clone();
            add_listener(b, "0.0.0.0:80".into(), span.clone(), span);
        }
        for listen in listens {
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
                if !has_placeholder(&addr.text) {
                    notes.push(not_modelled(
                        &d.text(),
                        d.span.clone(),
                        "only IP:port and unix: listeners are modelled",
                    ));
                }
                continue;
            };
            add_listener(b, address, d.span.clone(), addr.span.clone());
        }
    }
}

/// The idle bound nginx puts on a WebSocket tunnel: `proxy_read_timeout` (60 s unless set) of
/// the first location that passes `Upgrade` on, with the span that set it (the
/// `proxy_set_header` when the timeout is nginx's default). None when no location upgrades.
fn websocket_read_timeout(passes: &[Pass]) -> Option<(Duration, Range<usize>)> {
    let pass = passes
        .iter()
        .find(|p| p.settings.upgrade_header.is_some())?;
    match &pass.settings.read_timeout {
        Some((t, span)) => Some((*t, span.clone())),
        None => Some((
            NGINX_PROXY_READ_TIMEOUT,
            pass.settings.upgrade_header.clone()?,
        )),
    }
}

/// nginx's `proxy_read_timeout` when none is written.
const NGINX_PROXY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Refuses what nginx refuses among a server's `listen`s: the same address twice in one
/// server, and `default_server` on an address that another server already has it for
/// (`default_servers`, the addresses seen so far in this block).
fn check_listens(body: &[Node], default_servers: &mut Vec<String>, errors: &mut Vec<Diagnostic>) {
    let mut own: Vec<String> = Vec::new();
    for d in find(body, "listen").map(|n| &n.directive) {
        let Some(address) = d.arg(0).and_then(|w| listen_address(&w.text)) else {
            continue;
        };
        if own.contains(&address) {
            errors.push(
                Diagnostic::error(format!("a duplicate listen {address}"))
                    .with_span(d.span.clone())
                    .with_fix("remove one of this server's two `listen` lines for the address"),
            );
        }
        let default = d.args()[1..]
            .iter()
            .any(|w| w.text == "default_server" || w.text == "default");
        if default {
            if default_servers.contains(&address) {
                errors.push(
                    Diagnostic::error(format!("a duplicate default server for {address}"))
                        .with_span(d.span.clone())
                        .with_fix("keep `default_server` on one server per address"),
                );
            } else {
                default_servers.push(address.clone());
            }
        }
        own.push(address);
    }
}

/// nginx tries every server of an upstream by default; the model's retry count stops at what
/// its validation allows.
const MAX_MODELLED_RETRIES: u32 = 100;

/// A `proxy_pass` with the settings in force there and the `server` and `location` blocks
/// around it (outermost first), for `set` lookups.
struct Pass<'a> {
    word: &'a Word,
    settings: ProxySettings,
    levels: Vec<&'a [Node]>,
}

/// Reads the `location`s of `block` (nested ones too): their `proxy_pass`es, and the other
/// `*_pass` directives checked as nginx checks them.
fn locations<'a>(
    block: &'a [Node],
    levels: &[&'a [Node]],
    settings: &ProxySettings,
    upstreams: &HashMap<String, String>,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
    out: &mut Vec<Pass<'a>>,
) {
    for loc in find(block, "location").filter_map(|n| n.block.as_deref()) {
        note_unread(
            loc,
            &["proxy_pass", "location"],
            &["upstream", "server", "listen"],
            errors,
            notes,
        );
        let ls = settings.inherit(loc, errors);
        let mut here = levels.to_vec();
        here.push(loc);
        if let Some(d) = last(loc, "proxy_pass")
            && let Some(w) = d.arg(0)
        {
            out.push(Pass {
                word: w,
                settings: ls.clone(),
                levels: here.clone(),
            });
        }
        for n in loc.iter().filter(|n| {
            matches!(
                n.directive.name(),
                "uwsgi_pass" | "fastcgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass"
            )
        }) {
            let Some(w) = n.directive.arg(0) else {
                continue;
            };
            let Some(host) = resolve_pass_host(&w.text, &here, &[]) else {
                continue;
            };
            if upstreams.contains_key(&host) || has_placeholder(&host) {
                continue;
            }
            if let Err(msg) = upstream_address(&host, None) {
                errors.push(
                    Diagnostic::error(msg)
                        .with_span(w.span.clone())
                        .with_fix(format!(
                            "write the port (`{} {host}:PORT;`), or define `upstream {host} {{ server ADDRESS; }}`",
                            n.directive.name()
                        )),
                );
            }
        }
        locations(loc, &here, &ls, upstreams, errors, notes, out);
    }
}

/// The one-server pool of a `proxy_pass` to an address.
fn direct_pool(settings: &ProxySettings, name: String, address: String) -> Pool {
    Pool {
        algorithm: Algorithm::RoundRobin,
        hash_key: None,
        balance_factor: None,
        connect_timeout: settings
            .connect_timeout
            .as_ref()
            .map(|t| Dur(t.0))
            .or(Some(Dur(Duration::from_secs(60)))),
        response_timeout: settings
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
        servers: vec![builder::server(name, address)],
    }
}

/// Whether a text holds a template placeholder (`{ip_address}`), which the tokenizer has
/// already refused.
fn has_placeholder(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| placeholder_len(b, i).is_some())
}

/// Whether an address that nginx refuses looks like a template's placeholder:
/// `<master_node_ip_address>:6443`, `some-ip:some-port`, `%HOST%`.
fn looks_like_placeholder(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    // The importers' own test (brackets, spelled-out names, X's), widened here because nginx
    // has already refused the address.
    crate::builder::placeholder(text).is_some()
        || text.contains('%')
        || text
            .split_once(':')
            .is_some_and(|(_, port)| port.bytes().any(|c| c.is_ascii_alphabetic()))
        || [
            "some-",
            "some_",
            "your-",
            "your_",
            "ip_address",
            "ip-address",
            "hostname",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

/// An address as nginx's upstream module reads it (`host[:port]`, `[v6][:port]`,
/// `unix:/path`), written HOST:PORT for the model; `default_port` when none is written
/// (`None`: the port is required, as for `uwsgi_pass` and stream servers). The error names
/// the address as written.
fn upstream_address(text: &str, default_port: Option<u16>) -> Result<String, String> {
    if ballast_core::load::is_unix_address(text) {
        return Ok(text.to_string());
    }
    let hint = |msg: String| {
        if looks_like_placeholder(text) {
            format!("{msg}: it looks like a placeholder left from a template: put the real address")
        } else {
            msg
        }
    };
    // nginx splits at the first `:` after the host (so `10.0.0.1:80:80` has port `80:80`).
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(format!("invalid IPv6 address in upstream `{text}`"));
            };
            if inner.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("invalid IPv6 address in upstream `{text}`"));
            }
            let host = &text[..inner.len() + 2];
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(hint(format!("invalid port in upstream `{text}`"))),
            }
        }
        None => match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        },
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(hint(format!("invalid port in upstream `{text}`"))),
        },
        None => match default_port {
            Some(d) => d,
            None => return Err(hint(format!("no port in upstream `{text}`"))),
        },
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_')));
    if !host_ok {
        return Err(hint(format!(
            "host not found in upstream `{text}`: `{host}` is not a host name or an address"
        )));
    }
    Ok(format!("{host}:{port}"))
}

/// Directives of a block that the model reads, besides the inherited proxy settings.
const INHERITED: &[&str] = &[
    "proxy_connect_timeout",
    "proxy_read_timeout",
    "client_header_timeout",
    "keepalive_timeout",
    "proxy_next_upstream_tries",
    "send_timeout",
    "http2_max_concurrent_streams",
];

/// Directives the catalogue rules read (their findings point at them) though the model does
/// not: their notes must not say they change nothing.
const CATALOGUE_READS: &[&str] = &[
    "proxy_next_upstream",
    "proxy_next_upstream_timeout",
    "proxy_set_header",
    "proxy_http_version",
    "proxy_cache",
    "proxy_ssl_verify",
    "proxy_ssl_protocols",
    "ssl_protocols",
    "set_real_ip_from",
    "real_ip_header",
    "stub_status",
    "server_name",
    "allow",
    "deny",
    "auth_basic",
    "worker_shutdown_timeout",
];

/// The note for a directive the model does not read: `reason` unless the catalogue rules
/// read it or it is a block of code.
fn note_directive(d: &Directive, node: &Node, reason: &str, notes: &mut Vec<Diagnostic>) {
    let name = d.name();
    if node.stock {
        return;
    }
    if node.code.is_some() || name.starts_with("js_") {
        let language = if name.contains("lua") { "Lua" } else { "njs" };
        notes.push(not_modelled(
            &d.text(),
            d.span.clone(),
            &format!("{language} code that runs per request; ballast does not evaluate it (a block's body is not read as nginx directives)"),
        ));
    } else if CATALOGUE_READS.contains(&name) {
        let mut note = not_modelled(
            &d.text(),
            d.span.clone(),
            "the catalogue rules read it, but the model that simulate and diff run does not",
        );
        note.fix = Some("nothing to change".into());
        notes.push(note);
    } else {
        notes.push(not_modelled(&d.text(), d.span.clone(), reason));
    }
}

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
                    .with_fix("move it to the block nginx expects it in (listen in server, server in upstream or http, upstream in http, events and worker_processes at the top of nginx.conf)"),
            );
        } else if !read.contains(&name) && !INHERITED.contains(&name) {
            note_directive(d, n, "it does not change balancing or capacity", notes);
        }
    }
}

/// What an `upstream`'s words mean depends on: its block (`stream` servers need a port) and
/// the nginx version (`resolve` is open source from 1.27.3).
#[derive(Debug, Clone, Copy)]
struct Dialect {
    protocol: Protocol,
    version: Version,
}

/// An `upstream` block as a pool.
fn upstream(
    b: &mut Builder,
    p: &str,
    body: &[Node],
    settings: &ProxySettings,
    Dialect { protocol, version }: Dialect,
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
                // `random two least_conn`: the one method nginx open source has, its default.
                if let Some(w) = d
                    .args()
                    .iter()
                    .enumerate()
                    .find(|(i, w)| w.text != "two" && !(two && *i == 1 && w.text == "least_conn"))
                    .map(|(_, w)| w)
                {
                    let plus = w.text.starts_with("least_time=");
                    errors.push(
                        Diagnostic::error(if plus {
                            format!("invalid parameter `{}` in nginx open source; it is NGINX Plus only", w.text)
                        } else {
                            format!("invalid parameter `{}`", w.text)
                        })
                        .with_span(w.span.clone())
                        .with_fix(if plus {
                            "write `random two;` (nginx open source picks the one with fewer connections)"
                        } else {
                            "write `random;` or `random two;`"
                        }),
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
                        // Open source from 1.27.3 (with `zone` and a `resolver`).
                        "resolve" | "service" if version >= Version::new(1, 27, 3) => {
                            notes.push(not_modelled(&w.text, w.span.clone(), "a server parameter that does not change the choice of server"));
                        }
                        "resolve" | "service" | "route" | "slow_start" | "drain" => {
                            let fix = match k {
                                "resolve" | "service" => "remove it, or pass --nginx-version 1.27.3 if the file is for nginx 1.27.3 or later, where it is open source",
                                "slow_start" => "remove it: nginx open source gives a recovered server its full weight at once",
                                "drain" => "use `down` to take the server out",
                                _ => "remove it with the `sticky route` that uses it",
                            };
                            errors.push(Diagnostic::error(format!("invalid parameter `{}` in nginx open source; it is NGINX Plus only", w.text)).with_span(w.span.clone()).with_fix(fix));
                        }
                        _ => errors.push(Diagnostic::error(format!("invalid parameter `{}`", w.text)).with_span(w.span.clone()).with_fix("nginx refuses unknown server parameters; see the upstream module's `server` directive")),
                    }
                }
                // A stream server needs its port; an http one defaults to 80.
                let default_port = (protocol == Protocol::Http).then_some(80);
                match upstream_address(&addr.text, default_port) {
                    Ok(address) if address != addr.text => {
                        // ketama hashes the text as written; the model's address gains the port.
                        server.ring_key = Some(addr.text.clone());
                        server.address = address;
                    }
                    Ok(_) => {}
                    Err(msg) => {
                        if !has_placeholder(&addr.text) {
                            errors.push(
                                Diagnostic::error(msg)
                                    .with_span(addr.span.clone())
                                    .with_fix("write the server's address, such as `server 10.0.0.5:8080;`"),
                            );
                        }
                        continue;
                    }
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
            _ => note_directive(d, node, "it does not change the choice of server", notes),
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
            }
            .min(MAX_MODELLED_RETRIES),
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

/// `80`, `*:80`, `127.0.0.1:8080`, `[::]:80`, `unix:/run/nginx.sock` (parameters after the
/// address are ignored).
fn listen_address(text: &str) -> Option<String> {
    if ballast_core::load::is_unix_address(text) {
        return Some(text.to_string());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Facts, Imported, import_file};

    /// Writes `text` as `nginx.conf` in a fresh directory (plus `files` beside it) and imports it.
    fn import_with(
        text: &str,
        files: &[(&str, &str)],
        options: &Options,
    ) -> (tempfile::TempDir, Result<Imported, ballast_core::LoadError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, text).unwrap();
        let imported = import_file(&path, options);
        (dir, imported)
    }

    /// Options with an empty stock prefix, so the machine's /etc/nginx plays no part.
    fn options(prefix: &Path) -> Options {
        Options {
            format: Some(crate::Format::Nginx),
            nginx_prefix: prefix.to_path_buf(),
            ..Options::default()
        }
    }

    fn import(text: &str) -> Result<Imported, ballast_core::LoadError> {
        let prefix = tempfile::tempdir().unwrap();
        import_with(text, &[], &options(prefix.path())).1
    }

    fn imported(text: &str) -> Imported {
        import(text).unwrap_or_else(|e| panic!("refused:\n{}", e.render()))
    }

    /// The errors of a refused file, each with its line.
    fn refused(text: &str) -> Vec<(usize, String)> {
        let e = match import(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let source = SourceFile::new("nginx.conf", text);
        e.diagnostics
            .iter()
            .map(|d| {
                let line = d.span.as_ref().map_or(0, |s| source.line_col(s.start).line);
                (line, d.message.clone())
            })
            .collect()
    }

    fn listener_addresses(i: &Imported) -> Vec<(&str, &str)> {
        i.loaded
            .config
            .listeners
            .values()
            .map(|l| (l.address.as_str(), l.pool.as_str()))
            .collect()
    }

    fn has_note(i: &Imported, part: &str) -> bool {
        i.notes.iter().any(|n| n.message.contains(part))
    }

    const FRAGMENT: &str = "upstream app {
    server 10.0.0.1:8080;
    server 10.0.0.2:8080;
}
server {
    listen 8080;
    location / {
        proxy_pass http://app;
    }
}
";

    #[test]
    fn a_conf_d_fragment_is_read_inside_http_with_a_note() {
        let i = imported(FRAGMENT);
        assert_eq!(listener_addresses(&i), vec![("0.0.0.0:8080", "app")]);
        assert_eq!(i.loaded.config.pools["app"].servers.len(), 2);
        assert!(has_note(
            &i,
            "read as a fragment included inside `http { }`"
        ));
        let Facts::Nginx(facts) = &i.facts else {
            panic!("nginx facts")
        };
        assert_eq!(facts.context, NginxContext::Http);
        assert_eq!(facts.upstreams().len(), 1);
        assert_eq!(facts.proxy_passes()[0].upstream_name(), Some("app"));
        // A whole nginx.conf keeps its own rules.
        let whole = format!("events {{}}\nhttp {{\n{FRAGMENT}}}\n");
        let i = imported(&whole);
        assert!(!has_note(&i, "read as a fragment"));
        assert_eq!(listener_addresses(&i), vec![("0.0.0.0:8080", "app")]);
    }

    #[test]
    fn context_option_overrides_detection() {
        let prefix = tempfile::tempdir().unwrap();
        let main = Options {
            nginx_context: Some(NginxContext::Main),
            ..options(prefix.path())
        };
        let (_d, r) = import_with(FRAGMENT, &[], &main);
        let e = r.expect_err("--context main refuses a fragment");
        assert!(
            e.diagnostics
                .iter()
                .any(|d| d.message.contains("no `events`"))
        );
        // A stream fragment is told by servers that proxy without locations.
        let stream =
            "upstream db { server 10.0.0.1:5432; }\nserver { listen 5432; proxy_pass db; }\n";
        let i = imported(stream);
        assert!(has_note(&i, "inside `stream { }`"));
        let l = i.loaded.config.listeners.values().next().unwrap();
        assert_eq!(l.protocol, Protocol::Tcp);
        // The same file read as http: nginx refuses proxy_pass at server level there.
        let http = Options {
            nginx_context: Some(NginxContext::Http),
            ..options(prefix.path())
        };
        let (_d, r) = import_with(stream, &[], &http);
        let e = r.expect_err("proxy_pass in an http server is refused");
        assert!(
            e.diagnostics
                .iter()
                .any(|d| d.message.contains("`proxy_pass` is not allowed here"))
        );
    }

    #[test]
    fn a_server_without_listen_listens_on_port_80() {
        let i = imported(
            "upstream app { server 10.0.0.1; }\nserver {\n    location / { proxy_pass http://app; }\n}\n",
        );
        assert_eq!(listener_addresses(&i), vec![("0.0.0.0:80", "app")]);
        assert!(has_note(&i, "has no `listen`: nginx listens on *:80"));
        // The server without a port is on 80, its ring key as written.
        let s = &i.loaded.config.pools["app"].servers[0];
        assert_eq!(s.address, "10.0.0.1:80");
        assert_eq!(s.ring_key.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn proxy_pass_through_variables_is_resolved_when_constant_and_noted_otherwise() {
        let base = "upstream app { server 10.0.0.1:80; }\nupstream other { server 10.0.0.2:80; }\n";
        let set = format!(
            "{base}server {{ listen 80; location / {{ set $backend app; proxy_pass http://$backend; }} }}\n"
        );
        assert_eq!(
            listener_addresses(&imported(&set)),
            vec![("0.0.0.0:80", "app")]
        );
        let whole_url = format!(
            "{base}server {{ listen 80; set $to http://other:80; location / {{ proxy_pass $to; }} }}\n"
        );
        let i = imported(&whole_url);
        // `other:80` is not the upstream `other`: nginx would resolve the host name.
        assert_eq!(listener_addresses(&i), vec![("0.0.0.0:80", "other:80")]);
        let map = format!(
            "{base}map $host $pool {{ default app; example.com app; }}\nserver {{ listen 80; location / {{ proxy_pass http://$pool; }} }}\n"
        );
        assert_eq!(
            listener_addresses(&imported(&map)),
            vec![("0.0.0.0:80", "app")]
        );
        let varying = format!(
            "{base}map $host $pool {{ default app; example.com other; }}\nserver {{ listen 80; location / {{ proxy_pass http://$pool; }} }}\n"
        );
        let i = imported(&varying);
        assert!(i.loaded.config.listeners.is_empty());
        assert!(has_note(&i, "chosen per request"));
        assert!(i.notes.iter().all(|n| n.severity == Severity::Info));
        let lua = "server { listen 80; location / { set_by_lua_block $to { return 'app' } proxy_pass http://$to; } }\n";
        let i = imported(lua);
        assert!(has_note(&i, "chosen per request"));
    }

    #[test]
    fn code_blocks_are_kept_unread() {
        let text = r#"events {}
http {
    server {
        listen 80;
        location / {
            content_by_lua_block {
                local t = { a = "}", b = '{' }  -- a comment with } and "
                --[[ a long comment
                     with } ]]
                local s = [==[ ]] } ]==]
                if not t then return ngx.exit(404) end
                ngx.say("ok")
            }
            js_content main.hello;
        }
        location /x {
            access_by_lua_block { ngx.exit(ngx.OK) }
            proxy_pass http://127.0.0.1:8080;
        }
    }
}
"#;
        let i = imported(text);
        assert!(has_note(&i, "Lua code that runs per request"));
        assert!(has_note(&i, "njs code that runs per request"));
        assert_eq!(listener_addresses(&i).len(), 1);
        let Facts::Nginx(facts) = &i.facts else {
            panic!("nginx facts")
        };
        let mut all = Vec::new();
        crate::facts::walk(&facts.tree, &mut all);
        assert!(
            all.iter()
                .all(|(d, _)| d.name() != "local" && d.name() != "ngx.say")
        );
        let code = all
            .iter()
            .find(|(d, _)| d.name() == "content_by_lua_block")
            .map(|(d, b)| b.iter().find(|n| &n.directive == *d).unwrap().code.clone());
        let body = &text[code.flatten().expect("the code's span")];
        assert!(body.contains("ngx.say(\"ok\")") && body.trim_end().ends_with("ngx.say(\"ok\")"));
        let unclosed = "events {}\nhttp { server { location / { content_by_lua_block { if x then\n";
        assert!(
            refused(unclosed)
                .iter()
                .any(|(line, m)| *line == 2 && m.contains("not closed"))
        );
    }

    #[test]
    fn unix_sockets_are_addresses() {
        let text = "events {}
http {
    upstream app { server unix:/run/app.sock; server 10.0.0.1:80; }
    server {
        listen unix:/run/nginx.sock;
        location / { proxy_pass http://app; }
        location /b { proxy_pass http://unix:/run/b.sock:/api; }
    }
    server {
        listen unix:/run/only.sock;
        location / { proxy_pass http://unix:/run/b.sock:/; }
    }
}
";
        let i = imported(text);
        let mut listeners = listener_addresses(&i);
        listeners.sort();
        assert_eq!(listeners[0].0, "unix:/run/nginx.sock");
        assert_eq!(listeners[1].0, "unix:/run/only.sock");
        assert_eq!(
            i.loaded.config.pools["app"].servers[0].address,
            "unix:/run/app.sock"
        );
        let direct = &i.loaded.config.pools[listeners[1].1];
        assert_eq!(direct.servers[0].address, "unix:/run/b.sock");
    }

    #[test]
    fn missing_includes_are_warnings_and_stock_files_come_from_the_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let text = "events {}
http {
    include mime.types;
    include conf.d/*.conf;
    include sites/app.conf;
    server {
        listen 80;
        location / { include uwsgi_params; uwsgi_pass 127.0.0.1:3031; }
    }
}
";
        let (_d, r) = import_with(text, &[], &options(prefix.path()));
        let i = r.unwrap_or_else(|e| panic!("{}", e.render()));
        let warnings: Vec<_> = i
            .notes
            .iter()
            .filter(|n| n.severity == Severity::Warning)
            .collect();
        // Only the site's own file: stock files absent from the prefix are skipped, and a
        // glob that matches nothing is fine, as in nginx.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("sites/app.conf"));
        assert_eq!(warnings[0].code.as_deref(), Some("IMPORT"));
        let source = SourceFile::new("x", text);
        assert_eq!(
            source
                .line_col(warnings[0].span.clone().unwrap().start)
                .line,
            5
        );
        // A stock file installed under the prefix is read, at its include line.
        std::fs::write(
            prefix.path().join("uwsgi_params"),
            "uwsgi_param QUERY_STRING $query_string;\n",
        )
        .unwrap();
        let (_d, r) = import_with(
            text,
            &[("conf.d/a.conf", "upstream a { server 10.0.0.9:80; }\n")],
            &options(prefix.path()),
        );
        let i = r.unwrap();
        let directives = |i: &Imported| {
            let Facts::Nginx(facts) = &i.facts else {
                panic!("nginx facts")
            };
            let mut all = Vec::new();
            crate::facts::walk(&facts.tree, &mut all);
            all.iter()
                .map(|(d, _)| (d.text(), source.line_col(d.span.start).line))
                .collect::<Vec<_>>()
        };
        let read = directives(&i);
        assert!(read.contains(&("uwsgi_param QUERY_STRING $query_string".to_string(), 8)));
        // nginx's own lines are not noted one by one.
        assert!(!has_note(&i, "uwsgi_param"));
        assert!(i.loaded.config.pools.contains_key("a"));
        // A file beside the main one wins over the prefix.
        let (_d, r) = import_with(
            text,
            &[("uwsgi_params", "uwsgi_param LOCAL 1;\n")],
            &options(prefix.path()),
        );
        let read = directives(&r.unwrap());
        assert!(read.iter().any(|(d, _)| d == "uwsgi_param LOCAL 1"));
        assert!(!read.iter().any(|(d, _)| d.contains("QUERY_STRING")));
    }

    #[test]
    fn nginx_plus_directives_are_refused_at_their_line() {
        for (line, directive) in [
            ("least_time header;", "least_time"),
            ("sticky cookie srv_id expires=1h;", "sticky"),
            ("queue 100 timeout=70;", "queue"),
            ("ntlm;", "ntlm"),
        ] {
            let text = format!(
                "events {{}}\nhttp {{\n    upstream app {{\n        {line}\n        server 10.0.0.1:80;\n    }}\n}}\n"
            );
            let errors = refused(&text);
            assert!(
                errors.iter().any(|(l, m)| *l == 4
                    && m.contains(&format!("`{directive}`"))
                    && m.contains("NGINX Plus only")),
                "{directive}: {errors:?}"
            );
        }
        let check = "events {}\nhttp {\n  server {\n    location / {\n      health_check;\n      proxy_pass http://10.0.0.1;\n    }\n  }\n}\n";
        assert!(
            refused(check)
                .iter()
                .any(|(l, m)| *l == 5 && m.contains("NGINX Plus only"))
        );
        let slow =
            "events {}\nhttp {\n  upstream app {\n    server 10.0.0.1:80 slow_start=30s;\n  }\n}\n";
        assert!(refused(slow).iter().any(|(l, m)| *l == 4
            && m.contains("slow_start=30s")
            && m.contains("NGINX Plus only")));
        // `resolve` is open source from 1.27.3.
        let resolve = "events {}\nhttp {\n  resolver 10.0.0.53;\n  upstream app {\n    zone app 64k;\n    server app.internal:80 resolve;\n  }\n}\n";
        assert!(
            refused(resolve)
                .iter()
                .any(|(l, m)| *l == 6 && m.contains("NGINX Plus only"))
        );
        let prefix = tempfile::tempdir().unwrap();
        let newer = Options {
            nginx_version: Version::new(1, 27, 3),
            ..options(prefix.path())
        };
        assert!(import_with(resolve, &[], &newer).1.is_ok());
        // `queue` outside an upstream is some other module's word.
        assert!(import("events {}\nrtmp { queue 10; }\n").is_ok());
    }

    #[test]
    fn placeholders_are_named_and_addresses_quoted_as_written() {
        let angle = "events {}\nhttp {\n  upstream k3s {\n    server <master_node_ip_address>:6443;\n  }\n}\n";
        let errors = refused(angle);
        assert!(
            errors.iter().any(|(l, m)| *l == 4
                && m.contains("`<master_node_ip_address>:6443`")
                && m.contains("placeholder left from a template: put the real address")),
            "{errors:?}"
        );
        let doubled = "events {}\nhttp {\n  upstream app {\n    server 10.0.0.1:80:80;\n    server app.internal;\n  }\n}\n";
        let errors = refused(doubled);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .1
                .contains("invalid port in upstream `10.0.0.1:80:80`")
        );
        assert!(!errors[0].1.contains("10_0_0_1"));
        let words = "server {\n  listen 80;\n  location / {\n    proxy_pass http://some-ip:some-port;\n  }\n}\n";
        assert!(refused(words).iter().any(|(l, m)| *l == 4
            && m.contains("`some-ip:some-port`")
            && m.contains("placeholder")));
        let braces = "events {}\nhttp {\n  upstream app {\n    server {ip_address}:8080;\n  }\n}\n";
        let errors = refused(braces);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].0 == 4
                && errors[0]
                    .1
                    .contains("`{ip_address}:8080` looks like a placeholder")
        );
    }

    #[test]
    fn what_nginx_refuses_by_name_is_refused() {
        let colon = "server {\n  listen:80;\n  location / { proxy_pass http://10.0.0.1; }\n}\n";
        let e = import(colon).err().unwrap();
        let d = e
            .diagnostics
            .iter()
            .find(|d| d.message == "unknown directive `listen:80`")
            .unwrap();
        assert!(d.fix.as_deref().unwrap().contains("`listen 80;`"));
        let no_port = "server {\n  listen 80;\n  location / {\n    uwsgi_pass app_uwsgi;\n  }\n}\n";
        assert!(
            refused(no_port)
                .iter()
                .any(|(l, m)| *l == 4 && m == "no port in upstream `app_uwsgi`")
        );
        let upstream = format!("upstream app_uwsgi {{ server 10.0.0.1:3031; }}\n{no_port}");
        assert!(import(&upstream).is_ok());
        let prefix =
            "server {\n  listen 80;\n  location / {\n    proxy_pass 10.0.0.1:8080;\n  }\n}\n";
        assert!(
            refused(prefix)
                .iter()
                .any(|(l, m)| *l == 4 && m.contains("invalid URL prefix"))
        );
    }

    #[test]
    fn duplicate_listens_are_refused_as_nginx_refuses_them() {
        let twice = "server {\n  listen 8080;\n  listen *:8080;\n}\n";
        assert!(
            refused(twice)
                .iter()
                .any(|(l, m)| *l == 3 && m == "a duplicate listen 0.0.0.0:8080")
        );
        let defaults = "server {\n  listen 127.0.0.1:8080 default_server;\n}\nserver {\n  listen 127.0.0.1:8080 default_server;\n}\n";
        assert!(
            refused(defaults)
                .iter()
                .any(|(l, m)| *l == 5 && m.contains("duplicate default server"))
        );
        // Two servers on one address (virtual hosts), or one server on IPv4 and IPv6, are fine.
        assert!(
            import(
                "server {\n  listen 8080;\n  listen [::]:8080;\n}\nserver {\n  listen 8080;\n}\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn notes_do_not_claim_that_what_the_catalogue_reads_changes_nothing() {
        let text = "events {}\nhttp {\n  upstream app { server 10.0.0.1:80; }\n  server {\n    listen 80;\n    location / {\n      proxy_next_upstream error timeout http_502;\n      gzip on;\n      proxy_pass http://app;\n    }\n  }\n}\n";
        let i = imported(text);
        let next = i
            .notes
            .iter()
            .find(|n| n.message.contains("proxy_next_upstream"))
            .unwrap();
        assert!(
            !next.message.contains("does not change"),
            "{}",
            next.message
        );
        assert!(next.message.contains("the catalogue rules read it"));
        let gzip = i.notes.iter().find(|n| n.message.contains("gzip")).unwrap();
        assert!(gzip.message.contains("does not change balancing"));
    }
}
