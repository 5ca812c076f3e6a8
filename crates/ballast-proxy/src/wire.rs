//! HTTP/1.1 on the wire, for the fast path (`fast`): which requests it takes, the head a
//! server is sent, the head the client is sent back, and where a response body ends. Pure
//! functions over bytes; `fast` does the I/O.
//!
//! The fast path takes only requests whose every rule is plain on the wire: HTTP/1.1, GET,
//! HEAD or OPTIONS, an origin-form target, exactly one valid Host, no body, no Upgrade, no
//! Expect, and a Connection header naming nothing but `keep-alive` or `close`. Anything else
//! (and any head httparse refuses) is [`Parsed::Other`]: the connection goes on in the hyper
//! path, which answers it by the same rules as ever (400, 405, 413, 431, WebSocket, bodies).

use std::io::Write;
use std::mem::MaybeUninit;

use crate::headers::is_hop_by_hop;
use crate::request_rules::valid_host_bytes;

/// Most request headers the fast path reads; a head with more goes to the hyper path (which
/// applies the listener's `max_headers`).
pub const MAX_HEADERS: usize = 100;

/// Most response headers read from a server.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// The methods the fast path takes: idempotent and sent without a body, so a request that
/// failed on a server may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
}

impl Method {
    fn from_wire(m: &str) -> Option<Self> {
        match m {
            "GET" => Some(Self::Get),
            "HEAD" => Some(Self::Head),
            "OPTIONS" => Some(Self::Options),
            _ => None,
        }
    }

    pub fn as_http(self) -> http::Method {
        match self {
            Self::Get => http::Method::GET,
            Self::Head => http::Method::HEAD,
            Self::Options => http::Method::OPTIONS,
        }
    }
}

/// A request head the fast path takes.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: Method,
    /// The origin-form target, path and query.
    pub target: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    /// The client asked to close the connection after this exchange.
    pub close: bool,
    /// Length of the head in the buffer.
    pub len: usize,
}

impl RequestHead<'_, '_> {
    /// The first header of that name (any case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }

    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The X-Forwarded-For values, in order.
    pub fn forwarded_for(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
    }
}

/// What the bytes at the start of a client's buffer are.
#[derive(Debug)]
pub enum Parsed<'h, 'b> {
    /// Not a whole head yet.
    Partial,
    Fast(RequestHead<'h, 'b>),
    /// A head (or bytes) for the hyper path.
    Other,
}

/// Reads the request head at the start of `buf`. A head longer than `max_len` bytes, or with
/// more headers than `headers` holds, is the hyper path's to refuse (431).
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
    max_len: usize,
) -> Parsed<'h, 'b> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) if n > max_len => return Parsed::Other,
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    let Some(method) = Method::from_wire(method) else {
        return Parsed::Other;
    };
    if !target.starts_with('/') || !target.bytes().all(target_byte) {
        return Parsed::Other;
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let mut hosts = 0;
    let mut close = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host_bytes(h.value) {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if h.value != b"0" {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    // A Connection list naming other headers: the hyper path strips them.
                    return Parsed::Other;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parsed::Other;
        }
    }
    if hosts != 1 {
        return Parsed::Other;
    }
    Parsed::Fast(RequestHead {
        method,
        target,
        headers,
        close,
        len,
    })
}

/// The bytes RFC 3986 allows in a path and query (unreserved, percent, sub-delims, `:@/?`).
fn target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b)
}

/// Writes the head a server is sent for `head`: hop-by-hop headers out, X-Forwarded-For
/// extended with the peer, X-Forwarded-Proto set, HTTP/1.1.
pub fn write_upstream_request(out: &mut Vec<u8>, head: &RequestHead, peer: &str, secure: bool) {
    out.clear();
    out.extend_from_slice(head.method.as_http().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior_forwarded = false;
    for h in head.headers {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            prior_forwarded = true;
            continue;
        }
        if is_hop_by_hop(h.name) || h.name.eq_ignore_ascii_case("x-forwarded-proto") {
            continue;
        }
        header_line(out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if prior_forwarded {
        for (i, value) in head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .enumerate()
        {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(value.value.trim_ascii());
        }
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(match secure {
        true => b"\r\nX-Forwarded-Proto: https\r\n\r\n",
        false => b"\r\nX-Forwarded-Proto: http\r\n\r\n",
    });
}

fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    /// Chunked, passed on as it is; [`ChunkedEnd`] finds its end.
    Chunked,
    /// Until the server closes: the client's connection closes after it too.
    UntilClose,
}

/// A server's final response head, rewritten for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The server will not take another request on this connection.
    pub server_closes: bool,
    /// The client's connection closes after this response (it asked, or the body runs to
    /// the server's close); the head written says `Connection: close`.
    pub client_closes: bool,
    /// Length of the server's head in its buffer.
    pub len: usize,
}

/// What the bytes at the start of a server's buffer are.
#[derive(Debug, PartialEq, Eq)]
pub enum ParsedResponse {
    Partial,
    /// A 1xx other than 101, of this length: skipped, as the hyper path does.
    Interim(usize),
    Final(ResponseHead),
    /// Not HTTP/1.x, an unexpected 101, a bad or conflicting Content-Length, or too many
    /// headers: the server failed.
    Invalid,
}

/// How the fast path answers a response.
pub struct Answer<'a> {
    /// The request was HEAD: the response has no body whatever it says.
    pub head_request: bool,
    pub client_closes: bool,
    /// The listener's served-by header and this server's name.
    pub served_by: Option<(&'a str, &'a str)>,
}

/// Reads the response head at the start of `buf` and writes the client's head into `out`:
/// hop-by-hop headers out except the chunked framing passed on, the served-by header set.
pub fn parse_response(buf: &[u8], answer: &Answer, out: &mut Vec<u8>) -> ParsedResponse {
    // Most answers have a few headers: a small array first (it is zeroed at every parse), the
    // whole allowance only for an answer that needs it.
    let mut few = [httparse::EMPTY_HEADER; 24];
    let mut many;
    let mut resp = httparse::Response::new(&mut few);
    let mut parsed = resp.parse(buf);
    if parsed == Err(httparse::Error::TooManyHeaders) {
        many = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        resp = httparse::Response::new(&mut many);
        parsed = resp.parse(buf);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return ParsedResponse::Partial,
        Err(_) => return ParsedResponse::Invalid,
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return ParsedResponse::Invalid;
    };
    if status == 101 {
        return ParsedResponse::Invalid;
    }
    if (100..200).contains(&status) {
        return ParsedResponse::Interim(len);
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = version == 0;
    // Headers the Connection header names, hop-by-hop for this connection only.
    let mut named: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (parsed, length) {
                (None, _) => return ParsedResponse::Invalid,
                (Some(n), Some(m)) if n != m => return ParsedResponse::Invalid,
                (Some(n), _) => length = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            // Chunked counts only as the last coding (RFC 9112 §6.3).
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    // An HTTP/1.0 server keeps the connection only when it says so.
                    if version == 0 {
                        close = false;
                    }
                } else if !token.is_empty() {
                    named.push(token);
                }
            }
        }
    }
    let framing = if answer.head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if encoded {
        match chunked {
            true => Framing::Chunked,
            false => Framing::UntilClose,
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let client_closes = answer.client_closes || framing == Framing::UntilClose;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    // The rest of the status line as the server wrote it (httparse has checked it is
    // `HTTP/1.x code reason`): copied, not formatted again.
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(0);
    let rest = buf.get(9..line_end).unwrap_or(b"").trim_ascii_end();
    if rest.is_empty() {
        let _ = write!(out, "{status}");
    } else {
        out.extend_from_slice(rest);
    }
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        // The body is passed on as it came, so its transfer codings are named as they were.
        let passed_framing = h.name.eq_ignore_ascii_case("transfer-encoding") && encoded;
        if (is_hop_by_hop(h.name) && !passed_framing)
            || named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
            // A coded body's length is the coding's, not the Content-Length's.
            || (encoded && h.name.eq_ignore_ascii_case("content-length"))
            || answer
                .served_by
                .is_some_and(|(name, _)| name.eq_ignore_ascii_case(h.name))
        {
            continue;
        }
        header_line(out, h.name.as_bytes(), h.value);
    }
    if let Some((name, value)) = answer.served_by {
        header_line(out, name.as_bytes(), value.as_bytes());
    }
    if client_closes {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ParsedResponse::Final(ResponseHead {
        status,
        framing,
        server_closes: close || framing == Framing::UntilClose,
        client_closes,
        len,
    })
}

/// A chunked body's syntax was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the chunk size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Past the size, before the line's CR (extensions).
    Extension {
        size: u64,
    },
    /// The CR of the size line seen.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    /// The final CR seen.
    EndLf,
    Done,
}

/// Finds where a chunked body ends in the bytes as they arrive, without changing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedEnd {
    state: Chunk,
}

impl Default for ChunkedEnd {
    fn default() -> Self {
        Self {
            state: Chunk::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkedEnd {
    /// Feeds the next bytes of the body. `Some(n)`: the body ends after the first `n` of them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                Chunk::Size { value, digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => Chunk::Size {
                        value: value * 16 + u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(BadChunk),
                    None if digits == 0 => return Err(BadChunk),
                    None => match b {
                        b'\r' => Chunk::SizeLf { size: value },
                        b';' | b' ' | b'\t' => Chunk::Extension { size: value },
                        _ => return Err(BadChunk),
                    },
                },
                Chunk::Extension { size } => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' => return Err(BadChunk),
                    _ => Chunk::Extension { size },
                },
                Chunk::SizeLf { size } => match b {
                    b'\n' if size == 0 => Chunk::TrailerStart,
                    b'\n' => Chunk::Data(size),
                    _ => return Err(BadChunk),
                },
                Chunk::Data(left) => {
                    let take = (left as usize).min(bytes.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    };
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    _ => return Err(BadChunk),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(BadChunk),
                },
                Chunk::TrailerStart => match b {
                    b'\r' => Chunk::EndLf,
                    b'\n' => return Err(BadChunk),
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerLine => match b {
                    b'\n' => Chunk::TrailerStart,
                    _ => Chunk::TrailerLine,
                },
                Chunk::EndLf => match b {
                    b'\n' => {
                        self.state = Chunk::Done;
                        return Ok(Some(i + 1));
                    }
                    _ => return Err(BadChunk),
                },
                Chunk::Done => return Ok(Some(i)),
            };
            i += 1;
        }
        Ok(match self.state {
            Chunk::Done => Some(0),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(head: &[u8]) -> Option<(Method, String, bool)> {
        let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        match parse_request(head, &mut storage, 8192) {
            Parsed::Fast(h) => Some((h.method, h.target.to_string(), h.close)),
            Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(head)),
            Parsed::Other => None,
        }
    }

    #[test]
    fn only_plain_bodiless_requests_take_the_fast_path() {
        assert_eq!(
            classify(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some((Method::Get, "/a?b=1".into(), false))
        );
        assert_eq!(
            classify(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            Some((Method::Head, "/".into(), true))
        );
        assert!(classify(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").is_some());
        for other in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /<x> HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert_eq!(classify(other), None, "{}", String::from_utf8_lossy(other));
        }
        let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHo", &mut storage, 8192),
            Parsed::Partial
        ));
        let long = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789\r\n\r\n";
        assert!(matches!(
            parse_request(long, &mut storage, 20),
            Parsed::Other
        ));
        assert!(matches!(
            parse_request(long, &mut storage[..1], 8192),
            Parsed::Other
        ));
    }

    #[test]
    fn the_server_gets_no_hop_by_hop_headers_and_the_forwarded_chain() {
        let raw = b"GET /p HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-For: 10.0.0.1\r\nX-Kept: 1\r\n\r\n";
        let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let Parsed::Fast(head) = parse_request(raw, &mut storage, 8192) else {
            panic!("fast");
        };
        let mut out = Vec::new();
        write_upstream_request(&mut out, &head, "192.0.2.7", true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p HTTP/1.1\r\nHost: a.example\r\nX-Kept: 1\r\nX-Forwarded-For: 203.0.113.1, 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    fn response(raw: &[u8], answer: &Answer) -> (ParsedResponse, String) {
        let mut out = Vec::new();
        let parsed = parse_response(raw, answer, &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    const PLAIN: Answer = Answer {
        head_request: false,
        client_closes: false,
        served_by: None,
    };

    #[test]
    fn the_clients_head_keeps_the_framing_and_loses_hop_by_hop_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Served-By: spoof\r\n\r\nok";
        let answer = Answer {
            served_by: Some(("x-served-by", "b1")),
            ..PLAIN
        };
        let (parsed, head) = response(raw, &answer);
        let ParsedResponse::Final(h) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(h.len, raw.len() - 2);
        assert!(!h.server_closes && !h.client_closes);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-served-by: b1\r\n\r\n"
        );

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
        let (parsed, head) = response(chunked, &PLAIN);
        assert!(matches!(
            parsed,
            ParsedResponse::Final(ResponseHead {
                framing: Framing::Chunked,
                ..
            })
        ));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );

        let until_close = b"HTTP/1.0 200 OK\r\n\r\n";
        let (parsed, head) = response(until_close, &PLAIN);
        let ParsedResponse::Final(h) = parsed else {
            panic!()
        };
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(h.server_closes && h.client_closes);
        assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");

        let head_request = Answer {
            head_request: true,
            ..PLAIN
        };
        for (raw, answer) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..],
                &head_request,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", &PLAIN),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                &PLAIN,
            ),
        ] {
            let (parsed, _) = response(raw, answer);
            assert!(
                matches!(
                    parsed,
                    ParsedResponse::Final(ResponseHead {
                        framing: Framing::Empty,
                        ..
                    })
                ),
                "{parsed:?}"
            );
        }
        assert_eq!(
            response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", &PLAIN).0,
            ParsedResponse::Interim(25)
        );
        for invalid in [
            &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert_eq!(response(invalid, &PLAIN).0, ParsedResponse::Invalid);
        }
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-", &PLAIN).0,
            ParsedResponse::Partial
        );
        let closing = Answer {
            client_closes: true,
            ..PLAIN
        };
        let (_, head) = response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &closing);
        assert!(head.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn many_response_headers_are_read_with_the_larger_allowance() {
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..60 {
            raw.extend_from_slice(format!("Set-Cookie: c{i}=1\r\n").as_bytes());
        }
        raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let (parsed, head) = response(&raw, &PLAIN);
        assert!(matches!(parsed, ParsedResponse::Final(_)));
        assert_eq!(head.matches("Set-Cookie").count(), 60);
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_however_it_is_split() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
        let mut whole = ChunkedEnd::default();
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1");
        assert_eq!(whole.feed(&with_next), Ok(Some(body.len())));
        for split in 1..body.len() {
            let mut end = ChunkedEnd::default();
            assert_eq!(end.feed(&body[..split]), Ok(None), "split at {split}");
            assert_eq!(end.feed(&body[split..]), Ok(Some(body.len() - split)));
        }
        let mut bytewise = ChunkedEnd::default();
        for (i, b) in body.iter().enumerate() {
            let fed = bytewise.feed(std::slice::from_ref(b));
            assert_eq!(fed, Ok((i == body.len() - 1).then_some(1)), "byte {i}");
        }
        assert_eq!(ChunkedEnd::default().feed(b"0\r\n\r\n"), Ok(Some(5)));
        for bad in [
            &b"x\r\n"[..],
            b"4\r\nWikiX\r\n",
            b"\r\n",
            b"4\nWiki",
            b"10000000000000000\r\n",
            b"0\r\n\n",
        ] {
            let mut end = ChunkedEnd::default();
            assert_eq!(
                end.feed(bad),
                Err(BadChunk),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
