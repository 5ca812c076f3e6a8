//! nginx open source as a source: its access log (tailed through rotation and truncation),
//! `stub_status` and error log, with weights and expected shares from its configuration.
//!
//! nginx open source reports nothing per server (that is NGINX Plus's API), so the access log
//! is the per-server counter: every line in ballast's format ([`log_format_lines`]) names the
//! servers a request tried (`$upstream_addr`), and the request is attributed to the last one,
//! the one that answered. Servers, weights, `backup`, `down` and `max_conns` come from the
//! configuration file, imported with `ballast-import` as `ballast check` imports it: nginx
//! open source has no live weights and does not say which servers it marked failed
//! (`max_fails`), so a sample's weights and states are the file's, and a server nginx took
//! out for `fail_timeout` shows as up (its errors and `NextUpstream` counts show it).
//!
//! - [`log`]: the format and the line parser; [`tail`]: following a file by name;
//!   [`stub_status`]: the process's connections; [`error_log`]: the error lines counted.
//! - [`Attribution`]: lines → cumulative per-server counters and log error counts, pure.
//! - [`NginxSource`]: the files and the page, read at each sample.

pub mod error_log;
pub mod keys;
pub mod log;
pub mod process;
pub mod stub_status;
pub mod tail;

use std::collections::{BTreeMap, HashMap};
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ballast_core::Config;
use ballast_core::sample::{
    LogFile, LoggedError, LoggedErrorKind, PoolSample, ProcessSample, Promise, ResponseClasses,
    Sample, ServerSample, ServerState,
};
use ballast_import::{Facts, Format, Options};

use crate::source::{Source, SourceError};
use error_log::ErrorLine;
use tail::{Start, Tailer};

/// Where the printed `access_log` line writes.
pub const DEFAULT_ACCESS_LOG: &str = "/var/log/nginx/ballast-access.log";

/// The lines to add to nginx's `http` block so ballast can read its access log, commented.
pub fn log_format_lines() -> String {
    log_format_lines_with(&[])
}

/// [`log_format_lines`] for a configuration: with the variables its hashing pools' keys read
/// (`$http_x_user`, `$cookie_sid`) added, so their shares can be predicted from the keys.
pub fn log_format_lines_for(config_file: &Path) -> Result<String, SourceError> {
    let imported = ballast_import::import_file(
        config_file,
        &Options {
            format: Some(Format::Nginx),
            ..Options::default()
        },
    )
    .map_err(|e| {
        SourceError::new(format!(
            "cannot read the nginx configuration {}:\n{}",
            config_file.display(),
            e.render()
        ))
        .with_fix("pass the configuration nginx runs, or leave --config out for the base format")
    })?;
    Ok(log_format_lines_with(&keys::key_variables(
        &imported.loaded.config,
    )))
}

fn log_format_lines_with(variables: &[String]) -> String {
    let keys = if variables.is_empty() {
        String::new()
    } else {
        format!(
            "# The hashing keys' variables come last, as name=\"value\" ({}): with them ballast\n\
             # predicts each hashing pool's shares from its keys, as nginx computes them.\n",
            variables.join(", ")
        )
    };
    format!(
        "# ballast watch reads nginx's access log in this format: the servers each request tried\n\
         # ($upstream_addr, with $upstream_status and $upstream_response_time at the same\n\
         # positions), the upstream group used ($proxy_host) and what hashing keys read\n\
         # ($remote_addr, $host, $request_uri). Every field is quoted, so any URI parses.\n\
         # Put both lines in the `http` block (an existing access_log can stay: nginx writes both),\n\
         # then `nginx -t && nginx -s reload`. `buffer=64k flush=1s` may be added to access_log.\n\
         {keys}\
         log_format ballast '{}';\n\
         access_log {DEFAULT_ACCESS_LOG} ballast;\n",
        log::format_string_with(variables)
    )
}

/// One server as the configuration gives it.
#[derive(Debug, Clone)]
struct ServerModel {
    name: String,
    weight: u32,
    backup: bool,
    down: bool,
    max_connections: Option<u64>,
}

#[derive(Debug, Clone)]
struct PoolModel {
    name: String,
    promise: Promise,
    servers: Vec<ServerModel>,
}

/// Counters of one server: cumulative, and over the interval since the last sample.
#[derive(Debug, Clone, Copy, Default)]
struct ServerCounts {
    requests: u64,
    responses: ResponseClasses,
    /// Answered requests with a response time, in the interval, and the sum of those times.
    interval_answered: u64,
    interval_answered_ms: u64,
    /// Every attempt's upstream time in the interval (retried ones too): busy time.
    interval_busy_ms: u64,
}

/// Where in the pools a server is: (pool, server) indexes.
type Place = (usize, usize);

/// Access and error log lines turned into per-server counters, against the configuration's
/// pools. Pure: it reads no file, so the benchmark and the tests feed it lines.
#[derive(Debug, Clone)]
pub struct Attribution {
    pools: Vec<PoolModel>,
    counts: Vec<Vec<ServerCounts>>,
    /// Logged address → the servers at it (one per pool that lists it).
    by_address: HashMap<String, Vec<Place>>,
    pool_by_name: HashMap<String, usize>,
    errors: BTreeMap<(LogFile, LoggedErrorKind, Option<String>, Option<String>), u64>,
    lines: u64,
    unparsed: u64,
    first_error: Option<String>,
    /// For each pool that hashes, where nginx's emulated algorithm sends the keys seen.
    predictors: Vec<Option<keys::Predictor>>,
}

impl Attribution {
    /// The pools of an imported nginx configuration. Servers written with a host name are
    /// resolved now, as nginx resolves them when it starts, since the log names addresses.
    pub fn from_config(config: &Config) -> Attribution {
        let mut pools = Vec::new();
        let mut by_address: HashMap<String, Vec<Place>> = HashMap::new();
        let mut pool_by_name = HashMap::new();
        for (p, (name, pool)) in config.pools.iter().enumerate() {
            pool_by_name.insert(name.clone(), p);
            let mut servers = Vec::new();
            for (s, server) in pool.servers.iter().enumerate() {
                for address in logged_addresses(&server.address) {
                    let places = by_address.entry(address).or_default();
                    if !places.contains(&(p, s)) {
                        places.push((p, s));
                    }
                }
                servers.push(ServerModel {
                    name: server.name.clone(),
                    weight: server.weight,
                    backup: server.backup,
                    down: server.down,
                    max_connections: server.max_connections.map(u64::from),
                });
            }
            pools.push(PoolModel {
                name: name.clone(),
                promise: Promise::of(pool),
                servers,
            });
        }
        let counts = pools
            .iter()
            .map(|p| vec![ServerCounts::default(); p.servers.len()])
            .collect();
        Attribution {
            pools,
            counts,
            by_address,
            pool_by_name,
            errors: BTreeMap::new(),
            lines: 0,
            unparsed: 0,
            first_error: None,
            predictors: config
                .pools
                .values()
                .map(keys::Predictor::for_pool)
                .collect(),
        }
    }

    /// This attribution for a new configuration (the file edited, for nginx's next reload),
    /// keeping every counter so far: each server that is still in the same pool keeps its
    /// counts, so cumulative figures stay cumulative across the change; servers the new file
    /// adds start at zero, and the counts of servers it removed are dropped with them.
    pub fn reconfigured(&self, config: &Config) -> Attribution {
        let mut next = Attribution::from_config(config);
        for (p, pool) in next.pools.iter().enumerate() {
            let Some(&old_p) = self.pool_by_name.get(&pool.name) else {
                continue;
            };
            for (s, server) in pool.servers.iter().enumerate() {
                if let Some(old_s) = self.pools[old_p]
                    .servers
                    .iter()
                    .position(|x| x.name == server.name)
                {
                    next.counts[p][s] = self.counts[old_p][old_s];
                }
            }
            // The prediction goes on only under the same key: another key predicts another
            // thing, and a window across the change is not judged on it.
            if let (Some(new), Some(old)) = (&mut next.predictors[p], &self.predictors[old_p])
                && new.key() == old.key()
            {
                let map: Vec<Option<usize>> = pool
                    .servers
                    .iter()
                    .map(|s| {
                        self.pools[old_p]
                            .servers
                            .iter()
                            .position(|x| x.name == s.name)
                    })
                    .collect();
                new.keep_counts(old, &map);
            }
        }
        next.errors = self.errors.clone();
        next.lines = self.lines;
        next.unparsed = self.unparsed;
        next.first_error = self.first_error.clone();
        next
    }

    /// Lines read from the access log so far, and how many of them did not parse.
    pub fn lines(&self) -> (u64, u64) {
        (self.lines, self.unparsed)
    }

    /// Why the first line that did not parse did not.
    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }

    fn count(&mut self, log: LogFile, kind: LoggedErrorKind, place: (Option<&str>, Option<&str>)) {
        let key = (
            log,
            kind,
            place.0.map(str::to_string),
            place.1.map(str::to_string),
        );
        *self.errors.entry(key).or_insert(0) += 1;
    }

    fn pool_named(&self, name: &str) -> Option<usize> {
        self.pool_by_name.get(name).copied().or_else(|| {
            // The model names `[::1]:80` `_::1_:80`.
            self.pool_by_name
                .get(&ballast_import_model_name(name))
                .copied()
        })
    }

    /// The server at a logged address; in the pool `preferred` when several pools list it.
    fn place(&self, address: &str, preferred: Option<usize>) -> Option<Place> {
        let places = self.by_address.get(address)?;
        preferred
            .and_then(|p| places.iter().find(|x| x.0 == p))
            .or(places.first())
            .copied()
    }

    fn names(&self, (p, s): Place) -> (&str, &str) {
        (&self.pools[p].name, &self.pools[p].servers[s].name)
    }

    /// Reads one access log line (without its newline).
    pub fn access_line(&mut self, line: &[u8]) {
        self.lines += 1;
        let parsed = std::str::from_utf8(line)
            .map_err(|_| "the line is not UTF-8 text".to_string())
            .and_then(|l| log::parse_line(l).map_err(|e| e.what));
        let record = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.unparsed += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
                self.count(LogFile::Access, LoggedErrorKind::Unparsed, (None, None));
                return;
            }
        };
        let last_group = record.answered().map_or(0, |a| a.group);
        let proxied = record.proxy_host.and_then(|h| self.pool_named(h));
        if matches!(record.status, 502..=504) && record.answered().is_none_or(|a| !a.is_address()) {
            // No server answered: nginx did, for the group it names or the one proxied to.
            let pool = record
                .answered()
                .and_then(|a| self.pool_named(a.target))
                .or(proxied)
                .map(|p| self.pools[p].name.clone());
            self.count(
                LogFile::Access,
                LoggedErrorKind::AnsweredByBalancer,
                (pool.as_deref(), None),
            );
        }
        let n = record.attempts.len();
        for (i, attempt) in record.attempts.iter().enumerate() {
            let preferred = if attempt.group == last_group {
                proxied
            } else {
                None
            };
            let answered = i + 1 == n;
            let Some((p, s)) = self.place(attempt.target, preferred) else {
                if !attempt.is_address()
                    && let Some(p) = self.pool_named(attempt.target)
                {
                    let pool = self.pools[p].name.clone();
                    self.count(
                        LogFile::Access,
                        LoggedErrorKind::NoLiveUpstreams,
                        (Some(&pool), None),
                    );
                    continue;
                }
                self.count(
                    LogFile::Access,
                    LoggedErrorKind::UnknownAddress,
                    (None, Some(attempt.target)),
                );
                continue;
            };
            let c = &mut self.counts[p][s];
            let ms = attempt.response_time_ms;
            c.interval_busy_ms += ms.unwrap_or(0);
            if answered {
                c.requests += 1;
                if let Some(predictor) = &mut self.predictors[p] {
                    predictor.observe(&record);
                }
                let c = &mut self.counts[p][s];
                let class = match attempt.status {
                    Some(100..=199) => &mut c.responses.c1xx,
                    Some(200..=299) => &mut c.responses.c2xx,
                    Some(300..=399) => &mut c.responses.c3xx,
                    Some(400..=499) => &mut c.responses.c4xx,
                    Some(500..=599) => &mut c.responses.c5xx,
                    _ => &mut c.responses.other,
                };
                *class += 1;
                if let Some(ms) = ms {
                    c.interval_answered += 1;
                    c.interval_answered_ms += ms;
                }
            } else {
                let (pool, server) = self.names((p, s));
                let (pool, server) = (pool.to_string(), server.to_string());
                self.count(
                    LogFile::Access,
                    LoggedErrorKind::NextUpstream,
                    (Some(&pool), Some(&server)),
                );
            }
        }
    }

    /// Reads one error log line (without its newline); lines it does not count are ignored.
    pub fn error_line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let (kind, upstream, by_name) = match error_log::classify(&text) {
            ErrorLine::WorkerConnectionsNotEnough => {
                (LoggedErrorKind::WorkerConnectionsNotEnough, None, false)
            }
            ErrorLine::NoLiveUpstreams { upstream } => {
                (LoggedErrorKind::NoLiveUpstreams, upstream, true)
            }
            ErrorLine::UpstreamTimedOut { upstream } => {
                (LoggedErrorKind::UpstreamTimedOut, upstream, false)
            }
            ErrorLine::ConnectFailed { upstream } => {
                (LoggedErrorKind::ConnectFailed, upstream, false)
            }
            ErrorLine::Other => return,
        };
        let place: (Option<String>, Option<String>) = match upstream {
            None => (None, None),
            Some(name) if by_name => (
                Some(
                    self.pool_named(name)
                        .map_or(name.to_string(), |p| self.pools[p].name.clone()),
                ),
                None,
            ),
            // The line names the server's address, not its group: the first pool that
            // lists the address.
            Some(address) => match self.place(address, None) {
                Some(place) => {
                    let (p, s) = self.names(place);
                    (Some(p.to_string()), Some(s.to_string()))
                }
                None => (None, Some(address.to_string())),
            },
        };
        self.count(
            LogFile::Error,
            kind,
            (place.0.as_deref(), place.1.as_deref()),
        );
    }

    /// The pools now: cumulative counters, the file's weights and states, and over the
    /// interval since the last call (`interval_ms`, `None` on the first) the mean upstream
    /// response time and the in-flight estimate. Starts the next interval.
    ///
    /// `active` is an estimate by Little's law: the upstream time spent by the requests that
    /// finished in the interval, over the interval's length (a server that answered 200
    /// requests of 50 ms each in one second had 10 in flight on average). nginx open source
    /// does not report the real figure; a request still running at the sample counts only
    /// when it finishes.
    pub fn pools(&mut self, interval_ms: Option<u64>) -> Vec<PoolSample> {
        let mut out = Vec::with_capacity(self.pools.len());
        for ((pool, counts), predictor) in self
            .pools
            .iter()
            .zip(self.counts.iter_mut())
            .zip(self.predictors.iter_mut())
        {
            let servers = pool
                .servers
                .iter()
                .zip(counts.iter_mut())
                .map(|(s, c)| {
                    let latency_ms = (c.interval_answered > 0)
                        .then(|| c.interval_answered_ms as f64 / c.interval_answered as f64);
                    let active = match interval_ms {
                        Some(i) if i > 0 => (c.interval_busy_ms as f64 / i as f64).round() as u64,
                        _ => 0,
                    };
                    c.interval_answered = 0;
                    c.interval_answered_ms = 0;
                    c.interval_busy_ms = 0;
                    ServerSample {
                        state_for_s: None,
                        name: s.name.clone(),
                        requests: c.requests,
                        active,
                        queued: 0,
                        max_connections: s.max_connections,
                        max_queue: None,
                        weight: s.weight,
                        state: if s.down {
                            ServerState::Maintenance
                        } else {
                            ServerState::Up
                        },
                        backup: s.backup,
                        responses: c.responses,
                        latency_ms,
                    }
                })
                .collect();
            out.push(PoolSample {
                noted: Default::default(),
                predicted: predictor.as_mut().map(keys::Predictor::sample),
                name: pool.name.clone(),
                promise: pool.promise,
                servers,
                queued: 0,
            });
        }
        out
    }

    /// The log error counts, cumulative.
    pub fn log_errors(&self) -> Vec<LoggedError> {
        self.errors
            .iter()
            .map(|((log, kind, pool, server), &count)| LoggedError {
                log: *log,
                kind: *kind,
                pool: pool.clone(),
                server: server.clone(),
                count,
            })
            .collect()
    }
}

/// What `ballast-import` names a pool for a host (the same rule as its model names).
fn ballast_import_model_name(host: &str) -> String {
    host.replace(['[', ']'], "_")
}

/// The addresses nginx logs for a server of the model: the address itself and, for a host
/// name, every address it resolves to (nginx makes one peer of each).
fn logged_addresses(address: &str) -> Vec<String> {
    let mut out = vec![address.to_string()];
    if address.starts_with("unix:") || address.parse::<std::net::SocketAddr>().is_ok() {
        return out;
    }
    if let Ok(resolved) = address.to_socket_addrs() {
        for a in resolved {
            let a = a.to_string();
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// How to read one nginx.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// The configuration nginx runs (`nginx.conf`, or the file of the upstreams).
    pub config: PathBuf,
    /// The access log written in ballast's format.
    pub access_log: PathBuf,
    /// The `stub_status` page, e.g. `http://127.0.0.1/nginx_status`.
    pub stub_status: Option<String>,
    /// The error log (at level `error` or more verbose; "worker_connections are not enough"
    /// is an `alert`).
    pub error_log: Option<PathBuf>,
    /// Where to start in logs that exist: at their end (only new traffic, the default) or at
    /// their start.
    pub start: Start,
    /// How long the `stub_status` page may take.
    pub timeout: Duration,
    /// nginx's `pid` file, to see reloads through its workers; `None`: the configuration's
    /// `pid` directive, else `/run/nginx.pid`.
    pub pid_file: Option<PathBuf>,
    /// Where the process table is (`/proc`; another root in tests).
    pub proc_root: PathBuf,
}

impl NginxOptions {
    pub fn new(config: impl Into<PathBuf>, access_log: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            access_log: access_log.into(),
            stub_status: None,
            error_log: None,
            start: Start::End,
            timeout: Duration::from_secs(2),
            pid_file: None,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// One nginx, watched through its access log, `stub_status` page and error log.
#[derive(Debug)]
pub struct NginxSource {
    options: NginxOptions,
    attribution: Attribution,
    access: Tailer,
    error: Option<Tailer>,
    agent: Option<ureq::Agent>,
    /// `worker_processes` × `worker_connections`.
    max_connections: Option<u64>,
    config_files: Vec<PathBuf>,
    /// The configuration files' content when last imported: an edit is re-imported.
    config_content: Vec<Option<Vec<u8>>>,
    import_options: Options,
    last_ms: Option<u64>,
    /// The `pid` file read for the master's pid.
    pid_file: PathBuf,
    /// The generation of the last sample: the configuration is re-imported when it changes.
    generation: Option<String>,
    /// Whether the workers could not be read once already (said once, then the files' hash
    /// stands in for the generation).
    workers_unreadable: bool,
    notes: Vec<String>,
}

impl NginxSource {
    /// Imports the configuration and opens the logs.
    pub fn new(options: NginxOptions) -> Result<NginxSource, SourceError> {
        let import_options = Options {
            format: Some(Format::Nginx),
            ..Options::default()
        };
        let imported =
            ballast_import::import_file(&options.config, &import_options).map_err(|e| {
                SourceError::new(format!(
                    "cannot read the nginx configuration {}:\n{}",
                    options.config.display(),
                    e.render()
                ))
                .with_fix("pass the configuration nginx runs (`nginx -T` shows it); fix what is reported first")
            })?;
        let max_connections = match &imported.facts {
            Facts::Nginx(f) => worker_limit(
                f.main("worker_processes")
                    .and_then(|d| d.arg(0))
                    .map(|w| w.text.as_str()),
                f.events("worker_connections")
                    .and_then(|d| d.arg(0))
                    .map(|w| w.text.as_str()),
                f.context == ballast_import::NginxContext::Main,
            ),
            _ => None,
        };
        let attribution = Attribution::from_config(&imported.loaded.config);
        let open = |path: &Path, what: &str, fix: String| {
            Tailer::open(path, options.start).map_err(|e| {
                SourceError::new(format!(
                    "cannot open nginx's {what} {}: {e}",
                    path.display()
                ))
                .with_fix(fix)
            })
        };
        let access = open(
            &options.access_log,
            "access log",
            format!(
                "pass the file of the `access_log ... ballast;` line (created when nginx reloads with it); the lines to add:\n{}",
                log_format_lines()
            ),
        )?;
        let error = match &options.error_log {
            Some(path) => Some(open(
                path,
                "error log",
                "pass the file of the `error_log` directive (level `error` or more verbose)".into(),
            )?),
            None => None,
        };
        let agent = options
            .stub_status
            .as_ref()
            .map(|_| stub_status::agent(options.timeout));
        let files = config_files(&options.config, &import_options.nginx_prefix);
        let pid_file = options.pid_file.clone().unwrap_or_else(|| {
            let directive = match &imported.facts {
                Facts::Nginx(f) => f.main("pid").and_then(|d| d.arg(0)).map(|w| w.text.clone()),
                _ => None,
            };
            process::pid_file(directive.as_deref(), &import_options.nginx_prefix)
        });
        Ok(NginxSource {
            config_content: read_all(&files),
            config_files: files,
            import_options,
            options,
            attribution,
            access,
            error,
            agent,
            max_connections,
            last_ms: None,
            pid_file,
            generation: None,
            workers_unreadable: false,
            notes: Vec::new(),
        })
    }

    /// What the running nginx is: its master and newest worker, read from the `pid` file and
    /// `/proc`; when they cannot be read, the configuration files' hash (an edit then counts
    /// as a reload), said once in the notes.
    fn current_generation(&mut self) -> String {
        let workers = process::read_pid_file(&self.pid_file)
            .and_then(|master| process::read_workers(&self.options.proc_root, master));
        match workers {
            Ok(w) => {
                self.workers_unreadable = false;
                w.generation()
            }
            Err(e) => {
                if !self.workers_unreadable {
                    self.workers_unreadable = true;
                    self.notes.push(format!(
                        "{}: nginx's reloads cannot be seen through its workers, so each edit of \
                         its configuration files counts as a reload (pass --nginx-pid-file with \
                         nginx's `pid` file, readable by ballast, to see the real reloads)",
                        e.what
                    ));
                }
                let mut bytes = Vec::new();
                for content in read_all(&self.config_files).into_iter().flatten() {
                    bytes.extend_from_slice(&content);
                    bytes.push(0);
                }
                format!(
                    "configuration {:016x}",
                    ballast_core::balance::hash_key(&bytes)
                )
            }
        }
    }

    /// What the source noticed about itself since the last call (said once each).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The `pid` file read for reloads.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The counters behind the samples: lines read, lines that did not parse and why.
    pub fn attribution(&self) -> &Attribution {
        &self.attribution
    }

    /// The process limit from the configuration: `worker_processes` × `worker_connections`.
    pub fn max_connections(&self) -> Option<u64> {
        self.max_connections
    }

    /// Re-imports the configuration when a file of it changed. nginx open source cannot be
    /// asked for its live weights and states, so they are the file's; reading the file only
    /// at start made an edit and reload (weights 1,1,1 → 1,1,8, a server marked `down`) look
    /// like nginx breaking its promise (a skew against the old weights, live weights drifting
    /// from the new file) when it was doing what the new file says. A file that no longer
    /// imports keeps the last good model, as nginx keeps its running configuration when a
    /// reload fails; the watcher's configuration watcher reports the change either way.
    fn reread_config(&mut self) {
        let content = read_all(&self.config_files);
        if content == self.config_content {
            return;
        }
        let Ok(imported) = ballast_import::import_file(&self.options.config, &self.import_options)
        else {
            return;
        };
        self.config_content = content;
        self.attribution = self.attribution.reconfigured(&imported.loaded.config);
        if let Facts::Nginx(f) = &imported.facts {
            self.max_connections = worker_limit(
                f.main("worker_processes")
                    .and_then(|d| d.arg(0))
                    .map(|w| w.text.as_str()),
                f.events("worker_connections")
                    .and_then(|d| d.arg(0))
                    .map(|w| w.text.as_str()),
                f.context == ballast_import::NginxContext::Main,
            );
        }
        let files = config_files(&self.options.config, &self.import_options.nginx_prefix);
        if files != self.config_files {
            self.config_content = read_all(&files);
            self.config_files = files;
        }
    }

    fn read_logs(&mut self) -> Result<(), SourceError> {
        let attribution = &mut self.attribution;
        self.access
            .poll(|line| attribution.access_line(line))
            .map_err(|e| read_error(self.access.path(), e))?;
        if let Some(error) = &mut self.error {
            error
                .poll(|line| attribution.error_line(line))
                .map_err(|e| read_error(error.path(), e))?;
        }
        Ok(())
    }
}

fn read_error(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::new(format!("cannot read {}: {e}", path.display())).with_fix(
        "check that ballast may read the log (run it as a member of the log's group, often `adm`)",
    )
}

/// Each file's bytes (`None` when it cannot be read), to notice an edit.
fn read_all(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

/// `worker_processes` × `worker_connections` (`auto` = the CPUs here; nginx's defaults 1 and
/// 512). `None` for a fragment, whose main context ballast has not read.
fn worker_limit(processes: Option<&str>, connections: Option<&str>, main: bool) -> Option<u64> {
    if !main {
        return None;
    }
    let processes = match processes {
        None => 1,
        Some("auto") => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        Some(n) => n.parse().ok()?,
    };
    let connections = match connections {
        None => 512,
        Some(n) => n.parse().ok()?,
    };
    Some(processes * connections)
}

/// The configuration file and every file it includes (globs expanded, nested includes
/// followed), the main file first: what a configuration watcher should watch.
pub fn config_files(main: &Path, prefix: &Path) -> Vec<PathBuf> {
    let mut out = vec![main.to_path_buf()];
    let dir = main.parent().unwrap_or(Path::new("."));
    collect_includes(main, dir, prefix, 0, &mut out);
    out
}

fn collect_includes(file: &Path, dir: &Path, prefix: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    const MAX_DEPTH: usize = 10;
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let Ok(tree) = ballast_import::nginx::parse(&text, None) else {
        return;
    };
    let mut patterns = Vec::new();
    let mut stack: Vec<&[ballast_import::nginx::Node]> = vec![&tree];
    while let Some(nodes) = stack.pop() {
        for n in nodes {
            if n.directive.name() == "include"
                && let Some(w) = n.directive.arg(0)
            {
                patterns.push(w.text.clone());
            }
            if let Some(b) = &n.block {
                stack.push(b);
            }
        }
    }
    for pattern in patterns {
        let found = matches(&pattern, dir);
        let found = if found.is_empty() && Path::new(&pattern).is_relative() {
            matches(&pattern, prefix)
        } else {
            found
        };
        for path in found {
            if !out.contains(&path) {
                out.push(path.clone());
                collect_includes(&path, dir, prefix, depth + 1, out);
            }
        }
    }
}

fn matches(pattern: &str, dir: &Path) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        dir.join(pattern)
    };
    let Some(full) = full.to_str() else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = glob::glob(full)
        .map(|paths| {
            paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

impl Source for NginxSource {
    fn kind(&self) -> &'static str {
        "nginx"
    }

    fn instance(&self) -> String {
        self.options.access_log.display().to_string()
    }

    fn sample(&mut self, now_ms: u64) -> Result<Sample, SourceError> {
        // The file before the logs: lines read from now on count against what it says. nginx
        // runs a new file only once reloaded, so while its workers can be seen the file is
        // read again at a reload, not at an edit (an edit not reloaded is not running).
        let generation = self.current_generation();
        if self.workers_unreadable || self.generation.as_ref() != Some(&generation) {
            self.reread_config();
        }
        self.generation = Some(generation.clone());
        // The page first: when it fails, no log line is consumed, so none is lost.
        let process = match (&self.agent, &self.options.stub_status) {
            (Some(agent), Some(url)) => {
                let s = stub_status::fetch(agent, url)?;
                Some(ProcessSample {
                    started_unix_s: None,
                    active: s.active,
                    max_connections: self.max_connections,
                    generation: Some(generation),
                    accepted: Some(s.accepts),
                    handled: Some(s.handled),
                })
            }
            _ => Some(ProcessSample {
                started_unix_s: None,
                generation: Some(generation),
                ..ProcessSample::default()
            }),
        };
        self.read_logs()?;
        let interval = self.last_ms.map(|last| now_ms.saturating_sub(last));
        self.last_ms = Some(now_ms);
        Ok(Sample {
            at_ms: now_ms,
            source: self.kind().to_string(),
            instance: self.instance(),
            pools: self.attribution.pools(interval),
            frontends: Vec::new(),
            process,
            log_errors: self.attribution.log_errors(),
        })
    }

    fn config_files(&self) -> Vec<PathBuf> {
        self.config_files.clone()
    }

    fn take_notes(&mut self) -> Vec<String> {
        NginxSource::take_notes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribution(conf: &str) -> Attribution {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let imported = ballast_import::import_file(
            &path,
            &Options {
                format: Some(Format::Nginx),
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.render()));
        Attribution::from_config(&imported.loaded.config)
    }

    fn imported_config(conf: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        ballast_import::import_file(
            &path,
            &Options {
                format: Some(Format::Nginx),
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.render()))
        .loaded
        .config
    }

    const CONF: &str = "events {}\nhttp {\n  upstream app {\n    server 10.0.0.1:80 weight=2;\n    server 10.0.0.2:80 max_conns=7;\n    server 10.0.0.3:80 backup;\n    server 10.0.0.4:80 down;\n  }\n  upstream other {\n    least_conn;\n    server 10.0.0.2:80;\n    server 10.0.0.9:80;\n  }\n  server { listen 8080; location / { proxy_pass http://app; } location /o { proxy_pass http://other; } }\n}\n";

    fn line(addr: &str, status: &str, times: &str, proxy_host: &str) -> Vec<u8> {
        format!(
            "ballast1 \"1.000\" \"200\" \"0.010\" \"{addr}\" \"{status}\" \"{times}\" \"{proxy_host}\" \"1.2.3.4\" \"h\" \"/\""
        )
        .into_bytes()
    }

    fn server<'a>(pools: &'a [PoolSample], pool: &str, name: &str) -> &'a ServerSample {
        pools
            .iter()
            .find(|p| p.name == pool)
            .and_then(|p| p.servers.iter().find(|s| s.name == name))
            .unwrap_or_else(|| panic!("{pool}/{name} in {pools:?}"))
    }

    #[test]
    fn the_configuration_gives_weights_states_and_limits() {
        let mut a = attribution(CONF);
        let pools = a.pools(None);
        let s1 = server(&pools, "app", "10.0.0.1:80");
        assert_eq!(
            (s1.weight, s1.state, s1.backup),
            (2, ServerState::Up, false)
        );
        assert_eq!(
            server(&pools, "app", "10.0.0.2:80").max_connections,
            Some(7)
        );
        assert!(server(&pools, "app", "10.0.0.3:80").backup);
        assert_eq!(
            server(&pools, "app", "10.0.0.4:80").state,
            ServerState::Maintenance
        );
        let app = pools.iter().find(|p| p.name == "app").unwrap();
        let other = pools.iter().find(|p| p.name == "other").unwrap();
        assert_eq!(app.promise, Promise::RequestShares);
        assert_eq!(other.promise, Promise::Concurrency);
    }

    #[test]
    fn requests_go_to_the_last_attempt_and_earlier_ones_are_next_upstream() {
        let mut a = attribution(CONF);
        a.access_line(&line("10.0.0.1:80", "200", "0.004", "app"));
        a.access_line(&line(
            "10.0.0.1:80, 10.0.0.2:80",
            "502, 503",
            "0.000, 0.020",
            "app",
        ));
        // An internal redirect from `other` to `app`.
        a.access_line(&line(
            "10.0.0.9:80 : 10.0.0.1:80",
            "404 : 200",
            "0.001 : 0.010",
            "app",
        ));
        let pools = a.pools(Some(1000));
        let s1 = server(&pools, "app", "10.0.0.1:80");
        let s2 = server(&pools, "app", "10.0.0.2:80");
        assert_eq!((s1.requests, s1.responses.c2xx), (2, 2));
        assert_eq!((s2.requests, s2.responses.c5xx), (1, 1));
        assert_eq!(s1.latency_ms, Some(7.0));
        assert_eq!(server(&pools, "other", "10.0.0.9:80").requests, 0);
        let errors = a.log_errors();
        let next: Vec<(&str, &str, u64)> = errors
            .iter()
            .filter(|e| e.kind == LoggedErrorKind::NextUpstream)
            .map(|e| {
                (
                    e.pool.as_deref().unwrap(),
                    e.server.as_deref().unwrap(),
                    e.count,
                )
            })
            .collect();
        assert_eq!(
            next,
            [("app", "10.0.0.1:80", 1), ("other", "10.0.0.9:80", 1)]
        );
    }

    #[test]
    fn an_address_in_two_pools_goes_to_the_pool_proxied_to() {
        let mut a = attribution(CONF);
        a.access_line(&line("10.0.0.2:80", "200", "0.001", "other"));
        a.access_line(&line("10.0.0.2:80", "200", "0.001", "other"));
        a.access_line(&line("10.0.0.2:80", "200", "0.001", "app"));
        let pools = a.pools(None);
        assert_eq!(server(&pools, "other", "10.0.0.2:80").requests, 2);
        assert_eq!(server(&pools, "app", "10.0.0.2:80").requests, 1);
    }

    #[test]
    fn a_group_name_unknown_addresses_and_bad_lines_are_counted() {
        let mut a = attribution(CONF);
        a.access_line(&line("app", "502", "0.000", "app"));
        a.access_line(&line("10.9.9.9:80", "200", "0.001", "app"));
        a.access_line(b"127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1");
        a.access_line(&[0xff, 0xfe]);
        a.access_line(&line("-", "-", "-", "-"));
        assert_eq!(a.lines(), (5, 2));
        assert!(a.first_error().unwrap().contains("ballast's format"));
        let errors = a.log_errors();
        let get = |kind| {
            errors
                .iter()
                .find(|e| e.kind == kind)
                .map(|e| (e.pool.clone(), e.server.clone(), e.count))
        };
        assert_eq!(
            get(LoggedErrorKind::NoLiveUpstreams),
            Some((Some("app".into()), None, 1))
        );
        assert_eq!(
            get(LoggedErrorKind::UnknownAddress),
            Some((None, Some("10.9.9.9:80".into()), 1))
        );
        assert_eq!(get(LoggedErrorKind::Unparsed), Some((None, None, 2)));
        let pools = a.pools(None);
        assert!(
            pools
                .iter()
                .all(|p| p.servers.iter().all(|s| s.requests == 0))
        );
    }

    #[test]
    fn fives_nginx_answered_itself_are_counted_on_their_pool() {
        let mut a = attribution(CONF);
        let answered = |status: &str, addr: &str, proxy_host: &str| {
            format!(
                "ballast1 \"1.000\" \"{status}\" \"0.000\" \"{addr}\" \"{}\" \"{}\" \"{proxy_host}\" \"1.2.3.4\" \"h\" \"/\"",
                if addr == "-" { "-" } else { "502" },
                if addr == "-" { "-" } else { "0.000" },
            )
            .into_bytes()
        };
        // No live upstreams: the group's name, 502.
        a.access_line(&answered("502", "other", "other"));
        a.access_line(&answered("502", "other", "other"));
        // limit_req's 503 before any proxying: no group, no pool.
        a.access_line(&answered("503", "-", "-"));
        // A 503 with no upstream tried, in a location that proxies to app.
        a.access_line(&answered("503", "-", "app"));
        // A server's own 502 is the server's, not nginx's.
        a.access_line(&answered("502", "10.0.0.1:80", "app"));
        // A 404 nginx answered itself is no error.
        a.access_line(&answered("404", "-", "-"));
        let got: Vec<(Option<String>, u64)> = a
            .log_errors()
            .into_iter()
            .filter(|e| e.kind == LoggedErrorKind::AnsweredByBalancer)
            .map(|e| (e.pool, e.count))
            .collect();
        assert_eq!(
            got,
            [
                (None, 1),
                (Some("app".into()), 1),
                (Some("other".into()), 2)
            ]
        );
        let pools = a.pools(None);
        assert_eq!(server(&pools, "app", "10.0.0.1:80").responses.c5xx, 1);
    }

    #[test]
    fn a_hashing_pools_keys_predict_its_shares_when_the_log_carries_them() {
        let conf = "events {}\nhttp {\n  upstream h {\n    hash $http_x_tenant;\n    server 10.0.0.1:80;\n    server 10.0.0.2:80;\n    server 10.0.0.3:80;\n  }\n  upstream ip {\n    ip_hash;\n    server 10.0.1.1:80;\n    server 10.0.1.2:80;\n  }\n  server { listen 8080; location / { proxy_pass http://h; } location /i { proxy_pass http://ip; } }\n}\n";
        let config = imported_config(conf);
        assert_eq!(keys::key_variables(&config), ["http_x_tenant"]);
        let mut a = Attribution::from_config(&config);
        let tenant_line = |server: &str, tenant: Option<&str>| {
            let mut l = String::from_utf8(line(server, "200", "0.001", "h")).unwrap();
            if let Some(t) = tenant {
                l.push_str(&format!(" http_x_tenant=\"{t}\""));
            }
            l.into_bytes()
        };
        for _ in 0..50 {
            a.access_line(&tenant_line("10.0.0.2:80", Some("t1")));
        }
        // A line in the base format: the key is not visible.
        a.access_line(&tenant_line("10.0.0.1:80", None));
        let pools = a.pools(None);
        let h = pools.iter().find(|p| p.name == "h").unwrap();
        let k = h.predicted.as_ref().expect("a prediction");
        assert_eq!(k.key, "$http_x_tenant");
        assert_eq!(k.requests.iter().sum::<u64>(), 50);
        assert_eq!(k.requests.iter().filter(|&&n| n > 0).count(), 1, "{k:?}");
        assert_eq!(k.unseen, 1);
        assert_eq!(
            (k.distinct_keys, k.top_key.as_deref(), k.top_key_share),
            (1, Some("t1"), 1.0)
        );
        // Many tenants spread; the next interval's key figures start again.
        for t in 0..300 {
            a.access_line(&tenant_line("10.0.0.1:80", Some(&format!("tenant-{t}"))));
        }
        let pools = a.pools(None);
        let k = pools
            .iter()
            .find(|p| p.name == "h")
            .unwrap()
            .predicted
            .clone()
            .unwrap();
        assert!(k.requests.iter().all(|&n| n > 50), "{k:?}");
        assert_eq!(k.distinct_keys, 300);
        // ip_hash: the first three octets of the client.
        let ip = pools.iter().find(|p| p.name == "ip").unwrap();
        assert!(ip.predicted.is_some());
        // Round-robin pools predict nothing.
        assert!(
            attribution(CONF)
                .pools(None)
                .iter()
                .all(|p| p.predicted.is_none())
        );
    }

    #[test]
    fn active_is_busy_time_over_the_interval() {
        let mut a = attribution(CONF);
        // 20 requests of 250 ms in a 1 s interval: 5 in flight on average.
        for _ in 0..20 {
            a.access_line(&line("10.0.0.1:80", "200", "0.250", "app"));
        }
        let pools = a.pools(Some(1000));
        let s1 = server(&pools, "app", "10.0.0.1:80");
        assert_eq!((s1.active, s1.latency_ms), (5, Some(250.0)));
        // The next interval starts empty; the cumulative count stays.
        let pools = a.pools(Some(1000));
        let s1 = server(&pools, "app", "10.0.0.1:80");
        assert_eq!((s1.active, s1.latency_ms, s1.requests), (0, None, 20));
    }

    #[test]
    fn error_lines_are_placed_on_pools_and_servers() {
        let mut a = attribution(CONF);
        a.error_line(b"2026/12/01 12:32:03 [error] 1#1: *9 no live upstreams while connecting to upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://other/\", host: \"h\"");
        a.error_line(b"2026/12/01 12:32:03 [error] 1#1: *3 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://10.0.0.9:80/\", host: \"h\"");
        a.error_line(b"2026/12/01 12:32:03 [alert] 1#1: 20 worker_connections are not enough");
        a.error_line(b"2026/12/01 12:32:03 [notice] 1#1: using the \"epoll\" event method");
        let got: Vec<(LoggedErrorKind, Option<String>, Option<String>)> = a
            .log_errors()
            .into_iter()
            .map(|e| (e.kind, e.pool, e.server))
            .collect();
        assert_eq!(
            got,
            [
                (LoggedErrorKind::WorkerConnectionsNotEnough, None, None),
                (LoggedErrorKind::NoLiveUpstreams, Some("other".into()), None),
                (
                    LoggedErrorKind::UpstreamTimedOut,
                    Some("other".into()),
                    Some("10.0.0.9:80".into())
                ),
            ]
        );
        assert!(a.log_errors().iter().all(|e| e.log == LogFile::Error));
    }

    #[test]
    fn the_worker_limit_is_processes_times_connections() {
        assert_eq!(worker_limit(Some("4"), Some("1024"), true), Some(4096));
        assert_eq!(worker_limit(None, None, true), Some(512));
        let cpus = std::thread::available_parallelism().unwrap().get() as u64;
        assert_eq!(
            worker_limit(Some("auto"), Some("10"), true),
            Some(10 * cpus)
        );
        assert_eq!(worker_limit(Some("4"), Some("1024"), false), None);
        assert_eq!(worker_limit(Some("x"), Some("1024"), true), None);
    }

    #[test]
    fn the_printed_lines_are_a_format_the_parser_reads() {
        let lines = log_format_lines();
        assert!(lines.lines().any(|l| l.starts_with("log_format ballast '")));
        assert!(
            lines
                .lines()
                .any(|l| l.starts_with("access_log ") && l.ends_with(" ballast;"))
        );
        for v in log::VARIABLES {
            assert!(lines.contains(&format!("\"${v}\"")), "{v}");
        }
        // Every other line is a comment.
        assert!(
            lines
                .lines()
                .filter(|l| !l.starts_with("log_format") && !l.starts_with("access_log"))
                .all(|l| l.starts_with('#'))
        );
    }

    #[test]
    fn config_files_are_the_main_file_then_its_includes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(
            d.join("nginx.conf"),
            "events {}\nhttp {\n  include conf.d/*.conf;\n  include missing.conf;\n}\n",
        )
        .unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "include nested.inc;\n").unwrap();
        std::fs::write(
            d.join("conf.d/a.conf"),
            "upstream app { server 10.0.0.1:80; }\n",
        )
        .unwrap();
        std::fs::write(d.join("nested.inc"), "").unwrap();
        let files = config_files(&d.join("nginx.conf"), &d.join("no-prefix"));
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["nginx.conf", "conf.d/a.conf", "conf.d/b.conf", "nested.inc"]
        );
    }

    #[test]
    fn a_reconfigured_attribution_keeps_the_counts_of_the_servers_it_keeps() {
        let mut a = attribution(CONF);
        for _ in 0..3 {
            a.access_line(&line("10.0.0.1:80", "200", "0.010", "app"));
        }
        a.access_line(&line("10.0.0.2:80", "200", "0.010", "app"));
        let edited = CONF
            .replace("10.0.0.1:80 weight=2", "10.0.0.1:80 weight=8")
            .replace(
                "server 10.0.0.2:80 max_conns=7;",
                "server 10.0.0.2:80 down;",
            );
        let mut b = a.reconfigured(&imported_config(&edited));
        b.access_line(&line("10.0.0.1:80", "200", "0.010", "app"));
        let pools = b.pools(None);
        let one = server(&pools, "app", "10.0.0.1:80");
        assert_eq!((one.requests, one.weight), (4, 8));
        let two = server(&pools, "app", "10.0.0.2:80");
        assert_eq!((two.requests, two.state), (1, ServerState::Maintenance));
        assert_eq!(b.lines(), (5, 0));
    }

    #[test]
    fn an_edited_file_is_read_again_and_a_broken_one_keeps_the_last_good_model() {
        let dir = tempfile::tempdir().unwrap();
        let (conf, log) = (dir.path().join("nginx.conf"), dir.path().join("access.log"));
        std::fs::write(&conf, CONF).unwrap();
        std::fs::write(&log, "").unwrap();
        let mut options = NginxOptions::new(&conf, &log);
        options.pid_file = Some(dir.path().join("no.pid"));
        let mut source = NginxSource::new(options).unwrap();
        let weight = |s: &Sample| server(&s.pools, "app", "10.0.0.1:80").weight;
        assert_eq!(weight(&source.sample(0).unwrap()), 2);
        std::fs::write(&conf, CONF.replace("weight=2", "weight=8")).unwrap();
        assert_eq!(weight(&source.sample(1000).unwrap()), 8);
        std::fs::write(&conf, "http { upstream app { server").unwrap();
        assert_eq!(weight(&source.sample(2000).unwrap()), 8);
    }

    /// A process table with an nginx master (pid 50) and one worker.
    fn fake_proc(root: &Path, worker: u32, start: u64) {
        for (pid, ppid, title, at) in [
            (50, 1, "nginx: master process", 1),
            (worker, 50, "nginx: worker process", start),
        ] {
            let dir = root.join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let rest: String = (5..22).map(|f| format!(" {f}")).collect();
            std::fs::write(
                dir.join("stat"),
                format!("{pid} (nginx) S {ppid}{rest} {at} 0\n"),
            )
            .unwrap();
            std::fs::write(dir.join("cmdline"), format!("{title}\0")).unwrap();
        }
        let task = root.join("50/task/50");
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(task.join("children"), worker.to_string()).unwrap();
    }

    #[test]
    fn with_its_workers_seen_an_edit_is_read_at_the_reload_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (conf, log, proc) = (d.join("nginx.conf"), d.join("access.log"), d.join("proc"));
        std::fs::write(&conf, CONF).unwrap();
        std::fs::write(&log, "").unwrap();
        std::fs::write(d.join("nginx.pid"), "50\n").unwrap();
        fake_proc(&proc, 51, 10);
        let mut options = NginxOptions::new(&conf, &log);
        options.pid_file = Some(d.join("nginx.pid"));
        options.proc_root = proc.clone();
        let mut source = NginxSource::new(options).unwrap();
        let read = |s: &Sample| {
            (
                server(&s.pools, "app", "10.0.0.1:80").weight,
                s.process.as_ref().and_then(|p| p.generation.clone()),
            )
        };
        let first = read(&source.sample(0).unwrap());
        assert_eq!(first, (2, Some("master 50 worker 51".into())));
        // Edited, not reloaded: nginx still runs the old file.
        std::fs::write(&conf, CONF.replace("weight=2", "weight=8")).unwrap();
        assert_eq!(read(&source.sample(1000).unwrap()), first);
        // Reloaded: a new worker, and the new file is what runs.
        fake_proc(&proc, 60, 20);
        assert_eq!(
            read(&source.sample(2000).unwrap()),
            (8, Some("master 50 worker 60".into()))
        );
        assert!(source.take_notes().is_empty());
    }

    #[test]
    fn without_its_workers_the_files_hash_is_the_generation_said_once() {
        let dir = tempfile::tempdir().unwrap();
        let (conf, log) = (dir.path().join("nginx.conf"), dir.path().join("access.log"));
        std::fs::write(&conf, CONF).unwrap();
        std::fs::write(&log, "").unwrap();
        let mut options = NginxOptions::new(&conf, &log);
        options.pid_file = Some(dir.path().join("missing.pid"));
        let mut source = NginxSource::new(options).unwrap();
        let generation = |s: Sample| s.process.and_then(|p| p.generation).expect("a generation");
        let a = generation(source.sample(0).unwrap());
        assert_eq!(a, generation(source.sample(1000).unwrap()));
        let notes = source.take_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("missing.pid") && notes[0].contains("--nginx-pid-file"));
        std::fs::write(&conf, CONF.replace("weight=2", "weight=8")).unwrap();
        let b = generation(source.sample(2000).unwrap());
        assert!(a.starts_with("configuration ") && a != b, "{a} {b}");
        assert!(source.take_notes().is_empty());
    }

    #[test]
    fn samples_written_before_the_log_fields_still_read() {
        let old = r#"{"at_ms":1,"source":"nginx","instance":"x","pools":[],
            "process":{"active":3,"max_connections":null,"generation":null}}"#;
        let s: Sample = serde_json::from_str(old).unwrap();
        assert!(s.log_errors.is_empty());
        let p = s.process.unwrap();
        assert_eq!((p.active, p.accepted, p.handled), (3, None, None));
    }
}
