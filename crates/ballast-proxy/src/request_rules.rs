//! The rules a request must meet before it is routed, and the Host and body framing its server
//! is sent. Pure functions over request parts.
//!
//! - **Host** (RFC 9112 §3.2, RFC 9113 §8.3.1): more than one Host, an invalid Host, or an
//!   HTTP/1.1 request without one is the client's fault, 400 before any server is picked, so it
//!   never counts against one. HTTP/1.0 may omit Host (the server's address is sent instead).
//!   The authority of the request URI (absolute form, or h2's `:authority`) wins over a Host
//!   header: a proxy must replace Host with it (RFC 9112 §3.2.2).
//! - **CONNECT** is not proxied: 405 with `Allow`.
//! - **A GET or HEAD with a body** is forwarded with it: hyper's client sends such a request
//!   without a body unless the framing is set explicitly, so a body of unknown length is sent
//!   chunked.

use http::header::{CONTENT_LENGTH, HOST, HeaderValue, TRANSFER_ENCODING};
use http::uri::Authority;
use http::{Method, StatusCode, Uri, Version};

/// The methods a 405 names: everything the proxy forwards.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// The rejection cause in the metrics.
    pub cause: &'static str,
    /// The one-line body the client gets.
    pub message: &'static str,
}

/// The refusal a request head earns, if any.
pub fn refusal(method: &Method, version: Version, headers: &http::HeaderMap) -> Option<Refusal> {
    if method == Method::CONNECT {
        return Some(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            cause: "method_not_allowed",
            message: "405 method not allowed: CONNECT is not proxied\n",
        });
    }
    let mut hosts = headers.get_all(HOST).iter();
    let bad_host = |message| {
        Some(Refusal {
            status: StatusCode::BAD_REQUEST,
            cause: "bad_host",
            message,
        })
    };
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => bad_host("400 bad request: more than one Host header\n"),
        (Some(host), None) if !valid_host(host) => {
            bad_host("400 bad request: the Host header is not a valid host[:port]\n")
        }
        (None, _) if version == Version::HTTP_11 => {
            bad_host("400 bad request: an HTTP/1.1 request needs a Host header\n")
        }
        _ => None,
    }
}

/// `host[:port]` with no userinfo, path or anything else (RFC 9110 §7.2).
fn valid_host(value: &HeaderValue) -> bool {
    valid_host_bytes(value.as_bytes())
}

/// [`valid_host`] over the header's bytes as they came off the wire.
pub fn valid_host_bytes(bytes: &[u8]) -> bool {
    if bytes.is_empty() || bytes.contains(&b'@') {
        return false;
    }
    let Ok(authority) = Authority::try_from(bytes) else {
        return false;
    };
    // The authority parser accepts any port text; a port must be digits.
    let text = authority.as_str();
    let after_host = text.rsplit_once(']').map_or(text, |(_, rest)| rest);
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.bytes().all(|b| b.is_ascii_digit()),
        None => true,
    }
}

/// The Host a server is sent for a request whose URI names an authority (absolute form, or
/// h2's `:authority`): its host and port, without userinfo. None for origin-form URIs.
pub fn authority_host(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, rest)| rest);
    if host_port.is_empty() {
        return None;
    }
    HeaderValue::from_str(host_port).ok()
}

/// Makes the upstream framing explicit for a request that has a body but no Content-Length
/// (chunked, or h2 DATA without one): hyper's client would otherwise send a GET, HEAD or
/// CONNECT with an empty body. Call after the hop-by-hop headers are removed.
pub fn frame_body(headers: &mut http::HeaderMap, body_is_empty: bool) {
    if !body_is_empty && !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn host_rules_follow_rfc_9112() {
        let get = Method::GET;
        let one = headers(&[("host", "a.example:8080")]);
        assert_eq!(refusal(&get, Version::HTTP_11, &one), None);
        let two = headers(&[("host", "a.example"), ("host", "b.example")]);
        assert_eq!(
            refusal(&get, Version::HTTP_11, &two).map(|r| r.status),
            Some(StatusCode::BAD_REQUEST)
        );
        let none = headers(&[]);
        assert!(refusal(&get, Version::HTTP_11, &none).is_some());
        assert_eq!(refusal(&get, Version::HTTP_10, &none), None);
        assert_eq!(refusal(&get, Version::HTTP_2, &none), None);
        for bad in ["a.example/x", "user@a.example", "a b", "a.example:port"] {
            let h = headers(&[("host", bad)]);
            assert!(refusal(&get, Version::HTTP_11, &h).is_some(), "{bad}");
        }
        assert_eq!(
            refusal(&Method::CONNECT, Version::HTTP_11, &one).map(|r| r.status),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn the_authority_loses_its_userinfo_and_keeps_its_port() {
        let uri: Uri = "http://user:pw@a.example:8080/x".parse().unwrap();
        assert_eq!(authority_host(&uri).unwrap(), "a.example:8080");
        let uri: Uri = "http://[::1]/x".parse().unwrap();
        assert_eq!(authority_host(&uri).unwrap(), "[::1]");
        assert_eq!(authority_host(&"/x".parse().unwrap()), None);
    }

    #[test]
    fn a_body_without_length_is_sent_chunked() {
        let mut h = headers(&[]);
        frame_body(&mut h, true);
        assert!(h.is_empty(), "no body, no framing");
        frame_body(&mut h, false);
        assert_eq!(h[TRANSFER_ENCODING], "chunked");
        let mut sized = headers(&[("content-length", "5")]);
        frame_body(&mut sized, false);
        assert!(!sized.contains_key(TRANSFER_ENCODING));
    }
}
