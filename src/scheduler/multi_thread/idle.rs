//! Counts of searching and parked workers, and the list of parked ones.
//!
//! At most half the workers search for work at once (more only burn CPU on
//! contended steals). A task pushed where others can take it wakes a parked
//! worker only if nobody is searching: a searching worker will find it, and
//! the last searcher to find work wakes the next one (`worker.rs`).
//!
//! # Who looks before parking
//!
//! A worker about to park after which nobody searches any more (the last
//! searcher, or a worker refused the search whose searchers have all
//! stopped meanwhile) looks at every queue once more
//! (`transition_worker_to_parking` says so). The second case matters once
//! a searcher may leave for good: a replacement thread that retires
//! (`stuck.rs`) stops searching without parking, and a worker refused the
//! search because of it must not park on a task nobody else will see.
//!
//! The counts are of parked workers, not of unparked ones, so that the
//! replacement threads of the worker hand-off (`stuck.rs`), which come
//! and go, need no bookkeeping here while they run: a thread counts only
//! while it is on the sleepers list.

use crate::loom::{AtomicUsize, Mutex, Ordering::*, fence};

/// `num_searching` in the low 16 bits, `num_parked` above.
const PARKED_SHIFT: usize = 16;
const SEARCH_MASK: usize = (1 << PARKED_SHIFT) - 1;
const PARKED_ONE: usize = 1 << PARKED_SHIFT;

pub(crate) struct Idle {
    state: AtomicUsize,
    /// Indices of parked workers (`num_parked` of them).
    sleepers: Mutex<Vec<usize>>,
    /// The runtime's workers (not counting replacement threads): the
    /// search cap is half of them.
    num_workers: usize,
}

fn num_searching(s: usize) -> usize {
    s & SEARCH_MASK
}

fn num_parked(s: usize) -> usize {
    s >> PARKED_SHIFT
}

impl Idle {
    /// `slots`: every index that may park (workers and the spare slots of
    /// replacement threads), fewer than 2^16.
    pub(crate) fn new(num_workers: usize, slots: usize) -> Idle {
        debug_assert!(slots < SEARCH_MASK);
        Idle {
            state: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::with_capacity(slots)),
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
        // One parked fewer, one searcher more.
        self.state.fetch_sub(PARKED_ONE - 1, SeqCst);
        sleepers.pop()
    }

    /// The worker is about to park. Returns `true` if nobody searches
    /// after it (it was the last searcher, or was not searching and all
    /// searchers stopped), in which case it must check for pending work
    /// once more (module doc).
    pub(crate) fn transition_worker_to_parking(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock();
        let prev = if is_searching {
            self.state.fetch_add(PARKED_ONE - 1, SeqCst)
        } else {
            self.state.fetch_add(PARKED_ONE, SeqCst)
        };
        sleepers.push(worker);
        let nobody_searches = num_searching(prev) == usize::from(is_searching);
        if nobody_searches {
            // The caller looks at the queues next (`notify_if_work_pending`):
            // this fence pairs with the one in `notify_should_wakeup`, after
            // a push. Either that notifier sees this worker parked (and wakes
            // it), or this worker's queue checks see the pushed task. Without
            // it the checks are plain acquire loads, which may miss a push
            // whose notifier saw this worker still searching.
            fence(SeqCst);
        }
        nobody_searches
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

    /// The worker found work (or, a replacement thread, retires). Returns
    /// `true` if it was the last searcher (and so must wake another
    /// worker to take over the search).
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
                self.state.fetch_sub(PARKED_ONE, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether `worker` is on the sleepers list (the worker hand-off
    /// leaves a parked worker alone).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        self.sleepers.lock().contains(&worker)
    }

    /// The most recently parked worker, left parked (a retiring
    /// replacement thread wakes it so that it parks again, this time in
    /// the driver, which the replacement may have been the one to turn).
    pub(crate) fn last_parked(&self) -> Option<usize> {
        self.sleepers.lock().last().copied()
    }

    fn notify_should_wakeup(&self) -> bool {
        // Pairs with the SeqCst updates of parking workers: either the
        // parker sees the pushed task, or we see it parked.
        fence(SeqCst);
        let s = self.state.load(SeqCst);
        num_searching(s) == 0 && num_parked(s) > 0
    }
}

#[cfg(test)]
mod tests {
    //! The wake-up protocol around an injector batch, on the real `Idle`,
    //! injector and local queue; the two workers' steps are the ones
    //! `worker.rs` takes (`next_unpinned_task`, `steal_work`,
    //! `transition_to_parked`). Under `--cfg fiber_runtime_loom` every
    //! interleaving; plainly, once.

    use super::*;
    use crate::loom::{Arc, AtomicBool, model, thread};
    use crate::scheduler::inject::Inject;
    use crate::scheduler::multi_thread::queue;
    use crate::task_core::test_util::TestSched;

    /// Worker 0, not searching (say, woken by the driver), takes both
    /// injected tasks: it keeps the first to run (forever, say) and queues
    /// the second. Worker 1 looks for work, finds none, and parks. The
    /// second task must not be stranded: worker 1 either stole it or was
    /// woken to (taken off the sleepers list by a notifier).
    #[test]
    fn loom_an_injector_batch_is_not_stranded_behind_a_busy_worker() {
        model(|| {
            let sched = std::sync::Arc::new(TestSched::default());
            let idle = Arc::new(Idle::new(2, 2));
            let inject = Arc::new(Inject::new());
            for _ in 0..2 {
                let (t, join) = sched.spawn(async {});
                drop(join);
                assert!(inject.push(t));
            }
            let (steal, mut local0) = queue::local();
            let woken1 = Arc::new(AtomicBool::new(false));

            let w0 = {
                let (idle, inject, woken1) = (idle.clone(), inject.clone(), woken1.clone());
                thread::spawn(move || {
                    let mut first = None;
                    let mut queued = false;
                    inject.pop_n(2, |t| {
                        if first.is_none() {
                            first = Some(t);
                        } else {
                            local0.push_back_or_overflow(t, &inject);
                            queued = true;
                        }
                    });
                    if queued {
                        // `Handle::notify_parked`.
                        if let Some(i) = idle.worker_to_notify() {
                            assert_eq!(i, 1);
                            woken1.store(true, SeqCst);
                        }
                    }
                    // Runs `first` and never comes back for `local0`.
                    (first, local0)
                })
            };

            // Worker 1: the injector, a steal, the injector, then park.
            let (_, mut local1) = queue::local();
            let mut found = inject.pop().is_some();
            if !found {
                let searching = idle.transition_worker_to_searching();
                assert!(searching);
                found = steal.steal_into(&mut local1).is_some() || inject.pop().is_some();
                if !found {
                    // `transition_to_parked`: its queues are empty.
                    let was_last = idle.transition_worker_to_parking(1, searching);
                    if was_last {
                        // `Handle::notify_if_work_pending`.
                        let pending = !steal.is_empty() || !inject.is_empty();
                        if pending {
                            if let Some(i) = idle.worker_to_notify() {
                                assert_eq!(i, 1);
                                woken1.store(true, SeqCst);
                            }
                        }
                    }
                }
            }
            let (first, local0) = w0.join().unwrap();
            assert!(first.is_some(), "worker 0 took the first task");
            let stranded = !local0.is_empty() && !found;
            assert!(
                !stranded || woken1.load(SeqCst),
                "the second task waits in worker 0's queue and worker 1 parked unwoken"
            );
            drop((first, local0, local1));
        });
    }
}
