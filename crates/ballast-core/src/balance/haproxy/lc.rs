//! HAProxy `balance leastconn` (`lb_fwlc.c`).
//!
//! Servers sit in a tree keyed by `(in flight + 1) × 4096 / effective weight`, or 0 when idle,
//! so idle servers always come first; equal keys come out in the order they were (re)inserted,
//! which makes ties rotate. HAProxy repositions a server each time its connection count
//! changes; here a server is repositioned when it is picked (it takes a connection) and, at
//! the next pick, when its count differs from what the balancer last recorded.

use std::collections::BTreeSet;

use super::{SRV_EWGHT_MAX, Seen, Totals};

#[derive(Debug, Clone)]
pub struct LeastConn {
    trees: [BTreeSet<(u32, u64, usize)>; 2],
    /// Each server's node while it is in a tree, and the count it was keyed with.
    node: Vec<Option<(u32, u64)>>,
    keyed_with: Vec<u32>,
    seq: u64,
    initialised: bool,
}

impl LeastConn {
    pub fn new(n: usize) -> Self {
        Self {
            trees: Default::default(),
            node: vec![None; n],
            keyed_with: vec![0; n],
            seq: 0,
            initialised: false,
        }
    }

    pub fn initialised(&self) -> bool {
        self.initialised
    }

    fn remove(&mut self, i: usize) {
        if let Some((k, seq)) = self.node[i].take() {
            for t in &mut self.trees {
                t.remove(&(k, seq, i));
            }
        }
    }

    fn queue(&mut self, i: usize, in_flight: u32, s: &Seen, backup: bool) {
        self.remove(i);
        let key = if in_flight == 0 || s.eweight == 0 {
            0
        } else {
            ((u64::from(in_flight) + 1) * u64::from(SRV_EWGHT_MAX) / u64::from(s.eweight)) as u32
        };
        self.seq += 1;
        self.trees[usize::from(backup)].insert((key, self.seq, i));
        self.node[i] = Some((key, self.seq));
        self.keyed_with[i] = in_flight;
    }

    /// Inserts newly usable servers, drops unusable ones and repositions servers whose count
    /// changed, in server order.
    pub fn sync(&mut self, seen: &[Seen], backup: &[bool]) {
        for (i, s) in seen.iter().enumerate() {
            let present = self.node[i].is_some();
            if !s.usable {
                self.remove(i);
            } else if !present || !self.initialised || self.keyed_with[i] != s.served {
                self.queue(i, s.served, s, backup[i]);
            }
        }
        self.initialised = true;
    }

    /// `fwlc_get_next_server`, with no server to avoid.
    pub fn next_server(&self, seen: &[Seen], totals: &Totals) -> Option<usize> {
        let tree = if totals.srv_act > 0 {
            &self.trees[0]
        } else if let Some(f) = totals.fbck {
            return Some(f);
        } else if totals.srv_bck > 0 {
            &self.trees[1]
        } else {
            return None;
        };
        tree.iter().map(|&(_, _, i)| i).find(|&i| !seen[i].full())
    }

    /// The picked server takes a connection: HAProxy repositions it at once.
    pub fn took(&mut self, i: usize, seen: &[Seen], backup: bool) {
        if self.node[i].is_some() {
            self.queue(i, seen[i].served + 1, &seen[i], backup);
        }
    }
}
