//! The thread-local scheduler context: which runtime `spawn` goes to, and
//! the scheduler-local state of a worker (so wakes from it schedule
//! locally). Whether the thread drives a runtime, which blocking-style
//! calls consult, is kept by `crate::wait` (`enter_runtime` sets both).
//!
//! # Fibers
//!
//! The current runtime is per thread, but a fiber may change it
//! (`Handle::enter`) and suspend with the guard held: the code its worker
//! runs next must not see that change, and the fiber must see it again
//! when it resumes. So each fiber has its own view ([`FiberView`]),
//! swapped in around every run of the fiber by its poller (`fiber_enter`,
//! `fiber_leave`). That costs two branches, no thread-local access, while
//! the fiber leaves the current runtime alone: a change made while a
//! fiber runs marks that fiber's view (reached through its control block)
//! and keeps a copy of what its poller had, the first time.

use crate::fiber::context as fiber;
use crate::scheduler;
use crate::task_core::list::Refused;
use crate::wait::{self, DrivingGuard};
use std::cell::{Cell, RefCell};

/// The current runtime, and how many guards set it (so that guards are
/// dropped in reverse order).
#[derive(Clone, Default)]
pub(crate) struct Current {
    handle: Option<scheduler::Handle>,
    depth: u32,
}

impl Current {
    fn same_as(&self, other: &Current) -> bool {
        self.depth == other.depth
            && self.handle.as_ref().map(scheduler::Handle::id)
                == other.handle.as_ref().map(scheduler::Handle::id)
    }
}

struct Context {
    /// The runtime `spawn`, `Handle::current` and friends use.
    current: RefCell<Current>,
    /// The scheduler context of a worker (or of a current-thread
    /// `block_on`) while it runs.
    scheduler: Cell<*const scheduler::Context>,
    /// Inside `with_current`'s closure (which borrows `current`).
    in_with_current: Cell<bool>,
    /// Tasks refused meanwhile (`drop_refused`), dropped when the
    /// outermost `with_current` has let go of `current`.
    refused: RefCell<Vec<Refused>>,
}

impl Context {
    /// Called before every change of `current`: if a fiber runs, its view
    /// is marked, and keeps what its poller had (the first time).
    fn note_change(&self) {
        fiber::with_current(|cb| {
            let Some(cb) = cb else { return };
            let view = cb.view().cast::<FiberView>();
            if view.is_null() {
                return;
            }
            // SAFETY: the fiber's bridge set it before resuming it, and
            // only this thread, running the fiber, uses it now.
            let view = unsafe { &mut *view };
            if !view.touched {
                view.touched = true;
                let state = view.state.get_or_insert_with(Default::default);
                if state.poller.is_none() {
                    state.poller = Some(self.current.borrow().clone());
                }
            }
        });
    }
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            current: RefCell::new(Current { handle: None, depth: 0 }),
            scheduler: Cell::new(std::ptr::null()),
            in_with_current: Cell::new(false),
            refused: RefCell::new(Vec::new()),
        }
    };
}

/// A fiber's view of the current runtime, while it does not run (module
/// doc). Kept by the fiber's bridge; reached by `note_change` through the
/// fiber's control block while it runs. Small (a fiber that never enters
/// another runtime never allocates its state).
#[derive(Default)]
pub(crate) struct FiberView {
    state: Option<Box<ViewState>>,
    /// The current runtime changed during this run.
    touched: bool,
}

#[derive(Default)]
struct ViewState {
    /// The fiber's own view, if it differs from its poller's.
    own: Option<Current>,
    /// The poller's, while the fiber runs with its own swapped in, or
    /// once it changed the current runtime during this run.
    poller: Option<Current>,
}

/// Before a fiber runs (under a poll, or cancelled): swaps its own view
/// in, if it has one.
#[inline]
pub(crate) fn fiber_enter(view: &mut FiberView) {
    view.touched = false;
    let Some(state) = view.state.as_mut() else {
        return;
    };
    if let Some(own) = state.own.take() {
        let _ = CONTEXT.try_with(|c| {
            state.poller = Some(std::mem::replace(&mut *c.current.borrow_mut(), own));
        });
    }
}

/// After a fiber switched back: keeps its view if it differs from the
/// poller's, and gives the poller its own back.
#[inline]
pub(crate) fn fiber_leave(view: &mut FiberView) {
    let Some(state) = view.state.as_mut() else {
        // Neither swapped in nor changed: nothing to give back.
        return;
    };
    let Some(poller) = state.poller.take() else {
        return;
    };
    let _ = CONTEXT.try_with(|c| {
        let fiber = std::mem::replace(&mut *c.current.borrow_mut(), poller);
        let same = fiber.same_as(&c.current.borrow());
        state.own = (!same).then_some(fiber);
    });
}

/// Why there is no current runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRuntime {
    NoContext,
    ThreadLocalDestroyed,
}

/// Calls `f` with the current runtime's handle, without cloning it.
///
/// `f` runs while the context is borrowed, so what is dropped in it must
/// not set the context (dropping a runtime does): if there is no runtime,
/// `f` is dropped after the borrow ends, and a task that `f` spawns onto a
/// runtime that is shutting down is cancelled then too (`drop_refused`).
pub(crate) fn with_current<R>(f: impl FnOnce(&scheduler::Handle) -> R) -> Result<R, NoRuntime> {
    let mut f = Some(f);
    let r = CONTEXT.try_with(|c| {
        let outermost = !c.in_with_current.replace(true);
        let r = {
            // Declared before the borrow: resets after it ends, also on
            // unwind.
            let _reset = ResetFlag(&c.in_with_current, !outermost);
            let current = c.current.borrow();
            current
                .handle
                .as_ref()
                .map(|h| (f.take().expect("called once"))(h))
        };
        if outermost {
            // One at a time: a drop may spawn (and be refused) again.
            loop {
                let next = c.refused.borrow_mut().pop();
                match next {
                    Some(task) => drop(task),
                    None => break,
                }
            }
        }
        r
    });
    drop(f);
    match r {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(NoRuntime::NoContext),
        Err(_) => Err(NoRuntime::ThreadLocalDestroyed),
    }
}

/// Sets a flag back to `.1` when dropped.
struct ResetFlag<'a>(&'a Cell<bool>, bool);

impl Drop for ResetFlag<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Cancels a task its runtime refused (it shuts down): at once, or, inside
/// `with_current` (whose borrow the drop of its future must not meet),
/// when that returns.
pub(crate) fn drop_refused(task: Refused) {
    let mut task = Some(task);
    let _ = CONTEXT.try_with(|c| {
        if c.in_with_current.get() {
            c.refused.borrow_mut().extend(task.take());
        }
    });
    drop(task);
}

/// Restores the previous current handle when dropped.
pub(crate) struct SetCurrentGuard {
    prev: Option<scheduler::Handle>,
    /// The depth this guard set: guards are dropped in reverse order. (0:
    /// it set nothing, the thread's context being gone.)
    depth: u32,
}

/// Makes `handle` the current runtime of this thread until the guard
/// drops. (At thread exit, once the context is destroyed, it does
/// nothing.)
pub(crate) fn set_current(handle: &scheduler::Handle) -> SetCurrentGuard {
    CONTEXT
        .try_with(|c| {
            c.note_change();
            let mut cur = c.current.borrow_mut();
            cur.depth += 1;
            SetCurrentGuard {
                prev: cur.handle.replace(handle.clone()),
                depth: cur.depth,
            }
        })
        .unwrap_or(SetCurrentGuard {
            prev: None,
            depth: 0,
        })
}

impl Drop for SetCurrentGuard {
    fn drop(&mut self) {
        if self.depth == 0 {
            return;
        }
        let prev = self.prev.take();
        let in_order = CONTEXT
            .try_with(|c| {
                c.note_change();
                let mut cur = c.current.borrow_mut();
                let in_order = cur.depth == self.depth;
                cur.depth = self.depth - 1;
                cur.handle = prev;
                in_order
            })
            .unwrap_or(true);
        if !in_order && !std::thread::panicking() {
            panic!(
                "`EnterGuard`s were dropped out of order: guards returned by `Runtime::enter` \
                 and `Handle::enter` must be dropped in the reverse order of their creation"
            );
        }
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
        wait::refuse_nested_block_on()
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

/// Calls `f` with the io_uring of the core this thread drives, if it is a
/// worker of the multi-thread runtime `runtime_id` (`Common::id`) with
/// its core installed (inside a task's poll or a fiber) and the runtime
/// runs that driver. Current-thread cores keep their sockets on epoll for
/// now: their ring follows the core from thread to thread.
pub(crate) fn with_ring<R>(
    runtime_id: usize,
    f: impl FnOnce(&mut crate::uring::Ring) -> R,
) -> Option<R> {
    with_scheduler(|cx| match cx {
        Some(scheduler::Context::MultiThread(cx)) => cx.with_ring(runtime_id, f),
        _ => None,
    })
}

/// Calls `f` with this thread's scheduler context, if any.
#[inline]
pub(crate) fn with_scheduler<R>(f: impl FnOnce(Option<&scheduler::Context>) -> R) -> R {
    let ptr = CONTEXT
        .try_with(|c| c.scheduler.get())
        .unwrap_or(std::ptr::null());
    // SAFETY: the pointer is set only by `set_scheduler`, which borrows the
    // context for the whole time the pointer is installed and restores the
    // previous value before returning (also on unwind).
    f(unsafe { ptr.as_ref() })
}
