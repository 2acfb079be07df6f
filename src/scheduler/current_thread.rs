//! The current-thread scheduler: every task runs on the thread that calls
//! `block_on`. Tasks woken on that thread go to its local queue; wakes from
//! other threads go through the injector and unpark the driving thread.
//!
//! The `Core` (local queue and parker) is held by whichever thread is in
//! `block_on`; other threads calling `block_on` meanwhile poll only their
//! own future and wait for the core to come free.
//!
//! # Fibers
//!
//! A fiber runs only on the thread it started on, and here that is the
//! thread driving the core when it first ran. So while fibers started on
//! one thread are alive, the core is *bound* to that thread: when it
//! gives the core back, it records how many of its fibers are alive, and
//! another thread that would take the core then panics, saying so (the
//! fiber docs state the rule). The binding lapses once a later hand-back
//! finds none alive.

use crate::fiber::pool as fiber_pool;
use crate::loom::{AtomicBool, Mutex, Ordering::*};
use crate::scheduler::context;
use crate::scheduler::metrics::{LocalMetrics, Snapshot, WorkerMetrics};
use crate::scheduler::park::{Parker, Unparker};
use crate::scheduler::{self, Common, inject::Inject};
use crate::task::{JoinHandle, Notified, RawTask, Runnable, Schedule, Yielded, list::OwnedTasks};
use crate::util::thread_token;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::Instant;

/// Tasks polled between checks of the `block_on` future.
const EVENT_INTERVAL: u32 = 61;
/// Every this many ticks the injector goes before the local queue.
const GLOBAL_POLL_INTERVAL: u32 = 31;

pub(crate) struct Handle {
    shared: Shared,
    pub(crate) common: Common,
    /// The core while no thread drives the scheduler.
    core: Mutex<Option<Box<Core>>>,
    /// Threads in `block_on` waiting for the core.
    waiters: Mutex<Vec<Unparker>>,
}

struct Shared {
    inject: Inject,
    owned: OwnedTasks,
    /// Unparks the thread driving the core.
    unpark: Unparker,
    /// The `block_on` future was woken.
    woken: AtomicBool,
    is_shutdown: AtomicBool,
    metrics: WorkerMetrics,
}

pub(crate) struct Core {
    tasks: VecDeque<Runnable>,
    park: Parker,
    tick: u32,
    metrics: LocalMetrics,
    /// Set when the core was given back by a thread with live fibers of
    /// this runtime (module doc).
    bound: Option<Binding>,
}

/// The thread a current-thread runtime's live fibers run on.
#[derive(Clone, Debug)]
struct Binding {
    /// Its `util::thread_token`.
    thread: u64,
    /// How to name it in a message.
    name: String,
    /// How many of its fibers were alive when it gave the core back.
    fibers: usize,
}

/// The scheduler context installed while a thread drives the core.
pub(crate) struct Context {
    handle: Arc<Handle>,
    core: RefCell<Option<Box<Core>>>,
}

/// Wakes the `block_on` future: flags it and unparks the driver.
struct BlockOnWaker(Arc<Handle>);

impl Wake for BlockOnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.shared.woken.store(true, Release);
        self.0.shared.unpark.unpark();
    }
}

impl Handle {
    pub(crate) fn new(common: Common) -> Arc<Handle> {
        let park = Parker::with_driver(common.driver_slot.clone());
        Arc::new(Handle {
            shared: Shared {
                inject: Inject::new(),
                owned: OwnedTasks::new(1),
                unpark: park.unparker(),
                woken: AtomicBool::new(false),
                is_shutdown: AtomicBool::new(false),
                metrics: WorkerMetrics::default(),
            },
            common,
            core: Mutex::new(Some(Box::new(Core {
                tasks: VecDeque::with_capacity(64),
                park,
                tick: 0,
                metrics: LocalMetrics::default(),
                bound: None,
            }))),
            waiters: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn spawn<F>(me: &Arc<Handle>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (join, notified) = me.shared.owned.bind(future, me.clone(), 0);
        if let Some(notified) = notified {
            me.schedule(notified);
        }
        join
    }

    /// Runs `fut` to completion, driving the scheduler while this thread
    /// holds the core. The caller has entered the runtime context.
    pub(crate) fn block_on<F: Future>(me: &Arc<Handle>, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        loop {
            if let Some(core) = me.take_core() {
                let cx = scheduler::Context::CurrentThread(Context {
                    handle: me.clone(),
                    core: RefCell::new(None),
                });
                /// If the `block_on` future panics, the core is still in
                /// the context: hand it back so the runtime stays usable.
                struct Recover<'a>(&'a scheduler::Context, &'a Arc<Handle>);
                impl Drop for Recover<'_> {
                    fn drop(&mut self) {
                        if let scheduler::Context::CurrentThread(cx) = self.0 {
                            if let Some(core) = cx.core.borrow_mut().take() {
                                self.1.release_core(core);
                            }
                        }
                    }
                }
                let _recover = Recover(&cx, me);
                let (core, out) = context::set_scheduler(&cx, || {
                    let scheduler::Context::CurrentThread(cx) = &cx else {
                        unreachable!()
                    };
                    cx.run(core, fut.as_mut())
                });
                me.release_core(core);
                return out;
            }
            // Another thread drives: poll our own future until it is done
            // or the core comes free.
            let mut parker = Parker::new();
            me.waiters.lock().push(parker.unparker());
            let waker = Waker::from(Arc::new(parker.unparker()));
            if let Poll::Ready(v) = fut
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
            {
                return v;
            }
            // The core may have come free before we registered.
            if me.core.lock().is_some() {
                continue;
            }
            parker.park();
        }
    }

    /// Takes the core to drive the runtime from this thread, if no other
    /// thread drives it.
    ///
    /// # Panics
    ///
    /// Panics if live fibers bind it to another thread (module doc).
    #[track_caller]
    fn take_core(self: &Arc<Self>) -> Option<Box<Core>> {
        let mut slot = self.core.lock();
        let core = slot.take()?;
        match &core.bound {
            Some(b) if b.thread != thread_token() => {
                let (fibers, name) = (b.fibers, b.name.clone());
                *slot = Some(core);
                drop(slot);
                panic!(
                    "this current-thread runtime cannot be driven from this thread: {fibers} \
                     fiber(s) started on thread {name} are still alive, and a fiber never leaves the thread \
                     it started on; call `block_on` on that thread until they finish, or use a \
                     multi-thread runtime",
                );
            }
            _ => Some(core),
        }
    }

    /// Gives the core back, bound to this thread if fibers it started on
    /// this runtime are alive.
    fn release_core(self: &Arc<Self>, mut core: Box<Core>) {
        core.bound = match fiber_pool::started_here(Arc::as_ptr(self) as usize) {
            0 => None,
            fibers => Some(Binding {
                thread: thread_token(),
                name: thread_name(),
                fibers,
            }),
        };
        *self.core.lock() = Some(core);
        for w in std::mem::take(&mut *self.waiters.lock()) {
            w.unpark();
        }
    }

    /// Queues a task that yielded behind every other ready one, those
    /// from other threads included.
    fn push_behind_all(&self, core: &mut Core, task: Runnable) {
        let tasks = &mut core.tasks;
        self.shared
            .inject
            .pop_n(usize::MAX, |t| tasks.push_back(t.into()));
        tasks.push_back(task);
    }

    /// Closes the scheduler and cancels every task (runtime drop).
    pub(crate) fn shutdown(self: &Arc<Self>) {
        self.shared.is_shutdown.store(true, Release);
        // Fibers run on the thread that drives this runtime; unwind the
        // ones this thread started (others cannot be unwound elsewhere).
        fiber_pool::cancel_all(Arc::as_ptr(self) as usize);
        self.shared.inject.close();
        self.shared.owned.close_and_shutdown_all();
        // Out of the lock first: dropping a yielded entry cancels its task,
        // which runs the future's destructor.
        let core = self.core.lock().take();
        let stranded = core
            .as_ref()
            .and_then(|c| c.bound.clone())
            .filter(|b| b.thread != thread_token());
        if let Some(mut core) = core {
            core.tasks.clear();
        }
        self.shared.inject.drain();
        self.shared.owned.close_and_shutdown_all();
        self.common.driver_slot.shutdown();
        if let Some(b) = stranded {
            // Their tasks are gone; their stacks, which only their thread
            // could unwind, were leaked (`fiber/future.rs`, rule 2).
            eprintln!(
                "fiber-runtime: a current-thread runtime was dropped on another thread than the \
                 one its {} live fiber(s) started on: a fiber cannot be unwound off its thread, \
                 so their stacks were leaked; drop the runtime on thread {}",
                b.fibers, b.name,
            );
        }
    }

    pub(crate) fn metrics(&self) -> Snapshot {
        Snapshot {
            workers: vec![self.shared.metrics.snapshot()],
            alive_tasks: self.shared.owned.len(),
            alive_fibers: self.common.alive_fibers.load(Relaxed),
            global_queue_depth: self.shared.inject.len(),
            blocking_threads: self.common.blocking.num_threads(),
        }
    }
}

impl Context {
    fn run<F: Future>(&self, mut core: Box<Core>, mut fut: Pin<&mut F>) -> (Box<Core>, F::Output) {
        let shared = &self.handle.shared;
        let waker = Waker::from(Arc::new(BlockOnWaker(self.handle.clone())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut busy_since = Instant::now();
        shared.woken.store(true, Release);
        loop {
            if shared.woken.swap(false, AcqRel) {
                let (c, res) = self.enter(core, || fut.as_mut().poll(&mut cx));
                core = c;
                if let Poll::Ready(v) = res {
                    core.metrics.busy_ns += busy_since.elapsed().as_nanos() as u64;
                    shared.metrics.flush(&core.metrics);
                    return (core, v);
                }
                // A `block_on` future that keeps waking itself must not
                // starve I/O and timers either: its polls count as ticks.
                core.tick = core.tick.wrapping_add(1);
                if core.tick % EVENT_INTERVAL == 0 {
                    core.park.poll_driver();
                    core = self.wake_deferred(core);
                }
            }
            let mut ran = 0;
            while ran < EVENT_INTERVAL {
                if shared.is_shutdown.load(Acquire) {
                    break;
                }
                core.tick = core.tick.wrapping_add(1);
                let task = if core.tick % GLOBAL_POLL_INTERVAL == 0 {
                    (shared.inject.pop().map(Runnable::from)).or_else(|| core.tasks.pop_front())
                } else {
                    (core.tasks.pop_front()).or_else(|| shared.inject.pop().map(Runnable::from))
                };
                let Some(task) = task else { break };
                core.metrics.polls += 1;
                core = self.enter(core, || task.run()).0;
                ran += 1;
                if core.tick % EVENT_INTERVAL == 0 {
                    // Keep I/O and timers moving while tasks keep us busy.
                    core.park.poll_driver();
                    core = self.wake_deferred(core);
                }
            }
            if ran == 0 && !shared.woken.load(Acquire) {
                // Nothing to do: park until a wake (a remote schedule or
                // the `block_on` waker unparks us).
                core.metrics.parks += 1;
                fiber_pool::trim();
                core.metrics.busy_ns += busy_since.elapsed().as_nanos() as u64;
                shared.metrics.flush(&core.metrics);
                core.park.park();
                core = self.wake_deferred(core);
                busy_since = Instant::now();
            } else if ran == EVENT_INTERVAL {
                shared.metrics.flush(&core.metrics);
            }
        }
    }

    /// Wakes the tasks the driver found ready, with the core installed so
    /// they go straight to the local queue.
    fn wake_deferred(&self, mut core: Box<Core>) -> Box<Core> {
        let mut wakers = Vec::new();
        core.park.take_deferred(&mut wakers);
        if wakers.is_empty() {
            return core;
        }
        self.enter(core, || wakers.into_iter().for_each(Waker::wake))
            .0
    }

    /// Runs `f` with the core installed in the context, so that tasks it
    /// wakes are queued locally.
    fn enter<R>(&self, core: Box<Core>, f: impl FnOnce() -> R) -> (Box<Core>, R) {
        *self.core.borrow_mut() = Some(core);
        let r = f();
        let core = self
            .core
            .borrow_mut()
            .take()
            .expect("current-thread core lost during a poll");
        (core, r)
    }
}

/// How to name this thread in a message.
fn thread_name() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(n) => format!("'{n}'"),
        None => format!("{:?}", t.id()),
    }
}

/// If this thread drives `handle` with its core installed, hands `task`
/// and the core to `f`; otherwise gives the task back.
fn with_local_core<T>(handle: &Arc<Handle>, task: T, f: impl FnOnce(&mut Core, T)) -> Option<T> {
    context::with_scheduler(|cx| {
        if let Some(scheduler::Context::CurrentThread(cx)) = cx {
            if Arc::ptr_eq(&cx.handle, handle) {
                if let Ok(mut core) = cx.core.try_borrow_mut() {
                    if let Some(core) = core.as_mut() {
                        f(core, task);
                        return None;
                    }
                }
            }
        }
        Some(task)
    })
}

impl Schedule for Arc<Handle> {
    fn yield_now(&self, task: Notified) {
        let task = with_local_core(self, task, |core, task| {
            self.push_behind_all(core, task.into())
        });
        if let Some(task) = task {
            self.schedule(task);
        }
    }

    // Only this thread runs this scheduler's tasks, so a RUNNING task
    // queued here is never seen by a second poller.
    const YIELDS_RUNNING: bool = true;

    fn yield_running(&self, task: Yielded) -> Option<Yielded> {
        with_local_core(self, task, |core, task| {
            self.push_behind_all(core, Runnable::Yielded(task))
        })
    }

    fn schedule(&self, task: Notified) {
        let task = with_local_core(self, task, |core, task| core.tasks.push_back(task.into()));
        if let Some(task) = task {
            if self.shared.inject.push(task) {
                self.shared.unpark.unpark();
            }
        }
    }

    fn release(&self, task: RawTask) -> bool {
        self.shared.owned.remove(task)
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentThread").finish_non_exhaustive()
    }
}
