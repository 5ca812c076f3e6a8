//! A webhook carrying the JSON Alertmanager's webhook receiver sends (version "4"), so any
//! receiver built for Alertmanager works: alerts grouped by pool ([`Alert::group_key`]), one
//! notification per group when its set of alerts or their states change and again every
//! repeat interval while any fires; a resolved alert is told once.
//!
//! Plain `http://` only, like the Alertmanager sink (see there for https).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::alertmanager::{
    DEFAULT_TIMEOUT, FailureReport, alertmanager_labels, check_url, duration_ms, http_agent,
    post_json,
};
use super::{Sink, SinkError};
use crate::alert::{Alert, AlertState, rfc3339};

/// Alertmanager's default `repeat_interval`.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// What Alertmanager writes as the `endsAt` of an alert still firing (Go's zero time).
const FIRING_ENDS_AT: &str = "0001-01-01T00:00:00Z";

/// Posts Alertmanager's webhook JSON to a URL.
pub struct WebhookSink {
    url: String,
    agent: ureq::Agent,
    receiver: String,
    external_url: String,
    generator_url: String,
    repeat_interval_ms: u64,
    max_alerts: usize,
    groups: BTreeMap<String, GroupState>,
    failure: FailureReport,
}

/// What a group has been told, and what it still has to be told.
#[derive(Debug, Default)]
struct GroupState {
    /// Alerts resolved and not yet told, by fingerprint.
    resolved: BTreeMap<String, Alert>,
    /// The last notification sent: each alert's fingerprint and status, and when.
    told: Option<(BTreeMap<String, &'static str>, u64)>,
}

/// One group's notification due this round.
#[derive(Debug)]
struct Due {
    group: String,
    signature: BTreeMap<String, &'static str>,
    any_firing: bool,
    payload: WebhookPayload,
}

impl WebhookSink {
    /// A sink POSTing to `url` (any `http://` URL).
    pub fn new(url: &str) -> Result<WebhookSink, SinkError> {
        check_url(&format!("webhook {url}"), url)?;
        Ok(WebhookSink {
            url: url.to_string(),
            agent: http_agent(DEFAULT_TIMEOUT),
            receiver: "ballast".to_string(),
            external_url: String::new(),
            generator_url: String::new(),
            repeat_interval_ms: duration_ms(DEFAULT_REPEAT_INTERVAL),
            max_alerts: 0,
            groups: BTreeMap::new(),
            failure: FailureReport::default(),
        })
    }

    /// How often a group with firing alerts is told again when nothing changed.
    pub fn with_repeat_interval(mut self, interval: Duration) -> WebhookSink {
        self.repeat_interval_ms = duration_ms(interval).max(1);
        self
    }

    /// The `receiver` named in the payload (Alertmanager puts its receiver's name there).
    pub fn with_receiver(mut self, receiver: &str) -> WebhookSink {
        self.receiver = receiver.to_string();
        self
    }

    /// The `externalURL` (Alertmanager's own address there; here, the watcher's dashboard).
    pub fn with_external_url(mut self, url: &str) -> WebhookSink {
        self.external_url = url.to_string();
        self
    }

    /// Each alert's `generatorURL`.
    pub fn with_generator_url(mut self, url: &str) -> WebhookSink {
        self.generator_url = url.to_string();
        self
    }

    /// At most this many alerts per notification, the rest counted in `truncatedAlerts`, as
    /// Alertmanager's `max_alerts`; 0 (the default) sends all.
    pub fn with_max_alerts(mut self, max_alerts: usize) -> WebhookSink {
        self.max_alerts = max_alerts;
        self
    }

    /// The error of the failing destination, while it fails.
    pub fn last_error(&self) -> Option<&str> {
        self.failure.last_error()
    }

    /// Takes this round's alerts into the groups, and returns the notifications due.
    fn due(&mut self, now_ms: u64, alerts: &[Arc<Alert>]) -> Vec<Due> {
        let mut firing: BTreeMap<String, BTreeMap<String, &Alert>> = BTreeMap::new();
        for alert in alerts.iter().map(|a| &**a) {
            let group = alert.group_key();
            let fingerprint = crate::alert::fingerprint(&alert.labels);
            match alert.state {
                AlertState::Firing => {
                    firing.entry(group).or_default().insert(fingerprint, alert);
                }
                AlertState::Resolved => {
                    self.groups
                        .entry(group)
                        .or_default()
                        .resolved
                        .insert(fingerprint, alert.clone());
                }
                AlertState::Pending => {}
            }
        }
        for group in firing.keys() {
            self.groups.entry(group.clone()).or_default();
        }

        // A group no alert is in any more (its alerts inhibited, or gone without resolving)
        // is dropped without a word, as Alertmanager does not notify of inhibited alerts.
        self.groups
            .retain(|group, state| firing.contains_key(group) || !state.resolved.is_empty());
        let mut planned = Vec::new();
        for (group, state) in &mut self.groups {
            let firing_here = firing.remove(group).unwrap_or_default();
            // Firing again supersedes a resolve not yet told.
            state
                .resolved
                .retain(|fingerprint, _| !firing_here.contains_key(fingerprint));
            let mut listed: Vec<(String, Alert, &'static str)> = firing_here
                .iter()
                .map(|(f, a)| (f.clone(), (*a).clone(), "firing"))
                .collect();
            listed.extend(
                state
                    .resolved
                    .iter()
                    .map(|(f, a)| (f.clone(), a.clone(), "resolved")),
            );
            if listed.is_empty() {
                continue;
            }
            let signature: BTreeMap<String, &'static str> = listed
                .iter()
                .map(|(f, _, status)| (f.clone(), *status))
                .collect();
            let any_firing = !firing_here.is_empty();
            let is_due = match &state.told {
                None => true,
                Some((told, at_ms)) => {
                    *told != signature
                        || (any_firing && now_ms.saturating_sub(*at_ms) >= self.repeat_interval_ms)
                }
            };
            if is_due {
                planned.push((group.clone(), signature, any_firing, listed));
            }
        }
        planned
            .into_iter()
            .map(|(group, signature, any_firing, listed)| Due {
                payload: self.payload(&listed, any_firing),
                group,
                signature,
                any_firing,
            })
            .collect()
    }

    fn payload(
        &self,
        listed: &[(String, Alert, &'static str)],
        any_firing: bool,
    ) -> WebhookPayload {
        let labels: Vec<BTreeMap<String, String>> = listed
            .iter()
            .map(|(_, a, _)| alertmanager_labels(&a.labels))
            .collect();
        let annotations: Vec<BTreeMap<String, String>> = listed
            .iter()
            .map(|(_, a, _)| alertmanager_labels(&a.annotations))
            .collect();
        let group_labels: BTreeMap<String, String> = labels
            .first()
            .map(|first| {
                first
                    .iter()
                    .filter(|(k, _)| matches!(k.as_str(), "instance" | "pool"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let keep = if self.max_alerts == 0 {
            listed.len()
        } else {
            self.max_alerts.min(listed.len())
        };
        let alerts = listed
            .iter()
            .zip(labels.iter().zip(&annotations))
            .take(keep)
            .map(|((fingerprint, alert, status), (labels, annotations))| {
                let starts_at_ms = alert.starts_at_ms.unwrap_or(alert.active_since_ms);
                WebhookAlert {
                    status,
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                    starts_at: rfc3339(starts_at_ms),
                    ends_at: match (*status, alert.ends_at_ms) {
                        ("resolved", Some(ends)) => rfc3339(ends.max(starts_at_ms)),
                        ("resolved", None) => rfc3339(starts_at_ms),
                        _ => FIRING_ENDS_AT.to_string(),
                    },
                    generator_url: self.generator_url.clone(),
                    fingerprint: fingerprint.to_string(),
                }
            })
            .collect();
        WebhookPayload {
            version: "4",
            group_key: group_key(&group_labels),
            truncated_alerts: listed.len() - keep,
            status: if any_firing { "firing" } else { "resolved" },
            receiver: self.receiver.clone(),
            group_labels,
            common_labels: common(&labels),
            common_annotations: common(&annotations),
            external_url: self.external_url.clone(),
            alerts,
        }
    }

    fn told(&mut self, now_ms: u64, due: Due) {
        let Some(state) = self.groups.get_mut(&due.group) else {
            return;
        };
        state.resolved.clear();
        if due.any_firing {
            state.told = Some((due.signature, now_ms));
        } else {
            self.groups.remove(&due.group);
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> String {
        format!("webhook {}", self.url)
    }

    /// POSTs one notification per group that changed or is due for repeating. A failed POST
    /// leaves that group and the rest due for the next round; the failure is returned on the
    /// first failing round only (see [`Self::last_error`]).
    fn deliver(&mut self, now_ms: u64, alerts: &[Arc<Alert>]) -> Result<(), SinkError> {
        let mut refused = None;
        for due in self.due(now_ms, alerts) {
            let body = serde_json::to_string(&due.payload).map_err(|e| SinkError {
                sink: self.name(),
                what: format!("cannot encode the notification as JSON: {e}"),
            })?;
            match post_json(&self.agent, &self.url, &body) {
                Ok(()) => self.told(now_ms, due),
                Err(failure) => {
                    let what = failure.explain(
                        &self.url,
                        "the webhook",
                        "is the receiver listening at that URL?",
                    );
                    if failure.worth_retrying() {
                        // The other groups would wait as long for the same destination.
                        return self.failure.failed(self.name(), what);
                    }
                    self.told(now_ms, due);
                    refused = Some(what);
                }
            }
        }
        match refused {
            Some(what) => self.failure.failed(self.name(), what),
            None => {
                self.failure.succeeded();
                Ok(())
            }
        }
    }
}

/// Alertmanager's group key: the route's matchers (`{}` for the root route), a colon, and the
/// group's labels as Go prints a label set (`{instance="lb1", pool="app"}`).
fn group_key(group_labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str())))
        .collect();
    format!("{{}}:{{{}}}", labels.join(", "))
}

/// The labels every one of `sets` has, with the same value.
fn common(sets: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = sets.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|s| s.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Alertmanager's webhook body, version 4.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookPayload {
    version: &'static str,
    group_key: String,
    truncated_alerts: usize,
    status: &'static str,
    receiver: String,
    group_labels: BTreeMap<String, String>,
    common_labels: BTreeMap<String, String>,
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    external_url: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: &'static str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, pool: &str, server: &str, state: AlertState) -> Arc<Alert> {
        Arc::new(Alert {
            labels: [
                ("alertname", name),
                ("instance", "lb1"),
                ("pool", pool),
                ("server", server),
                ("severity", "warning"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary".to_string(), format!("{name} on {server}"))].into(),
            state,
            active_since_ms: 1_000,
            starts_at_ms: Some(2_000),
            ends_at_ms: (state == AlertState::Resolved).then_some(9_000),
            inhibited_by: None,
        })
    }

    /// Runs `rounds` through the sink's planning, as if every POST succeeded: for each round,
    /// the groups told and their statuses.
    fn plan(
        sink: &mut WebhookSink,
        rounds: &[(u64, Vec<Arc<Alert>>)],
    ) -> Vec<Vec<(String, String)>> {
        rounds
            .iter()
            .map(|(now, alerts)| {
                let due = sink.due(*now, alerts);
                let told = due
                    .iter()
                    .map(|d| (d.group.clone(), d.payload.status.to_string()))
                    .collect();
                for d in due {
                    sink.told(*now, d);
                }
                told
            })
            .collect()
    }

    #[test]
    fn a_group_is_told_on_change_and_every_repeat_interval_only() {
        let mut sink = WebhookSink::new("http://127.0.0.1:1/hook")
            .unwrap()
            .with_repeat_interval(Duration::from_secs(10));
        let a = alert("Skew", "app", "app-3", AlertState::Firing);
        let b = alert("Saturated", "app", "app-2", AlertState::Firing);
        let group = a.group_key();
        let told = plan(
            &mut sink,
            &[
                (0, vec![a.clone()]),
                (1_000, vec![a.clone()]),
                (2_000, vec![a.clone(), b.clone()]),
                (3_000, vec![a.clone(), b.clone()]),
                (12_000, vec![a.clone(), b.clone()]),
                (13_000, vec![a.clone()]),
            ],
        );
        let firing = vec![(group.clone(), "firing".to_string())];
        assert_eq!(
            told,
            [
                firing.clone(),
                vec![],
                firing.clone(),
                vec![],
                firing.clone(),
                firing.clone()
            ]
        );
    }

    #[test]
    fn a_resolved_alert_is_told_once_and_groups_are_by_pool() {
        let mut sink = WebhookSink::new("http://127.0.0.1:1/hook").unwrap();
        let app = alert("Skew", "app", "app-3", AlertState::Firing);
        let api = alert("Skew", "api", "api-1", AlertState::Firing);
        let resolved = alert("Skew", "app", "app-3", AlertState::Resolved);
        let told = plan(
            &mut sink,
            &[
                (0, vec![app.clone(), api.clone()]),
                (1_000, vec![resolved, api.clone()]),
                (2_000, vec![api.clone()]),
            ],
        );
        assert_eq!(told[0].len(), 2, "{told:?}");
        assert_eq!(
            told[1],
            [(app.group_key(), "resolved".to_string())],
            "{told:?}"
        );
        assert!(told[2].is_empty(), "{told:?}");
    }

    #[test]
    fn the_payload_has_common_labels_group_labels_and_truncation() {
        let mut sink = WebhookSink::new("http://127.0.0.1:1/hook")
            .unwrap()
            .with_max_alerts(1);
        let a = alert("Skew", "app", "app-3", AlertState::Firing);
        let b = alert("Saturated", "app", "app-2", AlertState::Firing);
        let due = sink.due(0, &[a.clone(), b]);
        let payload = &due[0].payload;
        assert_eq!(payload.truncated_alerts, 1);
        assert_eq!(payload.group_key, r#"{}:{instance="lb1", pool="app"}"#);
        assert_eq!(payload.alerts.len(), 1);
        assert_eq!(payload.group_labels.len(), 2);
        assert_eq!(payload.common_labels.get("pool").unwrap(), "app");
        assert!(!payload.common_labels.contains_key("server"));
        assert!(payload.common_annotations.is_empty());
        assert_eq!(payload.alerts[0].ends_at, FIRING_ENDS_AT);
    }

    #[test]
    fn the_fingerprint_is_prometheus_labelset_fingerprint() {
        // Prometheus' model: LabelSet{}.Fingerprint() is the FNV-1a offset basis, and an empty
        // value is no label.
        assert_eq!(
            crate::alert::fingerprint(&BTreeMap::new()),
            "cbf29ce484222325"
        );
        let with_empty: BTreeMap<String, String> = [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), String::new()),
        ]
        .into();
        let without: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert_eq!(
            crate::alert::fingerprint(&with_empty),
            crate::alert::fingerprint(&without)
        );
    }
}
