//! What the foreign-format fuzz targets share: import, check, render, simulate.

use std::time::Duration;

use ballast_core::SourceFile;
use ballast_core::traffic::Traffic;
use ballast_import::{Format, Options, import_source};

pub fn exercise(data: &[u8], format: Format, name: &str) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let options = Options {
        format: Some(format),
        ..Options::default()
    };
    // A directory that does not exist: `include` globs match nothing instead of reading
    // whatever lies around the fuzzer.
    let path = format!("/nonexistent-ballast-fuzz/{name}");
    match import_source(SourceFile::new(path, text), &options) {
        Ok(imported) => {
            for f in ballast_check::check_imported(&imported) {
                let _ = f.to_diagnostic().render(Some(&imported.loaded.source));
            }
            for n in &imported.notes {
                let _ = n.render(Some(&imported.loaded.source));
            }
            let mut traffic = Traffic::default();
            traffic.duration.0 = Duration::from_millis(20);
            traffic.clients.count = 7;
            for (pool_name, pool) in &imported.loaded.config.pools {
                if pool.servers.len() <= 64 {
                    let _ = ballast_sim::Simulation::new(pool_name, pool, &traffic).run(None, None);
                }
            }
        }
        Err(e) => {
            let _ = e.render();
        }
    }
}
