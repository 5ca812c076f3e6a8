//! Which foreign load balancer's algorithm a pool reproduces, with the parameters that change
//! its decisions.
//!
//! The HAProxy and nginx importers set [`Emulation`] on every pool they build, so `simulate`
//! (and anything else that balances) makes exactly the choices the real load balancer makes.
//! The algorithms themselves live in `balance::haproxy` and `balance::nginx`; this module is
//! only the model, so it can also be written in a native file:
//! `emulate = { lb = "nginx-hash", key = "$request_uri", consistent = true }`.

use serde::{Deserialize, Serialize};

/// A foreign algorithm, exactly as the named load balancer runs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "lb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Emulation {
    /// HAProxy `balance roundrobin`: the FWRR trees of `lb_fwrr.c`.
    HaproxyRoundrobin,
    /// HAProxy `balance static-rr`: the weight map of `lb_map.c`, walked in turn.
    HaproxyStaticRr,
    /// HAProxy `balance leastconn`: `lb_fwlc.c`.
    HaproxyLeastconn,
    /// HAProxy `balance first`: the first server (by id) with a free connection slot.
    HaproxyFirst,
    /// HAProxy `balance random(<draws>)`: draws on the consistent-hash ring, least loaded wins.
    HaproxyRandom {
        #[serde(default = "default_draws")]
        draws: u32,
    },
    /// HAProxy `balance source|uri|url_param|hdr` with its `hash-type`.
    HaproxyHash(HaproxyHash),
    /// nginx's default smooth weighted round-robin (`ngx_http_upstream_round_robin.c`).
    NginxRoundRobin,
    /// nginx `ip_hash`: the first three octets of an IPv4 address (all 16 of IPv6).
    NginxIpHash,
    /// nginx `hash <key> [consistent]`.
    NginxHash {
        /// The key as written: text with variables (`$request_uri`, `$http_x_user`, ...).
        key: String,
        /// Ketama (160 points per unit of weight) instead of the 15-bit CRC32 modulo.
        #[serde(default)]
        consistent: bool,
    },
    /// nginx `least_conn`.
    NginxLeastConn,
    /// nginx `random [two]`.
    NginxRandom {
        #[serde(default)]
        two: bool,
    },
}

fn default_draws() -> u32 {
    2
}

/// HAProxy's hash-based balancing: where the key comes from and how it is hashed and looked up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyHash {
    pub key: HaproxyKey,
    /// `hash-type map-based` (modulo over the weight map) or `consistent` (the ring).
    #[serde(default)]
    pub lookup: HashLookup,
    /// The hash function of `hash-type`; `balance source` ignores it (HAProxy does too).
    #[serde(default)]
    pub function: HashFunction,
    /// The `avalanche` modifier (implied by a bare `hash-type consistent`).
    #[serde(default)]
    pub avalanche: bool,
    /// `hash-balance-factor` in percent; 0 is off. Read only by consistent lookups, as in HAProxy.
    #[serde(default)]
    pub balance_factor: u32,
}

/// Where HAProxy's hash key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "from", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HaproxyKey {
    /// `balance source`: the words of the client address XORed together.
    Source,
    /// `balance uri [whole] [len N] [depth N] [path-only]`.
    Uri {
        #[serde(default)]
        whole: bool,
        /// Hash at most this many characters (0: all).
        #[serde(default)]
        len: u32,
        /// Hash at most this many directories (0: all).
        #[serde(default)]
        depth: u32,
        #[serde(default)]
        path_only: bool,
    },
    /// `balance url_param <name>`.
    UrlParam { name: String },
    /// `balance hdr(<name>) [use_domain_only]`.
    Hdr {
        name: String,
        #[serde(default)]
        use_domain_only: bool,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashLookup {
    #[default]
    MapBased,
    Consistent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashFunction {
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
}

impl Emulation {
    /// How the emulated load balancer names this algorithm in its own configuration.
    pub fn describe(&self) -> String {
        match self {
            Emulation::HaproxyRoundrobin => "HAProxy balance roundrobin".into(),
            Emulation::HaproxyStaticRr => "HAProxy balance static-rr".into(),
            Emulation::HaproxyLeastconn => "HAProxy balance leastconn".into(),
            Emulation::HaproxyFirst => "HAProxy balance first".into(),
            Emulation::HaproxyRandom { draws } => format!("HAProxy balance random({draws})"),
            Emulation::HaproxyHash(h) => {
                let key = match &h.key {
                    HaproxyKey::Source => "source".to_string(),
                    HaproxyKey::Uri { .. } => "uri".to_string(),
                    HaproxyKey::UrlParam { name } => format!("url_param {name}"),
                    HaproxyKey::Hdr { name, .. } => format!("hdr({name})"),
                };
                let lookup = match h.lookup {
                    HashLookup::MapBased => "map-based",
                    HashLookup::Consistent => "consistent",
                };
                format!("HAProxy balance {key}, hash-type {lookup}")
            }
            Emulation::NginxRoundRobin => "nginx round-robin".into(),
            Emulation::NginxIpHash => "nginx ip_hash".into(),
            Emulation::NginxHash { key, consistent } => {
                format!(
                    "nginx hash {key}{}",
                    if *consistent { " consistent" } else { "" }
                )
            }
            Emulation::NginxLeastConn => "nginx least_conn".into(),
            Emulation::NginxRandom { two } => {
                format!("nginx random{}", if *two { " two" } else { "" })
            }
        }
    }

    /// Whether the same request sequence always gets the same choices (no random draws).
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            Emulation::HaproxyRandom { .. } | Emulation::NginxRandom { .. }
        )
    }
}
