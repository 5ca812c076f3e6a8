//! Watching HTTP/1.1 request framing on the raw bytes of a client connection, to refuse a
//! request that carries both Content-Length and Transfer-Encoding.
//!
//! hyper handles such a request as RFC 9112 allows (it drops Content-Length, reads chunked and
//! closes the connection), so nothing ambiguous reaches a server; but the header is gone by
//! the time the request is seen, and ballast's rule is to refuse it outright. This watcher sees
//! each request head as hyper reads it and records one verdict per head. It follows the
//! connection exactly through heads and Content-Length bodies; after a chunked body or an
//! HTTP/2 preface it stops (verdicts then read as "not ambiguous", and hyper's own handling
//! applies).
//!
//! It also notes when the first byte of a request head arrived, so the connection's
//! `header_read` bound runs from there and not from the end of the previous response (the
//! time in between is `idle`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::observed::{Observed, ReadObserver};

/// Longest header line tracked; longer lines are cut (hyper refuses such heads anyway).
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Head { first_line: bool },
    Body(u64),
    Stopped,
}

/// The pure framing tracker.
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    line: Vec<u8>,
    content_length: Option<u64>,
    transfer_encoding: bool,
    verdicts: VecDeque<bool>,
    /// When the first byte of the head being read arrived; None between heads.
    head_started: Option<Instant>,
}

impl Default for FramingWatch {
    fn default() -> Self {
        Self {
            state: State::Head { first_line: true },
            line: Vec::new(),
            content_length: None,
            transfer_encoding: false,
            verdicts: VecDeque::new(),
            head_started: None,
        }
    }
}

impl FramingWatch {
    /// Feeds bytes in the order they arrived.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Body(remaining) => {
                    let n = (remaining as usize).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::Head { first_line: true }
                    } else {
                        State::Body(left)
                    };
                }
                State::Head { first_line } => {
                    if self.head_started.is_none() {
                        self.head_started = Some(Instant::now());
                    }
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        let room = MAX_LINE.saturating_sub(self.line.len());
                        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
                        return;
                    };
                    let room = MAX_LINE.saturating_sub(self.line.len());
                    self.line.extend_from_slice(&bytes[..end.min(room)]);
                    bytes = &bytes[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.end_of_line(line, first_line);
                }
            }
        }
    }

    fn end_of_line(&mut self, line: &[u8], first_line: bool) {
        if first_line {
            if line.is_empty() {
                self.head_started = None;
                return; // stray CRLF between requests
            }
            if line.starts_with(b"PRI * HTTP/2") {
                self.state = State::Stopped;
                return;
            }
            self.state = State::Head { first_line: false };
            return;
        }
        if line.is_empty() {
            self.head_started = None;
            self.verdicts
                .push_back(self.content_length.is_some() && self.transfer_encoding);
            self.state = if self.transfer_encoding {
                State::Stopped
            } else {
                match self.content_length {
                    Some(n) if n > 0 => State::Body(n),
                    _ => State::Head { first_line: true },
                }
            };
            self.content_length = None;
            self.transfer_encoding = false;
            return;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            // An unparsable length is hyper's to refuse; we only need to know it was there.
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        }
    }

    /// The verdict for the next request head: whether it had both framing headers.
    pub fn next_verdict(&mut self) -> bool {
        self.verdicts.pop_front().unwrap_or(false)
    }

    /// Stops watching: the connection has been upgraded and carries another protocol's bytes
    /// (a WebSocket), which are not request heads.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
        self.line = Vec::new();
        self.head_started = None;
    }

    /// When the head being read began to arrive; None between heads, and once the watch has
    /// stopped (after a chunked body, on HTTP/2).
    pub fn head_started(&self) -> Option<Instant> {
        if self.state == State::Stopped {
            return None;
        }
        self.head_started
    }
}

/// A client connection whose reads pass through a [`FramingWatch`].
pub type Watched<T> = Observed<T, Arc<Mutex<FramingWatch>>>;

impl<T> Watched<T> {
    /// Wraps `inner`; the watch is shared with whoever reads the verdicts.
    pub fn new(inner: T) -> (Self, Arc<Mutex<FramingWatch>>) {
        let watch = Arc::new(Mutex::new(FramingWatch::default()));
        (Observed::over(inner, Arc::clone(&watch)), watch)
    }
}

impl ReadObserver for Arc<Mutex<FramingWatch>> {
    fn observe(&mut self, fresh: &[u8]) {
        self.lock().unwrap_or_else(|p| p.into_inner()).feed(fresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(chunks: &[&[u8]]) -> Vec<bool> {
        let mut w = FramingWatch::default();
        for c in chunks {
            w.feed(c);
        }
        w.verdicts.into_iter().collect()
    }

    #[test]
    fn follows_heads_and_length_delimited_bodies() {
        let stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nx!GET /y HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(verdicts(&[stream]), vec![false, false, true]);
        // The same bytes split anywhere give the same verdicts.
        for cut in 1..stream.len() {
            assert_eq!(
                verdicts(&[&stream[..cut], &stream[cut..]]),
                vec![false, false, true],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_body_that_looks_like_headers_is_not_read_as_one() {
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(verdicts(&[&stream]), vec![false, false]);
    }

    #[test]
    fn notes_when_a_head_begins_and_forgets_it_when_it_ends() {
        let mut w = FramingWatch::default();
        assert_eq!(w.head_started(), None);
        w.feed(b"GET / HTTP/1.1\r\nHost");
        let began = w.head_started().expect("a head is being read");
        w.feed(b": a\r\n\r\n");
        assert_eq!(w.head_started(), None, "the head is complete");
        w.feed(b"G");
        assert!(w.head_started().is_some_and(|t| t >= began));
        w.feed(b"ET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        w.feed(b"GET /next HTTP/1.1\r\n");
        assert_eq!(w.head_started(), None, "stopped after a chunked body");
    }

    #[test]
    fn stops_after_chunked_bodies_and_http2() {
        assert_eq!(
            verdicts(&[
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nContent-Length: 3\r\n"
            ]),
            vec![false]
        );
        assert_eq!(
            verdicts(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]),
            Vec::<bool>::new()
        );
        let mut w = FramingWatch::default();
        assert!(!w.next_verdict(), "no verdict reads as not ambiguous");
    }
}
