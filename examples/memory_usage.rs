//! Memory per spawned, pending task, measured from the process RSS.
//!
//! Spawns 1,000,000 tasks that each wait forever on
//! `std::future::pending()`, and prints how much the resident set grew,
//! per task. The `JoinHandle`s are **dropped** (tasks detached), so the
//! figure is what the runtime itself costs per parked task. See
//! `examples/shared/memory.rs` for the method.
//!
//! Only one runtime is measured per process (RSS would mix them): pass
//! `--tokio` to measure tokio instead of fiber-runtime. With `--sleep`,
//! each task awaits a one-hour `sleep` of its runtime instead (default
//! 100,000 tasks): the cost of a pending timer, task included.
//!
//! `cargo run --release --example memory_usage -- [--tokio] [--sleep] [--tasks N] [--workers N]`

#[path = "shared/memory.rs"]
mod memory;

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
    let tokio = args.iter().any(|a| a == "--tokio");
    let sleep = args.iter().any(|a| a == "--sleep");
    let wait = if sleep {
        memory::Wait::Sleep
    } else {
        memory::Wait::Forever
    };
    let tasks = arg(&args, "--tasks", if sleep { 100_000 } else { 1_000_000 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = arg(&args, "--workers", cores);
    let name = if tokio { "tokio" } else { "fiber-runtime" };

    let r = if tokio {
        memory::measure_tokio(tasks, workers, wait)
    } else {
        memory::measure_fiber(tasks, workers, wait)
    };

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let what = if sleep {
        "tasks in a pending 1-hour sleep"
    } else {
        "pending tasks"
    };
    println!("{name}: {tasks} {what} on {workers} workers (JoinHandles dropped)");
    println!("  future size       {} bytes", r.future_size);
    println!("  RSS before        {:.1} MiB", mib(r.rss_before));
    println!("  RSS after         {:.1} MiB", mib(r.rss_after));
    println!("  spawn time        {:.2?}", r.spawn_time);
    println!("  shutdown (cancel) {:.2?}", r.shutdown_time);
    println!("  bytes per task    {:.1}", r.bytes_per_task());
}
