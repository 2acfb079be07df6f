//! `Registration`: a source's link to the reactor, with the readiness loop
//! every socket operation uses (`poll_io`).

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

    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        // Readiness spends the task's budget so that an always-ready socket
        // cannot monopolise its worker.
        ready!(crate::task_core::coop::poll_proceed(cx));
        match self.shared.poll_ready(cx, dir) {
            Poll::Ready(Ok(ev)) => Poll::Ready(Ok(ev)),
            Poll::Ready(Err(())) => Poll::Ready(Err(gone())),
            Poll::Pending => {
                crate::task_core::coop::refund();
                Poll::Pending
            }
        }
    }

    /// Runs `op` when the source is ready in `dir`, retrying after
    /// `WouldBlock` (edge-triggered: the readiness is cleared and the next
    /// event awaited).
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io_drained(cx, dir, op, |_| false)
    }

    /// As `poll_io`; in addition, when `drained` says a successful result
    /// emptied the socket buffer (a stream read or write shorter than
    /// asked), the readiness is cleared at once, saving the `WouldBlock`
    /// system call the next operation would otherwise make to learn it.
    pub(crate) fn poll_io_drained<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        loop {
            let ev = ready!(self.poll_ready(cx, dir))?;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.shared.clear_readiness(ev),
                Ok(r) => {
                    if drained(&r) {
                        self.shared.clear_readiness(ev);
                    }
                    return Poll::Ready(Ok(r));
                }
                res => return Poll::Ready(res),
            }
        }
    }

    /// Deregisters `source` (which must be the registered one).
    pub(crate) fn deregister(&self, source: &mut impl mio::event::Source) -> io::Result<()> {
        self.handle.deregister(source, &self.shared)
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}
