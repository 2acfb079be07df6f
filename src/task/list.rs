//! `OwnedTasks`: every unfinished task of a scheduler, so that shutdown can
//! cancel them all.
//!
//! A slab per shard: each task occupies one word in its shard's slot
//! vector, and the task's header records the slot (`core.rs`), so removal
//! is O(1) and costs the task nothing but that word — no links in the
//! header. Slot numbers interleave shards: slot `n` belongs to shard
//! `n & mask`, at index `n >> shard_bits`. Workers insert into their own
//! shard, so its lock and cache lines stay mostly on one core.

use super::RawTask;
use super::core::NO_SLOT;
use crate::loom::Mutex;
use crate::util::CachePadded;

/// At most this many shards (workers beyond share them).
const MAX_SHARDS: usize = 64;

pub(crate) struct OwnedTasks {
    /// Each shard on cache lines of its own.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    shard_bits: u32,
}

/// A slab: occupied slots hold a task pointer (even), free ones
/// `next_free << 1 | 1`.
struct Shard {
    slots: Vec<usize>,
    /// Head of the free list, or `FREE_END`.
    free_head: usize,
    len: usize,
    closed: bool,
}

const FREE_END: usize = usize::MAX >> 1;

impl OwnedTasks {
    /// `shards` is rounded up to a power of two, at most `MAX_SHARDS`.
    pub(crate) fn new(shards: usize) -> OwnedTasks {
        let n = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        OwnedTasks {
            shards: (0..n)
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        slots: Vec::new(),
                        free_head: FREE_END,
                        len: 0,
                        closed: false,
                    }))
                })
                .collect(),
            shard_bits: n.trailing_zeros(),
        }
    }

    fn mask(&self) -> usize {
        self.shards.len() - 1
    }

    /// Adds a new task to shard `hint` (modulo the shard count), taking
    /// over its owned-list reference. Fails if the list is closed (the
    /// runtime is shutting down): the caller must then shut the task down.
    ///
    /// # Panics
    ///
    /// Panics if a shard would exceed 2^30 / shards live tasks.
    pub(crate) fn insert(&self, task: RawTask, hint: usize) -> Result<(), ()> {
        let shard_idx = hint & self.mask();
        let mut shard = self.shards[shard_idx].lock();
        if shard.closed {
            return Err(());
        }
        let index = if shard.free_head != FREE_END {
            let i = shard.free_head;
            shard.free_head = shard.slots[i] >> 1;
            i
        } else {
            shard.slots.push(0);
            shard.slots.len() - 1
        };
        let slot = (index << self.shard_bits) | shard_idx;
        assert!(
            slot < NO_SLOT as usize,
            "fiber-runtime: too many live tasks (more than {} in one shard)",
            NO_SLOT >> self.shard_bits
        );
        shard.slots[index] = task.ptr().as_ptr() as usize;
        shard.len += 1;
        // The task is not shared yet: nobody else reads its slot.
        task.header().set_owned_slot(slot as u32);
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
        let index = slot >> self.shard_bits;
        let mut shard = self.shards[slot & self.mask()].lock();
        if shard.slots.get(index) != Some(&(task.ptr().as_ptr() as usize)) {
            return false;
        }
        shard.slots[index] = (shard.free_head << 1) | 1;
        shard.free_head = index;
        shard.len -= 1;
        true
    }

    /// Closes the list to new tasks and shuts down every task in it
    /// (dropping each future on this thread).
    pub(crate) fn close_and_shutdown_all(&self) {
        for shard in self.shards.iter() {
            shard.lock().closed = true;
        }
        for shard in self.shards.iter() {
            // Take the tasks out under the lock, shut them down without it:
            // dropping a future may finish other tasks, which remove
            // themselves.
            let tasks: Vec<usize> = {
                let mut shard = shard.lock();
                shard.free_head = FREE_END;
                shard.len = 0;
                std::mem::take(&mut shard.slots)
            };
            for word in tasks.into_iter().filter(|w| w & 1 == 0) {
                // SAFETY: an occupied slot holds a live task's pointer (the
                // list holds a reference to it), never null.
                let ptr = unsafe { std::ptr::NonNull::new_unchecked(word as *mut _) };
                // SAFETY: taking it out of the slab handed us the list's
                // reference.
                unsafe { RawTask::from_raw(ptr).shutdown() };
            }
        }
    }

    /// Number of tasks in the list (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len).sum()
    }
}
