//! Properties of the simulator that hold for any pool and any traffic: every request ends
//! exactly one way, the same seed gives the same report, limits are respected.

use proptest::prelude::*;

use ballast_core::config::{Algorithm, Pool};
use ballast_core::traffic::Traffic;
use ballast_sim::Simulation;

fn pool(algorithm: Algorithm, servers: &[(u32, Option<u32>, u32, bool)], health: bool) -> Pool {
    let mut text = format!("algorithm = \"{}\"\n", algorithm.as_str());
    if health {
        text += "[health]\ninterval = \"1s\"\ntimeout = \"500ms\"\n";
    }
    for (i, (weight, limit, queue, backup)) in servers.iter().enumerate() {
        text += &format!(
            "[[servers]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\nweight = {weight}\nmax_queue = {queue}\nbackup = {backup}\nqueue_timeout = \"50ms\"\n",
            9000 + i
        );
        if let Some(l) = limit {
            text += &format!("max_connections = {l}\n");
        }
    }
    toml::from_str(&text).expect("pool")
}

fn traffic(rate: f64, mean_ms: u64, fail: Option<(u64, usize)>, seed: u64) -> Traffic {
    let mut text = format!(
        "seed = {seed}\nduration = \"3s\"\narrival = {{ rate = {rate} }}\nclients = {{ count = 50 }}\nkey = {{ cardinality = 20, missing_percent = 10 }}\nservice = {{ mean = \"{mean_ms}ms\", concurrency = 4 }}\n"
    );
    if let Some((at, server)) = fail {
        text += &format!(
            "[[events]]\nat = \"{at}ms\"\nserver = \"s{server}\"\naction = \"fail\"\n[[events]]\nat = \"{}ms\"\nserver = \"s{server}\"\naction = \"recover\"\n",
            at + 800
        );
    }
    toml::from_str(&text).expect("traffic")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    #[test]
    fn every_request_ends_exactly_one_way_and_limits_hold(
        algorithm in prop::sample::select(vec![Algorithm::RoundRobin, Algorithm::LeastConnections,
            Algorithm::PowerOfTwo, Algorithm::ConsistentHash, Algorithm::Random]),
        servers in prop::collection::vec((0u32..4, prop::option::of(1u32..8), 0u32..5, prop::bool::weighted(0.2)), 1..6),
        rate in 50.0f64..3000.0,
        mean_ms in 1u64..40,
        fail in prop::option::of((0u64..2000, 0usize..6)),
        health in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let p = pool(algorithm, &servers, health);
        let fail = fail.map(|(at, s)| (at, s % servers.len()));
        let t = traffic(rate, mean_ms, fail, seed);
        let report = Simulation::new("p", &p, &t).run(None, None);
        let completed: u64 = report.servers.iter().map(|s| s.completed).sum();
        prop_assert_eq!(report.requests, completed + report.rejected + report.failed,
            "completed {} rejected {} failed {}", completed, report.rejected, report.failed);
        for (s, (_, limit, queue, _)) in report.servers.iter().zip(&servers) {
            if let Some(l) = limit {
                prop_assert!(s.peak_in_flight <= *l, "{} in flight over limit {}", s.peak_in_flight, l);
            }
            prop_assert!(s.peak_queue <= *queue);
            prop_assert!(s.queue_wait_max_ms <= 50.0 + 1.0, "waited {}ms past a 50ms queue timeout", s.queue_wait_max_ms);
        }
        let again = Simulation::new("p", &p, &t).run(None, None);
        prop_assert_eq!(serde_json::to_string(&report).unwrap(), serde_json::to_string(&again).unwrap());
    }
}

#[test]
fn a_saturated_server_queues_then_rejects_and_nothing_waits_past_its_timeout() {
    let p = pool(Algorithm::RoundRobin, &[(1, Some(2), 3, false)], false);
    let t = traffic(2000.0, 20, None, 1);
    let r = Simulation::new("p", &p, &t).run(None, None);
    let s = &r.servers[0];
    assert_eq!(s.peak_in_flight, 2);
    assert_eq!(s.peak_queue, 3);
    assert!(s.rejected_queue_full > 1000, "{s:?}");
    assert!(s.queue_wait_max_ms > 0.0 && s.queue_wait_max_ms <= 51.0);
}

#[test]
fn all_servers_down_fails_closed_with_no_server() {
    let p = pool(Algorithm::RoundRobin, &[(1, None, 0, false)], true);
    let mut t = traffic(100.0, 5, Some((0, 0)), 1);
    t.events.pop(); // never recovers
    t.duration.0 = std::time::Duration::from_secs(6);
    let r = Simulation::new("p", &p, &t).run(None, None);
    // Detected after interval × fall + timeout = 3.5s: requests before that fail on the dead
    // server; after it the pool fails closed and answers at once with no server.
    assert_eq!(r.no_server + r.failed, r.requests);
    let failed_share = r.failed as f64 / r.requests as f64;
    assert!(
        (0.5..0.65).contains(&failed_share),
        "3.5s of 6s should fail: {failed_share}"
    );
    assert!(r.no_server > 0);
}
