//! `ballast serve` end to end on loopback: distribution against the simulator, limits that
//! fail fast, health and failover, reloads, header and framing rules, HTTP/2, TCP mode.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_proxy::{Options, Proxy, ReloadOutcome};
use common::{ConfigFile, backend, event_kinds, events, get, raw_server, request, servers};

const HEAD: &str = "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\nserved_by_header = \"X-Served-By\"\n";

async fn start(config: &ConfigFile) -> Arc<Proxy> {
    Proxy::start(&config.path, Options { seed: Some(7) })
        .await
        .expect("proxy starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_serves_exactly_what_the_simulator_predicts() {
    let (a, b, c) = (
        backend("a", Duration::ZERO).await,
        backend("b", Duration::ZERO).await,
        backend("c", Duration::ZERO).await,
    );
    let mut text = format!(
        "{HEAD}[pools.app]\nalgorithm = \"round-robin\"\n[pools.app.health]\ninitial = \"up\"\ninterval = \"10s\"\n"
    );
    text += &servers("app", &[&a], "weight = 5");
    text += &servers("app", &[&b, &c], "weight = 1");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut served = Vec::new();
    for _ in 0..70 {
        let r = get(addr, "/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        served.push(r.headers["x-served-by"].to_str().unwrap().to_string());
    }
    // The simulator, replaying the same 70 requests with the same configuration.
    let loaded = ballast_core::load_file(&config.path).unwrap();
    let pool = &loaded.config.pools["app"];
    let traffic = ballast_core::traffic::Traffic::default();
    let requests: Vec<ballast_sim::ReplayRequest> = (0..70)
        .map(|i| {
            serde_json::from_str(&format!(
                "{{\"t\": {}, \"client\": \"127.0.0.1\"}}",
                f64::from(i) * 1.0
            ))
            .unwrap()
        })
        .collect();
    let mut predicted = Vec::new();
    let mut record = |r: &ballast_sim::TraceRecord| predicted.push(r.server.unwrap().to_string());
    ballast_sim::Simulation::new("app", pool, &traffic).replay(&requests, Some(&mut record), None);
    assert_eq!(served, predicted, "served and predicted choices differ");
    assert_eq!(served.concat(), "aabacaa".repeat(10));
    assert_eq!(a.hits(), 50);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_server_queues_then_answers_503_with_retry_after_and_nothing_hangs() {
    let slow = backend("slow", Duration::from_millis(600)).await;
    let mut text = format!("{HEAD}[pools.app]\n");
    text += &servers(
        "app",
        &[&slow],
        "max_connections = 1\nmax_queue = 1\nqueue_timeout = \"200ms\"",
    );
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let started = Instant::now();
    let first = tokio::spawn(async move { get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = tokio::spawn(async move { get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = get(addr, "/", &[]).await.unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(refused.body.contains("queue_full"), "{}", refused.body);
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "the queue-full 503 came at once"
    );
    let queued = queued.await.unwrap().unwrap();
    assert_eq!(queued.status, 503);
    assert!(queued.body.contains("queue_timeout"), "{}", queued.body);
    assert_eq!(first.await.unwrap().unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let kinds = event_kinds(&proxy);
    assert!(kinds.contains(&"saturation_began".to_string()), "{kinds:?}");
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_is_ejected_and_no_get_fails() {
    let (a, b, c) = (
        backend("a", Duration::from_millis(1)).await,
        backend("b", Duration::from_millis(1)).await,
        backend("c", Duration::from_millis(1)).await,
    );
    let mut text = format!(
        "{HEAD}[pools.app]\nretries = {{ attempts = 2, budget_percent = 50 }}\n[pools.app.passive]\nconsecutive_failures = 2\nbase_ejection = \"30s\"\nmax_ejected_percent = 50\n"
    );
    text += &servers("app", &[&a, &b, &c], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    // Eight clients keep requests in flight on every server while `b` is killed, and for
    // 400 ms after (a count of requests would finish before the kill on a fast proxy).
    let until = std::time::Instant::now() + Duration::from_millis(550);
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while std::time::Instant::now() < until {
                let r = get(addr, "/", &[]).await;
                outcomes.push(r.map(|r| {
                    (
                        r.status.as_u16(),
                        r.headers
                            .get("x-served-by")
                            .map(|v| v.to_str().unwrap().to_string()),
                    )
                }));
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b_before = b.hits();
    b.kill();
    let mut failed = 0;
    let mut total = 0;
    for c in clients {
        for outcome in c.await.unwrap() {
            total += 1;
            match outcome {
                Ok((200, _)) => {}
                other => {
                    failed += 1;
                    eprintln!("failed: {other:?}");
                }
            }
        }
    }
    assert!(b_before > 0, "b served before it was killed");
    assert_eq!(
        failed, 0,
        "GETs are retried on another server when b dies ({total} requests)"
    );
    let status = proxy.status();
    let b_status = status["pools"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "b")
        .unwrap()
        .clone();
    assert_eq!(b_status["ejected"], true, "{b_status}");
    assert!(event_kinds(&proxy).contains(&"server_ejected".to_string()));
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_a_server_is_never_sent_again() {
    // A server that reads the request and then dies without answering.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = std::sync::Arc::clone(&received);
    let dying = raw_server(move |mut s| {
        let seen = std::sync::Arc::clone(&seen);
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 4096];
            if let Ok(n) = s.read(&mut buf).await
                && n > 0
            {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    })
    .await;
    let text = format!(
        "{HEAD}[admin]\naddress = \"127.0.0.1:0\"\n[pools.app]\nretries = {{ attempts = 3 }}\n[[pools.app.servers]]\nname = \"dying\"\naddress = \"{dying}\"\n"
    );
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let post = request(addr, "POST", "/order", &[], "pay 10 EUR")
        .await
        .unwrap();
    assert_eq!(post.status, 502);
    assert_eq!(
        received.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the POST reached the server once and was not sent again"
    );
    let get_reply = get(addr, "/", &[]).await.unwrap();
    assert_eq!(get_reply.status, 502);
    assert_eq!(
        received.load(std::sync::atomic::Ordering::SeqCst),
        5,
        "a GET is retried: 1 + 3 attempts"
    );
    let metrics = get(proxy.admin_addr().unwrap(), "/metrics", &[])
        .await
        .unwrap()
        .body;
    assert!(
        metrics.contains("ballast_retries_total{pool=\"app\"} 3"),
        "every retry is counted: {metrics}"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request_and_a_refused_reload_keeps_the_old_config() {
    let (a, b) = (
        backend("a", Duration::from_millis(2)).await,
        backend("b", Duration::from_millis(2)).await,
    );
    let base = |wa: u32| {
        let mut t = format!(
            "{HEAD}[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef0123\"\n[pools.app]\n"
        );
        t += &servers("app", &[&a], &format!("weight = {wa}"));
        t += &servers("app", &[&b], "weight = 1");
        t
    };
    let config = ConfigFile::new(&base(1));
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let v1 = proxy.version();
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..300 {
            statuses.push(
                get(addr, "/", &[])
                    .await
                    .map(|r| r.status.as_u16())
                    .unwrap_or(0),
            );
        }
        statuses
    });
    for w in 2..6 {
        config.rewrite(&base(w));
        assert!(matches!(
            proxy.reload().await,
            ReloadOutcome::Applied { .. }
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let statuses = load.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "lost requests during reloads: {:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );
    assert_eq!(
        proxy.listener_addr("web"),
        Some(addr),
        "an unchanged listener is not rebound"
    );
    let v5 = proxy.version();
    assert_ne!(v1, v5);

    // A configuration with an error-level finding (slowloris open) is refused.
    config.rewrite(&base(1).replace(
        "served_by_header",
        "timeouts = { header_read = \"0s\" }\nserved_by_header",
    ));
    let outcome = proxy.reload().await;
    let ReloadOutcome::Refused { reasons } = outcome else {
        panic!("expected refusal, got {outcome:?}")
    };
    assert!(reasons.iter().any(|r| r.contains("TMO-102")), "{reasons:?}");
    assert_eq!(
        proxy.version(),
        v5,
        "the running configuration is untouched"
    );
    assert_eq!(get(addr, "/", &[]).await.unwrap().status, 200);
    // So is one that does not parse.
    config.rewrite("this is not = = toml");
    assert!(matches!(
        proxy.reload().await,
        ReloadOutcome::Refused { .. }
    ));
    assert_eq!(get(addr, "/", &[]).await.unwrap().status, 200);
    let kinds = event_kinds(&proxy);
    assert_eq!(kinds.iter().filter(|k| *k == "config_applied").count(), 5);
    assert_eq!(kinds.iter().filter(|k| *k == "config_refused").count(), 2);

    // The admin API: reload needs the token.
    let admin = proxy.admin_addr().unwrap();
    let denied = request(admin, "POST", "/reload", &[], "").await.unwrap();
    assert_eq!(denied.status, 401);
    config.rewrite(&base(9));
    let ok = request(
        admin,
        "POST",
        "/reload",
        &[("authorization", "Bearer 0123456789abcdef0123")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let metrics = get(admin, "/metrics", &[]).await.unwrap();
    assert!(
        metrics
            .body
            .contains("ballast_requests_total{pool=\"app\",server=\"a\",class=\"2xx\"}"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("ballast_peak_ratio{pool=\"app\"}"));
    let status: serde_json::Value =
        serde_json::from_str(&get(admin, "/status", &[]).await.unwrap().body).unwrap();
    assert_eq!(status["pools"][0]["servers"][0]["weight"], 9);
    assert_eq!(get(admin, "/healthz", &[]).await.unwrap().status, 200);
    // The configuration's text holds the token: only for who presents it.
    let anonymous = get(admin, "/config", &[]).await.unwrap();
    assert_eq!(anonymous.status, 401);
    assert!(!anonymous.body.contains("0123456789abcdef0123"));
    let wrong = get(admin, "/config", &[("authorization", "Bearer nope")])
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    let config_text = get(
        admin,
        "/config",
        &[("authorization", "Bearer 0123456789abcdef0123")],
    )
    .await
    .unwrap();
    assert_eq!(config_text.status, 200);
    assert!(config_text.body.contains("\"version\""));
    // The guard's sample: every server with its cumulative picks, live weight and state.
    let sample: ballast_core::sample::Sample =
        serde_json::from_str(&get(admin, "/sample", &[]).await.unwrap().body).unwrap();
    assert_eq!(sample.source, "ballast");
    assert_eq!(sample.instance, admin.to_string());
    let app = sample.pools.iter().find(|p| p.name == "app").unwrap();
    assert_eq!(app.servers[0].weight, 9);
    assert!(app.servers[0].requests > 0, "{sample:?}");
    assert!(app.servers[0].responses.c2xx > 0, "{sample:?}");
    assert_eq!(
        sample.process.as_ref().and_then(|p| p.generation.clone()),
        Some(proxy.version())
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_framing_and_limits() {
    let a = backend("a", Duration::ZERO).await;
    let mut text = format!(
        "[global]\nmax_connections_per_ip = 1000\n{HEAD}max_body_bytes = 100\nmax_headers = 20\nmax_header_bytes = 8192\n[pools.app]\n"
    );
    text += &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();

    let echo = get(
        addr,
        "/echo",
        &[("connection", "x-hop"), ("x-hop", "1"), ("x-kept", "2")],
    )
    .await
    .unwrap();
    assert_eq!(echo.status, 200);
    assert!(
        echo.body.contains("x-forwarded-for: 127.0.0.1"),
        "{}",
        echo.body
    );
    assert!(echo.body.contains("x-forwarded-proto: http"));
    assert!(echo.body.contains("x-kept: 2"));
    assert!(
        !echo.body.contains("x-hop"),
        "hop-by-hop headers are stripped: {}",
        echo.body
    );
    assert!(
        !echo.headers.contains_key("keep-alive"),
        "hop-by-hop headers are stripped from responses too"
    );

    let big = "x".repeat(101);
    assert_eq!(
        request(addr, "POST", "/", &[], &big).await.unwrap().status,
        413
    );
    assert_eq!(
        request(addr, "POST", "/", &[], "small")
            .await
            .unwrap()
            .status,
        200
    );

    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(get(addr, "/", &many).await.unwrap().status, 431);
    let huge = "y".repeat(20_000);
    assert_eq!(
        get(addr, "/", &[("x-huge", &huge)]).await.unwrap().status,
        431
    );

    // Content-Length with Transfer-Encoding, written by hand since clients refuse to.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = backend("a", Duration::ZERO).await;
    let mut text = HEAD.replace(
        "served_by_header",
        "timeouts = { header_read = \"500ms\" }\nserved_by_header",
    );
    text += "[pools.app]\n";
    text += &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Others are served meanwhile.
    for _ in 0..5 {
        assert_eq!(get(addr, "/", &[]).await.unwrap().status, 200);
    }
    let mut buf = vec![0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            // Trickle a byte at a time, never finishing the head.
            if slow.write_all(b"X").await.is_err() {
                return 0;
            }
            match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
                Ok(Ok(n)) => return n,
                Ok(Err(_)) => return 0,
                Err(_) => continue,
            }
        }
    })
    .await
    .expect("the slow client is cut within the bound");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    let answer = String::from_utf8_lossy(&buf[..read]);
    assert!(read == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_answer_503_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = backend("a", Duration::ZERO).await;
    let mut text = HEAD.replace("served_by_header", "max_connections = 1\nserved_by_header");
    text += "[pools.app]\n";
    text += &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let mut holder = tokio::net::TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let _ = holder.read(&mut buf).await.unwrap();
    let started = Instant::now();
    let refused = get(addr, "/", &[]).await.unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(refused.body.contains("listener_limit"));
    assert!(started.elapsed() < Duration::from_millis(500));
    drop(holder);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(addr, "/", &[]).await.unwrap().status,
        200,
        "the place is given back"
    );
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served() {
    let a = backend("a", Duration::ZERO).await;
    let mut text = format!("{HEAD}[pools.app]\n");
    text += &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::builder()
            .uri(format!("http://{addr}/echo"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), http::Version::HTTP_2);
        use http_body_util::BodyExt;
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        assert!(body.contains(&format!("host: {addr}")), "{body}");
    }
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_forwards_bytes_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo_addr = raw_server(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await;
    let text = format!(
        "[listeners.db]\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"db\"\n[pools.db]\n[[pools.db.servers]]\nname = \"echo\"\naddress = \"{echo_addr}\"\n"
    );
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("db").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&payload).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, payload);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_response_body_is_cut_at_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that answers at once, then sends one body byte every 300 ms for 6 s.
    let slow = raw_server(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if s.write_all(b"1\r\nx\r\n").await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let text =
        HEAD.replace(
            "served_by_header",
            "timeouts = { request = \"1s\" }\nserved_by_header",
        ) + &format!("[pools.app]\n[[pools.app.servers]]\nname = \"slow\"\naddress = \"{slow}\"\n");
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let started = Instant::now();
    let outcome = get(addr, "/", &[]).await;
    let took = started.elapsed();
    assert!(
        outcome.is_err(),
        "the body must not complete: {:?}",
        outcome.map(|r| r.body)
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "cut at {took:?}"
    );
    // The slot was released: the server shows nothing in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(proxy.status()["pools"][0]["servers"][0]["in_flight"], 0);
    proxy.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_down_is_an_event_under_either_policy() {
    let a = backend("a", Duration::ZERO).await;
    let events_of = |proxy: &Proxy| -> Vec<serde_json::Value> {
        events(proxy)
            .into_iter()
            .filter(|e| e["event"].as_str().unwrap().starts_with("all_servers_down"))
            .collect()
    };
    for policy in ["fail-closed", "fail-open"] {
        // Servers start down (the default) until `rise` checks pass.
        let mut text = format!(
            "{HEAD}[pools.app]\nall_down = \"{policy}\"\n[pools.app.health]\ninterval = \"300ms\"\ntimeout = \"200ms\"\nrise = 2\n"
        );
        text += &servers("app", &[&a], "");
        let config = ConfigFile::new(&text);
        let proxy = start(&config).await;
        let addr = proxy.listener_addr("web").unwrap();
        let first = get(addr, "/", &[]).await.unwrap();
        match policy {
            "fail-closed" => {
                assert_eq!(first.status, 503, "{policy}");
                assert!(first.body.contains("no server available"));
            }
            _ => assert_eq!(first.status, 200, "fail-open sends to the server anyway"),
        }
        let down = events_of(&proxy);
        assert_eq!(down.len(), 1, "{policy}: {down:?}");
        assert_eq!(down[0]["event"], "all_servers_down");
        assert_eq!(down[0]["policy"], policy);
        // Two checks later the server is up, and the episode ends.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(get(addr, "/", &[]).await.unwrap().status, 200);
        let events = events_of(&proxy);
        assert_eq!(
            events.last().unwrap()["event"],
            "all_servers_down_ended",
            "{policy}: {events:?}"
        );
        proxy.drain(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_give_their_slot_and_queue_place_back() {
    // The server takes 600 ms; the request timeout is 200 ms, so the proxy's request future is
    // dropped while it waits for the answer (one holds the slot, one waits in the queue).
    let slow = backend("slow", Duration::from_millis(600)).await;
    let mut text = HEAD.replace(
        "served_by_header",
        "timeouts = { request = \"200ms\" }\nserved_by_header",
    );
    text += "[pools.app]\n";
    text += &servers(
        "app",
        &[&slow],
        "max_connections = 1\nmax_queue = 1\nqueue_timeout = \"500ms\"",
    );
    let config = ConfigFile::new(&text);
    let proxy = start(&config).await;
    let addr = proxy.listener_addr("web").unwrap();
    let (first, second) = tokio::join!(get(addr, "/", &[]), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        get(addr, "/", &[]).await
    });
    assert_eq!(first.unwrap().status, 504);
    assert!(matches!(second.unwrap().status.as_u16(), 503 | 504));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let server = proxy.status()["pools"][0]["servers"][0].clone();
    assert_eq!(server["in_flight"], 0, "the slot leaked: {server}");
    assert_eq!(server["queued"], 0, "the queue place leaked: {server}");
    proxy.drain(Duration::from_secs(1)).await;
}
