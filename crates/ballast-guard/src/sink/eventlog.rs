//! The event log sink: the guard's own events (configuration changes, reloads, pool
//! snapshots, from `crate::events`) through [`EventLogSink::record`], and alert transitions appended to ballast's event log as
//! `ballast_core::event::Event` JSON lines, one `alert_firing` when an alert begins to fire and
//! one `alert_resolved` when it resolves (never one per round), so the dashboard and
//! `postmortem` read alerts from the same log as configuration changes and server states.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ballast_core::event::{Event, EventKind};

use super::alertmanager::FailureReport;
use super::{Sink, SinkError};
use crate::alert::{Alert, AlertState};

/// Events kept while the log cannot be written; beyond that the oldest are dropped.
const MAX_UNWRITTEN: usize = 10_000;

/// Appends alert events to a file (or any writer).
pub struct EventLogSink {
    name: String,
    out: Box<dyn Write + Send>,
    /// Alerts whose firing is written: fingerprint → when it began to fire.
    fired: HashMap<String, u64>,
    /// The last resolve written per alert: fingerprint → when that firing began.
    resolved: HashMap<String, u64>,
    /// Events not yet written (the log failed), oldest first.
    unwritten: VecDeque<Event>,
    failure: FailureReport,
}

impl EventLogSink {
    /// Appends to the event log at `path`, created if missing. Other writers (`serve`) may
    /// append to the same file: each event goes out as one line in one write.
    pub fn open(path: &Path) -> Result<EventLogSink, SinkError> {
        let name = format!("event log {}", path.display());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SinkError {
                sink: name.clone(),
                what: format!(
                    "cannot open it for appending: {e}; check that its directory exists and \
                     is writable"
                ),
            })?;
        Ok(EventLogSink::to_writer(&name, file))
    }

    /// Writes the events to `out` (standard output, a pipe, a test's buffer), named `name`.
    pub fn to_writer(name: &str, out: impl Write + Send + 'static) -> EventLogSink {
        EventLogSink {
            name: name.to_string(),
            out: Box::new(out),
            fired: HashMap::new(),
            resolved: HashMap::new(),
            unwritten: VecDeque::new(),
            failure: FailureReport::default(),
        }
    }

    /// The error of the log, while writing it fails.
    pub fn last_error(&self) -> Option<&str> {
        self.failure.last_error()
    }

    /// The events this round adds: a firing not yet written, a resolve not yet written.
    fn transitions(&mut self, now_ms: u64, alerts: &[Arc<Alert>]) -> Vec<Event> {
        let mut events = Vec::new();
        for alert in alerts.iter().map(|a| &**a) {
            let fingerprint = alert.fingerprint();
            let fired_at_ms = alert.starts_at_ms.unwrap_or(alert.active_since_ms);
            match alert.state {
                AlertState::Firing => {
                    if self.fired.get(&fingerprint) != Some(&fired_at_ms) {
                        self.fired.insert(fingerprint, fired_at_ms);
                        events.push(Event {
                            at_ms: fired_at_ms,
                            kind: firing_event(alert),
                        });
                    }
                }
                AlertState::Resolved => {
                    self.fired.remove(&fingerprint);
                    if self.resolved.get(&fingerprint) != Some(&fired_at_ms) {
                        self.resolved.insert(fingerprint, fired_at_ms);
                        events.push(Event {
                            at_ms: alert.ends_at_ms.unwrap_or(now_ms),
                            kind: resolved_event(alert, fired_at_ms),
                        });
                    }
                }
                AlertState::Pending => {}
            }
        }
        events.sort_by_key(|e| e.at_ms);
        events
    }

    /// Appends events that are not alerts (the guard's configuration changes, reloads and
    /// snapshots). Like alert events, those that cannot be written are kept for the next call;
    /// the failure is returned on the first failing call only.
    pub fn record(&mut self, events: Vec<Event>) -> Result<(), SinkError> {
        if events.is_empty() && self.unwritten.is_empty() {
            return Ok(());
        }
        self.unwritten.extend(events);
        self.flush_unwritten()
    }

    fn flush_unwritten(&mut self) -> Result<(), SinkError> {
        while self.unwritten.len() > MAX_UNWRITTEN {
            self.unwritten.pop_front();
        }
        if self.unwritten.is_empty() {
            return Ok(());
        }
        match self.write_unwritten() {
            Ok(()) => {
                self.failure.succeeded();
                Ok(())
            }
            Err(e) => self.failure.failed(
                self.name(),
                format!(
                    "cannot append to it: {e}; {} events are kept and written when it can be \
                     (check the disk's space and the file's permissions)",
                    self.unwritten.len()
                ),
            ),
        }
    }

    fn write_unwritten(&mut self) -> std::io::Result<()> {
        while let Some(event) = self.unwritten.front() {
            let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
            line.push('\n');
            self.out.write_all(line.as_bytes())?;
            self.unwritten.pop_front();
        }
        self.out.flush()
    }
}

impl Sink for EventLogSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Appends this round's transitions. Events that cannot be written are kept and written
    /// next round; the failure is returned on the first failing round only.
    fn deliver(&mut self, now_ms: u64, alerts: &[Arc<Alert>]) -> Result<(), SinkError> {
        let events = self.transitions(now_ms, alerts);
        self.unwritten.extend(events);
        self.flush_unwritten()
    }
}

fn label(alert: &Alert, name: &str) -> String {
    alert.label(name).unwrap_or("").to_string()
}

fn server(alert: &Alert) -> Option<String> {
    alert
        .label("server")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn firing_event(alert: &Alert) -> EventKind {
    EventKind::AlertFiring {
        alertname: label(alert, "alertname"),
        severity: label(alert, "severity"),
        pool: label(alert, "pool"),
        server: server(alert),
        source: label(alert, "source"),
        instance: label(alert, "instance"),
        summary: alert.annotation("summary").unwrap_or("").to_string(),
        cause: alert.annotation("cause").unwrap_or("").to_string(),
    }
}

fn resolved_event(alert: &Alert, fired_at_ms: u64) -> EventKind {
    EventKind::AlertResolved {
        alertname: label(alert, "alertname"),
        pool: label(alert, "pool"),
        server: server(alert),
        source: label(alert, "source"),
        instance: label(alert, "instance"),
        fired_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that fails while `failing` is set.
    #[derive(Clone, Default)]
    struct Flaky {
        written: Arc<Mutex<Vec<u8>>>,
        failing: Arc<Mutex<bool>>,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if *self.failing.lock().unwrap() {
                return Err(std::io::Error::other("disk full"));
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn alert(state: AlertState) -> Arc<Alert> {
        Arc::new(Alert {
            labels: [("alertname", "Skew"), ("pool", "app"), ("server", "app-3")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            state,
            active_since_ms: 1_000,
            starts_at_ms: Some(2_000),
            ends_at_ms: (state == AlertState::Resolved).then_some(7_000),
            inhibited_by: None,
        })
    }

    #[test]
    fn events_that_cannot_be_written_are_kept_reported_once_and_written_later() {
        let out = Flaky::default();
        let mut sink = EventLogSink::to_writer("test", out.clone());
        *out.failing.lock().unwrap() = true;
        assert!(sink.deliver(3_000, &[alert(AlertState::Firing)]).is_err());
        assert!(sink.deliver(4_000, &[alert(AlertState::Firing)]).is_ok());
        assert!(sink.last_error().unwrap().contains("disk full"));
        *out.failing.lock().unwrap() = false;
        sink.deliver(7_000, &[alert(AlertState::Resolved)]).unwrap();
        assert!(sink.last_error().is_none());
        let text = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(matches!(events[0].kind, EventKind::AlertFiring { .. }));
        assert!(matches!(
            events[1].kind,
            EventKind::AlertResolved {
                fired_at_ms: 2_000,
                ..
            }
        ));
    }
}
