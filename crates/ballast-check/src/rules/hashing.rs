//! Hashing and stickiness: bounded-load factor, keys a client controls, keys that may be
//! missing.

use crate::Sink;
use crate::context::Context;
use ballast_core::config::{Algorithm, HashKey};

pub fn balance_factor_range(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.algorithm != Algorithm::ConsistentHash {
            continue;
        }
        let Some(f) = pool.balance_factor else {
            continue;
        };
        if f < 1.25 {
            out.emit(&format!("pools.{name}.balance_factor"),
                format!("balance_factor {f} is below 1.25: servers fill up almost at the average, so most keys are pushed off their server and affinity (cache hits) is mostly lost"),
                "use a factor between 1.25 and 2.0");
        } else if f > 2.0 {
            out.emit(&format!("pools.{name}.balance_factor"),
                format!("balance_factor {f} is above 2.0: a hot key may load its server to {f}× the average before anything moves"),
                "use a factor between 1.25 and 2.0");
        }
    }
}

pub fn client_controlled_key(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.algorithm != Algorithm::ConsistentHash {
            continue;
        }
        let Some(HashKey::Header { name: header }) = &pool.hash_key else {
            continue;
        };
        let untrusted: Vec<_> = ctx
            .listeners_of(name)
            .filter(|(_, l)| l.trusted_proxies.is_empty())
            .map(|(n, _)| n)
            .collect();
        if let Some(listener) = untrusted.first() {
            out.emit(&format!("pools.{name}.hash_key"),
                format!("pool `{name}` hashes on header `{header}`, which any client can set (listener `{listener}` trusts no proxy): one client can pick its server and steer load onto it"),
                format!("set listeners.{listener}.trusted_proxies to the proxies that set `{header}`, or hash on a value the client cannot forge"));
        }
    }
}

pub fn optional_key(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.algorithm != Algorithm::ConsistentHash {
            continue;
        }
        if let Some(key) = &pool.hash_key
            && key.is_optional()
        {
            out.emit(&format!("pools.{name}.hash_key"),
                format!("requests without {} are balanced by round-robin in pool `{name}`: they keep no affinity", key.describe()),
                "make sure every client sends the key, or accept that those requests are not sticky");
        }
    }
}

pub fn implicit_key(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.algorithm == Algorithm::ConsistentHash && pool.hash_key.is_none() {
            out.emit(&format!("pools.{name}.algorithm"),
                format!("pool `{name}` hashes without a hash_key, so it hashes the client IP: clients behind one NAT or proxy all land on one server"),
                "set hash_key explicitly, e.g. { source = \"cookie\", name = \"session\" }");
        }
    }
}

pub fn backup_in_hash_pool(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.algorithm != Algorithm::ConsistentHash {
            continue;
        }
        if let Some(i) = pool.servers.iter().position(|s| s.backup) {
            out.emit(&format!("pools.{name}.servers[{i}].backup"),
                format!("pool `{name}` hashes, but its backups take over only when every primary is down, and then every key moves at once"),
                "prefer more primaries to backups in a hashing pool: a failed primary then moves only its own keys");
        }
    }
}
