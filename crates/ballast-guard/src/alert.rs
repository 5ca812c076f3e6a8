//! Alerts: what the detectors' findings become — labelled, with a lifecycle (pending, firing,
//! resolved), `for` durations, deduplication by labels, grouping by pool, and inhibition of a
//! symptom by its cause. Sinks receive [`Alert`]s; nothing here does I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::detect::{Finding, Layer, Level, rule};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Found, but not yet for its rule's `for` duration.
    Pending,
    Firing,
    Resolved,
}

/// One alert, as Alertmanager knows them: labels that identify it, annotations that explain it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `alertname`, `severity`, `pool`, `server` (when one), `source`, `instance`.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `cause`, `runbook`.
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the condition was first found (pending since), Unix ms.
    pub active_since_ms: u64,
    /// When it began to fire, Unix ms.
    pub starts_at_ms: Option<u64>,
    /// When it resolved, Unix ms.
    pub ends_at_ms: Option<u64>,
    /// The alert that explains this one (its `alertname` and labels, in words), when this one
    /// is a symptom: it is shown, and not paged.
    pub inhibited_by: Option<String>,
}

impl Alert {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.get(name).map(String::as_str)
    }

    /// Its identity from the labels, as Alertmanager computes it (Prometheus's
    /// `LabelSet.Fingerprint`): same labels, same alert, in hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }

    /// The group an alert belongs to for notification: its pool on its instance.
    pub fn group_key(&self) -> String {
        format!(
            "{{instance=\"{}\",pool=\"{}\"}}",
            self.label("instance").unwrap_or(""),
            self.label("pool").unwrap_or("")
        )
    }
}

/// Prometheus's `LabelSet.Fingerprint`: FNV-1a over the sorted labels with empty values left
/// out, each name and value followed by 0xff. Stable across runs and builds (unlike std's
/// hasher) and equal to the fingerprint Alertmanager shows for the same labels.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels.iter().filter(|(_, v)| !v.is_empty()) {
        for b in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xff])
        {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Unix milliseconds as RFC 3339 (`2026-12-01T10:02:03.250Z`), as Alertmanager's API wants.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// How findings become alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleOptions {
    /// A firing alert resolves after its finding has been absent this long (a clean window or
    /// two), so one quiet round does not resolve and re-page.
    pub resolve_after_ms: u64,
    /// Overrides every rule's `for` (tests, `--for 0s`), when set.
    pub for_override_ms: Option<u64>,
    /// How often an alert that holds has its annotations (summary, description, cause)
    /// written again from the round's figures. They are always written when the alert is new,
    /// changes severity or begins to fire, so every page carries words of its moment; between
    /// those, a fleet with thousands of alerts does not rewrite them all every round.
    pub annotations_every_ms: u64,
}

impl LifecycleOptions {
    /// Whether an alert that holds has its annotations written again this round: once in
    /// every `annotations_every_ms`, when its pool's turn comes (`Tracked::phase_ms`), and not
    /// within half an interval of the last time.
    fn annotations_due(&self, t: &Tracked, now_ms: u64) -> bool {
        let every = self.annotations_every_ms.max(1);
        let turn = |ms: u64| (ms + t.phase_ms) / every;
        turn(now_ms) != turn(t.annotated_ms) && now_ms.saturating_sub(t.annotated_ms) >= every / 2
    }
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            resolve_after_ms: 3_000,
            for_override_ms: None,
            annotations_every_ms: 10_000,
        }
    }
}

/// What one round changed, and what is active after it.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Alerts that began to fire this round.
    pub fired: Vec<Alert>,
    /// Alerts that resolved this round (state `Resolved`, `ends_at_ms` set).
    pub resolved: Vec<Alert>,
    /// Every pending and firing alert after the round, inhibited ones included: shared with
    /// the lifecycle, which copies an alert only when it changes while a round still holds it
    /// (a troubled fleet tracks thousands, and copying them all every round was most of it).
    pub active: Vec<Arc<Alert>>,
}

impl Round {
    /// What sinks are told this round: firing alerts that are not inhibited, and resolutions.
    pub fn to_deliver(&self) -> Vec<Arc<Alert>> {
        self.active
            .iter()
            .filter(|a| a.state == AlertState::Firing && a.inhibited_by.is_none())
            .cloned()
            .chain(self.resolved.iter().cloned().map(Arc::new))
            .collect()
    }
}

struct Tracked {
    /// Its identity ([`identity`]), which orders the tracked alerts.
    key: String,
    /// [`place_hash`] of its rule, pool and server, by which a round's findings find it.
    hash: u64,
    alert: Arc<Alert>,
    for_ms: u64,
    last_seen_ms: u64,
    /// When its annotations were last written.
    annotated_ms: u64,
    /// Where in every `annotations_every_ms` its annotations fall due: the same for every
    /// alert of a pool, so a round that rewrites one rewrites them all, and their pool's
    /// cause figures are worked out once for them.
    phase_ms: u64,
    layer: Layer,
    level: Level,
    /// What inhibition reads of it ([`Party`]), kept apart from its labels so a round does
    /// not look them up again for every alert.
    rule: &'static str,
    pool: Option<String>,
    server: Option<String>,
}

impl Tracked {
    /// Whether it is the alert `finding` names: the rule, pool and server make the identity
    /// (source and instance are the lifecycle's).
    fn is(&self, finding: &Finding) -> bool {
        self.rule == finding.rule && self.pool == finding.pool && self.server == finding.server
    }

    fn party(&self) -> Option<Party<'_>> {
        Some(Party {
            pool: self.pool.as_deref()?,
            alertname: self.rule,
            server: self.server.as_deref(),
            layer: self.layer,
            level: self.level,
        })
    }
}

/// Alerts of one watched load balancer: findings in, transitions out. Identity is the label
/// set without `severity`, so an alert that escalates from warning to critical is one alert
/// (resolved at the old severity and fired at the new, as Alertmanager sees label sets).
pub struct Lifecycle {
    source: String,
    instance: String,
    options: LifecycleOptions,
    /// In the order of their identities, so every list of alerts comes out the same way.
    tracked: Vec<Tracked>,
    /// Each tracked alert's place by its [`Tracked::hash`]: most findings of a round are
    /// alerts already tracked, found without writing their identity (a fleet's troubled round
    /// holds thousands). Built again whenever an alert comes or goes.
    index: HashMap<u64, usize>,
    /// Where the last round's findings, one by one, found their alerts: a round's findings
    /// come in the order of the round before, so the k-th is tried first where the k-th was
    /// (the index, at fleet scale, is a cache miss per finding). Forgotten when an alert comes
    /// or goes, as the places move.
    last_places: Vec<usize>,
}

/// What finds a finding's alert among those tracked: a hash of its rule, pool and server.
fn place_hash(finding: &Finding) -> u64 {
    let mut hasher = DefaultHasher::new();
    (finding.rule, &finding.pool, &finding.server).hash(&mut hasher);
    hasher.finish()
}

/// What an annotation `cause` is built from; the caller (the watcher) supplies it, as it holds
/// the history and the configuration changes.
pub type Explain<'a> = dyn Fn(&Finding) -> String + 'a;

impl Lifecycle {
    pub fn new(source: &str, instance: &str, options: LifecycleOptions) -> Self {
        Self {
            source: source.to_string(),
            instance: instance.to_string(),
            options,
            tracked: Vec::new(),
            index: HashMap::new(),
            last_places: Vec::new(),
        }
    }

    /// Where `finding`, the round's `k`-th, has its alert among those tracked, if it has: where
    /// the last round's `k`-th had, by its hash, or when another alert holds that hash, by its
    /// identity.
    fn place(&self, k: usize, key: &mut String, finding: &Finding) -> Option<usize> {
        let here = |i: usize| self.tracked.get(i).is_some_and(|t| t.is(finding));
        if let Some(&i) = self.last_places.get(k)
            && here(i)
        {
            return Some(i);
        }
        if let Some(&i) = self.index.get(&place_hash(finding))
            && here(i)
        {
            return Some(i);
        }
        key.clear();
        self.write_identity(key, finding);
        self.tracked
            .binary_search_by(|t| t.key.as_str().cmp(key.as_str()))
            .ok()
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, t) in self.tracked.iter().enumerate() {
            self.index.insert(t.hash, i);
        }
    }

    /// One round: this round's findings, their cause statements from `explain`.
    pub fn observe(&mut self, now_ms: u64, findings: &[Finding], explain: &Explain) -> Round {
        let mut round = Round::default();
        let annotations = |finding: &Finding| {
            let words = finding.words();
            BTreeMap::from([
                ("summary".to_string(), words.summary),
                ("description".to_string(), words.description),
                ("cause".to_string(), explain(finding)),
                ("runbook".to_string(), runbook_link(finding.rule)),
            ])
        };
        // The identity of a finding not found by its hash, written into one buffer.
        let mut key = String::new();
        // Pools where an alert came, went, changed severity or had its annotations written:
        // inhibition is worked out again for these alone.
        let mut changed: HashSet<String> = HashSet::new();
        let mut mark = |pool: Option<&str>| {
            if let Some(pool) = pool
                && !changed.contains(pool)
            {
                changed.insert(pool.to_string());
            }
        };
        // Alerts new this round, placed among the tracked after the findings are read.
        let mut arrived: Vec<Tracked> = Vec::new();
        let mut arrived_by_key: HashMap<String, usize> = HashMap::new();
        let mut places = Vec::with_capacity(findings.len());
        for (k, finding) in findings.iter().enumerate() {
            let place = self.place(k, &mut key, finding);
            places.push(place.unwrap_or(usize::MAX));
            let t = match place {
                Some(i) => Some(&mut self.tracked[i]),
                None => {
                    // `place` wrote the identity when the hash did not find it.
                    arrived_by_key.get(&key).map(|&j| &mut arrived[j])
                }
            };
            match t {
                Some(t) if t.level == finding.level => {
                    t.last_seen_ms = now_ms;
                    let fires_now = t.alert.state == AlertState::Pending
                        && now_ms - t.alert.active_since_ms >= t.for_ms;
                    if fires_now || self.options.annotations_due(t, now_ms) {
                        Arc::make_mut(&mut t.alert).annotations = annotations(finding);
                        t.annotated_ms = now_ms;
                        mark(finding.pool.as_deref());
                    }
                }
                Some(t) => {
                    // Same alert at another severity: the old label set resolves, the new one
                    // keeps the time it began (it has held all along).
                    let was_firing = t.alert.state == AlertState::Firing;
                    if was_firing {
                        let mut old = (*t.alert).clone();
                        old.state = AlertState::Resolved;
                        old.ends_at_ms = Some(now_ms);
                        round.resolved.push(old);
                    }
                    let alert = Arc::make_mut(&mut t.alert);
                    alert.labels = labels(&self.source, &self.instance, finding);
                    alert.annotations = annotations(finding);
                    t.annotated_ms = now_ms;
                    t.last_seen_ms = now_ms;
                    t.level = finding.level;
                    mark(finding.pool.as_deref());
                    if was_firing {
                        alert.starts_at_ms = Some(now_ms);
                        round.fired.push(alert.clone());
                    }
                }
                None => {
                    mark(finding.pool.as_deref());
                    let labels = labels(&self.source, &self.instance, finding);
                    debug_assert_eq!(identity(&labels), key);
                    let spec = rule(finding.rule);
                    let for_ms = self
                        .options
                        .for_override_ms
                        .unwrap_or_else(|| spec.map_or(0, |r| r.for_ms));
                    let alert = Alert {
                        labels,
                        annotations: annotations(finding),
                        state: AlertState::Pending,
                        active_since_ms: now_ms,
                        starts_at_ms: None,
                        ends_at_ms: None,
                        inhibited_by: None,
                    };
                    arrived_by_key.insert(key.clone(), arrived.len());
                    arrived.push(Tracked {
                        key: key.clone(),
                        hash: place_hash(finding),
                        alert: Arc::new(alert),
                        for_ms,
                        last_seen_ms: now_ms,
                        // Dated back by a part of the interval of its own, so alerts
                        // that began together are rewritten in different rounds.
                        annotated_ms: now_ms,
                        phase_ms: stagger(
                            finding.pool.as_deref().unwrap_or(&key),
                            self.options.annotations_every_ms,
                        ),
                        layer: finding.layer,
                        level: finding.level,
                        rule: finding.rule,
                        pool: finding.pool.clone(),
                        server: finding.server.clone(),
                    });
                }
            }
        }
        let mut moved = !arrived.is_empty();
        if moved {
            self.tracked.append(&mut arrived);
            self.tracked.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        // Pending long enough fires; absent long enough resolves (a pending one just goes).
        let resolve_after = self.options.resolve_after_ms;
        let before = self.tracked.len();
        self.tracked.retain_mut(|t| {
            if t.last_seen_ms < now_ms {
                if now_ms - t.last_seen_ms < resolve_after && t.alert.state == AlertState::Firing {
                    return true;
                }
                mark(t.pool.as_deref());
                if t.alert.state == AlertState::Firing {
                    let mut done = (*t.alert).clone();
                    done.state = AlertState::Resolved;
                    done.ends_at_ms = Some(now_ms);
                    round.resolved.push(done);
                }
                return false;
            }
            if t.alert.state == AlertState::Pending && now_ms - t.alert.active_since_ms >= t.for_ms
            {
                let alert = Arc::make_mut(&mut t.alert);
                alert.state = AlertState::Firing;
                alert.starts_at_ms = Some(now_ms);
                round.fired.push(alert.clone());
            }
            true
        });
        moved |= self.tracked.len() != before;
        if moved {
            self.reindex();
            places.clear();
        }
        self.last_places = places;
        self.inhibit(&changed);
        // Fired this round and inhibited: shown, never paged.
        for a in &mut round.fired {
            let key = identity(&a.labels);
            if let Ok(i) = self.tracked.binary_search_by(|t| t.key.cmp(&key)) {
                a.inhibited_by = self.tracked[i].alert.inhibited_by.clone();
            }
        }
        round.active = self.active();
        round
    }

    /// Every active alert now.
    pub fn active(&self) -> Vec<Arc<Alert>> {
        self.tracked.iter().map(|t| t.alert.clone()).collect()
    }

    /// The identity [`identity`] gives the finding's labels, written without building them.
    fn write_identity(&self, out: &mut String, finding: &Finding) {
        // The labels in their sorted order, `severity` left out.
        let start = out.len();
        let mut label = |name: &str, value: &str| {
            if out.len() > start {
                out.push(',');
            }
            out.push_str(name);
            out.push('=');
            quote(out, value);
        };
        label("alertname", finding.rule);
        label("instance", &self.instance);
        if let Some(pool) = &finding.pool {
            label("pool", pool);
        }
        if let Some(server) = &finding.server {
            label("server", server);
        }
        label("source", &self.source);
    }

    /// A symptom is inhibited by its cause (see [`explains`]): shown with the cause, never
    /// paged. Worked out for the pools `changed` names: elsewhere no alert came, went or was
    /// rewritten, so what inhibits what stands.
    fn inhibit(&mut self, changed: &HashSet<String>) {
        if changed.is_empty() {
            return;
        }
        // A cause explains only symptoms of its own pool (`explains`): compare within each
        // pool, not every alert with every other (a troubled fleet tracks thousands).
        let mut pools: HashMap<&str, Vec<(usize, Party)>> = HashMap::new();
        for (i, t) in self.tracked.iter().enumerate() {
            if let Some(party) = t.party()
                && changed.contains(party.pool)
            {
                pools.entry(party.pool).or_default().push((i, party));
            }
        }
        let mut inhibited_by: Vec<(usize, Option<String>)> = Vec::new();
        for members in pools.values() {
            for (i, symptom) in members {
                let cause = members
                    .iter()
                    .find(|(c, cause)| c != i && explains_party(cause, symptom));
                inhibited_by.push((*i, cause.map(|&(c, _)| summary_of(&self.tracked[c].alert))));
            }
        }
        drop(pools);
        inhibited_by.sort_unstable_by_key(|&(i, _)| i);
        let mut updates = inhibited_by.into_iter().peekable();
        // Written only where it changed: a round's alerts are shared, and an alert written
        // is copied.
        for (i, t) in self.tracked.iter_mut().enumerate() {
            let Some((_, by)) = updates.next_if(|&(u, _)| u == i) else {
                continue;
            };
            if t.alert.inhibited_by != by {
                Arc::make_mut(&mut t.alert).inhibited_by = by;
            }
        }
    }
}

/// What inhibition reads of an alert, its labels looked up once.
struct Party<'a> {
    pool: &'a str,
    alertname: &'a str,
    server: Option<&'a str>,
    layer: Layer,
    level: Level,
}

impl<'a> Party<'a> {
    /// `None` for an alert of no pool, which explains nothing and is explained by nothing.
    fn of(alert: &'a Alert, layer: Layer, level: Level) -> Option<Party<'a>> {
        Some(Party {
            pool: alert.label("pool")?,
            alertname: alert.label("alertname").unwrap_or(""),
            server: alert.label("server"),
            layer,
            level,
        })
    }
}

fn summary_of(a: &Alert) -> String {
    format!(
        "{}: {}",
        a.label("alertname").unwrap_or(""),
        a.annotation("summary").unwrap_or("")
    )
}

/// Whether `cause` explains `symptom`, on the same pool of the same load balancer:
/// - no server of the pool in rotation explains every other alert of the pool;
/// - a distribution alert naming a server (it takes more than its share) explains that
///   server's limit and backend alerts (it is saturated or slow because of it);
/// - a critical limit alert explains the warning of the same place (at the limit, it is also
///   near it).
pub fn explains(cause: (&Alert, Layer, Level), symptom: (&Alert, Layer, Level)) -> bool {
    match (
        Party::of(cause.0, cause.1, cause.2),
        Party::of(symptom.0, symptom.1, symptom.2),
    ) {
        (Some(c), Some(s)) => explains_party(&c, &s),
        _ => false,
    }
}

fn explains_party(c: &Party, s: &Party) -> bool {
    if s.pool != c.pool || c.alertname == s.alertname {
        return false;
    }
    if matches!(c.alertname, "PoolAllServersDown" | "PoolAllServersOut") {
        return true;
    }
    let same_server = c.server.is_some() && c.server == s.server;
    match c.layer {
        Layer::Distribution => same_server && matches!(s.layer, Layer::Limits | Layer::Backend),
        Layer::Limits => {
            s.layer == Layer::Limits
                && c.level == Level::Critical
                && s.level == Level::Warning
                && c.server == s.server
        }
        _ => false,
    }
}

/// An alert's labels: `alertname`, `severity`, `source`, `instance`, and `pool` and `server`
/// when the finding names them.
fn labels(source: &str, instance: &str, finding: &Finding) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), finding.rule.to_string()),
        ("severity".to_string(), finding.level.as_str().to_string()),
        ("source".to_string(), source.to_string()),
        ("instance".to_string(), instance.to_string()),
    ]);
    if let Some(pool) = &finding.pool {
        labels.insert("pool".into(), pool.clone());
    }
    if let Some(server) = &finding.server {
        labels.insert("server".into(), server.clone());
    }
    labels
}

/// A part of `every_ms` fixed by a name (FNV-1a: an alert's pool, else its identity), to
/// spread the rewriting of alerts' annotations over the interval.
fn stagger(identity: &str, every_ms: u64) -> u64 {
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % every_ms.max(1)
}

/// The identity of an alert: its labels without `severity`, each `name="value"` with the
/// value quoted as Rust's `Debug` quotes it.
fn identity(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (name, value) in labels.iter().filter(|(k, _)| k.as_str() != "severity") {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(name);
        out.push('=');
        quote(&mut out, value);
    }
    out
}

/// `value` in quotes, escaped as `{:?}` escapes it; the labels of a fleet's alerts are plain
/// printable ASCII, written without the formatter (thousands are written every round).
fn quote(out: &mut String, value: &str) {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{value:?}");
    }
}

/// Where a rule's runbook section is: `docs/runbook.md#<alertname in lower case>`.
pub fn runbook_link(alertname: &str) -> String {
    format!("docs/runbook.md#{}", alertname.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Figures, Text};

    fn finding(rule: &'static str, level: Level, layer: Layer, server: &str) -> Finding {
        Finding {
            rule,
            level,
            layer,
            pool: Some("app".into()),
            server: Some(server.into()),
            text: Text::written(format!("{rule} on {server}"), String::new()),
            figures: Figures::new(),
        }
    }

    fn skew(level: Level) -> Finding {
        finding("PoolSkewed", level, Layer::Distribution, "app-3")
    }

    fn cause(_: &Finding) -> String {
        "because".into()
    }

    fn lifecycle() -> Lifecycle {
        Lifecycle::new("haproxy", "/run/haproxy.sock", LifecycleOptions::default())
    }

    #[test]
    fn findings_in_another_order_or_with_a_newcomer_are_the_same_alerts() {
        let mut l = lifecycle();
        let f = |server: &str| finding("ServerErrorRate", Level::Warning, Layer::Backend, server);
        let (a, b, c) = (f("app-1"), f("app-2"), f("app-3"));
        let since = |r: &Round| -> Vec<(String, u64)> {
            r.active
                .iter()
                .map(|x| (x.label("server").unwrap().to_string(), x.active_since_ms))
                .collect()
        };
        l.observe(0, &[a.clone(), b.clone()], &cause);
        // Swapped: each is found where the other was the round before.
        let r = l.observe(1_000, &[b.clone(), a.clone()], &cause);
        assert_eq!(since(&r), [("app-1".into(), 0), ("app-2".into(), 0)]);
        // A newcomer first moves every place; then the order holds again.
        let r = l.observe(2_000, &[c.clone(), b.clone(), a.clone()], &cause);
        let expected = [
            ("app-1".to_string(), 0),
            ("app-2".to_string(), 0),
            ("app-3".to_string(), 2_000),
        ];
        assert_eq!(since(&r), expected);
        let r = l.observe(3_000, &[a.clone(), c.clone(), b.clone()], &cause);
        assert_eq!(since(&r), expected);
        let r = l.observe(4_000, &[a, c, b], &cause);
        assert_eq!(since(&r), expected);
    }

    #[test]
    fn annotations_are_written_when_new_when_firing_and_when_due_not_every_round() {
        let mut l = Lifecycle::new(
            "haproxy",
            "x",
            LifecycleOptions {
                for_override_ms: Some(2_000),
                annotations_every_ms: 10_000,
                ..Default::default()
            },
        );
        let explained = std::cell::Cell::new(0u32);
        let count = |_: &Finding| {
            explained.set(explained.get() + 1);
            format!("cause {}", explained.get())
        };
        let f = skew(Level::Warning);
        let mut written_at = Vec::new();
        for second in 0..30u64 {
            let before = explained.get();
            l.observe(second * 1_000, std::slice::from_ref(&f), &count);
            if explained.get() > before {
                written_at.push(second);
            }
        }
        // New at 0 s, firing at 2 s, then once in every 10 s (when the pool's turn comes).
        assert_eq!(written_at[..2], [0, 2], "{written_at:?}");
        let later = &written_at[2..];
        assert!((2..=3).contains(&later.len()), "{written_at:?}");
        assert!(
            later.windows(2).all(|w| w[1] - w[0] == 10),
            "{written_at:?}"
        );
        // An escalation is written at once.
        let before = explained.get();
        l.observe(30_000, &[skew(Level::Critical)], &count);
        assert_eq!(explained.get(), before + 1);
    }

    #[test]
    fn the_identity_written_directly_is_the_labels_identity() {
        // The lifecycle finds tracked alerts by an identity written without building the
        // labels; it must be the one the labels give, quotes and all.
        let l = Lifecycle::new("nginx", "/var/log/\"a b\".log", LifecycleOptions::default());
        let mut with_server = finding("PoolSkewed", Level::Warning, Layer::Distribution, "é \"3\"");
        with_server.pool = Some("app,x=y".into());
        let mut no_server = with_server.clone();
        no_server.server = None;
        let mut nothing = no_server.clone();
        nothing.pool = None;
        for f in [with_server, no_server, nothing] {
            let mut written = String::new();
            l.write_identity(&mut written, &f);
            assert_eq!(written, identity(&labels(&l.source, &l.instance, &f)));
        }
        for value in [
            "app-3",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "é",
            "\u{7f}",
            "\u{301}x",
        ] {
            let mut quoted = String::new();
            quote(&mut quoted, value);
            assert_eq!(quoted, format!("{value:?}"));
        }
    }

    #[test]
    fn an_alert_is_pending_until_its_for_duration_then_fires_once() {
        let mut l = lifecycle();
        // PoolSkewed holds for 2 s: rounds at 0 and 1 s are pending, 2 s fires.
        for t in [0, 1_000] {
            let r = l.observe(t, &[skew(Level::Critical)], &cause);
            assert!(r.fired.is_empty(), "fired too early at {t}");
            assert_eq!(r.active[0].state, AlertState::Pending);
        }
        let r = l.observe(2_000, &[skew(Level::Critical)], &cause);
        assert_eq!(r.fired.len(), 1);
        let a = &r.fired[0];
        assert_eq!(a.label("alertname"), Some("PoolSkewed"));
        assert_eq!(a.label("severity"), Some("critical"));
        assert_eq!(a.label("pool"), Some("app"));
        assert_eq!(a.label("server"), Some("app-3"));
        assert_eq!(a.label("source"), Some("haproxy"));
        assert_eq!(a.annotation("cause"), Some("because"));
        assert_eq!(a.annotation("runbook"), Some("docs/runbook.md#poolskewed"));
        assert_eq!(a.starts_at_ms, Some(2_000));
        assert_eq!(r.to_deliver().len(), 1);
        // Still there: not fired again (deduplicated), still delivered as firing.
        let r = l.observe(3_000, &[skew(Level::Critical)], &cause);
        assert!(r.fired.is_empty());
        assert_eq!(r.to_deliver().len(), 1);
    }

    #[test]
    fn a_gap_before_firing_starts_the_for_duration_again() {
        let mut l = lifecycle();
        l.observe(0, &[skew(Level::Warning)], &cause);
        l.observe(1_000, &[skew(Level::Warning)], &cause);
        l.observe(2_000, &[], &cause);
        let r = l.observe(3_000, &[skew(Level::Warning)], &cause);
        assert!(r.fired.is_empty());
        assert_eq!(r.active[0].active_since_ms, 3_000);
    }

    #[test]
    fn a_firing_alert_resolves_after_quiet_rounds_not_one() {
        let mut l = lifecycle();
        for t in [0, 1_000, 2_000] {
            l.observe(t, &[skew(Level::Warning)], &cause);
        }
        // Absent for 1 s and 2 s: still firing (one quiet round is not a recovery).
        for t in [3_000, 4_000] {
            let r = l.observe(t, &[], &cause);
            assert!(r.resolved.is_empty(), "resolved too early at {t}");
        }
        let r = l.observe(5_000, &[], &cause);
        assert_eq!(r.resolved.len(), 1);
        assert_eq!(r.resolved[0].state, AlertState::Resolved);
        assert_eq!(r.resolved[0].ends_at_ms, Some(5_000));
        assert!(r.active.is_empty());
        assert_eq!(r.to_deliver().len(), 1, "the resolution is delivered");
    }

    #[test]
    fn escalation_resolves_the_warning_and_fires_the_critical() {
        let mut l = lifecycle();
        for t in [0, 1_000, 2_000] {
            l.observe(t, &[skew(Level::Warning)], &cause);
        }
        let r = l.observe(3_000, &[skew(Level::Critical)], &cause);
        assert_eq!(r.resolved.len(), 1);
        assert_eq!(r.resolved[0].label("severity"), Some("warning"));
        assert_eq!(r.fired.len(), 1);
        assert_eq!(r.fired[0].label("severity"), Some("critical"));
        assert_eq!(r.active.len(), 1);
    }

    #[test]
    fn saturation_of_the_hot_server_is_a_symptom_of_the_skew() {
        let mut l = Lifecycle::new(
            "haproxy",
            "x",
            LifecycleOptions {
                for_override_ms: Some(0),
                ..Default::default()
            },
        );
        let at_limit = finding("ServerAtLimit", Level::Critical, Layer::Limits, "app-3");
        let other = finding("ServerAtLimit", Level::Critical, Layer::Limits, "app-1");
        let r = l.observe(0, &[skew(Level::Critical), at_limit, other], &cause);
        assert_eq!(r.fired.len(), 3);
        let delivered = r.to_deliver();
        assert_eq!(
            delivered.len(),
            2,
            "the symptom is not paged: {delivered:#?}"
        );
        let symptom = r
            .active
            .iter()
            .find(|a| {
                a.label("alertname") == Some("ServerAtLimit") && a.label("server") == Some("app-3")
            })
            .unwrap();
        assert!(
            symptom
                .inhibited_by
                .as_deref()
                .unwrap()
                .starts_with("PoolSkewed"),
            "{symptom:?}"
        );
        // app-1 at its limit is not explained by app-3's share: paged.
        assert!(delivered.iter().any(|a| a.label("server") == Some("app-1")));
    }

    #[test]
    fn at_the_limit_inhibits_near_it_and_all_down_inhibits_the_pool() {
        let mut l = Lifecycle::new(
            "haproxy",
            "x",
            LifecycleOptions {
                for_override_ms: Some(0),
                ..Default::default()
            },
        );
        let near = finding(
            "ServerNearConnectionLimit",
            Level::Warning,
            Layer::Limits,
            "app-1",
        );
        let at = finding(
            "ServerAtConnectionLimit",
            Level::Critical,
            Layer::Limits,
            "app-1",
        );
        let other_near = finding(
            "ServerNearConnectionLimit",
            Level::Warning,
            Layer::Limits,
            "app-2",
        );
        let r = l.observe(0, &[near, at, other_near], &cause);
        let paged: Vec<(Option<&str>, Option<&str>)> = r
            .active
            .iter()
            .filter(|a| a.inhibited_by.is_none())
            .map(|a| (a.label("alertname"), a.label("server")))
            .collect();
        assert_eq!(
            paged,
            vec![
                (Some("ServerAtConnectionLimit"), Some("app-1")),
                (Some("ServerNearConnectionLimit"), Some("app-2")),
            ]
        );
        let mut down = finding("PoolAllServersDown", Level::Critical, Layer::Backend, "");
        down.server = None;
        let errors = finding("ServerErrorRate", Level::Critical, Layer::Backend, "app-1");
        let r = l.observe(1_000, &[down, errors], &cause);
        assert_eq!(r.to_deliver().len(), 1, "{:#?}", r.to_deliver());
    }

    #[test]
    fn the_fingerprint_depends_on_labels_only() {
        let mut l = lifecycle();
        let a = l.observe(0, &[skew(Level::Warning)], &cause).active[0].clone();
        let mut b = (*a).clone();
        b.annotations.clear();
        b.state = AlertState::Firing;
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.labels.insert("server".into(), "app-1".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(rfc3339(1_764_583_323_250), "2025-12-01T10:02:03.250Z");
    }
}
