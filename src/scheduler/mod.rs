//! Schedulers: which thread polls a task, and when.
//!
//! `Handle` is the cheap, cloneable reference every task and runtime handle
//! holds; `Context` is the per-thread state of a thread driving one.

pub(crate) mod blocking;
pub(crate) mod current_thread;
pub(crate) mod inject;
pub(crate) mod multi_thread;

use crate::runtime::metrics::RuntimeMetrics;
use crate::task::JoinHandle;
use std::future::Future;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub(crate) enum Handle {
    CurrentThread(Arc<current_thread::Handle>),
    MultiThread(Arc<multi_thread::Handle>),
}

pub(crate) enum Context {
    CurrentThread(current_thread::Context),
    MultiThread(multi_thread::Context),
}

impl Handle {
    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Handle::CurrentThread(h) => current_thread::Handle::spawn(h, future),
            Handle::MultiThread(h) => multi_thread::Handle::spawn(h, future),
        }
    }

    pub(crate) fn blocking_spawner(&self) -> &blocking::Spawner {
        match self {
            Handle::CurrentThread(h) => &h.blocking,
            Handle::MultiThread(h) => &h.blocking,
        }
    }

    /// Identifies the runtime (the address of its shared state).
    pub(crate) fn id(&self) -> usize {
        match self {
            Handle::CurrentThread(h) => Arc::as_ptr(h) as usize,
            Handle::MultiThread(h) => Arc::as_ptr(h) as usize,
        }
    }

    pub(crate) fn fiber_stack_size(&self) -> usize {
        match self {
            Handle::CurrentThread(h) => h.fiber_stack_size,
            Handle::MultiThread(h) => h.fiber_stack_size,
        }
    }

    pub(crate) fn fiber_counter(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        match self {
            Handle::CurrentThread(h) => h.alive_fibers.clone(),
            Handle::MultiThread(h) => h.alive_fibers.clone(),
        }
    }

    pub(crate) fn driver(&self) -> &crate::runtime::driver::Handle {
        match self {
            Handle::CurrentThread(h) => &h.driver,
            Handle::MultiThread(h) => &h.driver,
        }
    }

    pub(crate) fn metrics(&self) -> RuntimeMetrics {
        match self {
            Handle::CurrentThread(h) => h.metrics(),
            Handle::MultiThread(h) => h.metrics(),
        }
    }
}
