//! Sinks: where alerts go. Alertmanager's API, a webhook carrying Alertmanager's webhook JSON,
//! the event log and the terminal all take the same [`Alert`]s.

pub mod alertmanager;
pub mod eventlog;
pub mod webhook;

use crate::alert::Alert;
use std::sync::Arc;

/// One destination for alerts.
pub trait Sink: Send {
    /// What it is, for logs: `alertmanager http://127.0.0.1:9093`.
    fn name(&self) -> String;
    /// Called every round with the alerts to tell: every firing alert that is not inhibited,
    /// and those that resolved this round. The sink decides what to send and when (Alertmanager
    /// wants firing alerts re-sent; a webhook is told of changes per group).
    fn deliver(&mut self, now_ms: u64, alerts: &[Arc<Alert>]) -> Result<(), SinkError>;
}

/// A delivery that failed; the alert stays active and is tried again next round.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {what}")]
pub struct SinkError {
    pub sink: String,
    pub what: String,
}
