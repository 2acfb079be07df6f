//! Cooperative scheduling budget, and the task being polled.
//!
//! A task whose future keeps finding its resources ready (a `JoinHandle`
//! of a finished task, later a socket with data or an expired timer)
//! could run forever inside one poll and starve the other tasks of its
//! worker. Each task poll therefore gets a budget of `BUDGET` ready
//! operations; when a runtime resource finds it exhausted, it wakes the
//! task and returns `Pending` instead, so the task yields to the back of
//! the queue and resumes with a fresh budget.
//!
//! The same thread-local names the task being polled (for `task::id()`),
//! so that a poll sets up its thread state with one access and restores
//! it with one more.

use super::core::Header;
use std::cell::Cell;
use std::ptr;
use std::task::{Context, Poll};

/// Ready operations per task poll (tokio uses the same figure).
const BUDGET: u8 = 128;

/// The budget of a poll that was already refused once: still exhausted,
/// but its forced yield is counted (once per poll, not per refusal).
const EXHAUSTED_COUNTED: u8 = u8::MAX;

/// What a task poll sets on its thread.
struct PollState {
    /// `None` outside a task poll: unconstrained.
    budget: Cell<Option<u8>>,
    /// The task being polled or cancelled (null: none).
    task: Cell<*const Header>,
    /// Polls on this thread that the budget forced to yield, since the
    /// scheduler last took the count (`take_forced_yields`).
    forced_yields: Cell<u64>,
}

thread_local! {
    static CURRENT: PollState = const {
        PollState {
            budget: Cell::new(None),
            task: Cell::new(ptr::null()),
            forced_yields: Cell::new(0),
        }
    };
}

/// Puts back what a poll replaced.
struct Reset {
    budget: Option<u8>,
    task: *const Header,
}

impl Drop for Reset {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| {
            c.budget.set(self.budget);
            c.task.set(self.task);
        });
    }
}

/// Runs `f` (one poll of `task`) with a fresh budget and `task` as the
/// current task.
#[inline]
pub(crate) fn budget<R>(task: *const Header, f: impl FnOnce() -> R) -> R {
    let _reset = CURRENT
        .try_with(|c| Reset {
            budget: c.budget.replace(Some(BUDGET)),
            task: c.task.replace(task),
        })
        .ok();
    f()
}

/// Runs `f` (the cancellation of `task`, which drops its future) with
/// `task` as the current task; the budget is left as it is.
pub(crate) fn with_task<R>(task: *const Header, f: impl FnOnce() -> R) -> R {
    let _reset = CURRENT
        .try_with(|c| Reset {
            budget: c.budget.get(),
            task: c.task.replace(task),
        })
        .ok();
    f()
}

/// The task being polled or cancelled on this thread (null: none). It is
/// alive while it is current: its poller or canceller holds a reference.
pub(crate) fn current_task() -> *const Header {
    CURRENT.try_with(|c| c.task.get()).unwrap_or(ptr::null())
}

/// Runs `f` without a budget (blocking closures: they may wait on many
/// `JoinHandle`s in a row and never yield, so a budget would never refill).
pub(crate) fn unconstrained<R>(f: impl FnOnce() -> R) -> R {
    let _reset = CURRENT
        .try_with(|c| Reset {
            budget: c.budget.replace(None),
            task: c.task.get(),
        })
        .ok();
    f()
}

/// Called by a resource about to return `Ready`: spends one unit, or, if
/// the budget is exhausted, wakes the task and returns `Pending`.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let exhausted = CURRENT
        .try_with(|c| match c.budget.get() {
            None => false,
            Some(0) => {
                c.budget.set(Some(EXHAUSTED_COUNTED));
                c.forced_yields.set(c.forced_yields.get() + 1);
                true
            }
            Some(EXHAUSTED_COUNTED) => true,
            Some(n) => {
                c.budget.set(Some(n - 1));
                false
            }
        })
        .unwrap_or(false);
    if exhausted {
        cx.waker().wake_by_ref();
        Poll::Pending
    } else {
        Poll::Ready(())
    }
}

/// Gives back the unit spent by `poll_proceed` when the resource turned
/// out not ready after all (only progress costs budget).
#[inline]
pub(crate) fn refund() {
    let _ = CURRENT.try_with(|c| {
        if let Some(n) = c.budget.get().filter(|&n| n != EXHAUSTED_COUNTED) {
            c.budget.set(Some(n.saturating_add(1).min(BUDGET)));
        }
    });
}

/// Takes (and resets) the number of polls on this thread that the budget
/// forced to yield: the scheduler adds it to its worker's metrics when it
/// publishes them.
pub(crate) fn take_forced_yields() -> u64 {
    CURRENT
        .try_with(|c| c.forced_yields.replace(0))
        .unwrap_or(0)
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn budget_runs_out_after_128_ready_operations() {
        let mut cx = Context::from_waker(Waker::noop());
        budget(ptr::null(), || {
            for _ in 0..BUDGET {
                assert!(poll_proceed(&mut cx).is_ready());
            }
            assert!(poll_proceed(&mut cx).is_pending());
            // Refused again in the same poll: still one forced yield.
            assert!(poll_proceed(&mut cx).is_pending());
            refund();
            assert!(poll_proceed(&mut cx).is_pending());
        });
        assert_eq!(take_forced_yields(), 1);
        assert_eq!(take_forced_yields(), 0);
        // Outside a task poll there is no limit.
        for _ in 0..1000 {
            assert!(poll_proceed(&mut cx).is_ready());
        }
    }
}
