//! Building a model from a foreign file: the configuration plus, for each model path, the span
//! of the directive it came from, so findings point at the right line.

use std::ops::Range;

use ballast_core::Config;
use ballast_core::source::SpanMap;

#[derive(Debug, Default)]
pub struct Builder {
    pub config: Config,
    pub spans: SpanMap,
}

impl Builder {
    /// Records that the model value at `path` was written at `span`.
    pub fn at(&mut self, path: impl Into<String>, span: Range<usize>) {
        self.spans.insert(path.into(), Some(span.clone()), span);
    }
}

/// A name safe as a model key: foreign names may hold any character, model paths use `.`
/// and `[` as separators.
pub fn model_name(name: &str) -> String {
    name.replace(['.', '[', ']'], "_")
}
