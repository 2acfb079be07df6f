//! Timers: `sleep`, `sleep_until`, `timeout` and `interval`, then 100,000
//! concurrent sleeps of 1 to 100 ms on the runtime's timer wheel.
//!
//! Timers need no thread of their own: the worker that parks waits in
//! `epoll_wait` with the next deadline as its timeout. The last section
//! counts this process's threads (`/proc/self/task`) before the runtime,
//! with it, and while the 100,000 sleeps are pending: the last two are the
//! same, the main thread plus the workers.
//!
//! `cargo run --release --example sleep [-- --workers N]`

use fiber_runtime::Builder;
use fiber_runtime::time::{Duration, Instant, interval, sleep, sleep_until, timeout};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const SLEEPS: u64 = 100_000;

fn section(title: &str) {
    println!("\n== {title}");
}

/// Threads of this process, from `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("cannot read /proc/self/task")
        .count()
}

fn workers_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--workers") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("--workers needs a positive number")),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

fn main() {
    let workers = workers_arg();
    let threads_before = threads();
    let rt = Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("failed to build the runtime");
    let threads_with_rt = threads();
    println!("fiber-runtime timers: multi-thread runtime with {workers} workers");

    rt.block_on(async {
        section("1. sleep and sleep_until");
        let t = Instant::now();
        sleep(Duration::from_millis(20)).await;
        println!("   sleep(20 ms) took {:.2?}", t.elapsed());
        let deadline = Instant::now() + Duration::from_millis(15);
        sleep_until(deadline).await;
        println!(
            "   sleep_until(now + 15 ms) woke {:.2?} after its deadline",
            deadline.elapsed()
        );

        section("2. timeout");
        let t = Instant::now();
        let quick = timeout(Duration::from_millis(50), async {
            sleep(Duration::from_millis(5)).await;
            "done"
        })
        .await;
        println!(
            "   5 ms of work under a 50 ms timeout:  {quick:?} after {:.2?}",
            t.elapsed()
        );
        let t = Instant::now();
        let slow = timeout(Duration::from_millis(10), sleep(Duration::from_secs(3600))).await;
        match slow {
            Ok(()) => println!("   an hour of work finished within 10 ms?!"),
            Err(e) => println!(
                "   1 h of work under a 10 ms timeout:  Err({e}) after {:.2?}",
                t.elapsed()
            ),
        }

        section("3. interval");
        let start = Instant::now();
        let mut every = interval(Duration::from_millis(10));
        let mut ticks = Vec::new();
        for _ in 0..5 {
            let due = every.tick().await;
            ticks.push(format!("{:.1?}", due.duration_since(start)));
        }
        println!(
            "   5 ticks of a 10 ms interval, due at: {}",
            ticks.join(", ")
        );
        println!(
            "   (the first tick completes at once; the 5th returned {:.2?} after start)",
            start.elapsed()
        );

        section("4. 100,000 concurrent sleeps of 1..=100 ms");
        let done = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let handles: Vec<_> = (0..SLEEPS)
            .map(|i| {
                let done = done.clone();
                fiber_runtime::spawn(async move {
                    let deadline = Instant::now() + Duration::from_millis(i % 100 + 1);
                    sleep_until(deadline).await;
                    let late = deadline.elapsed();
                    done.fetch_add(1, Ordering::Relaxed);
                    late
                })
            })
            .collect();
        let spawned = t.elapsed();
        // Sample the thread count while the sleeps are pending.
        let mut threads_during = 0;
        let mut samples = 0;
        while done.load(Ordering::Relaxed) < SLEEPS as usize {
            threads_during = threads_during.max(threads());
            samples += 1;
            sleep(Duration::from_millis(5)).await;
        }
        let mut late_max = Duration::ZERO;
        let mut late_sum = Duration::ZERO;
        for h in handles {
            let late = h.await.expect("sleeping task failed");
            late_max = late_max.max(late);
            late_sum += late;
        }
        let elapsed = t.elapsed();
        println!(
            "   spawned in {spawned:.2?}; all {SLEEPS} woke and were joined after {elapsed:.2?}"
        );
        println!(
            "   (the longest sleep is 100 ms: {:.2?} of overhead in all)",
            elapsed.saturating_sub(Duration::from_millis(100))
        );
        println!(
            "   lateness past each deadline: mean {:.2?}, max {late_max:.2?}",
            late_sum / SLEEPS as u32
        );
        println!(
            "   threads: {threads_before} before the runtime, {threads_with_rt} with it \
             (main + {workers} workers), at most {threads_during} during the sleeps \
             ({samples} samples)"
        );
        assert_eq!(
            threads_during, threads_with_rt,
            "the timers started threads of their own"
        );
        println!("   -> no timer thread: the sleeping tasks cost no thread at all");
    });
}
