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

/// The descriptor limit a check judges the caps against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DescriptorLimit {
    /// The checking machine's own ([`descriptor_limit`]): the same file can then give other
    /// findings on another machine, and the finding says whose limit it is.
    #[default]
    ThisMachine,
    /// The limit of the machine the file is for (`ballast check --descriptor-limit N`).
    Given(u64),
}

impl DescriptorLimit {
    /// The limit and the words naming it in a finding; None where this machine's cannot be
    /// read (or it has none).
    pub fn resolve(self) -> Option<(u64, &'static str)> {
        match self {
            DescriptorLimit::ThisMachine => descriptor_limit().map(|l| {
                (
                    l,
                    "this machine's limit; `--descriptor-limit N` judges for another",
                )
            }),
            DescriptorLimit::Given(l) => Some((l, "as given by --descriptor-limit")),
        }
    }
}

/// What is wrong when the caps of `config` exceed `limit` descriptors, with the fix.
pub fn shortfall(config: &Config, limit: u64) -> Option<(String, String)> {
    shortfall_of(config, limit, "this process's limit")
}

/// [`shortfall`], the message saying whose limit `limit` is (`whose`, in parentheses after
/// the number).
pub fn shortfall_of(config: &Config, limit: u64, whose: &str) -> Option<(String, String)> {
    let needed = descriptors_needed(config);
    (needed > limit).then(|| {
        (
            format!(
                "the connection caps need {} descriptors (the client connections the \
                 listeners and the admin API admit, plus {BASE_DESCRIPTORS} for the process \
                 itself) but the descriptor limit \
                 (RLIMIT_NOFILE) is {} ({whose}): the process runs out first, and clients \
                 beyond it get 503 from a small reserve or wait instead of the caps' 503",
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
    let Some((limit, whose)) = ctx.descriptor_limit.resolve() else {
        return;
    };
    if let Some((message, fix)) = shortfall_of(ctx.config, limit, whose) {
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

    fn lim_110(text: &str, limit: DescriptorLimit) -> Vec<String> {
        let loaded =
            ballast_core::load_source(ballast_core::SourceFile::new("t.toml", text)).unwrap();
        let options = crate::CheckOptions {
            descriptor_limit: limit,
        };
        crate::check_with(&loaded, &options)
            .into_iter()
            .filter(|f| f.rule == "LIM-110")
            .map(|f| f.message)
            .collect()
    }

    #[test]
    fn a_given_limit_decides_whatever_the_checking_machine_allows() {
        // 574 descriptors needed: below a given 256 it is a finding, above 10,000 it is not,
        // on any machine.
        let low = lim_110(TWO, DescriptorLimit::Given(256));
        assert_eq!(low.len(), 1, "{low:?}");
        assert!(
            low[0].contains("is 256 (as given by --descriptor-limit)"),
            "{}",
            low[0]
        );
        assert!(lim_110(TWO, DescriptorLimit::Given(10_000)).is_empty());
    }

    #[test]
    fn by_default_the_finding_names_this_machines_limit() {
        let Some(limit) = descriptor_limit() else {
            return; // No limit here: nothing to judge against, so no finding (checked below).
        };
        // Caps far beyond any limit this machine has.
        let huge = TWO
            .replace(
                "max_connections = 5000",
                &format!(
                    "max_connections = {}",
                    limit.saturating_add(1).min(u32::MAX as u64)
                ),
            )
            .replace(
                "max_connections = 300",
                &format!("max_connections = {}", u32::MAX),
            );
        let found = lim_110(&huge, DescriptorLimit::ThisMachine);
        if descriptors_needed(&config(&huge)) > limit {
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains("this machine's limit"), "{}", found[0]);
            assert!(found[0].contains(&thousands(limit)), "{}", found[0]);
        }
    }
}
