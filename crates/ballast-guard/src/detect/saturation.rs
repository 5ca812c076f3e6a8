//! Saturation: servers, pools, frontends, the process and nginx's workers against their
//! connection limits, and queues.
//!
//! Every judgement is about the window's last sample ("now"), except the counters (refused
//! connections, nginx's accepts against handled), which are differences over the window; a
//! counter that went down is a restart and judges nothing. Near a limit (80% by default) is a
//! warning that must last two minutes (the published `HaproxyBackendMaxActiveSession`
//! pattern); at a limit or refusing is critical at once. At a limit the near-limit finding
//! holds too, so its `for` keeps counting while a server swings between 90% and 100%; the
//! lifecycle shows the critical one and inhibits the warning of the same labels.
//!
//! Not judged, because samples do not carry it: how many of a pool's 503s were the balancer's
//! own refusals (HAProxy's queue timeout, nginx's "no live upstreams"). The errors detector
//! counts them among the pool's 5xx.

use ballast_core::sample::{
    FrontendSample, PoolSample, ProcessSample, Sample, ServerSample, ServerState,
};

use super::{
    Finding, Layer, Level, RuleSpec, Text, Words, by_name, figures, increase, percent, span,
};

/// When connections count as near or at a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaturationThresholds {
    /// The share of a limit at which connections are near it (a warning once it lasts).
    pub near_limit: f64,
    /// The share of a limit at which connections are at it (critical at once).
    pub at_limit: f64,
    /// The fewest connections nginx must have dropped (accepted, not handled) in a window to
    /// say its workers are out of connections. A `stub_status` snapshot can catch each other
    /// worker between counting an accept and counting it handled, so a handful is noise.
    pub min_dropped: u64,
}

impl Default for SaturationThresholds {
    fn default() -> Self {
        Self {
            near_limit: 0.8,
            at_limit: 1.0,
            min_dropped: 4,
        }
    }
}

pub const SERVER_NEAR_LIMIT: &str = "ServerNearConnectionLimit";
pub const SERVER_AT_LIMIT: &str = "ServerAtConnectionLimit";
pub const SERVER_QUEUEING: &str = "ServerQueueing";
pub const SERVER_QUEUE_FULL: &str = "ServerQueueFull";
pub const POOL_QUEUEING: &str = "PoolQueueing";
pub const POOL_SATURATED: &str = "PoolSaturated";
pub const FRONTEND_NEAR_LIMIT: &str = "FrontendNearConnectionLimit";
pub const FRONTEND_AT_LIMIT: &str = "FrontendAtConnectionLimit";
pub const FRONTEND_REFUSING: &str = "FrontendRefusingConnections";
pub const PROCESS_NEAR_LIMIT: &str = "ProcessNearConnectionLimit";
pub const PROCESS_AT_LIMIT: &str = "ProcessAtConnectionLimit";
pub const WORKERS_DROPPING: &str = "WorkersDroppingConnections";

const TWO_MINUTES_MS: u64 = 2 * 60 * 1000;

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[
    RuleSpec {
        alertname: SERVER_NEAR_LIMIT,
        layer: Layer::Limits,
        for_ms: TWO_MINUTES_MS,
        meaning: "A server has held 80% or more of its connection limit (`maxconn`, \
                  `max_conns`) for two minutes: a little more traffic and it queues or refuses.",
        response: "Check whether the server takes more than its share (the distribution alert \
                   of its pool) or the pool as a whole is short of capacity; raise the limit \
                   only if the server can take it, else add servers.",
    },
    RuleSpec {
        alertname: SERVER_AT_LIMIT,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "A server is at its connection limit now: new requests for it wait in its \
                  queue or go elsewhere.",
        response: "See whether its queue grows (ServerQueueing) and whether it alone is full \
                   (a skew: fix the weights or hashing) or all are (PoolSaturated: capacity).",
    },
    RuleSpec {
        alertname: SERVER_QUEUEING,
        layer: Layer::Limits,
        for_ms: TWO_MINUTES_MS,
        meaning: "Requests have waited in a server's queue for two minutes (HAProxy `qcur`): \
                  they are slowed, and dropped with a 503 after `timeout queue`.",
        response: "The server is at its limit: see ServerAtConnectionLimit; check its latency \
                   (a slow server holds its connections longer).",
    },
    RuleSpec {
        alertname: SERVER_QUEUE_FULL,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "A server's queue is at its limit (`maxqueue`): further requests for it are \
                  redispatched or refused now.",
        response: "Relieve the server at once (weight, drain) or add capacity; then find why \
                   it filled (skew, slowness).",
    },
    RuleSpec {
        alertname: POOL_QUEUEING,
        layer: Layer::Limits,
        for_ms: TWO_MINUTES_MS,
        meaning: "Requests have waited in a pool's own queue for two minutes (no server could \
                  take them; the published `HaproxyPendingRequests`).",
        response: "Every server is busy or at its limit: check PoolSaturated and the pool's \
                   latency; add servers or raise limits the servers can bear.",
    },
    RuleSpec {
        alertname: POOL_SATURATED,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "Every server in rotation of a pool is at its connection limit now: the pool \
                  has no room, whatever the distribution.",
        response: "A capacity problem, not a skew: add servers or raise limits; look for a \
                   surge (the traffic layer) or a slow shared dependency behind them.",
    },
    RuleSpec {
        alertname: FRONTEND_NEAR_LIMIT,
        layer: Layer::Limits,
        for_ms: TWO_MINUTES_MS,
        meaning: "A frontend (listener) has held 80% or more of its `maxconn` for two minutes.",
        response: "Compare the request rate with its baseline (a surge?) and the frontend's \
                   limit with the process's; raise the limit if the process can take it.",
    },
    RuleSpec {
        alertname: FRONTEND_AT_LIMIT,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "A frontend is at its connection limit now: new connections wait in the \
                  kernel's backlog or are refused.",
        response: "Raise the frontend's `maxconn` (and the process's) if the servers have \
                   room; otherwise shed load upstream.",
    },
    RuleSpec {
        alertname: FRONTEND_REFUSING,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "A frontend refused connections in this window: clients see errors now.",
        response: "The frontend is at its limit: see FrontendAtConnectionLimit.",
    },
    RuleSpec {
        alertname: PROCESS_NEAR_LIMIT,
        layer: Layer::Limits,
        for_ms: TWO_MINUTES_MS,
        meaning: "The load balancer process has held 80% or more of its global connection \
                  limit (HAProxy `Maxconn`, nginx workers × `worker_connections`) for two \
                  minutes.",
        response: "Raise the global limit (and the open-file limit with it) or add instances.",
    },
    RuleSpec {
        alertname: PROCESS_AT_LIMIT,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "The load balancer process is at its global connection limit now: it stops \
                  accepting.",
        response: "Raise the global limit (and the open-file limit) or add instances at once.",
    },
    RuleSpec {
        alertname: WORKERS_DROPPING,
        layer: Layer::Limits,
        for_ms: 0,
        meaning: "nginx accepted connections it could not handle in this window (`stub_status` \
                  handled behind accepts): worker_connections are not enough.",
        response: "Raise `worker_connections` (it counts upstream connections too) and \
                   `worker_rlimit_nofile`, or `worker_processes`; check the error log for \
                   \"worker_connections are not enough\".",
    },
];

/// What holds for one load balancer's window, `window` its samples oldest first.
pub fn detect(window: &[Sample], thresholds: &SaturationThresholds) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(now) = window.last() else {
        return found;
    };
    for pool in &now.pools {
        for server in &pool.servers {
            judge_server(pool, server, thresholds, &mut found);
        }
        judge_pool(pool, thresholds, &mut found);
    }
    for (index, frontend) in now.frontends.iter().enumerate() {
        judge_frontend(window, index, frontend, thresholds, &mut found);
    }
    if let Some(process) = &now.process {
        judge_process(window, process, thresholds, &mut found);
    }
    found
}

/// How full something is against its limit, when it has one (0 means none, as in HAProxy).
#[derive(Debug, Clone, Copy)]
struct Fill {
    active: u64,
    limit: u64,
    ratio: f64,
}

impl Fill {
    fn of(active: u64, limit: Option<u64>) -> Option<Fill> {
        let limit = limit.filter(|&l| l > 0)?;
        Some(Fill {
            active,
            limit,
            ratio: active as f64 / limit as f64,
        })
    }

    fn near(self, t: &SaturationThresholds) -> bool {
        self.ratio >= t.near_limit
    }

    fn at(self, t: &SaturationThresholds) -> bool {
        self.ratio >= t.at_limit
    }
}

fn judge_server(
    pool: &PoolSample,
    server: &ServerSample,
    t: &SaturationThresholds,
    found: &mut Vec<Finding>,
) {
    let queued = server.queued;
    let fill = Fill::of(server.active, server.max_connections);
    // Most servers of a fleet are fine: decide before formatting anything.
    if queued == 0 && !fill.is_some_and(|f| f.near(t)) {
        return;
    }
    // The words are written when read (Text::later): only what they need is captured.
    let queue_note = QueueNote(queued);
    if let Some(fill) = fill {
        let figs = || {
            figures(&[
                ("sessions", fill.active as f64),
                ("limit", fill.limit as f64),
                ("ratio", fill.ratio),
                ("queued", queued as f64),
            ])
        };
        if fill.at(t) {
            found.push(Finding {
                rule: SERVER_AT_LIMIT,
                level: Level::Critical,
                layer: Layer::Limits,
                pool: Some(pool.name.clone()),
                server: Some(server.name.clone()),
                text: Text::later(move |f| {
                    let place = f.place();
                    Words {
                        summary: format!(
                            "{place} is at its connection limit: {} of {} sessions{queue_note}",
                            fill.active, fill.limit
                        ),
                        description: format!(
                            "{place} holds {} sessions against its limit of {} ({}); {queued} \
                             requests wait in its queue. New requests for it queue or go to \
                             other servers.",
                            fill.active,
                            fill.limit,
                            percent(fill.ratio)
                        ),
                    }
                }),
                figures: figs(),
            });
        }
        if fill.near(t) {
            found.push(Finding {
                rule: SERVER_NEAR_LIMIT,
                level: Level::Warning,
                layer: Layer::Limits,
                pool: Some(pool.name.clone()),
                server: Some(server.name.clone()),
                text: {
                    let near_limit = t.near_limit;
                    Text::later(move |f| {
                        let place = f.place();
                        Words {
                            summary: format!(
                                "{place} is near its connection limit: {} of {} sessions ({})",
                                fill.active,
                                fill.limit,
                                percent(fill.ratio)
                            ),
                            description: format!(
                                "{place} holds {} sessions against its limit of {} ({}, warning \
                                 from {}); {queued} requests queued.",
                                fill.active,
                                fill.limit,
                                percent(fill.ratio),
                                percent(near_limit)
                            ),
                        }
                    })
                },
                figures: figs(),
            });
        }
    }
    if queued == 0 {
        return;
    }
    let sessions = Sessions {
        active: server.active,
        limit: server.max_connections.filter(|&l| l > 0),
    };
    let max_queue = server.max_queue.filter(|&q| q > 0);
    let figs = || {
        let mut f = figures(&[
            ("queued", queued as f64),
            ("sessions", server.active as f64),
        ]);
        if let Some(limit) = server.max_connections.filter(|&l| l > 0) {
            f.insert("limit", limit as f64);
        }
        if let Some(q) = max_queue {
            f.insert("max_queue", q as f64);
        }
        f
    };
    if let Some(max_queue) = max_queue.filter(|&q| queued >= q) {
        found.push(Finding {
            rule: SERVER_QUEUE_FULL,
            level: Level::Critical,
            layer: Layer::Limits,
            pool: Some(pool.name.clone()),
            server: Some(server.name.clone()),
            text: Text::later(move |f| {
                let place = f.place();
                Words {
                    summary: format!(
                        "{place}'s queue is full: {queued} of {max_queue} queued ({sessions})"
                    ),
                    description: format!(
                        "{place} has {queued} requests waiting against its queue limit of \
                         {max_queue}, with {sessions}: further requests for it are redispatched \
                         or refused."
                    ),
                }
            }),
            figures: figs(),
        });
    }
    found.push(Finding {
        rule: SERVER_QUEUEING,
        level: Level::Warning,
        layer: Layer::Limits,
        pool: Some(pool.name.clone()),
        server: Some(server.name.clone()),
        text: Text::later(move |f| {
            let place = f.place();
            Words {
                summary: format!("{place} has {queued} requests queued ({sessions})"),
                description: format!(
                    "{place} has {queued} requests waiting for a connection slot, with \
                     {sessions}; queued requests are dropped with a 503 after the queue timeout."
                ),
            }
        }),
        figures: figs(),
    });
}

/// ", N queued" after a server's sessions, nothing when none is: written where it is formatted.
#[derive(Clone, Copy)]
struct QueueNote(u64);

impl std::fmt::Display for QueueNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            queued => write!(f, ", {queued} queued"),
        }
    }
}

/// "N of L sessions", or "N sessions, no limit": written where it is formatted.
#[derive(Clone, Copy)]
struct Sessions {
    active: u64,
    limit: Option<u64>,
}

impl std::fmt::Display for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "{} of {limit} sessions", self.active),
            None => write!(f, "{} sessions, no limit", self.active),
        }
    }
}

/// The servers that take new requests: up with a weight, primaries unless none is (then the
/// backups serve, as the balancers do).
pub(crate) fn in_rotation(pool: &PoolSample) -> Vec<&ServerSample> {
    let live = |s: &&ServerSample| s.state == ServerState::Up && s.weight > 0;
    let primaries: Vec<&ServerSample> = pool
        .servers
        .iter()
        .filter(live)
        .filter(|s| !s.backup)
        .collect();
    if primaries.is_empty() {
        pool.servers.iter().filter(live).collect()
    } else {
        primaries
    }
}

/// A server in rotation (as [`in_rotation`] chooses them) has no limit or is below it. False
/// when none is in rotation, so the full judgement decides then.
fn pool_has_room(pool: &PoolSample, t: &SaturationThresholds) -> bool {
    let live = |s: &ServerSample| s.state == ServerState::Up && s.weight > 0;
    let primaries = pool.servers.iter().any(|s| live(s) && !s.backup);
    pool.servers
        .iter()
        .filter(|s| live(s) && (!primaries || !s.backup))
        .any(|s| Fill::of(s.active, s.max_connections).is_none_or(|f| !f.at(t)))
}

fn judge_pool(pool: &PoolSample, t: &SaturationThresholds, found: &mut Vec<Finding>) {
    let server_queues: u64 = pool.servers.iter().map(|s| s.queued).sum();
    if pool.queued > 0 {
        found.push(Finding {
            rule: POOL_QUEUEING,
            level: Level::Warning,
            layer: Layer::Limits,
            pool: Some(pool.name.clone()),
            server: None,
            text: Text::written(
                format!(
                    "pool {} has {} requests queued waiting for any server",
                    pool.name, pool.queued
                ),
                format!(
                    "pool {} has {} requests in its own queue (no server could take them), and \
                 {server_queues} more in its servers' queues.",
                    pool.name, pool.queued
                ),
            ),
            figures: figures(&[
                ("queued", pool.queued as f64),
                ("server_queued", server_queues as f64),
            ]),
        });
    }
    // Nearly every pool of a fleet has a server with room: say so before collecting anything.
    if pool_has_room(pool, t) {
        return;
    }
    let serving = in_rotation(pool);
    if serving.is_empty() {
        // No server takes traffic: the errors detector says so (all down or taken out).
        return;
    }
    let fills: Option<Vec<Fill>> = serving
        .iter()
        .map(|s| Fill::of(s.active, s.max_connections))
        .collect();
    let Some(fills) = fills else {
        return; // A server without a limit always has room.
    };
    if !fills.iter().all(|f| f.at(t)) {
        return;
    }
    let sessions: u64 = fills.iter().map(|f| f.active).sum();
    let limit: u64 = fills.iter().map(|f| f.limit).sum();
    let queued = pool.queued + server_queues;
    let n = serving.len();
    found.push(Finding {
        rule: POOL_SATURATED,
        level: Level::Critical,
        layer: Layer::Limits,
        pool: Some(pool.name.clone()),
        server: None,
        text: Text::written(format!(
            "every server of pool {} is at its connection limit: {n} of {n} servers, {sessions} \
             of {limit} sessions, {queued} queued",
            pool.name
        ), format!(
            "all {n} servers in rotation of pool {} are at their limits ({sessions} sessions \
             against {limit}); {queued} requests wait. Not a skew: the pool has no room.",
            pool.name
        )),
        figures: figures(&[
            ("servers", n as f64),
            ("sessions", sessions as f64),
            ("limit", limit as f64),
            ("queued", queued as f64),
        ]),
    });
}

fn judge_frontend(
    window: &[Sample],
    index: usize,
    frontend: &FrontendSample,
    t: &SaturationThresholds,
    found: &mut Vec<Finding>,
) {
    let place = format!("frontend {}", frontend.name);
    if let Some(fill) = Fill::of(frontend.active, frontend.max_connections) {
        limit_findings(
            &place,
            fill,
            t,
            (FRONTEND_AT_LIMIT, FRONTEND_NEAR_LIMIT),
            "New connections wait in the kernel's backlog or are refused.",
            found,
        );
    }
    let refused = increase(
        window
            .iter()
            .filter_map(|s| by_name(&s.frontends, index, &frontend.name, |f| &f.name))
            .map(|f| f.refused),
    );
    if let Some(refused) = refused.filter(|&r| r > 0) {
        let over = span(window);
        let mut figs = figures(&[
            ("refused", refused as f64),
            ("connections", frontend.active as f64),
        ]);
        if let Some(limit) = frontend.max_connections {
            figs.insert("limit", limit as f64);
        }
        let limit = frontend
            .max_connections
            .map_or_else(|| "no limit known".to_owned(), |l| format!("limit {l}"));
        found.push(Finding {
            rule: FRONTEND_REFUSING,
            level: Level::Critical,
            layer: Layer::Limits,
            pool: None,
            server: None,
            text: Text::written(
                format!("{place} refused {refused} connections in the last {over}"),
                format!(
                    "{place} refused {refused} connections in the last {over}; it holds {} \
                 connections ({limit}).",
                    frontend.active
                ),
            ),
            figures: figs,
        });
    }
}

fn judge_process(
    window: &[Sample],
    process: &ProcessSample,
    t: &SaturationThresholds,
    found: &mut Vec<Finding>,
) {
    if let Some(fill) = Fill::of(process.active, process.max_connections) {
        limit_findings(
            "the load balancer process",
            fill,
            t,
            (PROCESS_AT_LIMIT, PROCESS_NEAR_LIMIT),
            "It stops accepting new connections at its limit.",
            found,
        );
    }
    let counted: Vec<(u64, u64)> = window
        .iter()
        .filter_map(|s| s.process.as_ref())
        .filter_map(|p| Some((p.accepted?, p.handled?)))
        .collect();
    let accepted = increase(counted.iter().map(|c| c.0));
    let handled = increase(counted.iter().map(|c| c.1));
    let (Some(accepted), Some(handled)) = (accepted, handled) else {
        return;
    };
    let dropped = accepted.saturating_sub(handled);
    if dropped < t.min_dropped.max(1) {
        return;
    }
    let over = span(window);
    found.push(Finding {
        rule: WORKERS_DROPPING,
        level: Level::Critical,
        layer: Layer::Limits,
        pool: None,
        server: None,
        text: Text::written(
            format!(
                "nginx dropped {dropped} of {accepted} accepted connections in the last {over}: \
             worker_connections are not enough"
            ),
            format!(
                "stub_status counted {accepted} connections accepted and {handled} handled in the \
             last {over}: {dropped} ({}) were closed for want of a free worker connection.",
                percent(dropped as f64 / accepted.max(1) as f64)
            ),
        ),
        figures: figures(&[
            ("accepted", accepted as f64),
            ("handled", handled as f64),
            ("dropped", dropped as f64),
        ]),
    });
}

/// Findings of a frontend or the process against its limit: (at, near) rule names.
fn limit_findings(
    place: &str,
    fill: Fill,
    t: &SaturationThresholds,
    (at_rule, near_rule): (&'static str, &'static str),
    consequence: &str,
    found: &mut Vec<Finding>,
) {
    let figs = || {
        figures(&[
            ("connections", fill.active as f64),
            ("limit", fill.limit as f64),
            ("ratio", fill.ratio),
        ])
    };
    if fill.at(t) {
        found.push(Finding {
            rule: at_rule,
            level: Level::Critical,
            layer: Layer::Limits,
            pool: None,
            server: None,
            text: Text::written(
                format!(
                    "{place} is at its connection limit: {} of {} connections",
                    fill.active, fill.limit
                ),
                format!(
                    "{place} holds {} connections against its limit of {} ({}). {consequence}",
                    fill.active,
                    fill.limit,
                    percent(fill.ratio)
                ),
            ),
            figures: figs(),
        });
    }
    if fill.near(t) {
        found.push(Finding {
            rule: near_rule,
            level: Level::Warning,
            layer: Layer::Limits,
            pool: None,
            server: None,
            text: Text::written(
                format!(
                    "{place} is near its connection limit: {} of {} connections ({})",
                    fill.active,
                    fill.limit,
                    percent(fill.ratio)
                ),
                format!(
                    "{place} holds {} connections against its limit of {} ({}, warning from {}).",
                    fill.active,
                    fill.limit,
                    percent(fill.ratio),
                    percent(t.near_limit)
                ),
            ),
            figures: figs(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, sample, server};
    use crate::detect::{all_rules, rule};

    fn limited(name: &str, active: u64, limit: u64, queued: u64) -> ServerSample {
        ServerSample {
            state_for_s: None,
            active,
            max_connections: Some(limit),
            queued,
            ..server(name)
        }
    }

    fn run(window: &[Sample]) -> Vec<Finding> {
        detect(window, &SaturationThresholds::default())
    }

    /// Pool `app` of `s` and an idle server with room, so the pool itself is not full.
    fn beside_room(s: ServerSample) -> Vec<PoolSample> {
        vec![pool("app", vec![s, limited("roomy", 0, 50, 0)])]
    }

    fn rules_of(found: &[Finding]) -> Vec<&'static str> {
        let mut r: Vec<&str> = found.iter().map(|f| f.rule).collect();
        r.sort_unstable();
        r
    }

    fn one<'a>(found: &'a [Finding], rule: &str) -> &'a Finding {
        let matching: Vec<&Finding> = found.iter().filter(|f| f.rule == rule).collect();
        assert_eq!(matching.len(), 1, "one {rule} in {found:#?}");
        matching[0]
    }

    #[test]
    fn a_server_near_its_limit_warns_and_at_it_is_critical() {
        let at = |active| run(&[sample(0, beside_room(limited("app-3", active, 50, 0)))]);
        assert!(at(39).is_empty(), "{:?}", at(39));
        assert_eq!(rules_of(&at(40)), [SERVER_NEAR_LIMIT]);
        let found = at(40);
        let near = one(&found, SERVER_NEAR_LIMIT);
        assert_eq!(near.level, Level::Warning);
        assert_eq!(near.figures["ratio"], 0.8);
        assert_eq!(near.server.as_deref(), Some("app-3"));
        assert_eq!(rules_of(&at(50)), [SERVER_AT_LIMIT, SERVER_NEAR_LIMIT]);
    }

    #[test]
    fn the_page_line_says_where_and_how_much() {
        let window = [sample(
            0,
            vec![pool("app", vec![limited("app-3", 50, 50, 12)])],
        )];
        let found = run(&window);
        let at = one(&found, SERVER_AT_LIMIT);
        assert_eq!(
            at.summary(),
            "server app/app-3 is at its connection limit: 50 of 50 sessions, 12 queued"
        );
        assert_eq!((at.figures["sessions"], at.figures["limit"]), (50.0, 50.0));
        assert_eq!(at.figures["queued"], 12.0);
        assert_eq!(at.pool.as_deref(), Some("app"));
    }

    #[test]
    fn no_limit_means_no_saturation() {
        let mut s = server("app-1");
        s.active = 10_000;
        assert!(run(&[sample(0, vec![pool("app", vec![s.clone()])])]).is_empty());
        // HAProxy reports 0 for "no limit".
        s.max_connections = Some(0);
        assert!(run(&[sample(0, vec![pool("app", vec![s])])]).is_empty());
    }

    #[test]
    fn only_now_counts_for_limits() {
        let window = [
            sample(0, vec![pool("app", vec![limited("app-1", 50, 50, 5)])]),
            sample(1, vec![pool("app", vec![limited("app-1", 10, 50, 0)])]),
        ];
        assert!(run(&window).is_empty(), "{:?}", run(&window));
    }

    #[test]
    fn a_queue_warns_and_a_full_queue_is_critical() {
        let with_queue = |queued, max_queue| {
            let s = ServerSample {
                state_for_s: None,
                max_queue,
                ..limited("app-1", 50, 50, queued)
            };
            run(&[sample(0, beside_room(s))])
        };
        let found = with_queue(3, Some(10));
        assert_eq!(
            rules_of(&found),
            [SERVER_AT_LIMIT, SERVER_NEAR_LIMIT, SERVER_QUEUEING]
        );
        assert_eq!(one(&found, SERVER_QUEUEING).figures["queued"], 3.0);
        let found = with_queue(10, Some(10));
        let full = one(&found, SERVER_QUEUE_FULL);
        assert_eq!(full.level, Level::Critical);
        assert_eq!(full.figures["max_queue"], 10.0);
        // A maxqueue of 0 is no limit: queueing, never full.
        assert!(!rules_of(&with_queue(500, Some(0))).contains(&SERVER_QUEUE_FULL));
        assert!(!rules_of(&with_queue(0, Some(10))).contains(&SERVER_QUEUEING));
    }

    #[test]
    fn a_pool_queue_warns() {
        let mut p = pool("app", vec![limited("app-1", 5, 50, 0)]);
        assert!(run(&[sample(0, vec![p.clone()])]).is_empty());
        p.queued = 7;
        let found = run(&[sample(0, vec![p])]);
        let q = one(&found, POOL_QUEUEING);
        assert_eq!((q.level, q.server.as_deref()), (Level::Warning, None));
        assert_eq!(q.figures["queued"], 7.0);
    }

    #[test]
    fn a_pool_is_saturated_only_when_every_serving_server_is_full() {
        let servers = vec![
            limited("app-1", 50, 50, 0),
            limited("app-2", 50, 50, 2),
            limited("app-3", 30, 30, 0),
        ];
        let found = run(&[sample(0, vec![pool("app", servers.clone())])]);
        let sat = one(&found, POOL_SATURATED);
        assert_eq!(sat.figures["servers"], 3.0);
        assert_eq!(
            (sat.figures["sessions"], sat.figures["limit"]),
            (130.0, 130.0)
        );
        assert_eq!(sat.figures["queued"], 2.0);

        // One server with room: a skew perhaps, not a full pool.
        let mut room = servers.clone();
        room[2].active = 20;
        assert!(!rules_of(&run(&[sample(0, vec![pool("app", room)])])).contains(&POOL_SATURATED));
        // A server without a limit always has room.
        let mut unlimited = servers.clone();
        unlimited.push(server("app-4"));
        assert!(
            !rules_of(&run(&[sample(0, vec![pool("app", unlimited)])])).contains(&POOL_SATURATED)
        );
        // Servers out of rotation and idle backups do not give room.
        let mut out = servers;
        out.push(ServerSample {
            state_for_s: None,
            state: ServerState::Down,
            ..limited("app-4", 0, 50, 0)
        });
        out.push(ServerSample {
            state_for_s: None,
            backup: true,
            ..limited("spare", 0, 50, 0)
        });
        out.push(ServerSample {
            state_for_s: None,
            weight: 0,
            ..limited("drained", 0, 50, 0)
        });
        assert!(rules_of(&run(&[sample(0, vec![pool("app", out)])])).contains(&POOL_SATURATED));
    }

    fn with_frontend(second: u64, active: u64, refused: u64) -> Sample {
        let mut s = sample(second, vec![]);
        s.frontends.push(FrontendSample {
            name: "www".into(),
            active,
            max_connections: Some(1000),
            refused,
        });
        s
    }

    #[test]
    fn a_frontend_against_its_limit_and_refusing() {
        assert!(run(&[with_frontend(0, 799, 0)]).is_empty());
        assert_eq!(
            rules_of(&run(&[with_frontend(0, 800, 0)])),
            [FRONTEND_NEAR_LIMIT]
        );
        let found = run(&[with_frontend(0, 1000, 0)]);
        assert_eq!(
            one(&found, FRONTEND_AT_LIMIT).summary(),
            "frontend www is at its connection limit: 1000 of 1000 connections"
        );
        let window = [
            with_frontend(0, 10, 40),
            with_frontend(15, 10, 40),
            with_frontend(30, 10, 160),
        ];
        let found = run(&window);
        let refusing = one(&found, FRONTEND_REFUSING);
        assert_eq!(refusing.figures["refused"], 120.0);
        assert_eq!(
            refusing.summary(),
            "frontend www refused 120 connections in the last 30 s"
        );
    }

    #[test]
    fn refusals_before_the_window_or_across_a_restart_say_nothing() {
        // A constant count: refused long ago.
        let window = [with_frontend(0, 10, 500), with_frontend(30, 10, 500)];
        assert!(run(&window).is_empty());
        // The counter went down: the process restarted.
        let window = [
            with_frontend(0, 10, 500),
            with_frontend(15, 10, 3),
            with_frontend(30, 10, 9),
        ];
        assert!(run(&window).is_empty());
        // One sample has no difference.
        assert!(run(&[with_frontend(0, 10, 500)]).is_empty());
    }

    fn with_process(
        second: u64,
        active: u64,
        accepted: Option<u64>,
        handled: Option<u64>,
    ) -> Sample {
        let mut s = sample(second, vec![]);
        s.process = Some(ProcessSample {
            started_unix_s: None,
            active,
            max_connections: Some(4096),
            generation: Some("1234".into()),
            accepted,
            handled,
        });
        s
    }

    #[test]
    fn the_process_against_its_limit() {
        assert!(run(&[with_process(0, 3000, None, None)]).is_empty());
        assert_eq!(
            rules_of(&run(&[with_process(0, 3300, None, None)])),
            [PROCESS_NEAR_LIMIT]
        );
        assert_eq!(
            rules_of(&run(&[with_process(0, 4096, None, None)])),
            [PROCESS_AT_LIMIT, PROCESS_NEAR_LIMIT]
        );
    }

    #[test]
    fn nginx_handling_fewer_than_it_accepted_is_out_of_worker_connections() {
        let window = [
            with_process(0, 10, Some(1000), Some(990)),
            with_process(10, 10, Some(2000), Some(1890)),
        ];
        let found = run(&window);
        let dropped = one(&found, WORKERS_DROPPING);
        assert_eq!(dropped.level, Level::Critical);
        assert_eq!(dropped.figures["dropped"], 100.0);
        assert_eq!(dropped.figures["accepted"], 1000.0);
        assert!(
            dropped
                .summary()
                .contains("worker_connections are not enough")
        );
        // The gap from before the window is history, not now.
        let window = [
            with_process(0, 10, Some(1000), Some(990)),
            with_process(10, 10, Some(2000), Some(1990)),
        ];
        assert!(run(&window).is_empty());
        // A snapshot taken while two workers are mid-accept is not a drop.
        let window = [
            with_process(0, 10, Some(1000), Some(1000)),
            with_process(10, 10, Some(2000), Some(1998)),
        ];
        assert!(run(&window).is_empty());
        // A restart (counters from zero) judges nothing.
        let window = [
            with_process(0, 10, Some(1000), Some(1000)),
            with_process(10, 10, Some(50), Some(10)),
        ];
        assert!(run(&window).is_empty());
        // Sources without the counters.
        let window = [
            with_process(0, 10, None, None),
            with_process(10, 10, None, None),
        ];
        assert!(run(&window).is_empty());
    }

    #[test]
    fn thresholds_are_configurable() {
        let t = SaturationThresholds {
            near_limit: 0.5,
            at_limit: 0.9,
            ..SaturationThresholds::default()
        };
        let window = [sample(0, beside_room(limited("app-1", 45, 50, 0)))];
        assert_eq!(
            rules_of(&detect(&window, &t)),
            [SERVER_AT_LIMIT, SERVER_NEAR_LIMIT]
        );
        assert!(run(&window).iter().all(|f| f.rule != SERVER_AT_LIMIT));
    }

    #[test]
    fn every_finding_names_a_known_rule_with_the_issues_for() {
        // Everything at once: each rule of this module is raised.
        let mut window = vec![with_frontend(0, 1000, 0), with_frontend(30, 1000, 50)];
        let process = ProcessSample {
            started_unix_s: None,
            active: 4096,
            max_connections: Some(4096),
            generation: None,
            accepted: Some(100),
            handled: Some(100),
        };
        window[0].process = Some(process.clone());
        window[1].process = Some(ProcessSample {
            started_unix_s: None,
            accepted: Some(500),
            ..process
        });
        let mut p = pool(
            "app",
            vec![ServerSample {
                state_for_s: None,
                max_queue: Some(4),
                ..limited("app-1", 50, 50, 4)
            }],
        );
        p.queued = 3;
        window[1].pools.push(p);
        let found = run(&window);
        let raised: std::collections::BTreeSet<&str> = found.iter().map(|f| f.rule).collect();
        let own: std::collections::BTreeSet<&str> = RULES.iter().map(|r| r.alertname).collect();
        assert_eq!(raised, own, "{found:#?}");
        for f in &found {
            let spec = rule(f.rule).expect("a known rule");
            assert_eq!(spec.layer, f.layer, "{}", f.rule);
            assert!(
                !f.summary().is_empty() && !f.description().is_empty() && !f.figures.is_empty()
            );
            // The issue: 80% and queues for 2 minutes, at the limit (or refusing) now.
            let expected = match f.level {
                Level::Warning => 120_000,
                Level::Critical => 0,
            };
            assert_eq!(spec.for_ms, expected, "{}", f.rule);
        }
        assert_eq!(
            all_rules().filter(|r| own.contains(r.alertname)).count(),
            RULES.len(),
            "names are unique"
        );
    }
}
