//! Fiber micro-benchmarks and a memory check, against tokio and may where
//! the comparison exists.
//!
//! ```text
//! cargo run --release --example fibers -- [--fibers N] [--rounds R]
//! ```
//!
//! (The raw switch, two bare contexts ping-ponging with no scheduler,
//! against corosensei's: `cargo test --release --lib -- --ignored
//! --nocapture raw_switch`; the switch is not public API.)
//!
//! - yield: two fibers on a current-thread runtime each calling
//!   `fiber::yield_now` N times; ns per switch (each yield is one switch
//!   out and one back in: reported per yield). tokio current-thread
//!   `yield_now().await` in two tasks, and may's `coroutine::yield_now` in
//!   two coroutines on one may worker, same count, for comparison.
//!   The same two fibers on a multi-thread runtime with one worker (the
//!   pinned-queue path fibers take there).
//! - spawn+join: spawn a fiber on a pooled stack and join it, ns per pair;
//!   the same with a may coroutine.
//! - memory: N fibers (default 100k) suspended in `fiber::wait`, RSS growth
//!   per fiber at the default 256 KiB stack size.

use fiber_runtime::fiber;
use std::time::{Duration, Instant};
#[path = "shared/stats.rs"]
mod stats;
use stats::{median, rss_bytes};

/// may runs on its own global scheduler: configured once, one worker.
fn may_init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(1);
    });
}

fn may_yield_ns(n: u64) -> f64 {
    may_init();
    let start = Instant::now();
    // SAFETY: may's contract for `spawn`: the closures use no thread-local
    // storage and do not block the thread.
    let (a, b) = unsafe {
        (
            may::coroutine::spawn(move || (0..n).for_each(|_| may::coroutine::yield_now())),
            may::coroutine::spawn(move || (0..n).for_each(|_| may::coroutine::yield_now())),
        )
    };
    a.join().unwrap();
    b.join().unwrap();
    start.elapsed().as_nanos() as f64 / (2 * n) as f64
}

fn may_spawn_join_ns(n: u64) -> f64 {
    may_init();
    // Joined from inside a coroutine, as the fiber version joins from a
    // task on its runtime.
    // SAFETY: as in `may_yield_ns`.
    let h = unsafe {
        may::coroutine::spawn(move || {
            let start = Instant::now();
            for i in 0..n {
                // SAFETY: as above.
                let h = may::coroutine::spawn(move || i);
                assert_eq!(h.join().unwrap(), i);
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
    };
    h.join().unwrap()
}

fn fiber_yield_ns(n: u64) -> f64 {
    let rt = fiber_runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    fiber_yield_on(&rt, n)
}

/// The same on a multi-thread runtime with one worker: both fibers are
/// pinned to it, so this times the pinned-queue path.
fn fiber_yield_mt_ns(n: u64) -> f64 {
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    fiber_yield_on(&rt, n)
}

fn fiber_yield_on(rt: &fiber_runtime::Runtime, n: u64) -> f64 {
    rt.block_on(async {
        let start = Instant::now();
        let a = fiber::spawn(move || (0..n).for_each(|_| fiber::yield_now()));
        let b = fiber::spawn(move || (0..n).for_each(|_| fiber::yield_now()));
        a.await.unwrap();
        b.await.unwrap();
        start.elapsed().as_nanos() as f64 / (2 * n) as f64
    })
}

fn tokio_yield_ns(n: u64) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let a = tokio::spawn(async move {
            for _ in 0..n {
                tokio::task::yield_now().await
            }
        });
        let b = tokio::spawn(async move {
            for _ in 0..n {
                tokio::task::yield_now().await
            }
        });
        a.await.unwrap();
        b.await.unwrap();
        start.elapsed().as_nanos() as f64 / (2 * n) as f64
    })
}

fn spawn_join_ns(n: u64) -> f64 {
    let rt = fiber_runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm the stack pool.
        fiber::spawn(|| ()).await.unwrap();
        let start = Instant::now();
        for i in 0..n {
            assert_eq!(fiber::spawn(move || i).await.unwrap(), i);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

fn memory_per_fiber(n: usize) -> (f64, Duration) {
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let before = rss_bytes();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let _g = rt.enter();
        for _ in 0..n {
            let tx = tx.clone();
            // Detached: each fiber waits forever, until the runtime drops.
            drop(fiber::spawn(move || {
                tx.send(()).unwrap();
                fiber::wait(std::future::pending::<()>());
            }));
        }
    }
    for _ in 0..n {
        rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    let after = rss_bytes();
    assert_eq!(rt.metrics().num_alive_fibers(), n);
    // Shutdown unwinds every suspended fiber on its own worker.
    let t = Instant::now();
    drop(rt);
    ((after - before) as f64 / n as f64, t.elapsed())
}

fn main() {
    let mut fibers = 100_000usize;
    let mut rounds = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fibers" => {
                fibers = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--fibers N")
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    const N: u64 = 200_000;
    let (mut fy, mut ty, mut sj) = (Vec::new(), Vec::new(), Vec::new());
    let mut fy_mt = Vec::new();
    let (mut my, mut msj) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        fy.push(fiber_yield_ns(N));
        fy_mt.push(fiber_yield_mt_ns(N));
        ty.push(tokio_yield_ns(N));
        my.push(may_yield_ns(N));
        sj.push(spawn_join_ns(N / 4));
        msj.push(may_spawn_join_ns(N / 4));
    }
    println!("medians of {rounds} interleaved rounds");
    println!(
        "fiber yield_now, 2 fibers, current-thread:    {:6.1} ns per yield",
        median(fy.clone())
    );
    println!(
        "fiber yield_now, 2 fibers, multi-thread(1):  {:6.1} ns per yield",
        median(fy_mt)
    );
    println!(
        "tokio yield_now().await, 2 tasks, current:    {:6.1} ns per yield",
        median(ty.clone())
    );
    println!(
        "may yield_now, 2 coroutines, 1 worker:        {:6.1} ns per yield",
        median(my.clone())
    );
    println!(
        "ratio fiber/tokio, fiber/may:                 {:6.2} {:6.2}",
        median(fy.clone()) / median(ty),
        median(fy) / median(my)
    );
    println!(
        "fiber spawn + join (pooled stack):            {:6.1} ns per fiber",
        median(sj.clone())
    );
    println!(
        "may spawn + join:                             {:6.1} ns per coroutine",
        median(msj.clone())
    );
    println!(
        "ratio fiber/may:                              {:6.2}",
        median(sj) / median(msj)
    );
    let (m, shutdown) = memory_per_fiber(fibers);
    println!(
        "memory: {fibers} suspended fibers, 256 KiB stacks: {:.0} bytes ({:.2} KiB) RSS per fiber",
        m,
        m / 1024.0
    );
    println!("runtime drop unwinding all of them: {shutdown:?}");
}
