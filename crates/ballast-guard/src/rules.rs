//! `ballast rules prometheus`: recording and alerting rules computing the guard's distribution,
//! saturation and reload signals from HAProxy's exporter metrics and from ballast's own.
//!
//! The options ([`RulesOptions`]), the one entry point ([`prometheus`]) and Prometheus
//! durations live here; `signals` builds the rules of each family, `yaml` writes the file.

mod signals;
mod yaml;

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_core::sample::Promise;

/// Which load balancers' metrics the rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// HAProxy's built-in exporter (`http-request use-service prometheus-exporter`).
    Haproxy,
    /// `ballast serve`'s `/metrics`.
    Ballast,
    Both,
}

impl Families {
    /// Parses `haproxy`, `ballast` or `both`.
    pub fn parse(text: &str) -> Result<Families, RulesError> {
        match text {
            "haproxy" => Ok(Families::Haproxy),
            "ballast" => Ok(Families::Ballast),
            "both" => Ok(Families::Both),
            other => Err(RulesError::Families(other.to_string())),
        }
    }

    fn haproxy(self) -> bool {
        matches!(self, Families::Haproxy | Families::Both)
    }

    fn ballast(self) -> bool {
        matches!(self, Families::Ballast | Families::Both)
    }
}

/// What the generated rules judge and when they fire. The defaults are the guard's own.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesOptions {
    pub families: Families,
    /// The window every rate, share and ratio is computed over (`1m`). At least four scrape
    /// intervals, so `increase()` has samples to work with.
    pub window: Duration,
    /// How long a skew must hold before it fires: several windows (`3m`).
    pub skew_for: Duration,
    /// How long sessions at 80% of a limit, or a queue, must hold before they fire (`2m`).
    pub saturation_for: Duration,
    /// How long a 5xx ratio must hold before it fires (`2m`).
    pub errors_for: Duration,
    /// How long a reload stays announced, so alerts raised after it can be read against it
    /// (`15m`).
    pub reload_window: Duration,
    /// The weight-normalised peak ratio R above which a pool is skewed (1.5).
    pub warning: f64,
    /// R above which it is badly skewed (2.0).
    pub critical: f64,
    /// The fewest requests in a window worth judging; below it a pool is "not enough
    /// traffic", never an alert (100). Also the floor for 5xx ratios.
    pub min_volume: u64,
    /// Sessions over a limit that count as near it (0.8).
    pub near_limit: f64,
    /// 5xx ratios that warn (0.05) and page (0.20).
    pub error_warning: f64,
    pub error_critical: f64,
    /// Also alert when the live weights themselves send one server more than R times an even
    /// share (`PoolConcentrated`); off for fleets whose uneven weights are meant.
    pub concentration: bool,
    /// Where the runbook lives; each alert links `RUNBOOK#alertname-in-lowercase`.
    pub runbook: String,
    /// What each named pool's algorithm promises (from the configurations, see
    /// [`RulesOptions::learn_promises`]). A pool not named is judged on request shares, as
    /// round-robin and weights promise; least-connections and power-of-two pools are judged on
    /// requests in flight, hashing pools in a wider band, and `first` pools not at all, as the
    /// guard judges them.
    pub promises: BTreeMap<String, Promise>,
    /// The backup servers of each named pool (from the configurations, see
    /// [`RulesOptions::learn_promises`]). HAProxy's exporter does not mark backups, so without
    /// this an idle backup counts as a server the pool's traffic should reach; the HAProxy
    /// rules leave these servers out of the expected shares.
    pub backups: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Default for RulesOptions {
    fn default() -> Self {
        Self {
            families: Families::Both,
            window: Duration::from_secs(60),
            skew_for: Duration::from_secs(180),
            saturation_for: Duration::from_secs(120),
            errors_for: Duration::from_secs(120),
            reload_window: Duration::from_secs(900),
            warning: 1.5,
            critical: 2.0,
            min_volume: 100,
            near_limit: 0.8,
            error_warning: 0.05,
            error_critical: 0.20,
            concentration: true,
            runbook: "docs/runbook.md".to_string(),
            promises: BTreeMap::new(),
            backups: BTreeMap::new(),
        }
    }
}

/// Of two promises for one pool name, the one whose judgement cannot alert on the other's
/// correct behaviour: request shares yield to the other; two other promises cannot be judged
/// by one rule without alerting on one of them, so the name is left unjudged (`first`).
fn weaker(a: Promise, b: Promise) -> Promise {
    match (a, b) {
        (Promise::RequestShares, other) | (other, Promise::RequestShares) => other,
        (a, b) if a == b => a,
        _ => Promise::FillInOrder,
    }
}

/// Why options cannot make a rule file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RulesError {
    #[error("unknown rule family `{0}`: use haproxy, ballast or both")]
    Families(String),
    #[error(
        "`{0}` is not a Prometheus duration: write a number and a unit (ms, s, m, h, d, w, y), e.g. `1m` or `1m30s`"
    )]
    Duration(String),
    #[error("{what} is {value}: {fix}")]
    Option {
        what: &'static str,
        value: String,
        fix: &'static str,
    },
}

impl RulesOptions {
    /// Learns what each pool of a configuration promises. The rules match pools by name across
    /// the fleet, so a name whose pools promise different things in different files is judged
    /// by the weaker promise (see [`weaker`]): no false alert, at the cost of a looser
    /// judgement; the conflicting names are returned. It also learns each pool's backup
    /// servers ([`RulesOptions::backups`]).
    pub fn learn_promises(&mut self, config: &ballast_core::config::Config) -> Vec<String> {
        let mut conflicting = Vec::new();
        for (name, pool) in &config.pools {
            let backups: Vec<String> = pool
                .servers
                .iter()
                .filter(|s| s.backup)
                .map(|s| s.name.clone())
                .collect();
            if !backups.is_empty() {
                self.backups
                    .entry(name.clone())
                    .or_default()
                    .extend(backups);
            }
            let promise = Promise::of(pool);
            match self.promises.get(name).copied() {
                Some(known) if known != promise => {
                    conflicting.push(name.clone());
                    self.promises.insert(name.clone(), weaker(known, promise));
                }
                _ => {
                    self.promises.insert(name.clone(), promise);
                }
            }
        }
        conflicting
    }

    /// Checks that the options make a sensible rule file; [`prometheus`] assumes they do.
    pub fn validate(&self) -> Result<(), RulesError> {
        let bad = |what, value: String, fix| Err(RulesError::Option { what, value, fix });
        if self.window < Duration::from_secs(1)
            || !self.window.subsec_nanos().is_multiple_of(1_000_000)
        {
            return bad(
                "the window",
                format!("{:?}", self.window),
                "use whole milliseconds, 1s or more (at least four scrape intervals)",
            );
        }
        for (what, d) in [
            ("the skew `for`", self.skew_for),
            ("the saturation `for`", self.saturation_for),
            ("the errors `for`", self.errors_for),
            ("the reload window", self.reload_window),
        ] {
            if !d.subsec_nanos().is_multiple_of(1_000_000) {
                return bad(what, format!("{d:?}"), "use whole milliseconds");
            }
        }
        if self.reload_window.is_zero() {
            return bad(
                "the reload window",
                "0s".into(),
                "use a duration such as 15m: a reload must stay visible for a while",
            );
        }
        if !(self.warning.is_finite() && self.warning > 1.0) {
            return bad(
                "the warning threshold",
                self.warning.to_string(),
                "use a ratio above 1 (R = 1 is a perfectly even pool), e.g. 1.5",
            );
        }
        if !(self.critical.is_finite() && self.critical >= self.warning) {
            return bad(
                "the critical threshold",
                self.critical.to_string(),
                "use a ratio at or above the warning threshold, e.g. 2",
            );
        }
        if self.min_volume == 0 {
            return bad(
                "the volume floor",
                "0".into(),
                "use a number of requests per window, e.g. 100: below it chance looks like skew",
            );
        }
        if !(self.near_limit > 0.0 && self.near_limit <= 1.0) {
            return bad(
                "the near-limit fraction",
                self.near_limit.to_string(),
                "use a fraction in (0, 1], e.g. 0.8",
            );
        }
        if !(self.error_warning > 0.0
            && self.error_warning <= self.error_critical
            && self.error_critical <= 1.0)
        {
            return bad(
                "the 5xx ratios",
                format!("{} / {}", self.error_warning, self.error_critical),
                "use fractions with 0 < warning <= critical <= 1, e.g. 0.05 and 0.2",
            );
        }
        if self.runbook.contains(['\n', '\r']) {
            return bad(
                "the runbook",
                format!("{:?}", self.runbook),
                "use one line: a path or a URL",
            );
        }
        Ok(())
    }
}

/// Prometheus recording and alerting rules that compute the guard's signals for a fleet.
///
/// Writes one rule file (YAML, for `rule_files:`) for HAProxy's built-in exporter, ballast's
/// `/metrics`, or both. Every aggregation keeps `job`, `instance` and the pool label (`proxy`
/// for HAProxy, `pool` for ballast), so one file watches any number of load balancers.
///
/// Distribution (`PoolSkewed`, warning R > 1.5, critical R > 2, for 3m): each server's share
/// of the pool's balancing decisions in the window (`haproxy_server_loadbalanced_total`,
/// `ballast_requests_total`), over the share its live weight promises among the servers in
/// rotation; R is the largest ratio. It fires on the hottest server only when the window held
/// enough requests (the volume floor) and a χ² test says the spread is not chance (p < 0.001,
/// critical value by Wilson–Hilferty, every expected count ≥ 5). `PoolConcentrated` is the
/// same judgement against an even spread: weights that send most traffic to one server.
///
/// Saturation: server sessions against their limit (80% for 2m, 100% now), a server queue for
/// 2m or at its limit, HAProxy's backend queue, frontend (listener) and process connections
/// against their limits. Errors: 5xx ratio per pool and per server (5% / 20%, with the
/// floor); a pool with no server up. Changes: `LoadBalancerReloaded` (info) for 15m after
/// HAProxy's start time or ballast's configuration version changes.
///
/// Labels: `alertname`, `severity`, `source`, `instance`, `pool`, `server` (where one);
/// annotations: `summary`, `description`, `cause`, `runbook`. Check the file with
/// `promtool check rules`.
pub fn prometheus(options: &RulesOptions) -> String {
    let mut groups = Vec::new();
    if options.families.haproxy() {
        groups.extend(signals::groups(&signals::HAPROXY, options));
    }
    if options.families.ballast() {
        groups.extend(signals::groups(&signals::BALLAST, options));
    }
    yaml::render(&signals::header(options), &groups)
}

/// Parses a Prometheus duration: one or more number-unit pairs, largest unit first (`90s`,
/// `1m30s`, `500ms`, `1h`). Units: `ms`, `s`, `m`, `h`, `d`, `w`, `y` (365 days).
pub fn parse_duration(text: &str) -> Result<Duration, RulesError> {
    let fail = || RulesError::Duration(text.to_string());
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut total: u64 = 0;
    // Each unit at most once and in order, as Prometheus requires.
    let mut next_unit = 0;
    if rest.is_empty() {
        return Err(fail());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| fail())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let position = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(fail)?
            + next_unit;
        next_unit = position + 1;
        total = number
            .checked_mul(UNITS[position].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(fail)?;
    }
    Ok(Duration::from_millis(total))
}

/// A duration as Prometheus writes it: `1m`, `1m30s`, `10s`, `500ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// The alerts only the Prometheus rules raise (a fleet has no configuration file to compare
/// weights with, and reloads are a metric there); the rest share the detectors' names.
pub const PROMETHEUS_ONLY: &[crate::detect::RuleSpec] = &[
    crate::detect::RuleSpec {
        alertname: "PoolConcentrated",
        layer: crate::detect::Layer::Distribution,
        for_ms: 180_000,
        meaning: "Prometheus rules only. The pool's live weights themselves send one server \
            more than R times an even share of the servers in rotation (the traffic follows \
            the weights, so `PoolSkewed` stays quiet): weights that send most traffic to one \
            server. Turn it off for fleets whose uneven weights are meant.",
        response: "Compare the live weights (`haproxy_server_weight`, `ballast_server_weight`) \
            with the configuration; a weight raised at runtime or in the last change is the \
            usual cause. Check that the heavy server has the capacity its share asks of it.",
    },
    crate::detect::RuleSpec {
        alertname: "LoadBalancerReloaded",
        layer: crate::detect::Layer::Distribution,
        for_ms: 0,
        meaning: "Prometheus rules only (severity info). The load balancer's process start \
            time (HAProxy) or configuration version (ballast) changed: a reload. It stays \
            for the reload window so that alerts raised after it can be read against it.",
        response: "Nothing by itself. When another alert of the same instance follows, the \
            reload is the first suspect: diff the configuration it loaded against the one \
            before (`ballast diff OLD NEW`).",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_name_balanced_two_ways_in_a_fleet_gets_the_looser_judgement() {
        use Promise::*;
        assert_eq!(weaker(RequestShares, Concurrency), Concurrency);
        assert_eq!(weaker(KeyDependent, RequestShares), KeyDependent);
        assert_eq!(weaker(Concurrency, Concurrency), Concurrency);
        // Neither judgement is safe for the other: left unjudged.
        assert_eq!(weaker(Concurrency, KeyDependent), FillInOrder);
    }

    #[test]
    fn durations_round_trip_in_prometheus_form() {
        for (text, ms) in [
            ("1m", 60_000),
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("2d3h", 2 * 86_400_000 + 3 * 3_600_000),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d, Duration::from_millis(ms), "{text}");
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn bad_durations_are_errors_that_say_how_to_write_one() {
        for text in [
            "",
            "1",
            "m",
            "1x",
            "30s1m",
            "1m1m",
            "-1s",
            "99999999999999999999y",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.to_string().contains("e.g. `1m`"), "{text}: {e}");
        }
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(RulesOptions::default().validate(), Ok(()));
        let with = |f: fn(&mut RulesOptions)| {
            let mut o = RulesOptions::default();
            f(&mut o);
            o.validate()
        };
        assert!(with(|o| o.window = Duration::ZERO).is_err());
        assert!(with(|o| o.warning = 1.0).is_err());
        assert!(with(|o| o.critical = 1.2).is_err());
        assert!(with(|o| o.warning = f64::NAN).is_err());
        assert!(with(|o| o.min_volume = 0).is_err());
        assert!(with(|o| o.near_limit = 1.5).is_err());
        assert!(with(|o| o.error_critical = 0.01).is_err());
        assert!(with(|o| o.runbook = "a\nb".into()).is_err());
        let e = with(|o| o.critical = 1.2).unwrap_err().to_string();
        assert!(e.contains("at or above the warning"), "{e}");
        assert_eq!(Families::parse("both"), Ok(Families::Both));
        assert!(Families::parse("nginx").is_err());
    }
}
