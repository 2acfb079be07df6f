//! `OwnedTasks`: every unfinished task of a scheduler, so that shutdown can
//! cancel them all.
//!
//! A slab per shard: each task occupies one atomic word in its shard's
//! slots, and its header records the slot (`core.rs`), so the task itself
//! carries no links. Workers insert into their own shard (under its lock,
//! which only inserters take, so it stays on one core); removal, done by
//! whichever thread completes the task, takes no lock at all: one
//! compare-exchange of the slot back to empty. The two sides count on
//! lines of their own (tasks added, beside the lock; tasks taken out, on
//! the removers' line), so that a task spawned on one worker and finished
//! on another moves no counter's line between them: with one shared
//! `live` count, beside the segment table both sides read, the list was
//! a third of a fiber spawn's profile (`BENCHMARKS.md`, issue 13).
//! Inserters reuse empty slots
//! once at least a quarter of the used ones are empty, scanning from a
//! cursor, so the scan is O(1) amortised and the slab stays within 4/3 of
//! the peak of live tasks.
//!
//! Slots live in fixed segments that never move (a removal may read one
//! while an inserter adds another). Slot numbers interleave shards: slot
//! `n` belongs to shard `n & mask`, at index `n >> shard_bits`.
//!
//! # Snapshots (dumps)
//!
//! [`OwnedTasks::snapshot`] takes a reference to every task in the list
//! without taking any out, so a dump can read them at leisure. A task's
//! memory is kept alive by the list's reference only until its remover
//! takes that out, so the snapshot *pins* the slot first: under the
//! shard's lock (which keeps shutdown and inserters away), it sets
//! `PIN_BIT` in the slot with a compare-exchange (failing if the remover
//! emptied it first), increments the reference count, and clears the bit.
//! A remover that meets the bit waits for it to clear (three instructions
//! of the snapshot's, never user code), so in no order does it free the
//! task under the snapshot's increment. The lock is taken for a bounded
//! run of slots at a time, so spawns on that shard wait at most that long.
//!
//! `describe` (the long-poll report) reads one task found in the list by
//! address the same way: under the shard's lock it pins the slot, copies
//! what it needs (no user code), and lets go.

use super::core::NO_SLOT;
use super::id::Id;
use super::{JoinHandle, Notified, RawTask, Schedule, SpanKind, SpawnMeta, new_task};
use crate::loom::{AtomicPtr, AtomicUsize, Mutex, Ordering::*};
use crate::util::CachePadded;
use std::future::Future;
use std::ptr::NonNull;

/// At most this many shards (workers beyond share them).
const MAX_SHARDS: usize = 64;
#[cfg(not(fiber_runtime_loom))]
const SEGMENT_BITS: u32 = 14;
#[cfg(fiber_runtime_loom)]
const SEGMENT_BITS: u32 = 2;
/// Slots per segment (16384: 128 KiB, whose pages are only touched as
/// they fill).
const SEGMENT_LEN: usize = 1 << SEGMENT_BITS;
/// Segments per shard: 16M live tasks per shard. Shrunk under loom, which
/// tracks every atomic of the segment table.
#[cfg(not(fiber_runtime_loom))]
const MAX_SEGMENTS: usize = 1024;
#[cfg(fiber_runtime_loom)]
const MAX_SEGMENTS: usize = 4;
/// An empty slot.
const EMPTY: usize = 0;
/// The low bit of a slot (task pointers are aligned): set for a fiber's
/// task, so that shutdown can cancel the other tasks first.
const FIBER_BIT: usize = 1;
/// The next bit: set for a moment by a snapshot taking a reference to the
/// task (module doc, "Snapshots").
const PIN_BIT: usize = 2;
/// Both tag bits.
const TAG_BITS: usize = FIBER_BIT | PIN_BIT;
/// Slots a snapshot pins per taking of a shard's lock.
const SNAPSHOT_RUN: usize = 256;

/// A new task the list refused (its runtime shuts down), with the
/// reference the list would have held: dropping it shuts the task down,
/// which drops its future (user code).
pub(crate) struct Refused(RawTask);

impl Drop for Refused {
    fn drop(&mut self) {
        // SAFETY: the task was never submitted or listed, so this is the
        // only use of the reference `bind` handed over.
        unsafe { self.0.shutdown() };
    }
}

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Refused").field(&self.0.id()).finish()
    }
}

/// What a task in the list is, for shutdown's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Task,
    /// A fiber's task: its fiber must be unwound on its own thread before
    /// the task is dropped.
    Fiber,
}

impl Kind {
    fn bit(self) -> usize {
        match self {
            Kind::Task => 0,
            Kind::Fiber => FIBER_BIT,
        }
    }
}

type Segment = [AtomicUsize];

/// What [`OwnedTasks::describe`] copies out of a task.
#[derive(Clone, Debug)]
pub(crate) struct TaskInfo {
    pub(crate) id: Id,
    pub(crate) name: Option<String>,
    pub(crate) location: &'static std::panic::Location<'static>,
    pub(crate) kind: Kind,
    /// Its `RUNNING` bit was set: some thread was polling it.
    pub(crate) running: bool,
}

/// The list is closed: the runtime is shutting down.
#[derive(Debug)]
struct Closed;

pub(crate) struct OwnedTasks {
    shards: Box<[CachePadded<Shard>]>,
    shard_bits: u32,
}

struct Shard {
    /// The inserters' lines (module doc), which the removers (usually
    /// another worker) never touch, so they stay in the inserting core's
    /// cache.
    insert: CachePadded<InsertSide>,
    /// The removers' line: what they (and shutdown) write.
    remove: CachePadded<RemoveSide>,
    /// Read by both sides, written by neither after `new` (each segment's
    /// pointer is written once, by the inserter that allocates it).
    segments: Box<[AtomicPtr<AtomicUsize>]>,
}

/// What inserters write: their lock, and the counts of what they added
/// (atomics, for the metrics to read without the lock).
struct InsertSide {
    /// Taken by inserters, shutdown, and the reports only.
    synced: Mutex<Synced>,
    /// Tasks ever inserted (`RuntimeMetrics::spawned_tasks_count`; minus
    /// `RemoveSide::taken`, the live ones). Written under the lock.
    added: AtomicUsize,
    /// Fibers' tasks among them. Written under the lock.
    fibers_added: AtomicUsize,
}

/// What removers write: the counts of what they took out. Each is raised
/// after its slot is emptied, so `added - taken` may briefly count a task
/// that is gone, never one that is not there yet: the empty slots an
/// inserter counts are there to be found.
struct RemoveSide {
    taken: AtomicUsize,
    fibers_taken: AtomicUsize,
}

/// The fields behind the inserters' lock.
struct Synced {
    /// Slots ever handed out (the high-water mark).
    used: usize,
    /// Where the next scan for an empty slot starts.
    cursor: usize,
    closed: bool,
    /// `RemoveSide::taken` as last read: a lower bound, read again only
    /// when it would make the insert take a new slot, so that inserts do
    /// not read the removers' line each time.
    taken_seen: usize,
}

/// `added - taken`, read apart: each task taken was added, but the loads
/// may see a take and not its add (then 0); the counts wrap together.
fn in_list(added: &AtomicUsize, taken: &AtomicUsize) -> usize {
    let taken = taken.load(Relaxed);
    let added = added.load(Relaxed);
    (added.wrapping_sub(taken) as isize).max(0) as usize
}

impl Shard {
    fn new() -> Shard {
        Shard {
            insert: CachePadded::new(InsertSide {
                synced: Mutex::new(Synced {
                    used: 0,
                    cursor: 0,
                    closed: false,
                    taken_seen: 0,
                }),
                added: AtomicUsize::new(0),
                fibers_added: AtomicUsize::new(0),
            }),
            remove: CachePadded::new(RemoveSide {
                taken: AtomicUsize::new(0),
                fibers_taken: AtomicUsize::new(0),
            }),
            segments: (0..MAX_SEGMENTS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    /// Tasks in the shard now (a snapshot).
    fn live(&self) -> usize {
        in_list(&self.insert.added, &self.remove.taken)
    }

    /// Fibers' tasks in the shard now (a snapshot).
    fn fibers(&self) -> usize {
        in_list(&self.insert.fibers_added, &self.remove.fibers_taken)
    }

    /// The slot at `index`, whose segment exists (it was handed out).
    fn slot(&self, index: usize) -> &AtomicUsize {
        let seg = self.segments[index >> SEGMENT_BITS].load(Acquire);
        debug_assert!(!seg.is_null());
        // SAFETY: segments are allocated (and published with `Release`)
        // before any of their slots is handed out, and freed only when the
        // shard is dropped; `index` was handed out, so its segment exists
        // and has `SEGMENT_LEN` slots.
        unsafe { &*seg.add(index & (SEGMENT_LEN - 1)) }
    }

    /// Allocates the segment of `index` if needed (inserter, under lock).
    fn ensure_segment(&self, index: usize) {
        let s = &self.segments[index >> SEGMENT_BITS];
        if s.load(Relaxed).is_null() {
            let seg: Box<Segment> = (0..SEGMENT_LEN).map(|_| AtomicUsize::new(EMPTY)).collect();
            s.store(Box::into_raw(seg).cast::<AtomicUsize>(), Release);
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        for s in self.segments.iter() {
            let p = s.load(Relaxed);
            if !p.is_null() {
                let slice = std::ptr::slice_from_raw_parts_mut(p, SEGMENT_LEN);
                // SAFETY: allocated as a `Box<[AtomicUsize]>` of
                // `SEGMENT_LEN` in `ensure_segment`; nothing else uses it
                // once the shard is dropped.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }
}

impl OwnedTasks {
    /// `shards` is rounded up to a power of two, at most `MAX_SHARDS`.
    pub(crate) fn new(shards: usize) -> OwnedTasks {
        let n = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        OwnedTasks {
            shards: (0..n).map(|_| CachePadded::new(Shard::new())).collect(),
            shard_bits: n.trailing_zeros(),
        }
    }

    fn mask(&self) -> usize {
        self.shards.len() - 1
    }

    /// The one spawn path: allocates a task for `future` under
    /// `scheduler` and adds it to shard `hint`. Returns its `JoinHandle`
    /// and its first queue entry, for the caller to submit; or, if the
    /// list is closed (the runtime is shutting down), the task to cancel
    /// (`Refused`: dropping it drops the future, which the caller may need
    /// to do after letting go of what it holds; the `JoinHandle` then says
    /// the task was cancelled).
    pub(crate) fn bind<F, S>(
        &self,
        future: F,
        scheduler: S,
        hint: usize,
        kind: Kind,
        meta: SpawnMeta,
    ) -> (JoinHandle<F::Output>, Result<Notified, Refused>)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        S: Schedule,
    {
        let span_kind = match kind {
            Kind::Task => SpanKind::Task,
            Kind::Fiber => SpanKind::Fiber,
        };
        let (notified, join, raw) = new_task(future, scheduler, span_kind, meta);
        if self.insert(raw, hint, kind).is_err() {
            // The list's reference (`raw`) keeps the task alive: this drop
            // runs no user code.
            drop(notified);
            return (join, Err(Refused(raw)));
        }
        (join, Ok(notified))
    }

    /// Adds a new task to shard `hint` (modulo the shard count), taking
    /// over its owned-list reference. Fails if the list is closed (the
    /// runtime is shutting down): the caller must then shut the task down.
    ///
    /// # Panics
    ///
    /// Panics if a shard would hold more than 16M live tasks.
    fn insert(&self, task: RawTask, hint: usize, kind: Kind) -> Result<(), Closed> {
        let shard_idx = hint & self.mask();
        let shard = &self.shards[shard_idx];
        let mut synced = shard.insert.synced.lock();
        if synced.closed {
            return Err(Closed);
        }
        // Only inserters write it, under this lock.
        let added = shard.insert.added.load(Relaxed);
        // Slots known empty: `used` minus the tasks added and not known
        // taken. `taken_seen` is a lower bound of the takes, so this is at
        // most the number of empty slots (each take was of a task added
        // before), and the scan below ends.
        let vacant =
            |synced: &Synced| synced.used as isize - added.wrapping_sub(synced.taken_seen) as isize;
        let reuse = |synced: &Synced| synced.used > 0 && vacant(synced) * 4 > synced.used as isize;
        if !reuse(&synced) {
            // Acquire, with the removals' Release: a take counted here
            // emptied its slot before, so one pass of the scan finds it.
            synced.taken_seen = shard.remove.taken.load(Acquire);
        }
        let index = if reuse(&synced) {
            // Reuse: at least a quarter of the slots are empty, so the scan
            // is short on average.
            loop {
                let i = synced.cursor;
                synced.cursor = (i + 1) % synced.used;
                if shard.slot(i).load(Relaxed) == EMPTY {
                    break i;
                }
            }
        } else {
            let i = synced.used;
            assert!(
                i < SEGMENT_LEN * MAX_SEGMENTS,
                "fiber-runtime: more than {} live tasks in one owned-task shard",
                SEGMENT_LEN * MAX_SEGMENTS
            );
            shard.ensure_segment(i);
            synced.used += 1;
            i
        };
        let slot = (index << self.shard_bits) | shard_idx;
        debug_assert!(slot < NO_SLOT as usize);
        // The task is not shared yet: nobody else reads its slot number.
        task.header().set_owned_slot(slot as u32);
        let ptr = task.ptr().as_ptr() as usize;
        debug_assert_eq!(ptr & TAG_BITS, 0, "tasks are aligned");
        shard.slot(index).store(ptr | kind.bit(), Release);
        // Plain stores: only inserters write them, under the lock.
        shard.insert.added.store(added.wrapping_add(1), Relaxed);
        if kind == Kind::Fiber {
            let fibers = shard.insert.fibers_added.load(Relaxed);
            shard
                .insert
                .fibers_added
                .store(fibers.wrapping_add(1), Relaxed);
        }
        Ok(())
    }

    /// Removes a finished task. Returns `true` if it was in the list (the
    /// caller then owns the list's reference), `false` if it never was or
    /// shutdown already took it out.
    pub(crate) fn remove(&self, task: RawTask) -> bool {
        let slot = task.header().owned_slot();
        if slot == NO_SLOT {
            return false;
        }
        let slot = slot as usize;
        let shard = &self.shards[slot & self.mask()];
        let ptr = task.ptr().as_ptr() as usize;
        let slot = shard.slot(slot >> self.shard_bits);
        // Exactly one of this and shutdown's exchange takes the task out
        // (a slot emptied, or emptied and reused, meanwhile fails ours).
        // Guessing an ordinary task first: one exchange for those, a second
        // only for a fiber (whose slot also holds `FIBER_BIT`), or while a
        // snapshot pins the slot (we wait for it to let go: module doc).
        let mut expected = ptr;
        let mut spins = 0u32;
        let taken = loop {
            match slot.compare_exchange(expected, EMPTY, AcqRel, Acquire) {
                Ok(val) => break Some(val),
                Err(val) if val & !TAG_BITS == ptr => {
                    if val & PIN_BIT != 0 {
                        // A snapshot holds the slot for a moment.
                        spins += 1;
                        if cfg!(fiber_runtime_loom) || spins % 64 == 0 {
                            crate::loom::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    expected = val & !PIN_BIT;
                }
                Err(_) => break None,
            }
        };
        let Some(val) = taken else {
            return false;
        };
        shard.remove.taken.fetch_add(1, Release);
        if val & FIBER_BIT != 0 {
            shard.remove.fibers_taken.fetch_add(1, Relaxed);
        }
        true
    }

    /// Closes the list to new tasks and shuts down every task in it
    /// (dropping each future on this thread).
    pub(crate) fn close_and_shutdown_all(&self) {
        self.close_and_shutdown(Kind::Task);
        self.close_and_shutdown(Kind::Fiber);
    }

    /// Closes the list to new tasks and shuts down those of `kind` in it
    /// (dropping each future on this thread): shutdown cancels ordinary
    /// tasks before the fibers unwind, so that a fiber's destructor that
    /// joins a task gets its answer.
    pub(crate) fn close_and_shutdown(&self, kind: Kind) {
        for shard in self.shards.iter() {
            shard.insert.synced.lock().closed = true;
        }
        for shard in self.shards.iter() {
            // Take the tasks out under the lock, shut them down without
            // it: dropping a future may finish or spawn other tasks.
            let tasks: Vec<usize> = {
                let synced = shard.insert.synced.lock();
                (0..synced.used)
                    .filter_map(|i| {
                        let slot = shard.slot(i);
                        let val = slot.load(Acquire);
                        (val != EMPTY
                            && val & FIBER_BIT == kind.bit()
                            && slot.compare_exchange(val, EMPTY, AcqRel, Relaxed).is_ok())
                        .then_some(val & !TAG_BITS)
                    })
                    .collect()
            };
            shard.remove.taken.fetch_add(tasks.len(), Release);
            if kind == Kind::Fiber {
                shard.remove.fibers_taken.fetch_add(tasks.len(), Relaxed);
            }
            for p in tasks {
                // SAFETY: a non-empty slot holds a live task's pointer (the
                // list holds a reference to it).
                let ptr = unsafe { NonNull::new_unchecked(p as *mut _) };
                // SAFETY: the swap handed us the list's reference.
                unsafe { RawTask::from_raw(ptr).shutdown() };
            }
        }
    }

    /// Copies the id, name, spawn location, kind and running bit of the
    /// task at `addr` ([`Notified::addr`]), if it is in the list. Scans
    /// every shard under its lock (cost: the slots in use); for reports,
    /// never for a hot path. Reads the task under a `PIN_BIT` mark (module
    /// doc), so it stays alive while read; runs no user code.
    pub(crate) fn describe(&self, addr: usize) -> Option<TaskInfo> {
        if addr == 0 || addr & TAG_BITS != 0 {
            return None;
        }
        for shard in self.shards.iter() {
            let synced = shard.insert.synced.lock();
            for i in 0..synced.used {
                let slot = shard.slot(i);
                let val = slot.load(Acquire);
                if val & !TAG_BITS != addr {
                    continue;
                }
                // No other `describe` holds the lock, so no mark is set.
                debug_assert_eq!(val & PIN_BIT, 0);
                if slot
                    .compare_exchange(val, val | PIN_BIT, Acquire, Relaxed)
                    .is_err()
                {
                    // Removed meanwhile (inserters and shutdown wait for
                    // the lock we hold): gone.
                    return None;
                }
                // SAFETY: the slot still held the task when we marked it,
                // so the list's reference is alive; while marked, neither
                // a removal (it waits) nor shutdown or an inserter (they
                // need the lock) takes that reference, so the task stays
                // allocated until we clear the mark.
                let task = RawTask::from_raw(unsafe { NonNull::new_unchecked(addr as *mut _) });
                let trailer = task.trailer();
                let info = TaskInfo {
                    id: trailer.id,
                    name: trailer.name().map(str::to_string),
                    location: trailer.location(),
                    kind: if val & FIBER_BIT != 0 {
                        Kind::Fiber
                    } else {
                        Kind::Task
                    },
                    running: task.header().state.load().is_running(),
                };
                slot.store(val, Release);
                drop(synced);
                return Some(info);
            }
        }
        None
    }

    /// Number of tasks ever added to the list (one lock per shard).
    pub(crate) fn inserted_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.insert.added.load(Relaxed) as u64)
            .sum()
    }

    /// Number of tasks in the list (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.live()).sum()
    }

    /// Number of fibers' tasks in the list (a snapshot).
    pub(crate) fn fiber_len(&self) -> usize {
        self.shards.iter().map(|s| s.fibers()).sum()
    }

    /// A reference to every task in the list now, with its kind (module
    /// doc, "Snapshots"). Tasks added or removed meanwhile may or may not
    /// be in it. Nothing but the reference counts is touched: no user code
    /// runs, under a lock or otherwise (dropping the references later may
    /// free tasks, and so drop their futures or outputs, on the caller's
    /// thread).
    pub(crate) fn snapshot(&self) -> Vec<(TaskRef, Kind)> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let mut start = 0;
            loop {
                let synced = shard.insert.synced.lock();
                let end = synced.used.min(start + SNAPSHOT_RUN);
                for i in start..end {
                    let slot = shard.slot(i);
                    let val = slot.load(Acquire);
                    if val == EMPTY {
                        continue;
                    }
                    debug_assert_eq!(val & PIN_BIT, 0, "pinned only under the lock");
                    // Fails if the remover emptied it since: skip it.
                    if slot
                        .compare_exchange(val, val | PIN_BIT, Acquire, Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    // SAFETY: a non-empty slot holds a live task's pointer,
                    // and the pin keeps the list's reference (so the task)
                    // in place until the bit is cleared below.
                    let raw = RawTask::from_raw(unsafe {
                        NonNull::new_unchecked((val & !TAG_BITS) as *mut _)
                    });
                    raw.header().state.ref_inc();
                    // Only we change a pinned slot (removers wait, shutdown
                    // and inserters are kept out by the lock).
                    slot.store(val, Release);
                    let kind = if val & FIBER_BIT != 0 {
                        Kind::Fiber
                    } else {
                        Kind::Task
                    };
                    out.push((TaskRef(raw), kind));
                }
                let used = synced.used;
                drop(synced);
                if end >= used {
                    break;
                }
                start = end;
            }
        }
        out
    }
}

/// A reference to a task, taken by [`OwnedTasks::snapshot`]; dropping it
/// gives the reference up (maybe freeing the task, on this thread).
pub(crate) struct TaskRef(RawTask);

impl TaskRef {
    pub(crate) fn raw(&self) -> RawTask {
        self.0
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: the reference `snapshot` took is ours to give up.
        unsafe { self.0.drop_reference() }
    }
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TaskRef").field(&self.0.id()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{model, thread};
    use crate::task_core::test_util::TestSched;
    use std::sync::Arc;

    /// Inserts that reuse slots (`used - live` says some are empty) racing
    /// the removals that empty them: each insert finds an empty slot (the
    /// scan ends), no two tasks share one, and the counts come back to 0.
    #[test]
    fn loom_insert_reusing_slots_racing_remove() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let list = Arc::new(OwnedTasks::new(1));
            let spawn = |kind| {
                let (notified, join) = sched.spawn(async {});
                let raw = notified_raw(&notified);
                raw.header().state.ref_inc();
                list.insert(raw, 0, kind).unwrap();
                (notified, join, raw)
            };
            // Two slots used, a fiber's and a task's.
            let a = spawn(Kind::Fiber);
            let b = spawn(Kind::Task);
            let (ra, rb) = (a.2, b.2);
            let th = {
                let list = list.clone();
                thread::spawn(move || {
                    assert!(list.remove(ra));
                    assert!(list.remove(rb));
                })
            };
            // Reuses a slot if it counts one empty, else takes a new one.
            let c = spawn(Kind::Fiber);
            th.join().unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list.fiber_len(), 1);
            assert!(list.remove(c.2));
            assert_eq!((list.len(), list.fiber_len()), (0, 0));
            for (n, j, raw) in [a, b, c] {
                // The list's references, given back by the removals.
                assert!(!raw.header().state.ref_dec());
                drop(n);
                drop(j);
            }
        });
    }

    /// An insert that reuses a slot on its stale view of the takes
    /// (`taken_seen`, not read again) racing a removal: the scan still
    /// finds an empty slot, no two tasks share one, and the counts agree.
    #[test]
    fn loom_insert_on_a_stale_view_of_the_takes_racing_remove() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let list = Arc::new(OwnedTasks::new(1));
            let spawn = || {
                let (notified, join) = sched.spawn(async {});
                let raw = notified_raw(&notified);
                raw.header().state.ref_inc();
                list.insert(raw, 0, Kind::Task).unwrap();
                (notified, join, raw)
            };
            let [a, b, c] = [(); 3].map(|_| spawn());
            assert!(list.remove(a.2));
            assert!(list.remove(b.2));
            // Three slots, one live: this insert's view (no takes seen)
            // says none is empty, so it reads the takes (two) and reuses.
            let d = spawn();
            let rc = c.2;
            let th = {
                let list = list.clone();
                thread::spawn(move || assert!(list.remove(rc)))
            };
            // Its view (two takes) says one of three is empty: it reuses
            // without reading the takes again, while `c` may be leaving.
            let e = spawn();
            th.join().unwrap();
            assert_eq!(list.shards[0].insert.synced.lock().used, 3, "no slot added");
            assert_ne!(d.2.header().owned_slot(), e.2.header().owned_slot());
            assert_eq!(list.len(), 2);
            assert!(list.remove(d.2));
            assert!(list.remove(e.2));
            assert_eq!(list.len(), 0);
            for (n, j, raw) in [a, b, c, d, e] {
                assert!(!raw.header().state.ref_dec());
                drop(n);
                drop(j);
            }
        });
    }

    /// A removal racing shutdown: exactly one of them takes the task, and
    /// its reference is released exactly once.
    #[test]
    fn loom_owned_remove_racing_shutdown() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let list = Arc::new(OwnedTasks::new(1));
            let (notified, join) = sched.spawn(async {});
            let raw = notified_raw(&notified);
            // Give the list a reference of its own.
            raw.header().state.ref_inc();
            list.insert(raw, 0, Kind::Task).unwrap();
            let th = {
                let list = list.clone();
                thread::spawn(move || list.remove(raw))
            };
            // Shutdown takes the task if the removal did not.
            list.close_and_shutdown_all();
            let removed = th.join().unwrap();
            if removed {
                // We own the list's reference: drop it.
                assert!(!raw.header().state.ref_dec());
            }
            assert_eq!(list.len(), 0);
            drop(notified);
            drop(join);
        });
    }

    /// A snapshot racing the removal of a finishing fiber's task, whose
    /// last reference is the list's: the snapshot either misses the task
    /// or takes a reference while the list's still keeps it alive (the
    /// remover waits out the pin), so that whoever drops the last one
    /// frees it, once, and nobody touches it after. (Without the wait,
    /// the remover frees the task under the snapshot's increment.)
    #[test]
    fn loom_snapshot_racing_remove() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let list = Arc::new(OwnedTasks::new(1));
            let (notified, join) = sched.spawn(async {});
            let raw = notified_raw(&notified);
            raw.header().state.ref_inc();
            list.insert(raw, 0, Kind::Fiber).unwrap();
            // The list's reference is the last one now.
            drop(notified);
            drop(join);
            let th = {
                let list = list.clone();
                thread::spawn(move || {
                    assert!(list.remove(raw), "nobody else takes it out");
                    // SAFETY: the list's reference, ours since `remove`.
                    unsafe { raw.drop_reference() };
                })
            };
            let snap = list.snapshot();
            assert!(snap.len() <= 1);
            for (t, kind) in &snap {
                assert_eq!(*kind, Kind::Fiber);
                assert!(t.raw().header().state.load().ref_count() >= 1);
            }
            th.join().unwrap();
            assert_eq!(list.len(), 0);
            // Taken out for good: no pin put a freed task back.
            assert_eq!(list.shards[0].slot(0).load(Relaxed), EMPTY);
            // Frees the task if the snapshot has it.
            drop(snap);
        });
    }

    /// `describe` racing the task's removal: it finds the task (and reads
    /// it whole) or finds nothing; the removal takes the list's reference
    /// exactly once, after `describe` let go of the slot.
    #[test]
    fn loom_owned_describe_racing_remove() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let list = Arc::new(OwnedTasks::new(1));
            let (notified, join) = sched.spawn(async {});
            let raw = notified_raw(&notified);
            let addr = notified.addr();
            raw.header().state.ref_inc();
            list.insert(raw, 0, Kind::Fiber).unwrap();
            let th = {
                let list = list.clone();
                thread::spawn(move || list.remove(raw))
            };
            if let Some(info) = list.describe(addr) {
                assert_eq!(info.id, join.id());
                assert_eq!(info.kind, Kind::Fiber);
                assert!(!info.running);
            }
            assert!(th.join().unwrap());
            assert!(!raw.header().state.ref_dec());
            assert!(list.describe(addr).is_none());
            assert_eq!(list.len(), 0);
            drop(notified);
            drop(join);
        });
    }

    #[test]
    fn describe_finds_a_listed_task_by_address_and_nothing_else() {
        let sched = Arc::new(TestSched::default());
        let list = OwnedTasks::new(4);
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (n, j) = sched.spawn(async {});
            let raw = n.raw_for_test();
            raw.header().state.ref_inc();
            let kind = if i % 3 == 0 { Kind::Fiber } else { Kind::Task };
            list.insert(raw, i, kind).unwrap();
            tasks.push((n, j, raw, kind));
        }
        for (n, j, _, kind) in &tasks {
            let info = list.describe(n.addr()).expect("a listed task");
            assert_eq!(info.id, j.id());
            assert_eq!(info.kind, *kind);
            assert_eq!(info.name, None);
            assert_eq!(info.location.file(), file!());
            assert!(!info.running);
        }
        assert!(list.describe(0).is_none());
        // (1: the heartbeat's `BLOCK_ON`, never a task's address.)
        assert!(list.describe(1).is_none());
        for (n, j, raw, _) in tasks {
            assert!(list.remove(raw));
            assert!(list.describe(n.addr()).is_none());
            assert!(!raw.header().state.ref_dec());
            drop((n, j));
        }
    }

    fn notified_raw(n: &crate::task_core::Notified) -> RawTask {
        n.raw_for_test()
    }

    #[test]
    fn vacant_slots_are_reused_and_the_slab_stays_bounded() {
        let sched = Arc::new(TestSched::default());
        let list = OwnedTasks::new(1);
        let mut live = Vec::new();
        for round in 0..20 {
            for _ in 0..100 {
                let (n, j) = sched.spawn(async {});
                let raw = n.raw_for_test();
                raw.header().state.ref_inc();
                list.insert(raw, 0, Kind::Task).unwrap();
                live.push((n, j, raw));
            }
            // Remove all but 10.
            for (n, j, raw) in live.drain(10..) {
                assert!(list.remove(raw));
                assert!(!raw.header().state.ref_dec());
                drop((n, j));
            }
            let used = list.shards[0].insert.synced.lock().used;
            assert!(used <= 200, "round {round}: slab grew to {used}");
        }
        assert_eq!(list.len(), 10);
        for (n, j, raw) in live.drain(..) {
            assert!(list.remove(raw));
            assert!(!raw.header().state.ref_dec());
            drop((n, j));
        }
        assert_eq!(list.len(), 0);
    }
}
