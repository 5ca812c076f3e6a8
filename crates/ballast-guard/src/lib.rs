//! ballast-guard: watching running load balancers.
//!
//! Data flows one way: source → sample → detectors → alerts → sinks. Samples are plain data in
//! `ballast-core::sample`, so `serve` builds them from its own counters and this crate never
//! depends on the proxy.
//!
//! - `source`: ballast's admin API, HAProxy's stats, nginx's logs and `stub_status` → samples.
//! - `detect`: pure judgements over a window of samples → findings (distribution, saturation,
//!   errors), tested with synthetic series on a virtual clock.
//! - `alert`: findings → alerts with a lifecycle, deduplication, grouping and inhibition.
//! - `sink`: alerts → Alertmanager, a webhook, the event log, the terminal.
//! - `canary`: after a reload, the decision to revert it (a critical regression it caused).
//! - `rules`: the same signals as Prometheus rules, for a fleet.
//! - `events`: a round's configuration changes, reloads and pool snapshots as event-log events.
//! - `postmortem`: an event log → the draft of the incident review (Markdown or HTML).
//! - `dashboard`: the live page's state (shares, R over time, alerts, timeline) as JSON.
#![forbid(unsafe_code)]

pub mod alert;
pub mod canary;
pub mod change;
pub mod dashboard;
pub mod detect;
pub mod events;
pub mod http;
pub mod postmortem;
pub mod rules;
pub mod runbook;
pub mod sink;
pub mod source;
pub mod verdict;
pub mod watch;
