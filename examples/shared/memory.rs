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

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// The pending task: counts its first poll, then never completes.
async fn pending_task() {
    STARTED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await
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
pub(crate) fn measure_fiber(n: usize, workers: usize) -> Report {
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
                drop(fiber_runtime::spawn(pending_task()));
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
        future_size: std::mem::size_of_val(&pending_task()),
        spawn_time,
        shutdown_time: start.elapsed(),
    }
}

/// Measures tokio (multi-thread, default settings) with `workers` workers.
pub(crate) fn measure_tokio(n: usize, workers: usize) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
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
                drop(tokio::spawn(pending_task()));
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
        future_size: std::mem::size_of_val(&pending_task()),
        spawn_time,
        shutdown_time: start.elapsed(),
    }
}
