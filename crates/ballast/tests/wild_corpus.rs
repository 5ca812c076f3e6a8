//! Real HAProxy and nginx files from public repositories (`../shared/corpus/wild/`), each with
//! the real peer's verdict in `verdicts.tsv`: whatever the peer accepts (as is, with stand-ins
//! for hosts and certificates, or as a conf.d fragment once wrapped in `http { }`) `ballast
//! check` must load (exit 0 or 1); whatever it refuses for a defect of the file must be refused
//! (exit 2) or reported as an error at a line. Refusals that come from the peer's environment
//! (`ENV-...`: Lua scripts or maps absent from the machine it ran on) judge nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/wild")
}

/// What the peer said of a file.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Accepted as is, with stand-ins, or as a fragment once wrapped.
    Accepted,
    /// Refused for a defect of the file itself.
    Refused,
    /// Refused for what the peer's machine lacked: judges nothing.
    Environment,
}

struct Entry {
    file: String,
    verdict: Verdict,
    peer_said: String,
}

/// One TSV field as written: the file quotes fields holding quotes, CSV-style.
fn unquote(field: &str) -> String {
    match field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => field.to_string(),
    }
}

fn entries() -> Vec<Entry> {
    let path = corpus().join("verdicts.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the corpus lives in ../shared beside the repository",
            path.display()
        )
    });
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("verdicts.tsv has no `{name}` column"))
    };
    let (file, verdict, errors, fragment) = (
        col("file"),
        col("peer_verdict"),
        col("peer_errors"),
        col("fragment"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<String> = line.split('\t').map(unquote).collect();
            let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
            let (peer, errs, frag) = (get(verdict), get(errors), get(fragment));
            let verdict = if peer.starts_with("ok") || frag.starts_with("wrapped:ok") {
                Verdict::Accepted
            } else if errs.starts_with("ENV-") {
                Verdict::Environment
            } else {
                Verdict::Refused
            };
            Entry {
                file: get(file),
                verdict,
                peer_said: if frag.is_empty() { errs } else { frag },
            }
        })
        .collect()
}

/// `ballast check --format json FILE`: exit code and findings.
fn check(path: &Path) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["check", "--format", "json"])
        .arg(path)
        .output()
        .expect("run ballast");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn has_error_at_a_line(json: &serde_json::Value) -> bool {
    json["findings"].as_array().is_some_and(|f| {
        f.iter()
            .any(|f| f["severity"] == "error" && f["line"].as_u64().is_some_and(|l| l > 0))
    })
}

#[test]
fn ballast_reads_what_the_peers_accept_and_refuses_what_they_refuse() {
    let entries = entries();
    assert!(entries.len() >= 60, "the corpus shrank: {}", entries.len());
    let mut failures = Vec::new();
    // (format, accepted, accepted and loaded)
    let mut rate: Vec<(&str, usize, usize)> = vec![("haproxy", 0, 0), ("nginx", 0, 0)];
    for e in &entries {
        let path = corpus().join(&e.file);
        let (code, json, stderr) = check(&path);
        if stderr.contains("panicked") || code == 101 {
            failures.push(format!("{}: panicked: {stderr}", e.file));
            continue;
        }
        let format = usize::from(e.file.starts_with("nginx/"));
        match e.verdict {
            Verdict::Accepted => {
                rate[format].1 += 1;
                if code == 0 || code == 1 {
                    rate[format].2 += 1;
                } else {
                    let first = stderr.lines().next().unwrap_or("").to_string();
                    failures.push(format!(
                        "{}: the peer accepts it ({}), ballast exits {code}: {first}",
                        e.file, e.peer_said
                    ));
                }
            }
            Verdict::Refused => {
                if code != 2 && !has_error_at_a_line(&json) {
                    failures.push(format!(
                        "{}: the peer refuses it ({}), ballast exits {code} without an error at a line",
                        e.file,
                        e.peer_said.chars().take(200).collect::<String>()
                    ));
                }
            }
            Verdict::Environment => {}
        }
    }
    for (format, accepted, loaded) in &rate {
        eprintln!("{format}: {loaded} of {accepted} accepted files load");
    }
    assert!(
        failures.is_empty(),
        "{} of {} files disagree with the peer:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}

/// Import and check of every corpus file, in process: each well under 50 ms (the files are
/// at most a few hundred lines; the fastest of three runs is taken, so a busy machine does not
/// decide it).
#[test]
fn every_corpus_file_is_checked_within_50_ms() {
    let options = ballast_import::Options::default();
    let mut slow = Vec::new();
    for e in entries() {
        let path = corpus().join(&e.file);
        let fastest = (0..3)
            .map(|_| {
                let start = Instant::now();
                if let Ok(imported) = ballast_import::import_file(&path, &options) {
                    std::hint::black_box(ballast_check::check_imported(&imported));
                }
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        if fastest > Duration::from_millis(50) {
            slow.push(format!("{}: {fastest:?}", e.file));
        }
    }
    assert!(slow.is_empty(), "slower than 50 ms:\n{}", slow.join("\n"));
}
