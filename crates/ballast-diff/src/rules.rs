//! The catalogue's diff-only rules: what is wrong with a *change* rather than with a file.
//!
//! - HASH-002: a server removed from a modulo-hash pool (nginx `ip_hash` or `hash` without
//!   `consistent`, HAProxy map-based hashing) instead of being marked `down`: the total weight
//!   changes and keys of every server move.
//! - HASH-003: a server's ring identity changed in a consistent-hash pool (nginx ketama hashes
//!   the `server` text, HAProxy its id, ballast its name): its keys move though nothing real
//!   changed.

use ballast_check::{Finding, find_rule};
use ballast_core::config::{Algorithm, Pool, Server};
use ballast_core::emulation::{Emulation, HashLookup};
use ballast_import::Imported;

use crate::compare::pair_servers;
use crate::shift::PoolShift;
use crate::{Side, SidedFinding};

/// How a pool places keys on servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Key modulo total weight: removing a server moves most keys.
    Modulo,
    /// A ring keyed by what identifies the server.
    Ring(RingKey),
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RingKey {
    /// nginx ketama: the server text as written.
    Text,
    /// HAProxy: the server id (its position when unset).
    Id,
    /// ballast: the server name.
    Name,
}

fn placement(p: &Pool) -> Placement {
    match &p.emulate {
        Some(Emulation::NginxIpHash) => Placement::Modulo,
        Some(Emulation::NginxHash { consistent, .. }) => {
            if *consistent {
                Placement::Ring(RingKey::Text)
            } else {
                Placement::Modulo
            }
        }
        Some(Emulation::HaproxyHash(h)) => match h.lookup {
            HashLookup::MapBased => Placement::Modulo,
            HashLookup::Consistent => Placement::Ring(RingKey::Id),
        },
        Some(_) => Placement::None,
        None if p.algorithm == Algorithm::ConsistentHash => Placement::Ring(RingKey::Name),
        None => Placement::None,
    }
}

fn ring_identity(key: RingKey, s: &Server, position: usize) -> String {
    match key {
        RingKey::Text => s.ring_key.clone().unwrap_or_else(|| s.address.clone()),
        RingKey::Id => s.id.unwrap_or(position as u32 + 1).to_string(),
        RingKey::Name => s.name.clone(),
    }
}

fn finding(id: &str, message: String, span: Option<std::ops::Range<usize>>, fix: &str) -> Finding {
    let rule = find_rule(id).expect("catalogue rule");
    Finding {
        rule: rule.id,
        severity: rule.severity,
        message,
        span,
        fix: fix.to_string(),
    }
}

pub fn judge(old: &Imported, new: &Imported, shifts: &[PoolShift]) -> Vec<SidedFinding> {
    let mut out = Vec::new();
    for (name, op) in &old.loaded.config.pools {
        let Some(np) = new.loaded.config.pools.get(name) else {
            continue;
        };
        let moved = shifts
            .iter()
            .find(|s| &s.pool == name)
            .and_then(|s| s.moved)
            .map(|m| format!(" (predicted: {:.1}% of requests change server)", m * 100.0))
            .unwrap_or_default();
        let pairs = pair_servers(&op.servers, &np.servers);
        match (placement(op), placement(np)) {
            (Placement::Modulo, Placement::Modulo) => {
                for i in pairs.iter().filter(|p| p.1.is_none()).filter_map(|p| p.0) {
                    let s = &op.servers[i];
                    out.push(SidedFinding {
                        side: Side::Old,
                        finding: finding(
                            "HASH-002",
                            format!("server `{}` is removed from hash pool `{name}` instead of being marked down: the total weight changes and keys of every server move{moved}", crate::compare::label(s)),
                            old.loaded.locate(&format!("pools.{name}.servers[{i}]")),
                            // HAProxy rebuilds its map without a disabled server too, so
                            // only nginx's `down` keeps the other keys in place.
                            if matches!(op.emulate, Some(ballast_core::emulation::Emulation::HaproxyHash(_))) {
                                "HAProxy's map-based hashing remaps keys whenever a server leaves, disabled or down included: use `hash-type consistent` so a departure moves only that server's keys"
                            } else {
                                "keep the server and mark it `down`; remove it later in a planned cache warm-up"
                            },
                        ),
                    });
                }
            }
            (Placement::Ring(a), Placement::Ring(b)) if a == b => {
                let removed: Vec<usize> = pairs
                    .iter()
                    .filter(|p| p.1.is_none())
                    .filter_map(|p| p.0)
                    .collect();
                let added: Vec<usize> = pairs
                    .iter()
                    .filter(|p| p.0.is_none())
                    .filter_map(|p| p.1)
                    .collect();
                let report = |i: usize, j: usize, out: &mut Vec<SidedFinding>| {
                    let (was, now) = (
                        ring_identity(a, &op.servers[i], i),
                        ring_identity(a, &np.servers[j], j),
                    );
                    if was != now {
                        let what = match a {
                            RingKey::Text => "server text",
                            RingKey::Id => "server id",
                            RingKey::Name => "server name",
                        };
                        out.push(SidedFinding {
                            side: Side::New,
                            finding: finding(
                                "HASH-003",
                                format!("the {what} that places a server on the ring of pool `{name}` changed from `{was}` to `{now}`: its keys move to other servers though the server is the same{moved}"),
                                new.loaded.locate(&format!("pools.{name}.servers[{j}]")),
                                "keep the ring identity as it was (the same text, id or name)",
                            ),
                        });
                    }
                };
                for (i, j) in pairs.iter().filter_map(|(i, j)| i.zip(*j)) {
                    report(i, j, &mut out);
                }
                // A server whose text changed entirely (IP to host name) shows as removed and
                // added at the same position.
                for &i in &removed {
                    if added.contains(&i) {
                        report(i, i, &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out
}
