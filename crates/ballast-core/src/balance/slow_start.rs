//! Slow start: a server that has just come back gets a share that grows with time instead of
//! its whole share at once, so a cold cache or a JIT warming up is not flooded.

use std::time::Duration;

/// The effective weight of a server that became available at `since`, ramping linearly from
/// a tenth of `weight` to all of it over `ramp`. Never 0 for a non-zero weight: a recovering
/// server must get some traffic, or it would never be seen to recover.
pub fn slow_start_weight(weight: u32, since: Duration, ramp: Duration, now: Duration) -> u32 {
    if weight == 0 || ramp.is_zero() {
        return weight;
    }
    let elapsed = now.saturating_sub(since);
    if elapsed >= ramp {
        return weight;
    }
    // weight × (0.1 + 0.9 × elapsed / ramp), in integers so equal inputs give equal outputs.
    let numerator = u128::from(weight) * (ramp.as_nanos() + 9 * elapsed.as_nanos());
    let ramped = numerator.div_ceil(10 * ramp.as_nanos());
    (ramped as u32).clamp(1, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_from_a_tenth_to_full_and_never_zero() {
        let s = Duration::from_secs;
        assert_eq!(slow_start_weight(100, s(10), s(30), s(10)), 10);
        assert_eq!(slow_start_weight(100, s(10), s(30), s(25)), 55);
        assert_eq!(slow_start_weight(100, s(10), s(30), s(40)), 100);
        assert_eq!(slow_start_weight(1, s(0), s(30), s(0)), 1);
        assert_eq!(slow_start_weight(0, s(0), s(30), s(1)), 0);
        assert_eq!(slow_start_weight(7, s(0), Duration::ZERO, s(0)), 7);
    }
}
