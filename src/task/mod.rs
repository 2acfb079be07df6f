//! Stackless task memory.
//!
//! A task is one heap allocation (`core.rs`): a [`Header`](core::Header)
//! (state word, stage tag and owned-list slot, vtable), the scheduler
//! handle, the *stage* (the future, later its output) and the *trailer*
//! (the join waker). The state word (`state.rs`) holds lifecycle flags and a
//! reference count.
//!
//! # Reference kinds
//!
//! Each of these holds one count in the state word:
//!
//! 1. the owned-task list (`list.rs`), from spawn until the task completes
//!    or shutdown pops it;
//! 2. the [`JoinHandle`], until dropped;
//! 3. a [`Notified`]: an entry in a run queue, from submission until a
//!    worker polls it (polling consumes it) or a queue is drained;
//! 4. each `Waker` clone.
//!
//! The allocation is freed by whoever drops the last count.
//!
//! # Who may touch what
//!
//! 1. The stage is touched only by the thread holding `RUNNING` (poll,
//!    cancel, store output) — except as in rule 3.
//! 2. `RUNNING` is taken by `transition_to_running` (a worker with a
//!    `Notified`) or `transition_to_shutdown`, never by two threads.
//! 3. Once `COMPLETE` is set, the output belongs to the `JoinHandle` while
//!    `JOIN_INTEREST` is set; if `JOIN_INTEREST` is cleared first, the
//!    completing thread drops it; if `COMPLETE` comes first, the dropping
//!    `JoinHandle` does.
//! 4. The join waker is written by the `JoinHandle` only while
//!    `JOIN_WAKER` is clear; the completing thread reads it only after
//!    seeing `JOIN_WAKER` set together with setting `COMPLETE`, after which
//!    the `JoinHandle` never writes it again.
//! 5. The owned-list slot is written once, by the spawner before the task
//!    is shared; the slab entry it names is touched only under its shard's
//!    lock.
//!
//! # Safety
//!
//! The typed functions in `harness.rs` cast a `NonNull<Header>` back to a
//! `Cell<F, S>`; this is sound because the header is the first field of the
//! `#[repr(C)]` cell and the vtable stored in the header was instantiated
//! for exactly that `F` and `S` at allocation.

mod core;
mod error;
mod harness;
mod join;
pub(crate) mod list;
mod state;
mod waker;

pub use self::error::JoinError;
pub use self::join::JoinHandle;

use self::core::{Cell, Header};
use std::future::Future;
use std::ptr::NonNull;

/// What a task needs from the scheduler that owns it.
pub(crate) trait Schedule: Send + Sync + Sized + 'static {
    /// Submits a woken task.
    fn schedule(&self, task: Notified);

    /// Submits a task that woke itself during its own poll; it goes behind
    /// the others so that an always-ready task cannot starve them.
    fn yield_now(&self, task: Notified) {
        self.schedule(task)
    }

    /// Removes the finished task from the owned list; returns `true` if the
    /// list still held its reference (now the caller's).
    fn release(&self, task: RawTask) -> bool;
}

/// An untyped pointer to a task; carries no reference by itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RawTask {
    ptr: NonNull<Header>,
}

// SAFETY: tasks are shared between threads through atomics; what a
// `RawTask` may do is governed by the reference it stands for.
unsafe impl Send for RawTask {}
// SAFETY: as above.
unsafe impl Sync for RawTask {}

impl RawTask {
    pub(crate) fn from_raw(ptr: NonNull<Header>) -> RawTask {
        RawTask { ptr }
    }

    pub(crate) fn ptr(self) -> NonNull<Header> {
        self.ptr
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: a `RawTask` is only used while some reference keeps the
        // task alive (see the reference kinds above).
        unsafe { self.ptr.as_ref() }
    }

    /// # Safety
    ///
    /// The caller gives up one reference.
    pub(crate) unsafe fn shutdown(self) {
        // SAFETY: forwarded contract.
        unsafe { (self.header().vtable.shutdown)(self.ptr) }
    }

    fn remote_abort(self) {
        if self.header().state.transition_to_notified_and_cancel() {
            // SAFETY: the transition took a reference for the submission.
            unsafe { (self.header().vtable.schedule)(self.ptr) }
        }
    }
}

/// A run-queue entry: owns one reference to a task that is `NOTIFIED`.
/// Running it consumes it; dropping it (queue drained at shutdown) only
/// releases the reference.
pub(crate) struct Notified(RawTask);

impl Notified {
    /// # Safety
    ///
    /// The caller hands over one reference, taken for a submission.
    pub(crate) unsafe fn from_raw(raw: RawTask) -> Notified {
        Notified(raw)
    }

    /// Polls the task (or cancels it, if it was aborted).
    pub(crate) fn run(self) {
        let raw = self.0;
        std::mem::forget(self);
        // SAFETY: our reference moves into `poll`.
        unsafe { (raw.header().vtable.poll)(raw.ptr) }
    }

    /// Cancels the task if it has not started (used when a queue is
    /// drained for good, e.g. the blocking pool at shutdown).
    pub(crate) fn shutdown(self) {
        let raw = self.0;
        std::mem::forget(self);
        // SAFETY: our reference moves into `shutdown`.
        unsafe { raw.shutdown() }
    }
}

#[cfg(test)]
impl Notified {
    pub(crate) fn raw_for_test(&self) -> RawTask {
        self.0
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        let h = self.0.header();
        if h.state.ref_dec() {
            // SAFETY: last reference.
            unsafe { (h.vtable.dealloc)(self.0.ptr) }
        }
    }
}

impl std::fmt::Debug for Notified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notified").field(&self.0.ptr).finish()
    }
}

/// Allocates a task. Returns its first `Notified` (to submit), its
/// `JoinHandle`, and the raw pointer whose owned-list reference the caller
/// must hand to an [`list::OwnedTasks`] (or give up with `shutdown`).
pub(crate) fn new_task<F, S>(future: F, scheduler: S) -> (Notified, JoinHandle<F::Output>, RawTask)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let raw = RawTask::from_raw(Cell::allocate(future, scheduler));
    // SAFETY: the initial state holds three references: one each for the
    // queue entry, the join handle and the owned list (`state.rs`).
    let notified = unsafe { Notified::from_raw(raw) };
    (notified, JoinHandle::new(raw), raw)
}

#[cfg(test)]
mod loom_task;
#[cfg(test)]
pub(crate) mod test_util;
