//! [`RwLock`]: a fair reader-writer lock for tasks, fibers and threads.

use super::batch_semaphore as ll;
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// The most readers at once: a writer takes all of these permits.
const MAX_READS: usize = (u32::MAX >> 3) as usize;

/// A reader-writer lock: many readers or one writer, for tasks
/// (`.await`), fibers (suspend) and plain threads (block).
///
/// Fair: requests are served in the order they came. A writer waiting
/// for the current readers holds back every reader that comes after it,
/// so writers are never starved; readers queued together behind a writer
/// all get in when it leaves. Waiting allocates nothing.
///
/// # Examples
///
/// ```
/// use fiber_runtime::sync::RwLock;
///
/// fiber_runtime::block_on(async {
///     let lock = RwLock::new(5);
///     {
///         let r1 = lock.read().await;
///         let r2 = lock.read().await;
///         assert_eq!(*r1 + *r2, 10);
///     }
///     *lock.write().await += 1;
///     assert_eq!(*lock.read().await, 6);
/// });
/// ```
pub struct RwLock<T: ?Sized> {
    sem: ll::Semaphore,
    value: UnsafeCell<T>,
}

// SAFETY: readers share `&T` across threads (`T: Sync`), a writer gets
// `&mut T` on whichever thread holds the guard (`T: Send`), as for
// `std::sync::RwLock`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to the value of an [`RwLock`]; gives it up when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

/// Exclusive access to the value of an [`RwLock`]; gives it up when
/// dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

use super::mutex::TryLockError;

impl<T> RwLock<T> {
    /// A new, unlocked lock holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = fiber_runtime::sync::RwLock::new(1);
    /// assert_eq!(*lock.try_read().unwrap(), 1);
    /// ```
    pub fn new(value: T) -> RwLock<T> {
        RwLock {
            sem: ll::Semaphore::new(MAX_READS),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, taking the lock apart.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fiber_runtime::sync::RwLock::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Waits for shared access.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up its place in the queue; nothing is
    /// lost, and a writer behind it is not held up.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let lock = fiber_runtime::sync::RwLock::new("x");
    ///     assert_eq!(*lock.read().await, "x");
    /// });
    /// ```
    pub async fn read(&self) -> RwLockReadGuard<'_, T> {
        self.sem
            .acquire(1)
            .await
            .unwrap_or_else(|e| ll::never_closed(e));
        RwLockReadGuard { lock: self }
    }

    /// Waits for exclusive access.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up its place in the queue; the read
    /// permits it had gathered go to the next waiters.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let lock = fiber_runtime::sync::RwLock::new(1);
    ///     *lock.write().await = 2;
    ///     assert_eq!(*lock.read().await, 2);
    /// });
    /// ```
    pub async fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.sem
            .acquire(MAX_READS)
            .await
            .unwrap_or_else(|e| ll::never_closed(e));
        RwLockWriteGuard { lock: self }
    }

    /// Waits for shared access in blocking style: suspends a fiber,
    /// blocks a plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`read`](RwLock::read) there.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = fiber_runtime::sync::RwLock::new(1);
    /// assert_eq!(*lock.blocking_read(), 1);
    /// ```
    #[track_caller]
    pub fn blocking_read(&self) -> RwLockReadGuard<'_, T> {
        crate::wait::wait(
            self.read(),
            "RwLock::blocking_read",
            "`.await` `RwLock::read`",
        )
    }

    /// Waits for exclusive access in blocking style: suspends a fiber,
    /// blocks a plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`write`](RwLock::write) there.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let lock = std::sync::Arc::new(fiber_runtime::sync::RwLock::new(0));
    ///     let l = lock.clone();
    ///     fiber_runtime::fiber::spawn(move || *l.blocking_write() += 1).await.unwrap();
    ///     assert_eq!(*lock.read().await, 1);
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_write(&self) -> RwLockWriteGuard<'_, T> {
        crate::wait::wait(
            self.write(),
            "RwLock::blocking_write",
            "`.await` `RwLock::write`",
        )
    }

    /// Takes shared access if it is free now (no writer holds or waits).
    ///
    /// # Errors
    ///
    /// [`TryLockError`] if a writer holds the lock or is queued for it.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = fiber_runtime::sync::RwLock::new(1);
    /// let r = lock.try_read().unwrap();
    /// assert!(lock.try_write().is_err());
    /// assert!(lock.try_read().is_ok());
    /// drop(r);
    /// ```
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        match self.sem.try_acquire(1) {
            Ok(()) => Ok(RwLockReadGuard { lock: self }),
            Err(_) => Err(TryLockError::new()),
        }
    }

    /// Takes exclusive access if nobody holds or waits for the lock.
    ///
    /// # Errors
    ///
    /// [`TryLockError`] if the lock is held or waited for.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = fiber_runtime::sync::RwLock::new(1);
    /// let w = lock.try_write().unwrap();
    /// assert!(lock.try_read().is_err());
    /// drop(w);
    /// ```
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        match self.sem.try_acquire(MAX_READS) {
            Ok(()) => Ok(RwLockWriteGuard { lock: self }),
            Err(_) => Err(TryLockError::new()),
        }
    }

    /// The value, through `&mut` (no locking: the borrow proves
    /// exclusivity).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut lock = fiber_runtime::sync::RwLock::new(1);
    /// *lock.get_mut() += 1;
    /// assert_eq!(lock.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(g) => d.field("data", &&*g),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// Turns the write access into read access without letting a writer
    /// in between; readers queued behind get in at once.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let lock = fiber_runtime::sync::RwLock::new(1);
    ///     let mut w = lock.write().await;
    ///     *w = 2;
    ///     let r = w.downgrade();
    ///     assert_eq!(*r, 2);
    ///     assert!(lock.try_read().is_ok());
    /// });
    /// ```
    pub fn downgrade(self) -> RwLockReadGuard<'a, T> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.sem.release(MAX_READS - 1);
        RwLockReadGuard { lock }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard holds one permit, so no write guard (which
        // needs all of them) exists: only shared borrows of the value.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard holds every permit: no other guard exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` lends it exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.sem.release(MAX_READS);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
