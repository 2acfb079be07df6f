//! The I/O reactor: mio (epoll/kqueue, edge-triggered) behind a `Driver`,
//! turned by whichever worker is about to park, and a cheap shared
//! `Handle` through which sockets register.
//!
//! There is no reactor thread: the parking worker blocks in
//! `mio::Poll::poll` (with the nearest timer deadline as timeout) and the
//! other idle workers park on the OS; `Handle::unpark` wakes the one in
//! `poll` through a `mio::Waker`.
//!
//! # Registrations and tokens
//!
//! A source's token is the address of its `ScheduledIo`, kept alive by the
//! `registered` list while registered. Deregistration moves the `Arc` to
//! `pending_release`, which only the driver empties, at the start of its
//! next turn: an event already fetched from the OS for a source deregistered
//! meanwhile still finds live memory.

mod registration;
pub(crate) mod scheduled_io;

pub(crate) use registration::{Registration, poll_io_drained};

use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering::*};
use scheduled_io::{ERROR, READ_CLOSED, READABLE, ScheduledIo, WRITABLE, WRITE_CLOSED};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The token of the driver's own waker (no `ScheduledIo` lives at 0).
const WAKER_TOKEN: mio::Token = mio::Token(0);
const EVENTS_CAPACITY: usize = 1024;

/// Owned by the thread turning the reactor.
pub(crate) struct Driver {
    poll: mio::Poll,
    events: mio::Events,
    handle: Arc<Handle>,
}

/// Shared by every registration and by whoever needs to wake the driver.
pub(crate) struct Handle {
    registry: mio::Registry,
    waker: mio::Waker,
    synced: Mutex<Synced>,
    is_shutdown: AtomicBool,
    /// Registered sources; while 0, busy workers skip the non-blocking
    /// `epoll_wait` of their periodic driver turn.
    num_registered: AtomicUsize,
    /// Readiness events delivered so far (metrics: one add per turn).
    ready_events: crate::loom::AtomicU64,
}

/// The fields behind the lock.
struct Synced {
    /// Every registered source, by token (the `ScheduledIo` address).
    registered: std::collections::HashMap<usize, Arc<ScheduledIo>>,
    /// Deregistered sources the driver has not yet let go of.
    pending_release: Vec<Arc<ScheduledIo>>,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        let poll = mio::Poll::new().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("failed to create the I/O reactor (epoll): {e}"),
            )
        })?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        Ok(Driver {
            poll,
            events: mio::Events::with_capacity(EVENTS_CAPACITY),
            handle: Arc::new(Handle {
                registry,
                waker,
                synced: Mutex::new(Synced {
                    registered: std::collections::HashMap::new(),
                    pending_release: Vec::new(),
                }),
                is_shutdown: AtomicBool::new(false),
                num_registered: AtomicUsize::new(0),
                ready_events: crate::loom::AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn handle(&self) -> &Arc<Handle> {
        &self.handle
    }

    /// The epoll fd, for a ring to watch (`uring`): it is readable while
    /// events wait for `turn`.
    pub(crate) fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.poll)
    }

    /// Lets go of the sources deregistered since the last turn (a parker
    /// that waited elsewhere and found no event calls it instead of
    /// `turn`; module doc).
    pub(crate) fn release(&mut self) {
        let released = std::mem::take(&mut self.handle.synced.lock().pending_release);
        drop(released);
    }

    /// Waits for events up to `timeout` (`None`: until woken) and hands the
    /// wakers of the tasks they concern to `wakers`. Returns `true` if any
    /// source was ready.
    pub(crate) fn turn(
        &mut self,
        timeout: Option<Duration>,
        wakers: &mut Vec<std::task::Waker>,
    ) -> bool {
        // Let go of sources deregistered before this turn (module doc).
        self.release();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return false,
            Err(e) => panic!("fiber-runtime: the I/O reactor failed: epoll_wait: {e}"),
        }
        let mut delivered = 0u64;
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            let mut ready = 0;
            if event.is_readable() {
                ready |= READABLE;
            }
            if event.is_writable() {
                ready |= WRITABLE;
            }
            if event.is_read_closed() {
                ready |= READ_CLOSED;
            }
            if event.is_write_closed() {
                ready |= WRITE_CLOSED;
            }
            if event.is_error() {
                ready |= ERROR;
            }
            // SAFETY: the token is the address of a `ScheduledIo` that is
            // either still registered or in `pending_release`, which only
            // this driver empties, before polling (module doc).
            let io = unsafe { &*(event.token().0 as *const ScheduledIo) };
            io.set_readiness(ready, wakers);
            delivered += 1;
        }
        if delivered > 0 {
            self.handle.ready_events.fetch_add(delivered, Relaxed);
        }
        delivered > 0
    }

    /// Marks the reactor gone: every registered source fails from now on
    /// instead of waiting forever.
    pub(crate) fn shutdown(&mut self) {
        self.handle.is_shutdown.store(true, Release);
        let all: Vec<Arc<ScheduledIo>> = {
            let mut synced = self.handle.synced.lock();
            synced.pending_release.clear();
            synced.registered.drain().map(|(_, io)| io).collect()
        };
        for io in all {
            io.shutdown();
        }
    }
}

impl Handle {
    /// Wakes the thread blocked in `Driver::turn`, if any.
    pub(crate) fn unpark(&self) {
        // Failure means the eventfd is gone with the driver: nobody waits.
        let _ = self.waker.wake();
    }

    /// Readiness events delivered to sources so far (the waker's own
    /// events not counted).
    pub(crate) fn ready_count(&self) -> u64 {
        self.ready_events.load(Relaxed)
    }

    /// Whether any source is registered (a racy hint).
    pub(crate) fn has_sources(&self) -> bool {
        self.num_registered.load(Relaxed) != 0
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.is_shutdown.load(Acquire)
    }

    /// Registers `source` for read and write readiness.
    pub(crate) fn register(
        &self,
        source: &mut impl mio::event::Source,
    ) -> io::Result<Arc<ScheduledIo>> {
        if self.is_shutdown() {
            return Err(gone());
        }
        let io = Arc::new(ScheduledIo::new());
        let token = mio::Token(Arc::as_ptr(&io) as usize);
        self.registry.register(
            source,
            token,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        let mut synced = self.synced.lock();
        if self.is_shutdown() {
            drop(synced);
            let _ = self.registry.deregister(source);
            return Err(gone());
        }
        synced.registered.insert(token.0, io.clone());
        self.num_registered.store(synced.registered.len(), Relaxed);
        Ok(io)
    }

    /// Deregisters `source`; its `ScheduledIo` is released by the driver
    /// at its next turn.
    pub(crate) fn deregister(
        &self,
        source: &mut impl mio::event::Source,
        io: &Arc<ScheduledIo>,
    ) -> io::Result<()> {
        let res = if self.is_shutdown() {
            Ok(())
        } else {
            self.registry.deregister(source)
        };
        io.clear_wakers();
        let mut synced = self.synced.lock();
        if let Some(io) = synced.registered.remove(&(Arc::as_ptr(io) as usize)) {
            synced.pending_release.push(io);
        }
        self.num_registered.store(synced.registered.len(), Relaxed);
        res
    }
}

/// The error of an operation on a source whose runtime is gone.
pub(crate) fn gone() -> io::Error {
    io::Error::other("the fiber-runtime runtime this socket belongs to has shut down")
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("reactor::Handle").finish_non_exhaustive()
    }
}
