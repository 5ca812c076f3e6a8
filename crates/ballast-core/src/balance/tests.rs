//! Invariants of the balancing algorithms, checked by property tests.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::config::{Algorithm, AllDownPolicy, Pool};

fn pool(algorithm: Algorithm, weights: &[u32]) -> Pool {
    let mut text = format!("algorithm = \"{}\"\n", algorithm.as_str());
    for (i, w) in weights.iter().enumerate() {
        text += &format!(
            "[[servers]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\nweight = {w}\n",
            8000 + i
        );
    }
    toml::from_str(&text).expect("test pool parses")
}

fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every run of W picks (W = sum of weights) gives each server exactly its weight.
    #[test]
    fn round_robin_gives_exact_shares_every_cycle(weights in prop::collection::vec(1u32..40, 1..17)) {
        let total: u32 = weights.iter().sum();
        let state = PoolState::with_weights(&weights);
        let mut b = Balancer::new(&pool(Algorithm::RoundRobin, &weights));
        let mut r = rng(0);
        for _cycle in 0..3 {
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..total {
                counts[b.pick(&state, None, &mut r).unwrap()] += 1;
            }
            prop_assert_eq!(&counts, &weights);
        }
    }

    /// Smooth, not bursty: on every prefix each server is within two picks of its exact share,
    /// and no server waits more than twice its fair interval W / w between two picks.
    #[test]
    fn round_robin_never_bunches(weights in prop::collection::vec(1u32..300, 1..33)) {
        let total: u32 = weights.iter().sum();
        let state = PoolState::with_weights(&weights);
        let mut b = Balancer::new(&pool(Algorithm::RoundRobin, &weights));
        let mut r = rng(0);
        let mut counts = vec![0u32; weights.len()];
        let mut last = vec![None::<u32>; weights.len()];
        for k in 1..=total {
            let i = b.pick(&state, None, &mut r).unwrap();
            counts[i] += 1;
            if let Some(l) = last[i] {
                let gap = f64::from(k - l);
                prop_assert!(gap <= 2.0 * f64::from(total) / f64::from(weights[i]),
                    "server {} waited {} picks, fair interval {}", i, gap, f64::from(total) / f64::from(weights[i]));
            }
            last[i] = Some(k);
            for (j, w) in weights.iter().enumerate() {
                let exact = f64::from(k) * f64::from(*w) / f64::from(total);
                prop_assert!((f64::from(counts[j]) - exact).abs() < 2.0);
            }
        }
    }

    /// With equal weights, the bounded-load ring never puts more than ⌈c · average⌉ in flight
    /// on the server it picks, whatever the keys and the order of picks and completions.
    #[test]
    fn bounded_loads_never_exceed_the_cap(
        n in 2usize..12,
        factor in 1.05f64..2.0,
        ops in prop::collection::vec((any::<u64>(), any::<bool>()), 1..400),
    ) {
        let weights = vec![1; n];
        let mut p = pool(Algorithm::ConsistentHash, &weights);
        p.balance_factor = Some(factor);
        let mut b = Balancer::new(&p);
        let mut state = PoolState::with_weights(&weights);
        let mut r = rng(0);
        for (key, release) in ops {
            if release {
                if let Some(i) = (0..n).max_by_key(|&i| (state.servers[i].in_flight, key % 7 == i as u64 % 7)) {
                    state.servers[i].in_flight = state.servers[i].in_flight.saturating_sub(1);
                }
                continue;
            }
            let i = b.pick(&state, Some(hash_key(&key.to_le_bytes())), &mut r).unwrap();
            state.servers[i].in_flight += 1;
            let total: u32 = state.loads().iter().sum();
            let factor_milli = (factor * 1000.0).round() as u64;
            let cap = (factor_milli * u64::from(total)).div_ceil(1000 * n as u64);
            prop_assert!(u64::from(state.servers[i].in_flight) <= cap,
                "server {} has {} in flight, cap {} (total {}, c {})", i, state.servers[i].in_flight, cap, total, factor);
        }
    }

    /// Removing one of n servers moves only that server's keys: at most 1/n + 0.05 of them.
    #[test]
    fn removing_a_server_moves_only_its_keys(n in 2usize..20, removed in any::<prop::sample::Index>()) {
        let weights = vec![1; n];
        let before = Balancer::new(&pool(Algorithm::ConsistentHash, &weights));
        let removed = removed.index(n);
        let mut p = pool(Algorithm::ConsistentHash, &weights);
        p.servers.remove(removed);
        let after = Balancer::new(&p);
        let (state_before, state_after) = (PoolState::with_weights(&weights), PoolState::with_weights(&weights[1..]));
        let (mut bb, mut ba, mut r) = (before, after, rng(0));
        let keys = 5_000u64;
        let mut moved = 0;
        for k in 0..keys {
            let h = hash_key(&k.to_le_bytes());
            let old = &p_name(&bb.pick(&state_before, Some(h), &mut r).unwrap(), None);
            let new_index = ba.pick(&state_after, Some(h), &mut r).unwrap();
            let new = &p_name(&new_index, Some(removed));
            if old != new {
                prop_assert_eq!(old, &format!("s{removed}"), "a key of a server that stayed moved");
                moved += 1;
            }
        }
        let fraction = f64::from(moved) / keys as f64;
        prop_assert!(fraction <= 1.0 / n as f64 + 0.05, "{} of keys moved with n = {}", fraction, n);
    }

    /// Adding a server to n moves keys only onto the new server, at most 1/(n+1) + 0.05 of them.
    #[test]
    fn adding_a_server_moves_keys_only_to_it(n in 1usize..20) {
        let mut bb = Balancer::new(&pool(Algorithm::ConsistentHash, &vec![1; n]));
        let mut ba = Balancer::new(&pool(Algorithm::ConsistentHash, &vec![1; n + 1]));
        let (sb, sa) = (PoolState::with_weights(&vec![1; n]), PoolState::with_weights(&vec![1; n + 1]));
        let mut r = rng(0);
        let keys = 5_000u64;
        let mut moved = 0;
        for k in 0..keys {
            let h = hash_key(&k.to_le_bytes());
            let (old, new) = (bb.pick(&sb, Some(h), &mut r).unwrap(), ba.pick(&sa, Some(h), &mut r).unwrap());
            if old != new {
                prop_assert_eq!(new, n, "a key moved between two old servers");
                moved += 1;
            }
        }
        prop_assert!(f64::from(moved) / keys as f64 <= 1.0 / (n + 1) as f64 + 0.05);
    }

    /// Equal weights: a pick always goes to a least-loaded server, so from any state the spread
    /// (max − min in flight) never grows beyond max(spread, 1), and picks alone from an idle
    /// pool keep every server within one of the others.
    #[test]
    fn least_connections_keeps_counts_within_one(
        start in prop::collection::vec(0u32..5, 2..17),
        picks in 1usize..200,
    ) {
        let n = start.len();
        let mut b = Balancer::new(&pool(Algorithm::LeastConnections, &vec![1; n]));
        let mut state = PoolState::with_weights(&vec![1; n]);
        state.set_loads(&start);
        let mut r = rng(0);
        let spread = |s: &PoolState| s.loads().iter().max().unwrap() - s.loads().iter().min().unwrap();
        for _ in 0..picks {
            let before = spread(&state);
            let min = *state.loads().iter().min().unwrap();
            let i = b.pick(&state, None, &mut r).unwrap();
            prop_assert_eq!(state.servers[i].in_flight, min);
            state.servers[i].in_flight += 1;
            prop_assert!(spread(&state) <= before.max(1));
        }
        let mut idle = PoolState::with_weights(&vec![1; n]);
        for _ in 0..picks {
            let i = b.pick(&idle, None, &mut r).unwrap();
            idle.servers[i].in_flight += 1;
            prop_assert!(spread(&idle) <= 1);
        }
    }

    /// The same seed gives the same sequence, for every algorithm.
    #[test]
    fn same_seed_same_sequence(
        weights in prop::collection::vec(0u32..10, 1..10),
        seed in any::<u64>(),
        algorithm in prop::sample::select(vec![Algorithm::RoundRobin, Algorithm::LeastConnections,
            Algorithm::PowerOfTwo, Algorithm::ConsistentHash, Algorithm::Random]),
    ) {
        let run = || {
            let mut b = Balancer::new(&pool(algorithm, &weights));
            let mut state = PoolState::with_weights(&weights);
            let mut r = rng(seed);
            (0..200u64).map(|k| {
                let pick = b.pick(&state, Some(hash_key(&k.to_le_bytes())), &mut r);
                if let Some(i) = pick { state.servers[i].in_flight += 1; }
                if k % 3 == 0 { state.servers.iter_mut().for_each(|s| s.in_flight = s.in_flight.saturating_sub(1)); }
                pick
            }).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }

    /// Weight 0 drains: such a server is never picked by any algorithm while another has weight.
    #[test]
    fn drained_servers_are_never_picked(
        weights in prop::collection::vec(0u32..5, 2..10),
        algorithm in prop::sample::select(vec![Algorithm::RoundRobin, Algorithm::LeastConnections,
            Algorithm::PowerOfTwo, Algorithm::ConsistentHash, Algorithm::Random]),
    ) {
        let mut b = Balancer::new(&pool(algorithm, &weights));
        let state = PoolState::with_weights(&weights);
        let mut r = rng(7);
        for k in 0..100u64 {
            match b.pick(&state, Some(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)), &mut r) {
                Some(i) => prop_assert!(weights[i] > 0),
                None => prop_assert!(weights.iter().all(|&w| w == 0)),
            }
        }
    }
}

fn p_name(index: &usize, removed: Option<usize>) -> String {
    // Map an index in the pool with `removed` taken out back to the original server name.
    let original = match removed {
        Some(r) if *index >= r => index + 1,
        _ => *index,
    };
    format!("s{original}")
}

#[test]
fn backups_only_when_no_primary_and_fail_closed_when_none() {
    let mut p = pool(Algorithm::RoundRobin, &[1, 1, 1]);
    p.servers[2].backup = true;
    let mut b = Balancer::new(&p);
    let mut state = PoolState::from_pool(&p);
    let mut r = rng(0);
    for _ in 0..10 {
        assert_ne!(b.pick(&state, None, &mut r), Some(2));
    }
    state.servers[0].available = false;
    state.servers[1].available = false;
    assert_eq!(b.pick(&state, None, &mut r), Some(2));
    state.servers[2].available = false;
    assert_eq!(b.pick(&state, None, &mut r), None);
    p.all_down = AllDownPolicy::FailOpen;
    let mut open = Balancer::new(&p);
    assert!(open.pick(&state, None, &mut r).is_some());
}

#[test]
fn full_servers_are_passed_over_while_another_has_room() {
    let p = pool(Algorithm::RoundRobin, &[1, 1]);
    let mut b = Balancer::new(&p);
    let mut state = PoolState::from_pool(&p);
    state.servers.iter_mut().for_each(|s| s.limit = 2);
    state.set_loads(&[2, 0]);
    let mut r = rng(0);
    for _ in 0..4 {
        assert_eq!(b.pick(&state, None, &mut r), Some(1));
    }
    state.set_loads(&[2, 2]);
    assert!(
        b.pick(&state, None, &mut r).is_some(),
        "all full: pick anyway, the caller queues"
    );
}

#[test]
fn smooth_round_robin_matches_nginx_sequence() {
    // nginx commit 52327e062: weights {5, 1, 1} give a a b a c a a.
    let p = pool(Algorithm::RoundRobin, &[5, 1, 1]);
    let mut b = Balancer::new(&p);
    let state = PoolState::from_pool(&p);
    let mut r = rng(0);
    let seq: Vec<_> = (0..7)
        .map(|_| b.pick(&state, None, &mut r).unwrap())
        .collect();
    assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn hashing_without_a_key_falls_back_to_round_robin() {
    let p = pool(Algorithm::ConsistentHash, &[1, 1, 1]);
    let mut b = Balancer::new(&p);
    let state = PoolState::from_pool(&p);
    let mut r = rng(0);
    let seq: Vec<_> = (0..6)
        .map(|_| b.pick(&state, None, &mut r).unwrap())
        .collect();
    assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn power_of_two_prefers_the_less_loaded_of_its_draws() {
    let p = pool(Algorithm::PowerOfTwo, &[1, 1]);
    let mut b = Balancer::new(&p);
    let mut state = PoolState::from_pool(&p);
    state.set_loads(&[5, 0]);
    let mut r = rng(3);
    // With two servers both are always drawn, so the idle one always wins.
    for _ in 0..50 {
        assert_eq!(b.pick(&state, None, &mut r), Some(1));
    }
}

/// `down` servers are never picked; with `backups = "first"` only the first available backup
/// serves once the primaries are gone.
#[test]
fn down_servers_and_first_backup_only() {
    let text = "backups = \"first\"\n\
        [[servers]]\nname = \"p1\"\naddress = \"127.0.0.1:1\"\n\
        [[servers]]\nname = \"p2\"\naddress = \"127.0.0.1:2\"\ndown = true\n\
        [[servers]]\nname = \"b1\"\naddress = \"127.0.0.1:3\"\nbackup = true\n\
        [[servers]]\nname = \"b2\"\naddress = \"127.0.0.1:4\"\nbackup = true\n";
    let pool: Pool = toml::from_str(text).expect("pool");
    let mut b = Balancer::new(&pool);
    let mut state = PoolState::from_pool(&pool);
    let mut r = rng(1);
    for _ in 0..20 {
        assert_eq!(b.pick(&state, None, &mut r), Some(0), "p2 is down");
    }
    state.servers[0].available = false;
    for _ in 0..20 {
        assert_eq!(
            b.pick(&state, None, &mut r),
            Some(2),
            "only the first backup"
        );
    }
    state.servers[2].available = false;
    assert_eq!(
        b.pick(&state, None, &mut r),
        Some(3),
        "the next backup takes over"
    );
}

#[test]
fn a_disabled_server_is_never_picked_by_the_haproxy_emulation() {
    use crate::emulation::{Emulation, HaproxyHash, HaproxyKey, HashFunction, HashLookup};
    for emulate in [
        Emulation::HaproxyRoundrobin,
        Emulation::HaproxyStaticRr,
        Emulation::HaproxyLeastconn,
        Emulation::HaproxyHash(HaproxyHash {
            key: HaproxyKey::Source,
            lookup: HashLookup::MapBased,
            function: HashFunction::Sdbm,
            avalanche: false,
            balance_factor: 0,
        }),
    ] {
        let mut p = pool(Algorithm::RoundRobin, &[1, 1, 1]);
        p.emulate = Some(emulate.clone());
        p.servers[1].down = true;
        let state = PoolState::with_weights(&[1, 1, 1]);
        let mut b = Balancer::new(&p);
        let mut r = rng(3);
        for k in 0..300u64 {
            let picked = b.pick(&state, Some(k * 7919), &mut r);
            assert_ne!(picked, Some(1), "{emulate:?}");
        }
    }
}

#[test]
fn expected_shares_leave_out_down_servers_and_fall_to_backups() {
    let mut p = pool(Algorithm::RoundRobin, &[1, 1, 2]);
    p.servers[0].down = true;
    assert_eq!(expected_shares(&p), [0.0, 1.0 / 3.0, 2.0 / 3.0]);
    let mut b = pool(Algorithm::RoundRobin, &[1, 1, 3]);
    b.servers[0].down = true;
    b.servers[1].backup = true;
    b.servers[2].backup = true;
    assert_eq!(expected_shares(&b), [0.0, 0.25, 0.75]);
    b.backups = crate::config::BackupMode::First;
    assert_eq!(expected_shares(&b), [0.0, 1.0, 0.0]);
}
