//! Cooperative scheduling budget.
//!
//! A task whose future keeps finding its resources ready (a `JoinHandle`
//! of a finished task, later a socket with data or an expired timer)
//! could run forever inside one poll and starve the other tasks of its
//! worker. Each task poll therefore gets a budget of `BUDGET` ready
//! operations; when a runtime resource finds it exhausted, it wakes the
//! task and returns `Pending` instead, so the task yields to the back of
//! the queue and resumes with a fresh budget.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Ready operations per task poll (tokio uses the same figure).
const BUDGET: u8 = 128;

thread_local! {
    /// `None` outside a task poll: unconstrained.
    static CURRENT: Cell<Option<u8>> = const { Cell::new(None) };
}

/// Runs `f` (one task poll) with a fresh budget.
#[inline]
pub(crate) fn budget<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(Option<u8>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|c| c.set(self.0));
        }
    }
    let prev = CURRENT
        .try_with(|c| c.replace(Some(BUDGET)))
        .unwrap_or(None);
    let _reset = Reset(prev);
    f()
}

/// Runs `f` without a budget (blocking closures: they may wait on many
/// `JoinHandle`s in a row and never yield, so a budget would never refill).
pub(crate) fn unconstrained<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(Option<u8>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|c| c.set(self.0));
        }
    }
    let prev = CURRENT.try_with(|c| c.replace(None)).unwrap_or(None);
    let _reset = Reset(prev);
    f()
}

/// Called by a resource about to return `Ready`: spends one unit, or, if
/// the budget is exhausted, wakes the task and returns `Pending`.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let exhausted = CURRENT
        .try_with(|c| match c.get() {
            None => false,
            Some(0) => true,
            Some(n) => {
                c.set(Some(n - 1));
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
        if let Some(n) = c.get() {
            c.set(Some(n.saturating_add(1).min(BUDGET)));
        }
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn budget_runs_out_after_128_ready_operations() {
        let mut cx = Context::from_waker(Waker::noop());
        budget(|| {
            for _ in 0..BUDGET {
                assert!(poll_proceed(&mut cx).is_ready());
            }
            assert!(poll_proceed(&mut cx).is_pending());
        });
        // Outside a task poll there is no limit.
        for _ in 0..1000 {
            assert!(poll_proceed(&mut cx).is_ready());
        }
    }
}
