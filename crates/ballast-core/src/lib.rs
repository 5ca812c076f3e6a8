//! ballast-core: the configuration model, its loading and validation, and the balancing
//! algorithms, all pure.
//!
//! This crate is shared by the checker, the simulator and (later) the proxy, so that what the
//! simulator predicts is what the proxy does. It depends on no async runtime, no sockets, no
//! wall clock and no global random number generator: time and randomness are passed in.
#![forbid(unsafe_code)]

pub mod balance;
pub mod config;
pub mod distribution;
pub mod emulation;
pub mod event;
pub mod health;
pub mod load;
pub mod retry;
pub mod sample;
pub mod source;
pub mod traffic;

pub use config::Config;
pub use load::{LoadError, Loaded, load_file, load_source};
pub use source::{Diagnostic, Severity, SourceFile};
