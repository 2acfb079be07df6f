//! The raw task: untyped pointers and queue entries (`RawTask`,
//! `Notified`, `Yielded`), what a scheduler provides (`Schedule`), and
//! the allocation of a new task. The rules they follow are in the
//! comment at the top of `task/mod.rs`.

use super::JoinHandle;
use super::core::{self, Cell, Header};
use super::id::Id;
use super::instrument::{self, SpanKind, SpawnMeta};
use super::state;
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

    /// Whether this scheduler's tasks may yield still `RUNNING`
    /// ([`request_yield`], [`Schedule::yield_running`]): only schedulers
    /// that run every entry of a task on one thread, so that a task's
    /// `RUNNING` is never seen by a second poller. The others' polls skip
    /// looking for a yield request.
    const YIELDS_RUNNING: bool = false;

    /// Queues a task that asked to yield ([`request_yield`]) behind the
    /// others of this thread, still `RUNNING`; or gives it back if this
    /// thread does not run this scheduler's tasks (the task is then woken
    /// the usual way). Called only if `YIELDS_RUNNING`.
    fn yield_running(&self, task: Yielded) -> Option<Yielded> {
        Some(task)
    }

    /// Called on the polling thread, holding `RUNNING`, before every poll
    /// of the task's future.
    #[inline]
    fn before_poll(&self) {}

    /// The worker this task is pinned to, if it is (a fiber that started
    /// on a multi-thread runtime); for dumps, from any thread.
    fn owner(&self) -> Option<usize> {
        None
    }
}

std::thread_local! {
    static YIELD_REQUEST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by a task's own top-level future (a fiber's) as it returns
/// `Pending` to yield: instead of waking itself (three state transitions
/// per yield), the task is requeued still `RUNNING` if its scheduler
/// allows ([`Schedule::yield_running`]), or woken otherwise. Only the
/// task's top-level future may ask (a future nested in another would not
/// be polled again by its parent without a wake), and only under a
/// scheduler with `YIELDS_RUNNING`, whose polls take the request.
pub(crate) fn request_yield() {
    YIELD_REQUEST.with(|r| r.set(true));
}

pub(super) fn take_yield_request() -> bool {
    YIELD_REQUEST.with(|r| r.replace(false))
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

    pub(crate) fn trailer(&self) -> &core::Trailer {
        // SAFETY: as above; the vtable's `trailer` was made for this cell.
        unsafe { (self.header().vtable.trailer)(self.ptr).as_ref() }
    }

    pub(crate) fn id(&self) -> Id {
        self.trailer().id
    }

    /// The worker the task is pinned to, if any ([`Schedule::owner`]).
    pub(crate) fn owner(&self) -> Option<usize> {
        // SAFETY: as above; the vtable's `owner` was made for this cell.
        unsafe { (self.header().vtable.owner)(self.ptr) }
    }

    /// Gives up one reference, freeing the task if it was the last.
    ///
    /// # Safety
    ///
    /// The caller holds that reference and does not use it again.
    pub(crate) unsafe fn drop_reference(self) {
        if self.header().state.ref_dec() {
            // SAFETY: that was the last reference: nobody else can reach
            // the task.
            unsafe { (self.header().vtable.dealloc)(self.ptr) }
        }
    }

    /// # Safety
    ///
    /// The caller gives up one reference.
    pub(crate) unsafe fn shutdown(self) {
        // SAFETY: forwarded contract.
        unsafe { (self.header().vtable.shutdown)(self.ptr) }
    }

    pub(super) fn remote_abort(self) {
        if self.header().state.transition_to_notified_and_cancel()
            == state::TransitionToNotifiedAndCancel::Submit
        {
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

    /// The task's address, as the owned list records it (what a worker's
    /// heartbeat publishes: `OwnedTasks::describe` finds the task by it).
    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        self.0.ptr.as_ptr() as usize
    }

    /// Polls the task (or cancels it, if it was aborted).
    pub(crate) fn run(self) {
        let raw = self.0;
        std::mem::forget(self);
        // SAFETY: our reference moves into `poll`.
        unsafe { (raw.header().vtable.poll)(raw.ptr) }
    }

    /// Gives the entry up as its raw task, keeping the reference (for a
    /// slot that holds entries in an atomic word: the worker hand-off's
    /// LIFO slot). [`Notified::from_raw`] makes the entry again.
    pub(crate) fn into_raw(self) -> RawTask {
        let raw = self.0;
        std::mem::forget(self);
        raw
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

/// A run-queue entry for a task that yielded while keeping `RUNNING`
/// ([`request_yield`]): it owns one reference and `RUNNING`. Running it
/// polls the task again with no state transition; dropping it (a queue
/// drained at shutdown) cancels the task, as its poller would. Wakes and
/// aborts meanwhile see a running task: they set `NOTIFIED` or
/// `CANCELLED` and queue nothing, and the next poll heeds them.
pub(crate) struct Yielded(RawTask);

impl Yielded {
    /// # Safety
    ///
    /// The caller hands over one reference and `RUNNING`.
    pub(super) unsafe fn from_raw(raw: RawTask) -> Yielded {
        Yielded(raw)
    }

    /// Polls the task again (or cancels it, if it was aborted).
    pub(crate) fn run(self) {
        let raw = self.0;
        std::mem::forget(self);
        // SAFETY: our reference and RUNNING move into `resume_yielded`.
        unsafe { (raw.header().vtable.resume_yielded)(raw.ptr) }
    }
}

impl Drop for Yielded {
    fn drop(&mut self) {
        // SAFETY: our reference and RUNNING move into `cancel_yielded`.
        unsafe { (self.0.header().vtable.cancel_yielded)(self.0.ptr) }
    }
}

impl std::fmt::Debug for Yielded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Yielded").field(&self.0.ptr).finish()
    }
}

/// An entry of a thread-private run queue: a woken task, or one that
/// yielded still running.
#[derive(Debug)]
pub(crate) enum Runnable {
    Notified(Notified),
    Yielded(Yielded),
}

impl Runnable {
    /// The task's address ([`Notified::addr`]).
    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        match self {
            Runnable::Notified(t) => t.addr(),
            Runnable::Yielded(t) => t.0.ptr.as_ptr() as usize,
        }
    }

    pub(crate) fn run(self) {
        match self {
            Runnable::Notified(t) => t.run(),
            Runnable::Yielded(t) => t.run(),
        }
    }
}

impl From<Notified> for Runnable {
    fn from(t: Notified) -> Runnable {
        Runnable::Notified(t)
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
        // SAFETY: the entry's reference is ours to give up.
        unsafe { self.0.drop_reference() }
    }
}

impl std::fmt::Debug for Notified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notified").field(&self.0.ptr).finish()
    }
}

/// Allocates a task (its future in its span, with the feature "tracing":
/// `instrument.rs`). Returns its first `Notified` (to submit), its
/// `JoinHandle`, and the raw pointer whose owned-list reference the caller
/// must hand to an [`list::OwnedTasks`] (or give up: see [`unowned`]).
/// The schedulers spawn through [`list::OwnedTasks::bind`] instead.
pub(super) fn new_task<F, S>(
    future: F,
    scheduler: S,
    kind: SpanKind,
    meta: SpawnMeta,
) -> (Notified, JoinHandle<F::Output>, RawTask)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let id = Id::next();
    let future = instrument::instrument(future, kind, &meta, id);
    let raw = RawTask::from_raw(Cell::allocate(future, scheduler, id, meta));
    // SAFETY: the initial state holds three references: one each for the
    // queue entry, the join handle and the owned list (`state.rs`).
    let notified = unsafe { Notified::from_raw(raw) };
    (notified, JoinHandle::new(raw), raw)
}

/// Allocates a task that no owned list tracks (a blocking closure, whose
/// pool cancels its queue at shutdown itself): returns its first queue
/// entry and its `JoinHandle`.
pub(crate) fn unowned<F, S>(
    future: F,
    scheduler: S,
    kind: SpanKind,
    meta: SpawnMeta,
) -> (Notified, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let (notified, join, raw) = new_task(future, scheduler, kind, meta);
    // The owned list's reference is not needed: give it up (never the
    // last: the queue entry and the handle hold two more).
    let last = raw.header().state.ref_dec();
    debug_assert!(!last);
    (notified, join)
}
