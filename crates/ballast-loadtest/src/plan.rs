//! What a run sends: the target, the load model (open: requests at an arrival rate whatever
//! the answers take; closed: N connections each waiting for its answer), when it stops, the
//! warm-up left out of the figures, the request itself and how a response names its backend.
//! Also the open model's schedule of intended send times, pure and seeded.

use std::net::IpAddr;
use std::time::Duration;

use ballast_core::traffic::{Arrival, ArrivalKind, Traffic};
use ballast_sim::model::Arrivals;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::requests::KeySpec;

/// Where the requests go: an `http://` or `https://` URL on loopback or elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: each connection is TLS (`tls`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path and query, `/` when the URL has none.
    pub path: String,
    /// The `Host` header: the URL's authority.
    pub authority: String,
}

impl Target {
    /// Parses `http://host[:port][/path]` or `https://...`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!(
                "`{url}` is not an http:// or https:// URL; write it like http://127.0.0.1:8080/"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("`{port}` in `{url}` is not a port number"))?;
                (host.trim_matches(['[', ']']).to_string(), port)
            }
            _ => (
                authority.trim_matches(['[', ']']).to_string(),
                if tls { 443 } else { 80 },
            ),
        };
        Ok(Target {
            tls,
            host,
            port,
            path: path.to_string(),
            authority: authority.to_string(),
        })
    }
}

/// The load model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Requests at `rate` per second (evenly spaced or Poisson), each timed from the moment it
    /// was meant to be sent: a stalled server shows as latency, never as a lower rate
    /// (no coordinated omission). At most `max_connections` are open at once; a request that
    /// finds none free waits for one, and the wait counts in its latency.
    Open {
        rate: f64,
        arrival: ArrivalKind,
        max_connections: u32,
    },
    /// `connections` connections, each sending its next request when the last one answered.
    Closed { connections: u32 },
}

/// When the run ends (the warm-up counts towards neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub load: Load,
    pub stop: Stop,
    /// Sent but left out of the figures, before the measured part.
    pub warmup: Duration,
    pub method: String,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The response header naming the backend (`X-Served-By`).
    pub served_by: String,
    /// A request with no answer by then counts as a timeout.
    pub timeout: Duration,
    /// Seed of the arrival gaps, the URL draws and the key values.
    pub seed: u64,
    /// Several URLs on the same host and port, each drawn with its weight (empty: `target`
    /// alone).
    pub urls: Vec<(Target, f64)>,
    /// A hash-key value in each request, from the simulator's key model.
    pub key: Option<KeySpec>,
    /// Source addresses new connections bind to, in turn (empty: the system's choice).
    pub sources: Vec<IpAddr>,
    /// How requests travel: HTTP/1.1 or HTTP/2, kept-alive connections or one per request,
    /// and the TLS checks of an `https://` target.
    pub transport: Transport,
}

/// The wire protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, one request at a time on each connection.
    #[default]
    Http1,
    /// HTTP/2: prior knowledge on `http://` (h2c), ALPN `h2` on `https://`. Each connection
    /// carries up to `streams` requests at once.
    Http2 { streams: u32 },
}

/// How requests travel (the default: HTTP/1.1 keep-alive, certificates checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub protocol: Protocol,
    /// A new connection for every request, closed after its answer (HTTP/1.1 sends
    /// `Connection: close`): the cost of connection setup (and of a TLS handshake) in every
    /// request, as clients without keep-alive see it.
    pub connection_per_request: bool,
    pub tls: TlsChecks,
}

/// How an `https://` target's certificate is judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsChecks {
    /// Accept any certificate (self-signed, expired, another name): no check at all.
    pub insecure: bool,
    /// Trust the CA certificates (PEM) in this file instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Mutual TLS: the client's certificate chain (PEM), sent when the server asks for one.
    pub client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM); `client_cert`'s file when it holds both.
    pub client_key: Option<std::path::PathBuf>,
}

impl Plan {
    /// Checks the numbers make a run.
    pub fn validate(&self) -> Result<(), String> {
        match self.load {
            Load::Open {
                rate,
                max_connections,
                ..
            } => {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(format!(
                        "the rate is {rate}: give requests per second above 0, e.g. --rate 1000"
                    ));
                }
                if max_connections == 0 {
                    return Err("--max-connections is 0: allow at least one connection".into());
                }
            }
            Load::Closed { connections } => {
                if connections == 0 {
                    return Err("--connections is 0: use at least one".into());
                }
            }
        }
        if let Protocol::Http2 { streams: 0 } = self.transport.protocol {
            return Err("--streams is 0: allow at least one stream per connection".into());
        }
        if let Some((other, _)) = self.urls.iter().find(|(t, _)| {
            (t.host.as_str(), t.port) != (self.target.host.as_str(), self.target.port)
        }) {
            return Err(format!(
                "every URL must be on the same host and port (the balancer): {}:{} is not {}:{}",
                other.host, other.port, self.target.host, self.target.port
            ));
        }
        if let Some(k) = &self.key {
            if k.cardinality == 0 {
                return Err("--key-cardinality is 0: give at least one value".into());
            }
            if !(0.0..1.0).contains(&k.missing) {
                return Err(format!(
                    "--key-missing {} must be a fraction below 1, e.g. 5%",
                    k.missing
                ));
            }
        }
        match self.stop {
            Stop::After(d) if d.is_zero() => {
                Err("--duration is 0: give how long to send, e.g. 10s".into())
            }
            Stop::Requests(0) => Err("--requests is 0: send at least one".into()),
            _ => Ok(()),
        }
    }
}

/// The open model's intended send times, as offsets from the start of the run.
pub struct Schedule {
    arrivals: Arrivals,
    rng: SmallRng,
    next_ns: u64,
}

impl Schedule {
    pub fn new(rate: f64, arrival: ArrivalKind, seed: u64) -> Schedule {
        let traffic = Traffic {
            arrival: Arrival {
                kind: arrival,
                rate,
            },
            ..Traffic::default()
        };
        Schedule {
            arrivals: Arrivals::new(&traffic),
            rng: SmallRng::seed_from_u64(seed),
            next_ns: 0,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = self.next_ns;
        self.next_ns = self
            .next_ns
            .saturating_add(self.arrivals.next_gap(&mut self.rng));
        Some(Duration::from_nanos(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:8080/api?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/api?x=1")
        );
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.authority.as_str()),
            (80, "/", "localhost")
        );
        let t = Target::parse("http://[::1]:9000/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        let t = Target::parse("https://example.com/a").unwrap();
        assert_eq!((t.tls, t.port, t.host.as_str()), (true, 443, "example.com"));
        assert!(!Target::parse("http://x:1/").unwrap().tls);
        assert!(
            Target::parse("ftp://x/")
                .unwrap_err()
                .contains("not an http")
        );
        assert!(
            Target::parse("http://x:port/")
                .unwrap_err()
                .contains("not a port")
        );
    }

    #[test]
    fn a_constant_schedule_is_evenly_spaced_and_a_poisson_one_keeps_its_mean() {
        let times: Vec<Duration> = Schedule::new(1000.0, ArrivalKind::Constant, 1)
            .take(3)
            .collect();
        assert_eq!(
            times,
            [0, 1, 2].map(Duration::from_millis).to_vec(),
            "1,000 per second: one every millisecond"
        );
        let last = Schedule::new(1000.0, ArrivalKind::Poisson, 7)
            .nth(100_000)
            .unwrap();
        let secs = last.as_secs_f64();
        assert!(
            (secs - 100.0).abs() < 2.0,
            "100,000 arrivals at 1,000/s took {secs} s"
        );
        // Seeded: the same seed gives the same schedule.
        let a: Vec<_> = Schedule::new(50.0, ArrivalKind::Poisson, 3)
            .take(5)
            .collect();
        let b: Vec<_> = Schedule::new(50.0, ArrivalKind::Poisson, 3)
            .take(5)
            .collect();
        assert_eq!(a, b);
    }
}
