//! A real HAProxy for the end-to-end tests: its configuration checked with `haproxy -c` and
//! swapped in by a rename (a watcher never reads half a file), started in the foreground in a
//! process group of its own, and talked to through its admin stats socket.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ballast_guard::source::haproxy::transport::{self, SocketAddress};

use super::PeerGroup;

/// Writes `text` aside, checks it with `haproxy -c` (failing the test when the test's own
/// configuration is invalid), then renames it over `path`.
pub fn write_checked(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).expect("write the HAProxy configuration");
    let check = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(&aside)
        .output()
        .expect("run haproxy -c");
    assert!(
        check.status.success(),
        "the test's HAProxy configuration is invalid: {}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::rename(&aside, path).expect("rename the HAProxy configuration into place");
}

/// `haproxy -db -f CONFIG` (`-sf PID` when it replaces a running process: a reload).
pub fn spawn(config: &Path, replacing: Option<u32>) -> PeerGroup {
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(config);
    if let Some(pid) = replacing {
        command.arg("-sf").arg(pid.to_string());
    }
    PeerGroup::spawn(command)
}

/// One runtime API command on the stats socket at `socket`; its answer, `None` when the
/// socket does not answer.
pub fn command(socket: &Path, command: &str) -> Option<String> {
    transport::command(&SocketAddress::Unix(socket.to_path_buf()), command).ok()
}

/// The process id `show info` reports: which process answers the socket.
pub fn pid(socket: &Path) -> Option<String> {
    command(socket, "show info")?
        .lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .map(|p| p.trim().to_string())
}

/// Waits until the stats socket answers `show info`.
pub fn wait_for_socket(socket: &Path, timeout: Duration) {
    super::wait_until("HAProxy's stats socket answers", timeout, || {
        command(socket, "show info").is_some()
    });
}
