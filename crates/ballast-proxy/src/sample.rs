//! The guard's sample of this proxy (`ballast_core::sample::Sample`), built from its own
//! counters: what `/sample` serves to `ballast watch` and what `serve`'s own detectors judge.

use std::sync::atomic::Ordering;

use ballast_core::sample::{
    FrontendSample, PoolSample, ProcessSample, Promise, ResponseClasses, Sample, ServerSample,
    ServerState,
};

use crate::Shared;
use crate::metrics::RejectLabels;

/// One sample at `at_ms` (Unix ms), named `instance` (the admin address).
pub(crate) fn sample(shared: &Shared, at_ms: u64, instance: &str) -> Sample {
    let snapshot = shared.snapshot.load();
    let mut pools: Vec<PoolSample> = snapshot
        .pools
        .values()
        .map(|pool| PoolSample {
            noted: Default::default(),
            predicted: None,
            name: pool.name.clone(),
            promise: Promise::of(&pool.spec),
            queued: 0,
            servers: pool
                .servers
                .iter()
                .map(|s| {
                    let st = &s.state;
                    let by_class = |i: usize| s.metrics.by_class[i].get();
                    let state = if s.spec.down {
                        ServerState::Maintenance
                    } else if !st.available() {
                        ServerState::Down
                    } else if s.spec.weight == 0 {
                        ServerState::Drain
                    } else {
                        ServerState::Up
                    };
                    ServerSample {
                        state_for_s: None,
                        name: s.spec.name.clone(),
                        requests: st.picks.load(Ordering::Relaxed),
                        active: u64::from(st.in_flight.load(Ordering::Relaxed)),
                        queued: u64::from(st.queued.load(Ordering::Relaxed)),
                        max_connections: s.spec.max_connections.map(u64::from),
                        max_queue: s.spec.max_connections.map(|_| u64::from(s.spec.max_queue)),
                        weight: s.spec.weight,
                        state,
                        backup: s.spec.backup,
                        responses: ResponseClasses {
                            c1xx: by_class(0),
                            c2xx: by_class(1),
                            c3xx: by_class(2),
                            c4xx: by_class(3),
                            c5xx: by_class(4),
                            other: 0,
                        },
                        latency_ms: st.recent_latency(),
                    }
                })
                .collect(),
        })
        .collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let config = &snapshot.loaded.config;
    let refused = |listener: &str| -> u64 {
        ["listener_limit", "global_limit", "per_ip_limit"]
            .iter()
            .map(|cause| {
                shared
                    .metrics
                    .rejections
                    .get_or_create(&RejectLabels {
                        listener: listener.to_string(),
                        cause: (*cause).to_string(),
                    })
                    .get()
            })
            .sum()
    };
    let frontends = config
        .listeners
        .iter()
        .map(|(name, l)| FrontendSample {
            name: name.clone(),
            active: u64::from(shared.connections.listener(name).load(Ordering::Relaxed)),
            max_connections: Some(u64::from(l.effective_max_connections())),
            refused: refused(name),
        })
        .collect();
    Sample {
        at_ms,
        source: "ballast".into(),
        instance: instance.to_string(),
        pools,
        frontends,
        process: Some(ProcessSample {
            active: u64::from(shared.connections.global()),
            max_connections: Some(u64::from(config.global.effective_max_connections())),
            generation: Some(snapshot.version.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
