//! ballast-sim: a deterministic discrete-event simulation of one pool, driven by a traffic
//! model or a recorded request log, that makes every choice through `ballast-core`'s
//! [`Balancer`](ballast_core::balance::Balancer): the same code the proxy runs.
//!
//! Time is virtual (nanoseconds from 0). Randomness comes from two seeded streams, one for
//! traffic (arrivals, clients, keys, service times) and one for the balancer, so the same
//! seed gives the same run, and the balancer sees the same random draws it would see live.
//! Pure: trace output and progress are callbacks; the binary does the I/O.
#![forbid(unsafe_code)]

pub mod assert;
mod engine;
pub mod model;
pub mod replay;
pub mod report;

pub use engine::{Outcome, Simulation, TraceRecord};
pub use replay::ReplayRequest;
pub use report::{Report, ServerReport};
