//! The outages `ballast demo --scenario` can tell: for each, the servers' service times, the
//! healthy configuration it starts from (the embedded default, adjusted), the change that goes
//! live and the words the story uses for them. The story itself is in `demo_cmd.rs`; this
//! module only says what differs between the classes of outage.

/// One outage the demo can stage.
pub struct Scenario {
    /// What `--scenario` takes.
    pub name: &'static str,
    /// One line for `--scenario list` and the help.
    pub line: &'static str,
    /// Each server's name and service time in ms (the demo's servers answer after it).
    pub servers: [(&'static str, u64); 4],
    /// The healthy configuration from the embedded default.
    pub healthy: fn(&str) -> String,
    /// The change that goes live, from the healthy configuration.
    pub change: fn(&str) -> String,
    /// Step 2: what the change is, as the person who made it would say.
    pub announce: &'static str,
    /// Step 3: what the change does to the traffic.
    pub consequence: &'static str,
}

/// The story's default, then the others, as `--scenario list` prints them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "hash",
        line: "pool `app` starts hashing on X-Tenant; every client sends the same tenant, so one \
               server takes all traffic (PoolSkewed)",
        servers: FAST,
        healthy: as_is,
        change: hash_on_tenant,
        announce: "pool `app` hashes on header X-Tenant (for cache affinity)",
        consequence: "every request of tenant acme now goes to one server",
    },
    Scenario {
        name: "limit",
        line: "every server's max_connections drops from 300 to 1, far below what the traffic \
               holds in flight: requests queue, then get 503 (PoolSaturated)",
        servers: SLOW,
        healthy: as_is,
        change: limit_to_one,
        announce: "every server of pool `app` is capped at 1 connection (copied from a staging \
                   file)",
        consequence: "the pool can hold 4 requests at once where the traffic keeps about 12 in \
                      flight: requests queue, then get 503",
    },
    Scenario {
        name: "drain",
        line: "two of the four servers are drained (weight 0) for maintenance; the other two \
               cannot hold the load and hit their limit (PoolSaturated)",
        servers: SLOW,
        healthy: limits_of_six,
        change: drain_the_fast_ones,
        announce: "servers fast-1 and fast-2 are drained (weight 0) for a kernel upgrade",
        consequence: "medium and slow take all the traffic: beyond their 6 connections each, \
                      requests queue, then get 503",
    },
];

/// The scenario of this name, or the list of names in words.
pub fn find(name: &str) -> Result<&'static Scenario, String> {
    SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        format!(
            "no scenario `{name}`: choose one of {} (or `list`)",
            names.join(", ")
        )
    })
}

/// `--scenario list`: one line each.
pub fn list() -> String {
    SCENARIOS
        .iter()
        .map(|s| format!("{:<6} {}\n", s.name, s.line))
        .collect()
}

/// The default story's servers: fast enough that no limit bites at 200 req/s.
const FAST: [(&str, u64); 4] = [("fast-1", 2), ("fast-2", 2), ("medium", 10), ("slow", 40)];

/// Service times like an application's, so that at 200 req/s the pool keeps about 12 requests
/// in flight and a connection limit can bite (with 2 ms answers it never does).
const SLOW: [(&str, u64); 4] = [
    ("fast-1", 40),
    ("fast-2", 40),
    ("medium", 80),
    ("slow", 160),
];

fn as_is(config: &str) -> String {
    config.to_string()
}

/// The default story's change: pool `app` hashes on the tenant header, with a bounded-load
/// factor so high that nothing spills over (HAProxy's `hash-balance-factor` is off by default).
fn hash_on_tenant(config: &str) -> String {
    config.replacen(
        "algorithm = \"least-connections\"",
        "algorithm = \"consistent-hash\"\nhash_key = { source = \"header\", name = \"X-Tenant\" }\nbalance_factor = 10.0",
        1,
    )
}

/// Four slots at 40-160 ms answer about 70 req/s: far below the 200 sent, and below what the
/// traffic reaches even on a machine too busy to send all of it.
fn limit_to_one(config: &str) -> String {
    config.replace("max_connections = 300", "max_connections = 1")
}

/// Room for the traffic on four servers (about 3 in flight each against 6, some 400 req/s)
/// but not on the two slow ones (6 at 80 ms and 6 at 160 ms answer about 110 req/s); the
/// listener admits what the four can hold, so `check` finds nothing before the drain.
fn limits_of_six(config: &str) -> String {
    config
        .replace("max_connections = 300", "max_connections = 6")
        .replacen(
            "[listeners.web]\naddress = \"127.0.0.1:8080\"\nmax_connections = 1000",
            "[listeners.web]\naddress = \"127.0.0.1:8080\"\nmax_connections = 200",
            1,
        )
}

fn drain_the_fast_ones(config: &str) -> String {
    ["fast-1", "fast-2"]
        .iter()
        .fold(config.to_string(), |c, name| {
            c.replacen(
                &format!("name = \"{name}\"\n"),
                &format!("name = \"{name}\"\nweight = 0\n"),
                1,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../../../../examples/demo.toml");

    #[test]
    fn every_change_changes_the_healthy_configuration() {
        for s in SCENARIOS {
            let healthy = (s.healthy)(DEFAULT);
            let changed = (s.change)(&healthy);
            assert_ne!(healthy, changed, "{}", s.name);
        }
        // The drain scenario's healthy version has the lower limits and listener cap.
        let drain = find("drain").unwrap();
        let healthy = (drain.healthy)(DEFAULT);
        assert!(healthy.contains("max_connections = 200"));
        assert_eq!(healthy.matches("max_connections = 6\n").count(), 4);
        assert_eq!((drain.change)(&healthy).matches("weight = 0").count(), 2);
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = find("nope").err().unwrap();
        assert!(e.contains("hash, limit, drain"), "{e}");
        assert_eq!(list().lines().count(), SCENARIOS.len());
    }
}
