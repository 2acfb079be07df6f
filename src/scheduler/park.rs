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

use crate::driver::{self, Driver};
use crate::loom::{Arc, AtomicUsize, Condvar, Mutex, Ordering::SeqCst};
use std::task::Wake;

const EMPTY: usize = 0;
/// Blocked on the condition variable.
const PARKED: usize = 1;
/// Blocked in the driver (`epoll_wait`).
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

struct Inner {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
    driver: Option<std::sync::Arc<DriverSlot>>,
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
}

/// Wakes the thread of the matching [`Parker`].
#[derive(Clone)]
pub(crate) struct Unparker {
    inner: Arc<Inner>,
}

impl Parker {
    /// A parker for a plain thread (no driver).
    pub(crate) fn new() -> Parker {
        Parker::with_driver_slot(None)
    }

    /// A parker of a runtime thread, which may turn the runtime's driver.
    pub(crate) fn with_driver(slot: std::sync::Arc<DriverSlot>) -> Parker {
        Parker::with_driver_slot(Some(slot))
    }

    fn with_driver_slot(driver: Option<std::sync::Arc<DriverSlot>>) -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                mutex: Mutex::new(()),
                condvar: Condvar::new(),
                driver,
            }),
            deferred: Vec::new(),
        }
    }

    /// Turns the driver without blocking, if no other thread holds it
    /// (busy workers call this now and then, so I/O and timers progress).
    /// The wakers are deferred, as for `park`.
    pub(crate) fn poll_driver(&mut self) {
        if let Some(slot) = &self.inner.driver {
            if let Some(mut guard) = slot.driver.try_lock() {
                if let Some(d) = guard.as_mut() {
                    d.poll_now(&mut self.deferred);
                }
            }
        }
    }

    /// Moves out the wakers the driver collected during the last `park` or
    /// `poll_driver`; the caller must wake them.
    pub(crate) fn take_deferred(&mut self, into: &mut Vec<std::task::Waker>) {
        if into.is_empty() {
            // Swap buffers: no copying, and both keep their capacity.
            std::mem::swap(into, &mut self.deferred);
        } else {
            into.append(&mut self.deferred);
        }
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
                    d.park(deferred);
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
        loop {
            guard = inner.condvar.wait(guard);
            if inner
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // Spurious wakeup: wait again.
        }
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
