//! What `ballast simulate` predicts is what `ballast serve` does: for every algorithm, the
//! same configuration, the same request sequence and the same seed give the same server for
//! every request. Requests are sequential, so in-flight counts are identical too.

mod common;

use std::time::Duration;

use ballast_proxy::{Options, Proxy};
use common::{ConfigFile, backend, get, servers};

const SEED: u64 = 42;

async fn compare(algorithm: &str, hash_key: &str) {
    let backends = [
        backend("s1", Duration::ZERO).await,
        backend("s2", Duration::ZERO).await,
        backend("s3", Duration::ZERO).await,
        backend("s4", Duration::ZERO).await,
    ];
    let mut text = format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\nserved_by_header = \"X-Served-By\"\n[pools.app]\nalgorithm = \"{algorithm}\"\n{hash_key}\n"
    );
    for (b, weight) in backends.iter().zip([3, 1, 2, 1]) {
        text += &servers("app", &[b], &format!("weight = {weight}"));
    }
    let config = ConfigFile::new(&text);
    let proxy = Proxy::start(&config.path, Options { seed: Some(SEED) })
        .await
        .expect("proxy starts");
    let addr = proxy.listener_addr("web").unwrap();

    let paths: Vec<String> = (0..80)
        .map(|i| format!("/item/{}", (i * 7919) % 23))
        .collect();
    let mut served = Vec::new();
    for p in &paths {
        let r = get(addr, p, &[]).await.unwrap();
        assert_eq!(r.status, 200);
        served.push(r.headers["x-served-by"].to_str().unwrap().to_string());
    }
    proxy.drain(Duration::from_secs(1)).await;

    let loaded = ballast_core::load_file(&config.path).unwrap();
    let pool = &loaded.config.pools["app"];
    let traffic = ballast_core::traffic::Traffic {
        seed: SEED,
        ..Default::default()
    };
    let requests: Vec<ballast_sim::ReplayRequest> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::from_str(&format!(
                "{{\"t\": {i}, \"client\": \"127.0.0.1\", \"path\": \"{p}\"}}"
            ))
            .unwrap()
        })
        .collect();
    let mut predicted = Vec::new();
    let mut record = |r: &ballast_sim::TraceRecord| predicted.push(r.server.unwrap().to_string());
    ballast_sim::Simulation::new("app", pool, &traffic).replay(&requests, Some(&mut record), None);
    assert_eq!(
        served, predicted,
        "{algorithm}: served and predicted choices differ"
    );
    let distinct: std::collections::HashSet<_> = served.iter().collect();
    assert!(
        distinct.len() >= 3,
        "{algorithm}: the test should exercise several servers: {distinct:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_matches_request_by_request() {
    compare("round-robin", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_matches_request_by_request() {
    compare("least-connections", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_of_two_matches_request_by_request() {
    compare("power-of-two", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_matches_request_by_request() {
    compare("random", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_the_path_matches_request_by_request() {
    compare("consistent-hash", "hash_key = { source = \"path\" }").await;
}
