//! The serve settings the importers map from HAProxy and nginx files: the send timeout, the
//! WebSocket tunnel's idle timeout and HTTP/2's concurrent streams. Each mapping is checked on
//! a small file, with its span (a finding on the setting points at the directive that set it)
//! and with the file that does not set it (the setting stays unset: ballast's default).

use std::time::Duration;

use ballast_core::SourceFile;
use ballast_core::config::Listener;
use ballast_import::{Format, Imported, Options, import_source};

fn import(name: &str, text: &str, format: Format) -> Imported {
    let options = Options {
        format: Some(format),
        // No stock nginx files from this machine.
        nginx_prefix: std::env::temp_dir().join("ballast-no-nginx-prefix"),
        ..Options::default()
    };
    import_source(SourceFile::new(name, text), &options)
        .unwrap_or_else(|e| panic!("refused:\n{}", e.render()))
}

fn haproxy(text: &str) -> Imported {
    import("haproxy.cfg", text, Format::Haproxy)
}

fn nginx(text: &str) -> Imported {
    import("nginx.conf", text, Format::Nginx)
}

fn only_listener(i: &Imported) -> &Listener {
    let listeners: Vec<&Listener> = i.loaded.config.listeners.values().collect();
    assert_eq!(listeners.len(), 1, "{:?}", i.loaded.config.listeners.keys());
    listeners[0]
}

/// The text at the span recorded for `path`.
fn located<'a>(i: &'a Imported, path: &str) -> &'a str {
    let span = i
        .loaded
        .locate(path)
        .unwrap_or_else(|| panic!("no span for {path}"));
    &i.loaded.source.text[span]
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

const HAPROXY_HEAD: &str = "defaults\n  mode http\n  timeout connect 5s\n  timeout server 30s\n";

#[test]
fn haproxy_timeout_client_is_the_send_timeout_too() {
    let i = haproxy(&format!(
        "{HAPROXY_HEAD}  timeout client 42s\nfrontend web\n  bind :80\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    ));
    let l = only_listener(&i);
    assert_eq!(l.timeouts.send.map(|d| d.0), secs(42));
    // Still the head's and the keep-alive's bound, as before.
    assert_eq!(l.timeouts.header_read.map(|d| d.0), secs(42));
    assert_eq!(
        located(&i, "listeners.web.timeouts.send"),
        "timeout client 42s"
    );
    let none = haproxy(&format!(
        "{HAPROXY_HEAD}frontend web\n  bind :80\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    ));
    assert_eq!(only_listener(&none).timeouts.send, None);
}

#[test]
fn haproxy_timeout_tunnel_of_the_routed_backend_is_the_tunnel_timeout() {
    let i = haproxy(&format!(
        "{HAPROXY_HEAD}  timeout client 10s\nfrontend web\n  bind :80\n  default_backend ws\nbackend ws\n  timeout tunnel 2h\n  server a 10.0.0.1:80\nbackend other\n  timeout tunnel 5m\n  server b 10.0.0.2:80\n"
    ));
    let l = only_listener(&i);
    assert_eq!(l.timeouts.tunnel.map(|d| d.0), secs(2 * 3600));
    assert_eq!(
        located(&i, "listeners.web.timeouts.tunnel"),
        "timeout tunnel 2h"
    );
    // From `defaults`, for a listen section.
    let listen = haproxy(&format!(
        "{HAPROXY_HEAD}  timeout client 10s\n  timeout tunnel 1m\nlisten web\n  bind :80\n  server a 10.0.0.1:80\n"
    ));
    assert_eq!(
        only_listener(&listen).timeouts.tunnel.map(|d| d.0),
        secs(60)
    );
    let none = haproxy(&format!(
        "{HAPROXY_HEAD}  timeout client 10s\nlisten web\n  bind :80\n  server a 10.0.0.1:80\n"
    ));
    assert_eq!(only_listener(&none).timeouts.tunnel, None);
    // HAProxy ignores a frontend's own `timeout tunnel` (no backend capability).
    let in_frontend = haproxy(&format!(
        "{HAPROXY_HEAD}  timeout client 10s\nfrontend web\n  bind :80\n  timeout tunnel 9s\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    ));
    assert_eq!(only_listener(&in_frontend).timeouts.tunnel, None);
}

#[test]
fn haproxy_tune_h2_max_concurrent_streams_is_every_http_listeners() {
    let i = haproxy(&format!(
        "global\n  tune.h2.max-concurrent-streams 50\n{HAPROXY_HEAD}  timeout client 10s\nfrontend web\n  bind :80\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    ));
    let l = only_listener(&i);
    assert_eq!(l.max_concurrent_streams, Some(50));
    assert_eq!(
        located(&i, "listeners.web.max_concurrent_streams"),
        "tune.h2.max-concurrent-streams 50"
    );
    // TCP mode has no HTTP/2 streams.
    let tcp = haproxy(
        "global\n  tune.h2.max-concurrent-streams 50\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\nlisten db\n  bind :5432\n  server a 10.0.0.1:5432\n",
    );
    assert_eq!(only_listener(&tcp).max_concurrent_streams, None);
    let none = haproxy(&format!(
        "{HAPROXY_HEAD}  timeout client 10s\nlisten web\n  bind :80\n  server a 10.0.0.1:80\n"
    ));
    assert_eq!(only_listener(&none).max_concurrent_streams, None);
}

const NGINX_UPSTREAM: &str = "upstream app { server 10.0.0.1:80; }\n";

#[test]
fn nginx_send_timeout_is_the_send_timeout() {
    let i = nginx(&format!(
        "events {{}}\nhttp {{\n  send_timeout 17s;\n  {NGINX_UPSTREAM}  server {{\n    listen 8080;\n    location / {{ proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    let l = only_listener(&i);
    assert_eq!(l.timeouts.send.map(|d| d.0), secs(17));
    let name = i.loaded.config.listeners.keys().next().unwrap().clone();
    assert_eq!(
        located(&i, &format!("listeners.{name}.timeouts.send")),
        "send_timeout 17s;"
    );
    // A location's own wins for the location the listener is modelled with.
    let own = nginx(&format!(
        "events {{}}\nhttp {{\n  send_timeout 17s;\n  {NGINX_UPSTREAM}  server {{\n    listen 8080;\n    location / {{ send_timeout 3s; proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&own).timeouts.send.map(|d| d.0), secs(3));
    let none = nginx(&format!(
        "events {{}}\nhttp {{\n  {NGINX_UPSTREAM}  server {{\n    listen 8080;\n    location / {{ proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&none).timeouts.send, None);
}

#[test]
fn nginx_http2_max_concurrent_streams_is_max_concurrent_streams() {
    let i = nginx(&format!(
        "events {{}}\nhttp {{\n  {NGINX_UPSTREAM}  server {{\n    listen 8443 http2;\n    http2_max_concurrent_streams 64;\n    location / {{ proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&i).max_concurrent_streams, Some(64));
    let inherited = nginx(&format!(
        "events {{}}\nhttp {{\n  http2_max_concurrent_streams 32;\n  {NGINX_UPSTREAM}  server {{\n    listen 8443 http2;\n    location / {{ proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&inherited).max_concurrent_streams, Some(32));
    let none = nginx(&format!(
        "events {{}}\nhttp {{\n  {NGINX_UPSTREAM}  server {{\n    listen 8443 http2;\n    location / {{ proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&none).max_concurrent_streams, None);
}

#[test]
fn nginx_proxy_read_timeout_of_a_websocket_location_is_the_tunnel_timeout() {
    let ws = |read_timeout: &str| {
        format!(
            "events {{}}\nhttp {{\n  {NGINX_UPSTREAM}  server {{\n    listen 8080;\n    location / {{ proxy_read_timeout 5s; proxy_pass http://app; }}\n    location /ws {{\n      {read_timeout}\n      proxy_http_version 1.1;\n      proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection \"upgrade\";\n      proxy_pass http://app;\n    }}\n  }}\n}}\n"
        )
    };
    let i = nginx(&ws("proxy_read_timeout 3600s;"));
    let l = only_listener(&i);
    assert_eq!(l.timeouts.tunnel.map(|d| d.0), secs(3600));
    let name = i.loaded.config.listeners.keys().next().unwrap().clone();
    assert_eq!(
        located(&i, &format!("listeners.{name}.timeouts.tunnel")),
        "proxy_read_timeout 3600s;"
    );
    // No proxy_read_timeout in the WebSocket location: nginx's 60 s default bounds it.
    let default = nginx(&ws(""));
    assert_eq!(
        only_listener(&default).timeouts.tunnel.map(|d| d.0),
        secs(60)
    );
    // No location passes Upgrade on: no tunnel setting (the 5 s read timeout is the pool's).
    let plain = nginx(&format!(
        "events {{}}\nhttp {{\n  {NGINX_UPSTREAM}  server {{\n    listen 8080;\n    location / {{ proxy_read_timeout 5s; proxy_set_header Host $host; proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&plain).timeouts.tunnel, None);
    // A location with its own proxy_set_header does not inherit the server's Upgrade one.
    let overridden = nginx(&format!(
        "events {{}}\nhttp {{\n  {NGINX_UPSTREAM}  server {{\n    listen 8080;\n    proxy_set_header Upgrade $http_upgrade;\n    location / {{ proxy_set_header Host $host; proxy_pass http://app; }}\n  }}\n}}\n"
    ));
    assert_eq!(only_listener(&overridden).timeouts.tunnel, None);
}
