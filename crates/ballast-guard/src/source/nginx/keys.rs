//! Hashing pools' keys, read from the access log and sent through nginx's own algorithm as
//! `ballast simulate` emulates it (ballast-core's `KeyReader` and `Balancer`: `hash`,
//! `hash ... consistent`, `ip_hash`), so a hashing pool is judged against what its keys
//! predict instead of a wide band.
//!
//! ballast's format carries `$remote_addr`, `$host` and `$request_uri`, which give every
//! key built of the client address, the URI, its arguments and the host; a key reading a
//! header or a cookie (`$http_x_user`, `$cookie_sid`) needs that variable in the format too,
//! added as `http_x_user="$http_x_user"` ([`key_variables`] lists them for a configuration).
//! A line without them counts as `unseen`: its key is not predicted.

use std::collections::HashMap;
use std::net::IpAddr;

use ballast_core::Config;
use ballast_core::balance::{
    Balancer, KeyReader, NginxTemplate, PoolView, RequestParts, ServerLoad,
};
use ballast_core::config::Pool;
use ballast_core::emulation::Emulation;
use ballast_core::sample::KeyPrediction;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::log::Record;

/// The fewest distinct key values an interval tracks for its commonest key: beyond it, new
/// values are counted but not kept (a key per request must not grow memory).
const MAX_TRACKED_KEYS: usize = 10_000;

/// The variables a pool's key reads that ballast's base format does not carry.
fn needed_variables(template: &NginxTemplate) -> Vec<String> {
    template
        .variables()
        .filter(|v| v.starts_with("http_") || v.starts_with("cookie_"))
        .map(str::to_string)
        .collect()
}

/// The variables to add to the log format so every hashing pool's keys are visible, sorted.
pub fn key_variables(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = config
        .pools
        .values()
        .filter_map(|p| match &p.emulate {
            Some(Emulation::NginxHash { key, .. }) => {
                Some(needed_variables(&NginxTemplate::parse(key)))
            }
            _ => None,
        })
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One logged request as the parts a key is read from.
struct Logged<'r, 'a> {
    record: &'r Record<'a>,
    client: Option<IpAddr>,
    path: &'r str,
    query: Option<&'r str>,
    /// The `Cookie` header rebuilt from the `cookie_*` fields, when the line has no
    /// `http_cookie`.
    cookie: String,
}

impl<'r, 'a> Logged<'r, 'a> {
    fn new(record: &'r Record<'a>) -> Self {
        let uri: &str = &record.request_uri;
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        let cookie = record
            .extra
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix("cookie_")?, v)))
            .filter(|(_, v)| v.as_ref() != "-")
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        Logged {
            record,
            client: record.remote_addr.parse().ok(),
            path,
            query,
            cookie,
        }
    }

    /// An added variable's value; nginx logs an empty one as `-`.
    fn extra(&self, name: &str) -> Option<&str> {
        self.record
            .extra
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
            .filter(|v| *v != "-")
    }

    fn carries(&self, name: &str) -> bool {
        self.record
            .extra
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl RequestParts for Logged<'_, '_> {
    fn client_ip(&self) -> Option<IpAddr> {
        self.client
    }
    fn path(&self) -> Option<&str> {
        Some(self.path)
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
    fn header(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case("host") {
            return Some(&self.record.host);
        }
        let variable = format!("http_{}", name.to_ascii_lowercase().replace('-', "_"));
        if let Some(v) = self.extra(&variable) {
            return Some(v);
        }
        (name.eq_ignore_ascii_case("cookie") && !self.cookie.is_empty())
            .then_some(self.cookie.as_str())
    }
}

/// The pool's servers as the file gives them, all up.
struct AllUp<'a>(&'a [ServerLoad]);

impl PoolView for AllUp<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn server(&self, i: usize) -> ServerLoad {
        self.0[i]
    }
    fn as_slice(&self) -> Option<&[ServerLoad]> {
        Some(self.0)
    }
}

/// One hashing pool's prediction: every request seen, through the emulated algorithm.
#[derive(Debug, Clone)]
pub struct Predictor {
    key: String,
    template: Option<NginxTemplate>,
    needs: Vec<String>,
    reader: KeyReader,
    balancer: Balancer,
    view: Vec<ServerLoad>,
    rng: SmallRng,
    predicted: Vec<u64>,
    unseen: u64,
    interval_keys: HashMap<Vec<u8>, u64>,
    interval_keyed: u64,
}

impl Predictor {
    /// A predictor for a pool nginx balances by a key (`hash`, `ip_hash`); `None` otherwise.
    pub fn for_pool(pool: &Pool) -> Option<Predictor> {
        let (key, template) = match &pool.emulate {
            Some(Emulation::NginxHash { key, .. }) => {
                (key.clone(), Some(NginxTemplate::parse(key)))
            }
            Some(Emulation::NginxIpHash) => ("ip_hash ($remote_addr)".to_string(), None),
            _ => return None,
        };
        let needs = template.as_ref().map(needed_variables).unwrap_or_default();
        // The file's weights with every server up: nginx open source does not say which
        // servers it took out for `fail_timeout`, and `down` is the balancer's own to apply.
        let view = pool
            .servers
            .iter()
            .map(|s| ServerLoad {
                available: true,
                weight: s.weight,
                in_flight: 0,
                limit: u32::MAX,
            })
            .collect();
        Some(Predictor {
            key,
            template,
            needs,
            reader: KeyReader::new(pool),
            balancer: Balancer::new(pool),
            view,
            rng: SmallRng::seed_from_u64(0x0062_616c_6c61_7374),
            predicted: vec![0; pool.servers.len()],
            unseen: 0,
            interval_keys: HashMap::new(),
            interval_keyed: 0,
        })
    }

    /// The key as configured.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Keeps the counts of another predictor for the servers both have, by position in the
    /// same names (a reload keeps cumulative figures cumulative).
    pub fn keep_counts(&mut self, old: &Predictor, map: &[Option<usize>]) {
        for (s, from) in map.iter().enumerate() {
            if let (Some(from), Some(slot)) = (from, self.predicted.get_mut(s)) {
                *slot = old.predicted.get(*from).copied().unwrap_or(0);
            }
        }
        self.unseen = old.unseen;
    }

    /// One request of the pool, as logged.
    pub fn observe(&mut self, record: &Record) {
        let parts = Logged::new(record);
        if !self.needs.iter().all(|n| parts.carries(n)) {
            self.unseen += 1;
            return;
        }
        let key = self.reader.read(&parts);
        let Some(i) = self.balancer.pick(&AllUp(&self.view), key, &mut self.rng) else {
            self.unseen += 1;
            return;
        };
        if let Some(slot) = self.predicted.get_mut(i) {
            *slot += 1;
        }
        let value = match &self.template {
            Some(t) => t.eval(&parts),
            None => record.remote_addr.as_bytes().to_vec(),
        };
        self.interval_keyed += 1;
        let tracked = self.interval_keys.len();
        match self.interval_keys.get_mut(&value) {
            Some(n) => *n += 1,
            None if tracked < MAX_TRACKED_KEYS => {
                self.interval_keys.insert(value, 1);
            }
            None => {}
        }
    }

    /// The prediction now; starts the next interval.
    pub fn sample(&mut self) -> KeyPrediction {
        let top = self
            .interval_keys
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(k, n)| (String::from_utf8_lossy(k).into_owned(), *n));
        let prediction = KeyPrediction {
            key: self.key.clone(),
            requests: self.predicted.clone(),
            unseen: self.unseen,
            distinct_keys: self.interval_keys.len() as u64,
            top_key_share: match &top {
                Some((_, n)) if self.interval_keyed > 0 => *n as f64 / self.interval_keyed as f64,
                _ => 0.0,
            },
            top_key: top.map(|t| t.0),
        };
        self.interval_keys.clear();
        self.interval_keyed = 0;
        prediction
    }
}
