//! Alertmanager's API: firing alerts POSTed to `/api/v2/alerts` and re-sent while they fire,
//! each carrying an `endsAt` a few resend intervals ahead (as Prometheus does, so the alerts of
//! a watcher that dies resolve by themselves); a resolved alert sent once, with `endsAt` at its
//! resolve time. Also what the webhook sink shares with it: the JSON POST over plain HTTP, the
//! labels as Alertmanager takes them, and reporting a failing destination once.
//!
//! HTTP goes through `ureq` with its default features off, so only `http://` URLs work. An
//! `https://` Alertmanager needs ureq's `rustls` feature enabled in this crate's `Cargo.toml`
//! (`ureq = { version = "3", default-features = false, features = ["rustls"] }`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Sink, SinkError};
use crate::alert::{Alert, AlertState, rfc3339};

/// How often a firing alert is re-sent unless told otherwise (Prometheus' `resend-delay` is 1 m;
/// shorter, so a restarted Alertmanager learns of the alerts sooner).
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(30);

/// A firing alert is valid for this many resend intervals: Prometheus' factor, so that one or
/// two lost POSTs do not resolve an alert that still fires.
const VALID_FOR_RESENDS: u64 = 4;

/// How long one POST may take, unless told otherwise. Delivery runs inside the sampling round,
/// so a destination that does not answer must not hold the round for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolved alerts kept for an unreachable Alertmanager; beyond that the oldest are dropped
/// (Alertmanager would have let them expire by their `endsAt` anyway).
const MAX_RESOLVED_BACKLOG: usize = 1000;

/// Sends alerts to an Alertmanager through its API v2.
pub struct AlertmanagerSink {
    base_url: String,
    alerts_url: String,
    agent: ureq::Agent,
    resend_interval_ms: u64,
    generator_url: Option<String>,
    /// Firing alerts Alertmanager has: fingerprint → (when it began to fire, when last sent).
    sent: HashMap<String, (u64, u64)>,
    /// Resolved alerts not yet delivered, by fingerprint.
    resolved_backlog: BTreeMap<String, Alert>,
    /// The gap between the last two rounds: a firing alert stays valid for a few of these when
    /// rounds are further apart than the resend interval.
    round_gap_ms: u64,
    last_round_ms: Option<u64>,
    failure: FailureReport,
}

impl AlertmanagerSink {
    /// A sink for the Alertmanager at `base_url` (`http://127.0.0.1:9093`, or with a path
    /// prefix when Alertmanager runs with `--web.route-prefix`).
    pub fn new(base_url: &str) -> Result<AlertmanagerSink, SinkError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        check_url(&format!("alertmanager {base_url}"), &base_url)?;
        Ok(AlertmanagerSink {
            alerts_url: format!("{base_url}/api/v2/alerts"),
            base_url,
            agent: http_agent(DEFAULT_TIMEOUT),
            resend_interval_ms: duration_ms(DEFAULT_RESEND_INTERVAL),
            generator_url: None,
            sent: HashMap::new(),
            resolved_backlog: BTreeMap::new(),
            round_gap_ms: 0,
            last_round_ms: None,
            failure: FailureReport::default(),
        })
    }

    /// How often a firing alert is re-sent (at least one round apart: alerts are sent only
    /// when `deliver` is called).
    pub fn with_resend_interval(mut self, interval: Duration) -> AlertmanagerSink {
        self.resend_interval_ms = duration_ms(interval).max(1);
        self
    }

    /// The link Alertmanager shows as the alert's source (`generatorURL`), such as the
    /// dashboard of the watcher; none by default.
    pub fn with_generator_url(mut self, url: &str) -> AlertmanagerSink {
        self.generator_url = Some(url.to_string()).filter(|u| !u.is_empty());
        self
    }

    /// How long one POST may take before it counts as failed.
    pub fn with_timeout(mut self, timeout: Duration) -> AlertmanagerSink {
        self.agent = http_agent(timeout);
        self
    }

    /// The error of the failing destination, while it fails (it is returned by `deliver` only
    /// on the first failing round).
    pub fn last_error(&self) -> Option<&str> {
        self.failure.last_error()
    }

    /// Resolved alerts waiting for Alertmanager to be reachable again.
    pub fn resolved_backlog(&self) -> usize {
        self.resolved_backlog.len()
    }

    /// The alerts due this round, as Alertmanager's API takes them, with the fingerprints of
    /// the firing ones among them (to mark them sent once the POST succeeds).
    fn due(
        &mut self,
        now_ms: u64,
        alerts: &[Arc<Alert>],
    ) -> (Vec<PostableAlert>, Vec<(String, u64)>) {
        let valid_for_ms =
            VALID_FOR_RESENDS.saturating_mul(self.resend_interval_ms.max(self.round_gap_ms));
        let mut firing_now = HashMap::new();
        for alert in alerts.iter().map(|a| &**a) {
            let fingerprint = alert.fingerprint();
            match alert.state {
                AlertState::Firing => {
                    firing_now.insert(fingerprint, alert);
                }
                AlertState::Resolved => {
                    self.sent.remove(&fingerprint);
                    self.resolved_backlog.insert(fingerprint, alert.clone());
                }
                // Alertmanager only knows firing alerts; a pending one is not news yet.
                AlertState::Pending => {}
            }
        }
        // An alert that fires again supersedes its resolved self not yet delivered.
        self.resolved_backlog
            .retain(|fingerprint, _| !firing_now.contains_key(fingerprint));
        while self.resolved_backlog.len() > MAX_RESOLVED_BACKLOG {
            let oldest = self
                .resolved_backlog
                .iter()
                .min_by_key(|(_, a)| a.ends_at_ms.unwrap_or(0))
                .map(|(f, _)| f.clone());
            match oldest {
                Some(fingerprint) => self.resolved_backlog.remove(&fingerprint),
                None => break,
            };
        }
        // One no longer given (inhibited, or gone without resolving) is not re-sent: it expires
        // in Alertmanager by its `endsAt`, and is sent afresh if it comes back.
        self.sent
            .retain(|fingerprint, _| firing_now.contains_key(fingerprint));

        let mut batch = Vec::new();
        let mut firing_sent = Vec::new();
        let mut firing: Vec<_> = firing_now.into_iter().collect();
        firing.sort_by(|a, b| a.0.cmp(&b.0));
        for (fingerprint, alert) in firing {
            let starts_at_ms = alert.starts_at_ms.unwrap_or(alert.active_since_ms);
            let due = match self.sent.get(&fingerprint) {
                Some(&(sent_start, last_sent_ms)) => {
                    sent_start != starts_at_ms
                        || now_ms.saturating_sub(last_sent_ms) >= self.resend_interval_ms
                }
                None => true,
            };
            if due {
                let ends_at_ms = now_ms.saturating_add(valid_for_ms);
                batch.push(PostableAlert::new(
                    alert,
                    starts_at_ms,
                    ends_at_ms,
                    self.generator_url.as_deref(),
                ));
                firing_sent.push((fingerprint, starts_at_ms));
            }
        }
        for alert in self.resolved_backlog.values() {
            let starts_at_ms = alert.starts_at_ms.unwrap_or(alert.active_since_ms);
            let ends_at_ms = alert.ends_at_ms.unwrap_or(now_ms).max(starts_at_ms);
            batch.push(PostableAlert::new(
                alert,
                starts_at_ms,
                ends_at_ms,
                self.generator_url.as_deref(),
            ));
        }
        (batch, firing_sent)
    }

    fn mark_sent(&mut self, now_ms: u64, firing_sent: Vec<(String, u64)>) {
        for (fingerprint, starts_at_ms) in firing_sent {
            self.sent.insert(fingerprint, (starts_at_ms, now_ms));
        }
        self.resolved_backlog.clear();
    }
}

impl Sink for AlertmanagerSink {
    fn name(&self) -> String {
        format!("alertmanager {}", self.base_url)
    }

    /// POSTs the firing alerts that are new or due for re-sending and the resolved ones not
    /// yet delivered, in one request. A failed POST leaves them all due for the next round; the
    /// failure is returned on the first failing round only (see [`Self::last_error`]).
    fn deliver(&mut self, now_ms: u64, alerts: &[Arc<Alert>]) -> Result<(), SinkError> {
        if let Some(last) = self.last_round_ms {
            self.round_gap_ms = now_ms.saturating_sub(last);
        }
        self.last_round_ms = Some(now_ms);
        let (batch, firing_sent) = self.due(now_ms, alerts);
        if batch.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_string(&batch).map_err(|e| SinkError {
            sink: self.name(),
            what: format!("cannot encode the alerts as JSON: {e}"),
        })?;
        match post_json(&self.agent, &self.alerts_url, &body) {
            Ok(()) => {
                self.mark_sent(now_ms, firing_sent);
                self.failure.succeeded();
                Ok(())
            }
            Err(failure) => {
                let what = failure.explain(
                    &self.alerts_url,
                    "Alertmanager",
                    "is Alertmanager running there, and is the URL its --web.listen-address \
                     (plus any --web.route-prefix)?",
                );
                if !failure.worth_retrying() {
                    // Alertmanager read the batch and refused (part of) it: the same batch
                    // would be refused again, so it is not re-sent every round.
                    self.mark_sent(now_ms, firing_sent);
                }
                self.failure.failed(self.name(), what)
            }
        }
    }
}

/// One alert as `POST /api/v2/alerts` takes it.
#[derive(Debug, Serialize)]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<String>,
}

impl PostableAlert {
    fn new(
        alert: &Alert,
        starts_at_ms: u64,
        ends_at_ms: u64,
        generator_url: Option<&str>,
    ) -> PostableAlert {
        PostableAlert {
            labels: alertmanager_labels(&alert.labels),
            annotations: alertmanager_labels(&alert.annotations),
            starts_at: rfc3339(starts_at_ms),
            ends_at: rfc3339(ends_at_ms),
            generator_url: generator_url.map(str::to_string),
        }
    }
}

/// Labels (or annotations) as Alertmanager keeps them: an empty value is the same as no label
/// there (and in Prometheus), so it is left out, and fingerprints agree with Alertmanager's.
pub(crate) fn alertmanager_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An `http://` URL with a host, or an error saying what to write instead.
pub(crate) fn check_url(sink: &str, url: &str) -> Result<(), SinkError> {
    let refuse = |what: String| {
        Err(SinkError {
            sink: sink.to_string(),
            what,
        })
    };
    if let Some(rest) = url.strip_prefix("http://") {
        if rest.is_empty() || rest.starts_with('/') {
            return refuse(format!(
                "`{url}` has no host; write it as http://HOST:PORT, such as http://127.0.0.1:9093"
            ));
        }
        return Ok(());
    }
    if url.starts_with("https://") {
        return refuse(format!(
            "`{url}` is https, and this build sends plain HTTP only; enable ureq's `rustls` \
             feature in ballast-guard, or reach the destination over http:// on a trusted network"
        ));
    }
    refuse(format!(
        "`{url}` is not an http:// URL; write it as http://HOST:PORT, such as http://127.0.0.1:9093"
    ))
}

pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // Statuses are judged here, with the destination's body in the message.
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

/// Why a POST failed.
#[derive(Debug)]
pub(crate) enum PostFailure {
    /// No answer: refused, unreachable, timed out, or cut off.
    Transport(String),
    /// An answer other than 2xx.
    Status { status: u16, body: String },
}

impl PostFailure {
    /// Whether the same request may succeed later: a 4xx other than 408 and 429 says the
    /// request itself is wrong.
    pub(crate) fn worth_retrying(&self) -> bool {
        match self {
            PostFailure::Transport(_) => true,
            PostFailure::Status { status, .. } => {
                !(400..500).contains(status) || matches!(status, 408 | 429)
            }
        }
    }

    /// The failure in words: what failed, and what to check.
    pub(crate) fn explain(&self, url: &str, peer: &str, check: &str) -> String {
        let then = if self.worth_retrying() {
            "the alerts are kept and sent again next round"
        } else {
            "the alerts it refused are not sent again until they change"
        };
        match self {
            PostFailure::Transport(e) => {
                format!("POST {url} failed: {e}; {check} ({then})")
            }
            PostFailure::Status { status, body } if body.is_empty() => {
                format!("POST {url}: {peer} answered {status} ({then})")
            }
            PostFailure::Status { status, body } => {
                format!("POST {url}: {peer} answered {status}: {body} ({then})")
            }
        }
    }
}

/// POSTs a JSON body; Ok on a 2xx answer.
pub(crate) fn post_json(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), PostFailure> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| PostFailure::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    // Read (a bounded part of) the answer: it explains a refusal, and a read body lets the
    // connection be reused.
    let text = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(PostFailure::Status {
            status,
            body: text.trim().chars().take(500).collect(),
        })
    }
}

/// A destination's failure, reported once per outage: the first failing round returns the
/// error, later ones keep it for [`FailureReport::last_error`] until a delivery succeeds.
#[derive(Debug, Default)]
pub(crate) struct FailureReport {
    current: Option<String>,
}

impl FailureReport {
    pub(crate) fn failed(&mut self, sink: String, what: String) -> Result<(), SinkError> {
        let first = self.current.is_none();
        self.current = Some(what.clone());
        if first {
            Err(SinkError { sink, what })
        } else {
            Ok(())
        }
    }

    pub(crate) fn succeeded(&mut self) {
        self.current = None;
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.current.as_deref()
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, state: AlertState, starts: u64, ends: Option<u64>) -> Arc<Alert> {
        Arc::new(Alert {
            labels: [
                ("alertname", name),
                ("pool", "app"),
                ("server", ""),
                ("severity", "critical"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary".to_string(), "s".to_string())].into(),
            state,
            active_since_ms: starts.saturating_sub(1000),
            starts_at_ms: Some(starts),
            ends_at_ms: ends,
            inhibited_by: None,
        })
    }

    #[test]
    fn firing_alerts_are_due_when_new_and_after_the_resend_interval_only() {
        let mut sink = AlertmanagerSink::new("http://127.0.0.1:1")
            .unwrap()
            .with_resend_interval(Duration::from_secs(10));
        let firing = [alert("A", AlertState::Firing, 5_000, None)];
        let mut sent_at = Vec::new();
        for now in (10_000..40_000).step_by(1000) {
            let (batch, firing_sent) = sink.due(now, &firing);
            if !batch.is_empty() {
                sent_at.push(now);
                sink.mark_sent(now, firing_sent);
            }
        }
        assert_eq!(sent_at, [10_000, 20_000, 30_000]);
    }

    #[test]
    fn a_firing_alert_is_valid_for_four_resend_intervals_and_a_resolved_one_ends_when_it_resolved()
    {
        let mut sink = AlertmanagerSink::new("http://127.0.0.1:1")
            .unwrap()
            .with_resend_interval(Duration::from_secs(10));
        let (batch, _) = sink.due(100_000, &[alert("A", AlertState::Firing, 5_000, None)]);
        assert_eq!(batch[0].ends_at, rfc3339(140_000));
        assert_eq!(batch[0].starts_at, rfc3339(5_000));
        // Empty labels are not sent.
        assert!(!batch[0].labels.contains_key("server"));
        let (batch, _) = sink.due(
            101_000,
            &[alert("A", AlertState::Resolved, 5_000, Some(100_500))],
        );
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].ends_at, rfc3339(100_500));
    }

    #[test]
    fn urls_other_than_plain_http_are_refused_with_what_to_write() {
        let https = AlertmanagerSink::new("https://am:9093").err().unwrap();
        assert!(https.what.contains("rustls"), "{https}");
        let bare = AlertmanagerSink::new("127.0.0.1:9093").err().unwrap();
        assert!(bare.what.contains("http://HOST:PORT"), "{bare}");
        assert!(AlertmanagerSink::new("http://").is_err());
        assert_eq!(
            AlertmanagerSink::new("http://127.0.0.1:9093/")
                .unwrap()
                .name(),
            "alertmanager http://127.0.0.1:9093"
        );
    }

    #[test]
    fn a_refusal_is_not_retried_and_an_unreachable_destination_is() {
        assert!(PostFailure::Transport("refused".into()).worth_retrying());
        for (status, retry) in [(400, false), (404, false), (429, true), (500, true)] {
            let failure = PostFailure::Status {
                status,
                body: String::new(),
            };
            assert_eq!(failure.worth_retrying(), retry, "{status}");
        }
    }
}
