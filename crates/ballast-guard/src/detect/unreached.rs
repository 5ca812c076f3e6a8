//! Requests that reached no server: the load balancer could choose none of a pool's servers
//! ("no live upstreams") or answered a 5xx itself. Read from the counts the sources take from
//! their logs (`Sample::log_errors`), so nginx, which reports nothing per pool, is judged on
//! what its logs say.
//!
//! Raises `PoolNoLiveUpstreams`; and gives the errors detector the pool's own 5xx
//! ([`answered_by_balancer`]), so `PoolErrorRate` counts the requests nginx failed without
//! a server among the pool's errors.

use ballast_core::sample::{LogFile, LoggedError, LoggedErrorKind, Sample};

use super::{Finding, Layer, Level, RuleSpec, Text, figures, pool_series, span};

pub const POOL_NO_LIVE_UPSTREAMS: &str = "PoolNoLiveUpstreams";

/// When "no live upstreams" is worth an alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnreachedThresholds {
    /// The fewest requests with no server to choose in a window (one is a blip between a
    /// server's failure and the next, several are clients failing now).
    pub min_requests: u64,
}

impl Default for UnreachedThresholds {
    fn default() -> Self {
        Self { min_requests: 5 }
    }
}

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[RuleSpec {
    alertname: POOL_NO_LIVE_UPSTREAMS,
    layer: Layer::Backend,
    for_ms: 0,
    meaning: "The load balancer found no server of the pool to send requests to, 5 times or \
              more in the window, and answered them itself (nginx \"no live upstreams\", a 502 \
              with the group's name in `$upstream_addr`): clients get errors now. Either every \
              server failed (nginx took each out for `fail_timeout` after `max_fails` failed \
              attempts: the backends), or every server was at its `max_conns` (the balancer's \
              limits, named so when the pool's servers were at their limit).",
    response: "Look at the error log's lines before it: \"connect() failed\" and \"upstream \
               timed out\" name the servers that failed (bring them back, or find the shared \
               reason: network, a dependency, a deploy); with `max_conns`, see the saturation \
               alerts and add servers or raise the limit. `max_fails=0` hides failures instead \
               of fixing them.",
}];

/// How much a pool's count of one kind rose over the window, from one log or the most of
/// either (nginx writes one request's "no live upstreams" in both logs when both are read).
fn rise(window: &[Sample], pool: &str, kind: LoggedErrorKind, log: Option<LogFile>) -> u64 {
    let count = |s: &Sample, log: LogFile| -> u64 {
        s.log_errors
            .iter()
            .filter(|e: &&LoggedError| {
                e.kind == kind && e.log == log && e.pool.as_deref() == Some(pool)
            })
            .map(|e| e.count)
            .sum()
    };
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return 0;
    };
    let of = |log| count(last, log).saturating_sub(count(first, log));
    match log {
        Some(log) => of(log),
        None => of(LogFile::Access).max(of(LogFile::Error)),
    }
}

/// The requests of `pool` the load balancer answered with a 5xx itself in the window (no
/// server reached): counted among the pool's errors and responses by `PoolErrorRate`.
pub fn answered_by_balancer(window: &[Sample], pool: &str) -> u64 {
    rise(
        window,
        pool,
        LoggedErrorKind::AnsweredByBalancer,
        Some(LogFile::Access),
    )
}

/// What holds for one load balancer's window, `window` its samples oldest first.
pub fn detect(window: &[Sample], thresholds: &UnreachedThresholds) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(now) = window.last() else {
        return found;
    };
    // Most windows have no log errors at all: nothing to look up.
    if window.iter().all(|s| s.log_errors.is_empty()) {
        return found;
    }
    let over = span(window);
    for (index, pool) in now.pools.iter().enumerate() {
        let none_live = rise(window, &pool.name, LoggedErrorKind::NoLiveUpstreams, None);
        if none_live < thresholds.min_requests {
            continue;
        }
        let failed = rise(window, &pool.name, LoggedErrorKind::ConnectFailed, None)
            + rise(window, &pool.name, LoggedErrorKind::UpstreamTimedOut, None)
            + rise(window, &pool.name, LoggedErrorKind::NextUpstream, None);
        // Servers at their `max_conns` somewhere in the window: nginx refused for its limit.
        let series = pool_series(window, index, &pool.name);
        let full: Vec<&str> = pool
            .servers
            .iter()
            .filter(|s| {
                series.iter().any(|p| {
                    p.servers.iter().any(|x| {
                        x.name == s.name && x.max_connections.is_some_and(|m| x.active >= m)
                    })
                })
            })
            .map(|s| s.name.as_str())
            .collect();
        let (layer, why) = if !full.is_empty() && full.len() * 2 >= pool.servers.len() {
            (
                Layer::Limits,
                format!(
                    "its servers were at their connection limit ({}): nginx had no server \
                     with room",
                    full.join(", ")
                ),
            )
        } else if failed > 0 {
            (
                Layer::Backend,
                format!(
                    "{failed} attempts on its servers failed (connection refused, timed out, \
                     passed on): nginx took every server out after `max_fails`"
                ),
            )
        } else {
            (
                Layer::Backend,
                "every server is out of rotation for nginx (failed within `fail_timeout`, or \
                 marked `down`)"
                    .to_string(),
            )
        };
        let answered = answered_by_balancer(window, &pool.name);
        found.push(Finding {
            rule: POOL_NO_LIVE_UPSTREAMS,
            level: Level::Critical,
            layer,
            pool: Some(pool.name.clone()),
            server: None,
            text: Text::written(
                format!(
                    "pool {} had no live server for {none_live} requests in the last {over}",
                    pool.name
                ),
                format!(
                    "The load balancer found no server of pool {} to choose {none_live} times in \
                 the last {over} and answered {answered} requests with a 5xx itself; {why}.",
                    pool.name
                ),
            ),
            figures: figures(&[
                ("no_live_upstreams", none_live as f64),
                ("answered_by_balancer", answered as f64),
                ("failed_attempts", failed as f64),
                ("servers_at_limit", full.len() as f64),
            ]),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, sample, server};

    fn logged(kind: LoggedErrorKind, log: LogFile, pool: &str, count: u64) -> LoggedError {
        LoggedError {
            log,
            kind,
            pool: Some(pool.into()),
            server: None,
            count,
        }
    }

    /// Samples at 0..=4 s of pool `app` (three servers), the counts rising by `per_second`.
    fn window(per_second: &[(LoggedErrorKind, LogFile, u64)]) -> Vec<Sample> {
        (0..=4)
            .map(|t| {
                let mut s = sample(
                    t,
                    vec![pool("app", vec![server("a"), server("b"), server("c")])],
                );
                s.log_errors = per_second
                    .iter()
                    .map(|&(kind, log, n)| logged(kind, log, "app", 100 + n * t))
                    .collect();
                s
            })
            .collect()
    }

    #[test]
    fn no_live_upstreams_with_failed_servers_is_a_backend_critical() {
        let w = window(&[
            (LoggedErrorKind::NoLiveUpstreams, LogFile::Access, 3),
            (LoggedErrorKind::NoLiveUpstreams, LogFile::Error, 3),
            (LoggedErrorKind::AnsweredByBalancer, LogFile::Access, 3),
            (LoggedErrorKind::ConnectFailed, LogFile::Error, 1),
        ]);
        let found = detect(&w, &UnreachedThresholds::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(
            (f.rule, f.level, f.layer, f.pool.as_deref()),
            (
                POOL_NO_LIVE_UPSTREAMS,
                Level::Critical,
                Layer::Backend,
                Some("app")
            )
        );
        // Both logs say the same 12: counted once.
        assert_eq!(f.figures["no_live_upstreams"], 12.0);
        assert_eq!(f.figures["answered_by_balancer"], 12.0);
        assert!(f.description().contains("max_fails"), "{}", f.description());
        assert_eq!(answered_by_balancer(&w, "app"), 12);
    }

    #[test]
    fn servers_at_max_conns_place_it_in_the_limits() {
        let mut w = window(&[(LoggedErrorKind::NoLiveUpstreams, LogFile::Access, 2)]);
        for s in &mut w {
            for x in &mut s.pools[0].servers {
                x.max_connections = Some(2);
                x.active = 2;
            }
        }
        let found = detect(&w, &UnreachedThresholds::default());
        assert_eq!(found[0].layer, Layer::Limits, "{found:?}");
        assert!(found[0].description().contains("connection limit"));
    }

    #[test]
    fn a_few_or_steady_counts_are_not_an_alert() {
        // 4 in the window, under the floor.
        let w = window(&[(LoggedErrorKind::NoLiveUpstreams, LogFile::Error, 1)]);
        assert!(detect(&w, &UnreachedThresholds::default()).is_empty());
        // Many before the window, none in it.
        let w = window(&[(LoggedErrorKind::NoLiveUpstreams, LogFile::Error, 0)]);
        assert!(detect(&w, &UnreachedThresholds::default()).is_empty());
        // Another pool's.
        let mut w = window(&[(LoggedErrorKind::NoLiveUpstreams, LogFile::Error, 9)]);
        for s in &mut w {
            s.pools[0].name = "other".into();
        }
        assert!(detect(&w, &UnreachedThresholds::default()).is_empty());
    }

    #[test]
    fn fives_nginx_answered_itself_count_toward_the_pools_error_rate() {
        use crate::detect::errors::{self, ErrorThresholds, POOL_ERROR_RATE};
        use crate::detect::testing::responses;
        // The servers answer 100 clean responses a second; nginx fails 20 more itself.
        let mut w = window(&[(LoggedErrorKind::AnsweredByBalancer, LogFile::Access, 20)]);
        for (t, s) in w.iter_mut().enumerate() {
            for x in &mut s.pools[0].servers {
                x.requests = 100 * t as u64;
                x.responses = responses(100 * t as u64, 0, 0);
            }
        }
        let found = errors::detect(&w, &ErrorThresholds::default());
        let rate: Vec<&Finding> = found.iter().filter(|f| f.rule == POOL_ERROR_RATE).collect();
        assert_eq!(rate.len(), 1, "{found:?}");
        // 80 of 1280 responses: 6.25%, a warning no server's counter shows.
        assert_eq!(rate[0].level, Level::Warning);
        assert_eq!(rate[0].figures["answered_by_balancer"], 80.0);
        assert_eq!(rate[0].figures["responses"], 1280.0);
        assert!(
            rate[0].description().contains("the balancer itself 80"),
            "{}",
            rate[0].description()
        );
        // Without them, the pool is clean.
        for s in &mut w {
            s.log_errors.clear();
        }
        assert!(errors::detect(&w, &ErrorThresholds::default()).is_empty());
    }
}
