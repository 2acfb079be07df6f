//! Counts of searching and unparked workers, and the list of parked ones.
//!
//! At most half the workers search for work at once (more only burn CPU on
//! contended steals). A task pushed where others can take it wakes a parked
//! worker only if nobody is searching: a searching worker will find it, and
//! the last searcher to find work wakes the next one (`worker.rs`).

use crate::loom::{AtomicUsize, Mutex, Ordering::*, fence};

/// `num_searching` in the low 16 bits, `num_unparked` above.
const UNPARK_SHIFT: usize = 16;
const SEARCH_MASK: usize = (1 << UNPARK_SHIFT) - 1;
const UNPARK_ONE: usize = 1 << UNPARK_SHIFT;

pub(crate) struct Idle {
    state: AtomicUsize,
    /// Indices of parked workers.
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

fn num_searching(s: usize) -> usize {
    s & SEARCH_MASK
}

fn num_unparked(s: usize) -> usize {
    s >> UNPARK_SHIFT
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Idle {
        Idle {
            state: AtomicUsize::new(num_workers << UNPARK_SHIFT),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    /// If a parked worker should be woken for new work, marks it unparked
    /// and searching and returns its index.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        if !self.notify_should_wakeup() {
            return None;
        }
        let mut sleepers = self.sleepers.lock();
        // Check again under the lock: another notifier may have won.
        if !self.notify_should_wakeup() {
            return None;
        }
        self.state.fetch_add(UNPARK_ONE | 1, SeqCst);
        sleepers.pop()
    }

    /// The worker is about to park. Returns `true` if it was the last
    /// searcher, in which case it must check for pending work once more.
    pub(crate) fn transition_worker_to_parking(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock();
        let dec = UNPARK_ONE | usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        sleepers.push(worker);
        is_searching && num_searching(prev) == 1
    }

    /// The worker wants to search; refused if half the workers already do.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let s = self.state.load(SeqCst);
        if 2 * num_searching(s) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// The worker found work. Returns `true` if it was the last searcher
    /// (and so must wake another worker to take over the search).
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, SeqCst);
        num_searching(prev) == 1
    }

    /// Unparks `worker` if it is parked (shutdown, or a worker woken
    /// spuriously that finds work). Returns `true` if it was.
    pub(crate) fn unpark_worker_by_id(&self, worker: usize) -> bool {
        let mut sleepers = self.sleepers.lock();
        match sleepers.iter().position(|&w| w == worker) {
            Some(i) => {
                sleepers.swap_remove(i);
                self.state.fetch_add(UNPARK_ONE, SeqCst);
                true
            }
            None => false,
        }
    }

    fn notify_should_wakeup(&self) -> bool {
        // Pairs with the SeqCst updates of parking workers: either the
        // parker sees the pushed task, or we see it parked.
        fence(SeqCst);
        let s = self.state.load(SeqCst);
        num_searching(s) == 0 && num_unparked(s) < self.num_workers
    }
}
