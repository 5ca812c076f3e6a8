//! Admitting client connections: the global, per-listener and per-client-IP caps. A permit
//! holds one place in each; dropping it gives them back. Refusals name their cause.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use ballast_core::config::Listener;

use crate::Shared;
use crate::fd_reserve::{Spare, out_of_descriptors};

/// How long an accept loop waits after a failed accept, so that running out of descriptors
/// costs a few wake-ups a second instead of a spinning core.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A connection that passed admission, with the listener's configuration at accept time.
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub spec: Listener,
    pub permit: Permit,
}

/// Accepts on `listener` until `stop` turns true (or the listener leaves the configuration),
/// admits each connection under the caps of the running configuration, and hands it to
/// `serve`, or to `refuse` with the cause, counted in the metrics. Both run on the accept
/// task: they should spawn.
pub async fn accept_loop(
    shared: &Arc<Shared>,
    name: &str,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    mut serve: impl FnMut(Admitted),
    mut refuse: impl FnMut(TcpStream, &'static str, Option<Spare>),
) {
    let counter = shared.connections.listener(name);
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if out_of_descriptors(&e) => {
                // A spare descriptor lets the waiting client in to hear 503 instead of hanging
                // in the backlog; without one, back off instead of spinning.
                // Linux reports EMFILE before it looks at the backlog, so the accept after the
                // release must not wait: with nobody waiting, the spare is opened again and
                // the loop goes back to waiting for a client (and for `stop`).
                if let Some(spare) = shared.fd_reserve.release_one() {
                    let waiting = std::future::poll_fn(|cx| match listener.poll_accept(cx) {
                        std::task::Poll::Pending => std::task::Poll::Ready(None),
                        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
                    })
                    .await;
                    match waiting {
                        Some(Ok((stream, _))) => {
                            shared.metrics.reject(name, "out_of_descriptors");
                            refuse(stream, "out_of_descriptors", Some(spare));
                        }
                        None => drop(spare),
                        Some(Err(_)) => {
                            drop(spare);
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                        }
                    }
                    continue;
                }
                tracing::warn!(listener = %name, "accept failed: {e}; raise the descriptor limit (ulimit -n) or lower max_connections");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(listener = %name, "accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        shared.fd_reserve.top_up();
        let snapshot = shared.snapshot.load();
        let Some(spec) = snapshot.loaded.config.listeners.get(name).cloned() else {
            return;
        };
        let caps = caps_of(&snapshot.loaded.config.global, &spec);
        drop(snapshot);
        match shared.connections.admit(&counter, peer.ip(), caps) {
            Ok(permit) => serve(Admitted {
                stream,
                peer,
                spec,
                permit,
            }),
            Err(cause) => {
                shared.metrics.reject(name, cause);
                refuse(stream, cause, None);
            }
        }
    }
}

fn caps_of(global: &ballast_core::config::Global, listener: &Listener) -> Caps {
    Caps {
        global: global.effective_max_connections(),
        listener: listener.effective_max_connections(),
        per_ip: global.max_connections_per_ip,
    }
}

/// The caps of listener `name` in the running configuration (None once it has left it).
pub fn caps(shared: &Shared, name: &str) -> Option<Caps> {
    let snapshot = shared.snapshot.load();
    let config = &snapshot.loaded.config;
    Some(caps_of(&config.global, config.listeners.get(name)?))
}

/// Open connections, counted three ways.
#[derive(Default)]
pub struct ConnectionCounts {
    global: AtomicU32,
    per_listener: Mutex<HashMap<String, Arc<AtomicU32>>>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// The caps in force, read from the running configuration at each accept.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub global: u32,
    pub listener: u32,
    pub per_ip: Option<u32>,
}

/// One admitted connection's places; released on drop.
pub struct Permit {
    counts: Arc<ConnectionCounts>,
    listener: Arc<AtomicU32>,
    ip: Option<IpAddr>,
}

impl ConnectionCounts {
    /// The counter of one listener (shared by every connection it accepts, across reloads).
    pub fn listener(&self, name: &str) -> Arc<AtomicU32> {
        let mut map = self.per_listener.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(name.to_string()).or_default())
    }

    pub fn global(&self) -> u32 {
        self.global.load(Ordering::Relaxed)
    }

    /// Takes a place for a connection from `ip` on `listener`, or says which cap refused it.
    pub fn admit(
        self: &Arc<Self>,
        listener: &Arc<AtomicU32>,
        ip: IpAddr,
        caps: Caps,
    ) -> Result<Permit, &'static str> {
        if !take(&self.global, caps.global) {
            return Err("global_limit");
        }
        if !take(listener, caps.listener) {
            self.global.fetch_sub(1, Ordering::AcqRel);
            return Err("listener_limit");
        }
        let mut tracked_ip = None;
        if let Some(max) = caps.per_ip {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= max {
                drop(map);
                listener.fetch_sub(1, Ordering::AcqRel);
                self.global.fetch_sub(1, Ordering::AcqRel);
                return Err("per_ip_limit");
            }
            *n += 1;
            tracked_ip = Some(ip);
        }
        Ok(Permit {
            counts: Arc::clone(self),
            listener: Arc::clone(listener),
            ip: tracked_ip,
        })
    }
}

fn take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::AcqRel);
        self.counts.global.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self.counts.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_by_cause_and_permits_give_places_back() {
        let counts = Arc::new(ConnectionCounts::default());
        let l = counts.listener("web");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let caps = Caps {
            global: 3,
            listener: 2,
            per_ip: Some(1),
        };
        let a = counts.admit(&l, ip, caps).unwrap();
        assert_eq!(counts.admit(&l, ip, caps).err(), Some("per_ip_limit"));
        let b = counts.admit(&l, other, caps).unwrap();
        assert_eq!(
            counts.admit(&l, "192.0.2.3".parse().unwrap(), caps).err(),
            Some("listener_limit")
        );
        let l2 = counts.listener("admin-ish");
        let c = counts
            .admit(&l2, "192.0.2.4".parse().unwrap(), caps)
            .unwrap();
        assert_eq!(
            counts.admit(&l2, "192.0.2.5".parse().unwrap(), caps).err(),
            Some("global_limit")
        );
        drop((a, b, c));
        assert_eq!(counts.global(), 0);
        assert!(counts.admit(&l, ip, caps).is_ok());
    }
}
