//! `ballast watch --on-critical CMD`: the user's command (through `sh -c`), run once per
//! incident when an alert reaches critical and firing, with the alert and the likely
//! trigger's diff in its environment. An incident is a pool's (or the load balancer's) run of
//! critical firing alerts, from the first until none is left: several critical alerts of one
//! incident at once run it once. The command runs in a thread and its own process group, so
//! the watch loop never waits for it; past its time limit the group is killed. Each run is a
//! `command_ran` event (in `--event-log`, when given) and a printed line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ballast_core::event::{Event, EventKind};
use ballast_guard::alert::{Alert, AlertState};
use ballast_guard::detect::Level;
use ballast_guard::watch::Watcher;

use crate::stdout::say;

/// The user's command and the incidents it has run for.
pub struct OnCritical {
    command: String,
    timeout: Duration,
    event_log: Option<PathBuf>,
    /// Print each run as a JSON line (`--format json`) instead of a sentence.
    json: bool,
    /// Incidents open now: by watched load balancer (its position), their groups (pools).
    open: BTreeMap<usize, BTreeSet<String>>,
    running: Vec<JoinHandle<()>>,
}

/// What one run is given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incident {
    pub alertname: String,
    pub pool: String,
    pub server: String,
    pub summary: String,
    pub cause: String,
    pub severity: String,
    pub instance: String,
    pub change_diff: String,
    pub change_file: String,
}

impl Incident {
    fn environment(&self) -> [(&'static str, &str); 9] {
        [
            ("BALLAST_ALERTNAME", self.alertname.as_str()),
            ("BALLAST_POOL", self.pool.as_str()),
            ("BALLAST_SERVER", self.server.as_str()),
            ("BALLAST_SUMMARY", self.summary.as_str()),
            ("BALLAST_CAUSE", self.cause.as_str()),
            ("BALLAST_CHANGE_DIFF", self.change_diff.as_str()),
            ("BALLAST_CHANGE_FILE", self.change_file.as_str()),
            ("BALLAST_SEVERITY", self.severity.as_str()),
            ("BALLAST_INSTANCE", self.instance.as_str()),
        ]
    }
}

fn critical_firing(a: &Alert) -> bool {
    a.state == AlertState::Firing && a.label("severity") == Some(Level::Critical.as_str())
}

impl OnCritical {
    pub fn new(command: String, timeout: Duration, event_log: Option<PathBuf>, json: bool) -> Self {
        Self {
            command,
            timeout,
            event_log,
            json,
            open: BTreeMap::new(),
            running: Vec::new(),
        }
    }

    /// After a round of watched load balancer number `which`: opens an incident for each
    /// group with a critical firing alert and none open (running the command), and closes
    /// those with none left.
    pub fn round(&mut self, which: usize, watcher: &Watcher) {
        let active = watcher.active();
        let critical: Vec<&Alert> = active
            .iter()
            .map(|a| &**a)
            .filter(|a| critical_firing(a))
            .collect();
        let groups: BTreeSet<String> = critical.iter().map(|a| a.group_key()).collect();
        let open = self.open.entry(which).or_default();
        open.retain(|g| groups.contains(g));
        let fresh: Vec<String> = groups.into_iter().filter(|g| !open.contains(g)).collect();
        open.extend(fresh.iter().cloned());
        for group in fresh {
            // The alert that opened it: the one a cause explains, not its symptom; the
            // earliest to fire.
            let Some(first) = critical
                .iter()
                .filter(|a| a.group_key() == group)
                .min_by_key(|a| (a.inhibited_by.is_some(), a.starts_at_ms))
            else {
                continue;
            };
            let incident = incident(first, watcher);
            self.spawn(incident);
        }
        self.running.retain(|h| !h.is_finished());
    }

    fn spawn(&mut self, incident: Incident) {
        let (command, timeout, event_log, json) = (
            self.command.clone(),
            self.timeout,
            self.event_log.clone(),
            self.json,
        );
        let handle = std::thread::Builder::new()
            .name("on-critical".into())
            .spawn(move || {
                let (exit_code, detail) = run(&command, &incident, timeout);
                let event = Event {
                    at_ms: unix_ms(),
                    kind: EventKind::CommandRan {
                        command: command.clone(),
                        alertname: incident.alertname.clone(),
                        pool: incident.pool.clone(),
                        exit_code,
                        detail: detail.clone(),
                    },
                };
                let outcome = match exit_code {
                    Some(code) => format!("exited {code}"),
                    None => "did not finish".to_string(),
                };
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                };
                if json {
                    // A record of `--format json` like the others: `type` says what it is.
                    if let Ok(serde_json::Value::Object(mut fields)) = serde_json::to_value(&event)
                    {
                        fields.insert("type".into(), "command_ran".into());
                        say!("{}", serde_json::Value::Object(fields));
                    }
                } else {
                    say!(
                        "on-critical: `{command}` for {} on pool {} {outcome}{detail}",
                        incident.alertname,
                        incident.pool
                    );
                }
                if let Some(path) = event_log
                    && let Err(e) = append(&path, &event)
                {
                    eprintln!(
                        "warning: cannot write the command_ran event to {}: {e}",
                        path.display()
                    );
                }
            });
        match handle {
            Ok(h) => self.running.push(h),
            Err(e) => eprintln!("warning: --on-critical: cannot start a thread: {e}"),
        }
    }

    /// Waits for the commands still running (each bounded by its time limit), so a watch
    /// that stops by its `--duration` still logs them.
    pub fn finish(self) {
        for h in self.running {
            let _ = h.join();
        }
    }
}

/// The incident's environment from its first alert and the watcher's latest change touching
/// its pool.
fn incident(a: &Alert, watcher: &Watcher) -> Incident {
    let pool = a.label("pool").unwrap_or("").to_string();
    let change = watcher
        .changes()
        .iter()
        .rev()
        .find(|c| pool.is_empty() || c.pools.is_empty() || c.pools.contains(&pool));
    Incident {
        alertname: a.label("alertname").unwrap_or("").to_string(),
        server: a.label("server").unwrap_or("").to_string(),
        summary: a.annotation("summary").unwrap_or("").to_string(),
        cause: a.annotation("cause").unwrap_or("").to_string(),
        severity: a.label("severity").unwrap_or("").to_string(),
        instance: a.label("instance").unwrap_or("").to_string(),
        change_diff: change.map_or_else(String::new, |c| c.changes.join("\n")),
        change_file: change.map_or_else(String::new, |c| c.file.clone()),
        pool,
    }
}

/// Runs `sh -c command` in its own process group; its exit code (`None` when it could not
/// run or was killed) and why not, or its last line of error output.
fn run(command: &str, incident: &Incident, timeout: Duration) -> (Option<i32>, String) {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        // Its output goes to our stderr: stdout stays the watch's own (JSON lines).
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::piped())
        .process_group(0);
    for (name, value) in incident.environment() {
        sh.env(name, value);
    }
    let mut child = match sh.spawn() {
        Ok(c) => c,
        Err(e) => return (None, format!("cannot run sh: {e}")),
    };
    // Its error output is read aside, so a chatty command never blocks on a full pipe.
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let Some(status) = status else {
        // The whole group: a script's children (a reload it started) go with it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
        return (
            None,
            format!("killed after {} s, its time limit", timeout.as_secs()),
        );
    };
    let last_error = stderr
        .and_then(|h| h.join().ok())
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_default();
    match status.code() {
        Some(code) => (Some(code), last_error),
        None => (None, format!("ended by a signal; {last_error}")),
    }
}

fn append(path: &PathBuf, event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
    line.push('\n');
    // One write of the whole line to a file opened for appending: it never interleaves with
    // the event log sink's lines.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
