//! Worker metrics: per-worker counters written by their worker, and the
//! snapshot of a scheduler's counters that `RuntimeMetrics` presents.

use crate::loom::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters of one worker. Only that worker writes them (in batches, at
/// maintenance and park time), so plain relaxed stores suffice.
#[derive(Default)]
#[repr(align(128))] // own cache line(s): no false sharing between workers
pub(crate) struct WorkerMetrics {
    polls: AtomicU64,
    steals: AtomicU64,
    parks: AtomicU64,
    busy_ns: AtomicU64,
    forced_yields: AtomicU64,
    /// Local queue length at the last flush (current-thread flavor; the
    /// multi-thread flavor reads its ring directly).
    queue_depth: AtomicU64,
}

/// What a worker accumulates locally between flushes.
#[derive(Default, Debug)]
pub(crate) struct LocalMetrics {
    pub(crate) polls: u64,
    pub(crate) steals: u64,
    pub(crate) parks: u64,
    pub(crate) busy_ns: u64,
    pub(crate) forced_yields: u64,
}

impl WorkerMetrics {
    /// Publishes `local`, first adding the budget-forced yields counted
    /// on this thread (so: call it on the worker's own thread).
    pub(crate) fn flush(&self, local: &mut LocalMetrics) {
        local.forced_yields += crate::task_core::coop::take_forced_yields();
        self.forced_yields.store(local.forced_yields, Relaxed);
        self.polls.store(local.polls, Relaxed);
        self.steals.store(local.steals, Relaxed);
        self.parks.store(local.parks, Relaxed);
        self.busy_ns.store(local.busy_ns, Relaxed);
    }

    pub(crate) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            polls: self.polls.load(Relaxed),
            steals: self.steals.load(Relaxed),
            parks: self.parks.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            forced_yields: self.forced_yields.load(Relaxed),
            local_queue_depth: self.queue_depth.load(Relaxed) as usize,
        }
    }
}

/// One worker's counters at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkerSnapshot {
    pub(crate) polls: u64,
    pub(crate) steals: u64,
    pub(crate) parks: u64,
    pub(crate) busy: Duration,
    pub(crate) forced_yields: u64,
    pub(crate) local_queue_depth: usize,
}

/// A scheduler's counters at one instant.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) workers: Vec<WorkerSnapshot>,
    pub(crate) alive_tasks: usize,
    pub(crate) alive_fibers: usize,
    pub(crate) global_queue_depth: usize,
    pub(crate) blocking_threads: usize,
    pub(crate) spawned_tasks: u64,
    pub(crate) remote_schedules: u64,
    pub(crate) io_ready: u64,
    /// Worker hand-offs so far (multi-thread flavor).
    pub(crate) handoffs: u64,
    /// Replacement threads alive (multi-thread flavor).
    pub(crate) replacement_threads: usize,
}
