//! A real `ballast serve` for the end-to-end tests: started on a configuration file the test
//! wrote in its tempdir, in a process group of its own, its output kept in files beside the
//! configuration, ready when its admin API answers `/healthz`; stopped as a group on drop.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::PeerGroup;
use super::http::{get, post_with_token};

/// How long `ballast serve` may take to answer `/healthz` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `ballast serve`.
pub struct ServeProcess {
    /// Its admin API's address.
    pub admin: SocketAddr,
    /// Its configuration file.
    pub file: PathBuf,
    /// Where `serve.out` and `serve.err` are written.
    dir: PathBuf,
    peer: PeerGroup,
}

impl ServeProcess {
    /// Writes `text` to `dir/ballast.toml` and starts `ballast serve ARGS -c FILE` with
    /// `RUST_LOG=warn`; waits until `admin` answers `/healthz` (failing the test with serve's
    /// stderr otherwise).
    pub fn start(dir: &Path, text: &str, admin: SocketAddr, args: &[&str]) -> ServeProcess {
        ServeProcess::start_under(dir, text, admin, args, &[])
    }

    /// [`ServeProcess::start`] run through `wrapper` (a command that execs the rest, such as
    /// `prlimit --nofile=512:512 --`), so the process id is still serve's.
    pub fn start_under(
        dir: &Path,
        text: &str,
        admin: SocketAddr,
        args: &[&str],
        wrapper: &[&str],
    ) -> ServeProcess {
        let file = dir.join("ballast.toml");
        std::fs::write(&file, text).expect("write ballast.toml");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(env!("CARGO_BIN_EXE_ballast"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ballast")),
        };
        command
            .arg("serve")
            .args(args)
            .arg("-c")
            .arg(&file)
            .env("RUST_LOG", "warn");
        let peer = PeerGroup::spawn_with_output(
            command,
            Stdio::from(File::create(dir.join("serve.out")).expect("create serve.out")),
            Stdio::from(File::create(dir.join("serve.err")).expect("create serve.err")),
        );
        let serve = ServeProcess {
            admin,
            file,
            dir: dir.to_path_buf(),
            peer,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while get(admin, "/healthz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "ballast serve did not start: {}",
                serve.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    /// Replaces the configuration file (not reloaded).
    pub fn write(&self, text: &str) {
        std::fs::write(&self.file, text).expect("rewrite ballast.toml");
    }

    /// What it wrote to `serve.out` or `serve.err` so far.
    pub fn output(&self, name: &str) -> String {
        super::read_or_empty(&self.dir.join(name))
    }

    pub fn stderr(&self) -> String {
        self.output("serve.err")
    }

    /// `POST /reload` with the admin token: the status and the answer.
    pub fn reload_over_http(&self, token: &str) -> (u16, String) {
        post_with_token(self.admin, "/reload", token)
    }

    /// Sends SIGHUP (a reload from the file).
    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.peer.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "kill -HUP ballast serve");
    }

    /// The configuration version `/status` reports (empty when it does not answer).
    pub fn version(&self) -> String {
        let (_, body) = get(self.admin, "/status");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["version"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// `[[pools.POOL.servers]]` entries named `POOL-1`, `POOL-2`, … at `addresses` with `weights`,
/// each followed by `extra` (more keys of the server, or nothing).
pub fn server_entries(
    pool: &str,
    addresses: &[SocketAddr],
    weights: &[u32],
    extra: &str,
) -> String {
    addresses
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (address, w))| {
            format!(
                "[[pools.{pool}.servers]]\nname = \"{pool}-{}\"\naddress = \"{address}\"\nweight = {w}\n{extra}\n",
                i + 1
            )
        })
        .collect()
}
