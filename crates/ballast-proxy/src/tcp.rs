//! The TCP (layer 4) data plane: admit the connection, pick a server with the client address
//! as the key, wait for a slot if the server is full, connect, and copy bytes both ways. The
//! slot is held for the life of the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use ballast_core::balance::hash_key;
use ballast_core::config::{Algorithm, HashKey};

use crate::Shared;
use crate::admission::Caps;

pub async fn run_listener(
    shared: Arc<Shared>,
    name: String,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let counter = shared.connections.listener(&name);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = %name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let snapshot = shared.snapshot.load();
        let Some(spec) = snapshot.loaded.config.listeners.get(&name) else {
            break;
        };
        let caps = Caps {
            global: snapshot.loaded.config.global.effective_max_connections(),
            listener: spec.effective_max_connections(),
            per_ip: snapshot.loaded.config.global.max_connections_per_ip,
        };
        drop(snapshot);
        match shared.connections.admit(&counter, peer.ip(), caps) {
            Ok(permit) => {
                let shared = Arc::clone(&shared);
                let name = name.clone();
                tokio::spawn(async move {
                    forward(&shared, &name, stream, peer).await;
                    drop(permit);
                });
            }
            Err(cause) => {
                // Layer 4 has no way to say why: the connection is closed at once.
                shared.metrics.reject(&name, cause);
                drop(stream);
            }
        }
    }
}

async fn forward(shared: &Arc<Shared>, listener: &str, mut client: TcpStream, peer: SocketAddr) {
    let snapshot = shared.snapshot.load_full();
    let Some(spec) = snapshot.loaded.config.listeners.get(listener) else {
        return;
    };
    let Some(pool) = snapshot.pools.get(&spec.pool).cloned() else {
        return;
    };
    let key = (pool.spec.algorithm == Algorithm::ConsistentHash
        && matches!(pool.spec.effective_hash_key(), HashKey::ClientIp))
    .then(|| hash_key(peer.ip().to_string().as_bytes()));
    let mut attempts_left = pool.spec.retries.attempts;
    loop {
        let now = shared.clock.now();
        let Some(index) = pool.pick_reporting(key, now, &shared.events) else {
            shared.metrics.reject(listener, "no_server");
            return;
        };
        let server = &pool.servers[index];
        if !server.try_acquire() {
            shared.metrics.reject(listener, "queue_full");
            return;
        }
        let connected = tokio::time::timeout(
            pool.spec.connect_timeout(),
            TcpStream::connect(&server.spec.address),
        )
        .await;
        let mut upstream = match connected {
            Ok(Ok(s)) => s,
            _ => {
                server.state.release();
                crate::health::record_outcome(shared, &pool, index, false);
                if attempts_left > 0 && pool.allow_retry(now) {
                    attempts_left -= 1;
                    continue;
                }
                shared.metrics.reject(listener, "connect_failed");
                return;
            }
        };
        crate::health::record_outcome(shared, &pool, index, true);
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        server.state.release();
        return;
    }
}
