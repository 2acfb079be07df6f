//! The fair semaphore every waiting lock of `sync` is built on (as in
//! tokio's `sync/batch_semaphore.rs`, whose algorithm this follows).
//!
//! Permits not promised to anyone live in one atomic word, taken without
//! a lock on the fast path. A task or fiber that finds too few waits in a
//! FIFO list of [`Waiter`] nodes, each inside its (pinned) [`Acquire`]
//! future, so waiting allocates nothing. Released permits go to the
//! waiters first, in order, the front one getting what it still needs
//! (possibly over several releases); only permits nobody waits for go back
//! to the atomic word. So a newcomer never overtakes a waiter, a waiter
//! for many permits is not starved by waiters for few, and the list is
//! never non-empty while the word holds permits (a waiter takes what the
//! word holds, under the lock, before it queues).
//!
//! The word's `WAITERS` bit mirrors "the queue is not empty"; it changes
//! only under the lock, together with the queue (a waiter sets it in the
//! same compare-and-swap that drains the word). So a release that finds it
//! clear adds its permits to the word without the lock: no waiter can be
//! queued behind its back. The common uncontended `release` (a guard
//! dropped, a message received) is one compare-and-swap.
//!
//! # Who touches a waiter
//!
//! 1. Its `waker` and links only under the semaphore's lock.
//! 2. Its `needed` count: written under the lock; read by its future
//!    without it. A releaser that satisfies a waiter takes its waker and
//!    unlinks it first, and stores `needed = 0` last: after that store it
//!    never touches the node again, so a future that reads 0 (`Acquire`)
//!    may complete and be freed without taking the lock.
//! 3. `close` unlinks every waiter and marks it `CLOSED_NODE` in the same
//!    way.
//!
//! # Cancellation
//!
//! A dropped `Acquire` that was queued unlinks itself under the lock and
//! gives back whatever permits it had been given so far (all of them if a
//! releaser satisfied it before it saw so), handing them to the next
//! waiters: nothing is lost.

use crate::loom::{AtomicUsize, Mutex, Ordering::*, UnsafeCell};
use crate::util::WakeList;
use crate::util::linked_list::{self, LinkedList, Pointers};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

/// The most permits a semaphore holds (the word keeps a flag below them).
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 3;
/// The word's low bit: closed.
const CLOSED: usize = 1;
/// The word's second bit: the queue is not empty (changed only under the
/// lock, with the queue).
const WAITERS: usize = 2;
const PERMIT_SHIFT: usize = 2;
/// `Waiter::needed` of a waiter that `close` took off the list.
const CLOSED_NODE: usize = usize::MAX;

pub(crate) struct Semaphore {
    /// Unpromised permits `<< PERMIT_SHIFT`, `WAITERS` and `CLOSED`.
    permits: AtomicUsize,
    waiters: Mutex<LinkedList<WaiterLink>>,
}

/// Why an acquisition failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryAcquireError {
    Closed,
    NoPermits,
}

/// The semaphore was closed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AcquireError;

/// For the locks, whose semaphore is never closed: an acquisition cannot
/// fail.
pub(super) fn never_closed(_: AcquireError) -> ! {
    unreachable!("the semaphore of a lock is never closed")
}

/// A queued acquisition (module doc, "Who touches a waiter").
pub(crate) struct Waiter {
    /// Permits still to be given, `0` once satisfied, `CLOSED_NODE` once
    /// taken off by `close`.
    needed: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
    pointers: UnsafeCell<Pointers<Waiter>>,
}

// SAFETY: the waker and the links are touched only under the semaphore's
// lock, `needed` is atomic (module doc).
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

impl Waiter {
    fn new(needed: usize) -> Waiter {
        Waiter {
            needed: AtomicUsize::new(needed),
            waker: UnsafeCell::new(None),
            pointers: UnsafeCell::new(Pointers::new()),
        }
    }
}

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

impl Semaphore {
    pub(crate) fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= MAX_PERMITS,
            "a semaphore holds at most {MAX_PERMITS} permits, asked for {permits}"
        );
        Semaphore {
            permits: AtomicUsize::new(permits << PERMIT_SHIFT),
            waiters: Mutex::new(LinkedList::new()),
        }
    }

    /// Permits nobody holds or waits for.
    pub(crate) fn available_permits(&self) -> usize {
        self.permits.load(Acquire) >> PERMIT_SHIFT
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.permits.load(Acquire) & CLOSED != 0
    }

    /// Takes `n` permits if they are there, without waiting.
    pub(crate) fn try_acquire(&self, n: usize) -> Result<(), TryAcquireError> {
        let mut curr = self.permits.load(Acquire);
        loop {
            if curr & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            if curr >> PERMIT_SHIFT < n {
                return Err(TryAcquireError::NoPermits);
            }
            match self.permits.compare_exchange_weak(
                curr,
                curr - (n << PERMIT_SHIFT),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => curr = actual,
            }
        }
    }

    /// A future that takes `n` permits, waiting its turn.
    pub(crate) fn acquire(&self, n: usize) -> Acquire<'_> {
        Acquire {
            node: Waiter::new(n),
            semaphore: self,
            num_permits: n,
            queued: false,
        }
    }

    /// Gives `n` permits back (or adds new ones): to the waiters first.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        assert!(
            n <= MAX_PERMITS,
            "a semaphore holds at most {MAX_PERMITS} permits, {n} were added"
        );
        // Fast path: nobody waits, so the permits go to the word, without
        // the lock (a waiter sets `WAITERS` as it queues, under the lock,
        // in the same step as it drains the word: it sees these permits,
        // or this CAS fails and we take the lock).
        let mut curr = self.permits.load(Acquire);
        while curr & WAITERS == 0 {
            assert!(
                (curr >> PERMIT_SHIFT) + n <= MAX_PERMITS,
                "a semaphore holds at most {MAX_PERMITS} permits"
            );
            match self.permits.compare_exchange_weak(
                curr,
                curr + (n << PERMIT_SHIFT),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => curr = actual,
            }
        }
        let waiters = self.waiters.lock();
        self.release_locked(n, waiters);
    }

    /// As `release`, with the lock taken (also with `n == 0`, after a
    /// waiter left the queue: clears `WAITERS` if it is empty now); wakes
    /// the satisfied waiters after dropping the lock.
    fn release_locked<'a>(
        &'a self,
        n: usize,
        mut waiters: crate::loom::MutexGuard<'a, LinkedList<WaiterLink>>,
    ) {
        let mut rem = n;
        let mut wake = WakeList::new();
        while rem > 0 {
            let Some(front) = waiters.front() else {
                break;
            };
            // SAFETY: a linked waiter is live (`linked_list`, rule 1); we
            // hold the lock.
            let node = unsafe { front.as_ref() };
            let needed = node.needed.load(Relaxed);
            let given = needed.min(rem);
            rem -= given;
            if given == needed {
                waiters.pop_front();
                // SAFETY: under the lock (rule 1).
                if let Some(w) = node.waker.with_mut(|w| unsafe { (*w).take() }) {
                    wake.push(w);
                }
                // Last touch of the node (rule 2).
                node.needed.store(0, Release);
                if wake.is_full() && rem > 0 {
                    // Wake outside the lock, then go on.
                    drop(waiters);
                    wake.wake_all();
                    waiters = self.waiters.lock();
                }
            } else {
                node.needed.store(needed - given, Release);
            }
        }
        // Under the lock: with waiters left, `rem` is 0; with none, the
        // rest goes to the word and `WAITERS` is cleared in one step.
        let mut overflow = false;
        if waiters.is_empty() {
            let mut curr = self.permits.load(Acquire);
            loop {
                if (curr >> PERMIT_SHIFT) + rem > MAX_PERMITS {
                    overflow = true;
                    rem = 0;
                }
                let next = (curr & !WAITERS) + (rem << PERMIT_SHIFT);
                match self
                    .permits
                    .compare_exchange_weak(curr, next, AcqRel, Acquire)
                {
                    Ok(_) => break,
                    Err(actual) => curr = actual,
                }
            }
        }
        drop(waiters);
        wake.wake_all();
        assert!(!overflow, "a semaphore holds at most {MAX_PERMITS} permits");
    }

    /// Removes up to `n` unpromised permits; returns how many.
    pub(crate) fn forget(&self, n: usize) -> usize {
        let mut curr = self.permits.load(Acquire);
        loop {
            let take = (curr >> PERMIT_SHIFT).min(n);
            match self.permits.compare_exchange_weak(
                curr,
                curr - (take << PERMIT_SHIFT),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => return take,
                Err(actual) => curr = actual,
            }
        }
    }

    /// Closes the semaphore: pending and future acquisitions fail;
    /// permits held stay valid.
    pub(crate) fn close(&self) {
        let mut waiters = self.waiters.lock();
        self.permits.fetch_or(CLOSED, Release);
        self.permits.fetch_and(!WAITERS, Release);
        let mut wake = WakeList::new();
        while let Some(front) = waiters.pop_front() {
            // SAFETY: it was linked, so it is live; we hold the lock.
            let node = unsafe { front.as_ref() };
            // SAFETY: under the lock (rule 1).
            if let Some(w) = node.waker.with_mut(|w| unsafe { (*w).take() }) {
                wake.push(w);
            }
            // Last touch (rule 3).
            node.needed.store(CLOSED_NODE, Release);
        }
        drop(waiters);
        wake.wake_all();
    }

    /// One poll of an acquisition of `n` permits through `node`.
    fn poll_acquire(
        &self,
        cx: &mut Context<'_>,
        n: usize,
        node: Pin<&Waiter>,
        queued: &mut bool,
    ) -> Poll<Result<(), AcquireError>> {
        if *queued {
            match node.needed.load(Acquire) {
                0 => {
                    *queued = false;
                    return Poll::Ready(Ok(()));
                }
                CLOSED_NODE => {
                    *queued = false;
                    return Poll::Ready(Err(AcquireError));
                }
                _ => {}
            }
            let waiters = self.waiters.lock();
            match node.needed.load(Acquire) {
                0 => {
                    *queued = false;
                    return Poll::Ready(Ok(()));
                }
                CLOSED_NODE => {
                    *queued = false;
                    return Poll::Ready(Err(AcquireError));
                }
                _ => {}
            }
            // Still waiting: keep the waker current.
            // SAFETY: under the lock (rule 1).
            node.waker.with_mut(|w| unsafe {
                match &*w {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
            });
            drop(waiters);
            return Poll::Pending;
        }
        // Fast path: enough unpromised permits.
        match self.try_acquire(n) {
            Ok(()) => return Poll::Ready(Ok(())),
            Err(TryAcquireError::Closed) => return Poll::Ready(Err(AcquireError)),
            Err(TryAcquireError::NoPermits) => {}
        }
        let mut waiters = self.waiters.lock();
        // Take what the word holds (released since), then queue for the
        // rest: the word is empty while the queue is not (module doc).
        let mut curr = self.permits.load(Acquire);
        let taken = loop {
            // `CLOSED` is set under the lock: it cannot come while we
            // hold it.
            if curr & CLOSED != 0 {
                return Poll::Ready(Err(AcquireError));
            }
            let avail = curr >> PERMIT_SHIFT;
            let take = avail.min(n);
            // Short: set `WAITERS` in the same step, so that no releaser
            // adds to the word behind our back (module doc).
            let flag = if take < n { WAITERS } else { 0 };
            match self.permits.compare_exchange_weak(
                curr,
                (curr - (take << PERMIT_SHIFT)) | flag,
                AcqRel,
                Acquire,
            ) {
                Ok(_) => break take,
                Err(actual) => curr = actual,
            }
        };
        if taken == n {
            return Poll::Ready(Ok(()));
        }
        node.needed.store(n - taken, Relaxed);
        // SAFETY: under the lock (rule 1).
        node.waker
            .with_mut(|w| unsafe { *w = Some(cx.waker().clone()) });
        // SAFETY: the node is pinned inside its future, which unlinks it
        // before it goes (its `Drop`), and is in no list.
        unsafe { waiters.push_back(NonNull::from(&*node)) };
        *queued = true;
        Poll::Pending
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.available_permits())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The future of [`Semaphore::acquire`].
pub(crate) struct Acquire<'a> {
    node: Waiter,
    semaphore: &'a Semaphore,
    num_permits: usize,
    /// The node is (or was, until a releaser or `close` took it off) in
    /// the queue.
    queued: bool,
}

impl Acquire<'_> {
    fn project(self: Pin<&mut Self>) -> (Pin<&Waiter>, &Semaphore, usize, &mut bool) {
        // SAFETY: the node is only ever used pinned (its address goes into
        // the list); the other fields are not structurally pinned.
        unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&this.node),
                this.semaphore,
                this.num_permits,
                &mut this.queued,
            )
        }
    }
}

impl Future for Acquire<'_> {
    type Output = Result<(), AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Spending the task's budget: a ready lock in a loop must let the
        // others run.
        std::task::ready!(crate::task_core::coop::poll_proceed(cx));
        let (node, semaphore, n, queued) = self.project();
        let res = semaphore.poll_acquire(cx, n, node, queued);
        if res.is_pending() {
            crate::task_core::coop::refund();
        }
        res
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        // Satisfied (or closed) and so off the list: the releaser is done
        // with the node (rule 2).
        let needed = self.node.needed.load(Acquire);
        if needed == CLOSED_NODE {
            return;
        }
        let mut waiters = self.semaphore.waiters.lock();
        let needed = self.node.needed.load(Acquire);
        if needed == CLOSED_NODE {
            return;
        }
        // SAFETY: the node is live (ours); still waiting, it is linked in
        // this queue, and satisfied (`needed == 0`) in none, where
        // `remove` does nothing. We hold the lock.
        unsafe { waiters.remove(NonNull::from(&self.node)) };
        // What it was given goes on: all of it if it was satisfied before
        // it saw so. (If the queue is empty now, `WAITERS` is cleared,
        // even with nothing given.)
        self.semaphore
            .release_locked(self.num_permits - needed, waiters);
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("permits", &self.num_permits)
            .field("queued", &self.queued)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{Arc, model, thread};
    use std::task::Wake;

    /// Counts wakes.
    #[derive(Default)]
    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn poll(f: Pin<&mut Acquire<'_>>, waker: &Waker) -> Poll<Result<(), AcquireError>> {
        f.poll(&mut Context::from_waker(waker))
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn waiters_are_served_in_order_and_newcomers_wait_behind_them() {
        let s = Semaphore::new(0);
        let w = Waker::noop();
        let mut a = std::pin::pin!(s.acquire(2));
        let mut b = std::pin::pin!(s.acquire(1));
        assert!(poll(a.as_mut(), w).is_pending());
        assert!(poll(b.as_mut(), w).is_pending());
        s.release(1);
        // The front waiter needs 2: the permit waits with it.
        assert_eq!(s.available_permits(), 0);
        assert!(poll(b.as_mut(), w).is_pending());
        assert_eq!(s.try_acquire(1), Err(TryAcquireError::NoPermits));
        s.release(2);
        assert!(poll(a.as_mut(), w).is_ready());
        assert!(poll(b.as_mut(), w).is_ready());
        assert_eq!(s.available_permits(), 0);
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn a_dropped_waiter_gives_back_what_it_was_given() {
        let s = Semaphore::new(0);
        let w = Waker::noop();
        let mut b = Box::pin(s.acquire(1));
        {
            let mut a = Box::pin(s.acquire(3));
            assert!(poll(a.as_mut(), w).is_pending());
            assert!(poll(b.as_mut(), w).is_pending());
            s.release(2);
            // Dropped with 2 of its 3: they go to the next waiter, the rest
            // to the word.
        }
        assert!(poll(b.as_mut(), w).is_ready());
        assert_eq!(s.available_permits(), 1);
        // Satisfied but dropped before it saw so: all of it comes back.
        let mut c = Box::pin(s.acquire(2));
        assert!(poll(c.as_mut(), w).is_pending());
        s.release(1);
        drop(c);
        assert_eq!(s.available_permits(), 2);
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn close_fails_the_waiters_and_later_acquisitions() {
        let s = Semaphore::new(0);
        let wakes = std::sync::Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let mut a = Box::pin(s.acquire(1));
        assert!(poll(a.as_mut(), &waker).is_pending());
        s.close();
        assert_eq!(wakes.0.load(SeqCst), 1);
        assert_eq!(poll(a.as_mut(), &waker), Poll::Ready(Err(AcquireError)));
        let mut b = Box::pin(s.acquire(1));
        assert_eq!(poll(b.as_mut(), &waker), Poll::Ready(Err(AcquireError)));
        assert_eq!(s.try_acquire(1), Err(TryAcquireError::Closed));
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn close_fails_more_waiters_than_one_wake_batch() {
        let s = Semaphore::new(0);
        let wakes = std::sync::Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let mut all: Vec<_> = (0..70).map(|_| Box::pin(s.acquire(1))).collect();
        for a in &mut all {
            assert!(poll(a.as_mut(), &waker).is_pending());
        }
        s.close();
        assert_eq!(wakes.0.load(SeqCst), 70);
        for a in &mut all {
            assert_eq!(poll(a.as_mut(), &waker), Poll::Ready(Err(AcquireError)));
        }
        // Permits released after the close go to the word.
        s.release(3);
        assert_eq!(s.available_permits(), 3);
    }

    /// A release racing a waiter that queues: the waiter gets the permit
    /// (woken, or seeing it when it queues), and no permit is lost.
    #[test]
    fn loom_release_racing_acquire() {
        model(|| {
            let s = Arc::new(Semaphore::new(0));
            let wakes = std::sync::Arc::new(CountWakes::default());
            let waker = Waker::from(wakes.clone());
            let releaser = {
                let s = s.clone();
                thread::spawn(move || s.release(1))
            };
            let mut a = Box::pin(s.acquire(1));
            let first = poll(a.as_mut(), &waker);
            releaser.join().unwrap();
            if first.is_pending() {
                assert_eq!(wakes.0.load(SeqCst), 1, "the waiter was not woken");
                assert!(poll(a.as_mut(), &waker).is_ready());
            }
            drop(a);
            assert_eq!(s.available_permits(), 0);
        });
    }

    /// Dropping a queued waiter while a release hands it its permits: the
    /// permits end up in the semaphore either way (never lost, never
    /// doubled).
    #[test]
    fn loom_drop_of_a_queued_waiter_racing_a_hand_off() {
        model(|| {
            let s = Arc::new(Semaphore::new(0));
            let mut a = Box::pin(s.acquire(2));
            assert!(poll(a.as_mut(), Waker::noop()).is_pending());
            let releaser = {
                let s = s.clone();
                thread::spawn(move || s.release(2))
            };
            drop(a);
            releaser.join().unwrap();
            assert_eq!(s.available_permits(), 2);
        });
    }

    /// `close` racing a queued waiter's poll and drop: the waiter fails or
    /// is unlinked, and nothing touches freed memory (loom checks the
    /// accesses).
    #[test]
    fn loom_close_racing_a_waiter() {
        model(|| {
            let s = Arc::new(Semaphore::new(0));
            let mut a = Box::pin(s.acquire(1));
            assert!(poll(a.as_mut(), Waker::noop()).is_pending());
            let closer = {
                let s = s.clone();
                thread::spawn(move || s.close())
            };
            let r = poll(a.as_mut(), Waker::noop());
            drop(a);
            closer.join().unwrap();
            assert!(matches!(r, Poll::Pending | Poll::Ready(Err(AcquireError))));
            assert!(s.is_closed());
        });
    }
}
