//! The request places of HTTP/2 streams. Over HTTP/1.1 a connection carries one request at a
//! time, so the connection caps (global, listener, per client IP) bound requests too; one
//! HTTP/2 connection carries many at once. Each stream therefore takes a place under the same
//! caps, as a connection does: the first stream in progress uses its connection's own place,
//! every further one admits a place of its own, or is refused with 503.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::Shared;
use crate::admission::{Permit, caps};

/// The request places of one HTTP/2 connection.
pub struct ConnectionStreams {
    /// The connection's own place is lent to one stream at a time.
    own_place_free: Arc<AtomicBool>,
    listener: Arc<AtomicU32>,
    listener_name: String,
    ip: IpAddr,
}

/// One stream's place, given back when it is dropped: the connection's own place (lent) or
/// one admitted for this stream (its permit).
pub struct StreamPlace {
    lent: Option<Arc<AtomicBool>>,
    _permit: Option<Permit>,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        if let Some(free) = &self.lent {
            free.store(true, Ordering::Release);
        }
    }
}

impl ConnectionStreams {
    pub fn new(shared: &Shared, listener: &str, ip: IpAddr) -> Self {
        Self {
            own_place_free: Arc::new(AtomicBool::new(true)),
            listener: shared.connections.listener(listener),
            listener_name: listener.to_string(),
            ip,
        }
    }

    /// A place for a stream that begins, or the cap that refuses it.
    pub fn take(&self, shared: &Shared) -> Result<StreamPlace, &'static str> {
        if self.own_place_free.swap(false, Ordering::AcqRel) {
            return Ok(StreamPlace {
                lent: Some(Arc::clone(&self.own_place_free)),
                _permit: None,
            });
        }
        let Some(caps) = caps(shared, &self.listener_name) else {
            return Err("listener_removed");
        };
        shared
            .connections
            .admit(&self.listener, self.ip, caps)
            .map(|permit| StreamPlace {
                lent: None,
                _permit: Some(permit),
            })
    }
}
