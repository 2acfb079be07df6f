//! The bounded channel: senders wait while the buffer is full.

use super::chan::{self, Chan, Rx, Tx};
use super::error::{SendError, TryRecvError, TrySendError};
use crate::sync::batch_semaphore::{self as ll, Semaphore};
use std::fmt;
use std::task::{Context, Poll};

/// Sends to a bounded channel; clone it for more senders.
pub struct Sender<T> {
    chan: Tx<T>,
}

/// Receives from a bounded channel.
pub struct Receiver<T> {
    chan: Rx<T>,
}

/// A reserved slot in the buffer: [`send`](Permit::send) fills it without
/// waiting; dropping the permit frees it.
#[must_use = "the slot is freed at once if the permit is dropped"]
pub struct Permit<'a, T> {
    chan: &'a Chan<T>,
}

/// As [`Permit`], owning its sender ([`Sender::reserve_owned`]).
#[must_use = "the slot is freed at once if the permit is dropped"]
pub struct OwnedPermit<T> {
    sender: Option<Sender<T>>,
}

/// A bounded channel holding up to `capacity` messages: a send waits
/// (suspends a fiber, blocks a thread, or is pending in a task) while it
/// is full, and waiting senders get their slot in FIFO order.
///
/// # Panics
///
/// Panics if `capacity` is 0 or above `Semaphore::MAX_PERMITS`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::sync::mpsc::{self, error::TrySendError};
///
/// let (tx, mut rx) = mpsc::channel(1);
/// tx.try_send(1).unwrap();
/// assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
/// assert_eq!(rx.try_recv(), Ok(1));
/// ```
#[track_caller]
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "mpsc::channel: the capacity must be at least 1"
    );
    assert!(
        capacity <= ll::MAX_PERMITS,
        "mpsc::channel: the capacity must be at most {}",
        ll::MAX_PERMITS
    );
    let (tx, rx) = chan::pair(Chan::bounded(capacity));
    (Sender { chan: tx }, Receiver { chan: rx })
}

impl<T> Chan<T> {
    fn slots(&self) -> &Semaphore {
        self.slots.as_ref().expect("a bounded channel has slots")
    }
}

impl<T> Sender<T> {
    /// Sends `value`, waiting for a free slot while the buffer is full.
    ///
    /// # Errors
    ///
    /// Returns the value in a [`SendError`] if the receiver is gone.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits gives up its place in the
    /// queue of senders (a slot it had just been handed goes to the next
    /// sender), and drops `value` with it. To keep the value, wait with
    /// [`reserve`](Sender::reserve) and then send.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(1);
    ///     tx.send("a").await.unwrap();
    ///     assert_eq!(rx.recv().await, Some("a"));
    /// });
    /// ```
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.chan.slots().acquire(1).await.is_err() {
            return Err(SendError(value));
        }
        self.chan.push(value).map_err(|v| {
            self.chan.release_slot();
            SendError(v)
        })
    }

    /// Sends in blocking style: suspends a fiber, blocks a plain thread,
    /// while the buffer is full.
    ///
    /// # Errors
    ///
    /// Returns the value in a [`SendError`] if the receiver is gone.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`send`](Sender::send) there.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(1);
    /// let t = std::thread::spawn(move || {
    ///     tx.blocking_send(1).unwrap();
    ///     tx.blocking_send(2).unwrap(); // waits for the receiver
    /// });
    /// assert_eq!(rx.blocking_recv(), Some(1));
    /// assert_eq!(rx.blocking_recv(), Some(2));
    /// t.join().unwrap();
    /// ```
    #[track_caller]
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        crate::wait::wait(
            self.send(value),
            "mpsc::Sender::blocking_send",
            "`.await` `Sender::send`",
        )
    }

    /// Sends `value` if a slot is free now, without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the buffer is full (or senders are queued
    /// for its slots), [`TrySendError::Closed`] if the receiver is gone;
    /// both give the value back.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::mpsc::{self, error::TrySendError};
    ///
    /// let (tx, rx) = mpsc::channel(4);
    /// drop(rx);
    /// assert!(matches!(tx.try_send(1), Err(TrySendError::Closed(1))));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.chan.slots().try_acquire(1) {
            Ok(()) => {}
            Err(ll::TryAcquireError::NoPermits) => return Err(TrySendError::Full(value)),
            Err(ll::TryAcquireError::Closed) => return Err(TrySendError::Closed(value)),
        }
        self.chan.push(value).map_err(|v| {
            self.chan.release_slot();
            TrySendError::Closed(v)
        })
    }

    /// Waits for a free slot and reserves it.
    ///
    /// # Errors
    ///
    /// [`SendError`] (holding `()`) if the receiver is gone.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up its place in the queue; nothing is
    /// lost.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(1);
    ///     let permit = tx.reserve().await.unwrap();
    ///     permit.send(5);
    ///     assert_eq!(rx.recv().await, Some(5));
    /// });
    /// ```
    pub async fn reserve(&self) -> Result<Permit<'_, T>, SendError<()>> {
        match self.chan.slots().acquire(1).await {
            Ok(()) => Ok(Permit { chan: &self.chan }),
            Err(_) => Err(SendError(())),
        }
    }

    /// As [`reserve`](Sender::reserve), consuming the sender, so that the
    /// permit can move into a task or fiber.
    ///
    /// # Errors
    ///
    /// The sender back in a [`SendError`] if the receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(1);
    ///     let permit = tx.reserve_owned().await.unwrap();
    ///     let _tx = permit.send(5);
    ///     assert_eq!(rx.recv().await, Some(5));
    /// });
    /// ```
    pub async fn reserve_owned(self) -> Result<OwnedPermit<T>, SendError<Sender<T>>> {
        match self.chan.slots().acquire(1).await {
            Ok(()) => Ok(OwnedPermit { sender: Some(self) }),
            Err(_) => Err(SendError(self)),
        }
    }

    /// Whether the receiver is gone: every send would fail.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::mpsc::channel::<()>(1);
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Waits until the receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, rx) = fiber_runtime::sync::mpsc::channel::<()>(1);
    ///     fiber_runtime::spawn(async move { drop(rx) });
    ///     tx.closed().await;
    /// });
    /// ```
    pub async fn closed(&self) {
        self.chan.closed().await
    }

    /// Free slots now.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = fiber_runtime::sync::mpsc::channel(3);
    /// tx.try_send(()).unwrap();
    /// assert_eq!(tx.capacity(), 2);
    /// assert_eq!(tx.max_capacity(), 3);
    /// ```
    pub fn capacity(&self) -> usize {
        self.chan.slots().available_permits()
    }

    /// The capacity the channel was made with.
    pub fn max_capacity(&self) -> usize {
        self.chan.capacity
    }

    /// Whether both senders feed the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        self.chan.same_channel(&other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Permit<'_, T> {
    /// Sends `value` into the reserved slot, without waiting. If the
    /// receiver is gone by now, `value` is dropped.
    pub fn send(self, value: T) {
        let chan = self.chan;
        std::mem::forget(self);
        if chan.push(value).is_err() {
            chan.release_slot();
        }
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.chan.release_slot();
    }
}

impl<T> OwnedPermit<T> {
    /// Sends `value` into the reserved slot and gives the sender back.
    /// If the receiver is gone by now, `value` is dropped.
    pub fn send(mut self, value: T) -> Sender<T> {
        let sender = self.sender.take().expect("an OwnedPermit sends once");
        if sender.chan.push(value).is_err() {
            sender.chan.release_slot();
        }
        sender
    }

    /// Frees the slot and gives the sender back.
    pub fn release(mut self) -> Sender<T> {
        let sender = self.sender.take().expect("an OwnedPermit sends once");
        sender.chan.release_slot();
        sender
    }
}

impl<T> Drop for OwnedPermit<T> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.chan.release_slot();
        }
    }
}

impl<T> Receiver<T> {
    /// Waits for the next message; `None` once every sender is gone (or
    /// the receiver closed) and the buffer is drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken only when the future returns it,
    /// so dropping it (as `select!` does to a losing branch) loses none.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(2);
    ///     tx.send(1).await.unwrap();
    ///     drop(tx);
    ///     assert_eq!(rx.recv().await, Some(1));
    ///     assert_eq!(rx.recv().await, None);
    /// });
    /// ```
    pub async fn recv(&mut self) -> Option<T> {
        self.chan.recv().await
    }

    /// Receives in blocking style: suspends a fiber, blocks a plain
    /// thread, until a message comes or every sender is gone.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`recv`](Receiver::recv) there.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(2);
    ///     let consumer = fiber_runtime::fiber::spawn(move || rx.blocking_recv());
    ///     tx.send(9).await.unwrap();
    ///     assert_eq!(consumer.await.unwrap(), Some(9));
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Option<T> {
        crate::wait::wait(
            self.recv(),
            "mpsc::Receiver::blocking_recv",
            "`.await` `Receiver::recv`",
        )
    }

    /// Takes a message if one is buffered now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if none is and senders remain,
    /// [`TryRecvError::Disconnected`] if none is and none remains.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::mpsc::{self, error::TryRecvError};
    ///
    /// let (tx, mut rx) = mpsc::channel::<u8>(1);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
    }

    /// Polls for the next message (for hand-written futures and streams).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.chan.poll_recv(cx)
    }

    /// Closes the channel: sends fail from now on (waiting senders wake
    /// with an error); the messages already buffered can still be
    /// received.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = fiber_runtime::sync::mpsc::channel(2);
    /// tx.try_send(1).unwrap();
    /// rx.close();
    /// assert!(tx.try_send(2).is_err());
    /// assert_eq!(rx.blocking_recv(), Some(1));
    /// assert_eq!(rx.blocking_recv(), None);
    /// ```
    pub fn close(&mut self) {
        self.chan.close();
    }

    /// Whether the channel is closed (by `close`).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Messages buffered now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no message is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Senders alive now.
    pub fn sender_count(&self) -> usize {
        self.chan.sender_count()
    }
}

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("chan", &self.chan).finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("chan", &self.chan)
            .finish()
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for OwnedPermit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::thread;
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::{Wake, Waker};

    #[derive(Default)]
    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// A send racing the receiver's poll: the message arrives, by a wake
    /// or at once.
    #[test]
    fn loom_send_racing_recv() {
        crate::loom::model(|| {
            let (tx, mut rx) = channel::<u32>(1);
            let wakes = Arc::new(CountWakes::default());
            let waker = Waker::from(wakes.clone());
            let sender = thread::spawn(move || tx.try_send(7).unwrap());
            let first = rx.poll_recv(&mut Context::from_waker(&waker));
            sender.join().unwrap();
            match first {
                Poll::Ready(v) => assert_eq!(v, Some(7)),
                Poll::Pending => {
                    assert_eq!(wakes.0.load(SeqCst), 1, "the receiver was not woken");
                    let v = rx.poll_recv(&mut Context::from_waker(&waker));
                    assert_eq!(v, Poll::Ready(Some(7)));
                }
            }
        });
    }

    /// The receiver closing while a sender waits for a slot: the sender
    /// fails with its message back, or got the slot first and its message
    /// is received; nothing is lost either way.
    #[test]
    fn loom_close_racing_a_waiting_sender() {
        crate::loom::model(|| {
            let (tx, mut rx) = channel::<u32>(1);
            tx.try_send(1).unwrap();
            let mut send = Box::pin(tx.send(2));
            let w = Waker::noop();
            assert!(send.as_mut().poll(&mut Context::from_waker(w)).is_pending());
            let receiver = thread::spawn(move || {
                let first = rx.try_recv();
                rx.close();
                (first, rx)
            });
            let r = loop {
                if let Poll::Ready(r) = send.as_mut().poll(&mut Context::from_waker(w)) {
                    break r;
                }
                thread::yield_now();
            };
            drop(send);
            let (first, mut rx) = receiver.join().unwrap();
            assert_eq!(first, Ok(1));
            match r {
                Ok(()) => assert_eq!(rx.try_recv(), Ok(2)),
                Err(SendError(v)) => assert_eq!(v, 2),
            }
            assert!(rx.try_recv().is_err());
        });
    }
}
