//! Health checks and failover: coverage, detection time, thresholds that flap, slow start.

use std::time::Duration;

use crate::Sink;
use crate::context::{Context, human};
use ballast_core::config::{AllDownPolicy, InitialState};

/// Longest acceptable time to detect a dead server by active checks.
const DETECTION_BOUND: Duration = Duration::from_secs(30);

pub fn no_health_checks(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.servers.len() >= 2 && pool.health.is_none() && pool.passive.is_none() {
            let share = 100 / pool.servers.len();
            out.emit(&format!("pools.{name}"),
                format!("pool `{name}` has neither active health checks nor passive ejection: a dead server keeps its share and about {share}% of requests fail until someone notices"),
                format!("add [pools.{name}.health] (and [pools.{name}.passive] to react between checks)"));
        }
    }
}

pub fn slow_detection(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let Some(h) = &pool.health else { continue };
        let detection = h.interval.0 * h.fall + h.timeout.0;
        if detection > DETECTION_BOUND {
            out.emit(&format!("pools.{name}.health.interval"),
                format!("a dead server in pool `{name}` is detected only after about {} (interval {} × fall {} + timeout): it gets its share of requests all that time",
                    human(detection), human(h.interval.0), h.fall, ),
                format!("keep interval × fall under {}: for example interval = \"2s\", fall = 3", human(DETECTION_BOUND)));
        }
    }
}

pub fn flapping_thresholds(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let Some(h) = &pool.health else { continue };
        for (key, value) in [("rise", h.rise), ("fall", h.fall)] {
            if value == 1 {
                out.emit(&format!("pools.{name}.health.{key}"),
                    format!("{key} = 1 in pool `{name}`: one lucky or unlucky check flips the server, so a struggling server flaps in and out of rotation"),
                    "use rise ≥ 2 and fall ≥ 2 (the defaults are 2 and 3)");
            }
        }
    }
}

pub fn slow_start_shorter_than_interval(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let Some(h) = &pool.health else { continue };
        for (i, s) in pool.servers.iter().enumerate() {
            if let Some(ss) = s.slow_start
                && !ss.0.is_zero()
                && ss.0 <= h.interval.0
            {
                out.emit(&format!("pools.{name}.servers[{i}].slow_start"),
                    format!("slow_start {} of server `{}` is not longer than the check interval {}: the ramp is over before the next check, so a recovering server gets its full share at once",
                        human(ss.0), s.name, human(h.interval.0)),
                    "make slow_start several check intervals long (e.g. 30s with a 2s interval)");
            }
        }
    }
}

pub fn timeout_not_below_interval(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let Some(h) = &pool.health else { continue };
        if h.timeout.0 >= h.interval.0 {
            out.emit(&format!("pools.{name}.health.timeout"),
                format!("health check timeout {} is not below the interval {} in pool `{name}`: checks overlap and a hung server is detected late",
                    human(h.timeout.0), human(h.interval.0)),
                "keep the check timeout at half the interval or less");
        }
    }
}

pub fn passive_can_eject_all(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if let Some(p) = &pool.passive
            && p.max_ejected_percent >= 100
        {
            out.emit(&format!("pools.{name}.passive.max_ejected_percent"),
                format!("passive ejection may remove every server of pool `{name}`: one bad request retried everywhere (a query of death) takes the whole pool out"),
                "cap max_ejected_percent (50 is the default) so some servers always stay in rotation");
        }
    }
}

pub fn fail_open(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.all_down == AllDownPolicy::FailOpen {
            out.emit(&format!("pools.{name}.all_down"),
                format!("pool `{name}` fails open: when every server is down, requests go to servers known to be failing"),
                "fail-open can be right for a pool whose checks are less reliable than its servers; otherwise use \"fail-closed\"");
        }
    }
}

pub fn slow_start_without_health(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.health.is_some() || pool.passive.is_some() {
            continue;
        }
        for (i, s) in pool.servers.iter().enumerate() {
            if s.slow_start.is_some() {
                out.emit(&format!("pools.{name}.servers[{i}].slow_start"),
                    format!("server `{}` has slow_start but pool `{name}` has no health checks or passive ejection, so the server never goes down and never recovers: the ramp never runs", s.name),
                    format!("add [pools.{name}.health]"));
            }
        }
    }
}

pub fn initial_up(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if let Some(h) = &pool.health
            && h.initial == InitialState::Up
        {
            out.emit(&format!("pools.{name}.health.initial"),
                format!("servers of pool `{name}` start up, so a new or restarted server gets traffic before any check has passed"),
                "use initial = \"down\" (the default) unless servers must take traffic before the first check");
        }
    }
}
