//! Fuzzes the configuration path end to end: bytes → UTF-8 check → TOML with spans →
//! validation → every rule → rendered diagnostics. Any panic is a bug.
#![no_main]

use ballast_core::{SourceFile, load_source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match load_source(SourceFile::new("fuzz.toml", text)) {
        Ok(loaded) => {
            for finding in ballast_check::check(&loaded) {
                let _ = finding.to_diagnostic().render(Some(&loaded.source));
            }
        }
        Err(e) => {
            let _ = e.render();
        }
    }
});
