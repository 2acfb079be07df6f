//! `Registration`: a source's link to the reactor, with the readiness loop
//! every socket operation uses (`poll_io_drained`, also for sockets bound
//! to an io_uring).

use super::scheduled_io::{Direction, ReadyEvent, ScheduledIo};
use super::{Handle, gone};
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// A registered source's readiness, and the reactor it belongs to.
pub(crate) struct Registration {
    handle: Arc<Handle>,
    shared: Arc<ScheduledIo>,
}

impl Registration {
    /// Registers `source` with the reactor `handle` (as tokio's
    /// `Registration::new_with_interest_and_handle`: the caller finds the
    /// reactor, this layer never looks up a runtime).
    pub(crate) fn new(
        source: &mut impl mio::event::Source,
        handle: Arc<Handle>,
    ) -> io::Result<Registration> {
        let shared = handle.register(source)?;
        Ok(Registration { handle, shared })
    }

    /// The source's readiness.
    pub(crate) fn io(&self) -> &ScheduledIo {
        &self.shared
    }

    /// Deregisters `source` (which must be the registered one).
    pub(crate) fn deregister(&self, source: &mut impl mio::event::Source) -> io::Result<()> {
        self.handle.deregister(source, &self.shared)
    }
}

/// Readiness of `io` in `dir`, spending the task's coop budget; for any
/// source, whichever driver reports its events (epoll or a ring).
pub(crate) fn poll_ready(
    io: &ScheduledIo,
    cx: &mut Context<'_>,
    dir: Direction,
) -> Poll<io::Result<ReadyEvent>> {
    // Readiness spends the task's budget so that an always-ready socket
    // cannot monopolise its worker.
    ready!(crate::task_core::coop::poll_proceed(cx));
    match io.poll_ready(cx, dir) {
        Poll::Ready(Ok(ev)) => Poll::Ready(Ok(ev)),
        Poll::Ready(Err(())) => Poll::Ready(Err(gone())),
        Poll::Pending => {
            crate::task_core::coop::refund();
            Poll::Pending
        }
    }
}

/// `Registration::poll_io_drained` on the readiness `io`.
pub(crate) fn poll_io_drained<R>(
    io: &ScheduledIo,
    cx: &mut Context<'_>,
    dir: Direction,
    mut op: impl FnMut() -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> Poll<io::Result<R>> {
    loop {
        let ev = ready!(poll_ready(io, cx, dir))?;
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.clear_readiness(ev),
            Ok(r) => {
                if drained(&r) {
                    io.clear_readiness(ev);
                }
                return Poll::Ready(Ok(r));
            }
            res => return Poll::Ready(res),
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}
