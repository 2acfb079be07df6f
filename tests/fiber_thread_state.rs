//! What a thread keeps for the code running on it stays right across
//! fiber switches: the current runtime (a fiber's `Handle::enter` is its
//! own), the panic count (a fiber never switches out while unwinding),
//! and a fiber being cancelled neither aborts the process nor hangs,
//! whatever its destructors do (wait, sleep, join) and even if it catches
//! its own unwind.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::{Builder, Runtime, fiber};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::{EXPECTED_PANIC, Flavor};

fn named(name: &str) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .build()
        .unwrap()
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

/// Issue 9, bug 9: a fiber that held `Handle::enter()`'s guard of another
/// runtime across a suspension made every other task of its worker spawn
/// onto that runtime (and, once both guards were dropped out of order,
/// onto a third). Each fiber now has its own view of the current runtime.
#[test]
fn a_fiber_entering_another_runtime_keeps_that_to_itself() {
    let rt1 = named("rt1");
    let rt2 = named("rt2");
    let other = rt2.handle().clone();
    let entered = Arc::new(AtomicBool::new(false));
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let e = entered.clone();
    let spawned_on = |name: &'static str| async move {
        let on = fiber_runtime::spawn(async { thread_name() }).await.unwrap();
        assert_eq!(on, name, "spawned onto the wrong runtime");
    };
    let fiber = rt1.block_on(async move {
        fiber::spawn(move || {
            let g = other.enter();
            e.store(true, SeqCst);
            // Suspended with the guard held.
            fiber::wait(rx).unwrap();
            // Still its own view after resuming.
            fiber::wait(spawned_on("rt2"));
            drop(g);
            fiber::wait(spawned_on("rt1"));
        })
    });
    util::drive_until(&rt1, "the fiber entered rt2", || entered.load(SeqCst));
    rt1.block_on(async {
        // Another task on the same (only) worker, while the fiber waits.
        fiber_runtime::spawn(spawned_on("rt1")).await.unwrap();
        tx.send(()).unwrap();
        fiber.await.unwrap();
        // And after it finished.
        fiber_runtime::spawn(spawned_on("rt1")).await.unwrap();
    });
}

/// A fiber cancelled while it holds an `EnterGuard` runs its destructors
/// with its own view (as when it ran): its guard restores the fiber's
/// state, not the canceller's, so nothing looks out of order afterwards.
#[test]
fn a_fiber_cancelled_holding_an_enter_guard_leaves_the_cancellers_context_alone() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let other = named("other");
        let h = other.handle().clone();
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let f = {
            // Started under an extra guard (on a current-thread runtime),
            // so its depth differs from the canceller's.
            let _outer = rt.enter();
            let f = rt.block_on(async move {
                fiber::spawn(move || {
                    let _g = h.enter();
                    s.store(true, SeqCst);
                    fiber::wait(std::future::pending::<()>());
                })
            });
            util::drive_until(&rt, "the fiber started", || started.load(SeqCst));
            f
        };
        f.abort();
        assert!(join_bounded(&rt, f).is_cancelled(), "{flavor:?}");
        // The canceller's context is its own: its runtime, in order.
        rt.block_on(async {
            assert!(fiber_runtime::spawn(async { 1 }).await.is_ok());
        });
        assert!(fiber_runtime::Handle::try_current().is_err(), "{flavor:?}");
    }
}

/// Guards dropped out of order panic, as in tokio, instead of silently
/// leaving the wrong runtime current.
#[test]
fn enter_guards_dropped_out_of_order_panic() {
    util::silence_expected_panics(&["dropped out of order"]);
    let (a, b) = (named("a"), named("b"));
    // In order, they restore what was current.
    let ga = a.enter();
    let gb = b.enter();
    drop(gb);
    drop(ga);
    assert!(fiber_runtime::Handle::try_current().is_err());
    // Out of order, the first drop panics, and so does the one left.
    let ga = a.enter();
    let gb = b.enter();
    let msg = util::expect_panic(move || drop(ga));
    assert!(msg.contains("dropped out of order"), "{msg}");
    let msg = util::expect_panic(move || drop(gb));
    assert!(msg.contains("dropped out of order"), "{msg}");
}

/// Sleeps in a fiber when dropped (from its destructor).
struct SleepOnDrop(Arc<AtomicBool>);

impl Drop for SleepOnDrop {
    fn drop(&mut self) {
        fiber::sleep(Duration::from_millis(1));
        self.0.store(true, SeqCst);
    }
}

/// Issue 9, bug 10: a fiber that suspended inside a destructor during a
/// panic's unwind left std's per-thread panic count raised while other
/// code ran on its worker: they saw `thread::panicking()` and poisoned
/// the std locks they released. A fiber no longer switches out while it
/// unwinds (the destructor's wait blocks the thread instead).
#[test]
fn a_fiber_unwinding_a_panic_does_not_leak_the_panic_state() {
    util::silence_expected_panics(&[]);
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = flavor.build();
        let lock = Arc::new(Mutex::new(0));
        let saw_panicking = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (l, s, d) = (lock.clone(), saw_panicking.clone(), dropped.clone());
        rt.block_on(async move {
            let f = fiber::spawn(move || {
                let _sleeper = SleepOnDrop(d);
                panic!("{EXPECTED_PANIC}: unwinding through a sleeping destructor");
            });
            let t = fiber_runtime::spawn(async move {
                s.store(std::thread::panicking(), SeqCst);
                *l.lock().unwrap() += 1;
            });
            assert!(f.await.unwrap_err().is_panic());
            t.await.unwrap();
        });
        assert!(
            dropped.load(SeqCst),
            "{flavor:?}: the destructor did not finish"
        );
        assert!(
            !saw_panicking.load(SeqCst),
            "{flavor:?}: a task saw the fiber's panic"
        );
        assert!(!lock.is_poisoned(), "{flavor:?}: a std lock got poisoned");
    }
}

/// Awaits an aborted fiber's handle on `rt` from this thread (which, on a
/// current-thread runtime, holds the fiber), failing the test if that
/// hangs.
fn join_bounded(rt: &Runtime, f: fiber_runtime::JoinHandle<()>) -> fiber_runtime::JoinError {
    rt.block_on(async {
        fiber_runtime::time::timeout(util::TIMEOUT, f)
            .await
            .expect("timed out (hang?) joining the aborted fiber")
            .expect_err("the aborted fiber completed")
    })
}

/// Drops `rt` on this thread (which, on a current-thread runtime, holds
/// its fibers), failing the test if that hangs.
fn drop_bounded(rt: Runtime) {
    let _watch = util::Watchdog::new("dropping the runtime");
    drop(rt);
}

/// Waits in every blocking-style way when dropped.
struct WaitOnDrop {
    done: Arc<AtomicUsize>,
    finished: Option<fiber_runtime::JoinHandle<u32>>,
    /// A task that never finishes, joined when the runtime drops (its
    /// shutdown cancels such tasks before it unwinds fibers).
    pending: Option<fiber_runtime::JoinHandle<()>>,
}

impl Drop for WaitOnDrop {
    fn drop(&mut self) {
        fiber::sleep(Duration::from_millis(1));
        assert_eq!(fiber::wait(async { 5 }), 5);
        if let Some(h) = self.finished.take() {
            assert_eq!(h.join().unwrap(), 7);
        }
        if let Some(h) = self.pending.take() {
            assert!(h.join().unwrap_err().is_cancelled());
        }
        fiber::yield_now();
        self.done.fetch_add(1, SeqCst);
    }
}

/// Issue 9, bug 11: aborting a fiber (or dropping its runtime) whose
/// local's destructor called `fiber::sleep`, `fiber::wait` or
/// `JoinHandle::join` killed the process with SIGABRT. The waits now
/// work: the destructor runs to its end.
#[test]
fn a_cancelled_fibers_destructors_may_wait() {
    for flavor in Flavor::ALL {
        for how in ["abort", "runtime drop"] {
            let rt = flavor.build();
            let done = Arc::new(AtomicUsize::new(0));
            let started = Arc::new(AtomicBool::new(false));
            let ran = Arc::new(AtomicBool::new(false));
            let (d, s, r) = (done.clone(), started.clone(), ran.clone());
            // Finished before the fiber is cancelled (joining it then
            // does not depend on the runtime).
            let finished = rt.spawn(async move {
                r.store(true, SeqCst);
                7
            });
            let pending = (how == "runtime drop").then(|| rt.spawn(std::future::pending::<()>()));
            let f = rt.block_on(async move {
                fiber::spawn(move || {
                    let _w = WaitOnDrop {
                        done: d,
                        finished: Some(finished),
                        pending,
                    };
                    s.store(true, SeqCst);
                    fiber::wait(std::future::pending::<()>());
                })
            });
            util::drive_until(&rt, "the fiber and the task ran", || {
                started.load(SeqCst) && ran.load(SeqCst)
            });
            if how == "abort" {
                f.abort();
                assert!(join_bounded(&rt, f).is_cancelled(), "{flavor:?}");
                drop(rt);
            } else {
                drop_bounded(rt);
                assert!(f.join().unwrap_err().is_cancelled(), "{flavor:?}");
            }
            assert_eq!(
                done.load(SeqCst),
                1,
                "{flavor:?}, {how}: the destructor did not finish"
            );
        }
    }
}

/// Issue 9, bug 11: a fiber that catches the unwind of its cancellation
/// made `abort()` and the runtime's drop hang for good. It is unwound
/// again at its next suspension point; after a bound the runtime gives up
/// on it and leaks it (saying so on stderr), and neither call hangs.
#[test]
// It leaks on purpose (what it checks is that nothing else breaks), which
// LeakSanitizer would report for the whole test binary.
#[cfg_attr(fiber_runtime_asan, ignore = "leaks by design")]
fn a_fiber_swallowing_its_cancellation_does_not_hang_abort_or_drop() {
    for flavor in Flavor::ALL {
        for how in ["abort", "runtime drop"] {
            let rt = flavor.build();
            let caught = Arc::new(AtomicUsize::new(0));
            let started = Arc::new(AtomicBool::new(false));
            let (c, s) = (caught.clone(), started.clone());
            let f = rt.block_on(async move {
                fiber::spawn(move || {
                    s.store(true, SeqCst);
                    loop {
                        let r = catch_unwind(AssertUnwindSafe(|| {
                            fiber::sleep(Duration::from_millis(1))
                        }));
                        if r.is_err() {
                            c.fetch_add(1, SeqCst);
                        }
                    }
                })
            });
            util::drive_until(&rt, "the fiber started", || started.load(SeqCst));
            if how == "abort" {
                f.abort();
                assert!(join_bounded(&rt, f).is_cancelled(), "{flavor:?}");
                drop_bounded(rt);
            } else {
                drop_bounded(rt);
                assert!(f.join().unwrap_err().is_cancelled(), "{flavor:?}");
            }
            // Raised again at each suspension point, up to the bound.
            assert!(
                caught.load(SeqCst) >= 2,
                "{flavor:?}, {how}: raised once only"
            );
        }
    }
}
