//! Signals: [`ctrl_c()`] and Unix signal streams ([`unix::signal`]), as
//! in tokio.
//!
//! ```no_run
//! use fiber_runtime::signal::{self, unix::{SignalKind, signal}};
//!
//! fiber_runtime::block_on(async {
//!     let mut hangup = signal(SignalKind::hangup())?;
//!     let stop = signal::ctrl_c();
//!     fiber_runtime::spawn(async move {
//!         while hangup.recv().await.is_some() {
//!             println!("reloading the configuration");
//!         }
//!     });
//!     stop.await?;
//!     println!("shutting down");
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! Usable from every kind of caller: `.await` [`Signal::recv`] (or
//! [`ctrl_c()`]) in an async task, [`Signal::blocking_recv`] in a fiber
//! (it suspends the fiber) or on a plain thread (it blocks it).
//!
//! # How a delivery reaches the waiters
//!
//! A signal handler may only do async-signal-safe work: no lock, no
//! allocation, no waker (a wake may take a lock or allocate). So the
//! handler, installed once per signal number through
//! [signal-hook-registry](https://docs.rs/signal-hook-registry) (which
//! chains to a handler installed before it), only sets a flag for its
//! signal and writes one byte to a non-blocking socket. One process-wide
//! dispatcher thread, `fiber-runtime-signal`, started by the first
//! [`unix::signal`] call, blocks reading the other end; when it wakes it
//! takes every set flag, counts one more delivery for that signal and
//! wakes its listeners. A [`Signal`] remembers the count it has seen
//! (from its creation on), so a delivery between `signal()` and the
//! first `recv` is not lost, every `Signal` of a kind sees every
//! delivery, and deliveries that arrive before a listener looks coalesce
//! into one, as with tokio.
//!
//! Why a thread of its own rather than the runtime's reactor: signals
//! and their handlers are process-wide, while runtimes come and go (and
//! a plain thread or a fiber of any runtime may listen). A reactor would
//! have to own the socket, and hand it over when its runtime is dropped
//! while another still listens; the dispatcher does not care which
//! runtime, if any, its listeners run on, costs one mostly sleeping thread
//! once signals are used, and keeps the reactor's hot path free of
//! signal checks. Signals are rare, so the extra hop through a thread
//! costs nothing that matters.
//!
//! Handlers stay installed for the rest of the process (as with tokio):
//! once a signal is listened for, its default action (terminating the
//! process for `SIGINT`, `SIGTERM`, ...) no longer happens, even after
//! every [`Signal`] of it is dropped. A handler runs on whatever stack the
//! interrupted thread was on, a fiber's included; the part of it this
//! crate adds is an atomic store and one `write(2)`.
//!
//! [`Builder::dump_on_signal`](crate::Builder::dump_on_signal) prints a
//! dump of a runtime at every delivery of a signal (Go's `SIGQUIT`).
//!
//! [`Signal`]: unix::Signal
//! [`Signal::recv`]: unix::Signal::recv
//! [`Signal::blocking_recv`]: unix::Signal::blocking_recv

mod dump;
mod registry;
pub mod unix;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Completes at the next `SIGINT` (Ctrl-C in the terminal) delivered
/// after this call.
///
/// The handler is installed by the call itself, not when the future is
/// first polled: `let c = ctrl_c(); /* SIGINT arrives */ c.await` sees
/// it. From then on `SIGINT` no longer terminates the process (see the
/// [module doc](self)); each call listens afresh.
///
/// The future resolves to an error (the one [`unix::signal`] gives) if
/// the handler cannot be installed.
///
/// # Examples
///
/// ```
/// fiber_runtime::block_on(async {
///     let ctrl_c = fiber_runtime::signal::ctrl_c();
///     // SAFETY: raising a signal we handle (the line above installed it).
///     unsafe { libc::raise(libc::SIGINT) };
///     ctrl_c.await.unwrap();
/// });
/// ```
pub fn ctrl_c() -> CtrlC {
    CtrlC {
        inner: unix::signal(unix::SignalKind::interrupt()).map_err(|e| (e.kind(), e.to_string())),
    }
}

/// The future of [`ctrl_c()`]: `Output = io::Result<()>`.
#[must_use = "futures do nothing unless awaited"]
pub struct CtrlC {
    /// The listener, or why there is none.
    inner: Result<unix::Signal, (io::ErrorKind, String)>,
}

impl Future for CtrlC {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Ok(signal) => signal.poll_recv(cx).map(|got| {
                got.ok_or_else(|| {
                    io::Error::other("signal deliveries stopped (the dispatcher failed)")
                })
            }),
            Err((kind, msg)) => Poll::Ready(Err(io::Error::new(*kind, msg.clone()))),
        }
    }
}

impl fmt::Debug for CtrlC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtrlC")
            .field("listening", &self.inner.is_ok())
            .finish()
    }
}
