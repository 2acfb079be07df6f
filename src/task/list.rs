//! `OwnedTasks`: every unfinished task of a scheduler, so that shutdown can
//! cancel them all. Intrusive doubly linked lists through the headers,
//! split in shards by address so that spawns on different workers rarely
//! share a lock.

use super::RawTask;
use super::core::Header;
use crate::loom::{AtomicUsize, Mutex, Ordering::Relaxed};
use crate::util::CachePadded;
use std::ptr::NonNull;

pub(crate) struct OwnedTasks {
    /// Each shard on cache lines of its own: workers mostly use their own.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    mask: usize,
}

struct Shard {
    head: Option<NonNull<Header>>,
    closed: bool,
    /// Mirror of the list length, readable without the lock for metrics.
    len: AtomicUsize,
}

// SAFETY: the raw pointers are only followed under the shard's lock.
unsafe impl Send for Shard {}

impl OwnedTasks {
    /// `shards` is rounded up to a power of two.
    pub(crate) fn new(shards: usize) -> OwnedTasks {
        let n = shards.max(1).next_power_of_two();
        OwnedTasks {
            shards: (0..n)
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        head: None,
                        closed: false,
                        len: AtomicUsize::new(0),
                    }))
                })
                .collect(),
            mask: n - 1,
        }
    }

    fn shard(&self, task: RawTask) -> &Mutex<Shard> {
        &self.shards[task.header().state.load().shard() & self.mask]
    }

    /// Adds a new task, taking over its owned-list reference. Fails if the
    /// list is closed (the runtime is shutting down): the caller must then
    /// shut the task down.
    pub(crate) fn insert(&self, task: RawTask) -> Result<(), ()> {
        let mut shard = self.shard(task).lock();
        if shard.closed {
            return Err(());
        }
        let h = task.header();
        // SAFETY: the links are guarded by this shard's lock, which we hold;
        // the task is new and in no list.
        unsafe {
            h.owned_prev.with_mut(|p| *p = None);
            h.owned_next.with_mut(|p| *p = shard.head);
            if let Some(old) = shard.head {
                old.as_ref().owned_prev.with_mut(|p| *p = Some(task.ptr()));
            }
        }
        shard.head = Some(task.ptr());
        let len = shard.len.load(Relaxed);
        shard.len.store(len + 1, Relaxed);
        Ok(())
    }

    /// Removes a finished task. Returns `true` if it was in the list (the
    /// caller then owns the list's reference), `false` if shutdown already
    /// took it out.
    pub(crate) fn remove(&self, task: RawTask) -> bool {
        let mut shard = self.shard(task).lock();
        let h = task.header();
        // SAFETY: links guarded by the lock we hold; the neighbours are in
        // this list, hence alive (the list holds a reference to each).
        unsafe {
            let prev = h.owned_prev.with(|p| *p);
            let next = h.owned_next.with(|p| *p);
            if prev.is_none() && shard.head != Some(task.ptr()) {
                return false;
            }
            match prev {
                Some(p) => p.as_ref().owned_next.with_mut(|x| *x = next),
                None => shard.head = next,
            }
            if let Some(n) = next {
                n.as_ref().owned_prev.with_mut(|x| *x = prev);
            }
            h.owned_prev.with_mut(|p| *p = None);
            h.owned_next.with_mut(|p| *p = None);
        }
        let len = shard.len.load(Relaxed);
        shard.len.store(len - 1, Relaxed);
        true
    }

    fn pop(&self, shard: &Mutex<Shard>) -> Option<RawTask> {
        let mut shard = shard.lock();
        let head = shard.head?;
        // SAFETY: `head` is in the list, hence alive; links guarded by the
        // lock we hold.
        unsafe {
            let next = head.as_ref().owned_next.with(|p| *p);
            if let Some(n) = next {
                n.as_ref().owned_prev.with_mut(|x| *x = None);
            }
            head.as_ref().owned_next.with_mut(|p| *p = None);
            shard.head = next;
        }
        let len = shard.len.load(Relaxed);
        shard.len.store(len - 1, Relaxed);
        Some(RawTask::from_raw(head))
    }

    /// Closes the list to new tasks and shuts down every task in it
    /// (dropping each future on this thread).
    pub(crate) fn close_and_shutdown_all(&self) {
        for shard in self.shards.iter() {
            shard.lock().closed = true;
        }
        for shard in self.shards.iter() {
            // The lock is released before each shutdown: dropping a future
            // may finish other tasks, which remove themselves.
            while let Some(task) = self.pop(shard) {
                // SAFETY: `pop` handed us the list's reference.
                unsafe { task.shutdown() };
            }
        }
    }

    /// Number of tasks in the list (a racy snapshot).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len.load(Relaxed)).sum()
    }
}
