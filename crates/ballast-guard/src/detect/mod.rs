//! Detectors: pure judgements over a window of samples of one load balancer. Each returns
//! what it found with the figures behind it; deciding to alert (for how long, how loud) is
//! the alert lifecycle's job, not theirs.

pub mod distribution;
