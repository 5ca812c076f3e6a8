//! Reading a hashing pool's key from a request, and hashing it.
//!
//! A request without the key (no such header, cookie or query parameter, or an empty value)
//! yields `None`, and the pool then balances that request by smooth weighted round-robin:
//! the request is served, but without affinity. `check` reports pools whose key is optional.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::HashKey;

/// The parts of a request a key can come from. Implemented by the proxy over a live request
/// and by the simulator over a recorded one.
pub trait RequestParts {
    fn client_ip(&self) -> Option<IpAddr>;
    /// The path without the query string.
    fn path(&self) -> Option<&str>;
    /// The raw query string, without the `?`.
    fn query(&self) -> Option<&str>;
    /// The first value of a header, matched case-insensitively.
    fn header(&self, name: &str) -> Option<&str>;
}

/// The key's value for this request, or `None` when the request does not carry it.
pub fn extract_key<'r, R: RequestParts + ?Sized>(
    key: &HashKey,
    req: &'r R,
) -> Option<Cow<'r, str>> {
    let value: Cow<'r, str> = match key {
        HashKey::ClientIp => Cow::Owned(req.client_ip()?.to_string()),
        HashKey::Path => Cow::Borrowed(req.path()?),
        HashKey::Header { name } => Cow::Borrowed(req.header(name)?.trim()),
        HashKey::Cookie { name } => Cow::Borrowed(cookie(req.header("cookie")?, name)?),
        HashKey::Query { name } => Cow::Borrowed(query_param(req.query()?, name)?),
    };
    (!value.is_empty()).then_some(value)
}

/// The 64-bit hash of a key (XXH3, stable across versions and platforms).
#[inline]
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        ip: Option<IpAddr>,
        path: Option<&'static str>,
        query: Option<&'static str>,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestParts for Req {
        fn client_ip(&self) -> Option<IpAddr> {
            self.ip
        }
        fn path(&self) -> Option<&str> {
            self.path
        }
        fn query(&self) -> Option<&str> {
            self.query
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn keys_come_from_each_source_and_missing_is_none() {
        let r = Req {
            ip: Some("192.0.2.7".parse().unwrap()),
            path: Some("/cart"),
            query: Some("a=1&user=42&flag"),
            headers: vec![("X-User", " bob "), ("Cookie", "sid=abc; theme=\"dark\"")],
        };
        let get = |k: HashKey| extract_key(&k, &r).map(|c| c.into_owned());
        assert_eq!(get(HashKey::ClientIp).as_deref(), Some("192.0.2.7"));
        assert_eq!(get(HashKey::Path).as_deref(), Some("/cart"));
        assert_eq!(
            get(HashKey::Header {
                name: "x-user".into()
            })
            .as_deref(),
            Some("bob")
        );
        assert_eq!(
            get(HashKey::Cookie {
                name: "theme".into()
            })
            .as_deref(),
            Some("dark")
        );
        assert_eq!(
            get(HashKey::Query {
                name: "user".into()
            })
            .as_deref(),
            Some("42")
        );
        assert_eq!(
            get(HashKey::Query {
                name: "flag".into()
            }),
            None,
            "empty value is no key"
        );
        assert_eq!(
            get(HashKey::Header {
                name: "x-none".into()
            }),
            None
        );
        assert_eq!(
            get(HashKey::Cookie {
                name: "none".into()
            }),
            None
        );
    }
}
