//! Stackful fibers: green threads on their own stacks, switched in user
//! space, on the same scheduler as async tasks and with the same
//! [`JoinHandle`].
//!
//! A fiber runs ordinary blocking-style code: [`wait`] suspends it until
//! a future completes, [`sleep`] and [`yield_now`] suspend it too, and
//! [`JoinHandle::join`] waits for another task or fiber. While a fiber is
//! suspended its worker runs other tasks and fibers.
//!
//! ```
//! use fiber_runtime::{fiber, time::Duration};
//!
//! fiber_runtime::block_on(async {
//!     let f = fiber::spawn(|| {
//!         fiber::sleep(Duration::from_millis(1)); // suspends only this fiber
//!         let task = fiber_runtime::spawn(async { 20 });
//!         task.join().unwrap() + 1 // a fiber waits for a task...
//!     });
//!     assert_eq!(f.await.unwrap(), 21); // ...and a task awaits a fiber
//! });
//! ```
//!
//! # Never migrates
//!
//! A fiber runs on the worker where it first runs, from its first
//! instruction to its last. Until it starts it is an ordinary task, which
//! an idle worker may steal (so fibers spread over the workers); its first
//! poll makes it a *pinned* task of that worker: from then on every wake
//! queues it there only, in a queue no other worker steals from, and its
//! future checks the thread on every resumption. So thread-locals and
//! `!Send` values held across a suspension stay sound: the thread they
//! belong to is the only one that ever runs the fiber's code.
//!
//! # Blocking-style calls
//!
//! | called from | behaviour |
//! | --- | --- |
//! | inside a fiber | suspends the fiber; the worker runs other work |
//! | a thread outside any runtime | blocks that thread |
//! | an async task on a worker | panics with a message naming `.await` |
//!
//! # Panics and cancellation
//!
//! A panic inside a fiber is caught at its entry and returned through its
//! `JoinHandle` as a [`JoinError`](crate::JoinError). Aborting a suspended
//! fiber, or dropping its runtime, unwinds its stack on its own thread, so
//! every local's destructor runs; then the stack goes back to the pool.
//!
//! # Stacks
//!
//! Default 256 KiB of virtual memory (only touched pages cost memory; set
//! per runtime with [`Builder::fiber_stack_size`](crate::Builder::fiber_stack_size)
//! or per fiber with [`Builder::stack_size`]), with a guard page below,
//! pooled per thread. A fiber takes its stack when it first runs, so a
//! fiber spawned but not started holds none.

mod arch;
mod future;
mod overflow;
mod stack;

pub use future::FiberId;

use crate::runtime::builder::check_fiber_stack_size;
use crate::runtime::context;
use crate::scheduler;
use crate::task::JoinHandle;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Spawns a fiber running `f` on the current runtime.
///
/// # Panics
///
/// Panics if there is no current runtime, or if no stack can be had (see
/// [`Builder::spawn`] for the error instead).
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let h = fiber_runtime::fiber::spawn(|| 6 * 7);
///     assert_eq!(h.await.unwrap(), 42);
/// });
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("`fiber::spawn` failed: {e}"),
    }
}

/// Configures a fiber before spawning it.
///
/// # Examples
///
/// ```
/// use fiber_runtime::fiber;
///
/// fiber_runtime::block_on(async {
///     let h = fiber::Builder::new()
///         .name("worker")
///         .stack_size(64 * 1024)
///         .spawn(|| "done")
///         .unwrap();
///     assert_eq!(h.await.unwrap(), "done");
/// });
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Builder {
    /// A builder with the runtime's defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = fiber_runtime::fiber::Builder::new();
    /// # drop(b);
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the fiber (shown in its stack overflow message).
    ///
    /// # Examples
    ///
    /// See [`Builder`].
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the stack size in bytes (16 KiB to 1 GiB; rounded up to pages).
    ///
    /// # Examples
    ///
    /// See [`Builder`].
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns the fiber on the current runtime.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the stack size is outside 16 KiB..=1 GiB (naming
    /// the range), or if there is no current runtime.
    ///
    /// The stack itself is taken when the fiber first runs, from the pool
    /// of the worker that runs it, so a fiber queued but not started holds
    /// none. If no stack can be mapped then, the fiber does not start and
    /// its `JoinHandle` returns a [`JoinError`](crate::JoinError) whose
    /// message carries the OS error and names the limit
    /// (`vm.max_map_count`, `ulimit -v`).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let err = fiber_runtime::fiber::Builder::new().stack_size(1024).spawn(|| ()).unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// });
    /// ```
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = context::with_current(|h| h.clone()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "there is no fiber-runtime runtime on this thread: spawn fibers from a task, \
                 a fiber, `Runtime::block_on`, or after `Runtime::enter()`",
            )
        })?;
        let size = self.stack_size.unwrap_or_else(|| handle.fiber_stack_size());
        check_fiber_stack_size(
            if self.stack_size.is_some() {
                "fiber stack_size"
            } else {
                "fiber_stack_size"
            },
            size,
        )?;
        let id = FiberId(NEXT_ID.fetch_add(1, Relaxed));
        let fut =
            future::FiberFuture::new(f, size, id, self.name, handle.id(), handle.fiber_counter());
        Ok(match &handle {
            scheduler::Handle::MultiThread(h) => {
                scheduler::multi_thread::Handle::spawn_pinned(h, fut)
            }
            scheduler::Handle::CurrentThread(h) => scheduler::current_thread::Handle::spawn(h, fut),
        })
    }
}

/// How a blocking-style call behaves here (see the module doc).
enum Where {
    Fiber(&'static future::Current),
    PlainThread,
}

#[track_caller]
fn locate(what: &str, instead: &str) -> Where {
    if let Some(f) = future::current() {
        return Where::Fiber(f);
    }
    context::assert_blocking_allowed(what, instead);
    Where::PlainThread
}

/// Waits for `fut` in blocking style: suspends the current fiber until it
/// completes (the worker runs other work meanwhile); on a thread outside
/// any runtime, blocks the thread.
///
/// # Panics
///
/// Panics if called from an async task on a runtime thread (use `.await`).
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let h = fiber_runtime::fiber::spawn(|| fiber_runtime::fiber::wait(async { 5 }));
///     assert_eq!(h.await.unwrap(), 5);
/// });
/// ```
#[track_caller]
pub fn wait<F: Future>(fut: F) -> F::Output {
    match locate("fiber::wait", "`.await` the future") {
        Where::Fiber(f) => f.wait(fut),
        Where::PlainThread => crate::runtime::park::block_on_thread(fut),
    }
}

/// Lets other tasks and fibers run: the fiber goes to the back of its
/// worker's queue. On a plain thread, yields the OS thread.
///
/// # Panics
///
/// Panics if called from an async task on a runtime thread (use
/// `fiber_runtime::yield_now().await`).
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     fiber_runtime::fiber::spawn(|| fiber_runtime::fiber::yield_now()).await.unwrap();
/// });
/// ```
#[track_caller]
#[inline] // see `Current::yield_now`
pub fn yield_now() {
    match future::current() {
        Some(f) => f.yield_now(),
        None => {
            context::assert_blocking_allowed(
                "fiber::yield_now",
                "`fiber_runtime::yield_now().await`",
            );
            std::thread::yield_now()
        }
    }
}

/// Sleeps for `dur`: suspends the fiber (on the runtime's timer wheel),
/// or blocks a plain thread.
///
/// # Panics
///
/// Panics if called from an async task on a runtime thread (use
/// `time::sleep(dur).await`).
///
/// # Examples
///
/// ```
/// use fiber_runtime::time::{Duration, Instant};
///
/// fiber_runtime::block_on(async {
///     let t = Instant::now();
///     fiber_runtime::fiber::spawn(|| fiber_runtime::fiber::sleep(Duration::from_millis(2)))
///         .await
///         .unwrap();
///     assert!(t.elapsed() >= Duration::from_millis(2));
/// });
/// ```
#[track_caller]
pub fn sleep(dur: Duration) {
    match locate("fiber::sleep", "`fiber_runtime::time::sleep(dur).await`") {
        Where::Fiber(f) => f.wait(crate::time::sleep(dur)),
        Where::PlainThread => std::thread::sleep(dur),
    }
}

/// The id of the fiber running this code, or `None` outside fibers.
///
/// # Examples
///
/// ```
/// assert!(fiber_runtime::fiber::current().is_none());
/// fiber_runtime::block_on(async {
///     let id = fiber_runtime::fiber::spawn(fiber_runtime::fiber::current).await.unwrap();
///     assert!(id.is_some());
/// });
/// ```
pub fn current() -> Option<FiberId> {
    future::current().map(|f| f.id)
}

/// Trims this thread's stack pools (the thread is about to idle).
pub(crate) fn trim_stack_pools() {
    future::trim_stack_pools();
}

/// Unwinds this thread's suspended fibers of the runtime `id` (shutdown).
pub(crate) fn unwind_all_on_this_thread(id: usize) {
    future::unwind_all_on_this_thread(id);
}

/// Inside a fiber: waits for `fut` (used by `JoinHandle::join`).
pub(crate) fn wait_if_in_fiber<F: Future>(fut: F) -> Result<F::Output, F> {
    match future::current() {
        Some(f) => Ok(f.wait(fut)),
        None => Err(fut),
    }
}

/// For the benchmarks only: `round_trips` round trips (two switches each)
/// between two bare contexts, no scheduler involved.
#[doc(hidden)]
pub fn __bench_raw_switch(round_trips: u64) -> Duration {
    arch::ping_pong(round_trips)
}
