//! CPU-bound load on every worker: how evenly does the work spread?
//!
//! Spawns `--tasks` (default: 4 per worker) tasks that hash in a tight
//! loop, yielding every few chunks, then prints each worker's busy time
//! (from `RuntimeMetrics::worker_busy_duration`) as a share of the wall
//! time of the run. With enough work every worker should be close to 100%.
//!
//! `cargo run --release --example heavy_load -- [--workers N] [--tasks T] [--chunks C]`

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Hash iterations per chunk (about 50-100 µs of CPU).
const CHUNK: u64 = 100_000;
/// The task yields after this many chunks.
const YIELD_EVERY: u32 = 4;

/// FNV-1a-style mixing over a counter: pure CPU, no memory traffic.
fn hash_chunk(mut h: u64, start: u64) -> u64 {
    for i in start..start + CHUNK {
        h ^= i;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h
}

async fn cpu_task(seed: u64, chunks: u32) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for c in 0..chunks {
        h = black_box(hash_chunk(h, u64::from(c) * CHUNK));
        if c % YIELD_EVERY == YIELD_EVERY - 1 {
            fiber_runtime::yield_now().await;
        }
    }
    h
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a number")),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = arg(&args, "--workers", cores);
    let tasks = arg(&args, "--tasks", workers * 4);
    let chunks = arg(&args, "--chunks", 600) as u32;

    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("failed to build runtime");
    // Metrics are cumulative: keep a baseline to subtract.
    std::thread::sleep(Duration::from_millis(10));
    let base = rt.metrics();

    println!(
        "heavy_load: {workers} workers on {cores} cores, {tasks} tasks x {chunks} chunks of {CHUNK} hash rounds"
    );
    let start = Instant::now();
    let checksum = rt.block_on(async {
        let handles: Vec<_> = (0..tasks as u64)
            .map(|seed| fiber_runtime::spawn(cpu_task(seed, chunks)))
            .collect();
        let mut x = 0u64;
        for h in handles {
            x ^= h.await.expect("cpu task failed");
        }
        x
    });
    let wall = start.elapsed();

    // Workers publish their counters when they park: give them a moment.
    std::thread::sleep(Duration::from_millis(20));
    let m = rt.metrics();

    println!("  wall time   {wall:.2?}   checksum {checksum:016x}");
    println!("  worker   busy        share of wall   polls    steals");
    let mut total_busy = Duration::ZERO;
    let mut over = false;
    for i in 0..m.num_workers() {
        let busy = m.worker_busy_duration(i) - base.worker_busy_duration(i);
        total_busy += busy;
        let share = busy.as_secs_f64() / wall.as_secs_f64();
        over |= share > 1.05;
        let bar = "#".repeat((share.min(1.0) * 30.0).round() as usize);
        println!(
            "  {i:<6} {:>9.2?}   {:>6.1}% {bar:<30} {:>7}  {:>6}",
            busy,
            share * 100.0,
            m.worker_poll_count(i) - base.worker_poll_count(i),
            m.worker_steal_count(i) - base.worker_steal_count(i),
        );
    }
    let overall = total_busy.as_secs_f64() / (wall.as_secs_f64() * m.num_workers() as f64);
    println!("  all workers: {:.1}% busy on average", overall * 100.0);
    if over {
        println!("  warning: some worker reports more busy time than the wall time of the run");
        println!("           (the metric should never exceed it by more than a few ms)");
    }
    if workers > cores {
        println!("  (more workers than cores: busy time includes time preempted by the OS)");
    }
}
