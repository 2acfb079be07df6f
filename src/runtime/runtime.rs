//! `Runtime`: owns the worker threads and the blocking pool.

use super::{Builder, EnterGuard, Handle, RuntimeMetrics};
use crate::scheduler::{self, blocking, context, current_thread};
use crate::task_core::JoinHandle;
use std::fmt;
use std::future::Future;
use std::io;
use std::thread;
use std::time::Duration;

/// The fiber-runtime runtime: a scheduler with its worker threads, and a
/// blocking pool.
///
/// Dropping a `Runtime` shuts it down: the workers stop, every unfinished
/// task is cancelled (its future dropped, never polled again), and the
/// drop waits for running [`spawn_blocking`](Runtime::spawn_blocking)
/// closures (use [`shutdown_timeout`](Runtime::shutdown_timeout) to bound
/// that wait).
///
/// # Examples
///
/// ```
/// use fiber_runtime::Runtime;
///
/// let rt = Runtime::new().unwrap();
/// let answer = rt.block_on(async {
///     let task = fiber_runtime::spawn(async { 40 });
///     task.await.unwrap() + 2
/// });
/// assert_eq!(answer, 42);
/// ```
pub struct Runtime {
    handle: Handle,
    workers: Vec<thread::JoinHandle<()>>,
    blocking: blocking::Spawner,
    is_shut_down: bool,
    /// What the builder's start hooks started (`Builder::dump_on_signal`'s
    /// listener), stopped first at shutdown.
    guards: Vec<Box<dyn Send + Sync>>,
}

impl Runtime {
    /// Builds a multi-thread runtime with one worker per CPU core.
    ///
    /// # Errors
    ///
    /// The OS error if a worker thread cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// assert_eq!(rt.block_on(async { 5 }), 5);
    /// ```
    pub fn new() -> io::Result<Runtime> {
        Builder::new_multi_thread().build()
    }

    pub(crate) fn from_parts(
        handle: scheduler::Handle,
        workers: Vec<thread::JoinHandle<()>>,
        blocking: blocking::Spawner,
    ) -> Runtime {
        Runtime {
            handle: Handle { inner: handle },
            workers,
            blocking,
            is_shut_down: false,
            guards: Vec::new(),
        }
    }

    /// Keeps `guard` until the runtime shuts down (dropped first then).
    pub(crate) fn keep_until_shutdown(&mut self, guard: Box<dyn Send + Sync>) {
        self.guards.push(guard);
    }

    /// Runs `future` to completion on the current thread, returning its
    /// output. The future may borrow from the caller (no `Send` or
    /// `'static` bound). Tasks it spawns run on the runtime's workers (for
    /// the current-thread flavor: on this thread, while `block_on` runs).
    ///
    /// # Panics
    ///
    /// Panics if called from a thread that already drives a runtime (a
    /// worker, or inside another `block_on`): `.await` the future there,
    /// or, inside a fiber, wait for it with
    /// [`fiber::wait`](crate::fiber::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let mut v = vec![1, 2];
    /// rt.block_on(async { v.push(3) });
    /// assert_eq!(v, [1, 2, 3]);
    /// ```
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns a task onto the runtime; see [`crate::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let h = rt.spawn(async { "hello" });
    /// assert_eq!(rt.block_on(h).unwrap(), "hello");
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs a blocking closure on the blocking pool; see
    /// [`crate::spawn_blocking`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let h = rt.spawn_blocking(|| std::thread::current().name().map(String::from));
    /// let name = rt.block_on(h).unwrap().unwrap();
    /// assert!(name.contains("blocking"));
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// Returns a handle to the runtime, to spawn onto it from elsewhere.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.handle().clone();
    /// let v = std::thread::spawn(move || handle.block_on(async { 9 })).join().unwrap();
    /// assert_eq!(v, 9);
    /// ```
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Makes this runtime the current one of this thread until the guard
    /// is dropped, so that [`crate::spawn`] works outside async code.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let h = fiber_runtime::spawn(async { 1 });
    /// assert_eq!(h.join().unwrap(), 1);
    /// ```
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// Returns a snapshot of the runtime's metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    /// assert_eq!(rt.metrics().num_workers(), 2);
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// Shuts the runtime down, waiting at most `timeout` for running
    /// blocking closures (which cannot be interrupted: threads still
    /// running after the timeout are left to finish on their own). Tasks
    /// are cancelled as on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// rt.spawn_blocking(move || { let _ = rx.recv(); });
    /// rt.shutdown_timeout(Duration::from_millis(10)); // returns despite the stuck closure
    /// drop(tx); // lets the blocking thread finish
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(Some(timeout));
    }

    fn shutdown(&mut self, timeout: Option<Duration>) {
        if std::mem::replace(&mut self.is_shut_down, true) {
            return;
        }
        // The long-poll monitor first (woken, joined; it waits for a
        // running `on_long_poll` callback): shutdown cancels the tasks it
        // would look up, and the hand-off it triggers must not start now.
        self.handle.inner.common().monitor.stop();
        drop(std::mem::take(&mut self.guards));
        match &self.handle.inner {
            scheduler::Handle::MultiThread(h) => {
                h.shutdown();
                let me = thread::current().id();
                for w in self.workers.drain(..) {
                    // A runtime dropped by one of its own tasks cannot
                    // wait for that worker: it exits on its own.
                    if w.thread().id() != me {
                        let _ = w.join();
                    }
                }
                // The worker hand-off's threads (same rule).
                h.join_replacements();
                h.finalize();
            }
            scheduler::Handle::CurrentThread(h) => current_thread::Handle::shutdown(h),
        }
        self.blocking.shutdown(timeout);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("scheduler", &self.handle.inner)
            .finish_non_exhaustive()
    }
}

/// Runs a future on the calling thread, driving `handle`'s scheduler if it
/// is a current-thread one. The future is the runtime's main future
/// (`wait::MainFuture`), for the messages of blocking-style calls made
/// directly in it.
#[track_caller]
pub(crate) fn block_on_handle<F: Future>(handle: &scheduler::Handle, future: F) -> F::Output {
    let _enter = context::enter_runtime(handle);
    let future = crate::wait::MainFuture::new(future);
    match handle {
        scheduler::Handle::CurrentThread(h) => current_thread::Handle::block_on(h, future),
        scheduler::Handle::MultiThread(_) => crate::wait::block_on_thread(future),
    }
}
