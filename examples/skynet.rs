//! Skynet (1M leaves, fan-out 10, sum checked) three ways on 2 workers:
//! fiber-runtime tasks, fiber-runtime fibers (each fiber spawns ten and
//! joins them in blocking style), and tokio tasks. Compare with Go's
//! goroutines: `go run benches/go/skynet.go`.
//!
//! ```text
//! cargo run --release --example skynet -- [--rounds R]
//! ```

use fiber_runtime::fiber;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
#[path = "shared/stats.rs"]
mod stats;
use stats::median;

const SIZE: u64 = 1_000_000;
const SUM: u64 = SIZE * (SIZE - 1) / 2;

fn task_node(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let hs: Vec<_> = (0..10)
            .map(|i| fiber_runtime::spawn(task_node(num + i * (size / 10), size / 10)))
            .collect();
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    })
}

fn tokio_node(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let hs: Vec<_> = (0..10)
            .map(|i| tokio::spawn(tokio_node(num + i * (size / 10), size / 10)))
            .collect();
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    })
}

fn fiber_node(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let hs: Vec<_> = (0..10)
        .map(|i| {
            fiber::Builder::new()
                .stack_size(16 * 1024)
                .spawn(move || fiber_node(num + i * (size / 10), size / 10))
                .unwrap()
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn main() {
    let mut rounds = 5;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            "--only" => only = Some(args.next().expect("--only tasks|fibers|tokio")),
            other => panic!("unknown argument {other} (--rounds R, --only tasks|fibers|tokio)"),
        }
    }
    let (mut t, mut f, mut k) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let rt = fiber_runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let run = |what: &str| only.as_deref().is_none_or(|o| o == what);
        if run("tasks") {
            let start = Instant::now();
            assert_eq!(rt.block_on(rt.spawn(task_node(0, SIZE))).unwrap(), SUM);
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
        if run("fibers") {
            let start = Instant::now();
            assert_eq!(
                rt.block_on(async { fiber::spawn(|| fiber_node(0, SIZE)).await.unwrap() }),
                SUM
            );
            f.push(start.elapsed().as_secs_f64() * 1e3);
        }
        drop(rt);
        if !run("tokio") {
            continue;
        }
        let trt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let start = Instant::now();
        assert_eq!(trt.block_on(trt.spawn(tokio_node(0, SIZE))).unwrap(), SUM);
        k.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!("skynet 1M, fan-out 10, 2 workers, median of {rounds} interleaved rounds");
    for (name, v) in [
        ("fiber-runtime tasks: ", t),
        ("fiber-runtime fibers:", f),
        ("tokio tasks:         ", k),
    ] {
        if !v.is_empty() {
            println!("{name} {:8.1} ms", median(v));
        }
    }
}
