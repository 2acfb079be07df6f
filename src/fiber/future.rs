//! `FiberFuture`: the bridge between a task and a fiber.
//!
//! Polling the task switches onto the fiber's stack; the fiber runs until
//! it finishes or waits on something not ready (`fiber::wait` polls that
//! future with the task's waker, then switches back, so the poll returns
//! `Pending`). Waking the task resumes the fiber where it stopped.
//!
//! # Safety
//!
//! 1. A fiber is resumed only on its owner thread (`context.rs`, rule 1):
//!    a fiber task is pinned to the worker of its first poll on the
//!    multi-thread scheduler (`PinnedSchedule`), a current-thread runtime
//!    is driven only by the thread of its started fibers, and `poll`
//!    checks the thread.
//! 2. A suspended fiber is unwound on its owner thread: when its task is
//!    cancelled (the cancellation runs where the task is polled, i.e. the
//!    owner), and at runtime shutdown by the owner worker before it exits
//!    (`pool::cancel_all`). A suspended fiber dropped anywhere else, or
//!    one that would not unwind, is leaked: its stack, with its control
//!    block and locals, is never freed, so the owner's registry entry (if
//!    any) stays valid.
//! 3. Nothing on the fiber's stack points into its `FiberFuture` beyond
//!    the poll that set it (the closure slot, read on the first
//!    resumption; the poll's `Context`), so the future may move between
//!    polls.

use super::context::{self, Cancel, ControlBlock, Init, Phase};
use super::pool;
use super::stack::Stack;
use crate::scheduler::context::{self as thread_context, FiberView};
use crate::util::thread_token;
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a finished fiber leaves on its stack.
type FiberResult<T> = Option<Result<T, Box<dyn Any + Send>>>;

/// The future of a fiber's task.
pub(crate) struct FiberFuture<F, T> {
    /// The closure, until the fiber starts (and takes it).
    func: Option<F>,
    /// Null until the fiber starts and after it finished and gave its
    /// stack back; in between, its control block at the top of `stack`.
    cb: *const ControlBlock,
    /// Taken from the owner thread's pool when the fiber first runs, so a
    /// fiber queued but not started holds no stack (and the stack comes
    /// from, and returns to, the pool of the thread that runs it).
    stack: Option<Stack>,
    stack_size: usize,
    /// For the stack overflow message.
    name: Option<String>,
    runtime_id: usize,
    /// The fiber's own current runtime while it is suspended, if it set
    /// another (`scheduler/context.rs`, "Fibers").
    view: FiberView,
    _result: std::marker::PhantomData<fn() -> T>,
}

// No pointer into a `FiberFuture` outlives the poll that made it (rule 3),
// so it may move between polls.
impl<F, T> Unpin for FiberFuture<F, T> {}

// SAFETY: a `FiberFuture` moves between threads only before its fiber
// starts (the closure is `Send`); once started it is only resumed on its
// owner thread (rule 1), and dropped off it only as a leak (rule 2).
// `T: Send` covers the result.
unsafe impl<F: Send, T: Send> Send for FiberFuture<F, T> {}

/// The fiber's entry point, on its own stack; `data` is its control block.
///
/// # Safety
///
/// Called only by the first `resume` of a stack laid out by
/// `ControlBlock::init` with this function, whose `FiberFuture<F, T>` is
/// being polled (its closure slot is `func`).
unsafe extern "C" fn entry<F: FnOnce() -> T, T>(_code: usize, data: *mut u8) -> ! {
    // SAFETY: `data` is the control block at the top of our stack (alive
    // while we run); on this first resumption its `func` points to the
    // closure slot of the `FiberFuture` being polled (rule 3).
    let cb = unsafe { &*data.cast_const().cast::<ControlBlock>() };
    cb.started();
    // SAFETY: as above.
    let func = unsafe { (*cb.func.cast::<Option<F>>()).take() };
    let func = func.expect("fiber started twice");
    let mut result: FiberResult<T> = Some(panic::catch_unwind(AssertUnwindSafe(func)));
    // Its `fiber_local!` values go with it, still on the fiber (their
    // destructors may wait); a panic there is the fiber's if it had none.
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| cb.drop_locals()))
        && matches!(result, Some(Ok(_)))
    {
        result = Some(Err(payload));
    }
    // SAFETY: we are done; `result` stays on this frame, which never
    // returns, until the poller takes it.
    unsafe { cb.finish((&raw mut result).cast()) }
}

impl<F: FnOnce() -> T + Send + 'static, T: Send + 'static> FiberFuture<F, T> {
    pub(crate) fn new(
        func: F,
        stack_size: usize,
        name: Option<String>,
        runtime_id: usize,
    ) -> FiberFuture<F, T> {
        FiberFuture {
            func: Some(func),
            cb: std::ptr::null(),
            stack: None,
            stack_size,
            name,
            runtime_id,
            view: FiberView::default(),
            _result: std::marker::PhantomData,
        }
    }

    /// First run: takes a stack from this thread's pool, writes the
    /// fiber's control block at its top (with its first frame below), and
    /// registers the fiber as owned by this thread.
    fn start(&mut self, owner: u64) {
        let stack = match pool::alloc_stack(self.stack_size) {
            Ok(stack) => stack,
            // The task completes with a `JoinError` carrying the message
            // (which names the limit); nothing was started.
            Err(e) => panic::resume_unwind(crate::task_core::fiber_panic(Box::new(format!(
                "the fiber could not get a stack: {e}"
            )))),
        };
        let top = stack.top() as usize;
        let at = (top - std::mem::size_of::<ControlBlock>()) & !(CB_ALIGN - 1);
        let init = Init {
            switch_view,
            // Its task's id: `start` runs in the task's first poll.
            id: crate::task_core::id().map_or(0, |id| id.as_u64()),
            owner,
            runtime_id: self.runtime_id,
            func: (&raw mut self.func).cast(),
            guard: stack.guard_range(),
            name: self.name.as_ref().map(|n| (n.as_ptr(), n.len())),
            stack_top: top,
            stack_baseline: stack.baseline(),
        };
        // SAFETY: the top of a stack from the pool, which nothing else
        // uses, aligned for a `ControlBlock` and at 16 bytes.
        let cb = unsafe { ControlBlock::init(at as *mut ControlBlock, init, entry::<F, T>) };
        pool::register(cb);
        self.stack = Some(stack);
        self.cb = cb;
    }

    /// The fiber finished: takes its result off its stack, unregisters it
    /// and gives the stack back.
    fn finish(&mut self) -> Result<T, Box<dyn Any + Send>> {
        // SAFETY: `cb` is the live control block of our finished fiber,
        // and its `result` points to its entry frame's `FiberResult<T>`,
        // on the stack we still hold.
        let result = unsafe {
            let cb = &*self.cb;
            pool::unregister(cb);
            (*cb.result.get().cast::<FiberResult<T>>()).take()
        };
        self.cb = std::ptr::null();
        if let Some(stack) = self.stack.take() {
            pool::free_stack(stack);
        }
        result.expect("finished fiber without a result")
    }
}

/// The bridge's `SwitchView`, for a cancellation.
///
/// # Safety
///
/// `view` is the `FiberView` of a live `FiberFuture` (set at its last poll).
unsafe fn switch_view(view: *mut (), entering: bool) {
    // SAFETY: the caller's contract; nothing else uses the view while the
    // fiber is being cancelled.
    let view = unsafe { &mut *view.cast::<FiberView>() };
    if entering {
        thread_context::fiber_enter(view);
    } else {
        thread_context::fiber_leave(view);
    }
}

/// The control block sits 16-byte aligned at the top of the stack, and
/// the fiber's frames start right below it.
const CB_ALIGN: usize = if std::mem::align_of::<ControlBlock>() > 16 {
    std::mem::align_of::<ControlBlock>()
} else {
    16
};

impl<F: FnOnce() -> T + Send + 'static, T: Send + 'static> std::future::Future
    for FiberFuture<F, T>
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let me = thread_token();
        if this.cb.is_null() {
            this.start(me);
        }
        // SAFETY: started above or earlier, and not finished (a finished
        // fiber's task is never polled again).
        let cb = unsafe { &*this.cb };
        assert_eq!(
            cb.owner, me,
            "fiber-runtime bug: a fiber was polled on a thread other than its own"
        );
        // What the thread keeps for the code running on it is the fiber's
        // while it runs: the current runtime (swapped only if the fiber
        // set its own); the coop budget is the poll's, and the panic count
        // cannot differ (a fiber never switches out while unwinding).
        cb.set_view((&raw mut this.view).cast());
        thread_context::fiber_enter(&mut this.view);
        // SAFETY: owner thread, not running (we hold the task's RUNNING),
        // alive; `cx` outlives the call.
        let back = unsafe { cb.resume(context::RESUME, cx) };
        thread_context::fiber_leave(&mut this.view);
        if back == context::SUSPENDED {
            return Poll::Pending;
        }
        if back == context::YIELDED {
            // This future is its task's top-level future, as
            // `request_yield` requires (with the feature "tracing", inside
            // its span's wrapper only, which polls it at every poll).
            crate::task_core::request_yield();
            return Poll::Pending;
        }
        match this.finish() {
            Ok(v) => Poll::Ready(v),
            // Re-raised inside the task poll: the task's `JoinError`
            // carries it, and names the fiber.
            Err(payload) => panic::resume_unwind(crate::task_core::fiber_panic(payload)),
        }
    }
}

impl<F, T> Drop for FiberFuture<F, T> {
    fn drop(&mut self) {
        // SAFETY: non-null means started and not given back: the control
        // block at the top of our stack is alive.
        if let Some(cb) = unsafe { self.cb.as_ref() } {
            if cb.phase() == Phase::Suspended && cb.owner == thread_token() {
                pool::unregister(cb);
                // Forced unwind: run the fiber's destructors on its own
                // thread.
                // SAFETY: owner thread, suspended, alive.
                if unsafe { cb.cancel() } == Cancel::GaveUp {
                    pool::report_gave_up(cb);
                }
            }
            match cb.phase() {
                Phase::Suspended | Phase::Abandoned => {
                    // Cannot be unwound here, or would not unwind (rule
                    // 2): leak its stack, with the control block and
                    // locals on it (the owner's registry may still point
                    // at it), and the name it points to. (Its other
                    // pointer into this future, the closure slot, is read
                    // on the first resumption only.)
                    std::mem::forget(self.stack.take());
                    std::mem::forget(self.name.take());
                }
                Phase::Running => unreachable!("a running fiber's future was dropped"),
                Phase::Finished => {
                    // Unwound (here or by the shutdown canceller, which
                    // also unregistered it): drop what it left on its
                    // stack (a `ForcedUnwind` payload) before the stack
                    // goes back.
                    // SAFETY: as in `finish`.
                    drop(unsafe { (*cb.result.get().cast::<FiberResult<T>>()).take() });
                }
                Phase::NotStarted => {}
            }
        }
        if let Some(stack) = self.stack.take() {
            pool::free_stack(stack);
        }
        // A closure never run drops with the fields.
    }
}
