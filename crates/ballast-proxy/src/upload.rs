//! The request body on its way to a server, watched so that a failed exchange is blamed on the
//! side that failed. A body the client framed wrongly, abandoned, made too large or stalled is
//! the client's failure: it is answered 400, 413 or 408 and never counts against the server
//! for passive ejection. Only a failure with the client's side in order counts.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::upstream::{BoxError, ProxyBody};

/// The body has not been asked for yet, or its last frame was handed over and the server side
/// has not asked for more: any wait is on the server.
const WITH_SERVER: u8 = 0;
/// The last poll found no bytes from the client: the exchange waits on the client.
const WAITING_ON_CLIENT: u8 = 1;
const COMPLETE: u8 = 2;
const TOO_LARGE: u8 = 3;
/// The client's body ended in an error: bad chunked framing, or the connection closed or
/// reset before the body was complete.
const CLIENT_FAILED: u8 = 4;

/// How a client failed its part of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body was malformed or cut short: 400.
    BadBody,
    /// The body went over `max_body_bytes`: 413.
    TooLarge,
    /// The exchange timed out waiting for the client's body: 408.
    Stalled,
}

/// Where a request body is, shared between the body and the request path.
#[derive(Debug, Default)]
pub struct UploadProgress(AtomicU8);

impl UploadProgress {
    fn set(&self, state: u8) {
        // A verdict (complete, too large, failed) is final; only the waiting states move.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current <= WAITING_ON_CLIENT).then_some(state)
            });
    }

    /// The client's fault in an exchange that failed now, if it was the client's.
    pub fn fault(&self) -> Option<ClientFault> {
        match self.0.load(Ordering::Acquire) {
            CLIENT_FAILED => Some(ClientFault::BadBody),
            TOO_LARGE => Some(ClientFault::TooLarge),
            _ => None,
        }
    }

    /// The client's fault in an exchange that timed out now: a body error, or a body the
    /// server was waiting for when the time ran out.
    pub fn fault_at_timeout(&self) -> Option<ClientFault> {
        self.fault().or_else(|| {
            (self.0.load(Ordering::Acquire) == WAITING_ON_CLIENT).then_some(ClientFault::Stalled)
        })
    }
}

/// A request body that reports its progress to an [`UploadProgress`].
pub struct UploadBody {
    inner: ProxyBody,
    progress: Arc<UploadProgress>,
}

impl UploadBody {
    pub fn new(inner: ProxyBody, progress: Arc<UploadProgress>) -> Self {
        if inner.is_end_stream() {
            progress.set(COMPLETE);
        }
        Self { inner, progress }
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let state = match &polled {
            Poll::Pending => WAITING_ON_CLIENT,
            Poll::Ready(None) => COMPLETE,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => COMPLETE,
            Poll::Ready(Some(Ok(_))) => WITH_SERVER,
            Poll::Ready(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => TOO_LARGE,
            Poll::Ready(Some(Err(_))) => CLIENT_FAILED,
        };
        self.progress.set(state);
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.progress.set(COMPLETE);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, Limited};

    fn boxed<B>(b: B) -> ProxyBody
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        b.map_err(Into::into).boxed()
    }

    /// One data frame, then an error: a client whose connection broke mid-body.
    struct Broken(u8);

    impl Body for Broken {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0 += 1;
            Poll::Ready(Some(match self.0 {
                1 => Ok(Frame::data(Bytes::from("a"))),
                _ => Err(std::io::Error::other("reset")),
            }))
        }
    }

    /// A body whose client never sends.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_whole_body_is_complete_and_nobody_is_at_fault() {
        let progress = Arc::new(UploadProgress::default());
        let body = UploadBody::new(boxed(Full::new(Bytes::from("abc"))), Arc::clone(&progress));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        assert_eq!(progress.0.load(Ordering::Acquire), COMPLETE);
        assert_eq!(progress.fault_at_timeout(), None);
    }

    #[tokio::test]
    async fn an_oversized_body_is_the_clients() {
        let progress = Arc::new(UploadProgress::default());
        let limited = Limited::new(Full::new(Bytes::from("too long")), 3);
        let body = UploadBody::new(boxed(limited), Arc::clone(&progress));
        assert!(body.collect().await.is_err());
        assert_eq!(progress.fault(), Some(ClientFault::TooLarge));
    }

    #[tokio::test]
    async fn a_broken_or_stalled_body_is_the_clients() {
        let progress = Arc::new(UploadProgress::default());
        let body = UploadBody::new(boxed(Broken(0)), Arc::clone(&progress));
        assert!(body.collect().await.is_err());
        assert_eq!(progress.fault(), Some(ClientFault::BadBody));

        let progress = Arc::new(UploadProgress::default());
        let mut body = UploadBody::new(boxed(Silent), Arc::clone(&progress));
        assert_eq!(progress.fault_at_timeout(), None, "not asked for yet");
        let polled = tokio::time::timeout(std::time::Duration::from_millis(20), body.frame()).await;
        assert!(polled.is_err());
        assert_eq!(progress.fault_at_timeout(), Some(ClientFault::Stalled));
        assert_eq!(progress.fault(), None, "a wait is no error by itself");
    }
}
