//! The blocking pool: threads for `spawn_blocking` closures, so that
//! blocking code never stalls a worker.
//!
//! Threads are started on demand, up to `max_blocking_threads`; a thread
//! idle for `KEEP_ALIVE` exits. A blocking closure is a task like any
//! other (same `JoinHandle`), whose future runs the closure on its first
//! poll and whose scheduler is this pool.

use crate::loom::{AtomicUsize, Condvar, Mutex, Ordering::*};
use crate::scheduler::{self, context};
use crate::task_core::{self, JoinHandle, Notified, RawTask, Schedule, SpanKind, SpawnMeta};
use crate::util::trace::rt_debug;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

thread_local! {
    /// The pool this thread belongs to, if it is a blocking thread.
    static CURRENT_POOL: std::cell::Cell<*const Inner> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// How long an idle blocking thread waits for work before exiting.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The cheap, cloneable end used to submit closures.
#[derive(Clone)]
pub(crate) struct Spawner {
    inner: Arc<Inner>,
}

struct Inner {
    synced: Mutex<Synced>,
    /// Signalled when work arrives or at shutdown.
    condvar: Condvar,
    /// Signalled when the last thread exits.
    exited: Condvar,
    /// Mirror of `synced.num_threads` for metrics.
    num_threads: AtomicUsize,
    thread_cap: usize,
    thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    stack_size: Option<usize>,
}

/// The fields behind the lock.
struct Synced {
    queue: VecDeque<Notified>,
    num_threads: usize,
    num_idle: usize,
    /// Idle threads already notified, which must not count as idle again.
    num_notified: usize,
    shutdown: bool,
    /// The runtime whose context blocking closures run in.
    handle: Option<scheduler::Handle>,
}

/// The pool's scheduler for blocking tasks: they run once and are never
/// woken, so `schedule` only sees a stray `abort` (ignored: the queued
/// entry or the running closure handles cancellation).
struct BlockingSchedule;

impl Schedule for BlockingSchedule {
    fn schedule(&self, task: Notified) {
        drop(task);
    }

    fn release(&self, _task: RawTask) -> bool {
        false
    }
}

/// The `JoinHandle` of a closure that can never run: no thread could be
/// started for it and none runs. Its `JoinError` carries the OS error
/// (not swallowed, not printed).
fn spawn_failed<R: Send + 'static>(e: io::Error, meta: SpawnMeta) -> JoinHandle<R> {
    struct Failed<R>(String, std::marker::PhantomData<fn() -> R>);
    impl<R> Unpin for Failed<R> {}
    impl<R> Future for Failed<R> {
        type Output = R;
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
            // As a panic of the task, without the panic hook's report.
            std::panic::resume_unwind(Box::new(self.0.clone()))
        }
    }
    let msg = format!("spawn_blocking could not start a thread: {e}");
    let failed = Failed(msg, std::marker::PhantomData);
    let (notified, join) = task_core::unowned(failed, BlockingSchedule, SpanKind::Blocking, meta);
    // Completes it here and now, with that error.
    notified.run();
    join
}

/// Runs the closure when first polled.
struct BlockingTask<F>(Option<F>);

impl<F> Unpin for BlockingTask<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingTask<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self
            .0
            .take()
            .expect("blocking task polled after completion");
        Poll::Ready(crate::task_core::coop::unconstrained(f))
    }
}

impl Spawner {
    pub(crate) fn new(
        thread_cap: usize,
        thread_name: Arc<dyn Fn() -> String + Send + Sync>,
        stack_size: Option<usize>,
    ) -> Spawner {
        Spawner {
            inner: Arc::new(Inner {
                synced: Mutex::new(Synced {
                    queue: VecDeque::new(),
                    num_threads: 0,
                    num_idle: 0,
                    num_notified: 0,
                    shutdown: false,
                    handle: None,
                }),
                condvar: Condvar::new(),
                exited: Condvar::new(),
                num_threads: AtomicUsize::new(0),
                thread_cap,
                thread_name,
                stack_size,
            }),
        }
    }

    /// Sets the runtime handle closures see as current.
    pub(crate) fn set_handle(&self, handle: scheduler::Handle) {
        self.inner.synced.lock().handle = Some(handle);
    }

    pub(crate) fn num_threads(&self) -> usize {
        self.inner.num_threads.load(Relaxed)
    }

    pub(crate) fn spawn_blocking<F, R>(&self, f: F, meta: SpawnMeta) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let mut synced = self.inner.synced.lock();
        if !synced.shutdown {
            if let Err(e) = self.make_room(&mut synced) {
                drop(synced);
                return spawn_failed(e, meta);
            }
        }
        let task = BlockingTask(Some(f));
        let (notified, join) = task_core::unowned(task, BlockingSchedule, SpanKind::Blocking, meta);
        if synced.shutdown {
            // Cancelled before it runs; its `JoinHandle` says so.
            drop(synced);
            notified.shutdown();
        } else {
            // A thread woken or started by `make_room` waits for this lock
            // and finds it.
            synced.queue.push_back(notified);
        }
        join
    }

    /// Makes sure a thread will take the next queued closure: wakes an
    /// idle one, or starts one (up to the cap: beyond it, running threads
    /// get to it). Fails only if no thread can be started and none runs.
    fn make_room(&self, synced: &mut Synced) -> io::Result<()> {
        if synced.num_idle > 0 {
            synced.num_idle -= 1;
            synced.num_notified += 1;
            self.inner.condvar.notify_one();
        } else if synced.num_threads < self.inner.thread_cap {
            if let Err(e) = self.start_thread(synced) {
                if synced.num_threads == 0 {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn start_thread(&self, synced: &mut Synced) -> io::Result<()> {
        let mut builder = std::thread::Builder::new().name((self.inner.thread_name)());
        if let Some(size) = self.inner.stack_size {
            builder = builder.stack_size(size);
        }
        let inner = self.inner.clone();
        builder.spawn(move || inner.run())?;
        synced.num_threads += 1;
        self.inner.num_threads.store(synced.num_threads, Relaxed);
        Ok(())
    }

    /// Stops the pool: queued closures that have not started are
    /// cancelled; running ones are waited for, up to `timeout`. Returns
    /// `true` if every thread exited in time.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> bool {
        let mut synced = self.inner.synced.lock();
        synced.shutdown = true;
        synced.handle = None;
        let queued = std::mem::take(&mut synced.queue);
        self.inner.condvar.notify_all();
        drop(synced);
        for task in queued {
            task.shutdown();
        }
        // A timeout too long for `Instant` means no deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // A runtime dropped inside one of its own blocking closures cannot
        // wait for the thread it runs on: that one exits after the closure.
        let me = Arc::as_ptr(&self.inner);
        let own = usize::from(CURRENT_POOL.try_with(|p| p.get() == me).unwrap_or(false));
        let mut synced = self.inner.synced.lock();
        while synced.num_threads > own {
            match deadline {
                None => synced = self.inner.exited.wait(synced),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    synced = self.inner.exited.wait_timeout(synced, d - now).0;
                }
            }
        }
        true
    }
}

impl Inner {
    fn run(self: Arc<Self>) {
        let _ = CURRENT_POOL.try_with(|p| p.set(Arc::as_ptr(&self)));
        rt_debug!(target: "fiber_runtime::blocking", "blocking thread started");
        let handle = self.synced.lock().handle.clone();
        let _current = handle.as_ref().map(context::set_current);
        let mut synced = self.synced.lock();
        'outer: loop {
            while let Some(task) = synced.queue.pop_front() {
                drop(synced);
                task.run();
                synced = self.synced.lock();
            }
            if synced.shutdown {
                break;
            }
            synced.num_idle += 1;
            loop {
                let (s, timed_out) = self.condvar.wait_timeout(synced, KEEP_ALIVE);
                synced = s;
                if synced.num_notified > 0 {
                    synced.num_notified -= 1;
                    continue 'outer;
                }
                if synced.shutdown {
                    synced.num_idle -= 1;
                    break 'outer;
                }
                if timed_out {
                    synced.num_idle -= 1;
                    if synced.queue.is_empty() {
                        break 'outer;
                    }
                    continue 'outer;
                }
                // Spurious wakeup: keep waiting.
            }
        }
        synced.num_threads -= 1;
        self.num_threads.store(synced.num_threads, Relaxed);
        // Wake `shutdown`, which may wait for all threads or all but its own.
        self.exited.notify_all();
        // Not under the pool's lock: the subscriber's code runs there.
        let _left = synced.num_threads;
        drop(synced);
        rt_debug!(
            target: "fiber_runtime::blocking",
            threads_left = _left,
            "blocking thread exiting"
        );
    }
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("threads", &self.num_threads())
            .finish()
    }
}
