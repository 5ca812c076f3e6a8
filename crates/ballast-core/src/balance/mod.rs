//! The balancing decision: given a pool's state, pick a server. Pure and synchronous.
//!
//! The proxy calls [`Balancer::pick`] with live counters and real time; the simulator calls the
//! very same method with a virtual clock. Everything the decision may depend on comes in
//! through [`PoolView`] (weights, availability, in-flight counts), the key hash and the RNG.
//!
//! Algorithms receive an `eligible(i)` function giving server `i`'s state, with its weight set
//! to 0 when it is not a candidate for this pick, so each server is read once per scan.
//!
//! Rules shared by every algorithm:
//! - A server is a candidate when it is available (healthy, not ejected) and its effective
//!   weight is above 0. Weight 0 means drain: no new requests.
//! - Backups are candidates only when no primary is.
//! - Servers at their connection limit are passed over while another candidate has room; when
//!   every candidate is full the algorithm picks among them anyway and the caller queues the
//!   request on that server (or refuses it when the queue is full).
//! - With no candidate, [`AllDownPolicy::FailClosed`] returns `None`; `FailOpen` ignores
//!   availability and picks among every server with weight.

mod chash;
pub mod haproxy;
mod key;
mod least;
pub mod nginx;
mod random;
mod slow_start;
mod swrr;

pub use chash::Ring;
pub use key::{
    ClientAddress, KeyReader, NginxTemplate, RequestParts, extract_key, hash_key,
    nginx_variable_supported,
};
pub use least::LeastConnections;
pub use random::{power_of_two, weighted_random};
pub use slow_start::slow_start_weight;
pub use swrr::SmoothWeightedRoundRobin;

use rand::Rng;

use crate::config::{Algorithm, AllDownPolicy, BackupMode, Pool};
use crate::emulation::Emulation;
use haproxy::HaproxyBalancer;
use nginx::NginxBalancer;

/// What the balancing decision may know about a pool's servers at one instant.
pub trait PoolView {
    /// Number of servers, in configuration order.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Server `i` now: availability, effective weight (slow start applied), in flight, limit.
    fn server(&self, i: usize) -> ServerLoad;
    /// All servers as a plain slice, when the view holds them that way. The decision is the
    /// same either way; a slice lets the scan keep its bounds in registers (about 1.5× faster
    /// over 16 servers, see BENCHMARKS.md).
    fn as_slice(&self) -> Option<&[ServerLoad]> {
        None
    }
}

/// One server's state as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLoad {
    /// Healthy and not ejected.
    pub available: bool,
    /// Effective weight: the configured weight, ramped by slow start. 0 drains.
    pub weight: u32,
    /// Requests sent and not yet fully answered.
    pub in_flight: u32,
    /// Connection limit; `u32::MAX` when unlimited.
    pub limit: u32,
}

impl ServerLoad {
    /// At its connection limit.
    #[inline]
    pub fn full(&self) -> bool {
        self.in_flight >= self.limit
    }

    /// The same server marked as no candidate for this pick.
    #[inline]
    fn excluded(self) -> Self {
        Self { weight: 0, ..self }
    }
}

/// A per-pool balancer: the algorithm plus whatever state it keeps between picks.
#[derive(Debug, Clone)]
pub struct Balancer {
    backup: Vec<bool>,
    has_backups: bool,
    /// Servers configured `down`: never picked by the native algorithms.
    down: Vec<bool>,
    has_down: bool,
    first_backup_only: bool,
    all_down: AllDownPolicy,
    engine: Engine,
}

/// Who decides: ballast's own algorithms, or an exact emulation of a foreign load balancer's
/// (which then applies that balancer's own tier, limit and failure rules).
#[derive(Debug, Clone)]
enum Engine {
    Native(Picker),
    Haproxy(Box<HaproxyBalancer>),
    Nginx(Box<NginxBalancer>),
}

/// The algorithm and the state it keeps between picks.
#[derive(Debug, Clone)]
struct Picker {
    algorithm: Algorithm,
    balance_factor: f64,
    /// Round-robin state; also the fallback for hashing requests that carry no key.
    swrr: SmoothWeightedRoundRobin,
    least: LeastConnections,
    ring: Option<Ring>,
}

impl Balancer {
    /// Builds the balancer for a pool. Server identity (for the hash ring) is the server name.
    pub fn new(pool: &Pool) -> Self {
        let n = pool.servers.len();
        let ring = (pool.algorithm == Algorithm::ConsistentHash)
            .then(|| Ring::new(pool.servers.iter().map(|s| (s.name.as_str(), s.weight))));
        let engine = match &pool.emulate {
            Some(e @ Emulation::NginxRoundRobin)
            | Some(e @ Emulation::NginxIpHash)
            | Some(e @ Emulation::NginxHash { .. })
            | Some(e @ Emulation::NginxLeastConn)
            | Some(e @ Emulation::NginxRandom { .. }) => {
                Engine::Nginx(Box::new(NginxBalancer::new(pool, e)))
            }
            Some(e) => Engine::Haproxy(Box::new(HaproxyBalancer::new(pool, e))),
            None => Engine::Native(Picker {
                algorithm: pool.algorithm,
                balance_factor: pool.balance_factor(),
                swrr: SmoothWeightedRoundRobin::new(n),
                least: LeastConnections::new(n),
                ring,
            }),
        };
        Self {
            backup: pool.servers.iter().map(|s| s.backup).collect(),
            has_backups: pool.servers.iter().any(|s| s.backup),
            down: pool.servers.iter().map(|s| s.down).collect(),
            has_down: pool.servers.iter().any(|s| s.down),
            first_backup_only: pool.backups == BackupMode::First,
            all_down: pool.all_down,
            engine,
        }
    }

    /// Picks a server for one request. `key` is the hash of the request's key (see
    /// [`hash_key`]); `None` when the pool does not hash or the request carries no key, in
    /// which case a hashing pool falls back to smooth weighted round-robin.
    pub fn pick<V: PoolView, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        key: Option<u64>,
        rng: &mut R,
    ) -> Option<usize> {
        match view.as_slice() {
            Some(servers) => self.pick_from(servers.len(), move |i| servers[i], key, rng),
            None => self.pick_from(view.len(), move |i| view.server(i), key, rng),
        }
    }

    fn pick_from<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        server: impl Fn(usize) -> ServerLoad + Copy,
        key: Option<u64>,
        rng: &mut R,
    ) -> Option<usize> {
        let picker = match &mut self.engine {
            Engine::Native(p) => p,
            // HAProxy keeps a `disabled` server out of its trees and maps: to the emulation it
            // is a server that is not available.
            Engine::Haproxy(h) if self.has_down => {
                let down = self.down.as_slice();
                return h.pick(
                    n,
                    move |i| {
                        let mut s = server(i);
                        s.available &= !down[i];
                        s
                    },
                    key,
                    rng,
                );
            }
            Engine::Haproxy(h) => return h.pick(n, server, key, rng),
            Engine::Nginx(x) => return x.pick(n, server, key, rng),
        };
        // Primaries first, then backups. Within a tier, servers with room first; if every
        // candidate is full, any candidate (the caller queues). A tier with no candidate at
        // all returns None from both passes and the next tier is tried.
        let tiers: &[bool] = if self.has_backups {
            &[false, true]
        } else {
            &[false]
        };
        let down = self.down.as_slice();
        for &backup_tier in tiers {
            // With `backups = "first"`, only the first available backup is a candidate.
            let only = (backup_tier && self.first_backup_only)
                .then(|| {
                    (0..n).find(|&i| {
                        let s = server(i);
                        self.backup[i] && !down[i] && s.available && s.weight > 0
                    })
                })
                .flatten();
            for need_room in [true, false] {
                let backup = self.backup.as_slice();
                let check_tier = self.has_backups;
                // `move`: the flags are copied into the closures, so they stay in registers
                // instead of being reloaded for every server.
                let picked = if !self.has_down && only.is_none() {
                    // The common case, kept lean: this closure runs for every server of
                    // every pick (the `down` and first-backup tests cost ~40% per pick).
                    picker.pick(n, key, rng, move |i: usize| {
                        let s = server(i);
                        let ok = s.available
                            & !(need_room & s.full())
                            & (!check_tier || backup[i] == backup_tier);
                        if ok { s } else { s.excluded() }
                    })
                } else {
                    picker.pick(n, key, rng, move |i: usize| {
                        let s = server(i);
                        let ok = s.available
                            & !down[i]
                            & !(need_room & s.full())
                            & (!check_tier || backup[i] == backup_tier)
                            & only.is_none_or(|o| o == i);
                        if ok { s } else { s.excluded() }
                    })
                };
                if let Some(i) = picked {
                    return Some(i);
                }
            }
        }
        match self.all_down {
            AllDownPolicy::FailClosed => None,
            AllDownPolicy::FailOpen => picker.pick(n, key, rng, move |i| {
                let s = server(i);
                if down[i] { s.excluded() } else { s }
            }),
        }
    }
}

impl Picker {
    fn pick<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        key: Option<u64>,
        rng: &mut R,
        eligible: impl Fn(usize) -> ServerLoad,
    ) -> Option<usize> {
        match self.algorithm {
            Algorithm::RoundRobin => self.swrr.pick(n, eligible),
            Algorithm::LeastConnections => self.least.pick(n, eligible),
            Algorithm::PowerOfTwo => power_of_two(n, rng, eligible),
            Algorithm::Random => weighted_random(n, rng, eligible),
            Algorithm::ConsistentHash => match (key, &self.ring) {
                (Some(k), Some(ring)) => ring.pick(n, k, self.balance_factor, eligible),
                _ => self.swrr.pick(n, eligible),
            },
        }
    }
}

/// Each server's expected share of a pool's traffic: its weight over the total weight of the
/// primaries that can serve. Backups, drained and down servers expect nothing; when no primary
/// can serve, the backups share it. All zeros when no server can.
pub fn expected_shares(pool: &Pool) -> Vec<f64> {
    // A server marked down (HAProxy `disabled`, nginx `down`) is never picked; when no primary
    // can serve, the backups are the tier (only the first with `backups = "first"`).
    let serving = |s: &crate::config::Server| !s.down && s.weight > 0;
    let backup_tier = !pool.servers.iter().any(|s| !s.backup && serving(s));
    let first_backup = (backup_tier && pool.backups == BackupMode::First)
        .then(|| pool.servers.iter().position(|s| s.backup && serving(s)))
        .flatten();
    let in_tier = |i: usize, s: &crate::config::Server| {
        serving(s) && s.backup == backup_tier && first_backup.is_none_or(|f| f == i)
    };
    let total: u64 = pool
        .servers
        .iter()
        .enumerate()
        .filter(|&(i, s)| in_tier(i, s))
        .map(|(_, s)| u64::from(s.weight))
        .sum();
    pool.servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if in_tier(i, s) {
                f64::from(s.weight) / total as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// Peak normalised share R = max(share / expected share) over servers expected to serve.
pub fn peak_ratio(shares: &[f64], expected: &[f64]) -> f64 {
    shares
        .iter()
        .zip(expected)
        .filter(|(_, e)| **e > 0.0)
        .map(|(s, e)| s / e)
        .fold(0.0, f64::max)
}

/// A uniform draw in `0..n` (Lemire's multiply-shift; the bias is at most n / 2⁶⁴).
#[inline]
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// A plain in-memory pool state: what the simulator and the tests hand to the balancer.
/// One struct per server, so a pick touches one cache line per server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolState {
    pub servers: Vec<ServerLoad>,
}

impl PoolState {
    /// All servers available, at their configured weights, idle.
    pub fn from_pool(pool: &Pool) -> Self {
        Self {
            servers: pool
                .servers
                .iter()
                .map(|s| ServerLoad {
                    available: true,
                    weight: s.weight,
                    in_flight: 0,
                    limit: s.max_connections.unwrap_or(u32::MAX),
                })
                .collect(),
        }
    }

    /// Servers available with the given weights, idle and unlimited.
    pub fn with_weights(weights: &[u32]) -> Self {
        Self {
            servers: weights
                .iter()
                .map(|&weight| ServerLoad {
                    available: true,
                    weight,
                    in_flight: 0,
                    limit: u32::MAX,
                })
                .collect(),
        }
    }

    /// In-flight counts, in server order.
    pub fn loads(&self) -> Vec<u32> {
        self.servers.iter().map(|s| s.in_flight).collect()
    }

    /// Sets every server's in-flight count, in server order.
    pub fn set_loads(&mut self, counts: &[u32]) {
        for (s, &c) in self.servers.iter_mut().zip(counts) {
            s.in_flight = c;
        }
    }
}

impl PoolView for PoolState {
    #[inline]
    fn len(&self) -> usize {
        self.servers.len()
    }
    #[inline]
    fn server(&self, i: usize) -> ServerLoad {
        self.servers[i]
    }
    #[inline]
    fn as_slice(&self) -> Option<&[ServerLoad]> {
        Some(&self.servers)
    }
}

#[cfg(test)]
mod tests;
