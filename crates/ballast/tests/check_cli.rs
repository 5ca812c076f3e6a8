//! `ballast check` end to end: planted faults are found at their line, good examples pass,
//! bad input exits 2 with a located diagnostic, output formats keep their contracts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ballast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run ballast")
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn json_findings(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v["findings"].as_array().expect("findings array").clone()
}

#[test]
fn every_planted_fault_is_found_at_its_line() {
    let files = fixtures("faults");
    assert!(
        files.len() >= 25,
        "expected a fixture per rule, found {}",
        files.len()
    );
    let mut rules_covered = std::collections::HashSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rule = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("`# expect: RULE` header")
            .trim();
        let line = text
            .lines()
            .position(|l| l.contains("# FAULT"))
            .expect("a `# FAULT` marker")
            + 1;
        let path = file.to_str().unwrap();
        let out = ballast(&["check", "--format", "json", path]);
        let findings = json_findings(&out);
        let hit = findings
            .iter()
            .find(|f| f["rule"] == rule && f["line"] == line);
        assert!(
            hit.is_some(),
            "{}: expected {rule} at line {line}, got {findings:#?}",
            file.display()
        );
        let hit = hit.unwrap();
        assert!(hit["column"].as_u64().unwrap() >= 1);
        assert!(!hit["fix"].as_str().unwrap().is_empty());
        assert_eq!(hit["file"], path);
        // One fault each: no other rule reaches error level.
        let others: Vec<_> = findings
            .iter()
            .filter(|f| f["rule"] != rule && f["severity"] == "error")
            .collect();
        assert!(
            others.is_empty(),
            "{}: unexpected errors {others:#?}",
            file.display()
        );
        let is_error = hit["severity"] == "error";
        assert_eq!(
            out.status.code(),
            Some(i32::from(is_error)),
            "{}: exit code",
            file.display()
        );
        let strict = ballast(&["check", "--deny", "info", path]);
        assert_eq!(
            strict.status.code(),
            Some(1),
            "{}: --deny info must fail",
            file.display()
        );
        rules_covered.insert(rule.to_string());
    }
    let listed: Value =
        serde_json::from_slice(&ballast(&["check", "--list-rules", "--format", "json"]).stdout)
            .unwrap();
    // Rules over HAProxy and nginx files have their own corpus (ballast-check's tests).
    for r in listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["applies_to"] == "ballast")
    {
        let id = r["id"].as_str().unwrap();
        assert!(
            rules_covered.contains(id),
            "rule {id} has no planted-fault fixture"
        );
    }
}

#[test]
fn good_configurations_have_no_findings_at_error_level() {
    let mut files =
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/good-base.toml")];
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for e in std::fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    assert!(files.len() >= 4);
    for file in files {
        let out = ballast(&["check", "--format", "json", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        let errors: Vec<_> = json_findings(&out)
            .into_iter()
            .filter(|f| f["severity"] == "error")
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
    let base = ballast(&["check", "--deny", "info", "tests/fixtures/good-base.toml"]);
    assert_eq!(
        base.status.code(),
        Some(0),
        "the clean base has no findings at all"
    );
}

#[test]
fn bad_input_exits_2_with_a_located_diagnostic_and_never_panics() {
    // (file, words the message must contain, line the snippet must point at)
    let expect: &[(&str, &str, Option<usize>)] = &[
        ("absurd-number.toml", "expected u32", Some(21)),
        ("bad-address.toml", "is not HOST:PORT", Some(26)),
        (
            "bad-algorithm.toml",
            "unknown variant `round-robbin`",
            Some(12),
        ),
        ("bad-duration.toml", "is not a duration", Some(15)),
        ("bad-factor.toml", "must be a number above 1.0", Some(13)),
        ("bad-simulate.toml", "arrival rate -3", Some(37)),
        ("duplicate-pool.toml", "duplicate key", Some(36)),
        ("duplicate-server-name.toml", "appears twice", Some(25)),
        ("empty.toml", "is empty", None),
        (
            "header-limit-too-small.toml",
            "must be between 8,192",
            Some(10),
        ),
        ("huge-weight.toml", "above the maximum", Some(23)),
        (
            "missing-pool.toml",
            "pool `apps`, which does not exist",
            Some(9),
        ),
        ("negative-number.toml", "expected u32", Some(21)),
        ("no-servers.toml", "has no servers", Some(11)),
        ("non-utf8.toml", "is not UTF-8", Some(1)),
        ("not-toml.toml", "expected `=`", Some(1)),
        ("simulate-unknown-server.toml", "server `zz`", Some(38)),
        ("truncated-string.toml", "invalid basic string", Some(2)),
        ("truncated.toml", "expected `=`", Some(21)),
        ("unitless-duration.toml", "has no unit", Some(15)),
        ("unknown-key.toml", "unknown field `max_queeu`", Some(22)),
        ("whitespace-only.toml", "is empty", None),
        ("wrong-type.toml", "expected u32", Some(8)),
    ];
    let files = fixtures("invalid");
    assert_eq!(
        files.len(),
        expect.len(),
        "every invalid fixture has an expectation"
    );
    for (name, words, line) in expect {
        let path = format!("tests/fixtures/invalid/{name}");
        for format in ["text", "json", "sarif"] {
            let out = ballast(&["check", "--format", format, &path]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name}: {err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(
                err.contains("error:") && err.contains(words),
                "{name}: expected `{words}` in {err}"
            );
            assert!(
                err.contains("help:"),
                "{name}: every error says how to fix it: {err}"
            );
            if let Some(line) = line {
                assert!(
                    err.contains(&format!("{name}:{line}:")),
                    "{name}: expected line {line} in {err}"
                );
            }
        }
        let sim = ballast(&["simulate", "-q", &path]);
        assert_eq!(sim.status.code(), Some(2), "simulate {name}");
    }
    let missing = ballast(&["check", "tests/fixtures/does-not-exist.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn one_unreadable_file_among_good_ones_still_exits_2_and_reports_the_rest() {
    let out = ballast(&[
        "check",
        "--format",
        "json",
        "tests/fixtures/faults/lim-101-capacity-below-listener.toml",
        "tests/fixtures/invalid/empty.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(json_findings(&out).iter().any(|f| f["rule"] == "LIM-101"));
}

#[test]
fn json_findings_keep_the_contract_shape() {
    let out = ballast(&[
        "check",
        "--format",
        "json",
        "tests/fixtures/faults/sec-101-admin-exposed.toml",
    ]);
    let findings = json_findings(&out);
    assert!(!findings.is_empty());
    for f in findings {
        let mut keys: Vec<_> = f.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "column", "file", "fix", "line", "message", "rule", "severity"
            ]
        );
        assert!(f["line"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn sarif_is_2_1_0_with_rules_and_located_results() {
    let out = ballast(&[
        "check",
        "--format",
        "sarif",
        "tests/fixtures/faults/tmo-102-header-read-disabled.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.len() >= 25);
    let result = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "TMO-102")
        .expect("TMO-102 result");
    assert_eq!(result["level"], "error");
    let index = result["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[index]["id"], "TMO-102");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert!(region["startLine"].as_u64().unwrap() >= 1);
}

#[test]
fn explain_and_list_rules() {
    let out = ballast(&["check", "--explain", "LIM-102"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("capacity-n-minus-one") && text.contains("Source:"),
        "{text}"
    );
    let by_name = ballast(&["check", "--explain", "capacity-n-minus-one"]);
    assert_eq!(by_name.stdout, out.stdout);
    let unknown = ballast(&["check", "--explain", "NOPE-1"]);
    assert_eq!(unknown.status.code(), Some(2));
    let list = String::from_utf8_lossy(&ballast(&["check", "--list-rules"]).stdout).into_owned();
    assert!(list.lines().count() >= 25);
}

#[test]
fn docs_rules_md_is_generated_from_the_catalogue() {
    let generated = ballast(&["check", "--list-rules", "--format", "markdown"]).stdout;
    let committed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md"))
            .expect("docs/rules.md");
    assert!(
        generated == committed,
        "docs/rules.md is stale: run `cargo run -q -- check --list-rules --format markdown > docs/rules.md`"
    );
}

#[test]
fn text_groups_notes_of_one_directive_and_json_keeps_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.cfg");
    std::fs::write(
        &path,
        "defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind :80
    default_backend a
    use_backend b if { path_beg /b }
    use_backend c if { path_beg /c }
    use_backend a if { path_beg /a }
backend a
    server a1 10.0.0.1:80
backend b
    server b1 10.0.0.2:80
backend c
    server c1 10.0.0.3:80
",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let text = String::from_utf8_lossy(&ballast(&["check", p]).stdout).to_string();
    assert!(
        text.contains("`use_backend` is kept but not modelled on 3 lines (9, 10, 11)"),
        "{text}"
    );
    assert_eq!(
        text.matches("info[IMPORT]: `use_backend").count(),
        1,
        "{text}"
    );
    let json = json_findings(&ballast(&["check", "--format", "json", p]));
    let lines: Vec<u64> = json
        .iter()
        .filter(|f| {
            f["rule"] == "IMPORT" && f["message"].as_str().unwrap().starts_with("`use_backend")
        })
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [9, 10, 11]);
}
