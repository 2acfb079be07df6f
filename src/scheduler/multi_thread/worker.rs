//! The multi-thread scheduler's workers.
//!
//! # Run loop
//!
//! Each worker owns a `Core` (local queue, LIFO slot, parker) and loops:
//!
//! 1. every `GLOBAL_POLL_INTERVAL` ticks, take a task from the injector
//!    first, so that remote work is not starved by local work;
//! 2. otherwise run the LIFO slot (the task most recently woken or spawned
//!    by the previous one: it is likely hot in cache), then the local queue,
//!    then a batch from the injector;
//! 3. with nothing local, become a *searcher* (at most half the workers)
//!    and steal half of a random peer's queue;
//! 4. with nothing to steal, park. The last searcher to park re-checks all
//!    queues first, so a task pushed while it was giving up is not stranded.
//!
//! After polling a task the worker polls whatever landed in the LIFO slot,
//! at most `MAX_LIFO_POLLS_PER_TICK` times in a row, so two tasks waking
//! each other cannot monopolise it. A task that wakes itself (`yield_now`)
//! goes to the back of the local queue, behind everything else.
//!
//! Tasks queued by the completions of this worker's ring (the io_uring
//! driver) wake no parked peer; while any worker has done so, parking
//! workers park for a bounded time and look again (`rescue.rs`).
//!
//! # Shutdown
//!
//! 1. `Handle::shutdown` closes the injector, sets `is_shutdown`,
//!    unparks every worker, and cancels the ordinary (non-fiber) tasks,
//!    so that a fiber destructor that joins one, at step 2, gets its
//!    answer.
//! 2. Each worker sees the flag (at its next maintenance tick or unpark),
//!    stops polling, unwinds the fibers it started (only it can), and
//!    hands its core to `shutdown_cores`.
//! 3. The thread dropping the runtime joins the workers, then
//!    `Handle::finalize` closes the owned-task list and cancels every task
//!    in it (dropping each future once, never polling it again), and drops
//!    the queue entries left in cores and injector.
//!
//! # Worker hand-off
//!
//! A worker stuck in one poll can be replaced by a thread of its own
//! (`stuck.rs`, which documents the protocol): the slots after the
//! workers' in `Shared::remotes` are for those threads, which run this
//! same loop. Fibers already started on the stuck worker stay with it.

use super::idle::Idle;
use super::queue::{self, LOCAL_QUEUE_CAPACITY, Local, Steal};
use super::rescue::{self, Rescue};
use super::spread::{LocalSpread, Spread};
use super::stuck::{Handoff, HandoffConfig, LifoSlot, Push, Take};
use crate::fiber::pool as fiber_pool;
use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering::*};
use crate::scheduler::context;
use crate::scheduler::dump::{self, WorkerSlot};
use crate::scheduler::metrics::{LocalMetrics, Snapshot, WorkerMetrics, WorkerSnapshot};
use crate::scheduler::park::{Parker, Unparker};
use crate::scheduler::{self, Common, inject::Inject};
use crate::task_core::list::{Kind, OwnedTasks};
use crate::task_core::{JoinHandle, Notified, RawTask, Runnable, Schedule, SpawnMeta, Yielded};
use crate::util::trace::rt_trace;
use crate::util::{CachePadded, FastRand};
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Ticks between injector checks and maintenance (prime, as in tokio, so
/// it does not resonate with task patterns).
const GLOBAL_POLL_INTERVAL: u32 = 61;
const MAINTENANCE_INTERVAL: u32 = 61;
/// LIFO-slot polls in a row before the task goes to the queue instead.
const MAX_LIFO_POLLS_PER_TICK: usize = 3;

/// Shared by all workers and every task of the runtime.
pub(crate) struct Handle {
    pub(crate) shared: Shared,
    pub(crate) common: Common,
}

pub(crate) struct Shared {
    /// One slot per worker, then one per replacement thread the worker
    /// hand-off may start (`stuck.rs`).
    pub(super) remotes: Box<[Remote]>,
    /// The workers (the first `num_workers` slots).
    pub(super) num_workers: usize,
    /// Hot, written by every worker: on cache lines of their own.
    pub(super) inject: CachePadded<Inject>,
    pub(super) idle: CachePadded<Idle>,
    owned: OwnedTasks,
    pub(super) is_shutdown: AtomicBool,
    /// Cores handed back by exited workers, drained by `finalize`.
    shutdown_cores: Mutex<ShutdownCores>,
    /// Replacement threads for stuck workers (`stuck.rs`).
    pub(super) handoff: Handoff,
    /// Ring-woken tasks queued without a notify (`rescue.rs`).
    rescue: Rescue,
    /// Where the busy workers run (`spread.rs`).
    spread: Spread,
}

/// The cores of exited workers, and whether `finalize` already ran (a
/// worker whose task dropped the runtime exits after it).
struct ShutdownCores {
    /// (Boxed because a core moves in and out of the worker context on
    /// every poll; a box keeps that move one pointer wide.)
    #[allow(clippy::vec_box)]
    cores: Vec<Box<Core>>,
    finalized: bool,
}

/// What other threads may touch of a worker.
pub(super) struct Remote {
    steal: Steal,
    /// Pinned tasks (fibers) woken from other threads, for this worker.
    inbox: Mutex<Vec<Notified>>,
    inbox_len: AtomicUsize,
    pub(super) unpark: Unparker,
    /// The LIFO slot, which the worker hand-off may take over.
    pub(super) lifo: Arc<CachePadded<LifoSlot>>,
    /// A replacement thread in this slot is to retire (`stuck.rs`).
    pub(super) retire: AtomicBool,
    /// Shared with the worker's `LocalMetrics` (its heartbeat too).
    metrics: Arc<WorkerMetrics>,
    /// Dumps waiting for this worker to walk its fibers.
    dump: WorkerSlot,
}

/// What only the worker itself touches.
pub(crate) struct Core {
    pub(super) index: usize,
    tick: u32,
    /// The task most recently woken or spawned here (shared with
    /// `Remote::lifo` for the worker hand-off; only this worker uses it
    /// otherwise).
    pub(super) lifo: Arc<CachePadded<LifoSlot>>,
    /// Tasks pinned to this worker (fibers): never stolen.
    pub(super) pinned: std::collections::VecDeque<Runnable>,
    pub(super) run_queue: Local,
    pub(super) is_searching: bool,
    /// Leave the run loop: the runtime shuts down, or (with `retiring`)
    /// this replacement thread retires.
    pub(super) is_shutdown: bool,
    /// The core of a replacement thread (a spare slot, `stuck.rs`).
    is_replacement: bool,
    /// This replacement thread was told to retire.
    pub(super) retiring: bool,
    pub(super) park: Parker,
    rand: FastRand,
    pub(super) metrics: LocalMetrics,
    busy_since: Instant,
    /// Waking what this worker's ring completed: no notify for what is
    /// queued (`rescue.rs`).
    waking_ring: bool,
    /// A notify was left out while `waking_ring`.
    unannounced: bool,
    /// Bounded parks since the last steal or clear (`rescue.rs`, step 3).
    rescue_rounds: u32,
    /// When this worker last moved off a shared CPU (`spread.rs`).
    spread: LocalSpread,
}

/// A worker's scheduler context, installed in the thread-local while it
/// runs; `schedule` uses it to push locally.
pub(crate) struct Context {
    pub(super) handle: Arc<Handle>,
    /// This worker's index (also its owned-list shard).
    pub(super) index: usize,
    pub(super) core: RefCell<Option<Box<Core>>>,
    /// Wakers the driver collected, woken with the core installed so the
    /// tasks land in this worker's queue (spare capacity kept between
    /// uses).
    deferred: RefCell<Vec<std::task::Waker>>,
}

/// Builds the shared state and one core per worker; the cores of the
/// spare slots (one per replacement thread `handoff` allows) stay in the
/// shared state until a replacement thread runs in one.
#[allow(clippy::vec_box)] // see `ShutdownCores::cores`
pub(crate) fn create(
    num_workers: usize,
    handoff: HandoffConfig,
    spread: bool,
    common: Common,
    rings: Vec<crate::uring::Setup>,
) -> (Arc<Handle>, Vec<Box<Core>>) {
    let slots = num_workers + handoff.max_threads;
    let mut cores = Vec::with_capacity(slots);
    let mut remotes = Vec::with_capacity(slots);
    let mut rings = rings.into_iter();
    for index in 0..slots {
        let (steal, run_queue) = queue::local();
        // Workers park in their ring (if the runtime runs io_uring); the
        // spare slots, whose threads come and go, have none.
        let ring = if index < num_workers {
            rings.next()
        } else {
            None
        };
        let park = Parker::with_driver(common.driver_slot.clone(), ring);
        let metrics = Arc::new(WorkerMetrics::new(common.config.histogram));
        let lifo = Arc::new(CachePadded::new(LifoSlot::new()));
        remotes.push(Remote {
            steal,
            inbox: Mutex::new(Vec::new()),
            inbox_len: AtomicUsize::new(0),
            unpark: park.unparker(),
            lifo: lifo.clone(),
            retire: AtomicBool::new(false),
            metrics: metrics.clone(),
            dump: WorkerSlot::new(),
        });
        cores.push(Box::new(Core {
            index,
            tick: 0,
            lifo,
            pinned: std::collections::VecDeque::new(),
            run_queue,
            is_searching: false,
            is_shutdown: false,
            is_replacement: index >= num_workers,
            retiring: false,
            park,
            rand: FastRand::new(index as u64 + 1),
            metrics: LocalMetrics::new(metrics),
            busy_since: Instant::now(),
            waking_ring: false,
            unannounced: false,
            rescue_rounds: 0,
            spread: LocalSpread::default(),
        }));
    }
    let spare = cores.split_off(num_workers);
    let handle = Arc::new(Handle {
        shared: Shared {
            remotes: remotes.into_boxed_slice(),
            num_workers,
            inject: CachePadded::new(Inject::new()),
            idle: CachePadded::new(Idle::new(num_workers, slots)),
            owned: OwnedTasks::new(num_workers),
            is_shutdown: AtomicBool::new(false),
            shutdown_cores: Mutex::new(ShutdownCores {
                cores: Vec::new(),
                finalized: false,
            }),
            handoff: Handoff::new(handoff, num_workers, spare),
            rescue: Rescue::new(),
            spread: Spread::new(slots, spread),
        },
        common,
    });
    (handle, cores)
}

/// The body of a worker thread.
pub(crate) fn run(handle: Arc<Handle>, core: Box<Core>) {
    let sched_handle = scheduler::Handle::MultiThread(handle.clone());
    let _enter = context::enter_runtime(&sched_handle);
    let index = core.index;
    let cx = scheduler::Context::MultiThread(Context {
        handle,
        index,
        core: RefCell::new(None),
        deferred: RefCell::new(Vec::new()),
    });
    context::set_scheduler(&cx, || {
        let scheduler::Context::MultiThread(cx) = &cx else {
            unreachable!()
        };
        cx.run(core)
    });
}

impl Context {
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// `context::with_ring` on this worker.
    pub(crate) fn with_ring<R>(
        &self,
        runtime_id: usize,
        f: impl FnOnce(&mut crate::uring::Ring) -> R,
    ) -> Option<R> {
        if self.handle.common.id != runtime_id {
            return None;
        }
        let mut core = self.core.try_borrow_mut().ok()?;
        core.as_mut()?.park.ring().map(f)
    }

    fn run(&self, mut core: Box<Core>) {
        core.busy_since = Instant::now();
        while !core.is_shutdown {
            core.tick = core.tick.wrapping_add(1);
            if core.tick % MAINTENANCE_INTERVAL == 0 {
                self.maintenance(&mut core);
                core = self.wake_deferred(core);
            }
            if let Some(task) = core.next_task(&self.handle) {
                core = self.run_task(task, core);
            } else if let Some(task) = core.steal_work(&self.handle) {
                core = self.run_task(task.into(), core);
            } else {
                core = self.park(core);
                core = self.wake_deferred(core);
            }
        }
        // Leaving (shutdown, or a replacement retiring): no CPU of ours.
        self.handle.shared.spread.parked(self.index);
        if core.retiring {
            // A replacement thread leaves (`stuck.rs`), unless the runtime
            // shuts down first.
            match self.retire(core) {
                Some(c) => core = c,
                None => return,
            }
        }
        core.flush_metrics(&self.handle);
        core.metrics.set_idle();
        // A last answer to dumps, with the fibers still there; later ones
        // hear that this worker stopped.
        let slot = &self.handle.shared.remotes[self.index].dump;
        slot.serve(self.handle.common.id, self.index);
        slot.close(self.index);
        // Fibers started here unwind here, before the worker exits (they
        // may never run on another thread).
        *self.core.borrow_mut() = Some(core);
        fiber_pool::cancel_all(self.handle.common.id);
        let mut core = self
            .core
            .borrow_mut()
            .take()
            .expect("worker core lost while unwinding fibers");
        // Only this thread can reap what its ring has in flight.
        core.park.shutdown_ring();
        let mut cores = self.handle.shared.shutdown_cores.lock();
        if cores.finalized {
            // A task of ours dropped the runtime and `finalize` ran
            // already: empty the core here (its entries hold their tasks,
            // which hold the handle: they would never be freed).
            drop(cores);
            core.drain();
        } else {
            cores.cores.push(core);
            drop(cores);
        }
        if self.index >= self.handle.shared.num_workers {
            self.handle.replacement_exited(self.index, None);
        }
    }

    fn maintenance(&self, core: &mut Core) {
        core.flush_metrics(&self.handle);
        if self
            .handle
            .shared
            .spread
            .check(self.index, &mut core.spread)
        {
            core.metrics.cpu_moves += 1;
        }
        // Busy workers still move I/O and timers along.
        core.park.poll_driver();
        if self.handle.shared.is_shutdown.load(Acquire) {
            core.is_shutdown = true;
        }
        self.serve_dump();
        self.check_retire(core);
    }

    /// Answers the dumps waiting for this worker, if any (a safe point:
    /// outside any poll).
    #[inline]
    fn serve_dump(&self) {
        self.handle.shared.remotes[self.index]
            .dump
            .serve(self.handle.common.id, self.index);
    }

    /// A replacement thread told to retire leaves the run loop.
    fn check_retire(&self, core: &mut Core) {
        if core.is_replacement && self.handle.shared.remotes[core.index].retire.load(Acquire) {
            core.retiring = true;
            core.is_shutdown = true;
        }
    }

    /// Wakes the tasks the driver found ready while this worker turned it,
    /// with the core installed: they go to this worker's LIFO slot and
    /// queue instead of the injector.
    pub(super) fn wake_deferred(&self, mut core: Box<Core>) -> Box<Core> {
        let mut wakers = std::mem::take(&mut *self.deferred.borrow_mut());
        let ring = core.park.take_deferred(&mut wakers);
        if wakers.is_empty() {
            *self.deferred.borrow_mut() = wakers;
            return core;
        }
        *self.core.borrow_mut() = Some(core);
        self.wake_batch(&mut wakers, ring);
        *self.deferred.borrow_mut() = wakers;
        self.core
            .borrow_mut()
            .take()
            .expect("worker core lost while waking I/O tasks")
    }

    /// Wakes `wakers`, the first `ring` of them for completions of this
    /// worker's ring: what those queue wakes no peer, unless `rescue.rs`
    /// step 1 says so after them. The core must be installed.
    fn wake_batch(&self, wakers: &mut Vec<std::task::Waker>, ring: usize) {
        if ring > 0 {
            self.with_core(|core| core.waking_ring = true);
            for w in wakers.drain(..ring) {
                w.wake();
            }
            let unannounced = self.with_core(|core| {
                core.waking_ring = false;
                std::mem::take(&mut core.unannounced)
            });
            if unannounced && self.handle.shared.rescue.after_unannounced() {
                self.handle.wake_all_parked();
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }
    }

    /// `f` on the installed core.
    fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(self
            .core
            .borrow_mut()
            .as_mut()
            .expect("worker core lost while waking I/O tasks"))
    }

    fn run_task(&self, task: Runnable, mut core: Box<Core>) -> Box<Core> {
        core.transition_from_searching(&self.handle);
        let mut core = self.poll(core, task.addr(), || task.run());
        let mut lifo_polls = 0;
        loop {
            let task = match core.lifo.take() {
                Take::Empty => return core,
                Take::Task(task) => task,
                // Handed off during this poll (`stuck.rs`): rejoin.
                Take::Claimed => {
                    self.handle.rejoin(&core);
                    return core;
                }
            };
            if lifo_polls >= MAX_LIFO_POLLS_PER_TICK {
                // Let the rest of the queue run first.
                core.run_queue
                    .push_back_or_overflow(task, &self.handle.shared.inject);
                return core;
            }
            lifo_polls += 1;
            core = self.poll(core, task.addr(), || task.run());
        }
    }

    /// One task poll, with the core installed (so that what it wakes is
    /// queued here), counted and published in the heartbeat
    /// (`scheduler/metrics.rs`).
    #[inline(always)]
    pub(super) fn poll(&self, mut core: Box<Core>, addr: usize, run: impl FnOnce()) -> Box<Core> {
        core.metrics.polls += 1;
        core.metrics.begin_poll(addr);
        *self.core.borrow_mut() = Some(core);
        run();
        let mut core = self
            .core
            .borrow_mut()
            .take()
            .expect("worker core lost during a poll");
        core.metrics.end_poll();
        core
    }

    fn park(&self, mut core: Box<Core>) -> Box<Core> {
        self.check_retire(&mut core);
        if core.retiring {
            // It exits instead (and so must not clear the flag below,
            // which promises a look at the queues).
            return core;
        }
        let rescue = &self.handle.shared.rescue;
        if core.rescue_rounds >= rescue::ROUNDS {
            // `rescue.rs`, step 3.
            core.rescue_rounds = 0;
            rescue.clear();
            if self.handle.work_pending() {
                return core;
            }
        }
        if !core.transition_to_parked(&self.handle) {
            return core;
        }
        if core.lifo.is_claimed() {
            // Handed off while it was about to park, not stuck at all
            // (`stuck.rs`: the hand-off looks at the sleepers list after
            // claiming, so one of the two sees the other): rejoin instead.
            core.transition_from_parked(&self.handle);
            self.handle.rejoin(&core);
            return core;
        }
        // Idle from here: give back surplus fiber stack pages.
        fiber_pool::trim(&self.handle.common.fiber_stacks);
        core.metrics.parks += 1;
        // Adds the busy stretch up to now (once) and publishes.
        core.flush_metrics(&self.handle);
        core.metrics.set_idle();
        crate::util::clock::advance_idle(core.busy_since);
        rt_trace!(target: "fiber_runtime::scheduler", worker = self.index, "park");
        // Listed as a sleeper above: `rescue.rs`, step 2.
        self.handle.shared.spread.parked(self.index);
        let bound = rescue.bound();
        core.rescue_rounds += u32::from(bound.is_some());
        core.park.park_for(bound);
        rt_trace!(target: "fiber_runtime::scheduler", worker = self.index, "unpark");
        core.busy_since = Instant::now();
        crate::util::clock::advance(core.busy_since);
        self.serve_dump();
        if self.handle.shared.is_shutdown.load(Acquire) {
            core.is_shutdown = true;
        } else {
            core.transition_from_parked(&self.handle);
            self.check_retire(&mut core);
        }
        core
    }
}

impl Core {
    /// Drops every queued entry (shutdown; the tasks were cancelled).
    pub(super) fn drain(&mut self) {
        drop(self.lifo.take_for_shutdown());
        self.pinned.clear();
        while self.run_queue.pop().is_some() {}
    }

    fn next_task(&mut self, handle: &Handle) -> Option<Runnable> {
        self.take_inbox(handle);
        // Pinned tasks and the rest take turns, so neither starves.
        if self.tick % 2 == 0 {
            if let Some(task) = self.pinned.pop_front() {
                return Some(task);
            }
        }
        if let Some(task) = self.next_unpinned_task(handle) {
            return Some(task.into());
        }
        self.pinned.pop_front()
    }

    /// Moves the pinned tasks woken from other threads into `pinned`.
    #[inline]
    pub(super) fn take_inbox(&mut self, handle: &Handle) {
        let remote = &handle.shared.remotes[self.index];
        if remote.inbox_len.load(Acquire) != 0 {
            let mut inbox = remote.inbox.lock();
            self.pinned.extend(inbox.drain(..).map(Runnable::from));
            remote.inbox_len.store(0, Release);
        }
    }

    fn next_unpinned_task(&mut self, handle: &Handle) -> Option<Notified> {
        let inject = &handle.shared.inject;
        if self.tick % GLOBAL_POLL_INTERVAL == 0 {
            if let Some(task) = inject.pop() {
                return Some(task);
            }
        }
        match self.lifo.take() {
            Take::Task(task) => return Some(task),
            Take::Empty => {}
            // Handed off between two polls, so not stuck: rejoin.
            Take::Claimed => {
                handle.rejoin(self);
                if let Take::Task(task) = self.lifo.take() {
                    return Some(task);
                }
            }
        }
        if let Some(task) = self.run_queue.pop() {
            return Some(task);
        }
        if inject.is_empty() {
            return None;
        }
        // Take a fair share of the injector into the local queue.
        let cap = self.run_queue.remaining().min(LOCAL_QUEUE_CAPACITY / 2);
        let n = (inject.len() / handle.shared.num_workers + 1).clamp(1, cap.max(1));
        let mut first = None;
        let mut queued = false;
        let run_queue = &mut self.run_queue;
        inject.pop_n(n, |task| {
            if first.is_none() {
                first = Some(task);
            } else {
                run_queue.push_back_or_overflow(task, inject);
                queued = true;
            }
        });
        if queued {
            // The rest of the batch sits in our queue while we run the
            // first: a peer that looked at the injector and at our queue
            // in between (it saw neither) may have parked. Wake one if
            // nobody searches, or the batch waits for us, maybe behind a
            // long poll.
            handle.notify_parked();
        }
        first
    }

    fn steal_work(&mut self, handle: &Handle) -> Option<Notified> {
        if !self.transition_to_searching(handle) {
            return None;
        }
        let remotes = &handle.shared.remotes;
        // The spare slots only while a replacement thread runs in one.
        let n = handle.shared.handoff.steal_range();
        let start = self.rand.below(n);
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            if let Some(task) = remotes[victim].steal.steal_into(&mut self.run_queue) {
                self.metrics.steals += 1;
                self.rescue_rounds = 0;
                rt_trace!(
                    target: "fiber_runtime::scheduler",
                    worker = self.index,
                    from = victim,
                    // The one returned and the ones moved into our queue.
                    count = self.run_queue.len() + 1,
                    "steal"
                );
                return Some(task);
            }
        }
        handle.shared.inject.pop()
    }

    fn transition_to_searching(&mut self, handle: &Handle) -> bool {
        if !self.is_searching {
            self.is_searching = handle.shared.idle.transition_worker_to_searching();
        }
        self.is_searching
    }

    pub(super) fn transition_from_searching(&mut self, handle: &Handle) {
        if !self.is_searching {
            return;
        }
        self.is_searching = false;
        if handle.shared.idle.transition_worker_from_searching() {
            // We were the last searcher and found work: there may be more,
            // so hand the search to a parked worker.
            handle.notify_parked();
        }
    }

    /// Returns `false` if the worker should not park after all.
    fn transition_to_parked(&mut self, handle: &Handle) -> bool {
        if !self.lifo.is_empty()
            || !self.run_queue.is_empty()
            || !self.pinned.is_empty()
            || handle.shared.remotes[self.index].inbox_len.load(Acquire) != 0
        {
            return false;
        }
        let nobody_searches = handle
            .shared
            .idle
            .transition_worker_to_parking(self.index, self.is_searching);
        self.is_searching = false;
        if nobody_searches {
            handle.notify_if_work_pending();
        }
        true
    }

    /// After a park returned: either another thread unparked us (it
    /// took us off the sleepers list and counted us as searching), or the
    /// driver delivered I/O or timer events (we are still listed: take
    /// ourselves off, as a non-searching worker, and look for the tasks
    /// those events woke).
    fn transition_from_parked(&mut self, handle: &Handle) {
        self.is_searching = !handle.shared.idle.unpark_worker_by_id(self.index);
    }

    pub(super) fn flush_metrics(&mut self, handle: &Handle) {
        let now = Instant::now();
        crate::util::clock::advance(now);
        self.metrics.busy_ns += now.duration_since(self.busy_since).as_nanos() as u64;
        self.busy_since = now;
        handle.shared.remotes[self.index]
            .metrics
            .flush(&mut self.metrics);
    }
}

impl Handle {
    pub(crate) fn spawn<F>(me: &Arc<Handle>, future: F, meta: SpawnMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Handle::spawn_with(me, future, me.clone(), Kind::Task, meta)
    }

    /// Binds `future` under `sched` and submits it.
    fn spawn_with<F, S>(
        me: &Arc<Handle>,
        future: F,
        sched: S,
        kind: Kind,
        meta: SpawnMeta,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        S: crate::task_core::Schedule,
    {
        let (join, notified) = me
            .shared
            .owned
            .bind(future, sched, me.spawn_shard(), kind, meta);
        match notified {
            Ok(notified) => me.schedule_task(notified, false),
            // Shutting down: cancelled before it ever runs.
            Err(refused) => context::drop_refused(refused),
        }
        join
    }

    /// The owned-list shard for a task spawned here: the worker's own when
    /// spawned on one of ours (so its lock stays in this core's cache),
    /// else round-robin.
    fn spawn_shard(self: &Arc<Self>) -> usize {
        thread_local! {
            static NEXT_REMOTE_SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        }
        context::with_scheduler(|cx| match cx {
            Some(scheduler::Context::MultiThread(cx)) if Arc::ptr_eq(&cx.handle, self) => cx.index,
            _ => NEXT_REMOTE_SHARD
                .try_with(|c| {
                    let v = c.get();
                    c.set(v.wrapping_add(1));
                    v
                })
                .unwrap_or(0),
        })
    }

    /// Spawns a task that, once it has first run, only ever runs on the
    /// worker where it did (a fiber: once started it must not migrate).
    /// Until then it is an ordinary task, which idle workers may steal, so
    /// fibers spread over the workers when they start.
    pub(crate) fn spawn_pinned<F>(
        me: &Arc<Handle>,
        future: F,
        meta: SpawnMeta,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let sched = PinnedSchedule {
            handle: me.clone(),
            owner: AtomicUsize::new(NO_OWNER),
        };
        Handle::spawn_with(me, future, sched, Kind::Fiber, meta)
    }

    /// If this thread is a worker of ours (worker `only`, if given) with
    /// its core installed, hands `task` and the core to `f`; otherwise
    /// gives the task back.
    fn with_local_core<T>(
        self: &Arc<Self>,
        only: Option<usize>,
        task: T,
        f: impl FnOnce(&mut Core, T),
    ) -> Option<T> {
        context::with_scheduler(|cx| {
            if let Some(scheduler::Context::MultiThread(cx)) = cx {
                if only.is_none_or(|i| i == cx.index) && Arc::ptr_eq(&cx.handle, self) {
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

    fn schedule_pinned(self: &Arc<Self>, owner: usize, task: Notified) {
        let task = self.with_local_core(Some(owner), task, |core, task| {
            core.pinned.push_back(task.into())
        });
        if let Some(task) = task {
            let remote = &self.shared.remotes[owner];
            {
                let mut inbox = remote.inbox.lock();
                if self.shared.is_shutdown.load(Acquire) {
                    drop(inbox);
                    drop(task);
                    return;
                }
                inbox.push(task);
                remote.inbox_len.store(inbox.len(), Release);
            }
            // Only this worker may run it: wake it in particular (it takes
            // itself off the sleepers list when it wakes).
            remote.unpark.unpark();
        }
    }

    fn schedule_task(self: &Arc<Self>, task: Notified, is_yield: bool) {
        let task = self.with_local_core(None, task, |core, task| {
            self.schedule_local(core, task, is_yield)
        });
        if let Some(task) = task {
            // From outside a worker of ours: through the injector.
            if self.shared.inject.push_remote(task) {
                self.notify_parked();
            }
        }
    }

    fn schedule_local(&self, core: &mut Core, task: Notified, is_yield: bool) {
        let should_notify = if is_yield {
            // Tasks waiting in the injector go first too (one atomic load
            // when it is empty), so a yield lets every ready task run.
            let inject = &self.shared.inject;
            if !inject.is_empty() {
                let room = core.run_queue.remaining().saturating_sub(1);
                let run_queue = &mut core.run_queue;
                inject.pop_n(room, |t| {
                    run_queue.push_back_or_overflow(t, inject);
                });
            }
            core.run_queue.push_back_or_overflow(task, inject);
            true
        } else {
            match core.lifo.push(task) {
                Push::Done(Some(prev)) => {
                    core.run_queue
                        .push_back_or_overflow(prev, &self.shared.inject);
                    // While waking a ring batch: announced, if need be,
                    // after it (`wake_batch`).
                    core.unannounced |= core.waking_ring;
                    !core.waking_ring
                }
                // Only the LIFO slot, which peers cannot steal: no one to
                // wake for it.
                Push::Done(None) => false,
                // This worker was handed off (`stuck.rs`): the task goes
                // where its replacement can steal it.
                Push::Claimed(task) => {
                    core.run_queue
                        .push_back_or_overflow(task, &self.shared.inject);
                    true
                }
            }
        };
        if should_notify {
            self.notify_parked();
        }
    }

    pub(super) fn notify_parked(&self) {
        if let Some(index) = self.shared.idle.worker_to_notify() {
            self.shared.remotes[index].unpark.unpark();
        }
    }

    /// Wakes every worker on the sleepers list without taking it off
    /// (`rescue.rs`, step 1): each wakes as if spuriously, finds nothing or
    /// something, and parks again, bounded while the flag is set.
    fn wake_all_parked(&self) {
        for (i, remote) in self.shared.remotes.iter().enumerate() {
            if self.shared.idle.is_parked(i) {
                remote.unpark.unpark();
            }
        }
    }

    fn notify_if_work_pending(&self) {
        if self.work_pending() {
            self.notify_parked();
        }
    }

    /// Whether any queue a worker may take from holds a task.
    fn work_pending(&self) -> bool {
        self.shared.remotes.iter().any(|r| !r.steal.is_empty()) || !self.shared.inject.is_empty()
    }

    /// Step 1 of shutdown (see the module doc).
    pub(crate) fn shutdown(&self) {
        self.shared.is_shutdown.store(true, Release);
        if self.shared.inject.close() {
            for (i, remote) in self.shared.remotes.iter().enumerate() {
                self.shared.idle.unpark_worker_by_id(i);
                remote.unpark.unpark();
            }
        }
        // Ordinary tasks now, while the workers stop and unwind their
        // fibers: a fiber's destructor may join one of them. (A task
        // being polled is only marked; its worker cancels it after.)
        self.shared.owned.close_and_shutdown(Kind::Task);
    }

    /// Step 3 of shutdown, after the worker threads have exited.
    pub(crate) fn finalize(&self) {
        self.shared.owned.close_and_shutdown_all();
        let cores = {
            let mut cores = self.shared.shutdown_cores.lock();
            cores.finalized = true;
            std::mem::take(&mut cores.cores)
        };
        for mut core in cores {
            core.drain();
        }
        self.drain_spare_cores();
        for remote in self.shared.remotes.iter() {
            drop(std::mem::take(&mut *remote.inbox.lock()));
        }
        self.shared.inject.drain();
        // Cancelling may have spawned (refused) or woken tasks; drain again.
        self.shared.owned.close_and_shutdown_all();
        // Sockets and timers that outlive the runtime fail instead of hanging.
        self.common.driver_slot.shutdown();
    }

    /// Every worker's published metrics, heartbeat included (for the
    /// long-poll monitor).
    pub(crate) fn worker_metrics(&self) -> impl Iterator<Item = &WorkerMetrics> {
        self.shared.remotes.iter().map(|r| &*r.metrics)
    }

    /// The owned-task list (for the long-poll monitor's lookups).
    pub(crate) fn owned(&self) -> &OwnedTasks {
        &self.shared.owned
    }

    pub(crate) fn metrics(&self) -> Snapshot {
        Snapshot {
            workers: self
                .shared
                .remotes
                .iter()
                .take(self.shared.num_workers)
                .map(|r| WorkerSnapshot {
                    local_queue_depth: r.steal.len(),
                    ..r.metrics.snapshot()
                })
                .collect(),
            alive_tasks: self.shared.owned.len(),
            alive_fibers: self.shared.owned.fiber_len(),
            global_queue_depth: self.shared.inject.len(),
            blocking_threads: self.common.blocking.num_threads(),
            spawned_tasks: self.shared.owned.inserted_count(),
            remote_schedules: self.shared.inject.remote_count(),
            io_ready: self.common.driver.io.ready_count(),
            io_uring_waits: self.common.driver.ring_counters.waits(),
            io_uring_binds: self.common.driver.ring_counters.binds(),
            handoffs: self.shared.handoff.count(),
            replacement_threads: self.shared.handoff.live(),
            long_polls: self
                .shared
                .remotes
                .iter()
                .map(|r| r.metrics.heartbeat.long_polls())
                .sum(),
        }
    }
}

impl Schedule for Arc<Handle> {
    fn schedule(&self, task: Notified) {
        self.schedule_task(task, false);
    }

    fn yield_now(&self, task: Notified) {
        self.schedule_task(task, true);
    }

    fn release(&self, task: RawTask) -> bool {
        self.shared.owned.remove(task)
    }
}

/// `PinnedSchedule::owner` before the task first runs.
const NO_OWNER: usize = usize::MAX;

/// The scheduler of a pinned task (a fiber): until it first runs, an
/// ordinary task; from its first poll on, every wake goes to the worker
/// that polled it.
pub(crate) struct PinnedSchedule {
    handle: Arc<Handle>,
    /// The owner worker's index, set once, by the first poll (on the owner
    /// itself) before the task runs. A wake that reads it got the task
    /// through the state word after that poll, which orders the two.
    owner: AtomicUsize,
}

impl Schedule for PinnedSchedule {
    fn schedule(&self, task: Notified) {
        match self.owner.load(Acquire) {
            NO_OWNER => self.handle.schedule_task(task, false),
            owner => self.handle.schedule_pinned(owner, task),
        }
    }

    #[inline]
    fn before_poll(&self) {
        if self.owner.load(Relaxed) != NO_OWNER {
            return;
        }
        let index = context::with_scheduler(|cx| match cx {
            Some(scheduler::Context::MultiThread(cx)) if Arc::ptr_eq(&cx.handle, &self.handle) => {
                Some(cx.index)
            }
            _ => None,
        });
        let index =
            index.expect("fiber-runtime bug: a pinned task polled off its runtime's workers");
        self.owner.store(index, Release);
    }

    // A pinned task runs only on its owner: a RUNNING task queued there is
    // never seen by a second poller.
    const YIELDS_RUNNING: bool = true;

    fn yield_running(&self, task: Yielded) -> Option<Yielded> {
        let owner = self.owner.load(Relaxed);
        self.handle
            .with_local_core(Some(owner), task, |core, task| {
                core.pinned.push_back(Runnable::Yielded(task))
            })
    }

    fn release(&self, task: RawTask) -> bool {
        self.handle.shared.owned.remove(task)
    }

    fn owner(&self) -> Option<usize> {
        match self.owner.load(Relaxed) {
            NO_OWNER => None,
            owner => Some(owner),
        }
    }
}

/// What a dump needs of this flavor (`scheduler/dump.rs`).
impl dump::Target for Handle {
    fn runtime_id(&self) -> usize {
        self.common.id
    }

    fn owned(&self) -> &OwnedTasks {
        &self.shared.owned
    }

    fn num_workers(&self) -> usize {
        // The workers, not the spare slots of the hand-off (`stuck.rs`):
        // fibers a replacement thread started are listed, not walked.
        self.shared.num_workers
    }

    fn slot(&self, worker: usize) -> &WorkerSlot {
        &self.shared.remotes[worker].dump
    }

    fn wake(&self, worker: usize) {
        self.shared.remotes[worker].unpark.unpark();
    }

    fn here(&self) -> Option<usize> {
        context::with_scheduler(|cx| match cx {
            Some(scheduler::Context::MultiThread(cx)) if std::ptr::eq(&*cx.handle, self) => {
                Some(cx.index)
            }
            _ => None,
        })
    }

    fn driven(&self, _worker: usize) -> bool {
        // Every worker has its thread until it stops (`WorkerSlot::close`).
        true
    }

    fn fiber_worker(&self, task: &crate::task_core::list::TaskRef) -> Option<usize> {
        task.raw().owner()
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiThread")
            .field("workers", &self.shared.num_workers)
            .finish()
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
impl Context {
    /// For tests (`runtime/rescue_tests.rs`): waits until every other
    /// worker is parked, then wakes `wakers` as one batch of this worker's
    /// ring's completions (`rescue.rs`).
    pub(crate) fn wake_as_ring_batch_once_the_peers_park(&self, mut wakers: Vec<std::task::Waker>) {
        let start = Instant::now();
        let workers = self.handle.shared.num_workers;
        while !(0..workers)
            .filter(|&i| i != self.index)
            .all(|i| self.handle.shared.idle.is_parked(i))
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the peers never parked"
            );
            std::hint::spin_loop();
        }
        let n = wakers.len();
        self.wake_batch(&mut wakers, n);
    }
}
