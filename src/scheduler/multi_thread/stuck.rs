//! Worker hand-off: a worker stuck in one poll hands its queues, and with
//! them the driver, to a replacement thread, so that the rest of the
//! runtime goes on (`Builder::worker_handoff`).
//!
//! # Slots
//!
//! `Shared::remotes` has one slot per worker and, after them, a spare slot
//! per replacement thread the runtime may have alive at once
//! (`Builder::max_handoff_threads`; none with `worker_handoff(false)`). A
//! spare slot is inactive (its core kept in `Synced::spare_cores`, its
//! queues empty) until a replacement thread runs in it; that thread is an
//! ordinary worker running the ordinary loop (`worker.rs`): it steals, runs
//! the injector, turns the driver at maintenance and parks in it, and its
//! peers steal from it. Steal loops look at the spare slots only while a
//! replacement thread is alive (one relaxed load of `Handoff::live` per
//! search).
//!
//! # Hand-off (`Handle::on_worker_stuck`, from the long-poll monitor)
//!
//! 1. Under `Handoff::synced`: hand-off is on, the runtime is not shutting
//!    down, the slot is active, not handed off already, not retiring;
//!    fewer replacement threads are alive than the cap; a spare slot is
//!    free.
//! 2. Claim the worker's LIFO slot (below). From then on the wakes and
//!    spawns of the stuck poll go to the worker's run queue, which is
//!    stealable, and the task the poll had put in the LIFO slot moves to
//!    the replacement's queue. If the worker is found parked after the
//!    claim, it was not stuck: the claim is lifted and nothing happens.
//! 3. Start the replacement thread on the spare core.
//!
//! The caller has seen the worker in one poll past the threshold. If that
//! poll ended meanwhile, the hand-off is spurious but harmless: the worker
//! sees the claim at its next poll end, LIFO use or park, and rejoins.
//!
//! What cannot move: the fibers already started on the stuck worker (they
//! never migrate, `fiber/mod.rs`). Woken, they wait in its pinned queue or
//! inbox until the stuck poll returns. A fiber that has not started yet is
//! an ordinary task and starts wherever it is taken, on a replacement too.
//!
//! # Rejoin and retire
//!
//! The stuck worker learns that it was handed off when it next looks at
//! its LIFO slot, which it does at the end of every poll anyway: the slot
//! says `Claimed` (one more relaxed load per poll end, no
//! read-modify-write). It then rejoins (`Handle::rejoin`): it lifts the
//! claim and tells its replacement to retire (`Remote::retire`, and an
//! unpark). The replacement sees that at its next maintenance tick or park
//! and retires (`Context::retire`):
//!
//! 1. it leaves the search (waking a parked worker if it was the last
//!    searcher, as a worker that found work does);
//! 2. it takes no unpinned work any more: whatever lands in its LIFO slot
//!    or run queue goes to the injector (with a notify) after each poll;
//! 3. it runs the fibers it started until none is left (they cannot move
//!    either), parking off the sleepers list meanwhile: nobody hands it
//!    other work, and its fibers' wakes reach it through its inbox, which
//!    unparks it in particular;
//! 4. it gives its core back to its spare slot, wakes a parked worker (so
//!    that one parks again, in the driver, which the replacement may have
//!    been the one to turn) and exits.
//!
//! A task pushed while a replacement retires is not stranded: the
//! replacement is off the sleepers list when it leaves (a parked one took
//! itself off when the retire request unparked it, as any woken worker
//! does; one a notifier took off counts as searching, and hands the search
//! on in step 1), so no notifier counts on it; and a worker refused the
//! search because of it looks at the queues before it parks (`idle.rs`,
//! "Who looks before parking"). The loom model
//! `loom_a_retiring_replacement_strands_no_task` checks the race of a
//! retire with a remote push and a park.
//!
//! A replacement thread may be handed off in turn (its replacement retires
//! when its own poll returns); a retiring one is not. Replacement threads
//! are joined at shutdown like the workers; one stuck in a poll delays the
//! runtime's drop as a stuck worker does.
//!
//! # The LIFO slot
//!
//! Only the owner uses it, on its hot path (every spawn or wake from the
//! worker, every poll end), so taking it from another thread must cost the
//! owner no read-modify-write and no real fence. The asymmetric Dekker
//! pattern does it:
//!
//! - the owner, around each operation that writes the slot: stores
//!   `busy`, a compiler fence, loads `claimed` (set: it leaves the slot
//!   alone), then the plain load and store of the slot, then stores `busy =
//!   false` (release);
//! - the thief (the hand-off, under `Handoff::synced`): stores `claimed`,
//!   runs a *heavy* barrier (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
//!   on Linux: every running thread of the process executes a full fence),
//!   waits for `busy == false` (acquire) and takes the slot.
//!
//! The heavy barrier is the fence the owner leaves out: wherever it falls
//! in the owner's operation, either the owner's load of `claimed` comes
//! after it and sees the claim, or the owner's store of `busy` comes before
//! it and the thief waits until the operation is over. Reading the slot
//! (empty or not, at a poll end) writes nothing and needs no `busy`. In the
//! loom model both barriers are SeqCst fences
//! (`loom_lifo_claim_against_owner_and_stealer`).
//!
//! Where there is no heavy barrier (not Linux, or `membarrier` refused),
//! the claim is only a signal: the owner stops putting tasks in the slot,
//! but the one already there waits for the stuck poll to return.
//!
//! # Cost when nothing is stuck
//!
//! - poll end: the LIFO slot is now read through an `Arc` the core holds,
//!   plus one relaxed load of `claimed` when the slot is empty; taking a
//!   task out of it adds the `busy` protocol (two plain stores, one
//!   relaxed load, a compiler fence);
//! - spawn or wake from a worker (into the LIFO slot): the `busy` protocol
//!   likewise; spawns from outside and `yield_now` are unchanged;
//! - park: one relaxed load (`claimed`) and a branch (replacement or
//!   not); maintenance: the branch; each search: the load of `live`;
//! - no read-modify-write, no clock, no allocation anywhere on those
//!   paths; with `worker_handoff(false)`, the same code runs (there is no
//!   spare slot, so nothing is ever claimed).

use super::worker::{Context, Core, Handle, run};
use crate::fiber::pool as fiber_pool;
use crate::loom::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering::*};
use crate::task_core::{Notified, RawTask, Runnable};
use std::ptr::{self, NonNull};
use std::sync::Arc;

/// The hand-off settings the builder passes on.
pub(crate) struct HandoffConfig {
    /// Replacement threads alive at most; 0 turns the hand-off off (and
    /// leaves out the spare slots).
    pub(crate) max_threads: usize,
    /// The workers' thread name (replacements are `<name>-handoff-<n>`).
    pub(crate) thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    pub(crate) thread_stack_size: Option<usize>,
}

/// The runtime's replacement threads.
pub(crate) struct Handoff {
    config: HandoffConfig,
    num_workers: usize,
    /// Replacement threads started and not exited. Read by every steal
    /// loop (relaxed: a stale zero only skips the queue of a replacement,
    /// which runs it itself).
    live: AtomicUsize,
    /// Hand-offs so far.
    count: AtomicU64,
    synced: Mutex<Synced>,
}

struct Synced {
    /// Every slot's hand-off state.
    slots: Box<[SlotState]>,
    /// The cores of the spare slots no replacement thread runs in
    /// (index: slot - workers).
    #[allow(clippy::vec_box)] // moved to and from threads: one pointer wide
    spare_cores: Vec<Option<Box<Core>>>,
    /// Replacement threads not joined yet.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Replacement threads started so far (for their names).
    started: u64,
    /// Shutdown is joining the replacement threads: start no more.
    closed: bool,
}

#[derive(Clone, Copy, Default)]
struct SlotState {
    /// A thread runs in the slot (always, for a worker's).
    active: bool,
    /// Its replacement thread was told to retire.
    retiring: bool,
    /// The spare slot of the thread that replaces this one while it is
    /// stuck.
    replaced_by: Option<usize>,
}

impl Handoff {
    #[allow(clippy::vec_box)] // see `Synced::spare_cores`
    pub(super) fn new(
        config: HandoffConfig,
        num_workers: usize,
        spare_cores: Vec<Box<Core>>,
    ) -> Handoff {
        debug_assert_eq!(spare_cores.len(), config.max_threads);
        let slots = (0..num_workers + config.max_threads)
            .map(|i| SlotState {
                active: i < num_workers,
                ..SlotState::default()
            })
            .collect();
        Handoff {
            config,
            num_workers,
            live: AtomicUsize::new(0),
            count: AtomicU64::new(0),
            synced: Mutex::new(Synced {
                slots,
                spare_cores: spare_cores.into_iter().map(Some).collect(),
                threads: Vec::new(),
                started: 0,
                closed: false,
            }),
        }
    }

    /// How many slots a steal loop looks at: the spare ones too only
    /// while a replacement thread is alive.
    #[inline]
    pub(super) fn steal_range(&self) -> usize {
        if self.live.load(Relaxed) == 0 {
            self.num_workers
        } else {
            self.num_workers + self.config.max_threads
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub(super) fn live(&self) -> usize {
        self.live.load(Relaxed)
    }
}

impl Synced {
    /// Takes out the replacement threads that have exited, for the
    /// caller to join once it has let go of the lock (a thread is
    /// "finished" before its thread-local destructors have run: joining
    /// may wait for them, and they may call into the runtime).
    fn take_finished(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        let mut finished = Vec::new();
        let mut i = 0;
        while i < self.threads.len() {
            if self.threads[i].is_finished() {
                finished.push(self.threads.swap_remove(i));
            } else {
                i += 1;
            }
        }
        finished
    }

    /// A spare slot with no thread in it (its index among the spares).
    fn free_spare(&self, num_workers: usize) -> Option<usize> {
        (0..self.spare_cores.len())
            .find(|&k| self.spare_cores[k].is_some() && !self.slots[num_workers + k].active)
    }
}

impl Handle {
    /// Worker `worker` has been in one poll past the long-poll threshold:
    /// start a replacement thread for it, if the hand-off is on and the
    /// cap allows (module doc, "Hand-off"). Returns whether a replacement
    /// thread runs for it now (started by this call or an earlier one:
    /// idempotent while the worker stays handed off). Does nothing for a
    /// slot that is inactive, parked, retiring or out of range, or once
    /// the runtime shuts down.
    pub(crate) fn on_worker_stuck(self: &Arc<Self>, worker: usize) -> bool {
        let shared = &self.shared;
        let handoff = &shared.handoff;
        if handoff.config.max_threads == 0 {
            return false;
        }
        let finished = handoff.synced.lock().take_finished();
        for t in finished {
            let _ = t.join();
        }
        let mut synced = handoff.synced.lock();
        if synced.closed || shared.is_shutdown.load(Acquire) {
            return false;
        }
        let Some(&state) = synced.slots.get(worker) else {
            return false;
        };
        if state.replaced_by.is_some() {
            return true;
        }
        if !state.active || state.retiring {
            return false;
        }
        if handoff.live.load(Relaxed) >= handoff.config.max_threads {
            return false;
        }
        let Some(spare) = synced.free_spare(handoff.num_workers) else {
            return false;
        };
        let slot = handoff.num_workers + spare;

        // Step 2: the LIFO slot. The sleepers list is looked at after the
        // claim, and the worker looks at the claim after putting itself on
        // that list (`Context::park`): one of the two sees the other.
        let lifo = &shared.remotes[worker].lifo;
        lifo.claim();
        if shared.idle.is_parked(worker) {
            lifo.unclaim();
            return false;
        }
        let taken = lifo.take_claimed();
        let core = synced.spare_cores[spare]
            .as_mut()
            .expect("a free spare slot has its core");
        core.is_shutdown = false;
        core.retiring = false;
        core.is_searching = false;
        if let Some(task) = taken {
            // The replacement runs it first.
            core.run_queue.push_back_or_overflow(task, &shared.inject);
        }
        shared.remotes[slot].retire.store(false, Relaxed);

        // Step 3. The thread takes its core from `spare_cores` (so that a
        // failed start leaves it here, with the task from the LIFO slot).
        let mut builder = std::thread::Builder::new().name(format!(
            "{}-handoff-{}",
            (handoff.config.thread_name)(),
            synced.started
        ));
        if let Some(size) = handoff.config.thread_stack_size {
            builder = builder.stack_size(size);
        }
        let me = self.clone();
        match builder.spawn(move || run_replacement(me, slot)) {
            Ok(thread) => {
                synced.started += 1;
                synced.threads.push(thread);
                synced.slots[slot].active = true;
                synced.slots[worker].replaced_by = Some(slot);
                handoff.live.fetch_add(1, Relaxed);
                handoff.count.fetch_add(1, Relaxed);
                true
            }
            Err(e) => {
                let core = synced.spare_cores[spare]
                    .as_mut()
                    .expect("the spare core stays when its thread does not start");
                let mut moved = false;
                while let Some(task) = core.run_queue.pop() {
                    shared.inject.push(task);
                    moved = true;
                }
                lifo.unclaim();
                drop(synced);
                if moved {
                    self.notify_parked();
                }
                eprintln!(
                    "fiber-runtime: worker {worker} is stuck in a poll, and its replacement \
                     thread could not be started: {e}"
                );
                false
            }
        }
    }

    /// The worker owning `core` was handed off and its poll has returned
    /// (or it was not stuck at all): it lifts the claim on its LIFO slot
    /// and tells its replacement to retire (module doc, "Rejoin and
    /// retire").
    #[cold]
    #[inline(never)]
    pub(super) fn rejoin(&self, core: &Core) {
        let mut synced = self.shared.handoff.synced.lock();
        // The hand-off claims under this lock: it is done with the slot.
        core.lifo.unclaim();
        if let Some(r) = synced.slots[core.index].replaced_by.take() {
            synced.slots[r].retiring = true;
            let remote = &self.shared.remotes[r];
            remote.retire.store(true, Release);
            remote.unpark.unpark();
        }
    }

    /// The replacement thread of `slot` exits: its slot becomes free
    /// (with `core`, after a retire; without, at shutdown, when the core
    /// went to `finalize`).
    pub(super) fn replacement_exited(&self, slot: usize, core: Option<Box<Core>>) {
        let handoff = &self.shared.handoff;
        let mut synced = handoff.synced.lock();
        synced.slots[slot] = SlotState::default();
        if let Some(core) = core {
            synced.spare_cores[slot - handoff.num_workers] = Some(core);
        }
        handoff.live.fetch_sub(1, Relaxed);
    }

    /// Shutdown, after the workers were joined: joins the replacement
    /// threads (all but the calling one, if it is one: a runtime dropped
    /// by one of its own tasks) and starts no more.
    pub(crate) fn join_replacements(&self) {
        let threads = {
            let mut synced = self.shared.handoff.synced.lock();
            synced.closed = true;
            std::mem::take(&mut synced.threads)
        };
        let me = std::thread::current().id();
        for thread in threads {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }

    /// Shutdown: empties the cores of the unused spare slots.
    pub(super) fn drain_spare_cores(&self) {
        let cores: Vec<Box<Core>> = {
            let mut synced = self.shared.handoff.synced.lock();
            synced
                .spare_cores
                .iter_mut()
                .filter_map(Option::take)
                .collect()
        };
        for mut core in cores {
            core.drain();
        }
    }
}

/// The body of a replacement thread.
fn run_replacement(handle: Arc<Handle>, slot: usize) {
    let core = {
        let mut synced = handle.shared.handoff.synced.lock();
        synced.spare_cores[slot - handle.shared.handoff.num_workers].take()
    };
    match core {
        Some(core) => run(handle, core),
        // Unreachable: the slot was reserved for this thread.
        None => handle.replacement_exited(slot, None),
    }
}

impl Context {
    /// A replacement thread told to retire leaves (module doc, "Rejoin and
    /// retire"). Returns the core if the runtime shuts down first, for the
    /// shutdown path.
    pub(super) fn retire(&self, mut core: Box<Core>) -> Option<Box<Core>> {
        let handle = &*self.handle;
        // Step 1.
        core.transition_from_searching(handle);
        loop {
            // Step 2.
            flush_unpinned(&mut core, handle);
            if handle.shared.is_shutdown.load(Acquire) {
                return Some(core);
            }
            // Step 3.
            core.take_inbox(handle);
            if let Some(task) = core.pinned.pop_front() {
                core = self.run_pinned(task, core);
                continue;
            }
            if fiber_pool::started_here(handle.common.id) == 0 {
                break;
            }
            core.flush_metrics(handle);
            core.park.park();
            core = self.wake_deferred(core);
        }
        // Step 4.
        core.flush_metrics(handle);
        handle.replacement_exited(self.index, Some(core));
        if let Some(w) = handle.shared.idle.last_parked() {
            handle.shared.remotes[w].unpark.unpark();
        }
        None
    }

    /// Polls a pinned task of a retiring replacement (no LIFO follow-up:
    /// what it wakes goes to the injector).
    fn run_pinned(&self, task: Runnable, core: Box<Core>) -> Box<Core> {
        self.poll(core, task.addr(), || task.run())
    }
}

/// Moves the unpinned tasks of a retiring replacement to the injector.
fn flush_unpinned(core: &mut Core, handle: &Handle) {
    let mut batch = Vec::new();
    loop {
        match core.lifo.take() {
            Take::Task(task) => batch.push(task),
            Take::Empty => break,
            // Handed off itself, and its poll returned.
            Take::Claimed => handle.rejoin(core),
        }
    }
    while let Some(task) = core.run_queue.pop() {
        batch.push(task);
    }
    if !batch.is_empty() {
        handle.shared.inject.push_batch(batch.into_iter());
        handle.notify_parked();
    }
}

/// A worker's LIFO slot (module doc, "The LIFO slot").
pub(crate) struct LifoSlot {
    /// The task's raw pointer, or null.
    task: AtomicPtr<()>,
    /// The owner is writing `task`.
    busy: AtomicBool,
    /// Claimed by the worker hand-off: the owner leaves `task` alone.
    claimed: AtomicBool,
}

/// What [`LifoSlot::take`] found.
pub(crate) enum Take {
    Empty,
    Task(Notified),
    /// The worker was handed off: it must rejoin.
    Claimed,
}

/// What [`LifoSlot::push`] did.
pub(crate) enum Push {
    /// Stored; the task it displaced, if any.
    Done(Option<Notified>),
    /// Refused, the slot being claimed: the task is given back.
    Claimed(Notified),
}

fn into_ptr(task: Notified) -> *mut () {
    task.into_raw().ptr().as_ptr().cast()
}

/// # Safety
///
/// `ptr` is null or came from [`into_ptr`], and the caller owns that
/// entry now (took it out of the slot).
unsafe fn from_ptr(ptr: *mut ()) -> Option<Notified> {
    let ptr = NonNull::new(ptr)?;
    // SAFETY: the entry's reference moves back out of the slot (caller).
    Some(unsafe { Notified::from_raw(RawTask::from_raw(ptr.cast())) })
}

impl LifoSlot {
    pub(crate) fn new() -> LifoSlot {
        LifoSlot {
            task: AtomicPtr::new(ptr::null_mut()),
            busy: AtomicBool::new(false),
            claimed: AtomicBool::new(false),
        }
    }

    /// Owner: starts an operation that writes the slot; `false` (and no
    /// operation) if the slot is claimed.
    #[inline(always)]
    fn enter(&self) -> bool {
        self.busy.store(true, Relaxed);
        light_barrier();
        if self.claimed.load(Relaxed) {
            self.busy.store(false, Release);
            return false;
        }
        true
    }

    #[inline(always)]
    fn leave(&self) {
        self.busy.store(false, Release);
    }

    /// Owner: puts `task` in the slot, returning the one it displaces.
    #[inline]
    pub(crate) fn push(&self, task: Notified) -> Push {
        if !self.enter() {
            return Push::Claimed(task);
        }
        let prev = self.task.load(Relaxed);
        self.task.store(into_ptr(task), Relaxed);
        self.leave();
        // SAFETY: the entry left the slot in our operation, which the
        // thief waited for (`busy`); it is ours.
        Push::Done(unsafe { from_ptr(prev) })
    }

    /// Owner: takes the task out of the slot; says so if the slot is
    /// claimed (even when empty: it is how the worker learns that it was
    /// handed off). An empty slot may answer `Empty` just after a claim
    /// (two relaxed loads): the worker learns of it at its next look, or
    /// before it parks (`Context::park`).
    #[inline]
    pub(crate) fn take(&self) -> Take {
        if self.task.load(Relaxed).is_null() {
            return if self.claimed.load(Relaxed) {
                Take::Claimed
            } else {
                Take::Empty
            };
        }
        if !self.enter() {
            return Take::Claimed;
        }
        let task = self.task.load(Relaxed);
        self.task.store(ptr::null_mut(), Relaxed);
        self.leave();
        // SAFETY: as in `push`.
        match unsafe { from_ptr(task) } {
            Some(task) => Take::Task(task),
            None => Take::Empty,
        }
    }

    /// Owner (or anyone, as a snapshot): whether the slot holds a task.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.task.load(Relaxed).is_null()
    }

    /// Owner: whether the worker was handed off.
    #[inline]
    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.load(Relaxed)
    }

    /// Thief, under `Handoff::synced`: the owner stops writing the slot
    /// (with a heavy barrier: at once; without: soon, module doc).
    fn claim(&self) {
        self.claimed.store(true, SeqCst);
    }

    /// Thief, after `claim`: takes the task out of the slot, if the
    /// platform gives a heavy barrier (else leaves it for the owner).
    fn take_claimed(&self) -> Option<Notified> {
        if !heavy_barrier() {
            return None;
        }
        // The owner is in at most one operation that missed the claim;
        // it ends in a few instructions (unless its thread was preempted
        // right there).
        while self.busy.load(Acquire) {
            crate::loom::thread::yield_now();
        }
        let task = self.task.swap(ptr::null_mut(), Acquire);
        // SAFETY: the claim and `busy` keep the owner out of the slot: the
        // entry is ours.
        unsafe { from_ptr(task) }
    }

    /// Lifts the claim (the owner rejoining, or a hand-off given up),
    /// under `Handoff::synced`.
    fn unclaim(&self) {
        self.claimed.store(false, Release);
    }

    /// Shutdown, no thread running the worker any more: empties the slot.
    pub(crate) fn take_for_shutdown(&self) -> Option<Notified> {
        // SAFETY: nobody else uses the slot now.
        unsafe { from_ptr(self.task.swap(ptr::null_mut(), Acquire)) }
    }
}

impl Drop for LifoSlot {
    fn drop(&mut self) {
        drop(self.take_for_shutdown());
    }
}

/// The owner's side of the asymmetric barrier: keeps the compiler from
/// moving the load of `claimed` above the store of `busy`. (Under loom, a
/// SeqCst fence: the model has no heavy barrier to stand for it.)
#[inline(always)]
fn light_barrier() {
    #[cfg(not(fiber_runtime_loom))]
    std::sync::atomic::compiler_fence(SeqCst);
    #[cfg(fiber_runtime_loom)]
    crate::loom::fence(SeqCst);
}

/// Whether a hand-off can take the LIFO slot's task over here (the
/// heavy barrier works: not refused by the kernel or a seccomp filter).
/// Issues one barrier. For the tests.
pub(crate) fn moves_lifo_slots() -> bool {
    heavy_barrier()
}

/// The thief's side: every thread of the process runs a full fence before
/// this returns `true`; `false` if the platform offers no such barrier.
fn heavy_barrier() -> bool {
    #[cfg(fiber_runtime_loom)]
    {
        crate::loom::fence(SeqCst);
        true
    }
    #[cfg(all(not(fiber_runtime_loom), target_os = "linux"))]
    {
        membarrier::barrier()
    }
    #[cfg(all(not(fiber_runtime_loom), not(target_os = "linux")))]
    {
        false
    }
}

#[cfg(all(not(fiber_runtime_loom), target_os = "linux"))]
mod membarrier {
    //! `membarrier(2)`: the private expedited command (Linux 4.14+, after
    //! registering once), else the global one (slower: it waits for an RCU
    //! grace period, fine for a hand-off), else none.

    use std::sync::OnceLock;

    const CMD_QUERY: libc::c_int = 0;
    const CMD_GLOBAL: libc::c_int = 1;
    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: a system call with integer arguments only (cmd, flags
        // 0, cpu_id 0); it touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    /// The command to use, found once per process.
    fn command() -> Option<libc::c_int> {
        static CMD: OnceLock<Option<libc::c_int>> = OnceLock::new();
        *CMD.get_or_init(|| {
            let supported = membarrier(CMD_QUERY);
            if supported < 0 {
                return None;
            }
            let supported = supported as libc::c_int;
            if supported & CMD_PRIVATE_EXPEDITED != 0
                && supported & CMD_REGISTER_PRIVATE_EXPEDITED != 0
                && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
            {
                Some(CMD_PRIVATE_EXPEDITED)
            } else if supported & CMD_GLOBAL != 0 {
                Some(CMD_GLOBAL)
            } else {
                None
            }
        })
    }

    pub(super) fn barrier() -> bool {
        command().is_some_and(|cmd| membarrier(cmd) == 0)
    }
}

#[cfg(test)]
mod tests {
    //! The hand-off's races, on the real LIFO slot, `Idle`, injector and
    //! local queues; the threads' steps are those of `worker.rs` and of
    //! this file. Under `--cfg fiber_runtime_loom` every interleaving;
    //! plainly, once. (The end-to-end tests are `tests/rt_handoff.rs`.)

    use super::*;
    use crate::loom::{Arc, model, thread};
    use crate::scheduler::inject::Inject;
    use crate::scheduler::multi_thread::idle::Idle;
    use crate::scheduler::multi_thread::queue;
    use crate::task_core::test_util::TestSched;

    fn task(sched: &std::sync::Arc<TestSched>) -> Notified {
        let (t, join) = sched.spawn(async {});
        drop(join);
        t
    }

    /// The stuck poll woke one task into the LIFO slot and wakes a
    /// second while the hand-off claims the slot and the replacement
    /// steals from the worker's queue; then the poll returns and the
    /// worker looks at its slot (`run_task`). Every task is taken exactly
    /// once, and the claim is seen either by the worker's operations or
    /// after them.
    #[test]
    fn loom_lifo_claim_against_owner_and_stealer() {
        model(|| {
            let sched = std::sync::Arc::new(TestSched::default());
            let lifo = Arc::new(LifoSlot::new());
            let inject = Inject::new();
            let (steal, mut local) = queue::local();
            assert!(matches!(lifo.push(task(&sched)), Push::Done(None)));

            let thief = {
                let lifo = lifo.clone();
                thread::spawn(move || {
                    // `on_worker_stuck`, then the replacement's first steal.
                    lifo.claim();
                    let taken = lifo.take_claimed();
                    let (_, mut mine) = queue::local();
                    let stolen = steal.steal_into(&mut mine);
                    let n = usize::from(taken.is_some()) + usize::from(stolen.is_some());
                    drop((taken, stolen));
                    let mut n = n;
                    while mine.pop().is_some() {
                        n += 1;
                    }
                    n
                })
            };

            // The owner: `schedule_local`, then the poll end.
            match lifo.push(task(&sched)) {
                Push::Done(Some(prev)) => {
                    local.push_back_or_overflow(prev, &inject);
                }
                Push::Done(None) => unreachable!("the slot held a task, or was claimed"),
                Push::Claimed(t) => {
                    local.push_back_or_overflow(t, &inject);
                }
            }
            let mut n = 0;
            let saw_claim = match lifo.take() {
                Take::Task(t) => {
                    drop(t);
                    n += 1;
                    false
                }
                Take::Claimed => true,
                // Emptied by the thief, whose claim this relaxed look
                // may not see yet: the worker sees it at its next look.
                Take::Empty => false,
            };

            n += thief.join().unwrap();
            while local.pop().is_some() {
                n += 1;
            }
            n += inject.len();
            inject.drain();
            // The thief waited for the owner's operation, so it emptied
            // the slot for good.
            assert!(lifo.is_empty(), "the claimed slot still holds a task");
            assert_eq!(n, 2, "a task was lost or taken twice");
            // The worker learns of the hand-off, at the latest now.
            assert!(saw_claim || matches!(lifo.take(), Take::Claimed));
        });
    }

    /// Worker 0 has rejoined and looks for work, finds none, and parks;
    /// the replacement (slot 1), searching when told to retire, leaves
    /// the search and exits (`Context::retire`, step 1); meanwhile a
    /// task is pushed from outside. It must not be stranded: worker 0
    /// took it, or was woken for it. (Worker 0 is refused the search
    /// while the replacement searches: the case `idle.rs`'s "Who looks
    /// before parking" is for; with only the last searcher looking, this
    /// model fails.)
    #[test]
    fn loom_a_retiring_replacement_strands_no_task() {
        model(|| {
            let sched = std::sync::Arc::new(TestSched::default());
            let idle = Arc::new(Idle::new(1, 2));
            let inject = Arc::new(Inject::new());
            assert!(
                idle.transition_worker_to_searching(),
                "the replacement searches"
            );
            let woken0 = Arc::new(crate::loom::AtomicBool::new(false));
            let notify = |idle: &Idle, woken0: &crate::loom::AtomicBool| {
                if let Some(i) = idle.worker_to_notify() {
                    assert_eq!(i, 0, "only worker 0 ever parks here");
                    woken0.store(true, SeqCst);
                }
            };

            let replacement = {
                let (idle, woken0) = (idle.clone(), woken0.clone());
                thread::spawn(move || {
                    if idle.transition_worker_from_searching() {
                        notify(&idle, &woken0);
                    }
                })
            };
            let pusher = {
                let (idle, inject, woken0) = (idle.clone(), inject.clone(), woken0.clone());
                let t = task(&sched);
                thread::spawn(move || {
                    assert!(inject.push(t));
                    notify(&idle, &woken0);
                })
            };

            // Worker 0: `next_task`, `steal_work`, `transition_to_parked`.
            let mut found = inject.pop();
            if found.is_none() {
                let searching = idle.transition_worker_to_searching();
                if searching {
                    found = inject.pop();
                }
                if found.is_none()
                    && idle.transition_worker_to_parking(0, searching)
                    && !inject.is_empty()
                {
                    // `notify_if_work_pending`.
                    notify(&idle, &woken0);
                }
            }
            replacement.join().unwrap();
            pusher.join().unwrap();
            let stranded = found.is_none() && !inject.is_empty() && !woken0.load(SeqCst);
            assert!(
                !stranded,
                "the task waits in the injector and worker 0 parked unwoken"
            );
            drop(found);
            inject.drain();
        });
    }

    /// The owner's operations on an unclaimed slot, and what a claim
    /// changes for them (no thief thread: the plain sequence).
    #[test]
    fn lifo_slot_push_take_and_claim() {
        model(|| {
            let sched = std::sync::Arc::new(TestSched::default());
            let lifo = LifoSlot::new();
            assert!(matches!(lifo.take(), Take::Empty));
            assert!(matches!(lifo.push(task(&sched)), Push::Done(None)));
            assert!(matches!(lifo.push(task(&sched)), Push::Done(Some(_))));
            assert!(!lifo.is_empty());
            lifo.claim();
            assert!(lifo.is_claimed());
            // Taken by the claim (a heavy barrier exists here), or left.
            let taken = lifo.take_claimed();
            assert_eq!(taken.is_some(), lifo.is_empty());
            assert!(matches!(lifo.push(task(&sched)), Push::Claimed(_)));
            assert!(matches!(lifo.take(), Take::Claimed));
            lifo.unclaim();
            assert!(!lifo.is_claimed());
            assert!(matches!(lifo.push(task(&sched)), Push::Done(_)));
            assert!(matches!(lifo.take(), Take::Task(_)));
            drop(taken);
            // Dropping the slot releases what it holds.
            assert!(matches!(lifo.push(task(&sched)), Push::Done(None)));
        });
    }
}
