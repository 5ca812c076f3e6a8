//! HAProxy's weight map (`lb_map.c`): `balance static-rr` walks it in turn, map-based hashing
//! indexes it with `hash % total weight`.
//!
//! The map has one slot per unit of effective weight (weights divided by their GCD), filled
//! by a smooth interleave: for each slot every usable server adds its weight to its score and
//! the first server with the highest `(score + total) / total` takes the slot and pays `total`.
//! It is rebuilt whenever a server changes state, which is why map-based hashing remaps most
//! keys when one server goes down.

use super::{Seen, Totals};

#[derive(Debug, Clone, Default)]
pub struct Map {
    slots: Vec<usize>,
    rr_idx: usize,
    initialised: bool,
}

impl Map {
    pub fn initialised(&self) -> bool {
        self.initialised
    }

    /// `recalc_server_map`.
    pub fn recalc(&mut self, seen: &[Seen], backup: &[bool], totals: &Totals) {
        self.initialised = true;
        self.slots.clear();
        if totals.tot_used == 0 {
            return;
        }
        let tot = i64::from(totals.tot_weight);
        let want_backup = totals.srv_act == 0;
        let mut wscore = vec![0i64; seen.len()];
        for _ in 0..tot {
            let mut best: Option<usize> = None;
            let mut max = 0i64;
            for i in 0..seen.len() {
                if backup[i] != want_backup || !seen[i].usable {
                    continue;
                }
                if tot == 1 {
                    best = Some(i);
                    break;
                }
                wscore[i] += i64::from(seen[i].eweight);
                let v = (wscore[i] + tot) / tot;
                if best.is_none() || v > max {
                    max = v;
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                self.slots.push(b);
                wscore[b] -= tot;
            }
        }
    }

    /// `map_get_server_hash`.
    pub fn by_hash(&self, hash: u32, totals: &Totals) -> Option<usize> {
        if totals.tot_weight == 0 || self.slots.is_empty() {
            return None;
        }
        self.slots.get((hash % totals.tot_weight) as usize).copied()
    }

    /// `map_get_server_rr`: the next slot whose server has room.
    pub fn next_rr(&mut self, seen: &[Seen]) -> Option<usize> {
        let tot = self.slots.len();
        if tot == 0 {
            return None;
        }
        if self.rr_idx >= tot {
            self.rr_idx = 0;
        }
        let mut newidx = self.rr_idx;
        loop {
            let srv = self.slots[newidx];
            newidx += 1;
            if !seen[srv].full() {
                self.rr_idx = newidx;
                return Some(srv);
            }
            if newidx == tot {
                newidx = 0;
            }
            if newidx == self.rr_idx {
                return None;
            }
        }
    }
}
