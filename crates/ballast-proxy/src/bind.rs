//! Binding listening sockets so that an address is shared only between ballast's own sockets.
//!
//! Listeners are bound with SO_REUSEPORT so that a reload can bind a replacement while the old
//! socket still serves. SO_REUSEPORT alone would also let a second `ballast serve` (or any
//! process of the same user) join the address silently, and the kernel would split clients
//! between the two. So a socket is first bound *without* SO_REUSEPORT, which fails while
//! anyone listens on the address; SO_REUSEPORT is set only after that bind, so our own later
//! sockets can join. When the exclusive bind fails, the address is shared only if every
//! socket listening there is one of this process's (Linux: `/proc/net/tcp*` against
//! `/proc/self/fd`); otherwise the bind is refused with an error naming the address.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues per listener.
const BACKLOG: u32 = 1024;

/// Binds a listener on `address`, sharing it only with this process's own listeners there.
pub async fn bind_listener(address: &str) -> io::Result<TcpListener> {
    let addr: SocketAddr = address.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{address}` is not an IP:PORT address: {e}"),
        )
    })?;
    match bind_exclusive(addr) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
            let in_use = |by: &str| {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{addr} is already in use by {by}; stop it or choose another address"),
                )
            };
            match listeners_on(addr) {
                Holders::Ours => bind_shared(addr).map_err(|e| match e.kind() {
                    // Held by a socket of ours that does not share (not bound here).
                    io::ErrorKind::AddrInUse => in_use("a socket of this process"),
                    _ => e,
                }),
                Holders::Foreign => Err(in_use("another process (another `ballast serve`?)")),
                Holders::Unknown => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Restarts must not wait for TIME_WAIT connections of the previous process.
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

/// Binds where no one listens, then opens the socket to sharing by our own later binds.
fn bind_exclusive(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    socket.bind(addr)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.listen(BACKLOG)
}

/// Joins this process's own listeners on `addr` (a reload binding the replacement socket).
fn bind_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Who listens on an address another bind found in use.
#[derive(Debug, PartialEq, Eq)]
enum Holders {
    /// Only this process's sockets.
    Ours,
    /// At least one socket of another process.
    Foreign,
    /// No listener was found (or the platform cannot tell): the bind error stands.
    Unknown,
}

fn listeners_on(addr: SocketAddr) -> Holders {
    let listening = listening_inodes(addr);
    if listening.is_empty() {
        return Holders::Unknown;
    }
    let ours = own_socket_inodes();
    if listening.iter().all(|inode| ours.contains(inode)) {
        Holders::Ours
    } else {
        Holders::Foreign
    }
}

/// Inodes of the sockets listening on an address that overlaps `addr` (same port, same IP or
/// either a wildcard), from the kernel's socket tables.
fn listening_inodes(addr: SocketAddr) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some((local, inode)) = parse_listening_line(line)
                && overlaps(local, addr)
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// The local address and inode of a listening socket's line of `/proc/net/tcp{,6}`.
fn parse_listening_line(line: &str) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = parse_proc_ip(ip)?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((SocketAddr::new(ip, port), inode))
}

/// The kernel prints addresses as 32-bit words in the host's byte order.
fn parse_proc_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

fn overlaps(listening: SocketAddr, wanted: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (canonical(listening.ip()), canonical(wanted.ip()));
    listening.port() == wanted.port() && (a == b || a.is_unspecified() || b.is_unspecified())
}

/// Inodes of the sockets this process holds open.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_listening_lines() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        let local = SocketAddr::from(([127, 0, 0, 1], 8080));
        if cfg!(target_endian = "little") {
            assert_eq!(parse_listening_line(v4), Some((local, 123456)));
        }
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_listening_line(&established), None);
        assert_eq!(parse_listening_line("garbage"), None);
        assert_eq!(parse_listening_line(""), None);
        let v6 = "   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 42 1";
        assert_eq!(
            parse_listening_line(v6),
            Some((SocketAddr::from((Ipv6Addr::UNSPECIFIED, 80)), 42))
        );
    }

    #[test]
    fn wildcards_and_mapped_addresses_overlap() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(at("0.0.0.0:80"), at("127.0.0.1:80")));
        assert!(overlaps(at("127.0.0.1:80"), at("0.0.0.0:80")));
        assert!(overlaps(at("[::ffff:127.0.0.1]:80"), at("127.0.0.1:80")));
        assert!(!overlaps(at("127.0.0.1:80"), at("127.0.0.2:80")));
        assert!(!overlaps(at("127.0.0.1:81"), at("127.0.0.1:80")));
    }

    #[tokio::test]
    async fn an_address_is_shared_with_our_own_listener_only() {
        let first = bind_listener("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap();
        // Ours: the replacement binds while the first still listens (a reload).
        let second = bind_listener(&addr.to_string()).await.unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        drop((first, second));
        // A plain listener (another program) holds the address: refused, naming it.
        let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = foreign.local_addr().unwrap();
        let err = bind_listener(&addr.to_string()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let message = err.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
    }
}
