//! HAProxy's consistent-hash ring (`lb_chash.c`), used by `hash-type consistent` and by
//! `balance random`.
//!
//! Server `s` owns up to `weight × 16` nodes at `full_hash(id × 4096 + n)`, where `id` is its
//! numeric id (`hash-key id`, the default); as many as its current effective weight are in the
//! tree. A lookup takes whichever of the nodes just before and at-or-after the hash is
//! *closer*, then walks on while the bounded-load rule (`hash-balance-factor`) refuses the
//! server.

use std::collections::BTreeSet;

use super::hashfn::full_hash;
use super::{BE_WEIGHT_SCALE, SRV_EWGHT_MAX, Seen, Totals};
use crate::config::Server;

/// A node: (key, server, node index). Ordering by key first is the tree's order.
type Node = (u32, usize, u32);

#[derive(Debug, Clone)]
pub struct Ring {
    /// Every node each server owns, in node order.
    nodes: Vec<Vec<u32>>,
    trees: [BTreeSet<Node>; 2],
    last: Option<Node>,
    initialised: bool,
}

impl Ring {
    pub fn new(ids: &[u32], servers: &[Server]) -> Self {
        let nodes = servers
            .iter()
            .zip(ids)
            .map(|(s, &id)| {
                let total = s.weight.min(256) * BE_WEIGHT_SCALE;
                (0..total)
                    .map(|n| full_hash(id.wrapping_mul(SRV_EWGHT_MAX).wrapping_add(n)))
                    .collect()
            })
            .collect();
        Self {
            nodes,
            trees: Default::default(),
            last: None,
            initialised: false,
        }
    }

    pub fn initialised(&self) -> bool {
        self.initialised
    }

    /// Puts `eweight` nodes of each usable server in its group's tree.
    pub fn rebuild(&mut self, seen: &[Seen], backup: &[bool]) {
        self.initialised = true;
        self.trees = Default::default();
        for (i, keys) in self.nodes.iter().enumerate() {
            if !seen[i].usable {
                continue;
            }
            let now = (seen[i].eweight as usize).min(keys.len());
            for (n, &k) in keys[..now].iter().enumerate() {
                self.trees[usize::from(backup[i])].insert((k, i, n as u32));
            }
        }
    }

    /// The tree to look in (active, else backup), or the answer when there is none to search:
    /// the first backup when only it serves, or nothing.
    fn root(totals: &Totals) -> Result<usize, Option<usize>> {
        if totals.srv_act > 0 {
            Ok(0)
        } else if let Some(f) = totals.fbck {
            Err(Some(f))
        } else if totals.srv_bck > 0 {
            Ok(1)
        } else {
            Err(None)
        }
    }

    /// `chash_get_server_hash`, with no server to avoid.
    pub fn by_hash(
        &self,
        hash: u32,
        balance_factor: u32,
        seen: &[Seen],
        totals: &Totals,
    ) -> Option<usize> {
        let root = match Self::root(totals) {
            Ok(r) => &self.trees[r],
            Err(direct) => return direct,
        };
        let next = root.range((hash, 0, 0)..).next().or_else(|| root.first())?;
        let prev = root.range(..*next).next_back().or_else(|| root.last())?;
        let dp = hash.wrapping_sub(prev.0);
        let dn = next.0.wrapping_sub(hash);
        let mut node = if dp <= dn { *prev } else { *next };
        if balance_factor == 0 {
            return Some(node.1);
        }
        let served: u64 = seen.iter().map(|s| u64::from(s.served)).sum();
        let mut wrapped = 0;
        while !eligible(node.1, served, balance_factor, seen, totals) {
            node = match root
                .range((std::ops::Bound::Excluded(node), std::ops::Bound::Unbounded))
                .next()
            {
                Some(n) => *n,
                None => {
                    wrapped += 1;
                    if wrapped > 1 {
                        break;
                    }
                    *root.first()?
                }
            };
        }
        Some(node.1)
    }

    /// `chash_get_next_server`: round-robin along the ring, for requests without a key.
    pub fn next_rr(&mut self, seen: &[Seen], totals: &Totals) -> Option<usize> {
        let root = match Self::root(totals) {
            Ok(r) => &self.trees[r],
            Err(direct) => return direct,
        };
        let mut stop = self.last;
        let mut node = self.last;
        loop {
            node = node
                .and_then(|n| {
                    root.range((std::ops::Bound::Excluded(n), std::ops::Bound::Unbounded))
                        .next()
                        .copied()
                })
                .or_else(|| root.first().copied());
            let n = node?;
            if stop.is_none() {
                stop = node;
            }
            if !seen[n.1].full() {
                self.last = node;
                return Some(n.1);
            }
            if node == stop {
                self.last = node;
                return None;
            }
        }
    }
}

/// `chash_server_is_eligible`: the bounded-load rule, in HAProxy's integer arithmetic.
fn eligible(s: usize, proxy_served: u64, factor: u32, seen: &[Seen], totals: &Totals) -> bool {
    let tot_weight = u64::from(totals.tot_weight.max(1));
    let tot_slots = ((proxy_served + 1) * u64::from(factor)).div_ceil(100);
    let per_weight = tot_slots / tot_weight;
    let remainder = tot_slots % tot_weight;
    let eweight = u64::from(seen[s].eweight);
    let cumulative = u64::from(totals.cumulative[s]);
    let mut slots = eweight * per_weight;
    slots +=
        ((cumulative + eweight) * remainder) / tot_weight - (cumulative * remainder) / tot_weight;
    u64::from(seen[s].served) < slots.max(1)
}
