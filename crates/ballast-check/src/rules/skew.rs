//! Distribution skew: weights and keys that send traffic unevenly, or nowhere.

use crate::Sink;
use crate::context::Context;
use ballast_core::config::{Algorithm, HashKey, Protocol};

pub fn all_weights_zero(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if !pool.servers.is_empty() && pool.servers.iter().all(|s| s.weight == 0) {
            out.emit(&format!("pools.{name}"),
                format!("every server of pool `{name}` has weight 0: the pool drains everything and every request gets 503"),
                "give at least one server a weight above 0 (weight 0 means drain)");
        }
    }
}

pub fn primaries_drained(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        let primaries: Vec<_> = pool.primaries().collect();
        let backups_weighted = pool.servers.iter().any(|s| s.backup && s.weight > 0);
        if !primaries.is_empty() && primaries.iter().all(|s| s.weight == 0) && backups_weighted {
            out.emit(&format!("pools.{name}"),
                format!("every primary server of pool `{name}` has weight 0, so the backups take all traffic all the time"),
                "give the primaries weight, or make the backups primaries if that is the intent");
        }
    }
}

pub fn extreme_weight_ratio(ctx: &Context, out: &mut Sink) {
    const LIMIT: u32 = 50;
    for (name, pool) in ctx.pools() {
        let weighted: Vec<(usize, &ballast_core::config::Server)> = pool
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.backup && s.weight > 0)
            .collect();
        let (Some(&(index, min)), Some(&(_, max))) = (
            weighted.iter().min_by_key(|(_, s)| s.weight),
            weighted.iter().max_by_key(|(_, s)| s.weight),
        ) else {
            continue;
        };
        if max.weight > LIMIT * min.weight {
            out.emit(&format!("pools.{name}.servers[{index}].weight"),
                format!("server `{}` (weight {}) gets 1/{} of the traffic of `{}` (weight {}): it is effectively idle, and if `{}` fails `{}` cannot take its load",
                    min.name, min.weight, max.weight / min.weight, max.name, max.weight, max.name, min.name),
                format!("keep weight ratios within 1:{LIMIT}; to drain a server use weight = 0, for a canary use a short-lived pool"));
        }
    }
}

pub fn hash_key_unreadable(ctx: &Context, out: &mut Sink) {
    for (lname, l) in ctx.listeners() {
        let Some(pool) = ctx.config.pools.get(&l.pool) else {
            continue;
        };
        if l.protocol != Protocol::Tcp || pool.algorithm != Algorithm::ConsistentHash {
            continue;
        }
        if let Some(key) = &pool.hash_key
            && !key.readable_in_tcp()
        {
            out.emit(&format!("pools.{}.hash_key", l.pool),
                format!("pool `{}` hashes on {}, but listener `{lname}` is TCP and cannot read it: every connection falls back to round-robin and affinity is lost",
                    l.pool, key.describe()),
                "hash on { source = \"client-ip\" } for TCP listeners, or make the listener protocol = \"http\"");
        }
    }
}

pub fn hash_key_low_cardinality(ctx: &Context, out: &mut Sink) {
    let Some(traffic) = &ctx.config.simulate else {
        return;
    };
    for (name, pool) in ctx.pools() {
        if pool.algorithm != Algorithm::ConsistentHash {
            continue;
        }
        let servers = pool.primaries().filter(|s| s.weight > 0).count() as u64;
        let (values, what, path) = match pool.effective_hash_key() {
            HashKey::ClientIp => (
                u64::from(traffic.clients.count),
                "client addresses",
                "simulate.clients.count",
            ),
            _ => (
                u64::from(traffic.key.cardinality),
                "key values",
                "simulate.key.cardinality",
            ),
        };
        if values < servers {
            out.emit(path,
                format!("pool `{name}` hashes on {}, which takes only {values} distinct {what} in this traffic model, fewer than its {servers} servers: at least {} servers get nothing while the others carry everything",
                    pool.effective_hash_key().describe(), servers - values),
                "hash on a key with many values (a user or session id), or use least-connections or power-of-two");
        }
    }
}

pub fn hash_key_ignored(ctx: &Context, out: &mut Sink) {
    for (name, pool) in ctx.pools() {
        if pool.algorithm == Algorithm::ConsistentHash {
            continue;
        }
        if pool.hash_key.is_some() {
            out.emit(&format!("pools.{name}.hash_key"),
                format!("pool `{name}` sets hash_key but balances by {}, which ignores it: there is no affinity", pool.algorithm.as_str()),
                "set algorithm = \"consistent-hash\", or remove hash_key");
        }
        if pool.balance_factor.is_some() {
            out.emit(&format!("pools.{name}.balance_factor"),
                format!("pool `{name}` sets balance_factor but balances by {}, which ignores it", pool.algorithm.as_str()),
                "balance_factor only bounds consistent hashing; remove it or set algorithm = \"consistent-hash\"");
        }
    }
}
