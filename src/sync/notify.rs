//! [`Notify`]: wake one waiter or all, without data (tokio's `Notify`,
//! whose algorithm this follows).
//!
//! # How it works
//!
//! `state` holds, in its low two bits, `EMPTY` (nobody waits, no permit),
//! `WAITING` (the list has waiters) or `NOTIFIED` (one stored permit, for
//! the next waiter), and above them the number of `notify_waiters` calls.
//! Waiters are [`Waiter`] nodes inside their pinned [`Notified`] futures,
//! linked in a FIFO list under `waiters`' lock.
//!
//! A `Notified` remembers the `notify_waiters` count when it is created:
//! a later call completes it even if it had not been polled yet, so "make
//! the future, check a condition, await the future" misses nothing.
//!
//! # Who touches a waiter
//!
//! Its `waker` and links only under the lock. `notify_*` unlinks a waiter
//! and takes its waker before storing its `notification` (`ONE` or
//! `ALL`), and never touches it after that store: a future that reads a
//! notification may complete and be freed without the lock.
//!
//! # Cancellation
//!
//! A dropped `Notified` that was given a `notify_one` (and so consumed the
//! permit) passes it on: to the next waiter, or stored. A notification is
//! never lost to a future nobody polls again.

use crate::loom::{AtomicUsize, Mutex, MutexGuard, Ordering::*, UnsafeCell};
use crate::util::linked_list::{self, LinkedList, Pointers};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

const EMPTY: usize = 0;
const WAITING: usize = 1;
const NOTIFIED: usize = 2;
const STATE_MASK: usize = 3;
/// One `notify_waiters` call, in `state`.
const CALL: usize = 4;

/// `Waiter::notification` values.
const NONE: usize = 0;
const ONE: usize = 1;
const ALL: usize = 2;

fn get_state(word: usize) -> usize {
    word & STATE_MASK
}

fn set_state(word: usize, state: usize) -> usize {
    (word & !STATE_MASK) | state
}

fn calls(word: usize) -> usize {
    word & !STATE_MASK
}

/// Wakes tasks, fibers or threads waiting for an event.
///
/// [`notify_one`](Notify::notify_one) wakes the first waiter, or, if
/// nobody waits, stores one permit that the next
/// [`notified`](Notify::notified) takes at once (at most one is stored).
/// [`notify_waiters`](Notify::notify_waiters) wakes every current waiter
/// and stores nothing. Waiters are woken in FIFO order; waiting allocates
/// nothing.
///
/// # Examples
///
/// A fiber waits, a task wakes it:
///
/// ```
/// use fiber_runtime::sync::Notify;
/// use std::sync::Arc;
///
/// fiber_runtime::block_on(async {
///     let notify = Arc::new(Notify::new());
///     let n = notify.clone();
///     let waiter = fiber_runtime::fiber::spawn(move || n.blocking_notified());
///     notify.notify_one();
///     waiter.await.unwrap();
/// });
/// ```
pub struct Notify {
    state: AtomicUsize,
    waiters: Mutex<LinkedList<WaiterLink>>,
}

/// A waiting `Notified` (module doc, "Who touches a waiter").
struct Waiter {
    waker: UnsafeCell<Option<Waker>>,
    notification: AtomicUsize,
    pointers: UnsafeCell<Pointers<Waiter>>,
}

// SAFETY: the waker and links are touched only under the lock, the
// notification is atomic (module doc).
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

struct WaiterLink;

// SAFETY: `pointers` returns the waiter's own links.
unsafe impl linked_list::Link for WaiterLink {
    type Node = Waiter;

    unsafe fn pointers(node: NonNull<Waiter>) -> NonNull<Pointers<Waiter>> {
        // SAFETY: the caller's contract: the node is live.
        unsafe {
            (*node.as_ptr())
                .pointers
                .with_mut(|p| NonNull::new_unchecked(p))
        }
    }
}

/// The future of [`Notify::notified`].
///
/// Dropping it before it completes loses nothing (a `notify_one` it had
/// been given goes to the next waiter or is stored).
#[must_use = "futures do nothing unless polled"]
pub struct Notified<'a> {
    notify: &'a Notify,
    state: NotifiedState,
    /// `notify_waiters` calls when this was made.
    calls: usize,
    waiter: Waiter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotifiedState {
    Init,
    Waiting,
    Done,
}

impl Notify {
    /// A `Notify` with no waiter and no stored permit.
    ///
    /// # Examples
    ///
    /// ```
    /// let notify = fiber_runtime::sync::Notify::new();
    /// notify.notify_one(); // stored for the next waiter
    /// ```
    pub fn new() -> Notify {
        Notify {
            state: AtomicUsize::new(EMPTY),
            waiters: Mutex::new(LinkedList::new()),
        }
    }

    /// A future that completes at the next notification: a stored
    /// permit, a `notify_one` given to it, or a `notify_waiters` call made
    /// after this future was created (even before its first poll).
    ///
    /// # Cancel safety
    ///
    /// Dropping it loses nothing: a `notify_one` it had been given goes
    /// to the next waiter, or is stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::Notify;
    ///
    /// fiber_runtime::block_on(async {
    ///     let notify = Notify::new();
    ///     let notified = notify.notified();
    ///     notify.notify_waiters(); // counts: `notified` was made before
    ///     notified.await;
    /// });
    /// ```
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            state: NotifiedState::Init,
            calls: calls(self.state.load(SeqCst)),
            waiter: Waiter {
                waker: UnsafeCell::new(None),
                notification: AtomicUsize::new(NONE),
                pointers: UnsafeCell::new(Pointers::new()),
            },
        }
    }

    /// Waits for a notification in blocking style: suspends a fiber,
    /// blocks a plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`notified`](Notify::notified) there.
    ///
    /// # Examples
    ///
    /// ```
    /// let notify = fiber_runtime::sync::Notify::new();
    /// notify.notify_one();
    /// notify.blocking_notified(); // takes the stored permit
    /// ```
    #[track_caller]
    pub fn blocking_notified(&self) {
        crate::wait::wait(
            self.notified(),
            "Notify::blocking_notified",
            "`.await` `Notify::notified`",
        )
    }

    /// Wakes the first waiter; if nobody waits, stores a permit for the
    /// next one (several calls store one).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let notify = fiber_runtime::sync::Notify::new();
    ///     notify.notify_one();
    ///     notify.notify_one();
    ///     notify.notified().await; // one permit was stored, not two
    /// });
    /// ```
    pub fn notify_one(&self) {
        let mut curr = self.state.load(SeqCst);
        // Nobody waits: store the permit without the lock.
        while let EMPTY | NOTIFIED = get_state(curr) {
            match self
                .state
                .compare_exchange(curr, set_state(curr, NOTIFIED), SeqCst, SeqCst)
            {
                Ok(_) => return,
                Err(actual) => curr = actual,
            }
        }
        let mut waiters = self.waiters.lock();
        let curr = self.state.load(SeqCst);
        let waker = self.notify_locked(&mut waiters, curr);
        drop(waiters);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// `notify_one` with the lock held; returns the waker to wake.
    fn notify_locked(
        &self,
        waiters: &mut MutexGuard<'_, LinkedList<WaiterLink>>,
        curr: usize,
    ) -> Option<Waker> {
        match get_state(curr) {
            EMPTY | NOTIFIED => {
                // Under the lock only these two change into each other
                // (a lock-free `notified` or `notify_one`): store.
                if let Err(actual) =
                    self.state
                        .compare_exchange(curr, set_state(curr, NOTIFIED), SeqCst, SeqCst)
                {
                    debug_assert_ne!(get_state(actual), WAITING);
                    self.state.store(set_state(actual, NOTIFIED), SeqCst);
                }
                None
            }
            _ => {
                let front = waiters.pop_front().expect("WAITING with no waiter");
                // SAFETY: it was linked, so it is live; we hold the lock.
                let waiter = unsafe { front.as_ref() };
                // SAFETY: under the lock (module doc).
                let waker = waiter.waker.with_mut(|w| unsafe { (*w).take() });
                if waiters.is_empty() {
                    self.state.store(set_state(curr, EMPTY), SeqCst);
                }
                // Last touch of the node.
                waiter.notification.store(ONE, Release);
                waker
            }
        }
    }

    /// Wakes every task, fiber and thread waiting now (and every
    /// `Notified` made before this call); stores no permit.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::Notify;
    /// use std::sync::Arc;
    ///
    /// fiber_runtime::block_on(async {
    ///     let notify = Arc::new(Notify::new());
    ///     let waiters: Vec<_> = (0..3)
    ///         .map(|_| {
    ///             let n = notify.clone();
    ///             fiber_runtime::fiber::spawn(move || n.blocking_notified())
    ///         })
    ///         .collect();
    ///     // Wake them once all three wait.
    ///     while notify.waiter_count() < 3 {
    ///         fiber_runtime::yield_now().await;
    ///     }
    ///     notify.notify_waiters();
    ///     for w in waiters {
    ///         w.await.unwrap();
    ///     }
    /// });
    /// ```
    pub fn notify_waiters(&self) {
        let mut waiters = self.waiters.lock();
        let curr = self.state.load(SeqCst);
        if get_state(curr) != WAITING {
            // Nobody queued; a stored permit stays as it is.
            self.state.fetch_add(CALL, SeqCst);
            return;
        }
        self.state
            .store(set_state(curr.wrapping_add(CALL), EMPTY), SeqCst);
        let mut wakers = Vec::new();
        while let Some(front) = waiters.pop_front() {
            // SAFETY: it was linked, so it is live; we hold the lock.
            let waiter = unsafe { front.as_ref() };
            // SAFETY: under the lock (module doc).
            if let Some(w) = waiter.waker.with_mut(|w| unsafe { (*w).take() }) {
                wakers.push(w);
            }
            // Last touch of the node.
            waiter.notification.store(ALL, Release);
        }
        drop(waiters);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// How many tasks, fibers and threads wait now (for tests and
    /// diagnostics; it may change at once).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fiber_runtime::sync::Notify::new().waiter_count(), 0);
    /// ```
    pub fn waiter_count(&self) -> usize {
        let waiters = self.waiters.lock();
        let mut n = 0;
        let mut cur = waiters.front();
        while let Some(node) = cur {
            n += 1;
            // SAFETY: linked nodes are live; we hold the lock.
            cur = unsafe { waiters.next(node) };
        }
        n
    }
}

impl Default for Notify {
    fn default() -> Notify {
        Notify::new()
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match get_state(self.state.load(SeqCst)) {
            EMPTY => "empty",
            WAITING => "waiting",
            _ => "notified",
        };
        f.debug_struct("Notify").field("state", &state).finish()
    }
}

impl Notified<'_> {
    fn project(self: Pin<&mut Self>) -> (&Notify, &mut NotifiedState, usize, Pin<&Waiter>) {
        // SAFETY: the waiter is only used pinned (its address goes into
        // the list); the other fields are not structurally pinned.
        unsafe {
            let this = self.get_unchecked_mut();
            (
                this.notify,
                &mut this.state,
                this.calls,
                Pin::new_unchecked(&this.waiter),
            )
        }
    }
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (notify, state, created_at, waiter) = self.project();
        match *state {
            NotifiedState::Done => Poll::Ready(()),
            NotifiedState::Init => {
                // A stored permit, taken without the lock.
                let mut curr = notify.state.load(SeqCst);
                if calls(curr) != created_at {
                    *state = NotifiedState::Done;
                    return Poll::Ready(());
                }
                if get_state(curr) == NOTIFIED
                    && notify
                        .state
                        .compare_exchange(curr, set_state(curr, EMPTY), SeqCst, SeqCst)
                        .is_ok()
                {
                    *state = NotifiedState::Done;
                    return Poll::Ready(());
                }
                let mut waiters = notify.waiters.lock();
                curr = notify.state.load(SeqCst);
                loop {
                    if calls(curr) != created_at {
                        *state = NotifiedState::Done;
                        return Poll::Ready(());
                    }
                    let next = match get_state(curr) {
                        NOTIFIED => set_state(curr, EMPTY),
                        EMPTY => set_state(curr, WAITING),
                        _ => break,
                    };
                    match notify.state.compare_exchange(curr, next, SeqCst, SeqCst) {
                        Ok(_) if get_state(curr) == NOTIFIED => {
                            *state = NotifiedState::Done;
                            return Poll::Ready(());
                        }
                        Ok(_) => break,
                        Err(actual) => curr = actual,
                    }
                }
                // SAFETY: under the lock (module doc).
                waiter
                    .waker
                    .with_mut(|w| unsafe { *w = Some(cx.waker().clone()) });
                // SAFETY: the waiter is pinned in this future, whose `Drop`
                // unlinks it, and is in no list.
                unsafe { waiters.push_back(NonNull::from(&*waiter)) };
                *state = NotifiedState::Waiting;
                Poll::Pending
            }
            NotifiedState::Waiting => {
                if waiter.notification.load(Acquire) != NONE {
                    *state = NotifiedState::Done;
                    return Poll::Ready(());
                }
                let waiters = notify.waiters.lock();
                if waiter.notification.load(Acquire) != NONE {
                    *state = NotifiedState::Done;
                    return Poll::Ready(());
                }
                // SAFETY: under the lock (module doc).
                waiter.waker.with_mut(|w| unsafe {
                    match &*w {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => *w = Some(cx.waker().clone()),
                    }
                });
                drop(waiters);
                Poll::Pending
            }
        }
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if self.state != NotifiedState::Waiting {
            return;
        }
        let notify = self.notify;
        let mut waiters = notify.waiters.lock();
        match self.waiter.notification.load(Acquire) {
            NONE => {
                // Still linked: leave the list.
                // SAFETY: linked in this list (not notified); we hold the
                // lock.
                unsafe { waiters.remove(NonNull::from(&self.waiter)) };
                if waiters.is_empty() {
                    let curr = notify.state.load(SeqCst);
                    if get_state(curr) == WAITING {
                        notify.state.store(set_state(curr, EMPTY), SeqCst);
                    }
                }
            }
            ONE => {
                // Given a `notify_one` it will never report: pass it on.
                let curr = notify.state.load(SeqCst);
                let waker = notify.notify_locked(&mut waiters, curr);
                drop(waiters);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            _ => {}
        }
    }
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{Arc, model, thread};

    fn poll(f: Pin<&mut Notified<'_>>) -> Poll<()> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn one_permit_is_stored_and_waiters_are_woken_in_order() {
        let n = Notify::new();
        n.notify_one();
        n.notify_one();
        let mut a = Box::pin(n.notified());
        assert!(poll(a.as_mut()).is_ready());
        let mut b = Box::pin(n.notified());
        let mut c = Box::pin(n.notified());
        assert!(poll(b.as_mut()).is_pending(), "only one permit is stored");
        assert!(poll(c.as_mut()).is_pending());
        n.notify_one();
        assert!(poll(c.as_mut()).is_pending(), "FIFO: b is first");
        assert!(poll(b.as_mut()).is_ready());
        n.notify_waiters();
        assert!(poll(c.as_mut()).is_ready());
        // notify_waiters stores nothing.
        let mut d = Box::pin(n.notified());
        assert!(poll(d.as_mut()).is_pending());
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn a_dropped_waiter_passes_its_notification_on() {
        let n = Notify::new();
        let mut a = Box::pin(n.notified());
        let mut b = Box::pin(n.notified());
        assert!(poll(a.as_mut()).is_pending());
        assert!(poll(b.as_mut()).is_pending());
        n.notify_one(); // to `a`
        drop(a);
        assert!(poll(b.as_mut()).is_ready(), "a's notification went to b");
        // With nobody else waiting it is stored.
        let mut c = Box::pin(n.notified());
        assert!(poll(c.as_mut()).is_pending());
        n.notify_one();
        drop(c);
        let mut d = Box::pin(n.notified());
        assert!(poll(d.as_mut()).is_ready(), "the permit was stored");
        // A waiter dropped before any notification leaves the list.
        let mut e = Box::pin(n.notified());
        assert!(poll(e.as_mut()).is_pending());
        drop(e);
        assert_eq!(n.waiter_count(), 0);
        n.notify_one();
        assert!(poll(Box::pin(n.notified()).as_mut()).is_ready());
    }

    /// `notify_one` racing a new waiter: the notification reaches it,
    /// either as a stored permit or by a wake.
    #[test]
    fn loom_notify_one_racing_a_new_waiter() {
        model(|| {
            let n = Arc::new(Notify::new());
            let notifier = {
                let n = n.clone();
                thread::spawn(move || n.notify_one())
            };
            let mut f = Box::pin(n.notified());
            let first = poll(f.as_mut());
            notifier.join().unwrap();
            if first.is_pending() {
                assert!(poll(f.as_mut()).is_ready(), "the notification was lost");
            }
        });
    }

    /// A waiter dropped while `notify_one` hands it the notification: the
    /// notification ends up stored (the next waiter gets it).
    #[test]
    fn loom_drop_of_a_waiter_racing_notify_one() {
        model(|| {
            let n = Arc::new(Notify::new());
            let mut f = Box::pin(n.notified());
            assert!(poll(f.as_mut()).is_pending());
            let notifier = {
                let n = n.clone();
                thread::spawn(move || n.notify_one())
            };
            drop(f);
            notifier.join().unwrap();
            let mut g = Box::pin(n.notified());
            assert!(poll(g.as_mut()).is_ready(), "the notification was lost");
        });
    }

    /// `notify_waiters` racing a waiter made before it: the waiter
    /// completes.
    #[test]
    fn loom_notify_waiters_racing_a_waiter() {
        model(|| {
            let n = Arc::new(Notify::new());
            let mut f = Box::pin(n.notified());
            let notifier = {
                let n = n.clone();
                thread::spawn(move || n.notify_waiters())
            };
            let first = poll(f.as_mut());
            notifier.join().unwrap();
            if first.is_pending() {
                assert!(poll(f.as_mut()).is_ready(), "notify_waiters was lost");
            }
        });
    }
}
