//! The TCP (layer 4) data plane: admit the connection, pick a server with the client address
//! as the key, wait for a slot if the server is full, connect, and copy bytes both ways. The
//! slot is held for the life of the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use ballast_core::balance::ClientAddress;

use crate::Shared;
use crate::admission::{Admitted, accept_loop};

pub async fn run_listener(
    shared: Arc<Shared>,
    name: String,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) {
    let serve = |admitted: Admitted| {
        let (shared, name) = (Arc::clone(&shared), name.clone());
        tokio::spawn(async move {
            let Admitted {
                stream,
                peer,
                permit,
                ..
            } = admitted;
            forward(&shared, &name, stream, peer).await;
            drop(permit);
        });
    };
    // Layer 4 has no way to say why: a refused connection is closed at once.
    accept_loop(
        &shared,
        &name,
        listener,
        stop,
        serve,
        |stream, _, spare| match spare {
            Some(spare) => spare.close_into(stream),
            None => drop(stream),
        },
    )
    .await;
}

async fn forward(shared: &Arc<Shared>, listener: &str, mut client: TcpStream, peer: SocketAddr) {
    let snapshot = shared.snapshot.load_full();
    let Some(spec) = snapshot.loaded.config.listeners.get(listener) else {
        return;
    };
    let Some(pool) = snapshot.pools.get(&spec.pool).cloned() else {
        return;
    };
    let key = pool
        .keys
        .reads_only_client_address()
        .then(|| pool.keys.read(&ClientAddress(peer.ip())))
        .flatten();
    let mut attempts_left = pool.spec.retries.attempts;
    loop {
        let now = shared.clock.now();
        let Some(index) = pool.pick_reporting(key, now, &shared.events) else {
            shared.metrics.reject(listener, "no_server");
            return;
        };
        let server = &pool.servers[index];
        let Some(slot) = server.try_acquire() else {
            shared.metrics.reject(listener, "queue_full");
            return;
        };
        let connected = tokio::time::timeout(
            pool.spec.connect_timeout(),
            TcpStream::connect(&server.spec.address),
        )
        .await;
        let mut upstream = match connected {
            Ok(Ok(s)) => s,
            _ => {
                drop(slot);
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
        drop(slot);
        return;
    }
}
