//! Building a model from a foreign file: the configuration plus, for each model path, the span
//! of the directive it came from, so findings point at the right line.

use std::ops::Range;

use ballast_core::Config;
use ballast_core::config::{Listener, ListenerTimeouts, Protocol, Server};
use ballast_core::source::SpanMap;

#[derive(Debug, Default)]
pub struct Builder {
    pub config: Config,
    pub spans: SpanMap,
}

impl Builder {
    /// Records that the model value at `path` was written at `span`.
    pub fn at(&mut self, path: impl Into<String>, span: Range<usize>) {
        // The directive is both key and value here; one map entry locates it.
        self.spans.insert(path.into(), None, span);
    }
}

/// `base.field`, sized once: imports build tens of thousands of these paths, and `format!`
/// grows its buffer step by step.
pub fn field(base: &str, field: &str) -> String {
    let mut s = String::with_capacity(base.len() + 1 + field.len());
    s.push_str(base);
    s.push('.');
    s.push_str(field);
    s
}

/// `base.list[i]` (`pools.app.servers[3]`), built like [`field`].
pub fn indexed(base: &str, list: &str, i: usize) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(i);
    let mut s = String::with_capacity(base.len() + list.len() + digits.len() + 3);
    s.push_str(base);
    s.push('.');
    s.push_str(list);
    s.push('[');
    s.push_str(digits);
    s.push(']');
    s
}

/// A name safe as a model key: foreign names may hold any character, and model paths index
/// lists with `[i]`. Dots are kept, so names appear as written (`app.v1`); a path lookup is
/// an exact match, and its fallback to a parent only ever lands on an enclosing entry.
pub fn model_name(name: &str) -> String {
    name.replace(['[', ']'], "_")
}

/// A listener with the settings HAProxy and nginx have no counterpart for left unset.
pub fn listener(
    address: String,
    protocol: Protocol,
    max_connections: Option<u32>,
    pool: String,
    timeouts: ListenerTimeouts,
) -> Listener {
    Listener {
        address,
        protocol,
        max_connections,
        pool,
        timeouts,
        trusted_proxies: Vec::new(),
        served_by_header: None,
        max_header_bytes: None,
        max_headers: None,
        max_body_bytes: None,
        tls: None,
        max_concurrent_streams: None,
    }
}

/// A server as a bare `server ADDRESS` line means it: weight 1, no limit, no queue.
pub fn server(name: String, address: String) -> Server {
    Server {
        name,
        address,
        weight: 1,
        max_connections: None,
        max_queue: 0,
        queue_timeout: None,
        backup: false,
        slow_start: None,
        down: false,
        id: None,
        ring_key: None,
    }
}

/// A server address as the model writes it, HOST:PORT, with port 80 when none is written
/// (HAProxy would reuse the client's destination port, nginx uses 80).
pub fn with_default_port(address: &str) -> String {
    if ballast_core::load::valid_host_port(address) {
        address.to_string()
    } else if address.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{address}]:80")
    } else {
        format!("{address}:80")
    }
}

/// When an address is a template's placeholder (`<pg-node1-ip>:5432`, `{ip_address}`,
/// `some-ip:some-port`), what to do about it; `None` for an address that may be real.
pub fn placeholder(address: &str) -> Option<&'static str> {
    let bracketed = address.contains(['<', '>', '{', '}']);
    let filler = address.split([':', '.']).any(|part| {
        matches!(
            part,
            "some-ip" | "some-port" | "your-ip" | "ip-address" | "hostname-here"
        )
        // `192.168.122.XXX`: a part written as X's stands for digits to fill in.
        || (part.len() >= 2 && part.chars().all(|c| c == 'X' || c == 'x'))
    });
    (bracketed || filler).then_some(
        "put the real address (or a name your resolver knows) in place of the placeholder",
    )
}
