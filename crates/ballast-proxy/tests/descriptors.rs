//! Running out of file descriptors (issue #12, item 5), in a child process under
//! `ulimit -n 256`: idle admin connections cannot starve the data plane (they are capped and
//! the admin accept loop backs off instead of spinning), and when the data plane itself runs
//! out below its caps, new clients get 503 from a reserve of spare descriptors instead of
//! waiting unanswered.
//!
//! The child is this test binary again, running [`descriptor_child`] (ignored in ordinary runs)
//! under `sh -c 'ulimit -n 256; exec …'`; it stops when the test closes its stdin, and is
//! killed by its guard otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ballast_proxy::{Options, Proxy};
use common::{ConfigFile, backend, servers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHILD_CONFIG: &str = "BALLAST_DESCRIPTOR_CHILD_CONFIG";
const DESCRIPTOR_LIMIT: u32 = 256;

/// The body of the child process; does nothing unless started by the tests below.
#[test]
#[ignore = "the child process of the descriptor tests, which start it themselves"]
fn descriptor_child() {
    let Ok(path) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let proxy = Proxy::start(Path::new(&path), Options { seed: Some(7) })
            .await
            .expect("the child's proxy starts");
        let admin = proxy
            .admin_addr()
            .map_or("-".to_string(), |a| a.to_string());
        println!("READY {} {admin}", proxy.listener_addr("web").unwrap());
        // Serve until the parent closes stdin (or is gone).
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
    });
}

/// The child proxy: killed when dropped, if closing its stdin did not already stop it.
struct ChildProxy {
    child: Child,
    stdin: Option<ChildStdin>,
    web: SocketAddr,
    admin: Option<SocketAddr>,
}

impl Drop for ChildProxy {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildProxy {
    fn start(config: &ConfigFile) -> ChildProxy {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {DESCRIPTOR_LIMIT} && exec \"$0\" \"$@\""
            ))
            .arg(exe)
            .args([
                "descriptor_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_CONFIG, &config.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh starts the child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness prints the test's name on the same line first.
                if let Some(at) = line.find("READY ") {
                    let _ = tx.send(line[at + "READY ".len()..].to_string());
                }
            }
        });
        let mut proxy = ChildProxy {
            child,
            stdin,
            web: "127.0.0.1:1".parse().unwrap(),
            admin: None,
        };
        let ready = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the child proxy says READY within 10 s");
        let mut parts = ready.split(' ');
        proxy.web = parts.next().unwrap().parse().unwrap();
        proxy.admin = parts.next().and_then(|a| a.parse().ok());
        proxy
    }

    /// CPU time the child has used, from /proc (user plus system, in clock ticks).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name (which is in parentheses); utime and stime are
        // the 14th and 15th fields of the whole line.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// The share of one core the child used over `span`.
    fn cpu_share_over(&self, span: Duration) -> f64 {
        let ticks_per_second: f64 = String::from_utf8(
            Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        let before = self.cpu_ticks();
        std::thread::sleep(span);
        (self.cpu_ticks() - before) as f64 / ticks_per_second / span.as_secs_f64()
    }
}

/// Opens `n` connections that send nothing.
async fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for _ in 0..n {
        open.push(TcpStream::connect(addr).await.unwrap());
    }
    open
}

/// The status of one `GET /` on a fresh connection and how long it took; None when nothing
/// came back within 3 s.
async fn timed_get(addr: SocketAddr) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(3), async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(2).any(|w| w == b"\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&seen).into_owned();
        line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    })
    .await
    .ok()
    .flatten();
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_capped_and_do_not_starve_the_data_plane() {
    let a = backend("a", Duration::ZERO).await;
    let text = "[admin]\naddress = \"127.0.0.1:0\"\n\
        [listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\n"
        .to_string()
        + &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let child = ChildProxy::start(&config);
    let admin = child.admin.expect("the child has an admin API");
    let mut idle = idle_connections(admin, 300).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let share = child.cpu_share_over(Duration::from_secs(1));
    assert!(
        share < 0.3,
        "the child used {:.0}% of a core with idle admin connections",
        share * 100.0
    );
    let mut took = Vec::new();
    for _ in 0..20 {
        let (status, time) = timed_get(child.web).await;
        assert_eq!(status, Some(200), "the data plane answers");
        took.push(time);
    }
    took.sort();
    assert!(
        took[10] < Duration::from_millis(50),
        "median data request {:?}",
        took[10]
    );
    // The admin connections beyond the cap (64) were answered 503 and closed.
    let mut refused = 0;
    for s in &mut idle {
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await
            && buf[..n].starts_with(b"HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert!(
        (200..=300 - 64).contains(&refused),
        "{refused} admin connections refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_below_the_caps_new_clients_get_503_not_silence() {
    let a = backend("a", Duration::ZERO).await;
    // The listener admits 10,000 connections; the process can open 256 descriptors.
    let text = "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\n"
        .to_string()
        + &servers("app", &[&a], "");
    let config = ConfigFile::new(&text);
    let child = ChildProxy::start(&config);
    assert_eq!(timed_get(child.web).await.0, Some(200));
    let idle = idle_connections(child.web, 300).await;
    // The connections beyond the descriptors are refused first, a few at a time.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    for _ in 0..5 {
        let (status, took) = timed_get(child.web).await;
        assert_eq!(
            status,
            Some(503),
            "a client beyond the descriptors is refused, not left waiting"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    let share = child.cpu_share_over(Duration::from_secs(1));
    assert!(
        share < 0.3,
        "the child used {:.0}% of a core",
        share * 100.0
    );
    // Descriptors back: served again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(timed_get(child.web).await.0, Some(200));
}
