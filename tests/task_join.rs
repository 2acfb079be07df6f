//! `JoinHandle` and `JoinError`: typed output through `.await` and
//! `join()`, `is_finished`, `abort`, detaching, panics.

mod util;

use fiber_runtime::{Builder, JoinError, JoinHandle};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::Poll;
use std::thread;
use util::{
    Counters, CountingWaker, DropToken, EXPECTED_PANIC, Flavor, Gate, drive_until, expect_panic,
    poll_once, tracked,
};

const JOIN_IN_ASYNC: &str = "`JoinHandle::join` was called from an async task";

/// An output that is neither `Copy` nor `Clone` nor `Default`.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    name: String,
    values: Vec<u32>,
}

fn report(n: u32) -> Report {
    Report {
        name: format!("report-{n}"),
        values: (0..n).collect(),
    }
}

/// Drives `rt` until the task of `h` finished (both flavors).
fn drive_until_finished<T>(rt: &fiber_runtime::Runtime, h: &JoinHandle<T>) {
    drive_until(rt, "the task finished", || h.is_finished());
}

#[test]
fn typed_output_through_await() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let out = rt.block_on(async {
            let a = fiber_runtime::spawn(async { report(3) });
            let b = fiber_runtime::spawn(async {
                Box::new(|x: u32| x * 2) as Box<dyn Fn(u32) -> u32 + Send>
            });
            (a.await.unwrap(), b.await.unwrap()(21))
        });
        assert_eq!(out, (report(3), 42), "{flavor:?}");
        // A JoinHandle is itself a future block_on can take.
        assert_eq!(
            rt.block_on(rt.spawn(async { report(2) })).unwrap(),
            report(2)
        );
        let blocking = rt.spawn_blocking(|| report(4));
        assert_eq!(rt.block_on(blocking).unwrap(), report(4), "{flavor:?}");
    }
}

#[test]
fn typed_output_through_join_from_a_plain_thread() {
    let rt = util::multi_thread(2);
    let h = rt.spawn(async { report(5) });
    let from_thread = thread::spawn(move || h.join()).join().unwrap();
    assert_eq!(from_thread.unwrap(), report(5));
    // And on the test thread itself, which does not drive the runtime.
    assert_eq!(rt.spawn(async { report(1) }).join().unwrap(), report(1));
}

#[test]
fn join_from_a_plain_thread_on_a_current_thread_runtime() {
    let rt = util::current_thread();
    let h = rt.spawn(async { report(6) });
    let result = Arc::new(Mutex::new(None));
    let r = result.clone();
    let joiner = thread::spawn(move || *r.lock().unwrap() = Some(h.join()));
    // The task runs only while this thread drives the runtime.
    drive_until(&rt, "the joiner got the output", || {
        result.lock().unwrap().is_some()
    });
    joiner.join().unwrap();
    let out = result.lock().unwrap().take().unwrap();
    assert_eq!(out.unwrap(), report(6));
}

#[test]
fn join_inside_an_async_task_panics() {
    util::silence_expected_panics(&[JOIN_IN_ASYNC]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let msg = rt
            .block_on(rt.spawn(async {
                let other = fiber_runtime::spawn(async { 1 });
                expect_panic(move || other.join())
            }))
            .unwrap();
        assert!(msg.contains("`.await`"), "{flavor:?}: {msg}");
        assert!(msg.contains(JOIN_IN_ASYNC), "{flavor:?}: {msg}");
        // Inside block_on too.
        let msg = rt.block_on(async {
            let other = fiber_runtime::spawn(async { 1 });
            expect_panic(move || other.join())
        });
        assert!(msg.contains("`.await`"), "{flavor:?}: {msg}");
    }
}

#[test]
#[should_panic(expected = "`.await`")]
fn join_inside_block_on_panics() {
    util::silence_expected_panics(&[JOIN_IN_ASYNC]);
    let rt = util::multi_thread(1);
    rt.block_on(async { rt.spawn(async {}).join() }).unwrap();
}

#[test]
fn join_inside_spawn_blocking_is_allowed() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let task = rt.spawn(async { report(2) });
        let blocking = rt.spawn_blocking(move || task.join());
        assert_eq!(
            rt.block_on(blocking).unwrap().unwrap(),
            report(2),
            "{flavor:?}"
        );
    }
}

#[test]
fn join_after_enter_is_allowed() {
    let rt = util::multi_thread(1);
    let _guard = rt.enter();
    assert_eq!(fiber_runtime::spawn(async { 9 }).join().unwrap(), 9);
}

#[test]
fn is_finished_tracks_completion() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let gate = Gate::new();
        let g = gate.clone();
        let h = rt.spawn(async move {
            g.wait().await;
            7
        });
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        assert!(
            !h.is_finished(),
            "{flavor:?}: pending task reported finished"
        );
        gate.open();
        drive_until_finished(&rt, &h);
        assert!(h.is_finished());
        assert_eq!(h.join().unwrap(), 7, "{flavor:?}");

        // Panicked and cancelled tasks are finished too.
        util::silence_expected_panics(&[]);
        let p = rt.spawn(async { panic!("{EXPECTED_PANIC}") });
        drive_until_finished(&rt, &p);
        assert!(p.join().unwrap_err().is_panic());
        let c = rt.spawn(std::future::pending::<()>());
        c.abort();
        drive_until_finished(&rt, &c);
        assert!(c.join().unwrap_err().is_cancelled());
    }
}

#[test]
fn abort_of_a_pending_task_cancels_it_and_drops_its_future() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let gate = Gate::new();
        let g = gate.clone();
        let h = rt.spawn(tracked(&counters, async move { g.wait().await }));
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        let polls = counters.polls();
        h.abort();
        let err = rt.block_on(h).unwrap_err();
        assert!(err.is_cancelled(), "{flavor:?}: {err}");
        assert!(!err.is_panic());
        assert_eq!(counters.drops(), 1, "{flavor:?}");
        // Opening the gate now wakes nothing that could poll it.
        gate.open();
        drive_yields(&rt);
        assert_eq!(counters.polls(), polls, "{flavor:?}: polled after abort");
        assert_eq!(counters.drops(), 1, "{flavor:?}");
    }
}

fn drive_yields(rt: &fiber_runtime::Runtime) {
    util::drive_yields(rt, 10);
}

#[test]
fn abort_before_the_first_poll() {
    // A current-thread runtime runs nothing until block_on: the task is
    // aborted before it was ever polled.
    let rt = util::current_thread();
    let counters = Counters::new();
    let h = rt.spawn(tracked(&counters, async { 1 }));
    h.abort();
    assert!(rt.block_on(h).unwrap_err().is_cancelled());
    assert_eq!(counters.polls(), 0);
    assert_eq!(counters.drops(), 1);
}

#[test]
fn abort_after_completion_keeps_the_output() {
    util::silence_expected_panics(&[]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let h = rt.spawn(async { report(3) });
        drive_until_finished(&rt, &h);
        h.abort();
        h.abort();
        assert!(h.is_finished());
        assert_eq!(rt.block_on(h).unwrap(), report(3), "{flavor:?}");

        let p = rt.spawn(async { panic!("{EXPECTED_PANIC}: kept") });
        drive_until_finished(&rt, &p);
        p.abort();
        let err = rt.block_on(p).unwrap_err();
        assert!(err.is_panic(), "{flavor:?}: {err}");
    }
}

#[test]
fn abort_twice_and_from_another_thread() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let h = rt.spawn(tracked(&counters, std::future::pending::<()>()));
        // `abort` takes `&self`: a shared reference on another thread works.
        thread::scope(|s| {
            s.spawn(|| h.abort());
        });
        h.abort();
        assert!(rt.block_on(h).unwrap_err().is_cancelled(), "{flavor:?}");
        assert_eq!(counters.drops(), 1, "{flavor:?}");
    }
}

#[test]
fn a_task_can_abort_itself() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let counters = Counters::new();
        let slot: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
        let gate = Gate::new();
        let (s, g) = (slot.clone(), gate.clone());
        let h = rt.spawn(tracked(&counters, async move {
            g.wait().await;
            if let Some(me) = s.lock().unwrap().as_ref() {
                me.abort();
            }
            // Dropped at the next point it is not being polled.
            std::future::pending::<()>().await
        }));
        *slot.lock().unwrap() = Some(h);
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        gate.open();
        drive_until(&rt, "the task was cancelled", || counters.drops() == 1);
        let h = slot.lock().unwrap().take().unwrap();
        assert!(rt.block_on(h).unwrap_err().is_cancelled(), "{flavor:?}");
        assert_eq!(counters.polls(), 2, "{flavor:?}");
        assert_eq!(counters.drops(), 1, "{flavor:?}");
    }
}

#[test]
fn dropping_the_join_handle_detaches_the_task() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let gate = Gate::new();
        let output_drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let (g, d) = (gate.clone(), output_drops.clone());
        let h = rt.spawn(async move {
            g.wait().await;
            tx.send("ran to completion").unwrap();
            DropToken::new(1, &d)
        });
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        drop(h);
        gate.open();
        let mut got = None;
        drive_until(&rt, "the detached task finished", || {
            got = got.or_else(|| rx.try_recv().ok());
            got.is_some() && output_drops.load(SeqCst) == 1
        });
        assert_eq!(got, Some("ran to completion"), "{flavor:?}");
        // Nobody reads the output: it was dropped exactly once.
        assert_eq!(output_drops.load(SeqCst), 1, "{flavor:?}");
    }
}

#[test]
fn dropping_the_join_handle_of_a_finished_task_drops_the_output() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let output_drops = Arc::new(AtomicUsize::new(0));
        let d = output_drops.clone();
        let h = rt.spawn(async move { DropToken::new(2, &d) });
        drive_until_finished(&rt, &h);
        assert_eq!(
            output_drops.load(SeqCst),
            0,
            "{flavor:?}: output kept for the handle"
        );
        drop(h);
        assert_eq!(output_drops.load(SeqCst), 1, "{flavor:?}");
    }
}

#[test]
fn panicking_task_gives_is_panic_with_its_payload() {
    util::silence_expected_panics(&[]);
    #[derive(Debug, PartialEq)]
    struct Custom(u32);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let err = rt
            .block_on(rt.spawn(async { panic!("{EXPECTED_PANIC}: formatted {}", 7) }))
            .unwrap_err();
        assert!(err.is_panic() && !err.is_cancelled(), "{flavor:?}");
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("expected panic: formatted 7")
        );

        let err = rt
            .block_on(rt.spawn(async { std::panic::panic_any(Custom(42)) }))
            .unwrap_err();
        assert!(err.is_panic());
        let payload = err.try_into_panic().expect("a panic error");
        assert_eq!(payload.downcast_ref::<Custom>(), Some(&Custom(42)));

        // A blocking closure's panic is reported the same way.
        let err = rt
            .block_on(rt.spawn_blocking(|| panic!("{EXPECTED_PANIC}: blocking")))
            .unwrap_err();
        assert!(err.is_panic(), "{flavor:?}");
    }
}

#[test]
fn the_worker_keeps_serving_tasks_after_a_panic() {
    util::silence_expected_panics(&[]);
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let rt = flavor.build();
        let before = rt
            .block_on(rt.spawn(async { thread::current().id() }))
            .unwrap();
        for i in 0..10 {
            let err = rt
                .block_on(rt.spawn(async move { panic!("{EXPECTED_PANIC} #{i}") }))
                .unwrap_err();
            assert!(err.is_panic());
        }
        // The same (only) worker thread runs the next tasks.
        let handles: Vec<_> = (0..100u64)
            .map(|i| rt.spawn(async move { (i, thread::current().id()) }))
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let (v, id) = rt.block_on(h).unwrap();
            assert_eq!(v, i as u64);
            assert_eq!(id, before, "{flavor:?}: a different thread ran the task");
        }
    }
}

#[test]
fn the_blocking_pool_keeps_serving_after_a_panic() {
    util::silence_expected_panics(&[]);
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let err = rt
        .block_on(rt.spawn_blocking(|| panic!("{EXPECTED_PANIC}")))
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(rt.block_on(rt.spawn_blocking(|| 5)).unwrap(), 5);
}

#[test]
#[should_panic(expected = "not a panic")]
fn into_panic_of_a_cancelled_error_panics() {
    let rt = util::current_thread();
    let h = rt.spawn(async {});
    h.abort();
    let err = rt.block_on(h).unwrap_err();
    let _ = err.into_panic();
}

#[test]
fn try_into_panic_of_a_cancelled_error_gives_it_back() {
    let rt = util::current_thread();
    let h = rt.spawn(async {});
    h.abort();
    let err = rt.block_on(h).unwrap_err();
    let err = err.try_into_panic().unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.to_string(), "task was cancelled");
}

#[test]
fn join_error_display() {
    util::silence_expected_panics(&["boom"]);
    let rt = util::current_thread();
    let h = rt.spawn(std::future::pending::<()>());
    h.abort();
    let cancelled = rt.block_on(h).unwrap_err();
    assert_eq!(cancelled.to_string(), "task was cancelled");

    let h = rt.spawn(async { panic!("boom") });
    let id = h.id();
    let static_str = rt.block_on(h).unwrap_err();
    assert_eq!(
        static_str.to_string(),
        format!("task {id} panicked with message \"boom\"")
    );

    let n = 3;
    let h = rt.spawn(async move { panic!("boom {n}") });
    let id = h.id();
    let string = rt.block_on(h).unwrap_err();
    assert_eq!(
        string.to_string(),
        format!("task {id} panicked with message \"boom 3\"")
    );

    util::silence_expected_panics(&[]);
    let h = rt.spawn(async { std::panic::panic_any(17u8) });
    let id = h.id();
    let other = rt.block_on(h).unwrap_err();
    assert_eq!(other.to_string(), format!("task {id} panicked"));

    // A std error, usable behind `Box<dyn Error + Send + Sync>`.
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(cancelled);
    assert_eq!(boxed.to_string(), "task was cancelled");
}

#[test]
fn join_error_converts_into_io_error() {
    let rt = util::current_thread();
    let h = rt.spawn(std::future::pending::<()>());
    h.abort();
    let err: JoinError = rt.block_on(h).unwrap_err();
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert_eq!(io.to_string(), "task was cancelled");
}

#[test]
fn a_join_handle_can_be_awaited_by_another_task() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let gate = Gate::new();
        let g = gate.clone();
        let inner = rt.spawn(async move {
            g.wait().await;
            report(2)
        });
        let outer = rt.spawn(async move { inner.await.unwrap().values.len() });
        drive_until(&rt, "the inner task is waiting", || {
            gate.registrations() == 1
        });
        gate.open();
        assert_eq!(rt.block_on(outer).unwrap(), 2, "{flavor:?}");
    }
}

#[test]
fn the_last_waker_polled_with_is_woken() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let gate = Gate::new();
        let g = gate.clone();
        let mut h = rt.spawn(async move {
            g.wait().await;
            5
        });
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        let (first, first_waker) = CountingWaker::new();
        let (second, second_waker) = CountingWaker::new();
        assert!(poll_once(&mut h, &first_waker).is_pending());
        assert!(poll_once(&mut h, &first_waker).is_pending());
        assert!(poll_once(&mut h, &second_waker).is_pending());
        gate.open();
        drive_until(&rt, "the join waker was woken", || second.wakes() >= 1);
        match poll_once(&mut h, &second_waker) {
            Poll::Ready(Ok(v)) => assert_eq!(v, 5, "{flavor:?}"),
            other => panic!("{flavor:?}: expected the output, got {other:?}"),
        }
        // (Whether the replaced waker is woken too is not specified.)
        let _ = first.wakes();
    }
}

#[test]
fn await_completes_after_polling_with_another_waker() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let gate = Gate::new();
        let g = gate.clone();
        let mut h = rt.spawn(async move {
            g.wait().await;
            report(1)
        });
        let (_, noop) = CountingWaker::new();
        assert!(poll_once(&mut h, &noop).is_pending());
        let (tx, rx) = mpsc::channel();
        // Now awaited in a task (another waker): opening the gate must
        // complete that await.
        let awaiting = rt.spawn(async move {
            let out = h.await;
            tx.send(()).unwrap();
            out
        });
        drive_until(&rt, "the task is waiting", || gate.registrations() == 1);
        gate.open();
        drive_until(&rt, "the await completed", || rx.try_recv().is_ok());
        let out = rt.block_on(awaiting).unwrap();
        assert_eq!(out.unwrap(), report(1), "{flavor:?}");
    }
}

#[test]
fn abort_of_a_queued_blocking_closure() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let latch = util::Latch::new();
    let (started_tx, started_rx) = mpsc::channel();
    let l = latch.clone();
    let busy = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        l.wait();
        "busy done"
    });
    started_rx.recv_timeout(util::TIMEOUT).unwrap();
    // The only blocking thread is busy: this closure waits in the queue.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let queued = rt.spawn_blocking(move || r.fetch_add(1, SeqCst));
    queued.abort();
    latch.release();
    assert!(rt.block_on(queued).unwrap_err().is_cancelled());
    assert_eq!(rt.block_on(busy).unwrap(), "busy done");
    // The pool goes on; the aborted closure never ran.
    assert_eq!(rt.block_on(rt.spawn_blocking(|| 1)).unwrap(), 1);
    assert_eq!(ran.load(SeqCst), 0);
}

/// A blocking closure runs on a thread where blocking is allowed, so it
/// may `join()` (or `block_on`) task handles. The handle of a finished
/// task must be ready there however many handles the closure joins: if
/// one stays `Pending`, `join()` never returns.
#[test]
fn join_handles_of_finished_tasks_are_ready_inside_spawn_blocking() {
    const N: u64 = 300;
    let mut failures = Vec::new();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let handles: Vec<_> = (0..N).map(|i| rt.spawn(async move { i })).collect();
        drive_until(&rt, "every task finished", || {
            handles.iter().all(|h| h.is_finished())
        });
        let polled = rt
            .block_on(rt.spawn_blocking(move || {
                let (_, waker) = CountingWaker::new();
                let mut sum = 0;
                for (i, mut h) in handles.into_iter().enumerate() {
                    assert!(h.is_finished());
                    match poll_once(&mut h, &waker) {
                        Poll::Ready(v) => sum += v.unwrap(),
                        Poll::Pending => return Err(i),
                    }
                }
                Ok(sum)
            }))
            .unwrap();
        if let Err(i) = polled {
            failures.push(format!(
                "{flavor:?}: the handle of a finished task (#{i}) was Pending inside \
                 spawn_blocking, so `join()` there would spin forever"
            ));
        } else {
            assert_eq!(polled, Ok(N * (N - 1) / 2));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
