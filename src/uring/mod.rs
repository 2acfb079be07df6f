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
//! TCP and Unix streams first used on a worker bind to its ring (steps 2
//! and 3 of the design, with §4's lazy binding): a multishot poll reports their write readiness, and
//! a multishot receive fills buffers of the ring's pool, which readers
//! copy from (`io/poll_evented.rs`).
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
//! The kernel holds pointers into our memory in two places: the 8-byte
//! target of the eventfd `READ`, a `Box` of the `Ring` freed only once
//! that read's final completion was reaped; and the receive buffer pool
//! (its descriptor ring and buffers, `BufPool`), unmapped only when no
//! receive can be in flight and no queued chunk names it. A ring dropped
//! with either still in flight (by a thread that may not reap it) leaks
//! it on purpose. Every socket operation owns a count of its socket's
//! state (its `user_data`) until its final completion.

#[cfg(all(target_os = "linux", not(fiber_runtime_loom)))]
mod linux;
#[cfg(all(target_os = "linux", not(fiber_runtime_loom)))]
pub(crate) use linux::{Bound, Ring, Setup, Src, Then, WakeFd, create};

#[cfg(not(all(target_os = "linux", not(fiber_runtime_loom))))]
mod unsupported;
#[cfg(not(all(target_os = "linux", not(fiber_runtime_loom))))]
pub(crate) use unsupported::{Bound, Ring, Setup, Src, Then, WakeFd, create};

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
