//! Unix signals as streams: [`signal`] returns a [`Signal`] that yields
//! once per delivery (deliveries close together coalesce into one).

use super::registry::{self, Slot};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

/// A kind of Unix signal, by number: the usual ones have constructors,
/// any other is [`from_raw`](Self::from_raw).
///
/// # Examples
///
/// ```
/// use fiber_runtime::signal::unix::SignalKind;
///
/// assert_eq!(SignalKind::hangup().as_raw_value(), libc::SIGHUP);
/// assert_eq!(SignalKind::from_raw(libc::SIGUSR1), SignalKind::user_defined1());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// The signal of number `signum`. Whether it may be handled is checked
    /// by [`signal`], which refuses invalid numbers and the signals that
    /// must not be caught.
    pub const fn from_raw(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }

    /// The signal's number.
    pub const fn as_raw_value(&self) -> libc::c_int {
        self.0
    }

    /// `SIGALRM`: a timer set by `alarm(2)` or `setitimer(2)` expired.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }

    /// `SIGCHLD`: a child process stopped or exited.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }

    /// `SIGHUP`: the terminal went away; daemons often reload on it.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }

    /// `SIGINT`: Ctrl-C in the terminal (see also [`ctrl_c`](crate::signal::ctrl_c)).
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }

    /// `SIGPIPE`: a write to a pipe or socket nobody reads any more.
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }

    /// `SIGQUIT`: Ctrl-\ in the terminal.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }

    /// `SIGTERM`: a polite request to terminate (`kill`'s default).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }

    /// `SIGUSR1`: for the application's own use.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }

    /// `SIGUSR2`: for the application's own use.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }

    /// `SIGWINCH`: the terminal window changed size.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }
}

impl From<libc::c_int> for SignalKind {
    fn from(signum: libc::c_int) -> SignalKind {
        SignalKind::from_raw(signum)
    }
}

impl From<SignalKind> for libc::c_int {
    fn from(kind: SignalKind) -> libc::c_int {
        kind.as_raw_value()
    }
}

impl fmt::Debug for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SignalKind").field(&self.0).finish()
    }
}

/// A stream of one kind of signal, made by [`signal`]: each
/// [`recv`](Signal::recv) completes once the signal has been delivered
/// since the previous one completed (or, for the first, since the
/// `Signal` was made). Deliveries in between coalesce into one, as the
/// kernel does for a signal already pending; nothing is lost otherwise.
///
/// Every `Signal` of a kind gets every delivery: they are independent
/// listeners. Dropping one (or a `recv` future of one, at any point)
/// takes nothing from the others.
pub struct Signal {
    kind: SignalKind,
    slot: &'static Slot,
    /// This listener's entry in the slot's waiter list.
    index: usize,
    /// The slot's delivery count this listener has seen.
    seen: u64,
}

/// Listens for signals of `kind`. The handler is installed by this call
/// (once per signal number and process; it stays installed, as it does
/// with tokio: the signal's default action, such as terminating the
/// process for `SIGINT` or `SIGTERM`, no longer happens). Deliveries from
/// this call on count for the returned [`Signal`], even before its first
/// `recv`.
///
/// Works from anywhere: async tasks, fibers, plain threads, with or
/// without a runtime (see the [module doc](crate::signal) for how).
///
/// # Errors
///
/// `InvalidInput` for a number that is not a signal of this system (0,
/// negative, the numbers the C library reserves, above `SIGRTMAX`), and
/// for the signals this crate refuses to handle: `SIGKILL` and `SIGSTOP`
/// (cannot be caught), `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE` and
/// `SIGTRAP` (faults, which a handler must not return from; the fiber
/// stack overflow detection uses `SIGSEGV`). The OS error if the handler
/// or the dispatcher thread cannot be set up.
///
/// # Examples
///
/// ```
/// use fiber_runtime::signal::unix::{SignalKind, signal};
///
/// fiber_runtime::block_on(async {
///     let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
///     // SAFETY: raising a signal we handle.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     usr1.recv().await.unwrap();
///
///     let err = signal(SignalKind::from_raw(libc::SIGKILL)).unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// });
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let slot = registry::install(kind.as_raw_value())?;
    let (index, seen) = slot.join();
    Ok(Signal {
        kind,
        slot,
        index,
        seen,
    })
}

impl Signal {
    /// Waits for the next delivery; `None` only if deliveries stopped
    /// (the dispatcher thread's socket failed, which does not happen in
    /// practice), and from then on.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future loses no delivery, for this
    /// `Signal` or any other.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::signal::unix::{SignalKind, signal};
    ///
    /// fiber_runtime::block_on(async {
    ///     let mut usr2 = signal(SignalKind::user_defined2()).unwrap();
    ///     // SAFETY: raising a signal we handle.
    ///     unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
    ///     assert_eq!(usr2.recv().await, Some(()));
    /// });
    /// ```
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery: `Ready(Some(()))` if there was one
    /// since the last `Ready`, else registers `cx`'s waker (only the last
    /// registered waker of a `Signal` is woken). See [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::signal::unix::{SignalKind, signal};
    /// use std::future::poll_fn;
    ///
    /// fiber_runtime::block_on(async {
    ///     let mut s = signal(SignalKind::window_change()).unwrap();
    ///     // SAFETY: raising a signal we handle.
    ///     unsafe { libc::raise(libc::SIGWINCH) };
    ///     poll_fn(|cx| s.poll_recv(cx)).await.unwrap();
    /// });
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.slot.poll(self.index, &mut self.seen, cx)
    }

    /// Waits for the next delivery in blocking style: suspends the fiber
    /// (inside one), blocks a plain thread. See [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// Panics if called from an async task (or the future given to
    /// `block_on`) on a runtime thread: `.await` [`recv`](Self::recv) there.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::signal::unix::{SignalKind, signal};
    ///
    /// fiber_runtime::block_on(async {
    ///     let got = fiber_runtime::fiber::spawn(|| {
    ///         let mut s = signal(SignalKind::alarm()).unwrap();
    ///         // SAFETY: raising a signal we handle.
    ///         unsafe { libc::raise(libc::SIGALRM) };
    ///         s.blocking_recv()
    ///     });
    ///     assert_eq!(got.await.unwrap(), Some(()));
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Option<()> {
        crate::wait::wait(
            self.recv(),
            "Signal::blocking_recv",
            "`.await` `Signal::recv` (`signal.recv().await`)",
        )
    }

    /// The kind of signal this listens for.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::signal::unix::{SignalKind, signal};
    ///
    /// let s = signal(SignalKind::user_defined1()).unwrap();
    /// assert_eq!(s.kind(), SignalKind::user_defined1());
    /// ```
    pub fn kind(&self) -> SignalKind {
        self.kind
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.slot.leave(self.index);
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}
