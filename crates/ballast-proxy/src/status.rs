//! What `/status` reports: every pool and server with weights, health, load and shares, and
//! the active alerts of the guard `serve` runs on this proxy.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use ballast_core::balance::{expected_shares, peak_ratio};

use crate::runtime::{PoolRuntime, Snapshot};

/// Shares of a pool's decisions (since start, and over the recent window), the expected
/// shares, and R for each.
pub struct PoolShares {
    pub shares: Vec<f64>,
    pub recent: Vec<f64>,
    pub expected: Vec<f64>,
    pub peak_ratio: f64,
    pub recent_peak_ratio: f64,
}

fn normalise(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

pub fn pool_shares(pool: &PoolRuntime) -> PoolShares {
    let picks: Vec<u64> = pool
        .servers
        .iter()
        .map(|s| s.state.picks.load(Ordering::Relaxed))
        .collect();
    let recent_picks: Vec<u64> = pool
        .servers
        .iter()
        .map(|s| s.state.recent_picks())
        .collect();
    let (shares, recent) = (normalise(&picks), normalise(&recent_picks));
    let expected = expected_shares(&pool.spec);
    PoolShares {
        peak_ratio: peak_ratio(&shares, &expected),
        recent_peak_ratio: peak_ratio(&recent, &expected),
        shares,
        recent,
        expected,
    }
}

pub fn status(
    snapshot: &Snapshot,
    events: Vec<ballast_core::event::Event>,
    alerts: &[ballast_core::event::ActiveAlert],
) -> Value {
    let mut pools: Vec<&std::sync::Arc<PoolRuntime>> = snapshot.pools.values().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let pools: Vec<Value> = pools
        .into_iter()
        .map(|pool| {
            let stats = pool_shares(pool);
            let servers: Vec<Value> = pool
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let st = &s.state;
                    json!({
                        "name": s.spec.name,
                        "address": s.spec.address,
                        "weight": s.spec.weight,
                        "backup": s.spec.backup,
                        "up": st.available(),
                        "healthy": st.healthy.load(Ordering::Relaxed),
                        "ejected": st.ejected.load(Ordering::Relaxed),
                        "in_flight": st.in_flight.load(Ordering::Relaxed),
                        "queued": st.queued.load(Ordering::Relaxed),
                        "limit": s.spec.max_connections,
                        "idle_connections": st.idle.len() + st.idle_streams.len(),
                        "picks": st.picks.load(Ordering::Relaxed),
                        "share": stats.shares[i],
                        "recent_share": stats.recent[i],
                        "expected_share": stats.expected[i],
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "algorithm": pool.spec.algorithm.as_str(),
                "peak_ratio": stats.peak_ratio,
                "recent_peak_ratio": stats.recent_peak_ratio,
                "recent_window_seconds": crate::runtime::RECENT_WINDOW_SECS,
                "all_down": pool.all_down.load(Ordering::Relaxed),
                "servers": servers,
            })
        })
        .collect();
    json!({
        "version": snapshot.version,
        "file": snapshot.loaded.source.path.display().to_string(),
        "pools": pools,
        "recent_events": events,
        "alerts": alerts
            .iter()
            .map(|a| json!({
                "labels": a.labels,
                "state": a.state,
                "summary": a.summary,
                "cause": a.cause,
                "starts_at_ms": a.starts_at_ms,
                "inhibited_by": a.inhibited_by,
            }))
            .collect::<Vec<Value>>(),
    })
}
