//! A started fiber's control block, and switching to and from it:
//! `resume` (the poller's side), `suspend`/`yield_now`/`wait` (the
//! fiber's side), and the forced unwind that cancels it.
//!
//! # Protocol
//!
//! Values passed through `arch::resume` and `arch::suspend`:
//! - to the fiber: `RESUME` (go on), `CANCEL` (unwind now) or `CAPTURE`
//!   (take a backtrace of yourself and come straight back);
//! - back to the poller: `SUSPENDED` (the fiber waits), `YIELDED` (it
//!   wants to run again after the others) or `FINISHED`; back to a
//!   capturer: `CAPTURED`.
//!
//! # Backtraces of suspended fibers
//!
//! A dump wants the stack of every suspended fiber, which only the fiber's
//! own stack can be walked for (an unwinder starts from the frame it runs
//! in). So [`ControlBlock::capture`], on the owner thread, switches to the
//! fiber with `CAPTURE` instead of `RESUME`: the fiber's suspension point
//! (`switch_out`) takes `Backtrace::force_capture()` right there, on its
//! own stack (the walk ends at the trampoline, whose return address is
//! undefined in its CFI), stores it in the control block and switches
//! straight back with `CAPTURED`, still inside the same suspension point.
//! No code of the fiber's runs, and none of what `resume` swaps for a real
//! run is touched: the task-local scopes and spans stay swapped out, the
//! current runtime and the coop budget stay the capturer's, the fiber's
//! `cx` stays null and its phase `Suspended`; the panic count is not
//! touched (the capture cannot unwind: a panic inside it is caught next to
//! it). Only `CURRENT` names the fiber meanwhile, for the stack overflow
//! handler's message. A fiber with less than `CAPTURE_HEADROOM` bytes of
//! stack left below its suspension point is not walked (the unwinder's
//! frames would hit the guard page).
//!
//! # Cancellation
//!
//! A suspended fiber is cancelled by resuming it with `CANCEL`: its
//! suspension point raises [`ForcedUnwind`], which unwinds its stack up
//! to its entry, running every destructor on the way, on its own thread.
//! While a cancellation is under way (`cancelling`):
//!
//! 1. a destructor that waits runs while its thread is unwinding, so the
//!    wait blocks the thread instead of suspending (`crate::wait`);
//!    `yield_now` does nothing;
//! 2. a fiber that catches the unwind and reaches another suspension
//!    point switches back to the canceller, which raises it again there;
//!    after `MAX_CANCEL_ATTEMPTS` the canceller gives up on it: the fiber
//!    stays suspended for good and its owner leaks it (`Cancel::GaveUp`),
//!    which is safe: nothing ever runs on or frees that stack again.
//!
//! # Safety
//!
//! 1. A fiber is resumed only on the thread that first resumed it (its
//!    owner, `owner`), never while it runs. Its stack may hold `!Send`
//!    values and references to thread-locals, valid only there.
//! 2. The control block lives at the top of the fiber's own stack, so it
//!    is alive exactly as long as that stack is not given back; whoever
//!    holds a `&ControlBlock` holds it within that time (the fiber itself
//!    while it runs; its poller, canceller or registry while it is
//!    started and not given back).
//! 3. `cx` is set by `resume` to the context of the poll that resumes the
//!    fiber and cleared when the fiber switches back: the fiber uses it
//!    only while it runs under that poll.

use super::arch;
#[cfg(fiber_runtime_asan)]
use super::asan;
use crate::task_core::local_scopes;
use std::cell::Cell;
use std::future::Future;
use std::panic;
use std::task::{Context, Poll};

pub(crate) const RESUME: usize = 0;
pub(crate) const CANCEL: usize = 1;
pub(crate) const SUSPENDED: usize = 2;
pub(crate) const FINISHED: usize = 3;
/// Suspended by `yield_now`: the task is requeued without a wake.
pub(crate) const YIELDED: usize = 4;
/// To a suspended fiber: take a backtrace and switch straight back (module
/// doc, "Backtraces of suspended fibers").
const CAPTURE: usize = 5;
/// Back from a `CAPTURE`.
const CAPTURED: usize = 6;

/// The stack a capture needs below the fiber's suspension point: the
/// unwinder's own frames, measured at under 6 KiB (x86_64, glibc, debug
/// and release builds, first capture included), twice that to spare.
pub(crate) const CAPTURE_HEADROOM: usize = 12 * 1024;

/// Why a suspended fiber has no backtrace (`ControlBlock::capture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoCapture {
    /// It is not suspended (it runs, is being cancelled, or finished).
    NotSuspended,
    /// Too little stack is left below its suspension point.
    NoRoom,
    /// The capture failed (it panicked: an allocation failure, say).
    Failed,
    /// Not attempted: the dump had walked enough fibers of this thread.
    Skipped,
}

/// What a fiber is blocked in: the blocking-style call (`crate::wait`)
/// and where it was called.
pub(crate) type BlockedIn = (&'static str, &'static std::panic::Location<'static>);

/// How many times a cancellation raises [`ForcedUnwind`] in a fiber that
/// keeps catching it before the canceller gives up (module doc).
const MAX_CANCEL_ATTEMPTS: u32 = 100;

/// The payload of the forced unwind of a cancelled fiber.
pub(crate) struct ForcedUnwind;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    NotStarted,
    Suspended,
    Running,
    Finished,
    /// Suspended for good: its cancellation gave up on it (`Cancel::GaveUp`).
    Abandoned,
}

/// How a cancellation ended.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// The fiber unwound to its entry and finished.
    Unwound,
    /// It was not suspended: nothing to do.
    NotSuspended,
    /// It kept catching the unwind: it stays suspended for good and must
    /// be leaked, stack and all (module doc, rule 2).
    GaveUp,
}

/// Swaps the fiber's view of its thread's state in (`true`) or out
/// (`false`): the bridge's, called around a cancellation (`cancel`), as
/// the bridge's poll does around every run.
///
/// # Safety
///
/// The pointer is the one the bridge last set (`set_view`), still alive.
pub(crate) type SwitchView = unsafe fn(*mut (), bool);

/// What the bridge writes into a new control block.
pub(crate) struct Init {
    pub(crate) switch_view: SwitchView,
    pub(crate) id: u64,
    pub(crate) owner: u64,
    pub(crate) runtime_id: usize,
    pub(crate) func: *mut u8,
    pub(crate) guard: (usize, usize),
    pub(crate) name: Option<(*const u8, usize)>,
    /// The top of the fiber's stack (its usable part is `guard.1..top`),
    /// and how much of it, from the top, was known to be resident before
    /// the fiber started (`stack.rs`, `Stack::baseline`).
    pub(crate) stack_top: usize,
    pub(crate) stack_baseline: usize,
}

/// A started fiber's control block (module doc). The fiber's own code
/// reaches it through [`with_current`], the owner thread's registry
/// through its list (`pool.rs`), the overflow handler through
/// [`current_for_signal`], and its poller through the `FiberFuture`.
pub(crate) struct ControlBlock {
    pub(crate) id: u64,
    phase: Cell<Phase>,
    fiber_sp: Cell<*mut u8>,
    caller_sp: Cell<*mut u8>,
    /// The owner thread's token (`util::thread_token`).
    pub(crate) owner: u64,
    /// The context of the poll that resumed the fiber (rule 3).
    cx: Cell<*mut Context<'static>>,
    /// A cancellation is under way (module doc).
    cancelling: Cell<bool>,
    /// It waits, while cancelled, for the children of a `fiber::scope`
    /// (`scope.rs`): why a cancellation would give up on it.
    pub(crate) draining_scope: Cell<bool>,
    /// The runtime it belongs to, for shutdown unwinding.
    pub(crate) runtime_id: usize,
    /// Index in the owner thread's registry (while registered).
    pub(crate) registry_index: Cell<usize>,
    /// The bridge's closure slot, which the fiber takes when it starts
    /// (read on the first resumption only).
    pub(crate) func: *mut u8,
    /// Once finished: the bridge's result, on the fiber's own stack.
    pub(crate) result: Cell<*mut u8>,
    /// The guard page below the stack, and the fiber's name, for the
    /// stack overflow handler (`overflow.rs`).
    pub(crate) guard: (usize, usize),
    pub(crate) name: Option<(*const u8, usize)>,
    /// The stack's top and known-resident baseline (`Init`), for dumps.
    pub(crate) stack_top: usize,
    pub(crate) stack_baseline: usize,
    /// The blocking-style call the fiber is inside, if any (set by
    /// `crate::wait` around the call), for dumps.
    blocked_in: Cell<Option<BlockedIn>>,
    /// A capture's result, from the fiber's side to the capturer's.
    captured: Cell<Option<std::backtrace::Backtrace>>,
    /// The bridge's view of the thread state for this fiber, set at each
    /// poll (the bridge may move between polls), and how to switch it.
    view: Cell<*mut ()>,
    switch_view: SwitchView,
    /// The task-local scopes (and spans) the fiber is inside while it
    /// does not run (`task_core/local_scopes.rs`).
    scopes: Cell<local_scopes::Entered>,
    /// The fiber's `fiber_local!` values (`fiber/local.rs`), by key index;
    /// dropped by its entry when its closure is done.
    pub(crate) locals: std::cell::RefCell<Vec<Option<Box<dyn std::any::Any>>>>,
    /// What AddressSanitizer needs to follow the switches (`asan.rs`).
    #[cfg(fiber_runtime_asan)]
    asan: asan::FiberState,
}

thread_local! {
    /// The fiber running on this thread, if any (null: none).
    static CURRENT: Cell<*const ControlBlock> = const { Cell::new(std::ptr::null()) };
}

/// Calls `f` with the fiber running this code, if any.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&ControlBlock>) -> R) -> R {
    // `CURRENT` has no destructor, so it is readable even while the
    // thread's locals are being destroyed.
    let p = CURRENT.with(Cell::get);
    // SAFETY: the pointer is set by `resume` for exactly the time the
    // fiber runs, on this thread, and the block outlives that (rule 2);
    // the borrow ends with `f`, which runs on the fiber.
    f(unsafe { p.as_ref() })
}

/// As [`with_current`], from a signal handler: a raw read of a
/// `const`-initialised thread-local (no lazy init, no panic).
pub(crate) fn current_for_signal() -> *const ControlBlock {
    CURRENT.try_with(Cell::get).unwrap_or(std::ptr::null())
}

impl ControlBlock {
    /// Writes a control block at `at` and lays out the fiber's first
    /// frame below it, so that the first `resume` calls `entry(RESUME,
    /// at)` on the fiber's stack.
    ///
    /// # Safety
    ///
    /// `at` is the top of a stack nobody else uses, aligned for a
    /// `ControlBlock` and at 16 bytes; the fiber's frames go below it.
    pub(crate) unsafe fn init<'a>(
        at: *mut ControlBlock,
        init: Init,
        entry: arch::Entry,
    ) -> &'a ControlBlock {
        let cb = ControlBlock {
            id: init.id,
            phase: Cell::new(Phase::NotStarted),
            fiber_sp: Cell::new(std::ptr::null_mut()),
            caller_sp: Cell::new(std::ptr::null_mut()),
            owner: init.owner,
            cx: Cell::new(std::ptr::null_mut()),
            cancelling: Cell::new(false),
            draining_scope: Cell::new(false),
            runtime_id: init.runtime_id,
            registry_index: Cell::new(usize::MAX),
            func: init.func,
            result: Cell::new(std::ptr::null_mut()),
            guard: init.guard,
            name: init.name,
            stack_top: init.stack_top,
            stack_baseline: init.stack_baseline,
            blocked_in: Cell::new(None),
            captured: Cell::new(None),
            view: Cell::new(std::ptr::null_mut()),
            switch_view: init.switch_view,
            scopes: Cell::new(local_scopes::Entered::default()),
            locals: std::cell::RefCell::new(Vec::new()),
            #[cfg(fiber_runtime_asan)]
            asan: asan::FiberState::new(init.guard.1, at as usize),
        };
        // SAFETY: the caller's contract: `at` is ours, aligned, and the
        // stack below it is free for the first frame.
        unsafe {
            at.write(cb);
            let sp = arch::init_stack(at.cast(), entry, at.cast());
            (*at).fiber_sp.set(sp);
            &*at
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Records where the bridge keeps the fiber's view (see `SwitchView`).
    pub(crate) fn set_view(&self, view: *mut ()) {
        self.view.set(view);
    }

    /// Where the bridge keeps the fiber's view (null before its first
    /// poll).
    pub(crate) fn view(&self) -> *mut () {
        self.view.get()
    }

    /// Called first thing on the fiber's stack, by its entry.
    #[inline]
    pub(crate) fn started(&self) {
        #[cfg(fiber_runtime_asan)]
        self.asan.entered_fiber();
    }

    /// Whether a cancellation is under way (module doc).
    pub(crate) fn is_cancelling(&self) -> bool {
        self.cancelling.get()
    }

    /// Polls `fut` with the task's waker until ready, suspending the fiber
    /// while it is pending. (Called through `crate::wait`, which never
    /// calls it while the thread is unwinding.)
    pub(crate) fn wait<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            if !self.cancelling.get() {
                // SAFETY: `cx` is the context of the poll that resumed
                // us, alive while we run (rule 3); not cancelling, so a
                // poll resumed us.
                let cx = unsafe { &mut *self.cx.get() };
                if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                    return v;
                }
            }
            // Cancelling: this fiber caught the unwind and waits again;
            // switching out lets the canceller raise it here once more.
            self.suspend();
        }
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
        if std::thread::panicking() {
            // A destructor yields during an unwind: the fiber cannot
            // switch out mid-unwind (`crate::wait`), so it goes on.
            return;
        }
        if self.cancelling.get() {
            // It caught its cancellation: raise it again (module doc).
            self.switch_out(SUSPENDED);
        } else {
            self.switch_out(YIELDED);
        }
    }

    #[inline]
    fn switch_out(&self, code: usize) {
        #[cfg(fiber_runtime_asan)]
        self.asan.leave_fiber(false);
        // SAFETY: we run on this fiber's stack; the poller waits at
        // `caller_sp` (rule 1).
        let back = unsafe { arch::suspend(self.caller_sp.as_ptr(), code) };
        #[cfg(fiber_runtime_asan)]
        self.asan.entered_fiber();
        if back != RESUME {
            self.back_unusual(back);
        }
    }

    /// Back in a suspension point with something else than `RESUME`: a
    /// cancellation (unwind) or captures (then the real resumption).
    #[cold]
    #[inline(never)]
    fn back_unusual(&self, mut back: usize) {
        while back == CAPTURE {
            self.capture_here();
            #[cfg(fiber_runtime_asan)]
            self.asan.leave_fiber(false);
            // SAFETY: as in `switch_out`: the capturer waits at
            // `caller_sp`.
            back = unsafe { arch::suspend(self.caller_sp.as_ptr(), CAPTURED) };
            #[cfg(fiber_runtime_asan)]
            self.asan.entered_fiber();
        }
        if back == CANCEL {
            panic::resume_unwind(Box::new(ForcedUnwind));
        }
    }

    /// On the fiber's stack, for a capturer: a backtrace of this stack
    /// (module doc, "Backtraces of suspended fibers").
    #[inline(never)]
    fn capture_here(&self) {
        // Caught here, next to it: an unwind must not leave the capture.
        let bt = panic::catch_unwind(std::backtrace::Backtrace::force_capture).ok();
        self.captured.set(bt);
    }

    /// A backtrace of this suspended fiber's stack, walked on that stack
    /// (module doc, "Backtraces of suspended fibers").
    ///
    /// # Safety
    ///
    /// On the owner thread, the control block alive (rules 1 and 2). The
    /// fiber may be anything but running on this thread's stack above
    /// the caller (it is not, if its phase says `Suspended`).
    pub(crate) unsafe fn capture(&self) -> Result<std::backtrace::Backtrace, NoCapture> {
        if self.phase.get() != Phase::Suspended || self.cancelling.get() {
            return Err(NoCapture::NotSuspended);
        }
        // The stack pointer at the suspension point is the lowest address
        // the fiber's frames use; the capture runs below it.
        let sp = self.fiber_sp.get() as usize;
        if sp.saturating_sub(self.guard.1) < CAPTURE_HEADROOM {
            return Err(NoCapture::NoRoom);
        }
        let prev = CURRENT.with(|c| c.replace(self));
        #[cfg(fiber_runtime_asan)]
        let mut fake = self.asan.enter_fiber();
        // SAFETY: the caller's contract: owner thread, the fiber suspended
        // at `fiber_sp` (phase checked), not running; it switches straight
        // back (`back_unusual`).
        let (back, sp) =
            unsafe { arch::resume(self.fiber_sp.get(), self.caller_sp.as_ptr(), CAPTURE) };
        #[cfg(fiber_runtime_asan)]
        asan::FiberState::back_from_fiber(&mut fake);
        self.fiber_sp.set(sp);
        CURRENT.with(|c| c.set(prev));
        debug_assert_eq!(back, CAPTURED);
        self.captured.take().ok_or(NoCapture::Failed)
    }

    /// The stack pointer the fiber is suspended at (everything below it
    /// is dead memory); meaningful while it is suspended.
    pub(crate) fn suspended_sp(&self) -> usize {
        self.fiber_sp.get() as usize
    }

    /// What the fiber is blocked in, if it is inside a blocking-style call
    /// (`crate::wait`). Read on the owner thread.
    pub(crate) fn blocked_in(&self) -> Option<BlockedIn> {
        self.blocked_in.get()
    }

    /// Records that the fiber enters (`Some`) or leaves a blocking-style
    /// call; returns what was recorded before, to put back when it leaves
    /// (calls may nest). Called on the fiber, by `crate::wait`.
    #[inline]
    pub(crate) fn set_blocked_in(&self, now: Option<BlockedIn>) -> Option<BlockedIn> {
        self.blocked_in.replace(now)
    }

    /// The fiber's last switch, from its entry: hands `result` (a pointer
    /// into its own frame) to the poller.
    ///
    /// # Safety
    ///
    /// Called by the fiber's entry, on its stack, once it is done: it is
    /// never resumed again, and `result` stays valid (its frame never
    /// returns) until the stack is given back.
    pub(crate) unsafe fn finish(&self, result: *mut u8) -> ! {
        self.result.set(result);
        #[cfg(fiber_runtime_asan)]
        self.asan.leave_fiber(true);
        // SAFETY: the caller's contract; the poller waits at `caller_sp`.
        unsafe { arch::suspend(self.caller_sp.as_ptr(), FINISHED) };
        unreachable!("a finished fiber was resumed");
    }

    /// Resumes the fiber with `code`, under the poll whose context is `cx`
    /// (null: none, while cancelling); returns what it switched back with.
    ///
    /// # Safety
    ///
    /// On the owner thread, the fiber not running and not finished, its
    /// control block alive (rules 1 and 2); `cx` outlives the call.
    pub(crate) unsafe fn resume(&self, code: usize, cx: *mut Context<'_>) -> usize {
        let prev = CURRENT.with(|c| c.replace(self));
        let mut scopes = self.scopes.take();
        // SAFETY: `scopes` is what `leave` left at the fiber's last
        // switch; its nodes are in the fiber's suspended frames.
        let outer = unsafe { local_scopes::enter(&mut scopes) };
        self.cx.set(cx.cast());
        self.phase.set(Phase::Running);
        #[cfg(fiber_runtime_asan)]
        let mut fake = self.asan.enter_fiber();
        // SAFETY: the fiber's stack is alive and suspended at `fiber_sp`
        // (or freshly laid out), and we are its owner thread.
        let (back, sp) =
            unsafe { arch::resume(self.fiber_sp.get(), self.caller_sp.as_ptr(), code) };
        #[cfg(fiber_runtime_asan)]
        asan::FiberState::back_from_fiber(&mut fake);
        self.fiber_sp.set(sp);
        self.cx.set(std::ptr::null_mut());
        local_scopes::leave(outer, &mut scopes);
        if back != FINISHED {
            // (A finished fiber's is dropped: nothing resumes it, and
            // nothing drops its control block.)
            self.scopes.set(scopes);
        }
        CURRENT.with(|c| c.set(prev));
        self.phase.set(if back == FINISHED {
            Phase::Finished
        } else {
            Phase::Suspended
        });
        back
    }

    /// Cancels a suspended fiber: unwinds its stack (module doc).
    ///
    /// # Safety
    ///
    /// As `resume`.
    pub(crate) unsafe fn cancel(&self) -> Cancel {
        if self.phase.get() != Phase::Suspended {
            return Cancel::NotSuspended;
        }
        self.cancelling.set(true);
        let view = self.view.get();
        // Its destructors see what it saw when it last ran.
        // SAFETY: the bridge set it at the fiber's last poll and is alive
        // (the fiber is suspended, so its task is).
        unsafe { (self.switch_view)(view, true) };
        let mut outcome = Cancel::GaveUp;
        for _ in 0..MAX_CANCEL_ATTEMPTS {
            // SAFETY: the caller's contract; no poll resumes it.
            if unsafe { self.resume(CANCEL, std::ptr::null_mut()) } == FINISHED {
                outcome = Cancel::Unwound;
                break;
            }
        }
        // SAFETY: as above.
        unsafe { (self.switch_view)(view, false) };
        if outcome == Cancel::GaveUp {
            self.phase.set(Phase::Abandoned);
        }
        outcome
    }

    /// Drops the fiber's `fiber_local!` values (by its entry, on its
    /// stack, once its closure is done). A destructor that reaches a local
    /// again makes a new one, dropped in the next round.
    pub(crate) fn drop_locals(&self) {
        loop {
            let locals = std::mem::take(&mut *self.locals.borrow_mut());
            if locals.is_empty() {
                return;
            }
            drop(locals);
        }
    }

    /// The name to report the fiber by: its name, or `#id`.
    pub(crate) fn display_name(&self) -> String {
        match self.name {
            Some((ptr, len)) => {
                // SAFETY: the name is a `String` owned by the fiber's
                // `FiberFuture` (or leaked with the fiber), alive while
                // the control block is.
                let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
                format!("'{}'", String::from_utf8_lossy(bytes))
            }
            None => format!("#{}", self.id),
        }
    }
}
