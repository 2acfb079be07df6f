//! `ScheduledIo`: the readiness of one registered source, with separate
//! read and write wakers so that one task may read a stream while another
//! writes it.
//!
//! # The readiness word
//!
//! One `AtomicUsize`: readiness bits (`READABLE`, `WRITABLE`,
//! `READ_CLOSED`, `WRITE_CLOSED`, `ERROR`), a `SHUTDOWN` bit set when the
//! reactor goes away, and above them a `tick` incremented by every event the
//! driver delivers. A task that gets `WouldBlock` clears the readiness it
//! observed *only if the tick is unchanged*: an event that arrived between
//! the readiness check and the failed operation bumps the tick, so it is
//! never lost (the loom model `loom_readiness_clear_racing_event` checks
//! this).

use crate::loom::{AtomicUsize, Mutex, Ordering::*};
use std::task::{Context, Poll, Waker};

pub(crate) const READABLE: usize = 1 << 0;
pub(crate) const WRITABLE: usize = 1 << 1;
pub(crate) const READ_CLOSED: usize = 1 << 2;
pub(crate) const WRITE_CLOSED: usize = 1 << 3;
pub(crate) const ERROR: usize = 1 << 4;
/// The reactor shut down: every operation fails from now on.
pub(crate) const SHUTDOWN: usize = 1 << 5;
const READINESS_MASK: usize = READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR;
const TICK_SHIFT: usize = 6;

/// Which half of a source a task waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    /// The readiness bits that let an operation in this direction proceed
    /// (closed and error count: the operation then reports them).
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// The readiness a task observed, to clear after `WouldBlock`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    tick: usize,
    ready: usize,
}

#[derive(Default)]
struct Waiters {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

pub(crate) struct ScheduledIo {
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    pub(crate) fn new() -> ScheduledIo {
        ScheduledIo {
            readiness: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// The readiness word's bits (the ring's tests).
    #[cfg(all(test, target_os = "linux", not(fiber_runtime_loom)))]
    pub(crate) fn readiness(&self) -> usize {
        self.readiness.load(Acquire) & (READINESS_MASK | SHUTDOWN)
    }

    /// Driver side: records an event's readiness and wakes the waiters it
    /// concerns.
    #[cfg(test)]
    pub(crate) fn set_readiness_and_wake(&self, ready: usize) {
        let mut wakers = Vec::new();
        self.set_readiness(ready, &mut wakers);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Driver side: records an event's readiness and hands the wakers it
    /// concerns to `wakers`, for the caller to wake once it can schedule
    /// them cheaply (on a worker: into its own queue).
    pub(crate) fn set_readiness(&self, ready: usize, wakers: &mut Vec<Waker>) {
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |curr| {
            let tick = (curr >> TICK_SHIFT).wrapping_add(1);
            Some((tick << TICK_SHIFT) | (curr & (READINESS_MASK | SHUTDOWN)) | ready)
        });
        let mut waiters = self.waiters.lock();
        if ready & Direction::Read.mask() != 0 {
            wakers.extend(waiters.reader.take());
        }
        if ready & Direction::Write.mask() != 0 {
            wakers.extend(waiters.writer.take());
        }
    }

    /// Marks the source dead (reactor gone) and wakes everyone.
    pub(crate) fn shutdown(&self) {
        self.readiness.fetch_or(SHUTDOWN, AcqRel);
        self.wake(READINESS_MASK);
    }

    fn wake(&self, ready: usize) {
        let (r, w) = {
            let mut waiters = self.waiters.lock();
            let r = if ready & Direction::Read.mask() != 0 {
                waiters.reader.take()
            } else {
                None
            };
            let w = if ready & Direction::Write.mask() != 0 {
                waiters.writer.take()
            } else {
                None
            };
            (r, w)
        };
        // Wake outside the lock.
        if let Some(r) = r {
            r.wake();
        }
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Returns the readiness for `dir` if any, else registers the task's
    /// waker and returns `Pending`. `Err(())` once the reactor is gone.
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<Result<ReadyEvent, ()>> {
        let curr = self.readiness.load(Acquire);
        if curr & SHUTDOWN != 0 {
            return Poll::Ready(Err(()));
        }
        if curr & dir.mask() != 0 {
            return Poll::Ready(Ok(ReadyEvent {
                tick: curr >> TICK_SHIFT,
                ready: curr & dir.mask(),
            }));
        }
        let mut waiters = self.waiters.lock();
        let slot = match dir {
            Direction::Read => &mut waiters.reader,
            Direction::Write => &mut waiters.writer,
        };
        match slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        // An event may have landed before we stored the waker: the driver
        // sets readiness before taking the waiters lock, so re-checking
        // under the lock cannot miss it.
        let curr = self.readiness.load(Acquire);
        if curr & SHUTDOWN != 0 {
            return Poll::Ready(Err(()));
        }
        if curr & dir.mask() != 0 {
            return Poll::Ready(Ok(ReadyEvent {
                tick: curr >> TICK_SHIFT,
                ready: curr & dir.mask(),
            }));
        }
        Poll::Pending
    }

    /// After `WouldBlock`: clears the readiness `event` reported, unless a
    /// newer event arrived since (the tick moved).
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        // Closed states are final: never cleared. An error is: the
        // operation that returned it consumed it (`SO_ERROR`), and a
        // `WouldBlock` after it means there is none left; keeping the bit
        // would spin the readiness loop (a connected UDP socket after an
        // ICMP port-unreachable), as tokio's `clear_readiness` avoids too.
        let clear = event.ready & (READABLE | WRITABLE | ERROR);
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |curr| {
            if curr >> TICK_SHIFT != event.tick {
                return None;
            }
            Some(curr & !clear)
        });
    }

    /// Drops the stored wakers (the source is being deregistered).
    pub(crate) fn clear_wakers(&self) {
        let mut waiters = self.waiters.lock();
        let (r, w) = (waiters.reader.take(), waiters.writer.take());
        drop(waiters);
        drop((r, w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{Arc, AtomicBool, model, thread};
    use std::task::Wake;

    /// A waker that raises a flag the model sees (a loom atomic, in the
    /// std `Arc` that `Wake` requires).
    struct Flag(std::sync::Arc<AtomicBool>);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, SeqCst);
        }
    }

    /// A task that saw readiness, got `WouldBlock`, and clears it while the
    /// driver delivers a new event: the new readiness survives, so the next
    /// poll sees it (or the waker registered before it was woken).
    #[test]
    fn loom_readiness_clear_racing_event() {
        model(|| {
            let io = Arc::new(ScheduledIo::new());
            io.set_readiness_and_wake(READABLE);
            let woken = std::sync::Arc::new(AtomicBool::new(false));
            let waker = Waker::from(std::sync::Arc::new(Flag(woken.clone())));
            let mut cx = Context::from_waker(&waker);
            let Poll::Ready(Ok(ev)) = io.poll_ready(&mut cx, Direction::Read) else {
                panic!("readiness lost before the race")
            };
            let driver = {
                let io = io.clone();
                thread::spawn(move || io.set_readiness_and_wake(READABLE))
            };
            // The read returned WouldBlock: clear what we saw.
            io.clear_readiness(ev);
            let polled = io.poll_ready(&mut cx, Direction::Read);
            driver.join().unwrap();
            // Either the second poll saw the new event, or it registered
            // the waker and the event woke it.
            let ok = polled.is_ready() || woken.load(SeqCst);
            assert!(ok, "an event was lost");
        });
    }

    /// Read and write wakers are independent: an event for one direction
    /// does not wake (or steal) the other's waker.
    #[test]
    fn loom_read_and_write_wakers_are_separate() {
        model(|| {
            let io = Arc::new(ScheduledIo::new());
            let rflag = std::sync::Arc::new(AtomicBool::new(false));
            let wflag = std::sync::Arc::new(AtomicBool::new(false));
            let rw = Waker::from(std::sync::Arc::new(Flag(rflag.clone())));
            let ww = Waker::from(std::sync::Arc::new(Flag(wflag.clone())));
            assert!(
                io.poll_ready(&mut Context::from_waker(&rw), Direction::Read)
                    .is_pending()
            );
            assert!(
                io.poll_ready(&mut Context::from_waker(&ww), Direction::Write)
                    .is_pending()
            );
            let th = {
                let io = io.clone();
                thread::spawn(move || io.set_readiness_and_wake(WRITABLE))
            };
            th.join().unwrap();
            assert!(wflag.load(SeqCst));
            assert!(!rflag.load(SeqCst));
        });
    }
}
