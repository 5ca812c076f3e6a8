//! Which nginx is running: the master's pid (from the `pid` file) and its newest worker, read
//! from Linux's `/proc`, as the sample's generation, so a reload (`nginx -s reload`, SIGHUP:
//! the master starts new workers and retires the old ones) is seen as one.
//!
//! Workers retiring after a reload stay alive while they finish their requests ("nginx:
//! worker process is shutting down"), so the generation is the newest live worker (by start
//! time), not the whole set: a sample taken while old and new workers overlap already names
//! the new generation, and the old ones leaving changes nothing. A worker that crashed and
//! was restarted by the master changes it too: that is a new process running the same file.

use std::path::{Path, PathBuf};

/// The master and its newest worker, as a generation string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workers {
    pub master: u32,
    /// The worker processes serving now (not the ones shutting down), oldest first.
    pub workers: Vec<u32>,
    /// The newest of them: a reload replaces it.
    pub newest: u32,
}

impl Workers {
    /// What `ProcessSample::generation` carries.
    pub fn generation(&self) -> String {
        format!("master {} worker {}", self.master, self.newest)
    }
}

/// Why the workers could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub what: String,
}

/// The pid in nginx's `pid` file.
pub fn read_pid_file(path: &Path) -> Result<u32, Unreadable> {
    let text = std::fs::read_to_string(path).map_err(|e| Unreadable {
        what: format!("cannot read nginx's pid file {}: {e}", path.display()),
    })?;
    text.trim().parse().map_err(|_| Unreadable {
        what: format!(
            "nginx's pid file {} holds `{}`, not a process id",
            path.display(),
            text.trim()
        ),
    })
}

/// The master's serving workers, from `proc` (normally `/proc`).
pub fn read_workers(proc: &Path, master: u32) -> Result<Workers, Unreadable> {
    let master_dir = proc.join(master.to_string());
    if !master_dir.join("stat").exists() {
        return Err(Unreadable {
            what: format!(
                "the nginx master {master} (from the pid file) is not running, or {} is not readable",
                master_dir.display()
            ),
        });
    }
    let children = children(proc, master)?;
    let mut workers: Vec<(u64, u32)> = children
        .into_iter()
        .filter(|pid| is_serving_worker(&proc.join(pid.to_string())))
        .filter_map(|pid| start_time(&proc.join(pid.to_string())).map(|t| (t, pid)))
        .collect();
    workers.sort_unstable();
    let Some(&(_, newest)) = workers.last() else {
        return Err(Unreadable {
            what: format!(
                "the nginx master {master} has no worker process in {}",
                proc.display()
            ),
        });
    };
    Ok(Workers {
        master,
        workers: workers.iter().map(|w| w.1).collect(),
        newest,
    })
}

/// The master's children: `task/<pid>/children` when the kernel has it, else a scan of every
/// process's parent.
fn children(proc: &Path, master: u32) -> Result<Vec<u32>, Unreadable> {
    let listed = proc
        .join(master.to_string())
        .join("task")
        .join(master.to_string())
        .join("children");
    if let Ok(text) = std::fs::read_to_string(&listed) {
        return Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect());
    }
    let entries = std::fs::read_dir(proc).map_err(|e| Unreadable {
        what: format!("cannot list {}: {e}", proc.display()),
    })?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(&proc.join(pid.to_string())).is_some_and(|f| parent(&f) == Some(master))
        })
        .collect())
}

/// nginx names its workers "nginx: worker process" and the retiring ones "nginx: worker
/// process is shutting down" (the cache manager and loader are not workers).
fn is_serving_worker(dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
        return false;
    };
    let title = String::from_utf8_lossy(&cmdline);
    let title = title.trim_end_matches('\0');
    title.contains("worker process") && !title.contains("shutting down")
}

/// The fields of `stat` after the command name (which may hold spaces and parentheses).
fn stat_fields(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// `stat` field 4 (the parent), the second after the name.
fn parent(fields: &[String]) -> Option<u32> {
    fields.get(1)?.parse().ok()
}

/// `stat` field 22 (start time, clock ticks since boot), the 20th after the name.
fn start_time(dir: &Path) -> Option<u64> {
    stat_fields(dir)?.get(19)?.parse().ok()
}

/// Where nginx keeps its pid: the configuration's `pid` directive (relative to the prefix),
/// else the build's default (Debian's `/run/nginx.pid`).
pub fn pid_file(directive: Option<&str>, prefix: &Path) -> PathBuf {
    match directive {
        Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
        Some(p) => prefix.join(p),
        None => PathBuf::from("/run/nginx.pid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(proc: &Path, pid: u32, ppid: u32, start: u64, title: &str) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        // The name holds a space and a parenthesis, as a process title may.
        let mut stat = format!("{pid} (nginx: a) b) S {ppid}");
        for field in 5..22 {
            stat.push_str(&format!(" {field}"));
        }
        stat.push_str(&format!(" {start} 0 0\n"));
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("cmdline"), format!("{title}\0")).unwrap();
    }

    #[test]
    fn the_newest_serving_worker_is_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        process(proc, 100, 1, 10, "nginx: master process nginx");
        process(proc, 101, 100, 11, "nginx: worker process is shutting down");
        process(proc, 102, 100, 50, "nginx: worker process");
        process(proc, 103, 100, 50, "nginx: cache manager process");
        process(proc, 104, 100, 49, "nginx: worker process");
        process(proc, 200, 1, 60, "nginx: worker process");
        // No `children` file: found by scanning parents.
        let w = read_workers(proc, 100).unwrap();
        assert_eq!((w.workers.clone(), w.newest), (vec![104, 102], 102));
        assert_eq!(w.generation(), "master 100 worker 102");
        // The kernel's list, when there is one, is the list.
        let task = proc.join("100/task/100");
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(task.join("children"), "104 101 ").unwrap();
        assert_eq!(read_workers(proc, 100).unwrap().newest, 104);
    }

    #[test]
    fn a_missing_master_or_pid_file_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_workers(dir.path(), 7).unwrap_err();
        assert!(e.what.contains("master 7"), "{e:?}");
        process(dir.path(), 7, 1, 1, "nginx: master process");
        assert!(
            read_workers(dir.path(), 7)
                .unwrap_err()
                .what
                .contains("no worker")
        );
        let pid = dir.path().join("nginx.pid");
        assert!(
            read_pid_file(&pid)
                .unwrap_err()
                .what
                .contains("cannot read")
        );
        std::fs::write(&pid, "abc\n").unwrap();
        assert!(read_pid_file(&pid).unwrap_err().what.contains("`abc`"));
        std::fs::write(&pid, "4242\n").unwrap();
        assert_eq!(read_pid_file(&pid), Ok(4242));
    }

    #[test]
    fn the_pid_file_is_the_directive_or_the_default() {
        let prefix = Path::new("/etc/nginx");
        assert_eq!(
            pid_file(Some("/tmp/x.pid"), prefix),
            PathBuf::from("/tmp/x.pid")
        );
        assert_eq!(
            pid_file(Some("logs/n.pid"), prefix),
            PathBuf::from("/etc/nginx/logs/n.pid")
        );
        assert_eq!(pid_file(None, prefix), PathBuf::from("/run/nginx.pid"));
    }
}
