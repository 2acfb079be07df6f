//! Feature `tokio-compat`: run futures that need a tokio context
//! (`tokio::net`, `tokio::time`, reqwest, sqlx, tonic's client) inside
//! this runtime's tasks and fibers.
//!
//! [`Compat`] wraps such a future and enters a tokio runtime's context
//! around every poll of it (and around its drop), so the tokio resources
//! it creates register with that runtime's I/O driver and timer. By
//! default that is a background tokio runtime with one thread
//! (`fiber-runtime-tokio`), started the first time it is needed and kept
//! for the life of the process; [`Compat::with_handle`] uses another one,
//! and a `Compat` made inside a tokio context uses that context's runtime.
//!
//! # What holds, and what does not
//!
//! - tokio objects look for their runtime when they are *created*, so
//!   create them inside the wrapped future: `async {
//!   tokio::time::sleep(d).await }.compat()`, not
//!   `tokio::time::sleep(d).compat()` (that one panics with tokio's "there
//!   is no reactor running" before `compat` is reached). A tokio object
//!   made inside one `Compat` may be used in another later.
//! - The future itself runs on this runtime: as a task (`.await` it, or
//!   [`spawn`](crate::spawn) it) or in a fiber
//!   ([`fiber::wait`](crate::fiber::wait)`(fut.compat())`). Its output,
//!   panics and cancellation behave as for any future here.
//! - tokio's I/O events and timers are turned by tokio's thread: a
//!   readiness event or an expired tokio timer reaches the waiting task
//!   through one more cross-thread wake than native tokio (a second
//!   reactor). This runtime's own sockets and timers
//!   ([`net`](crate::net), [`time`](crate::time)) do not take that path:
//!   prefer them where both fit.
//! - `tokio::spawn` inside a `Compat` spawns onto the tokio runtime, not
//!   onto this one; the spawned future runs there (on its one thread by
//!   default) and its `JoinHandle` works from here.
//! - Inside the wrapped future, blocking-style calls that would suspend a
//!   fiber (`fiber::wait`, `blocking_*`, `std::io` on this crate's
//!   sockets, when the `Compat` is awaited in a fiber) panic instead,
//!   naming the call: suspending with the tokio context entered would
//!   leave it on the worker for whatever runs next. Use their async forms
//!   in there; the fiber itself waits for the whole `Compat` with
//!   [`fiber::wait`](crate::fiber::wait).
//! - `tokio::task::block_in_place` panics (this is not a tokio worker) and
//!   `tokio::runtime::Handle::block_on` would block this runtime's worker:
//!   use [`spawn_blocking`](crate::spawn_blocking) or a fiber instead.
//!   `tokio::task::spawn_local` / `LocalSet` and `tokio::time::pause` are
//!   not supported.
//!
//! # Examples
//!
//! ```
//! use fiber_runtime::compat::TokioCompatExt;
//! use std::time::Duration;
//!
//! fiber_runtime::block_on(async {
//!     // A tokio timer, awaited in a fiber-runtime task...
//!     async { tokio::time::sleep(Duration::from_millis(1)).await }.compat().await;
//!     // ...and in a fiber, in blocking style.
//!     let f = fiber_runtime::fiber::spawn(|| {
//!         let sleep_then_7 = async {
//!             tokio::time::sleep(Duration::from_millis(1)).await;
//!             7
//!         };
//!         fiber_runtime::fiber::wait(sleep_then_7.compat())
//!     });
//!     assert_eq!(f.await.unwrap(), 7);
//! });
//! ```

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

/// Wraps a future so that it runs inside a tokio context; see the
/// [module docs](self).
#[must_use = "futures do nothing unless polled"]
pub struct Compat<T> {
    /// Dropped by hand, inside the tokio context (tokio resources
    /// deregister on drop).
    inner: ManuallyDrop<T>,
    handle: tokio::runtime::Handle,
}

impl<T> Compat<T> {
    /// Wraps `inner` for the current tokio context if there is one, else
    /// for the background tokio runtime (started on first use).
    ///
    /// # Panics
    ///
    /// Panics if the background tokio runtime cannot be started (no thread
    /// or no epoll instance could be created).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::compat::Compat;
    ///
    /// fiber_runtime::block_on(async {
    ///     let n = Compat::new(async { tokio::task::yield_now().await; 1 }).await;
    ///     assert_eq!(n, 1);
    /// });
    /// ```
    pub fn new(inner: T) -> Compat<T> {
        let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| background().clone());
        Compat::with_handle(inner, handle)
    }

    /// Wraps `inner` for the tokio runtime of `handle`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::compat::Compat;
    ///
    /// let tokio_rt = tokio::runtime::Builder::new_multi_thread()
    ///     .worker_threads(1)
    ///     .enable_all()
    ///     .build()
    ///     .unwrap();
    /// fiber_runtime::block_on(async {
    ///     let h = tokio_rt.handle().clone();
    ///     let v = Compat::with_handle(async { tokio::spawn(async { 5 }).await.unwrap() }, h).await;
    ///     assert_eq!(v, 5);
    /// });
    /// ```
    pub fn with_handle(inner: T, handle: tokio::runtime::Handle) -> Compat<T> {
        Compat {
            inner: ManuallyDrop::new(inner),
            handle,
        }
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped value, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: Future> Future for Compat<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out
        // (only dropped in place, in `Drop`), and `Compat` is `Unpin` only
        // when `T` is.
        let this = unsafe { self.get_unchecked_mut() };
        let _tokio = this.handle.enter();
        // SAFETY: as above, `inner` stays where it is until dropped.
        let inner = unsafe { Pin::new_unchecked(&mut *this.inner) };
        // A fiber must not switch out with the tokio context entered.
        crate::wait::no_suspension("a `Compat` future (the tokio context is entered)", || {
            inner.poll(cx)
        })
    }
}

impl<T> Drop for Compat<T> {
    fn drop(&mut self) {
        let _tokio = self.handle.enter();
        // SAFETY: `inner` is dropped once, here, and never used after.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}

impl<T: fmt::Debug> fmt::Debug for Compat<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compat")
            .field("inner", &*self.inner)
            .finish()
    }
}

/// `.compat()` on every value: `fut.compat().await`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::compat::TokioCompatExt;
///
/// fiber_runtime::block_on(async {
///     let l = async { tokio::net::TcpListener::bind("127.0.0.1:0").await }
///         .compat()
///         .await
///         .unwrap();
///     assert!(l.local_addr().unwrap().ip().is_loopback());
/// });
/// ```
pub trait TokioCompatExt: Sized {
    /// Wraps `self` in a [`Compat`] (see [`Compat::new`]).
    fn compat(self) -> Compat<Self> {
        Compat::new(self)
    }
}

impl<T> TokioCompatExt for T {}

/// The background tokio runtime: one thread, I/O and time enabled.
fn background() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fiber-runtime-tokio")
                .enable_all()
                .build()
                .unwrap_or_else(|e| {
                    panic!("fiber-runtime's tokio compatibility runtime could not start: {e}")
                })
        })
        .handle()
}
