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
//! ## On a current-thread runtime
//!
//! A current-thread runtime is driven by whichever thread calls
//! `block_on`, and a fiber runs on the thread that drove it when it
//! started. So while fibers started on one thread are alive, that thread
//! is the only one that may drive the runtime: a `block_on` on another
//! thread that would take the runtime over panics, saying which thread
//! holds the fibers (while that thread is itself inside `block_on`, the
//! other one waits as usual, polling only its own future). Once those
//! fibers finish, any thread may drive the runtime again. Drop such a
//! runtime on its fibers' thread: dropped on another, it cannot unwind
//! them (a fiber never leaves its thread, and that one may even have
//! exited), so it leaks their stacks and says so on stderr.
//!
//! ```
//! use fiber_runtime::{fiber, Builder};
//! use std::sync::Arc;
//!
//! let rt = Arc::new(Builder::new_current_thread().build().unwrap());
//! let (tx, rx) = futures::channel::oneshot::channel::<u32>();
//! // The fiber starts on this thread and waits there.
//! let h = rt.block_on(async {
//!     let h = fiber::spawn(move || fiber::wait(rx).unwrap() + 1);
//!     fiber_runtime::yield_now().await; // let it start
//!     h
//! });
//! let rt2 = rt.clone();
//! let other = std::thread::spawn(move || rt2.block_on(async {}));
//! assert!(other.join().is_err()); // only this thread may drive it now
//! tx.send(41).unwrap();
//! assert_eq!(rt.block_on(h).unwrap(), 42);
//! let rt2 = rt.clone();
//! std::thread::spawn(move || rt2.block_on(async {})).join().unwrap(); // free again
//! ```
//!
//! # Blocking-style calls
//!
//! | called from | behaviour |
//! | --- | --- |
//! | inside a fiber | suspends the fiber; the worker runs other work |
//! | a thread outside any runtime | blocks that thread |
//! | an async task on a worker | panics with a message naming `.await` |
//!
//! A fiber that is unwinding (a destructor runs during a panic, or during
//! its cancellation, and waits) does not suspend: the count of panics in
//! progress is per thread, and the other code of its worker would see it.
//! Such a call blocks the thread instead, as on a plain thread: a
//! `fiber::sleep` sleeps the thread; a socket waits in `poll(2)`; a join
//! or a lock waits with the worker blocked. So keep such destructors from
//! waiting on work that only their own worker would do (a task of a
//! current-thread runtime, another fiber of the same worker, a timer
//! future). At runtime shutdown the ordinary tasks are cancelled before
//! any fiber unwinds, so a destructor that joins a task gets its answer.
//!
//! # Panics and cancellation
//!
//! A panic inside a fiber is caught at its entry and returned through its
//! `JoinHandle` as a [`JoinError`](crate::JoinError). Aborting a suspended
//! fiber, or dropping its runtime, unwinds its stack on its own thread, so
//! every local's destructor runs; then the stack goes back to the pool.
//! (Destructors that wait meanwhile block the thread: see below.)
//!
//! The unwind of a cancellation is raised at the fiber's suspension
//! point. A fiber that catches it (`std::panic::catch_unwind` around a
//! wait) is unwound again at its next suspension point; after 100 times
//! the runtime gives up on it: it stays suspended for good, its stack is
//! leaked, and a line on stderr says so. Let a cancellation unwind.
//!
//! # Thread state
//!
//! What a thread keeps for the code running on it is right for each
//! fiber, item by item:
//!
//! | state | across a fiber switch |
//! | --- | --- |
//! | the current runtime (`Handle::current`, `spawn`) | per fiber: a fiber that enters another runtime (`Handle::enter`) and suspends keeps that to itself; its worker's other code still sees its own runtime |
//! | `EnterGuard` order | per fiber too; guards dropped out of order panic, as in tokio |
//! | the cooperative budget | per poll: a fiber's run between two suspensions is one poll of its task |
//! | the count of panics in progress (`std::thread::panicking`, lock poisoning) | never crosses: a fiber does not switch out while unwinding (see below) |
//! | the current task id (`task::id`) | per fiber: its own, set at every resumption (a fiber's run is a poll of its task) |
//! | `task_local!` scopes | per fiber: a scope entered in a fiber is swapped out when it switches out and back in when it resumes, so the worker's other code never sees it |
//! | `fiber_local!` values | per fiber by construction (they live in the fiber's control block) |
//! | thread-locals of your own | the thread's, shared by every task and fiber it runs (a fiber never leaves its thread, so they stay valid; they do not follow a fiber's view) |
//!
//! # Stacks
//!
//! Default 256 KiB of virtual memory (only touched pages cost memory; set
//! per runtime with [`Builder::fiber_stack_size`](crate::Builder::fiber_stack_size)
//! or per fiber with [`Builder::stack_size`]), with a guard page below,
//! pooled per thread. A fiber takes its stack when it first runs, so a
//! fiber spawned but not started holds none.

mod arch;
#[cfg(fiber_runtime_asan)]
mod asan;
pub(crate) mod context;
mod future;
mod local;
mod overflow;
pub(crate) mod pool;
mod scope;
pub(crate) mod stack;

pub use self::local::LocalKey;
pub use self::scope::{Scope, ScopedJoinHandle, scope};

use crate::scheduler;
use crate::task_core::{JoinHandle, SpawnMeta};
use crate::wait::{self, Caller};
use std::future::Future;
use std::io;
use std::time::Duration;

/// Identifies a fiber; see [`current`]. Its number is the fiber's task
/// [`Id`](crate::task::Id) (`JoinHandle::id`).
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let a = fiber_runtime::fiber::spawn(fiber_runtime::fiber::current);
///     let b = fiber_runtime::fiber::spawn(fiber_runtime::fiber::current);
///     assert_ne!(a.await.unwrap(), b.await.unwrap());
/// });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiberId(u64);

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
    /// the range); an error of kind `Other` carrying a
    /// [`TryCurrentError`](crate::TryCurrentError) if there is no current
    /// runtime.
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
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Here, not in the closure: the location is our caller's
        // (`#[track_caller]` passes on, but not into a closure).
        let meta = SpawnMeta::new(self.name.clone());
        // Spawned inside the closure: no clone of the handle (a shared
        // reference count, which both workers would bounce).
        let spawned = scheduler::context::with_current(|handle| {
            let common = handle.common();
            let size = self.stack_size.unwrap_or(common.config.fiber_stack_size);
            let setting = if self.stack_size.is_some() {
                "fiber stack_size"
            } else {
                "fiber_stack_size"
            };
            if let Err(e) = stack::check_stack_size(setting, size) {
                // `f` goes back to be dropped after `with_current`: what
                // it captured may drop a runtime, which sets the context.
                return Err((e, f));
            }
            // The fiber keeps a copy for its overflow message: its control
            // block may outlive the task (a leaked stack).
            let fut = future::FiberFuture::new(f, size, self.name, handle.id());
            Ok(handle.spawn_fiber(fut, meta))
        })
        .map_err(|kind| crate::runtime::TryCurrentError::no_runtime(kind, "spawning a fiber"))?;
        spawned.map_err(|(e, f)| {
            drop(f);
            e
        })
    }
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
    wait::wait(fut, "fiber::wait", "`.await` the future")
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
    let in_fiber = context::with_current(|current| match current {
        Some(cb) => {
            cb.yield_now();
            true
        }
        None => false,
    });
    if !in_fiber {
        // Here, not in the closure, so that the panic names the caller.
        wait::assert_blocking_allowed("fiber::yield_now", "`fiber_runtime::yield_now().await`");
        std::thread::yield_now()
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
    wait::caller(
        "fiber::sleep",
        "`fiber_runtime::time::sleep(dur).await`",
        |c| match c {
            // Being cancelled (and not unwinding: it caught the unwind): a
            // suspension point, where the unwind is raised again; no timer.
            Caller::Fiber(cb) if cb.is_cancelling() => cb.suspend(),
            Caller::Fiber(cb) => cb.wait(crate::time::sleep(dur)),
            Caller::Thread => std::thread::sleep(dur),
        },
    )
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
    context::with_current(|cb| cb.map(|cb| FiberId(cb.id)))
}
