//! Integration tests for the `#[fiber_runtime::main]` attribute macro.
//!
//! The macro is applied to ordinary (non-`main`) functions, which become
//! blocking functions that build a runtime and run their body to completion.

mod util;

use std::sync::mpsc;
use std::thread;
use util::TIMEOUT;

use fiber_runtime::Handle;

#[fiber_runtime::main]
async fn default_flavor() -> u32 {
    let handle = fiber_runtime::spawn(async { 20 });
    handle.await.expect("the task should complete") + 1
}

/// Returns the thread `block_on` ran on and the thread a spawned task ran on.
#[fiber_runtime::main]
async fn default_flavor_threads() -> (thread::ThreadId, thread::ThreadId) {
    let task_thread = fiber_runtime::spawn(async { thread::current().id() })
        .await
        .expect("the task should complete");
    (thread::current().id(), task_thread)
}

#[fiber_runtime::main(worker_threads = 3)]
async fn three_workers() -> usize {
    Handle::current().metrics().num_workers()
}

#[fiber_runtime::main(flavor = "multi_thread")]
async fn multi_thread() -> u64 {
    let handles: Vec<_> = (1..=10u64)
        .map(|i| fiber_runtime::spawn(async move { i * i }))
        .collect();
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.expect("the task should complete");
    }
    sum
}

#[fiber_runtime::main(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_parallel() -> Result<u32, mpsc::RecvTimeoutError> {
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    // Completes only if the two tasks run simultaneously on different
    // worker threads.
    let (tx, rx) = mpsc::channel::<u32>();
    let waiter = fiber_runtime::spawn(async move { rx.recv_timeout(TIMEOUT) });
    let sender = fiber_runtime::spawn(async move {
        tx.send(11).expect("the waiter should still be listening");
    });
    sender.await.expect("the sender task should complete");
    waiter.await.expect("the waiter task should complete")
}

#[fiber_runtime::main(flavor = "current_thread")]
async fn current_thread() -> (thread::ThreadId, Vec<thread::ThreadId>) {
    assert_eq!(Handle::current().metrics().num_workers(), 1);
    let caller = thread::current().id();
    let handles: Vec<_> = (0..8)
        .map(|_| fiber_runtime::spawn(async { thread::current().id() }))
        .collect();
    let mut task_threads = Vec::new();
    for handle in handles {
        task_threads.push(handle.await.expect("the task should complete"));
    }
    (caller, task_threads)
}

#[fiber_runtime::main]
async fn fails() -> Result<(), String> {
    let n: u32 = fiber_runtime::spawn(async { 3 })
        .await
        .map_err(|e| e.to_string())?;
    Err(format!("failed after {n}"))
}

#[fiber_runtime::main(flavor = "current_thread")]
async fn question_mark_with_boxed_error() -> Result<i64, Box<dyn std::error::Error>> {
    let parsed: i64 = fiber_runtime::spawn(async { "-12" }).await?.parse()?;
    Ok(parsed)
}

#[fiber_runtime::main(flavor = "current_thread")]
async fn early_return() -> &'static str {
    // `return` inside the body provides the function's return value.
    let n = fiber_runtime::spawn(async { 1 })
        .await
        .expect("the task should complete");
    if n == 1 {
        return "early";
    }
    "late"
}

#[test]
fn main_default_flavor_returns_the_body_value() {
    assert_eq!(default_flavor(), 21);
}

#[test]
fn main_default_flavor_is_multi_thread() {
    // Tasks of a multi-thread runtime run on worker threads, not on the
    // thread that called the generated function.
    let (block_on_thread, task_thread) = default_flavor_threads();
    assert_eq!(block_on_thread, thread::current().id());
    assert_ne!(task_thread, block_on_thread);
}

#[test]
fn main_worker_threads_sets_the_number_of_workers() {
    assert_eq!(three_workers(), 3);
}

#[test]
fn main_multi_thread_returns_the_body_value() {
    assert_eq!(multi_thread(), 385);
}

#[test]
fn main_multi_thread_with_worker_threads_runs_tasks_in_parallel() {
    assert_eq!(two_workers_in_parallel(), Ok(11));
}

#[test]
fn main_current_thread_runs_everything_on_the_calling_thread() {
    let (caller, task_threads) = current_thread();
    assert_eq!(caller, thread::current().id());
    assert_eq!(task_threads.len(), 8);
    assert!(task_threads.iter().all(|id| *id == caller));
}

#[test]
fn main_propagates_an_err_return_value() {
    assert_eq!(fails(), Err(String::from("failed after 3")));
}

#[test]
fn main_supports_question_mark_with_boxed_errors() {
    assert_eq!(question_mark_with_boxed_error().unwrap(), -12);
}

#[test]
fn main_body_can_return_early() {
    assert_eq!(early_return(), "early");
}

#[test]
fn each_call_builds_a_fresh_runtime() {
    // Calling the generated function repeatedly (and from several threads)
    // must work: every call builds and tears down its own runtime.
    for _ in 0..3 {
        assert_eq!(default_flavor(), 21);
    }
    let threads: Vec<_> = (0..3).map(|_| thread::spawn(multi_thread)).collect();
    for t in threads {
        assert_eq!(t.join().expect("the thread should not panic"), 385);
    }
}
