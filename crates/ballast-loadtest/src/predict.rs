//! `--prediction`: beside each backend's measured share, what `ballast simulate` predicts for
//! the same configuration and the same traffic. The traffic is built from the loadtest's own
//! request plan (its URLs by weight, its key values from the same key model, its source
//! addresses) as recorded requests, and run through `ballast_sim::Simulation::replay`: the
//! emulation `simulate --replay` runs, so no balancing algorithm is written twice here. A
//! `--replay` run hands the simulator the very records it sent.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use ballast_core::config::Pool;
use ballast_core::traffic::Traffic;
use ballast_sim::{ReplayRequest, Simulation};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;

use crate::plan::{Load, Plan};
use crate::report::{BackendReport, Report};
use crate::requests::Requests;

/// The most requests a prediction simulates: enough for shares to a tenth of a point, and
/// bounded in time whatever the run's length.
pub const MAX_PREDICTED_REQUESTS: u64 = 1_000_000;

/// What `simulate` predicts for the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub pool: String,
    /// The algorithm that made the simulated decisions (the emulated one for HAProxy and
    /// nginx pools).
    pub algorithm: String,
    /// Requests simulated.
    pub requests: u64,
    /// Where the simulated traffic came from: `plan` (drawn from this run's request plan) or
    /// `replay` (the recorded requests this run sent).
    pub traffic: String,
    /// Predicted share of each server, by the name the responses give it.
    pub shares: BTreeMap<String, f64>,
}

impl Prediction {
    /// The prediction's lines of the text report.
    pub fn table(&self, backends: &[BackendReport]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nsimulate's prediction (pool `{}`, {}, {} requests from the {}):",
            self.pool, self.algorithm, self.requests, self.traffic
        );
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>10} {:>11}",
            "backend", "measured", "predicted", "difference"
        );
        for b in backends {
            let _ = writeln!(
                out,
                "{:<24} {:>8.1}% {:>10} {:>11}",
                b.name,
                b.share * 100.0,
                b.predicted_share
                    .map(|p| format!("{:.1}%", p * 100.0))
                    .unwrap_or_else(|| "-".into()),
                b.measured_minus_predicted
                    .map(|d| format!("{:+.1} pts", d * 100.0))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        out
    }
}

/// The run's traffic as recorded requests: `count` requests drawn from the plan's URLs and key
/// model (seeded by the plan's seed), `rate` per second apart, each from one of the source
/// addresses the run's connections take (the first of `--source-range` for as many
/// connections as the run may open, in turn; 127.0.0.1 without a range).
pub fn requests_of_plan(plan: &Plan, count: u64, rate: f64) -> Vec<ReplayRequest> {
    let urls = if plan.urls.is_empty() {
        vec![(plan.target.clone(), 1.0)]
    } else {
        plan.urls.clone()
    };
    let requests = Requests::new(
        &urls,
        plan.key.as_ref(),
        &plan.method,
        &plan.headers,
        &plan.body,
    );
    let connections = match plan.load {
        Load::Open {
            max_connections, ..
        } => max_connections,
        Load::Closed { connections } => connections,
    } as usize;
    let sources: Vec<IpAddr> = if plan.sources.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    } else {
        plan.sources
            .iter()
            .copied()
            .take(connections.max(1))
            .collect()
    };
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        1000.0
    };
    let mut rng = SmallRng::seed_from_u64(plan.seed);
    (0..count.min(MAX_PREDICTED_REQUESTS))
        .map(|i| {
            let drawn = requests.draw(&mut rng);
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            headers.insert("Host".into(), drawn.target.authority.clone());
            for (name, value) in drawn.headers {
                headers.insert(name, value);
            }
            ReplayRequest {
                t: i as f64 / rate,
                client: sources[i as usize % sources.len()],
                method: requests.method().to_string(),
                path: drawn.path,
                headers,
            }
        })
        .collect()
}

/// Runs `requests` through the pool's own balancing code, as `simulate --replay` does; the
/// service times come from `traffic` (the configuration's `[simulate]` table, or defaults).
/// Shares are keyed by server name, or by address when `by_address` (nginx's
/// `$upstream_addr`).
pub fn predict(
    pool_name: &str,
    pool: &Pool,
    traffic: &Traffic,
    requests: &[ReplayRequest],
    source: &str,
    by_address: bool,
) -> Prediction {
    let report = Simulation::new(pool_name, pool, traffic).replay(requests, None, None);
    let picked: u64 = report.servers.iter().map(|s| s.picked).sum();
    Prediction {
        pool: pool_name.to_string(),
        algorithm: report.algorithm.clone(),
        requests: report.requests,
        traffic: source.to_string(),
        shares: report
            .servers
            .iter()
            .map(|s| {
                let name = if by_address { &s.address } else { &s.name };
                let share = if picked == 0 {
                    0.0
                } else {
                    s.picked as f64 / picked as f64
                };
                (name.clone(), share)
            })
            .collect(),
    }
}

/// Sets the prediction beside the report's measured shares: each backend's predicted share
/// (0 for a server of the pool it never picked, none for a backend not in the pool) and the
/// measured − predicted difference; a server of the pool that answered nothing is listed.
pub fn apply(report: &mut Report, prediction: Prediction) {
    for name in prediction.shares.keys() {
        if !report.backends.iter().any(|b| &b.name == name) {
            report.backends.push(BackendReport {
                name: name.clone(),
                requests: 0,
                share: 0.0,
                expected_share: None,
                ratio: None,
                responses: BTreeMap::new(),
                latency_ms: Default::default(),
                predicted_share: None,
                measured_minus_predicted: None,
            });
        }
    }
    report.backends.sort_by(|a, b| a.name.cmp(&b.name));
    for b in &mut report.backends {
        b.predicted_share = prediction.shares.get(&b.name).copied();
        b.measured_minus_predicted = b.predicted_share.map(|p| b.share - p);
    }
    report.prediction = Some(prediction);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Stop, Target};
    use crate::requests::{KeyPlace, KeySpec};
    use std::time::Duration;

    fn plan() -> Plan {
        Plan {
            target: Target::parse("http://127.0.0.1:8080/a").unwrap(),
            load: Load::Closed { connections: 2 },
            stop: Stop::Requests(10),
            warmup: Duration::ZERO,
            method: "GET".into(),
            headers: vec![("Accept".into(), "*/*".into())],
            body: Vec::new(),
            served_by: "X-Served-By".into(),
            timeout: Duration::from_secs(1),
            seed: 3,
            urls: Vec::new(),
            key: Some(KeySpec {
                place: KeyPlace::Header("X-Tenant".into()),
                cardinality: 3,
                zipf: 0.0,
                missing: 0.0,
            }),
            sources: ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
                .map(|a| a.parse().unwrap())
                .to_vec(),
            transport: Default::default(),
        }
    }

    #[test]
    fn the_plan_becomes_recorded_requests_with_its_keys_and_sources() {
        let records = requests_of_plan(&plan(), 300, 100.0);
        assert_eq!(records.len(), 300);
        assert!((records[100].t - 1.0).abs() < 1e-9);
        assert!(records.iter().all(|r| r.path == "/a" && r.method == "GET"));
        assert!(
            records
                .iter()
                .all(|r| r.headers["Host"] == "127.0.0.1:8080")
        );
        let mut keys = BTreeMap::new();
        for r in &records {
            *keys.entry(r.headers["X-Tenant"].clone()).or_insert(0) += 1;
        }
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(keys.values().all(|n| (70..130).contains(n)), "{keys:?}");
        // Two connections: the first two addresses of the range, in turn.
        let clients: std::collections::BTreeSet<String> =
            records.iter().map(|r| r.client.to_string()).collect();
        assert_eq!(
            clients.into_iter().collect::<Vec<_>>(),
            ["127.0.0.2", "127.0.0.3"]
        );
    }

    #[test]
    fn a_hashing_pool_is_predicted_by_its_own_emulation() {
        let source = ballast_core::SourceFile::new(
            "t.toml",
            "[pools.app]\nalgorithm = \"consistent-hash\"\nhash_key = { source = \"header\", name = \"X-Tenant\" }\n\
             [[pools.app.servers]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\
             [[pools.app.servers]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n\
             [[pools.app.servers]]\nname = \"c\"\naddress = \"127.0.0.1:3\"\n",
        );
        let (config, _) =
            ballast_core::load::parse_with_spans::<ballast_core::Config>(&source).unwrap();
        let pool = &config.pools["app"];
        let records = requests_of_plan(&plan(), 3000, 1000.0);
        let p = predict("app", pool, &Traffic::default(), &records, "plan", false);
        assert_eq!(p.requests, 3000);
        let total: f64 = p.shares.values().sum();
        assert!((total - 1.0).abs() < 1e-9);
        // Three keys on a ring: each server's share is a sum of whole keys' shares (about a
        // third each), never an arbitrary split.
        for share in p.shares.values() {
            let thirds = share * 3.0;
            assert!((thirds - thirds.round()).abs() < 0.15, "{:?}", p.shares);
        }
        // The same records, keyed by address.
        let by_address = predict("app", pool, &Traffic::default(), &records, "plan", true);
        assert!(by_address.shares.contains_key("127.0.0.1:2"));
    }
}
