//! Source files, byte spans and rustc-style diagnostics.
//!
//! Everything that reports a problem in a configuration (load errors here, check findings in
//! `ballast-check`) speaks in [`Diagnostic`]s: a severity, a message, an optional span in a
//! [`SourceFile`], and an optional fix. Rendering to text goes through `annotate-snippets` so
//! every tool shows the same snippet with the same line numbers.

use rustc_hash::FxHashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration file held in memory with its line index.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

/// A 1-based line and column (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// Reads a file, refusing bytes that are not UTF-8. On that refusal the error carries a
    /// lossy copy of the text, so the diagnostic can show the line with the bad byte.
    pub fn read(path: &Path) -> Result<Self, Box<ReadError>> {
        let bytes = std::fs::read(path).map_err(|e| {
            Box::new(ReadError {
                diagnostic: Diagnostic::error(format!("cannot read {}: {e}", path.display()))
                    .with_fix("check the path and its permissions"),
                lossy: None,
            })
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => {
                // Bytes before the first invalid one keep their offsets in the lossy text.
                let at = e.utf8_error().valid_up_to();
                let lossy = Self::new(path, String::from_utf8_lossy(e.as_bytes()).into_owned());
                let diagnostic = Diagnostic::error(format!(
                    "{} is not UTF-8: invalid byte 0x{:02x} at offset {at}",
                    path.display(),
                    e.as_bytes()[at]
                ))
                .with_span(at..at + '\u{fffd}'.len_utf8())
                .with_label("not UTF-8")
                .with_fix("save the file as UTF-8; configuration files are text");
                Err(Box::new(ReadError {
                    diagnostic,
                    lossy: Some(lossy),
                }))
            }
        }
    }

    /// Line and column of a byte offset (clamped to the file).
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        LineCol {
            line: line + 1,
            column,
        }
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self.line_starts.get(line).map_or(self.text.len(), |&e| e);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// Why a file could not be read as text.
#[derive(Debug)]
pub struct ReadError {
    pub diagnostic: Diagnostic,
    /// The file decoded with replacement characters, when it was read but is not UTF-8.
    pub lossy: Option<SourceFile>,
}

impl ReadError {
    pub fn render(&self) -> String {
        self.diagnostic.render(self.lossy.as_ref())
    }
}

/// How bad a diagnostic is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, located in a source file when it can be.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable identifier (a check rule id), when there is one.
    pub code: Option<String>,
    pub message: String,
    pub span: Option<Range<usize>>,
    /// A short label drawn under the span.
    pub label: Option<String>,
    pub fix: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code: None,
            message: message.into(),
            span: None,
            label: None,
            fix: None,
        }
    }

    pub fn with_span(mut self, span: Range<usize>) -> Self {
        self.span = Some(span);
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Renders the diagnostic as rustc does, with the snippet from `source` when it has a span.
    pub fn render(&self, source: Option<&SourceFile>) -> String {
        use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
            Severity::Info => Level::INFO,
        };
        let mut title = level.primary_title(self.message.as_str());
        if let Some(code) = &self.code {
            title = title.id(code.as_str());
        }
        let path = source.map(|s| s.path.display().to_string());
        let mut group = Group::with_title(title);
        match (source, &self.span) {
            (Some(src), Some(span)) => {
                let span = clamp_span(&src.text, span.clone());
                // Only the lines the span covers: the renderer reads all the text it is
                // given, and a 10,000-line file with hundreds of findings would be read
                // hundreds of times.
                let first = src.line_starts.partition_point(|&s| s <= span.start) - 1;
                let from = src.line_starts[first];
                let last = src
                    .line_starts
                    .partition_point(|&s| s < span.end.max(span.start + 1));
                let to = src.line_starts.get(last).map_or(src.text.len(), |&e| e);
                let mut annotation =
                    AnnotationKind::Primary.span(span.start - from..span.end - from);
                if let Some(label) = &self.label {
                    annotation = annotation.label(label.as_str());
                }
                group = group.element(
                    Snippet::source(&src.text[from..to])
                        .line_start(first + 1)
                        .path(path.as_deref().unwrap_or_default())
                        .fold(true)
                        .annotation(annotation),
                );
            }
            (Some(_), None) => {
                group = group.element(annotate_snippets::Origin::path(
                    path.as_deref().unwrap_or_default(),
                ));
            }
            _ => {}
        }
        let mut report = vec![group];
        if let Some(fix) = &self.fix {
            report.push(Group::with_title(Level::HELP.secondary_title(fix.as_str())));
        }
        Renderer::plain().render(&report).to_string()
    }
}

/// Keeps a span inside the text and on character boundaries, so rendering never panics.
fn clamp_span(text: &str, span: Range<usize>) -> Range<usize> {
    let mut start = span.start.min(text.len());
    let mut end = span.end.clamp(start, text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// Byte spans of every key and value in a TOML document, addressed by dotted path.
///
/// Paths look like `pools.app.servers[1].weight`. The configuration model stays plain data;
/// anything that needs to point into the file (validation, check rules) asks this map.
#[derive(Debug, Default, Clone)]
pub struct SpanMap {
    // FxHash: a 10,000-line HAProxy file records ~50,000 paths, and SipHash was a third of
    // the import's time; the keys are the file's own paths, not attacker-chosen lookups.
    values: FxHashMap<String, Range<usize>>,
    keys: FxHashMap<String, Range<usize>>,
}

impl SpanMap {
    pub fn insert(&mut self, path: String, key: Option<Range<usize>>, value: Range<usize>) {
        if let Some(key) = key {
            self.keys.insert(path.clone(), key);
        }
        self.values.insert(path, value);
    }

    /// The span of the value at `path`, if the file spells it out.
    pub fn value(&self, path: &str) -> Option<Range<usize>> {
        self.values.get(path).cloned()
    }

    /// The span of the key at `path` (for tables, the name in the header).
    pub fn key(&self, path: &str) -> Option<Range<usize>> {
        self.keys.get(path).cloned()
    }

    /// The best place to point at for `path`: its key and value when both are on one line,
    /// else the key, else the value; falling back to the nearest ancestor that has a span.
    pub fn locate(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some(k) = self.key(p) {
                return Some(match self.value(p) {
                    Some(v) if v.start >= k.end && v.end - k.start < 120 && !self.is_table(p) => {
                        k.start..v.end
                    }
                    _ => k,
                });
            }
            if let Some(v) = self.value(p) {
                return Some(v);
            }
            p = parent_path(p)?;
        }
    }

    fn is_table(&self, path: &str) -> bool {
        let prefix = format!("{path}.");
        self.values.keys().any(|k| k.starts_with(&prefix))
    }
}

fn parent_path(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_and_counts_characters() {
        let src = SourceFile::new("x.toml", "a = 1\nbé = 2\n");
        assert_eq!(src.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(src.line_col(6), LineCol { line: 2, column: 1 });
        // 'é' is two bytes but one column.
        assert_eq!(src.line_col(9), LineCol { line: 2, column: 3 });
        assert_eq!(src.line_text(2), "bé = 2");
        assert_eq!(src.line_col(10_000).line, 3);
    }

    #[test]
    fn render_shows_path_line_and_fix() {
        let src = SourceFile::new("conf.toml", "[pools.app]\nweight = 0\n");
        let d = Diagnostic::error("all weights are zero")
            .with_span(12..22)
            .with_label("here")
            .with_fix("give one server a weight above 0");
        let out = d.render(Some(&src));
        assert!(out.contains("conf.toml:2:1"), "{out}");
        assert!(out.contains("weight = 0"), "{out}");
        assert!(out.contains("help: give one server"), "{out}");
    }

    #[test]
    fn render_survives_spans_off_the_end_and_inside_characters() {
        let src = SourceFile::new("x", "é");
        let out = Diagnostic::error("m").with_span(1..99).render(Some(&src));
        assert!(out.contains("error: m"));
    }
}
