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
    /// Number of tasks and fibers spawned on this runtime so far (every
    /// successful `spawn`, `spawn_fiber`, `Handle::spawn`, task-group and
    /// builder spawn; not the `block_on` future, which is not a task, and
    /// not `spawn_blocking` closures, which run on the blocking pool: see
    /// [`num_blocking_threads`](Self::num_blocking_threads)). A spawn
    /// refused because the runtime is shutting down is not counted.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let before = rt.metrics().spawned_tasks_count();
    /// rt.block_on(async {
    ///     for _ in 0..3 {
    ///         fiber_runtime::spawn(async {}).await.unwrap();
    ///     }
    /// });
    /// assert_eq!(rt.metrics().spawned_tasks_count(), before + 3);
    /// ```
    pub fn spawned_tasks_count(&self) -> u64 {
        self.inner.spawned_tasks
    }

    /// Number of times a task was scheduled from outside the runtime's
    /// worker threads: spawned or woken on another thread (a plain thread,
    /// the blocking pool, a `block_on` thread of the multi-thread flavor),
    /// and so pushed into the global injection queue (the remote queue of
    /// the current-thread flavor). Fibers woken from another thread go to
    /// their own worker's inbox instead and are not counted; nor are tasks
    /// a worker moves to the injector when its local queue overflows.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(1)
    ///     .build()
    ///     .unwrap();
    /// // Spawned from the main thread, outside the workers.
    /// let h = rt.spawn(async {});
    /// rt.block_on(h).unwrap();
    /// assert!(rt.metrics().remote_schedule_count() >= 1);
    /// ```
    pub fn remote_schedule_count(&self) -> u64 {
        self.inner.remote_schedules
    }

    /// Number of task polls that the cooperative budget forced to yield:
    /// the task found runtime resources ready so many times in a row (128
    /// in one poll) that one of them returned `Pending` instead, to let
    /// the worker's other tasks run. Counted once per poll, summed over
    /// the workers, and published with the other per-worker counters
    /// (about every 61 polls and whenever a worker parks).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     fiber_runtime::spawn(async {
    ///         let (tx, mut rx) = fiber_runtime::sync::mpsc::unbounded_channel();
    ///         for i in 0..200 {
    ///             tx.send(i).unwrap();
    ///         }
    ///         // Each ready receive costs budget: the 129th yields.
    ///         for _ in 0..200 {
    ///             rx.recv().await.unwrap();
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// assert!(rt.metrics().budget_forced_yield_count() >= 1);
    /// ```
    pub fn budget_forced_yield_count(&self) -> u64 {
        self.inner.workers.iter().map(|w| w.forced_yields).sum()
    }

    /// Number of readiness events the I/O reactor delivered to sockets
    /// and other registered sources (one event can make a source both
    /// readable and writable; the reactor's own wake-ups are not counted).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// assert_eq!(rt.metrics().io_ready_count(), 0);
    /// ```
    pub fn io_ready_count(&self) -> u64 {
        self.inner.io_ready
    }

    /// Number of tasks waiting in worker `i`'s local run queue now. On the
    /// multi-thread flavor this is its stealable ring, read at the time of
    /// the snapshot (the single-task LIFO slot and the fibers pinned to the
    /// worker are not counted); on the current-thread flavor, its queue as
    /// of the last publication (when `block_on` returns, when it parks,
    /// and every 61 polls). Tasks in the global queue are counted by
    /// [`global_queue_depth`](Self::global_queue_depth).
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {});
    /// assert_eq!(rt.metrics().worker_local_queue_depth(0), 0);
    /// ```
    pub fn worker_local_queue_depth(&self, i: usize) -> usize {
        self.inner.workers[i].local_queue_depth
    }

    /// Number of worker hand-offs so far: times a worker stuck in one poll
    /// handed its queues to a replacement thread
    /// ([`Builder::worker_handoff`](crate::Builder::worker_handoff)). 0
    /// on the current-thread flavor, and with the hand-off off.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// rt.block_on(rt.spawn(async {})).unwrap();
    /// // No poll was stuck.
    /// assert_eq!(rt.metrics().handoff_count(), 0);
    /// ```
    pub fn handoff_count(&self) -> u64 {
        self.inner.handoffs
    }

    /// Number of replacement threads of the worker hand-off alive now:
    /// those replacing a stuck worker, and those retiring (the worker
    /// rejoined) until they exit. At most
    /// [`Builder::max_handoff_threads`](crate::Builder::max_handoff_threads).
    /// Their polls, steals and parks are not in the per-worker counts.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.metrics().num_replacement_threads(), 0);
    /// ```
    pub fn num_replacement_threads(&self) -> usize {
        self.inner.replacement_threads
    }
}
