//! [`Semaphore`]: a counting semaphore, fair, for tasks, fibers and threads.

use super::batch_semaphore as ll;
use std::fmt;
use std::sync::Arc;

/// A counting semaphore: a pool of permits that tasks, fibers and plain
/// threads take and give back.
///
/// Waiters are served in FIFO order: a waiter for many permits is not
/// overtaken by later waiters for few, and a newcomer never takes a permit
/// a waiter is queued for. Waiting allocates nothing (the waiter lives in
/// the pending future, or on the waiting fiber's stack).
///
/// Each waiting method comes in two forms (module doc of [`sync`](super)):
/// [`acquire`](Semaphore::acquire) to `.await`, and
/// [`blocking_acquire`](Semaphore::blocking_acquire), which suspends a
/// fiber or blocks a plain thread.
///
/// # Examples
///
/// At most two of the ten tasks run their critical part at once:
///
/// ```
/// use fiber_runtime::sync::Semaphore;
/// use std::sync::Arc;
///
/// fiber_runtime::block_on(async {
///     let sem = Arc::new(Semaphore::new(2));
///     let tasks: Vec<_> = (0..10)
///         .map(|_| {
///             let sem = sem.clone();
///             fiber_runtime::spawn(async move {
///                 let _permit = sem.acquire().await.unwrap();
///                 // ... at most two here at once ...
///             })
///         })
///         .collect();
///     for t in tasks {
///         t.await.unwrap();
///     }
///     assert_eq!(sem.available_permits(), 2);
/// });
/// ```
pub struct Semaphore {
    ll: ll::Semaphore,
}

/// A permit from a [`Semaphore`]; gives it back when dropped.
#[must_use = "the permit is given back at once if dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: u32,
}

/// A permit from an `Arc<Semaphore>`, for moving into a task or fiber;
/// gives it back when dropped.
#[must_use = "the permit is given back at once if dropped"]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    permits: u32,
}

/// The semaphore was closed: the error of [`Semaphore::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireError(());

/// Why [`Semaphore::try_acquire`] got no permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryAcquireError {
    /// The semaphore was closed.
    Closed,
    /// Not enough permits are available now.
    NoPermits,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore closed")
    }
}

impl std::error::Error for AcquireError {}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::Closed => f.write_str("semaphore closed"),
            TryAcquireError::NoPermits => f.write_str("no permits available"),
        }
    }
}

impl std::error::Error for TryAcquireError {}

impl From<ll::TryAcquireError> for TryAcquireError {
    fn from(e: ll::TryAcquireError) -> TryAcquireError {
        match e {
            ll::TryAcquireError::Closed => TryAcquireError::Closed,
            ll::TryAcquireError::NoPermits => TryAcquireError::NoPermits,
        }
    }
}

impl Semaphore {
    /// The most permits a semaphore holds.
    pub const MAX_PERMITS: usize = ll::MAX_PERMITS;

    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    ///
    /// Panics if `permits` exceeds [`Semaphore::MAX_PERMITS`].
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(3);
    /// assert_eq!(sem.available_permits(), 3);
    /// ```
    #[track_caller]
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            ll: ll::Semaphore::new(permits),
        }
    }

    /// The permits nobody holds or waits for now.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(3);
    /// let _p = sem.try_acquire_many(2).unwrap();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn available_permits(&self) -> usize {
        self.ll.available_permits()
    }

    /// Adds `n` permits: to the waiters first, in order.
    ///
    /// # Panics
    ///
    /// Panics if the total would exceed [`Semaphore::MAX_PERMITS`].
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(0);
    /// sem.add_permits(2);
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    #[track_caller]
    pub fn add_permits(&self, n: usize) {
        self.ll.release(n);
    }

    /// Removes up to `n` of the available permits; returns how many it
    /// removed.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(3);
    /// assert_eq!(sem.forget_permits(5), 3);
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget_permits(&self, n: usize) -> usize {
        self.ll.forget(n)
    }

    /// Closes the semaphore: every waiter and every later acquisition
    /// fails with [`AcquireError`]; permits already held stay valid.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::{Semaphore, TryAcquireError};
    ///
    /// let sem = Semaphore::new(1);
    /// sem.close();
    /// assert!(sem.is_closed());
    /// assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
    /// ```
    pub fn close(&self) {
        self.ll.close();
    }

    /// Whether [`close`](Semaphore::close) was called.
    pub fn is_closed(&self) -> bool {
        self.ll.is_closed()
    }

    /// Waits for one permit.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes loses nothing: it leaves
    /// the queue, and a permit it had been handed goes to the next
    /// waiter.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if the semaphore is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let sem = fiber_runtime::sync::Semaphore::new(1);
    ///     let permit = sem.acquire().await.unwrap();
    ///     assert_eq!(sem.available_permits(), 0);
    ///     drop(permit);
    ///     assert_eq!(sem.available_permits(), 1);
    /// });
    /// ```
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_many(1).await
    }

    /// Waits for `n` permits, taken at once.
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Semaphore::acquire): the permits handed to the
    /// dropped waiter so far go to the next one.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if the semaphore is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let sem = fiber_runtime::sync::Semaphore::new(5);
    ///     let permit = sem.acquire_many(3).await.unwrap();
    ///     assert_eq!(permit.num_permits(), 3);
    /// });
    /// ```
    pub async fn acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, AcquireError> {
        match self.ll.acquire(n as usize).await {
            Ok(()) => Ok(SemaphorePermit {
                sem: self,
                permits: n,
            }),
            Err(ll::AcquireError) => Err(AcquireError(())),
        }
    }

    /// Waits for one permit in blocking style: suspends a fiber, blocks a
    /// plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread: `.await`
    /// [`acquire`](Semaphore::acquire) there.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if the semaphore is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::Semaphore;
    /// use std::sync::Arc;
    ///
    /// fiber_runtime::block_on(async {
    ///     let sem = Arc::new(Semaphore::new(0));
    ///     let s = sem.clone();
    ///     let fiber = fiber_runtime::fiber::spawn(move || {
    ///         s.blocking_acquire().unwrap().forget();
    ///     });
    ///     sem.add_permits(1);
    ///     fiber.await.unwrap();
    ///     assert_eq!(sem.available_permits(), 0);
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.blocking_acquire_many(1)
    }

    /// Waits for `n` permits in blocking style, as
    /// [`blocking_acquire`](Semaphore::blocking_acquire).
    ///
    /// # Panics
    ///
    /// As [`blocking_acquire`](Semaphore::blocking_acquire).
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if the semaphore is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(4);
    /// assert_eq!(sem.blocking_acquire_many(4).unwrap().num_permits(), 4);
    /// ```
    #[track_caller]
    pub fn blocking_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, AcquireError> {
        crate::wait::wait(
            self.acquire_many(n),
            "Semaphore::blocking_acquire",
            "`.await` `Semaphore::acquire`",
        )
    }

    /// Takes one permit if one is available now, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::NoPermits`] if none is (or waiters are queued
    /// for them), [`TryAcquireError::Closed`] if the semaphore is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::{Semaphore, TryAcquireError};
    ///
    /// let sem = Semaphore::new(1);
    /// let p = sem.try_acquire().unwrap();
    /// assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    /// drop(p);
    /// assert!(sem.try_acquire().is_ok());
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are available now, without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Semaphore::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(2);
    /// assert!(sem.try_acquire_many(3).is_err());
    /// assert!(sem.try_acquire_many(2).is_ok());
    /// ```
    pub fn try_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.ll.try_acquire(n as usize)?;
        Ok(SemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// As [`acquire`](Semaphore::acquire), for a semaphore in an `Arc`:
    /// the permit owns a reference, so it can move into a task or fiber.
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Semaphore::acquire).
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if the semaphore is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::sync::Semaphore;
    /// use std::sync::Arc;
    ///
    /// fiber_runtime::block_on(async {
    ///     let sem = Arc::new(Semaphore::new(1));
    ///     let permit = sem.clone().acquire_owned().await.unwrap();
    ///     fiber_runtime::spawn(async move { drop(permit) }).await.unwrap();
    ///     assert_eq!(sem.available_permits(), 1);
    /// });
    /// ```
    pub async fn acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.acquire_many_owned(1).await
    }

    /// As [`acquire_many`](Semaphore::acquire_many), owning a reference
    /// to the semaphore.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if the semaphore is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// fiber_runtime::block_on(async {
    ///     let sem = Arc::new(fiber_runtime::sync::Semaphore::new(2));
    ///     let p = sem.clone().acquire_many_owned(2).await.unwrap();
    ///     assert_eq!(p.num_permits(), 2);
    /// });
    /// ```
    pub async fn acquire_many_owned(
        self: Arc<Self>,
        n: u32,
    ) -> Result<OwnedSemaphorePermit, AcquireError> {
        match self.ll.acquire(n as usize).await {
            Ok(()) => Ok(OwnedSemaphorePermit {
                sem: self,
                permits: n,
            }),
            Err(ll::AcquireError) => Err(AcquireError(())),
        }
    }

    /// As [`try_acquire`](Semaphore::try_acquire), owning a reference to
    /// the semaphore.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Semaphore::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(fiber_runtime::sync::Semaphore::new(1));
    /// let p = sem.clone().try_acquire_owned().unwrap();
    /// assert!(sem.clone().try_acquire_owned().is_err());
    /// drop(p);
    /// ```
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.ll.try_acquire(1)?;
        Ok(OwnedSemaphorePermit {
            sem: self,
            permits: 1,
        })
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the permits out of the semaphore: dropping the permit no
    /// longer gives them back.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = fiber_runtime::sync::Semaphore::new(1);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits as usize
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.ll.release(self.permits as usize);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.permits)
            .finish()
    }
}

impl OwnedSemaphorePermit {
    /// As [`SemaphorePermit::forget`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(fiber_runtime::sync::Semaphore::new(1));
    /// sem.clone().try_acquire_owned().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits as usize
    }

    /// The semaphore this permit is from.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        self.sem.ll.release(self.permits as usize);
    }
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .field("permits", &self.permits)
            .finish()
    }
}
