//! ballast-loadtest: load on a load balancer with every response attributed to the backend that
//! answered it, so a run says not only "p99 was 40 ms" but "app-3 took 61% of the load and its
//! p99 was 400 ms".
//!
//! The plan ([`plan`]) and the figures ([`tally`], [`report`]) are pure; [`run`] is the thin
//! I/O layer that sends the requests (tokio, a small HTTP/1.1 client, [`h1`], and an HTTP/2
//! one, [`h2`], over the connections [`connect`] opens, TLS from [`tls`]). Arrival gaps come
//! from the simulator's traffic model, so `simulate` and `loadtest` draw the same traffic.
#![forbid(unsafe_code)]

pub mod capacity;
pub mod connect;
pub mod counters;
pub mod h1;
pub mod h2;
pub mod plan;
pub mod predict;
pub mod replay;
pub mod report;
pub mod requests;
pub mod run;
pub mod tally;
pub mod tls;
pub mod workers;

pub use plan::{Load, Plan, Protocol, Stop, Target, TlsChecks, Transport};
pub use report::Report;
