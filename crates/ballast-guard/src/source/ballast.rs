//! `ballast serve` as a source: its admin API's `/sample`, which is the guard's `Sample` built
//! from the proxy's own counters.

use std::time::Duration;

use ballast_core::sample::Sample;

use super::{Source, SourceError};

/// A running `ballast serve`, by its admin address.
pub struct BallastSource {
    /// `http://127.0.0.1:9900`.
    base: String,
}

impl BallastSource {
    /// `address` is the admin listener: `127.0.0.1:9900` or a URL.
    pub fn new(address: &str) -> Self {
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        Self { base }
    }
}

impl Source for BallastSource {
    fn kind(&self) -> &'static str {
        "ballast"
    }

    fn instance(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    }

    fn sample(&mut self, now_ms: u64) -> Result<Sample, SourceError> {
        let url = format!("{}/sample", self.base);
        let (status, body) = crate::http::get(&url, Duration::from_secs(2)).map_err(|e| {
            SourceError::new(format!("cannot read ballast's admin API: {e}")).with_fix(
                "give the admin address `ballast serve` prints at start ([admin] address, \
                 127.0.0.1:9900 by default)",
            )
        })?;
        if status != 200 {
            return Err(SourceError::new(format!(
                "{url} answered {status}: {}",
                body.lines().next().unwrap_or("")
            ))
            .with_fix("watch a ballast version that serves /sample (this one or later)"));
        }
        let mut sample: Sample = serde_json::from_str(&body).map_err(|e| {
            SourceError::new(format!("{url} did not answer a sample: {e}"))
                .with_fix("check that the address is ballast's admin listener, not a data listener")
        })?;
        // The watcher's clock, so every source of one watch shares a time line.
        sample.at_ms = now_ms;
        sample.instance = self.instance();
        Ok(sample)
    }
}
