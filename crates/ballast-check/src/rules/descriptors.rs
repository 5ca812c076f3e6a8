//! The connection caps against the process's file-descriptor limit (`RLIMIT_NOFILE`). Every
//! client connection is a descriptor, and so is every connection to a server; a cap the limit
//! cannot hold is not a cap: the process runs out first and new clients wait unanswered in the
//! backlog instead of hearing 503.

use crate::Sink;
use crate::context::{Context, thousands};
use ballast_core::config::Config;

/// Descriptors the process needs besides client connections: listeners, logs, health checks,
/// the runtime, the spare descriptors kept for 503s.
pub const BASE_DESCRIPTORS: u64 = 64;

/// Descriptors the configured caps can take at once: the client connections the listeners
/// admit (capped by the global limit), the admin API's, and [`BASE_DESCRIPTORS`].
pub fn descriptors_needed(config: &Config) -> u64 {
    let listeners: u64 = config
        .listeners
        .values()
        .map(|l| u64::from(l.effective_max_connections()))
        .sum();
    let clients = listeners.min(u64::from(config.global.effective_max_connections()));
    let admin = config
        .admin
        .as_ref()
        .map_or(0, |a| u64::from(a.effective_max_connections()));
    clients + admin + BASE_DESCRIPTORS
}

/// The most descriptors this process may open: the hard `RLIMIT_NOFILE`, which `serve` raises
/// its soft limit to. None where the limit cannot be read (or there is none).
pub fn descriptor_limit() -> Option<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (hard != rlimit::INFINITY).then_some(hard)
}

/// What is wrong when the caps of `config` exceed `limit` descriptors, with the fix.
pub fn shortfall(config: &Config, limit: u64) -> Option<(String, String)> {
    let needed = descriptors_needed(config);
    (needed > limit).then(|| {
        (
            format!(
                "the connection caps need {} descriptors (the client connections the \
                 listeners and the admin API admit, plus {BASE_DESCRIPTORS} for the process \
                 itself) but the descriptor limit \
                 (RLIMIT_NOFILE) is {}: the process runs out first, and clients beyond it \
                 get 503 from a small reserve or wait instead of the caps' 503",
                thousands(needed),
                thousands(limit)
            ),
            format!(
                "raise the limit (`ulimit -n`, systemd `LimitNOFILE=`) to at least twice {} \
                 (each proxied request also holds a server connection), or lower \
                 max_connections",
                thousands(needed)
            ),
        )
    })
}

pub fn caps_beyond_descriptor_limit(ctx: &Context, out: &mut Sink) {
    let Some(limit) = descriptor_limit() else {
        return;
    };
    if let Some((message, fix)) = shortfall(ctx.config, limit) {
        let path = if ctx.config.global.max_connections.is_some() {
            "global.max_connections"
        } else {
            "listeners"
        };
        out.emit(path, message, fix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        ballast_core::load_source(ballast_core::SourceFile::new("t.toml", text))
            .unwrap()
            .config
    }

    const TWO: &str = "[global]\nmax_connections = 5000\n\
        [admin]\nmax_connections = 10\n\
        [listeners.a]\naddress = \"127.0.0.1:1\"\npool = \"p\"\nmax_connections = 300\n\
        [listeners.b]\naddress = \"127.0.0.1:2\"\npool = \"p\"\nmax_connections = 200\n\
        [pools.p]\n[[pools.p.servers]]\nname = \"s\"\naddress = \"127.0.0.1:3\"\n";

    #[test]
    fn the_need_is_the_admitted_clients_admin_and_base() {
        assert_eq!(
            descriptors_needed(&config(TWO)),
            300 + 200 + 10 + BASE_DESCRIPTORS
        );
        let capped = TWO.replace("max_connections = 5000", "max_connections = 400");
        assert_eq!(
            descriptors_needed(&config(&capped)),
            400 + 10 + BASE_DESCRIPTORS
        );
    }

    #[test]
    fn a_limit_below_the_need_is_reported_and_one_above_is_not() {
        let c = config(TWO);
        let (message, fix) = shortfall(&c, 256).expect("574 > 256");
        assert!(
            message.contains("574") && message.contains("256"),
            "{message}"
        );
        assert!(fix.contains("ulimit -n"), "{fix}");
        assert!(shortfall(&c, 574).is_none());
    }
}
