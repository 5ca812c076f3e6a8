//! Reading a hashing pool's key from a request, and hashing it.
//!
//! A request without the key (no such header, cookie or query parameter, or an empty value)
//! yields `None`, and the pool then balances that request by smooth weighted round-robin:
//! the request is served, but without affinity. `check` reports pools whose key is optional.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::{Algorithm, HashKey, Pool};
use crate::emulation::{Emulation, HaproxyKey, HashFunction};

use super::haproxy::hashfn::{full_hash, gen_hash};
use super::nginx::{hash_key_material, ip_hash_key};

/// Reads a pool's hash key from a request and prepares it for the pool's balancer: the one
/// place that knows what each algorithm hashes and how. Built once per pool; the proxy and
/// the simulator call [`KeyReader::read`] for every request and hand the result to
/// `Balancer::pick`.
#[derive(Debug, Clone)]
pub struct KeyReader {
    kind: KeyKind,
}

#[derive(Debug, Clone)]
enum KeyKind {
    /// The algorithm uses no key.
    None,
    /// Native consistent hashing: XXH3 of the key text.
    Native(HashKey),
    /// HAProxy `balance source`: the address words XORed, optionally avalanched.
    HaproxySource { avalanche: bool },
    /// HAProxy `uri`, `url_param`, `hdr`: `gen_hash` of the extracted text.
    HaproxyText {
        key: HaproxyKey,
        function: HashFunction,
        avalanche: bool,
    },
    /// nginx `ip_hash`.
    NginxIpHash,
    /// nginx `hash <key>`: CRC32 and length of the evaluated key.
    NginxHash(NginxTemplate),
    /// nginx `hash <key> consistent`: CRC32 of the evaluated key.
    NginxChash(NginxTemplate),
}

impl KeyReader {
    pub fn new(pool: &Pool) -> Self {
        let kind = match &pool.emulate {
            Some(Emulation::HaproxyHash(h)) => match &h.key {
                HaproxyKey::Source => KeyKind::HaproxySource {
                    avalanche: h.avalanche,
                },
                key => KeyKind::HaproxyText {
                    key: key.clone(),
                    function: h.function,
                    avalanche: h.avalanche,
                },
            },
            Some(Emulation::NginxIpHash) => KeyKind::NginxIpHash,
            Some(Emulation::NginxHash { key, consistent }) => {
                let t = NginxTemplate::parse(key);
                if *consistent {
                    KeyKind::NginxChash(t)
                } else {
                    KeyKind::NginxHash(t)
                }
            }
            Some(_) => KeyKind::None,
            None if pool.algorithm == Algorithm::ConsistentHash => {
                KeyKind::Native(pool.effective_hash_key())
            }
            None => KeyKind::None,
        };
        Self { kind }
    }

    /// Whether the pool's algorithm reads a key at all.
    pub fn needs_key(&self) -> bool {
        !matches!(self.kind, KeyKind::None)
    }

    /// Whether the key is exactly the client address in text form, so a caller that formats
    /// addresses itself may pass that text to [`KeyReader::read_value`].
    pub fn is_client_address_text(&self) -> bool {
        matches!(&self.kind, KeyKind::Native(HashKey::ClientIp))
    }

    /// Whether only the client address is read (all a TCP connection can offer).
    pub fn reads_only_client_address(&self) -> bool {
        match &self.kind {
            KeyKind::None | KeyKind::HaproxySource { .. } | KeyKind::NginxIpHash => true,
            KeyKind::Native(k) => k.readable_in_tcp(),
            KeyKind::HaproxyText { .. } => false,
            KeyKind::NginxHash(t) | KeyKind::NginxChash(t) => t.only_client_address(),
        }
    }

    /// The prepared key of one request, or `None` when the algorithm has no key or the request
    /// does not carry it (the algorithm then falls back as its load balancer does).
    pub fn read<R: RequestParts + ?Sized>(&self, req: &R) -> Option<u64> {
        match &self.kind {
            KeyKind::None => None,
            KeyKind::Native(k) => extract_key(k, req).map(|v| hash_key(v.as_bytes())),
            KeyKind::HaproxySource { avalanche } => {
                let h = match req.client_ip()? {
                    IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
                    IpAddr::V6(a) => a
                        .octets()
                        .chunks_exact(4)
                        .fold(0, |h, w| h ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]])),
                };
                Some(u64::from(if *avalanche { full_hash(h) } else { h }))
            }
            KeyKind::HaproxyText {
                key,
                function,
                avalanche,
            } => {
                let text = haproxy_key_text(key, req)?;
                Some(u64::from(gen_hash(*function, *avalanche, &text)))
            }
            KeyKind::NginxIpHash => Some(ip_hash_key(req.client_ip())),
            KeyKind::NginxHash(t) => {
                let v = t.eval(req);
                (!v.is_empty()).then(|| hash_key_material(&v))
            }
            KeyKind::NginxChash(t) => {
                let v = t.eval(req);
                (!v.is_empty()).then(|| u64::from(crc32fast::hash(&v)))
            }
        }
    }
}

impl KeyReader {
    /// Prepares an already extracted key value (the simulator's synthetic keys). Readers of the
    /// client address take it from [`KeyReader::read`] with a [`ClientAddress`] instead.
    pub fn read_value(&self, value: &[u8]) -> Option<u64> {
        match &self.kind {
            KeyKind::None => None,
            KeyKind::HaproxySource { .. } | KeyKind::NginxIpHash => None,
            KeyKind::Native(_) => Some(hash_key(value)),
            KeyKind::HaproxyText {
                function,
                avalanche,
                ..
            } => Some(u64::from(gen_hash(*function, *avalanche, value))),
            KeyKind::NginxHash(_) => (!value.is_empty()).then(|| hash_key_material(value)),
            KeyKind::NginxChash(_) => {
                (!value.is_empty()).then(|| u64::from(crc32fast::hash(value)))
            }
        }
    }
}

/// A request known only by its client address: a TCP connection, or a synthetic client.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl RequestParts for ClientAddress {
    fn client_ip(&self) -> Option<IpAddr> {
        Some(self.0)
    }
    fn path(&self) -> Option<&str> {
        None
    }
    fn query(&self) -> Option<&str> {
        None
    }
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
}

/// The bytes HAProxy hashes for `uri`, `url_param` and `hdr` (`backend.c`), or `None` when
/// the request has none (HAProxy then round-robins).
fn haproxy_key_text<R: RequestParts + ?Sized>(key: &HaproxyKey, req: &R) -> Option<Vec<u8>> {
    match key {
        HaproxyKey::Source => None,
        HaproxyKey::Uri {
            whole, len, depth, ..
        } => {
            let mut uri = req.path().unwrap_or("").as_bytes().to_vec();
            if let Some(q) = req.query() {
                uri.push(b'?');
                uri.extend_from_slice(q.as_bytes());
            }
            if *len > 0 {
                uri.truncate(*len as usize);
            }
            // `depth N` stops at the (N+1)th slash; without `whole`, at the '?'.
            let stop_at_slash = if *depth > 0 { *depth + 1 } else { 0 };
            let mut slashes = 0;
            let end = uri
                .iter()
                .position(|&c| {
                    if c == b'/' {
                        slashes += 1;
                        slashes == stop_at_slash
                    } else {
                        c == b'?' && !whole
                    }
                })
                .unwrap_or(uri.len());
            uri.truncate(end);
            Some(uri)
        }
        HaproxyKey::UrlParam { name } => {
            let query = req.query()?;
            query.split('&').find_map(|param| {
                let value = param.strip_prefix(name.as_str())?.strip_prefix('=')?;
                Some(value.as_bytes().to_vec())
            })
        }
        HaproxyKey::Hdr {
            name,
            use_domain_only,
        } => {
            // The first comma-separated value, trimmed (`http_find_header` with full = 0).
            let value = req.header(name)?.split(',').next()?.trim().as_bytes();
            if value.is_empty() {
                return None;
            }
            if !use_domain_only {
                return Some(value.to_vec());
            }
            Some(domain_only(value).to_vec())
        }
    }
}

/// `use_domain_only`: the label before the last dot ("www.example.com" → "example").
fn domain_only(v: &[u8]) -> &[u8] {
    let Some(tld_dot) = v.iter().rposition(|&c| c == b'.') else {
        return v;
    };
    let start = v[..tld_dot]
        .iter()
        .rposition(|&c| c == b'.')
        .map_or(0, |d| d + 1);
    &v[start..tld_dot]
}

/// An nginx complex value (`$host$request_uri`, `user-$arg_id`): literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(Vec<u8>),
    Var(String),
}

/// The nginx variables a key may use and ballast can evaluate from a request.
pub fn nginx_variable_supported(name: &str) -> bool {
    matches!(
        name,
        "remote_addr"
            | "binary_remote_addr"
            | "request_uri"
            | "uri"
            | "document_uri"
            | "args"
            | "query_string"
            | "host"
            | "scheme"
    ) || ["arg_", "http_", "cookie_"]
        .iter()
        .any(|p| name.len() > p.len() && name.starts_with(p))
}

impl NginxTemplate {
    pub fn parse(text: &str) -> Self {
        let b = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' && i + 1 < b.len() {
                let (name, next) = if b[i + 1] == b'{' {
                    match text[i + 2..].find('}') {
                        Some(end) => (&text[i + 2..i + 2 + end], i + 3 + end),
                        None => (&text[i + 2..], b.len()),
                    }
                } else {
                    let end = text[i + 1..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(b.len(), |e| i + 1 + e);
                    (&text[i + 1..end], end)
                };
                if !name.is_empty() {
                    if !lit.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(TemplatePart::Var(name.to_ascii_lowercase()));
                    i = next;
                    continue;
                }
            }
            lit.push(b[i]);
            i += 1;
        }
        if !lit.is_empty() {
            parts.push(TemplatePart::Literal(lit));
        }
        Self { parts }
    }

    /// Variables this template uses that ballast cannot evaluate (they evaluate to "").
    pub fn unsupported(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                TemplatePart::Var(v) if !nginx_variable_supported(v) => Some(v.as_str()),
                _ => None,
            })
            .collect()
    }

    /// True when the key is made of the client address and literals only.
    pub fn only_client_address(&self) -> bool {
        self.parts.iter().all(|p| match p {
            TemplatePart::Var(v) => v == "remote_addr" || v == "binary_remote_addr",
            TemplatePart::Literal(_) => true,
        })
    }

    /// True when the key has no variable at all: every request hashes the same.
    pub fn is_constant(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, TemplatePart::Literal(_)))
    }

    /// The variables, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Var(v) => Some(v.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    pub fn eval<R: RequestParts + ?Sized>(&self, req: &R) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(l) => out.extend_from_slice(l),
                TemplatePart::Var(v) => nginx_variable(v, req, &mut out),
            }
        }
        out
    }
}

fn nginx_variable<R: RequestParts + ?Sized>(name: &str, req: &R, out: &mut Vec<u8>) {
    match name {
        "remote_addr" => {
            if let Some(ip) = req.client_ip() {
                out.extend_from_slice(ip.to_string().as_bytes());
            }
        }
        "binary_remote_addr" => match req.client_ip() {
            Some(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            Some(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            None => {}
        },
        "request_uri" => {
            out.extend_from_slice(req.path().unwrap_or("").as_bytes());
            if let Some(q) = req.query() {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
        }
        "uri" | "document_uri" => out.extend_from_slice(req.path().unwrap_or("").as_bytes()),
        "args" | "query_string" => out.extend_from_slice(req.query().unwrap_or("").as_bytes()),
        "host" => {
            if let Some(h) = req.header("host") {
                let host = h.rsplit_once(':').map_or(h, |(host, port)| {
                    if port.bytes().all(|c| c.is_ascii_digit()) {
                        host
                    } else {
                        h
                    }
                });
                out.extend_from_slice(host.to_ascii_lowercase().as_bytes());
            }
        }
        "scheme" => out.extend_from_slice(b"http"),
        _ => {
            if let Some(arg) = name.strip_prefix("arg_") {
                if let Some(v) = req.query().and_then(|q| {
                    q.split('&').find_map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        k.eq_ignore_ascii_case(arg).then_some(v)
                    })
                }) {
                    out.extend_from_slice(v.as_bytes());
                }
            } else if let Some(h) = name.strip_prefix("http_") {
                if let Some(v) = req.header(&h.replace('_', "-")) {
                    out.extend_from_slice(v.as_bytes());
                }
            } else if let Some(c) = name.strip_prefix("cookie_")
                && let Some(v) = req.header("cookie").and_then(|h| cookie(h, c))
            {
                out.extend_from_slice(v.as_bytes());
            }
        }
    }
}

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
