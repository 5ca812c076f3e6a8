//! The generated Prometheus rules: promtool checks them, unit-tests them on series that
//! reproduce an imbalance, a saturation and a reload (and a healthy pool that must stay
//! quiet), and a real Prometheus evaluates them against a real HAProxy's exporter.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ballast_core::sample::Promise;
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
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
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
        promises: [
            ("lc", Promise::Concurrency),
            ("by.key", Promise::KeyDependent),
            ("first", Promise::FillInOrder),
            ("rr", Promise::RequestShares),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect(),
        ..RulesOptions::default()
    };
    for (families, options) in [
        (Families::Both, RulesOptions::default()),
        (Families::Haproxy, RulesOptions::default()),
        (Families::Ballast, RulesOptions::default()),
        (Families::Both, custom.clone()),
    ] {
        let options = RulesOptions {
            families,
            ..options
        };
        options.validate().unwrap();
        let text = prometheus(&options);
        let path = write(dir.path(), "rules.yml", &text);
        let out =
            promtool(&["check".as_ref(), "rules".as_ref(), path.as_os_str()]).unwrap_or_else(|e| {
                panic!("promtool check rules failed for {options:?}:\n{e}\n{text}")
            });
        assert!(out.contains("SUCCESS"), "{out}");
    }
    std::fs::write(
        "/tmp/prom-rules-default.yml",
        prometheus(&RulesOptions::default()),
    )
    .ok();
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
    if n.pool_copy
        && let Some((_, pool)) = series.iter().find(|(k, _)| *k == n.pool)
    {
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
        let open = if name.ends_with('{') || name.ends_with(',') {
            ""
        } else {
            "{"
        };
        series +=
            &format!("      - series: '{name}{open}{labels}}}'\n        values: '{values}'\n");
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
            let l = format!(
                "job=\"lb\",instance=\"{instance}\",{p}=\"{pool}\",server=\"s{}\"",
                i + 1
            );
            let picks_labels = if n.source == "ballast" {
                format!("{l},class=\"2xx\"")
            } else {
                l.clone()
            };
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
            add(
                "haproxy_process_start_time_seconds",
                "job=\"lb\",instance=\"lb1\"",
                "1000x8 2000x16",
            );
            add(
                "haproxy_process_start_time_seconds",
                "job=\"lb\",instance=\"lb2\"",
                "1000x24",
            );
        }
        _ => {
            add(
                "ballast_config_info",
                "job=\"lb\",instance=\"lb1\",version=\"aaaa\"",
                "1x8 stale",
            );
            add(
                "ballast_config_info",
                "job=\"lb\",instance=\"lb1\",version=\"bbbb\"",
                "_x8 1x16",
            );
            add(
                "ballast_config_info",
                "job=\"lb\",instance=\"lb2\",version=\"aaaa\"",
                "1x24",
            );
        }
    }
    let srv = |instance, pool, server| {
        vec![
            ("job", "lb"),
            ("instance", instance),
            (p, pool),
            ("server", server),
        ]
    };
    let skew = |severity| {
        expected(
            n,
            rules,
            "PoolSkewed",
            severity,
            &srv("lb1", "app", "s1"),
            "s1 takes 2.10× its weighted share of pool app on lb1",
            Some(
                "In the last 1m it received 70% of the pool's 400 requests where its live weight promises 33.33%. A χ² test puts the spread beyond chance (p < 0.001).",
            ),
        )
    };
    let concentrated = |severity, pool, server, value, share, sent| {
        expected(
            n,
            rules,
            "PoolConcentrated",
            severity,
            &srv("lb1", pool, server),
            &format!("{server} takes {value}× an even share of pool {pool} on lb1"),
            Some(&format!(
                "In the last 1m it received {share} of the pool's {sent} requests where an even spread over the servers in rotation gives 33.33%. A χ² test puts the spread beyond chance (p < 0.001)."
            )),
        )
    };
    let at_limit = expected(
        n,
        rules,
        "ServerAtConnectionLimit",
        "critical",
        &srv("lb3", "app", "s2"),
        "s2 of pool app on lb3 is at its connection limit",
        None,
    );
    let near_limit = expected(
        n,
        rules,
        "ServerNearConnectionLimit",
        "warning",
        &srv("lb3", "app", "s2"),
        "s2 of pool app on lb3 is at 100% of its connection limit",
        None,
    );
    let queued = expected(
        n,
        rules,
        "ServerQueueing",
        "warning",
        &srv("lb3", "app", "s3"),
        "s3 of pool app on lb3 has had requests queued for 3 slot(s)",
        None,
    );
    let (product, reload_labels, reload_summary) = match n.source {
        "haproxy" => (
            "HAProxy",
            vec![("job", "lb"), ("instance", "lb1")],
            "HAProxy on lb1 reloaded or restarted in the last 15m".to_string(),
        ),
        _ => (
            "ballast",
            vec![("job", "lb"), ("instance", "lb1"), ("version", "bbbb")],
            "ballast on lb1 loaded configuration bbbb in the last 15m".to_string(),
        ),
    };
    let _ = product;
    let reloaded = expected(
        n,
        rules,
        "LoadBalancerReloaded",
        "info",
        &reload_labels,
        &reload_summary,
        None,
    );
    let test = |at: &str, alertname: &str, alerts: &[String]| {
        let body = if alerts.is_empty() {
            "    exp_alerts: []\n".to_string()
        } else {
            format!("    exp_alerts:\n{}", alerts.concat())
        };
        format!("  - eval_time: {at}\n    alertname: {alertname}\n{body}")
    };
    let alert_tests = [
        // Held for 3m from the first window: pending at 2m, firing at 5m.
        test("2m", "PoolSkewed", &[]),
        test("5m", "PoolSkewed", &[skew("warning"), skew("critical")]),
        test(
            "5m",
            "PoolConcentrated",
            &[
                concentrated("warning", "app", "s1", "2.10", "70%", "400"),
                concentrated("critical", "app", "s1", "2.10", "70%", "400"),
                concentrated("warning", "heavy", "s3", "2.40", "80%", "400"),
                concentrated("critical", "heavy", "s3", "2.40", "80%", "400"),
            ],
        ),
        test(
            "30s",
            "ServerAtConnectionLimit",
            std::slice::from_ref(&at_limit),
        ),
        test("1m", "ServerNearConnectionLimit", &[]),
        test("3m", "ServerNearConnectionLimit", &[near_limit]),
        test("1m", "ServerQueueing", &[]),
        test("3m", "ServerQueueing", &[queued]),
        test("3m", "ServerQueueFull", &[]),
        test("1m", "LoadBalancerReloaded", &[]),
        test("5m", "LoadBalancerReloaded", &[reloaded]),
        test("5m", "PoolErrorRate", &[]),
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
        let families = if n.source == "haproxy" {
            Families::Haproxy
        } else {
            Families::Ballast
        };
        let rules = prometheus(&RulesOptions {
            families,
            ..RulesOptions::default()
        });
        write(dir.path(), "rules.yml", &rules);
        let tests = unit_tests(n, &rules);
        let path = write(dir.path(), &format!("{}_test.yml", n.source), &tests);
        if let Err(e) = promtool(&["test".as_ref(), "rules".as_ref(), path.as_os_str()]) {
            std::fs::write(format!("/tmp/prom-{}-test.yml", n.source), &tests).ok();
            panic!("promtool test rules failed for {}:\n{e}", n.source);
        }
    }
}

/// The static text of the `nth` (from 0) alert rule named `alertname`'s annotation `key`.
fn nth_annotation(rules: &str, alertname: &str, key: &str, nth: usize) -> String {
    let mut count = 0;
    let mut in_wanted = false;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            in_wanted = name == format!("\"{alertname}\"") && {
                count += 1;
                count == nth + 1
            };
        } else if in_wanted && let Some(v) = t.strip_prefix(&format!("{key}: ")) {
            return v.to_string();
        }
    }
    panic!("no {key} for the alert {alertname} number {nth} in the rules");
}

/// Pools judged by what their algorithm promises: least-connections on requests in flight (a
/// fast server taking most requests is correct there; one holding most in flight is not),
/// hashing in a band 1.25× wider, `first` not at all, and none of them on PoolConcentrated.
#[test]
fn promtool_unit_tests_judge_each_pool_on_what_its_algorithm_promises() {
    if !common::peer_available("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for n in [&HAPROXY, &BALLAST] {
        let mut options = RulesOptions {
            families: if n.source == "haproxy" {
                Families::Haproxy
            } else {
                Families::Ballast
            },
            ..RulesOptions::default()
        };
        // The pools as a user's HAProxy configuration names them: `--config` reads this.
        let mut cfg = String::from(
            "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\nfrontend web\n    bind 127.0.0.1:8080\n    default_backend rr\n",
        );
        for (pool, balance) in [
            ("lc", "leastconn"),
            ("lcskew", "leastconn"),
            ("hashed", "hdr(X-User)"),
            ("hashed2", "uri"),
            ("first", "first"),
            ("rr", "roundrobin"),
        ] {
            cfg += &format!(
                "\nbackend {pool}\n    balance {balance}\n    server s1 127.0.0.1:9001\n    server s2 127.0.0.1:9002\n    server s3 127.0.0.1:9003\n"
            );
        }
        // A round-robin pool with two idle backups: the exporter does not mark them, so only
        // the configuration says they are expected to take nothing while s1 and s2 serve.
        cfg += "\nbackend bk\n    balance roundrobin\n    server s1 127.0.0.1:9001\n    server s2 127.0.0.1:9002\n    server s3 127.0.0.1:9003 backup\n    server s4 127.0.0.1:9004 backup\n";
        let cfg_path = write(dir.path(), "haproxy.cfg", &cfg);
        let config = ballast_import::import_file(&cfg_path, &ballast_import::Options::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .loaded
            .config;
        assert!(options.learn_promises(&config).is_empty());
        assert_eq!(options.promises["lc"], Promise::Concurrency);
        assert_eq!(options.promises["hashed2"], Promise::KeyDependent);
        assert_eq!(options.promises["first"], Promise::FillInOrder);
        assert_eq!(options.promises["rr"], Promise::RequestShares);
        assert_eq!(
            options.backups["bk"].iter().collect::<Vec<_>>(),
            ["s3", "s4"],
            "the backups learnt from the configuration"
        );
        let rules = prometheus(&options);
        write(dir.path(), "rules.yml", &rules);
        let p = n.pool;
        let mut series = String::new();
        let mut add = |name: &str, labels: &str, values: &str| {
            let open = if name.ends_with('{') || name.ends_with(',') {
                ""
            } else {
                "{"
            };
            series +=
                &format!("      - series: '{name}{open}{labels}}}'\n        values: '{values}'\n");
        };
        // Per 15 s step: requests picked, then sessions held, per server at weights 1,1,1.
        let pools: [(&str, [u32; 3], [u32; 3]); 6] = [
            ("lc", [70, 15, 15], [6, 6, 6]),
            ("lcskew", [34, 33, 33], [30, 3, 3]),
            ("hashed", [50, 25, 25], [0, 0, 0]),
            ("hashed2", [80, 10, 10], [0, 0, 0]),
            ("first", [100, 0, 0], [0, 0, 0]),
            ("rr", [34, 33, 33], [0, 0, 0]),
        ];
        // The backup pool, on HAProxy's exporter (ballast's own metrics need no list): its
        // primaries split the traffic evenly, its backups idle (against all four servers, s1
        // and s2 would take 2× their share and PoolSkewed and PoolConcentrated would fire).
        let haproxy = n.source == "haproxy";
        assert_eq!(rules.contains("ballast:haproxy_server_backup"), haproxy);
        let backup_pool: (&str, [u32; 4], [u32; 4]) = ("bk", [50, 50, 0, 0], [0, 0, 0, 0]);
        let pools = pools
            .iter()
            .map(|(pool, picks, held)| (*pool, picks.to_vec(), held.to_vec()))
            .chain(haproxy.then(|| {
                (
                    backup_pool.0,
                    backup_pool.1.to_vec(),
                    backup_pool.2.to_vec(),
                )
            }));
        for (pool, picks, sessions) in pools {
            for (i, (step, held)) in picks.iter().zip(sessions).enumerate() {
                let l = format!(
                    "job=\"lb\",instance=\"lb1\",{p}=\"{pool}\",server=\"s{}\"",
                    i + 1
                );
                let picks_labels = if n.source == "ballast" {
                    format!("{l},class=\"2xx\"")
                } else {
                    l.clone()
                };
                add(n.picks, &picks_labels, &format!("0+{step}x24"));
                add(n.weight, &l, "1x24");
                add(n.up, &l, "1x24");
                add(n.sessions, &l, &format!("{held}x24"));
                add(n.queue, &l, "0x24");
            }
        }
        let labels = |pool: &str, severity: &str, judged_on: &str| {
            let mut l = format!(
                "severity: {severity}, source: {}, judged_on: {judged_on}, job: lb, instance: lb1, {p}: {pool}, server: s1",
                n.source
            );
            if n.pool_copy {
                l += &format!(", pool: {pool}");
            }
            l
        };
        let alert = |pool: &str,
                     severity: &str,
                     judged_on: &str,
                     summary: String,
                     description: &str,
                     nth| {
            format!(
                "      - exp_labels: {{{}}}\n        exp_annotations:\n          summary: {}\n          description: {}\n          cause: {}\n          runbook: {}\n",
                labels(pool, severity, judged_on),
                serde_json::to_string(&summary).unwrap(),
                serde_json::to_string(description).unwrap(),
                nth_annotation(&rules, "PoolSkewed", "cause", nth),
                nth_annotation(&rules, "PoolSkewed", "runbook", nth),
            )
        };
        let held = |severity| {
            alert(
                "lcskew",
                severity,
                "requests_in_flight",
                "s1 holds 2.50× its weighted share of the requests in flight of pool lcskew on lb1"
                    .into(),
                "In the last 1m it held 83.33% of the pool's requests in flight where its live weight promises 33.33%. The pool balances on connections, so requests in flight are what it promises to spread; its share of requests is information only.",
                4,
            )
        };
        let hashed = alert(
            "hashed2",
            "warning",
            "requests_by_key",
            "s1 takes 2.40× its weighted share of pool hashed2 on lb1".into(),
            "In the last 1m it received 80% of the pool's 400 requests where its live weight promises 33.33%. A χ² test puts the spread beyond chance (p < 0.001). The pool hashes, so its shares follow the keys: it is judged in a band 1.25× wider.",
            2,
        );
        let tests = format!(
            "rule_files: [rules.yml]\nevaluation_interval: 15s\ntests:\n- interval: 15s\n  input_series:\n{series}  alert_rule_test:\n  - eval_time: 5m\n    alertname: PoolSkewed\n    exp_alerts:\n{}{}{}  - eval_time: 5m\n    alertname: PoolConcentrated\n    exp_alerts: []\n",
            held("warning"),
            held("critical"),
            hashed
        );
        let path = write(
            dir.path(),
            &format!("{}_promise_test.yml", n.source),
            &tests,
        );
        if let Err(e) = promtool(&["test".as_ref(), "rules".as_ref(), path.as_os_str()]) {
            std::fs::write(format!("/tmp/prom-{}-promise-test.yml", n.source), &tests).ok();
            std::fs::write(format!("/tmp/prom-{}-promise-rules.yml", n.source), &rules).ok();
            panic!("promtool test rules failed for {}:\n{e}", n.source);
        }
    }
}

/// A JSON answer from Prometheus. Go chunks larger bodies, and the shared `http_get` returns
/// the body as sent, so the chunks are joined here.
fn get_json(addr: std::net::SocketAddr, path: &str) -> Option<serde_json::Value> {
    let (status, body) = common::http_get(addr, path);
    if status != 200 {
        return None;
    }
    if let Ok(doc) = serde_json::from_str(&body) {
        return Some(doc);
    }
    let mut joined = String::new();
    let mut rest = body.as_str();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            break;
        }
        joined.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
    serde_json::from_str(&joined).ok()
}

/// Polls Prometheus's `/api/v1/alerts` for a firing alert matching `wanted`.
fn firing(
    prometheus: std::net::SocketAddr,
    wanted: &dyn Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let doc = get_json(prometheus, "/api/v1/alerts")?;
    doc["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["state"] == "firing" && wanted(a))
        .cloned()
}

#[test]
fn a_real_prometheus_fires_the_skew_alerts_on_a_real_haproxy_exporter() {
    if !common::peer_available("prometheus") || !common::peer_available("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weighted = [
        common::Backend::start("w1"),
        common::Backend::start("w2"),
        common::Backend::start("w3"),
    ];
    let hashed = [
        common::Backend::start("h1"),
        common::Backend::start("h2"),
        common::Backend::start("h3"),
    ];
    let (exporter_port, web_port, prometheus_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let haproxy_cfg = format!(
        "global\n  maxconn 500\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend stats\n  bind 127.0.0.1:{exporter_port}\n  http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         frontend web\n  bind 127.0.0.1:{web_port}\n  use_backend hashed if {{ path_beg /h }}\n  default_backend weighted\n\
         backend weighted\n  balance roundrobin\n  server w1 {} weight 1\n  server w2 {} weight 1\n  server w3 {} weight 8\n\
         backend hashed\n  balance uri\n  server h1 {} weight 1\n  server h2 {} weight 1\n  server h3 {} weight 1\n",
        weighted[0].addr,
        weighted[1].addr,
        weighted[2].addr,
        hashed[0].addr,
        hashed[1].addr,
        hashed[2].addr,
    );
    let haproxy_path = write(dir.path(), "haproxy.cfg", &haproxy_cfg);
    let mut haproxy = Command::new("haproxy");
    haproxy.arg("-db").arg("-f").arg(&haproxy_path);
    let _haproxy = common::PeerGroup::spawn(haproxy);
    let web: std::net::SocketAddr = format!("127.0.0.1:{web_port}").parse().unwrap();
    assert!(
        common::wait_for_port(web, Duration::from_secs(5)),
        "haproxy did not start"
    );

    // A short window and short `for`s, so the test runs in seconds.
    let options = RulesOptions {
        families: Families::Haproxy,
        window: Duration::from_secs(10),
        skew_for: Duration::from_secs(3),
        min_volume: 50,
        ..RulesOptions::default()
    };
    write(dir.path(), "rules.yml", &prometheus(&options));
    let prometheus_cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: haproxy\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
    );
    let prometheus_path = write(dir.path(), "prometheus.yml", &prometheus_cfg);
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", prometheus_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"));
    let _prometheus = common::PeerGroup::spawn(command);
    let prometheus_addr: std::net::SocketAddr =
        format!("127.0.0.1:{prometheus_port}").parse().unwrap();
    assert!(
        common::wait_for_port(prometheus_addr, Duration::from_secs(10)),
        "prometheus did not start"
    );

    // Traffic: about 100 requests a second, alternating between the pools, for at most 35 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let traffic = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(35);
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed)
            && std::time::Instant::now() < deadline
        {
            let path = if sent.is_multiple_of(2) {
                "/"
            } else {
                "/h/one-key"
            };
            let (status, _) = common::http_get(web, path);
            assert_eq!(status, 200, "haproxy answered {status}");
            sent += 1;
            std::thread::sleep(Duration::from_millis(8));
        }
        sent
    });
    let started = std::time::Instant::now();
    let concentrated = |a: &serde_json::Value| {
        a["labels"]["alertname"] == "PoolConcentrated" && a["labels"]["pool"] == "weighted"
    };
    let skewed = |a: &serde_json::Value| {
        a["labels"]["alertname"] == "PoolSkewed" && a["labels"]["pool"] == "hashed"
    };
    let (mut heavy, mut hot, mut heavy_at, mut hot_at) = (None, None, None, None);
    while started.elapsed() < Duration::from_secs(35) && (heavy.is_none() || hot.is_none()) {
        if heavy.is_none()
            && let Some(a) = firing(prometheus_addr, &concentrated)
        {
            heavy_at = Some(started.elapsed());
            heavy = Some(a);
        }
        if hot.is_none()
            && let Some(a) = firing(prometheus_addr, &skewed)
        {
            hot_at = Some(started.elapsed());
            hot = Some(a);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The weighted pool follows its weights: never skewed against them.
    let wrongly_skewed = firing(prometheus_addr, &|a| {
        a["labels"]["alertname"] == "PoolSkewed" && a["labels"]["pool"] == "weighted"
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.join().expect("the traffic thread");
    let query = |q: &str| get_json(prometheus_addr, &format!("/api/v1/query?query={q}"));
    if heavy.is_none() || hot.is_none() {
        for q in [
            "ballast:haproxy_pool_peak_ratio:even_10s",
            "ballast:haproxy_pool_skew_significant:even_10s",
            "ballast:haproxy_pool_chi2:even_10s",
            "ballast:haproxy_pool_sent:even_10s",
            "ballast:haproxy_server_in_rotation:even",
            "ALERTS",
        ] {
            eprintln!("{q}: {:?}", query(q));
        }
    }
    let heavy = heavy.unwrap_or_else(|| {
        panic!("PoolConcentrated never fired for pool weighted ({sent} requests sent)")
    });
    let hot = hot
        .unwrap_or_else(|| panic!("PoolSkewed never fired for pool hashed ({sent} requests sent)"));
    eprintln!(
        "PoolConcentrated firing after {:?} ({}), PoolSkewed after {:?} ({}), {sent} requests",
        heavy_at.unwrap(),
        heavy["labels"],
        hot_at.unwrap(),
        hot["labels"]
    );
    assert_eq!(heavy["labels"]["server"], "w3", "{heavy}");
    assert_eq!(heavy["labels"]["source"], "haproxy");
    assert_eq!(
        heavy["labels"]["instance"],
        format!("127.0.0.1:{exporter_port}")
    );
    // Hashing one URI sends everything to one server: the one that served the most.
    let busiest = hashed
        .iter()
        .max_by_key(|b| b.served.load(std::sync::atomic::Ordering::Relaxed))
        .unwrap();
    assert_eq!(hot["labels"]["server"], busiest.name.as_str(), "{hot}");
    assert!(
        wrongly_skewed.is_none(),
        "a pool that follows its weights is not skewed: {wrongly_skewed:?}"
    );
    let summary = hot["annotations"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.starts_with(&format!("{} takes 3.00×", busiest.name)),
        "{summary}"
    );
}
