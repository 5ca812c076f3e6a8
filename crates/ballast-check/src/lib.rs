//! ballast-check: the rule catalogue over ballast's configuration model.
//!
//! A [`Rule`] has a stable id (`SKEW-101`), a name, a severity, a one-line summary and a longer
//! explanation that cites where the knowledge comes from. Running the catalogue over a
//! [`Loaded`] configuration yields [`Finding`]s that name the consequence in operational terms,
//! point at the line at fault, and say how to fix it. Rule ids in the 100s are ballast's own
//! model; the catalogue ids they derive from (`../shared/research/misconfig-catalog.md`) are
//! cited in each explanation. Rules with the catalogue's own ids (`SKEW-001`, `CONN-004`) read
//! HAProxy and nginx files as written ([`foreign`]); a few are judged only by `ballast diff`.
//! Pure: no I/O.
#![forbid(unsafe_code)]

mod context;
pub mod foreign;
pub mod output;
mod rules;

use std::ops::Range;

use ballast_core::{Diagnostic, Loaded, Severity};
use ballast_import::{Facts, Imported};

pub use context::Context;
pub use foreign::CATALOGUE;
pub use rules::RULES;
pub use rules::descriptors::{
    DescriptorLimit, descriptor_limit, descriptors_needed, shortfall as descriptor_shortfall,
    shortfall_of as descriptor_shortfall_of,
};

/// What a check run is judged against beyond the file itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// The descriptor limit for LIM-110: this machine's by default, so a file checked on a
    /// laptop for a server can be judged with the server's (`--descriptor-limit N`).
    pub descriptor_limit: DescriptorLimit,
}

/// One rule of the catalogue.
pub struct Rule {
    /// Stable identifier, used in output, `--explain` and suppressions.
    pub id: &'static str,
    /// Short kebab-case name.
    pub name: &'static str,
    pub severity: Severity,
    /// Category: skew, limits, timeouts, health, hashing, security, operations.
    pub category: &'static str,
    /// One line: what the rule catches.
    pub summary: &'static str,
    /// Why it matters, what to do, and the source of the knowledge.
    pub explain: &'static str,
    pub(crate) check: Check,
}

/// What a rule reads.
pub(crate) enum Check {
    /// ballast's own model (ballast files).
    Model(fn(&Context, &mut Sink)),
    /// HAProxy and nginx files as written; `None` where the rule has no meaning.
    Foreign {
        haproxy: Option<fn(&foreign::HaproxyView, &mut Sink)>,
        nginx: Option<fn(&foreign::NginxView, &mut Sink)>,
    },
    /// A change between two files: only `ballast diff` judges it.
    Diff,
    /// Reading the file itself (`LOAD`, `IMPORT`): reported by `ballast check` as it loads
    /// each file, not judged over a model. Holds the formats it concerns.
    Input(&'static str),
}

impl Rule {
    /// Which inputs the rule judges: `ballast`, `haproxy`, `nginx`, `haproxy, nginx` or `diff`.
    pub fn applies_to(&self) -> &'static str {
        match &self.check {
            Check::Model(_) => "ballast",
            Check::Foreign {
                haproxy: Some(_),
                nginx: Some(_),
            } => "haproxy, nginx",
            Check::Foreign {
                haproxy: Some(_), ..
            } => "haproxy",
            Check::Foreign { nginx: Some(_), .. } => "nginx",
            Check::Foreign { .. } => "none",
            Check::Diff => "diff",
            Check::Input(formats) => formats,
        }
    }
}

/// The ids of findings about reading a file rather than about what it configures, listed
/// with the rules so `--explain`, `--list-rules`, docs/rules.md and SARIF's rule table cover
/// every id a finding can carry.
pub static INPUT_RULES: &[Rule] = &[
    Rule {
        id: "LOAD",
        name: "file-cannot-be-loaded",
        severity: Severity::Error,
        category: "input",
        summary: "the file cannot be read or parsed, so nothing in it was checked",
        explain: "The file could not be read (missing, unreadable, not UTF-8) or does not mean \
            anything as a configuration: a syntax error, an unknown directive or key, a value of the \
            wrong type, a reference to a backend, upstream or pool that does not exist. The \
            load balancer would refuse it too. No rule ran on this file, so its other faults are \
            unknown until it loads; `ballast check` exits 2. Each reason is one finding at the line \
            at fault with the fix; fix them and check again.",
        check: Check::Input("ballast, haproxy, nginx"),
    },
    Rule {
        id: "IMPORT",
        name: "not-modelled",
        severity: Severity::Info,
        category: "input",
        summary: "a directive is kept by the load balancer but not modelled by ballast",
        explain: "ballast reads HAProxy and nginx files into its own model. A directive it does not \
            model (content routing such as `use_backend ... if`, rewrites, caching) is listed at \
            info level, so nothing is dropped in silence: the rules and `simulate` do not take it \
            into account. A note at warning level is one whose absence can change the result, \
            such as an `include` whose files do not exist. Nothing to fix unless the note says \
            so; the note names what was not taken into account.",
        check: Check::Input("haproxy, nginx"),
    },
];

/// Every rule: ballast's own, then the catalogue's, then the input findings (`LOAD`, `IMPORT`).
pub fn rules() -> impl Iterator<Item = &'static Rule> {
    RULES
        .iter()
        .chain(CATALOGUE.iter())
        .chain(INPUT_RULES.iter())
}

/// One problem found in a configuration.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub span: Option<Range<usize>>,
    pub fix: String,
}

impl Finding {
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic {
            severity: self.severity,
            code: Some(self.rule.to_string()),
            message: self.message.clone(),
            span: self.span.clone(),
            label: None,
            fix: Some(self.fix.clone()),
        }
    }
}

/// Collects the findings of one rule, locating each by its model path.
pub struct Sink<'a> {
    rule: &'static Rule,
    loaded: &'a Loaded,
    findings: Vec<Finding>,
}

impl Sink<'_> {
    /// Reports a finding at the key or value found at `path` (e.g. `pools.app.servers[1]`).
    pub fn emit(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        let span = self.loaded.locate(path);
        self.emit_span(span, message, fix);
    }

    /// Reports a finding at a span of the file (a directive of an HAProxy or nginx file).
    pub fn emit_span(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.emit_level(self.rule.severity, span, message, fix);
    }

    /// A finding below the rule's severity (a milder variant of what the rule catches).
    pub fn emit_level(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            rule: self.rule.id,
            severity: severity.min(self.rule.severity),
            message: message.into(),
            span,
            fix: fix.into(),
        });
    }
}

/// Runs ballast's own rules over a ballast configuration; findings come sorted by position in
/// the file, then by rule id.
pub fn check(loaded: &Loaded) -> Vec<Finding> {
    check_with(loaded, &CheckOptions::default())
}

/// [`check`] with the limits of the machine the file is for.
pub fn check_with(loaded: &Loaded, options: &CheckOptions) -> Vec<Finding> {
    let ctx = Context::with_options(loaded, options);
    run(loaded, |rule, sink| {
        if let Check::Model(f) = rule.check {
            f(&ctx, sink);
        }
    })
}

/// Runs the rules that fit the file's format: ballast's own on ballast files, the catalogue
/// on HAProxy and nginx files as written.
pub fn check_imported(imported: &Imported) -> Vec<Finding> {
    check_imported_with(imported, &CheckOptions::default())
}

/// [`check_imported`] with the limits of the machine the file is for.
pub fn check_imported_with(imported: &Imported, options: &CheckOptions) -> Vec<Finding> {
    let loaded = &imported.loaded;
    match &imported.facts {
        Facts::Ballast => check_with(loaded, options),
        Facts::Haproxy(facts) => {
            let view = foreign::HaproxyView::new(facts);
            run(loaded, |rule, sink| {
                if let Check::Foreign {
                    haproxy: Some(f), ..
                } = rule.check
                {
                    f(&view, sink);
                }
            })
        }
        Facts::Nginx(facts) => {
            let view = foreign::NginxView::new(facts);
            run(loaded, |rule, sink| {
                if let Check::Foreign { nginx: Some(f), .. } = rule.check {
                    f(&view, sink);
                }
            })
        }
    }
}

fn run(loaded: &Loaded, mut each: impl FnMut(&'static Rule, &mut Sink)) -> Vec<Finding> {
    let mut all = Vec::new();
    for rule in rules() {
        let mut sink = Sink {
            rule,
            loaded,
            findings: Vec::new(),
        };
        each(rule, &mut sink);
        all.append(&mut sink.findings);
    }
    all.sort_by(|a, b| {
        let pos = |f: &Finding| f.span.as_ref().map_or(0, |s| s.start);
        pos(a).cmp(&pos(b)).then(a.rule.cmp(b.rule))
    });
    // One finding per rule and line: a `defaults` line inherited by fifty proxies, or a
    // server-template expanded to fifty servers, is one fault to fix.
    all.dedup_by(|b, a| a.rule == b.rule && a.span.is_some() && a.span == b.span);
    all
}

/// Looks a rule up by id (case-insensitive) or by name.
pub fn find_rule(id_or_name: &str) -> Option<&'static Rule> {
    rules().find(|r| r.id.eq_ignore_ascii_case(id_or_name) || r.name == id_or_name)
}
