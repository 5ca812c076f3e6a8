//! nginx's balancing algorithms, reproduced decision for decision from the nginx 1.22
//! sources: `ngx_http_upstream_round_robin.c`, `_ip_hash_module.c`, `_hash_module.c` (plain
//! and ketama), `_least_conn_module.c` and `_random_module.c`.
//!
//! State is one worker's (nginx keeps peer state per worker unless the upstream has a `zone`),
//! so predictions are exact for `worker_processes 1` or a zone.
//!
//! What is not exact, and why:
//! - `effective_weight` drops when a peer fails and climbs back one step per pick; the
//!   balancer sees availability, not individual failures, so it stays at the weight.
//! - A request's retries in nginx skip the peers it already tried; here each pick is fresh.
//! - `random` uses nginx's own PRNG: shares agree, single choices do not.

use rand::Rng;

use super::ServerLoad;
use crate::config::Pool;
use crate::emulation::Emulation;

/// ip_hash: `hash = (hash × 113 + byte) mod 6271`, starting from 89.
const IP_HASH_START: u64 = 89;
const IP_HASH_MUL: u64 = 113;
const IP_HASH_MOD: u64 = 6271;
/// Every nginx hashing method gives up after this many tries and falls back to round-robin.
const MAX_TRIES: u32 = 20;
/// Ketama points per unit of weight.
const POINTS_PER_WEIGHT: u32 = 160;

#[derive(Debug, Clone)]
enum Kind {
    RoundRobin,
    IpHash,
    Hash,
    Chash { points: Vec<(u32, usize)> },
    LeastConn,
    Random { two: bool },
}

#[derive(Debug, Clone)]
pub struct NginxBalancer {
    kind: Kind,
    primary: Vec<usize>,
    backup: Vec<usize>,
    down: Vec<bool>,
    weight: Vec<i64>,
    current: Vec<i64>,
    effective: Vec<i64>,
    /// Sum of the primary weights, `down` servers included (that keeps hash mappings stable).
    total_weight: u64,
    /// One primary server (`down` ones counted): nginx then ignores its failures.
    single: bool,
}

impl NginxBalancer {
    pub fn new(pool: &Pool, emulation: &Emulation) -> Self {
        let weight: Vec<i64> = pool.servers.iter().map(|s| i64::from(s.weight)).collect();
        let primary: Vec<usize> = (0..pool.servers.len())
            .filter(|&i| !pool.servers[i].backup)
            .collect();
        let kind = match emulation {
            Emulation::NginxIpHash => Kind::IpHash,
            Emulation::NginxHash {
                consistent: false, ..
            } => Kind::Hash,
            Emulation::NginxHash {
                consistent: true, ..
            } => Kind::Chash {
                points: ketama_points(pool, &primary),
            },
            Emulation::NginxLeastConn => Kind::LeastConn,
            Emulation::NginxRandom { two } => Kind::Random { two: *two },
            _ => Kind::RoundRobin,
        };
        Self {
            kind,
            total_weight: primary.iter().map(|&i| weight[i] as u64).sum(),
            single: primary.len() == 1,
            backup: (0..pool.servers.len())
                .filter(|&i| pool.servers[i].backup)
                .collect(),
            primary,
            down: pool.servers.iter().map(|s| s.down).collect(),
            current: vec![0; weight.len()],
            effective: weight.clone(),
            weight,
        }
    }

    /// One nginx peer selection. `key` is prepared by `KeyReader` for this upstream's method.
    pub fn pick<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        server: impl Fn(usize) -> ServerLoad,
        key: Option<u64>,
        rng: &mut R,
    ) -> Option<usize> {
        if n < self.weight.len() {
            return None;
        }
        let ok = |i: usize| {
            let s = server(i);
            !self.down[i] && s.available && s.weight > 0 && !s.full()
        };
        // The kind is moved out for the pick so the arms may update the round-robin state.
        let kind = std::mem::replace(&mut self.kind, Kind::RoundRobin);
        let picked = match &kind {
            Kind::RoundRobin => self.round_robin(&server),
            Kind::IpHash => match key {
                Some(k) if !self.single => {
                    let (len, c) = ((k >> 32) as u32, k & 0xffff_ffff);
                    let m = (0..len).fold(1u64, |m, _| m * IP_HASH_MUL % IP_HASH_MOD);
                    let mut hash = IP_HASH_START;
                    self.hashed(&server, |_| {
                        hash = (hash * m + c) % IP_HASH_MOD;
                        hash
                    })
                }
                _ => self.round_robin(&server),
            },
            Kind::Hash => match key {
                Some(k) if !self.single => {
                    let (crc, len) = ((k >> 32) as u32, k & 0xffff_ffff);
                    let mut acc = 0u64;
                    self.hashed(&server, |rehash| {
                        acc += u64::from((rehash_crc(crc, len, rehash) >> 16) & 0x7fff);
                        acc
                    })
                }
                _ => self.round_robin(&server),
            },
            Kind::Chash { points } => {
                let found = match key {
                    Some(k) if !self.single && !points.is_empty() => {
                        let hash = k as u32;
                        let start = points.partition_point(|&(p, _)| p < hash);
                        (start..=start + MAX_TRIES as usize)
                            .map(|at| points[at % points.len()].1)
                            .find(|&s| ok(s))
                    }
                    _ => None,
                };
                found.or_else(|| self.round_robin(&server))
            }
            Kind::LeastConn => {
                let (primary, backup) = (
                    std::mem::take(&mut self.primary),
                    std::mem::take(&mut self.backup),
                );
                let picked = self
                    .least_conn(&primary, &server)
                    .or_else(|| self.least_conn(&backup, &server));
                (self.primary, self.backup) = (primary, backup);
                picked
            }
            Kind::Random { two } => self.random(*two, &server, rng),
        };
        self.kind = kind;
        picked
    }

    /// The modulo walk shared by ip_hash and hash: `next_hash(try)` gives the running hash;
    /// the peer is found by walking the primary weights; after 20 misses, round-robin.
    fn hashed(
        &mut self,
        server: &impl Fn(usize) -> ServerLoad,
        mut next_hash: impl FnMut(u32) -> u64,
    ) -> Option<usize> {
        if self.total_weight > 0 {
            for attempt in 0..=MAX_TRIES {
                let mut w = next_hash(attempt) % self.total_weight;
                let mut peer = self.primary[0];
                for &p in &self.primary {
                    peer = p;
                    if w < self.weight[p] as u64 {
                        break;
                    }
                    w -= self.weight[p] as u64;
                }
                let s = server(peer);
                if !self.down[peer] && s.available && s.weight > 0 && !s.full() {
                    return Some(peer);
                }
            }
        }
        self.round_robin(server)
    }

    /// `ngx_http_upstream_get_round_robin_peer`: the primary tier, then the backups.
    fn round_robin(&mut self, server: &impl Fn(usize) -> ServerLoad) -> Option<usize> {
        let picked = if self.single {
            let p = self.primary[0];
            let s = server(p);
            (!self.down[p] && s.weight > 0 && !s.full()).then_some(p)
        } else {
            let primary = std::mem::take(&mut self.primary);
            let p = self.swrr(&primary, server);
            self.primary = primary;
            p
        };
        picked.or_else(|| {
            let backup = std::mem::take(&mut self.backup);
            let p = self.swrr(&backup, server);
            self.backup = backup;
            p
        })
    }

    /// `ngx_http_upstream_get_peer`: smooth weighted round-robin over one tier.
    fn swrr(&mut self, tier: &[usize], server: &impl Fn(usize) -> ServerLoad) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        for &i in tier {
            let s = server(i);
            if self.down[i] || !s.available || s.weight == 0 || s.full() {
                continue;
            }
            self.current[i] += self.effective[i];
            total += self.effective[i];
            if self.effective[i] < self.weight[i] {
                self.effective[i] += 1;
            }
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    /// `ngx_http_upstream_get_least_conn_peer` over one tier.
    fn least_conn(
        &mut self,
        tier: &[usize],
        server: &impl Fn(usize) -> ServerLoad,
    ) -> Option<usize> {
        let usable = |i: usize| {
            let s = server(i);
            !self.down[i] && s.available && s.weight > 0 && !s.full()
        };
        let conns = |i: usize| i64::from(server(i).in_flight);
        let mut best: Option<usize> = None;
        let mut many = false;
        let mut start = 0;
        for (pos, &i) in tier.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            match best {
                Some(b) if conns(i) * self.weight[b] < conns(b) * self.weight[i] => {
                    best = Some(i);
                    many = false;
                    start = pos;
                }
                Some(b) if conns(i) * self.weight[b] == conns(b) * self.weight[i] => many = true,
                Some(_) => {}
                None => {
                    best = Some(i);
                    many = false;
                    start = pos;
                }
            }
        }
        let mut best = best?;
        if many {
            let mut total = 0i64;
            for &i in &tier[start..] {
                if !usable(i) || conns(i) * self.weight[best] != conns(best) * self.weight[i] {
                    continue;
                }
                self.current[i] += self.effective[i];
                total += self.effective[i];
                if self.effective[i] < self.weight[i] {
                    self.effective[i] += 1;
                }
                if self.current[i] > self.current[best] {
                    best = i;
                }
            }
            self.current[best] -= total;
        }
        Some(best)
    }

    /// `random [two]`: weighted draws over the primaries; with `two`, the one of two with
    /// fewer connections per weight.
    fn random<R: Rng + ?Sized>(
        &mut self,
        two: bool,
        server: &impl Fn(usize) -> ServerLoad,
        rng: &mut R,
    ) -> Option<usize> {
        let usable = |i: usize| {
            let s = server(i);
            !self.down[i] && s.available && s.weight > 0 && !s.full()
        };
        let draw = |rng: &mut R| -> Option<usize> {
            if self.total_weight == 0 {
                return None;
            }
            for _ in 0..=MAX_TRIES {
                let mut x = super::below(rng, self.total_weight);
                for &p in &self.primary {
                    if x < self.weight[p] as u64 {
                        if usable(p) {
                            return Some(p);
                        }
                        break;
                    }
                    x -= self.weight[p] as u64;
                }
            }
            None
        };
        let first = draw(rng);
        let picked = match (two, first) {
            // `random two` draws until it holds two distinct peers, then keeps the second
            // unless it has more connections per weight than the first.
            (true, Some(a)) => (0..MAX_TRIES)
                .find_map(|_| draw(rng).filter(|&b| b != a))
                .map(|b| {
                    let (ca, cb) = (
                        i64::from(server(a).in_flight),
                        i64::from(server(b).in_flight),
                    );
                    if cb * self.weight[a] > ca * self.weight[b] {
                        a
                    } else {
                        b
                    }
                }),
            (_, first) => first,
        };
        picked.or_else(|| self.round_robin(server))
    }
}

/// CRC32 of `decimal(rehash) ++ key`, from the key's CRC32 and length: nginx's rehash for
/// `hash` (the first try has no prefix).
fn rehash_crc(key_crc: u32, key_len: u64, rehash: u32) -> u32 {
    if rehash == 0 {
        return key_crc;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(rehash.to_string().as_bytes());
    h.combine(&crc32fast::Hasher::new_with_initial_len(key_crc, key_len));
    h.finalize()
}

/// The ketama ring of `hash ... consistent`: `weight × 160` points per primary server at
/// `crc32(HOST "\0" PORT prev_hash)`, sorted, duplicates dropped.
fn ketama_points(pool: &Pool, primary: &[usize]) -> Vec<(u32, usize)> {
    let mut points = Vec::new();
    for &i in primary {
        let s = &pool.servers[i];
        let server = s.ring_key.as_deref().unwrap_or(&s.address).as_bytes();
        let (host, port) = split_host_port(server);
        let mut base = crc32fast::Hasher::new();
        base.update(host);
        base.update(&[0]);
        base.update(port);
        let mut prev: u32 = 0;
        for _ in 0..pool.servers[i].weight * POINTS_PER_WEIGHT {
            let mut h = base.clone();
            h.update(&prev.to_le_bytes());
            prev = h.finalize();
            points.push((prev, i));
        }
    }
    points.sort_by_key(|&(h, _)| h);
    points.dedup_by_key(|&mut (h, _)| h);
    points
}

/// nginx's split of a `server` string: `unix:path` has no port; otherwise a trailing
/// `:digits` is the port.
fn split_host_port(server: &[u8]) -> (&[u8], &[u8]) {
    if server.len() >= 5 && server[..5].eq_ignore_ascii_case(b"unix:") {
        return (&server[5..], b"");
    }
    for j in 0..server.len() {
        let c = server[server.len() - j - 1];
        if c == b':' {
            return (&server[..server.len() - j - 1], &server[server.len() - j..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (server, b"")
}

/// ip_hash key material: the address bytes nginx hashes (3 for IPv4, 16 for IPv6) folded
/// into `(length << 32) | C`, where one round of the hash over them is `h × 113^len + C`.
pub fn ip_hash_key(addr: Option<std::net::IpAddr>) -> u64 {
    let bytes: Vec<u8> = match addr {
        Some(std::net::IpAddr::V4(a)) => a.octets()[..3].to_vec(),
        Some(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
        None => vec![0, 0, 0],
    };
    let c = bytes
        .iter()
        .fold(0u64, |h, &b| (h * IP_HASH_MUL + u64::from(b)) % IP_HASH_MOD);
    ((bytes.len() as u64) << 32) | c
}

/// `hash` key material: the key's CRC32 and length, enough to compute every rehash.
pub fn hash_key_material(key: &[u8]) -> u64 {
    (u64::from(crc32fast::hash(key)) << 32) | (key.len() as u64 & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rehash_matches_hashing_the_prefixed_key() {
        let key = b"/some/path?x=1";
        let crc = crc32fast::hash(key);
        assert_eq!(rehash_crc(crc, key.len() as u64, 0), crc);
        assert_eq!(
            rehash_crc(crc, key.len() as u64, 12),
            crc32fast::hash(b"12/some/path?x=1")
        );
    }

    #[test]
    fn ip_hash_material_reproduces_the_byte_loop() {
        let addr: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let k = ip_hash_key(Some(addr));
        let (len, c) = ((k >> 32) as u32, k & 0xffff_ffff);
        let m = (0..len).fold(1u64, |m, _| m * IP_HASH_MUL % IP_HASH_MOD);
        let mut reference = IP_HASH_START;
        let mut folded = IP_HASH_START;
        for _ in 0..3 {
            for b in [10u64, 1, 2] {
                reference = (reference * IP_HASH_MUL + b) % IP_HASH_MOD;
            }
            folded = (folded * m + c) % IP_HASH_MOD;
            assert_eq!(folded, reference);
        }
    }

    #[test]
    fn server_strings_split_like_nginx() {
        assert_eq!(
            split_host_port(b"10.0.0.1:80"),
            (&b"10.0.0.1"[..], &b"80"[..])
        );
        assert_eq!(split_host_port(b"backend"), (&b"backend"[..], &b""[..]));
        assert_eq!(split_host_port(b"unix:/tmp/s"), (&b"/tmp/s"[..], &b""[..]));
        assert_eq!(
            split_host_port(b"[::1]:8080"),
            (&b"[::1]"[..], &b"8080"[..])
        );
    }
}
