//! `ballast watch` and `ballast rules` from the command line: what a new user meets first.

use std::process::Command;

fn ballast(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .output()
        .expect("run ballast");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreadable_source_is_refused_at_start_with_its_fix() {
    let (code, _, err) = ballast(&["watch", "haproxy:/nonexistent/admin.sock"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("stats socket"), "{err}");
    let (code, _, err) = ballast(&["watch", "localhost:9901"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown source kind `localhost`"), "{err}");
    let (code, _, err) = ballast(&["watch", "nginx:/var/log/nginx/access.log"]);
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");
    let (code, _, err) = ballast(&["watch", "ballast:127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("admin"), "{err}");
}

#[test]
fn the_nginx_log_format_is_printed_ready_to_paste() {
    let (code, out, _) = ballast(&["watch", "--nginx-log-format"]);
    assert_eq!(code, 0);
    let directives: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        directives
            .iter()
            .any(|l| l.starts_with("log_format ballast "))
    );
    assert!(directives.iter().any(|l| l.starts_with("access_log ")));
    for variable in [
        "$upstream_addr",
        "$upstream_status",
        "$upstream_response_time",
        "$msec",
        "$request_time",
        "$status",
    ] {
        assert!(out.contains(variable), "{variable} missing:\n{out}");
    }
}

#[test]
fn the_runbook_has_a_section_for_every_alert_the_rules_file_raises() {
    let (code, runbook, _) = ballast(&["rules", "runbook"]);
    assert_eq!(code, 0);
    let (code, rules, err) = ballast(&["rules", "prometheus"]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim_matches('"'))
        .collect();
    assert!(names.len() >= 10, "{rules}");
    for name in names {
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "{name} has no runbook section"
        );
    }
}

#[test]
fn bad_rule_options_are_refused_with_the_reason() {
    let (code, _, err) = ballast(&["rules", "prometheus", "--window", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a Prometheus duration"), "{err}");
    let (code, _, err) = ballast(&["rules", "prometheus", "--family", "envoy"]);
    assert_eq!(code, 2);
    assert!(err.contains("haproxy, ballast or both"), "{err}");
}
