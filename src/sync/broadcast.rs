//! A channel where every receiver sees every value: many senders, many
//! receivers, a ring of the last `capacity` values.
//!
//! A receiver that falls more than `capacity` values behind loses the
//! oldest ones: its next receive returns
//! [`RecvError::Lagged(n)`](error::RecvError::Lagged) with the number it
//! missed, and then goes on from the oldest value still held. Once every
//! sender is gone and a receiver has seen all that was sent, it gets
//! [`RecvError::Closed`].
//!
//! # Examples
//!
//! A task and a fiber both hear every message:
//!
//! ```
//! use fiber_runtime::sync::broadcast;
//!
//! fiber_runtime::block_on(async {
//!     let (tx, mut rx1) = broadcast::channel(16);
//!     let mut rx2 = tx.subscribe();
//!     let fiber = fiber_runtime::fiber::spawn(move || {
//!         let mut got = Vec::new();
//!         while let Ok(v) = rx2.blocking_recv() {
//!             got.push(v);
//!         }
//!         got
//!     });
//!     tx.send(1).unwrap();
//!     tx.send(2).unwrap();
//!     drop(tx);
//!     assert_eq!(rx1.recv().await, Ok(1));
//!     assert_eq!(rx1.recv().await, Ok(2));
//!     assert_eq!(fiber.await.unwrap(), [1, 2]);
//! });
//! ```
//!
//! # How it works
//!
//! One lock guards the ring, the write position and the list of waiting
//! receivers (intrusive nodes inside the pending [`Recv`] futures, so
//! waiting allocates nothing). A value stays in the ring until it is
//! overwritten, `capacity` sends later. A receive clones the value under
//! the lock; a value overwritten is dropped after it.

use crate::loom::{Mutex, UnsafeCell};
use crate::util::WakeList;
use crate::util::linked_list::{self, LinkedList, Pointers};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The errors of this channel.
pub mod error {
    use std::fmt;

    /// No receiver is left: the value comes back.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct SendError<T>(pub T);

    /// Why a receive got no value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RecvError {
        /// Every sender is gone and every value was received.
        Closed,
        /// The receiver fell behind and missed this many values; the next
        /// receive returns the oldest value still held.
        Lagged(u64),
    }

    /// Why a `try_recv` got no value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TryRecvError {
        /// Nothing new yet; senders remain.
        Empty,
        /// Every sender is gone and every value was received.
        Closed,
        /// As [`RecvError::Lagged`].
        Lagged(u64),
    }

    impl<T> fmt::Debug for SendError<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SendError").finish_non_exhaustive()
        }
    }

    impl<T> fmt::Display for SendError<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("channel closed")
        }
    }

    impl<T> std::error::Error for SendError<T> {}

    impl fmt::Display for RecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                RecvError::Closed => f.write_str("channel closed"),
                RecvError::Lagged(n) => write!(f, "channel lagged by {n}"),
            }
        }
    }

    impl std::error::Error for RecvError {}

    impl fmt::Display for TryRecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TryRecvError::Empty => f.write_str("channel empty"),
                TryRecvError::Closed => f.write_str("channel closed"),
                TryRecvError::Lagged(n) => write!(f, "channel lagged by {n}"),
            }
        }
    }

    impl std::error::Error for TryRecvError {}
}

use error::{RecvError, SendError, TryRecvError};

struct Shared<T> {
    state: Mutex<State<T>>,
    /// `buffer.len() - 1` (the length is a power of two).
    mask: usize,
}

struct State<T> {
    /// The ring: the value sent at position `p` is at `p & mask` while
    /// `p + len > pos`.
    buffer: Box<[Option<T>]>,
    /// Where the next value goes (values sent so far).
    pos: u64,
    rx_count: usize,
    tx_count: usize,
    waiters: LinkedList<WaiterLink>,
}

/// A waiting receive; touched only under the lock.
struct Waiter {
    waker: UnsafeCell<Option<Waker>>,
    pointers: UnsafeCell<Pointers<Waiter>>,
}

// SAFETY: every field is touched only under the channel's lock.
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

/// Sends to every receiver; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// Receives every value sent after it subscribed.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The position of the next value to receive.
    next: u64,
}

/// A channel holding the last `capacity` values (rounded up to a power of
/// two) for its receivers.
///
/// # Panics
///
/// Panics if `capacity` is 0 or above `usize::MAX / 2`.
///
/// # Examples
///
/// A receiver that fell behind is told how many it missed:
///
/// ```
/// use fiber_runtime::sync::broadcast::{self, error::RecvError};
///
/// let (tx, mut rx) = broadcast::channel(2);
/// for i in 0..5 {
///     tx.send(i).unwrap();
/// }
/// assert_eq!(rx.blocking_recv(), Err(RecvError::Lagged(3)));
/// assert_eq!(rx.blocking_recv(), Ok(3));
/// assert_eq!(rx.blocking_recv(), Ok(4));
/// ```
#[track_caller]
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "broadcast::channel: the capacity must be at least 1"
    );
    assert!(
        capacity <= usize::MAX >> 1,
        "broadcast::channel: the capacity must be at most {}",
        usize::MAX >> 1
    );
    let len = capacity.next_power_of_two();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buffer: (0..len).map(|_| None).collect(),
            pos: 0,
            rx_count: 1,
            tx_count: 1,
            waiters: LinkedList::new(),
        }),
        mask: len - 1,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, next: 0 },
    )
}

impl<T> Shared<T> {
    /// Unlinks every waiter and returns their wakers, to wake once the
    /// lock is dropped.
    fn take_waiters(state: &mut State<T>) -> WakeList {
        let mut wake = WakeList::new();
        while let Some(node) = state.waiters.pop_front() {
            // SAFETY: it was linked, so it is live; we hold the lock.
            let w = unsafe { node.as_ref() };
            // SAFETY: under the lock.
            if let Some(waker) = w.waker.with_mut(|k| unsafe { (*k).take() }) {
                wake.push(waker);
            }
        }
        wake
    }

    /// A new receiver at the newest position.
    fn subscribe(self: &Arc<Self>) -> Receiver<T> {
        let mut state = self.state.lock();
        state.rx_count += 1;
        Receiver {
            shared: self.clone(),
            next: state.pos,
        }
    }
}

impl<T: Clone> Shared<T> {
    /// One receive under the lock for the receiver at `next`: a value, an
    /// error, or `None` (nothing new, senders remain).
    fn recv_locked(&self, state: &State<T>, next: &mut u64) -> Option<Result<T, RecvError>> {
        if *next == state.pos {
            return (state.tx_count == 0).then_some(Err(RecvError::Closed));
        }
        let len = self.mask as u64 + 1;
        let oldest = state.pos.saturating_sub(len);
        if *next < oldest {
            let missed = oldest - *next;
            *next = oldest;
            return Some(Err(RecvError::Lagged(missed)));
        }
        let idx = (*next as usize) & self.mask;
        let v = state.buffer[idx]
            .clone()
            .expect("a position below `pos` and within the ring holds a value");
        *next += 1;
        Some(Ok(v))
    }
}

impl<T> Sender<T> {
    /// Sends `value` to every receiver, without waiting; returns how many
    /// receivers there are.
    ///
    /// # Errors
    ///
    /// Returns the value in a [`SendError`] if there is no receiver.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::broadcast::channel(4);
    /// let _rx2 = tx.subscribe();
    /// assert_eq!(tx.send("x").unwrap(), 2);
    /// drop(rx);
    /// drop(_rx2);
    /// assert!(tx.send("y").is_err());
    /// ```
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let mut state = self.shared.state.lock();
        if state.rx_count == 0 {
            return Err(SendError(value));
        }
        let idx = (state.pos as usize) & self.shared.mask;
        // The value overwritten is dropped after the lock (its `Drop` is
        // user code).
        let old = state.buffer[idx].replace(value);
        state.pos += 1;
        let receivers = state.rx_count;
        let mut wake = Shared::take_waiters(&mut state);
        drop(state);
        drop(old);
        wake.wake_all();
        Ok(receivers)
    }

    /// A new receiver, which gets every value sent from now on.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _) = fiber_runtime::sync::broadcast::channel(4);
    /// let mut rx = tx.subscribe();
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.subscribe()
    }

    /// Receivers alive now.
    pub fn receiver_count(&self) -> usize {
        self.shared.state.lock().rx_count
    }

    /// Values held in the ring (at most the capacity).
    pub fn len(&self) -> usize {
        let state = self.shared.state.lock();
        (state.pos as usize).min(self.shared.mask + 1)
    }

    /// Whether nothing was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether both senders feed the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.state.lock().tx_count += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.tx_count -= 1;
        if state.tx_count > 0 {
            return;
        }
        let mut wake = Shared::take_waiters(&mut state);
        drop(state);
        wake.wake_all();
    }
}

impl<T: Clone> Receiver<T> {
    /// Waits for the next value.
    ///
    /// # Errors
    ///
    /// [`RecvError::Lagged`] if values were missed (the next call goes
    /// on from the oldest one held), [`RecvError::Closed`] once every
    /// sender is gone and everything was received.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a value is taken only when the future returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::broadcast::channel(4);
    ///     fiber_runtime::spawn(async move { tx.send(1).unwrap() });
    ///     assert_eq!(rx.recv().await, Ok(1));
    /// });
    /// ```
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv {
            receiver: self,
            waiter: Waiter {
                waker: UnsafeCell::new(None),
                pointers: UnsafeCell::new(Pointers::new()),
            },
            linked: false,
        }
    }

    /// Receives in blocking style: suspends a fiber, blocks a plain
    /// thread.
    ///
    /// # Errors
    ///
    /// As [`recv`](Receiver::recv).
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`recv`](Receiver::recv) there.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = fiber_runtime::sync::broadcast::channel(4);
    /// std::thread::spawn(move || tx.send(5).unwrap());
    /// assert_eq!(rx.blocking_recv(), Ok(5));
    /// ```
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Result<T, RecvError> {
        crate::wait::wait(
            self.recv(),
            "broadcast::Receiver::blocking_recv",
            "`.await` `Receiver::recv`",
        )
    }

    /// Takes the next value if there is one now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing new was sent, else as
    /// [`recv`](Receiver::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::broadcast::{self, error::TryRecvError};
    ///
    /// let (tx, mut rx) = broadcast::channel::<u8>(4);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let state = self.shared.state.lock();
        match self.shared.recv_locked(&state, &mut self.next) {
            None => Err(TryRecvError::Empty),
            Some(Ok(v)) => Ok(v),
            Some(Err(RecvError::Closed)) => Err(TryRecvError::Closed),
            Some(Err(RecvError::Lagged(n))) => Err(TryRecvError::Lagged(n)),
        }
    }

    /// A new receiver that starts at the newest position (it gets the
    /// values sent from now on).
    pub fn resubscribe(&self) -> Receiver<T> {
        self.shared.subscribe()
    }
}

impl<T> Receiver<T> {
    /// Values this receiver has not received yet (those still held).
    pub fn len(&self) -> usize {
        let state = self.shared.state.lock();
        let oldest = state.pos.saturating_sub(self.shared.mask as u64 + 1);
        (state.pos - self.next.max(oldest)) as usize
    }

    /// Whether nothing new is held for this receiver.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.state.lock().rx_count -= 1;
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
    waiter: Waiter,
    /// The waiter may be linked: this future linked it and has not
    /// unlinked it since (a send may have).
    linked: bool,
}

impl<T: Clone> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        std::task::ready!(crate::task_core::coop::poll_proceed(cx));
        // SAFETY: the waiter is only used pinned (its address goes into the
        // list); `receiver` and `linked` are not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let receiver = &mut *this.receiver;
        let node = NonNull::from(&this.waiter);
        let mut state = receiver.shared.state.lock();
        if let Some(r) = receiver.shared.recv_locked(&state, &mut receiver.next) {
            if this.linked {
                // SAFETY: the waiter is live (ours), and in this list or
                // in none (a send unlinked it); under the lock.
                unsafe { state.waiters.remove(node) };
                this.linked = false;
            }
            return Poll::Ready(r);
        }
        // SAFETY: under the lock.
        this.waiter.waker.with_mut(|w| unsafe {
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        });
        // SAFETY: the waiter is live, and in this list or in none; under
        // the lock.
        if !this.linked || !unsafe { state.waiters.is_linked(node) } {
            // SAFETY: the waiter is pinned in this future, whose `Drop`
            // unlinks it, and is in no list.
            unsafe { state.waiters.push_back(node) };
            this.linked = true;
        }
        drop(state);
        crate::task_core::coop::refund();
        Poll::Pending
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        if !self.linked {
            // Never linked, or unlinked by this future: nothing to do.
            return;
        }
        let mut state = self.receiver.shared.state.lock();
        // SAFETY: the waiter is live (ours), and in this list or in none
        // (a send unlinked it); under the lock.
        unsafe { state.waiters.remove(NonNull::from(&self.waiter)) };
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{model, thread};

    fn poll<T: Clone>(f: Pin<&mut Recv<'_, T>>) -> Poll<Result<T, RecvError>> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[cfg(not(fiber_runtime_loom))]
    #[derive(Default)]
    struct CountWakes(std::sync::atomic::AtomicUsize);
    #[cfg(not(fiber_runtime_loom))]
    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    #[cfg(not(fiber_runtime_loom))]
    impl CountWakes {
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn a_send_and_the_last_sender_wake_more_waiters_than_the_inline_batch() {
        let wakes = Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let cx = &mut Context::from_waker(&waker);
        let (tx, rx) = channel::<u32>(2);
        let mut rxs: Vec<_> = (0..70).map(|_| rx.resubscribe()).collect();
        let mut recvs: Vec<_> = rxs.iter_mut().map(|r| Box::pin(r.recv())).collect();
        for f in &mut recvs {
            assert!(f.as_mut().poll(cx).is_pending());
        }
        // Polled again while linked: still linked once.
        assert!(recvs[0].as_mut().poll(cx).is_pending());
        tx.send(7).unwrap();
        assert_eq!(wakes.get(), 70);
        for f in &mut recvs {
            assert_eq!(f.as_mut().poll(cx), Poll::Ready(Ok(7)));
        }
        drop(recvs);
        let mut recvs: Vec<_> = rxs.iter_mut().map(|r| Box::pin(r.recv())).collect();
        for f in &mut recvs {
            assert!(f.as_mut().poll(cx).is_pending());
        }
        drop(tx);
        assert_eq!(wakes.get(), 140);
        for f in &mut recvs {
            assert_eq!(f.as_mut().poll(cx), Poll::Ready(Err(RecvError::Closed)));
        }
    }

    #[test]
    fn loom_send_racing_a_waiting_receiver_and_its_drop() {
        model(|| {
            let (tx, mut rx) = channel::<u32>(2);
            let sender = thread::spawn(move || {
                tx.send(1).unwrap();
            });
            let first = {
                let mut f = Box::pin(rx.recv());
                poll(f.as_mut())
                // Dropped while possibly still linked.
            };
            sender.join().unwrap();
            let mut f = Box::pin(rx.recv());
            let second = poll(f.as_mut());
            if first.is_ready() {
                assert_eq!(first, Poll::Ready(Ok(1)));
                assert_eq!(second, Poll::Ready(Err(RecvError::Closed)));
            } else {
                assert_eq!(second, Poll::Ready(Ok(1)), "the value was lost");
            }
        });
    }
}
