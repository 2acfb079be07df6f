//! The thread-local scheduler context: which runtime `spawn` goes to, and
//! the scheduler-local state of a worker (so wakes from it schedule
//! locally). Whether the thread drives a runtime, which blocking-style
//! calls consult, is kept by `crate::wait` (`enter_runtime` sets both).

use crate::scheduler;
use crate::wait::{self, DrivingGuard};
use std::cell::{Cell, RefCell};

struct Context {
    /// The runtime `spawn`, `Handle::current` and friends use.
    current: RefCell<Option<scheduler::Handle>>,
    /// The scheduler context of a worker (or of a current-thread
    /// `block_on`) while it runs.
    scheduler: Cell<*const scheduler::Context>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            current: RefCell::new(None),
            scheduler: Cell::new(std::ptr::null()),
        }
    };
}

/// Why there is no current runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRuntime {
    NoContext,
    ThreadLocalDestroyed,
}

/// Calls `f` with the current runtime's handle, without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(&scheduler::Handle) -> R) -> Result<R, NoRuntime> {
    match CONTEXT.try_with(|c| c.current.borrow().as_ref().map(f)) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(NoRuntime::NoContext),
        Err(_) => Err(NoRuntime::ThreadLocalDestroyed),
    }
}

/// Restores the previous current handle when dropped.
pub(crate) struct SetCurrentGuard {
    prev: Option<scheduler::Handle>,
}

/// Makes `handle` the current runtime of this thread until the guard drops.
pub(crate) fn set_current(handle: &scheduler::Handle) -> SetCurrentGuard {
    let prev = CONTEXT.with(|c| c.current.borrow_mut().replace(handle.clone()));
    SetCurrentGuard { prev }
}

impl Drop for SetCurrentGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CONTEXT.try_with(|c| *c.current.borrow_mut() = prev);
    }
}

/// Marks the thread as driving a runtime until dropped.
pub(crate) struct EnterRuntimeGuard {
    _current: SetCurrentGuard,
    _driving: DrivingGuard,
}

/// Enters `handle` as a driving thread (worker or `block_on`).
///
/// # Panics
///
/// Panics if the thread already drives a runtime: blocking it in a nested
/// `block_on` would stall the tasks of the outer one.
#[track_caller]
pub(crate) fn enter_runtime(handle: &scheduler::Handle) -> EnterRuntimeGuard {
    let Some(driving) = wait::enter_driving() else {
        panic!(
            "cannot start a runtime from within a runtime: `block_on` was called on a thread \
             that is already driving async tasks; `.await` the future instead, or use \
             `spawn_blocking` to run blocking code"
        );
    };
    EnterRuntimeGuard {
        _current: set_current(handle),
        _driving: driving,
    }
}

/// Runs `f` with `cx` as this thread's scheduler context.
pub(crate) fn set_scheduler<R>(cx: &scheduler::Context, f: impl FnOnce() -> R) -> R {
    struct Reset(*const scheduler::Context);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CONTEXT.try_with(|c| c.scheduler.set(self.0));
        }
    }
    let prev = CONTEXT.with(|c| c.scheduler.replace(cx));
    let _reset = Reset(prev);
    f()
}

/// The index of the worker this thread is, if it is one.
pub(crate) fn worker_index() -> Option<usize> {
    with_scheduler(|cx| match cx {
        Some(scheduler::Context::MultiThread(cx)) => Some(cx.index()),
        _ => None,
    })
}

/// Calls `f` with this thread's scheduler context, if any.
pub(crate) fn with_scheduler<R>(f: impl FnOnce(Option<&scheduler::Context>) -> R) -> R {
    let ptr = CONTEXT
        .try_with(|c| c.scheduler.get())
        .unwrap_or(std::ptr::null());
    // SAFETY: the pointer is set only by `set_scheduler`, which borrows the
    // context for the whole time the pointer is installed and restores the
    // previous value before returning (also on unwind).
    f(unsafe { ptr.as_ref() })
}
