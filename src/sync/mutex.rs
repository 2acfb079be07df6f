//! [`Mutex`]: a fair mutual-exclusion lock for tasks, fibers and threads.

use super::batch_semaphore as ll;
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A mutual-exclusion lock that tasks `.await`, fibers wait on by
/// suspending, and plain threads wait on by blocking.
///
/// Unlike `std::sync::Mutex`, waiting for it never holds a worker
/// thread: a fiber in [`blocking_lock`](Mutex::blocking_lock) is
/// suspended and the worker runs other tasks and fibers, so a guard may
/// be held across `fiber::sleep`, I/O or any other suspension (a fiber
/// never migrates, so the guard stays on its thread). A task holding a
/// [`MutexGuard`] across `.await` needs the guard to be `Send`, as usual
/// for a spawned future: it is when `T: Send`.
///
/// The lock is fair: waiters get it in the order they asked. It does not
/// poison: a panic while the guard is held releases the lock.
///
/// # Examples
///
/// Tasks, fibers and a plain thread share one counter:
///
/// ```
/// use fiber_runtime::sync::Mutex;
/// use std::sync::Arc;
///
/// fiber_runtime::block_on(async {
///     let count = Arc::new(Mutex::new(0));
///     let c = count.clone();
///     let task = fiber_runtime::spawn(async move { *c.lock().await += 1 });
///     let c = count.clone();
///     let fiber = fiber_runtime::fiber::spawn(move || *c.blocking_lock() += 1);
///     let c = count.clone();
///     let thread = std::thread::spawn(move || *c.blocking_lock() += 1);
///     task.await.unwrap();
///     fiber.await.unwrap();
///     thread.join().unwrap();
///     assert_eq!(*count.lock().await, 3);
/// });
/// ```
pub struct Mutex<T: ?Sized> {
    sem: ll::Semaphore,
    value: UnsafeCell<T>,
}

// SAFETY: the semaphore's single permit lets one guard at a time reach
// the value, on whichever thread holds it: `T: Send` suffices (as for
// `std::sync::Mutex`).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Exclusive access to the value of a [`Mutex`]; unlocks when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
}

// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

/// As [`MutexGuard`], holding the `Arc` of its mutex, so it can move into
/// a task or fiber ([`Mutex::lock_owned`]).
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct OwnedMutexGuard<T: ?Sized> {
    lock: Arc<Mutex<T>>,
}

// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for OwnedMutexGuard<T> {}

/// The lock was held: the error of [`Mutex::try_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryLockError(());

impl TryLockError {
    pub(super) fn new() -> TryLockError {
        TryLockError(())
    }
}

impl fmt::Display for TryLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation would block")
    }
}

impl std::error::Error for TryLockError {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = fiber_runtime::sync::Mutex::new(5);
    /// assert_eq!(*m.try_lock().unwrap(), 5);
    /// ```
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            sem: ll::Semaphore::new(1),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, taking the mutex apart.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = fiber_runtime::sync::Mutex::new(String::from("x"));
    /// assert_eq!(m.into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Waits for the lock.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes gives up its place in the
    /// queue; if the lock had just been handed to it, it passes to the
    /// next waiter. Nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let m = fiber_runtime::sync::Mutex::new(1);
    ///     *m.lock().await += 1;
    ///     assert_eq!(*m.lock().await, 2);
    /// });
    /// ```
    pub async fn lock(&self) -> MutexGuard<'_, T> {
        self.sem
            .acquire(1)
            .await
            .unwrap_or_else(|e| ll::never_closed(e));
        MutexGuard { lock: self }
    }

    /// Waits for the lock in blocking style: suspends a fiber (the worker
    /// runs other work meanwhile), blocks a plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread, where blocking would
    /// stall the worker: `.await` [`lock`](Mutex::lock) there.
    ///
    /// # Examples
    ///
    /// A fiber holds the guard across a sleep while another fiber waits
    /// for it, on a one-thread runtime (with a `std::sync::Mutex`, the
    /// second fiber would block the only thread and the sleep would never
    /// end):
    ///
    /// ```
    /// use fiber_runtime::{fiber, sync::Mutex};
    /// use std::{sync::Arc, time::Duration};
    ///
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     let m = Arc::new(Mutex::new(Vec::new()));
    ///     let (a, b) = (m.clone(), m.clone());
    ///     let first = fiber::spawn(move || {
    ///         let mut g = a.blocking_lock();
    ///         fiber::sleep(Duration::from_millis(1));
    ///         g.push(1);
    ///     });
    ///     let second = fiber::spawn(move || b.blocking_lock().push(2));
    ///     first.await.unwrap();
    ///     second.await.unwrap();
    ///     let mut v = m.lock().await.clone();
    ///     v.sort();
    ///     assert_eq!(v, [1, 2]);
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_lock(&self) -> MutexGuard<'_, T> {
        crate::wait::wait(
            self.lock(),
            "Mutex::blocking_lock",
            "`.await` `Mutex::lock`",
        )
    }

    /// Takes the lock if it is free now (and nobody is queued for it).
    ///
    /// # Errors
    ///
    /// [`TryLockError`] if it is held.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = fiber_runtime::sync::Mutex::new(());
    /// let g = m.try_lock().unwrap();
    /// assert!(m.try_lock().is_err());
    /// drop(g);
    /// assert!(m.try_lock().is_ok());
    /// ```
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        match self.sem.try_acquire(1) {
            Ok(()) => Ok(MutexGuard { lock: self }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// As [`lock`](Mutex::lock), for a mutex in an `Arc`: the guard owns
    /// a reference, so it can move into a task or fiber.
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Mutex::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::Mutex;
    /// use std::sync::Arc;
    ///
    /// fiber_runtime::block_on(async {
    ///     let m = Arc::new(Mutex::new(0));
    ///     let mut g = m.clone().lock_owned().await;
    ///     fiber_runtime::spawn(async move { *g += 1 }).await.unwrap();
    ///     assert_eq!(*m.lock().await, 1);
    /// });
    /// ```
    pub async fn lock_owned(self: Arc<Self>) -> OwnedMutexGuard<T> {
        self.sem
            .acquire(1)
            .await
            .unwrap_or_else(|e| ll::never_closed(e));
        OwnedMutexGuard { lock: self }
    }

    /// As [`blocking_lock`](Mutex::blocking_lock), with an owned guard.
    ///
    /// # Panics
    ///
    /// As [`blocking_lock`](Mutex::blocking_lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let m = Arc::new(fiber_runtime::sync::Mutex::new(1));
    /// assert_eq!(*m.clone().blocking_lock_owned(), 1);
    /// ```
    #[track_caller]
    pub fn blocking_lock_owned(self: Arc<Self>) -> OwnedMutexGuard<T> {
        crate::wait::wait(
            self.lock_owned(),
            "Mutex::blocking_lock_owned",
            "`.await` `Mutex::lock_owned`",
        )
    }

    /// As [`try_lock`](Mutex::try_lock), with an owned guard.
    ///
    /// # Errors
    ///
    /// [`TryLockError`] if it is held.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let m = Arc::new(fiber_runtime::sync::Mutex::new(1));
    /// let g = m.clone().try_lock_owned().unwrap();
    /// assert!(m.try_lock().is_err());
    /// drop(g);
    /// ```
    pub fn try_lock_owned(self: Arc<Self>) -> Result<OwnedMutexGuard<T>, TryLockError> {
        match self.sem.try_acquire(1) {
            Ok(()) => Ok(OwnedMutexGuard { lock: self }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// The value, through `&mut` (no locking: the borrow proves
    /// exclusivity).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut m = fiber_runtime::sync::Mutex::new(1);
    /// *m.get_mut() = 2;
    /// assert_eq!(m.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(g) => d.field("data", &&*g),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex's one permit: no other guard
        // exists, and `&self` lends the value shared.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` lends it exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized> OwnedMutexGuard<T> {
    /// The mutex this guard locks.
    pub fn mutex(&self) -> &Arc<Mutex<T>> {
        &self.lock
    }
}

impl<T: ?Sized> Deref for OwnedMutexGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: as for `MutexGuard`: the guard holds the one permit.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedMutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `MutexGuard`.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for OwnedMutexGuard<T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for OwnedMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
