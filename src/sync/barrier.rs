//! [`Barrier`]: a reusable rendezvous of `n` tasks, fibers or threads.

use super::Notify;
use crate::loom::Mutex;
use std::fmt;

/// Lets `n` tasks, fibers or threads wait until all of them have
/// arrived; then all go on, and the barrier is ready for the next round.
///
/// One of each round's arrivals (the last) is its *leader*
/// ([`BarrierWaitResult::is_leader`]).
///
/// # Examples
///
/// Two fibers and a task meet, twice:
///
/// ```
/// use fiber_runtime::sync::Barrier;
/// use std::sync::Arc;
///
/// fiber_runtime::block_on(async {
///     let barrier = Arc::new(Barrier::new(3));
///     let fibers: Vec<_> = (0..2)
///         .map(|_| {
///             let b = barrier.clone();
///             fiber_runtime::fiber::spawn(move || {
///                 let first = b.blocking_wait().is_leader();
///                 let second = b.blocking_wait().is_leader();
///                 first as u32 + second as u32
///             })
///         })
///         .collect();
///     let mut leaders = barrier.wait().await.is_leader() as u32;
///     leaders += barrier.wait().await.is_leader() as u32;
///     for f in fibers {
///         leaders += f.await.unwrap();
///     }
///     assert_eq!(leaders, 2, "one leader per round");
/// });
/// ```
pub struct Barrier {
    n: usize,
    /// Arrivals in this round.
    arrived: Mutex<usize>,
    notify: Notify,
}

/// What [`Barrier::wait`] returns.
#[derive(Debug, Clone)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this caller was the round's leader (exactly one per round).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` parties (`0` is taken as `1`: every wait returns
    /// at once, as the leader).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = fiber_runtime::sync::Barrier::new(1);
    /// assert!(b.blocking_wait().is_leader());
    /// ```
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n: n.max(1),
            arrived: Mutex::new(0),
            notify: Notify::new(),
        }
    }

    /// Waits until `n` parties have called `wait` in this round.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe (as tokio's): a caller counts as arrived from its
    /// first poll, so dropping the future before the round completes
    /// still counts it, and the round may complete one party short.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let b = fiber_runtime::sync::Barrier::new(1);
    ///     assert!(b.wait().await.is_leader());
    /// });
    /// ```
    pub async fn wait(&self) -> BarrierWaitResult {
        let notified = {
            let mut arrived = self.arrived.lock();
            *arrived += 1;
            if *arrived == self.n {
                *arrived = 0;
                drop(arrived);
                self.notify.notify_waiters();
                return BarrierWaitResult(true);
            }
            // Made before the leader's `notify_waiters`, so it sees it
            // even if that comes before the first poll.
            self.notify.notified()
        };
        notified.await;
        BarrierWaitResult(false)
    }

    /// Waits in blocking style: suspends a fiber, blocks a plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`wait`](Barrier::wait) there.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::Barrier;
    /// use std::sync::Arc;
    ///
    /// let b = Arc::new(Barrier::new(2));
    /// let b2 = b.clone();
    /// let t = std::thread::spawn(move || b2.blocking_wait().is_leader());
    /// let leader = b.blocking_wait().is_leader();
    /// assert!(leader != t.join().unwrap());
    /// ```
    #[track_caller]
    pub fn blocking_wait(&self) -> BarrierWaitResult {
        crate::wait::wait(
            self.wait(),
            "Barrier::blocking_wait",
            "`.await` `Barrier::wait`",
        )
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish()
    }
}
