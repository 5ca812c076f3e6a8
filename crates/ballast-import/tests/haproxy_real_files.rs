//! What real HAProxy files hold and HAProxy accepts or refuses: proxies that balance nothing,
//! environment variables, unix sockets, removed directives per version, placeholders.
//! Each case is small and written here; the corpus of real files is walked by
//! `crates/ballast/tests/wild_corpus.rs`.

use ballast_core::{Severity, SourceFile};
use ballast_import::{Imported, Options, Version, import_source};

const DEFAULTS: &str =
    "defaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n  timeout connect 5s\n";

fn import_with(text: &str, options: &Options) -> Result<Imported, String> {
    import_source(SourceFile::new("haproxy.cfg", text), options).map_err(|e| e.render())
}

fn import(text: &str) -> Imported {
    import_with(text, &Options::default()).unwrap_or_else(|e| panic!("refused:\n{e}"))
}

/// The 1-based lines of the error-level notes.
fn error_lines(i: &Imported) -> Vec<usize> {
    let mut lines: Vec<usize> = i
        .notes
        .iter()
        .filter(|n| n.severity == Severity::Error)
        .filter_map(|n| n.span.as_ref())
        .map(|s| i.loaded.source.line_col(s.start).line)
        .collect();
    lines.sort();
    lines
}

fn note_containing<'a>(i: &'a Imported, text: &str) -> Option<&'a ballast_core::Diagnostic> {
    i.notes.iter().find(|n| n.message.contains(text))
}

#[test]
fn a_stats_page_and_a_redirect_balance_nothing_and_are_no_pool() {
    let text = format!(
        "{DEFAULTS}listen stats\n  bind :8404\n  stats enable\n  stats uri /\nfrontend web\n  bind :80\n  http-request redirect scheme https\nbackend app\n  server a 10.0.0.1:80\nfrontend api\n  bind :8080\n  default_backend app\n"
    );
    let i = import(&text);
    let pools: Vec<&String> = i.loaded.config.pools.keys().collect();
    assert_eq!(pools, ["app"]);
    let listeners: Vec<&String> = i.loaded.config.listeners.keys().collect();
    assert_eq!(listeners, ["api"]);
    let stats = note_containing(&i, "listen stats").expect("the stats page is noted");
    assert!(
        stats.message.contains("balances nothing"),
        "{}",
        stats.message
    );
    assert_eq!(
        i.notes
            .iter()
            .filter(|n| n.message.starts_with("`listen stats`"))
            .count(),
        1,
        "one note per section"
    );
}

#[test]
fn a_file_of_only_a_stats_page_loads() {
    let i = import(&format!(
        "{DEFAULTS}listen stats\n  bind :8404\n  stats enable\n"
    ));
    assert!(i.loaded.config.pools.is_empty());
    assert!(i.loaded.config.listeners.is_empty());
}

#[test]
fn bare_balance_is_roundrobin_and_no_negates_any_keyword() {
    let text = format!(
        "{DEFAULTS}  no log\n  no option redispatch\nbackend app\n  balance\n  server a 10.0.0.1:80 weight 3\n  server b 10.0.0.2:80\n"
    );
    let i = import(&text);
    let pool = &i.loaded.config.pools["app"];
    assert_eq!(
        pool.emulate,
        Some(ballast_core::emulation::Emulation::HaproxyRoundrobin)
    );
    assert!(error_lines(&i).is_empty());
}

#[test]
fn environment_variables_are_expanded_from_the_options() {
    let text = "global\n  maxconn \"${MAXCONN}\"\nbackend app\n  server a ${HOST}:${PORT-8080} maxconn $CONNS\n  server b 10.0.0.2:80\n  acl api path_reg ^/api$\n";
    let options = Options {
        env: vec![
            ("MAXCONN".into(), "100".into()),
            ("HOST".into(), "10.0.0.1".into()),
            ("CONNS".into(), "7".into()),
            // The last definition wins (the CLI puts --env after the process environment).
            ("CONNS".into(), "9".into()),
        ],
        ..Options::default()
    };
    let i = import_with(text, &options).expect("loads");
    assert_eq!(i.loaded.config.global.max_connections, Some(100));
    let a = &i.loaded.config.pools["app"].servers[0];
    assert_eq!(a.address, "10.0.0.1:8080");
    assert_eq!(a.max_connections, Some(9));
}

#[test]
fn a_line_naming_an_unset_variable_is_read_as_absent_and_said() {
    let text = "global\n  maxconn \"${HAPROXY_MAXCONN}\"\nbackend app\n  server a 10.0.0.1:80\n";
    let i = import(text);
    assert_eq!(i.loaded.config.global.max_connections, None);
    let note = note_containing(&i, "HAPROXY_MAXCONN").expect("noted");
    assert_eq!(note.severity, Severity::Info);
    assert!(
        note.fix
            .as_deref()
            .is_some_and(|f| f.contains("--env HAPROXY_MAXCONN=")),
        "{:?}",
        note.fix
    );
}

#[test]
fn unix_sockets_are_addresses_as_written() {
    let text = format!(
        "{DEFAULTS}frontend f\n  bind unix@/run/haproxy/web.sock\n  bind abns@internal\n  bind fd@3\n  default_backend app\nbackend app\n  server a unix@/run/app.sock\n  server b /run/app2.sock\n  server c ipv4@10.0.0.3:80\n"
    );
    let i = import(&text);
    let addresses: Vec<&str> = i.loaded.config.pools["app"]
        .servers
        .iter()
        .map(|s| s.address.as_str())
        .collect();
    assert_eq!(
        addresses,
        ["unix:/run/app.sock", "unix:/run/app2.sock", "10.0.0.3:80"]
    );
    let mut binds: Vec<&str> = i
        .loaded
        .config
        .listeners
        .values()
        .map(|l| l.address.as_str())
        .collect();
    binds.sort();
    assert_eq!(binds, ["unix:/run/haproxy/web.sock", "unix:@internal"]);
}

#[test]
fn a_placeholder_address_is_named_as_one() {
    let text = "backend db\n  server node1 <pg-node1-ip>:5432 check\n";
    let err = import_with(text, &Options::default()).expect_err("HAProxy refuses it");
    assert!(err.contains("placeholder"), "{err}");
    assert!(err.contains("`<pg-node1-ip>:5432`"), "as written: {err}");
    assert!(!err.contains(":5432:80"), "no port glued on: {err}");
}

#[test]
fn removed_directives_are_errors_for_the_versions_that_removed_them() {
    let text = format!(
        "{DEFAULTS}  option forceclose\nbackend app\n  reqadd X-Forwarded-Proto:\\ https\n  contimeout 3s\n  server a 10.0.0.1:80\n"
    );
    let new = import(&text);
    assert_eq!(error_lines(&new), [6, 8, 9]);
    let fix = new
        .notes
        .iter()
        .find(|n| n.message.contains("reqadd"))
        .and_then(|n| n.fix.clone())
        .unwrap_or_default();
    assert!(fix.contains("http-request add-header"), "{fix}");

    // HAProxy 1.8 read them all, and `contimeout` was its `timeout connect`.
    let old = import_with(
        &text,
        &Options {
            haproxy_version: Version::new(1, 8, 0),
            ..Options::default()
        },
    )
    .expect("loads");
    assert!(error_lines(&old).is_empty(), "{:?}", old.notes);
    assert_eq!(
        old.loaded.config.pools["app"].connect_timeout(),
        std::time::Duration::from_secs(3)
    );
}

#[test]
fn what_haproxy_2_6_no_longer_knows_is_an_error_at_its_line() {
    let text = format!(
        "global\n  debug\n  nbproc 2\n{DEFAULTS}listen l 0.0.0.0:8080\n  server a 10.0.0.1:80\n"
    );
    let i = import(&text);
    assert_eq!(error_lines(&i), [2, 3, 9]);
}

#[test]
fn a_last_line_without_a_line_feed_is_an_error_at_that_line() {
    let text = "backend app\n  server a 10.0.0.1:80";
    let i = import(text);
    assert_eq!(error_lines(&i), [2]);
    let with_lf = import("backend app\n  server a 10.0.0.1:80\n");
    assert!(error_lines(&with_lf).is_empty());
}

#[test]
fn persistence_is_not_called_harmless() {
    let text = "backend app\n  cookie SRV insert indirect\n  stick-table type ip size 1m\n  server a 10.0.0.1:80\n";
    let i = import(text);
    for what in ["cookie", "stick-table"] {
        let n = note_containing(&i, what).expect("noted");
        assert!(
            !n.message.contains("does not change balancing"),
            "{}",
            n.message
        );
    }
}

#[test]
fn what_haproxy_refuses_in_server_lines_is_refused_in_its_words() {
    for (line, expect) in [
        ("server a 10.0.0.1:80 rise 0", "rise 0"),
        ("server a 10.0.0.1:80 fall 0", "fall 0"),
        ("server a 10.0.0.9:80", "another server named `a`"),
    ] {
        let text =
            format!("backend app\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n  {line}\n");
        let text = text.replacen(
            "  server a 10.0.0.1:80\n",
            "",
            usize::from(!expect.starts_with("another")),
        );
        let err = import_with(&text, &Options::default()).expect_err(line);
        assert!(err.contains(expect), "{line}: {err}");
        assert!(!err.contains("pools."), "HAProxy words: {err}");
    }
}

#[test]
fn frontend_maxconn_0_means_the_process_limit() {
    let text = format!(
        "global\n  maxconn 500\n{DEFAULTS}frontend f\n  bind :80\n  maxconn 0\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    );
    let i = import(&text);
    assert_eq!(i.loaded.config.listeners["f"].max_connections, Some(500));
}

#[test]
fn check_settings_haproxy_accepts_load_and_the_one_that_cannot_work_is_an_error() {
    // `timeout check 0` is unset (the check times out after `inter`); many retries are legal.
    let text = format!(
        "{DEFAULTS}  timeout check 0\n  retries 200\nbackend app\n  option httpchk\n  server a 10.0.0.1:80 check inter 3s\n"
    );
    let i = import(&text);
    let health = i.loaded.config.pools["app"]
        .health
        .clone()
        .expect("checked");
    assert_eq!(health.timeout.0, std::time::Duration::from_secs(3));
    assert!(error_lines(&i).is_empty());

    let never = import(&format!(
        "{DEFAULTS}backend app\n  option httpchk\n  http-check expect status 999\n  server a 10.0.0.1:80 check\n"
    ));
    assert_eq!(error_lines(&never), [8]);

    let err = import_with(
        "backend app\n  server a 10.0.0.1:80 check inter 0\n",
        &Options::default(),
    )
    .expect_err("HAProxy refuses inter 0");
    assert!(err.contains("inter 0"), "{err}");
}
