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
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
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

/// The clean base with two servers' addresses broken: a file that cannot be loaded, for two
/// reasons, at lines 20 and 26.
fn two_load_errors(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/good-base.toml"),
    )
    .unwrap();
    let broken = base
        .replace("\"10.0.0.1:80\"", "\"10.0.0.1\"")
        .replace("\"10.0.0.2:80\"", "\"10.0.0.2\"");
    assert_ne!(broken, base);
    let path = dir.join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    path
}

#[test]
fn an_unloadable_file_is_a_load_finding_per_reason_in_json_and_sarif() {
    let dir = tempfile::tempdir().unwrap();
    let broken = two_load_errors(dir.path());
    let broken = broken.to_str().unwrap();
    let good = "tests/fixtures/faults/lim-101-capacity-below-listener.toml";
    let missing = "tests/fixtures/does-not-exist.toml";

    let out = ballast(&["check", "--format", "json", good, broken, missing]);
    assert_eq!(out.status.code(), Some(2));
    let findings = json_findings(&out);
    assert!(findings.iter().any(|f| f["rule"] == "LIM-101"));
    let load: Vec<&Value> = findings.iter().filter(|f| f["rule"] == "LOAD").collect();
    let in_broken: Vec<u64> = load
        .iter()
        .filter(|f| f["file"] == broken)
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(in_broken, [20, 26], "{load:#?}");
    for f in &load {
        assert_eq!(f["severity"], "error");
        assert!(!f["message"].as_str().unwrap().is_empty());
        assert!(!f["fix"].as_str().unwrap().is_empty(), "{f}");
    }
    let unread = load
        .iter()
        .find(|f| f["file"] == missing)
        .expect("a LOAD finding for the missing file");
    assert!(unread["message"].as_str().unwrap().contains("cannot read"));
    assert_eq!(unread["line"], 0, "no line without the file's text");
    for f in load.iter().filter(|f| f["file"] == broken) {
        assert!(f["message"].as_str().unwrap().contains("is not HOST:PORT"));
        assert!(f["column"].as_u64().unwrap() >= 1);
    }
    // People still read the reasons on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not HOST:PORT"));

    let out = ballast(&["check", "--format", "sarif", broken]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{results:#?}");
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    for r in results {
        assert_eq!(r["ruleId"], "LOAD");
        assert_eq!(r["level"], "error");
        let index = r["ruleIndex"].as_u64().expect("LOAD is in the rule table") as usize;
        assert_eq!(rules[index]["id"], "LOAD");
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert!([20, 26].contains(&region["startLine"].as_u64().unwrap()));
    }
}

#[test]
fn the_text_summary_counts_files_that_could_not_be_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let broken = two_load_errors(dir.path());
    let out = ballast(&[
        "check",
        "tests/fixtures/good-base.toml",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 files: 1 checked, 1 could not be loaded: 2 errors"),
        "{text}"
    );
    assert!(!text.contains("0 errors"), "{text}");
    let alone = ballast(&["check", broken.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&alone.stdout);
    assert!(
        text.contains("1 file: 0 checked, 1 could not be loaded: 2 errors"),
        "{text}"
    );
}

#[test]
fn load_and_import_are_explained_and_listed() {
    for id in ["LOAD", "IMPORT"] {
        let out = ballast(&["check", "--explain", id]);
        assert_eq!(out.status.code(), Some(0), "{id}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(id));
    }
    let listed: Value =
        serde_json::from_slice(&ballast(&["check", "--list-rules", "--format", "json"]).stdout)
            .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"LOAD") && ids.contains(&"IMPORT"));
}

#[test]
fn sarif_rules_link_to_their_heading_in_docs_rules_md() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md"))
            .unwrap();
    let out = ballast(&[
        "check",
        "--format",
        "sarif",
        "tests/fixtures/good-base.toml",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.len() >= 25);
    for r in rules {
        let id = r["id"].as_str().unwrap();
        let uri = r["helpUri"].as_str().expect("helpUri");
        let (file, anchor) = uri.split_once('#').expect("an anchor");
        assert_eq!(file, "docs/rules.md");
        // GitHub's anchor of a heading `## SKEW-101` is `skew-101`.
        let heading = docs
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .find(|h| h.to_lowercase() == anchor);
        assert_eq!(heading, Some(id), "{uri}");
    }
}

#[test]
fn text_output_points_once_at_the_explanation_of_each_rule_shown() {
    let out = ballast(&["check", "tests/fixtures/faults/lim-102-n-minus-one.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning[LIM-102]"), "{text}");
    let pointer = text.lines().last().unwrap();
    assert!(
        pointer.starts_with("explain a rule: ballast check --explain LIM-102"),
        "{text}"
    );
    assert_eq!(text.matches("--explain").count(), 1, "{text}");
    let quiet = ballast(&["check", "tests/fixtures/good-base.toml"]);
    assert!(!String::from_utf8_lossy(&quiet.stdout).contains("--explain"));
}

#[test]
fn a_directory_is_checked_as_the_configurations_directly_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/good-base.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("a.toml"), &base).unwrap();
    std::fs::write(
        dir.path().join("lb.cfg"),
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\nfrontend web\n    bind :80\n    default_backend app\nbackend app\n    server a1 10.0.0.1:80\n    server a2 10.0.0.2:80\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a configuration").unwrap();
    std::fs::create_dir(dir.path().join("old")).unwrap();
    std::fs::write(dir.path().join("old/broken.toml"), "not = [toml").unwrap();
    let d = dir.path().to_str().unwrap();

    let out = ballast(&["check", "--format", "json", d]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: std::collections::BTreeSet<String> = json_findings(&out)
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        [format!("{d}/lb.cfg")],
        "a.toml is clean; README.md and old/ are not read"
    );
    let text = String::from_utf8_lossy(&ballast(&["check", d]).stdout).into_owned();
    assert!(text.contains("2 files checked"), "{text}");

    // Beside nginx.conf, the other *.conf files are its includes.
    let nginx = tempfile::tempdir().unwrap();
    std::fs::write(
        nginx.path().join("nginx.conf"),
        "events {}\nhttp {\n    upstream app { server 10.0.0.1:80; }\n    server { listen 80; location / { proxy_pass http://app; } }\n}\n",
    )
    .unwrap();
    std::fs::write(
        nginx.path().join("fastcgi.conf"),
        "fastcgi_param QUERY_STRING $query_string;\n",
    )
    .unwrap();
    let out = ballast(&["check", nginx.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 file checked"), "{text}");
    assert_ne!(out.status.code(), Some(2), "{text}");

    let empty = tempfile::tempdir().unwrap();
    let out = ballast(&["check", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds no configuration") && err.contains("help: name the files"),
        "{err}"
    );
}

#[test]
fn deny_defaults_are_explained_in_both_helps() {
    let check = String::from_utf8_lossy(&ballast(&["check", "--help"]).stdout).into_owned();
    let diff = String::from_utf8_lossy(&ballast(&["diff", "--help"]).stdout).into_owned();
    assert!(check.contains("Errors by default") && check.contains("ballast diff"));
    assert!(diff.contains("Warnings by default") && diff.contains("ballast check"));
}

#[test]
fn a_closed_pipe_ends_check_quietly() {
    use std::process::Stdio;
    for args in [
        &["check", "--list-rules", "--format", "markdown"][..],
        &["check", "tests/fixtures/faults/lim-102-n-minus-one.toml"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: quiet, but said {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}");
    }
}
