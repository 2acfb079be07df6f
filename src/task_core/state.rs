//! The task state word: one `AtomicU32` holding the lifecycle flags in its
//! low bits and the reference count above them.
//!
//! Every transition is a single atomic read-modify-write; each returns a
//! `#[must_use]` value telling the caller what it now owns and must do. The
//! rules for who may touch which field under which bit are in `task/mod.rs`.

use crate::loom::{AtomicU32, Ordering::*};
use std::fmt;

/// The task is being polled (or cancelled) by exactly one thread, which owns
/// the stage. Set by `transition_to_running`/`transition_to_shutdown`; cleared
/// by `transition_to_idle` or `transition_to_complete`. Excludes a second
/// poll.
const RUNNING: u32 = 1 << 0;

/// The future has been dropped and the output (or the cancellation/panic
/// error) is in the stage. Never cleared. Excludes `RUNNING`.
const COMPLETE: u32 = 1 << 1;

/// The task has been submitted to a run queue, and that queue entry holds one
/// reference (a `Notified`). Set by wakers and `abort`; cleared when a worker
/// starts polling it. While set, further wakes are no-ops.
const NOTIFIED: u32 = 1 << 2;

/// `abort()` or shutdown asked for the task to be cancelled; the next thread
/// to own `RUNNING` drops the future instead of polling it.
const CANCELLED: u32 = 1 << 3;

/// A `JoinHandle` exists. While set, the output belongs to the `JoinHandle`;
/// once cleared, whoever completes the task drops the output.
const JOIN_INTEREST: u32 = 1 << 4;

/// The trailer holds the `JoinHandle`'s waker. While set (and the task is not
/// complete) only the runtime may read the waker; while clear, only the
/// `JoinHandle` may write it.
const JOIN_WAKER: u32 = 1 << 5;

const LIFECYCLE_MASK: u32 = RUNNING | COMPLETE;
const REF_SHIFT: u32 = 6;
const REF_ONE: u32 = 1 << REF_SHIFT;
/// The reference count: bits 6..32, so at most 2^26 (67M) references at
/// once, as tokio has on 32-bit targets; going past it aborts like `Arc`.
/// A 32-bit word leaves room in the header for the owned-list slot
/// (`core.rs`), keeping the header at 16 bytes.
const REF_MASK: u32 = !(REF_ONE - 1);
const MAX_REFS: u32 = REF_MASK >> REF_SHIFT;

/// A new task: three references (the owned-task list, the `JoinHandle`, and
/// the first run-queue entry), a `JoinHandle`, and already notified because
/// spawning submits it.
const INITIAL_STATE: u32 = (REF_ONE * 3) | JOIN_INTEREST | NOTIFIED;

pub(crate) struct State {
    val: AtomicU32,
}

/// A copy of the state word at one instant.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot(u32);

#[must_use]
pub(crate) enum TransitionToRunning {
    /// The caller owns `RUNNING` and must poll the future.
    Success,
    /// The caller owns `RUNNING` but must cancel the future.
    Cancelled,
    /// The task was running or complete; the caller's reference was dropped.
    Failed,
    /// As `Failed`, and that was the last reference: deallocate.
    Dealloc,
}

#[must_use]
pub(crate) enum TransitionToIdle {
    /// Released `RUNNING` and the caller's reference.
    Ok,
    /// Woken during the poll: the caller's reference now belongs to a new
    /// `Notified` that it must submit.
    OkNotified,
    /// As `Ok`, and that was the last reference: deallocate.
    OkDealloc,
    /// Aborted during the poll: the caller still owns `RUNNING` and must
    /// cancel the future.
    Cancelled,
}

#[must_use]
pub(crate) enum TransitionToNotifiedByVal {
    DoNothing,
    /// The waker's reference now belongs to a `Notified` to submit.
    Submit,
    Dealloc,
}

#[must_use]
pub(crate) enum TransitionToNotifiedByRef {
    DoNothing,
    /// A new reference was taken for a `Notified` to submit.
    Submit,
}

#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransitionToTerminal {
    /// Other references remain.
    Keep,
    /// Those were the last references: deallocate.
    Dealloc,
}

#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransitionToNotifiedAndCancel {
    /// Marked (or already marked, or complete): nothing to submit.
    DoNothing,
    /// A new reference was taken for a `Notified` to submit, so that a
    /// worker cancels the idle task.
    Submit,
}

#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransitionToShutdown {
    /// The task was idle: the caller owns `RUNNING` and must cancel and
    /// complete it.
    Cancel,
    /// It is running (its poller sees `CANCELLED`) or complete: the caller
    /// only drops its reference.
    Skip,
}

#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DropJoinHandleFast {
    /// Dropped the `JoinHandle`'s interest and reference.
    Done,
    /// The state was not the initial one: take the slow path.
    Slow,
}

impl State {
    pub(crate) fn new() -> State {
        State {
            val: AtomicU32::new(INITIAL_STATE),
        }
    }

    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.val.load(Acquire))
    }

    /// Runs a CAS loop: `f` returns the new word and a result, or `None` to
    /// leave the word unchanged.
    fn fetch_update_action<T>(&self, mut f: impl FnMut(Snapshot) -> (T, Option<Snapshot>)) -> T {
        let mut curr = self.load();
        loop {
            let (output, next) = f(curr);
            let Some(next) = next else { return output };
            match self
                .val
                .compare_exchange_weak(curr.0, next.0, AcqRel, Acquire)
            {
                Ok(_) => return output,
                Err(actual) => curr = Snapshot(actual),
            }
        }
    }

    fn fetch_update(
        &self,
        mut f: impl FnMut(Snapshot) -> Option<Snapshot>,
    ) -> Result<Snapshot, Snapshot> {
        let mut curr = self.load();
        loop {
            let Some(next) = f(curr) else {
                return Err(curr);
            };
            match self
                .val
                .compare_exchange_weak(curr.0, next.0, AcqRel, Acquire)
            {
                Ok(_) => return Ok(next),
                Err(actual) => curr = Snapshot(actual),
            }
        }
    }

    /// A worker popped the task's `Notified` and wants to poll it.
    pub(crate) fn transition_to_running(&self) -> TransitionToRunning {
        self.fetch_update_action(|curr| {
            debug_assert!(curr.is_notified(), "polled a task that was not notified");
            let mut next = curr;
            if !curr.is_idle() {
                // Someone else runs it or it is done: the queue entry's
                // reference is simply dropped.
                next.ref_dec();
                let action = if next.ref_count() == 0 {
                    TransitionToRunning::Dealloc
                } else {
                    TransitionToRunning::Failed
                };
                return (action, Some(next));
            }
            next.0 |= RUNNING;
            next.0 &= !NOTIFIED;
            let action = if next.is_cancelled() {
                TransitionToRunning::Cancelled
            } else {
                TransitionToRunning::Success
            };
            (action, Some(next))
        })
    }

    /// The poll returned `Pending`.
    pub(crate) fn transition_to_idle(&self) -> TransitionToIdle {
        self.fetch_update_action(|curr| {
            debug_assert!(curr.is_running());
            if curr.is_cancelled() {
                return (TransitionToIdle::Cancelled, None);
            }
            let mut next = curr;
            next.0 &= !RUNNING;
            let action = if next.is_notified() {
                // Keep our reference: it moves into the new `Notified`.
                TransitionToIdle::OkNotified
            } else {
                next.ref_dec();
                if next.ref_count() == 0 {
                    TransitionToIdle::OkDealloc
                } else {
                    TransitionToIdle::Ok
                }
            };
            (action, Some(next))
        })
    }

    /// The future finished (or was cancelled) and the output is stored.
    /// Returns the snapshot after the transition.
    pub(crate) fn transition_to_complete(&self) -> Snapshot {
        const DELTA: u32 = RUNNING | COMPLETE;
        let prev = Snapshot(self.val.fetch_xor(DELTA, AcqRel));
        debug_assert!(prev.is_running() && !prev.is_complete());
        Snapshot(prev.0 ^ DELTA)
    }

    /// Drops `count` references after completion.
    pub(crate) fn transition_to_terminal(&self, count: u32) -> TransitionToTerminal {
        let prev = Snapshot(self.val.fetch_sub(count * REF_ONE, AcqRel));
        assert!(
            prev.ref_count() >= count,
            "task reference count underflow: {} < {}",
            prev.ref_count(),
            count
        );
        if prev.ref_count() == count {
            TransitionToTerminal::Dealloc
        } else {
            TransitionToTerminal::Keep
        }
    }

    /// A waker consumed by `wake()`.
    pub(crate) fn transition_to_notified_by_val(&self) -> TransitionToNotifiedByVal {
        self.fetch_update_action(|curr| {
            let mut next = curr;
            let action = if curr.is_running() {
                // The poller will see NOTIFIED and resubmit; drop the waker's
                // reference (the poller holds its own).
                next.0 |= NOTIFIED;
                next.ref_dec();
                debug_assert!(next.ref_count() > 0);
                TransitionToNotifiedByVal::DoNothing
            } else if curr.is_complete() || curr.is_notified() {
                next.ref_dec();
                if next.ref_count() == 0 {
                    TransitionToNotifiedByVal::Dealloc
                } else {
                    TransitionToNotifiedByVal::DoNothing
                }
            } else {
                // The waker's reference becomes the queue entry's.
                next.0 |= NOTIFIED;
                TransitionToNotifiedByVal::Submit
            };
            (action, Some(next))
        })
    }

    /// `wake_by_ref()`.
    pub(crate) fn transition_to_notified_by_ref(&self) -> TransitionToNotifiedByRef {
        self.fetch_update_action(|curr| {
            let mut next = curr;
            if curr.is_complete() || curr.is_notified() {
                (TransitionToNotifiedByRef::DoNothing, None)
            } else if curr.is_running() {
                next.0 |= NOTIFIED;
                (TransitionToNotifiedByRef::DoNothing, Some(next))
            } else {
                next.0 |= NOTIFIED;
                next.ref_inc();
                (TransitionToNotifiedByRef::Submit, Some(next))
            }
        })
    }

    /// `abort()`: marks the task cancelled.
    pub(crate) fn transition_to_notified_and_cancel(&self) -> TransitionToNotifiedAndCancel {
        use TransitionToNotifiedAndCancel::*;
        self.fetch_update_action(|curr| {
            let mut next = curr;
            if curr.is_cancelled() || curr.is_complete() {
                (DoNothing, None)
            } else if curr.is_running() {
                // The poller sees CANCELLED when the poll returns.
                next.0 |= NOTIFIED | CANCELLED;
                (DoNothing, Some(next))
            } else if curr.is_notified() {
                // Already queued: the worker that pops it cancels it.
                next.0 |= CANCELLED;
                (DoNothing, Some(next))
            } else {
                next.0 |= CANCELLED | NOTIFIED;
                next.ref_inc();
                (Submit, Some(next))
            }
        })
    }

    /// Runtime shutdown: marks the task cancelled and, if it is idle,
    /// claims `RUNNING` for the caller.
    pub(crate) fn transition_to_shutdown(&self) -> TransitionToShutdown {
        self.fetch_update_action(|curr| {
            let mut next = curr;
            next.0 |= CANCELLED;
            if curr.is_idle() {
                next.0 |= RUNNING;
                (TransitionToShutdown::Cancel, Some(next))
            } else {
                (TransitionToShutdown::Skip, Some(next))
            }
        })
    }

    /// Fast path of dropping a `JoinHandle` right after spawn.
    pub(crate) fn drop_join_handle_fast(&self) -> DropJoinHandleFast {
        match self.val.compare_exchange_weak(
            INITIAL_STATE,
            (INITIAL_STATE - REF_ONE) & !JOIN_INTEREST,
            Release,
            Relaxed,
        ) {
            Ok(_) => DropJoinHandleFast::Done,
            Err(_) => DropJoinHandleFast::Slow,
        }
    }

    /// The `JoinHandle` is dropped. Before completion, it clears
    /// `JOIN_INTEREST` and `JOIN_WAKER` together (the completing thread
    /// then drops the output and never reads the waker, which is the
    /// caller's to drop at once); after, it changes nothing (the output is
    /// the caller's to drop; the waker goes with the task's memory).
    /// Returns the snapshot before.
    pub(crate) fn transition_to_join_handle_dropped(&self) -> Snapshot {
        self.fetch_update_action(|curr| {
            debug_assert!(curr.is_join_interested());
            if curr.is_complete() {
                return (curr, None);
            }
            (curr, Some(Snapshot(curr.0 & !(JOIN_INTEREST | JOIN_WAKER))))
        })
    }

    /// Publishes the join waker just written to the trailer. Fails if the
    /// task completed meanwhile.
    pub(crate) fn set_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.fetch_update(|curr| {
            debug_assert!(curr.is_join_interested() && !curr.is_join_waker_set());
            if curr.is_complete() {
                return None;
            }
            Some(Snapshot(curr.0 | JOIN_WAKER))
        })
    }

    /// Takes the join waker back so the `JoinHandle` may replace it. Fails
    /// if the task completed meanwhile.
    pub(crate) fn unset_waker(&self) -> Result<Snapshot, Snapshot> {
        self.fetch_update(|curr| {
            debug_assert!(curr.is_join_interested() && curr.is_join_waker_set());
            if curr.is_complete() {
                return None;
            }
            Some(Snapshot(curr.0 & !JOIN_WAKER))
        })
    }

    pub(crate) fn ref_inc(&self) {
        let prev = Snapshot(self.val.fetch_add(REF_ONE, Relaxed));
        // Like `Arc`: an overflow would be a use-after-free later; abort.
        if prev.ref_count() >= MAX_REFS - 1 {
            std::process::abort();
        }
    }

    /// Returns `true` if this was the last reference.
    pub(crate) fn ref_dec(&self) -> bool {
        let prev = Snapshot(self.val.fetch_sub(REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= 1);
        prev.ref_count() == 1
    }
}

impl Snapshot {
    pub(crate) fn is_idle(self) -> bool {
        self.0 & LIFECYCLE_MASK == 0
    }
    pub(crate) fn is_running(self) -> bool {
        self.0 & RUNNING != 0
    }
    pub(crate) fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }
    pub(crate) fn is_notified(self) -> bool {
        self.0 & NOTIFIED != 0
    }
    pub(crate) fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }
    pub(crate) fn is_join_interested(self) -> bool {
        self.0 & JOIN_INTEREST != 0
    }
    pub(crate) fn is_join_waker_set(self) -> bool {
        self.0 & JOIN_WAKER != 0
    }
    pub(crate) fn ref_count(self) -> u32 {
        (self.0 & REF_MASK) >> REF_SHIFT
    }
    fn ref_inc(&mut self) {
        self.0 += REF_ONE;
    }
    fn ref_dec(&mut self) {
        debug_assert!(self.ref_count() > 0);
        self.0 -= REF_ONE;
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.load().fmt(f)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("notified", &self.is_notified())
            .field("cancelled", &self.is_cancelled())
            .field("join_interested", &self.is_join_interested())
            .field("join_waker", &self.is_join_waker_set())
            .field("refs", &self.ref_count())
            .finish()
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn initial_state_is_three_refs_notified_with_join_interest() {
        let s = State::new().load();
        assert_eq!(s.ref_count(), 3);
        assert!(s.is_notified() && s.is_join_interested() && s.is_idle());
        assert!(!s.is_join_waker_set() && !s.is_cancelled());
    }

    #[test]
    fn wake_while_running_is_resubmitted_at_idle() {
        let s = State::new();
        assert!(matches!(
            s.transition_to_running(),
            TransitionToRunning::Success
        ));
        s.ref_inc(); // a waker
        assert!(matches!(
            s.transition_to_notified_by_val(),
            TransitionToNotifiedByVal::DoNothing
        ));
        assert!(matches!(
            s.transition_to_idle(),
            TransitionToIdle::OkNotified
        ));
        assert_eq!(s.load().ref_count(), 3);
    }

    #[test]
    fn abort_of_idle_task_submits_it() {
        let s = State::new();
        assert!(matches!(
            s.transition_to_running(),
            TransitionToRunning::Success
        ));
        assert!(matches!(s.transition_to_idle(), TransitionToIdle::Ok));
        assert_eq!(s.load().ref_count(), 2);
        assert_eq!(
            s.transition_to_notified_and_cancel(),
            TransitionToNotifiedAndCancel::Submit
        );
        assert_eq!(
            s.transition_to_notified_and_cancel(),
            TransitionToNotifiedAndCancel::DoNothing
        );
        assert!(matches!(
            s.transition_to_running(),
            TransitionToRunning::Cancelled
        ));
    }
}
