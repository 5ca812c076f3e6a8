//! Configuration changes of a watched load balancer: its files are read every round (the main
//! file and its includes, by content hash), and a change becomes a [`ConfigChange`] carrying
//! the semantic diff from `ballast-diff`, the `check` findings it adds and the predicted shift
//! in shares. A change that adds warnings or moves shares beyond a threshold is a finding at
//! once (`ConfigChangeRisky`); later alerts on a pool it touched name it as the likely trigger.
//!
//! Reloads are seen apart from edits: the sample's `process.generation` (HAProxy's process id
//! and start, nginx's workers, ballast's configuration version) changing is a reload.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use ballast_core::Severity;
use ballast_diff::ChangeKind;
use ballast_import::{Imported, Options};
use serde::Serialize;

use crate::detect::{Figures, Finding, Layer, Level, RuleSpec, Text};

/// The rules this module raises.
pub const RULES: &[RuleSpec] = &[RuleSpec {
    alertname: "ConfigChangeRisky",
    layer: Layer::Distribution,
    for_ms: 0,
    meaning: "The watched load balancer's configuration file changed, and the change adds \
        `ballast check` warnings or errors, or `ballast simulate` predicts that it moves a \
        server's share by more than the threshold (10 points by default). It fires at once and \
        stays for the attribution window (15 minutes), so the alerts that follow name it.",
    response: "Read the diff in the alert (`ballast diff OLD NEW` gives it in full). If the \
        change was not meant to move traffic, revert it before it is reloaded; if it is live \
        already, watch the pools it touched: a `PoolSkewed` or saturation alert there names \
        this change as its trigger.",
}];

/// One change of the configuration, as the event log, alerts and the postmortem tell it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    pub at_ms: u64,
    pub file: String,
    /// Content hashes (hex) of the files before and after.
    pub previous: String,
    pub version: String,
    /// The semantic changes, one line each: `pool app: ~ weight of server app-3: 1 → 8`.
    pub changes: Vec<String>,
    /// Pools the change touched.
    pub pools: Vec<String>,
    /// `check` findings the new file has and the old did not: `SKEW-001 warning line 12: ...`.
    pub introduced: Vec<String>,
    /// The largest predicted shift of any server's share, in percentage points.
    pub max_shift_points: f64,
    /// The predicted shares, per pool: `app: app-3 20% → 61%`.
    pub shifts: Vec<String>,
    /// Whether the change adds warnings or errors, or shifts shares beyond the threshold.
    pub risky: bool,
    /// When the new file could not be read, why (the running load balancer keeps its old one,
    /// or refuses to reload): the change is still an event.
    pub unreadable: Option<String>,
}

impl ConfigChange {
    /// One line for a cause statement: `the configuration change of 10:02:03 (weight of server
    /// app-3: 1 → 8)`.
    pub fn headline(&self) -> String {
        let what = if self.changes.is_empty() {
            self.unreadable
                .clone()
                .unwrap_or_else(|| "no semantic change".into())
        } else {
            let mut shown: Vec<&str> = self
                .changes
                .iter()
                .take(3)
                .map(|c| c.split_once(": ").map_or(c.as_str(), |(_, rest)| rest))
                .collect();
            if self.changes.len() > 3 {
                shown.push("…");
            }
            shown.join("; ")
        };
        format!(
            "the configuration change of {} to {} ({what})",
            clock(self.at_ms),
            self.file
        )
    }

    /// The finding a risky change raises, for each pool it touched (or the file when none).
    pub fn findings(&self) -> Vec<Finding> {
        if !self.risky {
            return Vec::new();
        }
        let level = if self.introduced.iter().any(|f| f.contains(" error ")) {
            Level::Critical
        } else {
            Level::Warning
        };
        let mut why = Vec::new();
        if !self.introduced.is_empty() {
            why.push(format!("adds {} check finding(s)", self.introduced.len()));
        }
        if self.max_shift_points >= SHIFT_THRESHOLD_POINTS {
            why.push(format!(
                "moves a server's predicted share by {:.0} points",
                self.max_shift_points
            ));
        }
        let pools: Vec<Option<String>> = if self.pools.is_empty() {
            vec![None]
        } else {
            self.pools.iter().cloned().map(Some).collect()
        };
        pools
            .into_iter()
            .map(|pool| Finding {
                rule: "ConfigChangeRisky",
                level,
                layer: Layer::Distribution,
                pool,
                server: None,
                text: Text::written(
                    format!("{} {}", self.headline(), why.join(" and ")),
                    [
                        self.changes.join("\n"),
                        self.introduced.join("\n"),
                        self.shifts.join("\n"),
                    ]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n"),
                ),
                figures: Figures::from([("max_shift_points", self.max_shift_points)]),
            })
            .collect()
    }
}

/// A predicted move of this many points in any server's share makes a change risky.
pub const SHIFT_THRESHOLD_POINTS: f64 = 10.0;

/// Watches one configuration file (and the files it includes) for changes.
pub struct ChangeWatcher {
    main: PathBuf,
    extra: Vec<PathBuf>,
    options: Options,
    hash: String,
    last: Option<Imported>,
}

impl ChangeWatcher {
    /// Starts from the file as it is now; `extra` are its includes (hashed with it).
    pub fn new(main: &Path, extra: Vec<PathBuf>, options: Options) -> Self {
        let hash = hash_files(main, &extra);
        let last = ballast_import::import_file(main, &options).ok();
        Self {
            main: main.to_path_buf(),
            extra,
            options,
            hash,
            last,
        }
    }

    pub fn file(&self) -> &Path {
        &self.main
    }

    /// The configuration as last read (for expected shares and server names).
    pub fn current(&self) -> Option<&Imported> {
        self.last.as_ref()
    }

    /// Reads the files; a change since the last call is returned with its diff.
    pub fn poll(&mut self, now_ms: u64) -> Option<ConfigChange> {
        let hash = hash_files(&self.main, &self.extra);
        if hash == self.hash {
            return None;
        }
        let previous = std::mem::replace(&mut self.hash, hash.clone());
        let file = self.main.display().to_string();
        let mut change = ConfigChange {
            at_ms: now_ms,
            file,
            previous,
            version: hash,
            changes: Vec::new(),
            pools: Vec::new(),
            introduced: Vec::new(),
            max_shift_points: 0.0,
            shifts: Vec::new(),
            risky: false,
            unreadable: None,
        };
        let new = match ballast_import::import_file(&self.main, &self.options) {
            Ok(new) => new,
            Err(e) => {
                let first = e
                    .diagnostics
                    .first()
                    .map_or("cannot be read".to_string(), |d| d.message.clone());
                change.unreadable = Some(format!("the new file cannot be read: {first}"));
                change.risky = true;
                change.introduced = e
                    .diagnostics
                    .iter()
                    .map(|d| format!("LOAD error: {}", d.message))
                    .collect();
                return Some(change);
            }
        };
        if let Some(old) = &self.last {
            describe(old, &new, &mut change);
        }
        self.last = Some(new);
        Some(change)
    }
}

/// Fills a change from the semantic diff of `old` and `new`.
fn describe(old: &Imported, new: &Imported, change: &mut ConfigChange) {
    let d = ballast_diff::diff(old, new, None);
    for c in &d.changes {
        let values = match c.kind {
            ChangeKind::Added => format!("+ {}: {}", c.what, c.new.as_deref().unwrap_or("")),
            ChangeKind::Removed => format!("- {}: {}", c.what, c.old.as_deref().unwrap_or("")),
            ChangeKind::Changed => format!(
                "~ {}: {} → {}",
                c.what,
                c.old.as_deref().unwrap_or(""),
                c.new.as_deref().unwrap_or("")
            ),
        };
        change.changes.push(format!("{}: {values}", c.scope));
        if let Some(pool) = c.scope.strip_prefix("pool ")
            && !change.pools.iter().any(|p| p == pool)
        {
            change.pools.push(pool.to_string());
        }
    }
    let text = &new.loaded.source.text;
    change.introduced = d
        .introduced
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| {
            let line = f.span.as_ref().map_or(0, |s| {
                new.loaded.source.line_col(s.start.min(text.len())).line
            });
            format!("{} {} line {line}: {}", f.rule, f.severity, f.message)
        })
        .collect();
    change.max_shift_points = d
        .shifts
        .iter()
        .map(|s| s.max_shift_points)
        .fold(0.0, f64::max);
    change.shifts = d
        .shifts
        .iter()
        .map(|s| {
            let moved: Vec<String> = s
                .servers
                .iter()
                .filter(|x| x.shift_points.abs() >= 1.0)
                .map(|x| {
                    format!(
                        "{} {:.0}% → {:.0}%",
                        x.server,
                        x.old_share * 100.0,
                        x.new_share * 100.0
                    )
                })
                .collect();
            format!("{}: {}", s.pool, moved.join(", "))
        })
        .collect();
    // The simulation models traffic that can saturate servers with small limits, where shares
    // follow the queues rather than the weights: the weights' own promise is judged as well.
    for (pool, points, moved) in promised_shifts(&old.loaded.config, &new.loaded.config) {
        let simulated = d
            .shifts
            .iter()
            .filter(|s| s.pool == pool)
            .map(|s| s.max_shift_points)
            .fold(0.0, f64::max);
        if points >= 1.0 && points > simulated + 1.0 {
            change
                .shifts
                .push(format!("{pool} (as its weights promise): {moved}"));
            change.max_shift_points = change.max_shift_points.max(points);
        }
    }
    change.risky =
        !change.introduced.is_empty() || change.max_shift_points >= SHIFT_THRESHOLD_POINTS;
}

/// Per pool both versions have: the largest move of a server's share that the weights alone
/// promise (servers in rotation; the backups when no primary is), and the servers that moved.
/// `ballast simulate` predicts shares under its model traffic (1000 req/s by default), which
/// fills servers with small limits (`maxconn 6`) so that their shares follow the queues and a
/// weight change disappears from the prediction; the promise does not depend on the model.
fn promised_shifts(
    old: &ballast_core::config::Config,
    new: &ballast_core::config::Config,
) -> Vec<(String, f64, String)> {
    use ballast_core::sample::Promise;
    let shares = |pool: &ballast_core::config::Pool| -> BTreeMap<String, f64> {
        let serving = |backup: bool| {
            pool.servers
                .iter()
                .filter(move |s| !s.down && s.weight > 0 && s.backup == backup)
        };
        let tier = serving(false).next().is_none();
        let total: u64 = serving(tier).map(|s| u64::from(s.weight)).sum();
        pool.servers
            .iter()
            .map(|s| {
                let share = if total > 0 && !s.down && s.weight > 0 && s.backup == tier {
                    f64::from(s.weight) / total as f64
                } else {
                    0.0
                };
                (s.name.clone(), share)
            })
            .collect()
    };
    new.pools
        .iter()
        .filter_map(|(name, after)| {
            let before = old.pools.get(name)?;
            if Promise::of(after) == Promise::FillInOrder {
                return None;
            }
            let (was, is) = (shares(before), shares(after));
            let mut servers: Vec<&String> = was.keys().chain(is.keys()).collect();
            servers.sort();
            servers.dedup();
            let moves: Vec<(&String, f64, f64)> = servers
                .into_iter()
                .map(|s| {
                    let get = |m: &BTreeMap<String, f64>| m.get(s).copied().unwrap_or(0.0);
                    (s, get(&was), get(&is))
                })
                .filter(|(_, a, b)| (b - a).abs() * 100.0 >= 1.0)
                .collect();
            let points = moves
                .iter()
                .map(|(_, a, b)| (b - a).abs() * 100.0)
                .fold(0.0, f64::max);
            let moved = moves
                .iter()
                .map(|(s, a, b)| format!("{s} {:.0}% → {:.0}%", a * 100.0, b * 100.0))
                .collect::<Vec<_>>()
                .join(", ");
            Some((name.clone(), points, moved))
        })
        .collect()
}

/// A content hash of the files (missing ones hash as missing), in hex.
fn hash_files(main: &Path, extra: &[PathBuf]) -> String {
    let mut h = rustc_hash::FxHasher::default();
    for path in std::iter::once(main).chain(extra.iter().map(PathBuf::as_path)) {
        h.write(path.as_os_str().as_encoded_bytes());
        match std::fs::read(path) {
            Ok(bytes) => {
                h.write_u8(1);
                h.write(&bytes);
            }
            Err(_) => h.write_u8(0),
        }
    }
    format!("{:016x}", h.finish())
}

/// `HH:MM:SS` UTC of a Unix-ms time, for statements read by people.
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `1 min 05 s`, `46 s`, `1 h 02 min`, to the nearest second (3.99 s reads as 4 s).
pub fn duration(ms: u64) -> String {
    let s = ms.saturating_add(500) / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s / 60) % 60)
    }
}

/// A reload of the watched load balancer: its generation changed between two samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reload {
    pub at_ms: u64,
    pub previous: String,
    pub generation: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn haproxy(weights: [u32; 3]) -> String {
        format!(
            "global\n    maxconn 1000\n\ndefaults\n    mode http\n    timeout connect 5s\n    \
             timeout client 30s\n    timeout server 30s\n\nfrontend web\n    bind :8080\n    \
             default_backend app\n\nbackend app\n    balance roundrobin\n    \
             server app-1 127.0.0.1:9001 weight {} check\n    \
             server app-2 127.0.0.1:9002 weight {} check\n    \
             server app-3 127.0.0.1:9003 weight {} check\n",
            weights[0], weights[1], weights[2]
        )
    }

    #[test]
    fn an_edit_is_a_change_with_its_diff_its_pools_and_its_predicted_shift() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, haproxy([1, 1, 1])).unwrap();
        let mut w = ChangeWatcher::new(&path, Vec::new(), Options::default());
        assert!(w.current().is_some());
        assert_eq!(w.poll(1_000), None, "nothing changed");
        std::fs::write(&path, haproxy([1, 1, 8])).unwrap();
        let c = w.poll(2_000).expect("a change");
        assert_eq!(c.pools, vec!["app".to_string()]);
        assert!(
            c.changes
                .iter()
                .any(|l| l.contains("weight") && l.contains("1 → 8")),
            "{c:#?}"
        );
        // app-3 goes from a third to 80%: about 47 points.
        assert!(c.max_shift_points > 40.0, "{c:#?}");
        assert!(c.risky);
        assert_ne!(c.previous, c.version);
        let f = c.findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "ConfigChangeRisky");
        assert_eq!(f[0].pool.as_deref(), Some("app"));
        assert!(f[0].summary().contains("1 → 8"), "{}", f[0].summary());
        assert_eq!(w.poll(3_000), None, "seen once");
    }

    /// Servers with `maxconn 6` and no `check`, as HAProxy configurations often are.
    fn limited(weights: [u32; 3]) -> String {
        format!(
            "global\n    maxconn 500\n\ndefaults\n    mode http\n    timeout connect 2s\n    \
             timeout client 10s\n    timeout server 10s\n\nfrontend web\n    bind :8080\n    \
             default_backend app\n\nbackend app\n    balance roundrobin\n    \
             server s1 127.0.0.1:9001 weight {} maxconn 6\n    \
             server s2 127.0.0.1:9002 weight {} maxconn 6\n    \
             server s3 127.0.0.1:9003 weight {} maxconn 6\n",
            weights[0], weights[1], weights[2]
        )
    }

    #[test]
    fn a_weight_change_on_servers_with_small_limits_is_risky_by_its_promised_shift() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, limited([1, 1, 1])).unwrap();
        let mut w = ChangeWatcher::new(&path, Vec::new(), Options::default());
        std::fs::write(&path, limited([1, 1, 8])).unwrap();
        let c = w.poll(1_000).expect("a change");
        // The servers lacked `check` before the edit too: nothing is introduced.
        assert!(c.introduced.is_empty(), "{c:#?}");
        // The simulation saturates six-connection servers; the weights promise s3 80%.
        assert!(c.max_shift_points > 40.0, "{c:#?}");
        assert!(
            c.shifts
                .iter()
                .any(|l| l.contains("as its weights promise") && l.contains("s3 33% → 80%")),
            "{c:#?}"
        );
        assert!(c.risky);
        let f = c.findings();
        assert_eq!(f[0].level, Level::Warning, "no check error was added");
        assert!(
            f[0].summary()
                .contains("moves a server's predicted share by 47 points"),
            "{}",
            f[0].summary()
        );
    }

    #[test]
    fn a_harmless_edit_is_a_change_that_raises_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, haproxy([1, 1, 1])).unwrap();
        let mut w = ChangeWatcher::new(&path, Vec::new(), Options::default());
        std::fs::write(&path, haproxy([1, 1, 1]) + "# a comment\n").unwrap();
        let c = w.poll(1_000).expect("the file changed");
        assert!(c.changes.is_empty());
        assert!(!c.risky);
        assert!(c.findings().is_empty());
    }

    #[test]
    fn an_unreadable_new_file_is_a_risky_change_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, haproxy([1, 1, 1])).unwrap();
        let mut w = ChangeWatcher::new(&path, Vec::new(), Options::default());
        std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        let c = w.poll(1_000).expect("a change");
        assert!(c.unreadable.is_some());
        assert!(c.risky);
    }
}
