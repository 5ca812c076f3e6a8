//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, arXiv:1608.01350).
//!
//! Each server owns points on a 64-bit ring in proportion to its weight (160 points for a
//! server of average weight, as nginx's ketama gives per unit of weight). A key goes to the
//! owner of the first point at or after its hash, unless that server already has its bounded
//! share of the requests in flight: `⌈c · (m + 1) · w / W⌉`, with `m` the requests in flight
//! across the candidates, `w` the server's weight, `W` the candidates' total weight and `c` the
//! balance factor. Then the walk continues clockwise. Since the caps add up to more than
//! `m + 1`, some candidate always has room, and no server ever exceeds its cap.
//!
//! Points are placed by hashing the server's *name*, not its position or address, so
//! reordering servers or moving one to a new address remaps nothing, and adding or removing
//! one server moves only the keys that server gains or owned.

use super::ServerLoad;

/// Points per server of average weight.
pub const POINTS_PER_SERVER: u64 = 160;

#[derive(Debug, Clone)]
pub struct Ring {
    /// (point hash, server index), sorted by hash.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds the ring from `(name, weight)` per server, in configuration order.
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let servers: Vec<(&str, u32)> = servers.into_iter().collect();
        let weighted = servers.iter().filter(|(_, w)| *w > 0).count() as u64;
        let total: u64 = servers.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut points = Vec::new();
        for (index, (name, weight)) in servers.iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            let count = (POINTS_PER_SERVER * weighted * u64::from(*weight) + total / 2) / total;
            let count = count.max(1);
            let mut buf = Vec::with_capacity(name.len() + 8);
            for j in 0..count {
                buf.clear();
                buf.extend_from_slice(name.as_bytes());
                buf.push(0);
                buf.extend_from_slice(&j.to_le_bytes());
                points.push((super::hash_key(&buf), index as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The server owning `key` on the bare ring, ignoring load and availability.
    pub fn owner(&self, key: u64) -> Option<usize> {
        let start = self.points.partition_point(|p| p.0 < key);
        self.points
            .get(start)
            .or_else(|| self.points.first())
            .map(|p| p.1 as usize)
    }

    /// Picks the first candidate clockwise from `key` that is under its bounded load. If every
    /// candidate is at its cap (only possible when candidates are full), the key's owner among
    /// the candidates.
    pub fn pick(
        &self,
        n: usize,
        key: u64,
        factor: f64,
        eligible: impl Fn(usize) -> ServerLoad,
    ) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let (mut in_flight, mut weight) = (0u128, 0u128);
        for i in 0..n {
            let s = eligible(i);
            if s.weight > 0 {
                in_flight += u128::from(s.in_flight);
                weight += u128::from(s.weight);
            }
        }
        if weight == 0 {
            return None;
        }
        // The factor in thousandths keeps the cap exact in integers.
        let factor_milli = (factor * 1000.0).round().max(1000.0) as u128;
        let numerator = factor_milli * (in_flight + 1);
        let start = self.points.partition_point(|p| p.0 < key);
        let (wrapped, ahead) = self.points.split_at(start);
        let mut owner = None;
        // Clockwise from the key: the points at or after it, then around from the start.
        for &(_, server) in ahead.iter().chain(wrapped) {
            let s = server as usize;
            if s >= n {
                continue;
            }
            let load = eligible(s);
            let w = u128::from(load.weight);
            if w == 0 {
                continue;
            }
            owner.get_or_insert(s);
            let cap = (numerator * w).div_ceil(1000 * weight);
            if u128::from(load.in_flight) < cap {
                return Some(s);
            }
        }
        owner
    }
}
