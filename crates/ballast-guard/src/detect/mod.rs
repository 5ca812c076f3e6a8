//! Detectors: pure judgements over a window of samples of one load balancer. Each returns
//! [`Finding`]s with the figures behind them; deciding to alert (for how long, how loud, what
//! it inhibits) is the alert lifecycle's job (`crate::alert`), not theirs.
//!
//! A detector says what is wrong *now*, in this window. "For two minutes" and "for three
//! consecutive windows" are `for` durations of the rule (`RuleSpec::for_ms`), applied by the
//! lifecycle, so every detector stays a function of its window alone.

pub mod distribution;
pub mod drift;
pub mod errors;
pub mod keys;
pub mod saturation;
pub mod unreached;
pub(crate) mod window;

use serde::Serialize;

/// How loud a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// Where a problem sits: the question every outage report spent hours on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The load balancer spreads traffic unevenly (weights, hashing, a server taken out).
    Distribution,
    /// The load balancer's own limits (server, backend, frontend, process, workers).
    Limits,
    /// One backend server misbehaves (errors, latency, down, flapping).
    Backend,
    /// The traffic itself changed (a surge against its baseline).
    Traffic,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Distribution => "the load balancer's distribution",
            Layer::Limits => "the load balancer's limits",
            Layer::Backend => "one backend",
            Layer::Traffic => "the traffic",
        }
    }
}

/// One thing a detector found in one window.
///
/// Its text is written on demand: a fleet round finds thousands of things and the lifecycle
/// reads the words of each once, so a detector hands over the figures and a way to word them
/// ([`Text::later`]) rather than two formatted sentences (BENCHMARKS.md, the guard).
#[derive(Clone)]
pub struct Finding {
    /// The rule that found it: an `alertname` from [`RULES`].
    pub rule: &'static str,
    pub level: Level,
    pub layer: Layer,
    pub pool: Option<String>,
    pub server: Option<String>,
    /// Its summary (one line for a page: what, where, how much) and its description (the
    /// figures behind it, in a sentence or two); read them with [`Finding::summary`],
    /// [`Finding::description`] or [`Finding::words`].
    pub text: Text,
    /// The numbers, by name (`peak_ratio`, `share`, `expected`, `sessions`, `limit`…), for JSON
    /// output, the dashboard and the postmortem.
    pub figures: Figures,
}

/// A finding's words: a page's summary line and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    pub summary: String,
    pub description: String,
}

/// How a finding's words are had: written when it was found, or written from the finding when
/// asked for.
#[derive(Clone)]
pub enum Text {
    Written(Words),
    /// Words from the finding (its pool, server and figures) and what the closure captured.
    Later(std::sync::Arc<dyn Fn(&Finding) -> Words + Send + Sync>),
}

impl Text {
    /// Words written now.
    pub fn written(summary: impl Into<String>, description: impl Into<String>) -> Text {
        Text::Written(Words {
            summary: summary.into(),
            description: description.into(),
        })
    }

    /// Words written when read, from the finding and what `words` captures (capture plain
    /// figures, not borrowed names: the finding carries its pool and server).
    pub fn later(words: impl Fn(&Finding) -> Words + Send + Sync + 'static) -> Text {
        Text::Later(std::sync::Arc::new(words))
    }
}

impl Finding {
    /// Its summary and description, written now if they were deferred.
    pub fn words(&self) -> Words {
        match &self.text {
            Text::Written(w) => w.clone(),
            Text::Later(write) => write(self),
        }
    }

    /// One line for a page: what, where, how much.
    pub fn summary(&self) -> String {
        match &self.text {
            Text::Written(w) => w.summary.clone(),
            Text::Later(write) => write(self).summary,
        }
    }

    /// The figures behind it, in a sentence or two.
    pub fn description(&self) -> String {
        match &self.text {
            Text::Written(w) => w.description.clone(),
            Text::Later(write) => write(self).description,
        }
    }

    /// The pool's name, empty for findings of no pool.
    pub fn pool_name(&self) -> &str {
        self.pool.as_deref().unwrap_or("")
    }

    /// "server POOL/SERVER", for deferred words.
    pub(crate) fn place(&self) -> ServerPlace<'_> {
        ServerPlace {
            pool: self.pool_name(),
            server: self.server.as_deref().unwrap_or(""),
        }
    }
}

impl std::fmt::Debug for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words = self.words();
        f.debug_struct("Finding")
            .field("rule", &self.rule)
            .field("level", &self.level)
            .field("layer", &self.layer)
            .field("pool", &self.pool)
            .field("server", &self.server)
            .field("summary", &words.summary)
            .field("description", &words.description)
            .field("figures", &self.figures)
            .finish()
    }
}

impl PartialEq for Finding {
    fn eq(&self, other: &Self) -> bool {
        self.rule == other.rule
            && self.level == other.level
            && self.layer == other.layer
            && self.pool == other.pool
            && self.server == other.server
            && self.figures == other.figures
            && self.words() == other.words()
    }
}

/// The shape it always had: `summary` and `description` as strings, `figures` as a map.
impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let words = self.words();
        let mut s = serializer.serialize_struct("Finding", 8)?;
        s.serialize_field("rule", self.rule)?;
        s.serialize_field("level", &self.level)?;
        s.serialize_field("layer", &self.layer)?;
        s.serialize_field("pool", &self.pool)?;
        s.serialize_field("server", &self.server)?;
        s.serialize_field("summary", &words.summary)?;
        s.serialize_field("description", &words.description)?;
        s.serialize_field("figures", &self.figures)?;
        s.end()
    }
}

/// A finding's numbers by name: a handful, so a list searched in order (no map, no owned
/// keys); serialized as a map sorted by name, as JSON output always had it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures(Vec<(&'static str, f64)>);

impl Figures {
    pub fn new() -> Figures {
        Figures(Vec::new())
    }

    /// The figure `name`, if the finding has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Sets figure `name`, replacing one of the same name.
    pub fn insert(&mut self, name: &'static str, value: f64) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every figure, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        let mut sorted: Vec<(&'static str, f64)> = self.0.clone();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        sorted.dedup_by(|later, first| later.0 == first.0);
        sorted.into_iter()
    }
}

impl<const N: usize> From<[(&'static str, f64); N]> for Figures {
    fn from(named: [(&'static str, f64); N]) -> Figures {
        figures(&named)
    }
}

impl FromIterator<(&'static str, f64)> for Figures {
    fn from_iter<I: IntoIterator<Item = (&'static str, f64)>>(named: I) -> Figures {
        let mut figures = Figures::new();
        for (k, v) in named {
            figures.insert(k, v);
        }
        figures
    }
}

impl std::ops::Index<&str> for Figures {
    type Output = f64;

    /// The figure `name`; panics when it is missing (tests and code that just set it).
    fn index(&self, name: &str) -> &f64 {
        match self.0.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => v,
            None => panic!("no figure {name:?} in {self:?}"),
        }
    }
}

impl Serialize for Figures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// A rule: what a detector's finding is called, how long it must hold before it fires, and
/// what its runbook section says. `docs/runbook.md` is generated from this table.
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    pub alertname: &'static str,
    pub layer: Layer,
    /// How long the finding must hold (in consecutive rounds) before the alert fires.
    pub for_ms: u64,
    /// What it means, for the runbook.
    pub meaning: &'static str,
    /// What to check first and what to do, for the runbook.
    pub response: &'static str,
}

/// Every rule the detectors raise; each detector module owns its `RULES` and their wording.
pub fn all_rules() -> impl Iterator<Item = &'static RuleSpec> {
    distribution::RULES
        .iter()
        .chain(keys::RULES)
        .chain(drift::RULES)
        .chain(saturation::RULES)
        .chain(errors::RULES)
        .chain(unreached::RULES)
        .chain(crate::change::RULES)
        .chain(crate::canary::RULES)
}

/// The rule of a given name.
pub fn rule(alertname: &str) -> Option<&'static RuleSpec> {
    all_rules().find(|r| r.alertname == alertname)
}

// What the detectors share to read a window: the same pool or server through every sample,
// counter increases that know a restart when they see one, and the words for figures.

/// The item named `name` in `items`. Sources list pools and servers in a stable order, so the
/// same position is tried first; a search by name is the fallback (one added mid-window).
pub(crate) fn by_name<'a, T>(
    items: &'a [T],
    hint: usize,
    name: &str,
    name_of: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    let same = |a: &str| a.as_ptr() == name.as_ptr() && a.len() == name.len() || a == name;
    match items.get(hint) {
        // The window's last sample names itself: the same string, no comparison.
        Some(item) if same(name_of(item)) => Some(item),
        _ => items.iter().find(|item| name_of(item) == name),
    }
}

/// Whether every pool of `series` lists the same servers at the same places: their layout
/// fingerprints, taken by the watcher as each sample arrives, agree. A server is then matched
/// through the window by its place alone ([`server_in`]).
pub(crate) fn same_layout(series: &[&ballast_core::sample::PoolSample]) -> bool {
    series.last().is_some_and(|last| {
        last.noted.layout != 0 && series.iter().all(|p| p.noted.layout == last.noted.layout)
    })
}

/// Server `name`, at `hint` in the window's latest sample, in `pool`: by its place when the
/// window has one layout ([`same_layout`]), else by name.
pub(crate) fn server_in<'a>(
    pool: &'a ballast_core::sample::PoolSample,
    hint: usize,
    name: &str,
    same_layout: bool,
) -> Option<&'a ballast_core::sample::ServerSample> {
    if same_layout {
        pool.servers.get(hint)
    } else {
        by_name(&pool.servers, hint, name, |s| &s.name)
    }
}

/// Pool `name` through the window, oldest first; samples without it are skipped.
pub(crate) fn pool_series<'a>(
    window: &'a [ballast_core::sample::Sample],
    hint: usize,
    name: &str,
) -> Vec<&'a ballast_core::sample::PoolSample> {
    let mut series = Vec::with_capacity(window.len());
    pool_series_into(window, hint, name, &mut series);
    series
}

/// [`pool_series`] into a buffer kept across pools (a fleet round would allocate one a pool).
pub(crate) fn pool_series_into<'a>(
    window: &'a [ballast_core::sample::Sample],
    hint: usize,
    name: &str,
    series: &mut Vec<&'a ballast_core::sample::PoolSample>,
) {
    series.clear();
    series.extend(
        window
            .iter()
            .filter_map(|s| by_name(&s.pools, hint, name, |p| &p.name)),
    );
}

/// How much a cumulative counter rose through a series. `None` with fewer than two values, or
/// when it went down anywhere: the load balancer restarted, and the window says nothing.
pub(crate) fn increase(values: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut values = values.into_iter();
    let first = values.next()?;
    let mut last = first;
    let mut seen_two = false;
    for v in values {
        if v < last {
            return None;
        }
        last = v;
        seen_two = true;
    }
    seen_two.then_some(last - first)
}

/// The window's length in words ("45 s", "2 min 30 s"), for summaries.
pub(crate) fn span(window: &[ballast_core::sample::Sample]) -> String {
    span_ms(span_of(window))
}

/// A ratio as a percentage: "84%", "12.5%", "0.4%". Written straight into the text it is
/// formatted in: a fleet round formats thousands of them, and a `String` each was a measurable
/// part of it (BENCHMARKS.md, the guard).
pub(crate) fn percent(ratio: f64) -> Percent {
    Percent(ratio)
}

/// A ratio shown as a percentage; see [`percent`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percent(f64);

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.0 * 100.0;
        let tenths = (p * 10.0).round();
        let rounded = tenths / 10.0;
        if rounded.fract() == 0.0 {
            write!(f, "{}%", whole(rounded))
        } else if tenths.abs() < EXACT_INTEGERS {
            // `{rounded:.1}`, from the integer count of tenths: the float printer's exact
            // path falls back to big-number arithmetic on many values.
            let t = tenths as i64;
            let sign = if t < 0 { "-" } else { "" };
            let t = t.unsigned_abs();
            write!(f, "{sign}{}.{}%", t / 10, t % 10)
        } else {
            write!(f, "{rounded:.1}%")
        }
    }
}

/// Floats below this magnitude are exact integers when whole (2⁵³).
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// `v` as `format!("{v:.0}")` writes it (ties to even, `-0` kept), through integer
/// formatting when it fits: the float printer's exact path falls back to big-number
/// arithmetic (Dragon4) on whole values such as 100.0, which a fleet round meets thousands of
/// times.
pub(crate) fn whole(v: f64) -> Whole {
    Whole(v)
}

/// A float shown with no decimals; see [`whole`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Whole(f64);

impl std::fmt::Display for Whole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let rounded = v.round_ties_even();
        // NaN, infinities and values too large for exact integers: the float printer.
        if !rounded.is_finite() || rounded.abs() >= EXACT_INTEGERS {
            return write!(f, "{v:.0}");
        }
        let n = rounded as i64;
        if n == 0 && v.is_sign_negative() {
            f.write_str("-0")
        } else {
            write!(f, "{n}")
        }
    }
}

/// "server POOL/SERVER", the way every server finding names its place, written where it is
/// formatted rather than built as a `String` first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerPlace<'a> {
    pub(crate) pool: &'a str,
    pub(crate) server: &'a str,
}

impl std::fmt::Display for ServerPlace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server {}/{}", self.pool, self.server)
    }
}

/// Figures by name, for [`Finding::figures`].
pub(crate) fn figures(named: &[(&'static str, f64)]) -> Figures {
    // A literal list names each figure once: one allocation of its size, no look-ups (a
    // troubled fleet round builds thousands).
    debug_assert!(
        named
            .iter()
            .enumerate()
            .all(|(i, (k, _))| named[..i].iter().all(|(other, _)| other != k)),
        "a figure named twice in {named:?}"
    );
    Figures(named.to_vec())
}

/// A length of time in words ("45 s", "2 min 30 s"), as [`span`] words a window.
pub(crate) fn span_ms(ms: u64) -> String {
    let seconds = ms.div_ceil(1000);
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// The window's length in milliseconds.
pub(crate) fn span_of(window: &[ballast_core::sample::Sample]) -> u64 {
    match (window.first(), window.last()) {
        (Some(first), Some(last)) => last.at_ms.saturating_sub(first.at_ms),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{Figures, Finding, Layer, Level, Text, Words, percent, whole};

    /// A finding whose words are deferred reads, compares and serializes as one written at
    /// once: the same JSON as before (`summary`, `description`, `figures` as a sorted map).
    #[test]
    fn deferred_words_read_and_serialize_as_written_ones() {
        let ratio = 0.25;
        let deferred = Finding {
            rule: "ServerErrorRate",
            level: Level::Critical,
            layer: Layer::Backend,
            pool: Some("app".into()),
            server: Some("app-3".into()),
            text: Text::later(move |f| Words {
                summary: format!("{} failed {}", f.place(), percent(ratio)),
                description: format!("{} of {}", f.figures["errors"], f.figures["responses"]),
            }),
            figures: Figures::from([("responses", 40.0), ("errors", 10.0), ("ratio", ratio)]),
        };
        let written = Finding {
            text: Text::written("server app/app-3 failed 25%", "10 of 40"),
            ..deferred.clone()
        };
        assert_eq!(deferred.summary(), "server app/app-3 failed 25%");
        assert_eq!(deferred.description(), "10 of 40");
        assert_eq!(deferred, written);
        let json = serde_json::to_value(&deferred).unwrap();
        assert_eq!(json, serde_json::to_value(&written).unwrap());
        assert_eq!(json["summary"], "server app/app-3 failed 25%");
        let keys: Vec<&String> = json["figures"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["errors", "ratio", "responses"]);
        assert_eq!(json["figures"]["errors"], 10.0);
        let mut figures = deferred.figures.clone();
        figures.insert("errors", 11.0);
        assert_eq!((figures.get("errors"), figures.len()), (Some(11.0), 3));
        assert_eq!(figures.get("absent"), None);
    }

    /// Values around every rounding edge the detectors' figures meet: ratios, latencies,
    /// thresholds below zero, ties, negative zero, huge and non-finite values.
    fn edges() -> Vec<f64> {
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            -0.3,
            -2.5,
            1e15,
            9.1e15,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            values.push(unit * 2.0 - 0.5);
            values.push(unit * 3000.0);
            values.push(f64::from(i) / 1000.0);
            values.push(f64::from(i) / 20.0 - 100.0);
        }
        values
    }

    #[test]
    fn whole_writes_what_the_float_printer_writes() {
        for v in edges() {
            assert_eq!(whole(v).to_string(), format!("{v:.0}"), "{v:e}");
        }
    }

    #[test]
    fn percent_writes_what_it_wrote_as_a_string() {
        // The former implementation, kept as the reference.
        let reference = |ratio: f64| {
            let p = ratio * 100.0;
            let rounded = (p * 10.0).round() / 10.0;
            if rounded.fract() == 0.0 {
                format!("{rounded:.0}%")
            } else {
                format!("{rounded:.1}%")
            }
        };
        for v in edges() {
            assert_eq!(percent(v).to_string(), reference(v), "{v:e}");
        }
        assert_eq!(percent(0.84).to_string(), "84%");
        assert_eq!(percent(0.125).to_string(), "12.5%");
        assert_eq!(percent(-0.0004).to_string(), "-0%");
        assert_eq!(percent(-0.004).to_string(), "-0.4%");
    }
}

/// Builders of synthetic samples for the detectors' tests, on a virtual clock.
#[cfg(test)]
pub(crate) mod testing {
    use ballast_core::sample::{PoolSample, Promise, ResponseClasses, Sample, ServerSample};

    /// An idle server in rotation, with no limits and no responses yet.
    pub(crate) fn server(name: &str) -> ServerSample {
        ServerSample::idle(name)
    }

    pub(crate) fn pool(name: &str, servers: Vec<ServerSample>) -> PoolSample {
        PoolSample {
            noted: Default::default(),
            predicted: None,
            name: name.into(),
            promise: Promise::RequestShares,
            servers,
            queued: 0,
        }
    }

    /// A sample at `second` seconds on the virtual clock.
    pub(crate) fn sample(second: u64, pools: Vec<PoolSample>) -> Sample {
        Sample {
            at_ms: second * 1000,
            source: "test".into(),
            instance: "lb-1".into(),
            pools,
            frontends: Vec::new(),
            process: None,
            ..Default::default()
        }
    }

    /// Responses with `ok` 2xx, `c5xx` 5xx and `other` with no status.
    pub(crate) fn responses(ok: u64, c5xx: u64, other: u64) -> ResponseClasses {
        ResponseClasses {
            c2xx: ok,
            c5xx,
            other,
            ..ResponseClasses::default()
        }
    }
}
