//! `task::Builder`: names a task or fiber before spawning it.

use crate::JoinHandle;
use crate::runtime::TryCurrentError;
use crate::scheduler;
use crate::task_core::SpawnMeta;
use std::future::Future;
use std::io;

/// Configures a task or fiber before spawning it: for now, its name,
/// which `Debug` of its [`JoinHandle`] shows (and a fiber's stack
/// overflow message).
///
/// # Examples
///
/// ```
/// use fiber_runtime::task;
///
/// fiber_runtime::block_on(async {
///     let t = task::Builder::new().name("fetch").spawn(async { 1 }).unwrap();
///     assert!(format!("{t:?}").contains("fetch"));
///     let f = task::Builder::new().name("parse").spawn_fiber(|| 2).unwrap();
///     assert_eq!(t.await.unwrap() + f.await.unwrap(), 3);
/// });
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
}

impl Builder {
    /// A builder for an unnamed task.
    ///
    /// # Examples
    ///
    /// See [`Builder`].
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the task or fiber.
    ///
    /// # Examples
    ///
    /// See [`Builder`].
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Spawns `future` as a task on the current runtime.
    ///
    /// # Errors
    ///
    /// An error of kind `Other` carrying a
    /// [`TryCurrentError`](crate::TryCurrentError) if there is no current
    /// runtime (where [`spawn`](crate::spawn) would panic).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::task;
    ///
    /// // No runtime here: an error, not a panic.
    /// let err = task::Builder::new().spawn(async {}).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::Other);
    /// ```
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let meta = SpawnMeta::new(self.name);
        scheduler::context::with_current(|h| h.spawn(future, meta))
            .map_err(|kind| TryCurrentError::no_runtime(kind, "spawning a task"))
    }

    /// Spawns `f` as a fiber on the current runtime (as
    /// [`fiber::Builder::spawn`](crate::fiber::Builder::spawn), whose
    /// errors it returns).
    ///
    /// # Examples
    ///
    /// See [`Builder`].
    #[track_caller]
    pub fn spawn_fiber<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut b = crate::fiber::Builder::new();
        if let Some(name) = self.name {
            b = b.name(name);
        }
        b.spawn(f)
    }
}
