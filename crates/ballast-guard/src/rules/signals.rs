//! The rules themselves: the guard's distribution, saturation, error and reload signals in
//! PromQL, written once over a [`Family`] (which metrics and labels a load balancer exports)
//! so HAProxy's exporter and ballast's `/metrics` get the same judgement.
//!
//! Every aggregation is `by` the target (`job`, `instance`) and the pool label, so one rule
//! file serves a fleet. Recording rules follow Prometheus's `level:metric:operations` naming,
//! with the window in the name (`ballast:haproxy_pool_peak_ratio:weighted_1m`).

use std::time::Duration;

use ballast_core::sample::Promise;

use super::RulesOptions;
use super::format_duration;
use super::yaml::{AlertRule, Group, Rule};

/// Which metrics and labels one kind of load balancer exports.
pub(crate) struct Family {
    /// The `source` label of its alerts and the infix of its recording rules.
    pub source: &'static str,
    /// What it is called in words.
    pub product: &'static str,
    /// The label naming a pool (HAProxy: the backend, `proxy`).
    pub pool: &'static str,
    /// A counter of the balancer's decisions per server.
    pub picks: &'static str,
    /// A server's live weight.
    pub weight: &'static str,
    /// 1 while a server is in rotation.
    pub up: &'static str,
    pub sessions: &'static str,
    pub session_limit: &'static str,
    pub queue: &'static str,
    pub queue_limit: &'static str,
    /// Responses per server, all classes; and the error classes among them.
    pub server_responses: &'static str,
    pub server_errors: &'static str,
    /// Responses per pool (HAProxy counts its own 503s there), when exported.
    pub pool_responses: Option<(&'static str, &'static str)>,
    /// Per frontend: its label, current connections, limit.
    pub frontend: (&'static str, &'static str, &'static str),
    /// Process-wide connections and their limit, when exported.
    pub process: Option<(&'static str, &'static str)>,
    /// A pool-wide queue of requests not yet given a server, when exported.
    pub pool_queue: Option<&'static str>,
    pub reload: Reload,
}

/// How a family shows a reload.
pub(crate) enum Reload {
    /// A process start-time gauge that changes when a new process takes over.
    StartTime(&'static str),
    /// An info gauge whose `version` label changes with the configuration.
    VersionInfo(&'static str),
}

pub(crate) const HAPROXY: Family = Family {
    source: "haproxy",
    product: "HAProxy",
    pool: "proxy",
    picks: "haproxy_server_loadbalanced_total",
    weight: "haproxy_server_weight",
    up: "haproxy_server_status{state=\"UP\"}",
    sessions: "haproxy_server_current_sessions",
    session_limit: "haproxy_server_limit_sessions",
    queue: "haproxy_server_current_queue",
    queue_limit: "haproxy_server_queue_limit",
    server_responses: "haproxy_server_http_responses_total",
    // `other` is a response without a status (an aborted transfer): an error to the client.
    server_errors: "haproxy_server_http_responses_total{code=~\"5xx|other\"}",
    pool_responses: Some((
        "haproxy_backend_http_responses_total",
        "haproxy_backend_http_responses_total{code=~\"5xx|other\"}",
    )),
    frontend: (
        "proxy",
        "haproxy_frontend_current_sessions",
        "haproxy_frontend_limit_sessions",
    ),
    process: Some((
        "haproxy_process_current_connections",
        "haproxy_process_max_connections",
    )),
    pool_queue: Some("haproxy_backend_current_queue"),
    reload: Reload::StartTime("haproxy_process_start_time_seconds"),
};

pub(crate) const BALLAST: Family = Family {
    source: "ballast",
    product: "ballast",
    pool: "pool",
    picks: "ballast_requests_total",
    weight: "ballast_server_weight",
    up: "ballast_server_up",
    sessions: "ballast_in_flight",
    session_limit: "ballast_server_max_connections",
    queue: "ballast_queue_depth",
    queue_limit: "ballast_server_max_queue",
    server_responses: "ballast_requests_total",
    server_errors: "ballast_requests_total{class=\"5xx\"}",
    pool_responses: None,
    frontend: (
        "listener",
        "ballast_active_connections",
        "ballast_listener_max_connections",
    ),
    process: None,
    pool_queue: None,
    reload: Reload::VersionInfo("ballast_config_info"),
};

/// The chi-squared critical value at p = 0.001 by Wilson–Hilferty: z of the upper 0.1%.
const Z_P001: f64 = 3.09;

/// What a pool's shares are set against.
#[derive(Clone, Copy)]
enum Basis {
    /// Each server's live weight over the weights in rotation: the algorithm's promise.
    Weighted,
    /// An even spread over the servers in rotation with any weight: are the weights
    /// themselves concentrating traffic?
    Even,
}

impl Basis {
    fn tag(self) -> &'static str {
        match self {
            Basis::Weighted => "weighted",
            Basis::Even => "even",
        }
    }
}

/// The labels every aggregation keeps.
struct Keys<'a> {
    family: &'a Family,
}

impl Keys<'_> {
    fn target(&self) -> &'static str {
        "job, instance"
    }
    fn pool(&self) -> String {
        format!("job, instance, {}", self.family.pool)
    }
    fn server(&self) -> String {
        format!("job, instance, {}, server", self.family.pool)
    }
}

/// The file's header: what made it, how it judges each pool, and how to pair it with
/// Alertmanager.
pub(crate) fn header(o: &RulesOptions) -> String {
    let named = |promise: Promise| {
        let names: Vec<&str> = o
            .promises
            .iter()
            .filter(|(_, p)| **p == promise)
            .map(|(n, _)| n.as_str())
            .collect();
        names.join(", ")
    };
    let mut judged = String::new();
    if o.promises.is_empty() {
        judged.push_str(
            "\nEvery pool is judged on request shares (round-robin, weights). Pass the load\nbalancers' configurations (`--config FILE`) so least-connections and power-of-two pools are\njudged on requests in flight, hashing pools in a wider band and `first` pools not at all.\n",
        );
    } else {
        for (promise, how) in [
            (Promise::Concurrency, "judged on requests in flight"),
            (
                Promise::KeyDependent,
                "judged in a band 1.25× wider (they hash)",
            ),
            (
                Promise::FillInOrder,
                "not judged on their spread (they fill in order)",
            ),
        ] {
            let names = named(promise);
            if !names.is_empty() {
                judged += &format!("\nPools {how}: {names}.");
            }
        }
        judged.push_str("\nEvery other pool is judged on request shares.\n");
    }
    let header = format!(
        "Generated by `ballast rules prometheus`: the guard's distribution, saturation, error and
reload signals as Prometheus rules. Check with `promtool check rules FILE`.
Options: window {window}, skew for {skew}, saturation for {sat}, errors for {err}, reload
window {reload}, R warning {warn} / critical {crit}, volume floor {floor} requests per window,
near limit {near}, 5xx warning {ew} / critical {ec}.

Alertmanager: a critical alert inhibits its warning, and a skew explains its server's
saturation (as the guard does), e.g.
  inhibit_rules:
    - source_matchers: [severity=\"critical\"]
      target_matchers: [severity=\"warning\"]
      equal: [alertname, instance, pool, server]
    - source_matchers: [alertname=~\"PoolSkewed|PoolConcentrated\"]
      target_matchers: [alertname=~\"Server.*ConnectionLimit|ServerQueue.*\"]
      equal: [instance, pool, server]",
        window = format_duration(o.window),
        skew = format_duration(o.skew_for),
        sat = format_duration(o.saturation_for),
        err = format_duration(o.errors_for),
        reload = format_duration(o.reload_window),
        warn = o.warning,
        crit = o.critical,
        floor = o.min_volume,
        near = o.near_limit,
        ew = o.error_warning,
        ec = o.error_critical,
    );
    // The judgement goes after the options paragraph.
    match header.split_once("\n\n") {
        Some((first, rest)) => format!("{first}\n{judged}\n{rest}"),
        None => header + &judged,
    }
}

/// All groups of one family.
pub(crate) fn groups(family: &Family, o: &RulesOptions) -> Vec<Group> {
    let mut shares: Vec<Rule> = backups(family, o).into_iter().collect();
    shares.extend(distribution(family, Basis::Weighted, o));
    if o.concentration {
        shares.extend(distribution(family, Basis::Even, o));
    }
    if let Some(re) = pool_regex(o, |p| p == Promise::Concurrency) {
        shares.extend(concurrency(family, o, &re));
    }
    vec![
        Group {
            name: format!("ballast-{}-distribution", family.source),
            rules: shares,
        },
        Group {
            name: format!("ballast-{}-saturation", family.source),
            rules: saturation(family, o),
        },
        Group {
            name: format!("ballast-{}-errors", family.source),
            rules: errors(family, o),
        },
        Group {
            name: format!("ballast-{}-changes", family.source),
            rules: changes(family, o),
        },
    ]
}

/// The recording rule listing the backup servers the configurations name, one series
/// `{proxy="POOL", server="NAME"}` each.
const BACKUP_SERVERS: &str = "ballast:haproxy_server_backup";

/// The backups learnt from the configurations as series of their own, for the HAProxy family
/// (its exporter has no backup label). `None` when no configuration names one.
fn backups(family: &Family, o: &RulesOptions) -> Option<Rule> {
    if family.source != "haproxy" || o.backups.values().all(|b| b.is_empty()) {
        return None;
    }
    // A label_replace value is a PromQL string and an RE2 replacement: `\`, `"` and `$`
    // escaped.
    let quote = |v: &str| {
        let mut out = String::new();
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '$' => out.push_str("$$"),
                c => out.push(c),
            }
        }
        out
    };
    let series: Vec<String> = o
        .backups
        .iter()
        .flat_map(|(pool, servers)| servers.iter().map(move |server| (pool, server)))
        .map(|(pool, server)| {
            format!(
                "label_replace(label_replace(vector(1), \"{p}\", \"{}\", \"\", \"\"), \"server\", \"{}\", \"\", \"\")",
                quote(pool),
                quote(server),
                p = family.pool
            )
        })
        .collect();
    Some(record(BACKUP_SERVERS, series.join("\nor ")))
}

/// Names of one family's recording rules for one basis and window.
struct Names {
    in_rotation: String,
    expected_share: String,
    sent: String,
    pool_sent: String,
    share: String,
    normalised: String,
    peak_ratio: String,
    expected_sent: String,
    chi2: String,
    dof: String,
    chi2_critical: String,
    significant: String,
}

impl Names {
    fn new(family: &Family, basis: Basis, window: Duration) -> Names {
        let w = format_duration(window);
        let b = basis.tag();
        let s = family.source;
        let windowed = |level: &str, what: &str| format!("ballast:{s}_{level}_{what}:{b}_{w}");
        Names {
            in_rotation: format!("ballast:{s}_server_in_rotation:{b}"),
            expected_share: windowed("server", "expected_share"),
            sent: format!("ballast:{s}_server_sent:increase{w}"),
            pool_sent: windowed("pool", "sent"),
            share: windowed("server", "share"),
            normalised: windowed("server", "normalised_share"),
            peak_ratio: windowed("pool", "peak_ratio"),
            expected_sent: windowed("server", "expected_sent"),
            chi2: windowed("pool", "chi2"),
            dof: windowed("pool", "chi2_dof"),
            chi2_critical: windowed("pool", "chi2_critical_p001"),
            significant: windowed("pool", "skew_significant"),
        }
    }
}

fn record(name: &str, expr: String) -> Rule {
    Rule::Record {
        name: name.to_string(),
        expr,
    }
}

/// Shares against a basis, R, and the χ² gate; then the alerts on the hottest server.
fn distribution(family: &Family, basis: Basis, o: &RulesOptions) -> Vec<Rule> {
    let keys = Keys { family };
    let (pool, server) = (keys.pool(), keys.server());
    let n = Names::new(family, basis, o.window);
    let w = format_duration(o.window);
    let mut rules = Vec::new();
    let weight = match basis {
        Basis::Weighted => format!("sum by ({server}) ({})", family.weight),
        Basis::Even => format!("sum by ({server}) ({} > bool 0)", family.weight),
    };
    // Backups known from the configuration take no share while a primary serves; the
    // exporter cannot tell them apart, so the configuration's list is subtracted.
    let weight = match backups(family, o) {
        Some(_) => format!(
            "({weight}\nunless on ({p}, server) {BACKUP_SERVERS})",
            p = family.pool
        ),
        None => weight,
    };
    rules.push(record(
        &n.in_rotation,
        format!(
            "{weight}\n* on ({server})\nsum by ({server}) ({})",
            family.up
        ),
    ));
    // Time-averaged over the window, so a server in rotation for half of it is expected to
    // take half its share, as the traffic it could receive.
    rules.push(record(
        &n.expected_share,
        format!(
            "avg_over_time({r}[{w}])\n/ on ({pool}) group_left ()\n(sum by ({pool}) (avg_over_time({r}[{w}])) > 0)",
            r = n.in_rotation
        ),
    ));
    if let Basis::Weighted = basis {
        rules.push(record(
            &n.sent,
            format!("sum by ({server}) (increase({}[{w}]))", family.picks),
        ));
    }
    // Only servers expected to take traffic are compared; a drained server still serving
    // persistent sessions would otherwise divide by zero.
    rules.push(record(
        &n.pool_sent,
        format!(
            "sum by ({pool}) ({sent} and on ({server}) ({e} > 0))",
            sent = n.sent,
            e = n.expected_share
        ),
    ));
    rules.push(record(
        &n.share,
        format!(
            "({sent} and on ({server}) ({e} > 0))\n/ on ({pool}) group_left ()\n({ps} > 0)",
            sent = n.sent,
            e = n.expected_share,
            ps = n.pool_sent
        ),
    ));
    rules.push(record(
        &n.normalised,
        format!(
            "{share}\n/ on ({server})\n({e} > 0)",
            share = n.share,
            e = n.expected_share
        ),
    ));
    rules.push(record(
        &n.peak_ratio,
        format!("max by ({pool}) ({})", n.normalised),
    ));
    rules.push(record(
        &n.expected_sent,
        format!(
            "({e} > 0)\n* on ({pool}) group_left ()\n{ps}",
            e = n.expected_share,
            ps = n.pool_sent
        ),
    ));
    rules.push(record(
        &n.chi2,
        format!(
            "sum by ({pool}) (\n  ({sent} - on ({server}) {es}) ^ 2\n  / on ({server}) ({es} > 0)\n)",
            sent = n.sent,
            es = n.expected_sent
        ),
    ));
    rules.push(record(
        &n.dof,
        format!("count by ({pool}) ({}) - 1 > 0", n.expected_sent),
    ));
    // Wilson–Hilferty: χ²(1 − p, k) ≈ k·(1 − 2/(9k) + z·√(2/(9k)))³, within 3% of the exact
    // value from k = 1 on (10.83 exact, 11.16 here), and on the safe side.
    rules.push(record(
        &n.chi2_critical,
        format!(
            "{k} * (1 - 2 / (9 * {k}) + {Z_P001} * sqrt(2 / (9 * {k}))) ^ 3",
            k = n.dof
        ),
    ));
    rules.push(record(
        &n.significant,
        format!(
            "(\n  {chi2} > on ({pool}) {crit}\n)\nand on ({pool}) ({ps} >= {floor})\nand on ({pool}) (min by ({pool}) ({es}) >= 5)",
            chi2 = n.chi2,
            crit = n.chi2_critical,
            ps = n.pool_sent,
            floor = o.min_volume,
            es = n.expected_sent
        ),
    ));
    // Request shares are what round-robin and weights promise; pools whose algorithm
    // promises something else are left out here and judged as the guard judges them.
    let others = pool_regex(o, |p| p != Promise::RequestShares);
    let mut scopes = vec![Scope {
        selector: others
            .map(|re| format!("{{{}!~\"{re}\"}}", family.pool))
            .unwrap_or_default(),
        widening: 1.0,
        judged_on: None,
    }];
    if let Basis::Weighted = basis
        && let Some(re) = pool_regex(o, |p| p == Promise::KeyDependent)
    {
        scopes.push(Scope {
            selector: format!("{{{}=~\"{re}\"}}", family.pool),
            widening: crate::detect::distribution::Thresholds::default().key_dependent_widening,
            judged_on: Some("requests_by_key"),
        });
    }
    for scope in &scopes {
        for (severity, threshold) in [("warning", o.warning), ("critical", o.critical)] {
            rules.push(Rule::Alert(skew_alert(
                family, basis, &n, severity, threshold, o, scope,
            )));
        }
    }
    rules
}

/// Which pools an alert rule judges, and how much wider its band is than the thresholds.
struct Scope {
    /// A label matcher on the pool label (`{proxy!~"lc|hashed"}`), or empty for every pool.
    selector: String,
    /// Hashing pools follow their keys: judged at R above threshold × widening.
    widening: f64,
    /// A `judged_on` label telling this rule's alerts from the default rule's of the same name
    /// and severity (promtool's lint refuses two rules alike in both).
    judged_on: Option<&'static str>,
}

/// The pools whose promise passes `keep`, as a PromQL regular expression matching their
/// names exactly (RE2 metacharacters escaped, in a double-quoted PromQL string), or `None`.
fn pool_regex(o: &RulesOptions, keep: impl Fn(Promise) -> bool) -> Option<String> {
    let names: Vec<String> = o
        .promises
        .iter()
        .filter(|(_, p)| keep(**p))
        .map(|(name, _)| {
            let mut escaped = String::new();
            for c in name.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    // `\\` in the PromQL string is one backslash for RE2.
                    escaped.push_str("\\\\");
                } else if c == '"' {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            escaped
        })
        .collect();
    (!names.is_empty()).then(|| names.join("|"))
}

/// Least-connections and power-of-two pools promise requests in flight in proportion to
/// weights (a slow server rightly gets fewer requests): each server's sessions summed over the
/// window's scrapes against its weighted share, as the guard sums its rounds. Summed gauges are
/// not independent draws, so no χ² test: a volume floor, and every server expected to hold 5.
fn concurrency(family: &Family, o: &RulesOptions, pools: &str) -> Vec<Rule> {
    let keys = Keys { family };
    let (pool, server) = (keys.pool(), keys.server());
    let w = format_duration(o.window);
    let s = family.source;
    let p = family.pool;
    let weighted = Names::new(family, Basis::Weighted, o.window);
    let name = |level: &str, what: &str| format!("ballast:{s}_{level}_{what}:concurrency_{w}");
    let held = name("server", "in_flight");
    let pool_held = name("pool", "in_flight");
    let share = name("server", "in_flight_share");
    let normalised = name("server", "normalised_in_flight");
    let peak = name("pool", "in_flight_peak_ratio");
    let e = &weighted.expected_share;
    let mut rules = vec![
        record(
            &held,
            format!(
                "sum by ({server}) (sum_over_time({}{{{p}=~\"{pools}\"}}[{w}]))",
                family.sessions
            ),
        ),
        record(
            &pool_held,
            format!("sum by ({pool}) ({held} and on ({server}) ({e} > 0))"),
        ),
        record(
            &share,
            format!(
                "({held} and on ({server}) ({e} > 0))\n/ on ({pool}) group_left ()\n({pool_held} > 0)"
            ),
        ),
        record(&normalised, format!("{share}\n/ on ({server})\n({e} > 0)")),
        record(&peak, format!("max by ({pool}) ({normalised})")),
    ];
    let summary = format!(
        "{{{{ $labels.server }}}} holds {{{{ $value | printf \"%.2f\" }}}}× its weighted share of the requests in flight of pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}}"
    );
    let description = format!(
        "In the last {w} it held {held_share} of the pool's requests in flight where its live weight promises {expected}. The pool balances on connections, so requests in flight are what it promises to spread; its share of requests is information only.",
        held_share = server_figure(family, &share),
        expected = server_figure(family, e),
    );
    let cause = format!(
        "The load balancer's distribution: this server holds more requests in flight than its weight promises, on a pool that balances on connections (a runtime weight or state change, sticky sessions, or the server is slower than the rest and the others cannot take its load). {READ_AGAINST_RELOAD}"
    );
    for (severity, threshold) in [("warning", o.warning), ("critical", o.critical)] {
        rules.push(Rule::Alert(AlertRule {
            name: "PoolSkewed",
            expr: format!(
                "(\n  {normalised} == on ({pool}) group_left () {peak}\n) > {threshold}\nand on ({pool}) ({pool_held} >= {floor})\nand on ({pool}) (min by ({pool}) (({e} > 0) * on ({pool}) group_left () {pool_held}) >= 5)",
                floor = o.min_volume
            ),
            hold: o.skew_for,
            labels: {
                let mut l = labels(family, severity, true);
                l.push(("judged_on", "requests_in_flight".to_string()));
                l
            },
            annotations: annotations(
                o,
                "PoolSkewed",
                summary.clone(),
                description.clone(),
                cause.clone(),
            ),
        }));
    }
    rules
}

/// A template that reads one recorded figure of the alert's server, as a percentage.
fn server_figure(family: &Family, metric: &str) -> String {
    format!(
        "{{{{ with printf `{metric}{{job=\"%s\",instance=\"%s\",{p}=\"%s\",server=\"%s\"}}` $labels.job $labels.instance $labels.{p} $labels.server | query }}}}{{{{ . | first | value | humanizePercentage }}}}{{{{ end }}}}",
        p = family.pool
    )
}

fn pool_figure(family: &Family, metric: &str) -> String {
    format!(
        "{{{{ with printf `{metric}{{job=\"%s\",instance=\"%s\",{p}=\"%s\"}}` $labels.job $labels.instance $labels.{p} | query }}}}{{{{ . | first | value | printf \"%.0f\" }}}}{{{{ end }}}}",
        p = family.pool
    )
}

/// Labels every alert of a family carries, with `pool` copied from HAProxy's `proxy`.
fn labels(family: &Family, severity: &str, pool: bool) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        ("severity", severity.to_string()),
        ("source", family.source.to_string()),
    ];
    if pool && family.pool != "pool" {
        labels.push(("pool", format!("{{{{ $labels.{} }}}}", family.pool)));
    }
    labels
}

fn runbook(o: &RulesOptions, alertname: &str) -> String {
    format!("{}#{}", o.runbook, alertname.to_ascii_lowercase())
}

fn annotations(
    o: &RulesOptions,
    alertname: &str,
    summary: String,
    description: String,
    cause: String,
) -> Vec<(&'static str, String)> {
    vec![
        ("summary", summary),
        ("description", description),
        ("cause", cause),
        ("runbook", runbook(o, alertname)),
    ]
}

/// What every alert adds about a recent reload.
const READ_AGAINST_RELOAD: &str =
    "If LoadBalancerReloaded is active for this instance, that change is the likely trigger.";

fn skew_alert(
    family: &Family,
    basis: Basis,
    n: &Names,
    severity: &str,
    threshold: f64,
    o: &RulesOptions,
    scope: &Scope,
) -> AlertRule {
    let threshold = threshold * scope.widening;
    let pool = Keys { family }.pool();
    let p = family.pool;
    let w = format_duration(o.window);
    let (name, promise, cause) = match basis {
        Basis::Weighted => (
            "PoolSkewed",
            "its live weight promises",
            format!(
                "The load balancer's distribution: it sends this server more than its weight promises (hashing on a key with few values, sticky sessions, a runtime weight or state change). The other servers are in rotation and the spread is beyond chance, so it is not noise and not a traffic surge. {READ_AGAINST_RELOAD}"
            ),
        ),
        Basis::Even => (
            "PoolConcentrated",
            "an even spread over the servers in rotation gives",
            format!(
                "The load balancer's weights: they send most of the pool's traffic to this server. If that is meant (a larger machine), give it the limits to match; if not, a weight was set wrong in the configuration or through the runtime API. {READ_AGAINST_RELOAD}"
            ),
        ),
    };
    let summary = format!(
        "{{{{ $labels.server }}}} takes {{{{ $value | printf \"%.2f\" }}}}× {what} of pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}}",
        what = match basis {
            Basis::Weighted => "its weighted share",
            Basis::Even => "an even share",
        }
    );
    let description = format!(
        "In the last {w} it received {share} of the pool's {sent} requests where {promise} {expected}. A χ² test puts the spread beyond chance (p < 0.001).{band}",
        band = if scope.widening > 1.0 {
            format!(
                " The pool hashes, so its shares follow the keys: it is judged in a band {}× wider.",
                scope.widening
            )
        } else {
            String::new()
        },
        share = server_figure(family, &n.share),
        sent = pool_figure(family, &n.pool_sent),
        expected = server_figure(family, &n.expected_share),
    );
    AlertRule {
        name,
        expr: format!(
            "(\n  {x}{selector} == on ({pool}) group_left () {r}\n) > {threshold}\nand on ({pool}) {sig}",
            x = n.normalised,
            selector = scope.selector,
            r = n.peak_ratio,
            sig = n.significant
        ),
        hold: o.skew_for,
        labels: {
            let mut l = labels(family, severity, true);
            l.extend(scope.judged_on.map(|j| ("judged_on", j.to_string())));
            l
        },
        annotations: annotations(o, name, summary, description, cause),
    }
}

fn saturation(family: &Family, o: &RulesOptions) -> Vec<Rule> {
    let keys = Keys { family };
    let (pool, server) = (keys.pool(), keys.server());
    let p = family.pool;
    let near = o.near_limit;
    let at = |what: &str| {
        format!(
            "{{{{ $labels.server }}}} of pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}} {what}"
        )
    };
    let limits_cause = format!(
        "The load balancer's limits: this server's connection limit is what holds requests back (they queue, then fail with 503). If a skew alert names the same server, the imbalance is the cause and this is its symptom; if its latency rose, the backend is slow and holds its slots longer. {READ_AGAINST_RELOAD}"
    );
    let ratio = format!(
        "sum by ({server}) ({s})\n/ on ({server})\nsum by ({server}) ({l} > 0)",
        s = family.sessions,
        l = family.session_limit
    );
    let mut rules = vec![
        Rule::Alert(AlertRule {
            name: "ServerNearConnectionLimit",
            expr: format!("{ratio}\n>= {near}"),
            hold: o.saturation_for,
            labels: labels(family, "warning", true),
            annotations: annotations(
                o,
                "ServerNearConnectionLimit",
                at("is at {{ $value | humanizePercentage }} of its connection limit"),
                format!(
                    "Sessions have stayed at or above {} of the server's limit for {}.",
                    percent(near),
                    format_duration(o.saturation_for)
                ),
                limits_cause.clone(),
            ),
        }),
        Rule::Alert(AlertRule {
            name: "ServerAtConnectionLimit",
            expr: format!("{ratio}\n>= 1"),
            hold: Duration::ZERO,
            labels: labels(family, "critical", true),
            annotations: annotations(
                o,
                "ServerAtConnectionLimit",
                at("is at its connection limit"),
                "Every connection slot of the server is taken: new requests queue or are refused."
                    .to_string(),
                limits_cause.clone(),
            ),
        }),
        Rule::Alert(AlertRule {
            name: "ServerQueueing",
            expr: format!("sum by ({server}) ({}) > 0", family.queue),
            hold: o.saturation_for,
            labels: labels(family, "warning", true),
            annotations: annotations(
                o,
                "ServerQueueing",
                at("has had requests queued for {{ $value | printf \"%.0f\" }} slot(s)"),
                format!(
                    "Requests have waited for a slot on this server for {}.",
                    format_duration(o.saturation_for)
                ),
                limits_cause.clone(),
            ),
        }),
        Rule::Alert(AlertRule {
            name: "ServerQueueFull",
            expr: format!(
                "sum by ({server}) ({q})\n>= on ({server})\nsum by ({server}) ({l} > 0)",
                q = family.queue,
                l = family.queue_limit
            ),
            hold: Duration::ZERO,
            labels: labels(family, "critical", true),
            annotations: annotations(
                o,
                "ServerQueueFull",
                at("has a full queue ({{ $value | printf \"%.0f\" }} requests)"),
                "The server's queue is at its limit: further requests are refused at once."
                    .to_string(),
                limits_cause,
            ),
        }),
    ];
    if let Some(queue) = family.pool_queue {
        rules.push(Rule::Alert(AlertRule {
            name: "PoolQueueing",
            expr: format!("sum by ({pool}) ({queue}) > 0"),
            hold: o.saturation_for,
            labels: labels(family, "warning", true),
            annotations: annotations(
                o,
                "PoolQueueing",
                format!(
                    "pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}} has had {{{{ $value | printf \"%.0f\" }}}} request(s) waiting for any server"
                ),
                format!(
                    "Requests have waited with no server assigned for {}: every eligible server is at its limit.",
                    format_duration(o.saturation_for)
                ),
                format!(
                    "The load balancer's limits: the pool's servers together cannot take the traffic at their connection limits. Compare the request rate with its baseline: a surge is the traffic, a steady rate is too little capacity or a slow backend. {READ_AGAINST_RELOAD}"
                ),
            ),
        }));
    }
    let (label, current, limit) = family.frontend;
    let frontend_key = format!("job, instance, {label}");
    let frontend_ratio = format!(
        "sum by ({frontend_key}) ({current})\n/ on ({frontend_key})\nsum by ({frontend_key}) ({limit} > 0)"
    );
    let frontend_cause = format!(
        "The load balancer's limits: its frontend connection limit, not the backends, refuses or holds new clients. Compare the request rate with its baseline to tell a surge from a limit set too low. {READ_AGAINST_RELOAD}"
    );
    let frontend_labels = |severity| {
        let mut l = labels(family, severity, false);
        l.push(("frontend", format!("{{{{ $labels.{label} }}}}")));
        l
    };
    let frontend_summary = |what: &str| {
        format!("frontend {{{{ $labels.{label} }}}} on {{{{ $labels.instance }}}} {what}")
    };
    rules.push(Rule::Alert(AlertRule {
        name: "FrontendNearConnectionLimit",
        expr: format!("{frontend_ratio}\n>= {near}"),
        hold: o.saturation_for,
        labels: frontend_labels("warning"),
        annotations: annotations(
            o,
            "FrontendNearConnectionLimit",
            frontend_summary("is at {{ $value | humanizePercentage }} of its connection limit"),
            format!(
                "Client connections have stayed at or above {} of the frontend's limit for {}.",
                percent(near),
                format_duration(o.saturation_for)
            ),
            frontend_cause.clone(),
        ),
    }));
    rules.push(Rule::Alert(AlertRule {
        name: "FrontendAtConnectionLimit",
        expr: format!("{frontend_ratio}\n>= 1"),
        hold: Duration::ZERO,
        labels: frontend_labels("critical"),
        annotations: annotations(
            o,
            "FrontendAtConnectionLimit",
            frontend_summary("is at its connection limit"),
            "Every client connection slot of the frontend is taken: new clients wait or are refused."
                .to_string(),
            frontend_cause,
        ),
    }));
    if let Some((current, limit)) = family.process {
        let target = keys.target();
        let process_ratio = format!(
            "sum by ({target}) ({current})\n/ on ({target})\nsum by ({target}) ({limit} > 0)"
        );
        let cause = format!(
            "The load balancer's limits: its process-wide connection limit (global maxconn) holds every frontend back. {READ_AGAINST_RELOAD}"
        );
        let product = family.product;
        rules.push(Rule::Alert(AlertRule {
            name: "ProcessNearConnectionLimit",
            expr: format!("{process_ratio}\n>= {near}"),
            hold: o.saturation_for,
            labels: labels(family, "warning", false),
            annotations: annotations(
                o,
                "ProcessNearConnectionLimit",
                format!("{product} on {{{{ $labels.instance }}}} is at {{{{ $value | humanizePercentage }}}} of its process connection limit"),
                format!(
                    "Connections have stayed at or above {} of the process limit for {}.",
                    percent(near),
                    format_duration(o.saturation_for)
                ),
                cause.clone(),
            ),
        }));
        rules.push(Rule::Alert(AlertRule {
            name: "ProcessAtConnectionLimit",
            expr: format!("{process_ratio}\n>= 1"),
            hold: Duration::ZERO,
            labels: labels(family, "critical", false),
            annotations: annotations(
                o,
                "ProcessAtConnectionLimit",
                format!(
                    "{product} on {{{{ $labels.instance }}}} is at its process connection limit"
                ),
                "Every connection slot of the process is taken: new clients are not accepted."
                    .to_string(),
                cause,
            ),
        }));
    }
    rules
}

fn percent(fraction: f64) -> String {
    format!("{}%", (fraction * 100.0 * 100.0).round() / 100.0)
}

fn errors(family: &Family, o: &RulesOptions) -> Vec<Rule> {
    let keys = Keys { family };
    let (pool, server) = (keys.pool(), keys.server());
    let p = family.pool;
    let w = format_duration(o.window);
    let s = family.source;
    let server_responses = format!("ballast:{s}_server_responses:increase{w}");
    let server_ratio = format!("ballast:{s}_server_errors:ratio_{w}");
    let pool_responses = format!("ballast:{s}_pool_responses:increase{w}");
    let pool_ratio = format!("ballast:{s}_pool_errors:ratio_{w}");
    let mut rules = vec![
        record(
            &server_responses,
            format!(
                "sum by ({server}) (increase({}[{w}]))",
                family.server_responses
            ),
        ),
        record(
            &server_ratio,
            format!(
                "sum by ({server}) (increase({}[{w}]))\n/ on ({server})\n({server_responses} > 0)",
                family.server_errors
            ),
        ),
    ];
    match family.pool_responses {
        Some((all, errors)) => {
            rules.push(record(
                &pool_responses,
                format!("sum by ({pool}) (increase({all}[{w}]))"),
            ));
            rules.push(record(
                &pool_ratio,
                format!(
                    "sum by ({pool}) (increase({errors}[{w}]))\n/ on ({pool})\n({pool_responses} > 0)"
                ),
            ));
        }
        None => {
            rules.push(record(
                &pool_responses,
                format!("sum by ({pool}) ({server_responses})"),
            ));
            rules.push(record(
                &pool_ratio,
                format!(
                    "sum by ({pool}) (increase({}[{w}]))\n/ on ({pool})\n({pool_responses} > 0)",
                    family.server_errors
                ),
            ));
        }
    }
    let floor = o.min_volume;
    for (severity, threshold) in [("warning", o.error_warning), ("critical", o.error_critical)] {
        rules.push(Rule::Alert(AlertRule {
            name: "PoolErrorRate",
            expr: format!(
                "{pool_ratio} >= {threshold}\nand on ({pool}) ({pool_responses} >= {floor})"
            ),
            hold: o.errors_for,
            labels: labels(family, severity, true),
            annotations: annotations(
                o,
                "PoolErrorRate",
                format!(
                    "pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}} answers {{{{ $value | humanizePercentage }}}} of requests with 5xx"
                ),
                format!(
                    "Over the last {w}, {{{{ $value | humanizePercentage }}}} of the pool's responses were 5xx (or had no status), for {}.",
                    format_duration(o.errors_for)
                ),
                format!(
                    "One backend or the load balancer: if one server's 5xx ratio stands out (ServerErrorRate), that backend is the cause; if every server's is normal, the load balancer refuses requests itself (limits, no server up). {READ_AGAINST_RELOAD}"
                ),
            ),
        }));
        rules.push(Rule::Alert(AlertRule {
            name: "ServerErrorRate",
            expr: format!(
                "{server_ratio} >= {threshold}\nand on ({server}) ({server_responses} >= {floor})"
            ),
            hold: o.errors_for,
            labels: labels(family, severity, true),
            annotations: annotations(
                o,
                "ServerErrorRate",
                format!(
                    "{{{{ $labels.server }}}} of pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}} answers {{{{ $value | humanizePercentage }}}} of requests with 5xx"
                ),
                format!(
                    "Over the last {w}, {{{{ $value | humanizePercentage }}}} of this server's responses were 5xx (or had no status), for {}.",
                    format_duration(o.errors_for)
                ),
                format!(
                    "One backend: this server fails requests. If the other servers of the pool answer normally, it is not a shared dependency such as the database. {READ_AGAINST_RELOAD}"
                ),
            ),
        }));
    }
    rules.push(Rule::Alert(AlertRule {
        name: "PoolAllServersDown",
        expr: format!("sum by ({pool}) ({}) == 0", family.up),
        hold: Duration::ZERO,
        labels: labels(family, "critical", true),
        annotations: annotations(
            o,
            "PoolAllServersDown",
            format!("pool {{{{ $labels.{p} }}}} on {{{{ $labels.instance }}}} has no server up"),
            "No server of the pool is in rotation (down, failing checks or in maintenance): its requests fail."
                .to_string(),
            format!(
                "The backends or their health checks: every server of the pool is out. If they went down together, look for what they share (a deployment, a dependency, the check itself). {READ_AGAINST_RELOAD}"
            ),
        ),
    }));
    rules
}

fn changes(family: &Family, o: &RulesOptions) -> Vec<Rule> {
    let target = Keys { family }.target();
    let window = format_duration(o.reload_window);
    let (expr, summary) = match family.reload {
        Reload::StartTime(metric) => (
            format!("sum by ({target}) (changes({metric}[{window}])) > 0"),
            format!(
                "{} on {{{{ $labels.instance }}}} reloaded or restarted in the last {window}",
                family.product
            ),
        ),
        Reload::VersionInfo(metric) => (
            format!(
                "max by ({target}, version) ({metric})\nand on ({target})\n(count by ({target}) (count_over_time({metric}[{window}])) > 1)"
            ),
            format!(
                "{} on {{{{ $labels.instance }}}} loaded configuration {{{{ $labels.version }}}} in the last {window}",
                family.product
            ),
        ),
    };
    vec![Rule::Alert(AlertRule {
        name: "LoadBalancerReloaded",
        expr,
        hold: Duration::ZERO,
        labels: labels(family, "info", false),
        annotations: annotations(
            o,
            "LoadBalancerReloaded",
            summary,
            format!(
                "A new configuration or process took over on this instance within the last {window}. Alerts on its pools raised since then should be read against this change."
            ),
            "A configuration change or restart of the load balancer: not a fault by itself, the likely trigger of what follows it.".to_string(),
        ),
    })]
}
