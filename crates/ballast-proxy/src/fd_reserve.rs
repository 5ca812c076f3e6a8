//! A reserve of file descriptors for refusing clients when the process has run out (EMFILE,
//! ENFILE). Without it a client that arrives then cannot even be accepted: it waits in the
//! kernel's backlog, unanswered, until a descriptor frees up. With it the accept loop closes
//! one spare (an open `/dev/null`), accepts the waiting client into the freed descriptor,
//! answers it 503 and closes it; the spare is opened again once that client is gone (the
//! classic trick of libev and nginx's `accept` EMFILE handling, with a 503 instead of a reset).

use std::fs::File;
use std::sync::{Arc, Mutex};

/// Spares opened at start: enough for a few refusals in flight at once.
pub const SPARES: usize = 16;

/// The spare descriptors of the process.
pub struct FdReserve {
    spares: Mutex<Vec<File>>,
}

/// A spare released for one refusal; opened again when dropped.
pub struct Spare {
    reserve: Arc<FdReserve>,
}

impl FdReserve {
    /// Opens up to `n` spares (fewer if descriptors are already short).
    pub fn open(n: usize) -> Arc<Self> {
        let spares = (0..n).filter_map(|_| open_spare()).collect();
        Arc::new(Self {
            spares: Mutex::new(spares),
        })
    }

    /// Closes one spare so the next `accept` has a descriptor to use; None when all are out.
    pub fn release_one(self: &Arc<Self>) -> Option<Spare> {
        let spare = self
            .spares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()?;
        drop(spare);
        Some(Spare {
            reserve: Arc::clone(self),
        })
    }

    /// Spares held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.spares.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        if let Some(file) = open_spare() {
            self.reserve
                .spares
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(file);
        }
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Raises the soft descriptor limit to the hard one (what the caps may need is known only
/// from the configuration, and a soft limit of 1,024 is common) and warns when the caps of
/// `config` still exceed it, as `ballast check` does (LIM-110).
pub fn raise_limit_and_warn(config: &ballast_core::config::Config) {
    let Ok(limit) = rlimit::increase_nofile_limit(u64::MAX) else {
        return;
    };
    if let Some(warning) = descriptor_warning(config, limit, "start") {
        tracing::warn!("{warning}");
    }
}

/// Warns when a configuration a reload (or a rollback) applies has caps beyond the limit the
/// process runs with (its soft limit, raised at start): a reload can raise the caps past it
/// as much as a start can.
pub fn warn_on_reload(config: &ballast_core::config::Config) {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    if soft == rlimit::INFINITY {
        return;
    }
    if let Some(warning) = descriptor_warning(config, soft, "reload") {
        tracing::warn!("{warning}");
    }
}

/// The LIM-110 warning serve writes at `when` (start, reload) for caps beyond `limit`.
pub fn descriptor_warning(
    config: &ballast_core::config::Config,
    limit: u64,
    when: &str,
) -> Option<String> {
    let (message, fix) = ballast_check::descriptor_shortfall(config, limit)?;
    Some(format!("{when}: {message}; {fix} (LIM-110)"))
}

/// The process (EMFILE) or the system (ENFILE) is out of descriptors.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_spare_comes_back_when_dropped() {
        let reserve = FdReserve::open(2);
        assert_eq!(reserve.held(), 2);
        let a = reserve.release_one().unwrap();
        let b = reserve.release_one().unwrap();
        assert!(reserve.release_one().is_none());
        drop(a);
        assert_eq!(reserve.held(), 1);
        drop(b);
        assert_eq!(reserve.held(), 2);
    }

    #[test]
    fn the_warning_names_the_moment_and_the_limit_and_is_silent_within_it() {
        let text = "[global]\nmax_connections = 2000\n\
            [listeners.a]\naddress = \"127.0.0.1:1\"\npool = \"p\"\nmax_connections = 2000\n\
            [pools.p]\n[[pools.p.servers]]\nname = \"s\"\naddress = \"127.0.0.1:3\"\n";
        let config = ballast_core::load_source(ballast_core::SourceFile::new("t.toml", text))
            .unwrap()
            .config;
        let warning = descriptor_warning(&config, 512, "reload").expect("2,000 caps over 512");
        assert!(warning.starts_with("reload: "), "{warning}");
        assert!(
            warning.contains("512") && warning.contains("LIM-110"),
            "{warning}"
        );
        assert!(descriptor_warning(&config, 100_000, "reload").is_none());
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
