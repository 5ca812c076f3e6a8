//! Drift: the shares a pool's live weights and states promise, against the shares its
//! reference promised — the configuration file when the watcher reads it, else the oldest
//! sample of the history. A load balancer that spreads traffic exactly as its weights say can
//! still be the outage: a runtime `set weight app/app-3 8`, a server put in maintenance, a
//! drain that was never undone. The distribution detector cannot see that (the traffic follows
//! the weights); this one compares the weights themselves.

use std::collections::BTreeMap;

use ballast_core::config::{Config, Server};
use ballast_core::sample::{PoolSample, Promise, Sample, ServerSample, ServerState};

use super::{Figures, Finding, Layer, Level, RuleSpec, Text};
use crate::change::{clock, duration};

pub const POOL_SHARES_SHIFTED: &str = "PoolSharesShifted";

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[RuleSpec {
    alertname: POOL_SHARES_SHIFTED,
    layer: Layer::Distribution,
    // A weight or state change is a discrete fact, not noise: it holds or it does not.
    for_ms: 0,
    meaning: "The pool's live weights and server states promise shares that differ from the \
        reference (the configuration file when `ballast watch` reads it, else the pool as it \
        was at the start of the history) by more than the threshold (10 points warning, 25 \
        critical): a weight changed at runtime, a server drained, disabled or put in \
        maintenance. The `server` label names the server that gained the most.",
    response: "Look at the servers the description names. If the change was made through the \
        runtime API or the admin page, undo it (`set weight`, `set server ... state ready`) or \
        write it into the configuration if it is meant to stay. Check that the servers still \
        in rotation can take the load they now get: a saturation alert on them names this \
        shift as its cause.",
}];

/// When a shift is worth an alert, in percentage points of a server's expected share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftThresholds {
    pub warning_points: f64,
    pub critical_points: f64,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            warning_points: 10.0,
            critical_points: 25.0,
        }
    }
}

/// One server's weight and whether it takes traffic, in the reference or now.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Standing {
    weight: u32,
    in_rotation: bool,
    backup: bool,
}

impl Standing {
    /// As the configuration file has it.
    fn configured(s: &Server) -> Self {
        Self {
            weight: s.weight,
            in_rotation: !s.down && s.weight > 0,
            backup: s.backup,
        }
    }

    fn live(s: &ServerSample) -> Self {
        Self {
            weight: s.weight,
            in_rotation: s.state == ServerState::Up && s.weight > 0,
            backup: s.backup,
        }
    }

    fn state_word(s: &ServerSample) -> &'static str {
        match s.state {
            ServerState::Up if s.weight == 0 => "weight 0",
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Drain => "draining",
            ServerState::Maintenance => "in maintenance",
        }
    }
}

/// Judges the latest sample's pools against the configuration (`config`), or against the
/// first sample of `history` when there is no configuration.
pub fn detect(
    history: &[Sample],
    config: Option<&Config>,
    thresholds: &DriftThresholds,
) -> Vec<Finding> {
    let (Some(first), Some(latest)) = (history.first(), history.last()) else {
        return Vec::new();
    };
    latest
        .pools
        .iter()
        .enumerate()
        .filter(|(_, p)| p.promise != Promise::FillInOrder)
        .filter_map(|(index, pool)| {
            // Most pools stand as they did: told at once, server by server in place, before
            // anything is built (a fleet round judges every pool).
            if stands_as_before(pool, index, first, config) {
                return None;
            }
            let reference: BTreeMap<&str, Standing> = match config {
                Some(c) => {
                    let spec = c.pools.get(&pool.name)?;
                    spec.servers
                        .iter()
                        .map(|s| (s.name.as_str(), Standing::configured(s)))
                        .collect()
                }
                None => super::by_name(&first.pools, index, &pool.name, |p| &p.name)?
                    .servers
                    .iter()
                    .map(|s| (s.name.as_str(), Standing::live(s)))
                    .collect(),
            };
            let started = latest.process.as_ref().and_then(|p| p.started_unix_s);
            judge(
                pool,
                &reference,
                config.is_some(),
                thresholds,
                latest.at_ms,
                started,
            )
        })
        .collect()
}

/// Whether every server of `pool` (at `index` in the latest sample) stands as in the
/// reference, the same servers at the same places: then no share moved. `false` says only
/// "look closer".
fn stands_as_before(
    pool: &PoolSample,
    index: usize,
    first: &Sample,
    config: Option<&Config>,
) -> bool {
    match config {
        Some(c) => {
            c.pools.get(&pool.name).is_some_and(|spec| {
                spec.servers.len() == pool.servers.len()
                    && spec.servers.iter().zip(&pool.servers).all(|(r, s)| {
                        Standing::configured(r) == Standing::live(s) && r.name == s.name
                    })
            })
        }
        None => first.pools.get(index).is_some_and(|then| {
            super::same_layout(&[then, pool])
                && then.name == pool.name
                && then
                    .servers
                    .iter()
                    .zip(&pool.servers)
                    .all(|(a, b)| Standing::live(a) == Standing::live(b))
        }),
    }
}

/// Each server's promised share over the servers that take traffic (primaries, or backups
/// when no primary does).
fn shares<'a>(standings: impl Iterator<Item = (&'a str, Standing)>) -> BTreeMap<&'a str, f64> {
    let all: Vec<(&str, Standing)> = standings.collect();
    let serving_backups = !all.iter().any(|(_, s)| s.in_rotation && !s.backup);
    let serving: Vec<&(&str, Standing)> = all
        .iter()
        .filter(|(_, s)| s.in_rotation && s.backup == serving_backups)
        .collect();
    let total: u64 = serving.iter().map(|(_, s)| u64::from(s.weight)).sum();
    all.iter()
        .map(|(name, s)| {
            let share = if total > 0 && s.in_rotation && s.backup == serving_backups {
                f64::from(s.weight) / total as f64
            } else {
                0.0
            };
            (*name, share)
        })
        .collect()
}

fn judge(
    pool: &PoolSample,
    reference: &BTreeMap<&str, Standing>,
    against_config: bool,
    t: &DriftThresholds,
    at_ms: u64,
    started_unix_s: Option<u64>,
) -> Option<Finding> {
    // Only servers both sides know: an added or removed server is a configuration change.
    let known: Vec<&ServerSample> = pool
        .servers
        .iter()
        .filter(|s| reference.contains_key(s.name.as_str()))
        .collect();
    let before = shares(
        known
            .iter()
            .map(|s| (s.name.as_str(), reference[s.name.as_str()])),
    );
    let now = shares(known.iter().map(|s| (s.name.as_str(), Standing::live(s))));
    let (hot, gain) = now
        .iter()
        .map(|(name, share)| (*name, share - before.get(name).copied().unwrap_or(0.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let points = gain * 100.0;
    let level = if points >= t.critical_points {
        Level::Critical
    } else if points >= t.warning_points {
        Level::Warning
    } else {
        return None;
    };
    let mut weights_changed = false;
    // The most recent state change the balancer dates, in seconds before this sample.
    let mut latest_state_change_s: Option<u64> = None;
    let changed: Vec<String> = known
        .iter()
        .filter_map(|s| {
            let r = reference[s.name.as_str()];
            let live = Standing::live(s);
            if live.weight != r.weight && s.state == ServerState::Up {
                weights_changed = true;
                Some(format!(
                    "weight of {} {} → {}",
                    s.name, r.weight, live.weight
                ))
            } else if live.in_rotation != r.in_rotation {
                let since = s.state_for_s.map(|secs| {
                    latest_state_change_s =
                        Some(latest_state_change_s.map_or(secs, |l: u64| l.min(secs)));
                    format!(" for {}", duration(secs.saturating_mul(1000)))
                });
                Some(format!(
                    "{} {}{}",
                    s.name,
                    Standing::state_word(s),
                    since.unwrap_or_default()
                ))
            } else {
                None
            }
        })
        .collect();
    // A weight set over the runtime API is dated by nobody: the process's start bounds it.
    let weight_bound = match (weights_changed, started_unix_s) {
        (true, Some(started)) => {
            let started_ms = started.saturating_mul(1000);
            format!(
                " The weights were set at run time (the file says otherwise), after the process \
                 started at {} UTC, {} before this sample; the balancer does not record when.",
                clock(started_ms),
                duration(at_ms.saturating_sub(started_ms))
            )
        }
        _ => String::new(),
    };
    let reference_name = if against_config {
        "the configuration file"
    } else {
        "the start of the history"
    };
    let (was, is) = (before[hot], now[hot]);
    Some(Finding {
        rule: POOL_SHARES_SHIFTED,
        level,
        layer: Layer::Distribution,
        pool: Some(pool.name.clone()),
        server: Some(hot.to_string()),
        text: Text::written(
            format!(
                "pool {} now promises {hot} {:.0}% of its traffic instead of {:.0}% ({})",
                pool.name,
                is * 100.0,
                was * 100.0,
                if changed.is_empty() {
                    "weights changed".to_string()
                } else {
                    changed.join(", ")
                }
            ),
            format!(
                "Against {reference_name}, the live weights and states move {hot}'s expected share \
             by {points:.0} points. Now: {}.{weight_bound}",
                now.iter()
                    .map(|(n, s)| format!("{n} {:.0}%", s * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        figures: {
            let mut figures =
                Figures::from([("shift_points", points), ("share", is), ("expected", was)]);
            if let Some(secs) = latest_state_change_s {
                figures.insert("state_changed_s_ago", secs as f64);
            }
            figures
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, sample, server};

    fn with(mut s: ServerSample, weight: u32, state: ServerState) -> ServerSample {
        s.weight = weight;
        s.state = state;
        s
    }

    #[test]
    fn a_runtime_change_is_dated_by_what_the_balancer_keeps() {
        let first = sample(
            0,
            vec![pool(
                "app",
                (1..=3).map(|i| server(&format!("app-{i}"))).collect(),
            )],
        );
        // app-1 put in maintenance 42 s ago (HAProxy's `lastchg`): that dates it.
        let mut servers: Vec<ServerSample> = (1..=3).map(|i| server(&format!("app-{i}"))).collect();
        servers[0] = with(servers[0].clone(), 1, ServerState::Maintenance);
        servers[0].state_for_s = Some(42);
        let mut later = sample(7_200, vec![pool("app", servers.clone())]);
        let f = detect(
            &[first.clone(), later.clone()],
            None,
            &DriftThresholds::default(),
        );
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].summary().contains("app-1 in maintenance for 42 s"),
            "{}",
            f[0].summary()
        );
        assert_eq!(f[0].figures.get("state_changed_s_ago"), Some(42.0));
        // A weight set at run time is not dated by HAProxy: only the process's start bounds it.
        servers[0] = with(servers[0].clone(), 1, ServerState::Up);
        servers[0].state_for_s = Some(7_000);
        servers[2] = with(servers[2].clone(), 8, ServerState::Up);
        later = sample(7_200, vec![pool("app", servers)]);
        later.process = Some(ballast_core::sample::ProcessSample {
            started_unix_s: Some(0),
            ..Default::default()
        });
        let f = detect(&[first, later], None, &DriftThresholds::default());
        assert_eq!(f.len(), 1, "{f:#?}");
        let description = f[0].description();
        assert!(
            description.contains("after the process started at 00:00:00 UTC, 2 h 00 min before"),
            "{description}"
        );
        assert!(!f[0].summary().contains(" for "), "{}", f[0].summary());
        assert_eq!(f[0].figures.get("state_changed_s_ago"), None);
    }

    #[test]
    fn a_runtime_weight_change_is_a_shift_naming_the_server_and_the_change() {
        let before = sample(
            0,
            vec![pool(
                "app",
                (1..=3).map(|i| server(&format!("app-{i}"))).collect(),
            )],
        );
        let mut servers: Vec<ServerSample> = (1..=3).map(|i| server(&format!("app-{i}"))).collect();
        servers[2] = with(servers[2].clone(), 8, ServerState::Up);
        let after = sample(10, vec![pool("app", servers)]);
        let f = detect(&[before, after], None, &DriftThresholds::default());
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].rule, POOL_SHARES_SHIFTED);
        assert_eq!(f[0].level, Level::Critical);
        assert_eq!(f[0].server.as_deref(), Some("app-3"));
        assert!(
            f[0].summary().contains("80% of its traffic instead of 33%"),
            "{}",
            f[0].summary()
        );
        assert!(
            f[0].summary().contains("weight of app-3 1 → 8"),
            "{}",
            f[0].summary()
        );
    }

    #[test]
    fn a_server_in_maintenance_concentrates_load_on_the_rest() {
        let base: Vec<ServerSample> = (1..=3).map(|i| server(&format!("app-{i}"))).collect();
        let mut now = base.clone();
        now[1] = with(now[1].clone(), 1, ServerState::Maintenance);
        let f = detect(
            &[
                sample(0, vec![pool("app", base)]),
                sample(5, vec![pool("app", now)]),
            ],
            None,
            &DriftThresholds::default(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Warning, "33% → 50% is 17 points");
        assert!(
            f[0].summary().contains("app-2 in maintenance"),
            "{}",
            f[0].summary()
        );
    }

    #[test]
    fn against_the_configuration_a_pool_as_configured_has_no_drift() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            "[listeners.web]\naddress = \"127.0.0.1:8080\"\npool = \"app\"\n\n[pools.app]\n\
             [[pools.app.servers]]\nname = \"app-1\"\naddress = \"127.0.0.1:9001\"\nweight = 1\n\
             [[pools.app.servers]]\nname = \"app-2\"\naddress = \"127.0.0.1:9002\"\nweight = 1\n\
             [[pools.app.servers]]\nname = \"app-3\"\naddress = \"127.0.0.1:9003\"\nweight = 8\n",
        )
        .unwrap();
        let loaded = ballast_core::load_file(&path).expect("a valid configuration");
        let mut servers: Vec<ServerSample> = (1..=3).map(|i| server(&format!("app-{i}"))).collect();
        servers[2] = with(servers[2].clone(), 8, ServerState::Up);
        let as_configured = sample(0, vec![pool("app", servers.clone())]);
        let t = DriftThresholds::default();
        assert!(detect(&[as_configured], Some(&loaded.config), &t).is_empty());
        // The runtime API drained app-3: app-1 and app-2 go from 10% to 50%.
        servers[2] = with(servers[2].clone(), 8, ServerState::Drain);
        let drained = sample(1, vec![pool("app", servers)]);
        let f = detect(&[drained], Some(&loaded.config), &t);
        assert_eq!(f.len(), 1);
        assert!(f[0].description().contains("the configuration file"));
    }

    #[test]
    fn small_or_no_changes_raise_nothing() {
        let base: Vec<ServerSample> = (1..=10).map(|i| server(&format!("s{i}"))).collect();
        let mut now = base.clone();
        // One of ten servers out: the others go from 10% to 11.1%.
        now[0] = with(now[0].clone(), 1, ServerState::Down);
        let t = DriftThresholds::default();
        assert!(
            detect(
                &[
                    sample(0, vec![pool("app", base.clone())]),
                    sample(1, vec![pool("app", now)])
                ],
                None,
                &t
            )
            .is_empty()
        );
        assert!(
            detect(
                &[
                    sample(0, vec![pool("app", base.clone())]),
                    sample(1, vec![pool("app", base)])
                ],
                None,
                &t
            )
            .is_empty()
        );
    }
}
