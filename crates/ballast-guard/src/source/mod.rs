//! Sources: each turns one running load balancer into [`Sample`]s, doing the I/O and nothing
//! else (no judgement). ballast's admin API, HAProxy's stats socket, CSV page and Prometheus
//! exporter, nginx's access log, `stub_status` and error log all sit behind [`Source`], so the
//! detectors see every load balancer the same way.

pub mod ballast;
pub mod haproxy;
pub mod nginx;

use std::path::PathBuf;

use ballast_core::sample::Sample;

/// One watched load balancer.
pub trait Source: Send {
    /// The kind, as in `Sample::source`: `ballast`, `haproxy`, `nginx`.
    fn kind(&self) -> &'static str;
    /// Which one: an address, a socket path, a log file. Used as the `instance` label.
    fn instance(&self) -> String;
    /// Takes one sample now. `now_ms` is the sample's time (Unix ms, or virtual in tests), so
    /// sources never read a clock of their own.
    fn sample(&mut self, now_ms: u64) -> Result<Sample, SourceError>;
    /// The configuration files behind this load balancer, when known, so configuration
    /// changes can be watched (the main file first, then its includes).
    fn config_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// What the source noticed about itself since the last call, each said once (nginx: its
    /// reloads cannot be seen, so edits stand for them). The watcher prints these.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Why a source could not produce a sample: what failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct SourceError {
    pub what: String,
    /// A fix the user can apply ("add `stats socket /run/haproxy.sock level admin` to the
    /// global section").
    pub fix: Option<String>,
}

impl SourceError {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            fix: None,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}
