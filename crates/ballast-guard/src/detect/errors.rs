//! Errors and latency: 5xx ratios per pool and server, servers that stand out from their pool,
//! all servers down, flapping.

use super::RuleSpec;

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[];
