//! The active health-check state machine: `rise` consecutive successes bring a server up,
//! `fall` consecutive failures take it down. Pure; the prober that feeds it lives elsewhere.

use std::time::Duration;

use crate::config::{HealthCheck, InitialState};

/// Longest passive ejection, however often a server has been ejected.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// How long passive ejection keeps a server out: `base`, doubled for each earlier ejection,
/// capped at [`MAX_EJECTION`].
pub fn ejection_duration(base: Duration, earlier_ejections: u32) -> Duration {
    base.saturating_mul(1u32 << earlier_ejections.min(16))
        .min(MAX_EJECTION)
}

/// A server's health as seen by active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    up: bool,
    /// Consecutive results against the current state (successes while down, failures while up).
    streak: u32,
}

/// A change of state caused by a check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentUp,
    WentDown,
}

impl Health {
    pub fn new(initial: InitialState) -> Self {
        Self {
            up: initial == InitialState::Up,
            streak: 0,
        }
    }

    /// Continues from a known state (after a reload), with no streak in progress.
    pub fn resume(up: bool) -> Self {
        Self { up, streak: 0 }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check result under the check's rise and fall thresholds.
    pub fn record(&mut self, success: bool, check: &HealthCheck) -> Option<Transition> {
        if success == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.up { check.fall } else { check.rise };
        if self.streak >= threshold.max(1) {
            self.up = success;
            self.streak = 0;
            Some(if success {
                Transition::WentUp
            } else {
                Transition::WentDown
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejections_double_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(ejection_duration(s(30), 0), s(30));
        assert_eq!(ejection_duration(s(30), 2), s(120));
        assert_eq!(ejection_duration(s(30), 5), MAX_EJECTION);
        assert_eq!(ejection_duration(s(30), u32::MAX), MAX_EJECTION);
    }

    fn check(rise: u32, fall: u32) -> HealthCheck {
        toml::from_str(&format!("rise = {rise}\nfall = {fall}")).unwrap()
    }

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let c = check(2, 3);
        let mut h = Health::new(InitialState::Down);
        assert_eq!(h.record(true, &c), None);
        assert_eq!(
            h.record(false, &c),
            None,
            "a failure while down resets the streak"
        );
        assert_eq!(h.record(true, &c), None);
        assert_eq!(h.record(true, &c), Some(Transition::WentUp));
        assert!(h.is_up());
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(
            h.record(true, &c),
            None,
            "a success while up resets the streak"
        );
        for _ in 0..2 {
            assert_eq!(h.record(false, &c), None);
        }
        assert_eq!(h.record(false, &c), Some(Transition::WentDown));
    }
}
