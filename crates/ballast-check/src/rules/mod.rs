//! The catalogue: every rule with its id, severity and explanation, and the function that
//! checks it. Ids are stable: never renumber, only add. The catalogue entries cited in the
//! explanations are in `shared/research/misconfig-catalog.md`.

pub mod descriptors;
mod hashing;
mod health;
mod limits;
mod security;
mod skew;
mod timeouts;

use crate::{Check, Rule};
use ballast_core::Severity::{Error, Info, Warning};

pub static RULES: &[Rule] = &[
    Rule {
        id: "SKEW-101",
        name: "all-weights-zero",
        severity: Error,
        category: "skew",
        summary: "every server of a pool has weight 0",
        explain: "Weight 0 means drain: the server takes no new requests. When every server of a pool \
            has weight 0 the pool cannot serve at all and every request routed to it gets 503. \
            HAProxy has the same trap (a backend whose active servers all have weight 0 serves only \
            persistent traffic). Give at least one server a positive weight.\n\
            Source: catalogue SKEW-012; HAProxy configuration manual §5.2 `weight`.",
        check: Check::Model(skew::all_weights_zero),
    },
    Rule {
        id: "SKEW-102",
        name: "extreme-weight-ratio",
        severity: Warning,
        category: "skew",
        summary: "weights differ by more than 50×",
        explain: "With weights 1 and 256 the small server is effectively idle and the large one carries \
            the pool; when the large one fails the small one suddenly receives 256× its usual load. \
            Keep ratios within 1:50; drain with weight 0 rather than weight 1.\n\
            Source: catalogue SKEW-012.",
        check: Check::Model(skew::extreme_weight_ratio),
    },
    Rule {
        id: "SKEW-103",
        name: "hash-key-unreadable-in-tcp",
        severity: Error,
        category: "skew",
        summary: "a TCP listener feeds a pool that hashes on an HTTP field",
        explain: "A TCP (layer 4) listener sees bytes, not headers, cookies, paths or query strings. A pool \
            that hashes on one of those finds no key on any connection and falls back to round-robin \
            for all of them: the affinity the configuration promises never happens. Hash on the \
            client IP for TCP listeners, or make the listener HTTP.\n\
            Source: catalogue SKEW-005 (a missing key falls back to round-robin) and HAProxy's \
            \"Layer 7 hash not possible … (needs 'mode http')\" warning.",
        check: Check::Model(skew::hash_key_unreadable),
    },
    Rule {
        id: "SKEW-104",
        name: "hash-key-low-cardinality",
        severity: Warning,
        category: "skew",
        summary: "the traffic model gives the hash key fewer values than there are servers",
        explain: "Hashing spreads load only as well as its key varies. If the key takes fewer distinct \
            values than there are servers (a handful of NAT addresses, a constant header, a \
            single-site Host), some servers receive nothing while others carry everything. The \
            check reads the [simulate] traffic model: clients.count for client-IP keys, \
            key.cardinality for others. Run `ballast simulate` to see the resulting shares.\n\
            Source: catalogue SKEW-001, SKEW-004; kubernetes/ingress-nginx#10595, #3722; \
            openshift/openshift-docs#1069.",
        check: Check::Model(skew::hash_key_low_cardinality),
    },
    Rule {
        id: "SKEW-105",
        name: "primaries-drained",
        severity: Warning,
        category: "skew",
        summary: "all primaries have weight 0 while backups have weight",
        explain: "Backups take traffic only when no primary can. When every primary is drained, the \
            backups carry the pool permanently, usually without the capacity or monitoring of \
            primaries. Undrain a primary, or make the backups primaries on purpose.\n\
            Source: catalogue SKEW-011, SKEW-012.",
        check: Check::Model(skew::primaries_drained),
    },
    Rule {
        id: "SKEW-106",
        name: "hash-settings-ignored",
        severity: Warning,
        category: "skew",
        summary: "hash_key or balance_factor on a pool that does not hash",
        explain: "hash_key and balance_factor mean something only to consistent-hash pools. On any \
            other algorithm they are silently without effect, so the affinity or the load bound the \
            author expected does not exist. HAProxy has the same trap: hash-balance-factor does \
            nothing with map-based hashing.\n\
            Source: catalogue SKEW-009.",
        check: Check::Model(skew::hash_key_ignored),
    },
    Rule {
        id: "LIM-101",
        name: "capacity-below-listener",
        severity: Warning,
        category: "limits",
        summary: "servers' connections plus queues hold less than the listener admits",
        explain: "The listener accepts up to max_connections clients (capped by the global limit), but \
            the pool can only hold the sum of its servers' max_connections plus max_queue. Beyond \
            that every request gets 503: the classic 'connection limit reached' outage. Size the \
            servers for what the listener admits, or admit only what the servers can hold.\n\
            Source: catalogue CONN-004; haproxy/haproxy#440.",
        check: Check::Model(limits::capacity_below_listener),
    },
    Rule {
        id: "LIM-102",
        name: "capacity-n-minus-one",
        severity: Warning,
        category: "limits",
        summary: "with the largest server down, the pool holds less than the listener admits",
        explain: "Capacity must survive the loss of one server: servers fail, and deploys take them out \
            one at a time. This rule repeats the capacity arithmetic with the largest server removed \
            (backups counted) and reports how many connections would have nowhere to go.\n\
            Source: catalogue CONN-004 (the N−1 case).",
        check: Check::Model(limits::capacity_n_minus_one),
    },
    Rule {
        id: "LIM-103",
        name: "per-ip-above-total",
        severity: Warning,
        category: "limits",
        summary: "the per-client-IP cap is not below the global cap",
        explain: "A per-IP cap exists so one client (or one NAT) cannot take every slot. A cap equal to \
            or above the global limit protects nothing.\n\
            Source: ballast design (limits that fail fast and say why).",
        check: Check::Model(limits::per_ip_above_total),
    },
    Rule {
        id: "LIM-104",
        name: "listener-above-global",
        severity: Warning,
        category: "limits",
        summary: "a listener admits more connections than the global limit",
        explain: "The global limit is reached first and then refuses clients of every listener, not just \
            the busy one. A listener's max_connections above the global value is meaningless and \
            hides where the real cap is.\n\
            Source: catalogue CONN-002; HAProxy manual §4.2 `maxconn`.",
        check: Check::Model(limits::listener_above_global),
    },
    Rule {
        id: "LIM-105",
        name: "queue-without-limit",
        severity: Warning,
        category: "limits",
        summary: "max_queue set on a server with no max_connections",
        explain: "Requests queue only when a server is at max_connections. Without a limit the queue is \
            never used and the server takes everything it is sent.\n\
            Source: catalogue CONN-004, CONN-005.",
        check: Check::Model(limits::queue_without_limit),
    },
    Rule {
        id: "LIM-106",
        name: "queue-timeout-beyond-request",
        severity: Warning,
        category: "limits",
        summary: "a server's queue timeout is not below the request timeout",
        explain: "A queued request that outlives the listener's request timeout is abandoned by the \
            client but still served when it reaches the server: wasted work at the worst moment. \
            Keep queue_timeout well below the request timeout.\n\
            Source: catalogue CONN-005 (`timeout queue` > `timeout client`).",
        check: Check::Model(limits::queue_timeout_beyond_request),
    },
    Rule {
        id: "LIM-107",
        name: "unlimited-servers",
        severity: Info,
        category: "limits",
        summary: "servers without max_connections",
        explain: "Without a per-server limit, overload is not refused here with a fast 503: it reaches \
            the server, which slows down for everyone. A limit and a small queue turn overload into \
            a visible, counted rejection.\n\
            Source: catalogue CONN-004, CONN-012.",
        check: Check::Model(limits::unlimited_servers),
    },
    Rule {
        id: "LIM-108",
        name: "single-server-pool",
        severity: Warning,
        category: "limits",
        summary: "a pool in use has one serving server and no backup",
        explain: "One server is one failure from an outage: nothing can take its traffic. Add a second \
            server or a backup.\n\
            Source: catalogue HC-006 (single-server upstreams and `no live upstreams`).",
        check: Check::Model(limits::single_server_pool),
    },
    Rule {
        id: "LIM-109",
        name: "duplicate-server-address",
        severity: Warning,
        category: "limits",
        summary: "two servers of a pool share an address",
        explain: "The same backend listed twice gets a double share, and its limits are counted twice, \
            so capacity arithmetic overstates the pool.\n\
            Source: ballast design.",
        check: Check::Model(limits::duplicate_server_address),
    },
    Rule {
        id: "LIM-110",
        name: "caps-beyond-descriptor-limit",
        severity: Warning,
        category: "limits",
        summary: "the connection caps admit more connections than the descriptor limit allows",
        explain: "Every client connection is a file descriptor, and so is every connection to a \
            server. When the caps (listeners' max_connections under the global one, plus the \
            admin API's) exceed the process's RLIMIT_NOFILE, the process runs out of descriptors \
            before it reaches its caps: new clients cannot be accepted and wait in the backlog, \
            a few get 503 from the spare descriptors `serve` keeps, and connections to servers \
            fail. The limit read is this machine's hard limit (`serve` raises its soft limit to \
            it), and the finding says so; a file checked on one machine for another is judged \
            against that one's with `ballast check --descriptor-limit N`, and a service manager \
            may set another (systemd `LimitNOFILE=`). `serve` warns at start and on every \
            reload. Raise the limit to about twice the caps, or lower the caps.\n\
            Source: issue #12 (300 idle connections under a 256-descriptor limit); nginx \
            `worker_rlimit_nofile`, HAProxy computes `ulimit-n` from `maxconn`.",
        check: Check::Model(descriptors::caps_beyond_descriptor_limit),
    },
    Rule {
        id: "TMO-101",
        name: "retries-exceed-request-timeout",
        severity: Warning,
        category: "timeouts",
        summary: "(retries + 1) × connect timeout exceeds the request timeout",
        explain: "In the worst case every attempt waits the full connect timeout. If the attempts add up \
            to more than the client waits, the client gives up before the retry that would have \
            succeeded.\n\
            Source: catalogue TMO-002; HAProxy manual §4.2 `retries`.",
        check: Check::Model(timeouts::retries_exceed_request_timeout),
    },
    Rule {
        id: "TMO-102",
        name: "header-read-timeout-disabled",
        severity: Error,
        category: "timeouts",
        summary: "an HTTP listener without a header-read timeout",
        explain: "Without a bound on receiving the request head, slowloris clients hold connection slots \
            indefinitely and a few hundred of them exhaust max_connections. ballast's default is 10s; \
            this fires when it is set to 0.\n\
            Source: catalogue TMO-006; hyper's header-read timeout is off unless a timer is set \
            (DESIGN.md, known traps).",
        check: Check::Model(timeouts::header_read_disabled),
    },
    Rule {
        id: "TMO-103",
        name: "idle-timeout-disabled",
        severity: Warning,
        category: "timeouts",
        summary: "idle keep-alive connections are kept forever",
        explain: "Abandoned keep-alive connections accumulate until max_connections refuses new clients.\n\
            Source: catalogue TMO-001.",
        check: Check::Model(timeouts::idle_disabled),
    },
    Rule {
        id: "TMO-104",
        name: "request-timeout-disabled",
        severity: Warning,
        category: "timeouts",
        summary: "no bound on a whole request",
        explain: "A hung backend then holds client connections until they fill max_connections.\n\
            Source: catalogue TMO-001 (`haproxy -c` warns about missing timeouts).",
        check: Check::Model(timeouts::request_disabled),
    },
    Rule {
        id: "TMO-105",
        name: "response-beyond-request",
        severity: Warning,
        category: "timeouts",
        summary: "the pool's response timeout exceeds the listener's request timeout",
        explain: "The client is gone before the backend timeout fires, so slow servers are never \
            recorded as timing out and passive ejection never sees them.\n\
            Source: catalogue TMO-002 (timeouts ordered across tiers).",
        check: Check::Model(timeouts::response_beyond_request),
    },
    Rule {
        id: "TMO-106",
        name: "retry-budget-large",
        severity: Warning,
        category: "timeouts",
        summary: "a retry budget of 50% or more",
        explain: "Retries help with isolated failures and hurt in a brownout: every failed request comes \
            back as more load on servers that are already failing. A budget of 10–20% keeps the \
            first benefit without the second.\n\
            Source: catalogue TMO-003 (retries multiply load during a brownout).",
        check: Check::Model(timeouts::retry_budget_large),
    },
    Rule {
        id: "TMO-107",
        name: "connect-timeout-long",
        severity: Info,
        category: "timeouts",
        summary: "a connect timeout above 5s",
        explain: "A connect on a healthy network takes milliseconds. A long connect timeout means each \
            request to a dead server waits that long before it is retried elsewhere.\n\
            Source: catalogue TMO-002.",
        check: Check::Model(timeouts::connect_timeout_long),
    },
    Rule {
        id: "TMO-108",
        name: "upstream-idle-timeout-long",
        severity: Info,
        category: "timeouts",
        summary: "idle server connections are reused for 5s or more",
        explain: "ballast keeps idle keep-alive connections to servers for `idle_timeout`. If a server \
            closes idle connections sooner (Node.js defaults to 5s), ballast can send a request on a \
            connection the server is closing at that moment, and the request fails with 502 while \
            the server is healthy. Keep idle_timeout below the servers' keep-alive timeout. \
            This is an inference from how keep-alive works, not a documented rule.\n\
            Source: catalogue TMO-007; hyper#3553 and #3077 (a reused idle connection reset by the \
            backend).",
        check: Check::Model(timeouts::upstream_idle_long),
    },
    Rule {
        id: "HC-101",
        name: "no-health-checks",
        severity: Warning,
        category: "health",
        summary: "a pool with neither active checks nor passive ejection",
        explain: "A server with no check is always considered available, so a dead server keeps its \
            share: 1/N of requests fail until a person notices.\n\
            Source: catalogue HC-001; HAProxy manual §5.2 `check`.",
        check: Check::Model(health::no_health_checks),
    },
    Rule {
        id: "HC-102",
        name: "slow-failure-detection",
        severity: Warning,
        category: "health",
        summary: "interval × fall + timeout exceeds 30s",
        explain: "Detection takes about interval × fall (plus the last check's timeout); all that time the \
            dead server gets its share of requests.\n\
            Source: catalogue HC-003; HAProxy manual §5.2 `inter`, `fall`.",
        check: Check::Model(health::slow_detection),
    },
    Rule {
        id: "HC-103",
        name: "flapping-thresholds",
        severity: Warning,
        category: "health",
        summary: "rise = 1 or fall = 1",
        explain: "A single check result flips the server's state, so a struggling server flaps in and out \
            of rotation and its clients see both.\n\
            Source: catalogue HC-003.",
        check: Check::Model(health::flapping_thresholds),
    },
    Rule {
        id: "HC-104",
        name: "slow-start-shorter-than-interval",
        severity: Warning,
        category: "health",
        summary: "slow_start not longer than the check interval",
        explain: "The ramp is over before the next check, so it has no steps: the recovering server gets \
            its full share at once, which is what slow start exists to prevent.\n\
            Source: catalogue HC-003 (`slowstart` must be > `inter`).",
        check: Check::Model(health::slow_start_shorter_than_interval),
    },
    Rule {
        id: "HC-105",
        name: "check-timeout-not-below-interval",
        severity: Warning,
        category: "health",
        summary: "a health-check timeout at or above its interval",
        explain: "Checks overlap, and a hung server is detected later than the interval suggests.\n\
            Source: catalogue HC-003 (`timeout check`).",
        check: Check::Model(health::timeout_not_below_interval),
    },
    Rule {
        id: "HC-106",
        name: "passive-can-eject-all",
        severity: Warning,
        category: "health",
        summary: "passive ejection may remove every server",
        explain: "A single 'query of death' retried on every server makes each one fail, and an \
            unbounded ejection then removes the whole pool. Cap the ejected share.\n\
            Source: catalogue HC-005.",
        check: Check::Model(health::passive_can_eject_all),
    },
    Rule {
        id: "HC-107",
        name: "fail-open",
        severity: Info,
        category: "health",
        summary: "the pool sends traffic to failing servers when all are down",
        explain: "Fail-open ignores health when no server is up. It can be right when checks are less \
            reliable than servers, and wrong when servers are really down: then every request goes \
            to a failing server instead of getting a fast 503. Envoy's panic threshold is the same \
            trade-off (projectcontour/contour#579).\n\
            Source: catalogue HC-010.",
        check: Check::Model(health::fail_open),
    },
    Rule {
        id: "HC-108",
        name: "slow-start-without-health",
        severity: Warning,
        category: "health",
        summary: "slow_start in a pool without health checking",
        explain: "Slow start ramps a server after it recovers; without active or passive health the \
            server is never marked down, so it never recovers and the ramp never runs.\n\
            Source: ballast design.",
        check: Check::Model(health::slow_start_without_health),
    },
    Rule {
        id: "HC-109",
        name: "initial-state-up",
        severity: Info,
        category: "health",
        summary: "servers start as up before any check passes",
        explain: "A new or restarted server receives traffic before it has proven healthy; if it is not \
            ready, its share fails until `fall` checks catch it.\n\
            Source: catalogue OPS-001 (`init-state`).",
        check: Check::Model(health::initial_up),
    },
    Rule {
        id: "HASH-101",
        name: "balance-factor-out-of-range",
        severity: Warning,
        category: "hashing",
        summary: "balance_factor outside 1.25–2.0",
        explain: "The bounded-load factor c caps any server at ⌈c × average⌉ in flight. Below 1.25 most \
            keys are pushed off their server and affinity is lost; above 2.0 a hot key can double \
            its server's load before anything moves. HAProxy documents 125–200 as reasonable.\n\
            Source: catalogue HASH-005; Mirrokni, Thorup, Zadimoghaddam, arXiv:1608.01350.",
        check: Check::Model(hashing::balance_factor_range),
    },
    Rule {
        id: "HASH-102",
        name: "client-controlled-hash-key",
        severity: Warning,
        category: "hashing",
        summary: "hashing on a header with no trusted proxy",
        explain: "A request header is whatever the client sends. Without a trusted proxy that sets it, a \
            client can choose its key and steer load onto one server.\n\
            Source: catalogue HASH-006.",
        check: Check::Model(hashing::client_controlled_key),
    },
    Rule {
        id: "HASH-103",
        name: "optional-hash-key",
        severity: Info,
        category: "hashing",
        summary: "the hash key may be missing from requests",
        explain: "ballast balances a request without the key by smooth weighted round-robin: it is \
            served, but without affinity. HAProxy and nginx fall back the same way.\n\
            Source: catalogue SKEW-005; haproxy/haproxy#3019.",
        check: Check::Model(hashing::optional_key),
    },
    Rule {
        id: "HASH-104",
        name: "implicit-hash-key",
        severity: Info,
        category: "hashing",
        summary: "a hashing pool without an explicit hash_key",
        explain: "The key defaults to the client IP, and clients behind one NAT, CDN or proxy all land on \
            one server.\n\
            Source: catalogue SKEW-001; F5 'Top 10 nginx mistakes' #9.",
        check: Check::Model(hashing::implicit_key),
    },
    Rule {
        id: "HASH-105",
        name: "backup-in-hash-pool",
        severity: Info,
        category: "hashing",
        summary: "backup servers in a hashing pool",
        explain: "Backups take over only when every primary is down, and then every key moves at once; \
            more primaries instead means a failure moves only the failed server's keys.\n\
            Source: catalogue HC-007.",
        check: Check::Model(hashing::backup_in_hash_pool),
    },
    Rule {
        id: "SEC-101",
        name: "admin-exposed-without-token",
        severity: Error,
        category: "security",
        summary: "the admin API binds beyond loopback without a token",
        explain: "The admin API reloads configuration and drains servers. Reachable from the network \
            without a token, it lets anyone take the service down.\n\
            Source: catalogue SEC-004.",
        check: Check::Model(security::admin_exposed),
    },
    Rule {
        id: "SEC-102",
        name: "admin-token-short",
        severity: Warning,
        category: "security",
        summary: "an admin token shorter than 16 characters",
        explain: "Short tokens can be guessed. Use at least 16 random characters.\n\
            Source: catalogue SEC-004.",
        check: Check::Model(security::admin_token_short),
    },
    Rule {
        id: "SEC-103",
        name: "trust-all-proxies",
        severity: Warning,
        category: "security",
        summary: "trusted_proxies includes every address",
        explain: "Trusting X-Forwarded-For from 0.0.0.0/0 lets any client claim any IP, which defeats \
            per-IP limits and skews client-IP hashing.\n\
            Source: catalogue SEC-005.",
        check: Check::Model(security::trust_all_proxies),
    },
    Rule {
        id: "OPS-101",
        name: "duplicate-listener-address",
        severity: Error,
        category: "operations",
        summary: "two listeners (or a listener and the admin API) bind the same address",
        explain: "Only one socket can bind an address; the other cannot start.\n\
            Source: ballast design.",
        check: Check::Model(security::duplicate_listener_address),
    },
    Rule {
        id: "OPS-102",
        name: "unused-pool",
        severity: Info,
        category: "operations",
        summary: "a pool no listener routes to",
        explain: "An unused pool is usually a typo in a listener's `pool` or a leftover; either way its \
            servers get no traffic.\n\
            Source: ballast design.",
        check: Check::Model(security::unused_pool),
    },
];

#[cfg(test)]
mod tests {
    use super::RULES;
    use std::collections::HashSet;

    #[test]
    fn ids_and_names_are_unique_and_explained() {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for r in RULES {
            assert!(ids.insert(r.id), "duplicate id {}", r.id);
            assert!(names.insert(r.name), "duplicate name {}", r.name);
            assert!(r.explain.contains("Source:"), "{} cites no source", r.id);
        }
        assert!(RULES.len() >= 25);
    }
}
