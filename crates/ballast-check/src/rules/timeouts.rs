//! Timeouts and retries: budgets that add up to more than the client waits, and timeouts
//! that are off.

use crate::Sink;
use crate::context::{Context, human};
use ballast_core::config::Protocol;

pub fn retries_exceed_request_timeout(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let Some(request) = ctx
            .listeners_of(name)
            .map(|(_, l)| l.timeouts.request())
            .min()
        else {
            continue;
        };
        if request.is_zero() {
            continue;
        }
        let attempts = pool.retries.attempts + 1;
        let worst = pool.connect_timeout() * attempts;
        if worst > request {
            out.emit(&format!("pools.{name}.retries.attempts"),
                format!("{attempts} attempts × connect timeout {} = {} before the last attempt gives up, beyond the request timeout of {}: clients are cut off before the retry can succeed",
                    human(pool.connect_timeout()), human(worst), human(request)),
                "lower connect_timeout or retries.attempts so that (attempts + 1) × connect_timeout stays below the request timeout");
        }
    }
}

pub fn header_read_disabled(ctx: &Context, out: &mut Sink) {
    for (name, l) in ctx.listeners() {
        if l.protocol == Protocol::Http && l.timeouts.header_read().is_zero() {
            out.emit(&format!("listeners.{name}.timeouts.header_read"),
                format!("listener `{name}` has no header-read timeout: a client that sends its headers one byte at a time (slowloris) holds a connection slot forever, and a few hundred of them fill max_connections"),
                "set timeouts.header_read to a few seconds (the default is 10s)");
        }
    }
}

pub fn idle_disabled(ctx: &Context, out: &mut Sink) {
    for (name, l) in ctx.listeners() {
        if l.timeouts.idle().is_zero() {
            out.emit(&format!("listeners.{name}.timeouts.idle"),
                format!("listener `{name}` keeps idle connections forever: abandoned keep-alive connections pile up until max_connections refuses new clients"),
                "set timeouts.idle (the default is 60s)");
        }
    }
}

pub fn request_disabled(ctx: &Context, out: &mut Sink) {
    for (name, l) in ctx.listeners() {
        if l.timeouts.request().is_zero() {
            out.emit(&format!("listeners.{name}.timeouts.request"),
                format!("listener `{name}` has no request timeout: a hung backend holds client connections until they fill max_connections"),
                "set timeouts.request to the longest a request may reasonably take");
        }
    }
}

pub fn response_beyond_request(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let Some((lname, l)) = ctx
            .listeners_of(name)
            .min_by_key(|(_, l)| l.timeouts.request())
        else {
            continue;
        };
        let request = l.timeouts.request();
        if !request.is_zero() && pool.response_timeout() > request {
            out.emit(&format!("pools.{name}.response_timeout"),
                format!("pool `{name}` waits {} for a response, but listener `{lname}` gives up after {}: the client is gone while the server still works, and a slow server is never detected as timing out",
                    human(pool.response_timeout()), human(request)),
                "keep response_timeout below the listener's request timeout");
        }
    }
}

pub fn retry_budget_large(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.retries.attempts > 0 && pool.retries.budget_percent >= 50 {
            out.emit(&format!("pools.{name}.retries.budget_percent"),
                format!("pool `{name}` may retry up to {}% of its requests: during a brownout retries add that much load to servers already failing",
                    pool.retries.budget_percent),
                "keep the retry budget small (10–20%) so retries help with isolated failures without amplifying an outage");
        }
    }
}

pub fn connect_timeout_long(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let t = pool.connect_timeout();
        if t > std::time::Duration::from_secs(5) {
            out.emit(&format!("pools.{name}.connect_timeout"),
                format!("pool `{name}` waits {} to connect: a dead server holds each request that long before the retry", human(t)),
                "a connect on a healthy network takes milliseconds; 1–3s is plenty");
        }
    }
}

pub fn upstream_idle_long(ctx: &Context, out: &mut Sink) {
    // Node.js closes idle keep-alive connections after 5s; many frameworks after 5-15s.
    const COMMON_SERVER_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(5);
    for (name, pool) in ctx.pools() {
        let idle = pool.idle_timeout();
        if idle >= COMMON_SERVER_KEEPALIVE {
            out.emit(&format!("pools.{name}.idle_timeout"),
                format!("pool `{name}` reuses idle server connections for up to {}: a server that closes idle connections sooner (Node.js: 5s) can close one just as ballast sends on it, and that request fails with 502",
                    human(idle)),
                "keep idle_timeout below the servers' own keep-alive timeout (the default, 4s, is below Node's 5s)");
        }
    }
}
