//! `Builder`: validation of every setting (an `InvalidInput` error naming
//! it), thread names, and the worker count.

mod util;

use fiber_runtime::{Builder, Runtime};
use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use util::wait_until;

/// Asserts that `build` fails with `InvalidInput` and a message naming
/// `setting`; returns the message.
#[track_caller]
fn invalid(builder: &mut Builder, setting: &str) -> String {
    let err = builder
        .build()
        .expect_err("building with an invalid setting should fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "error: {err}");
    let msg = err.to_string();
    assert!(
        msg.contains(setting),
        "the error should name `{setting}`: {msg}"
    );
    msg
}

/// Asserts that the runtime runs a task and a blocking closure.
#[track_caller]
fn assert_works(rt: &Runtime) {
    assert_eq!(rt.block_on(rt.spawn(async { 20 + 1 })).unwrap(), 21);
    assert_eq!(rt.block_on(rt.spawn_blocking(|| 2 * 21)).unwrap(), 42);
}

#[test]
fn worker_threads_zero_is_invalid() {
    let msg = invalid(
        Builder::new_multi_thread().worker_threads(0),
        "worker_threads",
    );
    assert!(msg.contains('0'), "the error should show the value: {msg}");
}

#[test]
fn worker_threads_above_the_maximum_is_invalid() {
    invalid(
        Builder::new_multi_thread().worker_threads(32_768),
        "worker_threads",
    );
    invalid(
        Builder::new_multi_thread().worker_threads(usize::MAX),
        "worker_threads",
    );
}

#[test]
fn worker_threads_on_current_thread_is_invalid() {
    // Even a value that would be valid for the multi-thread flavor.
    for n in [0, 1, 4] {
        let msg = invalid(
            Builder::new_current_thread().worker_threads(n),
            "worker_threads",
        );
        assert!(
            msg.contains("current_thread"),
            "the error should name the flavor: {msg}"
        );
    }
}

#[test]
fn thread_stack_size_below_64_kib_is_invalid() {
    for size in [0, 1, 64 * 1024 - 1] {
        invalid(
            Builder::new_multi_thread().thread_stack_size(size),
            "thread_stack_size",
        );
        invalid(
            Builder::new_current_thread().thread_stack_size(size),
            "thread_stack_size",
        );
    }
}

#[test]
fn thread_stack_size_of_64_kib_is_valid() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(64 * 1024)
        .build()
        .unwrap();
    assert_works(&rt);
    let rt = Builder::new_current_thread()
        .thread_stack_size(64 * 1024)
        .build()
        .unwrap();
    assert_works(&rt);
}

#[test]
fn fiber_stack_size_below_16_kib_is_invalid() {
    for size in [0, 4096, 16 * 1024 - 1] {
        invalid(
            Builder::new_multi_thread().fiber_stack_size(size),
            "fiber_stack_size",
        );
        invalid(
            Builder::new_current_thread().fiber_stack_size(size),
            "fiber_stack_size",
        );
    }
}

#[test]
fn fiber_stack_size_of_16_kib_is_valid() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .fiber_stack_size(16 * 1024)
        .build()
        .unwrap();
    assert_works(&rt);
    let rt = Builder::new_current_thread()
        .fiber_stack_size(16 * 1024)
        .build()
        .unwrap();
    assert_works(&rt);
}

#[test]
fn max_blocking_threads_zero_is_invalid() {
    invalid(
        Builder::new_multi_thread().max_blocking_threads(0),
        "max_blocking_threads",
    );
    invalid(
        Builder::new_current_thread().max_blocking_threads(0),
        "max_blocking_threads",
    );
}

#[test]
fn max_blocking_threads_one_is_valid() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    assert_works(&rt);
}

#[test]
fn a_builder_can_be_fixed_and_built_again() {
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(0);
    invalid(&mut builder, "worker_threads");
    builder.worker_threads(2);
    let rt = builder.build().expect("the corrected builder should build");
    assert_eq!(rt.metrics().num_workers(), 2);
    assert_works(&rt);
    // A builder builds as many runtimes as asked.
    let rt2 = builder.build().unwrap();
    assert_eq!(rt2.metrics().num_workers(), 2);
    assert_works(&rt2);
}

#[test]
fn thread_name_is_applied_to_every_worker() {
    const WORKERS: usize = 3;
    let rt = Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("custom-worker")
        // Three spinning tasks on two CPUs: a worker held 100 ms would get
        // a replacement thread (`custom-worker-handoff-0`) to run the third.
        .worker_handoff(false)
        .build()
        .unwrap();
    // Hold WORKERS tasks at once: they can only run on WORKERS distinct
    // threads, so every worker reports its name.
    let started = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let started = started.clone();
            let names = names.clone();
            rt.spawn(async move {
                started.fetch_add(1, SeqCst);
                wait_until("all workers hold a task", || {
                    started.load(SeqCst) == WORKERS
                });
                let t = std::thread::current();
                names
                    .lock()
                    .unwrap()
                    .push((t.id(), t.name().map(String::from)));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let names = names.lock().unwrap();
    let ids: HashSet<_> = names.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), WORKERS, "one task per worker thread");
    for (_, name) in names.iter() {
        assert_eq!(name.as_deref(), Some("custom-worker"));
    }
}

#[test]
fn thread_name_is_applied_to_blocking_threads() {
    for mut builder in [Builder::new_multi_thread(), Builder::new_current_thread()] {
        let rt = builder.thread_name("custom-pool").build().unwrap();
        let name = rt
            .block_on(rt.spawn_blocking(|| std::thread::current().name().map(String::from)))
            .unwrap()
            .expect("blocking threads are named");
        assert!(
            name.starts_with("custom-pool") && name.contains("blocking"),
            "unexpected blocking thread name {name:?}"
        );
    }
}

#[test]
fn worker_count_is_reported_by_metrics() {
    for n in [1, 2, 3, 7] {
        let rt = Builder::new_multi_thread()
            .worker_threads(n)
            .build()
            .unwrap();
        assert_eq!(rt.metrics().num_workers(), n);
        assert_eq!(rt.handle().metrics().num_workers(), n);
        // Every index below `n` is a valid worker index.
        for i in 0..n {
            let _ = rt.metrics().worker_poll_count(i);
        }
    }
    let rt = Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.metrics().num_workers(), 1);
}

#[test]
fn default_worker_count_is_the_number_of_cores() {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = Runtime::new().unwrap();
    assert_eq!(rt.metrics().num_workers(), cores);
    let rt = Builder::new_multi_thread().build().unwrap();
    assert_eq!(rt.metrics().num_workers(), cores);
}

#[test]
fn worker_threads_runs_that_many_threads_in_parallel() {
    // `n` tasks that each wait for all `n` to be running at once can only
    // finish if the runtime really has `n` worker threads.
    for n in [1, 2, 4] {
        let rt = Builder::new_multi_thread()
            .worker_threads(n)
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let running = running.clone();
                rt.spawn(async move {
                    running.fetch_add(1, SeqCst);
                    wait_until("all tasks run at once", || running.load(SeqCst) == n);
                    std::thread::current().id()
                })
            })
            .collect();
        let ids: HashSet<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ids.len(), n);
        assert!(!ids.contains(&std::thread::current().id()));
    }
}
