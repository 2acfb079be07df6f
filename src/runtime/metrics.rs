//! `RuntimeMetrics`: the snapshot of a runtime's counters users read.

use crate::scheduler::metrics::{HistogramSnapshot, Snapshot};
use std::ops::Range;
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
    /// One per worker; `None` with the histograms off.
    histograms: Vec<Option<PollTimeHistogram>>,
    fiber_stacks: super::FiberStackHistogram,
}

impl RuntimeMetrics {
    pub(crate) fn new(mut inner: Snapshot) -> RuntimeMetrics {
        let histograms = inner
            .workers
            .iter_mut()
            .map(|w| w.histogram.take().map(|inner| PollTimeHistogram { inner }))
            .collect();
        RuntimeMetrics {
            inner,
            histograms,
            fiber_stacks: Default::default(),
        }
    }

    pub(crate) fn with_fiber_stacks(self, h: super::FiberStackHistogram) -> RuntimeMetrics {
        RuntimeMetrics {
            fiber_stacks: h,
            ..self
        }
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

    /// Number of times worker `i` moved itself off a CPU that the kernel
    /// had it share with another busy worker while a CPU it may use ran
    /// none (Linux; always 0 elsewhere; see
    /// [`Builder::spread_workers`](crate::Builder::spread_workers)). A
    /// replacement thread's moves (the worker hand-off) are not in it.
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _ = rt.metrics().worker_cpu_move_count(0);
    /// ```
    pub fn worker_cpu_move_count(&self, i: usize) -> u64 {
        self.inner.workers[i].cpu_moves
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

    /// Number of times a thread of this runtime waited in its io_uring
    /// (one `io_uring_enter` each) under [`IoDriver::Uring`](crate::IoDriver);
    /// always 0 under epoll. Busy workers' non-blocking turns are not
    /// counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{Builder, IoDriver};
    ///
    /// let rt = Builder::new_current_thread().io_driver(IoDriver::Epoll).build().unwrap();
    /// rt.block_on(async { fiber_runtime::time::sleep(std::time::Duration::from_millis(1)).await });
    /// assert_eq!(rt.metrics().io_uring_wait_count(), 0);
    /// ```
    pub fn io_uring_wait_count(&self) -> u64 {
        self.inner.io_uring_waits
    }

    /// Number of TCP and Unix streams bound to a worker's io_uring so far
    /// under [`IoDriver::Uring`](crate::IoDriver): those first used on a
    /// worker of this runtime (in a task or a fiber), whose readiness and
    /// received bytes then come from that worker's ring. A stream binds at
    /// its first read, write or readiness wait, not when it is created.
    /// Always 0 under epoll.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{Builder, IoDriver};
    ///
    /// let rt = Builder::new_multi_thread().io_driver(IoDriver::Epoll).build().unwrap();
    /// assert_eq!(rt.metrics().io_uring_bound_stream_count(), 0);
    /// ```
    pub fn io_uring_bound_stream_count(&self) -> u64 {
        self.inner.io_uring_binds
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

    /// The histogram of the fiber stack high-water marks this runtime's
    /// threads measured: how deep fiber stacks went (from the kernel's
    /// page tables: the deepest page touched), in power-of-two buckets
    /// from 4 KiB to 1 GiB.
    ///
    /// Nothing is measured on the spawn or exit path: a thread about to
    /// idle measures up to 32 of the stacks that fibers gave back to it
    /// since it last did (one `mincore` each), then gives back each
    /// measured stack's pages below its top 8 KiB. Stacks are pooled and
    /// reused, so one sample is one stack's measurement: how deep the
    /// deepest of the fibers that used it since its previous measurement
    /// went (one sample may cover several fibers that ran on it in turn
    /// before the thread idled), or 8 KiB if that is more and an earlier
    /// fiber went that deep. It is thus an upper bound for each fiber it
    /// covers, never a repeat of an earlier, deeper mark. Fibers still
    /// running are not counted (see [`Handle::dump`](crate::Handle::dump)
    /// for those), nor are fibers whose stacks are dropped rather than
    /// pooled, or given back unmeasured (after a burst that leaves more
    /// free stacks than the 1024 a thread keeps warm, those beyond the 32
    /// measured).
    ///
    /// Stack pools are per thread: a stack is measured by the thread its
    /// fiber ran on, when that thread idles, into the histogram of the
    /// runtime it idles for (for a current-thread runtime: the thread
    /// that drove it, when it parks in `block_on`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{Builder, fiber};
    ///
    /// let rt = Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     for _ in 0..4 {
    ///         fiber::spawn(|| std::hint::black_box([0u8; 20_000]).len()).await.unwrap();
    ///     }
    /// });
    /// // The runtime measured the stacks when it went idle at the end.
    /// let h = rt.metrics().fiber_stack_high_water_histogram();
    /// for i in 0..h.num_buckets() {
    ///     if h.bucket_count(i) > 0 {
    ///         println!("<= {} KiB: {}", h.bucket_upper_bound(i) / 1024, h.bucket_count(i));
    ///     }
    /// }
    /// ```
    pub fn fiber_stack_high_water_histogram(&self) -> super::FiberStackHistogram {
        self.fiber_stacks.clone()
    }

    /// A [`fiber_stack_size`](crate::Builder::fiber_stack_size) that fits
    /// the fibers measured so far with room to spare: twice the deepest
    /// high-water mark of
    /// [`fiber_stack_high_water_histogram`](Self::fiber_stack_high_water_histogram),
    /// rounded up to a power of two (at least 16 KiB); `None` while no
    /// stack has been measured.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// assert_eq!(rt.metrics().recommended_fiber_stack_size(), None);
    /// ```
    pub fn recommended_fiber_stack_size(&self) -> Option<usize> {
        self.fiber_stacks.recommended_stack_size()
    }

    /// The poll-time histogram of worker `i`: how long its task polls
    /// took (a fiber's poll is its run between two suspensions), in
    /// log-scale buckets; `None` if the runtime was built with
    /// [`disable_poll_time_histogram`](crate::Builder::disable_poll_time_histogram).
    ///
    /// Polls are not all timed (a clock read costs as much as a short
    /// poll): one in [`poll_time_sample_interval`] is, and counts for the
    /// polls since the previous timed one, so that the counts sum to the
    /// worker's poll count; and every poll long enough for the long-poll
    /// monitor to see it running across two of its checks (from about a
    /// quarter of the long-poll threshold) is timed by itself, from the
    /// monitor's first sighting: a lower bound, short by less than a check
    /// interval. From half the threshold up (where the monitor sees every
    /// poll), a poll counts once, for itself, even when it is the sampled
    /// one: an outlier does not stand for the short polls around it. Published with the other per-worker counters
    /// (about every 61 polls and whenever the worker parks). In any
    /// snapshot the counts sum to at least
    /// [`worker_poll_count`](Self::worker_poll_count) (the histogram is
    /// read after the count, and may hold polls published since); for a
    /// parked worker, exactly to it.
    ///
    /// [`poll_time_sample_interval`]: crate::Builder::poll_time_sample_interval
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     for _ in 0..10 {
    ///         fiber_runtime::spawn(async {}).await.unwrap();
    ///     }
    /// });
    /// let m = rt.metrics();
    /// let h = m.poll_time_histogram(0).unwrap();
    /// assert_eq!(h.total(), m.worker_poll_count(0));
    /// for (range, count) in h.buckets() {
    ///     if count > 0 {
    ///         println!("{range:?}: {count}");
    ///     }
    /// }
    /// ```
    pub fn poll_time_histogram(&self, i: usize) -> Option<&PollTimeHistogram> {
        assert!(
            i < self.histograms.len(),
            "worker index {i} out of range: the runtime has {} worker(s)",
            self.histograms.len()
        );
        self.histograms[i].as_ref()
    }

    /// The mean duration of worker `i`'s task polls, estimated from the
    /// timed polls of its [poll-time histogram](Self::poll_time_histogram)
    /// (each weighted by the polls it stands for). `None` if the
    /// histograms are off or no poll was timed yet (the first poll of each
    /// worker is).
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_workers()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async { fiber_runtime::spawn(async {}).await.unwrap() });
    /// let mean = rt.metrics().mean_poll_time(0).unwrap();
    /// assert!(mean < std::time::Duration::from_secs(1));
    /// ```
    pub fn mean_poll_time(&self, i: usize) -> Option<std::time::Duration> {
        self.poll_time_histogram(i).and_then(|h| h.inner.mean)
    }

    /// Number of long polls reported so far: polls (and fibers' runs
    /// between suspensions) that exceeded the
    /// [`long_poll_threshold`](crate::Builder::long_poll_threshold), each
    /// counted once, whether or not the `on_long_poll` callback panicked.
    /// Counted before the callback is called.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// rt.block_on(async { fiber_runtime::spawn(async {}).await.unwrap() });
    /// assert_eq!(rt.metrics().long_poll_count(), 0);
    /// ```
    pub fn long_poll_count(&self) -> u64 {
        // Every worker slot's, a replacement thread's too: a poll that a
        // stuck worker's replacement ran long is reported as well.
        self.inner.long_polls
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

/// A worker's poll-time histogram: counts of task polls by duration, in
/// log-scale buckets, from
/// [`RuntimeMetrics::poll_time_histogram`] (which says how polls are
/// timed).
///
/// Bucket 0 is `[0, first_bucket_end)`, bucket `k` is
/// `[first_bucket_end·2^(k-1), first_bucket_end·2^k)`, and the last one is
/// open-ended (its range ends at `Duration::MAX`); the shape is set with
/// [`Builder::poll_time_histogram`](crate::Builder::poll_time_histogram).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = fiber_runtime::Builder::new_current_thread()
///     .poll_time_histogram(4, Duration::from_micros(1))
///     .build()
///     .unwrap();
/// let m = rt.metrics();
/// let h = m.poll_time_histogram(0).unwrap();
/// assert_eq!(h.num_buckets(), 4);
/// assert_eq!(h.bucket_range(0), Duration::ZERO..Duration::from_micros(1));
/// assert_eq!(h.bucket_range(2), Duration::from_micros(2)..Duration::from_micros(4));
/// assert_eq!(h.bucket_range(3), Duration::from_micros(4)..Duration::MAX);
/// assert_eq!(h.bucket_index(Duration::from_micros(3)), 2);
/// ```
#[derive(Clone, Debug)]
pub struct PollTimeHistogram {
    inner: HistogramSnapshot,
}

impl PollTimeHistogram {
    /// Number of buckets.
    ///
    /// # Examples
    ///
    /// See [`PollTimeHistogram`].
    pub fn num_buckets(&self) -> usize {
        self.inner.counts.len()
    }

    /// The polls counted in bucket `b`.
    ///
    /// # Panics
    ///
    /// Panics if `b >= num_buckets()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// let m = rt.metrics();
    /// assert_eq!(m.poll_time_histogram(0).unwrap().bucket_count(0), 0);
    /// ```
    pub fn bucket_count(&self, b: usize) -> u64 {
        self.check(b);
        self.inner.counts[b]
    }

    /// The durations bucket `b` counts (the last bucket's range ends at
    /// `Duration::MAX`).
    ///
    /// # Panics
    ///
    /// Panics if `b >= num_buckets()`.
    ///
    /// # Examples
    ///
    /// See [`PollTimeHistogram`].
    pub fn bucket_range(&self, b: usize) -> Range<Duration> {
        self.check(b);
        let c = &self.inner.config;
        let start = Duration::from_nanos(c.bucket_start_ns(b));
        let end = c
            .bucket_end_ns(b)
            .map_or(Duration::MAX, Duration::from_nanos);
        start..end
    }

    /// The bucket a poll of duration `d` is counted in.
    ///
    /// # Examples
    ///
    /// See [`PollTimeHistogram`].
    pub fn bucket_index(&self, d: Duration) -> usize {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.config.bucket(ns)
    }

    /// Every bucket's range and count, in order.
    ///
    /// # Examples
    ///
    /// See [`RuntimeMetrics::poll_time_histogram`].
    pub fn buckets(&self) -> impl Iterator<Item = (Range<Duration>, u64)> + '_ {
        (0..self.num_buckets()).map(|b| (self.bucket_range(b), self.inner.counts[b]))
    }

    /// The sum of the counts: the polls the histogram accounts for.
    ///
    /// # Examples
    ///
    /// See [`RuntimeMetrics::poll_time_histogram`].
    pub fn total(&self) -> u64 {
        self.inner.counts.iter().sum()
    }

    fn check(&self, b: usize) {
        assert!(
            b < self.num_buckets(),
            "bucket index {b} out of range: the histogram has {} bucket(s)",
            self.num_buckets()
        );
    }
}
