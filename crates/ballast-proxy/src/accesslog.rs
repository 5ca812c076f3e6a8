//! The optional access log: one JSON line per request naming the server that answered.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::json;

use crate::http::ServedBy;

pub struct AccessLog {
    out: Mutex<LineWriter<File>>,
}

impl AccessLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            out: Mutex::new(LineWriter::new(file)),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        listener: &str,
        client: IpAddr,
        method: &Method,
        path: &str,
        status: StatusCode,
        served: Option<&ServedBy>,
        took: Duration,
    ) {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = json!({
            "t": t,
            "listener": listener,
            "client": client.to_string(),
            "method": method.as_str(),
            "path": path,
            "status": status.as_u16(),
            "pool": served.map(|s| s.pool.as_str()),
            "server": served.map(|s| s.server.as_str()),
            "ms": took.as_secs_f64() * 1000.0,
        });
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
    }
}
