//! The error log lines the guard counts, recognised by their message and with the place they
//! name: the `upstream: "http://ADDRESS/uri"` part gives the server's address (or, for "no
//! live upstreams", the upstream group's name, since no server was chosen).
//!
//! ```text
//! 2026/12/01 12:32:03 [alert] 5676#5676: 20 worker_connections are not enough
//! 2026/12/01 12:32:03 [error] 5676#5676: *9 no live upstreams while connecting to upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://dead/", host: "h"
//! 2026/12/01 12:32:03 [error] 5676#5676: *3 upstream timed out (110: Connection timed out) while reading response header from upstream, client: ..., upstream: "http://127.0.0.1:8081/", host: "h"
//! ```

/// What one error log line reports, among what the guard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLine<'a> {
    /// "N worker_connections are not enough".
    WorkerConnectionsNotEnough,
    /// "no live upstreams", with the group's name.
    NoLiveUpstreams { upstream: Option<&'a str> },
    /// "upstream timed out", with the server's address.
    UpstreamTimedOut { upstream: Option<&'a str> },
    /// "connect() failed", with the server's address.
    ConnectFailed { upstream: Option<&'a str> },
    /// Anything else.
    Other,
}

/// Recognises a line.
pub fn classify(line: &str) -> ErrorLine<'_> {
    // The message ends where nginx's context begins (`, client: `), so a request line that
    // holds these words is not counted.
    let message = line.find(", client: ").map_or(line, |i| &line[..i]);
    let upstream = || upstream_of(line);
    if message.contains(" worker_connections are not enough") {
        ErrorLine::WorkerConnectionsNotEnough
    } else if message.contains(" no live upstreams") {
        ErrorLine::NoLiveUpstreams {
            upstream: upstream(),
        }
    } else if message.contains(" upstream timed out") {
        ErrorLine::UpstreamTimedOut {
            upstream: upstream(),
        }
    } else if message.contains(" connect() failed") {
        ErrorLine::ConnectFailed {
            upstream: upstream(),
        }
    } else {
        ErrorLine::Other
    }
}

/// The host part of the line's `upstream: "..."`: `127.0.0.1:8081` of
/// `http://127.0.0.1:8081/uri`, `unix:/run/app.sock` of `http://unix:/run/app.sock:/uri`,
/// `dead` of `http://dead/uri`; a stream line's `upstream: "10.0.0.1:5432"` as it is.
pub fn upstream_of(line: &str) -> Option<&str> {
    let start = line.rfind(", upstream: \"")? + ", upstream: \"".len();
    let rest = &line[start..];
    let value = &rest[..rest.find('"')?];
    let host = value.split_once("://").map_or(value, |(_, h)| h);
    if let Some(path) = host.strip_prefix("unix:") {
        let end = path.find(':').unwrap_or(path.len());
        return Some(&host[.."unix:".len() + end]);
    }
    let end = host.find('/').unwrap_or(host.len());
    let host = &host[..end];
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_lines_are_recognised_with_their_place() {
        let cases = [
            (
                "2026/12/01 12:32:03 [alert] 5676#5676: 20 worker_connections are not enough",
                ErrorLine::WorkerConnectionsNotEnough,
            ),
            (
                "2026/12/01 12:32:03 [alert] 5676#5676: *7 20 worker_connections are not enough while connecting to upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:1/\", host: \"h\"",
                ErrorLine::WorkerConnectionsNotEnough,
            ),
            (
                "2026/12/01 12:32:03 [error] 5676#5676: *9 no live upstreams while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /dead HTTP/1.1\", upstream: \"http://dead/dead\", host: \"127.0.0.1:18080\"",
                ErrorLine::NoLiveUpstreams {
                    upstream: Some("dead"),
                },
            ),
            (
                "2026/12/01 12:32:03 [error] 1#1: *3 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8081/\", host: \"h\"",
                ErrorLine::UpstreamTimedOut {
                    upstream: Some("127.0.0.1:8081"),
                },
            ),
            (
                "2026/12/01 12:32:03 [error] 1#1: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://unix:/run/app.sock:/x\", host: \"h\"",
                ErrorLine::ConnectFailed {
                    upstream: Some("unix:/run/app.sock"),
                },
            ),
            (
                "2026/12/01 12:32:03 [error] 1#1: *1 upstream timed out (110: Connection timed out) while connecting to upstream, client: 1.2.3.4, server: 0.0.0.0:5432, upstream: \"10.0.0.1:5432\", bytes from/to client:0/0",
                ErrorLine::UpstreamTimedOut {
                    upstream: Some("10.0.0.1:5432"),
                },
            ),
            (
                "2026/12/01 12:32:03 [notice] 1#1: signal process started",
                ErrorLine::Other,
            ),
            // The words in a request line are not the message.
            (
                "2026/12/01 12:32:03 [info] 1#1: *1 client closed connection, client: 1.2.3.4, server: , request: \"GET /no live upstreams HTTP/1.1\", upstream: \"http://app/\"",
                ErrorLine::Other,
            ),
            ("", ErrorLine::Other),
            ("garbage \"upstream: \"", ErrorLine::Other),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), want, "{line}");
        }
    }
}
