//! fiber-runtime vs tokio, head to head.
//!
//! Runs each workload on a fiber-runtime and a tokio multi-thread runtime
//! with the same number of workers (tokio otherwise at its defaults),
//! interleaved: every round runs each workload on both runtimes, back to
//! back, alternating which goes first. Both runtimes are built at the start
//! of each round, outside the timed region; only the workload is timed.
//! Prints the median time per runtime, the fiber/tokio ratio, and whether
//! it meets the target.
//!
//! Memory per pending task is measured in child processes (one runtime per
//! process, since RSS would mix them): this binary re-runs itself with the
//! hidden flag `--memory-child fiber|tokio` (see `examples/shared/memory.rs`).
//!
//! ```text
//! cargo run --release --example benchmark -- [--rounds 15] [--workers N]
//!     [--only NAME[,NAME...]] [--memory] [--no-memory] [--verbose]
//! ```
//!
//! `--only` takes workload names (see the table), `--memory` is
//! `--only memory`, `--no-memory` skips the memory row, `--verbose` prints
//! every round's times.

#[allow(dead_code)] // only bytes_per_task is used here
#[path = "shared/memory.rs"]
mod memory;
#[path = "shared/workloads.rs"]
mod workloads;

use std::io::IsTerminal;
use std::process::Command;
use std::time::{Duration, Instant};
use workloads::{fiber, tokio_rt};

const SPAWN_N: u64 = 100_000;
const YIELD_TASKS: usize = 200;
const YIELD_N: usize = 1000;
const PING_PAIRS: usize = 100;
const PING_ROUNDS: u64 = 1000;
const CHAIN_DEPTH: usize = 10_000;
const SKYNET_SIZE: u64 = 1_000_000;
const MEMORY_TASKS: usize = 1_000_000;
/// Memory children per runtime (at most; each takes about a second).
const MEMORY_ROUNDS: usize = 3;

struct Workload {
    name: &'static str,
    size: &'static str,
    target: f64,
    fiber: fn(&fiber_runtime::Runtime) -> Duration,
    tokio: fn(&tokio::runtime::Runtime) -> Duration,
}

fn time<R>(f: impl FnOnce() -> R) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "spawn_many",
        size: "100k tasks, from a task",
        target: 0.5,
        fiber: |rt| time(|| rt.block_on(fiber::spawn_many(SPAWN_N))),
        tokio: |rt| time(|| rt.block_on(tokio_rt::spawn_many(SPAWN_N))),
    },
    Workload {
        name: "spawn_remote",
        size: "100k tasks, from outside",
        target: 0.4,
        fiber: |rt| time(|| rt.block_on(fiber::spawn_remote(rt.handle(), SPAWN_N))),
        tokio: |rt| time(|| rt.block_on(tokio_rt::spawn_remote(rt.handle(), SPAWN_N))),
    },
    Workload {
        name: "yield_many",
        size: "200 tasks x 1000 yields",
        target: 0.8,
        fiber: |rt| time(|| rt.block_on(fiber::yield_many(YIELD_TASKS, YIELD_N))),
        tokio: |rt| time(|| rt.block_on(tokio_rt::yield_many(YIELD_TASKS, YIELD_N))),
    },
    Workload {
        name: "ping_pong",
        size: "100 pairs x 1000 round trips",
        target: 0.9,
        fiber: |rt| time(|| rt.block_on(fiber::ping_pong(PING_PAIRS, PING_ROUNDS))),
        tokio: |rt| time(|| rt.block_on(tokio_rt::ping_pong(PING_PAIRS, PING_ROUNDS))),
    },
    Workload {
        name: "chained_spawn",
        size: "depth 10k",
        target: 0.5,
        fiber: |rt| time(|| rt.block_on(fiber::chained_spawn(CHAIN_DEPTH))),
        tokio: |rt| time(|| rt.block_on(tokio_rt::chained_spawn(CHAIN_DEPTH))),
    },
    Workload {
        name: "skynet",
        size: "1M leaves, fan-out 10",
        target: 0.45,
        fiber: |rt| time(|| rt.block_on(fiber::skynet(SKYNET_SIZE))),
        tokio: |rt| time(|| rt.block_on(tokio_rt::skynet(SKYNET_SIZE))),
    },
];

const MEMORY_NAME: &str = "memory";
const MEMORY_TARGET: f64 = 0.25;

struct Options {
    rounds: usize,
    workers: usize,
    only: Option<Vec<String>>,
    memory: bool,
    verbose: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!(
        "usage: benchmark [--rounds R] [--workers N] [--only NAME[,NAME...]] [--memory] [--no-memory] [--verbose]"
    );
    let names: Vec<_> = WORKLOADS
        .iter()
        .map(|w| w.name)
        .chain([MEMORY_NAME])
        .collect();
    eprintln!("workloads: {}", names.join(", "));
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut o = Options {
        rounds: 15,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        only: None,
        memory: true,
        verbose: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--rounds" => {
                o.rounds = value("--rounds")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --rounds"))
            }
            "--workers" => {
                o.workers = value("--workers")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --workers"))
            }
            "--only" => {
                let names: Vec<String> = value("--only").split(',').map(str::to_string).collect();
                for n in &names {
                    if n != MEMORY_NAME && !WORKLOADS.iter().any(|w| w.name == n) {
                        usage(&format!("unknown workload {n:?}"));
                    }
                }
                o.only = Some(names);
            }
            "--memory" => o.only = Some(vec![MEMORY_NAME.to_string()]),
            "--no-memory" => o.memory = false,
            "--verbose" | "-v" => o.verbose = true,
            "--memory-child" => {
                // Hidden: one memory measurement, printed for the parent.
                let which = value("--memory-child");
                let r = match which.as_str() {
                    "fiber" => memory::measure_fiber(MEMORY_TASKS, o.workers),
                    "tokio" => memory::measure_tokio(MEMORY_TASKS, o.workers),
                    _ => usage("--memory-child takes fiber or tokio"),
                };
                println!("bytes_per_task={}", r.bytes_per_task());
                std::process::exit(0);
            }
            "--bench" => {} // passed by `cargo bench`-style runners; ignore
            _ => usage(&format!("unknown argument {a:?}")),
        }
    }
    if o.rounds == 0 || o.workers == 0 {
        usage("--rounds and --workers must be at least 1");
    }
    o
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Runs this binary as a memory child; returns its bytes per task.
fn memory_child(which: &str, workers: usize) -> f64 {
    let exe = std::env::current_exe().expect("cannot find the benchmark executable");
    let out = Command::new(exe)
        .args(["--workers", &workers.to_string(), "--memory-child", which])
        .output()
        .expect("cannot run the memory child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "memory child ({which}) failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("bytes_per_task="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("memory child ({which}) printed no result:\n{stdout}"))
}

/// A result row: per-round values for both runtimes (ms, or bytes/task).
struct Row {
    name: &'static str,
    size: &'static str,
    unit: &'static str,
    target: f64,
    fiber: Vec<f64>,
    tokio: Vec<f64>,
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v < 10.0 => format!("{v:.2} ms"),
        "ms" => format!("{v:.1} ms"),
        _ => format!("{v:.0} {unit}"),
    }
}

fn main() {
    let o = parse_args();
    let selected = |name: &str| {
        o.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    };
    let workloads: Vec<&Workload> = WORKLOADS.iter().filter(|w| selected(w.name)).collect();
    let run_memory = o.memory && selected(MEMORY_NAME);
    // Progress goes to stderr, and only to a terminal.
    let progress = !o.verbose && std::io::stderr().is_terminal();

    println!(
        "fiber-runtime vs tokio: {} worker threads each ({} cores), {} rounds, interleaved",
        o.workers,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        o.rounds
    );

    let mut rows: Vec<Row> = workloads
        .iter()
        .map(|w| Row {
            name: w.name,
            size: w.size,
            unit: "ms",
            target: w.target,
            fiber: Vec::new(),
            tokio: Vec::new(),
        })
        .collect();

    if !workloads.is_empty() {
        // One untimed warm-up pass (page faults, allocator growth, caches).
        {
            let f = build_fiber(o.workers);
            let t = build_tokio(o.workers);
            for w in &workloads {
                (w.fiber)(&f);
                (w.tokio)(&t);
            }
        }
        for round in 0..o.rounds {
            let f = build_fiber(o.workers);
            let t = build_tokio(o.workers);
            let fiber_first = round % 2 == 0;
            for (w, row) in workloads.iter().zip(&mut rows) {
                let (fd, td) = if fiber_first {
                    let fd = (w.fiber)(&f);
                    (fd, (w.tokio)(&t))
                } else {
                    let td = (w.tokio)(&t);
                    ((w.fiber)(&f), td)
                };
                row.fiber.push(fd.as_secs_f64() * 1e3);
                row.tokio.push(td.as_secs_f64() * 1e3);
                if o.verbose {
                    println!(
                        "  round {:>2} {:<14} fiber {:>10}  tokio {:>10}",
                        round + 1,
                        w.name,
                        fmt_value(fd.as_secs_f64() * 1e3, "ms"),
                        fmt_value(td.as_secs_f64() * 1e3, "ms")
                    );
                }
            }
            drop(f);
            drop(t);
            if progress {
                eprint!("\rround {}/{}", round + 1, o.rounds);
            }
        }
        if progress {
            eprint!("\r{:30}\r", "");
        }
    }

    if run_memory {
        let mut row = Row {
            name: MEMORY_NAME,
            size: "1M pending tasks",
            unit: "B/task",
            target: MEMORY_TARGET,
            fiber: Vec::new(),
            tokio: Vec::new(),
        };
        let rounds = o.rounds.min(MEMORY_ROUNDS);
        for round in 0..rounds {
            if progress {
                eprint!("\rmemory {}/{rounds}", round + 1);
            }
            if round % 2 == 0 {
                row.fiber.push(memory_child("fiber", o.workers));
                row.tokio.push(memory_child("tokio", o.workers));
            } else {
                row.tokio.push(memory_child("tokio", o.workers));
                row.fiber.push(memory_child("fiber", o.workers));
            }
        }
        if progress {
            eprint!("\r{:30}\r", "");
        }
        rows.push(row);
    }

    print_table(&rows);
}

fn build_fiber(workers: usize) -> fiber_runtime::Runtime {
    fiber_runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("failed to build fiber-runtime")
}

fn build_tokio(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("failed to build tokio")
}

fn print_table(rows: &[Row]) {
    let header = format!(
        "{:<14} {:<28} {:>12} {:>12} {:>11} {:>13} {:>8}  {}",
        "workload", "size", "fiber", "tokio", "fiber/tokio", "ratio range", "target", "met"
    );
    let rule = "-".repeat(header.len() + 2);
    println!();
    println!("medians over all rounds (memory: over its child runs)");
    println!("{header}");
    println!("{rule}");
    let mut met = 0;
    for r in rows {
        let (f, t) = (median(&r.fiber), median(&r.tokio));
        let ratio = f / t;
        let ratios: Vec<f64> = r.fiber.iter().zip(&r.tokio).map(|(f, t)| f / t).collect();
        let (lo, hi) = min_max(&ratios);
        let ok = ratio <= r.target;
        met += usize::from(ok);
        println!(
            "{:<14} {:<28} {:>12} {:>12} {:>11.2} {:>13} {:>8}  {}",
            r.name,
            r.size,
            fmt_value(f, r.unit),
            fmt_value(t, r.unit),
            ratio,
            format!("{lo:.2}-{hi:.2}"),
            format!("<= {:.2}", r.target),
            if ok { "yes" } else { "NO" }
        );
    }
    println!("{rule}");
    println!("targets met: {met}/{}", rows.len());
}
