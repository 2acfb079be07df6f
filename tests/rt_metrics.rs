//! `RuntimeMetrics`: task counts, queue depth, per-worker counters and the
//! blocking pool size.
//!
//! Per-worker counters are published in batches (when a worker parks, and
//! every so many polls), so on the multi-thread flavor they are checked
//! with "eventually" waits; the current-thread flavor publishes them when
//! `block_on` returns, which is a deterministic point. Tests that hold
//! workers or count per-worker values build their runtime without worker
//! hand-off: a replacement thread would run the held tasks, and its
//! counts are no worker's.

mod util;

use fiber_runtime::{Builder, Runtime, RuntimeMetrics};
use futures::channel::oneshot;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;
use util::{Flavor, Latch, TIMEOUT, drive_until, plug_workers, wait_until};

fn total(m: &RuntimeMetrics, f: impl Fn(&RuntimeMetrics, usize) -> u64) -> u64 {
    (0..m.num_workers()).map(|i| f(m, i)).sum()
}

fn total_polls(rt: &Runtime) -> u64 {
    total(&rt.metrics(), RuntimeMetrics::worker_poll_count)
}

#[test]
fn a_new_runtime_has_no_tasks() {
    for flavor in Flavor::ALL {
        let m = flavor.build().metrics();
        assert_eq!(m.num_alive_tasks(), 0);
        assert_eq!(m.num_alive_fibers(), 0);
        assert_eq!(m.global_queue_depth(), 0);
        assert_eq!(m.num_blocking_threads(), 0);
        assert_eq!(m.num_workers(), flavor.workers());
    }
}

#[test]
fn num_alive_tasks_counts_pending_tasks_until_they_finish() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (senders, handles): (Vec<_>, Vec<_>) = (0..10u32)
            .map(|i| {
                let (tx, rx) = oneshot::channel::<u32>();
                (tx, rt.spawn(async move { rx.await.unwrap() + i }))
            })
            .unzip();
        // Counted from the moment they are spawned.
        assert_eq!(rt.metrics().num_alive_tasks(), 10, "{flavor:?}");
        for tx in senders {
            tx.send(1).unwrap();
        }
        let sum = rt.block_on(async {
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 55);
        drive_until(&rt, "no task is alive", || {
            rt.metrics().num_alive_tasks() == 0
        });
    }
}

/// Fibers count in both numbers from their spawn (queued or started, from
/// a task or from outside, on any owned-list shard), and leave both when
/// they finish or are aborted.
#[test]
fn num_alive_fibers_counts_fibers_until_they_finish() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _guard = rt.enter();
        let (senders, handles): (Vec<_>, Vec<_>) = (0..12u32)
            .map(|i| {
                let (tx, rx) = oneshot::channel::<u32>();
                let h = fiber_runtime::fiber::spawn(move || {
                    fiber_runtime::fiber::wait(rx).ok().map(|v| v + i)
                });
                (tx, h)
            })
            .unzip();
        let (_keep, task) = oneshot::channel::<()>();
        let task = rt.spawn(async move {
            let _ = task.await;
        });
        assert_eq!(rt.metrics().num_alive_fibers(), 12, "{flavor:?}");
        assert_eq!(rt.metrics().num_alive_tasks(), 13, "{flavor:?}");
        let mut senders = senders.into_iter();
        let mut handles = handles.into_iter();
        // Half finish, one is aborted, the rest stay suspended.
        for _ in 0..6 {
            senders.next().unwrap().send(1).unwrap();
        }
        let done: Vec<_> = handles.by_ref().take(6).collect();
        let aborted = handles.next().unwrap();
        aborted.abort();
        let joined = rt.block_on(fiber_runtime::time::timeout(TIMEOUT, async {
            for (i, h) in (0..).zip(done) {
                assert_eq!(h.await.unwrap(), Some(1 + i));
            }
            assert!(aborted.await.unwrap_err().is_cancelled());
        }));
        joined.expect("the finished and the aborted fibers were not joined in time");
        drive_until(&rt, "five fibers and the task are alive", || {
            let m = rt.metrics();
            m.num_alive_fibers() == 5 && m.num_alive_tasks() == 6
        });
        task.abort();
        drop(senders);
        let joined = rt.block_on(fiber_runtime::time::timeout(TIMEOUT, async {
            for h in handles {
                // Their senders are gone: each fiber's `wait` gets `Canceled`.
                assert_eq!(h.await.unwrap(), None);
            }
        }));
        joined.expect("the fibers whose senders were dropped were not joined in time");
        drive_until(&rt, "nothing is alive", || {
            let m = rt.metrics();
            m.num_alive_fibers() == 0 && m.num_alive_tasks() == 0
        });
    }
}

#[test]
fn current_thread_num_alive_tasks_is_zero_when_block_on_returns() {
    let rt = util::current_thread();
    let handles: Vec<_> = (0..10).map(|i| rt.spawn(async move { i })).collect();
    assert_eq!(rt.metrics().num_alive_tasks(), 10);
    rt.block_on(async {
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().num_alive_tasks(), 0);
}

/// The `RuntimeMetrics` example: once a task's `JoinHandle` returned, the
/// task no longer counts as alive.
#[test]
fn num_alive_tasks_is_zero_once_the_join_handle_returned() {
    let rt = util::multi_thread(2);
    for i in 0..2000 {
        rt.block_on(rt.spawn(async {})).unwrap();
        let alive = rt.metrics().num_alive_tasks();
        assert_eq!(
            alive, 0,
            "iteration {i}: a joined task still counts as alive"
        );
    }
}

/// The `num_alive_tasks` example: an aborted task no longer counts once its
/// `JoinHandle` returned.
#[test]
fn num_alive_tasks_is_zero_once_an_aborted_task_was_joined() {
    let rt = util::multi_thread(2);
    for i in 0..2000 {
        let h = rt.spawn(std::future::pending::<()>());
        h.abort();
        assert!(rt.block_on(h).unwrap_err().is_cancelled());
        let alive = rt.metrics().num_alive_tasks();
        assert_eq!(
            alive, 0,
            "iteration {i}: an aborted, joined task still counts as alive"
        );
    }
}

#[test]
fn num_alive_tasks_drops_to_zero_after_abort() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handles: Vec<_> = (0..10)
            .map(|_| rt.spawn(std::future::pending::<()>()))
            .collect();
        assert_eq!(rt.metrics().num_alive_tasks(), 10);
        for h in &handles {
            h.abort();
        }
        for h in handles {
            assert!(rt.block_on(h).unwrap_err().is_cancelled());
        }
        drive_until(&rt, "no task is alive", || {
            rt.metrics().num_alive_tasks() == 0
        });
    }
}

#[test]
fn blocking_closures_are_not_alive_tasks() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let latch = Latch::new();
        let (started_tx, started_rx) = mpsc::channel();
        let l = latch.clone();
        let h = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            l.wait();
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(rt.metrics().num_alive_tasks(), 0, "{flavor:?}");
        assert_eq!(rt.metrics().num_blocking_threads(), 1, "{flavor:?}");
        latch.release();
        rt.block_on(h).unwrap();
    }
}

#[test]
fn a_metrics_value_is_a_snapshot() {
    let rt = util::current_thread();
    let before = rt.metrics();
    let h = rt.spawn(async {});
    assert_eq!(before.num_alive_tasks(), 0);
    assert_eq!(rt.metrics().num_alive_tasks(), 1);
    rt.block_on(h).unwrap();
    assert_eq!(before.worker_poll_count(0), 0);
}

#[test]
fn current_thread_global_queue_depth_counts_tasks_spawned_from_outside() {
    let rt = util::current_thread();
    let handles: Vec<_> = (0..5).map(|_| rt.spawn(async {})).collect();
    // Nobody drives the runtime: they all wait in the injection queue.
    assert_eq!(rt.metrics().global_queue_depth(), 5);
    rt.block_on(async {
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().global_queue_depth(), 0);
}

#[test]
fn multi_thread_global_queue_depth_counts_tasks_no_worker_took() {
    let rt = util::multi_thread_without_handoff(2);
    let plug = plug_workers(&rt, 2);
    let handles: Vec<_> = (0..5).map(|_| rt.spawn(async {})).collect();
    assert_eq!(rt.metrics().global_queue_depth(), 5);
    plug.release();
    for h in handles {
        h.join().unwrap();
    }
    wait_until("the injection queue is empty", || {
        rt.metrics().global_queue_depth() == 0
    });
}

#[test]
fn current_thread_poll_count_is_published_when_block_on_returns() {
    let rt = util::current_thread();
    assert_eq!(rt.metrics().worker_poll_count(0), 0);
    rt.block_on(async {
        let handles: Vec<_> = (0..10)
            .map(|i| fiber_runtime::spawn(async move { i }))
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    // Ten tasks, one poll each.
    assert_eq!(rt.metrics().worker_poll_count(0), 10);
    rt.block_on(async {
        let handles: Vec<_> = (0..5).map(|_| fiber_runtime::spawn(async {})).collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().worker_poll_count(0), 15);
}

#[test]
fn multi_thread_poll_count_eventually_counts_every_poll() {
    for workers in [1, 2, 4] {
        let rt = util::multi_thread_without_handoff(workers);
        assert_eq!(total_polls(&rt), 0);
        let handles: Vec<_> = (0..100).map(|_| rt.spawn(async {})).collect();
        for h in handles {
            h.join().unwrap();
        }
        // Published when the workers park (they will: nothing is left).
        wait_until("100 polls are published", || total_polls(&rt) >= 100);
        assert_eq!(total_polls(&rt), 100, "{workers} workers");
    }
}

#[test]
fn idle_workers_park() {
    let rt = util::multi_thread(3);
    wait_until("every worker parked once", || {
        let m = rt.metrics();
        (0..3).all(|i| m.worker_park_count(i) >= 1)
    });
}

#[test]
fn current_thread_parks_when_block_on_waits() {
    let rt = Arc::new(util::current_thread());
    let (tx, rx) = oneshot::channel();
    let sender = {
        let rt = rt.clone();
        thread::spawn(move || {
            // Published right before parking.
            wait_until("the driver parked", || {
                rt.metrics().worker_park_count(0) >= 1
            });
            tx.send(5).unwrap();
        })
    };
    assert_eq!(rt.block_on(rx).unwrap(), 5);
    sender.join().unwrap();
    assert!(rt.metrics().worker_park_count(0) >= 1);
}

#[test]
fn an_idle_worker_steals_from_a_blocked_one() {
    let rt = util::multi_thread_without_handoff(2);
    let steals_before = total(&rt.metrics(), RuntimeMetrics::worker_steal_count);
    let result = rt.block_on(rt.spawn(async {
        let me = thread::current().id();
        let (tx, rx) = mpsc::channel();
        // `first` goes to this worker's LIFO slot; spawning `second` moves
        // it to the local run queue, where only a thief can reach it while
        // this worker is blocked below.
        let first = fiber_runtime::spawn(async move {
            tx.send(thread::current().id()).unwrap();
        });
        let second = fiber_runtime::spawn(async {});
        let ran_on = rx.recv_timeout(TIMEOUT);
        drop((first, second));
        (me, ran_on)
    }));
    let (me, ran_on) = result.unwrap();
    let ran_on = ran_on.expect("the other worker should steal the queued task");
    assert_ne!(ran_on, me);
    wait_until("the steal is published", || {
        total(&rt.metrics(), RuntimeMetrics::worker_steal_count) > steals_before
    });
}

#[test]
fn counters_never_decrease() {
    let rt = util::multi_thread_without_handoff(2);
    let snapshot = |rt: &Runtime| {
        let m = rt.metrics();
        (0..2)
            .map(|i| {
                (
                    m.worker_poll_count(i),
                    m.worker_steal_count(i),
                    m.worker_park_count(i),
                    m.worker_busy_duration(i),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut prev = snapshot(&rt);
    for round in 0..20 {
        let handles: Vec<_> = (0..50)
            .map(|_| rt.spawn(async { fiber_runtime::yield_now().await }))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let now = snapshot(&rt);
        for (a, b) in prev.iter().zip(&now) {
            assert!(
                b.0 >= a.0 && b.1 >= a.1 && b.2 >= a.2 && b.3 >= a.3,
                "round {round}"
            );
        }
        prev = now;
    }
    wait_until("the polls are published", || {
        total_polls(&rt) >= 20 * 50 * 2
    });
    let m = rt.metrics();
    let busy = m.worker_busy_duration(0) + m.worker_busy_duration(1);
    assert!(
        !busy.is_zero(),
        "workers that polled 2000 times were never busy"
    );
}

#[test]
fn num_blocking_threads_stays_within_max_blocking_threads() {
    const MAX: usize = 3;
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(MAX)
        .build()
        .unwrap();
    let latch = Latch::new();
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let job = |latch: Latch, running: Arc<AtomicUsize>, max_running: Arc<AtomicUsize>| {
        move || {
            let now = running.fetch_add(1, SeqCst) + 1;
            max_running.fetch_max(now, SeqCst);
            latch.wait();
            running.fetch_sub(1, SeqCst);
        }
    };
    // MAX closures that block: the pool grows to MAX threads.
    let mut handles: Vec<_> = (0..MAX)
        .map(|_| rt.spawn_blocking(job(latch.clone(), running.clone(), max_running.clone())))
        .collect();
    wait_until("MAX closures run at once", || running.load(SeqCst) == MAX);
    assert_eq!(rt.metrics().num_blocking_threads(), MAX);
    // More work queues up instead of starting threads.
    for _ in 0..20 {
        handles.push(rt.spawn_blocking(job(latch.clone(), running.clone(), max_running.clone())));
        assert!(rt.metrics().num_blocking_threads() <= MAX);
    }
    assert_eq!(running.load(SeqCst), MAX);
    latch.release();
    for h in handles {
        h.join().unwrap();
        assert!(rt.metrics().num_blocking_threads() <= MAX);
    }
    assert_eq!(max_running.load(SeqCst), MAX);
}

#[test]
fn num_blocking_threads_under_a_burst() {
    const MAX: usize = 2;
    let rt = Builder::new_current_thread()
        .max_blocking_threads(MAX)
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let done = done.clone();
            rt.spawn_blocking(move || {
                done.fetch_add(1, SeqCst);
            })
        })
        .collect();
    let mut max_seen = 0;
    rt.block_on(async {
        for h in handles {
            max_seen = max_seen.max(
                fiber_runtime::Handle::current()
                    .metrics()
                    .num_blocking_threads(),
            );
            h.await.unwrap();
        }
    });
    assert_eq!(done.load(SeqCst), 200);
    assert!(
        max_seen <= MAX,
        "{max_seen} blocking threads with a cap of {MAX}"
    );
    assert!(rt.metrics().num_blocking_threads() <= MAX);
}

#[test]
#[should_panic(expected = "index out of bounds: the len is 2 but the index is 2")]
fn worker_index_out_of_range_panics() {
    let rt = util::multi_thread(2);
    let _ = rt.metrics().worker_poll_count(2);
}

// ---------------------------------------------------------------------------
// Runtime-wide counters: spawns, remote schedules, forced yields, I/O events
// ---------------------------------------------------------------------------

#[test]
fn spawned_tasks_count_counts_tasks_and_fibers_but_not_block_on_or_blocking_closures() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        assert_eq!(rt.metrics().spawned_tasks_count(), 0, "{flavor:?}");
        // `block_on` is not a task; a blocking closure runs on the pool.
        rt.block_on(async {});
        rt.block_on(rt.spawn_blocking(|| ())).unwrap();
        assert_eq!(rt.metrics().spawned_tasks_count(), 0, "{flavor:?}");
        // One task spawning 10 tasks and 3 fibers: 14.
        rt.block_on(rt.spawn(async {
            let tasks: Vec<_> = (0..10)
                .map(|i| fiber_runtime::spawn(async move { i }))
                .collect();
            let fibers: Vec<_> = (0..3)
                .map(|i| fiber_runtime::fiber::spawn(move || i))
                .collect();
            for h in tasks {
                h.await.unwrap();
            }
            for h in fibers {
                h.await.unwrap();
            }
        }))
        .unwrap();
        assert_eq!(rt.metrics().spawned_tasks_count(), 14, "{flavor:?}");
        // Spawns from a plain thread count the same.
        let handle = rt.handle().clone();
        let t = thread::spawn(move || {
            for _ in 0..5 {
                drop(handle.spawn(async {}));
            }
        });
        t.join().unwrap();
        assert_eq!(rt.metrics().spawned_tasks_count(), 19, "{flavor:?}");
    }
}

/// Breaking it: a spawn refused at shutdown is not counted.
#[test]
fn spawned_tasks_count_does_not_count_spawns_refused_at_shutdown() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        rt.block_on(rt.spawn(async {})).unwrap();
        let before = handle.metrics().spawned_tasks_count();
        drop(rt);
        let h = handle.spawn(async {});
        assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        assert_eq!(handle.metrics().spawned_tasks_count(), before, "{flavor:?}");
    }
}

#[test]
fn remote_schedule_count_counts_spawns_from_a_plain_thread() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let before = rt.metrics().remote_schedule_count();
        let handle = rt.handle().clone();
        let t = thread::spawn(move || (0..5).map(|_| handle.spawn(async {})).collect::<Vec<_>>());
        let handles = t.join().unwrap();
        assert!(
            rt.metrics().remote_schedule_count() >= before + 5,
            "{flavor:?}"
        );
        rt.block_on(async {
            for h in handles {
                h.await.unwrap();
            }
        });
    }
}

/// Spawns and wakes on a worker go to its own queue, not the injector:
/// only the first spawn, from the main thread, is remote.
#[test]
fn remote_schedule_count_does_not_count_spawns_from_a_worker() {
    for flavor in [Flavor::MultiThread(1), Flavor::MultiThread(2)] {
        let rt = flavor.build();
        assert_eq!(rt.metrics().remote_schedule_count(), 0, "{flavor:?}");
        rt.block_on(rt.spawn(async {
            let handles: Vec<_> = (0..10).map(|_| fiber_runtime::spawn(async {})).collect();
            for h in handles {
                h.await.unwrap();
            }
        }))
        .unwrap();
        assert_eq!(rt.metrics().remote_schedule_count(), 1, "{flavor:?}");
    }
    // Current-thread: tasks spawned while the core is driven go to its
    // local queue.
    let rt = util::current_thread();
    rt.block_on(async {
        let handles: Vec<_> = (0..10).map(|_| fiber_runtime::spawn(async {})).collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().remote_schedule_count(), 0);
}

/// A task receiving `n` ready messages in a row: the budget (128 ready
/// operations per poll) forces it to yield every 128 receives.
async fn receive_ready_messages(n: usize) {
    let (tx, mut rx) = fiber_runtime::sync::mpsc::unbounded_channel();
    for i in 0..n {
        tx.send(i).unwrap();
    }
    for i in 0..n {
        assert_eq!(rx.recv().await, Some(i));
    }
}

/// Makes every worker of a current-thread or one-worker runtime publish
/// its counters after what ran so far: the current-thread flavor
/// publishes when `block_on` returns; the one worker of a multi-thread
/// runtime, when it parks after running one more task.
fn publish(rt: &Runtime, flavor: Flavor) {
    match flavor {
        Flavor::CurrentThread => rt.block_on(async {}),
        Flavor::MultiThread(1) => {
            let parks = rt.metrics().worker_park_count(0);
            rt.block_on(rt.spawn(async {})).unwrap();
            wait_until("the worker parks again", || {
                rt.metrics().worker_park_count(0) > parks
            });
        }
        Flavor::MultiThread(n) => panic!("cannot make {n} workers publish"),
    }
}

#[test]
fn budget_forced_yield_count_counts_each_poll_the_budget_cut_short() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        // 100 ready receives fit in one budget.
        rt.block_on(rt.spawn(receive_ready_messages(100))).unwrap();
        // 300: two forced yields (after 128 and 256), once each however
        // many resources refuse in the same poll.
        rt.block_on(rt.spawn(receive_ready_messages(300))).unwrap();
        wait_until("the forced yields are published", || {
            rt.metrics().budget_forced_yield_count() >= 2
        });
        if flavor != Flavor::MultiThread(2) {
            publish(&rt, flavor);
            assert_eq!(rt.metrics().budget_forced_yield_count(), 2, "{flavor:?}");
        }
    }
}

#[test]
fn budget_forced_yield_count_is_zero_for_short_polls() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = flavor.build();
        rt.block_on(rt.spawn(receive_ready_messages(128))).unwrap();
        publish(&rt, flavor);
        assert!(rt.metrics().worker_poll_count(0) >= 1, "{flavor:?}");
        assert_eq!(rt.metrics().budget_forced_yield_count(), 0, "{flavor:?}");
    }
}

#[test]
fn io_ready_count_grows_when_a_socket_becomes_readable() {
    use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        // Tasks and timers deliver no I/O events.
        rt.block_on(rt.spawn(async {
            fiber_runtime::time::sleep(std::time::Duration::from_millis(1)).await;
        }))
        .unwrap();
        assert_eq!(rt.metrics().io_ready_count(), 0, "{flavor:?}");
        let (mut a, mut b) = rt
            .block_on(async { fiber_runtime::net::UnixStream::pair() })
            .unwrap();
        let reader = rt.spawn(async move {
            let mut buf = [0u8; 5];
            b.read_exact(&mut buf).await.unwrap();
            buf
        });
        // The reader is waiting (or about to): only an event can wake it.
        let before = rt.metrics().io_ready_count();
        rt.block_on(async { a.write_all(b"hello").await.unwrap() });
        assert_eq!(rt.block_on(reader).unwrap(), *b"hello");
        assert!(rt.metrics().io_ready_count() > before, "{flavor:?}");
    }
}

// ---------------------------------------------------------------------------
// Local queue depth
// ---------------------------------------------------------------------------

/// A task on the only worker spawns 5 tasks and blocks: the first four
/// go to the run queue, the last stays in the LIFO slot (not counted).
#[test]
fn multi_thread_worker_local_queue_depth_counts_queued_tasks() {
    let rt = util::multi_thread_without_handoff(1);
    let latch = Latch::new();
    let l = latch.clone();
    let (queued_tx, queued_rx) = mpsc::channel();
    let blocker = rt.spawn(async move {
        let handles: Vec<_> = (0..5).map(|_| fiber_runtime::spawn(async {})).collect();
        queued_tx.send(()).unwrap();
        l.wait();
        for h in handles {
            h.await.unwrap();
        }
    });
    queued_rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(rt.metrics().worker_local_queue_depth(0), 4);
    latch.release();
    rt.block_on(blocker).unwrap();
    wait_until("the local queue is empty", || {
        rt.metrics().worker_local_queue_depth(0) == 0
    });
}

/// On two workers the queued tasks are either still queued or stolen:
/// the depths never exceed what was queued, and end at 0.
#[test]
fn multi_thread_worker_local_queue_depth_drains_to_zero() {
    let rt = util::multi_thread_without_handoff(2);
    let latch = Latch::new();
    let l = latch.clone();
    let (queued_tx, queued_rx) = mpsc::channel();
    let blocker = rt.spawn(async move {
        let handles: Vec<_> = (0..50).map(|_| fiber_runtime::spawn(async {})).collect();
        queued_tx.send(()).unwrap();
        l.wait();
        for h in handles {
            h.await.unwrap();
        }
    });
    queued_rx.recv_timeout(TIMEOUT).unwrap();
    let m = rt.metrics();
    assert!(m.worker_local_queue_depth(0) + m.worker_local_queue_depth(1) <= 49);
    latch.release();
    rt.block_on(blocker).unwrap();
    wait_until("the local queues are empty", || {
        let m = rt.metrics();
        m.worker_local_queue_depth(0) == 0 && m.worker_local_queue_depth(1) == 0
    });
}

#[test]
fn current_thread_worker_local_queue_depth_is_published_when_block_on_returns() {
    let rt = util::current_thread();
    assert_eq!(rt.metrics().worker_local_queue_depth(0), 0);
    let handles = rt.block_on(async {
        (0..5)
            .map(|_| fiber_runtime::spawn(async {}))
            .collect::<Vec<_>>()
    });
    assert_eq!(rt.metrics().worker_local_queue_depth(0), 5);
    rt.block_on(async {
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().worker_local_queue_depth(0), 0);
}

#[test]
#[should_panic(expected = "index out of bounds: the len is 1 but the index is 1")]
fn worker_local_queue_depth_out_of_range_panics() {
    let rt = util::current_thread();
    let _ = rt.metrics().worker_local_queue_depth(1);
}

// ---------------------------------------------------------------------------
// Poll times and long polls (the detector itself: rt_long_poll.rs)
// ---------------------------------------------------------------------------

#[test]
fn poll_time_histograms_are_on_by_default_with_24_buckets_from_100_ns() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let m = rt.metrics();
        assert_eq!(m.long_poll_count(), 0);
        for i in 0..m.num_workers() {
            let h = m
                .poll_time_histogram(i)
                .expect("histograms are on by default");
            assert_eq!(h.num_buckets(), 24);
            assert_eq!(
                h.bucket_range(0),
                std::time::Duration::ZERO..std::time::Duration::from_nanos(100)
            );
            assert_eq!(h.bucket_range(23).end, std::time::Duration::MAX);
            assert_eq!(h.total(), 0);
            assert_eq!(m.mean_poll_time(i), None, "nothing timed yet");
        }
    }
}

#[test]
fn current_thread_histogram_and_mean_are_published_when_block_on_returns() {
    let rt = util::current_thread();
    rt.block_on(async {
        for _ in 0..300 {
            fiber_runtime::spawn(fiber_runtime::yield_now())
                .await
                .unwrap();
        }
    });
    let m = rt.metrics();
    // 300 tasks, two polls each; none of them took a second.
    assert_eq!(m.worker_poll_count(0), 600);
    let h = m.poll_time_histogram(0).unwrap();
    assert_eq!(h.total(), 600);
    assert!(m.mean_poll_time(0).unwrap() < std::time::Duration::from_secs(1));
}

/// Bucket counts only grow: the polls not yet timed are given to a bucket
/// at each publication, never moved to another later.
#[test]
fn histogram_bucket_counts_never_decrease() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .poll_time_sample_interval(16)
        .build()
        .unwrap();
    let counts = |rt: &Runtime| {
        let m = rt.metrics();
        (0..2)
            .map(|i| {
                let h = m.poll_time_histogram(i).unwrap();
                (0..h.num_buckets())
                    .map(|b| h.bucket_count(b))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let mut prev = counts(&rt);
    for round in 0..20 {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                rt.spawn(async move {
                    if i % 7 == 0 {
                        // A few slower polls, for other buckets.
                        std::hint::black_box((0..10_000u64).sum::<u64>());
                    }
                    fiber_runtime::yield_now().await
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let now = counts(&rt);
        for (w, (a, b)) in prev.iter().zip(&now).enumerate() {
            for (bucket, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    y >= x,
                    "round {round}, worker {w}, bucket {bucket}: {x} -> {y}"
                );
            }
        }
        prev = now;
    }
}

#[test]
#[should_panic(expected = "worker index 2 out of range: the runtime has 2 worker(s)")]
fn poll_time_histogram_of_a_worker_out_of_range_panics() {
    let rt = util::multi_thread(2);
    let _ = rt.metrics().poll_time_histogram(2);
}

#[test]
#[should_panic(expected = "bucket index 24 out of range: the histogram has 24 bucket(s)")]
fn a_bucket_out_of_range_panics() {
    let rt = util::current_thread();
    let m = rt.metrics();
    let _ = m.poll_time_histogram(0).unwrap().bucket_count(24);
}
