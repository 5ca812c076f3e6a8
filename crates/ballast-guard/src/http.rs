//! The guard's plain HTTP client (for the admin API, stats pages, `stub_status`, exporters and
//! sinks): one short-timeout agent, errors as sentences.

use std::time::Duration;

/// A GET's status and body, or why there was none.
pub fn get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let agent = agent(timeout);
    let mut response = agent.get(url).call().map_err(|e| describe(url, &e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| describe(url, &e))?;
    Ok((status, body))
}

/// A POST of a JSON body; its status and response body, or why there was none.
pub fn post_json(url: &str, body: &str, timeout: Duration) -> Result<(u16, String), String> {
    let agent = agent(timeout);
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| describe(url, &e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| describe(url, &e))?;
    Ok((status, body))
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn describe(url: &str, e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("{url}: {io}"),
        other => format!("{url}: {other}"),
    }
}
