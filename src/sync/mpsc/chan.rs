//! The core both channel kinds share: a buffer under a lock, the
//! receiver's waker, and for bounded channels a semaphore of free slots.
//!
//! A sender of a bounded channel takes one permit (a free slot) before it
//! pushes; the receiver gives it back when it pops, so the buffer never
//! holds more than the capacity, and blocked senders are served in FIFO
//! order by the semaphore. Closing (the receiver's `close` or drop)
//! closes the semaphore too, which fails every waiting sender.
//!
//! The buffer lock is held only to push or pop one message and to swap
//! the receiver's waker: no user code runs under it, and wakes happen
//! after it is dropped.

use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering::*};
use crate::sync::Notify;
use crate::sync::batch_semaphore::Semaphore;
use std::collections::VecDeque;
use std::fmt;
use std::task::{Context, Poll, Waker};

pub(super) struct Chan<T> {
    queue: Mutex<Queue<T>>,
    /// Free slots of a bounded channel; `None` if unbounded.
    pub(super) slots: Option<Semaphore>,
    /// The capacity of a bounded channel.
    pub(super) capacity: usize,
    /// Live senders.
    tx_count: AtomicUsize,
    /// The receiver closed (or dropped) the channel.
    rx_closed: AtomicBool,
    /// Woken when the receiver closes, for `Sender::closed`.
    closed: Notify,
}

struct Queue<T> {
    items: VecDeque<T>,
    rx_waker: Option<Waker>,
    /// Every sender is gone.
    tx_gone: bool,
    rx_closed: bool,
}

impl<T> Chan<T> {
    pub(super) fn new(slots: Option<Semaphore>, capacity: usize) -> Chan<T> {
        Chan {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                rx_waker: None,
                tx_gone: false,
                rx_closed: false,
            }),
            slots,
            capacity,
            tx_count: AtomicUsize::new(1),
            rx_closed: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    /// Pushes `v` (a bounded sender holds a slot for it); gives it back
    /// if the receiver is gone.
    pub(super) fn push(&self, v: T) -> Result<(), T> {
        let mut q = self.queue.lock();
        if q.rx_closed {
            return Err(v);
        }
        q.items.push_back(v);
        let waker = q.rx_waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Gives back the slot of a message that was not pushed.
    pub(super) fn release_slot(&self) {
        if let Some(s) = &self.slots {
            s.release(1);
        }
    }

    pub(super) fn add_sender(&self) {
        self.tx_count.fetch_add(1, Relaxed);
    }

    /// A sender goes; the last one ends the stream for the receiver.
    pub(super) fn drop_sender(&self) {
        if self.tx_count.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        let mut q = self.queue.lock();
        q.tx_gone = true;
        let waker = q.rx_waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.rx_closed.load(Acquire)
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
    pub(super) fn close(&self) {
        let mut q = self.queue.lock();
        if q.rx_closed {
            return;
        }
        q.rx_closed = true;
        self.rx_closed.store(true, Release);
        drop(q);
        if let Some(s) = &self.slots {
            s.close();
        }
        self.closed.notify_waiters();
    }

    /// The receiver is dropped: close, and drop what is buffered now.
    pub(super) fn drop_receiver(&self) {
        self.close();
        let items = std::mem::take(&mut self.queue.lock().items);
        drop(items);
    }

    /// Pops one message, or registers the receiver's waker.
    pub(super) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        std::task::ready!(crate::task::coop::poll_proceed(cx));
        let mut q = self.queue.lock();
        if let Some(v) = q.items.pop_front() {
            drop(q);
            self.release_slot();
            return Poll::Ready(Some(v));
        }
        if q.tx_gone || q.rx_closed {
            return Poll::Ready(None);
        }
        match &q.rx_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.rx_waker = Some(cx.waker().clone()),
        }
        drop(q);
        crate::task::coop::refund();
        Poll::Pending
    }

    /// Pops one message if there is one now.
    pub(super) fn try_recv(&self) -> Result<T, super::error::TryRecvError> {
        let mut q = self.queue.lock();
        if let Some(v) = q.items.pop_front() {
            drop(q);
            self.release_slot();
            return Ok(v);
        }
        if q.tx_gone || q.rx_closed {
            Err(super::error::TryRecvError::Disconnected)
        } else {
            Err(super::error::TryRecvError::Empty)
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    pub(super) fn sender_count(&self) -> usize {
        self.tx_count.load(Relaxed)
    }
}

impl<T> fmt::Debug for Chan<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chan")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}
