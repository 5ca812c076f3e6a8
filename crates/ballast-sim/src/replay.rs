//! Recorded requests for `--replay`: JSON lines of
//! `{"t": seconds, "client": "ip", "method": "GET", "path": "/x", "headers": {...}}`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use ballast_core::balance::RequestParts;

/// One recorded request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Arrival time in seconds from the start of the log.
    pub t: f64,
    pub client: IpAddr,
    #[serde(default = "default_method")]
    pub method: String,
    /// Path with an optional query string.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/".into()
}

impl RequestParts for ReplayRequest {
    fn client_ip(&self) -> Option<IpAddr> {
        Some(self.client)
    }
    fn path(&self) -> Option<&str> {
        Some(
            self.path
                .split_once('?')
                .map_or(self.path.as_str(), |(p, _)| p),
        )
    }
    fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A line of the log that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayError {
    pub line: usize,
    pub message: String,
}

/// Parses a JSON-lines log; blank lines are skipped. Requests are returned in time order
/// (a stable sort, so equal times keep their order in the file).
pub fn parse(text: &str) -> Result<Vec<ReplayRequest>, ReplayError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: ReplayRequest = serde_json::from_str(line).map_err(|e| ReplayError {
            line: i + 1,
            message: line_error(&e),
        })?;
        if !(r.t.is_finite() && r.t >= 0.0 && r.t < 1e9) {
            return Err(ReplayError {
                line: i + 1,
                message: format!(
                    "t = {} must be seconds from the start of the log (0 or more)",
                    r.t
                ),
            });
        }
        out.push(r);
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    Ok(out)
}

/// serde's message without its own position (the line is the log's, not the one-line JSON's),
/// with the column.
fn line_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    format!("{message} (column {})", e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorts_and_reports_bad_lines() {
        let ok = parse("{\"t\": 1.5, \"client\": \"10.0.0.1\", \"path\": \"/a?u=1\"}\n\n{\"t\": 0.5, \"client\": \"::1\"}\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].client.to_string(), "::1");
        assert_eq!(ok[1].query(), Some("u=1"));
        assert_eq!(ok[1].path(), Some("/a"));
        let bad = parse("{\"t\": 0, \"client\": \"10.0.0.1\"}\n{\"t\": 1, \"client\": \"nope\"}\n")
            .unwrap_err();
        assert_eq!(bad.line, 2);
        assert!(!bad.message.contains("line 1"), "{}", bad.message);
        assert!(bad.message.contains("(column "), "{}", bad.message);
        let missing = parse("{\"t\": 0, \"path\": \"/a\"}").unwrap_err();
        assert!(missing.message.contains("client"), "{}", missing.message);
        assert_eq!(
            parse("{\"t\": -1, \"client\": \"10.0.0.1\"}")
                .unwrap_err()
                .line,
            1
        );
    }
}
