//! The generated Prometheus rules: promtool checks them, unit-tests them on series that
//! reproduce an imbalance, a saturation and a reload (and a healthy pool that must stay
//! quiet), and a real Prometheus evaluates them against a real HAProxy's exporter.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ballast_guard::rules::{Families, RulesOptions, prometheus};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a temp file");
    path
}

/// Runs promtool with `args`; its output on failure.
fn promtool(args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() { Ok(text) } else { Err(text) }
}

#[test]
fn promtool_accepts_the_generated_rules_for_every_family_and_option() {
    if !common::peer_available("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let custom = RulesOptions {
        window: Duration::from_secs(90),
        skew_for: Duration::from_secs(300),
        warning: 1.3,
        critical: 1.8,
        min_volume: 500,
        concentration: false,
        runbook: "https://runbooks.example/ballast.md".into(),
        ..RulesOptions::default()
    };
    for (families, options) in [
        (Families::Both, RulesOptions::default()),
        (Families::Haproxy, RulesOptions::default()),
        (Families::Ballast, RulesOptions::default()),
        (Families::Both, custom.clone()),
    ] {
        let options = RulesOptions { families, ..options };
        options.validate().unwrap();
        let text = prometheus(&options);
        let path = write(dir.path(), "rules.yml", &text);
        let out = promtool(&["check".as_ref(), "rules".as_ref(), path.as_os_str()])
            .unwrap_or_else(|e| panic!("promtool check rules failed for {options:?}:\n{e}\n{text}"));
        assert!(out.contains("SUCCESS"), "{out}");
    }
    std::fs::write("/tmp/prom-rules-default.yml", prometheus(&RulesOptions::default())).ok();
}

/// The metric and label names of one family, as the fixtures write its series.
struct Names {
    source: &'static str,
    pool: &'static str,
    picks: &'static str,
    weight: &'static str,
    up: &'static str,
    sessions: &'static str,
    limit: &'static str,
    queue: &'static str,
    queue_limit: &'static str,
    /// Extra labels on alerts (HAProxy's copy `pool` from `proxy`).
    pool_copy: bool,
}

const HAPROXY: Names = Names {
    source: "haproxy",
    pool: "proxy",
    picks: "haproxy_server_loadbalanced_total",
    weight: "haproxy_server_weight",
    up: "haproxy_server_status{state=\"UP\",",
    sessions: "haproxy_server_current_sessions",
    limit: "haproxy_server_limit_sessions",
    queue: "haproxy_server_current_queue",
    queue_limit: "haproxy_server_queue_limit",
    pool_copy: true,
};

const BALLAST: Names = Names {
    source: "ballast",
    pool: "pool",
    picks: "ballast_requests_total",
    weight: "ballast_server_weight",
    up: "ballast_server_up{",
    sessions: "ballast_in_flight",
    limit: "ballast_server_max_connections",
    queue: "ballast_queue_depth",
    queue_limit: "ballast_server_max_queue",
    pool_copy: false,
};

/// The static text of an annotation of `alertname` in the generated rules (first found).
fn annotation(rules: &str, alertname: &str, key: &str) -> String {
    let mut in_alert = false;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            in_alert = name == format!("\"{alertname}\"");
        } else if in_alert && let Some(v) = t.strip_prefix(&format!("{key}: ")) {
            return v.to_string();
        }
    }
    panic!("no {key} for {alertname} in the rules");
}

/// One expected alert: labels (beyond the series' own) and the hand-written summary and,
/// where it carries figures, description.
fn expected(
    n: &Names,
    rules: &str,
    alertname: &str,
    severity: &str,
    series: &[(&str, &str)],
    summary: &str,
    description: Option<&str>,
) -> String {
    let mut labels = format!("severity: {severity}, source: {}", n.source);
    for (k, v) in series {
        labels += &format!(", {k}: {v}");
    }
    if n.pool_copy && let Some((_, pool)) = series.iter().find(|(k, _)| *k == n.pool) {
        labels += &format!(", pool: {pool}");
    }
    let description = match description {
        Some(d) => serde_json::to_string(d).unwrap(),
        None => annotation(rules, alertname, "description"),
    };
    format!(
        "      - exp_labels: {{{labels}}}\n        exp_annotations:\n          summary: {}\n          description: {description}\n          cause: {}\n          runbook: {}\n",
        serde_json::to_string(summary).unwrap(),
        annotation(rules, alertname, "cause"),
        annotation(rules, alertname, "runbook"),
    )
}

/// The promtool unit-test file for one family: (a) an imbalance, (d) a fair but noisy pool, a
/// low-traffic pool and another instance with the same pool name, all quiet; a pool whose
/// weights 1,1,8 are followed (not skewed, but concentrated); (b) saturation; (c) a reload.
fn unit_tests(n: &Names, rules: &str) -> String {
    let p = n.pool;
    let mut series = String::new();
    let mut add = |name: &str, labels: &str, values: &str| {
        let open = if name.ends_with('{') || name.ends_with(',') { "" } else { "{" };
        series += &format!("      - series: '{name}{open}{labels}}}'\n        values: '{values}'\n");
    };
    // Every 15s for 6 minutes. Per minute: app 280/60/60 (s1 takes 70% at weights 1,1,1),
    // fair 144/128/132, quiet 20/0/0 (under the floor), heavy 40/40/320 at weights 1,1,8.
    let pools: [(&str, &str, [u32; 3], [u32; 3]); 5] = [
        ("lb1", "app", [1, 1, 1], [70, 15, 15]),
        ("lb1", "fair", [1, 1, 1], [36, 32, 33]),
        ("lb1", "quiet", [1, 1, 1], [5, 0, 0]),
        ("lb1", "heavy", [1, 1, 8], [10, 10, 80]),
        ("lb2", "app", [1, 1, 1], [34, 33, 33]),
    ];
    for (instance, pool, weights, per_step) in pools {
        for (i, (w, step)) in weights.iter().zip(per_step).enumerate() {
            let l = format!("job=\"lb\",instance=\"{instance}\",{p}=\"{pool}\",server=\"s{}\"", i + 1);
            let picks_labels = if n.source == "ballast" { format!("{l},class=\"2xx\"") } else { l.clone() };
            add(n.picks, &picks_labels, &format!("0+{step}x24"));
            add(n.weight, &l, &format!("{w}x24"));
            add(n.up, &l, "1x24");
            add(n.sessions, &l, "0x24");
            add(n.queue, &l, "0x24");
        }
    }
    // Saturation on lb3/app: s1 unlimited, s2 at its limit, s3 with 3 queued (limit 50).
    for (server, sessions, limit, queue, qlimit) in [
        ("s1", "5x24", "NaN", "0x24", "0x24"),
        ("s2", "10x24", "10x24", "0x24", "0x24"),
        ("s3", "4x24", "10x24", "3x24", "50x24"),
    ] {
        let l = format!("job=\"lb\",instance=\"lb3\",{p}=\"app\",server=\"{server}\"");
        add(n.sessions, &l, sessions);
        if limit != "NaN" || n.source == "haproxy" {
            add(n.limit, &l, limit);
        }
        add(n.queue, &l, queue);
        add(n.queue_limit, &l, qlimit);
    }
    // A reload on lb1 at 2m; lb2 runs on.
    match n.source {
        "haproxy" => {
            add("haproxy_process_start_time_seconds", "job=\"lb\",instance=\"lb1\"", "1000x8 2000x16");
            add("haproxy_process_start_time_seconds", "job=\"lb\",instance=\"lb2\"", "1000x24");
        }
        _ => {
            add("ballast_config_info", "job=\"lb\",instance=\"lb1\",version=\"aaaa\"", "1x8 stale");
            add("ballast_config_info", "job=\"lb\",instance=\"lb1\",version=\"bbbb\"", "_x8 1x16");
            add("ballast_config_info", "job=\"lb\",instance=\"lb2\",version=\"aaaa\"", "1x24");
        }
    }
    let srv = |instance, pool, server| vec![("job", "lb"), ("instance", instance), (p, pool), ("server", server)];
    let skew = |severity| {
        expected(
            n, rules, "PoolSkewed", severity, &srv("lb1", "app", "s1"),
            "s1 takes 2.10× its weighted share of pool app on lb1",
            Some("In the last 1m it received 70% of the pool's 400 requests where its live weight promises 33.33%. A χ² test puts the spread beyond chance (p < 0.001)."),
        )
    };
    let concentrated = |severity, pool, server, value, share, sent| {
        expected(
            n, rules, "PoolConcentrated", severity, &srv("lb1", pool, server),
            &format!("{server} takes {value}× an even share of pool {pool} on lb1"),
            Some(&format!("In the last 1m it received {share} of the pool's {sent} requests where an even spread over the servers in rotation gives 33.33%. A χ² test puts the spread beyond chance (p < 0.001).")),
        )
    };
    let at_limit = expected(n, rules, "ServerSessionsAtLimit", "critical", &srv("lb3", "app", "s2"),
        "s2 of pool app on lb3 is at its connection limit", None);
    let near_limit = expected(n, rules, "ServerSessionsNearLimit", "warning", &srv("lb3", "app", "s2"),
        "s2 of pool app on lb3 is at 100% of its connection limit", None);
    let queued = expected(n, rules, "ServerQueued", "warning", &srv("lb3", "app", "s3"),
        "s3 of pool app on lb3 has had requests queued for 3 slot(s)", None);
    let (product, reload_labels, reload_summary) = match n.source {
        "haproxy" => ("HAProxy", vec![("job", "lb"), ("instance", "lb1")], "HAProxy on lb1 reloaded or restarted in the last 15m".to_string()),
        _ => ("ballast", vec![("job", "lb"), ("instance", "lb1"), ("version", "bbbb")], "ballast on lb1 loaded configuration bbbb in the last 15m".to_string()),
    };
    let _ = product;
    let reloaded = expected(n, rules, "LoadBalancerReloaded", "info", &reload_labels, &reload_summary, None);
    let test = |at: &str, alertname: &str, alerts: &[String]| {
        let body = if alerts.is_empty() { "    exp_alerts: []\n".to_string() } else { format!("    exp_alerts:\n{}", alerts.concat()) };
        format!("  - eval_time: {at}\n    alertname: {alertname}\n{body}")
    };
    let alert_tests = [
        // Held for 3m from the first window: pending at 2m, firing at 5m.
        test("2m", "PoolSkewed", &[]),
        test("5m", "PoolSkewed", &[skew("warning"), skew("critical")]),
        test("5m", "PoolConcentrated", &[
            concentrated("warning", "app", "s1", "2.10", "70%", "400"),
            concentrated("critical", "app", "s1", "2.10", "70%", "400"),
            concentrated("warning", "heavy", "s3", "2.40", "80%", "400"),
            concentrated("critical", "heavy", "s3", "2.40", "80%", "400"),
        ]),
        test("30s", "ServerSessionsAtLimit", std::slice::from_ref(&at_limit)),
        test("1m", "ServerSessionsNearLimit", &[]),
        test("3m", "ServerSessionsNearLimit", &[near_limit]),
        test("1m", "ServerQueued", &[]),
        test("3m", "ServerQueued", &[queued]),
        test("3m", "ServerQueueFull", &[]),
        test("1m", "LoadBalancerReloaded", &[]),
        test("5m", "LoadBalancerReloaded", &[reloaded]),
        test("5m", "Pool5xxRatioHigh", &[]),
        test("5m", "PoolAllServersDown", &[]),
    ]
    .concat();
    format!(
        "rule_files: [rules.yml]\nevaluation_interval: 15s\ntests:\n- interval: 15s\n  input_series:\n{series}  alert_rule_test:\n{alert_tests}"
    )
}

#[test]
fn promtool_unit_tests_reproduce_imbalance_saturation_and_reload_for_both_families() {
    if !common::peer_available("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for n in [&HAPROXY, &BALLAST] {
        let families = if n.source == "haproxy" { Families::Haproxy } else { Families::Ballast };
        let rules = prometheus(&RulesOptions { families, ..RulesOptions::default() });
        write(dir.path(), "rules.yml", &rules);
        let tests = unit_tests(n, &rules);
        let path = write(dir.path(), &format!("{}_test.yml", n.source), &tests);
        if let Err(e) = promtool(&["test".as_ref(), "rules".as_ref(), path.as_os_str()]) {
            std::fs::write(format!("/tmp/prom-{}-test.yml", n.source), &tests).ok();
            panic!("promtool test rules failed for {}:\n{e}", n.source);
        }
    }
}
