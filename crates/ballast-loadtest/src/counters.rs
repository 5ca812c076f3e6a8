//! Attribution through the balancer's own counters: the per-server request counters of
//! `ballast serve`'s admin API (`/sample`) or HAProxy's stats socket (`lbtot`), read before and
//! after the measured part of a run through the guard's sources, and their difference set
//! beside the response-header attribution. The counters attribute what the header cannot (a
//! 503 the balancer wrote for a server that refused it, a backend that omits the header); when
//! both are there, each backend's two counts are compared and any disagreement is named.
//!
//! The reading is blocking (the guard's sources are synchronous): [`run_counted`] reads outside
//! the async run, and runs the warm-up as a run of its own first, so the counters cover the
//! measured part exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_core::sample::{PoolSample, Sample};
use ballast_guard::source::Source;
use ballast_guard::source::ballast::BallastSource;
use ballast_guard::source::haproxy::{Endpoint, HaproxySource};
use serde::Serialize;

use crate::plan::{Plan, Stop};
use crate::run::{self, Finished, Progress};
use crate::tally::{BackendTally, Tally};

/// How responses are attributed to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// The response header alone (`--served-by`).
    Header,
    /// The balancer's counters give the figures; the header is compared with them.
    Counters,
    /// The header gives the figures; the counters are set beside it and compared.
    Both,
}

impl Attribute {
    /// `header`, `counters` or `both`.
    pub fn parse(text: &str) -> Result<Attribute, String> {
        match text.trim() {
            "header" => Ok(Attribute::Header),
            "counters" => Ok(Attribute::Counters),
            "both" => Ok(Attribute::Both),
            other => Err(format!(
                "--attribute `{other}`: use header, counters or both"
            )),
        }
    }
}

/// A balancer whose counters are read: one of the guard's sources.
pub struct Counters {
    source: Box<dyn Source>,
    /// `ballast admin http://127.0.0.1:9900`, `haproxy stats /run/haproxy.sock`.
    pub described: String,
}

impl Counters {
    /// `ballast serve`'s admin API: `127.0.0.1:9900` or `http://127.0.0.1:9900`.
    pub fn ballast(admin: &str) -> Counters {
        let source = BallastSource::new(admin);
        Counters {
            described: format!("ballast admin {}", source.instance()),
            source: Box::new(source),
        }
    }

    /// HAProxy's stats socket (a path, `unix:PATH` or `HOST:PORT`); the stats page's CSV or
    /// the exporter's URL also work, as the guard reads them.
    pub fn haproxy(endpoint: &str) -> Result<Counters, String> {
        let endpoint = Endpoint::parse(endpoint).map_err(|e| match &e.fix {
            Some(fix) => format!("--stats-socket: {e}; {fix}"),
            None => format!("--stats-socket: {e}"),
        })?;
        let described = format!("haproxy stats {endpoint}");
        Ok(Counters {
            source: Box::new(HaproxySource::new(endpoint, None)),
            described,
        })
    }

    /// One reading now (blocking).
    pub fn read(&mut self) -> Result<Sample, String> {
        self.source.sample(0).map_err(|e| match &e.fix {
            Some(fix) => format!("cannot read the counters of {}: {e}; {fix}", self.described),
            None => format!("cannot read the counters of {}: {e}", self.described),
        })
    }
}

/// One server's counts over the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCount {
    pub name: String,
    /// Times the balancer chose it (ballast's picks, HAProxy's `lbtot`).
    pub requests: u64,
    /// Its responses by class (`1xx` … `5xx`, `other`: no status), as the balancer counted
    /// them.
    pub responses: BTreeMap<String, u64>,
}

/// What the counters say of a run: one pool's servers, the differences of their counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub source: String,
    pub pool: String,
    pub servers: Vec<ServerCount>,
    /// Other pools whose counters moved during the run (traffic this run did not send, or a
    /// URL that reaches several pools).
    pub other_pools: Vec<String>,
}

impl Counted {
    pub fn requests(&self) -> u64 {
        self.servers.iter().map(|s| s.requests).sum()
    }
}

fn moved(before: Option<&PoolSample>, after: &PoolSample) -> u64 {
    after
        .servers
        .iter()
        .map(|s| {
            let earlier = before
                .and_then(|b| b.servers.iter().find(|x| x.name == s.name))
                .map_or(0, |x| x.requests);
            s.requests.saturating_sub(earlier)
        })
        .sum()
}

/// The counters' difference over one pool: `pool` when given, else the pool whose counters
/// moved (the one that moved most, with the others named, when several did).
pub fn difference(
    before: &Sample,
    after: &Sample,
    pool: Option<&str>,
    source: &str,
) -> Result<Counted, String> {
    let find = |s: &Sample, name: &str| s.pools.iter().find(|p| p.name == name).cloned();
    // A reset anywhere first: it would hide the movement the pool is chosen by.
    for p in &after.pools {
        for s in &p.servers {
            let earlier = find(before, &p.name).and_then(|b| {
                b.servers
                    .iter()
                    .find(|x| x.name == s.name)
                    .map(|x| x.requests)
            });
            if let Some(earlier) = earlier.filter(|e| s.requests < *e) {
                return Err(format!(
                    "the counters of `{}` (pool `{}`) went backwards at {source} ({earlier} \
                     before, {} after): the balancer restarted or reloaded during the run; run \
                     again",
                    s.name, p.name, s.requests
                ));
            }
        }
    }
    let movement: Vec<(String, u64)> = after
        .pools
        .iter()
        .map(|p| (p.name.clone(), moved(find(before, &p.name).as_ref(), p)))
        .collect();
    let chosen = match pool {
        Some(name) => {
            if find(after, name).is_none() {
                let known: Vec<&str> = after.pools.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "{source} has no pool `{name}`; it has: {known:?} (choose with --pool)"
                ));
            }
            name.to_string()
        }
        None => match movement.iter().max_by_key(|(_, n)| *n) {
            Some((name, n)) if *n > 0 => name.clone(),
            _ => {
                return Err(format!(
                    "no pool's counters moved at {source} during the run: is it the balancer \
                     the URL reaches? (give its admin address or stats socket)"
                ));
            }
        },
    };
    let (Some(after_pool), before_pool) = (find(after, &chosen), find(before, &chosen)) else {
        return Err(format!("{source} has no pool `{chosen}`"));
    };
    let mut servers = Vec::new();
    for s in &after_pool.servers {
        let earlier = before_pool
            .as_ref()
            .and_then(|b| b.servers.iter().find(|x| x.name == s.name));
        let (requests0, responses0) =
            earlier.map_or((0, Default::default()), |x| (x.requests, x.responses));
        let r = s.responses;
        let classes = [
            ("1xx", r.c1xx, responses0.c1xx),
            ("2xx", r.c2xx, responses0.c2xx),
            ("3xx", r.c3xx, responses0.c3xx),
            ("4xx", r.c4xx, responses0.c4xx),
            ("5xx", r.c5xx, responses0.c5xx),
            ("other", r.other, responses0.other),
        ];
        servers.push(ServerCount {
            name: s.name.clone(),
            requests: s.requests - requests0,
            responses: classes
                .iter()
                .map(|(c, now, then)| (c.to_string(), now.saturating_sub(*then)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        });
    }
    Ok(Counted {
        source: source.to_string(),
        pool: chosen.clone(),
        servers,
        other_pools: movement
            .into_iter()
            .filter(|(name, n)| *n > 0 && *name != chosen)
            .map(|(name, _)| name)
            .collect(),
    })
}

/// Runs the plan with the counters read around its measured part: the warm-up (when there is
/// one) as a run of its own first, then a reading, the measured run, another reading. The
/// finished run's `warmup_requests` are the warm-up run's.
pub fn run_counted(
    runtime: &tokio::runtime::Runtime,
    plan: Plan,
    counters: &mut Counters,
    pool: Option<&str>,
    mut progress: impl FnMut(&Progress) + Send,
) -> Result<(Finished, Counted), String> {
    let mut warmup_requests = 0;
    if !plan.warmup.is_zero() {
        let mut warmup = plan.clone();
        warmup.stop = Stop::After(plan.warmup);
        warmup.warmup = Duration::ZERO;
        let warm = plan.warmup;
        let done = runtime.block_on(run::run(warmup, |p: &Progress| {
            progress(&Progress {
                warming_up: p.elapsed < warm,
                ..*p
            })
        }));
        warmup_requests = done.tally.requests() + done.tally.warmup_requests;
    }
    let mut measured = plan;
    measured.warmup = Duration::ZERO;
    let (mut finished, counted) = count_around(counters, pool, || {
        runtime.block_on(run::run(measured, progress))
    })?;
    finished.tally.warmup_requests = warmup_requests;
    Ok((finished, counted))
}

/// Reads the counters, runs `send`, reads them again: the run and the counters' difference.
pub fn count_around(
    counters: &mut Counters,
    pool: Option<&str>,
    send: impl FnOnce() -> Finished,
) -> Result<(Finished, Counted), String> {
    let before = counters.read()?;
    let finished = send();
    // A response is written before the balancer's last counter update of that request
    // (ballast counts the response class when the body ends): a moment for those to land.
    std::thread::sleep(Duration::from_millis(50));
    let after = counters.read()?;
    let counted = difference(&before, &after, pool, &counters.described)?;
    Ok((finished, counted))
}

/// One backend in the counters' view, beside the header's count of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterBackend {
    pub name: String,
    /// By the balancer's counters.
    pub requests: u64,
    pub share: f64,
    pub expected_share: Option<f64>,
    pub ratio: Option<f64>,
    /// The balancer's count of its responses by class.
    pub responses: BTreeMap<String, u64>,
    /// The responses the header attributed to it (`None`: the header was not read).
    pub by_header: Option<u64>,
}

/// The counters' attribution of the run, for the report (`counters` in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterReport {
    /// Which balancer and how it was read.
    pub source: String,
    pub pool: String,
    /// Requests the counters saw, over the pool's servers.
    pub requests: u64,
    /// Requests this run sent in its measured part.
    pub sent: u64,
    pub backends: Vec<CounterBackend>,
    pub peak_ratio: f64,
    pub jain: f64,
    pub chi2_p: f64,
    /// Whether the header was compared with the counters.
    pub compared: bool,
    /// Every backend's header count equals its counter count (`true` when not compared).
    pub agree: bool,
    /// Each disagreement, in words.
    pub disagreements: Vec<String>,
    /// What the reading had to note (other pools that moved, other traffic).
    pub notes: Vec<String>,
}

impl CounterReport {
    /// Sets the counters beside the header's tally; `expected` as the report's (by the names
    /// the counters use: server names), empty for an even split.
    pub fn build(
        counted: &Counted,
        tally: &Tally,
        compare: bool,
        expected: &BTreeMap<String, f64>,
    ) -> CounterReport {
        let total = counted.requests();
        let even = 1.0 / counted.servers.len().max(1) as f64;
        let backends: Vec<CounterBackend> = counted
            .servers
            .iter()
            .map(|s| {
                let share = if total == 0 {
                    0.0
                } else {
                    s.requests as f64 / total as f64
                };
                let expected_share = if expected.is_empty() {
                    Some(even)
                } else {
                    expected.get(&s.name).copied()
                };
                CounterBackend {
                    name: s.name.clone(),
                    requests: s.requests,
                    share,
                    expected_share,
                    ratio: expected_share.filter(|e| *e > 0.0).map(|e| share / e),
                    responses: s.responses.clone(),
                    by_header: compare
                        .then(|| tally.backends.get(&s.name).map_or(0, |b| b.requests)),
                }
            })
            .collect();
        let e =
            crate::report::evenness_over(backends.iter().map(|b| (b.requests, b.expected_share)));
        let mut disagreements = Vec::new();
        if compare {
            for b in &backends {
                let header = b.by_header.unwrap_or(0);
                if header != b.requests {
                    disagreements.push(format!(
                        "{}: the counters say {}, the header {header}",
                        b.name, b.requests
                    ));
                }
            }
            for (name, b) in &tally.backends {
                if !counted.servers.iter().any(|s| &s.name == name) {
                    disagreements.push(format!(
                        "{name}: the header names it {} times; pool `{}` has no such server",
                        b.requests, counted.pool
                    ));
                }
            }
            if !disagreements.is_empty() && tally.unattributed.requests > 0 {
                disagreements.push(format!(
                    "{} responses had no attribution header: the counters attribute them",
                    tally.unattributed.requests
                ));
            }
        }
        let sent = tally.requests();
        let mut notes = Vec::new();
        if !counted.other_pools.is_empty() {
            notes.push(format!(
                "the counters of other pools moved too: {:?}",
                counted.other_pools
            ));
        }
        if total > sent {
            notes.push(format!(
                "the counters moved by {} more than this run sent ({sent}): other traffic, or \
                 retries (each attempt is a pick)",
                total - sent
            ));
        }
        CounterReport {
            source: counted.source.clone(),
            pool: counted.pool.clone(),
            requests: total,
            sent,
            backends,
            peak_ratio: e.peak_ratio,
            jain: e.jain,
            chi2_p: e.chi2_p,
            compared: compare,
            agree: disagreements.is_empty(),
            disagreements,
            notes,
        }
    }

    /// The counters' section of the text report.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nby the balancer's counters ({}, pool `{}`): {} requests",
            self.source, self.pool, self.requests
        );
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>7} {:>8} {:>6} {:>9} {:>6}",
            "backend", "requests", "share", "expected", "ratio", "by header", "5xx"
        );
        for b in &self.backends {
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>6.1}% {:>8} {:>6} {:>9} {:>6}",
                b.name,
                b.requests,
                b.share * 100.0,
                b.expected_share
                    .map(|e| format!("{:.1}%", e * 100.0))
                    .unwrap_or_else(|| "-".into()),
                b.ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "-".into()),
                b.by_header
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                b.responses.get("5xx").copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "peak ratio R {:.2}  Jain {:.3}  χ² p {:.3}",
            self.peak_ratio, self.jain, self.chi2_p
        );
        if self.compared {
            if self.agree {
                let _ = writeln!(
                    out,
                    "the header and the counters agree, request for request"
                );
            } else {
                for d in &self.disagreements {
                    let _ = writeln!(out, "disagreement: {d}");
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

/// The tally with its backends as the counters count them, for `--attribute counters`: each
/// backend's requests and response classes from the counters, its latency histogram from the
/// header's responses of it (empty when the header never named it); nothing unattributed.
pub fn retally(tally: &Tally, counted: &Counted) -> Tally {
    let mut out = tally.clone();
    out.backends.clear();
    for s in &counted.servers {
        let mut b = tally.backends.get(&s.name).cloned().unwrap_or_else(|| {
            let mut empty = tally.unattributed.clone();
            empty.latency_us.reset();
            empty
        });
        b.requests = s.requests;
        b.classes =
            ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| s.responses.get(c).copied().unwrap_or(0));
        out.backends.insert(s.name.clone(), b);
    }
    out.unattributed = BackendTally {
        requests: 0,
        classes: [0; 5],
        latency_us: {
            let mut h = tally.unattributed.latency_us.clone();
            h.reset();
            h
        },
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::Outcome;
    use ballast_core::sample::{Promise, ResponseClasses, ServerSample, ServerState};

    fn server(name: &str, requests: u64, c5xx: u64) -> ServerSample {
        ServerSample {
            name: name.into(),
            requests,
            active: 0,
            queued: 0,
            max_connections: None,
            max_queue: None,
            weight: 1,
            state: ServerState::Up,
            backup: false,
            responses: ResponseClasses {
                c2xx: requests - c5xx,
                c5xx,
                ..Default::default()
            },
            latency_ms: None,
            state_for_s: None,
        }
    }

    /// A server's name, its requests and its 5xx.
    type Counts<'a> = (&'a str, u64, u64);

    fn sample(pools: &[(&str, &[Counts])]) -> Sample {
        Sample {
            pools: pools
                .iter()
                .map(|(name, servers)| PoolSample {
                    noted: Default::default(),
                    name: name.to_string(),
                    promise: Promise::RequestShares,
                    servers: servers.iter().map(|(n, r, e)| server(n, *r, *e)).collect(),
                    queued: 0,
                    predicted: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_pool_that_moved_is_differenced_and_a_reset_is_refused() {
        let before = sample(&[
            ("app", &[("a", 10, 0), ("b", 5, 0)]),
            ("other", &[("x", 3, 0)]),
        ]);
        let after = sample(&[
            ("app", &[("a", 110, 0), ("b", 65, 7)]),
            ("other", &[("x", 4, 0)]),
        ]);
        let c = difference(&before, &after, None, "test").unwrap();
        assert_eq!(c.pool, "app");
        assert_eq!(c.requests(), 160);
        assert_eq!(c.servers[1].requests, 60);
        assert_eq!(c.servers[1].responses["5xx"], 7);
        assert_eq!(c.other_pools, ["other"]);
        let chosen = difference(&before, &after, Some("other"), "test").unwrap();
        assert_eq!(chosen.requests(), 1);
        assert!(
            difference(&before, &after, Some("nope"), "test")
                .unwrap_err()
                .contains("no pool `nope`")
        );
        let reset = sample(&[("app", &[("a", 2, 0), ("b", 1, 0)])]);
        assert!(
            difference(&before, &reset, None, "test")
                .unwrap_err()
                .contains("went backwards")
        );
        assert!(
            difference(&before, &before, None, "test")
                .unwrap_err()
                .contains("no pool's counters moved")
        );
    }

    #[test]
    fn counters_are_compared_with_the_header_and_a_difference_is_named() {
        let mut tally = Tally::default();
        for (name, n) in [(Some("a"), 100), (Some("b"), 53), (None, 7)] {
            for _ in 0..n {
                tally.record(
                    &Outcome::Response {
                        status: if name.is_some() { 200 } else { 503 },
                        backend: name.map(str::to_string),
                    },
                    Duration::from_millis(1),
                );
            }
        }
        let counted = difference(
            &sample(&[("app", &[("a", 0, 0), ("b", 0, 0)])]),
            &sample(&[("app", &[("a", 100, 0), ("b", 60, 7)])]),
            None,
            "test",
        )
        .unwrap();
        let r = CounterReport::build(&counted, &tally, true, &BTreeMap::new());
        assert!(!r.agree);
        assert_eq!(r.backends[1].by_header, Some(53));
        assert!(r.disagreements[0].contains("b: the counters say 60, the header 53"));
        assert!(r.disagreements.last().unwrap().contains("7 responses"));
        assert_eq!(r.requests, 160);
        assert_eq!(r.sent, 160);
        assert!(r.table().contains("disagreement: b"));
        let retallied = retally(&tally, &counted);
        assert_eq!(retallied.backends["b"].requests, 60);
        assert_eq!(retallied.backends["b"].classes[4], 7);
        assert_eq!(retallied.unattributed.requests, 0);
        assert_eq!(retallied.requests(), 160);
        // Agreement: the same counts both ways.
        let mut agreeing = Tally::default();
        for (name, n) in [("a", 100), ("b", 60)] {
            for _ in 0..n {
                agreeing.record(
                    &Outcome::Response {
                        status: 200,
                        backend: Some(name.into()),
                    },
                    Duration::from_millis(1),
                );
            }
        }
        let ok = CounterReport::build(&counted, &agreeing, true, &BTreeMap::new());
        assert!(ok.agree, "{:?}", ok.disagreements);
        assert!(ok.table().contains("agree, request for request"));
    }
}
