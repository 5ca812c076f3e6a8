//! nginx open source as a source: its access log (tailed through rotation and truncation),
//! `stub_status` and error log, with weights and expected shares from its configuration.
