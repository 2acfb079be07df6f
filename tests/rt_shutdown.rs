//! Runtime shutdown: dropping a runtime cancels every unfinished task
//! (its future dropped exactly once, never polled again), handles and
//! wakers that outlive it stay safe, and `shutdown_timeout` bounds the
//! wait for blocking closures.

mod util;

use fiber_runtime::{Builder, Handle, JoinHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;
use util::{
    Counters, Flavor, TIMEOUT, drive_until, run_with_timeout, run_with_timeout_in, tracked,
};

/// Pending forever; stashes a clone of its waker at each poll.
struct Stash {
    wakers: Arc<Mutex<Vec<Waker>>>,
}

impl Future for Stash {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.wakers.lock().unwrap().push(cx.waker().clone());
        Poll::Pending
    }
}

type Wakers = Arc<Mutex<Vec<Waker>>>;

/// Spawns `n` tracked `Stash` tasks and drives `rt` until each was polled.
fn spawn_stashed(
    rt: &fiber_runtime::Runtime,
    n: usize,
) -> (Arc<Counters>, Wakers, Vec<JoinHandle<()>>) {
    let counters = Counters::new();
    let wakers = Wakers::default();
    let handles = (0..n)
        .map(|_| {
            rt.spawn(tracked(
                &counters,
                Stash {
                    wakers: wakers.clone(),
                },
            ))
        })
        .collect();
    drive_until(rt, "every task was polled", || counters.polls() >= n);
    (counters, wakers, handles)
}

#[test]
fn dropping_the_runtime_drops_pending_futures_exactly_once() {
    const N: usize = 50;
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (counters, wakers, handles) = spawn_stashed(&rt, N);
        assert_eq!(counters.drops(), 0, "{flavor:?}");
        let polls = counters.polls();
        drop(rt);
        assert_eq!(counters.drops(), N, "{flavor:?}: every future dropped once");
        // Waking them now must not poll them.
        for w in wakers.lock().unwrap().iter() {
            w.wake_by_ref();
        }
        assert_eq!(counters.polls(), polls, "{flavor:?}: polled after drop");
        for h in handles {
            assert!(h.is_finished());
            let err = h.join().unwrap_err();
            assert!(err.is_cancelled(), "{flavor:?}: {err}");
        }
        assert_eq!(counters.drops(), N, "{flavor:?}");
        assert_eq!(counters.polls(), polls, "{flavor:?}");
    }
}

#[test]
fn dropping_the_runtime_drops_never_polled_futures() {
    // Nobody drives a current-thread runtime outside block_on: the tasks
    // are still queued when it is dropped.
    let rt = util::current_thread();
    let counters = Counters::new();
    let handles: Vec<_> = (0..20)
        .map(|_| rt.spawn(tracked(&counters, async {})))
        .collect();
    drop(rt);
    assert_eq!(counters.polls(), 0);
    assert_eq!(counters.drops(), 20);
    for h in handles {
        assert!(h.join().unwrap_err().is_cancelled());
    }
}

#[test]
fn tasks_spawned_through_a_handle_after_drop_are_cancelled() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        drop(rt);
        let counters = Counters::new();
        let h = handle.spawn(tracked(&counters, async { 1 }));
        assert!(h.is_finished(), "{flavor:?}: cancelled at once");
        assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        assert_eq!(counters.polls(), 0, "{flavor:?}");
        assert_eq!(counters.drops(), 1, "{flavor:?}");

        // Awaited from another executor.
        let h = handle.spawn(tracked(&counters, async { 2 }));
        let err = futures::executor::block_on(h).unwrap_err();
        assert!(err.is_cancelled(), "{flavor:?}: {err}");
        assert_eq!(counters.drops(), 2, "{flavor:?}");
        assert_eq!(counters.polls(), 0, "{flavor:?}");

        // Blocking closures are not run.
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let h = handle.spawn_blocking(move || r.store(true, SeqCst));
        assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        assert!(!ran.load(SeqCst), "{flavor:?}");
    }
}

#[test]
fn spawning_inside_handle_block_on_after_drop_is_cancelled() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        drop(rt);
        let res = run_with_timeout("block_on after drop", move || {
            handle.block_on(async { Handle::current().spawn(async { 1 }).await })
        });
        assert!(res.unwrap_err().is_cancelled(), "{flavor:?}");
    }
}

#[test]
fn wakers_outliving_the_runtime_can_be_woken_and_dropped() {
    const N: usize = 30;
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (counters, wakers, handles) = spawn_stashed(&rt, N);
        drop(rt);
        let polls = counters.polls();
        let wakers = std::mem::take(&mut *wakers.lock().unwrap());
        // Keep some join handles past the wakers, drop others first.
        let (early, late): (Vec<_>, Vec<_>) = handles
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        drop(early);
        let mut threads = Vec::new();
        for (i, w) in wakers.into_iter().enumerate() {
            match i % 4 {
                0 => w.wake(),
                1 => {
                    w.wake_by_ref();
                    drop(w.clone());
                    drop(w);
                }
                2 => threads.push(thread::spawn(move || {
                    let w2 = w.clone();
                    w.wake();
                    w2.wake_by_ref();
                })),
                _ => drop(w),
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        for (_, h) in late {
            assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        }
        assert_eq!(counters.polls(), polls, "{flavor:?}: polled after drop");
        assert_eq!(counters.drops(), N, "{flavor:?}");
    }
}

#[test]
fn waking_while_the_runtime_drops() {
    const N: usize = 40;
    for _ in 0..20 {
        let rt = util::multi_thread(2);
        let (counters, wakers, handles) = spawn_stashed(&rt, N);
        drop(handles);
        let snapshot: Vec<Waker> = wakers.lock().unwrap().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let waker_thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    for w in &snapshot {
                        w.wake_by_ref();
                    }
                }
                snapshot
            })
        };
        drop(rt);
        assert_eq!(counters.drops(), N);
        let polls = counters.polls();
        stop.store(true, SeqCst);
        let snapshot = waker_thread.join().unwrap();
        for w in snapshot {
            w.wake();
        }
        assert_eq!(counters.polls(), polls, "polled after the runtime dropped");
        assert_eq!(counters.drops(), N);
    }
}

#[test]
fn repeated_shutdown_with_busy_tasks() {
    // Tasks that never stop yielding keep every worker busy while the
    // runtime is dropped.
    for i in 0..50 {
        let flavor = Flavor::ALL[i % Flavor::ALL.len()];
        let rt = flavor.build();
        let counters = Counters::new();
        for _ in 0..10 {
            drop(rt.spawn(tracked(&counters, async {
                loop {
                    fiber_runtime::yield_now().await;
                }
            })));
        }
        drive_until(&rt, "the busy tasks run", || counters.polls() >= 10);
        drop(rt);
        assert_eq!(counters.drops(), 10, "{flavor:?}");
    }
}

#[test]
fn futures_spawning_from_their_drop_during_shutdown() {
    // A future whose destructor spawns another task (through a handle it
    // holds): that task is cancelled, never polled, dropped once.
    struct SpawnOnDrop {
        handle: Handle,
        inner: Arc<Counters>,
        slot: Arc<Mutex<Vec<JoinHandle<()>>>>,
    }
    impl Future for SpawnOnDrop {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let h = self.handle.spawn(tracked(&self.inner, async {}));
            self.slot.lock().unwrap().push(h);
        }
    }
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let outer = Counters::new();
        let inner = Counters::new();
        let slot = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..10 {
            drop(rt.spawn(tracked(
                &outer,
                SpawnOnDrop {
                    handle: rt.handle().clone(),
                    inner: inner.clone(),
                    slot: slot.clone(),
                },
            )));
        }
        drive_until(&rt, "every task was polled", || outer.polls() >= 10);
        drop(rt);
        assert_eq!(outer.drops(), 10, "{flavor:?}");
        assert_eq!(inner.drops(), 10, "{flavor:?}");
        assert_eq!(inner.polls(), 0, "{flavor:?}");
        for h in slot.lock().unwrap().drain(..) {
            assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        }
    }
}

#[test]
fn a_future_panicking_in_drop_does_not_break_shutdown() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("{}: in drop", util::EXPECTED_PANIC);
        }
    }
    util::silence_expected_panics(&[]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let bomb = PanicOnDrop;
        let bad = rt.spawn(async move {
            let _bomb = bomb;
            std::future::pending::<()>().await
        });
        let good: Vec<_> = (0..5)
            .map(|_| rt.spawn(tracked(&counters, std::future::pending::<()>())))
            .collect();
        drive_until(&rt, "the tasks were polled", || counters.polls() >= 5);
        drop(rt);
        assert_eq!(counters.drops(), 5, "{flavor:?}");
        assert!(bad.join().is_err(), "{flavor:?}");
        for h in good {
            assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        }
    }
}

#[test]
fn shutdown_timeout_returns_while_a_blocking_closure_is_stuck() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (finished_tx, finished_rx) = mpsc::channel();
        let stuck = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            finished_tx.send(()).unwrap();
            "released"
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let counters = Counters::new();
        let pending = rt.spawn(tracked(&counters, std::future::pending::<()>()));
        drive_until(&rt, "the task was polled", || counters.polls() == 1);

        run_with_timeout("shutdown_timeout with a stuck closure", move || {
            rt.shutdown_timeout(Duration::from_millis(10));
        });
        // Tasks are cancelled as on drop.
        assert_eq!(counters.drops(), 1, "{flavor:?}");
        assert!(pending.join().unwrap_err().is_cancelled(), "{flavor:?}");
        // The closure is still blocked; let it finish on its own.
        assert!(finished_rx.try_recv().is_err(), "{flavor:?}");
        release_tx.send(()).unwrap();
        finished_rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(stuck.join().unwrap(), "released", "{flavor:?}");
    }
}

#[test]
fn shutdown_timeout_cancels_queued_blocking_closures() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let stuck = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    started_rx.recv_timeout(TIMEOUT).unwrap();
    // The only blocking thread is busy: this one waits in the queue.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let queued = rt.spawn_blocking(move || r.store(true, SeqCst));
    run_with_timeout("shutdown_timeout", move || {
        rt.shutdown_timeout(Duration::from_millis(10))
    });
    assert!(queued.join().unwrap_err().is_cancelled());
    release_tx.send(()).unwrap();
    stuck.join().unwrap();
    assert!(!ran.load(SeqCst), "a queued closure ran after shutdown");
}

#[test]
fn shutdown_timeout_with_nothing_blocking_cancels_tasks() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (counters, _wakers, handles) = spawn_stashed(&rt, 10);
        rt.shutdown_timeout(Duration::from_secs(5));
        assert_eq!(counters.drops(), 10, "{flavor:?}");
        for h in handles {
            assert!(h.join().unwrap_err().is_cancelled());
        }
    }
}

#[test]
fn drop_waits_for_running_blocking_closures() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let h = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            f.store(true, SeqCst);
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let (dropped_tx, dropped_rx) = mpsc::channel();
        let f = finished.clone();
        let dropper = thread::spawn(move || {
            drop(rt);
            // The closure must have returned before the drop did.
            dropped_tx.send(f.load(SeqCst)).unwrap();
        });
        release_tx.send(()).unwrap();
        let finished_before_drop_returned = dropped_rx.recv_timeout(TIMEOUT).unwrap();
        assert!(finished_before_drop_returned, "{flavor:?}");
        dropper.join().unwrap();
        h.join().unwrap();
    }
}

#[test]
fn num_alive_tasks_goes_to_zero_on_drop() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        let (_counters, _wakers, handles) = spawn_stashed(&rt, 25);
        assert_eq!(handle.metrics().num_alive_tasks(), 25, "{flavor:?}");
        drop(rt);
        assert_eq!(handle.metrics().num_alive_tasks(), 0, "{flavor:?}");
        drop(handles);
        assert_eq!(handle.metrics().num_alive_tasks(), 0, "{flavor:?}");
    }
}

#[test]
fn dropping_the_runtime_inside_its_own_task() {
    for workers in [1, 2] {
        let rt = util::multi_thread(workers);
        let handle = rt.handle().clone();
        let (counters, _wakers, pending) = spawn_stashed(&rt, 10);
        let dropper = handle.spawn(async move {
            drop(rt);
            "dropped"
        });
        // The task that drops the runtime may finish or be cancelled; the
        // others are cancelled, each future dropped once.
        let _ = run_with_timeout("the dropping task", move || dropper.join());
        assert_eq!(counters.drops(), 10);
        for h in pending {
            assert!(h.join().unwrap_err().is_cancelled());
        }
        assert!(handle.spawn(async {}).join().unwrap_err().is_cancelled());
    }
}

/// Like the worker case above, a runtime dropped by one of its own
/// blocking closures cannot wait for that closure's thread.
#[test]
fn dropping_the_runtime_inside_a_blocking_closure() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handle = rt.handle().clone();
        let (counters, _wakers, pending) = spawn_stashed(&rt, 10);
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let closure = handle.spawn_blocking(move || {
            drop(rt);
            d.fetch_add(1, SeqCst);
        });
        // Dropping normally takes microseconds here; do not wait 30 s for
        // the deadlock this test exposes.
        run_with_timeout_in(
            Duration::from_secs(5),
            "dropping the runtime in spawn_blocking (the pool waits for its own thread?)",
            move || {
                let _ = closure.join();
            },
        );
        assert_eq!(dropped.load(SeqCst), 1, "{flavor:?}");
        assert_eq!(counters.drops(), 10, "{flavor:?}");
        for h in pending {
            assert!(h.join().unwrap_err().is_cancelled(), "{flavor:?}");
        }
    }
}

#[test]
fn dropping_the_runtime_while_another_thread_blocks_on_it() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let task = rt.spawn(tracked(&counters, std::future::pending::<()>()));
        let handle = rt.handle().clone();
        let (entered_tx, entered_rx) = mpsc::channel();
        // Another thread blocks on the task (on the current-thread
        // flavor, it drives the scheduler meanwhile).
        let blocker = thread::spawn(move || {
            handle.block_on(async move {
                entered_tx.send(()).unwrap();
                task.await
            })
        });
        entered_rx.recv_timeout(TIMEOUT).unwrap();
        drive_until(&rt, "the task was polled", || counters.polls() == 1);
        drop(rt);
        assert_eq!(counters.drops(), 1, "{flavor:?}");
        let res = run_with_timeout("the blocked thread returns", move || {
            blocker.join().unwrap()
        });
        assert!(res.unwrap_err().is_cancelled(), "{flavor:?}");
    }
}

/// Issue 9, bug 8: dropping a current-thread runtime while another thread
/// drove it from `Handle::block_on` hung: shutdown never woke that thread,
/// and waited for the driver lock it held across `epoll_wait`. Now the
/// drop wakes it and takes the core back; the other thread's own future
/// then sees its socket or timer fail, and returns.
#[test]
fn dropping_a_current_thread_runtime_driven_from_another_thread() {
    util::silence_expected_panics(&["has shut down"]);
    // Accepting: the accept fails once the runtime is gone.
    {
        let rt = util::current_thread();
        let listener = {
            let _g = rt.enter();
            fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap()
        };
        let handle = rt.handle().clone();
        let (tx, rx) = mpsc::channel();
        let other = thread::spawn(move || {
            handle.block_on(async move {
                tx.send(()).unwrap();
                listener.accept().await.map(|_| ())
            })
        });
        rx.recv().unwrap();
        run_with_timeout("dropping the runtime driven elsewhere", move || drop(rt));
        let res = run_with_timeout("the other thread's accept", move || other.join().unwrap());
        assert!(res.is_err(), "the accept succeeded");
    }
    // Sleeping: the sleep reports the shutdown (a documented panic).
    {
        let rt = util::current_thread();
        let handle = rt.handle().clone();
        let (tx, rx) = mpsc::channel();
        let other = thread::spawn(move || {
            handle.block_on(async move {
                tx.send(()).unwrap();
                fiber_runtime::time::sleep(Duration::from_secs(3600)).await
            })
        });
        rx.recv().unwrap();
        run_with_timeout("dropping the runtime driven elsewhere", move || drop(rt));
        let res = run_with_timeout("the other thread's sleep", move || other.join());
        let msg = util::panic_message(&*res.expect_err("the sleep completed")).unwrap();
        assert!(msg.contains("has shut down"), "{msg}");
    }
}

/// The thread driving a current-thread runtime that another thread drops
/// unwinds the fibers it started before it hands the core back (they can
/// run nowhere else): their destructors run, on their own thread.
#[test]
fn the_driving_thread_unwinds_its_fibers_when_another_drops_the_runtime() {
    util::silence_expected_panics(&["has shut down"]);
    let rt = util::current_thread();
    let handle = rt.handle().clone();
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let d = drops.clone();
    let other = thread::spawn(move || {
        let me = thread::current().id();
        handle.block_on(async move {
            let _f = fiber_runtime::fiber::spawn(move || {
                let _token = util::DropToken::new(0, &d);
                let _on_me = OnThread(me);
                tx.send(()).unwrap();
                fiber_runtime::fiber::wait(std::future::pending::<()>());
            });
            // Ends (with the documented panic) once the runtime is gone.
            fiber_runtime::time::sleep(Duration::from_secs(3600)).await
        })
    });
    rx.recv().unwrap();
    run_with_timeout("dropping the runtime driven elsewhere", move || drop(rt));
    assert_eq!(drops.load(SeqCst), 1, "the fiber was not unwound");
    let res = run_with_timeout("the other thread's sleep", move || other.join());
    assert!(res.is_err(), "the sleep completed");

    /// Asserts, when dropped, that it is dropped on the thread it names.
    struct OnThread(thread::ThreadId);
    impl Drop for OnThread {
        fn drop(&mut self) {
            assert_eq!(thread::current().id(), self.0, "unwound on another thread");
        }
    }
}
