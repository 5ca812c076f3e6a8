//! The balancing decision: given a pool's state, pick a server. Pure and synchronous.
//!
//! The proxy calls [`Balancer::pick`] with live counters and real time; the simulator calls the
//! very same method with a virtual clock. Everything the decision may depend on comes in
//! through [`PoolView`] (weights, availability, in-flight counts), the key hash and the RNG.
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
mod key;
mod least;
mod random;
mod slow_start;
mod swrr;

pub use chash::Ring;
pub use key::{RequestParts, extract_key, hash_key};
pub use least::LeastConnections;
pub use random::{power_of_two, weighted_random};
pub use slow_start::slow_start_weight;
pub use swrr::SmoothWeightedRoundRobin;

use rand::Rng;

use crate::config::{Algorithm, AllDownPolicy, Pool};

/// What the balancing decision may know about a pool's servers at one instant.
pub trait PoolView {
    /// Number of servers, in configuration order.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the server may receive traffic (healthy and not ejected).
    fn available(&self, i: usize) -> bool;
    /// Effective weight now: the configured weight, ramped by slow start. 0 drains.
    fn weight(&self, i: usize) -> u32;
    /// Requests in flight on the server (sent and not yet fully answered).
    fn in_flight(&self, i: usize) -> u32;
    /// Whether the server is at its connection limit.
    fn full(&self, i: usize) -> bool;
}

/// A per-pool balancer: the algorithm plus whatever state it keeps between picks.
#[derive(Debug, Clone)]
pub struct Balancer {
    backup: Vec<bool>,
    has_backups: bool,
    all_down: AllDownPolicy,
    picker: Picker,
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

/// Which servers a pass of the algorithm may consider.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Available, weighted, in the tier, with room.
    WithRoom,
    /// Available, weighted, in the tier, full or not.
    Any,
}

impl Balancer {
    /// Builds the balancer for a pool. Server identity (for the hash ring) is the server name.
    pub fn new(pool: &Pool) -> Self {
        let n = pool.servers.len();
        let ring = (pool.algorithm == Algorithm::ConsistentHash)
            .then(|| Ring::new(pool.servers.iter().map(|s| (s.name.as_str(), s.weight))));
        Self {
            backup: pool.servers.iter().map(|s| s.backup).collect(),
            has_backups: pool.servers.iter().any(|s| s.backup),
            all_down: pool.all_down,
            picker: Picker {
                algorithm: pool.algorithm,
                balance_factor: pool.balance_factor(),
                swrr: SmoothWeightedRoundRobin::new(n),
                least: LeastConnections::new(n),
                ring,
            },
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.picker.algorithm
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
        // Primaries first, then backups. Within a tier, servers with room first; if every
        // candidate is full, any candidate (the caller queues). A tier with no candidate at
        // all returns None from both passes and the next tier is tried.
        let tiers: &[bool] = if self.has_backups {
            &[false, true]
        } else {
            &[false]
        };
        for &backup_tier in tiers {
            for pass in [Pass::WithRoom, Pass::Any] {
                let backup = &self.backup;
                let check_tier = self.has_backups;
                let candidate = |i: usize| {
                    (!check_tier || backup[i] == backup_tier)
                        && view.weight(i) > 0
                        && view.available(i)
                        && (pass == Pass::Any || !view.full(i))
                };
                if let Some(i) = self.picker.pick(view, key, rng, candidate) {
                    return Some(i);
                }
            }
        }
        match self.all_down {
            AllDownPolicy::FailClosed => None,
            AllDownPolicy::FailOpen => {
                let candidate = |i: usize| view.weight(i) > 0;
                self.picker.pick(view, key, rng, candidate)
            }
        }
    }
}

impl Picker {
    fn pick<V: PoolView, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        key: Option<u64>,
        rng: &mut R,
        candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self.algorithm {
            Algorithm::RoundRobin => self.swrr.pick(view, candidate),
            Algorithm::LeastConnections => self.least.pick(view, candidate),
            Algorithm::PowerOfTwo => power_of_two(view, rng, candidate),
            Algorithm::Random => weighted_random(view, rng, candidate),
            Algorithm::ConsistentHash => match (key, &self.ring) {
                (Some(k), Some(ring)) => ring.pick(view, k, self.balance_factor, candidate),
                _ => self.swrr.pick(view, candidate),
            },
        }
    }
}

/// A uniform draw in `0..n` (Lemire's multiply-shift; the bias is at most n / 2⁶⁴).
#[inline]
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// A plain in-memory pool state: what the simulator and the tests hand to the balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolState {
    pub available: Vec<bool>,
    pub weight: Vec<u32>,
    pub in_flight: Vec<u32>,
    /// Connection limit per server; `u32::MAX` when unlimited.
    pub limit: Vec<u32>,
}

impl PoolState {
    /// All servers available, at their configured weights, idle.
    pub fn from_pool(pool: &Pool) -> Self {
        Self {
            available: vec![true; pool.servers.len()],
            weight: pool.servers.iter().map(|s| s.weight).collect(),
            in_flight: vec![0; pool.servers.len()],
            limit: pool
                .servers
                .iter()
                .map(|s| s.max_connections.unwrap_or(u32::MAX))
                .collect(),
        }
    }

    /// `n` available servers with the given weights, idle and unlimited.
    pub fn with_weights(weights: &[u32]) -> Self {
        Self {
            available: vec![true; weights.len()],
            weight: weights.to_vec(),
            in_flight: vec![0; weights.len()],
            limit: vec![u32::MAX; weights.len()],
        }
    }
}

impl PoolView for PoolState {
    #[inline]
    fn len(&self) -> usize {
        self.weight.len()
    }
    #[inline]
    fn available(&self, i: usize) -> bool {
        self.available[i]
    }
    #[inline]
    fn weight(&self, i: usize) -> u32 {
        self.weight[i]
    }
    #[inline]
    fn in_flight(&self, i: usize) -> u32 {
        self.in_flight[i]
    }
    #[inline]
    fn full(&self, i: usize) -> bool {
        self.in_flight[i] >= self.limit[i]
    }
}

#[cfg(test)]
mod tests;
