//! Randomised choices: weighted random, and the power of two choices.
//!
//! Both draw from the RNG they are given, so a seeded RNG gives a repeatable sequence.

use rand::Rng;

use super::{ServerLoad, below};

/// Picks one of the first `n` servers with probability proportional to its eligible weight.
pub fn weighted_random<R: Rng + ?Sized>(
    n: usize,
    rng: &mut R,
    eligible: impl Fn(usize) -> ServerLoad,
) -> Option<usize> {
    let total: u64 = (0..n).map(|i| u64::from(eligible(i).weight)).sum();
    if total == 0 {
        return None;
    }
    let mut r = below(rng, total);
    for i in 0..n {
        let w = u64::from(eligible(i).weight);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// Draws two distinct candidates uniformly and keeps the one with fewer requests in flight
/// per unit of weight (the first drawn on a tie). With one candidate, that one.
pub fn power_of_two<R: Rng + ?Sized>(
    n: usize,
    rng: &mut R,
    eligible: impl Fn(usize) -> ServerLoad,
) -> Option<usize> {
    let candidate = |i: usize| eligible(i).weight > 0;
    let count = (0..n).filter(|&i| candidate(i)).count() as u64;
    match count {
        0 => return None,
        1 => return (0..n).find(|&i| candidate(i)),
        _ => {}
    }
    let first = below(rng, count);
    // Draw the second from the remaining count - 1 ranks, skipping the first.
    let mut second = below(rng, count - 1);
    if second >= first {
        second += 1;
    }
    let (mut a, mut b) = (None, None);
    let mut rank = 0;
    for i in 0..n {
        if !candidate(i) {
            continue;
        }
        if rank == first {
            a = Some(i);
        }
        if rank == second {
            b = Some(i);
        }
        rank += 1;
    }
    let (a, b) = (a?, b?);
    let load = |i: usize| {
        let s = eligible(i);
        (u64::from(s.in_flight), u64::from(s.weight))
    };
    let ((la, wa), (lb, wb)) = (load(a), load(b));
    Some(if lb * wa < la * wb { b } else { a })
}
