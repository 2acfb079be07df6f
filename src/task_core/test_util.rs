//! A scheduler for unit and loom tests: a plain queue that the test drains.

use super::{
    JoinHandle, Notified, RawTask, Runnable, Schedule, SpanKind, SpawnMeta, Yielded, unowned,
};
use crate::loom::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

/// Entries leave it one at a time, under its lock, so a task's `RUNNING`
/// is never seen by two pollers: it may hold yielded (still running)
/// tasks.
#[derive(Default)]
pub(crate) struct TestSched {
    queue: Mutex<VecDeque<Runnable>>,
}

impl Schedule for Arc<TestSched> {
    fn schedule(&self, task: Notified) {
        self.queue.lock().push_back(task.into());
    }

    const YIELDS_RUNNING: bool = true;

    fn yield_running(&self, task: Yielded) -> Option<Yielded> {
        self.queue.lock().push_back(Runnable::Yielded(task));
        None
    }

    fn release(&self, _task: RawTask) -> bool {
        false
    }
}

impl TestSched {
    /// Spawns a task not tracked by an owned list; returns its first entry.
    #[track_caller]
    pub(crate) fn spawn<F>(self: &Arc<Self>, fut: F) -> (Notified, JoinHandle<F::Output>)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        unowned(fut, self.clone(), SpanKind::Task, SpawnMeta::new(None))
    }

    pub(crate) fn pop(&self) -> Option<Runnable> {
        self.queue.lock().pop_front()
    }

    /// Drops every queued entry (a queue drained at shutdown).
    pub(crate) fn drain(&self) {
        let entries = std::mem::take(&mut *self.queue.lock());
        drop(entries);
    }

    /// Runs queued tasks until the queue is empty.
    pub(crate) fn run_all(&self) {
        while let Some(t) = self.pop() {
            t.run();
        }
    }
}
