//! `Handle`: a cheap, cloneable reference to a runtime.

use super::RuntimeMetrics;
use crate::scheduler::{self, context};
use crate::task_core::{JoinHandle, SpawnMeta};
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;

/// A reference to a runtime, to spawn onto it from anywhere. Cheap to
/// clone; `Send + Sync`.
///
/// A handle does not keep the runtime running: after the [`Runtime`]
/// is dropped, tasks spawned through it are cancelled at once.
///
/// [`Runtime`]: crate::Runtime
///
/// # Examples
///
/// ```
/// use fiber_runtime::{Handle, Runtime};
///
/// let rt = Runtime::new().unwrap();
/// rt.block_on(async {
///     let handle = Handle::current();
///     let v = std::thread::spawn(move || handle.block_on(async { 1 }))
///         .join()
///         .unwrap();
///     assert_eq!(v, 1);
/// });
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: scheduler::Handle,
}

/// Returned by [`Handle::try_current`] when there is no current runtime.
///
/// The fallible entry points that need a runtime (creating a socket,
/// [`fiber::Builder::spawn`](crate::fiber::Builder::spawn),
/// [`task::Builder::spawn`](crate::task::Builder::spawn),
/// [`net::lookup_host`](crate::net::lookup_host) of a host name) return it
/// inside an [`io::Error`] of kind [`Other`](io::ErrorKind::Other), the
/// same kind everywhere, so it can be told apart by downcasting (see
/// below). It converts into one with `From` as well.
///
/// # Examples
///
/// ```
/// let err = fiber_runtime::Handle::try_current().unwrap_err();
/// assert!(err.to_string().contains("no fiber-runtime runtime"));
///
/// // Outside a runtime, every fallible entry point fails the same way.
/// let err = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::Other);
/// assert!(err.get_ref().unwrap().is::<fiber_runtime::TryCurrentError>());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryCurrentError {
    kind: context::NoRuntime,
    /// What failed for want of a runtime, when an entry point reports it.
    what: Option<&'static str>,
}

impl TryCurrentError {
    pub(crate) fn new(kind: context::NoRuntime) -> TryCurrentError {
        TryCurrentError { kind, what: None }
    }

    /// The error every fallible entry point returns when there is no
    /// runtime (the one constructor they all use): kind `Other`, carrying
    /// this error (so callers can downcast it), whose message starts with
    /// `what` failed.
    pub(crate) fn no_runtime(kind: context::NoRuntime, what: &'static str) -> io::Error {
        io::Error::from(TryCurrentError {
            kind,
            what: Some(what),
        })
    }
}

impl From<TryCurrentError> for io::Error {
    /// An error of kind [`Other`](io::ErrorKind::Other) carrying `e`.
    fn from(e: TryCurrentError) -> io::Error {
        io::Error::other(e)
    }
}

impl fmt::Display for TryCurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(what) = self.what {
            write!(f, "{what} failed: ")?;
        }
        match self.kind {
            context::NoRuntime::NoContext => f.write_str(
                "there is no fiber-runtime runtime on this thread: call this from a task, \
                 inside `Runtime::block_on` or `#[fiber_runtime::main]`, or after \
                 `Runtime::enter()`",
            ),
            context::NoRuntime::ThreadLocalDestroyed => f.write_str(
                "the fiber-runtime context of this thread was already destroyed (this thread \
                 is exiting)",
            ),
        }
    }
}

impl std::error::Error for TryCurrentError {}

/// Makes a runtime current on this thread until dropped; returned by
/// [`Runtime::enter`](crate::Runtime::enter) and [`Handle::enter`].
#[must_use = "the runtime stops being current as soon as the guard is dropped"]
pub struct EnterGuard<'a> {
    _guard: context::SetCurrentGuard,
    /// `!Send`: it restores the current runtime of the thread it was made on.
    _handle: PhantomData<(&'a Handle, *const ())>,
}

impl fmt::Debug for EnterGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnterGuard")
    }
}

impl Handle {
    /// Returns the handle of the current runtime.
    ///
    /// # Panics
    ///
    /// Panics if there is no current runtime (see [`try_current`](Self::try_current)).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let h = fiber_runtime::Handle::current();
    ///     assert_eq!(h.spawn(async { 3 }).await.unwrap(), 3);
    /// });
    /// ```
    #[track_caller]
    pub fn current() -> Handle {
        match Handle::try_current() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// Returns the handle of the current runtime, or an error if there is
    /// none.
    ///
    /// # Errors
    ///
    /// [`TryCurrentError`] if no runtime is current on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fiber_runtime::Handle::try_current().is_err());
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _g = rt.enter();
    /// assert!(fiber_runtime::Handle::try_current().is_ok());
    /// ```
    pub fn try_current() -> Result<Handle, TryCurrentError> {
        context::with_current(|h| Handle { inner: h.clone() }).map_err(TryCurrentError::new)
    }

    /// Spawns a task onto this runtime; see [`crate::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let h = rt.handle().spawn(async { 2 });
    /// assert_eq!(h.join().unwrap(), 2);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.spawn(future, SpawnMeta::new(None))
    }

    /// Runs a blocking closure on this runtime's blocking pool; see
    /// [`crate::spawn_blocking`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let h = rt.handle().spawn_blocking(|| 2 + 2);
    /// assert_eq!(h.join().unwrap(), 4);
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.inner
            .blocking_spawner()
            .spawn_blocking(f, SpawnMeta::new(None))
    }

    /// Runs `future` to completion on the current thread; see
    /// [`Runtime::block_on`](crate::Runtime::block_on). On a current-thread
    /// runtime, this drives its tasks too when no other thread does.
    ///
    /// # Panics
    ///
    /// Panics if called from a thread that already drives a runtime
    /// (`.await` the future there, or in a fiber,
    /// [`fiber::wait`](crate::fiber::wait) for it).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// let h = rt.handle().clone();
    /// assert_eq!(h.block_on(async { fiber_runtime::spawn(async { 5 }).await.unwrap() }), 5);
    /// ```
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        super::runtime::block_on_handle(&self.inner, future)
    }

    /// Makes this runtime current on this thread until the guard drops.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.handle().clone();
    /// let _g = handle.enter();
    /// assert!(fiber_runtime::Handle::try_current().is_ok());
    /// ```
    pub fn enter(&self) -> EnterGuard<'_> {
        EnterGuard {
            _guard: context::set_current(&self.inner),
            _handle: PhantomData,
        }
    }

    /// The I/O driver this runtime runs: [`IoDriver::Epoll`](crate::IoDriver::Epoll) or
    /// [`IoDriver::Uring`](crate::IoDriver::Uring), never `Auto` (see
    /// [`IoDriver`](crate::IoDriver)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{Builder, IoDriver};
    ///
    /// let rt = Builder::new_current_thread().io_driver(IoDriver::Epoll).build().unwrap();
    /// assert_eq!(rt.handle().io_driver(), IoDriver::Epoll);
    /// ```
    pub fn io_driver(&self) -> super::IoDriver {
        super::IoDriver::of(self.inner.common().driver.kind)
    }

    /// Returns a snapshot of the runtime's metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let m = rt.handle().metrics();
    /// assert!(m.num_workers() >= 1);
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        let stacks = self.inner.common().fiber_stacks.snapshot();
        RuntimeMetrics::new(self.inner.metrics())
            .with_fiber_stacks(super::FiberStackHistogram::new(stacks.0, stacks.1))
    }

    /// Takes a dump of the runtime: every live task and fiber, with the
    /// backtrace of every suspended fiber's stack; see [`Dump`]. A worker
    /// stuck in a poll is waited for at most 250 ms (and reported as
    /// such), so the call returns whatever the workers are doing.
    ///
    /// # Blocking
    ///
    /// This call blocks its thread until the workers answered: up to
    /// 250 ms while a worker is stuck in a poll, and up to 10 s while
    /// other workers walk many fibers. Called inside an async task **or a
    /// fiber** of the runtime, it blocks that worker's thread for as long
    /// (it does not yield or suspend: none of the worker's other tasks and
    /// fibers run meanwhile). Where that matters, call it from a plain
    /// thread or from [`spawn_blocking`](crate::spawn_blocking), as in the
    /// second example; the worker the caller waits on is then free to
    /// answer.
    ///
    /// [`Dump`]: super::Dump
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _enter = rt.enter();
    /// let idler = fiber_runtime::task::Builder::new()
    ///     .name("idler")
    ///     .spawn(std::future::pending::<()>())
    ///     .unwrap();
    /// let dump = rt.handle().dump();
    /// assert_eq!(dump.tasks().next().unwrap().name(), Some("idler"));
    /// println!("{dump}");
    /// # drop(idler);
    /// ```
    ///
    /// From an async task, off the worker:
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let h = fiber_runtime::Handle::current();
    ///     let dump = fiber_runtime::spawn_blocking(move || h.dump()).await.unwrap();
    ///     println!("{dump}");
    /// });
    /// ```
    pub fn dump(&self) -> super::Dump {
        super::Dump::take(&self.inner)
    }

    /// Not public API: for the worker hand-off's tests, acts as the
    /// long-poll detector does when it finds worker `worker` stuck in a
    /// poll (`Builder::worker_handoff`); returns whether a replacement
    /// thread runs for it. Does nothing on the current-thread flavor.
    #[doc(hidden)]
    pub fn __worker_stuck(&self, worker: usize) -> bool {
        match &self.inner {
            scheduler::Handle::MultiThread(h) => h.on_worker_stuck(worker),
            scheduler::Handle::CurrentThread(_) => false,
        }
    }

    /// Not public API: for the worker hand-off's tests, whether a hand-off
    /// takes the stuck worker's LIFO-slot task over on this machine (the
    /// kernel's `membarrier(2)` works here).
    #[doc(hidden)]
    pub fn __handoff_moves_lifo() -> bool {
        scheduler::multi_thread::moves_lifo_slots()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("scheduler", &self.inner)
            .finish()
    }
}
