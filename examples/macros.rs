//! `futures::join!` and `futures::select!` on fiber-runtime.
//!
//! `join!` waits for all of its futures; `select!` finishes with the first
//! one ready and *drops* the others. Each branch below owns a `Noisy`
//! guard that prints when it is dropped, and whether its branch had
//! completed, so the output shows which branch lost and when it was
//! cancelled.
//!
//! `cargo run --release --example macros`

use futures::FutureExt;
use std::time::Instant;

/// Prints when dropped, and whether its owner ran to the end first: shows
/// which futures were cancelled (dropped before completion).
struct Noisy {
    name: &'static str,
    completed: bool,
}

impl Drop for Noisy {
    fn drop(&mut self) {
        if self.completed {
            println!("    {}: completed", self.name);
        } else {
            println!("    {}: DROPPED before completion (cancelled)", self.name);
        }
    }
}

/// Yields `rounds` times, holding a `Noisy` guard, then returns `name`.
async fn branch(name: &'static str, rounds: u32) -> &'static str {
    let mut guard = Noisy {
        name,
        completed: false,
    };
    for _ in 0..rounds {
        fiber_runtime::yield_now().await;
    }
    guard.completed = true;
    name
}

fn main() {
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("failed to build runtime");
    let start = Instant::now();

    rt.block_on(async {
        println!("join! of two async blocks and a spawned task:");
        let (a, b, c) = futures::join!(
            branch("join-a", 3),
            branch("join-b", 1),
            fiber_runtime::spawn(async { (1..=10u32).product::<u32>() }),
        );
        println!("    results: {a}, {b}, {}", c.expect("task failed"));

        println!("select! between a fast and a slow branch:");
        // The futures are built inside `select!`, so `select!` owns them and
        // drops the losing one as soon as the winner is ready.
        let winner = futures::select! {
            w = Box::pin(branch("fast", 2)).fuse() => w,
            w = Box::pin(branch("slow", 1_000)).fuse() => w,
        };
        println!("    select! returned; winner: {winner}");

        println!("select! on two spawned tasks (the loser keeps running until aborted):");
        let mut fast = fiber_runtime::spawn(branch("task-fast", 1));
        let mut slow = fiber_runtime::spawn(branch("task-slow", u32::MAX));
        // Selecting on `&mut handle` keeps the handles: dropping a
        // JoinHandle would only detach its task, not stop it.
        let winner = futures::select! {
            r = (&mut fast).fuse() => r.expect("task failed"),
            r = (&mut slow).fuse() => r.expect("task failed"),
        };
        println!(
            "    winner: {winner}; task-slow still running: {}",
            !slow.is_finished()
        );
        slow.abort();
        let err = slow.await.expect_err("an aborted task has no output");
        println!(
            "    task-slow joined: {err} (is_cancelled = {})",
            err.is_cancelled()
        );
    });
    println!("done in {:.1?}", start.elapsed());
}
