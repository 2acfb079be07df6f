//! The cost of `compat::Compat`: tokio timers awaited from fiber-runtime
//! tasks through `.compat()`, against the same on native tokio, both with
//! two workers, interleaved rounds, medians.
//!
//! ```text
//! cargo run --release --features tokio-compat --example compat_bench -- [--rounds R] [--tasks N]
//! ```
//!
//! Rows:
//! - `spawn_sleep0`: N tasks (default 100,000) each awaiting
//!   `tokio::time::sleep(Duration::ZERO)`, spawned and joined from one
//!   task; time from the first spawn to the last join.
//! - `poll_yield`: one task awaiting `tokio::task::yield_now()` N times:
//!   the per-poll cost of entering the tokio context.
//!
//! (A lone `tokio::time::sleep(0)` waits for tokio's next 1 ms tick on
//! either runtime, so a sequential loop of them measures the tick.)

#[path = "shared/stats.rs"]
mod stats;

use fiber_runtime::compat::TokioCompatExt;
use std::time::{Duration, Instant};

fn main() {
    let mut rounds = 7;
    let mut tasks = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--rounds", Some(v)) => rounds = v,
            ("--tasks", Some(v)) => tasks = v,
            _ => {
                eprintln!("usage: compat_bench [--rounds R] [--tasks N]");
                std::process::exit(2);
            }
        }
    }
    let ours = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("spawn_sleep0", vec![], vec![]),
        ("poll_yield", vec![], vec![]),
    ];
    for _ in 0..rounds {
        // spawn_sleep0
        let t = ours.block_on(async {
            let start = Instant::now();
            let hs: Vec<_> = (0..tasks)
                .map(|_| {
                    fiber_runtime::spawn(
                        async { tokio::time::sleep(Duration::ZERO).await }.compat(),
                    )
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            start.elapsed()
        });
        rows[0].1.push(t.as_secs_f64());
        let t = tokio_rt.block_on(async {
            let start = Instant::now();
            let hs: Vec<_> = (0..tasks)
                .map(|_| tokio::spawn(async { tokio::time::sleep(Duration::ZERO).await }))
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            start.elapsed()
        });
        rows[0].2.push(t.as_secs_f64());

        // poll_yield
        let t = ours.block_on(async {
            let start = Instant::now();
            fiber_runtime::spawn(
                async move {
                    for _ in 0..tasks {
                        tokio::task::yield_now().await;
                    }
                }
                .compat(),
            )
            .await
            .unwrap();
            start.elapsed()
        });
        rows[1].1.push(t.as_secs_f64());
        let t = tokio_rt.block_on(async {
            let start = Instant::now();
            tokio::spawn(async move {
                for _ in 0..tasks {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap();
            start.elapsed()
        });
        rows[1].2.push(t.as_secs_f64());
    }
    println!(
        "{:<14} {:>14} {:>14} {:>7}",
        "row", "compat (ms)", "tokio (ms)", "ratio"
    );
    for (name, ours, theirs) in rows {
        let (o, t) = (stats::median(ours), stats::median(theirs));
        println!(
            "{name:<14} {:>14.2} {:>14.2} {:>7.2}",
            o * 1e3,
            t * 1e3,
            o / t
        );
    }
    println!("({rounds} interleaved rounds, {tasks} tasks or polls, medians; ratio < 1 is faster)");
}
