//! HAProxy's balancing algorithms, reproduced decision for decision from the HAProxy 2.6
//! sources: `lb_fwrr.c` (roundrobin), `lb_map.c` (static-rr and map-based hashing),
//! `lb_chash.c` (consistent hashing, random), `lb_fwlc.c` (leastconn), `lb_fas.c` (first) and
//! `backend.c` (keys, hashing, fallbacks).
//!
//! HAProxy keeps its balancing state up to date through callbacks fired when a server goes up
//! or down or changes weight. Here the balancer compares each server's state with the one it
//! last saw at the start of every pick and replays those callbacks, in server order, so the
//! trees and maps evolve as HAProxy's do.
//!
//! What is not exact, and why:
//! - When every server is saturated HAProxy parks the request in the *backend* queue, served by
//!   whichever server frees a slot first. The ballast pool has per-server queues, so the
//!   request is queued on the least loaded server instead.
//! - `leastconn` reorders a server each time its connection count changes. The balancer sees
//!   counts only at pick time, so changes between two picks are replayed in server order.
//! - `random` draws from HAProxy's own PRNG, which cannot be reproduced: shares agree, single
//!   choices do not.

mod chash;
mod fwrr;
pub mod hashfn;
mod lc;
mod map;

use rand::Rng;

use super::ServerLoad;
use crate::config::{BackupMode, Pool};
use crate::emulation::{Emulation, HaproxyHash, HashLookup};

/// HAProxy's weight scale: effective weights are user weights × 16 (`BE_WEIGHT_SCALE`).
const BE_WEIGHT_SCALE: u32 = 16;
/// `SRV_UWGHT_RANGE`: user weights are 0..=256.
const SRV_UWGHT_RANGE: u32 = 256;
/// `SRV_EWGHT_MAX`.
const SRV_EWGHT_MAX: u32 = SRV_UWGHT_RANGE * BE_WEIGHT_SCALE;

/// The backend-wide counters of `recount_servers()` / `update_backend_weight()`.
#[derive(Debug, Clone, Default)]
struct Totals {
    srv_act: u32,
    srv_bck: u32,
    tot_wact: u32,
    tot_wbck: u32,
    /// The first usable backup, when only the first backup serves.
    fbck: Option<usize>,
    tot_weight: u32,
    tot_used: u32,
    /// Sum of the effective weights of the usable servers before each one, per group.
    cumulative: Vec<u32>,
}

/// One server as the LB code sees it at the moment of a pick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    usable: bool,
    eweight: u32,
    served: u32,
    maxconn: u32,
}

impl Seen {
    /// Saturated: HAProxy skips it (`srv->maxconn && served >= srv_dynamic_maxconn`).
    fn full(&self) -> bool {
        self.maxconn != 0 && self.served >= self.maxconn
    }
}

#[derive(Debug, Clone)]
pub struct HaproxyBalancer {
    backup: Vec<bool>,
    first_backup_only: bool,
    /// How user weights become effective weights: ×16, or ÷ their GCD for the map.
    scale: Scale,
    /// What the LB code last saw of each server (its `cur_eweight`, `prev_state`).
    seen: Vec<Seen>,
    totals: Totals,
    algo: Algo,
}

#[derive(Debug, Clone, Copy)]
enum Scale {
    Times16,
    DivGcd(u32),
}

#[derive(Debug, Clone)]
enum Algo {
    RoundRobin(fwrr::Fwrr),
    StaticRr(map::Map),
    MapHash(map::Map),
    Chash {
        ring: chash::Ring,
        balance_factor: u32,
    },
    Random {
        ring: chash::Ring,
        draws: u32,
    },
    LeastConn(lc::LeastConn),
    First {
        /// Server indices by ascending id: the order `balance first` walks.
        by_id: Vec<usize>,
    },
}

impl HaproxyBalancer {
    pub fn new(pool: &Pool, emulation: &Emulation) -> Self {
        let n = pool.servers.len();
        let ids: Vec<u32> = pool
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| s.id.unwrap_or(i as u32 + 1))
            .collect();
        let gcd = weights_gcd(pool.servers.iter().map(|s| s.weight));
        let (scale, algo) = match emulation {
            Emulation::HaproxyStaticRr => (Scale::DivGcd(gcd), Algo::StaticRr(map::Map::default())),
            Emulation::HaproxyHash(HaproxyHash {
                lookup: HashLookup::MapBased,
                ..
            }) => (Scale::DivGcd(gcd), Algo::MapHash(map::Map::default())),
            Emulation::HaproxyHash(h) => (
                Scale::Times16,
                Algo::Chash {
                    ring: chash::Ring::new(&ids, &pool.servers),
                    balance_factor: h.balance_factor,
                },
            ),
            Emulation::HaproxyRandom { draws } => (
                Scale::Times16,
                Algo::Random {
                    ring: chash::Ring::new(&ids, &pool.servers),
                    draws: (*draws).max(1),
                },
            ),
            Emulation::HaproxyLeastconn => (Scale::Times16, Algo::LeastConn(lc::LeastConn::new(n))),
            Emulation::HaproxyFirst => {
                let mut by_id: Vec<usize> = (0..n).collect();
                by_id.sort_by_key(|&i| ids[i]);
                (Scale::Times16, Algo::First { by_id })
            }
            // Roundrobin, and any non-HAProxy emulation handed here by mistake.
            _ => (Scale::Times16, Algo::RoundRobin(fwrr::Fwrr::new(n))),
        };
        let mut b = Self {
            backup: pool.servers.iter().map(|s| s.backup).collect(),
            first_backup_only: pool.backups == BackupMode::First,
            scale,
            seen: vec![Seen::default(); n],
            totals: Totals::default(),
            algo,
        };
        b.totals.cumulative = vec![0; n];
        b
    }

    fn eweight(&self, user_weight: u32) -> u32 {
        match self.scale {
            Scale::Times16 => user_weight.min(SRV_UWGHT_RANGE) * BE_WEIGHT_SCALE,
            Scale::DivGcd(g) => user_weight.min(SRV_UWGHT_RANGE).div_ceil(g.max(1)),
        }
    }

    /// `recount_servers()` + `update_backend_weight()`.
    fn recount(&mut self) {
        let mut t = Totals {
            cumulative: std::mem::take(&mut self.totals.cumulative),
            ..Totals::default()
        };
        for (i, s) in self.seen.iter().enumerate() {
            if !s.usable {
                continue;
            }
            if self.backup[i] {
                if t.srv_bck == 0 && self.first_backup_only {
                    t.fbck = Some(i);
                }
                t.srv_bck += 1;
                t.cumulative[i] = t.tot_wbck;
                t.tot_wbck += s.eweight;
            } else {
                t.srv_act += 1;
                t.cumulative[i] = t.tot_wact;
                t.tot_wact += s.eweight;
            }
        }
        (t.tot_weight, t.tot_used) = if t.srv_act > 0 {
            (t.tot_wact, t.srv_act)
        } else if let Some(f) = t.fbck {
            (self.seen[f].eweight, 1)
        } else {
            (t.tot_wbck, t.srv_bck)
        };
        self.totals = t;
    }

    /// Brings the LB state up to date with the servers as they are now: the callbacks HAProxy
    /// fires on state and weight changes, in server order.
    fn sync(&mut self, n: usize, server: &impl Fn(usize) -> ServerLoad) {
        let mut changed = Vec::new();
        for i in 0..n.min(self.seen.len()) {
            let s = server(i);
            let now = Seen {
                usable: s.available && s.weight > 0,
                eweight: self.eweight(s.weight),
                served: s.in_flight,
                maxconn: if s.limit == u32::MAX { 0 } else { s.limit },
            };
            let was = self.seen[i];
            if was.usable != now.usable || (now.usable && was.eweight != now.eweight) {
                changed.push((i, was));
            }
            self.seen[i] = now;
        }
        let first_time = !self.algo_initialised();
        if first_time || !changed.is_empty() {
            self.recount();
        }
        let totals = &self.totals;
        let seen = &self.seen;
        let backup = &self.backup;
        match &mut self.algo {
            Algo::RoundRobin(f) => {
                if first_time {
                    f.init(seen, backup, totals);
                } else {
                    for &(i, was) in &changed {
                        f.update(i, was, seen, backup);
                    }
                }
            }
            Algo::StaticRr(m) | Algo::MapHash(m) => {
                if first_time || !changed.is_empty() {
                    m.recalc(seen, backup, totals);
                }
            }
            Algo::Chash { ring, .. } | Algo::Random { ring, .. } => {
                if first_time || !changed.is_empty() {
                    ring.rebuild(seen, backup);
                }
            }
            Algo::LeastConn(l) => l.sync(seen, backup),
            Algo::First { .. } => {}
        }
    }

    fn algo_initialised(&self) -> bool {
        match &self.algo {
            Algo::RoundRobin(f) => f.initialised(),
            Algo::StaticRr(m) | Algo::MapHash(m) => m.initialised(),
            Algo::Chash { ring, .. } | Algo::Random { ring, .. } => ring.initialised(),
            Algo::LeastConn(l) => l.initialised(),
            Algo::First { .. } => true,
        }
    }

    /// One HAProxy server assignment. `key` is the request's hash (see `KeyReader`); `None`
    /// for algorithms without a key or a request without one (HAProxy then round-robins over
    /// the map or ring).
    pub fn pick<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        server: impl Fn(usize) -> ServerLoad,
        key: Option<u64>,
        rng: &mut R,
    ) -> Option<usize> {
        self.sync(n, &server);
        if self.totals.tot_weight == 0 {
            return None;
        }
        let seen = &self.seen;
        let totals = &self.totals;
        let backup = &self.backup;
        let picked = match &mut self.algo {
            Algo::RoundRobin(f) => f.next_server(seen, totals),
            Algo::StaticRr(m) => m.next_rr(seen),
            Algo::MapHash(m) => match key {
                Some(k) => m.by_hash(k as u32, totals),
                None => m.next_rr(seen),
            },
            Algo::Chash {
                ring,
                balance_factor,
            } => match key {
                Some(k) => ring.by_hash(k as u32, *balance_factor, seen, totals),
                None => ring.next_rr(seen, totals),
            },
            Algo::Random { ring, draws } => {
                let mut curr: Option<usize> = None;
                for _ in 0..*draws {
                    let prev = curr;
                    let hash = rng.next_u32();
                    curr = ring.by_hash(hash, 0, seen, totals);
                    let Some(c) = curr else { break };
                    if let Some(p) = prev
                        && p != c
                        && u64::from(seen[c].served) * u64::from(seen[p].eweight)
                            > u64::from(seen[p].served) * u64::from(seen[c].eweight)
                    {
                        curr = Some(p);
                    }
                }
                // A full choice goes to the backend queue in HAProxy.
                curr.filter(|&c| !seen[c].full())
            }
            Algo::LeastConn(l) => l.next_server(seen, totals),
            Algo::First { by_id } => first(seen, backup, totals, by_id),
        };
        if let (Some(i), Algo::LeastConn(l)) = (picked, &mut self.algo) {
            l.took(i, &self.seen, self.backup[i]);
        }
        picked.or_else(|| self.backend_queue())
    }

    /// Every candidate is saturated: HAProxy queues in the backend; ballast queues on the
    /// usable server with the lowest load relative to its limit.
    fn backend_queue(&self) -> Option<usize> {
        let want_backup = self.totals.srv_act == 0;
        (0..self.seen.len())
            .filter(|&i| self.seen[i].usable && self.backup[i] == want_backup)
            .min_by(|&a, &b| {
                let (sa, sb) = (&self.seen[a], &self.seen[b]);
                (u64::from(sa.served) * u64::from(sb.maxconn.max(1)))
                    .cmp(&(u64::from(sb.served) * u64::from(sa.maxconn.max(1))))
            })
    }
}

/// `balance first` (`fas_get_next_server`): the lowest id with room.
fn first(seen: &[Seen], backup: &[bool], totals: &Totals, by_id: &[usize]) -> Option<usize> {
    if totals.srv_act == 0
        && let Some(f) = totals.fbck
    {
        return Some(f);
    }
    let want_backup = totals.srv_act == 0;
    by_id
        .iter()
        .copied()
        .find(|&i| seen[i].usable && backup[i] == want_backup && !seen[i].full())
}

/// The GCD of the non-zero weights (`init_server_map`); 1 when all are zero.
fn weights_gcd(weights: impl Iterator<Item = u32>) -> u32 {
    let mut g = 0u32;
    for w in weights.filter(|&w| w > 0) {
        let (mut a, mut b) = (g, w.min(SRV_UWGHT_RANGE));
        while b != 0 {
            (a, b) = (b, a % b);
        }
        g = a;
    }
    g.max(1)
}
