//! A reserve of file descriptors for refusing clients when the process has run out (EMFILE,
//! ENFILE). Without it a client that arrives then cannot even be accepted: it waits in the
//! kernel's backlog, unanswered, until a descriptor frees up. With it the accept loop closes
//! one spare (an open `/dev/null`), accepts the waiting client into the freed descriptor,
//! answers it 503 and closes it; the spare is opened again once that client is gone (the
//! classic trick of libev and nginx's `accept` EMFILE handling, with a 503 instead of a reset).
//!
//! The refused client's descriptor becomes the spare again in one step (`dup3` of a kept
//! `/dev/null` over it): closing it first and opening the spare after would leave a moment in
//! which an accept on another thread takes the descriptor, and the reserve would shrink by one
//! for good. A spare that could not come back all the same (a release with nobody waiting) is
//! owed, and opened again at the next accept that finds a descriptor free.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Spares opened at start: enough for a few refusals in flight at once.
pub const SPARES: usize = 16;

/// The spare descriptors of the process.
pub struct FdReserve {
    spares: Mutex<Vec<File>>,
    /// The `/dev/null` every spare is duplicated from, never released.
    template: Option<File>,
    /// Spares released and not yet opened again.
    owed: AtomicUsize,
}

/// A spare released for one refusal; opened again when dropped, or made from the refused
/// client's descriptor by [`Spare::close_into`].
pub struct Spare {
    reserve: Arc<FdReserve>,
}

impl FdReserve {
    /// Opens up to `n` spares (fewer if descriptors are already short).
    pub fn open(n: usize) -> Arc<Self> {
        let template = open_spare();
        let spares = (0..n).filter_map(|_| open_spare()).collect();
        Arc::new(Self {
            spares: Mutex::new(spares),
            template,
            owed: AtomicUsize::new(0),
        })
    }

    /// Closes one spare so the next `accept` has a descriptor to use; None when all are out.
    pub fn release_one(self: &Arc<Self>) -> Option<Spare> {
        let spare = self.lock().pop()?;
        self.owed.fetch_add(1, Ordering::Relaxed);
        drop(spare);
        Some(Spare {
            reserve: Arc::clone(self),
        })
    }

    /// Opens again the spares owed, while descriptors are free: a cheap load on the accept
    /// path when none is owed.
    pub fn top_up(&self) {
        while self.owed.load(Ordering::Relaxed) > 0 {
            if !self.pay_one() {
                return;
            }
        }
    }

    /// Opens one spare owed; false when none is owed or no descriptor is free.
    fn pay_one(&self) -> bool {
        if self.owed.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Some(file) = open_spare() else {
            return false;
        };
        self.put_back(file);
        true
    }

    fn put_back(&self, file: File) {
        let mut spares = self.lock();
        // Another thread may have paid the same debt in the meantime.
        if self
            .owed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            spares.push(file);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<File>> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spares held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lock().len()
    }
}

impl Spare {
    /// Closes the refused client's connection and turns its descriptor into the spare, in one
    /// step: no other accept can take the descriptor between the close and the spare's open.
    pub fn close_into(self, stream: tokio::net::TcpStream) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let mut descriptor = OwnedFd::from(stream);
        let Some(template) = &self.reserve.template else {
            return;
        };
        if rustix::io::dup3(template, &mut descriptor, rustix::io::DupFlags::CLOEXEC).is_ok() {
            self.reserve.put_back(File::from(descriptor));
        }
        // Dropping `self` now finds nothing owed for it, or opens the spare the usual way.
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // One spare for this one; the accept path pays any other debt.
        self.reserve.pay_one();
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

    #[tokio::test]
    async fn a_refused_client_s_descriptor_becomes_the_spare_and_the_client_sees_the_close() {
        use std::os::fd::AsRawFd;
        use tokio::io::AsyncReadExt;
        let reserve = FdReserve::open(2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let spare = reserve.release_one().unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let number = accepted.as_raw_fd();
        spare.close_into(accepted);
        assert_eq!(reserve.held(), 2);
        assert_eq!(reserve.owed.load(Ordering::Relaxed), 0);
        assert!(
            reserve.lock().iter().any(|f| f.as_raw_fd() == number),
            "the spare took the client's descriptor number"
        );
        let mut buf = [0u8; 8];
        assert_eq!(
            client.read(&mut buf).await.unwrap(),
            0,
            "the client sees EOF"
        );
    }

    #[test]
    fn a_spare_that_could_not_come_back_is_owed_until_a_descriptor_is_free() {
        let reserve = FdReserve::open(2);
        let spare = reserve.release_one().unwrap();
        // As if the drop had found no descriptor free: the debt stays until a top-up.
        std::mem::forget(spare);
        assert_eq!(reserve.held(), 1);
        reserve.top_up();
        assert_eq!(reserve.held(), 2);
        reserve.top_up();
        assert_eq!(reserve.held(), 2, "nothing is owed twice");
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
