//! One wrapper over a connection (AsyncRead + AsyncWrite) that shows every read's fresh bytes
//! to an observer and passes everything else through untouched: the framing watch on a client
//! connection and the tunnel's idle clock are both observers of the bytes read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What sees the bytes a connection reads, as they arrive (never an empty slice).
pub trait ReadObserver {
    fn observe(&mut self, fresh: &[u8]);
}

/// A connection whose reads are shown to `O`; writes, flushes and shutdowns pass straight
/// through.
pub struct Observed<T, O: ReadObserver> {
    io: T,
    observer: O,
}

impl<T, O: ReadObserver> Observed<T, O> {
    pub fn over(io: T, observer: O) -> Self {
        Self { io, observer }
    }
}

impl<T: AsyncRead + Unpin, O: ReadObserver + Unpin> AsyncRead for Observed<T, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                this.observer.observe(fresh);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin, O: ReadObserver + Unpin> AsyncWrite for Observed<T, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Keeps every slice it is shown.
    #[derive(Default)]
    struct Kept(Vec<Vec<u8>>);

    impl ReadObserver for Kept {
        fn observe(&mut self, fresh: &[u8]) {
            self.0.push(fresh.to_vec());
        }
    }

    #[tokio::test]
    async fn every_read_is_observed_once_and_writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut observed = Observed::over(near, Kept::default());
        far.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        let n = observed.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        far.write_all(b" world").await.unwrap();
        let m = observed.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..m], b" world");
        assert_eq!(observed.observer.0.concat(), b"hello world");
        assert!(observed.observer.0.iter().all(|s| !s.is_empty()));

        observed.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        // A write is not a read: nothing new observed.
        assert_eq!(observed.observer.0.concat(), b"hello world");

        // The end of the stream (a read of no bytes) is not shown to the observer.
        drop(far);
        assert_eq!(observed.read(&mut buf).await.unwrap(), 0);
        assert_eq!(observed.observer.0.len(), 2);
    }
}
