//! nginx's `stub_status` page: its seven counters, read over HTTP and parsed.
//!
//! ```text
//! Active connections: 291
//! server accepts handled requests
//!  16630948 16630948 31070465
//! Reading: 6 Writing: 179 Waiting: 106
//! ```
//!
//! `Active connections` counts client connections (Waiting included); `handled` below
//! `accepts` means nginx closed connections it had accepted because a resource limit, such as
//! `worker_connections`, was reached.

use std::time::Duration;

use crate::source::SourceError;

/// The counters of one `stub_status` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StubStatus {
    pub active: u64,
    /// Cumulative since the master started (reloads keep them).
    pub accepts: u64,
    pub handled: u64,
    pub requests: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// What to add to the configuration for a `stub_status` page ballast can read.
pub const FIX: &str = "add `location = /nginx_status { stub_status; allow 127.0.0.1; deny all; }` to a `server` block that listens on loopback, reload nginx, and pass that URL";

/// Parses the page.
pub fn parse(text: &str) -> Result<StubStatus, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let not_it = |what: &str| format!("not a stub_status page: {what}");
    let active = lines
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .ok_or_else(|| not_it("no `Active connections:` line first"))?;
    let active = number(active, "Active connections")?;
    if lines.next() != Some("server accepts handled requests") {
        return Err(not_it("no `server accepts handled requests` line"));
    }
    let counts: Vec<&str> = lines
        .next()
        .ok_or_else(|| not_it("no counters line"))?
        .split_whitespace()
        .collect();
    let [accepts, handled, requests] = counts[..] else {
        return Err(not_it(
            "the counters line does not hold accepts, handled and requests",
        ));
    };
    let states: Vec<&str> = lines
        .next()
        .ok_or_else(|| not_it("no `Reading: Writing: Waiting:` line"))?
        .split_whitespace()
        .collect();
    let [
        "Reading:",
        reading,
        "Writing:",
        writing,
        "Waiting:",
        waiting,
    ] = states[..]
    else {
        return Err(not_it(
            "the last line is not `Reading: N Writing: N Waiting: N`",
        ));
    };
    Ok(StubStatus {
        active,
        accepts: number(accepts, "accepts")?,
        handled: number(handled, "handled")?,
        requests: number(requests, "requests")?,
        reading: number(reading, "Reading")?,
        writing: number(writing, "Writing")?,
        waiting: number(waiting, "Waiting")?,
    })
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("`{what}` is `{}`, not a number", text.trim()))
}

/// Reads the page at `url` (a plain `http://` URL on loopback or a private network).
pub fn fetch(agent: &ureq::Agent, url: &str) -> Result<StubStatus, SourceError> {
    let failed =
        |e: String| SourceError::new(format!("cannot read nginx stub_status at {url}: {e}"));
    let mut response = agent.get(url).call().map_err(|e| {
        let fix = match &e {
            ureq::Error::StatusCode(404) => FIX,
            ureq::Error::StatusCode(403) => {
                "allow ballast's address in the stub_status location (`allow 127.0.0.1;`)"
            }
            _ => "check that nginx runs and listens there, or fix the URL",
        };
        failed(e.to_string()).with_fix(fix)
    })?;
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| failed(e.to_string()).with_fix(FIX))?;
    parse(&text).map_err(|e| failed(e).with_fix(FIX))
}

/// An agent for the page: a short global timeout, so a hung nginx cannot stall a round.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(true)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_page_parses() {
        let page = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630940 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";
        let s = parse(page).unwrap();
        assert_eq!(
            s,
            StubStatus {
                active: 291,
                accepts: 16630948,
                handled: 16630940,
                requests: 31070465,
                reading: 6,
                writing: 179,
                waiting: 106
            }
        );
    }

    #[test]
    fn other_pages_are_errors() {
        for page in [
            "",
            "<html>hello</html>",
            "Active connections: x\n",
            "Active connections: 1\nserver accepts handled requests\n 1 2\nReading: 0 Writing: 1 Waiting: 0\n",
            "Active connections: 1\nserver accepts handled requests\n 1 2 3\nReading: 0 Writing: 1\n",
        ] {
            assert!(parse(page).is_err(), "{page}");
        }
    }
}
