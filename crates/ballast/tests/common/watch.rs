//! A child process writing JSON lines on its stdout (`ballast watch --format json`), started in
//! a process group of its own: its lines are collected as they come, read back by `type`, and
//! the group is killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct JsonLinesChild {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl JsonLinesChild {
    /// Starts `command` with its stdout read line by line (its stderr goes to the test's).
    pub fn spawn(mut command: Command) -> JsonLinesChild {
        use std::os::unix::process::CommandExt;
        let mut child = command
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the JSON-lines child");
        let stdout = child.stdout.take().expect("its stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        JsonLinesChild {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The records of one `type` written so far (lines that are not JSON are not records).
    pub fn records(&self, kind: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// Waits until it has written a record of `kind`, failing the test past `timeout`.
    pub fn wait_for_record(&self, kind: &str, timeout: Duration) {
        super::wait_until(
            &format!("a `{kind}` record from the child"),
            timeout,
            || !self.records(kind).is_empty(),
        );
    }

    /// Waits for the process to end on its own (its `--duration`): its exit code and every
    /// line it wrote, each of which must be JSON.
    pub fn finish(mut self, within: Duration) -> (i32, Vec<Value>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                let lines =
                    std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()));
                let values = lines
                    .iter()
                    .map(|line| {
                        serde_json::from_str(line).unwrap_or_else(|e| {
                            panic!("the child wrote a line that is not JSON ({e}): {line}")
                        })
                    })
                    .collect();
                return (status.code().unwrap_or(-1), values);
            }
            assert!(
                Instant::now() < deadline,
                "the child did not stop by its --duration"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for JsonLinesChild {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}
