//! Weighted least-connections: the server with the fewest requests in flight per unit of
//! weight. Loads are compared by cross-multiplication (`a.in_flight × b.weight` against
//! `b.in_flight × a.weight`), so there is no division and no rounding. Ties rotate: the scan
//! starts after the last server picked, so equally loaded servers take turns.

use super::ServerLoad;

#[derive(Debug, Clone)]
pub struct LeastConnections {
    /// Where the next scan starts.
    cursor: usize,
}

impl LeastConnections {
    pub fn new(_servers: usize) -> Self {
        Self { cursor: 0 }
    }

    #[inline]
    pub fn pick(&mut self, n: usize, eligible: impl Fn(usize) -> ServerLoad) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let start = if self.cursor >= n { 0 } else { self.cursor };
        let mut best: Option<(usize, u64, u64)> = None;
        let mut consider = |i: usize| {
            let s = eligible(i);
            let weight = u64::from(s.weight);
            if weight == 0 {
                return;
            }
            let load = u64::from(s.in_flight);
            match best {
                Some((_, bl, bw)) if load * bw >= bl * weight => {}
                _ => best = Some((i, load, weight)),
            }
        };
        // Scan start..n, then 0..start: plain ranges, no modulo per step.
        for i in start..n {
            consider(i);
        }
        for i in 0..start {
            consider(i);
        }
        let (b, _, _) = best?;
        self.cursor = b + 1;
        Some(b)
    }
}
