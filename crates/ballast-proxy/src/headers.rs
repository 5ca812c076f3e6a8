//! Header hygiene on the request path, as pure functions: who the client is (trusted-proxy
//! resolution of X-Forwarded-For) and which headers are hop-by-hop.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, HOST, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the non-standard ones proxies still see.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// `X-Forwarded-For`, named once: a header name given as text is parsed at every lookup.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers a `Connection` list cannot remove: a client naming Host there would otherwise send
/// the server a request without one.
const NEVER_HOP_BY_HOP: &[HeaderName] = &[HOST];

/// Removes hop-by-hop headers, including any the `Connection` header names (except Host).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none of them: one pass over the names (compared as names, no
    // hashing) finds that out cheaper than nine removals. A Connection header is one of them,
    // so nothing it names is missed.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !NEVER_HOP_BY_HOP.contains(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a header named `name` (any case) is hop-by-hop in itself, for code that reads
/// headers off the wire rather than from a `HeaderMap`.
pub fn is_hop_by_hop(name: &str) -> bool {
    // By length first: most names match none of the lengths, and the comparison is then one
    // name at most.
    let candidate = match name.len() {
        2 => "te",
        7 if name.as_bytes()[0].eq_ignore_ascii_case(&b't') => "trailer",
        7 => "upgrade",
        10 if name.as_bytes()[0].eq_ignore_ascii_case(&b'c') => "connection",
        10 => "keep-alive",
        16 => "proxy-connection",
        17 => "transfer-encoding",
        18 => "proxy-authenticate",
        19 => "proxy-authorization",
        _ => return false,
    };
    candidate.eq_ignore_ascii_case(name)
}

/// Whether `ip` falls in one of the trusted ranges.
pub fn trusted(ip: IpAddr, ranges: &[(IpAddr, u8)]) -> bool {
    ranges
        .iter()
        .any(|&(net, prefix)| in_range(ip, net, prefix))
}

fn in_range(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy, in which case
/// the rightmost X-Forwarded-For entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, ranges: &[(IpAddr, u8)]) -> IpAddr {
    client_ip_among(
        peer,
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        ranges,
    )
}

/// [`client_ip`] over the X-Forwarded-For values as text, in the order they came.
pub fn client_ip_among<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    ranges: &[(IpAddr, u8)],
) -> IpAddr {
    if !trusted(peer, ranges) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = forwarded_for
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted(*ip, ranges))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        let mut named_host = headers(&[("connection", "Host, close"), ("host", "a.example")]);
        strip_hop_by_hop(&mut named_host);
        assert_eq!(named_host.get("host").unwrap(), "a.example");
        for name in ["Connection", "keep-alive", "TRANSFER-ENCODING", "Upgrade"] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop("host") && !is_hop_by_hop("x-connection"));
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name.as_str()), "{name}");
            assert!(is_hop_by_hop(&name.as_str().to_ascii_uppercase()), "{name}");
        }
        for not in [
            "x-trailer",
            "x-te",
            "accept",
            "connectio",
            "keep-alivex",
            "cookie",
        ] {
            assert!(!is_hop_by_hop(not), "{not}");
        }
    }

    #[test]
    fn client_ip_believes_forwarded_for_only_from_trusted_peers() {
        let ranges = vec![("10.0.0.0".parse().unwrap(), 8)];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.1.1.1")]);
        let peer: IpAddr = "10.2.2.2".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &ranges),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(stranger, &h, &ranges),
            stranger,
            "an untrusted peer cannot claim an address"
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), &ranges), peer);
        assert!(trusted(
            "::1".parse().unwrap(),
            &[("::1".parse().unwrap(), 128)]
        ));
        assert!(trusted(
            "192.0.2.1".parse().unwrap(),
            &[("0.0.0.0".parse().unwrap(), 0)]
        ));
    }
}
