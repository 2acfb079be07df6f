//! `block_on` (crate root, `Runtime`, `Handle`), nesting rules, and the
//! thread's current runtime (`spawn` outside a runtime, `try_current`,
//! `enter`).

mod util;

use fiber_runtime::{Builder, Handle, Runtime};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;
use util::{Flavor, Gate, TIMEOUT, drive_until, expect_panic, run_with_timeout};

const NESTED: &str = "cannot start a runtime from within a runtime";

#[test]
fn crate_block_on_borrows_locals() {
    let mut log = vec![1, 2];
    let name = String::from("fiber");
    let len = fiber_runtime::block_on(async {
        log.push(3);
        name.len()
    });
    assert_eq!(len, 5);
    assert_eq!(log, [1, 2, 3]);
    // The output may borrow from the caller too.
    let borrowed: &str = fiber_runtime::block_on(async { &name[1..3] });
    assert_eq!(borrowed, "ib");
}

#[test]
fn crate_block_on_runs_spawned_tasks() {
    let sum = fiber_runtime::block_on(async {
        let handles: Vec<_> = (1..=10u64)
            .map(|i| fiber_runtime::spawn(async move { i }))
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 55);
}

#[test]
fn runtime_block_on_accepts_non_send_futures() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let shared = Rc::new(Cell::new(0));
        let out = rt.block_on(async {
            let local = shared.clone();
            fiber_runtime::yield_now().await;
            local.set(local.get() + 1);
            fiber_runtime::spawn(async { 41 }).await.unwrap() + local.get()
        });
        assert_eq!(out, 42, "{flavor:?}");
        assert_eq!(shared.get(), 1);
    }
}

#[test]
fn block_on_runs_the_future_on_the_calling_thread() {
    let me = thread::current().id();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        assert_eq!(rt.block_on(async { thread::current().id() }), me);
        assert_eq!(rt.handle().block_on(async { thread::current().id() }), me);
    }
}

#[test]
fn nested_block_on_in_block_on_panics() {
    util::silence_expected_panics(&[NESTED]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let other = Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let msg = expect_panic(|| rt.block_on(async {}));
            assert!(msg.contains(NESTED), "{flavor:?}: {msg}");
            let msg = expect_panic(|| rt.handle().block_on(async {}));
            assert!(msg.contains(NESTED), "{flavor:?}: {msg}");
            // Another runtime is refused just the same.
            let msg = expect_panic(|| other.block_on(async {}));
            assert!(msg.contains(NESTED), "{flavor:?}: {msg}");
            let msg = expect_panic(|| fiber_runtime::block_on(async {}));
            assert!(msg.contains(NESTED), "{flavor:?}: {msg}");
            // The outer block_on still works after the refused ones.
            assert_eq!(fiber_runtime::spawn(async { 3 }).await.unwrap(), 3);
        });
        // And the thread may block_on again once the outer one returned.
        assert_eq!(rt.block_on(async { 4 }), 4, "{flavor:?}");
        assert_eq!(other.block_on(async { 5 }), 5, "{flavor:?}");
    }
}

#[test]
fn nested_block_on_inside_a_task_panics() {
    util::silence_expected_panics(&[NESTED]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        // Caught inside the task: the message says what to do instead.
        let msg = rt
            .block_on(rt.spawn(async { expect_panic(|| Handle::current().block_on(async { 1 })) }))
            .unwrap();
        assert!(msg.contains(NESTED), "{flavor:?}: {msg}");
        assert!(msg.contains("`.await`"), "{flavor:?}: {msg}");

        // Not caught: the task fails with that panic, the runtime goes on.
        let err = rt
            .block_on(rt.spawn(async { fiber_runtime::block_on(async { 1 }) }))
            .unwrap_err();
        assert!(err.is_panic(), "{flavor:?}: {err}");
        assert!(err.to_string().contains(NESTED), "{flavor:?}: {err}");
        assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
    }
}

#[test]
fn handle_block_on_from_other_threads() {
    let rt = util::multi_thread(2);
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let handle = rt.handle().clone();
            thread::spawn(move || {
                handle.block_on(async move {
                    // The handle's runtime is current inside its block_on.
                    let a = fiber_runtime::spawn(async move { i * 10 });
                    let b = Handle::current().spawn(async move { i });
                    a.await.unwrap() + b.await.unwrap()
                })
            })
        })
        .collect();
    let results: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results, [0, 11, 22, 33]);
}

#[test]
fn current_thread_handle_block_on_from_a_second_thread_while_the_first_is_idle() {
    let rt = util::current_thread();
    // Queued by the first thread, which does not drive the runtime.
    let queued = rt.spawn(async { thread::current().id() });
    let handle = rt.handle().clone();
    let (second, ids) = run_with_timeout("block_on from a second thread", move || {
        let second = thread::current().id();
        let ids = handle.block_on(async {
            let spawned = fiber_runtime::spawn(async { thread::current().id() });
            (queued.await.unwrap(), spawned.await.unwrap())
        });
        (second, ids)
    });
    // The second thread drove the scheduler: both tasks ran there.
    assert_eq!(ids, (second, second));
    // The first thread can drive it again afterwards.
    let me = thread::current().id();
    assert_eq!(
        rt.block_on(rt.spawn(async { thread::current().id() }))
            .unwrap(),
        me
    );
}

#[test]
fn current_thread_block_on_from_a_second_thread_while_the_first_drives() {
    let rt = Arc::new(util::current_thread());
    let gate = Gate::new();
    let (driving_tx, driving_rx) = mpsc::channel();
    let driver = {
        let rt = rt.clone();
        let gate = gate.clone();
        thread::spawn(move || {
            rt.block_on(async {
                driving_tx.send(()).unwrap();
                gate.wait().await;
            });
            thread::current().id()
        })
    };
    driving_rx.recv_timeout(TIMEOUT).unwrap();
    // The first thread holds the scheduler (it is inside block_on, parked
    // on the gate): the task spawned by the second block_on runs there.
    let handle = rt.handle().clone();
    let (task_thread, second) = run_with_timeout("second block_on", move || {
        let id = handle.block_on(async {
            fiber_runtime::spawn(async { thread::current().id() })
                .await
                .unwrap()
        });
        (id, thread::current().id())
    });
    gate.open();
    let driver_id = driver.join().unwrap();
    assert_eq!(task_thread, driver_id);
    assert_ne!(task_thread, second);
}

#[test]
fn current_thread_waiting_block_on_takes_over_when_the_driver_leaves() {
    let rt = Arc::new(util::current_thread());
    let leave = Gate::new();
    let (driving_tx, driving_rx) = mpsc::channel();
    let driver = {
        let rt = rt.clone();
        let leave = leave.clone();
        thread::spawn(move || {
            rt.block_on(async {
                driving_tx.send(()).unwrap();
                leave.wait().await;
            })
        })
    };
    driving_rx.recv_timeout(TIMEOUT).unwrap();

    // A second thread blocks on a task that waits on `resume`.
    let resume = Gate::new();
    let (waiter_tx, waiter_rx) = mpsc::channel();
    let waiter = {
        let handle = rt.handle().clone();
        let resume = resume.clone();
        thread::spawn(move || {
            let id = handle.block_on(async move {
                fiber_runtime::spawn(async move {
                    resume.wait().await;
                    thread::current().id()
                })
                .await
                .unwrap()
            });
            waiter_tx.send((id, thread::current().id())).unwrap();
        })
    };
    // The task was polled by the driver; now the driver leaves block_on.
    resume.wait_registrations(1);
    leave.open();
    driver.join().unwrap();
    // Only the waiting thread can run the task now: it must take the
    // scheduler over.
    resume.open();
    let (task_thread, waiter_thread) = waiter_rx
        .recv_timeout(TIMEOUT)
        .expect("the waiting block_on should take the scheduler over");
    assert_eq!(task_thread, waiter_thread);
    waiter.join().unwrap();
}

#[test]
fn current_thread_tasks_run_only_inside_block_on() {
    let rt = util::current_thread();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let h = rt.spawn(async move {
        r.fetch_add(1, SeqCst);
    });
    // Nobody drives the runtime: the task cannot have run.
    assert_eq!(ran.load(SeqCst), 0);
    assert!(!h.is_finished());
    drive_until(&rt, "the task ran", || ran.load(SeqCst) == 1);
    rt.block_on(h).unwrap();
}

#[test]
fn block_on_returns_while_detached_tasks_keep_running() {
    let rt = util::multi_thread(2);
    let gate = Gate::new();
    let (tx, rx) = mpsc::channel();
    let g = gate.clone();
    let out = rt.block_on(async move {
        drop(fiber_runtime::spawn(async move {
            g.wait().await;
            tx.send("done").unwrap();
        }));
        1
    });
    assert_eq!(out, 1);
    gate.open();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), "done");
}

#[test]
fn handle_block_on_inside_spawn_blocking() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        // A blocking-pool thread does not drive the runtime: it may block.
        let h = rt.spawn_blocking(move || {
            handle.block_on(async { fiber_runtime::spawn(async { 6 }).await.unwrap() * 7 })
        });
        assert_eq!(rt.block_on(h).unwrap(), 42, "{flavor:?}");
    }
}

#[test]
#[should_panic(expected = "no fiber-runtime runtime")]
fn spawn_outside_a_runtime_panics() {
    drop(fiber_runtime::spawn(async {}));
}

#[test]
#[should_panic(expected = "no fiber-runtime runtime")]
fn spawn_blocking_outside_a_runtime_panics() {
    drop(fiber_runtime::spawn_blocking(|| {}));
}

#[test]
#[should_panic(expected = "no fiber-runtime runtime")]
fn handle_current_outside_a_runtime_panics() {
    let _ = Handle::current();
}

#[test]
fn spawn_after_the_enter_guard_is_dropped_panics() {
    util::silence_expected_panics(&["no fiber-runtime runtime"]);
    let rt = util::multi_thread(1);
    {
        let _guard = rt.enter();
        assert_eq!(fiber_runtime::spawn(async { 1 }).join().unwrap(), 1);
    }
    let msg = expect_panic(|| fiber_runtime::spawn(async {}));
    assert!(msg.contains("no fiber-runtime runtime"), "{msg}");
}

#[test]
fn try_current_fails_outside_a_runtime() {
    let err = Handle::try_current().unwrap_err();
    assert!(
        err.to_string().contains("no fiber-runtime runtime"),
        "{err}"
    );
    // A plain thread started from inside a runtime has none either.
    let rt = util::multi_thread(1);
    let from_task = rt
        .block_on(rt.spawn(async {
            thread::spawn(|| Handle::try_current().is_err())
                .join()
                .unwrap()
        }))
        .unwrap();
    assert!(from_task, "a new thread has no current runtime");
}

#[test]
fn try_current_works_inside_block_on_and_tasks() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let workers = flavor.workers();
        let inside = rt.block_on(async {
            let in_block_on = Handle::try_current().unwrap().metrics().num_workers();
            let in_task = fiber_runtime::spawn(async {
                Handle::try_current().unwrap().metrics().num_workers()
            })
            .await
            .unwrap();
            (in_block_on, in_task)
        });
        assert_eq!(inside, (workers, workers), "{flavor:?}");
        assert!(Handle::try_current().is_err(), "no runtime after block_on");
    }
}

#[test]
fn try_current_works_after_enter_until_the_guard_drops() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    assert!(Handle::try_current().is_err());
    let guard = rt.enter();
    let handle = Handle::try_current().expect("a runtime after enter()");
    assert_eq!(handle.metrics().num_workers(), 2);
    assert_eq!(handle.spawn(async { 5 }).join().unwrap(), 5);
    drop(guard);
    assert!(Handle::try_current().is_err());
}

#[test]
fn nested_enter_guards_restore_the_previous_runtime() {
    let rt1 = util::multi_thread(1);
    let rt2 = util::multi_thread(3);
    let g1 = rt1.enter();
    {
        let _g2 = rt2.handle().enter();
        assert_eq!(Handle::current().metrics().num_workers(), 3);
    }
    assert_eq!(Handle::current().metrics().num_workers(), 1);
    drop(g1);
    assert!(Handle::try_current().is_err());
}

#[test]
fn block_on_restores_the_entered_runtime() {
    let rt1 = util::multi_thread(3);
    let rt2 = util::current_thread();
    let _g = rt1.enter();
    let inner = rt2.block_on(async { Handle::current().metrics().num_workers() });
    assert_eq!(inner, 1, "rt2 is current inside its block_on");
    // rt1 is current again after rt2's block_on returned.
    assert_eq!(Handle::current().metrics().num_workers(), 3);
}

#[test]
fn runtime_new_and_crate_block_on_use_one_worker_per_core() {
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = fiber_runtime::block_on(async { Handle::current().metrics().num_workers() });
    assert_eq!(workers, cores);
    let rt = Runtime::new().unwrap();
    assert_eq!(rt.metrics().num_workers(), cores);
}

/// A panic in the future given to `block_on` propagates to the caller;
/// the runtime stays usable (its scheduler is not lost with the panic).
#[test]
fn a_panic_in_block_on_leaves_the_runtime_usable() {
    util::silence_expected_panics(&[]);
    let mut failures = Vec::new();
    for flavor in Flavor::ALL {
        let rt = Arc::new(flavor.build());
        let queued = rt.spawn(async { 1 });
        let msg = expect_panic(|| {
            rt.block_on(async {
                fiber_runtime::yield_now().await;
                panic!("{}: in block_on", util::EXPECTED_PANIC)
            })
        });
        assert!(msg.contains("in block_on"), "{msg}");
        // Tasks still run: those spawned before and after the panic.
        let rt2 = rt.clone();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            util::run_with_timeout_in(
                std::time::Duration::from_secs(5),
                "block_on after a panic in block_on",
                move || {
                    let after = rt2.spawn(async { 2 });
                    rt2.block_on(async { queued.await.unwrap() + after.await.unwrap() })
                },
            )
        }));
        match out {
            Ok(out) => assert_eq!(out, 3, "{flavor:?}"),
            Err(_) => failures.push(format!(
                "{flavor:?}: after a panic in block_on, block_on never runs the tasks (hang)"
            )),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
