//! The unbounded channel: a send never waits.

use super::chan::{self, Chan, Rx, Tx};
use super::error::{SendError, TryRecvError};
use std::fmt;
use std::task::{Context, Poll};

/// Sends to an unbounded channel; clone it for more senders.
pub struct UnboundedSender<T> {
    chan: Tx<T>,
}

/// Receives from an unbounded channel.
pub struct UnboundedReceiver<T> {
    chan: Rx<T>,
}

/// A channel whose buffer grows as needed: [`send`](UnboundedSender::send)
/// never waits (so nothing holds a fast producer back: prefer
/// [`channel`](super::channel) where memory matters).
///
/// # Examples
///
/// ```
/// use fiber_runtime::sync::mpsc;
///
/// let (tx, mut rx) = mpsc::unbounded_channel();
/// for i in 0..1000 {
///     tx.send(i).unwrap();
/// }
/// drop(tx);
/// let mut n = 0;
/// while rx.blocking_recv().is_some() {
///     n += 1;
/// }
/// assert_eq!(n, 1000);
/// ```
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let (tx, rx) = chan::pair(Chan::unbounded());
    (UnboundedSender { chan: tx }, UnboundedReceiver { chan: rx })
}

impl<T> UnboundedSender<T> {
    /// Sends `value`, without waiting.
    ///
    /// # Errors
    ///
    /// Returns the value in a [`SendError`] if the receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::mpsc::unbounded_channel();
    /// tx.send(1).unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send(2).unwrap_err().0, 2);
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan.push(value).map_err(SendError)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Waits until the receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, rx) = fiber_runtime::sync::mpsc::unbounded_channel::<()>();
    ///     drop(rx);
    ///     tx.closed().await;
    /// });
    /// ```
    pub async fn closed(&self) {
        self.chan.closed().await
    }

    /// Whether both senders feed the same channel.
    pub fn same_channel(&self, other: &UnboundedSender<T>) -> bool {
        self.chan.same_channel(&other.chan)
    }
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> UnboundedSender<T> {
        UnboundedSender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> UnboundedReceiver<T> {
    /// Waits for the next message; `None` once every sender is gone (or
    /// the receiver closed) and the buffer is drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken only when the future returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::mpsc::unbounded_channel();
    ///     fiber_runtime::spawn(async move { tx.send("x").unwrap() });
    ///     assert_eq!(rx.recv().await, Some("x"));
    ///     assert_eq!(rx.recv().await, None);
    /// });
    /// ```
    pub async fn recv(&mut self) -> Option<T> {
        self.chan.recv().await
    }

    /// Receives in blocking style: suspends a fiber, blocks a plain
    /// thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`recv`](UnboundedReceiver::recv) there.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = fiber_runtime::sync::mpsc::unbounded_channel();
    /// std::thread::spawn(move || tx.send(1).unwrap());
    /// assert_eq!(rx.blocking_recv(), Some(1));
    /// ```
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Option<T> {
        crate::wait::wait(
            self.recv(),
            "mpsc::UnboundedReceiver::blocking_recv",
            "`.await` `UnboundedReceiver::recv`",
        )
    }

    /// Takes a message if one is buffered now.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`](super::Receiver::try_recv).
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
    }

    /// Polls for the next message.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.chan.poll_recv(cx)
    }

    /// Closes the channel: sends fail from now on; buffered messages can
    /// still be received.
    pub fn close(&mut self) {
        self.chan.close();
    }

    /// Whether the channel is closed.
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

impl<T> futures_core::Stream for UnboundedReceiver<T> {
    type Item = T;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedSender")
            .field("chan", &self.chan)
            .finish()
    }
}

impl<T> fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedReceiver")
            .field("chan", &self.chan)
            .finish()
    }
}
