//! `ballast diff` end to end: files written to a temporary directory, the binary run on them,
//! its JSON read back. Each test states a change and what the diff must say about it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ballast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .output()
        .expect("run ballast")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn diff_json(old: &Path, new: &Path, extra: &[&str]) -> (Value, Option<i32>) {
    let mut args = vec![
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "json",
        "--duration",
        "5s",
    ];
    args.extend_from_slice(extra);
    let out = ballast(&args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code())
}

const NGINX_IP_HASH: &str = "events {}
http {
    upstream app {
        ip_hash;
        server 10.0.0.1:80;
        server 10.0.0.2:80;
        server 10.0.0.3:80;
        server 10.0.0.4:80;
    }
    server {
        listen 80;
        location / { proxy_pass http://app; }
    }
}
";

#[test]
fn removing_a_server_from_an_ip_hash_pool_is_hash_002_at_the_old_line() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.conf", NGINX_IP_HASH);
    let new = write(
        dir.path(),
        "new.conf",
        &NGINX_IP_HASH.replace("        server 10.0.0.3:80;\n", ""),
    );
    let (v, code) = diff_json(&old, &new, &[]);
    assert_eq!(code, Some(1), "a warning fails by default: {v:#}");
    let removed = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "removed")
        .expect("a removed server");
    assert_eq!(removed["what"], "server 10.0.0.3:80");
    assert_eq!(removed["old_line"], 7);
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "HASH-002");
    assert_eq!(f["line"], 7);
    assert!(f["file"].as_str().unwrap().ends_with("old.conf"));
    let pool = &v["prediction"]["pools"][0];
    let moved = pool["moved"].as_f64().unwrap();
    assert!(moved > 0.05, "keys must move: {moved}");
    let gone = pool["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "10.0.0.3:80")
        .unwrap();
    assert_eq!(gone["new_share"], 0.0);
    assert!(gone["old_share"].as_f64().unwrap() > 0.05);

    // Marking it down instead is the fix: no HASH-002, and the keys of other servers stay.
    let down = write(
        dir.path(),
        "down.conf",
        &NGINX_IP_HASH.replace("server 10.0.0.3:80;", "server 10.0.0.3:80 down;"),
    );
    let (v, _) = diff_json(&old, &down, &[]);
    assert!(
        v["findings"].as_array().unwrap().is_empty(),
        "marking down is not HASH-002: {v:#}"
    );
    let moved_down = v["prediction"]["pools"][0]["moved"].as_f64().unwrap();
    let share_of_3 = v["prediction"]["pools"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "10.0.0.3:80")
        .unwrap()["old_share"]
        .as_f64()
        .unwrap();
    assert!(
        (moved_down - share_of_3).abs() < 1e-9,
        "with `down` only the down server's requests move ({moved_down} vs {share_of_3})"
    );
}

#[test]
fn changing_a_ketama_server_text_is_hash_003_and_moves_keys() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |first: &str| {
        format!(
            "events {{}}
http {{
    upstream cache {{
        hash $request_uri consistent;
        server {first};
        server 10.0.1.2:80;
        server 10.0.1.3:80;
    }}
    server {{
        listen 80;
        location / {{ proxy_pass http://cache; }}
    }}
}}
"
        )
    };
    let old = write(dir.path(), "old.conf", &conf("10.0.1.1"));
    let new = write(dir.path(), "new.conf", &conf("10.0.1.1:80"));
    let (v, code) = diff_json(&old, &new, &[]);
    assert_eq!(code, Some(0), "HASH-003 is info level: {v:#}");
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "HASH-003");
    assert_eq!(f["line"], 5);
    assert!(f["file"].as_str().unwrap().ends_with("new.conf"));
    let moved = v["prediction"]["pools"][0]["moved"].as_f64().unwrap();
    assert!(moved > 0.05, "the ring moved: {moved}");
    // --deny info makes it fail.
    let (_, code) = diff_json(&old, &new, &["--deny", "info"]);
    assert_eq!(code, Some(1));
}

#[test]
fn inserting_a_server_without_ids_in_haproxy_consistent_hashing_is_hash_003() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |servers: &str| {
        format!(
            "defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind :80
    default_backend app

backend app
    balance uri
    hash-type consistent
{servers}"
        )
    };
    let old = write(
        dir.path(),
        "old.cfg",
        &cfg("    server a 10.0.0.1:80\n    server c 10.0.0.3:80\n"),
    );
    let new = write(
        dir.path(),
        "new.cfg",
        &cfg("    server a 10.0.0.1:80\n    server b 10.0.0.2:80\n    server c 10.0.0.3:80\n"),
    );
    let (v, _) = diff_json(&old, &new, &[]);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "HASH-003")
        .unwrap_or_else(|| panic!("no HASH-003: {v:#}"));
    assert_eq!(f["line"], 16, "server c, whose id became 3: {f:#}");
    assert!(f["message"].as_str().unwrap().contains("from `2` to `3`"));
}

#[test]
fn haproxy_against_its_ballast_translation_compares_servers_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(
        dir.path(),
        "lb.cfg",
        "defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind 127.0.0.1:8080
    default_backend app

backend app
    balance roundrobin
    server web1 127.0.0.1:9001 weight 3
    server web2 127.0.0.1:9002
",
    );
    let new = write(
        dir.path(),
        "lb.toml",
        r#"[listeners.web]
address = "127.0.0.1:8080"
pool = "app"

[pools.app]
algorithm = "round-robin"

[[pools.app.servers]]
name = "one"
address = "127.0.0.1:9001"
weight = 1

[[pools.app.servers]]
name = "two"
address = "127.0.0.1:9002"
"#,
    );
    let (v, _) = diff_json(&old, &new, &[]);
    assert_eq!(v["old"]["format"], "haproxy");
    assert_eq!(v["new"]["format"], "ballast");
    let changes = v["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["kind"] == "changed"),
        "servers pair up by address, none added or removed: {changes:#?}"
    );
    let weight = changes
        .iter()
        .find(|c| c["what"] == "weight of server one")
        .expect("the weight change");
    assert_eq!(
        (weight["old"].as_str(), weight["new"].as_str()),
        (Some("3"), Some("1"))
    );
    assert_eq!(weight["old_line"], 13);
    let pool = &v["prediction"]["pools"][0];
    let one = &pool["servers"][0];
    assert!((one["old_share"].as_f64().unwrap() - 0.75).abs() < 0.01);
    assert!((one["new_share"].as_f64().unwrap() - 0.5).abs() < 0.01);
    // The share moved by 25 points: --max-shift 10 fails, 30 passes.
    let (_, code) = diff_json(&old, &new, &["--max-shift", "10", "--deny", "errors"]);
    assert_eq!(code, Some(1));
    let (_, code) = diff_json(&old, &new, &["--max-shift", "30", "--deny", "errors"]);
    assert_eq!(code, Some(0));
}

#[test]
fn identical_files_have_no_change_and_unreadable_ones_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.conf", NGINX_IP_HASH);
    let b = write(dir.path(), "b.conf", NGINX_IP_HASH);
    let (v, code) = diff_json(&a, &b, &[]);
    assert_eq!(code, Some(0));
    assert!(v["changes"].as_array().unwrap().is_empty());
    assert!(v["prediction"]["pools"].as_array().unwrap().is_empty());
    let text = ballast(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("no semantic change"));
    let broken = write(dir.path(), "broken.conf", "http { upstream app { server; }");
    let out = ballast(&["diff", a.to_str().unwrap(), broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.conf"));
}

#[test]
fn text_points_at_the_explanation_of_the_rules_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.conf", NGINX_IP_HASH);
    let new = write(
        dir.path(),
        "new.conf",
        &NGINX_IP_HASH.replace("        server 10.0.0.3:80;\n", ""),
    );
    let out = ballast(&[
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--duration",
        "2s",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning[HASH-002]"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("explain a rule: ballast check --explain HASH-002"),
        "{text}"
    );
    // The finding the change introduces is named too, and each rule once.
    assert!(
        text.contains("warning[HC-004]") && last.contains("HC-004"),
        "{text}"
    );
    assert_eq!(text.matches("--explain").count(), 1, "{text}");
    let same = ballast(&["diff", old.to_str().unwrap(), old.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&same.stdout).contains("--explain"));
}

#[test]
fn a_closed_pipe_ends_diff_quietly() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.conf", NGINX_IP_HASH);
    let new = write(
        dir.path(),
        "new.conf",
        &NGINX_IP_HASH.replace("server 10.0.0.3:80;", "server 10.0.0.3:80 weight=4;"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["diff", old.to_str().unwrap(), new.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The prediction runs before anything is written: the reader is gone by then.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "quiet, but said: {err}");
    assert_ne!(out.status.code(), Some(101));
}
