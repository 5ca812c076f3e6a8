//! Server health: active checks (HTTP or TCP) feeding the pure rise/fall state machine of
//! ballast-core, and passive ejection from failures seen on real traffic, with a doubling
//! ejection time and a cap on the share of a pool that may be ejected.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use ballast_core::config::{CheckKind, HealthCheck};
use ballast_core::event::EventKind;
use ballast_core::health::{Health, Transition, ejection_duration};

use crate::Shared;
use crate::runtime::{PoolRuntime, Snapshot};

/// Records the outcome of one exchange with a server for passive ejection.
pub fn record_outcome(shared: &Arc<Shared>, pool: &Arc<PoolRuntime>, index: usize, success: bool) {
    let Some(passive) = &pool.spec.passive else {
        return;
    };
    let server = &pool.servers[index];
    let state = &server.state;
    if success {
        state.consecutive_failures.store(0, Ordering::Release);
        return;
    }
    let failures = state.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
    if failures < passive.consecutive_failures || state.ejected.load(Ordering::Acquire) {
        return;
    }
    let ejected = pool
        .servers
        .iter()
        .filter(|s| s.state.ejected.load(Ordering::Acquire))
        .count();
    let allowed = pool.servers.len() * passive.max_ejected_percent as usize / 100;
    if ejected >= allowed {
        return;
    }
    if state.ejected.swap(true, Ordering::AcqRel) {
        return;
    }
    let times = state.ejections.fetch_add(1, Ordering::AcqRel);
    let duration = ejection_duration(passive.base_ejection.0, times);
    state.consecutive_failures.store(0, Ordering::Release);
    shared.events.emit(EventKind::ServerEjected {
        pool: pool.name.clone(),
        server: server.spec.name.clone(),
        failures,
        for_ms: duration.as_millis() as u64,
    });
    let pool = Arc::clone(pool);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        let server = &pool.servers[index];
        if server.state.ejected.swap(false, Ordering::AcqRel) {
            server.became_available(shared.clock.now());
            shared.events.emit(EventKind::ServerRecovered {
                pool: pool.name.clone(),
                server: server.spec.name.clone(),
            });
        }
    });
}

/// Starts one active-check task per server of every pool that has checks.
pub fn start_checks(shared: &Arc<Shared>, snapshot: &Snapshot) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for pool in snapshot.pools.values() {
        let Some(check) = pool.spec.health.clone() else {
            continue;
        };
        for index in 0..pool.servers.len() {
            let shared = Arc::clone(shared);
            let pool = Arc::clone(pool);
            let check = check.clone();
            tasks.push(tokio::spawn(async move {
                check_loop(shared, pool, index, check).await
            }));
        }
    }
    tasks
}

async fn check_loop(shared: Arc<Shared>, pool: Arc<PoolRuntime>, index: usize, check: HealthCheck) {
    let server = &pool.servers[index];
    // Carried over from the previous configuration when the server kept its identity.
    let mut health = Health::resume(server.state.healthy.load(Ordering::Acquire));
    let mut interval = tokio::time::interval(check.interval.0);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let result = probe(&server.spec.address, &check).await;
        let ok = result.is_ok();
        match health.record(ok, &check) {
            Some(Transition::WentUp) => {
                server.state.healthy.store(true, Ordering::Release);
                server.became_available(shared.clock.now());
                shared.events.emit(EventKind::ServerUp {
                    pool: pool.name.clone(),
                    server: server.spec.name.clone(),
                });
            }
            Some(Transition::WentDown) => {
                server.state.healthy.store(false, Ordering::Release);
                shared.events.emit(EventKind::ServerDown {
                    pool: pool.name.clone(),
                    server: server.spec.name.clone(),
                    reason: result.err().unwrap_or_default(),
                });
            }
            None => {}
        }
    }
}

/// One check: Ok, or why it failed.
async fn probe(address: &str, check: &HealthCheck) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if check.kind == CheckKind::Tcp {
            return Ok(());
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: ballast-health\r\nConnection: close\r\n\r\n",
            check.path
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < 12 {
            let n = stream
                .read(&mut head[read..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before a status line".to_string());
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&head[..read]);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP status line: {:?}",
                    line.lines().next().unwrap_or("")
                )
            })?;
        if check.expect_status.contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "status {status}, expected one of {:?}",
                check.expect_status
            ))
        }
    };
    match tokio::time::timeout(check.timeout.0, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout.0)),
    }
}
