//! Criterion benchmarks: fiber-runtime vs tokio on the same workloads (the
//! ones of `examples/benchmark.rs`, at smaller sizes), in the same run.
//! tokio has its I/O and time drivers enabled (needed by `echo` and
//! `timers`). `timers_10k_1ms` includes the 1 ms the sleeps take by
//! themselves (about 2 ms at 1 ms timer resolution).
//!
//! `cargo bench --bench runtime [-- FILTER]`

#[allow(dead_code)] // the example uses more workloads than this bench
#[path = "../examples/shared/workloads.rs"]
mod workloads;

use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use std::time::Duration;
use workloads::{fiber, tokio_rt};

/// Worker threads for both runtimes: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn fiber_rt() -> fiber_runtime::Runtime {
    fiber_runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .build()
        .unwrap()
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
        .unwrap()
}

fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn spawn_many(c: &mut Criterion) {
    let (f, t) = (fiber_rt(), tokio_rt());
    let mut g = c.benchmark_group("spawn_many_10k");
    configure(&mut g);
    g.bench_function("fiber", |b| {
        b.iter(|| f.block_on(fiber::spawn_many(10_000)))
    });
    g.bench_function("tokio", |b| {
        b.iter(|| t.block_on(tokio_rt::spawn_many(10_000)))
    });
    g.finish();
}

fn yield_many(c: &mut Criterion) {
    let (f, t) = (fiber_rt(), tokio_rt());
    let mut g = c.benchmark_group("yield_many_100x100");
    configure(&mut g);
    g.bench_function("fiber", |b| {
        b.iter(|| f.block_on(fiber::yield_many(100, 100)))
    });
    g.bench_function("tokio", |b| {
        b.iter(|| t.block_on(tokio_rt::yield_many(100, 100)))
    });
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let (f, t) = (fiber_rt(), tokio_rt());
    let mut g = c.benchmark_group("ping_pong_20x100");
    configure(&mut g);
    g.bench_function("fiber", |b| {
        b.iter(|| f.block_on(fiber::ping_pong(20, 100)))
    });
    g.bench_function("tokio", |b| {
        b.iter(|| t.block_on(tokio_rt::ping_pong(20, 100)))
    });
    g.finish();
}

fn chained_spawn(c: &mut Criterion) {
    let (f, t) = (fiber_rt(), tokio_rt());
    let mut g = c.benchmark_group("chained_spawn_1k");
    configure(&mut g);
    g.bench_function("fiber", |b| {
        b.iter(|| f.block_on(fiber::chained_spawn(1_000)))
    });
    g.bench_function("tokio", |b| {
        b.iter(|| t.block_on(tokio_rt::chained_spawn(1_000)))
    });
    g.finish();
}

fn echo(c: &mut Criterion) {
    let (f, t) = (fiber_rt(), tokio_rt());
    let mut g = c.benchmark_group("echo_10x200");
    configure(&mut g);
    g.sample_size(10); // milliseconds per iteration: keep the group short
    g.bench_function("fiber", |b| b.iter(|| f.block_on(fiber::echo(10, 200))));
    g.bench_function("tokio", |b| b.iter(|| t.block_on(tokio_rt::echo(10, 200))));
    g.finish();
}

fn timers(c: &mut Criterion) {
    let (f, t) = (fiber_rt(), tokio_rt());
    let mut g = c.benchmark_group("timers_10k_1ms");
    configure(&mut g);
    g.sample_size(10); // milliseconds per iteration: keep the group short
    g.bench_function("fiber", |b| {
        b.iter(|| f.block_on(fiber::sleep_many(10_000, Duration::from_millis(1))))
    });
    g.bench_function("tokio", |b| {
        b.iter(|| t.block_on(tokio_rt::sleep_many(10_000, Duration::from_millis(1))))
    });
    g.finish();
}

criterion_group!(
    benches,
    spawn_many,
    yield_many,
    ping_pong,
    chained_spawn,
    echo,
    timers
);
criterion_main!(benches);
