//! `ballast serve` refuses an address another process listens on (issue #12, item 4): a
//! second `serve` on the same address, a plain listener, or another program's SO_REUSEPORT
//! socket. The error names the address and the first process keeps serving alone.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::PeerGroup;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The status of `GET path` on a fresh connection (0 when the exchange failed).
fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let attempt = || -> std::io::Result<u16> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        Ok(text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    };
    attempt().unwrap_or(0)
}

/// A configuration with an admin API and one listener, in its own directory.
fn config(dir: &Path, admin: SocketAddr, listener: SocketAddr) -> PathBuf {
    let file = dir.join("ballast.toml");
    std::fs::write(
        &file,
        format!(
            "[admin]\naddress = \"{admin}\"\n\n[listeners.web]\naddress = \"{listener}\"\npool = \"app\"\n\n\
             [pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"127.0.0.1:9\"\n"
        ),
    )
    .unwrap();
    file
}

fn serve_command(file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    command
        .args(["serve", "--threads", "1", "-c"])
        .arg(file)
        .env("RUST_LOG", "warn");
    command
}

/// Runs a `serve` that is expected to exit at once; its status and stderr (killed after 10 s).
fn serve_expecting_exit(file: &Path) -> (Option<ExitStatus>, String) {
    let dir = file.parent().unwrap();
    let err_path = dir.join("serve.err");
    let mut child = serve_command(file)
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&err_path).unwrap()))
        .spawn()
        .expect("start ballast serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        std::fs::read_to_string(err_path).unwrap_or_default(),
    )
}

#[test]
fn a_second_serve_on_the_same_address_fails_naming_it() {
    let first_dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let first_file = config(first_dir.path(), admin, listener);
    let _first = PeerGroup::spawn(serve_command(&first_file));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_status(admin, "/healthz") != 200 {
        assert!(Instant::now() < deadline, "the first serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The same listener address (and a fresh admin address, so only the listener collides).
    let second_dir = tempfile::tempdir().unwrap();
    let other_admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let second_file = config(second_dir.path(), other_admin, listener);
    let (status, stderr) = serve_expecting_exit(&second_file);
    let status = status.expect("the second serve exits instead of sharing the address");
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains(&listener.to_string()), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(
        get_status(other_admin, "/healthz"),
        0,
        "nothing left running"
    );

    // The same admin address.
    let third_dir = tempfile::tempdir().unwrap();
    let other_listener: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let third_file = config(third_dir.path(), admin, other_listener);
    let (status, stderr) = serve_expecting_exit(&third_file);
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(stderr.contains(&admin.to_string()), "{stderr}");

    // The first still answers every connection on the shared address.
    for _ in 0..20 {
        assert_eq!(get_status(admin, "/healthz"), 200);
    }
}

#[test]
fn an_address_held_by_a_plain_listener_or_another_programs_reuseport_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();

    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = plain.local_addr().unwrap();
    let (status, stderr) = serve_expecting_exit(&config(dir.path(), admin, held));
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(stderr.contains(&held.to_string()), "{stderr}");
    drop(plain);

    // Another program that binds with SO_REUSEPORT itself (as nginx's `reuseport` does).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let sharing = socket.listen(16).unwrap();
    let held = sharing.local_addr().unwrap();
    let (status, stderr) = serve_expecting_exit(&config(dir.path(), admin, held));
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve joined another program's SO_REUSEPORT socket: {stderr}"
    );
    assert!(stderr.contains(&held.to_string()), "{stderr}");
    assert!(stderr.contains("another process"), "{stderr}");
}
