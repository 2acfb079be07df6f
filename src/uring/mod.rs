//! The io_uring driver's rings (`docs/design/io_uring.md`): one per
//! worker, driven only by the thread that owns it.
//!
//! This first step parks runtime threads in their ring. A parked thread
//! waits in one `io_uring_enter` that covers:
//! - its wake-up, an eventfd `READ` that `Unparker::unpark` completes by
//!   writing the eventfd ([`WakeFd`]);
//! - for the thread holding the driver, the reactor's epoll fd, watched by
//!   a one-shot `POLL_ADD`, so sockets still on epoll and the timers' wake
//!   (the reactor's `mio::Waker`) end the wait too;
//! - the next timer, as the enter's timeout (`EXT_ARG`).
//!
//! No socket uses a ring yet: that is step 2 of the design.
//!
//! # Ownership
//!
//! Rings are created with `SINGLE_ISSUER | DEFER_TASKRUN | R_DISABLED` in
//! `Builder::build` ([`create`], so that a refusing kernel fails the build)
//! and enabled by the thread that will drive them ([`Setup::enable`]).
//! From then on only that thread may submit, reap or cancel (the kernel
//! answers EEXIST to any other), so [`Ring`] is `!Send`-in-spirit: the
//! parker checks [`Ring::is_owner`] before using it.
//!
//! # Soundness
//!
//! The kernel holds one pointer into our memory: the 8-byte target of the
//! eventfd `READ`. It lives in a `Box` of the `Ring`, and is freed only
//! once that read's final completion was reaped. A ring dropped with the
//! read still in flight (by a thread that may not reap it) leaks the box
//! on purpose.

#[cfg(all(target_os = "linux", not(fiber_runtime_loom)))]
mod linux;
#[cfg(all(target_os = "linux", not(fiber_runtime_loom)))]
pub(crate) use linux::{Bound, Ring, Setup, WakeFd, create};

#[cfg(not(all(target_os = "linux", not(fiber_runtime_loom))))]
mod unsupported;
#[cfg(not(all(target_os = "linux", not(fiber_runtime_loom))))]
pub(crate) use unsupported::{Bound, Ring, Setup, WakeFd, create};

/// A runtime's counts of what its rings did (`RuntimeMetrics`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Waits in a ring (one `io_uring_enter` each).
    pub(crate) waits: std::sync::atomic::AtomicU64,
    /// Streams bound to a ring.
    pub(crate) binds: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn binds(&self) -> u64 {
        self.binds.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What ended a [`Ring::wait`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The eventfd read completed: somebody unparked this thread.
    pub(crate) woken: bool,
    /// The epoll fd became readable: the reactor has events.
    pub(crate) epoll: bool,
}
