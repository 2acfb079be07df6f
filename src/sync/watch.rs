//! A channel holding one value, the latest: one sender, many receivers
//! that wait for it to change.
//!
//! # Examples
//!
//! A fiber watches a configuration a task updates:
//!
//! ```
//! use fiber_runtime::sync::watch;
//!
//! fiber_runtime::block_on(async {
//!     let (tx, mut rx) = watch::channel("v1");
//!     let fiber = fiber_runtime::fiber::spawn(move || {
//!         rx.blocking_changed().unwrap();
//!         *rx.borrow_and_update()
//!     });
//!     tx.send("v2").unwrap();
//!     assert_eq!(fiber.await.unwrap(), "v2");
//! });
//! ```
//!
//! # Holding a borrow
//!
//! [`Receiver::borrow`] and [`Sender::borrow`] hold a read lock on the
//! value until the [`Ref`] is dropped, and `send` takes the write lock:
//! keep a `Ref` only for a short look, never across a suspension
//! (`.await`, or a `blocking_*` call in a fiber), or a sender on the same
//! worker blocks it.

use super::Notify;
use crate::loom::{AtomicUsize, Ordering::*, RwLock, RwLockReadGuard};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The errors of this channel.
pub mod error {
    use std::fmt;

    /// No receiver is left: the value comes back.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct SendError<T>(pub T);

    /// The sender is gone (and no unseen value is left).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RecvError(pub(super) ());

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
            f.write_str("channel closed")
        }
    }

    impl std::error::Error for RecvError {}
}

use error::{RecvError, SendError};

/// `version`'s low bit: the sender is gone; each new value adds `STEP`.
const CLOSED: usize = 1;
const STEP: usize = 2;

struct Shared<T> {
    value: RwLock<T>,
    version: AtomicUsize,
    rx_count: AtomicUsize,
    /// Receivers waiting for a change.
    changed: Notify,
    /// The sender waiting for the last receiver to go.
    rx_gone: Notify,
}

/// Publishes new values.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// Sees the latest value and waits for changes; clone it for more
/// receivers.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version last seen.
    seen: usize,
}

/// A borrow of the value (see the module doc before holding one).
pub struct Ref<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    changed: bool,
}

/// A channel holding `init`; receivers start having seen it.
///
/// # Examples
///
/// ```
/// let (tx, rx) = fiber_runtime::sync::watch::channel(1);
/// tx.send(2).unwrap();
/// assert_eq!(*rx.borrow(), 2);
/// ```
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: RwLock::new(init),
        version: AtomicUsize::new(0),
        rx_count: AtomicUsize::new(1),
        changed: Notify::new(),
        rx_gone: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, seen: 0 },
    )
}

impl<T> Shared<T> {
    /// Changes the value with `f` under the write lock; if it reports a
    /// change, publishes a new version and wakes the receivers.
    fn modify(&self, f: impl FnOnce(&mut T) -> bool) -> bool {
        let mut guard = self.value.write();
        let changed = f(&mut guard);
        if changed {
            self.version.fetch_add(STEP, Release);
        }
        drop(guard);
        if changed {
            self.changed.notify_waiters();
        }
        changed
    }
}

impl<T> Sender<T> {
    /// Replaces the value and wakes the receivers.
    ///
    /// # Errors
    ///
    /// Returns the value in a [`SendError`] if no receiver is left (the
    /// stored value is left as it was).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::watch::channel(0);
    /// tx.send(1).unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send(2).unwrap_err().0, 2);
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.receiver_count() == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Replaces the value whether or not receivers are left; returns the
    /// old one.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _) = fiber_runtime::sync::watch::channel(1);
    /// assert_eq!(tx.send_replace(2), 1);
    /// assert_eq!(*tx.borrow(), 2);
    /// ```
    pub fn send_replace(&self, value: T) -> T {
        let mut old = Some(value);
        self.shared.modify(|v| {
            old = Some(std::mem::replace(v, old.take().expect("set above")));
            true
        });
        old.expect("replaced")
    }

    /// Changes the value in place and wakes the receivers.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = fiber_runtime::sync::watch::channel(vec![1]);
    /// tx.send_modify(|v| v.push(2));
    /// assert_eq!(*rx.borrow(), [1, 2]);
    /// ```
    pub fn send_modify(&self, f: impl FnOnce(&mut T)) {
        self.shared.modify(|v| {
            f(v);
            true
        });
    }

    /// Changes the value in place; wakes the receivers only if `f`
    /// returns `true`. Returns what `f` returned.
    pub fn send_if_modified(&self, f: impl FnOnce(&mut T) -> bool) -> bool {
        self.shared.modify(f)
    }

    /// Borrows the current value (see the module doc).
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: self.shared.value.read(),
            changed: false,
        }
    }

    /// A new receiver, having seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.rx_count.fetch_add(1, Relaxed);
        Receiver {
            shared: self.shared.clone(),
            seen: self.shared.version.load(Acquire) & !CLOSED,
        }
    }

    /// Receivers alive now.
    pub fn receiver_count(&self) -> usize {
        self.shared.rx_count.load(Acquire)
    }

    /// Whether no receiver is left.
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }

    /// Waits until no receiver is left.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, rx) = fiber_runtime::sync::watch::channel(());
    ///     fiber_runtime::spawn(async move { drop(rx) });
    ///     tx.closed().await;
    /// });
    /// ```
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.rx_gone.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.version.fetch_or(CLOSED, Release);
        self.shared.changed.notify_waiters();
    }
}

impl<T> Receiver<T> {
    /// Borrows the latest value, without marking it seen (see the module
    /// doc before holding the `Ref`).
    pub fn borrow(&self) -> Ref<'_, T> {
        let version = self.shared.version.load(Acquire) & !CLOSED;
        Ref {
            guard: self.shared.value.read(),
            changed: version != self.seen,
        }
    }

    /// Borrows the latest value and marks it seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let guard = self.shared.value.read();
        // Under the read lock the version does not move.
        let version = self.shared.version.load(Acquire) & !CLOSED;
        let changed = version != self.seen;
        self.seen = version;
        Ref { guard, changed }
    }

    /// Whether a value not yet seen is there.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the sender is gone.
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let version = self.shared.version.load(Acquire);
        if version & CLOSED != 0 {
            return Err(RecvError(()));
        }
        Ok(version != self.seen)
    }

    /// Waits for a value not yet seen, and marks it seen.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the sender is gone and no unseen value is left.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the change is marked seen only when the future
    /// returns.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::watch::channel(0);
    ///     fiber_runtime::spawn(async move { tx.send(1).unwrap() });
    ///     rx.changed().await.unwrap();
    ///     assert_eq!(*rx.borrow(), 1);
    ///     assert!(rx.changed().await.is_err(), "the sender is gone");
    /// });
    /// ```
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Made before the check, so a send after it is seen.
            let notified = self.shared.changed.notified();
            let version = self.shared.version.load(Acquire);
            if version & !CLOSED != self.seen {
                self.seen = version & !CLOSED;
                return Ok(());
            }
            if version & CLOSED != 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    /// Waits for a change in blocking style: suspends a fiber, blocks a
    /// plain thread.
    ///
    /// # Errors
    ///
    /// As [`changed`](Receiver::changed).
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`changed`](Receiver::changed) there.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = fiber_runtime::sync::watch::channel(0);
    /// std::thread::spawn(move || tx.send(1).unwrap());
    /// rx.blocking_changed().unwrap();
    /// assert_eq!(*rx.borrow(), 1);
    /// ```
    #[track_caller]
    pub fn blocking_changed(&mut self) -> Result<(), RecvError> {
        crate::wait::wait(
            self.changed(),
            "watch::Receiver::blocking_changed",
            "`.await` `Receiver::changed`",
        )
    }

    /// Waits until the value satisfies `f` (checking the current one
    /// first), and returns a borrow of it, marked seen.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the sender goes before the value satisfies `f`.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (tx, mut rx) = fiber_runtime::sync::watch::channel(0);
    ///     fiber_runtime::spawn(async move {
    ///         for i in 1..=3 {
    ///             tx.send(i).unwrap();
    ///         }
    ///         tx.closed().await;
    ///     });
    ///     assert_eq!(*rx.wait_for(|v| *v == 3).await.unwrap(), 3);
    /// });
    /// ```
    pub async fn wait_for(
        &mut self,
        mut f: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            {
                let v = self.borrow_and_update();
                if f(&v) {
                    break;
                }
            }
            self.changed().await?;
        }
        Ok(self.borrow_and_update())
    }

    /// Whether both receivers watch the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.shared.rx_count.fetch_add(1, Relaxed);
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.rx_count.fetch_sub(1, AcqRel) == 1 {
            self.shared.rx_gone.notify_waiters();
        }
    }
}

impl<T> Ref<'_, T> {
    /// Whether this value had not been seen by the receiver when
    /// borrowed.
    pub fn has_changed(&self) -> bool {
        self.changed
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("value", &*self.borrow())
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("value", &*self.borrow())
            .finish()
    }
}
