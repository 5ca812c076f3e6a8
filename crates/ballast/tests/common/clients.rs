//! Client threads for the end-to-end tests: each runs its own loop body (one request, then its
//! gap) until the set is stopped, dropped, or its time bound passes, so no test leaves traffic
//! running behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A set of client threads, stopped and joined on drop.
#[derive(Default)]
pub struct ClientThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ClientThreads {
    pub fn new() -> ClientThreads {
        ClientThreads::default()
    }

    /// Adds `n` threads; thread `i` runs the body `make(i)` gives it again and again until the
    /// set is stopped or `bound` has passed.
    pub fn spawn<F>(&mut self, n: usize, bound: Duration, mut make: impl FnMut(usize) -> F)
    where
        F: FnMut() + Send + 'static,
    {
        let until = Instant::now() + bound;
        for i in 0..n {
            let stop = Arc::clone(&self.stop);
            let mut body = make(i);
            self.threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    body();
                }
            }));
        }
    }

    /// How many threads were started.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Stops every thread and waits for each to finish its request.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ClientThreads {
    fn drop(&mut self) {
        self.stop();
    }
}
