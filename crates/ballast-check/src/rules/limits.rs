//! Connection and queue limits: capacity arithmetic across listener, pool and servers.

use std::collections::HashMap;

use crate::Sink;
use crate::context::{Context, human, thousands};
use ballast_core::config::Pool;

/// Connections the pool's primaries can hold in service and in queue, if every one is limited.
fn capacity(pool: &Pool, without: Option<usize>) -> Option<u64> {
    pool.servers
        .iter()
        .enumerate()
        .filter(|(i, s)| !s.backup && s.weight > 0 && Some(*i) != without)
        .map(|(_, s)| {
            s.max_connections
                .map(|m| u64::from(m) + u64::from(s.max_queue))
        })
        .sum()
}

pub fn capacity_below_listener(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let admitted = ctx.admitted_to(name);
        let Some(cap) = capacity(pool, None) else {
            continue;
        };
        if admitted > cap && cap > 0 {
            let listeners: Vec<_> = ctx
                .listeners_of(name)
                .map(|(n, _)| format!("`{n}`"))
                .collect();
            out.emit(&format!("pools.{name}"),
                format!("{} admit{} {} connections but pool `{name}` can hold {} (in service plus queued): at full load {} get 503",
                    listeners.join(", "), if listeners.len() == 1 { "s" } else { "" },
                    thousands(admitted), thousands(cap), thousands(admitted - cap)),
                "raise the servers' max_connections or max_queue, add servers, or lower the listener's max_connections to what the pool can hold");
        }
    }
}

pub fn capacity_n_minus_one(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let admitted = ctx.admitted_to(name);
        let Some(full) = capacity(pool, None) else {
            continue;
        };
        if admitted > full {
            continue; // capacity-below-listener already says so
        }
        let largest = pool
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.backup && s.weight > 0)
            .map(|(i, s)| {
                (
                    i,
                    s,
                    s.max_connections
                        .map(|m| u64::from(m) + u64::from(s.max_queue)),
                )
            })
            // The first of equally large servers, so the message names the one read first.
            .max_by(|a, b| a.2.cmp(&b.2).then(b.0.cmp(&a.0)))
            .map(|(i, s, _)| (i, s));
        let Some((index, server)) = largest else {
            continue;
        };
        let Some(rest) = capacity(pool, Some(index)) else {
            continue;
        };
        let backup: u64 = pool
            .servers
            .iter()
            .filter(|s| s.backup)
            .map(|s| {
                s.max_connections
                    .map_or(0, |m| u64::from(m) + u64::from(s.max_queue))
            })
            .sum();
        if admitted > rest + backup {
            out.emit(&format!("pools.{name}.servers[{index}]"),
                format!("if `{}` fails, pool `{name}` can hold {} connections against the {} its listeners admit: {} have nowhere to go",
                    server.name, thousands(rest + backup), thousands(admitted), thousands(admitted - rest - backup)),
                "size the pool so it carries full load with its largest server down (N−1), or lower the listener's max_connections");
        }
    }
}

pub fn per_ip_above_total(ctx: &Context, out: &mut Sink) {
    let g = &ctx.config.global;
    if let Some(per_ip) = g.max_connections_per_ip {
        let total = g.effective_max_connections();
        if per_ip >= total {
            out.emit("global.max_connections_per_ip",
                format!("max_connections_per_ip ({}) is not below the global limit ({}): one client can take every connection and lock everyone else out",
                    thousands(per_ip.into()), thousands(total.into())),
                "set the per-IP cap to a small fraction of the global limit");
        }
    }
}

pub fn listener_above_global(ctx: &Context, out: &mut Sink) {
    let global = ctx.config.global.effective_max_connections();
    for (name, l) in ctx.listeners() {
        if let Some(m) = l.max_connections
            && m > global
        {
            out.emit(&format!("listeners.{name}.max_connections"),
                format!("listener `{name}` admits {} connections but the global limit is {}: the global cap is reached first and refuses clients of every listener",
                    thousands(m.into()), thousands(global.into())),
                "keep each listener's max_connections at or below global.max_connections");
        }
    }
}

pub fn queue_without_limit(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        for (i, s) in pool.servers.iter().enumerate() {
            if s.max_queue > 0 && s.max_connections.is_none() {
                out.emit(&format!("pools.{name}.servers[{i}].max_queue"),
                    format!("server `{}` has a queue but no max_connections, so nothing ever queues: the server takes every request it is sent", s.name),
                    "set max_connections to what the server can serve at once");
            }
        }
    }
}

pub fn queue_timeout_beyond_request(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let request = ctx
            .listeners_of(name)
            .map(|(_, l)| l.timeouts.request())
            .min();
        let Some(request) = request else { continue };
        for (i, s) in pool.servers.iter().enumerate() {
            if s.max_queue > 0 && s.queue_timeout() >= request {
                out.emit(&format!("pools.{name}.servers[{i}].queue_timeout"),
                    format!("server `{}` lets requests queue for {}, but the request timeout is {}: clients are cut off while still queued, and the queue holds work nobody waits for",
                        s.name, human(s.queue_timeout()), human(request)),
                    "keep queue_timeout well below the listener's request timeout");
            }
        }
    }
}

pub fn unlimited_servers(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let unlimited: Vec<_> = pool
            .servers
            .iter()
            .filter(|s| s.max_connections.is_none())
            .map(|s| s.name.as_str())
            .collect();
        if !unlimited.is_empty() {
            out.emit(&format!("pools.{name}"),
                format!("pool `{name}`: {} ha{} no max_connections, so an overload reaches the server instead of getting a fast 503 here",
                    unlimited.join(", "), if unlimited.len() == 1 { "s" } else { "ve" }),
                "set max_connections (and a small max_queue) to what each server can serve at once");
        }
    }
}

pub fn single_server_pool(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let serving = pool.primaries().filter(|s| s.weight > 0).count();
        let backups = pool
            .servers
            .iter()
            .filter(|s| s.backup && s.weight > 0)
            .count();
        if serving == 1 && backups == 0 && ctx.listeners_of(name).next().is_some() {
            out.emit(&format!("pools.{name}"),
                format!("pool `{name}` has one serving server and no backup: when it fails, every request gets 503"),
                "add a second server or a backup");
        }
    }
}

pub fn duplicate_server_address(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (i, s) in pool.servers.iter().enumerate() {
            if let Some(first) = seen.insert(s.address.as_str(), s.name.as_str()) {
                out.emit(&format!("pools.{name}.servers[{i}].address"),
                    format!("servers `{first}` and `{}` are the same address {}: that backend gets a double share, and its limits are counted twice", s.name, s.address),
                    "remove the duplicate, or raise the one server's weight if a double share is intended");
            }
        }
    }
}
