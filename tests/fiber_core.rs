//! Fibers on the scheduler: spawn and join both ways, blocking-style calls,
//! panics, cancellation (destructors run), never migrating, metrics.

// `block_on(async { fiber::spawn(..) })` spawns inside the runtime and
// hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::{Runtime, fiber};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use util::Flavor;

/// The flavors the fiber tests run on (fibers on one worker, on several,
/// and on the current thread).
fn runtimes() -> Vec<(Flavor, Runtime)> {
    [
        Flavor::MultiThread(2),
        Flavor::MultiThread(4),
        Flavor::CurrentThread,
    ]
    .into_iter()
    .map(|f| (f, f.build()))
    .collect()
}

struct CountDrop(Arc<AtomicUsize>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Drives the runtime until `rx` has a message (current-thread runtimes
/// only make progress inside `block_on`), failing the test if none comes.
#[track_caller]
fn drive_until(rt: &Runtime, rx: &mpsc::Receiver<()>) {
    util::drive_until(rt, "a message from the fiber", || match rx.try_recv() {
        Ok(()) => true,
        Err(mpsc::TryRecvError::Empty) => false,
        Err(e) => panic!("fiber gone: {e}"),
    });
}

#[test]
fn a_task_awaits_a_fiber_and_a_fiber_joins_a_task() {
    for (name, rt) in runtimes() {
        let v = rt.block_on(async {
            let f = fiber::spawn(|| {
                let t = fiber_runtime::spawn(async { 40 });
                t.join().unwrap() + 2
            });
            f.await.unwrap()
        });
        assert_eq!(v, 42, "{name:?}");
        // A fiber joining a fiber.
        let v = rt.block_on(async {
            fiber::spawn(|| fiber::spawn(|| 7).join().unwrap() * 6)
                .await
                .unwrap()
        });
        assert_eq!(v, 42, "{name:?}");
    }
}

#[test]
fn ten_thousand_concurrent_fibers_each_yielding_and_sleeping() {
    for (name, rt) in runtimes() {
        let sum = rt.block_on(async {
            let hs: Vec<_> = (0..10_000u64)
                .map(|i| {
                    fiber::Builder::new()
                        .stack_size(32 * 1024)
                        .spawn(move || {
                            fiber::yield_now();
                            if i % 100 == 0 {
                                fiber::sleep(Duration::from_millis(1));
                            }
                            fiber::yield_now();
                            i
                        })
                        .unwrap()
                })
                .collect();
            let mut s = 0;
            for h in hs {
                s += h.await.unwrap();
            }
            s
        });
        assert_eq!(sum, 9_999 * 10_000 / 2, "{name:?}");
        assert_eq!(rt.metrics().num_alive_fibers(), 0, "{name:?}");
    }
}

#[test]
fn wait_suspends_only_the_fiber_until_the_future_completes() {
    for (name, rt) in runtimes() {
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let v = rt.block_on(async {
            let f = fiber::spawn(move || fiber::wait(rx).unwrap() + 1);
            // The worker is free to run this task while the fiber waits.
            let sender = fiber_runtime::spawn(async move { tx.send(41).unwrap() });
            sender.await.unwrap();
            f.await.unwrap()
        });
        assert_eq!(v, 42, "{name:?}");
    }
}

#[test]
fn a_fiber_never_runs_on_a_second_thread() {
    let rt = util::multi_thread(4);
    let seen = rt.block_on(async {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                fiber::spawn(|| {
                    let mut threads = Vec::new();
                    for i in 0..200 {
                        threads.push(std::thread::current().id());
                        if i % 3 == 0 {
                            fiber::yield_now();
                        } else {
                            // Woken from another thread's task.
                            let t =
                                fiber_runtime::spawn(async { fiber_runtime::yield_now().await });
                            t.join().unwrap();
                        }
                    }
                    threads
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in hs {
            all.push(h.await.unwrap());
        }
        all
    });
    for threads in seen {
        assert!(
            threads.iter().all(|t| *t == threads[0]),
            "a fiber ran on two threads: {threads:?}"
        );
    }
}

#[test]
fn a_panic_in_a_fiber_comes_back_as_a_join_error_and_the_runtime_goes_on() {
    for (name, rt) in runtimes() {
        let err = rt
            .block_on(async { fiber::spawn(|| -> u32 { panic!("fiber boom") }).await })
            .unwrap_err();
        assert!(err.is_panic(), "{name:?}");
        assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "fiber boom");
        assert_eq!(
            rt.block_on(async { fiber::spawn(|| 1).await.unwrap() }),
            1,
            "{name:?}"
        );
    }
}

#[test]
fn aborting_a_suspended_fiber_runs_its_destructors() {
    for (name, rt) in runtimes() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let d = drops.clone();
        let h = rt.block_on(async move {
            fiber::spawn(move || {
                let _a = CountDrop(d.clone());
                let inner = || {
                    let _b = CountDrop(d.clone());
                    tx.send(()).unwrap();
                    fiber::wait(std::future::pending::<()>());
                };
                inner();
                unreachable!("resumed after cancellation");
            })
        });
        drive_until(&rt, &rx);
        assert_eq!(drops.load(SeqCst), 0, "{name:?}");
        h.abort();
        let err = rt.block_on(h).unwrap_err();
        assert!(err.is_cancelled(), "{name:?}");
        assert_eq!(
            drops.load(SeqCst),
            2,
            "{name:?}: both frames' locals dropped"
        );
        assert_eq!(rt.metrics().num_alive_fibers(), 0, "{name:?}");
    }
}

/// A fiber that only yields sits in its worker's queue still running (no
/// wake per yield): aborting it still cancels it and runs its destructors.
#[test]
fn aborting_a_fiber_that_keeps_yielding_runs_its_destructors() {
    for (name, rt) in runtimes() {
        let drops = Arc::new(AtomicUsize::new(0));
        let yields = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let (d, y) = (drops.clone(), yields.clone());
        let h = rt.block_on(async move {
            fiber::spawn(move || {
                let _a = CountDrop(d);
                tx.send(()).unwrap();
                loop {
                    y.fetch_add(1, SeqCst);
                    fiber::yield_now();
                }
            })
        });
        drive_until(&rt, &rx);
        h.abort();
        let err = rt.block_on(h).unwrap_err();
        assert!(err.is_cancelled(), "{name:?}");
        assert_eq!(drops.load(SeqCst), 1, "{name:?}: the fiber's local dropped");
        assert!(yields.load(SeqCst) >= 1, "{name:?}");
        assert_eq!(rt.metrics().num_alive_fibers(), 0, "{name:?}");
        assert_eq!(rt.metrics().num_alive_tasks(), 0, "{name:?}");
    }
}

/// Fibers yielding in a loop (queued still running) when the runtime is
/// dropped are unwound, and their tasks cancelled.
#[test]
fn dropping_the_runtime_unwinds_fibers_that_keep_yielding() {
    for (name, rt) in runtimes() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for _ in 0..4 {
            let (d, tx) = (drops.clone(), tx.clone());
            handles.push(rt.block_on(async move {
                fiber::spawn(move || {
                    let _a = CountDrop(d);
                    tx.send(()).unwrap();
                    loop {
                        fiber::yield_now();
                    }
                })
            }));
        }
        for _ in 0..4 {
            drive_until(&rt, &rx);
        }
        drop(rt);
        assert_eq!(drops.load(SeqCst), 4, "{name:?}");
        for h in handles {
            assert!(h.join().unwrap_err().is_cancelled(), "{name:?}");
        }
    }
}

#[test]
fn dropping_the_runtime_unwinds_suspended_fibers() {
    for (name, rt) in runtimes() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for _ in 0..8 {
            let d = drops.clone();
            let tx = tx.clone();
            handles.push(rt.block_on(async move {
                fiber::spawn(move || {
                    let _a = CountDrop(d);
                    tx.send(()).unwrap();
                    fiber::wait(std::future::pending::<()>());
                })
            }));
        }
        for _ in 0..8 {
            drive_until(&rt, &rx);
        }
        drop(rt);
        assert_eq!(drops.load(SeqCst), 8, "{name:?}");
        for h in handles {
            assert!(h.join().unwrap_err().is_cancelled(), "{name:?}");
        }
    }
}

#[test]
// ASan's redzones make every frame several times larger: the recursion
// sized for the plain build overflows the fiber's stack under it.
#[cfg_attr(fiber_runtime_asan, ignore = "frames too large under AddressSanitizer")]
fn deep_recursion_in_a_fiber() {
    fn depth(n: u32) -> u32 {
        let pad = std::hint::black_box([n; 16]);
        if n == 0 {
            0
        } else {
            depth(n - 1) + pad[3] - n + 1
        }
    }
    let rt = util::multi_thread(2);
    let v = rt.block_on(async {
        fiber::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| depth(5000))
            .unwrap()
            .await
            .unwrap()
    });
    assert_eq!(v, 5000);
}

#[test]
fn blocking_style_calls_follow_the_contract_table() {
    // A plain thread: blocks.
    assert_eq!(fiber::wait(async { 3 }), 3);
    fiber::sleep(Duration::from_millis(1));
    fiber::yield_now();
    assert!(fiber::current().is_none());
    // An async task on a worker: panics naming `.await`.
    let rt = util::multi_thread(1);
    let err = rt
        .block_on(async { fiber_runtime::spawn(async { fiber::wait(async { 1 }) }).await })
        .unwrap_err();
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("`.await`"), "{msg}");
    let err = rt
        .block_on(async {
            fiber_runtime::spawn(async { fiber::sleep(Duration::from_millis(1)) }).await
        })
        .unwrap_err();
    assert!(err.is_panic());
    // Inside a fiber: `JoinHandle::join` and `fiber::current` work.
    let ids = rt.block_on(async {
        fiber::spawn(|| {
            let me = fiber::current().unwrap();
            let other = fiber::spawn(fiber::current).join().unwrap().unwrap();
            (me, other)
        })
        .await
        .unwrap()
    });
    assert_ne!(ids.0, ids.1);
}

#[test]
fn stack_size_below_the_minimum_is_invalid_input_and_metrics_count_fibers() {
    let rt = util::multi_thread(2);
    rt.block_on(async {
        let err = fiber::Builder::new()
            .stack_size(4096)
            .spawn(|| ())
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("16384"), "{err}");
        let err = fiber::Builder::new()
            .stack_size(usize::MAX)
            .spawn(|| ())
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("1 GiB"), "{err}");
    });
    let (tx, rx) = mpsc::channel();
    let h = rt.block_on(async move {
        fiber::spawn(move || {
            tx.send(()).unwrap();
            fiber::wait(std::future::pending::<()>())
        })
    });
    drive_until(&rt, &rx);
    let m = rt.metrics();
    assert_eq!(m.num_alive_fibers(), 1);
    assert!(m.num_alive_tasks() >= 1, "fibers count as tasks");
    h.abort();
    let _ = rt.block_on(h);
    assert_eq!(rt.metrics().num_alive_fibers(), 0);
}

#[test]
fn fibers_outside_a_runtime_are_refused() {
    let err = fiber::Builder::new().spawn(|| ()).unwrap_err();
    assert!(
        err.to_string().contains("no fiber-runtime runtime"),
        "{err}"
    );
}

/// A current-thread runtime whose fibers were started on one thread and
/// which is dropped on another cannot unwind them there (that would run
/// their code on a second thread): they are leaked, never resumed, and
/// nothing crashes.
#[test]
// It leaks on purpose (what it checks is that nothing else breaks), which
// LeakSanitizer would report for the whole test binary.
#[cfg_attr(fiber_runtime_asan, ignore = "leaks by design")]
fn fibers_started_elsewhere_are_leaked_not_resumed_when_dropped() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let rt = std::thread::spawn(move || {
        let rt = util::current_thread();
        let (tx, rx) = mpsc::channel();
        let _h = rt.block_on(async move {
            fiber::spawn(move || {
                let _a = CountDrop(d);
                tx.send(()).unwrap();
                fiber::wait(std::future::pending::<()>());
            })
        });
        drive_until(&rt, &rx);
        rt
    })
    .join()
    .unwrap();
    assert_eq!(rt.metrics().num_alive_fibers(), 1);
    drop(rt);
    assert_eq!(
        drops.load(SeqCst),
        0,
        "a fiber was resumed on another thread"
    );
}

/// A backtrace taken inside a fiber ends at the fiber's entry: it shows
/// the fiber's own frames and none of the poller's (the scheduler that
/// resumed it runs on another stack).
#[test]
fn a_backtrace_inside_a_fiber_ends_at_its_entry() {
    #[inline(never)]
    fn deep_in_the_fiber() -> String {
        std::backtrace::Backtrace::force_capture().to_string()
    }
    let rt = util::current_thread();
    let trace = rt.block_on(async { fiber::spawn(deep_in_the_fiber).await.unwrap() });
    assert!(trace.contains("deep_in_the_fiber"), "{trace}");
    assert!(trace.contains("fiber::future::entry"), "{trace}");
    for poller in ["harness::poll", "block_on", "fiber_core::main"] {
        assert!(!trace.contains(poller), "found {poller} in:\n{trace}");
    }
    // The last frame is the trampoline that called the entry. (Its CFI
    // marks the return address undefined; without that the walk happens
    // to stop here too today, since the word above it is no code address.)
    let last = trace
        .lines()
        .rev()
        .find(|l| {
            l.trim_start()
                .split(':')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .unwrap_or_default();
    assert!(
        last.contains("trampoline"),
        "last frame {last:?} in:\n{trace}"
    );
}

/// A finished fiber's stack goes back to its worker's pool, and the next
/// fiber started there gets it: same stack, no new mapping.
#[test]
// Under ASan a local may live on its fake stack (on the heap), so its
// address says nothing about the fiber's stack.
#[cfg_attr(fiber_runtime_asan, ignore = "ASan moves locals to fake stacks")]
fn the_next_fiber_reuses_a_finished_fibers_stack() {
    fn stack_address() -> usize {
        let local = 0u8;
        std::hint::black_box(&raw const local) as usize
    }
    let rt = util::current_thread();
    rt.block_on(async {
        let first = fiber::spawn(stack_address).await.unwrap();
        let second = fiber::spawn(stack_address).await.unwrap();
        assert_eq!(
            first, second,
            "the second fiber ran on the first one's stack"
        );
    });
}

/// A refused spawn drops what its closure captured: a runtime dropped
/// there (which sets the thread's current runtime while it unwinds its
/// fibers) must not meet the spawn still holding that context.
#[test]
fn a_refused_spawn_may_drop_a_runtime_its_closure_captured() {
    // No runtime here.
    let rt = util::current_thread();
    let err = fiber::Builder::new().spawn(move || drop(rt)).unwrap_err();
    assert!(
        err.to_string().contains("no fiber-runtime runtime"),
        "{err}"
    );
    let rt = util::current_thread();
    let err = fiber_runtime::task::Builder::new()
        .spawn(async move { drop(rt) })
        .unwrap_err();
    assert!(
        err.to_string().contains("no fiber-runtime runtime"),
        "{err}"
    );
    // A runtime that is shutting down (dropped, its handle entered).
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        drop(rt);
        let _enter = handle.enter();
        let inner = util::current_thread();
        let h = fiber::spawn(move || drop(inner));
        let inner = util::current_thread();
        let t = fiber_runtime::spawn(async move { drop(inner) });
        // Cancelled before they ran: their closures (and the runtimes they
        // owned) were dropped, on this thread, without a panic.
        let outside = util::current_thread();
        let (h, t) = outside.block_on(async move { (h.await, t.await) });
        assert!(h.unwrap_err().is_cancelled(), "{flavor:?}");
        assert!(t.unwrap_err().is_cancelled(), "{flavor:?}");
    }
    // A bad stack size, on a runtime.
    for flavor in Flavor::ALL {
        let outer = flavor.build();
        let inner = util::current_thread();
        let err = outer.block_on(async move {
            fiber::Builder::new()
                .stack_size(1)
                .spawn(move || drop(inner))
                .unwrap_err()
        });
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{flavor:?}");
    }
}
