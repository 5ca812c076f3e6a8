//! Opening the generator's connections: TCP to the target (from the next `--source-range`
//! address when there is one), then the TLS handshake for an `https://` target. The one
//! `Stream` type both the HTTP/1.1 and the HTTP/2 client run over, and the count of
//! connections opened (so a run shows what keep-alive saved).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tally::Failure;

/// A connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Forgets a read readiness tokio kept from the last read (no syscall). Only for plain
    /// TCP: after a whole answer was read nothing can arrive before the next request, so the
    /// `read` that readiness would cost only returns WouldBlock. A TLS stream keeps its own
    /// buffered records, so it is left alone.
    pub fn clear_stale_read_readiness(&self) {
        if let Stream::Plain(s) = self {
            let _ = s.try_io(tokio::io::Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }

    /// The protocol the server chose by ALPN (`h2`, `http/1.1`), on TLS.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to `addr` over TCP, from `source` when given (bound before connecting, so a
/// loopback test can spread its clients over 127.0.0.0/8).
pub async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, Failure> {
    let stream = match source {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|_| Failure::Connect)?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|_| Failure::Connect)?;
            socket.connect(addr).await
        }
    }
    .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens the run's connections, all alike.
pub struct Dialer {
    addr: SocketAddr,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    /// For `https://`: the connector and the name checked (`None` when the setup failed:
    /// every connection then fails, and `tls::probe` has said why before the run).
    tls: Option<Option<(TlsConnector, ServerName<'static>)>>,
    opened: AtomicU64,
}

impl Dialer {
    pub fn new(
        addr: SocketAddr,
        sources: Vec<IpAddr>,
        tls: Option<Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>>,
    ) -> Dialer {
        Dialer {
            addr,
            sources,
            next_source: AtomicUsize::new(0),
            tls: tls.map(|setup| setup.map(|(config, name)| (TlsConnector::from(config), name))),
            opened: AtomicU64::new(0),
        }
    }

    /// A new connection: TCP, then TLS when the target is `https://`.
    pub async fn dial(&self) -> Result<Stream, Failure> {
        let tcp = tcp(self.addr, self.source()).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(None) => Err(Failure::Connect),
            Some(Some((connector, name))) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| Stream::Tls(Box::new(s)))
                .map_err(|_| Failure::Connect),
        }
    }

    /// TCP connections opened so far (each counted once connected, before any TLS).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The source address of the next new connection.
    fn source(&self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        self.sources.get(i % self.sources.len()).copied()
    }
}
