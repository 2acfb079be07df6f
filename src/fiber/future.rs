//! `FiberFuture`: the bridge between a task and a fiber.
//!
//! Polling the task switches onto the fiber's stack; the fiber runs until
//! it finishes or waits on something not ready (`fiber::wait` polls that
//! future with the task's waker, then switches back, so the poll returns
//! `Pending`). Waking the task resumes the fiber where it stopped.
//!
//! # Protocol
//!
//! Values passed through `switch`:
//! - to the fiber: `RESUME` (go on) or `CANCEL` (unwind now);
//! - back to the poller: `SUSPENDED` (the fiber waits) or `FINISHED`.
//!
//! # Safety
//!
//! 1. A fiber is resumed only on the thread that first resumed it (its
//!    owner): fibers are pinned tasks on the multi-thread scheduler, and
//!    `poll` checks the thread. Its stack may hold `!Send` values and
//!    references to thread-locals, which stay valid only there.
//! 2. A suspended fiber is unwound on its owner thread: when its task is
//!    cancelled (the cancellation runs where the task is polled, i.e. the
//!    owner), and at runtime shutdown by the owner worker before it exits
//!    (`unwind_all_on_this_thread`). A suspended fiber dropped anywhere
//!    else is leaked (stack and locals), never resumed.
//! 3. `FiberInner` lives in a `Box` that the `FiberFuture` owns; its
//!    address is stable while the fiber runs and is only used while the
//!    task is alive.

use super::arch;
use super::stack::{Stack, StackPool};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

const RESUME: usize = 0;
const CANCEL: usize = 1;
const SUSPENDED: usize = 2;
const FINISHED: usize = 3;

/// The payload of the forced unwind of a cancelled fiber.
pub(crate) struct ForcedUnwind;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    NotStarted,
    Suspended,
    Running,
    Finished,
}

/// Identifies a fiber; see [`crate::fiber::current`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiberId(pub(crate) u64);

/// State shared by the poller and the fiber (see the module doc).
pub(crate) struct FiberInner<T> {
    /// For the stack overflow message.
    name: Option<String>,
    phase: Phase,
    /// The closure, until the fiber starts.
    func: Option<Box<dyn FnOnce() -> T + Send>>,
    result: Option<Result<T, Box<dyn Any + Send>>>,
    stack: Option<Stack>,
    fiber_sp: *mut u8,
    caller_sp: *mut u8,
    /// The owner thread (`thread_token`).
    owner: Option<std::thread::ThreadId>,
    /// The context of the poll that resumed the fiber (valid while it runs).
    cx: *mut Context<'static>,
    /// The runtime it belongs to, for shutdown unwinding.
    runtime_id: usize,
    /// Index in the owner thread's `STARTED` list (while started).
    started_index: usize,
    /// The runtime's count of live fibers, decremented on drop.
    alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// What the fiber's own code reaches through `CURRENT`. It lives here,
    /// in the boxed `FiberInner`, not on the stack of the poll that
    /// resumes the fiber: a suspended fiber resumes under a later poll, and
    /// the earlier poll's frame is gone by then.
    current: Current,
}

/// What `fiber::wait` and friends need of the running fiber.
pub(crate) struct Current {
    pub(crate) id: FiberId,
    cx: *mut Context<'static>,
    fiber_sp: *mut *mut u8,
    caller_sp: *mut *mut u8,
    /// The guard page below the fiber's stack, and its name, for the
    /// stack overflow handler (`overflow.rs`).
    pub(crate) guard: (usize, usize),
    pub(crate) name: Option<(*const u8, usize)>,
}

/// The current thread's id, cached: `std::thread::current()` would clone
/// an `Arc` on every resumption. (Ids are never reused, unlike addresses.)
fn thread_token() -> std::thread::ThreadId {
    thread_local! {
        static ID: Cell<Option<std::thread::ThreadId>> = const { Cell::new(None) };
    }
    ID.with(|c| match c.get() {
        Some(id) => id,
        None => {
            let id = std::thread::current().id();
            c.set(Some(id));
            id
        }
    })
}

thread_local! {
    /// The fiber running on this thread, if any.
    static CURRENT: Cell<Option<*const Current>> = const { Cell::new(None) };
    /// Stacks for fibers of this thread, one pool per stack size.
    static POOL: RefCell<Option<Vec<StackPool>>> = const { RefCell::new(None) };
    /// Started, unfinished fibers owned by this thread: (runtime, unwinder).
    static STARTED: RefCell<Vec<(usize, *mut dyn Unwind)>> = const { RefCell::new(Vec::new()) };
}

/// Stacks retained per thread pool with their pages.
const POOL_RETAIN: usize = 1024;

/// A stack of `size` usable bytes from this thread's pool for that size.
pub(crate) fn alloc_stack(size: usize) -> std::io::Result<Stack> {
    POOL.with(|p| {
        let mut pools = p.borrow_mut();
        let pools = pools.get_or_insert_with(Vec::new);
        let i = match pools.iter().position(|pool| pool.serves(size)) {
            Some(i) => i,
            None => {
                pools.push(StackPool::new(size, POOL_RETAIN));
                pools.len() - 1
            }
        };
        pools[i].alloc()
    })
}

/// Gives back the pages of this thread's surplus free stacks (the thread
/// is about to idle).
pub(crate) fn trim_stack_pools() {
    let _ = POOL.try_with(|p| {
        if let Ok(mut pools) = p.try_borrow_mut() {
            if let Some(pools) = pools.as_mut() {
                pools.iter_mut().for_each(StackPool::trim);
            }
        }
    });
}

fn free_stack(stack: Stack) {
    // At thread exit the pool is gone: the stack is simply dropped.
    let _ = POOL.try_with(|p| {
        if let Some(pools) = p.borrow_mut().as_mut() {
            if let Some(pool) = pools.iter_mut().find(|pool| pool.accepts(&stack)) {
                pool.free(stack);
            }
        }
    });
}

/// Type-erased access to a fiber for shutdown unwinding.
trait Unwind {
    fn unwind(&mut self);
    /// Records the fiber's index in the thread's `STARTED` list.
    fn set_started_index(&mut self, i: usize);
}

impl<T> Unwind for FiberInner<T> {
    fn set_started_index(&mut self, i: usize) {
        self.started_index = i;
    }

    fn unwind(&mut self) {
        if self.phase == Phase::Suspended {
            // We are on the owner thread: only the owner registers a fiber
            // in its thread-local list.
            self.unwind_any();
        }
    }
}

/// Unwinds every fiber of runtime `runtime_id` suspended on this thread
/// (runtime shutdown, from the owner worker before it exits).
pub(crate) fn unwind_all_on_this_thread(runtime_id: usize) {
    loop {
        let next = STARTED.with(|s| {
            let mut s = s.borrow_mut();
            let i = s.iter().rposition(|(rt, _)| *rt == runtime_id)?;
            let (_, f) = s.swap_remove(i);
            if let Some((_, moved)) = s.get(i) {
                // SAFETY: registered fibers are alive and not running.
                unsafe { (**moved).set_started_index(i) };
            }
            Some(f)
        });
        let Some(f) = next else { break };
        // SAFETY: registered fibers are alive (their task is alive until
        // the runtime finalizes, after this) and not running.
        unsafe { (*f).unwind() };
    }
}

/// Removes a fiber from this thread's `STARTED` list in O(1): it knows
/// its index, and the entry moved into its place learns its new one.
fn unregister(ptr: *mut dyn Unwind, index: usize) {
    let _ = STARTED.try_with(|s| {
        let mut s = s.borrow_mut();
        if index < s.len() && std::ptr::addr_eq(s[index].1, ptr) {
            s.swap_remove(index);
            if let Some((_, moved)) = s.get(index) {
                // SAFETY: registered fibers are alive and not running (only
                // the running one, us, calls this).
                unsafe { (**moved).set_started_index(index) };
            }
        }
    });
}

/// As `current`, from a signal handler: `try_with` (no lazy init, no
/// panic) on a `const`-initialised thread-local.
pub(crate) fn current_for_signal() -> Option<&'static Current> {
    let p = CURRENT.try_with(|c| c.get()).ok().flatten()?;
    // SAFETY: as in `current`.
    Some(unsafe { &*p })
}

/// The running fiber, if this thread is running one.
pub(crate) fn current() -> Option<&'static Current> {
    // SAFETY: the pointer is set by `resume` for exactly the time the
    // fiber runs, on this thread.
    CURRENT.with(|c| c.get()).map(|p| unsafe { &*p })
}

impl Current {
    /// Polls `fut` with the task's waker until ready, suspending the fiber
    /// while it is pending.
    pub(crate) fn wait<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            // SAFETY: `cx` is the context of the poll that resumed us,
            // alive while we run (rule 3).
            let cx = unsafe { &mut *self.cx_now() };
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return v;
            }
            self.suspend();
        }
    }

    fn cx_now(&self) -> *mut Context<'static> {
        // The context changes at every resumption: read it through the
        // fiber's `FiberInner`, whose field `cx` this points to.
        // SAFETY: `self.cx` points into the live `FiberInner` (rule 3).
        let cx = unsafe { *(self.cx as *const *mut Context<'static>) };
        if cx.is_null() {
            // Only while the fiber is being cancelled (a destructor waits).
            panic!(
                "a fiber cannot wait while it is being cancelled (in a destructor run by abort or shutdown)"
            );
        }
        cx
    }

    /// Switches back to the poller; returns when resumed. Unwinds the
    /// fiber if it is being cancelled.
    pub(crate) fn suspend(&self) {
        // SAFETY: we run on this fiber's stack; the poller waits at
        // `caller_sp` (rule 1).
        let code = unsafe { arch::switch(self.fiber_sp, *self.caller_sp, SUSPENDED) };
        if code == CANCEL {
            panic::resume_unwind(Box::new(ForcedUnwind));
        }
    }
}

impl<T: Send + 'static> FiberInner<T> {
    /// The fiber's entry point, on its own stack.
    unsafe extern "C" fn entry(_code: usize, data: *mut u8) -> ! {
        let this = data.cast::<FiberInner<T>>();
        // SAFETY: `data` is the `FiberInner` that resumed us; it outlives
        // the fiber (rule 3), and only this fiber touches `func`/`result`
        // while it runs.
        unsafe {
            let func = (*this).func.take().expect("fiber started twice");
            let result = panic::catch_unwind(AssertUnwindSafe(func));
            (*this).result = Some(result);
            arch::switch(&raw mut (*this).fiber_sp, (*this).caller_sp, FINISHED);
        }
        unreachable!("a finished fiber was resumed");
    }
}

/// The future of a fiber's task.
pub(crate) struct FiberFuture<T: 'static> {
    /// Dropped by hand: a suspended fiber dropped off its owner thread is
    /// leaked whole, because that thread's `STARTED` list still points at
    /// it (and may unwind it there later).
    inner: std::mem::ManuallyDrop<Box<FiberInner<T>>>,
}

// SAFETY: a `FiberFuture` moves between threads only before its fiber
// starts (the closure is `Send`); once started it is only resumed on its
// owner thread (rule 1). `T: Send` covers the result.
unsafe impl<T: Send> Send for FiberFuture<T> {}

impl<T: Send + 'static> FiberFuture<T> {
    pub(crate) fn new(
        func: Box<dyn FnOnce() -> T + Send>,
        stack: Stack,
        id: FiberId,
        name: Option<String>,
        runtime_id: usize,
        alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> FiberFuture<T> {
        alive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut inner = Box::new(FiberInner {
            name,
            phase: Phase::NotStarted,
            func: Some(func),
            result: None,
            stack: None,
            fiber_sp: std::ptr::null_mut(),
            caller_sp: std::ptr::null_mut(),
            owner: None,
            cx: std::ptr::null_mut(),
            runtime_id,
            started_index: usize::MAX,
            alive,
            current: Current {
                id,
                cx: std::ptr::null_mut(),
                fiber_sp: std::ptr::null_mut(),
                caller_sp: std::ptr::null_mut(),
                guard: stack.guard_range(),
                name: None,
            },
        });
        // Now that `inner` has its final (heap) address, point `current`
        // at its fields.
        inner.current.cx = (&raw mut inner.cx).cast();
        inner.current.fiber_sp = &raw mut inner.fiber_sp;
        inner.current.caller_sp = &raw mut inner.caller_sp;
        inner.current.name = inner.name.as_ref().map(|n| (n.as_ptr(), n.len()));
        let data = (&raw mut *inner).cast::<u8>();
        // SAFETY: a fresh stack from the pool, used by nothing else.
        inner.fiber_sp = unsafe { arch::init_stack(stack.top(), FiberInner::<T>::entry, data) };
        inner.stack = Some(stack);
        FiberFuture {
            inner: std::mem::ManuallyDrop::new(inner),
        }
    }
}

impl<T: Send + 'static> Future for FiberFuture<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let inner: &mut FiberInner<T> = &mut self.inner;
        let me = thread_token();
        match inner.owner {
            None => {
                inner.owner = Some(me);
                let p: *mut dyn Unwind = &raw mut *inner;
                STARTED.with(|s| {
                    let mut s = s.borrow_mut();
                    inner.started_index = s.len();
                    s.push((inner.runtime_id, p));
                });
            }
            Some(owner) => assert_eq!(
                owner, me,
                "fiber-runtime bug: a fiber was polled on a thread other than its own"
            ),
        }
        // Erase the context's lifetime: it is used only while this poll
        // runs the fiber (rule 3).
        inner.cx = (cx as *mut Context<'_>).cast();
        // SAFETY: owner thread, not running (we hold the task's RUNNING).
        let back = unsafe { inner.resume(RESUME) };
        inner.cx = std::ptr::null_mut();
        if back == SUSPENDED {
            return Poll::Pending;
        }
        let p: *mut dyn Unwind = &raw mut *inner;
        unregister(p, inner.started_index);
        if let Some(stack) = inner.stack.take() {
            free_stack(stack);
        }
        match inner
            .result
            .take()
            .expect("finished fiber without a result")
        {
            Ok(v) => Poll::Ready(v),
            // Re-raised inside the task poll: the task's `JoinError`
            // carries it.
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

impl<T: 'static> Drop for FiberFuture<T> {
    fn drop(&mut self) {
        let inner: &mut FiberInner<T> = &mut self.inner;
        match inner.phase {
            Phase::Suspended => {
                if inner.owner == Some(thread_token()) {
                    let p: *mut dyn Unwind = &raw mut *inner;
                    unregister(p, inner.started_index);
                    // Forced unwind: run the fiber's destructors on its
                    // own thread.
                    inner.unwind_any();
                } else {
                    // Cannot unwind it here (rule 2): leak it whole, stack
                    // and state (`inner` is never dropped).
                    inner
                        .alive
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
            Phase::Running => unreachable!("a running fiber's future was dropped"),
            Phase::NotStarted | Phase::Finished => {}
        }
        if let Some(stack) = inner.stack.take() {
            free_stack(stack);
        }
        // A `ForcedUnwind` result (or an output nobody took) drops here.
        drop(inner.result.take());
        inner
            .alive
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: dropped once, here; the fiber is not running and no
        // thread's `STARTED` list points at it any more (it was never
        // started, finished and unregistered, or unwound and unregistered).
        unsafe { std::mem::ManuallyDrop::drop(&mut self.inner) };
    }
}

impl<T> FiberInner<T> {
    /// Resumes the fiber with `code`; returns what it switched back with.
    ///
    /// # Safety
    ///
    /// On the owner thread (or the first resumption), not running.
    unsafe fn resume(&mut self, code: usize) -> usize {
        let prev = CURRENT.with(|c| c.replace(Some(&raw const self.current)));
        self.phase = Phase::Running;
        // SAFETY: the fiber's stack is alive and suspended at `fiber_sp`
        // (or freshly laid out), and we are its owner thread.
        let back = unsafe { arch::switch(&raw mut self.caller_sp, self.fiber_sp, code) };
        CURRENT.with(|c| c.set(prev));
        self.phase = if back == FINISHED {
            Phase::Finished
        } else {
            Phase::Suspended
        };
        back
    }

    /// Forced unwind of a suspended fiber: resumes it with `CANCEL`, which
    /// makes its suspension point panic with `ForcedUnwind` up to its entry.
    /// The caller is on the owner thread.
    fn unwind_any(&mut self) {
        // SAFETY: owner thread (the caller's contract), suspended fiber.
        let back = unsafe { self.resume(CANCEL) };
        debug_assert_eq!(back, FINISHED, "a cancelled fiber kept running");
    }
}
