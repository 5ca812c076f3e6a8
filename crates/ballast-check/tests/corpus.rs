//! The planted-fault corpus: HAProxy and nginx files under `tests/corpus/` in which each
//! faulty line carries a `# planted: RULE-ID, ...` comment. Every planted rule must report
//! that very line; every catalogue rule must be planted at least once for each format it
//! applies to; and the `clean.*` files must draw no warning or error at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ballast_check::{CATALOGUE, Finding, check_imported};
use ballast_core::Severity;
use ballast_import::{Imported, Options};

fn corpus(format: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(format);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// `# options: --haproxy-version 1.8` on a line of its own sets the import options.
fn options(text: &str) -> Options {
    let mut o = Options::default();
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("# options:") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            for pair in words.chunks(2) {
                match pair {
                    ["--haproxy-version", v] => o.haproxy_version = v.parse().expect("version"),
                    ["--nginx-version", v] => o.nginx_version = v.parse().expect("version"),
                    other => panic!("unknown corpus option {other:?}"),
                }
            }
        }
    }
    o
}

fn load(path: &Path) -> (Imported, Vec<Finding>) {
    let text = std::fs::read_to_string(path).expect("read");
    let imported = ballast_import::import_file(path, &options(&text))
        .unwrap_or_else(|e| panic!("{} does not import:\n{}", path.display(), e.render()));
    let findings = check_imported(&imported);
    (imported, findings)
}

/// Line (1-based) → rules planted there.
fn planted(text: &str) -> BTreeMap<usize, Vec<String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some((_, ids)) = line.split_once("# planted:") {
            out.insert(
                i + 1,
                ids.split(',').map(|s| s.trim().to_string()).collect(),
            );
        }
    }
    out
}

#[test]
fn every_planted_fault_is_found_at_its_line() {
    let mut missed = Vec::new();
    let mut count = 0;
    for format in ["haproxy", "nginx"] {
        for path in corpus(format) {
            let text = std::fs::read_to_string(&path).expect("read");
            let (imported, findings) = load(&path);
            let source = &imported.loaded.source;
            for (line, rules) in planted(&text) {
                for rule in rules {
                    count += 1;
                    let found = findings.iter().any(|f| {
                        f.rule == rule
                            && f.span
                                .as_ref()
                                .is_some_and(|s| source.line_col(s.start).line == line)
                    });
                    if !found {
                        let here: Vec<String> = findings
                            .iter()
                            .filter(|f| f.rule == rule)
                            .map(|f| {
                                let l =
                                    f.span.as_ref().map_or(0, |s| source.line_col(s.start).line);
                                format!("line {l}: {}", f.message)
                            })
                            .collect();
                        missed.push(format!(
                            "{}:{line}: {rule} not reported there (it reported: {here:?})",
                            path.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(count >= 60, "only {count} planted faults");
    assert!(
        missed.is_empty(),
        "missed planted faults:\n{}",
        missed.join("\n")
    );
}

#[test]
fn every_catalogue_rule_is_planted_for_each_format_it_judges() {
    let mut planted_in: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for format in ["haproxy", "nginx"] {
        for path in corpus(format) {
            let text = std::fs::read_to_string(&path).expect("read");
            planted_in
                .entry(format)
                .or_default()
                .extend(planted(&text).into_values().flatten());
        }
    }
    let mut unplanted = Vec::new();
    for rule in CATALOGUE {
        for format in rule.applies_to().split(", ") {
            if matches!(format, "haproxy" | "nginx")
                && !planted_in.get(format).is_some_and(|s| s.contains(rule.id))
            {
                unplanted.push(format!("{} ({format})", rule.id));
            }
        }
    }
    assert!(
        unplanted.is_empty(),
        "rules without a planted fault: {unplanted:?}"
    );
    let judged = CATALOGUE
        .iter()
        .filter(|r| r.applies_to() != "diff")
        .count();
    assert!(judged >= 40, "only {judged} catalogue rules judge files");
}

#[test]
fn clean_files_draw_no_warning() {
    for format in ["haproxy", "nginx"] {
        let path = corpus(format)
            .into_iter()
            .find(|p| p.file_stem().is_some_and(|s| s == "clean"))
            .expect("a clean file");
        let (imported, findings) = load(&path);
        let loud: Vec<String> = findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| {
                let l = f
                    .span
                    .as_ref()
                    .map_or(0, |s| imported.loaded.source.line_col(s.start).line);
                format!("{}:{l} {} {}", path.display(), f.rule, f.message)
            })
            .collect();
        assert!(loud.is_empty(), "clean file reported:\n{}", loud.join("\n"));
    }
}

/// Numbers at the edge of their types reach the rules' arithmetic (detection time, retry
/// budgets, capacity sums): they must saturate, never overflow. The HAProxy case panicked
/// ("overflow when multiplying duration by scalar" in HC-003) before the rules saturated.
#[test]
fn extreme_numbers_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let haproxy = "global
    maxconn 4294967295
    ulimit-n 18446744073709551615
defaults
    mode http
    timeout connect 100000000000d
    timeout client 1
    timeout server 30s
frontend web
    bind :80
    maxconn 4294967295
    default_backend app
backend app
    balance source
    server a 10.0.0.1:80 check inter 100000000000d fall 4000000000 maxconn 4294967295 maxqueue 4294967295
    server b 10.0.0.2:80 check maxconn 4294967295 maxqueue 4294967295
";
    let nginx = "worker_processes 4294967295;
worker_rlimit_nofile 1;
events { worker_connections 4294967295; }
http {
    upstream app {
        server 10.0.0.1:80 max_conns=4294967295;
        server 10.0.0.2:80 max_conns=4294967295;
        server 10.0.0.3:80 max_conns=4294967295;
        keepalive 18446744073709551615;
    }
    server {
        listen 80;
        location / {
            proxy_connect_timeout 100000000000d;
            proxy_read_timeout 100000000000d;
            proxy_pass http://app;
        }
    }
}
";
    for (name, text) in [("edge.cfg", haproxy), ("edge.conf", nginx)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        // The model accepts these files, so every rule sees the extremes.
        let imported = ballast_import::import_file(&path, &Options::default())
            .unwrap_or_else(|e| panic!("{name} must import: {}", e.render()));
        for f in check_imported(&imported) {
            let _ = f.to_diagnostic().render(Some(&imported.loaded.source));
        }
    }
}
