//! `RuntimeMetrics`: the snapshot of a runtime's counters users read.

use crate::scheduler::metrics::Snapshot;
use std::time::Duration;

/// A snapshot of a runtime's counters, taken by
/// [`Runtime::metrics`](crate::Runtime::metrics) or
/// [`Handle::metrics`](crate::Handle::metrics).
///
/// Taking one costs a few atomic loads per worker plus one lock per
/// owned-task shard. Per-worker counters are published by each worker in
/// batches (about every 61 polls and whenever it parks), so a snapshot may
/// trail the truth by that much while a worker is busy.
///
/// # Examples
///
/// ```
/// let rt = fiber_runtime::Builder::new_multi_thread()
///     .worker_threads(2)
///     .build()
///     .unwrap();
/// rt.block_on(rt.spawn(async {})).unwrap();
/// let m = rt.metrics();
/// assert_eq!(m.num_workers(), 2);
/// assert_eq!(m.num_alive_tasks(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct RuntimeMetrics {
    inner: Snapshot,
}

impl RuntimeMetrics {
    pub(crate) fn new(inner: Snapshot) -> RuntimeMetrics {
        RuntimeMetrics { inner }
    }

    /// Number of worker threads (1 for the current-thread flavor).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.metrics().num_workers(), 1);
    /// ```
    pub fn num_workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// Number of spawned tasks not yet finished, fibers included (tasks
    /// of `spawn_blocking` are not counted: see
    /// [`num_blocking_threads`](Self::num_blocking_threads)).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let h = rt.spawn(std::future::pending::<()>());
    /// assert_eq!(rt.metrics().num_alive_tasks(), 1);
    /// h.abort();
    /// let _ = rt.block_on(h);
    /// assert_eq!(rt.metrics().num_alive_tasks(), 0);
    /// ```
    pub fn num_alive_tasks(&self) -> usize {
        self.inner.alive_tasks
    }

    /// Number of fibers not yet finished (spawned and not yet finished,
    /// started or not).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// assert_eq!(rt.metrics().num_alive_fibers(), 0);
    /// ```
    pub fn num_alive_fibers(&self) -> usize {
        self.inner.alive_fibers
    }

    /// Number of tasks waiting in the global injection queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _ = rt.metrics().global_queue_depth();
    /// ```
    pub fn global_queue_depth(&self) -> usize {
        self.inner.global_queue_depth
    }

    /// Number of threads currently in the blocking pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// rt.block_on(rt.spawn_blocking(|| ())).unwrap();
    /// assert!(rt.metrics().num_blocking_threads() <= 1);
    /// ```
    pub fn num_blocking_threads(&self) -> usize {
        self.inner.blocking_threads
    }

    /// Number of task polls worker `i` has made.
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async { fiber_runtime::spawn(async {}).await }).unwrap();
    /// assert!(rt.metrics().worker_poll_count(0) >= 1);
    /// ```
    pub fn worker_poll_count(&self, i: usize) -> u64 {
        self.inner.workers[i].polls
    }

    /// Number of times worker `i` stole work from another worker.
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _ = rt.metrics().worker_steal_count(0);
    /// ```
    pub fn worker_steal_count(&self, i: usize) -> u64 {
        self.inner.workers[i].steals
    }

    /// Number of times worker `i` parked (went idle).
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _ = rt.metrics().worker_park_count(0);
    /// ```
    pub fn worker_park_count(&self, i: usize) -> u64 {
        self.inner.workers[i].parks
    }

    /// Total time worker `i` spent not parked.
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _ = rt.metrics().worker_busy_duration(0);
    /// ```
    pub fn worker_busy_duration(&self, i: usize) -> Duration {
        self.inner.workers[i].busy
    }
}
