//! `AbortHandle`: cancels a task without owning its output.

use super::RawTask;
use std::fmt;

/// Cancels a task or fiber from anywhere, without joining it; see
/// [`JoinHandle::abort_handle`](crate::JoinHandle::abort_handle).
///
/// It keeps the task's memory (not its future) alive while it exists, so
/// it may outlive the task and the `JoinHandle`.
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let h = fiber_runtime::fiber::spawn(|| loop {
///         fiber_runtime::fiber::yield_now();
///     });
///     let abort = h.abort_handle();
///     std::thread::spawn(move || abort.abort()).join().unwrap();
///     assert!(h.await.unwrap_err().is_cancelled());
/// });
/// ```
pub struct AbortHandle {
    raw: RawTask,
}

impl AbortHandle {
    pub(crate) fn new(raw: RawTask) -> AbortHandle {
        raw.header().state.ref_inc();
        AbortHandle { raw }
    }

    /// Cancels the task, as [`JoinHandle::abort`](crate::JoinHandle::abort).
    ///
    /// # Examples
    ///
    /// See [`AbortHandle`].
    pub fn abort(&self) {
        self.raw.remote_abort();
    }

    /// Returns `true` once the task has finished (completed, panicked or
    /// been cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let h = fiber_runtime::spawn(async {});
    ///     let abort = h.abort_handle();
    ///     h.await.unwrap();
    ///     assert!(abort.is_finished());
    /// });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.raw.header().state.load().is_complete()
    }

    /// The task's id.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let h = fiber_runtime::spawn(async {});
    ///     assert_eq!(h.abort_handle().id(), h.id());
    /// });
    /// ```
    pub fn id(&self) -> super::Id {
        self.raw.id()
    }
}

impl Clone for AbortHandle {
    fn clone(&self) -> AbortHandle {
        AbortHandle::new(self.raw)
    }
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        // SAFETY: the reference `new` took is ours to give up.
        unsafe { self.raw.drop_reference() }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}
