//! The runtime's driver: the I/O reactor and the timer wheels, turned
//! together by the thread about to park (`scheduler/park.rs`).

use crate::reactor;
use crate::time::driver as timer;
use std::io;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

/// Owned by whoever turns it (behind `park::DriverSlot`'s lock).
pub(crate) struct Driver {
    io: reactor::Driver,
    handle: Handle,
}

/// Which I/O driver a runtime runs (`runtime::IoDriver` once resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// mio on epoll: parked threads wait in `epoll_wait` or on a condvar.
    Epoll,
    /// A ring per worker (`uring`): parked threads wait in their ring,
    /// the driver's holder with the epoll fd in it.
    Uring,
}

/// What tasks and sockets use to reach the driver.
#[derive(Clone, Debug)]
pub(crate) struct Handle {
    pub(crate) io: Arc<reactor::Handle>,
    pub(crate) time: Arc<timer::Handle>,
    pub(crate) kind: Kind,
    /// What the rings did (`uring::create` counts it here; metrics).
    pub(crate) ring_counters: Arc<crate::uring::Counters>,
}

impl Driver {
    /// `workers` timer wheels, one per worker.
    pub(crate) fn new(
        workers: usize,
        kind: Kind,
        ring_counters: Arc<crate::uring::Counters>,
    ) -> io::Result<Driver> {
        let io = reactor::Driver::new()?;
        let handle = Handle {
            io: io.handle().clone(),
            time: Arc::new(timer::Handle::new(io.handle().clone(), workers)),
            kind,
            ring_counters,
        };
        Ok(Driver { io, handle })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Blocks until an I/O event, the next timer, an unpark, or `max` has
    /// passed; hands the wakers of the tasks concerned to `wakers`.
    pub(crate) fn park(&mut self, max: Option<Duration>, wakers: &mut Vec<Waker>) {
        let timeout = crate::util::clock::shorter(self.handle.time.prepare_park(), max);
        self.io.turn(timeout, wakers);
        self.handle.time.after_park(wakers);
    }

    /// Before a thread holding the driver waits in its ring: how long it
    /// may wait (the next timer), and the epoll fd its ring must watch.
    pub(crate) fn prepare_ring_park(&mut self) -> (Option<Duration>, std::os::fd::RawFd) {
        (self.handle.time.prepare_park(), self.io.as_raw_fd())
    }

    /// After that wait (or instead of it, when a notification came
    /// first): collects the I/O events if the epoll fd was readable, then
    /// fires due timers.
    pub(crate) fn after_ring_park(&mut self, epoll_ready: bool, wakers: &mut Vec<Waker>) {
        if epoll_ready {
            self.io.turn(Some(Duration::ZERO), wakers);
        } else {
            self.io.release();
        }
        self.handle.time.after_park(wakers);
    }

    /// A non-blocking turn, for busy workers.
    pub(crate) fn poll_now(&mut self, wakers: &mut Vec<Waker>) {
        // No sockets, no events: spare the system call.
        if self.handle.io.has_sources() {
            self.io.turn(Some(Duration::ZERO), wakers);
        }
        self.handle.time.process(wakers);
    }

    /// The runtime is gone: sockets fail, timers panic when polled.
    pub(crate) fn shutdown(&mut self) {
        self.io.shutdown();
        self.handle.time.shutdown();
    }
}
