//! Memory per pending task, shared by `memory_usage.rs` and `benchmark.rs`.
//!
//! Method: build the runtime, warm it up, read the resident set size
//! (`VmRSS` in `/proc/self/status`), spawn `n` tasks that each bump a
//! counter when first polled and then wait forever
//! (`std::future::pending()`), wait until every task has been polled once
//! (so none is sitting in a run queue), and read the RSS again. The
//! `JoinHandle`s are dropped right after spawning (the tasks are detached),
//! so the figure is the task itself plus the runtime's bookkeeping for it,
//! not a `Vec` of handles. The runtime is dropped afterwards, cancelling
//! the tasks.
//!
//! With [`Wait::Sleep`] each task awaits a one-hour `sleep` of its runtime
//! instead (registered with the timer on that first poll), so the figure is
//! the whole cost of a pending sleep: the task, the `Sleep` inside its
//! future and the timer's own entry. The bare-task baseline
//! ([`Wait::Forever`]) is **not** subtracted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    pub(crate) tasks: usize,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
    pub(crate) future_size: usize,
    pub(crate) spawn_time: Duration,
    pub(crate) shutdown_time: Duration,
}

impl Report {
    pub(crate) fn bytes_per_task(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.tasks as f64
    }
}

/// Resident set size of this process, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status =
        std::fs::read_to_string("/proc/self/status").expect("cannot read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("no VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("malformed VmRSS line");
    kb * 1024
}

/// What each measured task waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// `std::future::pending()`: the bare task.
    Forever,
    /// A one-hour `sleep` of the runtime under test.
    Sleep,
}

/// How long a [`Wait::Sleep`] task sleeps: longer than any measurement.
const SLEEP: Duration = Duration::from_secs(3600);

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// The pending task: counts its first poll, then never completes.
async fn pending_task() {
    STARTED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await
}

/// Counts its first poll, then waits an hour on a fiber-runtime timer.
async fn fiber_sleep_task() {
    STARTED.fetch_add(1, Ordering::Relaxed);
    fiber_runtime::time::sleep(SLEEP).await
}

/// Counts its first poll, then waits an hour on a tokio timer.
async fn tokio_sleep_task() {
    STARTED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(SLEEP).await
}

fn wait_all_started(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while STARTED.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "tasks were not all polled within 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the workers go idle (and free any queue growth).
    std::thread::sleep(Duration::from_millis(50));
}

/// Measures fiber-runtime with `workers` worker threads.
pub(crate) fn measure_fiber(n: usize, workers: usize, wait: Wait) -> Report {
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("failed to build fiber-runtime");
    // Warm up: threads started, thread-locals and allocator arenas touched.
    rt.block_on(async {
        let hs: Vec<_> = (0..1000)
            .map(|i| fiber_runtime::spawn(async move { i }))
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    STARTED.store(0, Ordering::Relaxed);

    let rss_before = rss_bytes();
    let start = Instant::now();
    rt.block_on(async move {
        fiber_runtime::spawn(async move {
            for _ in 0..n {
                match wait {
                    Wait::Forever => drop(fiber_runtime::spawn(pending_task())),
                    Wait::Sleep => drop(fiber_runtime::spawn(fiber_sleep_task())),
                }
            }
        })
        .await
        .unwrap();
    });
    let spawn_time = start.elapsed();
    wait_all_started(n);
    let rss_after = rss_bytes();
    assert_eq!(
        rt.metrics().num_alive_tasks(),
        n,
        "unexpected number of alive tasks"
    );

    let start = Instant::now();
    drop(rt);
    Report {
        tasks: n,
        rss_before,
        rss_after,
        future_size: match wait {
            Wait::Forever => std::mem::size_of_val(&pending_task()),
            Wait::Sleep => std::mem::size_of_val(&fiber_sleep_task()),
        },
        spawn_time,
        shutdown_time: start.elapsed(),
    }
}

/// Measures tokio (multi-thread, drivers enabled, otherwise default
/// settings) with `workers` workers.
pub(crate) fn measure_tokio(n: usize, workers: usize, wait: Wait) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("failed to build tokio");
    rt.block_on(async {
        let hs: Vec<_> = (0..1000).map(|i| tokio::spawn(async move { i })).collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    STARTED.store(0, Ordering::Relaxed);

    let rss_before = rss_bytes();
    let start = Instant::now();
    rt.block_on(async move {
        tokio::spawn(async move {
            for _ in 0..n {
                match wait {
                    Wait::Forever => drop(tokio::spawn(pending_task())),
                    Wait::Sleep => drop(tokio::spawn(tokio_sleep_task())),
                }
            }
        })
        .await
        .unwrap();
    });
    let spawn_time = start.elapsed();
    wait_all_started(n);
    let rss_after = rss_bytes();
    assert_eq!(
        rt.metrics().num_alive_tasks(),
        n,
        "unexpected number of alive tasks"
    );

    let start = Instant::now();
    drop(rt);
    Report {
        tasks: n,
        rss_before,
        rss_after,
        future_size: match wait {
            Wait::Forever => std::mem::size_of_val(&pending_task()),
            Wait::Sleep => std::mem::size_of_val(&tokio_sleep_task()),
        },
        spawn_time,
        shutdown_time: start.elapsed(),
    }
}
