//! How many connection workers the open model starts for the requests waiting for one. Every
//! extra connection costs a one-core generator per request and makes it fall further behind
//! its schedule, so the pool is kept to what the load needs. Pure; `run` asks it at each pass
//! of its scheduler.
//!
//! - **The floor.** By Little's law the requests in flight are the rate times the time one
//!   takes. The time is the fastest answer of the last fraction of a second: the slower ones
//!   are slow partly because the generator was busy with the others, and sizing the pool by
//!   them would feed itself (more connections, larger batches, slower answers). The
//!   generator's timer wakes about once a millisecond, so a millisecond's requests go out
//!   together: the floor holds that burst on top of the service time, with headroom, and a few
//!   spare workers. Up to the floor, a waiting request starts a worker at once.
//! - **Past the floor** a request waits for a worker to come back, and the wait is in its
//!   latency (timed from its intended send). When a request has waited longer than a timer
//!   tick or two while the generator has CPU to spare, the workers are too few for this
//!   server: slow or stalled answers hold them, not the generator. One more is started each
//!   tick while that lasts, up to the budget (`--max-connections` × `--streams`).
//! - **Not while the generator is busy** (it used half or more of its threads' time over the
//!   last sample), nor while it is late (it came to its schedule well after a request was
//!   due): then requests wait because the generator had no time to run its workers, and
//!   another connection would only make it later. A busy generator starts none past the
//!   spare ones, not even to the floor, since the answers it times are slow for the same
//!   reason and a floor worked out from them would feed itself. If the server is what holds
//!   the workers, the generator soon has time to spare, and grows then.

use std::time::{Duration, Instant};

/// Tokio's timer resolution: the requests due within one go out in one burst.
const BURST: Duration = Duration::from_millis(1);
/// Headroom over the mean in flight, for bursts and the variance of the service time.
const HEADROOM: f64 = 1.5;
/// Workers allowed whatever the estimate says.
const SPARE: usize = 4;
/// The service time is the fastest answer of the current and the last window of this length.
const WINDOW: Duration = Duration::from_millis(250);
/// A request waiting this long past its intended time means the workers are too few.
const QUEUED: Duration = Duration::from_millis(2);
/// A scheduler pass this long after the next request was due says the generator is behind.
const LATE: Duration = Duration::from_millis(2);
/// Below this share the generator has time to spare: requests that wait are held by the
/// server's answers, not by the generator.
const SPARE_CPU: f64 = 0.5;

/// The open model's pool: what it has learnt of the answers, and what it allows.
#[derive(Debug, Clone)]
pub struct Sizing {
    /// Requests per second asked for.
    rate: f64,
    /// Workers never to exceed.
    budget: usize,
    /// The fastest answer of the window that began at `window_start`, and of the one before.
    window_start: Instant,
    fastest: Option<Duration>,
    fastest_before: Option<Duration>,
    /// Whether the generator was late at its last pass.
    late: bool,
    /// Whether it used less than half of it.
    spare_cpu: bool,
    /// When a waiting request was last weighed for a worker past the floor (started or not):
    /// once a tick at most.
    weighed: Option<Instant>,
}

impl Sizing {
    pub fn new(rate: f64, budget: usize, start: Instant) -> Sizing {
        Sizing {
            rate,
            budget,
            window_start: start,
            fastest: None,
            fastest_before: None,
            late: false,
            spare_cpu: true,
            weighed: None,
        }
    }

    /// A worker came back at `now`; its request took `service` on the wire.
    pub fn back(&mut self, service: Duration, now: Instant) {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.fastest_before = self.fastest.take();
        }
        self.fastest = Some(self.fastest.map_or(service, |f| f.min(service)));
    }

    /// The generator's scheduler came to its schedule `lateness` after the next request was
    /// due.
    pub fn woke(&mut self, lateness: Duration) {
        self.late = lateness > LATE;
    }

    /// Over the last sample the generator used `share` of its threads' time (1.0: all of it).
    pub fn busy(&mut self, share: f64) {
        self.spare_cpu = share < SPARE_CPU;
    }

    /// The time one request takes on the wire: the fastest answer of the current and the
    /// last window, or a guess (1 ms, well above a loopback server's) before any answer.
    pub fn service(&self) -> Duration {
        match (self.fastest, self.fastest_before) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Duration::from_millis(1),
        }
    }

    /// Workers a waiting request starts at once, never more than the budget.
    pub fn floor(&self) -> usize {
        let in_flight = self.rate * (self.service() + BURST).as_secs_f64();
        let floor = (in_flight * HEADROOM).ceil();
        // `as` saturates: an absurd rate or service time is held by the budget.
        (floor as usize).saturating_add(SPARE).min(self.budget)
    }

    /// Workers to start at `now`, with `running` started so far, `unserved` requests waiting
    /// that no idle worker will take, the oldest of them meant for `oldest`.
    pub fn starts(
        &mut self,
        running: usize,
        unserved: usize,
        oldest: Option<Instant>,
        now: Instant,
    ) -> usize {
        // A busy generator's answers are slow because it is busy, and a floor worked out from
        // them would feed itself: past half its CPU, only the spare workers.
        let floor = if self.spare_cpu {
            self.floor()
        } else {
            SPARE.min(self.budget)
        };
        let below_floor = floor.saturating_sub(running);
        if below_floor > 0 {
            return unserved.min(below_floor);
        }
        let Some(due) = oldest.and_then(|o| self.grow_at(o, running)) else {
            return 0;
        };
        if unserved == 0 || now < due {
            return 0;
        }
        self.weighed = Some(now);
        usize::from(!self.late && self.spare_cpu)
    }

    /// When a request meant for `oldest` that still waits is weighed for a worker past the
    /// floor: a tick or two after its intended time, and a tick after the last weighing, so
    /// a scheduler that may not start one does not wake for it in a loop; never once
    /// `running` has spent the budget.
    pub fn grow_at(&self, oldest: Instant, running: usize) -> Option<Instant> {
        if running >= self.budget {
            return None;
        }
        let waited = oldest + QUEUED;
        Some(self.weighed.map_or(waited, |w| waited.max(w + BURST)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learnt(rate: f64, budget: usize, service: Duration) -> (Sizing, Instant) {
        let start = Instant::now();
        let mut sizing = Sizing::new(rate, budget, start);
        sizing.back(service, start);
        (sizing, start)
    }

    #[test]
    fn the_floor_follows_littles_law_with_a_burst_and_headroom() {
        // 60k/s × (0.5 ms + 1 ms) = 90 in flight, × 1.5 = 135, + 4.
        let floor = |rate, budget, service| learnt(rate, budget, service).0.floor();
        assert_eq!(floor(60_000.0, 1000, Duration::from_micros(500)), 139);
        assert_eq!(floor(60_000.0, 50, Duration::from_micros(500)), 50);
        // A slow server at a low rate: 180/s × 41 ms ≈ 7.4, × 1.5 → 12, + 4.
        assert_eq!(floor(180.0, 1000, Duration::from_millis(40)), 16);
        // Absurd figures are held by the budget; no load still allows the spare ones.
        assert_eq!(floor(f64::MAX, 1000, Duration::from_secs(3600)), 1000);
        assert_eq!(floor(0.0, 1000, Duration::from_secs(1)), 4);
        assert_eq!(floor(0.0, 2, Duration::from_secs(1)), 2);
        // Before any answer: 10k/s × 2 ms × 1.5 = 30, + 4.
        assert_eq!(Sizing::new(10_000.0, 1000, Instant::now()).floor(), 34);
    }

    #[test]
    fn the_service_time_is_the_fastest_answer_of_the_last_two_windows() {
        let (mut sizing, start) = learnt(100.0, 1000, Duration::from_millis(3));
        sizing.back(Duration::from_millis(1), start);
        sizing.back(Duration::from_millis(9), start);
        assert_eq!(sizing.service(), Duration::from_millis(1));
        // The next window: still the fastest of both.
        sizing.back(Duration::from_millis(40), start + WINDOW);
        assert_eq!(sizing.service(), Duration::from_millis(1));
        // A server that slowed down is followed once its fast answers are two windows old.
        sizing.back(Duration::from_millis(40), start + WINDOW * 2);
        assert_eq!(sizing.service(), Duration::from_millis(40));
    }

    #[test]
    fn below_the_floor_every_waiting_request_starts_one_and_past_it_one_a_tick() {
        let (mut sizing, t) = learnt(1000.0, 30, Duration::from_millis(10));
        let ms = Duration::from_millis;
        // 1000/s × 11 ms × 1.5 = 16.5 → 17, + 4.
        assert_eq!(sizing.floor(), 21);
        assert_eq!(sizing.starts(0, 50, Some(t), t), 21);
        assert_eq!(sizing.starts(18, 2, Some(t), t), 2);
        // At the floor: only a request that waited past a tick or two starts one.
        let us = Duration::from_micros;
        assert_eq!(sizing.grow_at(t, 21), Some(t + ms(2)));
        assert_eq!(sizing.starts(21, 5, Some(t), t + us(1900)), 0);
        assert_eq!(sizing.starts(21, 0, None, t + ms(9)), 0);
        assert_eq!(sizing.starts(21, 5, Some(t), t + ms(2)), 1);
        // Then one a tick at most, however long the request has waited.
        assert_eq!(sizing.grow_at(t, 22), Some(t + ms(3)));
        assert_eq!(sizing.starts(22, 5, Some(t), t + us(2500)), 0);
        assert_eq!(sizing.starts(22, 5, Some(t), t + ms(3)), 1);
        // Never past the budget, and no wake-up for it.
        assert_eq!(sizing.starts(30, 5, Some(t), t + ms(100)), 0);
        assert_eq!(sizing.grow_at(t, 30), None);
        // A late generator starts none past the floor, and is no longer late once on time;
        // a weighing that starts none still waits a tick for the next.
        sizing.woke(ms(3));
        assert_eq!(sizing.starts(21, 5, Some(t), t + ms(200)), 0);
        assert_eq!(sizing.grow_at(t, 21), Some(t + ms(201)));
        assert_eq!(
            sizing.starts(20, 5, Some(t), t + ms(200)),
            1,
            "to the floor"
        );
        sizing.woke(ms(1));
        assert_eq!(sizing.starts(21, 5, Some(t), t + us(200_500)), 0);
        assert_eq!(sizing.starts(21, 5, Some(t), t + ms(201)), 1);
    }

    #[test]
    fn a_busy_generator_starts_only_the_spare_ones() {
        let (mut sizing, t) = learnt(1000.0, 30, Duration::from_millis(10));
        let later = t + Duration::from_secs(1);
        sizing.busy(0.6);
        assert_eq!(sizing.starts(0, 50, Some(t), t), 4);
        assert_eq!(sizing.starts(4, 50, Some(t), later), 0, "to the floor");
        assert_eq!(sizing.starts(21, 50, Some(t), later), 0, "past it");
        sizing.busy(0.4);
        assert_eq!(sizing.starts(4, 50, Some(t), later), 17);
        let next_tick = later + Duration::from_millis(1);
        assert_eq!(sizing.starts(21, 50, Some(t), next_tick), 1);
    }
}
