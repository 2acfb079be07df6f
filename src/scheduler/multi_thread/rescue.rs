//! Ring wakes that wake no peer, and the bounded parks that make up for it.
//!
//! # Why
//!
//! A task woken by a completion of its worker's ring (the io_uring
//! driver) has its stream bound to that ring for life
//! (`docs/design/io_uring.md` §4), so its later completions are reaped
//! there too. Queued, it is stealable like any task; but a peer that steals
//! it polls it once, and its next completion brings it back. Waking a
//! parked peer for such tasks, as for any other, made a task server under
//! an external client at 50 connections slower on uring than on epoll: the
//! idle worker was woken, stole one task and gave it back, 24k times in 27k
//! polls (BENCHMARKS.md, issue 13, sixth step). So a worker that queues
//! ring-woken tasks does not wake a parked peer for them; a peer that is
//! awake anyway may still steal them.
//!
//! # Why nothing is stranded
//!
//! That alone could strand a task: queued behind a poll that does not end
//! (one that waits for that very task, say) while every peer is parked for
//! good. [`Rescue`]'s flag closes it:
//!
//! 1. A worker that left ring-woken tasks unannounced (after waking the
//!    whole batch) fences, then reads the flag. Clear: it sets it and
//!    wakes *every* parked peer ([`Rescue::after_unannounced`]), each of
//!    which parks again, bounded (step 2). Waking only one would not do
//!    with three workers or more: a peer parked unbounded before the flag
//!    was set would stay so, and the one woken may then sit in a long
//!    poll of its own.
//! 2. A worker about to park reads the flag *after* listing itself as a
//!    sleeper; set, it parks for [`PERIOD`] at most, then searches the
//!    queues again and steals what waits ([`Rescue::bound`]).
//! 3. After [`ROUNDS`] bounded parks since its last steal, it clears the
//!    flag, fences, and looks at every queue once more before it parks
//!    for good ([`Rescue::clear`]); work there, it goes back to its run
//!    loop to find it. (A retiring replacement thread, which exits
//!    instead, skips this step.)
//!
//! A task left unannounced in step 1 is found. Say the worker read the
//! flag clear: it set it before it read the sleepers list, so every peer
//! parked then is woken, and a peer that lists itself later reads the flag
//! after listing and sees it set. From then on, until a clear, every park
//! is bounded, so some worker looks at the queues within [`PERIOD`] unless
//! every worker is inside a poll, and then the task would wait without
//! this scheme too. Say it read the flag set: then either no clear came
//! after that set, and the same holds; or one came after it, and the two
//! fences order that worker's push before the clearer's look (step 3), so
//! the clearer sees the task. `loom_an_unannounced_task_is_seen_or_announced`
//! models the last case.
//!
//! The cost: while the flag is set, parked workers wake every [`PERIOD`]
//! (for [`ROUNDS`] periods after the last rescue at most). An idle runtime
//! leaves it clear and sleeps.

use crate::loom::{AtomicBool, Ordering::*, fence};
use std::time::Duration;

/// How long a worker parks at most while the flag is set.
pub(super) const PERIOD: Duration = Duration::from_millis(1);

/// Bounded parks since its last steal before a worker clears the flag.
pub(super) const ROUNDS: u32 = 16;

/// Whether some worker may have queued ring-woken tasks without waking a
/// parked peer for them (module doc).
pub(super) struct Rescue {
    unannounced: AtomicBool,
}

impl Rescue {
    pub(super) fn new() -> Rescue {
        Rescue {
            unannounced: AtomicBool::new(false),
        }
    }

    /// Step 1, after a worker queued ring-woken tasks without a notify:
    /// returns whether it must wake every parked peer after all.
    #[inline]
    pub(super) fn after_unannounced(&self) -> bool {
        // Orders the pushes before the load (step 3's fence pairs with it).
        fence(SeqCst);
        if self.unannounced.load(Relaxed) {
            return false;
        }
        // Whoever sets it wakes every parked peer.
        !self.unannounced.swap(true, SeqCst)
    }

    /// Step 2, after listing as a sleeper: how long to park at most.
    #[inline]
    pub(super) fn bound(&self) -> Option<Duration> {
        self.unannounced.load(SeqCst).then_some(PERIOD)
    }

    /// Step 3: clears the flag. The caller must look at every queue after
    /// this, before it parks unbounded.
    pub(super) fn clear(&self) {
        self.unannounced.store(false, SeqCst);
        fence(SeqCst);
    }
}

#[cfg(all(test, fiber_runtime_loom))]
mod tests {
    use super::*;
    use crate::loom::{Arc, AtomicUsize, model, thread};

    /// A worker queues a task and reads the flag set (so it wakes nobody)
    /// while a peer clears the flag and looks at the queue: the peer sees
    /// the task, or the worker saw the clear and announces it.
    #[test]
    fn loom_an_unannounced_task_is_seen_or_announced() {
        model(|| {
            let rescue = Arc::new(Rescue::new());
            rescue.unannounced.store(true, Relaxed);
            // The queue: its tail, as a steal reads it.
            let queued = Arc::new(AtomicUsize::new(0));
            let worker = {
                let (rescue, queued) = (rescue.clone(), queued.clone());
                thread::spawn(move || {
                    queued.store(1, Release);
                    rescue.after_unannounced()
                })
            };
            rescue.clear();
            let seen = queued.load(Acquire) == 1;
            let announced = worker.join().unwrap();
            assert!(seen || announced, "a queued task nobody will look at");
        });
    }

    /// Two workers announcing at once: exactly one of them wakes the parked peers
    /// when the flag was clear.
    #[test]
    fn loom_one_of_two_announcers_wakes() {
        model(|| {
            let rescue = Arc::new(Rescue::new());
            let other = {
                let rescue = rescue.clone();
                thread::spawn(move || rescue.after_unannounced())
            };
            let mine = rescue.after_unannounced();
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "woke {mine} and {theirs}");
            assert_eq!(rescue.bound(), Some(PERIOD));
        });
    }
}
