//! Saturation: servers, backends, frontends, the process and nginx's workers against their
//! connection limits, and queues.

use super::RuleSpec;

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[];
