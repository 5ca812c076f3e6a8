//! The catalogue's rules on HAProxy and nginx files as written (`SKEW-001` … `SEC-005`, the
//! ids of section 1 of `shared/research/misconfig-catalog.md`), and the diff-only rules that
//! `ballast diff` judges. Each rule reads a view of the file built once per check: the
//! directives in force with their spans (from `ballast-import`'s facts) and the capacity
//! arithmetic across layers. Findings point at the directive at fault; when the fault is an
//! absence, at the block that lacks it.

mod catalogue;
mod haproxy;
mod nginx;

use std::collections::HashMap;
use std::ops::Range;

use ballast_import::Directive;
use ballast_import::facts::{HaproxyFacts, HaproxyProxy, NginxFacts, ProxyPass, Upstream};

pub use catalogue::CATALOGUE;

/// An HAProxy file and what is derived from it once: which proxies feed which backend, and
/// how many connections each frontend admits.
pub struct HaproxyView<'a> {
    pub facts: &'a HaproxyFacts,
    /// For each proxy (by index), the indices of the frontends and listens routing to it.
    feeders: Vec<Vec<usize>>,
}

impl<'a> HaproxyView<'a> {
    pub fn new(facts: &'a HaproxyFacts) -> Self {
        let by_name: HashMap<&str, usize> = facts
            .proxies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_backend())
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut feeders = vec![Vec::new(); facts.proxies.len()];
        for (i, p) in facts.proxies.iter().enumerate() {
            if !p.is_frontend() {
                continue;
            }
            if p.kind == "listen" && !p.binds.is_empty() {
                feeders[i].push(i);
            }
            let mut seen = Vec::new();
            for (w, _) in &p.routes {
                if let Some(&b) = by_name.get(w.text.as_str())
                    && !seen.contains(&b)
                    && b != i
                {
                    seen.push(b);
                    feeders[b].push(i);
                }
            }
        }
        Self { facts, feeders }
    }

    pub fn proxies(&self) -> impl Iterator<Item = (usize, &'a HaproxyProxy)> {
        self.facts.proxies.iter().enumerate()
    }

    pub fn backends(&self) -> impl Iterator<Item = (usize, &'a HaproxyProxy)> {
        self.proxies().filter(|(_, p)| p.is_backend())
    }

    pub fn frontends(&self) -> impl Iterator<Item = (usize, &'a HaproxyProxy)> {
        self.proxies().filter(|(_, p)| p.is_frontend())
    }

    /// Frontends and listens routing to the proxy at `i`.
    pub fn feeders(&self, i: usize) -> impl Iterator<Item = &'a HaproxyProxy> + '_ {
        self.feeders[i].iter().map(|&f| &self.facts.proxies[f])
    }

    /// The global `maxconn`, when written.
    pub fn global_maxconn(&self) -> Option<u64> {
        self.facts
            .global("maxconn")
            .and_then(|d| d.arg(0))
            .and_then(|w| w.text.parse().ok())
    }

    /// Connections a frontend admits: its `maxconn` (own or from `defaults`), else 2000 before
    /// HAProxy 2.0, else the global value; `None` when HAProxy derives it from the fd limit.
    pub fn frontend_maxconn(&self, p: &HaproxyProxy) -> Option<u64> {
        match p.number("maxconn") {
            Some((n, _)) => Some(n),
            None if self.facts.version < ballast_import::Version::new(2, 0, 0) => Some(2000),
            None => self.global_maxconn(),
        }
    }

    /// Connections that can reach the backend at `i`: the sum over its frontends, capped by
    /// the global `maxconn`. `None` when a frontend's limit depends on the environment.
    pub fn admitted(&self, i: usize) -> Option<u64> {
        let mut sum = 0u64;
        let mut any = false;
        for f in self.feeders(i) {
            sum = sum.saturating_add(self.frontend_maxconn(f)?);
            any = true;
        }
        if !any {
            return None;
        }
        Some(self.global_maxconn().map_or(sum, |g| sum.min(g)))
    }

    /// A `timeout client` that bounds what the clients of backend `i` wait: the smallest
    /// among the frontends routing to it.
    pub fn client_timeout(&self, i: usize) -> Option<(std::time::Duration, &'a Directive)> {
        self.feeders(i)
            .filter_map(|f| f.timeout("client"))
            .min_by_key(|(t, _)| *t)
    }
}

/// An nginx file and what is derived from it once: its upstreams, every `proxy_pass` with
/// the blocks it inherits from, and the worker arithmetic.
pub struct NginxView<'a> {
    pub facts: &'a NginxFacts,
    pub upstreams: Vec<Upstream<'a>>,
    pub passes: Vec<ProxyPass<'a>>,
    /// `worker_processes` (1 when unset, the machine's CPUs for `auto`).
    pub workers: u64,
    /// `worker_connections` (512 when unset).
    pub worker_connections: u64,
}

impl<'a> NginxView<'a> {
    /// Whether the file is a whole nginx.conf, whose main context (workers, events) is in it;
    /// a conf.d fragment's is in the file that includes it.
    pub fn whole_file(&self) -> bool {
        self.facts.context == ballast_import::NginxContext::Main
    }

    pub fn new(facts: &'a NginxFacts) -> Self {
        let workers = match facts.main("worker_processes").and_then(|d| d.arg(0)) {
            Some(w) if w.text == "auto" => {
                std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
            }
            Some(w) => w.text.parse().unwrap_or(1),
            None => 1,
        };
        let worker_connections = facts
            .events("worker_connections")
            .and_then(|d| d.arg(0))
            .and_then(|w| w.text.parse().ok())
            .unwrap_or(512);
        Self {
            facts,
            upstreams: facts.upstreams(),
            passes: facts.proxy_passes(),
            workers,
            worker_connections,
        }
    }

    /// Whether `worker_processes` may run more than one worker (`auto` counts as many: the
    /// file runs on other machines than this one).
    pub fn many_workers(&self) -> bool {
        match self.facts.main("worker_processes").and_then(|d| d.arg(0)) {
            Some(w) if w.text == "auto" => true,
            _ => self.workers > 1,
        }
    }

    /// Concurrent proxied requests: workers × worker_connections / 2 (each holds a client
    /// and an upstream connection).
    pub fn capacity(&self) -> u64 {
        self.workers.saturating_mul(self.worker_connections) / 2
    }

    /// The `proxy_pass`es to the upstream.
    pub fn passes_to<'s>(&'s self, upstream: &'s str) -> impl Iterator<Item = &'s ProxyPass<'a>> {
        self.passes
            .iter()
            .filter(move |p| p.upstream_name() == Some(upstream))
    }

    /// A directive anywhere in the `http` blocks' top level.
    pub fn http(&self, name: &str) -> Option<&'a Directive> {
        self.facts
            .contexts()
            .filter(|(c, _)| *c == "http")
            .find_map(|(_, b)| ballast_import::facts::last(b, name))
    }
}

/// Whether a pool, server or address name says it is a cache tier (HASH-001).
pub(crate) fn looks_like_cache(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("cache") || name.contains("varnish")
}

pub(crate) fn span(d: &Directive) -> Option<Range<usize>> {
    Some(d.span.clone())
}
