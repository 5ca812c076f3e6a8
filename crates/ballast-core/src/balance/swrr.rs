//! Smooth weighted round-robin, as nginx does it (`ngx_http_upstream_get_peer`).
//!
//! Each pick adds every candidate's weight to its running score, takes the highest score and
//! subtracts the total from it. Over any run of `W` picks (the sum of weights, with weights
//! and candidates unchanged) each server is picked exactly `weight` times, interleaved rather
//! than in bursts: weights {5, 1, 1} give `a a b a c a a`.

use super::PoolView;

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

    /// Picks among the servers for which `candidate` holds; `None` when there are none.
    #[inline]
    pub fn pick<V: PoolView>(
        &mut self,
        view: &V,
        candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        let mut best_score = i64::MIN;
        for i in 0..view.len().min(self.current.len()) {
            if !candidate(i) {
                continue;
            }
            let w = i64::from(view.weight(i));
            self.current[i] += w;
            total += w;
            if self.current[i] > best_score {
                best_score = self.current[i];
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}
