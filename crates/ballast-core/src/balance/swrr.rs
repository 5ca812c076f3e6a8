//! Smooth weighted round-robin, as nginx does it (`ngx_http_upstream_get_peer`).
//!
//! Each pick adds every candidate's weight to its running score, takes the highest score and
//! subtracts the total from it. Over any run of `W` picks (the sum of weights, with weights
//! and candidates unchanged) each server is picked exactly `weight` times, interleaved rather
//! than in bursts: weights {5, 1, 1} give `a a b a c a a`.

use super::ServerLoad;

#[derive(Debug, Clone)]
pub struct SmoothWeightedRoundRobin {
    current: Vec<i64>,
}

impl SmoothWeightedRoundRobin {
    pub fn new(servers: usize) -> Self {
        Self {
            current: vec![0; servers],
        }
    }

    /// Picks among the first `n` servers by their eligible weight (0: not a candidate);
    /// `None` when there are no candidates.
    #[inline]
    pub fn pick(&mut self, n: usize, eligible: impl Fn(usize) -> ServerLoad) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best = usize::MAX;
        let mut best_score = i64::MIN;
        let n = n.min(self.current.len());
        for (i, current) in self.current[..n].iter_mut().enumerate() {
            // A non-candidate has w = 0: adding it changes nothing, and it cannot win.
            let w = i64::from(eligible(i).weight);
            *current += w;
            total += w;
            if w > 0 && *current > best_score {
                best_score = *current;
                best = i;
            }
        }
        let b = (best != usize::MAX).then_some(best)?;
        self.current[b] -= total;
        Some(b)
    }
}
