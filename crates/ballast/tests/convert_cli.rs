//! `ballast convert` end to end: the binary run on files of its own and on the real-world
//! corpus, its output loaded by `ballast check` and compared with the input by `ballast diff`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The real-world corpus beside the repository (`shared/` next to the checkout).
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/wild");

fn ballast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .output()
        .expect("run ballast")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The changes `ballast diff OLD NEW --format json` lists.
fn diff_changes(old: &Path, new: &Path) -> Vec<Value> {
    let out = ballast(&[
        "diff",
        s(old),
        s(new),
        "--format",
        "json",
        "--duration",
        "1s",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diff {} {} is not JSON ({e}): {}{}",
            old.display(),
            new.display(),
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    // An unchanged translation fails nothing: the new file's findings are another rule set's,
    // shown but not blamed on the change (the README's `convert … && diff …` relies on it).
    if changes.is_empty() {
        assert_eq!(
            out.status.code(),
            Some(0),
            "diff {} {} exits {:?} with no change:\n{}",
            old.display(),
            new.display(),
            out.status.code(),
            text(&out.stdout)
        );
    }
    changes
}

const HAPROXY: &str = "\
global
    maxconn 5000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind :8080
    default_backend app
backend app
    balance roundrobin
    option httpchk GET /health
    server a 10.0.0.1:80 weight 3 maxconn 100 check
    server b 10.0.0.2:80 weight 1 maxconn 40 check
    server c 10.0.0.3:80 backup
";

#[test]
fn help_teaches_with_examples_and_names_the_options_for_what_does_not_convert() {
    let out = ballast(&["convert", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in [
        "Examples:",
        "ballast convert /etc/haproxy/haproxy.cfg > ballast.toml",
        "--listen",
        "--map-address",
        "--force",
        "Exit codes:",
        "emulate",
    ] {
        assert!(help.contains(needle), "--help lacks `{needle}`:\n{help}");
    }
}

#[test]
fn converts_to_stdout_a_file_that_check_loads_and_diff_finds_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "lb.cfg", HAPROXY);
    let out = ballast(&["convert", s(&cfg)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert!(
        toml.starts_with("# ballast configuration converted from"),
        "{toml}"
    );
    let report = text(&out.stderr);
    assert!(report.contains("1 listener, 1 pool, 3 servers"), "{report}");
    let converted = write(dir.path(), "lb.toml", &toml);
    let check = ballast(&["check", s(&converted)]);
    assert!(
        matches!(check.status.code(), Some(0 | 1)),
        "{}",
        text(&check.stderr)
    );
    let changes = diff_changes(&cfg, &converted);
    assert!(changes.is_empty(), "{changes:#?}");
    // The same with -o, which also names the file in its "check it" line.
    let o = dir.path().join("o.toml");
    let out = ballast(&["convert", s(&cfg), "-o", s(&o)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&o).unwrap();
    assert!(written.contains(&format!("ballast check {}", o.display())));
    assert!(diff_changes(&cfg, &o).is_empty());
}

#[test]
fn an_existing_output_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "lb.cfg", HAPROXY);
    let o = write(dir.path(), "lb.toml", "keep me\n");
    let out = ballast(&["convert", s(&cfg), "-o", s(&o)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&o).unwrap(), "keep me\n");
    let out = ballast(&["convert", s(&cfg), "-o", s(&o), "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&o).unwrap().contains("[pools.app]"));
    // Not even --force writes over the input.
    let out = ballast(&["convert", s(&cfg), "-o", s(&cfg), "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is the input file"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), HAPROXY);
}

#[test]
fn unreadable_or_unconvertible_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = ballast(&["convert", s(&dir.path().join("missing.cfg"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let broken = write(
        dir.path(),
        "bad.cfg",
        "backend app\n    balance\n    server a 10.0.0.1:80\n",
    );
    assert_eq!(ballast(&["convert", s(&broken)]).status.code(), Some(2));
    let native = write(
        dir.path(),
        "native.toml",
        "[listeners.a]\naddress = \"127.0.0.1:1\"\npool = \"p\"\n[pools.p]\n[[pools.p.servers]]\nname = \"s\"\naddress = \"127.0.0.1:2\"\n",
    );
    let out = ballast(&["convert", s(&native)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already a ballast configuration"));
}

#[test]
fn a_file_without_listeners_is_refused_until_listen_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "backends.cfg",
        "backend app\n    mode http\n    server a 10.0.0.1:80 weight 2\n    server b 10.0.0.2:80\n",
    );
    let out = ballast(&["convert", s(&cfg)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("has no listener") && err.contains("--listen 127.0.0.1:8080"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let o = dir.path().join("out.toml");
    let out = ballast(&[
        "convert",
        s(&cfg),
        "--listen",
        "127.0.0.1:9080",
        "-o",
        s(&o),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 STAND-IN value to confirm"));
    let changes = diff_changes(&cfg, &o);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["kind"], "added");
    assert_eq!(changes[0]["scope"], "listener 127.0.0.1:9080");
}

const NGINX_UNIX: &str = "\
events {}
http {
    upstream app {
        hash $request_uri consistent;
        server 10.0.0.1:80 weight=2;
        server unix:/run/app.sock max_conns=10;
    }
    server {
        listen 8080;
        location / { proxy_pass http://app; }
    }
}
";

#[test]
fn a_unix_socket_server_is_refused_until_mapped_and_only_its_address_changes() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "nginx.conf", NGINX_UNIX);
    let out = ballast(&["convert", s(&conf)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unix socket"), "{err}");
    assert!(
        err.contains("--map-address unix:/run/app.sock=127.0.0.1:8000"),
        "{err}"
    );
    assert!(
        err.contains("nginx.conf:6"),
        "the refusal points at the server line: {err}"
    );
    assert!(out.stdout.is_empty());
    let o = dir.path().join("out.toml");
    let out = ballast(&[
        "convert",
        s(&conf),
        "--map-address",
        "unix:/run/app.sock=127.0.0.1:8000",
        "-o",
        s(&o),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let changes = diff_changes(&conf, &o);
    // The address changes; the ring text (where ketama places the server) does not.
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["what"], "address of server unix:/run/app.sock");
    assert_eq!(changes[0]["new"], "127.0.0.1:8000");
}

#[test]
fn a_unix_socket_listener_is_refused_until_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "haproxy.cfg",
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\nfrontend fe\n    bind abns@in\n    default_backend be\nbackend be\n    server s1 10.0.0.1:80\n",
    );
    let out = ballast(&["convert", s(&cfg)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(!err.contains("a bug in ballast convert"), "{err}");
    assert!(
        err.contains("--map-address unix:@in=127.0.0.1:8080"),
        "{err}"
    );
    let o = dir.path().join("out.toml");
    // The file's own spelling works too.
    let out = ballast(&[
        "convert",
        s(&cfg),
        "--map-address",
        "abns@in=127.0.0.1:8080",
        "-o",
        s(&o),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let check = ballast(&["check", s(&o)]);
    assert!(
        matches!(check.status.code(), Some(0 | 1)),
        "{}",
        text(&check.stderr)
    );
}

/// A big file's output is cut by the reader (`| head`): the command ends quietly.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from(
        "frontend web\n    mode http\n    bind :80\n    default_backend app\nbackend app\n    mode http\n",
    );
    for i in 0..3000 {
        cfg.push_str(&format!(
            "    server s{i} 10.{}.{}.{}:80 weight {} check\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
            1 + i % 7
        ));
    }
    let cfg = write(dir.path(), "big.cfg", &cfg);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["convert", s(&cfg)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    let mut stdout = child.stdout.take().unwrap();
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}

/// What a corpus file needs to convert, read from the refusal: `--listen` for a file without
/// listeners, one `--map-address` per unix-socket server. Anything else is unexplained.
fn options_named_by(refusal: &str) -> Option<Vec<String>> {
    let mut extra = Vec::new();
    let mut port = 19_000;
    for line in refusal.lines() {
        if line.contains("has no listener") {
            extra.extend(["--listen".to_string(), "127.0.0.1:18080".to_string()]);
        }
        if let Some(rest) = line.split("--map-address ").nth(1) {
            let mapping = rest.split_whitespace().next()?;
            let (from, _) = mapping.rsplit_once('=')?;
            extra.push("--map-address".into());
            extra.push(format!("{from}=127.0.0.1:{port}"));
            port += 1;
        }
    }
    (!extra.is_empty()).then_some(extra)
}

/// Every corpus file that `ballast check` loads converts (with the options a refusal names,
/// when it names `--listen` or `--map-address`), the output loads, and `ballast diff` sees
/// the same servers, weights and limits: any change must come from those options.
#[test]
fn every_corpus_file_that_loads_converts_to_an_equivalent_ballast_file() {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        assert!(
            std::env::var_os("BALLAST_SKIP_CORPUS").is_some(),
            "the corpus is not at {CORPUS} (shared/ beside the checkout); set BALLAST_SKIP_CORPUS=1 to skip knowingly"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut loaded, mut converted, mut not_loaded) = (0, 0, 0);
    let mut refused: Vec<(String, Vec<String>)> = Vec::new();
    let mut nothing_to_convert: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for format in ["haproxy", "nginx"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(format))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let name = format!("{format}/{}", file.file_name().unwrap().to_string_lossy());
            let check = ballast(&["check", s(&file)]);
            if !matches!(check.status.code(), Some(0 | 1)) {
                not_loaded += 1;
                continue;
            }
            loaded += 1;
            let out = dir.path().join(format!("{}.toml", name.replace('/', "_")));
            let mut args: Vec<String> = vec![
                "convert".into(),
                s(&file).into(),
                "-o".into(),
                s(&out).into(),
            ];
            let first = ballast(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let mut used: Vec<String> = Vec::new();
            if first.status.code() != Some(0) {
                let err = text(&first.stderr);
                // A static site or a page of redirects: nothing to balance, nothing to write.
                if first.status.code() == Some(2) && err.contains("balances no traffic") {
                    assert!(!out.exists(), "{name}: refused but written");
                    nothing_to_convert.push(name);
                    continue;
                }
                let Some(extra) = options_named_by(&err) else {
                    failures.push(format!("{name}: refused without naming an option:\n{err}"));
                    continue;
                };
                args.extend(extra.iter().cloned());
                let second = ballast(&args.iter().map(String::as_str).collect::<Vec<_>>());
                if second.status.code() != Some(0) {
                    failures.push(format!(
                        "{name}: refused even with {extra:?}:\n{}",
                        text(&second.stderr)
                    ));
                    continue;
                }
                used = extra;
                refused.push((name.clone(), used.clone()));
            }
            converted += 1;
            let check = ballast(&["check", s(&out)]);
            if !matches!(check.status.code(), Some(0 | 1)) {
                failures.push(format!(
                    "{name}: the output does not load:\n{}",
                    text(&check.stderr)
                ));
                continue;
            }
            let written = std::fs::read_to_string(&out).unwrap();
            let listen = used.iter().any(|a| a == "--listen");
            let mapped = used.iter().any(|a| a == "--map-address");
            let capped = written.contains("ballast accepts at most a day");
            for c in diff_changes(&file, &out) {
                let what = c["what"].as_str().unwrap_or("");
                let scope = c["scope"].as_str().unwrap_or("");
                let explained = (listen && c["kind"] == "added" && scope.starts_with("listener "))
                    || (mapped
                        && (what.starts_with("address of server ")
                            || what.starts_with("ring text of server ")))
                    || (capped && what.contains("timeout"));
                if !explained {
                    failures.push(format!("{name}: diff reports a change: {c}"));
                }
            }
        }
    }
    eprintln!(
        "corpus: {loaded} files load ({not_loaded} do not), {converted} converted, {} of them only with the option their refusal names: {refused:?}; nothing to convert (no proxying): {nothing_to_convert:?}",
        refused.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(loaded > 0, "no corpus file loads");
    assert_eq!(converted + nothing_to_convert.len(), loaded);
    // Refusals are the exception: files without listeners (nginx fragments, HAProxy files of
    // backends only), unix-socket servers, and files that proxy nothing.
    let exceptions = refused.len() + nothing_to_convert.len();
    assert!(
        exceptions * 2 <= loaded,
        "{exceptions} of {loaded} files were refused: {refused:?} {nothing_to_convert:?}"
    );
}

/// `serve` runs ballast's own format; given an HAProxy file it says how to get one.
#[test]
fn serve_on_an_haproxy_file_points_at_convert() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "haproxy.cfg", HAPROXY);
    let out = ballast(&["serve", "-c", s(&cfg)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("ballast convert"), "{err}");
    assert!(!err.contains("error: error:"), "{err}");
}
