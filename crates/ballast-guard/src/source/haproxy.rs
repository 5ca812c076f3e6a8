//! HAProxy as a source: the stats socket (`show stat`, `show info`, `show servers state`), the
//! stats page's CSV (`;csv`) and the built-in Prometheus exporter, each turned into one
//! [`Sample`]. Columns are read by header, never by position. Weights and states come from the
//! live process (a runtime-API `set weight` or `disable server` shows in the next sample);
//! what a pool's algorithm promises comes from the CSV's `algo` column, else from the
//! configuration file when one is given, else a stated default.
//!
//! - [`stat`], [`info`], [`servers_state`], [`exposition`]: pure parsers of HAProxy's outputs.
//! - [`to_sample`]: the mapping of those onto `ballast_core::sample`.
//! - [`transport`]: the I/O (one command per socket connection, one GET per page).
//! - [`HaproxySource`]: all of it behind [`Source`].

pub mod exposition;
pub mod info;
pub mod servers_state;
pub mod stat;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ballast_core::sample::{
    FrontendSample, PoolSample, ProcessSample, Promise, ResponseClasses, Sample, ServerSample,
    ServerState,
};

use self::servers_state::ServerStateRow;
use self::stat::{RowType, StatTable};
use self::transport::{HttpKind, SocketAddress};
use super::{Source, SourceError};

/// What is wrong with a piece of HAProxy output: the line (1-based, 0 when not tied to one)
/// and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

impl ParseError {
    pub fn new(line: usize, what: impl Into<String>) -> Self {
        Self {
            line,
            what: what.into(),
        }
    }

    fn into_source_error(self, from: &str) -> SourceError {
        SourceError::new(format!("cannot read {from}: {self}")).with_fix(
            "check that the endpoint is HAProxy's (a stats socket, a stats page URL ending in `;csv`, or the exporter's URL) and that HAProxy is 2.x",
        )
    }
}

/// A server's `status` text as HAProxy 2.6 writes it, as a [`ServerState`]. `UP 1/3` is up
/// and failing checks (still in rotation); `DOWN 1/2` is down and recovering (not yet in
/// rotation); `NOLB` takes no new load-balanced traffic, as `DRAIN`; `no check` is up.
pub fn server_state(status: &str) -> Result<ServerState, String> {
    if status == "no check" {
        return Ok(ServerState::Up);
    }
    match status.split([' ', '(']).next().unwrap_or("") {
        "UP" => Ok(ServerState::Up),
        "DOWN" => Ok(ServerState::Down),
        "NOLB" | "DRAIN" => Ok(ServerState::Drain),
        "MAINT" => Ok(ServerState::Maintenance),
        _ => Err(format!(
            "server status `{status}` is none of HAProxy's (UP, UP n/m, DOWN, DOWN n/m, NOLB, DRAIN, MAINT, MAINT (via …), no check)"
        )),
    }
}

/// What a backend's `algo` column says its algorithm promises; `None` when the column does
/// not name one (empty at socket level `user`; `unknown` for `random` in 2.6).
pub fn promise_of_algo(algo: &str) -> Option<Promise> {
    match algo {
        "roundrobin" | "static-rr" => Some(Promise::RequestShares),
        "leastconn" => Some(Promise::Concurrency),
        "first" => Some(Promise::FillInOrder),
        "source" | "uri" | "url_param" | "hdr" | "rdp-cookie" | "hash" => {
            Some(Promise::KeyDependent)
        }
        _ => None,
    }
}

/// What the configuration file says of each backend, for what the live process does not
/// report (`random`'s draws; backups, which the exporter does not mark).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfiguredPools {
    /// By backend name: its promise and its backup servers.
    pub pools: BTreeMap<String, ConfiguredPool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfiguredPool {
    pub promise: Promise,
    pub backups: BTreeSet<String>,
}

impl ConfiguredPools {
    /// Imports an HAProxy configuration file with `ballast-import`.
    pub fn import(path: &Path) -> Result<ConfiguredPools, SourceError> {
        let options = ballast_import::Options {
            format: Some(ballast_import::Format::Haproxy),
            ..Default::default()
        };
        let imported = ballast_import::import_file(path, &options).map_err(|e| {
            let first = e
                .diagnostics
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default();
            SourceError::new(format!(
                "cannot read the HAProxy configuration {}: {first}",
                path.display()
            ))
            .with_fix(format!(
                "run `ballast check {}` to see every problem, or watch without the configuration file",
                path.display()
            ))
        })?;
        let pools = imported
            .loaded
            .config
            .pools
            .iter()
            .map(|(name, pool)| {
                (
                    name.clone(),
                    ConfiguredPool {
                        promise: Promise::of(pool),
                        backups: pool
                            .servers
                            .iter()
                            .filter(|s| s.backup)
                            .map(|s| s.name.clone())
                            .collect(),
                    },
                )
            })
            .collect();
        Ok(ConfiguredPools { pools })
    }

    /// A backend by its HAProxy name (the model writes `[`/`]` as `_`).
    pub fn pool(&self, backend: &str) -> Option<&ConfiguredPool> {
        self.pools
            .get(backend)
            .or_else(|| self.pools.get(&backend.replace(['[', ']'], "_")))
    }
}

/// A sample and what the mapping had to assume, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub sample: Sample,
    pub notes: Vec<String>,
}

/// Maps a `show stat` table (parsed, or built from the exporter) onto a sample: one pool per
/// backend with servers, its frontends, and the process when given. `states` (from `show
/// servers state`) overrides a server's state when its admin bits put it in maintenance or
/// drain (the CSV status names only one cause).
pub fn to_sample(
    stats: &StatTable,
    states: Option<&[ServerStateRow]>,
    process: Option<ProcessSample>,
    configured: Option<&ConfiguredPools>,
    at_ms: u64,
    instance: &str,
) -> Result<Mapped, ParseError> {
    let mut notes = BTreeSet::new();
    let mut order: Vec<String> = Vec::new();
    let mut backends: BTreeMap<String, (Option<String>, u64)> = BTreeMap::new();
    let mut servers: BTreeMap<String, Vec<ServerSample>> = BTreeMap::new();
    let mut frontends = Vec::new();
    let has_backup_column = stats.has_column("bck");
    for row in stats.rows() {
        let pxname = row.get("pxname").unwrap_or("").to_string();
        let number = |column: &str| row.number(column).map(|n| n.unwrap_or(0));
        match row.row_type()? {
            RowType::Frontend => frontends.push(FrontendSample {
                name: pxname,
                active: number("scur")?,
                max_connections: row.number("slim")?,
                // HAProxy counts no refusals at `maxconn`: it stops accepting, and new
                // connections wait in the kernel's backlog (`dcon`/`dses` count rule denials).
                refused: 0,
            }),
            RowType::Listener => {}
            RowType::Backend => {
                if !order.contains(&pxname) {
                    order.push(pxname.clone());
                }
                backends.insert(
                    pxname,
                    (row.text("algo").map(str::to_string), number("qcur")?),
                );
            }
            RowType::Server => {
                if !order.contains(&pxname) {
                    order.push(pxname.clone());
                }
                let name = row.get("svname").unwrap_or("").to_string();
                let status = row.get("status").unwrap_or("");
                let mut state = server_state(status).map_err(|what| {
                    ParseError::new(row.line(), format!("{}: {what}", row.name()))
                })?;
                if let Some(s) = states
                    .and_then(|all| all.iter().find(|s| s.backend == pxname && s.server == name))
                {
                    if s.in_maintenance() {
                        state = ServerState::Maintenance;
                    } else if s.draining() && state == ServerState::Up {
                        state = ServerState::Drain;
                    }
                }
                let backup = if has_backup_column {
                    number("bck")? > 0
                } else {
                    configured
                        .and_then(|c| c.pool(&pxname))
                        .is_some_and(|p| p.backups.contains(&name))
                };
                let requests = number("lbtot")?;
                let responses = ResponseClasses {
                    c1xx: number("hrsp_1xx")?,
                    c2xx: number("hrsp_2xx")?,
                    c3xx: number("hrsp_3xx")?,
                    c4xx: number("hrsp_4xx")?,
                    c5xx: number("hrsp_5xx")?,
                    other: number("hrsp_other")?,
                };
                servers.entry(pxname).or_default().push(ServerSample {
                    // `lastchg`: seconds since the last UP/DOWN/MAINT/DRAIN transition.
                    state_for_s: row.number("lastchg")?,
                    name,
                    requests,
                    active: number("scur")?,
                    queued: number("qcur")?,
                    max_connections: row.number("slim")?,
                    max_queue: row.number("qlimit")?,
                    weight: u32::try_from(number("weight")?).unwrap_or(u32::MAX),
                    state,
                    backup,
                    responses,
                    // `rtime` averages the last 1024 responses: 0 before the first one.
                    latency_ms: if requests > 0 {
                        row.number("rtime")?.map(|ms| ms as f64)
                    } else {
                        None
                    },
                });
            }
        }
    }
    if !has_backup_column && configured.is_none() {
        notes.insert(
            "these stats do not mark backup servers (the exporter never does): every server is taken as a primary; give the configuration file to tell them".to_string(),
        );
    }
    let mut pools = Vec::new();
    for name in order {
        let Some(members) = servers.remove(&name) else {
            continue;
        };
        let (algo, queued) = backends.get(&name).cloned().unwrap_or((None, 0));
        let promise = match algo.as_deref().and_then(promise_of_algo) {
            Some(p) => p,
            None => match configured.and_then(|c| c.pool(&name)) {
                Some(p) => p.promise,
                None => {
                    let (promise, why) = match algo.as_deref() {
                        // HAProxy 2.6 names every algorithm but `random`, whose default of two
                        // draws keeps the less loaded server.
                        Some("unknown") => (
                            Promise::Concurrency,
                            "HAProxy reports `unknown`, which in 2.6 is `random` (two draws by default): judged on concurrency",
                        ),
                        Some(_) => (
                            Promise::RequestShares,
                            "its algorithm is not one ballast knows: judged on request shares",
                        ),
                        None => (
                            Promise::RequestShares,
                            "HAProxy does not report its algorithm here (the exporter never does; a socket of level `user` blanks it): judged on request shares",
                        ),
                    };
                    notes.insert(format!(
                        "backend `{name}`: {why}; give the configuration file to judge it on what its algorithm promises"
                    ));
                    promise
                }
            },
        };
        pools.push(PoolSample {
            noted: Default::default(),
            predicted: None,
            name,
            promise,
            servers: members,
            queued,
        });
    }
    Ok(Mapped {
        sample: Sample {
            at_ms,
            source: "haproxy".into(),
            instance: instance.to_string(),
            pools,
            frontends,
            process,
            ..Default::default()
        },
        notes: notes.into_iter().collect(),
    })
}

/// The process from `show info`.
pub fn process_of_info(info: &info::Info) -> Result<ProcessSample, ParseError> {
    Ok(ProcessSample {
        active: info.number("CurrConns")?.unwrap_or(0),
        max_connections: info.number("Maxconn")?,
        generation: info.generation(),
        started_unix_s: info.number("Start_time_sec")?,
        ..Default::default()
    })
}

/// Where HAProxy is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The Runtime API: `show info`, `show stat`, `show servers state`.
    Socket(SocketAddress),
    /// The stats page's CSV, `http://127.0.0.1:8404/stats;csv` (no process figures: the
    /// page's CSV has none).
    StatsPage(String),
    /// The built-in Prometheus exporter, `http://127.0.0.1:8404/metrics`.
    Exporter(String),
}

impl Endpoint {
    /// Reads an endpoint as a user writes it: a URL containing `;csv` is the stats page, any
    /// other URL the exporter; `unix:PATH` or a path is a Unix socket; `HOST:PORT` a TCP one.
    pub fn parse(text: &str) -> Result<Endpoint, SourceError> {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(if text.contains(";csv") {
                Endpoint::StatsPage(text.to_string())
            } else {
                Endpoint::Exporter(text.to_string())
            });
        }
        if let Some(path) = text
            .strip_prefix("unix:")
            .or_else(|| (text.starts_with('/') || text.starts_with('.')).then_some(text))
        {
            return Ok(Endpoint::Socket(SocketAddress::Unix(PathBuf::from(path))));
        }
        let tcp = text
            .strip_prefix("tcp:")
            .or_else(|| text.strip_prefix("ipv4@"))
            .unwrap_or(text);
        if let Some((host, port)) = tcp.rsplit_once(':')
            && !host.is_empty()
            && port.parse::<u16>().is_ok()
        {
            return Ok(Endpoint::Socket(SocketAddress::Tcp(tcp.to_string())));
        }
        Err(SourceError::new(format!("`{text}` is not an HAProxy endpoint")).with_fix(
            "give the stats socket (/run/haproxy.sock or 127.0.0.1:9999), the stats page (http://127.0.0.1:8404/stats;csv) or the exporter (http://127.0.0.1:8404/metrics)",
        ))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Socket(a) => write!(f, "{a}"),
            Endpoint::StatsPage(u) | Endpoint::Exporter(u) => write!(f, "{u}"),
        }
    }
}

/// A watched HAProxy.
pub struct HaproxySource {
    endpoint: Endpoint,
    config_file: Option<PathBuf>,
    /// The configuration as last imported, and the file's modification time then.
    configured: Option<(Option<SystemTime>, ConfiguredPools)>,
    /// The process generation whose socket level was checked.
    level_checked_for: Option<String>,
    notes: Vec<String>,
}

impl HaproxySource {
    /// Watches HAProxy at `endpoint`; `config_file`, when given, supplies what the live
    /// process does not report (see [`ConfiguredPools`]) and is watched for changes.
    pub fn new(endpoint: Endpoint, config_file: Option<PathBuf>) -> HaproxySource {
        HaproxySource {
            endpoint,
            config_file,
            configured: None,
            level_checked_for: None,
            notes: Vec::new(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// What the last sample had to assume (an algorithm not reported, backups not marked,
    /// a configuration file that did not import), in words.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The configuration, imported again when the file changed. A file that does not import
    /// leaves the last good one (or none) and a note: a typo must not blind the guard.
    fn configured(&mut self, notes: &mut Vec<String>) -> Option<&ConfiguredPools> {
        let path = self.config_file.clone()?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let stale = self
            .configured
            .as_ref()
            .is_none_or(|(at, _)| modified.is_none() || *at != modified);
        if stale {
            match ConfiguredPools::import(&path) {
                Ok(pools) => self.configured = Some((modified, pools)),
                Err(e) => notes.push(match &e.fix {
                    Some(fix) => format!("{e}; {fix}"),
                    None => e.to_string(),
                }),
            }
        }
        self.configured.as_ref().map(|(_, c)| c)
    }

    fn sample_socket(
        &mut self,
        address: &SocketAddress,
        now_ms: u64,
        notes: &mut Vec<String>,
    ) -> Result<Mapped, SourceError> {
        let info_text = transport::command(address, "show info")?;
        let info = info::parse_info(&info_text)
            .map_err(|e| e.into_source_error(&format!("`show info` from {address}")))?;
        let process = process_of_info(&info)
            .map_err(|e| e.into_source_error(&format!("`show info` from {address}")))?;
        // A user-level socket blanks `algo` and refuses the runtime commands; check once per
        // process (a reload may come with another socket line).
        if self.level_checked_for != process.generation {
            let level = transport::command(address, "show cli level")?;
            if level.trim() != "admin" {
                return Err(SourceError::new(format!(
                    "the HAProxy stats socket {address} is at level `{}`, not `admin`",
                    level.trim()
                ))
                .with_fix(format!(
                    "add `{}` to the global section (level admin) and reload HAProxy",
                    transport::socket_directive(address)
                )));
            }
            self.level_checked_for = process.generation.clone();
        }
        let stat_text = transport::command(address, "show stat")?;
        let stats = stat::parse_stat(&stat_text)
            .map_err(|e| e.into_source_error(&format!("`show stat` from {address}")))?;
        let states_text = transport::command(address, "show servers state")?;
        let states = servers_state::parse_servers_state(&states_text)
            .map_err(|e| e.into_source_error(&format!("`show servers state` from {address}")))?;
        let instance = self.instance();
        let configured = self.configured(notes);
        to_sample(
            &stats,
            Some(&states),
            Some(process),
            configured,
            now_ms,
            &instance,
        )
        .map_err(|e| e.into_source_error(&format!("`show stat` from {address}")))
    }
}

impl Source for HaproxySource {
    fn kind(&self) -> &'static str {
        "haproxy"
    }

    fn instance(&self) -> String {
        self.endpoint.to_string()
    }

    fn sample(&mut self, now_ms: u64) -> Result<Sample, SourceError> {
        let mut notes = Vec::new();
        let mapped = match self.endpoint.clone() {
            Endpoint::Socket(address) => self.sample_socket(&address, now_ms, &mut notes)?,
            Endpoint::StatsPage(url) => {
                let text = transport::http_get(&url, HttpKind::StatsPage)?;
                let stats = stat::parse_stat(&text).map_err(|e| {
                    e.into_source_error(&format!("the stats page {url}")).with_fix(
                        "give the stats page's CSV: its URL with `;csv` (http://127.0.0.1:8404/stats;csv)",
                    )
                })?;
                let instance = self.instance();
                let configured = self.configured(&mut notes);
                to_sample(&stats, None, None, configured, now_ms, &instance)
                    .map_err(|e| e.into_source_error(&format!("the stats page {url}")))?
            }
            Endpoint::Exporter(url) => {
                let text = transport::http_get(&url, HttpKind::Exporter)?;
                let metrics = exposition::parse_exposition(&text).map_err(|e| {
                    e.into_source_error(&format!("the exporter {url}")).with_fix(
                        "give the URL HAProxy serves `prometheus-exporter` on (http://127.0.0.1:8404/metrics)",
                    )
                })?;
                let exported = exposition::process(&metrics);
                let process = ProcessSample {
                    active: exported.current_connections.unwrap_or(0),
                    max_connections: exported.max_connections,
                    // The exporter gives no pid: the start time (a second's resolution).
                    generation: exported.start_time_seconds.map(|s| format!("started {s}")),
                    started_unix_s: exported.start_time_seconds,
                    ..Default::default()
                };
                let stats = exposition::stat_table(&metrics);
                let instance = self.instance();
                let configured = self.configured(&mut notes);
                to_sample(&stats, None, Some(process), configured, now_ms, &instance)
                    .map_err(|e| e.into_source_error(&format!("the exporter {url}")))?
            }
        };
        notes.extend(mapped.notes);
        self.notes = notes;
        Ok(mapped.sample)
    }

    fn config_files(&self) -> Vec<PathBuf> {
        self.config_file.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = include_str!("haproxy/testdata/show_stat.csv");
    const STAT_CHANGED: &str = include_str!("haproxy/testdata/show_stat_runtime_changes.csv");
    const STATES_CHANGED: &str =
        include_str!("haproxy/testdata/show_servers_state_runtime_changes.txt");
    const INFO: &str = include_str!("haproxy/testdata/show_info.txt");
    const EXPORTER_CHANGED: &str = include_str!("haproxy/testdata/exporter_runtime_changes.txt");
    const PAGE: &str = include_str!("haproxy/testdata/stats_page.csv");

    fn map(stat: &str, states: Option<&str>) -> Mapped {
        let stats = stat::parse_stat(stat).unwrap();
        let states = states.map(|s| servers_state::parse_servers_state(s).unwrap());
        to_sample(&stats, states.as_deref(), None, None, 7, "test").unwrap()
    }

    fn server<'a>(s: &'a Sample, pool: &str, name: &str) -> &'a ServerSample {
        s.pools
            .iter()
            .find(|p| p.name == pool)
            .and_then(|p| p.servers.iter().find(|x| x.name == name))
            .unwrap_or_else(|| panic!("{pool}/{name}"))
    }

    #[test]
    fn the_captured_csv_maps_to_pools_servers_and_frontends() {
        let m = map(STAT, None);
        let s = &m.sample;
        assert_eq!(
            (s.at_ms, s.source.as_str(), s.instance.as_str()),
            (7, "haproxy", "test")
        );
        // `empty` has no servers: no pool.
        let names: Vec<&str> = s.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["app", "api"]);
        assert_eq!(s.pools[0].promise, Promise::RequestShares);
        assert_eq!(s.pools[1].promise, Promise::Concurrency);
        let s1 = server(s, "app", "s1");
        assert_eq!((s1.max_connections, s1.max_queue), (Some(10), Some(5)));
        assert_eq!((s1.weight, s1.state), (1, ServerState::Up));
        let total: u64 = s.pools[0].servers.iter().map(|x| x.requests).sum();
        assert_eq!(total, 30, "the 30 requests sent through the frontend");
        let s3 = server(s, "app", "s3");
        assert_eq!((s3.requests, s3.responses.c2xx), (13, 13));
        assert!(s3.latency_ms.is_some());
        // s4 fails its checks; b1 is a backup that served nothing.
        assert_eq!(server(s, "app", "s4").state, ServerState::Down);
        let b1 = server(s, "app", "b1");
        assert!(b1.backup && b1.latency_ms.is_none());
        let web = s.frontends.iter().find(|f| f.name == "web").unwrap();
        assert_eq!(web.max_connections, Some(100));
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn runtime_changes_show_in_weights_and_states() {
        let s = map(STAT_CHANGED, Some(STATES_CHANGED)).sample;
        assert_eq!(server(&s, "app", "s3").weight, 0);
        assert_eq!(server(&s, "app", "s3").state, ServerState::Up);
        assert_eq!(server(&s, "app", "s2").state, ServerState::Maintenance);
        assert_eq!(server(&s, "app", "s1").state, ServerState::Drain);
        assert_eq!(server(&s, "app", "s5").state, ServerState::Maintenance);
        // The same without `show servers state`: the CSV's status alone.
        let csv_only = map(STAT_CHANGED, None).sample;
        for name in ["s1", "s2", "s3", "s4", "s5"] {
            assert_eq!(
                server(&s, "app", name).state,
                server(&csv_only, "app", name).state,
                "{name}"
            );
        }
    }

    #[test]
    fn admin_bits_override_the_status_text() {
        // A forced drain on a server whose CSV status says UP (as while a check is running).
        let stats = stat::parse_stat(
            "# pxname,svname,type,status,weight,lbtot\napp,s1,2,UP,1,5\napp,s2,2,UP,1,5\n",
        )
        .unwrap();
        let states = servers_state::parse_servers_state(
            "1\n# be_id be_name srv_id srv_name srv_op_state srv_admin_state srv_uweight srv_iweight\n1 app 1 s1 2 8 1 1\n1 app 2 s2 2 1 1 1\n",
        )
        .unwrap();
        let s = to_sample(&stats, Some(&states), None, None, 0, "t")
            .unwrap()
            .sample;
        assert_eq!(server(&s, "app", "s1").state, ServerState::Drain);
        assert_eq!(server(&s, "app", "s2").state, ServerState::Maintenance);
    }

    #[test]
    fn every_status_haproxy_writes_is_a_state() {
        use ServerState::*;
        for (status, state) in [
            ("UP", Up),
            ("UP 1/3", Up),
            ("no check", Up),
            ("DOWN", Down),
            ("DOWN 1/2", Down),
            ("DOWN (agent)", Down),
            ("NOLB", Drain),
            ("NOLB 1/2", Drain),
            ("DRAIN", Drain),
            ("DRAIN (agent)", Drain),
            ("MAINT", Maintenance),
            ("MAINT (via app/s2)", Maintenance),
            ("MAINT (resolution)", Maintenance),
        ] {
            assert_eq!(server_state(status), Ok(state), "{status}");
        }
        for bad in ["", "OPEN", "up", "no", "no checks"] {
            assert!(server_state(bad).is_err(), "{bad}");
        }
        let stats = stat::parse_stat("# pxname,svname,type,status\napp,s1,2,WEIRD\n").unwrap();
        let e = to_sample(&stats, None, None, None, 0, "t").unwrap_err();
        assert!(e.what.contains("app/s1") && e.what.contains("WEIRD"), "{e}");
    }

    #[test]
    fn the_promise_comes_from_algo_then_the_configuration_then_a_stated_default() {
        let csv = "# pxname,svname,type,status,weight,lbtot,bck,algo\n\
                   rnd,s1,2,UP,1,0,0,\nrnd,BACKEND,1,UP,1,0,0,unknown\n\
                   usr,s1,2,UP,1,0,0,\nusr,BACKEND,1,UP,1,0,0,\n\
                   src,s1,2,UP,1,0,0,\nsrc,BACKEND,1,UP,1,0,0,source\n\
                   fst,s1,2,UP,1,0,0,\nfst,BACKEND,1,UP,1,0,0,first\n";
        let stats = stat::parse_stat(csv).unwrap();
        let m = to_sample(&stats, None, None, None, 0, "t").unwrap();
        let promise = |m: &Mapped, name: &str| {
            m.sample
                .pools
                .iter()
                .find(|p| p.name == name)
                .unwrap()
                .promise
        };
        assert_eq!(promise(&m, "rnd"), Promise::Concurrency);
        assert_eq!(promise(&m, "usr"), Promise::RequestShares);
        assert_eq!(promise(&m, "src"), Promise::KeyDependent);
        assert_eq!(promise(&m, "fst"), Promise::FillInOrder);
        assert_eq!(m.notes.len(), 2, "{:?}", m.notes);
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("`rnd`") && n.contains("random"))
        );
        // A configuration names what the process does not.
        let mut configured = ConfiguredPools::default();
        for (name, promise) in [
            ("rnd", Promise::RequestShares),
            ("usr", Promise::Concurrency),
            ("src", Promise::RequestShares),
        ] {
            configured.pools.insert(
                name.into(),
                ConfiguredPool {
                    promise,
                    backups: BTreeSet::new(),
                },
            );
        }
        let m = to_sample(&stats, None, None, Some(&configured), 0, "t").unwrap();
        assert_eq!(promise(&m, "rnd"), Promise::RequestShares);
        assert_eq!(promise(&m, "usr"), Promise::Concurrency);
        // The live process's own word wins over a file that may be stale.
        assert_eq!(promise(&m, "src"), Promise::KeyDependent);
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn the_exporter_and_the_page_give_the_socket_s_figures() {
        let exporter = exposition::parse_exposition(EXPORTER_CHANGED).unwrap();
        let from_exporter =
            to_sample(&exposition::stat_table(&exporter), None, None, None, 0, "t").unwrap();
        let from_socket = map(STAT_CHANGED, Some(STATES_CHANGED)).sample;
        for name in ["s1", "s2", "s3", "s4", "s5"] {
            let (a, b) = (
                server(&from_exporter.sample, "app", name),
                server(&from_socket, "app", name),
            );
            assert_eq!(
                (a.requests, a.weight, a.state, a.responses),
                (b.requests, b.weight, b.state, b.responses),
                "{name}"
            );
        }
        // The exporter marks no backups and names no algorithm, and says so.
        assert!(from_exporter.notes.iter().any(|n| n.contains("backup")));
        assert!(from_exporter.notes.iter().any(|n| n.contains("`app`")));
        let page = map(PAGE, None).sample;
        assert_eq!(server(&page, "app", "s3").weight, 0);
        assert_eq!(server(&page, "app", "s2").state, ServerState::Maintenance);
    }

    #[test]
    fn show_info_gives_the_process() {
        let p = process_of_info(&info::parse_info(INFO).unwrap()).unwrap();
        assert_eq!(p.max_connections, Some(500));
        assert!(p.generation.is_some_and(|g| g.starts_with("pid ")));
    }

    #[test]
    fn endpoints_are_read_as_users_write_them() {
        let unix = |p: &str| Endpoint::Socket(SocketAddress::Unix(PathBuf::from(p)));
        assert_eq!(
            Endpoint::parse("/run/haproxy.sock").unwrap(),
            unix("/run/haproxy.sock")
        );
        assert_eq!(Endpoint::parse("unix:rel.sock").unwrap(), unix("rel.sock"));
        assert_eq!(
            Endpoint::parse("127.0.0.1:9999").unwrap(),
            Endpoint::Socket(SocketAddress::Tcp("127.0.0.1:9999".into()))
        );
        assert_eq!(
            Endpoint::parse("ipv4@127.0.0.1:9999").unwrap(),
            Endpoint::Socket(SocketAddress::Tcp("127.0.0.1:9999".into()))
        );
        assert!(matches!(
            Endpoint::parse("http://h:8404/stats;csv").unwrap(),
            Endpoint::StatsPage(_)
        ));
        assert!(matches!(
            Endpoint::parse("http://h:8404/metrics").unwrap(),
            Endpoint::Exporter(_)
        ));
        for bad in ["", "haproxy", "host:port", ":80"] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.fix.is_some(), "{bad}");
        }
    }
}
