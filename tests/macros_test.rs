//! Integration tests for the `#[fiber_runtime::test]` attribute macro.

mod util;

use std::sync::mpsc;
use std::thread;
use util::TIMEOUT;

use fiber_runtime::Handle;

#[fiber_runtime::test]
async fn default_flavor_runs_the_body() {
    let value = async { 40 }.await + 2;
    assert_eq!(value, 42);
}

#[fiber_runtime::test]
async fn default_flavor_is_current_thread() {
    assert_eq!(Handle::current().metrics().num_workers(), 1);
    // A current-thread runtime runs spawned tasks on the thread that called
    // `block_on`, which for a test is the test's own thread.
    let test_thread = thread::current().id();
    let task_thread = fiber_runtime::spawn(async { thread::current().id() })
        .await
        .expect("the task should complete");
    assert_eq!(task_thread, test_thread);
}

#[fiber_runtime::test(flavor = "current_thread")]
async fn explicit_current_thread_runs_tasks_on_the_test_thread() {
    assert_eq!(Handle::current().metrics().num_workers(), 1);
    let test_thread = thread::current().id();
    let handles: Vec<_> = (0..16)
        .map(|_| fiber_runtime::spawn(async { thread::current().id() }))
        .collect();
    for handle in handles {
        assert_eq!(handle.await.expect("the task should complete"), test_thread);
    }
}

#[fiber_runtime::test]
async fn spawned_task_value_comes_back_through_the_join_handle() {
    let handle = fiber_runtime::spawn(async { String::from("from the task") });
    let value = handle.await.expect("the task should complete");
    assert_eq!(value, "from the task");
}

#[fiber_runtime::test(flavor = "multi_thread")]
async fn multi_thread_runs_tasks_on_worker_threads() {
    // The multi-thread flavor runs tasks on its worker threads, never on the
    // thread blocked in `block_on` (the test's thread).
    let test_thread = thread::current().id();
    let (task_thread, task_thread_name) = fiber_runtime::spawn(async {
        let current = thread::current();
        (current.id(), current.name().map(String::from))
    })
    .await
    .expect("the task should complete");
    assert_ne!(task_thread, test_thread);
    assert_eq!(task_thread_name.as_deref(), Some("fiber-runtime-worker"));
}

#[fiber_runtime::test(flavor = "multi_thread")]
async fn multi_thread_spawned_values_come_back() {
    let handles: Vec<_> = (0..100u64)
        .map(|i| fiber_runtime::spawn(async move { i * 2 }))
        .collect();
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.expect("the task should complete");
    }
    assert_eq!(sum, 9900);
}

#[fiber_runtime::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_with_two_workers_runs_tasks_in_parallel() {
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    // The first task blocks its worker thread until the second task has run.
    // That can only happen if the two tasks run on different threads at the
    // same time, i.e. the runtime really has (at least) two workers.
    let (tx, rx) = mpsc::channel::<u32>();
    let waiter = fiber_runtime::spawn(async move { rx.recv_timeout(TIMEOUT) });
    let sender = fiber_runtime::spawn(async move {
        tx.send(7).expect("the waiter should still be listening");
    });
    sender.await.expect("the sender task should complete");
    let received = waiter.await.expect("the waiter task should complete");
    assert_eq!(received, Ok(7));
}

#[fiber_runtime::test]
async fn a_test_can_return_ok() -> Result<(), String> {
    let value: u32 = fiber_runtime::spawn(async { "17" })
        .await
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    assert_eq!(value, 17);
    Ok(())
}

#[fiber_runtime::test(flavor = "multi_thread", worker_threads = 1)]
async fn question_mark_propagates_join_errors() -> Result<(), fiber_runtime::JoinError> {
    assert_eq!(Handle::current().metrics().num_workers(), 1);
    let value = fiber_runtime::spawn(async { 5 }).await?;
    assert_eq!(value, 5);
    Ok(())
}

#[fiber_runtime::test]
#[should_panic(expected = "panic inside an async test")]
async fn should_panic_after_the_macro_is_kept() {
    async {}.await;
    panic!("panic inside an async test");
}

#[should_panic(expected = "panic on a multi-threaded runtime")]
#[fiber_runtime::test(flavor = "multi_thread")]
async fn should_panic_before_the_macro_is_kept() {
    async {}.await;
    panic!("panic on a multi-threaded runtime");
}

#[fiber_runtime::test(flavor = "multi_thread")]
async fn a_panicking_task_is_reported_through_the_join_handle() {
    let result = fiber_runtime::spawn(async { panic!("the task panicked") }).await;
    let err = result.expect_err("a panicking task must not produce a value");
    assert!(err.is_panic());
    assert!(err.to_string().contains("the task panicked"), "{err}");
}

mod crate_option {
    use fiber_runtime as renamed_runtime;

    #[renamed_runtime::test(crate = "renamed_runtime")]
    async fn the_crate_option_names_the_runtime_path() {
        let value = renamed_runtime::spawn(async { 9 }).await.unwrap();
        assert_eq!(value, 9);
    }
}
