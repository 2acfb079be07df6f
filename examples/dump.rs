//! What is stuck? Two fibers deadlocked on a pair of `sync::Mutex`es, a
//! named task waiting on a timer, and the dump that shows it all:
//! `Handle::dump()` prints every live task and fiber, with the backtrace
//! of each suspended fiber and what it is blocked in.
//!
//! `cargo run --example dump` (add `--release` to see a release build's
//! backtraces: function names without lines, the blocking call's line
//! still given).

use fiber_runtime::sync::{Barrier, Mutex};
use fiber_runtime::{Builder, fiber, task, time};
use std::sync::Arc;
use std::time::Duration;

/// Takes `from` then `to`: with another fiber taking them the other way
/// round, both wait forever.
#[inline(never)]
fn transfer(from: &Mutex<u64>, to: &Mutex<u64>, both_hold_one: &Barrier) {
    let mut from = from.blocking_lock();
    both_hold_one.blocking_wait();
    let mut to = to.blocking_lock();
    *from -= 10;
    *to += 10;
}

// (`black_box` after the call: a tail call would leave no frame of its
// own in a release build's backtrace.)
#[inline(never)]
fn pay_rent(checking: &Mutex<u64>, savings: &Mutex<u64>, barrier: &Barrier) {
    transfer(checking, savings, barrier);
    std::hint::black_box(());
}

#[inline(never)]
fn collect_interest(checking: &Mutex<u64>, savings: &Mutex<u64>, barrier: &Barrier) {
    transfer(savings, checking, barrier);
    std::hint::black_box(());
}

fn main() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let checking = Arc::new(Mutex::new(100));
    let savings = Arc::new(Mutex::new(1_000));
    let barrier = Arc::new(Barrier::new(2));

    let (c, s, b) = (checking.clone(), savings.clone(), barrier.clone());
    let _rent = fiber::Builder::new()
        .name("rent")
        .spawn(move || pay_rent(&c, &s, &b))
        .expect("fiber");
    let (c, s, b) = (checking.clone(), savings.clone(), barrier.clone());
    let _interest = fiber::Builder::new()
        .name("interest")
        .spawn(move || collect_interest(&c, &s, &b))
        .expect("fiber");
    let _heartbeat = task::Builder::new()
        .name("heartbeat")
        .spawn(async {
            loop {
                time::sleep(Duration::from_secs(1)).await;
            }
        })
        .expect("task");

    // Wait until both fibers are stuck on their second lock.
    let dump = loop {
        let dump = rt.handle().dump();
        let stuck = dump
            .fibers()
            .filter(|f| f.blocked_in() == Some("Mutex::blocking_lock"))
            .count();
        if stuck == 2 {
            break dump;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("{dump}");
    // Dropping the runtime unwinds the stuck fibers.
}
