//! Parking a runtime thread: `Parker` (the owner's end) and `Unparker`
//! (anyone's), with no lost wakeups: an `unpark` before `park` makes that
//! `park` return at once. (A plain thread blocking on a future parks
//! through `crate::wait` instead.)
//!
//! A runtime's parkers share its driver (`DriverSlot`): the first worker to
//! park takes it and blocks in `epoll_wait` (with the next timer as
//! timeout), so I/O events and timers are handled without a thread of
//! their own; the others block on a condition variable. `unpark` wakes
//! either kind: a condvar notify, or the reactor's `mio::Waker`.
//!
//! Under the io_uring driver a parker has a ring (`uring`), and parks in
//! it instead: the driver's holder with the epoll fd and the next timer
//! in the same wait, the others until an `unpark` writes their eventfd.
//! A parker whose ring is not its thread's (a current-thread core moved
//! to another thread) makes a fresh one there; one without a ring (plain
//! threads, hand-off replacements) parks as under epoll.

use crate::driver::{self, Driver};
use crate::loom::{Arc, AtomicUsize, Condvar, Mutex, Ordering::SeqCst};
use crate::uring;
use std::task::Wake;
use std::time::Duration;

const EMPTY: usize = 0;
/// Blocked on the condition variable.
const PARKED: usize = 1;
/// Blocked in the driver (`epoll_wait`).
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;
/// Blocked in its ring (`uring::Ring::wait`).
const PARKED_RING: usize = 4;

struct Inner {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
    driver: Option<std::sync::Arc<DriverSlot>>,
    /// Ends a wait in the ring (`PARKED_RING`); `Some` iff the parker was
    /// given a ring.
    wake: Option<std::sync::Arc<uring::WakeFd>>,
}

/// The parker's ring, if the runtime runs the io_uring driver.
enum RingSlot {
    None,
    /// Not enabled yet: the first thread to park takes it.
    Setup(uring::Setup),
    On(uring::Ring),
}

/// A runtime's driver, taken by whichever of its threads parks first.
pub(crate) struct DriverSlot {
    driver: Mutex<Option<Driver>>,
    handle: driver::Handle,
}

impl DriverSlot {
    pub(crate) fn new(driver: Driver) -> DriverSlot {
        DriverSlot {
            handle: driver.handle().clone(),
            driver: Mutex::new(Some(driver)),
        }
    }

    pub(crate) fn handle(&self) -> &driver::Handle {
        &self.handle
    }

    /// Takes the driver out for good and shuts it down (runtime drop:
    /// no thread parks in it any more).
    pub(crate) fn shutdown(&self) {
        if let Some(mut d) = self.driver.lock().take() {
            d.shutdown();
        }
    }
}

/// Blocks the owning thread until unparked.
pub(crate) struct Parker {
    inner: Arc<Inner>,
    /// Wakers of tasks the driver found ready while this thread turned it,
    /// left for the caller (`take_deferred`) to wake once it can schedule
    /// them into its own queue.
    deferred: Vec<std::task::Waker>,
    /// As `deferred`, for the completions of this thread's ring.
    ring_woken: Vec<std::task::Waker>,
    ring: RingSlot,
}

/// Wakes the thread of the matching [`Parker`].
#[derive(Clone)]
pub(crate) struct Unparker {
    inner: Arc<Inner>,
}

impl Parker {
    /// A parker for a plain thread (no driver).
    pub(crate) fn new() -> Parker {
        Parker::with_driver_slot(None, None)
    }

    /// A parker of a runtime thread, which may turn the runtime's driver,
    /// and parks in `ring` if given one.
    pub(crate) fn with_driver(
        slot: std::sync::Arc<DriverSlot>,
        ring: Option<uring::Setup>,
    ) -> Parker {
        Parker::with_driver_slot(Some(slot), ring)
    }

    fn with_driver_slot(
        driver: Option<std::sync::Arc<DriverSlot>>,
        ring: Option<uring::Setup>,
    ) -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                mutex: Mutex::new(()),
                condvar: Condvar::new(),
                driver,
                wake: ring.as_ref().map(uring::Setup::wake),
            }),
            deferred: Vec::new(),
            ring_woken: Vec::new(),
            ring: ring.map_or(RingSlot::None, RingSlot::Setup),
        }
    }

    /// The ring this thread may use (enabling it if need be), for binding
    /// sockets to it; `None` without one.
    pub(crate) fn ring(&mut self) -> Option<&mut uring::Ring> {
        ring_here(&mut self.ring, &self.inner)
    }

    /// Cancels and reaps what the ring has in flight, on its thread, and
    /// keeps the ring (a current-thread core given back: the next thread
    /// to drive it, if another, then drops it with nothing in flight and
    /// makes its own; the same thread re-arms it at its next park).
    pub(crate) fn quiesce_ring(&mut self) {
        if let RingSlot::On(r) = &mut self.ring {
            r.cancel_all();
        }
    }

    /// Cancels and reaps what the ring has in flight, on its thread, and
    /// drops it (a worker about to exit); later parks use the condvar.
    pub(crate) fn shutdown_ring(&mut self) {
        if let RingSlot::On(r) = &mut self.ring {
            r.shutdown();
        }
        self.ring = RingSlot::None;
    }

    /// Turns the driver without blocking, if no other thread holds it
    /// (busy workers call this now and then, so I/O and timers progress).
    /// The wakers are deferred, as for `park`.
    pub(crate) fn poll_driver(&mut self) {
        if let RingSlot::On(ring) = &mut self.ring {
            if ring.is_owner() {
                ring.poll_now(&mut self.ring_woken);
            }
        }
        if let Some(slot) = &self.inner.driver {
            if let Some(mut guard) = slot.driver.try_lock() {
                if let Some(d) = guard.as_mut() {
                    d.poll_now(&mut self.deferred);
                }
            }
        }
    }

    /// Moves the wakers the driver and the ring collected during the last
    /// `park` or `poll_driver` into `into`, an empty spare buffer (swapped
    /// in, so both keep their capacity); the caller must wake them. Returns
    /// how many of them, at the front, the ring's completions woke.
    pub(crate) fn take_deferred(&mut self, into: &mut Vec<std::task::Waker>) -> usize {
        debug_assert!(into.is_empty(), "take_deferred into a buffer in use");
        std::mem::swap(into, &mut self.ring_woken);
        let ring = into.len();
        into.append(&mut self.deferred);
        ring
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker {
            inner: self.inner.clone(),
        }
    }

    /// Blocks until `unpark` is called (or returns at once if it was
    /// called since the last `park`). If this thread turned the driver,
    /// the wakers it collected wait in `take_deferred`.
    pub(crate) fn park(&mut self) {
        self.park_for(None);
    }

    /// As `park`, but returns after `max` at the latest (a worker that
    /// must look at its peers' queues again: `multi_thread/rescue.rs`).
    pub(crate) fn park_for(&mut self, max: Option<Duration>) {
        let inner = &*self.inner;
        let deferred = &mut self.deferred;
        // Fast path: a notification is pending.
        if inner
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        if let Some(ring) = ring_here(&mut self.ring, &self.inner) {
            park_in_ring(inner, ring, max, &mut self.ring_woken, deferred);
            return;
        }
        if let Some(slot) = &inner.driver {
            if let Some(mut guard) = slot.driver.try_lock() {
                if let Some(d) = guard.as_mut() {
                    match inner
                        .state
                        .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
                    {
                        Ok(_) => {}
                        Err(NOTIFIED) => {
                            inner.state.store(EMPTY, SeqCst);
                            return;
                        }
                        Err(s) => unreachable!("inconsistent park state {s}"),
                    }
                    d.park(max, deferred);
                    // Consumes a notification that arrived meanwhile.
                    inner.state.store(EMPTY, SeqCst);
                    return;
                }
            }
        }
        let mut guard = inner.mutex.lock();
        match inner.state.compare_exchange(EMPTY, PARKED, SeqCst, SeqCst) {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // Notified between the fast path and the lock.
                inner.state.store(EMPTY, SeqCst);
                return;
            }
            Err(s) => unreachable!("inconsistent park state {s}"),
        }
        let deadline = max.map(|d| std::time::Instant::now() + d);
        loop {
            guard = match deadline {
                None => inner.condvar.wait(guard),
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        // Timed out. PARKED or NOTIFIED (a notification
                        // that came meanwhile, consumed by this return),
                        // the state goes back to EMPTY.
                        inner.state.store(EMPTY, SeqCst);
                        return;
                    }
                    inner.condvar.wait_timeout(guard, left).0
                }
            };
            if inner
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // Spurious wakeup or time left: wait again.
        }
    }
}

/// The ring this thread may park in, enabling it or making a fresh one
/// for this thread if need be (module doc). `None` without a ring, or if
/// the kernel refused one here (then never again).
fn ring_here<'a>(slot: &'a mut RingSlot, inner: &Arc<Inner>) -> Option<&'a mut uring::Ring> {
    let here = match slot {
        RingSlot::None => return None,
        RingSlot::Setup(_) => false,
        RingSlot::On(r) => r.is_owner(),
    };
    if !here {
        let wake = inner.wake.clone()?;
        // The old ring, if any, goes first (it abandons what its thread
        // did not reap: `uring::Ring`'s drop), then the new one is made.
        *slot = match std::mem::replace(slot, RingSlot::None) {
            RingSlot::Setup(s) => s.enable(),
            old => {
                drop(old);
                uring::Ring::for_this_thread(wake)
            }
        }
        .map_or_else(
            |e| {
                // Rare (the build made this kind of ring already): say so
                // rather than run epoll parking unnoticed.
                eprintln!(
                    "fiber-runtime: no io_uring for thread {:?}, which parks without one \
                     from now on: {e}",
                    std::thread::current().name().unwrap_or("<unnamed>")
                );
                RingSlot::None
            },
            |ring| {
                // Sockets closed on other threads wake us to cancel their
                // polls.
                let unparker = Unparker {
                    inner: inner.clone(),
                };
                ring.set_unpark(std::task::Waker::from(std::sync::Arc::new(unparker)));
                RingSlot::On(ring)
            },
        );
    }
    match slot {
        RingSlot::On(r) => Some(r),
        _ => None,
    }
}

/// `Parker::park` in the ring: as the driver's holder (the epoll fd and
/// the next timer in the wait) if the driver is free, else until unparked.
fn park_in_ring(
    inner: &Inner,
    ring: &mut uring::Ring,
    max: Option<Duration>,
    ring_woken: &mut Vec<std::task::Waker>,
    deferred: &mut Vec<std::task::Waker>,
) {
    let mut guard = inner
        .driver
        .as_ref()
        .and_then(|slot| slot.driver.try_lock());
    let mut driver = guard.as_mut().and_then(|g| g.as_mut());
    let (timeout, epoll) = match driver.as_mut() {
        Some(d) => {
            let (timeout, fd) = d.prepare_ring_park();
            (timeout, Some(fd))
        }
        None => (None, None),
    };
    let timeout = crate::util::clock::shorter(timeout, max);
    let epoll_ready = match inner
        .state
        .compare_exchange(EMPTY, PARKED_RING, SeqCst, SeqCst)
    {
        Ok(_) => {
            let turn = ring.wait(timeout, epoll, ring_woken);
            // Consumes a notification that arrived meanwhile.
            inner.state.store(EMPTY, SeqCst);
            // A non-holder's poll left from when it held the driver may
            // end its wait: a spurious return (the holder has the events).
            turn.epoll
        }
        Err(NOTIFIED) => {
            inner.state.store(EMPTY, SeqCst);
            false
        }
        Err(s) => unreachable!("inconsistent park state {s}"),
    };
    if let Some(d) = driver {
        d.after_ring_park(epoll_ready, deferred);
    }
}

impl Unparker {
    /// Whether both wake the same parker.
    pub(crate) fn same_as(&self, other: &Unparker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn unpark(&self) {
        let inner = &*self.inner;
        match inner.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED_DRIVER => {
                if let Some(slot) = &inner.driver {
                    slot.handle.io.unpark();
                }
            }
            PARKED_RING => {
                if let Some(wake) = &inner.wake {
                    wake.wake();
                }
            }
            PARKED => {
                // Taking the lock orders this notify after the parker's
                // wait began (it holds the lock from CAS to wait).
                drop(inner.mutex.lock());
                inner.condvar.notify_one();
            }
            s => unreachable!("inconsistent park state {s}"),
        }
    }
}

impl Wake for Unparker {
    fn wake(self: std::sync::Arc<Self>) {
        self.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.unpark();
    }
}

impl std::fmt::Debug for Parker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parker")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{model, thread};

    /// An unpark racing a park is never lost: the park returns.
    #[test]
    fn loom_unpark_racing_park_is_not_lost() {
        model(|| {
            let mut parker = Parker::new();
            let unparker = parker.unparker();
            let th = thread::spawn(move || unparker.unpark());
            parker.park();
            th.join().unwrap();
        });
    }

    /// Two unparks and two parks: the second park returns too when the
    /// second unpark comes after the first park.
    #[test]
    fn loom_repeated_park_unpark_handshake() {
        model(|| {
            let mut parker = Parker::new();
            let unparker = parker.unparker();
            let flag = Arc::new(AtomicUsize::new(0));
            let flag2 = flag.clone();
            let th = thread::spawn(move || {
                flag2.store(1, SeqCst);
                unparker.unpark();
            });
            while flag.load(SeqCst) == 0 {
                parker.park();
            }
            th.join().unwrap();
        });
    }
}
