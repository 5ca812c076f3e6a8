//! A minimal HTTP/1.1 client connection over a raw `TcpStream` (or TLS over it), for the generator's hot path:
//! it writes a request already serialised (one `write_all`), reads the response head with
//! `httparse`, notes the status, the attribution header and whether the connection stays
//! open, and skips the body (Content-Length, chunked, or to the end of the stream) without
//! keeping it. One buffer per connection, reused; no allocation per request but the backend's
//! name. hyper's client does far more (bodies as streams, pipelining guards, a task per
//! connection), which costs a quarter of the rate on one core.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connect::Stream;
use crate::tally::Failure;

/// A response head's headers beyond this many make the response `Broken`.
const MAX_HEADERS: usize = 96;
/// A response head longer than this is `Broken`.
const MAX_HEAD: usize = 64 * 1024;

/// What a response said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub backend: Option<String>,
    /// False when the server closes the connection after it (or the body ran to the end).
    pub keep_alive: bool,
}

/// One keep-alive connection.
pub struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    /// Bytes of `buf` read and not yet consumed: `buf[..filled]`.
    filled: usize,
    /// Whether the current exchange has read anything: a kept-alive connection that breaks
    /// before a byte of its answer was closed by the server, and the request may be retried.
    answered_any: bool,
}

impl Connection {
    /// A connection over a stream already open (`connect::Dialer::dial`).
    pub fn over(stream: Stream) -> Connection {
        Connection {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
            answered_any: false,
        }
    }

    /// Sends `request` (a whole serialised request) and reads its response. `head_only`: the
    /// request was a HEAD, whose response has no body whatever its headers say.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        served_by: &str,
        head_only: bool,
    ) -> Result<Answer, Failure> {
        self.answered_any = self.filled > 0;
        if self.filled == 0 {
            // The last answer was read to its end and nothing else can arrive before this
            // request goes out, so the read readiness tokio kept from it is stale: clearing it
            // saves the `read` that would only return WouldBlock, one of the four syscalls a
            // request costs. A close or reset from the server raises a new event.
            self.stream.clear_stale_read_readiness();
        }
        self.stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Broken)?;
        // A TLS stream may hold the last record until flushed; on TCP this is a no-op.
        self.stream.flush().await.map_err(|_| Failure::Broken)?;
        loop {
            let head = self.read_head(served_by).await?;
            // 1xx (100 Continue, 103 Early Hints) precede the real answer.
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let no_body = head_only || head.status == 204 || head.status == 304;
            let keep_alive = if no_body {
                head.keep_alive
            } else if head.chunked {
                self.skip_chunked().await?;
                head.keep_alive
            } else if let Some(length) = head.content_length {
                self.skip(length).await?;
                head.keep_alive
            } else {
                // No length: the body runs to the end of the stream.
                self.skip_to_end().await?;
                false
            };
            return Ok(Answer {
                status: head.status,
                backend: head.backend,
                keep_alive,
            });
        }
    }

    /// Whether the last exchange read any byte of an answer.
    pub fn answered_any(&self) -> bool {
        self.answered_any
    }

    /// Reads more into the buffer; `Broken` at the end of the stream.
    async fn fill(&mut self) -> Result<(), Failure> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_HEAD * 4 {
                return Err(Failure::Broken);
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.stream.read(&mut self.buf[self.filled..]).await {
            Ok(0) | Err(_) => Err(Failure::Broken),
            Ok(n) => {
                self.filled += n;
                self.answered_any = true;
                Ok(())
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    async fn read_head(&mut self, served_by: &str) -> Result<Head, Failure> {
        loop {
            if self.filled > 0 {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf[..self.filled]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = Head::of(&response, served_by);
                        self.consume(len);
                        return head;
                    }
                    Ok(httparse::Status::Partial) if self.filled < MAX_HEAD => {}
                    _ => return Err(Failure::Broken),
                }
            }
            self.fill().await?;
        }
    }

    async fn skip(&mut self, mut length: u64) -> Result<(), Failure> {
        loop {
            let here = (self.filled as u64).min(length) as usize;
            self.consume(here);
            length -= here as u64;
            if length == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn skip_to_end(&mut self) -> Result<(), Failure> {
        loop {
            self.filled = 0;
            match self.stream.read(&mut self.buf[..]).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(_) => return Err(Failure::Broken),
            }
        }
    }

    /// One line (without its CRLF) from the buffer, reading as needed.
    async fn line(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(at) = self.buf[..self.filled]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.buf[..at].to_vec();
                self.consume(at + 2);
                return Ok(line);
            }
            if self.filled >= MAX_HEAD {
                return Err(Failure::Broken);
            }
            self.fill().await?;
        }
    }

    async fn skip_chunked(&mut self) -> Result<(), Failure> {
        loop {
            let line = self.line().await?;
            let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|t| u64::from_str_radix(t.trim(), 16).ok())
                .ok_or(Failure::Broken)?;
            if size == 0 {
                // Trailers, to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(());
            }
            self.skip(size.saturating_add(2)).await?;
        }
    }
}

/// What the head says about the body and the connection.
struct Head {
    status: u16,
    backend: Option<String>,
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
}

impl Head {
    fn of(response: &httparse::Response<'_, '_>, served_by: &str) -> Result<Head, Failure> {
        let status = response.code.ok_or(Failure::Broken)?;
        // HTTP/1.0 closes unless it says keep-alive; 1.1 keeps unless it says close.
        let mut keep_alive = response.version == Some(1);
        let mut head = Head {
            status,
            backend: None,
            content_length: None,
            chunked: false,
            keep_alive,
        };
        for h in response.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case(served_by) {
                head.backend = std::str::from_utf8(h.value)
                    .ok()
                    .map(|v| v.trim().to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                if head.content_length.is_none() {
                    return Err(Failure::Broken);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = h
                    .value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        head.keep_alive = keep_alive;
        Ok(head)
    }
}

/// Serialises one request: the request line, `Host`, the plan's headers, a `Content-Length`
/// when there is a body (or the method usually has one), the body.
pub fn serialise(
    method: &str,
    path: &str,
    authority: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A plain TCP connection to `addr` (a run opens its own with `connect::Dialer`).
    async fn open(addr: SocketAddr) -> Connection {
        Connection::over(Stream::Plain(
            crate::connect::tcp(addr, None).await.unwrap(),
        ))
    }
    use tokio::net::TcpListener;

    /// A server writing `responses` one after the other on the first connection, after reading
    /// whatever arrives.
    async fn serve(responses: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            for r in responses {
                let _ = conn.read(&mut buf).await;
                conn.write_all(r).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn lengths_chunks_and_closes_are_read_to_the_end_of_each_response() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Served-By: a\r\n\r\nok\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\nx-served-by: b\r\n\r\n4;x=1\r\nabcd\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nX-Served-By: c\r\n\r\nto the end",
        ])
        .await;
        let mut c = open(addr).await;
        let req = serialise("GET", "/", "x", &[], b"");
        let a = c.exchange(&req, "X-Served-By", false).await.unwrap();
        assert_eq!(
            a,
            Answer {
                status: 200,
                backend: Some("a".into()),
                keep_alive: true
            }
        );
        let b = c.exchange(&req, "X-Served-By", false).await.unwrap();
        assert_eq!((b.status, b.backend.as_deref()), (502, Some("b")));
        let n = c.exchange(&req, "X-Served-By", false).await.unwrap();
        assert_eq!((n.status, n.keep_alive), (204, true));
        let d = c.exchange(&req, "X-Served-By", false).await.unwrap();
        assert_eq!((d.status, d.keep_alive), (200, false));
    }

    #[tokio::test]
    async fn garbage_and_a_cut_body_are_broken() {
        let addr = serve(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]).await;
        let mut c = open(addr).await;
        let req = serialise("GET", "/", "x", &[], b"");
        assert_eq!(c.exchange(&req, "X", false).await, Err(Failure::Broken));
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]).await;
        let mut c = open(addr).await;
        assert_eq!(c.exchange(&req, "X", false).await, Err(Failure::Broken));
    }

    #[test]
    fn requests_are_serialised_with_host_headers_and_length() {
        let r = serialise(
            "POST",
            "/a?b=1",
            "h:8",
            &[("X-Tenant".into(), "t1".into())],
            b"{}",
        );
        assert_eq!(
            r,
            b"POST /a?b=1 HTTP/1.1\r\nHost: h:8\r\nX-Tenant: t1\r\nContent-Length: 2\r\n\r\n{}"
        );
        assert!(
            !String::from_utf8(serialise("GET", "/", "h", &[], b""))
                .unwrap()
                .contains("Content-Length")
        );
    }
}
