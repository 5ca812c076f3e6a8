//! Sampling the traffic model: arrival gaps, clients, key values and service times.

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp1, LogNormal, Zipf};

use ballast_core::traffic::{ArrivalKind, Service, ServiceDistribution, Traffic};

/// Draws the next gap between arrivals, in nanoseconds.
pub struct Arrivals {
    kind: ArrivalKind,
    mean_gap_ns: f64,
}

impl Arrivals {
    pub fn new(t: &Traffic) -> Self {
        Self {
            kind: t.arrival.kind,
            mean_gap_ns: 1e9 / t.arrival.rate,
        }
    }

    pub fn next_gap<R: Rng>(&self, rng: &mut R) -> u64 {
        match self.kind {
            ArrivalKind::Constant => self.mean_gap_ns as u64,
            ArrivalKind::Poisson => {
                let e: f64 = Exp1.sample(rng);
                (e * self.mean_gap_ns) as u64
            }
        }
        .max(1)
    }
}

/// Draws an index in `0..n` with Zipf popularity (exponent 0 is uniform).
pub struct Popularity {
    n: u64,
    zipf: Option<Zipf<f64>>,
}

impl Popularity {
    pub fn new(n: u32, exponent: f64) -> Self {
        let n = u64::from(n.max(1));
        let zipf = (exponent > 0.0 && n > 1)
            .then(|| Zipf::new(n as f64, exponent).ok())
            .flatten();
        Self { n, zipf }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.n) - 1,
            None => ((u128::from(rng.next_u64()) * u128::from(self.n)) >> 64) as u64,
        }
    }
}

/// Draws service times for one server, in nanoseconds.
pub struct ServiceTime {
    distribution: ServiceDistribution,
    mean_ns: f64,
    lognormal: Option<LogNormal<f64>>,
    pub concurrency: u32,
}

impl ServiceTime {
    pub fn new(s: &Service) -> Self {
        let mean_ns = s.mean.0.as_nanos() as f64;
        // Shape 1; location chosen so the mean is `mean`: E = exp(mu + sigma²/2).
        let lognormal = (s.distribution == ServiceDistribution::Lognormal && mean_ns > 0.0)
            .then(|| LogNormal::new(mean_ns.ln() - 0.5, 1.0).ok())
            .flatten();
        Self {
            distribution: s.distribution,
            mean_ns,
            lognormal,
            concurrency: s.concurrency.max(1),
        }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        let ns = match self.distribution {
            ServiceDistribution::Constant => self.mean_ns,
            ServiceDistribution::Exponential => {
                let e: f64 = Exp1.sample(rng);
                e * self.mean_ns
            }
            ServiceDistribution::Lognormal => self
                .lognormal
                .as_ref()
                .map_or(self.mean_ns, |l| l.sample(rng)),
        };
        // Cap at an hour so one draw from a long tail cannot stall the simulation.
        ns.clamp(0.0, Duration::from_secs(3600).as_nanos() as f64) as u64
    }
}
