//! `Builder`: runtime configuration, validated by `build`.

use super::{Handle, IoDriver, LongPoll, Runtime};
use crate::driver::{self, Driver};
use crate::fiber::stack::{DEFAULT_STACK_SIZE, check_stack_size};
use crate::scheduler::metrics::{HistogramConfig, MAX_BUCKETS};
use crate::scheduler::monitor::{Monitor, MonitorConfig};
use crate::scheduler::park::DriverSlot;
use crate::scheduler::{self, Common, Config, blocking, current_thread, multi_thread};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// The most worker threads a runtime may have.
pub(crate) const MAX_WORKER_THREADS: usize = 32_767;
/// The smallest stack a worker or blocking thread may be given.
pub(crate) const MIN_THREAD_STACK_SIZE: usize = 64 * 1024;
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;
const DEFAULT_LONG_POLL_THRESHOLD: Duration = Duration::from_millis(100);

/// The user's `on_long_poll`.
type LongPollCallback = Arc<dyn Fn(LongPoll) + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CurrentThread,
    MultiThread,
}

/// Configures and builds a [`Runtime`].
///
/// Invalid settings are reported by [`build`](Builder::build) as an
/// [`io::Error`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput)
/// whose message names the setting and its allowed range.
///
/// # Examples
///
/// ```
/// use fiber_runtime::Builder;
///
/// let rt = Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-worker")
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
///
/// let err = Builder::new_multi_thread().worker_threads(0).build().unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("worker_threads"));
/// ```
pub struct Builder {
    kind: Kind,
    worker_threads: Option<usize>,
    thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    thread_stack_size: Option<usize>,
    fiber_stack_size: usize,
    max_blocking_threads: usize,
    long_poll_threshold: Option<Duration>,
    on_long_poll: Option<LongPollCallback>,
    /// Buckets and first bucket end; `None`: histograms off.
    poll_time_histogram: Option<(usize, Duration)>,
    poll_time_sample_interval: u64,
    worker_handoff: bool,
    spread_workers: bool,
    /// `None`: as many as workers.
    max_handoff_threads: Option<usize>,
    /// Set up by the layers above the runtime (`Builder::dump_on_signal`
    /// lives with the signals): run once the runtime is up, by name.
    start_hooks: Vec<(&'static str, StartHook)>,
    io_driver: IoDriver,
}

/// Starts something that lives as long as a runtime (a signal listener,
/// say), given its handle once it runs: what it returns is kept by the
/// `Runtime` and dropped first when it shuts down. An error fails
/// `build`.
pub(crate) type StartHook = Arc<dyn Fn(&Handle) -> io::Result<Box<dyn Send + Sync>> + Send + Sync>;

impl Builder {
    /// A builder for the multi-thread, work-stealing flavor (one worker
    /// per CPU core unless [`worker_threads`](Self::worker_threads) says
    /// otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread().build().unwrap();
    /// # drop(rt);
    /// ```
    pub fn new_multi_thread() -> Builder {
        Builder::new(Kind::MultiThread)
    }

    /// A builder for the current-thread flavor: every task runs on the
    /// thread that calls [`Runtime::block_on`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// let id = rt.block_on(async { std::thread::current().id() });
    /// assert_eq!(id, std::thread::current().id());
    /// ```
    pub fn new_current_thread() -> Builder {
        Builder::new(Kind::CurrentThread)
    }

    fn new(kind: Kind) -> Builder {
        Builder {
            kind,
            worker_threads: None,
            thread_name: Arc::new(|| "fiber-runtime-worker".to_string()),
            thread_stack_size: None,
            fiber_stack_size: DEFAULT_STACK_SIZE,
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
            long_poll_threshold: Some(DEFAULT_LONG_POLL_THRESHOLD),
            on_long_poll: None,
            poll_time_histogram: Some((
                HistogramConfig::DEFAULT.buckets,
                Duration::from_nanos(HistogramConfig::DEFAULT.first_end_ns),
            )),
            poll_time_sample_interval: HistogramConfig::DEFAULT.sample_every,
            worker_handoff: true,
            spread_workers: true,
            max_handoff_threads: None,
            start_hooks: Vec::new(),
            io_driver: IoDriver::Auto,
        }
    }

    /// Sets (or, with `None`, removes) the start hook named `name`.
    #[cfg_attr(not(feature = "signal"), allow(dead_code))]
    pub(crate) fn set_start_hook(&mut self, name: &'static str, hook: Option<StartHook>) {
        self.start_hooks.retain(|(n, _)| *n != name);
        if let Some(hook) = hook {
            self.start_hooks.push((name, hook));
        }
    }

    /// Runs the start hooks on the new runtime `rt`; on an error, drops
    /// it (stopping what was started) and returns the error.
    fn start(&self, mut rt: Runtime) -> io::Result<Runtime> {
        for (_, hook) in &self.start_hooks {
            let guard = hook(rt.handle())?;
            rt.keep_until_shutdown(guard);
        }
        Ok(rt)
    }

    /// Sets the number of worker threads (multi-thread flavor only;
    /// 1 to 32767). Defaults to the number of CPU cores.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(3)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.metrics().num_workers(), 3);
    /// ```
    pub fn worker_threads(&mut self, n: usize) -> &mut Builder {
        self.worker_threads = Some(n);
        self
    }

    /// Sets the name of the runtime's threads (workers and blocking pool).
    /// A name with a NUL byte makes [`build`](Self::build) fail with
    /// `InvalidInput`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(1)
    ///     .thread_name("rt-worker")
    ///     .build()
    ///     .unwrap();
    /// let name = rt
    ///     .block_on(rt.spawn(async { std::thread::current().name().map(String::from) }))
    ///     .unwrap();
    /// assert_eq!(name.as_deref(), Some("rt-worker"));
    /// ```
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        let name = name.into();
        self.thread_name = Arc::new(move || name.clone());
        self
    }

    /// Sets the stack size, in bytes, of the runtime's threads (at least
    /// 64 KiB). Defaults to the standard library's default.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .thread_stack_size(4 * 1024 * 1024)
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn thread_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// Sets the default stack size, in bytes, of fibers spawned on this
    /// runtime (16 KiB to 1 GiB; default 256 KiB of virtual memory, of
    /// which only touched pages cost memory).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = fiber_runtime::Builder::new_multi_thread()
    ///     .fiber_stack_size(1024)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("fiber_stack_size"));
    /// ```
    pub fn fiber_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.fiber_stack_size = bytes;
        self
    }

    /// Sets the most threads the blocking pool may run at once (at least
    /// 1; default 512). Threads start on demand and exit after 10 s idle.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .max_blocking_threads(4)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(rt.spawn_blocking(|| 7)).unwrap(), 7);
    /// ```
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Builder {
        self.max_blocking_threads = n;
        self
    }

    /// Sets the long-poll threshold (default 100 ms): a task poll, or a
    /// fiber's run between two suspensions (one poll of its task), or a
    /// current-thread runtime's poll of its `block_on` future, that runs
    /// longer is reported once, while it still runs, to the
    /// [`on_long_poll`](Self::on_long_poll) callback (by default one line
    /// on stderr). `None` turns the detector off.
    ///
    /// A monitor thread per runtime (`fiber-runtime-monitor`) finds long
    /// polls: it looks at the workers every quarter of the threshold
    /// (within 1 ms..=250 ms), and the workers tell it what they poll with
    /// two plain stores per poll, no clock read. A poll is reported once it
    /// has run the threshold since the monitor first saw it, so it ran at
    /// least the threshold, and is reported at most about two check
    /// intervals after it crossed it; see [`LongPoll`] for what a report
    /// holds, and [`RuntimeMetrics::long_poll_count`](crate::RuntimeMetrics::long_poll_count).
    ///
    /// Off (`None`), nothing is reported, counted or handed off; the
    /// monitor thread still runs, checking every 250 ms, if the poll-time
    /// histograms are on (it times their long polls), and not at all with
    /// [`disable_poll_time_histogram`](Self::disable_poll_time_histogram)
    /// too. The two stores per poll remain either way.
    ///
    /// A zero threshold makes [`build`](Self::build) fail with
    /// `InvalidInput` (use `None` to turn the detector off).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .long_poll_threshold(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// let quiet = fiber_runtime::Builder::new_current_thread()
    ///     .long_poll_threshold(None)
    ///     .build()
    ///     .unwrap();
    /// # drop(quiet);
    /// let err = fiber_runtime::Builder::new_current_thread()
    ///     .long_poll_threshold(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("long_poll_threshold"));
    /// ```
    pub fn long_poll_threshold(&mut self, threshold: impl Into<Option<Duration>>) -> &mut Builder {
        self.long_poll_threshold = threshold.into();
        self
    }

    /// Sets what to do with a long poll (see
    /// [`long_poll_threshold`](Self::long_poll_threshold)) instead of
    /// printing it to stderr, which the default does (one line, the
    /// report's `Display`).
    ///
    /// The callback runs on the runtime's monitor thread, once per long
    /// poll, while the poll still runs, with no lock of the runtime held:
    /// it may spawn, take metrics or log. A panic in it is caught (and
    /// printed by the panic hook); the monitor and the runtime go on.
    /// While it runs, the monitor checks nothing else, and dropping the
    /// runtime waits for it to return: keep it short.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .on_long_poll(|poll| {
    ///         eprintln!("stuck: {:?} on worker {}", poll.name(), poll.worker());
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn on_long_poll<F>(&mut self, f: F) -> &mut Builder
    where
        F: Fn(LongPoll) + Send + Sync + 'static,
    {
        self.on_long_poll = Some(Arc::new(f));
        self
    }

    /// Sets the shape of the workers' poll-time histograms
    /// ([`RuntimeMetrics::poll_time_histogram`](crate::RuntimeMetrics::poll_time_histogram)),
    /// and turns them on if they were off: `buckets` log-scale buckets (1
    /// to 64), bucket 0 ending at `first_bucket_end`, each next one twice
    /// as wide, the last open-ended. Default: 24 buckets from 100 ns (the
    /// last starts at about 419 ms).
    ///
    /// Out-of-range values (0 or more than 64 buckets, a zero
    /// `first_bucket_end`, or one of 2^64 ns or more) make
    /// [`build`](Self::build) fail with `InvalidInput` naming the setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = fiber_runtime::Builder::new_current_thread()
    ///     .poll_time_histogram(10, Duration::from_micros(10))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.metrics().poll_time_histogram(0).unwrap().num_buckets(), 10);
    ///
    /// let err = fiber_runtime::Builder::new_current_thread()
    ///     .poll_time_histogram(0, Duration::from_micros(10))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("poll_time_histogram"));
    /// ```
    pub fn poll_time_histogram(
        &mut self,
        buckets: usize,
        first_bucket_end: Duration,
    ) -> &mut Builder {
        self.poll_time_histogram = Some((buckets, first_bucket_end));
        self
    }

    /// Sets how many task polls the histograms' timing samples stand for
    /// (default 256): one poll in `polls` is timed with a clock (two reads
    /// of ~30 ns, as long as a short poll), and counts for the polls since
    /// the previous timed one. `1` times every poll. Long polls are timed
    /// anyway (see
    /// [`RuntimeMetrics::poll_time_histogram`](crate::RuntimeMetrics::poll_time_histogram)).
    /// Zero makes [`build`](Self::build) fail with `InvalidInput`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread()
    ///     .poll_time_sample_interval(1)
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn poll_time_sample_interval(&mut self, polls: u64) -> &mut Builder {
        self.poll_time_sample_interval = polls;
        self
    }

    /// Turns the poll-time histograms off (and with them
    /// [`RuntimeMetrics::mean_poll_time`](crate::RuntimeMetrics::mean_poll_time)):
    /// no poll is timed. A later
    /// [`poll_time_histogram`](Self::poll_time_histogram) turns them on
    /// again.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread()
    ///     .disable_poll_time_histogram()
    ///     .build()
    ///     .unwrap();
    /// assert!(rt.metrics().poll_time_histogram(0).is_none());
    /// ```
    pub fn disable_poll_time_histogram(&mut self) -> &mut Builder {
        self.poll_time_histogram = None;
        self
    }

    /// Turns the worker hand-off on or off (multi-thread flavor; on by
    /// default). A worker stuck in one poll — a task that blocks its
    /// thread (`std::thread::sleep`, a blocking system call, a long
    /// computation with no `.await`) — hands its run queue, the task in
    /// its LIFO slot and, with them, the turning of the I/O and timer
    /// driver to a replacement thread, so that every other task, timer
    /// and socket goes on. When the stuck poll returns, the worker rejoins
    /// and the replacement thread retires.
    ///
    /// The runtime's long-poll detector decides that a worker is stuck
    /// (after `long_poll_threshold`).
    ///
    /// What cannot move: **fibers already started on the stuck worker**
    /// (fibers never migrate between threads, so their thread-locals and
    /// `!Send` values stay sound). Those woken meanwhile wait until the
    /// stuck poll returns; fibers not started yet start on any thread,
    /// the replacement's too. A replacement thread that started fibers
    /// retires only once they have finished, and until then still counts
    /// against [`max_handoff_threads`](Self::max_handoff_threads): a
    /// long-lived fiber started there keeps that slot from serving another
    /// hand-off (the report of a stuck worker then says it was not handed
    /// off). Outside Linux (where the
    /// LIFO slot is taken over with `membarrier(2)`), the one task the
    /// stuck poll woke last also waits for it.
    ///
    /// Replacement threads are named after the workers
    /// (`<thread_name>-handoff-<n>`), at most
    /// [`max_handoff_threads`](Self::max_handoff_threads) alive at once,
    /// and counted by [`RuntimeMetrics::handoff_count`] and
    /// [`RuntimeMetrics::num_replacement_threads`]. With `false`, none is
    /// ever started and nothing is set aside for them. The current-thread
    /// flavor has no hand-off (its one thread is the caller's); the
    /// setting is ignored there.
    ///
    /// [`RuntimeMetrics::handoff_count`]: crate::RuntimeMetrics::handoff_count
    /// [`RuntimeMetrics::num_replacement_threads`]: crate::RuntimeMetrics::num_replacement_threads
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .worker_handoff(false)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(rt.spawn(async { 3 })).unwrap(), 3);
    /// assert_eq!(rt.metrics().handoff_count(), 0);
    /// ```
    pub fn worker_handoff(&mut self, enabled: bool) -> &mut Builder {
        self.worker_handoff = enabled;
        self
    }

    /// Whether a busy worker that the kernel runs on the same CPU as
    /// another busy worker, while a CPU this process may use runs neither,
    /// moves itself there (multi-thread flavor, Linux; default `true`): two
    /// `sched_setaffinity` calls, to that CPU alone and back to the mask
    /// the worker had, so no thread is left pinned (nor one it starts);
    /// at most once a millisecond per worker. A worker its user pinned to
    /// one CPU never moves. Since Linux 6.2 the mask given back is kept as
    /// the thread's own, so a moved worker does not gain CPUs its cpuset
    /// gains later. Kernels that pack threads onto few CPUs (some
    /// virtual machines) otherwise run a burst of parallel work at half
    /// speed until their load balancer steps in. Counted by
    /// [`RuntimeMetrics::worker_cpu_move_count`].
    ///
    /// [`RuntimeMetrics::worker_cpu_move_count`]: crate::RuntimeMetrics::worker_cpu_move_count
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .spread_workers(false)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(rt.spawn(async { 3 })).unwrap(), 3);
    /// assert_eq!(rt.metrics().worker_cpu_move_count(0), 0);
    /// ```
    pub fn spread_workers(&mut self, enabled: bool) -> &mut Builder {
        self.spread_workers = enabled;
        self
    }

    /// Sets the most replacement threads of the worker hand-off alive at
    /// once (see [`worker_handoff`](Self::worker_handoff); 1 to 32767;
    /// default: the number of workers, so that every worker can be
    /// replaced once at the same time). A stuck worker found while the cap
    /// is reached is not replaced. Each allowed thread reserves a spare
    /// slot (a run queue of 256 entries) when the runtime is built.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_multi_thread()
    ///     .worker_threads(4)
    ///     .max_handoff_threads(1)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.metrics().num_replacement_threads(), 0);
    ///
    /// let err = fiber_runtime::Builder::new_multi_thread()
    ///     .max_handoff_threads(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("worker_handoff(false)"));
    /// ```
    pub fn max_handoff_threads(&mut self, n: usize) -> &mut Builder {
        self.max_handoff_threads = Some(n);
        self
    }

    /// Chooses the I/O driver (default [`IoDriver::Auto`]: the
    /// `FIBER_RUNTIME_IO` environment variable, else epoll for now).
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails if `FIBER_RUNTIME_IO` holds anything
    /// but `auto`, `epoll` or `uring` ([`InvalidInput`](io::ErrorKind::InvalidInput))
    /// while this is `Auto`, and, for [`IoDriver::Uring`] (asked for here
    /// or by the variable), if the kernel refuses an io_uring (the OS
    /// error's kind: PermissionDenied when seccomp or
    /// `kernel.io_uring_disabled` forbids it, Unsupported before Linux
    /// 6.1 or off Linux).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{Builder, IoDriver};
    ///
    /// let rt = Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .io_driver(IoDriver::Epoll)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(rt.spawn(async { 3 })).unwrap(), 3);
    /// assert_eq!(rt.handle().io_driver(), IoDriver::Epoll);
    /// ```
    pub fn io_driver(&mut self, driver: IoDriver) -> &mut Builder {
        self.io_driver = driver;
        self
    }

    fn validate(&self) -> io::Result<usize> {
        fn invalid(msg: String) -> io::Error {
            io::Error::new(io::ErrorKind::InvalidInput, msg)
        }
        let workers = match (self.kind, self.worker_threads) {
            (Kind::CurrentThread, Some(n)) => {
                return Err(invalid(format!(
                    "worker_threads({n}) is not supported by the current_thread flavor, which \
                     runs every task on the thread calling block_on; use \
                     Builder::new_multi_thread()"
                )));
            }
            (Kind::CurrentThread, None) => 1,
            (Kind::MultiThread, Some(n)) if n == 0 || n > MAX_WORKER_THREADS => {
                return Err(invalid(format!(
                    "worker_threads must be between 1 and {MAX_WORKER_THREADS}, got {n}"
                )));
            }
            (Kind::MultiThread, Some(n)) => n,
            (Kind::MultiThread, None) => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_WORKER_THREADS),
        };
        if (self.thread_name)().contains('\0') {
            return Err(invalid(format!(
                "thread_name must not contain a NUL byte, got {:?}",
                (self.thread_name)()
            )));
        }
        if let Some(size) = self.thread_stack_size {
            if size < MIN_THREAD_STACK_SIZE {
                return Err(invalid(format!(
                    "thread_stack_size must be at least {MIN_THREAD_STACK_SIZE} bytes (64 KiB), got {size}"
                )));
            }
        }
        check_stack_size("fiber_stack_size", self.fiber_stack_size)?;
        if self.max_blocking_threads == 0 {
            return Err(invalid(
                "max_blocking_threads must be at least 1, got 0".to_string(),
            ));
        }
        if self.long_poll_threshold == Some(Duration::ZERO) {
            return Err(invalid(
                "long_poll_threshold must be more than zero, got 0 ns (None turns the detector off)"
                    .to_string(),
            ));
        }
        if let Some((buckets, first)) = self.poll_time_histogram {
            if buckets == 0 || buckets > MAX_BUCKETS {
                return Err(invalid(format!(
                    "poll_time_histogram: the number of buckets must be between 1 and \
                     {MAX_BUCKETS}, got {buckets}"
                )));
            }
            if first.is_zero() || first.as_nanos() > u128::from(u64::MAX) {
                return Err(invalid(format!(
                    "poll_time_histogram: first_bucket_end must be between 1 ns and 2^64 ns \
                     (about 584 years), got {first:?}"
                )));
            }
        }
        if self.poll_time_sample_interval == 0 {
            return Err(invalid(
                "poll_time_sample_interval must be at least 1, got 0".to_string(),
            ));
        }
        match self.max_handoff_threads {
            Some(0) => {
                return Err(invalid(
                    "max_handoff_threads must be at least 1, got 0 (to turn the worker hand-off \
                     off, use worker_handoff(false))"
                        .to_string(),
                ));
            }
            Some(n) if n > MAX_WORKER_THREADS => {
                return Err(invalid(format!(
                    "max_handoff_threads must be between 1 and {MAX_WORKER_THREADS}, got {n}"
                )));
            }
            _ => {}
        }
        Ok(workers)
    }

    /// Builds the runtime, starting its worker threads.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) naming the setting if
    /// one is out of range; the OS error (with context) if a worker thread
    /// cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(async { "hi" }), "hi");
    /// ```
    pub fn build(&mut self) -> io::Result<Runtime> {
        let workers = self.validate()?;
        let blocking = blocking::Spawner::new(
            self.max_blocking_threads,
            blocking_name(self.thread_name.clone()),
            self.thread_stack_size,
        );
        let io_kind = self.io_driver.resolve()?;
        let ring_counters = Arc::default();
        let mut rings = match io_kind {
            driver::Kind::Epoll => Vec::new(),
            // One ring per worker; the spare slots of the hand-off get none
            // (their threads come and go).
            driver::Kind::Uring => crate::uring::create(workers, Arc::clone(&ring_counters))?,
        };
        let driver = Driver::new(workers, io_kind, ring_counters)?;
        let driver = std::sync::Arc::new(DriverSlot::new(driver));
        let on_long_poll = self
            .on_long_poll
            .clone()
            .unwrap_or_else(|| Arc::new(|poll: LongPoll| eprintln!("{poll}")));
        let monitor = MonitorConfig {
            threshold: self.long_poll_threshold,
            on_long_poll: Arc::new(move |report| on_long_poll(LongPoll::new(report))),
        };
        let individual_ns = (2 * monitor.interval()).as_nanos() as u64;
        let config = Config {
            fiber_stack_size: self.fiber_stack_size,
            monitor,
            histogram: self
                .poll_time_histogram
                .map(|(buckets, first)| HistogramConfig {
                    buckets,
                    first_end_ns: first.as_nanos() as u64,
                    sample_every: self.poll_time_sample_interval,
                    individual_ns,
                }),
        };
        let common = Common::new(config, blocking.clone(), driver);
        match self.kind {
            Kind::CurrentThread => {
                let handle = current_thread::Handle::new(common, rings.pop());
                let handle = scheduler::Handle::CurrentThread(handle);
                blocking.set_handle(handle.clone());
                let rt = Runtime::from_parts(handle.clone(), Vec::new(), blocking);
                Monitor::start(&handle)?;
                self.start(rt)
            }
            Kind::MultiThread => {
                let handoff = multi_thread::HandoffConfig {
                    max_threads: if self.worker_handoff {
                        self.max_handoff_threads.unwrap_or(workers)
                    } else {
                        0
                    },
                    thread_name: self.thread_name.clone(),
                    thread_stack_size: self.thread_stack_size,
                };
                let (handle, cores) =
                    multi_thread::create(workers, handoff, self.spread_workers, common, rings);
                let sched = scheduler::Handle::MultiThread(handle.clone());
                blocking.set_handle(sched.clone());
                let mut threads = Vec::with_capacity(workers);
                for (i, core) in cores.into_iter().enumerate() {
                    let mut b = std::thread::Builder::new().name((self.thread_name)());
                    if let Some(size) = self.thread_stack_size {
                        b = b.stack_size(size);
                    }
                    let h = handle.clone();
                    match b.spawn(move || multi_thread::run(h, core)) {
                        Ok(t) => threads.push(t),
                        Err(e) => {
                            // Stop what was started, then report.
                            drop(Runtime::from_parts(sched, threads, blocking));
                            return Err(io::Error::new(
                                e.kind(),
                                format!("failed to start worker thread {i} of {workers}: {e}"),
                            ));
                        }
                    }
                }
                let rt = Runtime::from_parts(sched.clone(), threads, blocking);
                // (On failure, dropping `rt` stops what was started.)
                Monitor::start(&sched)?;
                self.start(rt)
            }
        }
    }
}

/// Blocking threads share the workers' name, with a counter.
fn blocking_name(
    base: Arc<dyn Fn() -> String + Send + Sync>,
) -> Arc<dyn Fn() -> String + Send + Sync> {
    let counter = AtomicUsize::new(0);
    Arc::new(move || format!("{}-blocking-{}", base(), counter.fetch_add(1, Relaxed)))
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("kind", &self.kind)
            .field("worker_threads", &self.worker_threads)
            .field("thread_name", &(self.thread_name)())
            .field("thread_stack_size", &self.thread_stack_size)
            .field("fiber_stack_size", &self.fiber_stack_size)
            .field("max_blocking_threads", &self.max_blocking_threads)
            .field("long_poll_threshold", &self.long_poll_threshold)
            .field("on_long_poll", &self.on_long_poll.as_ref().map(|_| ".."))
            .field("poll_time_histogram", &self.poll_time_histogram)
            .field("poll_time_sample_interval", &self.poll_time_sample_interval)
            .field("worker_handoff", &self.worker_handoff)
            .field("max_handoff_threads", &self.max_handoff_threads)
            .field("io_driver", &self.io_driver)
            .field(
                "start_hooks",
                &self.start_hooks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}
