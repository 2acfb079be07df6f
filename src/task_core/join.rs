//! `JoinHandle<T>`: the typed owner of a task's output.

use super::RawTask;
use super::error::JoinError;
use super::state::DropJoinHandleFast;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// An owned permission to join a task or a fiber: await it for its
/// output.
///
/// `JoinHandle<T>` is a [`Future`] whose output is `Result<T, JoinError>`:
/// `Ok` with the task's value, or a [`JoinError`] if it panicked or was
/// cancelled. Outside async code, [`join`](JoinHandle::join) blocks instead.
///
/// Dropping a `JoinHandle` *detaches* the task: it runs on, and its output
/// is dropped when it finishes. Use [`abort`](JoinHandle::abort) to cancel.
///
/// # Examples
///
/// ```
/// let rt = fiber_runtime::Runtime::new().unwrap();
/// let handle = rt.spawn(async { 6 * 7 });
/// assert_eq!(rt.block_on(handle).unwrap(), 42);
/// ```
#[must_use = "dropping a JoinHandle detaches the task; `.await` it or call `.abort()`"]
pub struct JoinHandle<T> {
    raw: RawTask,
    _output: PhantomData<T>,
}

// SAFETY: the handle only moves `T` out of the task (never shares it), so
// `T: Send` suffices; the raw task is shared through atomics.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only reads the atomic state (`is_finished`) or
// requests cancellation; it never touches `T`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// Takes over the `JoinHandle` reference of a newly spawned task.
    pub(crate) fn new(raw: RawTask) -> JoinHandle<T> {
        JoinHandle {
            raw,
            _output: PhantomData,
        }
    }

    /// Cancels the task.
    ///
    /// If the task has not finished, its future is dropped at the next
    /// point it is not being polled (right away if idle), and awaiting the
    /// handle returns a [`JoinError`] for which
    /// [`is_cancelled`](JoinError::is_cancelled) holds. A task that already
    /// finished keeps its output. Calling `abort` twice is harmless.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.spawn(std::future::pending::<()>());
    /// handle.abort();
    /// assert!(rt.block_on(handle).unwrap_err().is_cancelled());
    /// ```
    pub fn abort(&self) {
        self.raw.remote_abort();
    }

    /// The task's id, the same as [`task::id()`](crate::task::id) inside it.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let a = rt.spawn(async {});
    /// let b = rt.spawn(async {});
    /// assert_ne!(a.id(), b.id());
    /// ```
    pub fn id(&self) -> crate::task_core::Id {
        self.raw.id()
    }

    /// A handle that can cancel the task but not join it; it may outlive
    /// this `JoinHandle`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.spawn(std::future::pending::<()>());
    /// let abort = handle.abort_handle();
    /// abort.abort();
    /// assert!(rt.block_on(handle).unwrap_err().is_cancelled());
    /// ```
    pub fn abort_handle(&self) -> crate::task_core::AbortHandle {
        crate::task_core::AbortHandle::new(self.raw)
    }

    /// Returns `true` once the task has finished (completed, panicked or
    /// been cancelled); awaiting the handle then returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.spawn(async {});
    /// let handle = rt.block_on(async move {
    ///     while !handle.is_finished() {
    ///         fiber_runtime::yield_now().await;
    ///     }
    ///     handle
    /// });
    /// assert!(handle.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.raw.header().state.load().is_complete()
    }

    /// Waits for the task in blocking style and returns its output.
    ///
    /// Inside a fiber, this suspends the fiber (the worker runs other work
    /// meanwhile); on a thread outside any runtime, it blocks the thread.
    ///
    /// # Panics
    ///
    /// Panics if called from an async task or `block_on` on a runtime
    /// thread, where blocking would stall the worker: use `.await` there.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.spawn(async { "done" });
    /// assert_eq!(handle.join().unwrap(), "done");
    /// ```
    #[track_caller]
    pub fn join(self) -> Result<T, JoinError> {
        crate::wait::wait(self, "JoinHandle::join", "`.await` the JoinHandle")
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A ready `JoinHandle` spends the task's cooperative budget.
        std::task::ready!(crate::task_core::coop::poll_proceed(cx));
        let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
        let dst = NonNull::from(&mut out).cast::<()>();
        // SAFETY: we are the task's `JoinHandle` and `dst` points to a
        // `Poll<Result<T, JoinError>>` where `T` is the task's output type
        // (fixed when the handle was created by `spawn`).
        unsafe { (self.raw.header().vtable.try_read_output)(self.raw.ptr(), dst, cx.waker()) };
        if out.is_pending() {
            crate::task_core::coop::refund();
        }
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if self.raw.header().state.drop_join_handle_fast() == DropJoinHandleFast::Done {
            return;
        }
        // SAFETY: we are the `JoinHandle` and give up its reference.
        unsafe { (self.raw.header().vtable.drop_join_handle_slow)(self.raw.ptr()) };
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JoinHandle");
        d.field("id", &self.id());
        if let Some(name) = self.raw.trailer().name() {
            d.field("name", &name);
        }
        d.field("finished", &self.is_finished()).finish()
    }
}
