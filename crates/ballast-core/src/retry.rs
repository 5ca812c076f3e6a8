//! The retry budget: retries allowed as a share of recent requests, so retries help with
//! isolated failures without multiplying load during an outage. Pure; the proxy and the
//! simulator both use it, with real and virtual time.
//!
//! The budget is `budget_percent` of the requests in the current and previous ten-second
//! windows, and never less than [`RETRY_FLOOR`] per window, so a quiet pool can still retry an
//! isolated failure.

use std::time::Duration;

/// Retries always allowed per window.
pub const RETRY_FLOOR: u64 = 10;
/// Length of a budget window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct RetryBudget {
    percent: u64,
    index: u64,
    requests: u64,
    retries: u64,
    previous_requests: u64,
}

impl RetryBudget {
    pub fn new(budget_percent: u32) -> Self {
        Self {
            percent: u64::from(budget_percent),
            ..Self::default()
        }
    }

    fn rotate(&mut self, now: Duration) {
        let index = now.as_secs() / WINDOW.as_secs();
        if index != self.index {
            self.previous_requests = if index == self.index + 1 {
                self.requests
            } else {
                0
            };
            self.requests = 0;
            self.retries = 0;
            self.index = index;
        }
    }

    /// Counts one request.
    pub fn note_request(&mut self, now: Duration) {
        self.rotate(now);
        self.requests += 1;
    }

    /// Takes one retry from the budget if any is left.
    pub fn allow(&mut self, now: Duration) -> bool {
        self.rotate(now);
        let budget =
            ((self.requests + self.previous_requests) * self.percent / 100).max(RETRY_FLOOR);
        if self.retries < budget {
            self.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_then_percentage_then_a_fresh_window() {
        let s = Duration::from_secs;
        let mut b = RetryBudget::new(20);
        for _ in 0..RETRY_FLOOR {
            assert!(b.allow(s(1)), "the floor holds with no traffic");
        }
        assert!(!b.allow(s(1)));
        for _ in 0..100 {
            b.note_request(s(2));
        }
        // 20% of 100 = 20 retries in this window, 10 already used.
        let granted = (0..50).filter(|_| b.allow(s(3))).count();
        assert_eq!(granted, 10);
        // Next window: the previous window's 100 requests still count.
        let granted = (0..50).filter(|_| b.allow(s(12))).count();
        assert_eq!(granted, 20);
        // Two windows later the history is gone: back to the floor.
        let granted = (0..50).filter(|_| b.allow(s(45))).count();
        assert_eq!(granted as u64, RETRY_FLOOR);
    }
}
