//! The fiber rows of `examples/benchmark.rs`: the same workloads as
//! `workloads.rs`, written with fibers (blocking style) on fiber-runtime.
//! They are compared with tokio's *tasks* running the `workloads.rs`
//! version: tokio has no fibers, and a user choosing between the two
//! writes one or the other.

use fiber_runtime::fiber;
use std::hint::black_box;
use std::time::Duration;

/// `n` fibers spawned from one task (each returns its number), all joined.
pub(crate) async fn spawn_many(n: u64) {
    spawn_summed(n, black_box).await
}

/// `fibers` fibers, each calling `fiber::yield_now` `yields` times.
pub(crate) async fn yield_many(fibers: usize, yields: usize) {
    fiber_runtime::spawn(async move {
        let handles: Vec<_> = (0..fibers)
            .map(|_| fiber::spawn(move || (0..yields).for_each(|_| fiber::yield_now())))
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    })
    .await
    .unwrap();
}

/// `n` fibers, each `fiber::sleep`ing once for `i % max_ms + 1` ms
/// (spawned from one task), all joined.
pub(crate) async fn timers(n: u64, max_ms: u64) {
    spawn_summed(n, move |i| {
        fiber::sleep(Duration::from_millis(i % max_ms + 1));
        i
    })
    .await
}

/// `n` fibers spawned from one task, fiber `i` running `body(i)` (which
/// returns `i`); all joined, and the sum of their results checked.
async fn spawn_summed(n: u64, body: impl Fn(u64) -> u64 + Copy + Send + 'static) {
    let sum = fiber_runtime::spawn(async move {
        let handles: Vec<_> = (0..n).map(|i| fiber::spawn(move || body(i))).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    })
    .await
    .unwrap();
    assert_eq!(sum, n * n.saturating_sub(1) / 2);
}
