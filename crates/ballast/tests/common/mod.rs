//! What the integration tests against real HAProxy and nginx share.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

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

/// A peer started in a process group of its own, stopped as a whole group on drop: an nginx
/// master killed alone orphans its workers, which keep listening.
pub struct PeerGroup(std::process::Child);

impl PeerGroup {
    pub fn spawn(mut command: Command) -> PeerGroup {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the peer");
        PeerGroup(child)
    }

    /// Like [`PeerGroup::spawn`], its output kept (in files, for a test to read).
    pub fn spawn_with_output(mut command: Command, stdout: Stdio, stderr: Stdio) -> PeerGroup {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the peer");
        PeerGroup(child)
    }

    /// The group leader's process id (to signal it, as with SIGHUP for a reload).
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for PeerGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Whatever is left of the group (workers still finishing), and the master if it hung.
        signal("-KILL");
        let _ = self.0.wait();
    }
}
