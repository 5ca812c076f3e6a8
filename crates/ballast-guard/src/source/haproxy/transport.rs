//! The thin I/O: one Runtime API command per connection on the stats socket (a Unix path or
//! `host:port`), and one HTTP GET for the stats page or the exporter. Every failure says what
//! to change in HAProxy's configuration.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::source::SourceError;

/// How long a connect, a write or a read may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The most a reply may hold; HAProxy's stats for thousands of servers stay well below.
const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// Where the Runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    Unix(PathBuf),
    /// `host:port`, as `stats socket ipv4@127.0.0.1:9999` makes.
    Tcp(String),
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::Unix(p) => write!(f, "{}", p.display()),
            SocketAddress::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// The line to put in HAProxy's `global` section for a socket at `address`.
pub fn socket_directive(address: &SocketAddress) -> String {
    match address {
        SocketAddress::Unix(p) => format!("stats socket {} mode 660 level admin", p.display()),
        SocketAddress::Tcp(a) => format!("stats socket ipv4@{a} level admin"),
    }
}

fn socket_fix(address: &SocketAddress) -> String {
    format!(
        "add `{}` to the global section of haproxy.cfg and reload HAProxy (or give the socket it already has)",
        socket_directive(address)
    )
}

/// Sends one command and reads the reply to EOF (HAProxy closes a non-interactive session
/// after one command).
pub fn command(address: &SocketAddress, command: &str) -> Result<String, SourceError> {
    let failed = |e: std::io::Error, doing: &str| io_error(address, doing, command, e);
    let mut reply = Vec::new();
    match address {
        SocketAddress::Unix(path) => {
            let mut stream = UnixStream::connect(path).map_err(|e| unix_connect_error(path, e))?;
            stream
                .set_read_timeout(Some(TIMEOUT))
                .map_err(|e| failed(e, "configure"))?;
            stream
                .set_write_timeout(Some(TIMEOUT))
                .map_err(|e| failed(e, "configure"))?;
            stream
                .write_all(format!("{command}\n").as_bytes())
                .map_err(|e| failed(e, "send to"))?;
            stream
                .take(MAX_REPLY)
                .read_to_end(&mut reply)
                .map_err(|e| failed(e, "read from"))?;
        }
        SocketAddress::Tcp(host_port) => {
            let addrs: Vec<_> = host_port
                .to_socket_addrs()
                .map_err(|e| {
                    SourceError::new(format!(
                        "`{host_port}` is not an address of the HAProxy stats socket: {e}"
                    ))
                    .with_fix("give the socket as a path (/run/haproxy.sock) or HOST:PORT (127.0.0.1:9999)")
                })?
                .collect();
            let Some(addr) = addrs.first() else {
                return Err(
                    SourceError::new(format!("`{host_port}` resolves to no address"))
                        .with_fix("give the socket as HOST:PORT, such as 127.0.0.1:9999"),
                );
            };
            let mut stream = TcpStream::connect_timeout(addr, TIMEOUT).map_err(|e| {
                let what = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    format!("nothing listens on {host_port} for the HAProxy stats socket (connection refused)")
                } else {
                    format!("cannot connect to the HAProxy stats socket at {host_port}: {e}")
                };
                SourceError::new(what).with_fix(socket_fix(address))
            })?;
            stream
                .set_read_timeout(Some(TIMEOUT))
                .map_err(|e| failed(e, "configure"))?;
            stream
                .set_write_timeout(Some(TIMEOUT))
                .map_err(|e| failed(e, "configure"))?;
            stream
                .write_all(format!("{command}\n").as_bytes())
                .map_err(|e| failed(e, "send to"))?;
            stream
                .take(MAX_REPLY)
                .read_to_end(&mut reply)
                .map_err(|e| failed(e, "read from"))?;
        }
    }
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if reply.trim() == "Permission denied" {
        return Err(SourceError::new(format!(
            "HAProxy refused `{command}` on {address}: the socket's level is too low"
        ))
        .with_fix(socket_fix(address)));
    }
    if reply.starts_with("Unknown command") {
        return Err(SourceError::new(format!(
            "HAProxy does not know `{command}` on {address} (is it HAProxy's Runtime API, and version 2.0 or later?)"
        ))
        .with_fix("give the stats socket of HAProxy 2.0 or later"));
    }
    Ok(reply)
}

fn unix_connect_error(path: &Path, e: std::io::Error) -> SourceError {
    let address = SocketAddress::Unix(path.to_path_buf());
    let shown = path.display();
    match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::new(format!(
            "the HAProxy stats socket {shown} does not exist"
        ))
        .with_fix(socket_fix(&address)),
        std::io::ErrorKind::ConnectionRefused => SourceError::new(format!(
            "nothing listens on the HAProxy stats socket {shown} (connection refused: HAProxy is stopped, or now listens on another socket)"
        ))
        .with_fix(format!("start HAProxy, or {}", socket_fix(&address))),
        std::io::ErrorKind::PermissionDenied => SourceError::new(format!(
            "no permission to open the HAProxy stats socket {shown}"
        ))
        .with_fix(format!(
            "run as a member of the socket's group, with `mode 660` and `group` on its line: `{} group haproxy`",
            socket_directive(&address)
        )),
        _ => SourceError::new(format!("cannot connect to the HAProxy stats socket {shown}: {e}"))
            .with_fix(socket_fix(&address)),
    }
}

fn io_error(address: &SocketAddress, doing: &str, command: &str, e: std::io::Error) -> SourceError {
    let what = if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        format!(
            "the HAProxy stats socket {address} did not answer `{command}` within {} s",
            TIMEOUT.as_secs()
        )
    } else {
        format!("cannot {doing} the HAProxy stats socket {address} (`{command}`): {e}")
    };
    SourceError::new(what).with_fix(
        "check that HAProxy is running and not overloaded; a stats socket serves one command per connection",
    )
}

/// What an HTTP endpoint is, for messages and fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    StatsPage,
    Exporter,
}

impl HttpKind {
    fn what(self) -> &'static str {
        match self {
            HttpKind::StatsPage => "HAProxy stats page",
            HttpKind::Exporter => "HAProxy Prometheus exporter",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            HttpKind::StatsPage => {
                "enable the stats page in a frontend (`stats enable`, `stats uri /stats`) and give its URL with `;csv` (http://127.0.0.1:8404/stats;csv)"
            }
            HttpKind::Exporter => {
                "enable the exporter in a frontend: `http-request use-service prometheus-exporter if { path /metrics }` (HAProxy built with USE_PROMEX; see `haproxy -vv`)"
            }
        }
    }
}

/// One GET, 2 s for the whole exchange; a status other than 200 is an error with a fix.
pub fn http_get(url: &str, kind: HttpKind) -> Result<String, SourceError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| {
        SourceError::new(format!("cannot read the {} at {url}: {e}", kind.what()))
            .with_fix(kind.fix())
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(SourceError::new(format!(
            "the {} at {url} answered HTTP {status}",
            kind.what()
        ))
        .with_fix(kind.fix()));
    }
    response.body_mut().read_to_string().map_err(|e| {
        SourceError::new(format!(
            "cannot read the {}'s reply at {url}: {e}",
            kind.what()
        ))
        .with_fix(kind.fix())
    })
}
