//! ballast-import: HAProxy and nginx configurations read into ballast's one model.
//!
//! [`import_file`] detects the format (or takes it from the caller), parses the file with byte
//! spans, maps what ballast models onto [`ballast_core::Config`] (with the emulated algorithm
//! on every pool, so `simulate` makes the real load balancer's choices) and records, for
//! every model path, where in the file it came from. Directives ballast does not model are
//! kept and reported at info level, never dropped in silence. Defaults follow the version
//! given (`--haproxy-version`, `--nginx-version`; Debian's 2.6 and 1.22 when unset).
#![forbid(unsafe_code)]

mod builder;
pub mod convert;
pub mod facts;
pub mod haproxy;
pub mod nginx;
mod words;

use std::path::Path;

use ballast_core::load::{Origin, validate_as};
use ballast_core::source::{Diagnostic, Severity, SourceFile};
use ballast_core::{LoadError, Loaded};

pub use facts::Facts;
pub use words::{Directive, Version, Word};

/// A configuration format ballast reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ballast,
    Haproxy,
    Nginx,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ballast => "ballast",
            Format::Haproxy => "haproxy",
            Format::Nginx => "nginx",
        }
    }
}

/// The nginx context a file's top level is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxContext {
    /// A whole `nginx.conf`: `events`, `http`, `stream` at the top.
    Main,
    /// A fragment included inside `http { }` (a `conf.d/*.conf` of `upstream`s and `server`s).
    Http,
    /// A fragment included inside `stream { }`.
    Stream,
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct Options {
    /// Force the format instead of detecting it.
    pub format: Option<Format>,
    pub haproxy_version: Version,
    pub nginx_version: Version,
    /// Environment variables HAProxy files may name (`"${VAR}"`, `$VAR`), given on the
    /// command line (`--env K=V`); they take precedence over the process environment.
    pub env: Vec<(String, String)>,
    /// The nginx context of the file's top level; `None` tells it from the content.
    pub nginx_context: Option<NginxContext>,
    /// Where nginx's stock files (`mime.types`, `*_params`, `snippets/`) are looked up when
    /// an include names them and they are not beside the file.
    pub nginx_prefix: std::path::PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            format: None,
            haproxy_version: Version::new(2, 6, 0),
            nginx_version: Version::new(1, 22, 0),
            env: Vec::new(),
            nginx_context: None,
            nginx_prefix: std::path::PathBuf::from("/etc/nginx"),
        }
    }
}

/// A configuration of any format, in ballast's model.
#[derive(Debug, Clone)]
pub struct Imported {
    pub format: Format,
    pub loaded: Loaded,
    /// Info-level notes: directives kept but not modelled, approximations made.
    pub notes: Vec<Diagnostic>,
    /// The file as written, resolved for the catalogue rules.
    pub facts: Facts,
}

/// Reads, detects and imports a configuration file.
pub fn import_file(path: &Path, options: &Options) -> Result<Imported, LoadError> {
    let source = SourceFile::read(path).map_err(|e| LoadError {
        source: e.lossy,
        diagnostics: vec![e.diagnostic],
    })?;
    import_source(source, options)
}

/// Imports a configuration already in memory. nginx `include`s are resolved relative to the
/// file's directory.
pub fn import_source(source: SourceFile, options: &Options) -> Result<Imported, LoadError> {
    let format = match options.format {
        Some(f) => f,
        None => detect(&source.text, &source.path).ok_or_else(|| LoadError {
            diagnostics: vec![
                Diagnostic::error(format!(
                    "cannot tell whether {} is a ballast, HAProxy or nginx configuration",
                    source.path.display()
                ))
                .with_fix("name the format: --as haproxy, --as nginx or --as ballast"),
            ],
            source: Some(source.clone()),
        })?,
    };
    let (config, spans, notes, facts) = match format {
        Format::Ballast => {
            return ballast_core::load_source(source).map(|loaded| Imported {
                format,
                loaded,
                notes: Vec::new(),
                facts: Facts::Ballast,
            });
        }
        Format::Haproxy => {
            haproxy::import(&source, options).map(|(c, s, n, f)| (c, s, n, Facts::Haproxy(f)))
        }
        Format::Nginx => {
            nginx::import(&source, options).map(|(c, s, n, f)| (c, s, n, Facts::Nginx(f)))
        }
    }
    .map_err(|diagnostics| LoadError {
        source: Some(source.clone()),
        diagnostics,
    })?;
    let loaded = Loaded {
        source,
        spans,
        config,
    };
    let problems = validate_as(&loaded, Origin::Imported);
    if !problems.is_empty() {
        return Err(LoadError {
            source: Some(loaded.source),
            diagnostics: problems,
        });
    }
    Ok(Imported {
        format,
        loaded,
        notes,
        facts,
    })
}

/// Guesses the format: a `.toml` file is ballast's own (the name is an explicit statement and
/// TOML errors are the useful ones there); otherwise from the content, then from the file
/// name. `None` when nothing tells.
pub fn detect(text: &str, path: &Path) -> Option<Format> {
    if path.extension().is_some_and(|e| e == "toml") {
        return Some(Format::Ballast);
    }
    let significant = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty());
    let mut nginx_votes = 0;
    let mut toml_votes = 0;
    for line in significant.take(200) {
        let first = line.split_whitespace().next().unwrap_or("");
        // nginx has `listen 80;` and `server { ... }`: HAProxy lines never end in `;` or `{`.
        if haproxy::is_section_keyword(first)
            && !line.ends_with(';')
            && !line.contains('{')
            && !line.contains('=')
        {
            return Some(Format::Haproxy);
        }
        if line.ends_with('{') || line.ends_with(';') || line == "}" {
            nginx_votes += 1;
        }
        if (line.starts_with('[') && line.ends_with(']')) || line.contains(" = ") {
            toml_votes += 1;
        }
    }
    if nginx_votes > toml_votes {
        return Some(Format::Nginx);
    }
    if toml_votes > 0 {
        return Some(Format::Ballast);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => Some(Format::Ballast),
        Some("cfg") => Some(Format::Haproxy),
        Some("conf") => Some(Format::Nginx),
        _ => None,
    }
}

/// What joins the directive and the reason in a not-modelled note's message.
const NOT_MODELLED: &str = "` is kept but not modelled: ";

/// The directive text and the reason of a note made by [`not_modelled`], for tools that
/// group notes (`check`'s text output); `None` for any other message.
pub fn not_modelled_parts(message: &str) -> Option<(&str, &str)> {
    let (what, why) = message.split_once(NOT_MODELLED)?;
    Some((what.strip_prefix('`')?, why))
}

/// What the file's own load balancer refuses (a directive its version removed, a missing
/// final newline) but ballast can still read, or accepts although it cannot work (a health
/// check expecting status 999): an error at that line, so `check` fails (exit 1) while every
/// other rule still runs.
pub(crate) fn error_note(message: &str, span: std::ops::Range<usize>, fix: &str) -> Diagnostic {
    note(Severity::Error, message, span, fix)
}

/// An importer's note (rule `IMPORT`) at a line: every note, error or info, is made here.
pub(crate) fn note(
    severity: Severity,
    message: impl Into<String>,
    span: std::ops::Range<usize>,
    fix: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity,
        code: Some("IMPORT".into()),
        message: message.into(),
        span: Some(span),
        label: None,
        fix: Some(fix.into()),
    }
}

/// An info note about a directive kept but not modelled.
pub(crate) fn not_modelled(what: &str, span: std::ops::Range<usize>, why: &str) -> Diagnostic {
    note(
        Severity::Info,
        format!("`{what}{NOT_MODELLED}{why}"),
        span,
        "nothing to change; ballast's checks and predictions leave it out",
    )
}
