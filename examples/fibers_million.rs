//! One million concurrent fibers, each suspended waiting on one shared
//! event, on default kernel settings (`vm.max_map_count` = 65530 here):
//! prints the RSS per fiber, the kernel mappings the process holds, and
//! how long waking them all takes.
//!
//! ```text
//! cargo run --release --example fibers_million -- [--fibers N]
//! ```

use fiber_runtime::fiber;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
#[path = "shared/stats.rs"]
mod stats;
use stats::rss_bytes;

/// A one-shot event: `wait` is pending until `set`, which wakes every
/// waiter.
#[derive(Default)]
struct Event {
    set: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Event {
    fn set(&self) {
        self.set.store(true, SeqCst);
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap());
        for w in waiters {
            w.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        struct Wait<'a>(&'a Event);
        impl Future for Wait<'_> {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.0.set.load(SeqCst) {
                    return Poll::Ready(());
                }
                self.0.waiters.lock().unwrap().push(cx.waker().clone());
                // Set meanwhile: its waker list may have missed us.
                if self.0.set.load(SeqCst) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
        Wait(self)
    }
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

fn main() {
    let mut fibers = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fibers" => {
                fibers = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--fibers N")
            }
            other => panic!("unknown argument {other} (--fibers N)"),
        }
    }
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let event = Arc::new(Event::default());
    let waiting = Arc::new(AtomicUsize::new(0));
    let before = rss_bytes();
    let start = Instant::now();
    let handles: Vec<_> = {
        let _g = rt.enter();
        (0..fibers)
            .map(|i| {
                let (event, waiting) = (event.clone(), waiting.clone());
                fiber::spawn(move || {
                    waiting.fetch_add(1, SeqCst);
                    fiber::wait(event.wait());
                    i
                })
            })
            .collect()
    };
    // Wait (in a task, not a busy loop) until every fiber is suspended.
    rt.block_on(async {
        while waiting.load(SeqCst) < fibers {
            fiber_runtime::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let spawned = start.elapsed();
    let per_fiber = (rss_bytes() - before) as f64 / fibers as f64;
    println!(
        "{fibers} fibers suspended on one event, 256 KiB stacks, 2 workers \
         (vm.max_map_count = {max_map_count})"
    );
    println!("spawned and suspended in {spawned:?}");
    println!(
        "RSS per fiber: {per_fiber:.0} bytes ({:.2} KiB); kernel mappings: {}; alive fibers: {}",
        per_fiber / 1024.0,
        mappings(),
        rt.metrics().num_alive_fibers()
    );
    let start = Instant::now();
    event.set();
    let sum = rt.block_on(async {
        let mut sum = 0usize;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, fibers * (fibers - 1) / 2);
    println!("woken and joined in {:?}", start.elapsed());
    assert_eq!(rt.metrics().num_alive_fibers(), 0);
}
