//! fiber-runtime: a multi-threaded work-stealing runtime for lightweight
//! concurrency.
//!
//! ```
//! use fiber_runtime::Runtime;
//!
//! let rt = Runtime::new().unwrap();
//! let sum = rt.block_on(async {
//!     let handles: Vec<_> = (1..=10u64)
//!         .map(|i| fiber_runtime::spawn(async move { i * i }))
//!         .collect();
//!     let mut sum = 0;
//!     for h in handles {
//!         sum += h.await.unwrap();
//!     }
//!     sum
//! });
//! assert_eq!(sum, 385);
//! ```
//!
//! # What it runs
//!
//! - **Tasks**: any `Future + Send + 'static`, spawned with [`spawn`] onto a
//!   work-stealing scheduler (per-worker ring of 256 plus a LIFO slot, a
//!   global injector, steal-half when idle). Each task is one allocation
//!   with at most 64 bytes of overhead beyond its future; its
//!   [`JoinHandle`] is typed (no boxing of the output).
//! - **Blocking closures**: [`spawn_blocking`] runs them on a pool that
//!   grows on demand and retires idle threads.
//! - Two flavors: multi-thread (default; one worker per core) and
//!   current-thread ([`Builder::new_current_thread`]).
//!
//! - **I/O and timers**: a mio reactor (epoll) turned by the worker about to
//!   park, no reactor thread; [`net`] has TCP, UDP and Unix sockets
//!   implementing the [`io`] traits; [`time`] has `sleep`, `timeout` and
//!   `interval` on a hierarchical timer wheel.
//!
//! - **Fibers**: [`fiber::spawn`] runs a closure on its own small stack as
//!   a green thread on the same scheduler, in plain blocking style
//!   ([`fiber::wait`] on any future, [`fiber::sleep`], `std::io` on the
//!   [`net`] types), with the same [`JoinHandle`]. A fiber never migrates
//!   between threads once started.
//!
//! - **Sync**: [`sync`] has one `Mutex`, `RwLock`, `Semaphore`, `Notify`,
//!   `Barrier` and the `oneshot`, `mpsc`, `broadcast` and `watch` channels
//!   for all three kinds of caller: `.await` in a task, `blocking_*` in a
//!   fiber (suspends it) or on a plain thread (blocks it). FIFO fair, and
//!   a dropped waiter loses nothing.
//! - **Task groups, scopes and locals**: [`task::JoinSet`],
//!   [`fiber::scope`] (children that borrow from the caller's stack),
//!   [`task_local!`], [`fiber_local!`], [`task::Builder`] for names and
//!   [`task::Id`].
//!
//! # Task or fiber?
//!
//! Both run on the same workers and return the same [`JoinHandle`]; pick
//! per piece of code, and mix freely.
//!
//! | | task ([`spawn`]) | fiber ([`fiber::spawn`]) |
//! | --- | --- | --- |
//! | style | `async`/`.await` | plain blocking code |
//! | memory | the future's size plus 64 bytes | a stack (256 KiB virtual, pages touched on use) |
//! | switch | a poll returns | a register switch (a few ns) |
//! | moves between workers | at every wake (work stealing) | never, once started |
//! | holds `!Send` data across a wait | no | yes |
//! | fits | many small I/O state machines, combinators (`select`, timeouts) | porting blocking code, deep call stacks, a thread per client design, libraries that take callbacks |
//!
//! What a fiber may call: everything of this crate that waits — the
//! `blocking_*` methods of [`sync`], [`fiber::sleep`], [`fiber::wait`] on
//! any future, [`JoinHandle::join`], `std::io::Read`/`Write` on the
//! [`net`] types — suspends only that fiber, and the worker runs other
//! tasks and fibers meanwhile. What a fiber must not call: anything that
//! blocks the thread — `std::thread::sleep`, `std::sync::Mutex` held
//! across a suspension or contended, `std::sync::mpsc`, blocking sockets
//! of `std::net`, blocking C calls — because that stops the whole worker,
//! and every task and fiber queued on it. Use the [`sync`] types and
//! [`fiber::sleep`] instead, or hand the call to [`spawn_blocking`]:
//!
//! ```
//! use fiber_runtime::{fiber, sync::Mutex, time::Duration};
//! use std::sync::Arc;
//!
//! fiber_runtime::block_on(async {
//!     let total = Arc::new(Mutex::new(0u32));
//!     let t = total.clone();
//!     let f = fiber::spawn(move || {
//!         let mut g = t.blocking_lock(); // suspends the fiber if contended
//!         fiber::sleep(Duration::from_millis(1)); // fine: a fiber never migrates
//!         *g += 1;
//!     });
//!     *total.lock().await += 1; // a task awaits the same lock
//!     f.await.unwrap();
//!     assert_eq!(*total.lock().await, 2);
//! });
//! ```
//!
//! In an async task the `blocking_*` methods panic with a message naming
//! the method to `.await` instead, rather than stall the worker.
//!
//! # Entry points
//!
//! - [`block_on`]: build a default runtime, run one future, drop it;
//! - [`fiber_main!`]: `fn main` whose body, an async block (not a fiber), may
//!   `.await`;
//! - [`#[fiber_runtime::main]`](macro@main) and
//!   [`#[fiber_runtime::test]`](macro@test), with `flavor` and
//!   `worker_threads` options;
//! - [`Runtime`] / [`Builder`] / [`Handle`] for full control.
//!
//! # Features and targets
//!
//! Cargo features; the default build has only `signal`, and each adapter
//! adds its dependencies only when enabled:
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `signal` (default) | `signal::ctrl_c` and `signal::unix::signal` |
//! | `hyper` | hyper 1.x: `hyper::rt::Read`/`Write` on [`net::TcpStream`] and [`net::UnixStream`]; `hyper::{Executor, Timer, Connector}` (a hyper-util client connector) |
//! | `tokio-io` | `tokio::io::AsyncRead`/`AsyncWrite` on the stream types and `&T` (tokio-util codecs, tokio-rustls, hyper-util's `TokioIo`) |
//! | `tokio-compat` | `compat::{Compat, TokioCompatExt}`: tokio-only futures (`tokio::net`, `tokio::time`, reqwest) inside tasks and fibers |
//! | `tracing` | a span per task and per fiber, entered around every poll and resume; runtime events |
//!
//! Supported targets: Linux on x86_64 and aarch64 (the fiber context
//! switch is written in assembly for these two); the task scheduler
//! itself is portable Rust.
//!
//! **`tracing`** (off by default): every task, fiber and blocking closure
//! gets a [`tracing`](https://docs.rs/tracing) span, made at spawn and
//! entered around every poll of the task and every resumption of the
//! fiber: `runtime.spawn` at `TRACE` level, target
//! `fiber_runtime::task`, with the fields `kind` (`task`, `fiber`,
//! `blocking`), `task.name` (from [`task::Builder`] or
//! [`fiber::Builder`]), `task.id` ([`task::Id`]) and `loc.file`,
//! `loc.line`, `loc.col` (the spawn call) — tokio's names, which
//! `tokio-console` knows. The span is a root that `follows_from` the
//! spawner's current span (a task often outlives the span it was spawned
//! in; to run it inside that span, `spawn(fut.in_current_span())`). The
//! spans a fiber enters follow it across its suspensions: a guard held
//! over `fiber::sleep`, `fiber::yield_now`, a `blocking_*` call or
//! `fiber::wait` is exited while the fiber is suspended, so the other
//! work of its worker is not labelled with it, and entered again when it
//! resumes. This works with any subscriber that reports its current span
//! (`tracing_subscriber`'s `Registry` and `fmt` do) set as the global
//! default, or as the thread's default around a current-thread runtime;
//! a default subscriber set *inside* a fiber and held across a suspension
//! is not swapped out. The runtime's own events: `spawn` (target
//! `fiber_runtime::task`), worker `park`, `unpark` and `steal` (with its
//! `count`; target `fiber_runtime::scheduler`) at `TRACE`, and
//! blocking-pool threads starting and exiting (`fiber_runtime::blocking`)
//! at `DEBUG`. Without the feature none of this is compiled in.
//!
//! ```
//! # #[cfg(feature = "tracing")] {
//! use fiber_runtime::{fiber, task};
//!
//! // Everything, on stdout (a program would filter by level or target).
//! tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).init();
//! fiber_runtime::block_on(async {
//!     let h = task::Builder::new()
//!         .name("greeter")
//!         // Logged inside `runtime.spawn{kind="task" task.name="greeter" ..}`.
//!         .spawn(async { tracing::info!("hello") })
//!         .unwrap();
//!     h.await.unwrap();
//!     let f = fiber::spawn(|| {
//!         let _request = tracing::info_span!("request", id = 7).entered();
//!         // `request` is exited while the fiber is suspended, and entered
//!         // again when it resumes.
//!         fiber::yield_now();
//!         tracing::info!("still inside the request");
//!     });
//!     f.await.unwrap();
//! });
//! # }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
mod macros;

#[cfg(feature = "tokio-compat")]
pub mod compat;
mod driver;
pub mod fiber;
#[cfg(feature = "hyper")]
pub mod hyper;
mod loom;
mod reactor;
pub mod runtime;
mod scheduler;
#[cfg(feature = "signal")]
pub mod signal;
mod task_core;
mod uring;
mod util;
mod wait;

pub mod task {
    //! Tasks: handles, groups, ids, names and task-local values.
    //!
    //! - [`JoinHandle`] (also at the crate root) joins one task or fiber;
    //!   [`AbortHandle`] only cancels it.
    //! - [`JoinSet`] holds many tasks and fibers and yields their outputs as
    //!   they finish; dropping the set aborts them.
    //! - [`Builder`] names a task or fiber before spawning it.
    //! - [`Id`] identifies every task and fiber: [`JoinHandle::id`] from
    //!   outside, [`id()`] from inside.
    //! - [`task_local!`](crate::task_local) declares a value set for the extent
    //!   of a future ([`LocalKey::scope`]) or a closure ([`LocalKey::sync_scope`]);
    //!   for one value per fiber, see [`fiber_local!`](crate::fiber_local).
    //!
    //! ```
    //! use fiber_runtime::task::JoinSet;
    //!
    //! fiber_runtime::block_on(async {
    //!     let mut set = JoinSet::new();
    //!     set.spawn(async { 1 });
    //!     set.spawn_fiber(|| 2);
    //!     let mut sum = 0;
    //!     while let Some(res) = set.join_next().await {
    //!         sum += res.unwrap();
    //!     }
    //!     assert_eq!(sum, 3);
    //! });
    //! ```

    mod builder;
    mod join_set;

    pub use self::builder::Builder;
    pub use self::join_set::JoinSet;
    pub use crate::task_core::{
        AbortHandle, AccessError, Id, JoinError, JoinHandle, LocalKey, TaskLocalFuture, id,
    };
}

pub mod io;
pub mod net;
pub mod sync;
pub mod time;

pub use crate::runtime::{
    Builder, EnterGuard, Handle, IoDriver, LongPoll, LongPollKind, PollTimeHistogram, Runtime,
    RuntimeMetrics, TryCurrentError,
};
pub use crate::task_core::{JoinError, JoinHandle};
pub use fiber_runtime_macros::{main, test};

use std::future::Future;

/// Runs `future` to completion on a new default runtime (multi-thread, one
/// worker per core), then drops the runtime, cancelling any task still
/// running. The future may borrow locals (no `Send` or `'static` bound).
///
/// # Panics
///
/// Panics if the runtime cannot be built (the OS refused a thread), or if
/// called from a thread that already drives a runtime (`.await` the
/// future there, or in a fiber, [`fiber::wait`] for it).
///
/// # Examples
///
/// ```
/// let name = String::from("world");
/// let greeting = fiber_runtime::block_on(async { format!("hello {name}") });
/// assert_eq!(greeting, "hello world");
/// ```
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    // Refused before a runtime is built for nothing.
    wait::assert_block_on_allowed();
    let rt =
        Runtime::new().unwrap_or_else(|e| panic!("failed to build the fiber-runtime runtime: {e}"));
    rt.block_on(future)
}

/// Spawns a task onto the current runtime and returns its [`JoinHandle`].
///
/// The task starts running at once, in the background; awaiting the
/// handle yields its output. Dropping the handle detaches the task.
///
/// # Panics
///
/// Panics if there is no current runtime: call it from a task, inside
/// [`Runtime::block_on`] or `#[fiber_runtime::main]`, or after
/// [`Runtime::enter`].
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let h = fiber_runtime::spawn(async { 1 + 2 });
///     assert_eq!(h.await.unwrap(), 3);
/// });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let meta = task_core::SpawnMeta::new(None);
    match scheduler::context::with_current(|h| h.spawn(future, meta)) {
        Ok(join) => join,
        Err(kind) => panic!(
            "`fiber_runtime::spawn` failed: {}",
            TryCurrentError::new(kind)
        ),
    }
}

/// Runs a blocking closure on the current runtime's blocking pool, so it
/// does not stall a worker, and returns its [`JoinHandle`].
///
/// # Panics
///
/// Panics if there is no current runtime (see [`spawn`]).
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let h = fiber_runtime::spawn_blocking(|| std::fs::metadata("/").is_ok());
///     assert!(h.await.unwrap());
/// });
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let meta = task_core::SpawnMeta::new(None);
    match scheduler::context::with_current(|h| h.blocking_spawner().spawn_blocking(f, meta)) {
        Ok(join) => join,
        Err(kind) => panic!(
            "`fiber_runtime::spawn_blocking` failed: {}",
            TryCurrentError::new(kind)
        ),
    }
}

/// Yields to the scheduler once: the task goes to the back of its
/// worker's queue, behind every task ready on that worker and the tasks
/// waiting in the global queue (spawned or woken from outside the
/// runtime's threads), so they all run before it resumes (on a multi-thread
/// runtime, other workers may take some of them).
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     for _ in 0..3 {
///         fiber_runtime::yield_now().await;
///     }
/// });
/// ```
pub async fn yield_now() {
    struct YieldNow {
        yielded: bool,
    }
    impl Future for YieldNow {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.yielded {
                return std::task::Poll::Ready(());
            }
            self.yielded = true;
            // Woken during its own poll, the task is resubmitted behind
            // the others (`Schedule::yield_now`).
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
    YieldNow { yielded: false }.await
}
