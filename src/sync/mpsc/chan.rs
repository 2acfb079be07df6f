//! The core both channel kinds share: the buffer, the receiver's waker,
//! the open/closed state, and for bounded channels a semaphore of free
//! slots.
//!
//! A sender of a bounded channel takes one permit (a free slot) before it
//! pushes into the lock-free [`Ring`]; the receiver gives the permit back
//! when it pops, so the buffer never holds more than the capacity, and
//! blocked senders are served in FIFO order by the semaphore. An
//! unbounded channel's buffer is a `VecDeque` under a lock held only to
//! push or pop one message. Closing (the receiver's `close` or drop)
//! closes the semaphore too, which fails every waiting sender.
//!
//! Both kinds' public types wrap the two handles made here: [`Tx`] (a
//! counted sender) and [`Rx`] (the one receiver, which alone pops).
//!
//! # No lost wake-up
//!
//! A sender pushes, then wakes the receiver's [`AtomicWaker`]. The
//! receiver, finding the buffer empty, registers its waker and then looks
//! again before it reports `Pending`: a push it missed the first time is
//! either seen by the second look or followed by a wake of the waker it
//! registered. The last sender marks `TX_GONE` after its last push, so a
//! receiver that sees the mark and then an empty buffer has everything.

use super::error::TryRecvError;
use super::ring::Ring;
use crate::loom::{AtomicUsize, Mutex, Ordering::*};
use crate::sync::Notify;
use crate::sync::batch_semaphore::Semaphore;
use crate::util::AtomicWaker;
use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};

/// `state`: every sender is gone.
const TX_GONE: usize = 1;
/// `state`: the receiver closed (or dropped) the channel.
const RX_CLOSED: usize = 2;

// One per channel, inside its `Arc`: the bounded ring is large on purpose
// (its two ends on cache lines of their own).
#[allow(clippy::large_enum_variant)]
enum Buffer<T> {
    Bounded(Ring<T>),
    Unbounded(Mutex<VecDeque<T>>),
}

pub(super) struct Chan<T> {
    buffer: Buffer<T>,
    rx_waker: AtomicWaker,
    /// Free slots of a bounded channel; `None` if unbounded.
    pub(super) slots: Option<Semaphore>,
    /// The capacity of a bounded channel.
    pub(super) capacity: usize,
    /// Live senders.
    tx_count: AtomicUsize,
    state: AtomicUsize,
    /// Woken when the receiver closes, for `Sender::closed`.
    closed: Notify,
}

impl<T> Chan<T> {
    pub(super) fn bounded(capacity: usize) -> Chan<T> {
        Chan::new(
            Buffer::Bounded(Ring::new(capacity)),
            Some(Semaphore::new(capacity)),
            capacity,
        )
    }

    pub(super) fn unbounded() -> Chan<T> {
        Chan::new(
            Buffer::Unbounded(Mutex::new(VecDeque::new())),
            None,
            usize::MAX,
        )
    }

    fn new(buffer: Buffer<T>, slots: Option<Semaphore>, capacity: usize) -> Chan<T> {
        Chan {
            buffer,
            rx_waker: AtomicWaker::new(),
            slots,
            capacity,
            tx_count: AtomicUsize::new(1),
            state: AtomicUsize::new(0),
            closed: Notify::new(),
        }
    }

    /// Pushes `v` (a bounded sender holds a slot for it); gives it back
    /// if the receiver is gone.
    pub(super) fn push(&self, v: T) -> Result<(), T> {
        if self.state.load(Acquire) & RX_CLOSED != 0 {
            return Err(v);
        }
        match &self.buffer {
            Buffer::Bounded(ring) => ring.push(v),
            Buffer::Unbounded(list) => list.lock().push_back(v),
        }
        self.rx_waker.wake();
        Ok(())
    }

    /// Gives back the slot of a message that was received or not pushed.
    pub(super) fn release_slot(&self) {
        if let Some(s) = &self.slots {
            s.release(1);
        }
    }

    fn add_sender(&self) {
        self.tx_count.fetch_add(1, Relaxed);
    }

    /// A sender goes; the last one ends the stream for the receiver.
    fn drop_sender(&self) {
        if self.tx_count.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        self.state.fetch_or(TX_GONE, Release);
        self.rx_waker.wake();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.state.load(Acquire) & RX_CLOSED != 0
    }

    /// Waits until the receiver is gone.
    pub(super) async fn closed(&self) {
        loop {
            // Made before the check, so a close after it is seen.
            let notified = self.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// The receiver stops the channel: sends fail from now on, buffered
    /// messages stay receivable.
    fn close(&self) {
        if self.state.fetch_or(RX_CLOSED, AcqRel) & RX_CLOSED != 0 {
            return;
        }
        if let Some(s) = &self.slots {
            s.close();
        }
        self.closed.notify_waiters();
    }

    pub(super) fn sender_count(&self) -> usize {
        self.tx_count.load(Relaxed)
    }
}

/// A channel's two ends, its one sender handle and its one receiver.
pub(super) fn pair<T>(chan: Chan<T>) -> (Tx<T>, Rx<T>) {
    let chan = Arc::new(chan);
    (Tx { chan: chan.clone() }, Rx { chan })
}

/// A sender's handle on the channel: counted while it lives (the last
/// one to go ends the stream); clone it for another sender.
pub(super) struct Tx<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Tx<T> {
    /// Whether both handles feed the same channel.
    pub(super) fn same_channel(&self, other: &Tx<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Deref for Tx<T> {
    type Target = Chan<T>;

    fn deref(&self) -> &Chan<T> {
        &self.chan
    }
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Tx<T> {
        self.chan.add_sender();
        Tx {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> fmt::Debug for Tx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.chan, f)
    }
}

/// The channel's one receiver.
///
/// It is made once per channel ([`pair`]) and is not `Clone`, so it is
/// the only code that pops or reads the read position of the buffer; and
/// every pop takes `&mut self`, so no pop runs beside another pop or a
/// [`len`](Rx::len). That is the contract of [`Ring::pop`] and
/// [`Ring::len`] ("only the receiver, one thread at a time"), upheld here
/// once for both channel kinds.
pub(super) struct Rx<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Rx<T> {
    /// Pops one message.
    fn pop(&mut self) -> Option<T> {
        let v = match &self.chan.buffer {
            // SAFETY: this is the one receiver, and `&mut self` keeps any
            // other pop or `len` from running beside it (type doc).
            Buffer::Bounded(ring) => unsafe { ring.pop() },
            Buffer::Unbounded(list) => list.lock().pop_front(),
        };
        if v.is_some() {
            self.chan.release_slot();
        }
        v
    }

    /// Waits for the next message; `None` once every sender is gone (or
    /// the receiver closed) and the buffer is drained.
    pub(super) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Pops one message, or registers the receiver's waker.
    pub(super) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        std::task::ready!(crate::task_core::coop::poll_proceed(cx));
        if let Some(v) = self.pop() {
            return Poll::Ready(Some(v));
        }
        self.chan.rx_waker.register(cx.waker());
        // Look again after registering (module doc).
        if let Some(v) = self.pop() {
            return Poll::Ready(Some(v));
        }
        if self.chan.state.load(Acquire) != 0 {
            // Closed, or every sender gone: what they pushed before is
            // visible now.
            return Poll::Ready(self.pop());
        }
        crate::task_core::coop::refund();
        Poll::Pending
    }

    /// Pops one message if there is one now.
    pub(super) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if let Some(v) = self.pop() {
            return Ok(v);
        }
        if self.chan.state.load(Acquire) != 0 {
            if let Some(v) = self.pop() {
                return Ok(v);
            }
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// The receiver stops the channel: sends fail from now on, buffered
    /// messages stay receivable.
    pub(super) fn close(&mut self) {
        self.chan.close();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Messages buffered now.
    pub(super) fn len(&self) -> usize {
        match &self.chan.buffer {
            // SAFETY: this is the one receiver, and a pop takes `&mut
            // self`, so none runs beside this read (type doc).
            Buffer::Bounded(ring) => unsafe { ring.len() },
            Buffer::Unbounded(list) => list.lock().len(),
        }
    }

    pub(super) fn sender_count(&self) -> usize {
        self.chan.sender_count()
    }
}

impl<T> Drop for Rx<T> {
    /// The receiver goes: close, and drop what is buffered now.
    fn drop(&mut self) {
        self.chan.close();
        while let Some(v) = self.pop() {
            drop(v);
        }
    }
}

impl<T> fmt::Debug for Rx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.chan, f)
    }
}

impl<T> fmt::Debug for Chan<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chan")
            .field("senders", &self.sender_count())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
