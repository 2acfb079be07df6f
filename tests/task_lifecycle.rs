//! The life of a task, step by step: when it is polled (once, then once
//! per wake, wakes coalescing), when its future is dropped (exactly once,
//! at completion), wakers that outlive it, and `yield_now` fairness.

mod util;

use fiber_runtime::Runtime;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use util::{
    Counters, DropToken, Flavor, Gate, Latch, Plug, TIMEOUT, drive_until, drive_yields,
    plug_workers, tracked,
};

/// Plugs the workers of a multi-thread runtime (a current-thread one runs
/// nothing outside `block_on` anyway).
fn hold_workers(rt: &Runtime, flavor: Flavor) -> Option<Plug> {
    match flavor {
        Flavor::MultiThread(n) => Some(plug_workers(rt, n)),
        Flavor::CurrentThread => None,
    }
}

fn lifecycle_step_by_step(flavor: Flavor) {
    let rt = flavor.build_without_handoff();
    let counters = Counters::new();
    let gate = Gate::new();
    let g = gate.clone();
    let h = rt.spawn(tracked(&counters, async move {
        g.wait().await;
        "done"
    }));
    if flavor == Flavor::CurrentThread {
        assert_eq!(counters.polls(), 0, "ran outside block_on");
    }
    assert_eq!(counters.drops(), 0);

    // Polled once, then pending.
    drive_until(&rt, "the first poll", || gate.registrations() == 1);
    assert_eq!(counters.polls(), 1, "{flavor:?}");

    // No wake, no poll.
    drive_yields(&rt, 20);
    assert_eq!(counters.polls(), 1, "{flavor:?}: polled without a wake");

    // One wake, one more poll (still pending: the gate is closed).
    assert!(gate.wake());
    drive_until(&rt, "the second poll", || gate.registrations() == 2);
    assert_eq!(counters.polls(), 2, "{flavor:?}");
    assert_eq!(counters.drops(), 0);

    // Two wakes before the task runs again: at least one poll, at most
    // one per wake. (This runtime coalesces them into one.)
    let plug = hold_workers(&rt, flavor);
    let waker = gate.take_waker().expect("the task registered its waker");
    waker.wake_by_ref();
    waker.wake_by_ref();
    drop(waker);
    assert_eq!(
        counters.polls(),
        2,
        "{flavor:?}: polled while the workers were held"
    );
    if let Some(plug) = plug {
        plug.release();
    }
    drive_until(&rt, "the third poll", || gate.registrations() >= 3);
    drive_yields(&rt, 20);
    let polls = counters.polls();
    assert!(
        (3..=4).contains(&polls),
        "{flavor:?}: {polls} polls after 3 wakes"
    );

    // Opening the gate: one last poll completes it; the future is dropped
    // exactly once, at completion, before anyone reads the output.
    gate.open();
    drive_until(&rt, "the future was dropped", || counters.drops() == 1);
    assert_eq!(counters.polls(), polls + 1, "{flavor:?}");
    drive_until(&rt, "finished", || h.is_finished());
    assert_eq!(rt.block_on(h).unwrap(), "done");
    assert_eq!(counters.drops(), 1);
    drop(rt);
    assert_eq!(counters.drops(), 1, "{flavor:?}: dropped again at shutdown");
    assert_eq!(counters.polls(), polls + 1);
}

#[test]
fn lifecycle_current_thread() {
    lifecycle_step_by_step(Flavor::CurrentThread);
}

#[test]
fn lifecycle_multi_thread_1() {
    lifecycle_step_by_step(Flavor::MultiThread(1));
}

#[test]
fn lifecycle_multi_thread_2() {
    lifecycle_step_by_step(Flavor::MultiThread(2));
}

#[test]
fn a_ready_future_is_polled_once_and_dropped_once() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let output_drops = Arc::new(AtomicUsize::new(0));
        let d = output_drops.clone();
        let h = rt.spawn(tracked(&counters, async move { DropToken::new(3, &d) }));
        drive_until(&rt, "finished", || h.is_finished());
        assert_eq!(counters.polls(), 1, "{flavor:?}");
        assert_eq!(counters.drops(), 1, "{flavor:?}");
        // The output lives until the handle hands it over.
        assert_eq!(output_drops.load(SeqCst), 0);
        let token = rt.block_on(h).unwrap();
        assert_eq!(token.value, 3);
        drop(token);
        assert_eq!(output_drops.load(SeqCst), 1);
        drop(rt);
        assert_eq!(counters.drops(), 1);
        assert_eq!(output_drops.load(SeqCst), 1);
    }
}

#[test]
fn a_wake_from_another_thread_unparks_an_idle_runtime() {
    // One worker, so "it parked after running the task" is observable:
    // a worker publishes its park count right before parking.
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = Arc::new(flavor.build());
        let parks = |rt: &Runtime| rt.metrics().worker_park_count(0);
        if flavor != Flavor::CurrentThread {
            util::wait_until("the idle worker parks", || parks(&rt) >= 1);
        }
        let before = parks(&rt);
        let gate = Gate::new();
        let g = gate.clone();
        let h = rt.spawn(async move {
            g.wait().await;
            thread::current().id()
        });
        // Current-thread: the driver is a thread blocked on the task.
        let driver = {
            let rt = rt.clone();
            thread::spawn(move || rt.block_on(h))
        };
        gate.wait_registrations(1);
        util::wait_until("the worker parks after polling the task", || {
            parks(&rt) > before
        });
        assert!(gate.open(), "the task registered a waker");
        let ran_on = util::run_with_timeout("the woken task runs", move || driver.join().unwrap());
        assert_ne!(ran_on.unwrap(), thread::current().id(), "{flavor:?}");
    }
}

/// First poll: stores its waker, reports it is being polled, then waits
/// (inside `poll`) until the test woke it; returns `Pending`. Second poll:
/// `Ready`.
struct WokenDuringPoll {
    polled: usize,
    waker_tx: mpsc::Sender<Waker>,
    woken: Latch,
}

impl Future for WokenDuringPoll {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        self.polled += 1;
        if self.polled > 1 {
            return Poll::Ready(self.polled);
        }
        self.waker_tx.send(cx.waker().clone()).unwrap();
        self.woken.wait();
        Poll::Pending
    }
}

#[test]
fn a_wake_during_the_poll_polls_it_again() {
    for flavor in Flavor::ALL {
        let rt = Arc::new(flavor.build());
        let (waker_tx, waker_rx) = mpsc::channel();
        let woken = Latch::new();
        let h = rt.spawn(WokenDuringPoll {
            polled: 0,
            waker_tx,
            woken: woken.clone(),
        });
        // Drive from another thread (needed for the current-thread flavor).
        let driver = {
            let rt = rt.clone();
            thread::spawn(move || rt.block_on(h))
        };
        let waker = waker_rx.recv_timeout(TIMEOUT).unwrap();
        // The task is inside its poll right now.
        waker.wake();
        woken.release();
        let polled =
            util::run_with_timeout("the task is polled again", move || driver.join().unwrap());
        assert_eq!(polled.unwrap(), 2, "{flavor:?}");
    }
}

#[test]
fn wakers_outliving_the_task_are_harmless() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let stash: Arc<Mutex<Vec<Waker>>> = Arc::default();
        let gate = Gate::new();
        let (s, g) = (stash.clone(), gate.clone());
        let h = rt.spawn(tracked(&counters, async move {
            std::future::poll_fn(|cx| {
                // Many clones, kept past the task's end.
                let mut stash = s.lock().unwrap();
                for _ in 0..8 {
                    stash.push(cx.waker().clone());
                }
                Poll::Ready(())
            })
            .await;
            g.wait().await;
        }));
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        gate.open();
        rt.block_on(h).unwrap();
        let polls = counters.polls();
        let wakers = std::mem::take(&mut *stash.lock().unwrap());
        for (i, w) in wakers.into_iter().enumerate() {
            match i % 3 {
                0 => w.wake(),
                1 => w.wake_by_ref(),
                _ => drop(w),
            }
        }
        drive_yields(&rt, 10);
        assert_eq!(
            counters.polls(),
            polls,
            "{flavor:?}: a finished task was polled"
        );
        assert_eq!(counters.drops(), 1, "{flavor:?}");
    }
}

#[test]
fn many_waker_clones_from_many_threads() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let gate = Gate::new();
        let g = gate.clone();
        let h = rt.spawn(tracked(&counters, async move { g.wait().await }));
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        let waker = gate.take_waker().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let waker = waker.clone();
                thread::spawn(move || {
                    for _ in 0..1000 {
                        let w = waker.clone();
                        w.wake_by_ref();
                        drop(w);
                    }
                    waker
                })
            })
            .collect();
        drop(waker);
        let wakers: Vec<Waker> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        gate.open();
        rt.block_on(h).unwrap();
        // At most one poll per wake, and dropped once.
        assert!(counters.polls() <= 4001 + 1, "{flavor:?}");
        assert_eq!(counters.drops(), 1, "{flavor:?}");
        drop(wakers);
        drop(rt);
        assert_eq!(counters.drops(), 1, "{flavor:?}");
    }
}

/// Runs `n` tasks that each log their id then yield, `rounds` times;
/// returns the log. The tasks are spawned together from inside a task, so
/// they are all ready in the worker's own queue.
fn yield_log(rt: &Runtime, n: usize, rounds: usize) -> Vec<usize> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let parent = rt.spawn(async move {
        let handles: Vec<_> = (0..n)
            .map(|id| {
                let log = l.clone();
                fiber_runtime::spawn(async move {
                    for _ in 0..rounds {
                        log.lock().unwrap().push(id);
                        fiber_runtime::yield_now().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    rt.block_on(parent).unwrap();
    log.lock().map(|log| log.clone()).unwrap()
}

#[test]
fn yield_now_interleaves_two_tasks() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = flavor.build();
        let log = yield_log(&rt, 2, 20);
        assert_eq!(log.len(), 40);
        for pair in log.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "{flavor:?}: a task ran twice in a row: {log:?}"
            );
        }
    }
}

#[test]
fn yield_now_runs_every_other_ready_task_first() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = flavor.build();
        let log = yield_log(&rt, 4, 10);
        assert_eq!(log.len(), 40);
        // Round robin: any 4 consecutive entries are the 4 tasks.
        for window in log.windows(4) {
            let mut w = window.to_vec();
            w.sort_unstable();
            assert_eq!(w, [0, 1, 2, 3], "{flavor:?}: not round robin: {log:?}");
        }
    }
}

/// `yield_now`: "every other ready task runs before it resumes" -- also
/// a task that became ready from outside the worker (spawned or woken by
/// another thread, so waiting in the global queue).
#[test]
fn yield_now_lets_a_task_ready_in_the_global_queue_run_first() {
    let mut failures = Vec::new();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = Arc::new(flavor.build());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started_rx) = mpsc::channel();
        let latch = Latch::new();
        let (l, go) = (log.clone(), latch.clone());
        let yielder = rt.spawn(async move {
            for round in 0..20 {
                l.lock().unwrap().push("yielder");
                if round == 0 {
                    // Hold the worker while the other task is spawned.
                    started_tx.send(()).unwrap();
                    go.wait();
                }
                fiber_runtime::yield_now().await;
            }
        });
        // Drive from another thread (for the current-thread flavor).
        let driver = {
            let rt = rt.clone();
            thread::spawn(move || rt.block_on(yielder))
        };
        started_rx.recv_timeout(TIMEOUT).unwrap();
        // Spawned from this thread: it waits in the global queue, ready.
        let l = log.clone();
        let other = rt.spawn(async move { l.lock().unwrap().push("other") });
        latch.release();
        driver.join().unwrap().unwrap();
        rt.block_on(other).unwrap();
        let log = log.lock().unwrap().clone();
        let other_at = log.iter().position(|e| *e == "other").unwrap();
        if other_at != 1 {
            failures.push(format!(
                "{flavor:?}: the yielding task resumed {} times before a ready task ran",
                other_at - 1
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Pending forever, but wakes its partner at every poll (and stores its
/// own waker for the partner to wake): two of them keep each other busy.
struct PingPong {
    me: usize,
    slots: Arc<Mutex<[Option<Waker>; 2]>>,
    stop: Arc<AtomicBool>,
}

impl Future for PingPong {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let other = {
            let mut slots = self.slots.lock().unwrap();
            slots[self.me] = Some(cx.waker().clone());
            slots[1 - self.me].take()
        };
        if let Some(w) = other {
            w.wake();
        }
        if self.stop.load(SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn two_tasks_waking_each_other_do_not_starve_a_third() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let ran = util::run_with_timeout("the third task runs", move || third_task_runs(flavor));
        assert_eq!(ran, "third ran", "{flavor:?}");
    }
}

fn third_task_runs(flavor: Flavor) -> &'static str {
    let rt = flavor.build();
    let slots = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ran = rt.block_on(async {
        let pair: Vec<_> = (0..2)
            .map(|me| {
                fiber_runtime::spawn(PingPong {
                    me,
                    slots: Arc::clone(&slots),
                    stop: stop.clone(),
                })
            })
            .collect();
        // Let the ping-pong start before the third task exists.
        for _ in 0..10 {
            fiber_runtime::yield_now().await;
        }
        let third = fiber_runtime::spawn(async { "third ran" });
        let ran = third.await.unwrap();
        stop.store(true, SeqCst);
        for h in pair {
            h.await.unwrap();
        }
        ran
    });
    drop(rt);
    ran
}
