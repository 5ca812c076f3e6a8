//! The predicted shift in distribution: each pool that changed is simulated on both sides
//! under the same traffic model and seed (so request *n* is the same request on both sides),
//! with each side's own balancing code (the emulated HAProxy or nginx algorithm when the file
//! is theirs). The result is each server's share before and after and, for pools that hash,
//! the fraction of requests that would go to a different server.

use ballast_core::config::{Algorithm, Config, Pool};
use ballast_core::traffic::Traffic;
use ballast_sim::{Simulation, TraceRecord};
use serde::Serialize;

use crate::compare::{Change, label, pair_servers};

/// One server's share on both sides (0 on a side where it does not exist).
#[derive(Debug, Clone, Serialize)]
pub struct ServerShift {
    /// The server's name on the new side (the old one when removed).
    pub server: String,
    pub address: String,
    pub old_share: f64,
    pub new_share: f64,
    /// new − old, in percentage points.
    pub shift_points: f64,
}

/// The prediction for one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolShift {
    pub pool: String,
    pub requests: u64,
    pub servers: Vec<ServerShift>,
    /// The largest absolute shift of any server, in points.
    pub max_shift_points: f64,
    /// For pools that hash on both sides: the fraction of requests whose server changes
    /// (a key moving means a cold cache or a lost session).
    pub moved: Option<f64>,
}

/// Simulates every pool that exists on both sides and has a change.
pub fn predict(
    old: &Config,
    new: &Config,
    changes: &[Change],
    traffic: &Traffic,
) -> Vec<PoolShift> {
    let mut out = Vec::new();
    for (name, np) in &new.pools {
        let Some(op) = old.pools.get(name) else {
            continue;
        };
        let scope = format!("pool {name}");
        if !changes.iter().any(|c| c.scope == scope) {
            continue;
        }
        out.push(pool(name, op, np, traffic));
    }
    out
}

/// The server address each request went to, by request number (its first decision).
fn run(name: &str, pool: &Pool, traffic: &Traffic) -> (ballast_sim::Report, Vec<Option<String>>) {
    let mut choices: Vec<Option<String>> = Vec::new();
    let mut record = |r: &TraceRecord| {
        let seq = r.seq as usize;
        if seq >= choices.len() {
            choices.resize(seq + 1, None);
            choices[seq] = r.address.map(str::to_string);
        }
    };
    let report = Simulation::new(name, pool, traffic).run(Some(&mut record), None);
    (report, choices)
}

fn hashes(p: &Pool) -> bool {
    p.algorithm == Algorithm::ConsistentHash
}

fn pool(name: &str, op: &Pool, np: &Pool, traffic: &Traffic) -> PoolShift {
    let (old_report, old_choices) = run(name, op, traffic);
    let (new_report, new_choices) = run(name, np, traffic);
    let share = |report: &ballast_sim::Report, server: &str| {
        report
            .servers
            .iter()
            .find(|s| s.name == server)
            .map_or(0.0, |s| s.share)
    };
    let mut servers = Vec::new();
    for (oi, ni) in pair_servers(&op.servers, &np.servers) {
        let old = oi.map(|i| &op.servers[i]);
        let new = ni.map(|j| &np.servers[j]);
        let shown = new.or(old).expect("a pair has a side");
        let old_share = old.map_or(0.0, |s| share(&old_report, &s.name));
        let new_share = new.map_or(0.0, |s| share(&new_report, &s.name));
        servers.push(ServerShift {
            server: label(shown),
            address: shown.address.clone(),
            old_share,
            new_share,
            shift_points: (new_share - old_share) * 100.0,
        });
    }
    let max_shift_points = servers
        .iter()
        .map(|s| s.shift_points.abs())
        .fold(0.0, f64::max);
    let moved = (hashes(op) && hashes(np)).then(|| {
        let n = old_choices.len().min(new_choices.len());
        let changed = old_choices
            .iter()
            .zip(&new_choices)
            .filter(|(a, b)| a != b)
            .count();
        if n == 0 {
            0.0
        } else {
            changed as f64 / n as f64
        }
    });
    PoolShift {
        pool: name.to_string(),
        requests: new_report.requests,
        servers,
        max_shift_points,
        moved,
    }
}
