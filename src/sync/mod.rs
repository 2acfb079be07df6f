//! Synchronisation for tasks, fibers and plain threads: one set of types.
//!
//! Every type here serves all three kinds of caller. Each waiting
//! operation comes as an `async` method to `.await` and as a `blocking_*`
//! method that waits in blocking style:
//!
//! | `blocking_*` called from | behaviour |
//! | --- | --- |
//! | inside a fiber | suspends the fiber; the worker runs other work |
//! | a thread outside any runtime | blocks that thread |
//! | an async task on a runtime thread | panics, naming the `async` method to `.await` instead |
//!
//! So a fiber may hold a [`MutexGuard`] across `fiber::sleep`, I/O or a
//! channel receive (a fiber never migrates, so the guard stays on its
//! thread), and the worker goes on running other fibers and tasks. With
//! `std::sync::Mutex` or `std::sync::mpsc` the same program blocks the
//! worker thread, and on a one-thread runtime nothing else ever runs.
//!
//! # What is here
//!
//! - locks: [`Mutex`], [`RwLock`] (FIFO-fair, no writer starvation), and
//!   a counting [`Semaphore`];
//! - events: [`Notify`] (one waiter or all), [`Barrier`] (reusable);
//! - channels: [`oneshot`] (one value), [`mpsc`] (many senders, one
//!   receiver; bounded with back-pressure, or unbounded), [`broadcast`]
//!   (every receiver sees every value; a lagging one is told how many it
//!   missed), [`watch`] (the latest value).
//!
//! # Fairness, allocation, cancellation
//!
//! Locks and the semaphore serve waiters in the order they came. Waiting
//! allocates nothing: a waiter is a node inside the pending future (or on
//! the waiting fiber's stack), linked into the primitive's list. Every
//! waiting future is cancel-safe in the sense each method documents:
//! dropping a pending `lock()`, `acquire()`, `recv()`, `send()` or
//! `notified()` loses no permit, message or notification, and aborting a
//! fiber that waits in a `blocking_*` call takes it off the list.
//!
//! # Examples
//!
//! A fiber, a task and a plain thread on one channel:
//!
//! ```
//! use fiber_runtime::sync::mpsc;
//!
//! fiber_runtime::block_on(async {
//!     let (tx, mut rx) = mpsc::channel(4);
//!     let t = tx.clone();
//!     let fiber = fiber_runtime::fiber::spawn(move || t.blocking_send("fiber").unwrap());
//!     let t = tx.clone();
//!     let thread = std::thread::spawn(move || t.blocking_send("thread").unwrap());
//!     fiber_runtime::spawn(async move { tx.send("task").await.unwrap() });
//!     let mut got = Vec::new();
//!     while let Some(v) = rx.recv().await {
//!         got.push(v);
//!     }
//!     got.sort();
//!     assert_eq!(got, ["fiber", "task", "thread"]);
//!     fiber.await.unwrap();
//!     thread.join().unwrap();
//! });
//! ```

mod batch_semaphore;

mod mutex;
pub use mutex::{Mutex, MutexGuard, OwnedMutexGuard, TryLockError};

mod rwlock;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};

mod semaphore;
pub use semaphore::{
    AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, TryAcquireError,
};

mod notify;
pub use notify::{Notified, Notify};

mod barrier;
pub use barrier::{Barrier, BarrierWaitResult};

pub mod broadcast;
pub mod mpsc;
pub mod oneshot;
pub mod watch;
