//! ballast-guard: watching running load balancers.
//!
//! Data flows one way: source → sample → detectors → alerts → sinks. Samples are plain data in
//! `ballast-core::sample`, so `serve` builds them from its own counters and this crate never
//! depends on the proxy. Detectors (`detect`) are pure functions over windows of samples,
//! tested with synthetic series on a virtual clock. Sources (HAProxy's stats socket, nginx's
//! access log, ballast's admin API), the alert lifecycle and the sinks come next.
#![forbid(unsafe_code)]

pub mod detect;
