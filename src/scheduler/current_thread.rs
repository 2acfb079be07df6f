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
use crate::loom::{AtomicBool, Condvar, Mutex, Ordering::*};
use crate::scheduler::context;
use crate::scheduler::dump::{self, WorkerSlot};
use crate::scheduler::metrics::{LocalMetrics, Snapshot, WorkerMetrics};
use crate::scheduler::park::{Parker, Unparker};
use crate::scheduler::{self, Common, inject::Inject};
use crate::task_core::list::{Kind, OwnedTasks};
use crate::task_core::{JoinHandle, Notified, RawTask, Runnable, Schedule, SpawnMeta, Yielded};
use crate::util::thread_token;
use crate::util::trace::rt_trace;
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
    core: CoreSlot<Box<Core>>,
    /// Threads in `block_on` waiting for the core.
    waiters: Mutex<Vec<Unparker>>,
}

/// Where the core waits while no thread drives the scheduler, and how
/// shutdown gets it back from a thread that does (module doc).
struct CoreSlot<C> {
    core: Mutex<Option<C>>,
    /// Signalled whenever a core is put back.
    returned: Condvar,
    /// Shutdown began: nobody takes the core any more, and a thread that
    /// drives gives it back at once.
    closed: AtomicBool,
}

/// What `CoreSlot::take` found.
enum Take<C> {
    /// The core, for this thread to drive.
    Took(C),
    /// Another thread drives.
    Busy,
    /// Shut down.
    Closed,
}

impl<C> CoreSlot<C> {
    fn new(core: C) -> CoreSlot<C> {
        CoreSlot {
            core: Mutex::new(Some(core)),
            returned: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn take(&self) -> Take<C> {
        let mut slot = self.core.lock();
        if self.closed.load(Acquire) {
            return Take::Closed;
        }
        match slot.take() {
            Some(core) => Take::Took(core),
            None => Take::Busy,
        }
    }

    fn put(&self, core: C) {
        *self.core.lock() = Some(core);
        self.returned.notify_all();
    }

    fn is_free(&self) -> bool {
        self.core.lock().is_some()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Closes the slot: nobody takes the core from now on, and a thread
    /// that drives it gives it back when it next looks.
    fn close(&self) {
        self.closed.store(true, Release);
    }

    /// After `close`: the core, at once if it is free, else once the
    /// thread driving it gives it back, woken by `wake_driver` (it checks
    /// `is_closed` before it parks, and after every wake).
    fn take_when_back(&self, wake_driver: impl Fn()) -> C {
        debug_assert!(self.is_closed());
        let mut slot = self.core.lock();
        loop {
            if let Some(core) = slot.take() {
                return core;
            }
            drop(slot);
            wake_driver();
            slot = self.core.lock();
            if slot.is_none() {
                slot = self.returned.wait(slot);
            }
        }
    }

    /// After `close`: the core if it is free, without waiting.
    fn take_now(&self) -> Option<C> {
        debug_assert!(self.is_closed());
        self.core.lock().take()
    }
}

struct Shared {
    inject: Inject,
    owned: OwnedTasks,
    /// Unparks the thread driving the core.
    unpark: Unparker,
    /// The `block_on` future was woken.
    woken: AtomicBool,
    /// Shared with the core's `LocalMetrics` (its heartbeat too).
    metrics: Arc<WorkerMetrics>,
    /// Dumps waiting for the driving thread to walk its fibers.
    dump: WorkerSlot,
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
    /// `ring`: the core's io_uring, under that driver.
    pub(crate) fn new(common: Common, ring: Option<crate::uring::Setup>) -> Arc<Handle> {
        let park = Parker::with_driver(common.driver_slot.clone(), ring);
        let metrics = Arc::new(WorkerMetrics::new(common.config.histogram));
        Arc::new(Handle {
            shared: Shared {
                inject: Inject::new(),
                owned: OwnedTasks::new(1),
                unpark: park.unparker(),
                woken: AtomicBool::new(false),
                metrics: metrics.clone(),
                dump: WorkerSlot::new(),
            },
            common,
            core: CoreSlot::new(Box::new(Core {
                tasks: VecDeque::with_capacity(64),
                park,
                tick: 0,
                metrics: LocalMetrics::new(metrics),
                bound: None,
            })),
            waiters: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn spawn<F>(me: &Arc<Handle>, future: F, meta: SpawnMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Handle::spawn_kind(me, future, Kind::Task, meta)
    }

    /// Spawns a fiber's task (its kind matters to shutdown's order).
    pub(crate) fn spawn_fiber<F>(
        me: &Arc<Handle>,
        future: F,
        meta: SpawnMeta,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Handle::spawn_kind(me, future, Kind::Fiber, meta)
    }

    fn spawn_kind<F>(
        me: &Arc<Handle>,
        future: F,
        kind: Kind,
        meta: SpawnMeta,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (join, notified) = me.shared.owned.bind(future, me.clone(), 0, kind, meta);
        match notified {
            Ok(notified) => me.schedule(notified),
            // Shutting down: cancelled before it ever runs.
            Err(refused) => context::drop_refused(refused),
        }
        join
    }

    /// Runs `fut` to completion, driving the scheduler while this thread
    /// holds the core. The caller has entered the runtime context.
    pub(crate) fn block_on<F: Future>(me: &Arc<Handle>, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        // This thread's parker while it waits for the core, made once.
        // The parker this thread waits on, and a waker for it, made once.
        let mut waiter: Option<(Parker, Waker)> = None;
        loop {
            let took = me.take_core();
            if let Take::Took(core) = took {
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
                let ran = context::set_scheduler(&cx, || {
                    let scheduler::Context::CurrentThread(cx) = &cx else {
                        unreachable!()
                    };
                    cx.run(core, fut.as_mut())
                });
                match ran {
                    Ran::Done(core, out) if !me.core.is_closed() => {
                        me.release_core(core);
                        return out;
                    }
                    Ran::Done(core, out) => {
                        // A task dropped the runtime meanwhile.
                        me.finish_shutdown_here(core);
                        return out;
                    }
                    Ran::Closed(core) => {
                        // Shutdown began: the fibers this thread started
                        // can only be unwound here, now. Then the core
                        // goes back, to the shutdown waiting for it (or,
                        // if a task of ours dropped the runtime, emptied
                        // here), and our own future goes on like any other
                        // thread's.
                        me.finish_shutdown_here(core);
                        continue;
                    }
                }
            }
            // Another thread drives, or the runtime is shut down: poll our
            // own future until it is done or the core comes free.
            let (parker, waker) = waiter.get_or_insert_with(|| {
                let parker = Parker::new();
                let waker = Waker::from(Arc::new(parker.unparker()));
                (parker, waker)
            });
            {
                let mut waiters = me.waiters.lock();
                let me_too = parker.unparker();
                // Once per parker: a future woken often would fill the
                // list until the next hand-back.
                if !waiters.iter().any(|w| w.same_as(&me_too)) {
                    waiters.push(me_too);
                }
            }
            if let Poll::Ready(v) = fut
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
            {
                return v;
            }
            // The core may have come free before we registered.
            if matches!(took, Take::Busy) && me.core.is_free() {
                continue;
            }
            parker.park();
        }
    }

    /// Takes the core to drive the runtime from this thread, if no other
    /// thread drives it and it is not shut down.
    ///
    /// # Panics
    ///
    /// Panics if live fibers bind it to another thread (module doc).
    #[track_caller]
    fn take_core(self: &Arc<Self>) -> Take<Box<Core>> {
        let core = match self.core.take() {
            Take::Took(core) => core,
            other => return other,
        };
        match &core.bound {
            Some(b) if b.thread != thread_token() => {
                let (fibers, name) = (b.fibers, b.name.clone());
                // Back, and its waiters told (the fiber thread may be one).
                self.core.put(core);
                self.wake_waiters();
                panic!(
                    "this current-thread runtime cannot be driven from this thread: {fibers} \
                     fiber(s) started on thread {name} are still alive, and a fiber never leaves \
                     the thread it started on; call `block_on` on that thread until they \
                     finish, or use a multi-thread runtime",
                );
            }
            _ => Take::Took(core),
        }
    }

    /// Gives the core back, bound to this thread if fibers it started on
    /// this runtime are alive.
    fn release_core(self: &Arc<Self>, mut core: Box<Core>) {
        // No thread drives it now (also after a panicking `block_on`
        // future): the monitor must not see a poll running.
        core.metrics.set_idle();
        // The next thread to drive the core may be another, which cannot
        // reap this thread's ring: nothing may be in flight in it then.
        core.park.quiesce_ring();
        core.bound = match fiber_pool::started_here(self.common.id) {
            0 => None,
            fibers => Some(Binding {
                thread: thread_token(),
                name: thread_name(),
                fibers,
            }),
        };
        self.core.put(core);
        self.wake_waiters();
        if !std::thread::panicking() {
            // Dumps that asked while this thread drove: its fibers are
            // still here, and nobody else could walk them.
            self.shared.dump.serve(self.common.id, 0);
        }
    }

    /// Wakes the threads in `block_on` waiting for the core.
    fn wake_waiters(&self) {
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
    ///
    /// 1. Close the core slot, so that a thread driving the core stops and
    ///    gives it back when it next looks (woken now, if parked).
    /// 2. Cancel the ordinary tasks: a fiber's destructor, run below (or
    ///    by the driving thread as it stops), may join one of them.
    /// 3. If another thread drives the core, wait for it: it unwinds the
    ///    fibers it started (only it can) and gives the core back. (If
    ///    this thread drives it, a task is dropping the runtime: nothing
    ///    to wait for.)
    /// 4. Unwind the fibers this thread started.
    /// 5. Cancel every task left (the fibers'), drop the queued entries,
    ///    shut the driver down (sockets and timers that outlive the
    ///    runtime fail from now on).
    pub(crate) fn shutdown(self: &Arc<Self>) {
        let here = self.drives_here();
        self.core.close();
        self.shared.unpark.unpark();
        self.shared.owned.close_and_shutdown(Kind::Task);
        let core = if here {
            self.core.take_now()
        } else {
            Some(self.core.take_when_back(|| self.shared.unpark.unpark()))
        };
        self.cancel_fibers_here();
        self.shared.dump.close(0);
        self.shared.inject.close();
        self.shared.owned.close_and_shutdown_all();
        let stranded = core
            .as_ref()
            .and_then(|c| c.bound.clone())
            .filter(|b| b.thread != thread_token());
        // Dropping a yielded entry cancels its task, which runs the
        // future's destructor: not under a lock.
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

    /// Fibers run on the thread that drives this runtime: unwinds the ones
    /// this thread started (others cannot be unwound elsewhere), with the
    /// runtime current for their destructors, as when they ran.
    fn cancel_fibers_here(self: &Arc<Self>) {
        let _current = context::set_current(&scheduler::Handle::CurrentThread(self.clone()));
        fiber_pool::cancel_all(self.common.id);
    }

    /// The thread that drove the core when shutdown began (another thread
    /// waits for it, or a task of ours dropped the runtime): unwinds the
    /// fibers this thread started, cancels what was queued meanwhile, and
    /// puts the core back, empty.
    fn finish_shutdown_here(self: &Arc<Self>, mut core: Box<Core>) {
        self.cancel_fibers_here();
        self.shared.owned.close_and_shutdown_all();
        // Queue entries hold their tasks, which hold this handle: drop
        // them, or the runtime never goes away.
        core.tasks.clear();
        self.shared.inject.drain();
        self.release_core(core);
    }

    /// Whether this thread drives the runtime right now (it is inside one
    /// of its tasks, or its `block_on`).
    fn drives_here(self: &Arc<Self>) -> bool {
        context::with_scheduler(
            |cx| matches!(cx, Some(scheduler::Context::CurrentThread(cx)) if Arc::ptr_eq(&cx.handle, self)),
        )
    }

    /// The driving thread's published metrics, heartbeat included (for
    /// the long-poll monitor).
    pub(crate) fn worker_metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics
    }

    /// The owned-task list (for the long-poll monitor's lookups).
    pub(crate) fn owned(&self) -> &OwnedTasks {
        &self.shared.owned
    }

    pub(crate) fn metrics(&self) -> Snapshot {
        let worker = self.shared.metrics.snapshot();
        Snapshot {
            long_polls: worker.long_polls,
            workers: vec![worker],
            alive_tasks: self.shared.owned.len(),
            alive_fibers: self.shared.owned.fiber_len(),
            global_queue_depth: self.shared.inject.len(),
            blocking_threads: self.common.blocking.num_threads(),
            spawned_tasks: self.shared.owned.inserted_count(),
            remote_schedules: self.shared.inject.remote_count(),
            io_ready: self.common.driver.io.ready_count(),
            io_uring_waits: self.common.driver.ring_counters.waits(),
            io_uring_binds: self.common.driver.ring_counters.binds(),
            handoffs: 0,
            replacement_threads: 0,
        }
    }
}

/// How a `block_on` run of the core ended.
enum Ran<T> {
    /// Its future completed.
    Done(Box<Core>, T),
    /// Shutdown began on another thread, which waits for the core.
    Closed(Box<Core>),
}

impl Context {
    fn run<F: Future>(&self, mut core: Box<Core>, mut fut: Pin<&mut F>) -> Ran<F::Output> {
        let shared = &self.handle.shared;
        let slot = &self.handle.core;
        let waker = Waker::from(Arc::new(BlockOnWaker(self.handle.clone())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut busy_since = Instant::now();
        shared.woken.store(true, Release);
        loop {
            if shared.woken.swap(false, AcqRel) {
                core.metrics.begin_block_on_poll();
                let (c, res) = self.enter(core, || fut.as_mut().poll(&mut cx));
                core = c;
                core.metrics.end_block_on_poll();
                if let Poll::Ready(v) = res {
                    core.metrics.busy_ns += busy_since.elapsed().as_nanos() as u64;
                    shared.metrics.set_queue_depth(core.tasks.len());
                    shared.metrics.flush(&mut core.metrics);
                    core.metrics.set_idle();
                    return Ran::Done(core, v);
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
            if slot.is_closed() {
                core.metrics.busy_ns += busy_since.elapsed().as_nanos() as u64;
                shared.metrics.set_queue_depth(core.tasks.len());
                shared.metrics.flush(&mut core.metrics);
                core.metrics.set_idle();
                return Ran::Closed(core);
            }
            while ran < EVENT_INTERVAL {
                if slot.is_closed() {
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
                core.metrics.begin_poll(task.addr());
                core = self.enter(core, || task.run()).0;
                core.metrics.end_poll();
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
                fiber_pool::trim(&self.handle.common.fiber_stacks);
                let now = Instant::now();
                core.metrics.busy_ns += now.duration_since(busy_since).as_nanos() as u64;
                crate::util::clock::advance_idle(now);
                shared.metrics.set_queue_depth(core.tasks.len());
                shared.metrics.flush(&mut core.metrics);
                core.metrics.set_idle();
                rt_trace!(target: "fiber_runtime::scheduler", worker = 0, "park");
                core.park.park();
                rt_trace!(target: "fiber_runtime::scheduler", worker = 0, "unpark");
                busy_since = Instant::now();
                crate::util::clock::advance(busy_since);
                shared.dump.serve(self.handle.common.id, 0);
                core = self.wake_deferred(core);
            } else if ran == EVENT_INTERVAL {
                crate::util::clock::advance(Instant::now());
                shared.dump.serve(self.handle.common.id, 0);
                shared.metrics.set_queue_depth(core.tasks.len());
                shared.metrics.flush(&mut core.metrics);
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
            if self.shared.inject.push_remote(task) {
                self.shared.unpark.unpark();
            }
        }
    }

    fn release(&self, task: RawTask) -> bool {
        self.shared.owned.remove(task)
    }
}

/// What a dump needs of this flavor (`scheduler/dump.rs`): its one
/// worker is the thread driving it, or the one its fibers are bound to.
impl dump::Target for Handle {
    fn runtime_id(&self) -> usize {
        self.common.id
    }

    fn owned(&self) -> &OwnedTasks {
        &self.shared.owned
    }

    fn num_workers(&self) -> usize {
        1
    }

    fn slot(&self, _worker: usize) -> &WorkerSlot {
        &self.shared.dump
    }

    fn wake(&self, _worker: usize) {
        self.shared.unpark.unpark();
    }

    fn here(&self) -> Option<usize> {
        context::with_scheduler(|cx| {
            let drives = matches!(cx, Some(scheduler::Context::CurrentThread(cx))
                if std::ptr::eq(&*cx.handle, self));
            (drives || fiber_pool::started_here(self.common.id) > 0).then_some(0)
        })
    }

    fn driven(&self, _worker: usize) -> bool {
        !self.core.is_free()
    }

    fn fiber_worker(&self, _task: &crate::task_core::list::TaskRef) -> Option<usize> {
        Some(0)
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentThread").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{Arc, model, thread};

    /// Issue 9, bug 8: shutdown waits for the core of a thread that drives
    /// the runtime. That thread, parked, is woken, sees the slot closed
    /// and gives the core back: in no interleaving does either hang (loom
    /// reports a deadlock) or the core get lost.
    #[test]
    fn loom_shutdown_takes_the_core_back_from_a_parked_driver() {
        model(|| {
            let slot = Arc::new(CoreSlot::new(7u8));
            let mut parker = Parker::new();
            let unparker = parker.unparker();
            let Take::Took(core) = slot.take() else {
                panic!("the core was free")
            };
            let closer = {
                let slot = slot.clone();
                thread::spawn(move || {
                    slot.close();
                    slot.take_when_back(|| unparker.unpark())
                })
            };
            // The driver's loop: look, then park, until closed.
            while !slot.is_closed() {
                parker.park();
            }
            slot.put(core);
            assert_eq!(closer.join().unwrap(), 7);
            assert!(matches!(slot.take(), Take::Closed));
        });
    }
}
