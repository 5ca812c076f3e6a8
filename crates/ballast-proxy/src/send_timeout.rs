//! The client side of a response in flight: the send timeout (nginx's `send_timeout`: a
//! response that waits longer than it for the client to take more is cut) and the request
//! deadline over the whole response body, whichever side is slow.
//!
//! Neither can be enforced from inside the response body: hyper stops polling a body while the
//! client does not read (a full socket over HTTP/1.1, a zero flow-control window over HTTP/2),
//! so a timer there never fires and the server slot stays taken. A [`ResponseWatch`] is shared
//! by the body ([`SendTimed`], which notes when it last handed hyper something and whether
//! hyper came back for more) and a watcher outside it that cuts the response: the connection's
//! own timer loop over HTTP/1.1 (it closes the connection), and over HTTP/2 the stream's task,
//! wrapped by [`StreamExecutor`] (dropping it resets the stream and frees the slot, the
//! connection and its other streams go on).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::Shared;
use crate::streams::StreamPlace;

/// Stands for "none" in the millisecond fields.
const NONE: u64 = u64::MAX;

/// How long a watcher sleeps when nothing can expire sooner.
const LONG_SLEEP: Duration = Duration::from_secs(3600);

/// Why a response was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The client took nothing for the send timeout.
    SendTimeout,
    /// The request deadline passed with the response still being sent.
    RequestDeadline,
}

impl Cut {
    /// The refusal cause in the metrics.
    pub fn cause(self) -> &'static str {
        match self {
            Cut::SendTimeout => "send_timeout",
            Cut::RequestDeadline => "request_timeout",
        }
    }
}

/// The timing of one response at a time (a connection's over HTTP/1.1, a stream's over
/// HTTP/2), in milliseconds since `epoch`, lock-free so the body can note progress per frame.
pub struct ResponseWatch {
    epoch: Instant,
    /// When the whole response must be done; [`NONE`] when no request is in progress.
    deadline_ms: AtomicU64,
    /// Since when the response has waited on the client: hyper was handed the head or a frame
    /// and has not asked for the next. [`NONE`] while hyper waits on the server, or no response.
    waiting_ms: AtomicU64,
    /// The send timeout of the request in progress; 0 disables it.
    send_ms: AtomicU64,
    /// The response head has been handed to hyper: from then on the watch may cut. Before, the
    /// request path answers its own timeouts (504, 408).
    responding: AtomicBool,
}

impl Default for ResponseWatch {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            deadline_ms: AtomicU64::new(NONE),
            waiting_ms: AtomicU64::new(NONE),
            send_ms: AtomicU64::new(0),
            responding: AtomicBool::new(false),
        }
    }
}

impl ResponseWatch {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A request began: its response must be done by `request` from now (zero: no bound), and
    /// may wait on the client `send` at a time (zero: no bound).
    pub fn begin(&self, request: Duration, send: Duration) {
        let now = self.now_ms();
        let deadline = if request.is_zero() {
            NONE
        } else {
            now.saturating_add(request.as_millis() as u64)
        };
        self.send_ms
            .store(send.as_millis() as u64, Ordering::Release);
        self.waiting_ms.store(NONE, Ordering::Release);
        self.responding.store(false, Ordering::Release);
        self.deadline_ms.store(deadline, Ordering::Release);
    }

    /// Its response head went to hyper: from now on the client is waited on. A head handed
    /// over at or after the deadline is the request path's own timeout answer (504, 408): only
    /// the send timeout bounds its writing.
    pub fn responded(&self) {
        let now = self.now_ms();
        if self.deadline_ms.load(Ordering::Acquire) <= now {
            self.deadline_ms.store(NONE, Ordering::Release);
        }
        self.waiting_ms.store(now, Ordering::Release);
        self.responding.store(true, Ordering::Release);
    }

    /// hyper took a frame of the body: the client is waited on again.
    fn handed(&self) {
        self.waiting_ms.store(self.now_ms(), Ordering::Release);
    }

    fn asked_for_more(&self) {
        self.waiting_ms.store(NONE, Ordering::Release);
    }

    /// The response is over (sent, failed, or dropped): nothing is watched until the next.
    pub fn finished(&self) {
        self.deadline_ms.store(NONE, Ordering::Release);
        self.waiting_ms.store(NONE, Ordering::Release);
        self.responding.store(false, Ordering::Release);
    }

    /// A request or its response is in progress.
    pub fn in_progress(&self) -> bool {
        self.responding.load(Ordering::Acquire) || self.deadline_ms.load(Ordering::Acquire) != NONE
    }

    /// When the response in progress is cut, and why, if nothing changes.
    fn expiry(&self) -> Option<(u64, Cut)> {
        if !self.responding.load(Ordering::Acquire) {
            return None;
        }
        let deadline = self.deadline_ms.load(Ordering::Acquire);
        let waiting = self.waiting_ms.load(Ordering::Acquire);
        let send = self.send_ms.load(Ordering::Acquire);
        let stalled = (waiting != NONE && send != 0).then(|| waiting.saturating_add(send));
        match (stalled, deadline != NONE) {
            (Some(s), true) if s < deadline => Some((s, Cut::SendTimeout)),
            (_, true) => Some((deadline, Cut::RequestDeadline)),
            (Some(s), false) => Some((s, Cut::SendTimeout)),
            (None, false) => None,
        }
    }

    /// The cut due now, or else when to look again: the next expiry, never later than one
    /// send timeout from now (a wait that begins later cannot end sooner than that).
    pub fn check(&self) -> Result<Cut, Instant> {
        let now = self.now_ms();
        let send = self.send_ms.load(Ordering::Acquire);
        let mut next = if send == 0 {
            now.saturating_add(LONG_SLEEP.as_millis() as u64)
        } else {
            now.saturating_add(send)
        };
        if let Some((at, cut)) = self.expiry() {
            if at <= now {
                return Ok(cut);
            }
            next = next.min(at);
        }
        // The deadline is looked at even before the response head, which may come just before.
        let deadline = self.deadline_ms.load(Ordering::Acquire);
        if deadline > now {
            next = next.min(deadline);
        }
        Err(self.epoch + Duration::from_millis(next))
    }

    /// Resolves when the response in progress has to be cut.
    pub async fn cut(&self) -> Cut {
        loop {
            match self.check() {
                Ok(cut) => return cut,
                Err(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            }
        }
    }
}

/// A response body that tells its watch when hyper takes a frame and when it comes back for
/// more, and holds the request's place (an HTTP/2 stream's) until the body is done.
pub struct SendTimed<B> {
    inner: B,
    watch: Arc<ResponseWatch>,
    _place: Option<StreamPlace>,
}

impl<B> SendTimed<B> {
    pub fn new(inner: B, watch: Arc<ResponseWatch>, place: Option<StreamPlace>) -> Self {
        watch.responded();
        Self {
            inner,
            watch,
            _place: place,
        }
    }
}

impl<B> Body for SendTimed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        this.watch.asked_for_more();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.watch.handed(),
            Poll::Ready(_) => this.watch.finished(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for SendTimed<B> {
    fn drop(&mut self) {
        self.watch.finished();
    }
}

tokio::task_local! {
    /// The watch of the HTTP/2 stream whose task is running.
    static STREAM_WATCH: Arc<ResponseWatch>;
}

/// The watch of the HTTP/2 stream this code runs in, if it runs in one.
pub fn stream_watch() -> Option<Arc<ResponseWatch>> {
    STREAM_WATCH.try_with(Arc::clone).ok()
}

/// hyper's executor for HTTP/2 streams: each stream's task gets its own [`ResponseWatch`]
/// (reachable from the service through [`stream_watch`]) and is dropped, which resets the
/// stream and frees its server slot, when that watch says the response has to be cut.
#[derive(Clone)]
pub struct StreamExecutor {
    pub shared: Arc<Shared>,
    pub listener: Arc<str>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let watch = Arc::new(ResponseWatch::default());
        let (shared, listener) = (Arc::clone(&self.shared), Arc::clone(&self.listener));
        tokio::spawn(async move {
            let stream = STREAM_WATCH.scope(Arc::clone(&watch), stream);
            tokio::pin!(stream);
            // The stream first: its service starts the watch on the first poll, and most
            // streams end without the watcher ever arming a timer.
            tokio::select! {
                biased;
                () = &mut stream => {}
                cut = watch.cut() => shared.metrics.reject(&listener, cut.cause()),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_timeout_runs_only_while_the_client_is_waited_on() {
        let watch = ResponseWatch::default();
        assert!(watch.expiry().is_none());
        watch.begin(Duration::from_secs(20), Duration::from_secs(5));
        assert!(
            watch.expiry().is_none(),
            "the request path answers its own timeouts"
        );
        assert!(watch.in_progress());
        watch.responded();
        let (at, cut) = watch.expiry().unwrap();
        assert_eq!(cut, Cut::SendTimeout);
        assert!((5_000..6_000).contains(&at), "{at}");
        watch.asked_for_more();
        assert_eq!(watch.expiry().map(|e| e.1), Some(Cut::RequestDeadline));
        watch.finished();
        assert!(watch.expiry().is_none());
        assert!(!watch.in_progress());
    }

    #[test]
    fn a_deadline_before_the_send_timeout_wins_and_zero_disables() {
        let watch = ResponseWatch::default();
        watch.begin(Duration::from_secs(2), Duration::from_secs(60));
        watch.responded();
        assert_eq!(watch.expiry().map(|e| e.1), Some(Cut::RequestDeadline));
        watch.begin(Duration::ZERO, Duration::ZERO);
        watch.responded();
        assert!(watch.expiry().is_none());
        assert!(watch.check().is_err(), "nothing to cut");
    }

    #[test]
    fn an_expired_watch_says_so() {
        let watch = ResponseWatch::default();
        watch.begin(Duration::from_millis(20), Duration::ZERO);
        watch.responded();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(watch.check(), Ok(Cut::RequestDeadline));
    }

    #[test]
    fn a_head_handed_over_after_the_deadline_is_bound_only_by_the_send_timeout() {
        // The request path's own 504 at the deadline must still be written.
        let watch = ResponseWatch::default();
        watch.begin(Duration::from_millis(1), Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
        assert!(watch.check().is_err(), "nothing is cut before the head");
        watch.responded();
        assert_eq!(watch.expiry().map(|e| e.1), Some(Cut::SendTimeout));
    }
}
