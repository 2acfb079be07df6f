//! Task ids: one per task and per fiber, from spawn to the end of its
//! memory, and the id of the task being polled on this thread.

use super::RawTask;
use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Identifies a task or a fiber; see [`JoinHandle::id`](crate::JoinHandle::id)
/// and [`task::id`](id).
///
/// Ids are unique among the tasks and fibers of the process: no two ever
/// get the same one. They are handed out in blocks per thread, so their
/// order says nothing about the order of spawns.
///
/// # Examples
///
/// ```
/// use fiber_runtime::task;
///
/// fiber_runtime::block_on(async {
///     let h = fiber_runtime::spawn(async { task::id().unwrap() });
///     let id = h.id();
///     assert_eq!(h.await.unwrap(), id);
///     println!("the task was {id}");
/// });
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(NonZeroU64);

impl Id {
    /// A fresh id.
    pub(crate) fn next() -> Id {
        /// Ids a thread takes from the global counter at a time, so that
        /// spawns on different workers do not share a cache line.
        const BLOCK: u64 = 1024;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            /// The rest of this thread's block: `[next, end)`.
            static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        let n = RANGE
            .try_with(|r| {
                let (next, end) = r.get();
                if next < end {
                    r.set((next + 1, end));
                    next
                } else {
                    let start = NEXT.fetch_add(BLOCK, Relaxed);
                    r.set((start + 1, start + BLOCK));
                    start
                }
            })
            .unwrap_or_else(|_| NEXT.fetch_add(1, Relaxed));
        Id(NonZeroU64::new(n).expect("task id counter wrapped"))
    }

    pub(crate) fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

/// The id of the task or fiber running this code; `None` outside any
/// (on a plain thread, or in `block_on`'s own future).
///
/// Inside a fiber this is the fiber's id, the same as its
/// `JoinHandle::id()`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::{fiber, task};
///
/// assert!(task::id().is_none());
/// fiber_runtime::block_on(async {
///     let h = fiber::spawn(|| task::id());
///     let id = h.id();
///     assert_eq!(h.await.unwrap(), Some(id));
/// });
/// ```
pub fn id() -> Option<Id> {
    let task = NonNull::new(super::coop::current_task().cast_mut())?;
    // The current task is alive (`coop::current_task`).
    Some(RawTask::from_raw(task).id())
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_threads() {
        let mut all: Vec<u64> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..3000).map(|_| Id::next().as_u64()).collect::<Vec<_>>())
            })
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn current_is_restored_after_a_nested_poll() {
        use crate::task_core::test_util::TestSched;
        use std::sync::Arc;

        assert_eq!(id(), None);
        let sched = Arc::new(TestSched::default());
        let (inner, inner_handle) = sched.spawn(async { id() });
        let (outer, outer_handle) = sched.spawn(async move {
            let before = id();
            inner.run(); // a nested poll of another task
            (before, id())
        });
        outer.run();
        let (outer_id, inner_id) = (outer_handle.id(), inner_handle.id());
        let (before, after) = futures::executor::block_on(outer_handle).unwrap();
        assert_eq!(before, Some(outer_id));
        assert_eq!(after, Some(outer_id));
        assert_eq!(
            futures::executor::block_on(inner_handle).unwrap(),
            Some(inner_id)
        );
        assert_eq!(id(), None);
    }
}
