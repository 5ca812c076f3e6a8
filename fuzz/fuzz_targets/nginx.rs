//! Fuzzes the nginx path end to end: bytes → nginx parser (includes resolved in a directory
//! that does not exist) → model → catalogue rules → rendered findings → a few simulated
//! requests through every emulated pool. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::exercise(data, ballast_import::Format::Nginx, "fuzz.conf");
});
