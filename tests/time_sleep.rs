//! `sleep` and `sleep_until`: timers complete in deadline order and never
//! early, 100k of them all complete, a dropped `Sleep` never fires (and
//! lets go of its waker), `Sleep::reset` moves a registered timer either
//! way, past deadlines complete at once, timers fire on a busy worker and
//! on the current-thread flavor, and using a timer outside a runtime (or
//! after its runtime dropped) panics with a message saying so.
//!
//! No assert has a wall-clock upper bound: "completes" is checked under
//! [`util::run_with_timeout`], whose bound only detects hangs.

mod util;

use fiber_runtime::Runtime;
use fiber_runtime::time::{Duration, Instant, sleep, sleep_until};
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{Either, select};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use util::{
    CountingWaker, Flavor, TIMEOUT, drive_until, expect_panic, ms, poll_once, run,
    run_with_timeout, run_with_timeout_in, silence_expected_panics, tracked, until_conclusive,
};

const OUTSIDE: &str = "outside a fiber-runtime runtime";
const SHUT_DOWN: &str = "has shut down";

/// `rt.block_on` of the future `make` builds, through a handle on another
/// thread, failing the test if it hangs.
#[track_caller]
fn block_on_bounded<F, Fut>(rt: &Runtime, what: &str, make: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let handle = rt.handle().clone();
    run_with_timeout(what, move || handle.block_on(make()))
}

#[test]
fn timers_complete_in_deadline_order() {
    // On the current-thread flavor only, whose run queue is FIFO: timers
    // that one late driver turn fires together (seen under ASan in CI)
    // wake their tasks in deadline order, but on the multi-thread flavor
    // the last one woken takes the LIFO slot and runs first, and with two
    // workers they run in either order. The wheel's own firing order is
    // `wheel.rs`'s `timers_fire_in_deadline_order_across_levels`.
    // The deadlines are fixed before the tasks start: a stall between
    // their first polls moves none of them.
    let order = run(Flavor::CurrentThread, "timer ordering", || async {
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = [30, 10, 20]
            .into_iter()
            .map(|d| {
                let order = order.clone();
                fiber_runtime::spawn(async move {
                    sleep_until(start + ms(d)).await;
                    order.lock().unwrap().push(d);
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        Arc::try_unwrap(order).unwrap().into_inner().unwrap()
    });
    assert_eq!(order, [10, 20, 30]);
}

#[test]
fn a_sleep_never_completes_early() {
    const DURATIONS: [u64; 14] = [0, 1, 2, 3, 5, 7, 13, 20, 50, 63, 65, 100, 130, 300];
    for flavor in Flavor::ALL {
        run(flavor, "never early", || async {
            let handles: Vec<_> = DURATIONS
                .iter()
                .flat_map(|&d| {
                    let relative = fiber_runtime::spawn(async move {
                        let start = Instant::now();
                        sleep(ms(d)).await;
                        let elapsed = start.elapsed();
                        assert!(elapsed >= ms(d), "sleep({d} ms) returned after {elapsed:?}");
                    });
                    let absolute = fiber_runtime::spawn(async move {
                        let deadline = Instant::now() + ms(d);
                        let s = sleep_until(deadline);
                        assert_eq!(s.deadline(), deadline);
                        s.await;
                        let now = Instant::now();
                        assert!(
                            now >= deadline,
                            "sleep_until returned {:?} early",
                            deadline - now
                        );
                    });
                    [relative, absolute]
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
            // And awaited directly by `block_on`.
            for d in [1, 4, 11] {
                let start = Instant::now();
                sleep(ms(d)).await;
                assert!(start.elapsed() >= ms(d));
            }
        });
    }
}

#[test]
fn a_sleep_beyond_the_first_two_wheel_levels_is_not_early() {
    // 4.2 s: filed at level 2 (64 × 64 ms and more), cascading down.
    run(Flavor::MultiThread(1), "4.2 s sleep", || async {
        let start = Instant::now();
        sleep(ms(4200)).await;
        assert!(start.elapsed() >= ms(4200));
    });
}

#[test]
fn a_hundred_thousand_sleeps_all_complete() {
    const N: usize = 100_000;
    for flavor in [Flavor::MultiThread(2), Flavor::CurrentThread] {
        let what = format!("100k sleeps on {flavor:?}");
        run_with_timeout_in(TIMEOUT * 4, &what, move || {
            let rt = flavor.build();
            let done = Arc::new(AtomicUsize::new(0));
            let early = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..N)
                .map(|i| {
                    let (done, early) = (done.clone(), early.clone());
                    rt.spawn(async move {
                        let d = ms(1 + (i % 100) as u64);
                        let start = Instant::now();
                        sleep(d).await;
                        if start.elapsed() < d {
                            early.fetch_add(1, SeqCst);
                        }
                        done.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            rt.block_on(async {
                for h in handles {
                    h.await.unwrap();
                }
            });
            assert_eq!(done.load(SeqCst), N);
            assert_eq!(early.load(SeqCst), 0, "sleeps that returned early");
        });
    }
}

#[test]
fn a_sleep_dropped_in_a_select_never_fires() {
    for flavor in Flavor::ALL {
        run(flavor, "dropped in select", || async {
            let fired = Arc::new(AtomicBool::new(false));
            let slow = {
                let fired = fired.clone();
                Box::pin(async move {
                    sleep(ms(30)).await;
                    fired.store(true, SeqCst);
                })
            };
            // `select` polls its first future first: `quick` is ready on
            // its second poll, so the sleep is polled (registered) exactly
            // once, however late the second poll comes.
            let quick = Box::pin(fiber_runtime::yield_now());
            match select(quick, slow).await {
                Either::Left(((), slow)) => drop(slow),
                Either::Right(_) => unreachable!("polled once, never second"),
            }
            // Well past the dropped timer's deadline.
            sleep(ms(60)).await;
            assert!(!fired.load(SeqCst), "code after a dropped sleep ran");
        });
    }
}

#[test]
fn a_sleep_in_an_aborted_task_never_fires() {
    for flavor in Flavor::ALL {
        until_conclusive("aborting a sleeping task", || {
            a_sleep_in_an_aborted_task_never_fires_on(flavor)
        });
    }
}

/// `None` if the abort came too late to say anything: after the sleep's
/// deadline, when the task may have finished.
fn a_sleep_in_an_aborted_task_never_fires_on(flavor: Flavor) -> Option<()> {
    let rt = flavor.build();
    let fired = Arc::new(AtomicBool::new(false));
    let counters = util::Counters::new();
    // Before the sleep is made: its deadline is at least 30 ms on.
    let start = Instant::now();
    let handle = rt.spawn(tracked(&counters, {
        let fired = fired.clone();
        async move {
            sleep(ms(30)).await;
            fired.store(true, SeqCst);
        }
    }));
    drive_until(&rt, "the sleeping task was polled", || {
        counters.polls() >= 1
    });
    handle.abort();
    if start.elapsed() >= ms(30) {
        return None;
    }
    let err =
        block_on_bounded(&rt, "awaiting an aborted sleeping task", move || handle).unwrap_err();
    assert!(err.is_cancelled(), "{flavor:?}: {err}");
    assert_eq!(
        counters.drops(),
        1,
        "{flavor:?}: the task's future was dropped"
    );
    drive_until(&rt, "no task is alive", || {
        rt.metrics().num_alive_tasks() == 0
    });
    block_on_bounded(&rt, "sleeping past the deadline", || async {
        sleep(ms(60)).await
    });
    assert!(
        !fired.load(SeqCst),
        "{flavor:?}: the aborted task's sleep fired"
    );
    assert_eq!(counters.polls(), 1, "{flavor:?}: polled after abort");
    Some(())
}

#[test]
fn a_dropped_sleep_lets_go_of_its_waker_and_never_wakes_it() {
    for flavor in Flavor::ALL {
        until_conclusive("dropping a registered sleep", || {
            a_dropped_sleep_lets_go_of_its_waker_on(flavor)
        });
    }
}

/// `None` if the sleep was dropped too late to say anything: after its
/// deadline, when a worker may have fired it.
fn a_dropped_sleep_lets_go_of_its_waker_on(flavor: Flavor) -> Option<()> {
    let rt = flavor.build();
    let (count, waker) = CountingWaker::new();
    // Ours and `waker`'s.
    let baseline = Arc::strong_count(&count);
    {
        let _guard = rt.enter();
        let start = Instant::now();
        let mut s = Box::pin(sleep(ms(20)));
        assert!(poll_once(&mut s, &waker).is_pending());
        let held = Arc::strong_count(&count) > baseline;
        drop(s);
        if start.elapsed() >= ms(20) {
            return None;
        }
        assert!(
            held,
            "{flavor:?}: a registered sleep holds a clone of its waker"
        );
    }
    assert_eq!(
        Arc::strong_count(&count),
        baseline,
        "{flavor:?}: the timer wheel kept the waker of a dropped sleep"
    );
    block_on_bounded(&rt, "sleeping past the dropped deadline", || async {
        sleep(ms(50)).await
    });
    assert_eq!(
        count.wakes(),
        0,
        "{flavor:?}: a dropped sleep woke its task"
    );
    Some(())
}

#[test]
fn sleeping_outside_a_runtime_panics_with_a_message_saying_so() {
    silence_expected_panics(&[OUTSIDE]);
    let msg = expect_panic(|| sleep(ms(1)));
    assert!(msg.contains(OUTSIDE), "{msg}");
    assert!(msg.contains("`sleep`"), "names the function: {msg}");
    let msg = expect_panic(|| sleep_until(Instant::now()));
    assert!(msg.contains(OUTSIDE), "{msg}");
    assert!(msg.contains("`sleep_until`"), "names the function: {msg}");
    // Also from a plain executor, which is not a runtime.
    let msg = expect_panic(|| futures::executor::block_on(async { sleep(ms(1)).await }));
    assert!(msg.contains(OUTSIDE), "{msg}");
}

#[test]
fn polling_a_sleep_whose_runtime_dropped_panics_and_dropping_it_does_not() {
    silence_expected_panics(&[SHUT_DOWN]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (_count, waker) = CountingWaker::new();
        let (mut registered, mut unpolled, dropped) = {
            let _guard = rt.enter();
            let mut registered = Box::pin(sleep(Duration::from_secs(3600)));
            assert!(poll_once(&mut registered, &waker).is_pending());
            let mut dropped = Box::pin(sleep(Duration::from_secs(3600)));
            assert!(poll_once(&mut dropped, &waker).is_pending());
            (
                registered,
                Box::pin(sleep(Duration::from_secs(3600))),
                dropped,
            )
        };
        drop(rt);
        let msg = expect_panic(|| poll_once(&mut registered, &waker));
        assert!(msg.contains(SHUT_DOWN), "{flavor:?}: {msg}");
        let msg = expect_panic(|| poll_once(&mut unpolled, &waker));
        assert!(msg.contains(SHUT_DOWN), "{flavor:?}: {msg}");
        drop(dropped);
    }
}

#[test]
fn reset_moves_a_registered_sleep_earlier_and_later() {
    for flavor in Flavor::ALL {
        run(flavor, "Sleep::reset", || async {
            // Earlier: an hour-long sleep, registered, moved to 20 ms. The
            // parked driver must notice the nearer deadline.
            let mut s = Box::pin(sleep(Duration::from_secs(3600)));
            assert!(futures::poll!(s.as_mut()).is_pending());
            let target = Instant::now() + ms(20);
            s.as_mut().reset(target);
            assert_eq!(s.deadline(), target);
            s.as_mut().await;
            assert!(Instant::now() >= target);
            assert!(s.is_elapsed());

            // Later: a 5 ms sleep moved to 40 ms does not fire at 5 ms.
            let mut s = Box::pin(sleep(ms(5)));
            assert!(futures::poll!(s.as_mut()).is_pending());
            let target = Instant::now() + ms(40);
            s.as_mut().reset(target);
            s.as_mut().await;
            assert!(Instant::now() >= target, "fired at the old deadline");

            // After completion: it waits again.
            let target = Instant::now() + ms(15);
            s.as_mut().reset(target);
            assert!(!s.is_elapsed());
            assert!(futures::poll!(s.as_mut()).is_pending());
            s.as_mut().await;
            assert!(Instant::now() >= target);

            // Fired while nobody polled it (its wheel entry is freed when it
            // fires), then moved later: it waits for the new deadline.
            let mut s = Box::pin(sleep(ms(1)));
            assert!(futures::poll!(s.as_mut()).is_pending());
            // A later timer of the same runtime has fired, so this one has.
            sleep(ms(10)).await;
            let target = Instant::now() + ms(30);
            s.as_mut().reset(target);
            s.as_mut().await;
            assert!(
                Instant::now() >= target,
                "completed on its old, fired timer"
            );

            // Before the first poll (not yet registered).
            let mut s = Box::pin(sleep(Duration::from_secs(3600)));
            let target = Instant::now() + ms(10);
            s.as_mut().reset(target);
            s.await;
            assert!(Instant::now() >= target);
        });
    }
}

#[test]
fn reset_by_a_message_while_the_sleeper_waits() {
    // A task waits on an hour-long sleep (registered: the driver may park
    // until then); a message from another task moves it to 15 ms from now.
    for flavor in Flavor::ALL {
        run(flavor, "reset while waiting", || async {
            let (tx, rx) = oneshot::channel::<Instant>();
            let sleeper = fiber_runtime::spawn(async move {
                let mut s = Box::pin(sleep(Duration::from_secs(3600)));
                let target = match select(s.as_mut(), rx).await {
                    Either::Left(((), _)) => panic!("an hour passed"),
                    Either::Right((t, _)) => t.expect("the sender was dropped"),
                };
                s.as_mut().reset(target);
                s.as_mut().await;
                (target, Instant::now())
            });
            for _ in 0..10 {
                fiber_runtime::yield_now().await;
            }
            tx.send(Instant::now() + ms(15)).unwrap();
            let (target, done) = sleeper.await.unwrap();
            assert!(done >= target);
        });
    }
}

#[test]
fn deadlines_in_the_past_complete_at_once() {
    for flavor in Flavor::ALL {
        run(flavor, "past deadlines", || async {
            let past = Instant::now() - ms(50);
            let s = sleep_until(past);
            assert!(s.is_elapsed());
            assert_eq!(
                s.now_or_never(),
                Some(()),
                "sleep_until(past) is ready at once"
            );
            assert_eq!(sleep_until(Instant::now()).now_or_never(), Some(()));
            assert_eq!(sleep(Duration::ZERO).now_or_never(), Some(()));
            assert!(sleep(Duration::ZERO).is_elapsed());
            // Also from a spawned task.
            let h = fiber_runtime::spawn(async move {
                let mut s = Box::pin(sleep_until(past));
                futures::poll!(s.as_mut())
            });
            assert_eq!(h.await.unwrap(), Poll::Ready(()));
        });
    }
}

#[test]
fn a_huge_duration_saturates_instead_of_overflowing() {
    run(Flavor::CurrentThread, "Duration::MAX", || async {
        let mut s = Box::pin(sleep(Duration::MAX));
        assert!(!s.is_elapsed());
        assert!(futures::poll!(s.as_mut()).is_pending());
        assert!(s.deadline() > Instant::now() + Duration::from_secs(86_400 * 365));
    });
}

#[test]
fn current_thread_block_on_turns_the_timer_driver() {
    let rt = util::current_thread();
    let rt = run_with_timeout("current_thread sleeps", move || {
        // Only the block_on future sleeps.
        rt.block_on(async {
            let start = Instant::now();
            sleep(ms(10)).await;
            assert!(start.elapsed() >= ms(10));
        });
        // Spawned tasks sleep while block_on awaits them.
        let handles: Vec<_> = (1..=5u64)
            .map(|i| rt.spawn(async move { sleep(ms(i * 3)).await }))
            .collect();
        rt.block_on(async {
            for h in handles {
                h.await.unwrap();
            }
        });
        // Several block_on calls in a row, each with its own timer.
        // (The `Sleep` is made inside: `sleep` outside a runtime panics.)
        for d in [1, 2, 3] {
            rt.block_on(async move { sleep(ms(d)).await });
        }
        rt
    });
    // A task spawned between block_on calls sleeps; a later block_on
    // (parked, waiting for its message) drives its timer.
    let (tx, rx) = oneshot::channel();
    let _detached = rt.spawn(async move {
        sleep(ms(5)).await;
        let _ = tx.send(());
    });
    block_on_bounded(&rt, "the spawned sleeper finished", || rx).unwrap();
}

#[test]
fn a_block_on_future_that_keeps_yielding_does_not_starve_timers() {
    // The current-thread `block_on` future spins (yield_now) until a
    // spawned task's 5 ms sleep completes. No task is ever runnable for
    // long, and the thread never parks: `block_on` itself must still turn
    // the driver now and then, or the timer never fires.
    let mut starved = Vec::new();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let flag = Arc::new(AtomicBool::new(false));
        let _detached = rt.spawn({
            let flag = flag.clone();
            async move {
                sleep(ms(5)).await;
                flag.store(true, SeqCst);
            }
        });
        let fired = block_on_bounded(&rt, "a spinning block_on", move || async move {
            let give_up = Instant::now() + Duration::from_secs(5);
            while !flag.load(SeqCst) {
                if Instant::now() > give_up {
                    return false;
                }
                fiber_runtime::yield_now().await;
            }
            true
        });
        if !fired {
            starved.push(flavor);
        }
    }
    assert!(
        starved.is_empty(),
        "on {starved:?}: a 5 ms timer had not fired after 5 s while the block_on future kept \
         yielding (the driver is never turned)"
    );
}

#[test]
fn timers_fire_while_every_worker_is_busy() {
    // The only worker (or the current-thread block_on) never parks: it
    // keeps yielding until a sleeping task sets the flag.
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        run(flavor, "timers on a busy worker", || async {
            let flag = Arc::new(AtomicBool::new(false));
            let sleeper = fiber_runtime::spawn({
                let flag = flag.clone();
                async move {
                    sleep(ms(10)).await;
                    flag.store(true, SeqCst);
                }
            });
            let spinner = fiber_runtime::spawn({
                let flag = flag.clone();
                async move {
                    let deadline = Instant::now() + TIMEOUT;
                    while !flag.load(SeqCst) {
                        assert!(Instant::now() < deadline, "the timer never fired");
                        fiber_runtime::yield_now().await;
                    }
                }
            });
            spinner.await.unwrap();
            sleeper.await.unwrap();
        });
    }
}

/// Issue 9, bug 4: a timer still pending when its runtime shut down was
/// dropped from the wheel without a wake, so whoever awaited it from
/// outside the runtime hung for good. Now it is woken, and its poll
/// panics saying the runtime is gone.
#[test]
fn a_sleep_pending_when_its_runtime_drops_resolves_instead_of_hanging() {
    silence_expected_panics(&[SHUT_DOWN]);
    // From a plain thread, through `Handle::block_on` (multi-thread: a
    // current-thread runtime would be driven by that thread).
    for workers in [1, 2] {
        let rt = Flavor::MultiThread(workers).build();
        let handle = rt.handle().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle.block_on(async move {
                    // Registered (polled once) before the runtime drops.
                    let mut s = Box::pin(sleep(Duration::from_secs(3600)));
                    assert!(futures::poll!(s.as_mut()).is_pending());
                    tx.send(()).unwrap();
                    s.await
                })
            }))
        });
        rx.recv().unwrap();
        drop(rt);
        let res = run_with_timeout(
            "a plain thread's sleep after its runtime dropped",
            move || waiter.join().unwrap(),
        );
        let msg = util::panic_message(&*res.expect_err("the sleep completed")).unwrap();
        assert!(msg.contains(SHUT_DOWN), "{msg}");
    }
    // From a task of another runtime.
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let other = Flavor::MultiThread(1).build();
        let s = {
            let _g = rt.enter();
            sleep(Duration::from_secs(3600))
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let task = other.spawn(async move {
            let mut s = Box::pin(s);
            assert!(futures::poll!(s.as_mut()).is_pending());
            tx.send(()).unwrap();
            s.await
        });
        rx.recv().unwrap();
        drop(rt);
        let err = run_with_timeout("another runtime's task awaiting the sleep", move || {
            task.join()
        })
        .expect_err("the sleep completed");
        assert!(err.is_panic(), "{flavor:?}: {err}");
        assert!(err.to_string().contains(SHUT_DOWN), "{flavor:?}: {err}");
    }
}
