//! LIM-110 in `serve` and in `check`: a real `ballast serve` started under a descriptor limit of
//! 512 (`prlimit`) warns when a reload raises its caps beyond the limit, not only at start; and
//! `ballast check --descriptor-limit N` judges a file against the limit it is given, whatever
//! the checking machine's is.

mod common;

use std::time::Duration;

use common::serve::ServeProcess;
use common::{ballast, loopback, wait_until};

const TOKEN: &str = "descriptor-test-token-0123456789";

/// A configuration with its caps: `global` and listener `web` admit `caps` connections.
fn text(admin: std::net::SocketAddr, web: std::net::SocketAddr, caps: u32) -> String {
    format!(
        "[global]\nmax_connections = {caps}\n\n[admin]\naddress = \"{admin}\"\ntoken = \"{TOKEN}\"\nmax_connections = 8\n\n\
         [listeners.web]\naddress = \"{web}\"\npool = \"app\"\nmax_connections = {caps}\n\n\
         [pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"127.0.0.1:9\"\n"
    )
}

#[test]
fn a_reload_that_raises_the_caps_past_the_descriptor_limit_warns() {
    if !common::peer_available("prlimit") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let (admin, web) = (loopback(), loopback());
    // 100 + 8 + 64 descriptors: within 512 at start.
    let serve = ServeProcess::start_under(
        dir.path(),
        &text(admin, web, 100),
        admin,
        &["--threads", "1"],
        &["prlimit", "--nofile=512:512", "--"],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !serve.stderr().contains("LIM-110"),
        "no warning within the limit: {}",
        serve.stderr()
    );

    serve.write(&text(admin, web, 2000));
    let (status, answer) = serve.reload_over_http(TOKEN);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"applied\": true"), "{answer}");
    wait_until(
        "serve's LIM-110 warning after the reload",
        Duration::from_secs(5),
        || serve.stderr().contains("LIM-110"),
    );
    let err = serve.stderr();
    let warning = err
        .lines()
        .find(|l| l.contains("LIM-110"))
        .expect("the warning line");
    assert!(warning.contains("reload: "), "{warning}");
    // 2,000 + 8 + 64 needed against the 512 the process runs with.
    assert!(
        warning.contains("2,072") && warning.contains("512"),
        "{warning}"
    );
}

/// 1,000 client connections + 8 admin + 64 for the process: 1,072 descriptors needed. The
/// verdict follows the limit given, not this machine's, and the finding says whose it is.
#[test]
fn check_judges_against_the_given_descriptor_limit_and_says_whose_limit_it_is() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("ballast.toml");
    std::fs::write(&file, text(loopback(), loopback(), 1000)).unwrap();
    let path = file.display().to_string();
    let lim_110 = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["check", "--format", "json"];
        args.extend_from_slice(extra);
        args.push(&path);
        let out = ballast(&args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let report: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("check's JSON ({e}): {text}"));
        report["findings"]
            .as_array()
            .expect("a findings array")
            .iter()
            .filter(|f| f["rule"] == "LIM-110")
            .map(|f| f["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let low = lim_110(&["--descriptor-limit", "256"]);
    assert_eq!(low.len(), 1, "one LIM-110 under 256: {low:?}");
    assert!(
        low[0].contains("1,072") && low[0].contains("is 256 (as given by --descriptor-limit)"),
        "{}",
        low[0]
    );
    assert!(
        lim_110(&["--descriptor-limit", "1072"]).is_empty(),
        "none at exactly the need"
    );
    assert_eq!(lim_110(&["--descriptor-limit", "1071"]).len(), 1);
    // Without the flag: this machine's limit, named as such when it is the one that fails.
    for message in lim_110(&[]) {
        assert!(message.contains("this machine's limit"), "{message}");
    }
    let out = ballast(&["check", "--descriptor-limit", "0", &path]);
    assert_eq!(out.status.code(), Some(2), "a limit of 0 is refused");
}
