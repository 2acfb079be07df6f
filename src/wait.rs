//! How a blocking-style call waits: the one place that decides it.
//!
//! Every blocking-style call of the crate (`fiber::wait`, `fiber::sleep`,
//! `JoinHandle::join`, `std::io` on the net types, the `blocking_*`
//! methods) asks [`caller`] where it runs, and waits accordingly:
//!
//! | called from | [`Caller`] | the call |
//! | --- | --- | --- |
//! | inside a fiber | `Fiber` | suspends the fiber; the worker runs other work |
//! | inside a fiber that is unwinding | `Thread` | blocks the thread (below) |
//! | a thread outside any runtime | `Thread` | blocks that thread |
//! | an async task on a runtime thread | — | panics, naming the call to use instead |
//! | the future given to `block_on` (the runtime's main future) | — | panics, naming the async call and `fiber::spawn` |
//!
//! A fiber that is unwinding (a panic, or its cancellation, is on its
//! way up its stack and a destructor waits) does not suspend: std keeps
//! the count of panics in progress per thread, so the code the worker
//! would run meanwhile would see `std::thread::panicking()` hold (and
//! poison every std lock it released). It blocks its thread instead,
//! as on a plain thread, until the wait is over.
//!
//! While a fiber is inside one, its control block records which call it
//! is and where it was made (a pointer store on the way in and out),
//! which a dump shows as what the fiber is blocked in.
//!
//! A thread *drives* a runtime while it is one of its workers or inside
//! `block_on`: [`enter_driving`] marks it so, for the last two rows. The
//! `block_on` paths poll their future inside [`MainFuture`], so that the
//! message can tell the runtime's main future (often `fiber_main!` or
//! `#[fiber_runtime::main]`, where a user may expect a fiber) from a
//! spawned task. A `block_on` on a thread that already drives a runtime
//! is refused here too ([`refuse_nested_block_on`]), with the call that
//! fits where it was made: `fiber::wait` in a fiber, `.await` elsewhere.

use crate::fiber::context::{self as fiber, ControlBlock};
use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

thread_local! {
    /// Set while a poll runs that holds thread state a fiber switch would
    /// leak to the next fiber (`no_suspension`): what holds it.
    static NO_SUSPENSION: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Whether this thread drives a runtime (`enter_driving`).
    static DRIVING: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread polls a runtime's main future ([`MainFuture`]).
    static IN_MAIN: Cell<bool> = const { Cell::new(false) };
}

/// The start of every refusal of a nested `block_on`.
const NESTED: &str = "cannot start a runtime from within a runtime";

/// Where a blocking-style call runs, and so how it waits.
pub(crate) enum Caller<'a> {
    /// In a fiber that may suspend: wait with [`ControlBlock::wait`].
    Fiber(&'a ControlBlock),
    /// On a thread that may block: block it.
    Thread,
}

/// Calls `f` with where this blocking-style call runs (module doc).
///
/// # Panics
///
/// Panics if called from an async task or `block_on`'s future on a
/// thread that drives a runtime, with a message naming `what` was called
/// and what to use `instead`. The panic is reported at the caller's
/// location (`#[track_caller]` all the way: no closure in between).
#[track_caller]
#[inline]
pub(crate) fn caller<R, F: FnOnce(Caller<'_>) -> R>(what: &'static str, instead: &str, f: F) -> R {
    if let Some(holder) = NO_SUSPENSION.with(Cell::get) {
        // While unwinding, a fiber blocks its thread instead of suspending
        // (below), which keeps the state where it is; and a second panic
        // would abort.
        if !std::thread::panicking() {
            refuse_suspension(what, holder);
        }
    }
    // `f` comes back for the thread case, so that the check (and its
    // panic) runs here, in a `#[track_caller]` body, not in a closure.
    let at = std::panic::Location::caller();
    let f = match fiber::with_current(|current| match current {
        Some(cb) if !std::thread::panicking() => {
            /// Puts back what was recorded before, also on unwind.
            struct Leave<'a>(&'a ControlBlock, Option<fiber::BlockedIn>);
            impl Drop for Leave<'_> {
                fn drop(&mut self) {
                    self.0.set_blocked_in(self.1);
                }
            }
            let _leave = Leave(cb, cb.set_blocked_in(Some((what, at))));
            Ok(f(Caller::Fiber(cb)))
        }
        Some(_) => Ok(f(Caller::Thread)),
        None => Err(f),
    }) {
        Ok(r) => return r,
        Err(f) => f,
    };
    assert_blocking_allowed(what, instead);
    f(Caller::Thread)
}

/// Runs `f` (a poll that enters thread state which cannot follow a fiber
/// switch, e.g. a tokio runtime context) with blocking-style calls
/// refused inside it when they would suspend a fiber: the suspension
/// would leave that state on the worker for whatever runs next. `holder`
/// names it in the panic. Plain threads are not affected: blocking there
/// keeps the state on the thread that owns it.
#[cfg_attr(not(feature = "tokio-compat"), allow(dead_code))]
pub(crate) fn no_suspension<R>(holder: &'static str, f: impl FnOnce() -> R) -> R {
    if !fiber::with_current(|c| c.is_some()) {
        return f();
    }
    struct Restore(Option<&'static str>);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_SUSPENSION.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NO_SUSPENSION.with(|c| c.replace(Some(holder))));
    f()
}

#[track_caller]
#[cold]
fn refuse_suspension(what: &str, holder: &str) -> ! {
    panic!(
        "`{what}` would suspend this fiber inside {holder}, whose thread state would then be \
         left on the worker for the tasks and fibers that run next; inside it, use the async \
         form (`.await`) instead"
    )
}

/// Waits for `fut` in blocking style (module doc) and returns its output.
///
/// # Panics
///
/// As [`caller`].
#[track_caller]
pub(crate) fn wait<F: Future>(fut: F, what: &'static str, instead: &str) -> F::Output {
    caller(what, instead, |c| match c {
        Caller::Fiber(cb) => cb.wait(fut),
        Caller::Thread => block_on_thread(fut),
    })
}

/// Panics if this thread drives a runtime (outside a fiber), naming
/// `what` was called and what to use `instead`, and whether it was the
/// runtime's main future or an async task.
#[track_caller]
pub(crate) fn assert_blocking_allowed(what: &str, instead: &str) {
    if !is_driving() {
        return;
    }
    if in_main_future() {
        panic!(
            "`{what}` was called directly in the runtime's main future (the future given to \
             `block_on`, `fiber_main!` or `#[fiber_runtime::main]`), which is async code \
             driving the runtime, not a fiber, so blocking it would stall the runtime; {instead} \
             instead, or move the blocking-style code into a fiber: \
             `fiber::spawn(move || ..).await`"
        );
    }
    panic!(
        "`{what}` was called from an async task on a runtime thread, where blocking would \
         stall the worker; {instead} instead, or move the blocking-style code into a fiber \
         (`fiber::spawn(..)`)"
    );
}

/// Panics for a `block_on` on a thread that already drives a runtime
/// (blocking it would stall the tasks of the outer one), suggesting what
/// fits where it was called: `fiber::wait` in a fiber, `.await` in an
/// async task or the main future.
#[track_caller]
pub(crate) fn refuse_nested_block_on() -> ! {
    if fiber::with_current(|cb| cb.is_some()) {
        panic!(
            "{NESTED}: `block_on` was called inside a fiber, on a thread that already drives a \
             runtime; wait with `fiber::wait(fut)` instead, which suspends only this fiber \
             until `fut` completes"
        );
    }
    if in_main_future() {
        panic!(
            "{NESTED}: `block_on` was called inside the runtime's main future (the future \
             given to `block_on`, `fiber_main!` or `#[fiber_runtime::main]`); `.await` the \
             future instead"
        );
    }
    panic!(
        "{NESTED}: `block_on` was called from an async task, on a thread that already drives \
         a runtime; `.await` the future instead, or use `spawn_blocking` to run blocking code"
    );
}

/// Refuses a `block_on` here if this thread already drives a runtime
/// ([`refuse_nested_block_on`]); for the paths that would build a
/// runtime first.
#[track_caller]
pub(crate) fn assert_block_on_allowed() {
    if is_driving() {
        refuse_nested_block_on();
    }
}

/// Whether this thread is polling a runtime's main future.
fn in_main_future() -> bool {
    IN_MAIN.try_with(Cell::get).unwrap_or(false)
}

pin_project_lite::pin_project! {
    /// A runtime's main future (the one given to `block_on`): marks the
    /// thread as polling it for the time of each poll, for the messages
    /// of [`assert_blocking_allowed`] and [`refuse_nested_block_on`].
    pub(crate) struct MainFuture<F> {
        #[pin]
        fut: F,
    }
}

impl<F> MainFuture<F> {
    pub(crate) fn new(fut: F) -> MainFuture<F> {
        MainFuture { fut }
    }
}

impl<F: Future> Future for MainFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Restores the flag, also on unwind.
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                let _ = IN_MAIN.try_with(|m| m.set(self.0));
            }
        }
        let _reset = Reset(IN_MAIN.with(|m| m.replace(true)));
        self.project().fut.poll(cx)
    }
}

/// Whether this thread drives a runtime.
pub(crate) fn is_driving() -> bool {
    DRIVING.try_with(Cell::get).unwrap_or(false)
}

/// Marks this thread as driving a runtime until dropped.
#[derive(Debug)]
pub(crate) struct DrivingGuard(());

/// Marks this thread as driving a runtime; `None` if it already does.
pub(crate) fn enter_driving() -> Option<DrivingGuard> {
    let already = DRIVING.with(|d| d.replace(true));
    // Lazily: a guard made and dropped here would clear the flag.
    (!already).then(|| DrivingGuard(()))
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        let _ = DRIVING.try_with(|d| d.set(false));
    }
}

/// Drives `fut` to completion on this thread, which sleeps (std's thread
/// parking) whenever the future is pending. Callers have checked that
/// blocking is allowed here.
pub(crate) fn block_on_thread<F: Future>(fut: F) -> F::Output {
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        // A wake since the poll makes this return at once; a spurious
        // return only costs one more poll.
        std::thread::park();
    }
}

/// Unparks the thread it was made on.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// This thread's waker for `block_on_thread`, made once per thread.
fn thread_waker() -> Waker {
    thread_local! {
        static WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    }
    WAKER
        .try_with(Waker::clone)
        .unwrap_or_else(|_| Waker::from(Arc::new(ThreadWaker(std::thread::current()))))
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_plain_thread_blocks_until_woken_from_another_thread() {
        let (tx, rx) = futures::channel::oneshot::channel();
        let t = std::thread::spawn(move || tx.send(7).unwrap());
        assert_eq!(block_on_thread(rx), Ok(7));
        t.join().unwrap();
    }

    #[test]
    fn driving_is_refused_twice_and_released_by_the_guard() {
        let g = enter_driving().expect("not driving yet");
        assert!(is_driving());
        assert!(enter_driving().is_none());
        let msg = std::panic::catch_unwind(|| assert_blocking_allowed("f", "g"))
            .unwrap_err()
            .downcast::<String>()
            .unwrap();
        assert!(msg.contains("`f`") && msg.contains("g instead"), "{msg}");
        drop(g);
        assert!(!is_driving());
        assert_blocking_allowed("f", "g");
    }
}
