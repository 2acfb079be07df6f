//! Schedulers: which thread polls a task, and when.
//!
//! `Handle` is the cheap, cloneable reference every task and runtime handle
//! holds; `Context` is the per-thread state of a thread driving one;
//! `Common` is what both flavors share (configuration, driver, blocking
//! pool, fiber count).

pub(crate) mod blocking;
pub(crate) mod context;
pub(crate) mod current_thread;
pub(crate) mod dump;
pub(crate) mod inject;
pub(crate) mod metrics;
pub(crate) mod monitor;
pub(crate) mod multi_thread;
pub(crate) mod park;

use crate::driver;
use crate::task_core::{JoinHandle, SpawnMeta};
use park::DriverSlot;
use std::future::Future;
use std::sync::Arc;

/// What the runtime's builder configures for the scheduler, either flavor.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The default stack size of fibers spawned on the runtime.
    pub(crate) fiber_stack_size: usize,
    /// The long-poll detector (`monitor.rs`).
    pub(crate) monitor: monitor::MonitorConfig,
    /// The workers' poll-time histograms; `None` if off (`metrics.rs`).
    pub(crate) histogram: Option<metrics::HistogramConfig>,
}

/// The parts of a runtime both flavors have.
pub(crate) struct Common {
    /// Identifies the runtime for the fibers' per-thread registries: never
    /// reused, unlike the address of its shared state.
    pub(crate) id: usize,
    pub(crate) config: Config,
    pub(crate) blocking: blocking::Spawner,
    /// What tasks and sockets use to reach the driver.
    pub(crate) driver: driver::Handle,
    /// The driver itself, turned by whichever thread parks first.
    pub(crate) driver_slot: Arc<DriverSlot>,
    /// The long-poll monitor thread, if started.
    pub(crate) monitor: monitor::Monitor,
    /// High-water marks of the fiber stacks its threads measured
    /// (`fiber::stack`, "High-water marks").
    pub(crate) fiber_stacks: crate::fiber::stack::StackHistogram,
}

impl Common {
    pub(crate) fn new(
        config: Config,
        blocking: blocking::Spawner,
        driver_slot: Arc<DriverSlot>,
    ) -> Common {
        // A plain std atomic: only ever handed out.
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Common {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config,
            blocking,
            driver: driver_slot.handle().clone(),
            driver_slot,
            monitor: monitor::Monitor::default(),
            fiber_stacks: Default::default(),
        }
    }
}

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
    pub(crate) fn common(&self) -> &Common {
        match self {
            Handle::CurrentThread(h) => &h.common,
            Handle::MultiThread(h) => &h.common,
        }
    }

    /// Spawns a task, with its name if it has one and its spawn location.
    pub(crate) fn spawn<F>(&self, future: F, meta: SpawnMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Handle::CurrentThread(h) => current_thread::Handle::spawn(h, future, meta),
            Handle::MultiThread(h) => multi_thread::Handle::spawn(h, future, meta),
        }
    }

    /// Spawns the task of a fiber: once it first runs, it runs only on
    /// that thread.
    pub(crate) fn spawn_fiber<F>(&self, future: F, meta: SpawnMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            // Every task runs on the thread driving the runtime.
            Handle::CurrentThread(h) => current_thread::Handle::spawn_fiber(h, future, meta),
            Handle::MultiThread(h) => multi_thread::Handle::spawn_pinned(h, future, meta),
        }
    }

    pub(crate) fn blocking_spawner(&self) -> &blocking::Spawner {
        &self.common().blocking
    }

    /// Identifies the runtime (never reused).
    pub(crate) fn id(&self) -> usize {
        self.common().id
    }

    pub(crate) fn metrics(&self) -> metrics::Snapshot {
        match self {
            Handle::CurrentThread(h) => h.metrics(),
            Handle::MultiThread(h) => h.metrics(),
        }
    }

    /// Takes a dump (`dump.rs`), waiting at most `wait` for the workers.
    pub(crate) fn dump(&self, wait: std::time::Duration) -> dump::Raw {
        match self {
            Handle::CurrentThread(h) => dump::collect(&**h, wait),
            Handle::MultiThread(h) => dump::collect(&**h, wait),
        }
    }
}
