//! `FiberFuture`: the bridge between a task and a fiber.
//!
//! Polling the task switches onto the fiber's stack; the fiber runs until
//! it finishes or waits on something not ready (`fiber::wait` polls that
//! future with the task's waker, then switches back, so the poll returns
//! `Pending`). Waking the task resumes the fiber where it stopped.
//!
//! # Protocol
//!
//! Values passed through `arch::resume` and `arch::suspend`:
//! - to the fiber: `RESUME` (go on) or `CANCEL` (unwind now);
//! - back to the poller: `SUSPENDED` (the fiber waits), `YIELDED` (it
//!   wants to run again after the others: the task asks to be requeued,
//!   `task::request_yield`) or `FINISHED`.
//!
//! # Safety
//!
//! 1. A fiber is resumed only on the thread that first resumed it (its
//!    owner): fibers are pinned to the worker of their first poll on the
//!    multi-thread scheduler (`PinnedSchedule`), and
//!    `poll` checks the thread. Its stack may hold `!Send` values and
//!    references to thread-locals, which stay valid only there.
//! 2. A suspended fiber is unwound on its owner thread: when its task is
//!    cancelled (the cancellation runs where the task is polled, i.e. the
//!    owner), and at runtime shutdown by the owner worker before it exits
//!    (`unwind_all_on_this_thread`). A suspended fiber dropped anywhere
//!    else is leaked: its stack, with its record and locals, is never
//!    freed, so the owner's `STARTED` entry stays valid.
//! 3. A started fiber's record (`Current`) lives at the top of its own
//!    stack: one address for the fiber's life, no allocation. Nothing on
//!    the fiber's stack points into its `FiberFuture` beyond the poll that
//!    set it (the closure slot, read on the first resumption; the poll's
//!    `Context`), so the future may move between polls.

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
/// Suspended by `yield_now`: the task is requeued without a wake.
const YIELDED: usize = 4;

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

/// A started fiber's record: what the poller, the fiber's own code
/// (through `CURRENT`), the shutdown unwinder (through `STARTED`) and the
/// overflow handler need. It lives at the top of the fiber's own stack,
/// so it costs no allocation, stays at one address for the fiber's life,
/// and is leaked together with the stack when the fiber must be (rule 2).
pub(crate) struct Current {
    pub(crate) id: FiberId,
    phase: Cell<Phase>,
    fiber_sp: Cell<*mut u8>,
    caller_sp: Cell<*mut u8>,
    /// The owner thread (`thread_token`).
    owner: std::thread::ThreadId,
    /// The context of the poll that resumed the fiber (null while it is
    /// not running under a poll).
    cx: Cell<*mut Context<'static>>,
    /// The runtime it belongs to, for shutdown unwinding.
    runtime_id: usize,
    /// Index in the owner thread's `STARTED` list (while started).
    started_index: Cell<usize>,
    /// The `FiberFuture`'s `Option<F>`, which the fiber takes when it
    /// starts (set for the first resumption only).
    func: *mut u8,
    /// Once finished: the fiber's `Option<Result<T, panic payload>>`, a
    /// local of its entry frame, on its own stack.
    result: Cell<*mut u8>,
    /// The guard page below the fiber's stack, and its name, for the
    /// stack overflow handler (`overflow.rs`).
    pub(crate) guard: (usize, usize),
    pub(crate) name: Option<(*const u8, usize)>,
}

/// What a finished fiber leaves on its stack.
type FiberResult<T> = Option<Result<T, Box<dyn Any + Send>>>;

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
    /// Started, unfinished fibers owned by this thread.
    static STARTED: RefCell<Vec<*const Current>> = const { RefCell::new(Vec::new()) };
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

/// Unwinds every fiber of runtime `runtime_id` suspended on this thread
/// (runtime shutdown, from the owner worker before it exits).
pub(crate) fn unwind_all_on_this_thread(runtime_id: usize) {
    loop {
        let next = STARTED.with(|s| {
            let mut s = s.borrow_mut();
            // SAFETY: registered fibers are alive (rule 3) and not running
            // (only the running one could be, and it is not calling this).
            let i = s
                .iter()
                .rposition(|&f| unsafe { (*f).runtime_id } == runtime_id)?;
            let f = s.swap_remove(i);
            if let Some(&moved) = s.get(i) {
                // SAFETY: as above.
                unsafe { (*moved).started_index.set(i) };
            }
            Some(f)
        });
        let Some(f) = next else { break };
        // SAFETY: registered fibers are alive (their task is alive until
        // the runtime finalizes, after this), suspended and owned by this
        // thread (only the owner registers a fiber in its list).
        unsafe { (*f).unwind() };
    }
}

/// Removes a fiber from this thread's `STARTED` list in O(1): it knows
/// its index, and the entry moved into its place learns its new one.
fn unregister(ptr: *const Current, index: usize) {
    let _ = STARTED.try_with(|s| {
        let mut s = s.borrow_mut();
        if index < s.len() && s[index] == ptr {
            s.swap_remove(index);
            if let Some(&moved) = s.get(index) {
                // SAFETY: registered fibers are alive and not running (the
                // caller is the poller of, or the fiber being removed).
                unsafe { (*moved).started_index.set(index) };
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
#[inline]
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
        // The context changes at every resumption.
        let cx = self.cx.get();
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
        self.switch_out(SUSPENDED);
    }

    /// Lets the other tasks of this worker run, then goes on.
    ///
    /// Inlined into the caller (with `fiber::yield_now`), so that a fiber
    /// looping over yields returns from no function between its switches:
    /// a `ret` on the fiber's side would pop the return address the
    /// resumer's `call` pushed on the CPU's return predictor, and
    /// mispredict.
    #[inline]
    pub(crate) fn yield_now(&self) {
        if self.cx.get().is_null() {
            // Being cancelled (a destructor yields): there is no poll to
            // return to, so there is nothing to yield to.
            return;
        }
        self.switch_out(YIELDED);
    }

    #[inline]
    fn switch_out(&self, code: usize) {
        // SAFETY: we run on this fiber's stack; the poller waits at
        // `caller_sp` (rule 1).
        let back = unsafe { arch::suspend(self.caller_sp.as_ptr(), code) };
        if back == CANCEL {
            panic::resume_unwind(Box::new(ForcedUnwind));
        }
    }

    /// Resumes the fiber with `code`; returns what it switched back with.
    ///
    /// # Safety
    ///
    /// On the owner thread, not running, its `FiberFuture` alive.
    unsafe fn resume(&self, code: usize) -> usize {
        let prev = CURRENT.with(|c| c.replace(Some(self)));
        self.phase.set(Phase::Running);
        // SAFETY: the fiber's stack is alive and suspended at `fiber_sp`
        // (or freshly laid out), and we are its owner thread.
        let (back, sp) =
            unsafe { arch::resume(self.fiber_sp.get(), self.caller_sp.as_ptr(), code) };
        self.fiber_sp.set(sp);
        CURRENT.with(|c| c.set(prev));
        self.phase.set(if back == FINISHED {
            Phase::Finished
        } else {
            Phase::Suspended
        });
        back
    }

    /// Forced unwind of a suspended fiber: resumes it with `CANCEL`, which
    /// makes its suspension point panic with `ForcedUnwind` up to its entry.
    ///
    /// # Safety
    ///
    /// As `resume`.
    unsafe fn unwind(&self) {
        if self.phase.get() == Phase::Suspended {
            // SAFETY: the caller's contract.
            let back = unsafe { self.resume(CANCEL) };
            debug_assert_eq!(back, FINISHED, "a cancelled fiber kept running");
        }
    }
}

/// The fiber's entry point, on its own stack; `data` is its `Current`.
unsafe extern "C" fn entry<F: FnOnce() -> T, T>(_code: usize, data: *mut u8) -> ! {
    let this = data.cast_const().cast::<Current>();
    // SAFETY: `data` is the record at the top of our stack (alive while we
    // run); on this first resumption its `func` points to the closure slot
    // of the `FiberFuture` being polled (rule 3).
    let func = unsafe { (*(*this).func.cast::<Option<F>>()).take() };
    let func = func.expect("fiber started twice");
    let mut result: FiberResult<T> = Some(panic::catch_unwind(AssertUnwindSafe(func)));
    // SAFETY: as above. `result` stays on this frame, which never returns,
    // until the poller takes it: the stack outlives the switch.
    unsafe {
        (*this).result.set((&raw mut result).cast());
        arch::suspend((*this).caller_sp.as_ptr(), FINISHED);
    }
    unreachable!("a finished fiber was resumed");
}

/// The future of a fiber's task.
pub(crate) struct FiberFuture<F, T> {
    /// The closure, until the fiber starts (and takes it).
    func: Option<F>,
    /// Null until the fiber starts and after it finished and gave its
    /// stack back; in between, its record at the top of `stack`.
    current: *const Current,
    /// Taken from the owner thread's pool when the fiber first runs, so a
    /// fiber queued but not started holds no stack (and the stack comes
    /// from, and returns to, the pool of the thread that runs it).
    stack: Option<Stack>,
    stack_size: usize,
    id: FiberId,
    /// For the stack overflow message.
    name: Option<String>,
    runtime_id: usize,
    /// The runtime's count of live fibers, decremented on drop.
    alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _result: std::marker::PhantomData<fn() -> T>,
}

// No pointer into a `FiberFuture` outlives the poll that made it (the
// closure slot is read during the first resumption only), so it may move
// between polls.
impl<F, T> Unpin for FiberFuture<F, T> {}

// SAFETY: a `FiberFuture` moves between threads only before its fiber
// starts (the closure is `Send`); once started it is only resumed on its
// owner thread (rule 1), and dropped off it only as a leak (rule 2).
// `T: Send` covers the result.
unsafe impl<F: Send, T: Send> Send for FiberFuture<F, T> {}

impl<F: FnOnce() -> T + Send + 'static, T: Send + 'static> FiberFuture<F, T> {
    pub(crate) fn new(
        func: F,
        stack_size: usize,
        id: FiberId,
        name: Option<String>,
        runtime_id: usize,
        alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> FiberFuture<F, T> {
        alive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        FiberFuture {
            func: Some(func),
            current: std::ptr::null(),
            stack: None,
            stack_size,
            id,
            name,
            runtime_id,
            alive,
            _result: std::marker::PhantomData,
        }
    }

    /// First run: takes a stack from this thread's pool, writes the
    /// fiber's record at its top, lays out the entry below it, and
    /// registers the fiber as owned by this thread.
    fn start(&mut self, owner: std::thread::ThreadId) {
        let stack = match alloc_stack(self.stack_size) {
            Ok(stack) => stack,
            // The task completes with a `JoinError` carrying the message
            // (which names the limit); nothing was started.
            Err(e) => {
                panic::resume_unwind(Box::new(format!("the fiber could not get a stack: {e}")))
            }
        };
        let top = stack.top() as usize;
        let at = (top - std::mem::size_of::<Current>()) & !(CURRENT_ALIGN - 1);
        let record = Current {
            id: self.id,
            phase: Cell::new(Phase::NotStarted),
            fiber_sp: Cell::new(std::ptr::null_mut()),
            caller_sp: Cell::new(std::ptr::null_mut()),
            owner,
            cx: Cell::new(std::ptr::null_mut()),
            runtime_id: self.runtime_id,
            started_index: Cell::new(usize::MAX),
            func: (&raw mut self.func).cast(),
            result: Cell::new(std::ptr::null_mut()),
            guard: stack.guard_range(),
            name: self.name.as_ref().map(|n| (n.as_ptr(), n.len())),
        };
        let at = at as *mut Current;
        // SAFETY: the top of a stack from the pool, which nothing else
        // uses, aligned for `Current`; the fiber's frames start below it.
        let current = unsafe {
            at.write(record);
            let sp = arch::init_stack(at.cast(), entry::<F, T>, at.cast());
            (*at).fiber_sp.set(sp);
            &*at
        };
        STARTED.with(|s| {
            let mut s = s.borrow_mut();
            current.started_index.set(s.len());
            s.push(current);
        });
        self.stack = Some(stack);
        self.current = current;
    }

    /// The fiber finished: takes its result off its stack, unregisters it
    /// and gives the stack back.
    fn finish(&mut self) -> Result<T, Box<dyn Any + Send>> {
        // SAFETY: `current` is the live record of our finished fiber, and
        // its `result` points to its entry frame's `FiberResult<T>`, on the
        // stack we still hold.
        let result = unsafe {
            let current = &*self.current;
            unregister(current, current.started_index.get());
            (*current.result.get().cast::<FiberResult<T>>()).take()
        };
        self.current = std::ptr::null();
        if let Some(stack) = self.stack.take() {
            free_stack(stack);
        }
        result.expect("finished fiber without a result")
    }
}

/// `Current` sits 16-byte aligned at the top of the stack, and the fiber's
/// frames start right below it.
const CURRENT_ALIGN: usize = if std::mem::align_of::<Current>() > 16 {
    std::mem::align_of::<Current>()
} else {
    16
};

impl<F: FnOnce() -> T + Send + 'static, T: Send + 'static> Future for FiberFuture<F, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let me = thread_token();
        if this.current.is_null() {
            this.start(me);
        }
        // SAFETY: started above or earlier, and not finished (a finished
        // fiber's task is never polled again).
        let current = unsafe { &*this.current };
        assert_eq!(
            current.owner, me,
            "fiber-runtime bug: a fiber was polled on a thread other than its own"
        );
        // Erase the context's lifetime: it is used only while this poll
        // runs the fiber (rule 3).
        current.cx.set((cx as *mut Context<'_>).cast());
        // SAFETY: owner thread, not running (we hold the task's RUNNING),
        // and `this` is alive.
        let back = unsafe { current.resume(RESUME) };
        current.cx.set(std::ptr::null_mut());
        if back == SUSPENDED {
            return Poll::Pending;
        }
        if back == YIELDED {
            // This future is its task's top-level future, as
            // `request_yield` requires.
            crate::task::request_yield();
            return Poll::Pending;
        }
        match this.finish() {
            Ok(v) => Poll::Ready(v),
            // Re-raised inside the task poll: the task's `JoinError`
            // carries it.
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

impl<F, T> Drop for FiberFuture<F, T> {
    fn drop(&mut self) {
        // SAFETY: non-null means started and not given back: the record
        // at the top of our stack is alive.
        if let Some(current) = unsafe { self.current.as_ref() } {
            match current.phase.get() {
                Phase::Suspended if current.owner == thread_token() => {
                    unregister(current, current.started_index.get());
                    // Forced unwind: run the fiber's destructors on its
                    // own thread.
                    // SAFETY: owner thread, suspended, and `self` alive.
                    unsafe { current.unwind() };
                }
                Phase::Suspended => {
                    // Cannot unwind it here (rule 2): leak its stack, with
                    // the record and locals on it (the owner's `STARTED`
                    // list may still point at the record), and the name
                    // the record points to. (Its other pointer into this
                    // future, the closure slot, is read on the first
                    // resumption only.)
                    std::mem::forget(self.stack.take());
                    std::mem::forget(self.name.take());
                }
                Phase::Running => unreachable!("a running fiber's future was dropped"),
                Phase::NotStarted | Phase::Finished => {}
            }
            if current.phase.get() == Phase::Finished {
                // Unwound (here or by the shutdown unwinder, which also
                // unregistered it): drop what it left on its stack (a
                // `ForcedUnwind` payload) before the stack goes back.
                // SAFETY: as in `finish`.
                drop(unsafe { (*current.result.get().cast::<FiberResult<T>>()).take() });
            }
        }
        if let Some(stack) = self.stack.take() {
            free_stack(stack);
        }
        self.alive
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // A closure never run drops with the fields.
    }
}
