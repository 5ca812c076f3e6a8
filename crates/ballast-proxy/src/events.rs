//! Appending events to the event log (JSON lines), and keeping the most recent ones in memory
//! for `/status`. A failure to write the log is reported once and never stops traffic.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ballast_core::event::{Event, EventKind};

/// Events kept in memory.
const RECENT: usize = 256;

pub struct EventLog {
    file: Option<Mutex<File>>,
    recent: Mutex<VecDeque<Event>>,
    write_failed: AtomicBool,
}

impl EventLog {
    /// A log that appends to `path` (created if missing), or only keeps events in memory.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
            None => None,
        };
        Ok(Self {
            file,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            write_failed: AtomicBool::new(false),
        })
    }

    pub fn emit(&self, kind: EventKind) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.record(Event { at_ms, kind });
    }

    /// Appends an event that carries its own time (an alert's, which began in a past round).
    pub fn record(&self, event: Event) {
        tracing::info!(target: "ballast::event", "{}", serde_json::to_string(&event).unwrap_or_default());
        if let Some(file) = &self.file
            && let Ok(line) = serde_json::to_string(&event)
        {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if writeln!(f, "{line}").is_err() && !self.write_failed.swap(true, Ordering::Relaxed) {
                tracing::error!("cannot append to the event log; events are kept in memory only");
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The most recent events, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}
