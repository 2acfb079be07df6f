//! The long-poll detector (`Builder::long_poll_threshold`,
//! `Builder::on_long_poll`, `LongPoll`, `RuntimeMetrics::long_poll_count`)
//! and the poll-time histograms (`RuntimeMetrics::poll_time_histogram`,
//! `mean_poll_time`).
//!
//! A long poll is made by blocking it on a latch that the test releases
//! only after the callback reported it: no sleep synchronises anything,
//! and no assertion depends on the machine's speed (the thresholds are
//! lower bounds the test itself makes true).

mod util;

use fiber_runtime::{Builder, LongPoll, LongPollKind, Runtime, fiber, task};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use util::{EXPECTED_PANIC, Flavor, Latch, TIMEOUT, ms, run_with_timeout, wait_until};

/// A builder of `flavor`.
fn builder(flavor: Flavor) -> Builder {
    match flavor {
        Flavor::CurrentThread => Builder::new_current_thread(),
        Flavor::MultiThread(n) => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    }
}

/// A runtime of `flavor` whose long polls (past `threshold`) come out of
/// the returned channel.
fn detecting(flavor: Flavor, threshold: Duration) -> (Arc<Runtime>, mpsc::Receiver<LongPoll>) {
    let (tx, rx) = mpsc::channel();
    let rt = builder(flavor)
        .long_poll_threshold(threshold)
        .on_long_poll(move |p| {
            let _ = tx.send(p);
        })
        .build()
        .unwrap();
    (Arc::new(rt), rx)
}

#[track_caller]
fn next_report(rx: &mpsc::Receiver<LongPoll>) -> LongPoll {
    rx.recv_timeout(TIMEOUT)
        .expect("timed out waiting for a long-poll report")
}

/// Runs `f` in `rt.block_on` on a thread of its own (on a current-thread
/// runtime that thread drives the tasks, so the test's thread stays free
/// to wait for reports and release latches).
fn drive<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let rt = rt.clone();
    std::thread::spawn(move || rt.block_on(f))
}

#[track_caller]
fn join<T>(t: std::thread::JoinHandle<T>) -> T {
    wait_until("the driving thread finished", || t.is_finished());
    t.join().expect("the driving thread panicked")
}

/// What the spawner learnt of the task it spawned: id and spawn line.
type Spawned = (task::Id, u32);

fn long_task_is_reported_once_with_its_name_id_and_location(flavor: Flavor) {
    let (rt, reports) = detecting(flavor, ms(20));
    let latch = Latch::new();
    let (spawned_tx, spawned) = mpsc::channel::<Spawned>();
    let l = latch.clone();
    let driver = drive(&rt, async move {
        let blocker = async move { l.wait() };
        let b = task::Builder::new().name("stuck-task");
        let (h, line) = (b.spawn(blocker).unwrap(), line!());
        spawned_tx.send((h.id(), line)).unwrap();
        h.await.unwrap();
    });
    let (id, line) = spawned.recv_timeout(TIMEOUT).unwrap();
    let r = next_report(&reports);
    assert_eq!(r.kind(), LongPollKind::Task);
    assert_eq!(r.task_id(), Some(id));
    assert_eq!(r.name(), Some("stuck-task"));
    let loc = r.location().expect("a task has a spawn location");
    assert_eq!((loc.file(), loc.line()), (file!(), line));
    assert!(r.elapsed() >= ms(20), "{r:?}");
    assert_eq!(r.threshold(), ms(20));
    assert!(r.worker() < flavor.workers());
    // The multi-thread flavor hands the stuck worker off (on by default);
    // the current-thread flavor has no hand-off.
    assert_eq!(
        r.handed_off(),
        matches!(flavor, Flavor::MultiThread(_)),
        "{r:?}"
    );
    let line_text = r.to_string();
    for part in [
        format!("task {id}"),
        "\"stuck-task\"".to_string(),
        format!("{}:{line}", file!()),
        format!("worker {}", r.worker()),
    ] {
        assert!(line_text.contains(&part), "{part:?} not in {line_text:?}");
    }
    // Counted before the callback ran.
    assert_eq!(rt.metrics().long_poll_count(), 1);
    latch.release();
    join(driver);
    // Every report the monitor makes is delivered by the time the drop
    // (which joins it) returns: still exactly one.
    drop(Arc::into_inner(rt).expect("the only handle"));
    assert_eq!(reports.try_iter().count(), 0, "a second report");
}

#[test]
fn long_task_is_reported_once_with_its_name_id_and_location_on_every_flavor() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("long task on {flavor:?}"), move || {
            long_task_is_reported_once_with_its_name_id_and_location(flavor)
        });
    }
}

fn long_fiber_run_between_suspensions_is_reported(flavor: Flavor) {
    let (rt, reports) = detecting(flavor, ms(20));
    let latch = Latch::new();
    let (spawned_tx, spawned) = mpsc::channel::<Spawned>();
    let l = latch.clone();
    let driver = drive(&rt, async move {
        let body = move || {
            // Short runs first: suspensions the detector must not report.
            for _ in 0..100 {
                fiber::yield_now();
            }
            l.wait(); // a std blocking call: one long run
            // ... which ends by suspending here: the second report's
            // backtrace shows this function.
            suspends_after_the_long_run();
            7
        };
        let b = fiber::Builder::new().name("stuck-fiber");
        let (h, line) = (b.spawn(body).unwrap(), line!());
        spawned_tx.send((h.id(), line)).unwrap();
        h.await.unwrap()
    });
    let (id, line) = spawned.recv_timeout(TIMEOUT).unwrap();
    let r = next_report(&reports);
    assert_eq!(r.kind(), LongPollKind::Fiber);
    assert_eq!(r.task_id(), Some(id));
    assert_eq!(r.name(), Some("stuck-fiber"));
    let loc = r.location().unwrap();
    assert_eq!((loc.file(), loc.line()), (file!(), line));
    assert!(r.elapsed() >= ms(20));
    assert!(
        r.to_string()
            .contains(&format!("fiber {id} \"stuck-fiber\"")),
        "{r}"
    );
    assert!(!r.ended() && r.backtrace().is_none(), "{r:?}");
    latch.release();
    // The second report: the run ended, walked where it suspended.
    let end = next_report(&reports);
    assert!(end.ended(), "{end:?}");
    assert_eq!(end.task_id(), Some(id));
    assert!(end.elapsed() >= r.elapsed(), "{end:?} after {r:?}");
    let frames = end.backtrace().expect("a backtrace of where it suspended");
    assert!(
        frames
            .iter()
            .any(|f| f.function().ends_with("suspends_after_the_long_run")),
        "{end}"
    );
    assert!(
        end.to_string().contains("suspends_after_the_long_run"),
        "{end}"
    );
    assert_eq!(join(driver), 7);
    drop(Arc::into_inner(rt).unwrap());
    assert_eq!(reports.try_iter().count(), 0, "a third report");
}

/// Where the stuck fiber suspends once its long run is over.
#[inline(never)]
fn suspends_after_the_long_run() {
    fiber::yield_now();
    std::hint::black_box(());
}

#[test]
fn long_fiber_run_between_suspensions_is_reported_on_every_flavor() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("long fiber on {flavor:?}"), move || {
            long_fiber_run_between_suspensions_is_reported(flavor)
        });
    }
}

#[test]
fn a_long_block_on_future_of_a_current_thread_runtime_is_reported() {
    run_with_timeout("long block_on future", || {
        let (rt, reports) = detecting(Flavor::CurrentThread, ms(20));
        let latch = Latch::new();
        let l = latch.clone();
        let driver = drive(&rt, async move { l.wait() });
        let r = next_report(&reports);
        assert_eq!(r.kind(), LongPollKind::BlockOn);
        assert_eq!((r.task_id(), r.name(), r.location()), (None, None, None));
        assert_eq!(r.worker(), 0);
        assert!(r.to_string().contains("block_on future"), "{r}");
        latch.release();
        join(driver);
        drop(Arc::into_inner(rt).unwrap());
        assert_eq!(reports.try_iter().count(), 0);
    });
}

fn short_polls_are_never_reported(flavor: Flavor) {
    // Polls far shorter than 10 s, however slow the machine.
    let (rt, reports) = detecting(flavor, Duration::from_secs(10));
    let t = drive(&rt, async {
        let mut hs = Vec::new();
        for _ in 0..8 {
            hs.push(fiber_runtime::spawn(async {
                for _ in 0..2000 {
                    fiber_runtime::yield_now().await;
                }
            }));
            hs.push(fiber_runtime::fiber::spawn(|| {
                for _ in 0..500 {
                    fiber::yield_now();
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    join(t);
    // A task: a poll per yield, and the last one; a fiber: the same.
    let m = settled_metrics(&rt, 8 * 2001 + 8 * 501);
    assert_eq!(m.long_poll_count(), 0);
    drop(Arc::into_inner(rt).unwrap());
    assert_eq!(reports.try_iter().count(), 0);
}

#[test]
fn short_polls_are_never_reported_on_every_flavor() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("short polls on {flavor:?}"), move || {
            short_polls_are_never_reported(flavor)
        });
    }
}

/// A worker parked in the driver (waiting for a timer), or a
/// current-thread runtime nobody drives, is not in a poll: however long
/// the monitor watches, nothing is reported. (The sleeps give the monitor
/// time to look, about 20 checks each; they synchronise nothing, and a
/// slow machine only makes the test look for less long.)
#[test]
fn idle_workers_are_never_reported() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("idle workers on {flavor:?}"), move || {
            let (rt, reports) = detecting(flavor, ms(20));
            rt.block_on(async {
                fiber_runtime::spawn(async {}).await.unwrap();
                fiber_runtime::time::sleep(ms(100)).await;
            });
            // Nobody drives a current-thread runtime now.
            std::thread::sleep(ms(100));
            assert_eq!(rt.metrics().long_poll_count(), 0);
            drop(Arc::into_inner(rt).unwrap());
            assert_eq!(reports.try_iter().count(), 0);
        });
    }
}

#[test]
fn a_panicking_callback_kills_neither_the_monitor_nor_the_runtime() {
    util::silence_expected_panics(&[]);
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("panicking callback on {flavor:?}"), move || {
            let calls = Arc::new(AtomicUsize::new(0));
            let (tx, reports) = mpsc::channel();
            let c = calls.clone();
            let rt = Arc::new(
                builder(flavor)
                    .long_poll_threshold(ms(20))
                    .on_long_poll(move |p| {
                        let n = c.fetch_add(1, SeqCst);
                        let _ = tx.send(p);
                        if n == 0 {
                            panic!("{EXPECTED_PANIC}: in on_long_poll");
                        }
                    })
                    .build()
                    .unwrap(),
            );
            for round in 0..2 {
                let latch = Latch::new();
                let l = latch.clone();
                let t = drive(&rt, async move {
                    fiber_runtime::spawn(async move { l.wait() }).await.unwrap();
                });
                next_report(&reports);
                latch.release();
                join(t);
                assert_eq!(calls.load(SeqCst), round + 1);
            }
            // The runtime still runs tasks.
            let five = rt.block_on(async { fiber_runtime::spawn(async { 5 }).await });
            assert_eq!(five.unwrap(), 5);
            assert_eq!(rt.metrics().long_poll_count(), 2);
            drop(Arc::into_inner(rt).unwrap());
            assert_eq!(calls.load(SeqCst), 2);
        });
    }
}

#[test]
fn long_poll_count_matches_the_callback_calls() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("count on {flavor:?}"), move || {
            let (rt, reports) = detecting(flavor, ms(10));
            for n in 1..=3u64 {
                let latch = Latch::new();
                let l = latch.clone();
                let t = drive(&rt, async move {
                    fiber_runtime::spawn(async move { l.wait() }).await.unwrap();
                });
                next_report(&reports);
                assert_eq!(rt.metrics().long_poll_count(), n);
                latch.release();
                join(t);
            }
            drop(Arc::into_inner(rt).unwrap());
            assert_eq!(reports.try_iter().count(), 0);
        });
    }
}

/// With the detector off nothing is reported or counted. Two runtimes
/// block a poll side by side, one watched and one not; the watched one's
/// report shows its monitor had time to look: the other's, also running
/// (its histograms are on), looked as long and said nothing.
#[test]
fn threshold_off_reports_nothing() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("detector off on {flavor:?}"), move || {
            let (on, reports) = detecting(flavor, ms(20));
            let (tx, silent) = mpsc::channel::<LongPoll>();
            let off = Arc::new(
                builder(flavor)
                    .long_poll_threshold(None)
                    .on_long_poll(move |p| {
                        let _ = tx.send(p);
                    })
                    .build()
                    .unwrap(),
            );
            let latch = Latch::new();
            let (l1, l2) = (latch.clone(), latch.clone());
            let t_off = drive(&off, async move {
                fiber_runtime::spawn(async move { l1.wait() })
                    .await
                    .unwrap();
            });
            let t_on = drive(&on, async move {
                fiber_runtime::spawn(async move { l2.wait() })
                    .await
                    .unwrap();
            });
            next_report(&reports);
            latch.release();
            join(t_on);
            join(t_off);
            assert_eq!(off.metrics().long_poll_count(), 0);
            drop(Arc::into_inner(off).unwrap());
            assert_eq!(silent.try_iter().count(), 0);
        });
    }
}

/// After the drop joined the monitor, its entry leaves `/proc/self/task`
/// a moment later: the kernel wakes the joiner (clearing the thread id)
/// before it unlists the exiting thread, so a count right after the join
/// can still see it (CI saw 1 once). Waits, bounded, for the entry to go.
fn gone(flavor: impl std::fmt::Debug) {
    wait_until(
        &format!("{flavor:?}: the joined monitor leaves /proc"),
        || monitor_threads() == 0,
    );
}

fn monitor_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        // (`comm` holds the first 15 bytes of the name.)
        .filter(|name| name.trim_end() == "fiber-runtime-m")
        .count()
}

/// One monitor thread per runtime, joined by the drop; none at all with
/// both the detector and the histograms off. (In a child process, where
/// no other test's runtime runs.)
#[test]
fn the_monitor_thread_exists_only_when_needed_and_is_joined() {
    util::in_child(
        "the_monitor_thread_exists_only_when_needed_and_is_joined",
        "FIBER_RUNTIME_MONITOR_CHILD",
        || {
            for flavor in Flavor::ALL {
                assert_eq!(monitor_threads(), 0);
                // (A new thread names itself: wait for it.)
                let rt = builder(flavor).build().unwrap();
                wait_until("the monitor thread (defaults)", || monitor_threads() == 1);
                drop(rt);
                gone(flavor);
                let rt = builder(flavor).long_poll_threshold(None).build().unwrap();
                wait_until("the monitor thread (histograms on)", || {
                    monitor_threads() == 1
                });
                drop(rt);
                gone(flavor);
                let rt = builder(flavor)
                    .disable_poll_time_histogram()
                    .build()
                    .unwrap();
                wait_until("the monitor thread (detector on)", || {
                    monitor_threads() == 1
                });
                drop(rt);
                gone(flavor);
                let rt = builder(flavor)
                    .long_poll_threshold(None)
                    .disable_poll_time_histogram()
                    .build()
                    .unwrap();
                assert_eq!(monitor_threads(), 0, "{flavor:?}: both off");
                rt.block_on(async { fiber_runtime::spawn(async {}).await.unwrap() });
                drop(rt);
            }
        },
    );
}

/// Dropped while a poll is blocked: the drop stops and joins the monitor
/// at once (the test sees its thread go), then waits for the poll like any
/// shutdown, and returns once the poll does. (Child process: no other
/// test's monitor thread runs there.)
#[test]
fn runtime_dropped_while_a_poll_is_blocked() {
    util::in_child(
        "runtime_dropped_while_a_poll_is_blocked",
        "FIBER_RUNTIME_MONITOR_DROP_CHILD",
        || {
            for flavor in Flavor::ALL {
                let (tx, reports) = mpsc::channel();
                let rt = builder(flavor)
                    .long_poll_threshold(ms(10))
                    .on_long_poll(move |p| {
                        let _ = tx.send(p);
                    })
                    .build()
                    .unwrap();
                let latch = Latch::new();
                let l = latch.clone();
                let blocked = async move {
                    l.wait();
                };
                // A current-thread runtime's task runs on the thread in
                // `block_on`: another thread, through a handle, so that the
                // runtime itself can be dropped from here.
                let driver = match flavor {
                    Flavor::CurrentThread => {
                        let handle = rt.handle().clone();
                        Some(std::thread::spawn(move || {
                            let h = handle.spawn(blocked);
                            // Cancelled by the shutdown, or done.
                            let _ = handle.block_on(h);
                        }))
                    }
                    Flavor::MultiThread(_) => {
                        drop(rt.spawn(blocked));
                        None
                    }
                };
                next_report(&reports);
                // (Waited for, not asserted: a replacement thread the
                // monitor just started for the hand-off carries the
                // monitor's name until it has set its own.)
                wait_until("one monitor thread", || monitor_threads() == 1);
                let dropper = std::thread::spawn(move || drop(rt));
                wait_until("the drop joined the monitor", || monitor_threads() == 0);
                assert!(
                    !dropper.is_finished(),
                    "{flavor:?}: the drop did not wait for the poll"
                );
                latch.release();
                wait_until("the drop returned", || dropper.is_finished());
                dropper.join().unwrap();
                if let Some(d) = driver {
                    join(d);
                }
                assert_eq!(reports.try_iter().count(), 0);
            }
        },
    );
}

/// The `on_long_poll` callback blocks while the runtime is dropped: the
/// drop waits for it (it runs on the monitor thread, which the drop
/// joins) and returns once it does, with the blocked poll released.
#[test]
fn runtime_dropped_while_the_callback_runs() {
    for flavor in [Flavor::MultiThread(1), Flavor::MultiThread(2)] {
        run_with_timeout(
            &format!("drop during the callback on {flavor:?}"),
            move || {
                let in_callback = Latch::new();
                let leave_callback = Latch::new();
                let (inside, leave) = (in_callback.clone(), leave_callback.clone());
                let rt = builder(flavor)
                    .long_poll_threshold(ms(10))
                    .on_long_poll(move |_| {
                        inside.release();
                        leave.wait();
                    })
                    .build()
                    .unwrap();
                let poll = Latch::new();
                let p = poll.clone();
                let h = rt.spawn(async move { p.wait() });
                in_callback.wait();
                let dropping = Arc::new(Mutex::new(false));
                let d = dropping.clone();
                let dropper = std::thread::spawn(move || {
                    *d.lock().unwrap() = true;
                    drop(rt);
                });
                wait_until("the dropper started", || *dropping.lock().unwrap());
                poll.release();
                leave_callback.release();
                wait_until("the drop returned", || dropper.is_finished());
                dropper.join().unwrap();
                drop(h);
            },
        );
    }
}

/// Runtimes dropped at arbitrary points while their monitor checks every
/// millisecond and reports polls of a few milliseconds: no hang, no
/// crash, and each drop is prompt (drops that waited out their monitor's
/// 250 ms sleep would not fit 200 of them in the test's bound).
#[test]
fn runtimes_dropped_while_the_monitor_is_busy() {
    run_with_timeout("monitor stress", || {
        let reports = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let flavor = Flavor::ALL[i % 3];
            let r = reports.clone();
            let rt = builder(flavor)
                .long_poll_threshold(ms(1))
                .on_long_poll(move |p| {
                    r.fetch_add(1, SeqCst);
                    let _ = p.to_string();
                })
                .build()
                .unwrap();
            let _g = rt.enter();
            for _ in 0..4 {
                // Polls of 2 ms, busy: long enough to be marked and
                // sometimes reported.
                drop(fiber_runtime::spawn(async {
                    let start = Instant::now();
                    while start.elapsed() < ms(2) {
                        std::hint::spin_loop();
                    }
                }));
            }
            if flavor == Flavor::CurrentThread {
                rt.block_on(fiber_runtime::yield_now());
            }
            drop(_g);
            drop(rt);
        }
        // An idle runtime built with a 1 s threshold (a 250 ms check
        // interval) drops at once: 200 of them in the bound.
        for _ in 0..200 {
            drop(
                Builder::new_current_thread()
                    .long_poll_threshold(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            );
        }
    });
}

// ---------------------------------------------------------------------------
// Histograms
// ---------------------------------------------------------------------------

/// Waits until the workers, between them, have published exactly `polls`
/// polls (the test knows how many it caused: true once each worker parked
/// and published), and then checks that every worker's histogram accounts
/// for exactly its own polls.
#[track_caller]
fn settled_metrics(rt: &Runtime, polls: u64) -> fiber_runtime::RuntimeMetrics {
    let total = |m: &fiber_runtime::RuntimeMetrics| -> u64 {
        (0..m.num_workers()).map(|i| m.worker_poll_count(i)).sum()
    };
    let deadline = Instant::now() + TIMEOUT;
    let m = loop {
        let m = rt.metrics();
        if total(&m) >= polls {
            break m;
        }
        assert!(Instant::now() < deadline, "never saw {polls} polls: {m:?}");
        std::thread::yield_now();
    };
    assert_eq!(total(&m), polls, "more polls than the test made: {m:?}");
    for i in 0..m.num_workers() {
        let h = m.poll_time_histogram(i).unwrap();
        assert_eq!(h.total(), m.worker_poll_count(i), "worker {i}: {h:?}");
    }
    m
}

fn histograms_sum_to_poll_counts(flavor: Flavor, sample_every: u64) {
    let rt = builder(flavor)
        .poll_time_sample_interval(sample_every)
        // A poll stalled 100 ms would start a replacement thread, whose
        // polls are no worker's: `settled_metrics` would never see them.
        .worker_handoff(false)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut hs = Vec::new();
        for i in 0..50 {
            hs.push(fiber_runtime::spawn(async move {
                for _ in 0..i {
                    fiber_runtime::yield_now().await;
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    // Each task is polled once per yield and once more.
    let m = settled_metrics(&rt, (0..50).map(|i| i + 1).sum());
    for i in 0..m.num_workers() {
        let h = m.poll_time_histogram(i).unwrap();
        assert_eq!(h.num_buckets(), 24);
        if m.worker_poll_count(i) > 0 {
            // Its first poll was timed.
            assert!(m.mean_poll_time(i).is_some());
        }
    }
}

#[test]
fn histograms_sum_to_poll_counts_on_every_flavor() {
    for flavor in Flavor::ALL {
        for every in [1, 7, 256] {
            run_with_timeout(&format!("sums on {flavor:?}, 1 in {every}"), move || {
                histograms_sum_to_poll_counts(flavor, every)
            });
        }
    }
}

/// A poll busy for 20 ms, timed (every poll is, here), lands in a bucket
/// whose durations reach past 20 ms.
#[test]
fn a_20_ms_poll_lands_in_a_bucket_reaching_20_ms() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("20 ms poll on {flavor:?}"), move || {
            let rt = builder(flavor)
                .poll_time_sample_interval(1)
                .long_poll_threshold(None)
                .build()
                .unwrap();
            rt.block_on(async {
                fiber_runtime::spawn(async {
                    let start = Instant::now();
                    while start.elapsed() < ms(20) {
                        std::hint::spin_loop();
                    }
                })
                .await
                .unwrap();
            });
            let m = settled_metrics(&rt, 1);
            let long: u64 = (0..m.num_workers())
                .map(|i| {
                    let h = m.poll_time_histogram(i).unwrap();
                    h.buckets()
                        .filter(|(range, _)| range.end > ms(20))
                        .map(|(_, n)| n)
                        .sum::<u64>()
                })
                .sum();
            assert_eq!(long, 1, "{m:?}");
        });
    }
}

/// A long poll is timed even when it is not one of the sampled ones (one
/// in 10^9 here): from the monitor's first sighting, so at least as long
/// as the report said it had run when the test released it.
#[test]
fn an_unsampled_long_poll_lands_in_a_long_enough_bucket() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("unsampled long poll on {flavor:?}"), move || {
            let (tx, reports) = mpsc::channel();
            let rt = Arc::new(
                builder(flavor)
                    .poll_time_sample_interval(1_000_000_000)
                    // (Polls a replacement thread runs are not counted per
                    // worker: keep them all on the workers.)
                    .worker_handoff(false)
                    .long_poll_threshold(ms(20))
                    .on_long_poll(move |p| {
                        let _ = tx.send(p);
                    })
                    .build()
                    .unwrap(),
            );
            let latch = Latch::new();
            let l = latch.clone();
            // Warm up: the first poll of every worker is sampled.
            let warm = drive(&rt, async {
                for _ in 0..20 {
                    fiber_runtime::spawn(async {}).await.unwrap();
                }
            });
            join(warm);
            let t = drive(&rt, async move {
                fiber_runtime::spawn(async move { l.wait() }).await.unwrap();
            });
            let r = next_report(&reports);
            latch.release();
            join(t);
            // Short polls after the long one: they must not be counted in
            // its bucket (the long poll stands for itself only).
            let after = drive(&rt, async {
                for _ in 0..30 {
                    fiber_runtime::spawn(async {}).await.unwrap();
                }
            });
            join(after);
            let m = settled_metrics(&rt, 51);
            let h = m.poll_time_histogram(r.worker()).unwrap();
            let at_least = h.bucket_index(r.elapsed());
            let long: u64 = (at_least..h.num_buckets()).map(|b| h.bucket_count(b)).sum();
            assert_eq!(long, 1, "reported {:?}, histogram {h:?}", r.elapsed());
        });
    }
}

#[test]
fn histograms_off_have_no_histogram_and_no_mean() {
    for flavor in Flavor::ALL {
        let rt = builder(flavor)
            .disable_poll_time_histogram()
            .build()
            .unwrap();
        rt.block_on(async { fiber_runtime::spawn(async {}).await.unwrap() });
        let m = rt.metrics();
        for i in 0..m.num_workers() {
            assert!(m.poll_time_histogram(i).is_none());
            assert!(m.mean_poll_time(i).is_none());
        }
    }
}

#[test]
fn bad_detector_and_histogram_settings_are_refused_by_build() {
    type Set = Box<dyn Fn(&mut Builder) -> &mut Builder>;
    let cases: Vec<(Set, &str)> = vec![
        (
            Box::new(|b| b.long_poll_threshold(Duration::ZERO)),
            "long_poll_threshold",
        ),
        (
            Box::new(|b| b.poll_time_histogram(0, ms(1))),
            "number of buckets",
        ),
        (
            Box::new(|b| b.poll_time_histogram(65, ms(1))),
            "number of buckets",
        ),
        (
            Box::new(|b| b.poll_time_histogram(8, Duration::ZERO)),
            "first_bucket_end",
        ),
        (
            Box::new(|b| b.poll_time_histogram(8, Duration::MAX)),
            "first_bucket_end",
        ),
        (
            Box::new(|b| b.poll_time_sample_interval(0)),
            "poll_time_sample_interval",
        ),
    ];
    for flavor in Flavor::ALL {
        for (set, what) in &cases {
            let mut b = builder(flavor);
            let err = set(&mut b).build().unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
        // The edges that are fine.
        let rt = builder(flavor)
            .poll_time_histogram(1, Duration::from_nanos(1))
            .poll_time_sample_interval(1)
            .long_poll_threshold(Duration::from_nanos(1))
            .on_long_poll(|_| {})
            .build()
            .unwrap();
        rt.block_on(async { fiber_runtime::spawn(async {}).await.unwrap() });
        let m = settled_metrics(&rt, 1);
        assert_eq!(m.poll_time_histogram(0).unwrap().num_buckets(), 1);
        let rt = builder(flavor)
            .poll_time_histogram(64, Duration::from_nanos(1))
            .build()
            .unwrap();
        assert_eq!(
            rt.metrics().poll_time_histogram(0).unwrap().num_buckets(),
            64
        );
    }
}
