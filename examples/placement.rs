//! Where the kernel runs the workers: the `yield_many` workload (200 tasks
//! × 1000 `yield_now`, spawned from one task, 2 workers), round after
//! round, with each round's time, how long each worker ran and waited on
//! the run queue (`/proc/self/task/*/schedstat`), the CPU each worker
//! last ran on, and how long each CPU was idle (`/proc/stat`, in 10 ms
//! ticks: sum them over many rounds). Linux only.
//!
//! ```sh
//! cargo run --release --example placement -- [--rounds N] [--tokio | --no-spread]
//! ```
//!
//! It prints one line per round, then a summary: the rounds slower than
//! 1.5 × the fastest, the CPUs' idle time during them, and in how many of
//! them the two workers were last seen on the same CPU. `--tokio` runs
//! tokio's multi-thread runtime instead (its workers named as ours, so
//! that the same lines count them); `--no-spread` runs ours with
//! `Builder::spread_workers(false)`. `BENCHMARKS.md` (issue 13, seventh
//! and eighth steps) reads its output.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The name the workers of both runtimes carry here.
const WORKER: &str = "fiber-runtime-w";

/// This process's threads: (tid, name, the directory of their files).
fn threads() -> Vec<(String, String, std::path::PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|entry| {
            let path = entry.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let tid = entry.file_name().to_string_lossy().into_owned();
            (tid, name.trim().to_string(), path)
        })
        .collect()
}

/// Per thread (name/tid): nanoseconds on a CPU, and waiting on a run queue.
fn thread_times() -> HashMap<String, (u64, u64)> {
    let mut times = HashMap::new();
    for (tid, name, path) in threads() {
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let v: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [run, wait, ..] = v[..] {
            times.insert(format!("{name}/{tid}"), (run, wait));
        }
    }
    times
}

/// Per CPU: idle time so far, in nanoseconds (10 ms ticks).
fn cpu_idle() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .map(|ticks| ticks * 10_000_000)
        .collect()
}

/// The CPU each worker last ran on (field 39 of its `stat`).
fn worker_cpus() -> Vec<i64> {
    threads()
        .into_iter()
        .filter(|(_, name, _)| name == WORKER)
        .filter_map(|(_, _, path)| {
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // Fields after the parenthesised name; field 39 is the 37th of them.
            let rest = stat.rsplit(')').next().unwrap_or("");
            rest.split_whitespace().nth(36)?.parse().ok()
        })
        .collect()
}

fn usage(error: &str) -> ! {
    eprintln!("error: {error}\nusage: placement [--rounds N] [--tokio | --no-spread]");
    std::process::exit(2)
}

fn main() {
    let (mut rounds, mut tokio, mut spread) = (60usize, false, true);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tokio" => tokio = true,
            "--no-spread" => spread = false,
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--rounds needs a number of at least 1"));
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("placement: needs Linux's /proc");
        return;
    }
    // Only the runtime measured: the other's threads would carry the name.
    let ours = (!tokio).then(|| {
        fiber_runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .spread_workers(spread)
            .build()
            .expect("a runtime")
    });
    let theirs = tokio.then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(WORKER)
            .build()
            .expect("a tokio runtime")
    });
    let mut rows = Vec::new();
    for round in 0..rounds {
        let (threads0, idle0) = (thread_times(), cpu_idle());
        let start = Instant::now();
        if let Some(theirs) = &theirs {
            theirs.block_on(async {
                tokio::spawn(async {
                    let handles: Vec<_> = (0..200)
                        .map(|_| {
                            tokio::spawn(async {
                                for _ in 0..1000 {
                                    tokio::task::yield_now().await;
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("a yielding task");
                    }
                })
                .await
                .expect("the spawning task");
            });
        } else if let Some(ours) = &ours {
            ours.block_on(async {
                fiber_runtime::spawn(async {
                    let handles: Vec<_> = (0..200)
                        .map(|_| {
                            fiber_runtime::spawn(async {
                                for _ in 0..1000 {
                                    fiber_runtime::yield_now().await;
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("a yielding task");
                    }
                })
                .await
                .expect("the spawning task");
            });
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let (idle1, cpus, threads1) = (cpu_idle(), worker_cpus(), thread_times());
        let idle: Vec<f64> = idle1
            .iter()
            .zip(&idle0)
            .map(|(a, b)| a.saturating_sub(*b) as f64 / 1e6)
            .collect();
        let mut threads: Vec<String> = threads1
            .iter()
            .filter_map(|(k, &(run, wait))| {
                let (run0, wait0) = threads0.get(k).copied().unwrap_or((0, 0));
                let (run, wait) = (run - run0, wait - wait0);
                (run > 100_000 || wait > 100_000).then(|| {
                    format!(
                        "{k} ran {:.2} waited {:.2}",
                        run as f64 / 1e6,
                        wait as f64 / 1e6
                    )
                })
            })
            .collect();
        threads.sort();
        println!(
            "round {round}: {ms:.2} ms | cpus idle {idle:?} ms | workers last on cpus {cpus:?} | {}",
            threads.join(" | ")
        );
        let same = cpus.len() == 2 && cpus[0] == cpus[1];
        rows.push((ms, idle, same));
        // Let the workers park between rounds, as the benchmark does.
        std::thread::sleep(Duration::from_millis(20));
    }
    let fastest = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let slow: Vec<_> = rows.iter().filter(|r| r.0 > 1.5 * fastest).collect();
    let slow_ms: f64 = slow.iter().map(|r| r.0).sum();
    let mut slow_idle = vec![0.0; slow.first().map_or(0, |r| r.1.len())];
    for r in &slow {
        for (sum, i) in slow_idle.iter_mut().zip(&r.1) {
            *sum += i;
        }
    }
    let same = slow.iter().filter(|r| r.2).count();
    println!(
        "{}: fastest round {fastest:.2} ms; {} of {} rounds slower than 1.5 x that ({slow_ms:.0} ms in all), \
         the CPUs idle {slow_idle:?} ms during them, the workers last on one CPU in {same} of them",
        if tokio { "tokio" } else { "fiber-runtime" },
        slow.len(),
        rows.len()
    );
}
