//! The global injection queue: tasks scheduled from outside a worker (or
//! overflowing a local queue) wait here until a worker takes them.

use crate::loom::{AtomicU64, AtomicUsize, Mutex, Ordering::*};
use crate::task_core::Notified;
use std::collections::VecDeque;

pub(crate) struct Inject {
    synced: Mutex<Synced>,
    /// Mirror of `synced.queue.len()` so that workers can skip the lock
    /// when the queue is empty.
    len: AtomicUsize,
    /// Tasks pushed by `push_remote` (metrics).
    remote_pushes: AtomicU64,
}

/// The fields behind the lock.
struct Synced {
    queue: VecDeque<Notified>,
    /// Set at shutdown: pushes are refused (the task's reference dropped).
    closed: bool,
}

impl Inject {
    pub(crate) fn new() -> Inject {
        Inject {
            synced: Mutex::new(Synced {
                queue: VecDeque::new(),
                closed: false,
            }),
            len: AtomicUsize::new(0),
            remote_pushes: AtomicU64::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes a task; returns `false` (dropping the entry) once closed.
    pub(crate) fn push(&self, task: Notified) -> bool {
        let mut synced = self.synced.lock();
        if synced.closed {
            drop(synced);
            drop(task);
            return false;
        }
        synced.queue.push_back(task);
        self.len.store(synced.queue.len(), Release);
        true
    }

    /// Pushes a task scheduled from outside the scheduler's workers and
    /// counts it (`RuntimeMetrics::remote_schedule_count`); returns
    /// `false` (dropping the entry) once closed.
    pub(crate) fn push_remote(&self, task: Notified) -> bool {
        let pushed = self.push(task);
        if pushed {
            self.remote_pushes.fetch_add(1, Relaxed);
        }
        pushed
    }

    /// Tasks pushed by `push_remote` so far.
    pub(crate) fn remote_count(&self) -> u64 {
        self.remote_pushes.load(Relaxed)
    }

    /// Pushes several tasks under one lock acquisition.
    pub(crate) fn push_batch(&self, tasks: impl Iterator<Item = Notified>) {
        let mut synced = self.synced.lock();
        if synced.closed {
            drop(synced);
            tasks.for_each(drop);
            return;
        }
        synced.queue.extend(tasks);
        self.len.store(synced.queue.len(), Release);
    }

    pub(crate) fn pop(&self) -> Option<Notified> {
        if self.is_empty() {
            return None;
        }
        let mut synced = self.synced.lock();
        let task = synced.queue.pop_front();
        self.len.store(synced.queue.len(), Release);
        task
    }

    /// Pops up to `n` tasks under one lock acquisition, handing each to `f`.
    pub(crate) fn pop_n(&self, n: usize, mut f: impl FnMut(Notified)) {
        if self.is_empty() {
            return;
        }
        let mut synced = self.synced.lock();
        let n = n.min(synced.queue.len());
        let batch: Vec<Notified> = synced.queue.drain(..n).collect();
        self.len.store(synced.queue.len(), Release);
        drop(synced);
        batch.into_iter().for_each(&mut f);
    }

    /// Closes the queue; returns `false` if it already was.
    pub(crate) fn close(&self) -> bool {
        let mut synced = self.synced.lock();
        !std::mem::replace(&mut synced.closed, true)
    }

    /// Drops every queued entry (after shutdown cancelled their tasks).
    pub(crate) fn drain(&self) {
        let queue = std::mem::take(&mut self.synced.lock().queue);
        self.len.store(0, Release);
        drop(queue);
    }
}
