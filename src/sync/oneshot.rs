//! A channel for one value, from one sender to one receiver.
//!
//! # Examples
//!
//! ```
//! use fiber_runtime::sync::oneshot;
//!
//! fiber_runtime::block_on(async {
//!     let (tx, rx) = oneshot::channel();
//!     fiber_runtime::fiber::spawn(move || tx.send(7).unwrap());
//!     assert_eq!(rx.await, Ok(7));
//! });
//! ```
//!
//! # How it works
//!
//! One allocation holds the state word, the value slot and the two
//! wakers. The bits of the word say who may touch what:
//!
//! - `COMPLETE`: the sender is done (sent a value or dropped); set once.
//!   Before it, only the sender writes the value; after it, only the
//!   receiver reads it.
//! - `RX_TASK_SET`: the receiver's waker is stored. While it is set, only
//!   the sender reads that waker; the receiver clears it before changing
//!   the waker (and if it then finds `COMPLETE`, leaves the waker alone:
//!   the sender may be reading it).
//! - `CLOSED`: the receiver is gone or closed the channel; `TX_TASK_SET`
//!   is the same protocol for the sender's waker (`Sender::closed`).

use crate::loom::{Arc, AtomicUsize, Ordering::*, UnsafeCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

const RX_TASK_SET: usize = 1;
const COMPLETE: usize = 2;
const CLOSED: usize = 4;
const TX_TASK_SET: usize = 8;

/// The errors of this channel.
pub mod error {
    use std::fmt;

    /// The sender was dropped without sending: the error of awaiting a
    /// [`Receiver`](super::Receiver).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RecvError(pub(super) ());

    impl fmt::Display for RecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("channel closed")
        }
    }

    impl std::error::Error for RecvError {}

    /// Why [`Receiver::try_recv`](super::Receiver::try_recv) got no value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum TryRecvError {
        /// No value yet; the sender may still send one.
        Empty,
        /// The sender was dropped without sending (or the value was
        /// already taken).
        Closed,
    }

    impl fmt::Display for TryRecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TryRecvError::Empty => f.write_str("channel empty"),
                TryRecvError::Closed => f.write_str("channel closed"),
            }
        }
    }

    impl std::error::Error for TryRecvError {}
}

use error::{RecvError, TryRecvError};

struct Inner<T> {
    state: AtomicUsize,
    value: UnsafeCell<Option<T>>,
    rx_task: UnsafeCell<Option<Waker>>,
    tx_task: UnsafeCell<Option<Waker>>,
}

// SAFETY: the cells are handed between the two sides by the state word
// (module doc), so no cell is touched by both at once; `T` moves from the
// sender to the receiver (`Send`, derived, has the same bound).
unsafe impl<T: Send> Sync for Inner<T> {}

/// Sends the value: [`Sender::send`].
pub struct Sender<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// Receives the value: `.await` it, or call
/// [`blocking_recv`](Receiver::blocking_recv).
///
/// # Cancel safety
///
/// Dropping a pending `Receiver` (or the future awaiting it) closes the
/// channel: the sender's `send` then returns the value. Awaiting `&mut
/// Receiver` in a `select!`-style loop loses nothing: the value stays in
/// the channel until a poll returns it.
pub struct Receiver<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// A channel for one value.
///
/// # Examples
///
/// ```
/// use fiber_runtime::sync::oneshot;
///
/// let (tx, rx) = oneshot::channel::<u8>();
/// drop(tx);
/// assert!(rx.blocking_recv().is_err());
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicUsize::new(0),
        value: UnsafeCell::new(None),
        rx_task: UnsafeCell::new(None),
        tx_task: UnsafeCell::new(None),
    });
    (
        Sender {
            inner: Some(inner.clone()),
        },
        Receiver { inner: Some(inner) },
    )
}

impl<T> Inner<T> {
    /// Sets `COMPLETE` unless `CLOSED`; wakes the receiver. Returns
    /// whether it completed.
    fn complete(&self) -> bool {
        let mut curr = self.state.load(Relaxed);
        loop {
            if curr & CLOSED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(curr, curr | COMPLETE, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => curr = actual,
            }
        }
        if curr & RX_TASK_SET != 0 {
            // SAFETY: `RX_TASK_SET` was set when we completed: the receiver
            // no longer changes its waker (module doc).
            self.rx_task.with(|w| unsafe {
                if let Some(w) = &*w {
                    w.wake_by_ref();
                }
            });
        }
        true
    }

    /// Marks `CLOSED`; wakes a sender waiting in `closed`.
    fn close(&self) {
        let prev = self.state.fetch_or(CLOSED, AcqRel);
        if prev & TX_TASK_SET != 0 && prev & COMPLETE == 0 {
            // SAFETY: `TX_TASK_SET` was set when we closed: the sender no
            // longer changes its waker (module doc).
            self.tx_task.with(|w| unsafe {
                if let Some(w) = &*w {
                    w.wake_by_ref();
                }
            });
        }
    }

    /// Takes the value after `COMPLETE`.
    fn take_value(&self) -> Option<T> {
        // SAFETY: only called by the receiver after it saw `COMPLETE`
        // (acquire): the sender no longer touches the slot.
        self.value.with_mut(|v| unsafe { (*v).take() })
    }

    /// Stores `waker` in `task` under the `flag` protocol (module doc);
    /// returns `Ready` if `done` (bits) was set first.
    fn register(
        &self,
        task: &UnsafeCell<Option<Waker>>,
        flag: usize,
        done: usize,
        waker: &Waker,
    ) -> Poll<()> {
        let mut state = self.state.load(Acquire);
        if state & done != 0 {
            return Poll::Ready(());
        }
        if state & flag != 0 {
            // SAFETY: our flag is set: the other side only reads the waker.
            let same = task.with(|w| unsafe { (*w).as_ref().is_some_and(|w| w.will_wake(waker)) });
            if same {
                return Poll::Pending;
            }
            state = self.state.fetch_and(!flag, AcqRel);
            if state & done != 0 {
                // The other side may be reading the waker: leave it, and
                // put the flag back so nothing changes it later.
                self.state.fetch_or(flag, Release);
                return Poll::Ready(());
            }
        }
        // SAFETY: our flag is clear: the other side does not touch it.
        task.with_mut(|w| unsafe { *w = Some(waker.clone()) });
        let state = self.state.fetch_or(flag, AcqRel);
        if state & done != 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<T> Sender<T> {
    /// Sends `value`, without waiting.
    ///
    /// # Errors
    ///
    /// Returns `value` back if the receiver is gone (dropped or closed).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::oneshot::channel();
    /// drop(rx);
    /// assert_eq!(tx.send(3), Err(3));
    /// ```
    pub fn send(mut self, value: T) -> Result<(), T> {
        let inner = self.inner.take().expect("a Sender sends once");
        // SAFETY: not `COMPLETE` yet (only this sender sets it): the slot
        // is the sender's.
        inner.value.with_mut(|v| unsafe { *v = Some(value) });
        if inner.complete() {
            Ok(())
        } else {
            // SAFETY: not completed, so the receiver never reads the slot.
            Err(inner
                .value
                .with_mut(|v| unsafe { (*v).take() })
                .expect("the value just stored"))
        }
    }

    /// Whether the receiver is gone (dropped or closed): a `send` would
    /// fail.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::oneshot::channel::<()>();
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        let inner = self.inner.as_ref().expect("a Sender sends once");
        inner.state.load(Acquire) & CLOSED != 0
    }

    /// Waits until the receiver is gone (so that a producer can stop
    /// computing a value nobody wants).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (mut tx, rx) = fiber_runtime::sync::oneshot::channel::<()>();
    ///     fiber_runtime::spawn(async move { drop(rx) });
    ///     tx.closed().await;
    ///     assert!(tx.is_closed());
    /// });
    /// ```
    pub async fn closed(&mut self) {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// Polls for the receiver being gone; registers `cx`'s waker if not.
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.inner.as_ref().expect("a Sender sends once");
        inner.register(&inner.tx_task, TX_TASK_SET, CLOSED, cx.waker())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // Complete with no value: the receiver gets `RecvError`.
            inner.complete();
        }
    }
}

impl<T> Receiver<T> {
    /// Stops the channel from accepting a value: a later `send` fails.
    /// A value sent before stays receivable.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = fiber_runtime::sync::oneshot::channel();
    /// rx.close();
    /// assert_eq!(tx.send(1), Err(1));
    /// ```
    pub fn close(&mut self) {
        if let Some(inner) = &self.inner {
            inner.close();
        }
    }

    /// Takes the value if it was sent, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing was sent yet,
    /// [`TryRecvError::Closed`] if the sender is gone without sending, the
    /// channel was closed, or the value was already taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::oneshot::{self, error::TryRecvError};
    ///
    /// let (tx, mut rx) = oneshot::channel();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let Some(inner) = &self.inner else {
            return Err(TryRecvError::Closed);
        };
        let state = inner.state.load(Acquire);
        if state & COMPLETE != 0 {
            let v = inner.take_value();
            self.inner = None;
            return v.ok_or(TryRecvError::Closed);
        }
        if state & CLOSED != 0 {
            self.inner = None;
            return Err(TryRecvError::Closed);
        }
        Err(TryRecvError::Empty)
    }

    /// Waits for the value in blocking style: suspends a fiber, blocks a
    /// plain thread.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the sender is gone without sending.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await` the receiver
    /// there.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::oneshot::channel();
    /// std::thread::spawn(move || tx.send("hi").unwrap());
    /// assert_eq!(rx.blocking_recv(), Ok("hi"));
    /// ```
    #[track_caller]
    pub fn blocking_recv(self) -> Result<T, RecvError> {
        crate::wait::wait(
            self,
            "oneshot::Receiver::blocking_recv",
            "`.await` the Receiver",
        )
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    /// # Panics
    ///
    /// Panics if polled again after it returned `Ready`.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self
            .inner
            .as_ref()
            .expect("oneshot::Receiver polled after it completed");
        std::task::ready!(crate::task_core::coop::poll_proceed(cx));
        let ready = match inner.register(&inner.rx_task, RX_TASK_SET, COMPLETE | CLOSED, cx.waker())
        {
            Poll::Ready(()) => {
                let state = inner.state.load(Acquire);
                if state & COMPLETE != 0 {
                    inner.take_value().ok_or(RecvError(()))
                } else {
                    Err(RecvError(()))
                }
            }
            Poll::Pending => {
                crate::task_core::coop::refund();
                return Poll::Pending;
            }
        };
        self.inner = None;
        Poll::Ready(ready)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.close();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{model, thread};
    use std::sync::atomic::AtomicUsize as StdAtomic;
    use std::task::Wake;

    #[derive(Default)]
    struct CountWakes(StdAtomic);
    impl Wake for CountWakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// A send racing the receiver's first poll: the receiver gets the
    /// value, by a wake or at once.
    #[test]
    fn loom_send_racing_the_receivers_poll() {
        model(|| {
            let (tx, mut rx) = channel::<u32>();
            let wakes = std::sync::Arc::new(CountWakes::default());
            let waker = Waker::from(wakes.clone());
            let sender = thread::spawn(move || tx.send(5).unwrap());
            let first = Pin::new(&mut rx).poll(&mut Context::from_waker(&waker));
            sender.join().unwrap();
            match first {
                Poll::Ready(v) => assert_eq!(v, Ok(5)),
                Poll::Pending => {
                    assert_eq!(wakes.0.load(SeqCst), 1, "not woken");
                    let again = Pin::new(&mut rx).poll(&mut Context::from_waker(&waker));
                    assert_eq!(again, Poll::Ready(Ok(5)));
                }
            }
        });
    }

    /// A receiver re-registering a new waker while the sender completes:
    /// exactly one of the two wakers is woken or the value is seen.
    #[test]
    fn loom_waker_change_racing_send() {
        model(|| {
            let (tx, mut rx) = channel::<u32>();
            let a = std::sync::Arc::new(CountWakes::default());
            let b = std::sync::Arc::new(CountWakes::default());
            let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
            assert!(
                Pin::new(&mut rx)
                    .poll(&mut Context::from_waker(&wa))
                    .is_pending()
            );
            let sender = thread::spawn(move || tx.send(1).unwrap());
            let second = Pin::new(&mut rx).poll(&mut Context::from_waker(&wb));
            sender.join().unwrap();
            if second.is_pending() {
                assert_eq!(b.0.load(SeqCst), 1, "the current waker was not woken");
                let v = Pin::new(&mut rx).poll(&mut Context::from_waker(&wb));
                assert_eq!(v, Poll::Ready(Ok(1)));
            }
        });
    }

    /// The receiver dropped racing a send: the value is either returned
    /// to the sender or dropped with the channel, never both, never lost
    /// to a leak (loom checks the cells and the Arc).
    #[test]
    fn loom_receiver_drop_racing_send() {
        model(|| {
            let (tx, rx) = channel::<std::sync::Arc<()>>();
            let v = std::sync::Arc::new(());
            let v2 = v.clone();
            let sender = thread::spawn(move || tx.send(v2).is_ok());
            drop(rx);
            let sent = sender.join().unwrap();
            let _ = sent;
            assert_eq!(std::sync::Arc::strong_count(&v), 1, "value leaked");
        });
    }
}
