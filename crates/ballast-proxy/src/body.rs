//! The response body sent to the client, wrapped so that the request stays counted in flight
//! until the last byte of the body, not just the headers: least-connections and the limits see
//! a streaming response as the load it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::runtime::ServerState;
use crate::upstream::{BoxError, Connection};

/// Runs when an exchange ends: frees the server's slot, returns the connection to the idle
/// pool if the body ended cleanly, and reports the outcome.
pub struct Completion {
    pub state: Arc<ServerState>,
    pub conn: Option<Connection>,
    pub on_end: Option<Box<dyn FnOnce(bool) + Send + Sync>>,
}

impl Completion {
    fn finish(mut self, clean: bool) {
        if clean && let Some(conn) = self.conn.take() {
            self.state.idle.checkin(conn);
        }
        if let Some(f) = self.on_end.take() {
            f(clean);
        }
        // Drop releases the slot.
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(false);
        }
        self.state.release();
    }
}

/// A server's response body that completes its exchange when it ends or is dropped, and is
/// cut off at the request's deadline.
pub struct TrackedBody {
    inner: Incoming,
    completion: Option<Completion>,
    deadline: Option<tokio::time::Instant>,
    /// Armed only once the body has to wait: most bodies are complete at the first poll, and a
    /// timer costs a lock on tokio's timer wheel to arm and to drop.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TrackedBody {
    pub fn new(
        inner: Incoming,
        completion: Completion,
        deadline: Option<tokio::time::Instant>,
    ) -> Self {
        Self {
            inner,
            completion: Some(completion),
            deadline,
            timer: None,
        }
    }
}

/// The response body outlived the request timeout.
#[derive(Debug, thiserror::Error)]
#[error("the response body was not complete within the request timeout")]
pub struct BodyDeadline;

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some(deadline) = this.deadline
            && this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)))
                .as_mut()
                .poll(cx)
                .is_ready()
        {
            if let Some(c) = this.completion.take() {
                c.finish(false);
            }
            return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
        }
        match &polled {
            Poll::Ready(None) => {
                if let Some(c) = this.completion.take() {
                    c.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(c) = this.completion.take() {
                    c.finish(false);
                }
            }
            _ => {}
        }
        polled.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        // A body whose end was never seen (client gone, or hyper saw is_end_stream and stopped
        // polling): clean only if the server said it had nothing more to send.
        if let Some(c) = self.completion.take() {
            let clean = self.inner.is_end_stream();
            c.finish(clean);
        }
    }
}
