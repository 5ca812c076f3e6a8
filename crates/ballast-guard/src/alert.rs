//! Alerts: what the detectors' findings become — labelled, with a lifecycle (pending, firing,
//! resolved), `for` durations, deduplication by labels, grouping by pool, and inhibition of a
//! symptom by its cause. Sinks receive [`Alert`]s; nothing here does I/O.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Found, but not yet for its rule's `for` duration.
    Pending,
    Firing,
    Resolved,
}

/// One alert, as Alertmanager knows them: labels that identify it, annotations that explain it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `alertname`, `severity`, `pool`, `server` (when one), `source`, `instance`.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `cause`, `runbook`.
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the condition was first found (pending since), Unix ms.
    pub active_since_ms: u64,
    /// When it began to fire, Unix ms.
    pub starts_at_ms: Option<u64>,
    /// When it resolved, Unix ms.
    pub ends_at_ms: Option<u64>,
    /// The alert that explains this one (its `alertname` and labels, in words), when this one
    /// is a symptom: it is shown, and not paged.
    pub inhibited_by: Option<String>,
}

impl Alert {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.get(name).map(String::as_str)
    }

    /// A stable identity from the labels (as Alertmanager's fingerprint: same labels, same
    /// alert), in hex.
    pub fn fingerprint(&self) -> String {
        // FNV-1a over the sorted labels: stable across runs and builds, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.labels {
            for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }

    /// The group an alert belongs to for notification: its pool on its instance.
    pub fn group_key(&self) -> String {
        format!(
            "{{instance=\"{}\",pool=\"{}\"}}",
            self.label("instance").unwrap_or(""),
            self.label("pool").unwrap_or("")
        )
    }
}

/// Unix milliseconds as RFC 3339 (`2026-12-01T10:02:03.250Z`), as Alertmanager's API wants.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
