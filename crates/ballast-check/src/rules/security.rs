//! Operations and security: the admin API, trusted proxies, listeners that cannot bind,
//! pools nobody uses.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::Sink;
use crate::context::Context;
use ballast_core::config::DEFAULT_ADMIN_ADDRESS;

fn admin_address(ctx: &Context) -> Option<SocketAddr> {
    ctx.config
        .admin
        .as_ref()
        .map_or(DEFAULT_ADMIN_ADDRESS, |a| a.address.as_str())
        .parse()
        .ok()
}

pub fn admin_exposed(ctx: &Context, out: &mut Sink) {
    let Some(admin) = &ctx.config.admin else {
        return;
    };
    let Some(addr) = admin_address(ctx) else {
        return;
    };
    if !addr.ip().is_loopback() && admin.token.as_deref().unwrap_or("").is_empty() {
        out.emit("admin.address",
            format!("the admin API listens on {addr}, beyond loopback, without a token: anyone who reaches it can reload the configuration or drain servers"),
            "set admin.token, or bind the admin API to 127.0.0.1");
    }
}

pub fn admin_token_short(ctx: &Context, out: &mut Sink) {
    let Some(token) = ctx.config.admin.as_ref().and_then(|a| a.token.as_deref()) else {
        return;
    };
    if !token.is_empty() && token.chars().count() < 16 {
        out.emit(
            "admin.token",
            format!(
                "the admin token is {} characters long: short enough to guess",
                token.chars().count()
            ),
            "use at least 16 random characters (e.g. `openssl rand -hex 16`)",
        );
    }
}

pub fn trust_all_proxies(ctx: &Context, out: &mut Sink) {
    for (name, l) in ctx.listeners() {
        for (i, cidr) in l.trusted_proxies.iter().enumerate() {
            if ballast_core::load::parse_cidr(cidr).is_some_and(|(_, prefix)| prefix == 0) {
                out.emit(&format!("listeners.{name}.trusted_proxies[{i}]"),
                    format!("listener `{name}` trusts X-Forwarded-For from any address ({cidr}): any client can claim any IP, which defeats per-IP limits and client-IP hashing"),
                    "list only the addresses of your own proxies");
            }
        }
    }
}

pub fn duplicate_listener_address(ctx: &Context, out: &mut Sink) {
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (name, l) in ctx.listeners() {
        let Ok(addr) = l.address.parse::<SocketAddr>() else {
            continue;
        };
        if let Some(first) = seen.insert(addr, name) {
            out.emit(
                &format!("listeners.{name}.address"),
                format!(
                    "listeners `{first}` and `{name}` both bind {addr}: the second cannot start"
                ),
                "give each listener its own address or port",
            );
        }
    }
    if ctx.config.admin.is_some()
        && let Some(admin) = admin_address(ctx)
        && admin.port() != 0
        && let Some(name) = seen.get(&admin)
    {
        out.emit(
            "admin.address",
            format!(
                "the admin API and listener `{name}` both bind {admin}: one of them cannot start"
            ),
            "give the admin API its own port",
        );
    }
}

pub fn unused_pool(ctx: &Context, out: &mut Sink) {
    for (name, _) in ctx.pools() {
        if ctx.listeners_of(name).next().is_none() {
            out.emit(
                &format!("pools.{name}"),
                format!("pool `{name}` is not used by any listener"),
                "route a listener to it, or remove it",
            );
        }
    }
}
