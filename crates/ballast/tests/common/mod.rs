//! What the integration tests against real HAProxy and nginx share.

use std::process::{Command, Stdio};

/// Whether `binary` (haproxy, nginx) can run. A missing peer fails the test unless
/// BALLAST_SKIP_PEERS is set, so CI never skips in silence.
pub fn peer_available(binary: &str) -> bool {
    let found = Command::new(binary)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("BALLAST_SKIP_PEERS").is_some(),
            "{binary} is not installed: run ./scripts/test.sh, which installs it (or set BALLAST_SKIP_PEERS=1 to skip knowingly)"
        );
    }
    found
}
