//! Fibers on a current-thread runtime driven from several threads: a
//! fiber only ever runs on the thread it started on, so while such
//! fibers are alive only that thread may drive the runtime; another
//! thread's `block_on` that would take it over panics with a message
//! naming the rule (never the old "fiber-runtime bug" message), the
//! fibers go on once their thread drives again, and nothing leaks.

mod util;

use fiber_runtime::{JoinHandle, Runtime, fiber};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use util::{DropToken, run_with_timeout};

const BOUND: &str = "cannot be driven from this thread";

/// Starts a fiber on this thread that waits for `rx` and then returns
/// its value plus one; returns once it has started (and suspended).
fn start_waiting_fiber(
    rt: &Runtime,
    rx: futures::channel::oneshot::Receiver<u32>,
    drops: &Arc<AtomicUsize>,
) -> JoinHandle<u32> {
    let started = Arc::new(AtomicBool::new(false));
    let token = DropToken::new(0, drops);
    let s = started.clone();
    let h = {
        let _g = rt.enter();
        fiber::spawn(move || {
            let _token = token;
            s.store(true, SeqCst);
            fiber::wait(rx).unwrap() + 1
        })
    };
    util::drive_until(rt, "the fiber started", || started.load(SeqCst));
    h
}

/// The scenario: a fiber started under one thread's `block_on`,
/// woken from a second thread that then tries to drive the runtime.
/// Before, the second thread resumed it and got "fiber-runtime bug: a
/// fiber was polled on a thread other than its own", and its stack
/// leaked; now that `block_on` panics with a message saying why, and the
/// fiber completes when its own thread drives again.
#[test]
fn another_thread_cannot_drive_while_fibers_of_this_one_are_alive() {
    util::silence_expected_panics(&[BOUND]);
    let rt = Arc::new(util::current_thread());
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = futures::channel::oneshot::channel();
    let h = start_waiting_fiber(&rt, rx, &drops);

    let rt2 = rt.clone();
    let other = run_with_timeout("block_on on another thread", move || {
        catch_unwind(AssertUnwindSafe(|| {
            tx.send(41).unwrap();
            rt2.block_on(async { 0 })
        }))
    });
    let msg =
        util::panic_message(&*other.expect_err("the other thread drove the runtime")).unwrap();
    assert!(msg.contains(BOUND), "{msg}");
    assert!(msg.contains("1 fiber(s)"), "{msg}");
    assert!(!msg.contains("bug"), "{msg}");

    // Its own thread drives it again: the fiber completes.
    assert_eq!(rt.block_on(h).unwrap(), 42);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(rt.metrics().num_alive_fibers(), 0);

    // No fiber alive: any thread may drive it again.
    let rt2 = rt.clone();
    let v = run_with_timeout("block_on once the fibers finished", move || {
        rt2.block_on(async { fiber::spawn(|| 7).await.unwrap() })
    });
    assert_eq!(v, 7);
}

/// A thread waiting in `block_on` while the fiber thread drives does
/// not take over (it only polls its own future), so it is not refused.
#[test]
fn another_thread_may_wait_in_block_on_while_the_fiber_thread_drives() {
    let rt = Arc::new(util::current_thread());
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let (done_tx, done_rx) = futures::channel::oneshot::channel::<()>();
    let waiting = Arc::new(AtomicBool::new(false));
    let (rt2, w) = (rt.clone(), waiting.clone());
    let driver = std::thread::spawn(move || {
        rt2.block_on(async move {
            let h = fiber::spawn(move || {
                w.store(true, SeqCst);
                fiber::wait(rx).unwrap() * 2
            });
            let v = h.await.unwrap();
            done_rx.await.unwrap();
            v
        })
    });
    // Wait until the driving thread holds the runtime and its fiber has
    // started (it sets the flag right before its wait), then send from
    // inside our own `block_on`.
    util::wait_until("the fiber started", || waiting.load(SeqCst));
    let rt3 = rt.clone();
    run_with_timeout("a waiting block_on", move || {
        rt3.block_on(async move {
            tx.send(21).unwrap();
        })
    });
    done_tx.send(()).unwrap();
    assert_eq!(driver.join().unwrap(), 42);
}

/// A fiber spawned but not started does not bind the runtime: another
/// thread may start it, and then holds it.
#[test]
fn unstarted_fibers_do_not_bind_the_runtime() {
    let rt = Arc::new(util::current_thread());
    let h = {
        let _g = rt.enter();
        fiber::spawn(|| std::thread::current().id())
    };
    let rt2 = rt.clone();
    let (ran_on, other) = run_with_timeout("starting the fiber elsewhere", move || {
        (rt2.block_on(h).unwrap(), std::thread::current().id())
    });
    assert_eq!(ran_on, other);
}

/// Dropped on another thread than its live fibers', the runtime cannot
/// unwind them: it leaks their stacks (their destructors never run; it
/// says so on stderr) and shuts down everything else.
#[test]
// It leaks on purpose (what it checks is that nothing else breaks), which
// LeakSanitizer would report for the whole test binary.
#[cfg_attr(fiber_runtime_asan, ignore = "leaks by design")]
fn dropping_a_bound_runtime_on_another_thread_shuts_down_the_rest() {
    let rt = util::current_thread();
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = futures::channel::oneshot::channel();
    let h = start_waiting_fiber(&rt, rx, &drops);
    let task = rt.spawn(std::future::pending::<()>());
    run_with_timeout("dropping the runtime elsewhere", move || drop(rt));
    // The task and the fiber's task are cancelled; the fiber's locals
    // were leaked with its stack, never run elsewhere.
    assert!(task.join().unwrap_err().is_cancelled());
    assert!(h.join().unwrap_err().is_cancelled());
    assert_eq!(drops.load(SeqCst), 0);
    drop(tx);
}

/// Dropped on its fibers' thread, the runtime unwinds them there.
#[test]
fn dropping_a_bound_runtime_on_its_fibers_thread_unwinds_them() {
    let rt = util::current_thread();
    let drops = Arc::new(AtomicUsize::new(0));
    let (_tx, rx) = futures::channel::oneshot::channel();
    let h = start_waiting_fiber(&rt, rx, &drops);
    drop(rt);
    assert!(h.join().unwrap_err().is_cancelled());
    assert_eq!(drops.load(SeqCst), 1);
}
