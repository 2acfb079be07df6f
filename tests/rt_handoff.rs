//! Worker hand-off (`Builder::worker_handoff`): a worker stuck in one poll
//! hands its queues and the driver to a replacement thread, so timers,
//! I/O and new tasks go on; the stuck worker rejoins when its poll
//! returns and the replacement retires; fibers started on the stuck
//! worker stay there.
//!
//! Until the long-poll detector drives it, these tests declare a worker
//! stuck through the hidden hook `Handle::__worker_stuck`, which does what
//! the detector does. A poll is held stuck on a [`Latch`] the test
//! releases only after it has seen what must happen meanwhile: no sleeps
//! as synchronisation, no timing thresholds, every wait bounded.

mod util;

use fiber_runtime::io::AsyncReadExt;
use fiber_runtime::{Builder, Runtime, fiber, time};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread::{self, ThreadId};
use util::{
    Gate, Latch, TIMEOUT, current_thread, ms, multi_thread, plug_workers, run_with_timeout,
    wait_until,
};

/// A worker blocked in a poll of a task, until [`Stuck::release`].
struct Stuck {
    latch: Latch,
    /// The blocked worker's thread.
    thread: ThreadId,
    handle: fiber_runtime::JoinHandle<()>,
}

/// Spawns a task that blocks its worker on a latch (after `before`, run
/// in the task) and returns once it is blocked.
fn block_a_worker(rt: &Runtime, before: impl FnOnce() + Send + 'static) -> Stuck {
    let latch = Latch::new();
    let (tx, rx) = mpsc::channel();
    let handle = rt.spawn({
        let latch = latch.clone();
        async move {
            before();
            tx.send(thread::current().id()).unwrap();
            latch.wait();
        }
    });
    let thread = rx.recv_timeout(TIMEOUT).expect("the blocking task started");
    Stuck {
        latch,
        thread,
        handle,
    }
}

impl Stuck {
    fn release(self) {
        self.latch.release();
        self.handle.join().expect("the blocking task");
    }
}

/// Runs `fut` on `rt` as a task and waits (from this plain thread, with
/// a bound) for what it sends back.
fn run_task<T: Send + 'static>(
    rt: &Runtime,
    what: &str,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    drop(rt.spawn(async move {
        let _ = tx.send(fut.await);
    }));
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn wait_for_no_replacement(rt: &Runtime) {
    wait_until("the replacement thread retired", || {
        rt.metrics().num_replacement_threads() == 0
    });
}

#[test]
fn timers_io_and_new_tasks_go_on_while_the_only_worker_is_stuck() {
    let rt = multi_thread(1);
    let stuck = block_a_worker(&rt, || {});
    assert!(rt.handle().__worker_stuck(0));
    let m = rt.metrics();
    assert_eq!(m.handoff_count(), 1);
    assert_eq!(m.num_replacement_threads(), 1);

    // A 20 ms timer fires, on another thread than the stuck worker's.
    let on = run_task(&rt, "a 20 ms sleep", async {
        time::sleep(ms(20)).await;
        thread::current().id()
    });
    assert_ne!(on, stuck.thread);
    // So does a `timeout` around a future that never completes.
    let timed_out = run_task(&rt, "a timeout", async {
        time::timeout(ms(5), std::future::pending::<()>())
            .await
            .is_err()
    });
    assert!(timed_out);
    // The story: a `timeout` in `block_on` fires on time although
    // the only worker is blocked (the replacement turns the driver).
    let elapsed = rt.block_on(async { time::timeout(ms(20), std::future::pending::<()>()).await });
    assert!(elapsed.is_err());
    // A task spawned now runs.
    let on = run_task(&rt, "a fresh task", async { thread::current().id() });
    assert_ne!(on, stuck.thread);
    let name = run_task(&rt, "a thread name", async {
        thread::current().name().map(String::from)
    });
    assert!(
        name.as_deref().is_some_and(|n| n.contains("-handoff-")),
        "the replacement thread is named after the workers: {name:?}"
    );

    // I/O readiness: a read completes when the test writes.
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel();
    drop(rt.spawn(async move {
        let mut a = fiber_runtime::net::UnixStream::from_std(a).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0; 5];
        a.read_exact(&mut buf).await.unwrap();
        tx.send(()).unwrap();
        buf
    }));
    rx.recv_timeout(TIMEOUT).expect("the reader registered");
    b.write_all(b"hello").unwrap();
    rx.recv_timeout(TIMEOUT)
        .expect("the read completed while the worker is stuck");

    let worker = stuck.thread;
    stuck.release();
    wait_for_no_replacement(&rt);
    // The rejoined worker runs everything again.
    let on = run_task(&rt, "a task after the rejoin", async {
        time::sleep(ms(1)).await;
        thread::current().id()
    });
    assert_eq!(on, worker);
}

/// The thread of the only worker of `rt` (with no hand-off running).
fn rt_worker_thread(rt: &Runtime) -> ThreadId {
    run_task(rt, "the worker's thread", async { thread::current().id() })
}

#[test]
fn the_task_the_stuck_poll_spawned_last_moves_to_the_replacement() {
    // Spawned from the worker just before it blocks, the task sits in
    // the worker's LIFO slot, which no peer can steal from.
    let rt = multi_thread(1);
    let (tx, rx) = mpsc::channel();
    let handle = rt.handle().clone();
    let stuck = block_a_worker(&rt, move || {
        drop(handle.spawn(async move {
            tx.send(thread::current().id()).unwrap();
        }));
    });
    assert!(rt.handle().__worker_stuck(0));
    if fiber_runtime::Handle::__handoff_moves_lifo() {
        let on = rx
            .recv_timeout(TIMEOUT)
            .expect("the task in the LIFO slot ran while the worker is stuck");
        assert_ne!(on, stuck.thread);
        stuck.release();
    } else {
        // No heavy barrier (not Linux, or `membarrier` refused): it waits
        // for the stuck poll.
        stuck.release();
        assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), rt_worker_thread(&rt));
    }
    wait_for_no_replacement(&rt);
}

#[test]
fn tasks_the_stuck_poll_wakes_after_the_handoff_go_to_the_replacement() {
    let rt = multi_thread(1);
    let (cmd_tx, cmd_rx) = mpsc::channel::<mpsc::Sender<ThreadId>>();
    let (started_tx, started_rx) = mpsc::channel();
    let stuck = rt.spawn(async move {
        started_tx.send(thread::current().id()).unwrap();
        // Blocks the worker between commands; each one spawns a task.
        while let Ok(reply) = cmd_rx.recv() {
            drop(fiber_runtime::spawn(async move {
                reply.send(thread::current().id()).unwrap();
            }));
        }
    });
    let stuck_thread = started_rx.recv_timeout(TIMEOUT).unwrap();
    assert!(rt.handle().__worker_stuck(0));
    for _ in 0..3 {
        let (tx, rx) = mpsc::channel();
        cmd_tx.send(tx).unwrap();
        let on = rx
            .recv_timeout(TIMEOUT)
            .expect("a task spawned by the stuck poll ran");
        assert_ne!(on, stuck_thread);
    }
    drop(cmd_tx);
    stuck.join().unwrap();
    wait_for_no_replacement(&rt);
    assert_eq!(rt.metrics().handoff_count(), 1);
}

#[test]
fn a_fiber_started_on_the_stuck_worker_stays_there() {
    let rt = multi_thread(1);
    let gate = Gate::new();
    let released = Arc::new(AtomicBool::new(false));
    let fiber = rt.spawn({
        let (gate, released) = (gate.clone(), released.clone());
        async move {
            fiber::spawn(move || {
                let before = thread::current().id();
                fiber::wait(gate.wait());
                // Woken while the worker was stuck, it could only resume
                // once the stuck poll returned.
                assert!(released.load(SeqCst), "the fiber moved to another thread");
                (before, thread::current().id())
            })
            .await
            .unwrap()
        }
    });
    gate.wait_registrations(1);
    let stuck = block_a_worker(&rt, || {});
    assert!(rt.handle().__worker_stuck(0));
    assert!(gate.open(), "the fiber waits on the gate");
    // The replacement runs other work meanwhile.
    let replacement = run_task(&rt, "a task on the replacement", async {
        thread::current().id()
    });
    assert_ne!(replacement, stuck.thread);
    released.store(true, SeqCst);
    let stuck_thread = stuck.thread;
    stuck.release();
    let (before, after) = run_with_timeout("joining the fiber", move || fiber.join().unwrap());
    assert_eq!(before, stuck_thread);
    assert_eq!(after, stuck_thread);
    wait_for_no_replacement(&rt);
}

#[test]
fn a_replacement_that_started_a_fiber_retires_only_after_it_finished() {
    let rt = multi_thread(1);
    let stuck = block_a_worker(&rt, || {});
    assert!(rt.handle().__worker_stuck(0));
    let gate = Gate::new();
    // Not started yet when spawned: an ordinary task, which the
    // replacement takes and starts.
    let fiber = rt.spawn({
        let gate = gate.clone();
        async move {
            fiber::spawn(move || {
                let before = thread::current().id();
                fiber::wait(gate.wait());
                (before, thread::current().id())
            })
            .await
            .unwrap()
        }
    });
    gate.wait_registrations(1);
    let stuck_thread = stuck.thread;
    // The worker rejoins when its poll returns, and the replacement is
    // told to retire; it cannot leave its fiber behind.
    stuck.release();
    // Once retiring, the replacement takes no more tasks: wait until
    // the worker runs every one (a wait, not a timing assumption: it
    // ends however long the replacement takes to see the request).
    let mut in_a_row = 0;
    wait_until("the replacement takes no more tasks", || {
        let on = run_task(&rt, "a task after the release", async {
            thread::current().id()
        });
        in_a_row = if on == stuck_thread { in_a_row + 1 } else { 0 };
        in_a_row >= 20
    });
    assert_eq!(rt.metrics().num_replacement_threads(), 1);
    assert!(gate.open());
    let (before, after) = run_with_timeout("joining the fiber", move || fiber.join().unwrap());
    assert_ne!(before, stuck_thread, "the fiber started on the replacement");
    assert_eq!(after, before, "and resumed there");
    wait_for_no_replacement(&rt);
}

#[test]
fn the_cap_on_replacement_threads_is_respected() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .max_handoff_threads(1)
        // Only this test hands workers off: the detector, finding a plugged
        // worker after 100 ms, could take the one slot first.
        .long_poll_threshold(None)
        .build()
        .unwrap();
    let plug = plug_workers(&rt, 2);
    assert!(rt.handle().__worker_stuck(0));
    assert!(!rt.handle().__worker_stuck(1), "the cap is reached");
    // The same worker twice: one hand-off.
    assert!(rt.handle().__worker_stuck(0), "already handed off");
    assert!(!rt.handle().__worker_stuck(1));
    let m = rt.metrics();
    assert_eq!(m.handoff_count(), 1);
    assert_eq!(m.num_replacement_threads(), 1);
    run_task(&rt, "a task on the one replacement", async {});
    plug.release();
    wait_for_no_replacement(&rt);
    assert_eq!(rt.metrics().handoff_count(), 1);
}

#[test]
fn with_worker_handoff_off_nothing_happens() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .worker_handoff(false)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let handle = rt.handle().clone();
    let stuck = block_a_worker(&rt, move || {
        drop(handle.spawn(async move { tx.send(()).unwrap() }));
    });
    assert!(!rt.handle().__worker_stuck(0));
    let m = rt.metrics();
    assert_eq!(m.handoff_count(), 0);
    assert_eq!(m.num_replacement_threads(), 0);
    stuck.release();
    rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(rt.metrics().handoff_count(), 0);
}

#[test]
fn the_current_thread_flavor_has_no_handoff() {
    let rt = current_thread();
    assert!(!rt.handle().__worker_stuck(0));
    rt.block_on(async {});
    assert_eq!(rt.metrics().handoff_count(), 0);
    assert_eq!(rt.metrics().num_replacement_threads(), 0);
}

#[test]
fn out_of_range_and_idle_slots_are_left_alone() {
    let rt = multi_thread(1);
    // Slot 1 is the spare slot, with no thread in it; 7 does not exist.
    assert!(!rt.handle().__worker_stuck(1));
    assert!(!rt.handle().__worker_stuck(7));
    assert!(!rt.handle().__worker_stuck(usize::MAX));
    assert_eq!(rt.metrics().handoff_count(), 0);
    run_task(&rt, "a task", async {});
}

#[test]
fn bad_handoff_settings_are_refused() {
    let err = Builder::new_multi_thread()
        .max_handoff_threads(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("max_handoff_threads"), "{err}");
    let err = Builder::new_multi_thread()
        .max_handoff_threads(1 << 20)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("32767"), "{err}");
}

#[test]
fn a_replacement_stuck_in_turn_is_replaced() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_handoff_threads(2)
        .build()
        .unwrap();
    let first = block_a_worker(&rt, || {});
    assert!(rt.handle().__worker_stuck(0));
    // The replacement (slot 1) gets stuck too.
    let second = block_a_worker(&rt, || {});
    assert_ne!(second.thread, first.thread);
    assert!(rt.handle().__worker_stuck(1));
    assert_eq!(rt.metrics().num_replacement_threads(), 2);
    let on = run_task(&rt, "a task on the second replacement", async {
        time::sleep(ms(1)).await;
        thread::current().id()
    });
    assert!(on != first.thread && on != second.thread);
    // Released in either order, the chain unwinds.
    first.release();
    second.release();
    wait_for_no_replacement(&rt);
    assert_eq!(rt.metrics().handoff_count(), 2);
}

#[test]
fn dropping_the_runtime_while_a_worker_is_handed_off() {
    let rt = multi_thread(1);
    let stuck = block_a_worker(&rt, || {});
    assert!(rt.handle().__worker_stuck(0));
    // A task pending on the replacement, and a timer.
    let drops = Arc::new(AtomicUsize::new(0));
    let token = util::DropToken::new(1, &drops);
    let (tx, rx) = mpsc::channel();
    drop(rt.spawn(async move {
        let _token = token;
        tx.send(()).unwrap();
        time::sleep(TIMEOUT * 10).await;
        unreachable!("polled after shutdown");
    }));
    rx.recv_timeout(TIMEOUT).unwrap();
    let handle = rt.handle().clone();
    let (done_tx, done_rx) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(rt);
        done_tx.send(()).unwrap();
    });
    // Release the poll only once the shutdown is under way (the hand-off
    // refuses from then on), so that the drop meets a handed-off worker.
    wait_until("the runtime's shutdown began", || !handle.__worker_stuck(0));
    // The drop waits for the stuck worker, as it would without the
    // hand-off; it ends once the poll returns.
    stuck.latch.release();
    done_rx
        .recv_timeout(TIMEOUT)
        .expect("the runtime's drop returned");
    dropper.join().unwrap();
    assert_eq!(drops.load(SeqCst), 1, "the pending task was dropped");
    drop(stuck.handle);
}

#[test]
fn shutdown_timeout_while_the_replacement_runs_a_fiber() {
    let rt = multi_thread(1);
    let stuck = block_a_worker(&rt, || {});
    assert!(rt.handle().__worker_stuck(0));
    let unwound = Arc::new(AtomicBool::new(false));
    let gate = Gate::new();
    let _fiber = {
        let _enter = rt.enter();
        let (unwound, gate) = (unwound.clone(), gate.clone());
        fiber::spawn(move || {
            struct OnUnwind(Arc<AtomicBool>);
            impl Drop for OnUnwind {
                fn drop(&mut self) {
                    self.0.store(true, SeqCst);
                }
            }
            let _guard = OnUnwind(unwound);
            fiber::wait(gate.wait());
        })
    };
    gate.wait_registrations(1);
    let latch = stuck.latch.clone();
    let releaser = thread::spawn(move || latch.release());
    rt.shutdown_timeout(TIMEOUT);
    releaser.join().unwrap();
    assert!(
        unwound.load(SeqCst),
        "the fiber suspended on the replacement was unwound there"
    );
}

#[test]
fn repeated_stuck_and_release_cycles() {
    const CYCLES: u64 = 40;
    let rt = multi_thread(1);
    for i in 0..CYCLES {
        let stuck = block_a_worker(&rt, || {});
        assert!(rt.handle().__worker_stuck(0));
        assert_eq!(rt.metrics().handoff_count(), i + 1);
        let on = run_task(&rt, "a task on the replacement", async {
            fiber_runtime::yield_now().await;
            thread::current().id()
        });
        assert_ne!(on, stuck.thread);
        stuck.release();
        wait_for_no_replacement(&rt);
    }
}

#[test]
fn spurious_handoffs_of_busy_and_idle_workers_end_by_themselves() {
    // Declared stuck at any moment (between polls, about to park,
    // parked), workers rejoin at once and their replacements retire;
    // no task is lost meanwhile.
    const TASKS: usize = 2_000;
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .max_handoff_threads(3)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let poker = {
        let (handle, stop) = (rt.handle().clone(), stop.clone());
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(SeqCst) {
                // Workers and spare slots alike.
                let _ = handle.__worker_stuck(i % 5);
                i += 1;
                thread::yield_now();
            }
        })
    };
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..TASKS {
        let done = done.clone();
        drop(rt.spawn(async move {
            if i % 3 == 0 {
                time::sleep(ms(1)).await;
            }
            drop(fiber_runtime::spawn(async move {
                fiber_runtime::yield_now().await;
                done.fetch_add(1, SeqCst);
            }));
        }));
    }
    wait_until("every task ran", || done.load(SeqCst) == TASKS);
    stop.store(true, SeqCst);
    poker.join().unwrap();
    // The spurious replacements retire once their workers look at their
    // LIFO slots again: make them run something.
    wait_until("every replacement retired", || {
        run_task(&rt, "a nudge", async {});
        rt.metrics().num_replacement_threads() == 0
    });
}

#[test]
fn a_fiber_that_blocks_its_worker_is_handed_off_too() {
    // The stuck poll is a fiber's run between two suspensions.
    let rt = multi_thread(1);
    let latch = Latch::new();
    let (tx, rx) = mpsc::channel();
    let fiber = {
        let _enter = rt.enter();
        let latch = latch.clone();
        fiber::spawn(move || {
            let before = thread::current().id();
            tx.send(before).unwrap();
            latch.wait();
            fiber::yield_now();
            (before, thread::current().id())
        })
    };
    let stuck_thread = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(rt.handle().__worker_stuck(0));
    let on = run_task(&rt, "a 20 ms sleep", async {
        time::sleep(ms(20)).await;
        thread::current().id()
    });
    assert_ne!(on, stuck_thread);
    latch.release();
    let (before, after) = run_with_timeout("joining the fiber", move || fiber.join().unwrap());
    assert_eq!((before, after), (stuck_thread, stuck_thread));
    wait_for_no_replacement(&rt);
}

#[test]
fn a_task_can_hand_off_its_own_worker_before_it_blocks() {
    // Called from the worker itself (as `block_in_place` would be): the
    // claim does not wait for the caller, and the worker rejoins when the
    // poll returns.
    let rt = multi_thread(1);
    let latch = Latch::new();
    let (tx, rx) = mpsc::channel();
    let handle = rt.handle().clone();
    let blocker = rt.spawn({
        let latch = latch.clone();
        async move {
            // Lands in the LIFO slot, then moves with the hand-off.
            drop(fiber_runtime::spawn(async {}));
            tx.send((thread::current().id(), handle.__worker_stuck(0)))
                .unwrap();
            latch.wait();
        }
    });
    let (stuck_thread, handed_off) = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(handed_off);
    let on = run_task(&rt, "a task on the replacement", async {
        thread::current().id()
    });
    assert_ne!(on, stuck_thread);
    latch.release();
    blocker.join().unwrap();
    wait_for_no_replacement(&rt);
}

#[test]
fn handoffs_racing_the_runtimes_drop() {
    // Hand-off requests keep coming while the runtime is dropped: the
    // drop returns once the stuck poll does, no replacement starts after
    // it, and later requests are refused.
    for _ in 0..10 {
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .max_handoff_threads(2)
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let stuck = block_a_worker(&rt, || {});
        let stop = Arc::new(AtomicBool::new(false));
        let poker = {
            let (handle, stop) = (handle.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(SeqCst) {
                    let _ = handle.__worker_stuck(i % 3);
                    i += 1;
                    thread::yield_now();
                }
            })
        };
        wait_until("a hand-off", || handle.metrics().handoff_count() >= 1);
        let (done_tx, done_rx) = mpsc::channel();
        let dropper = thread::spawn(move || {
            drop(rt);
            done_tx.send(()).unwrap();
        });
        stuck.latch.release();
        done_rx
            .recv_timeout(TIMEOUT)
            .expect("the runtime's drop returned");
        dropper.join().unwrap();
        assert!(!handle.__worker_stuck(0), "a hand-off after shutdown");
        stop.store(true, SeqCst);
        poker.join().unwrap();
        drop(stuck.handle);
    }
}

/// The whole path, with no hook: the long-poll detector sees the only
/// worker stuck, hands it off, says so in its report, and a 20 ms timer
/// fires while the worker is still blocked (the test releases it only
/// after the timer task has finished).
#[test]
fn the_detector_hands_a_stuck_worker_off_and_reports_it() {
    let (tx, reports) = mpsc::channel();
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .long_poll_threshold(ms(20))
        .on_long_poll(move |p| {
            let _ = tx.send(p);
        })
        .build()
        .unwrap();
    let stuck = block_a_worker(&rt, || {});
    let on = run_task(&rt, "a 20 ms sleep while the only worker is stuck", async {
        time::sleep(ms(20)).await;
        thread::current().id()
    });
    assert_ne!(on, stuck.thread);
    // (On a loaded machine another poll may be preempted past 20 ms and
    // be reported too: look for the stuck task's report.)
    let id = stuck.handle.id();
    let report = loop {
        let r = reports.recv_timeout(TIMEOUT).expect("a long-poll report");
        if r.task_id() == Some(id) {
            break r;
        }
    };
    assert!(report.handed_off(), "{report:?}");
    assert_eq!(report.worker(), 0);
    assert!(report.to_string().contains("handed"), "{report}");
    assert!(rt.metrics().handoff_count() >= 1);
    assert!(rt.metrics().long_poll_count() >= 1);
    stuck.release();
    wait_for_no_replacement(&rt);
    drop(rt);
    // Exactly one report for the one long poll of the stuck task.
    assert!(reports.try_iter().all(|r| r.task_id() != Some(id)));
}
