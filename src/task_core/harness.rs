//! The typed functions behind a task's vtable: poll, complete, cancel,
//! read the output, dealloc. Each receives the `NonNull<Header>` of a
//! `Cell<F, S>` and casts it back (the header is the cell's first field).

use super::core::{Cell, Header, Trailer, Vtable};
use super::error::JoinError;
use super::state::{
    TransitionToIdle, TransitionToRunning, TransitionToShutdown, TransitionToTerminal,
};
use super::waker::waker_ref;
use super::{Notified, RawTask, Schedule};
use std::future::Future;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

pub(super) fn vtable<F: Future, S: Schedule>() -> &'static Vtable {
    &Vtable {
        poll: poll::<F, S>,
        schedule: schedule::<F, S>,
        dealloc: dealloc::<F, S>,
        try_read_output: try_read_output::<F, S>,
        drop_join_handle_slow: drop_join_handle_slow::<F, S>,
        shutdown: shutdown::<F, S>,
        resume_yielded: resume_yielded::<F, S>,
        cancel_yielded: cancel_yielded::<F, S>,
        trailer: trailer::<F, S>,
        owner: owner::<F, S>,
    }
}

/// # Safety
///
/// `ptr` points to a live `Cell<F, S>`.
unsafe fn owner<F: Future, S: Schedule>(ptr: NonNull<Header>) -> Option<usize> {
    // SAFETY: the caller's contract.
    unsafe { cell::<F, S>(ptr) }.scheduler.owner()
}

/// # Safety
///
/// `ptr` points to a live `Cell<F, S>`.
unsafe fn trailer<F: Future, S: Schedule>(ptr: NonNull<Header>) -> NonNull<Trailer> {
    // SAFETY: the caller's contract.
    NonNull::from(unsafe { &cell::<F, S>(ptr).trailer })
}

/// # Safety
///
/// `ptr` points to a live `Cell<F, S>` (the vtable it carries was made for
/// exactly these types, so every caller going through the vtable meets this).
unsafe fn cell<'a, F: Future, S>(ptr: NonNull<Header>) -> &'a Cell<F, S> {
    // SAFETY: the header is the first field of the `#[repr(C)]` cell and the
    // caller guarantees the cell is alive.
    unsafe { ptr.cast::<Cell<F, S>>().as_ref() }
}

/// Polls the task, consuming the caller's `Notified` reference.
///
/// # Safety
///
/// `ptr` is a `Cell<F, S>` and the caller owns a `Notified` reference.
unsafe fn poll<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the caller's reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    match cell.header.state.transition_to_running() {
        // SAFETY: we hold RUNNING now, and the `Notified`'s reference.
        TransitionToRunning::Success => unsafe { poll_running(cell, ptr) },
        TransitionToRunning::Cancelled => {
            cancel_and_complete(cell, ptr);
        }
        TransitionToRunning::Failed => {}
        // SAFETY: that was the last reference.
        TransitionToRunning::Dealloc => unsafe { dealloc::<F, S>(ptr) },
    }
}

/// Polls the future, then completes the task or hands it back to its
/// scheduler.
///
/// # Safety
///
/// The caller holds `RUNNING` and one reference, both of which this
/// consumes.
unsafe fn poll_running<F: Future, S: Schedule>(cell: &Cell<F, S>, ptr: NonNull<Header>) {
    cell.scheduler.before_poll();
    cell.header.count_poll();
    // SAFETY: the task is alive while we hold RUNNING (we own a reference).
    let waker = unsafe { waker_ref(ptr) };
    let mut cx = Context::from_waker(&waker);
    if super::coop::budget(ptr.as_ptr(), || poll_future(cell, &mut cx)).is_ready() {
        complete(cell, ptr);
        return;
    }
    if S::YIELDS_RUNNING && super::take_yield_request() {
        // The future yielded without waking itself: requeue it still
        // RUNNING, with no state transition (see `Yielded`).
        // SAFETY: our reference and RUNNING move into the entry.
        let task = unsafe { super::Yielded::from_raw(RawTask::from_raw(ptr)) };
        let Some(task) = cell.scheduler.yield_running(task) else {
            return;
        };
        // Not here: take them back and wake the task the usual way (we
        // hold RUNNING, so this only sets NOTIFIED and queues nothing).
        std::mem::forget(task);
        let _ = cell.header.state.transition_to_notified_by_ref();
    }
    match cell.header.state.transition_to_idle() {
        TransitionToIdle::Ok => {}
        TransitionToIdle::OkNotified => {
            // SAFETY: `transition_to_idle` moved our reference into this
            // new queue entry.
            let task = unsafe { Notified::from_raw(RawTask::from_raw(ptr)) };
            cell.scheduler.yield_now(task);
        }
        // SAFETY: that was the last reference.
        TransitionToIdle::OkDealloc => unsafe { dealloc::<F, S>(ptr) },
        TransitionToIdle::Cancelled => {
            cancel_and_complete(cell, ptr);
        }
    }
}

/// Polls a task that a `Yielded` entry held: it is still RUNNING, so no
/// transition is needed, only a look for a cancellation that came
/// meanwhile.
///
/// # Safety
///
/// `ptr` is a `Cell<F, S>`; the caller hands over a `Yielded` entry's
/// reference and RUNNING.
unsafe fn resume_yielded<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the entry's reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    if cell.header.state.load().is_cancelled() {
        // SAFETY: the caller's RUNNING and reference.
        unsafe { cancel_yielded::<F, S>(ptr) }
    } else {
        // SAFETY: as above.
        unsafe { poll_running(cell, ptr) }
    }
}

/// A `Yielded` entry was dropped (its queue drained at shutdown): cancel
/// the task, as its poller would on seeing `CANCELLED`.
///
/// # Safety
///
/// As `resume_yielded`.
unsafe fn cancel_yielded<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the entry's reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    cancel_and_complete(cell, ptr);
}

/// Polls the future under `catch_unwind`; stores the output when ready.
/// The caller holds `RUNNING`.
fn poll_future<F: Future, S>(cell: &Cell<F, S>, cx: &mut Context<'_>) -> Poll<()> {
    /// Drops the future if its `poll` unwinds, so a panicking future is
    /// dropped inside the task and never polled again.
    struct DropOnUnwind<'a, F: Future, S>(&'a Cell<F, S>);
    impl<F: Future, S> Drop for DropOnUnwind<'_, F, S> {
        fn drop(&mut self) {
            // SAFETY: the poller holds RUNNING, so it owns the stage.
            unsafe { self.0.drop_future_or_output() };
        }
    }

    let res = panic::catch_unwind(AssertUnwindSafe(|| {
        let guard = DropOnUnwind(cell);
        // SAFETY: we hold RUNNING and the future is live (a task is only
        // polled while not complete).
        let res = unsafe { cell.poll_future(cx) };
        mem::forget(guard);
        res
    }));
    let output = match res {
        Ok(Poll::Pending) => return Poll::Pending,
        Ok(Poll::Ready(out)) => Ok(out),
        Err(payload) => Err(JoinError::panic(
            payload,
            cell.trailer.id,
            cell.trailer.name(),
        )),
    };
    // Dropping the finished future may panic too; the output wins then.
    // SAFETY: we hold RUNNING, so we own the stage.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| unsafe { cell.drop_future_or_output() }));
    // SAFETY: as above; the stage is consumed now.
    unsafe { cell.store_output(output) };
    Poll::Ready(())
}

/// Cancels the task and publishes the cancellation. The caller holds
/// `RUNNING` and one reference.
fn cancel_and_complete<F: Future, S: Schedule>(cell: &Cell<F, S>, ptr: NonNull<Header>) {
    cancel_task(cell);
    complete(cell, ptr);
}

/// Drops the future and stores the cancellation error (or the panic of the
/// future's destructor). The caller holds `RUNNING`.
fn cancel_task<F: Future, S>(cell: &Cell<F, S>) {
    // Its destructors run as the task: `task::id()` names it.
    let res = super::coop::with_task(&cell.header, || {
        // SAFETY: the caller holds RUNNING, so it owns the stage.
        panic::catch_unwind(AssertUnwindSafe(|| unsafe { cell.drop_future_or_output() }))
    });
    let err = match res {
        Ok(()) => JoinError::cancelled(),
        Err(payload) => JoinError::panic(payload, cell.trailer.id, cell.trailer.name()),
    };
    // SAFETY: as above; the stage is consumed now.
    unsafe { cell.store_output(Err(err)) };
}

/// Publishes the output. The caller holds `RUNNING` and one reference.
fn complete<F: Future, S: Schedule>(cell: &Cell<F, S>, ptr: NonNull<Header>) {
    // Leave the owned list first, so that by the time anyone can see the
    // task complete it no longer counts as alive (`num_alive_tasks`).
    // Shutdown cannot find it any more, which is fine: it is finishing.
    let released = cell.scheduler.release(RawTask::from_raw(ptr));
    let snapshot = cell.header.state.transition_to_complete();
    // Dropping the output or waking the joiner may panic: contain it.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        if !snapshot.is_join_interested() {
            // No `JoinHandle`: the output is ours to drop (rule 3). (It
            // took its waker with it: it cleared JOIN_WAKER before
            // COMPLETE.)
            // SAFETY: COMPLETE without JOIN_INTEREST: the completing thread
            // owns the output.
            unsafe { cell.drop_future_or_output() };
        } else if snapshot.is_join_waker_set() {
            cell.trailer.waker.with(|w| {
                // SAFETY: JOIN_WAKER is set and COMPLETE now too, so the
                // `JoinHandle` will never write the waker again (rule 4);
                // it may still read it, as we do.
                if let Some(w) = unsafe { &*w } {
                    w.wake_by_ref();
                }
            });
        }
    }));
    // Our reference, plus the owned list's if the scheduler held it.
    let count = 1 + u32::from(released);
    if cell.header.state.transition_to_terminal(count) == TransitionToTerminal::Dealloc {
        // SAFETY: those were the last references.
        unsafe { dealloc::<F, S>(ptr) };
    }
}

/// # Safety
///
/// `ptr` is a `Cell<F, S>` and the caller owns a reference it gives up.
unsafe fn schedule<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the caller's reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    // SAFETY: the caller's reference moves into the `Notified`.
    let task = unsafe { Notified::from_raw(RawTask::from_raw(ptr)) };
    cell.scheduler.schedule(task);
}

/// # Safety
///
/// `ptr` is a `Cell<F, S>` and no reference to it remains.
unsafe fn dealloc<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the cell was allocated as a `Box<Cell<F, S>>` in
    // `Cell::allocate`, and the reference count reached zero, so nothing
    // else can reach it.
    let cell = unsafe { Box::from_raw(ptr.cast::<Cell<F, S>>().as_ptr()) };
    // The union does not drop itself: drop whichever field is live (a
    // future whose task was never polled, or an output nobody took).
    // SAFETY: last reference: we own the stage.
    unsafe { cell.drop_future_or_output() };
    drop(cell);
}

/// # Safety
///
/// `ptr` is a `Cell<F, S>`, the caller is its `JoinHandle`, and `dst`
/// points to a `Poll<Result<F::Output, JoinError>>`.
unsafe fn try_read_output<F: Future, S: Schedule>(
    ptr: NonNull<Header>,
    dst: NonNull<()>,
    waker: &Waker,
) {
    // SAFETY: the `JoinHandle`'s reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    if can_read_output(cell, waker) {
        // SAFETY: COMPLETE with JOIN_INTEREST: the stage is the
        // `JoinHandle`'s (rule 3).
        let Some(out) = (unsafe { cell.take_output() }) else {
            panic!("`JoinHandle` polled after it returned `Ready`")
        };
        // SAFETY: the caller passes a pointer of exactly this type.
        unsafe { *dst.cast::<Poll<Result<F::Output, JoinError>>>().as_ptr() = Poll::Ready(out) };
    }
}

/// Returns `true` if the task is complete; otherwise makes sure `waker` is
/// the stored join waker and returns `false`.
fn can_read_output<F: Future, S>(cell: &Cell<F, S>, waker: &Waker) -> bool {
    let state = &cell.header.state;
    let snapshot = state.load();
    debug_assert!(snapshot.is_join_interested());
    if snapshot.is_complete() {
        return true;
    }
    let res = if snapshot.is_join_waker_set() {
        // SAFETY: with JOIN_WAKER set, the runtime only reads the waker
        // (rule 4); reading it here too is fine.
        let same = cell
            .trailer
            .waker
            .with(|w| unsafe { &*w }.as_ref().is_some_and(|w| w.will_wake(waker)));
        if same {
            return false;
        }
        // Take the field back, then store the new waker.
        state
            .unset_waker()
            .and_then(|_| set_join_waker(cell, waker.clone()))
    } else {
        set_join_waker(cell, waker.clone())
    };
    match res {
        Ok(_) => false,
        Err(snapshot) => {
            debug_assert!(snapshot.is_complete());
            true
        }
    }
}

fn set_join_waker<F: Future, S>(
    cell: &Cell<F, S>,
    waker: Waker,
) -> Result<super::state::Snapshot, super::state::Snapshot> {
    // SAFETY: JOIN_WAKER is clear, so only the `JoinHandle` (us) touches
    // the field (rule 4).
    cell.trailer.waker.with_mut(|w| unsafe { *w = Some(waker) });
    let res = cell.header.state.set_join_waker();
    if res.is_err() {
        // Completed meanwhile: the runtime never saw the bit, the field is
        // still ours.
        // SAFETY: as above.
        cell.trailer.waker.with_mut(|w| unsafe { *w = None });
    }
    res
}

/// # Safety
///
/// `ptr` is a `Cell<F, S>` and the caller is its `JoinHandle`, giving up
/// its reference.
unsafe fn drop_join_handle_slow<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the `JoinHandle`'s reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    let mut panic = None;
    let prev = cell.header.state.transition_to_join_handle_dropped();
    let res = if prev.is_complete() {
        // Complete: the output is ours to drop, here on the `JoinHandle`'s
        // thread (the output need not be `Send`-safe to drop elsewhere).
        // (The waker goes with the task's memory.)
        // SAFETY: COMPLETE was set before JOIN_INTEREST was cleared, so
        // the output is ours (rule 3).
        panic::catch_unwind(AssertUnwindSafe(|| unsafe { cell.drop_future_or_output() }))
    } else {
        // Not complete: we cleared JOIN_WAKER with JOIN_INTEREST, so the
        // completing thread will not read the waker; drop it now (rule 4).
        panic::catch_unwind(AssertUnwindSafe(|| {
            cell.trailer.waker.with_mut(|w| {
                // SAFETY: as said; no other thread touches the field now.
                drop(unsafe { (*w).take() })
            })
        }))
    };
    if let Err(p) = res {
        panic = Some(p);
    }
    if cell.header.state.ref_dec() {
        // SAFETY: last reference.
        unsafe { dealloc::<F, S>(ptr) };
    }
    if let Some(p) = panic {
        panic::resume_unwind(p);
    }
}

/// # Safety
///
/// `ptr` is a `Cell<F, S>`; the caller gives up one reference.
unsafe fn shutdown<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the caller's reference keeps the cell alive.
    let cell = unsafe { cell::<F, S>(ptr) };
    if cell.header.state.transition_to_shutdown() == TransitionToShutdown::Cancel {
        // We own RUNNING now: drop the future here.
        cancel_and_complete(cell, ptr);
    } else if cell.header.state.ref_dec() {
        // SAFETY: last reference.
        unsafe { dealloc::<F, S>(ptr) };
    }
}
