//! `Builder`: runtime configuration, validated by `build`.

use super::{Handle, Runtime};
use crate::driver::Driver;
use crate::fiber::stack::{DEFAULT_STACK_SIZE, check_stack_size};
use crate::scheduler::park::DriverSlot;
use crate::scheduler::{self, Common, Config, blocking, current_thread, multi_thread};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The most worker threads a runtime may have.
pub(crate) const MAX_WORKER_THREADS: usize = 32_767;
/// The smallest stack a worker or blocking thread may be given.
pub(crate) const MIN_THREAD_STACK_SIZE: usize = 64 * 1024;
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

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
    /// Set up by the layers above the runtime (`Builder::dump_on_signal`
    /// lives with the signals): run once the runtime is up, by name.
    start_hooks: Vec<(&'static str, StartHook)>,
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
            start_hooks: Vec::new(),
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
        let driver = std::sync::Arc::new(DriverSlot::new(Driver::new(workers)?));
        let config = Config {
            fiber_stack_size: self.fiber_stack_size,
        };
        let common = Common::new(config, blocking.clone(), driver);
        match self.kind {
            Kind::CurrentThread => {
                let handle = current_thread::Handle::new(common);
                let handle = scheduler::Handle::CurrentThread(handle);
                blocking.set_handle(handle.clone());
                self.start(Runtime::from_parts(handle, Vec::new(), blocking))
            }
            Kind::MultiThread => {
                let (handle, cores) = multi_thread::create(workers, common);
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
                self.start(Runtime::from_parts(sched, threads, blocking))
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
            .field(
                "start_hooks",
                &self.start_hooks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}
