//! `signal`: `ctrl_c` and `unix::signal` from async tasks (every flavor),
//! fibers and plain threads; every listener of a kind gets each delivery,
//! none made before its first `recv` is lost; and the ways to break it:
//! refused and invalid signal numbers, a `recv` dropped mid-wait, a
//! dropped listener (its waker released), the blocking call in an async
//! task.
//!
//! Its own test binary: it installs process-wide handlers. Tests run in
//! parallel threads of one process, so each uses a signal number of its
//! own (mostly real-time signals, `SIGRTMIN + n`).

#![cfg(feature = "signal")]

mod util;

use fiber_runtime::fiber;
use fiber_runtime::signal::{self, unix::SignalKind, unix::signal};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use util::{CountingWaker, Flavor, join_thread, run, run_with_timeout, wait_until};

/// The real-time signal `SIGRTMIN + n` (this file's tests each use their
/// own `n`).
fn rt_signal(n: i32) -> SignalKind {
    let kind = SignalKind::from_raw(libc::SIGRTMIN() + n);
    assert!(kind.as_raw_value() <= libc::SIGRTMAX());
    kind
}

/// Sends `kind` to this process (any thread may take it).
fn kill(kind: SignalKind) {
    // SAFETY: a plain system call; every caller listens for `kind` first,
    // so its handler (not the default action) runs.
    let sent = unsafe { libc::kill(libc::getpid(), kind.as_raw_value()) };
    assert_eq!(sent, 0);
}

/// Raises `kind` on the calling thread: the handler has run when this
/// returns.
fn raise(kind: SignalKind) {
    // SAFETY: as in `kill`.
    let raised = unsafe { libc::raise(kind.as_raw_value()) };
    assert_eq!(raised, 0);
}

#[test]
fn signal_kinds_are_the_usual_numbers() {
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
        (SignalKind::user_defined1(), libc::SIGUSR1),
        (SignalKind::user_defined2(), libc::SIGUSR2),
        (SignalKind::child(), libc::SIGCHLD),
        (SignalKind::alarm(), libc::SIGALRM),
        (SignalKind::pipe(), libc::SIGPIPE),
        (SignalKind::window_change(), libc::SIGWINCH),
    ];
    for (kind, n) in kinds {
        assert_eq!(kind.as_raw_value(), n);
        assert_eq!(SignalKind::from_raw(n), kind);
        assert_eq!(SignalKind::from(n), kind);
        assert_eq!(i32::from(kind), n);
    }
}

#[test]
fn a_task_receives_a_signal_on_every_flavor() {
    for (i, flavor) in Flavor::ALL.into_iter().enumerate() {
        let kind = rt_signal(i as i32);
        let got = run(flavor, "recv in a task", move || async move {
            fiber_runtime::spawn(async move {
                let mut s = signal(kind).unwrap();
                kill(kind);
                s.recv().await
            })
            .await
            .unwrap()
        });
        assert_eq!(got, Some(()), "{flavor:?}");
    }
}

/// The fiber waits first (most of the time: the delivery comes from
/// another task once the fiber said it is about to wait); either order
/// must deliver.
#[test]
fn a_fiber_receives_a_signal_with_blocking_recv() {
    for (i, flavor) in Flavor::ALL.into_iter().enumerate() {
        let kind = rt_signal(3 + i as i32);
        let got = run(flavor, "blocking_recv in a fiber", move || async move {
            let (ready_tx, ready_rx) = fiber_runtime::sync::oneshot::channel();
            let f = fiber::spawn(move || {
                let mut s = signal(kind).unwrap();
                ready_tx.send(()).unwrap();
                let first = s.blocking_recv();
                // And a second delivery, raised on the fiber itself.
                raise(kind);
                (first, s.blocking_recv())
            });
            ready_rx.await.unwrap();
            fiber_runtime::yield_now().await;
            kill(kind);
            f.await.unwrap()
        });
        assert_eq!(got, (Some(()), Some(())), "{flavor:?}");
    }
}

#[test]
fn a_plain_thread_receives_a_signal_with_blocking_recv() {
    let kind = rt_signal(6);
    let got = run_with_timeout("blocking_recv on a plain thread", move || {
        let mut s = signal(kind).unwrap();
        let t = std::thread::spawn(move || kill(kind));
        let got = s.blocking_recv();
        t.join().unwrap();
        got
    });
    assert_eq!(got, Some(()));
}

/// Eight listeners in eight tasks (on two workers) all get each of three
/// deliveries, and one on a plain thread gets the first.
#[test]
fn every_listener_of_a_kind_gets_each_delivery() {
    const TASKS: usize = 8;
    const ROUNDS: usize = 3;
    let kind = rt_signal(7);
    run(
        Flavor::MultiThread(2),
        "many listeners",
        move || async move {
            let mut listeners: Vec<_> = (0..=TASKS).map(|_| signal(kind).unwrap()).collect();
            let mut on_thread = listeners.pop().unwrap();
            let (tx, mut rx) = fiber_runtime::sync::mpsc::unbounded_channel();
            let tasks: Vec<_> = listeners
                .into_iter()
                .map(|mut s| {
                    let tx = tx.clone();
                    fiber_runtime::spawn(async move {
                        for round in 0..ROUNDS {
                            assert_eq!(s.recv().await, Some(()));
                            tx.send(round).unwrap();
                        }
                    })
                })
                .collect();
            // It may start waiting after the first delivery: that counts too.
            let thread = std::thread::spawn(move || on_thread.blocking_recv());
            for round in 0..ROUNDS {
                kill(kind);
                // Every task saw this round before the next delivery (so
                // deliveries cannot coalesce for them).
                for _ in 0..TASKS {
                    assert_eq!(rx.recv().await, Some(round));
                }
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(join_thread(thread).await, Some(()));
        },
    );
}

/// A delivery after `signal()` and before the first `recv` counts: once
/// another listener has seen it, this one's first poll is ready at once.
#[test]
fn a_delivery_before_the_first_recv_is_not_lost() {
    let kind = rt_signal(8);
    run(
        Flavor::CurrentThread,
        "delivery before recv",
        move || async move {
            let mut late = signal(kind).unwrap();
            let mut witness = signal(kind).unwrap();
            raise(kind);
            assert_eq!(witness.recv().await, Some(()));
            let w = std::task::Waker::noop();
            let mut cx = Context::from_waker(w);
            assert_eq!(late.poll_recv(&mut cx), Poll::Ready(Some(())));
            // One delivery, one `Ready`.
            assert_eq!(late.poll_recv(&mut cx), Poll::Pending);
            // A listener made after the delivery does not see it.
            let mut after = signal(kind).unwrap();
            assert_eq!(after.poll_recv(&mut cx), Poll::Pending);
        },
    );
}

/// A `recv` future dropped while waiting takes nothing: the next delivery
/// reaches its own listener and every other one.
#[test]
fn a_recv_dropped_mid_wait_loses_nothing() {
    for (i, flavor) in Flavor::ALL.into_iter().enumerate() {
        let kind = rt_signal(9 + i as i32);
        run(flavor, "recv dropped mid-wait", move || async move {
            let mut a = signal(kind).unwrap();
            let mut b = signal(kind).unwrap();
            {
                let mut fut = pin!(a.recv());
                let polled = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                assert!(polled.is_pending());
            }
            // And one dropped in another task, by abort.
            let mut c = signal(kind).unwrap();
            let (waiting_tx, waiting_rx) = fiber_runtime::sync::oneshot::channel();
            let aborted = fiber_runtime::spawn(async move {
                let mut d = signal(kind).unwrap();
                let mut fut = pin!(d.recv());
                let polled = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                assert!(polled.is_pending());
                waiting_tx.send(()).unwrap();
                fut.await
            });
            waiting_rx.await.unwrap();
            aborted.abort();
            assert!(aborted.await.unwrap_err().is_cancelled());
            kill(kind);
            assert_eq!(b.recv().await, Some(()));
            assert_eq!(a.recv().await, Some(()));
            assert_eq!(c.recv().await, Some(()));
        });
    }
}

/// A dropped listener leaves no waker behind, and a waiting one is woken
/// by the delivery (from the dispatcher thread).
#[test]
fn a_waiting_listener_is_woken_and_a_dropped_one_releases_its_waker() {
    let kind = rt_signal(12);
    let (wakes, waker) = CountingWaker::new();
    let mut cx = Context::from_waker(&waker);
    let mut s = signal(kind).unwrap();
    assert_eq!(s.poll_recv(&mut cx), Poll::Pending);
    // Registered again with the same waker: still one copy held.
    assert_eq!(s.poll_recv(&mut cx), Poll::Pending);
    assert_eq!(
        Arc::strong_count(&wakes),
        3,
        "ours, `waker`, the listener's"
    );
    kill(kind);
    // The wake consumed the registered copy (dropped once `wake` returns).
    wait_until(
        "the delivery woke the listener and let its waker go",
        || wakes.wakes() == 1 && Arc::strong_count(&wakes) == 2,
    );
    assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Some(())));

    assert_eq!(s.poll_recv(&mut cx), Poll::Pending);
    assert_eq!(Arc::strong_count(&wakes), 3);
    drop(s);
    assert_eq!(
        Arc::strong_count(&wakes),
        2,
        "the dropped listener kept a waker"
    );
    // Its entry is reused by the next listener, which waits as usual.
    let mut again = signal(kind).unwrap();
    assert_eq!(again.poll_recv(&mut cx), Poll::Pending);
    kill(kind);
    wait_until("the new listener was woken", || wakes.wakes() == 2);
    assert_eq!(again.poll_recv(&mut cx), Poll::Ready(Some(())));
}

#[test]
fn refused_and_invalid_signals_are_errors_not_panics() {
    let refused = [
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGTRAP, "SIGTRAP"),
    ];
    let segv_before = disposition(libc::SIGSEGV);
    for (n, name) in refused {
        let err = signal(SignalKind::from_raw(n)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{name}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    // The fiber overflow handler's signal was left alone.
    assert_eq!(disposition(libc::SIGSEGV), segv_before);
    let invalid = [
        0,
        -1,
        i32::MIN,
        32,
        libc::SIGRTMIN() - 1,
        libc::SIGRTMAX() + 1,
        1000,
        i32::MAX,
    ];
    for n in invalid {
        let err = signal(SignalKind::from_raw(n)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{n}");
        assert!(
            err.to_string().contains("invalid signal number"),
            "{n}: {err}"
        );
    }
}

/// The handler currently installed for `signum`.
fn disposition(signum: i32) -> usize {
    // SAFETY: a query only (no new action); `old` is written by the call.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signum, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

#[test]
fn blocking_recv_in_an_async_task_panics_naming_recv_await() {
    util::silence_expected_panics(&["`Signal::blocking_recv`"]);
    let kind = rt_signal(13);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let err = rt
            .block_on(rt.spawn(async move {
                let mut s = signal(kind).unwrap();
                s.blocking_recv()
            }))
            .unwrap_err();
        let msg = util::panic_message(&*err.into_panic()).unwrap();
        assert!(msg.contains("`Signal::blocking_recv`"), "{flavor:?}: {msg}");
        assert!(msg.contains("`signal.recv().await`"), "{flavor:?}: {msg}");
    }
}

/// `ctrl_c()` listens from the call on: a SIGINT raised before the first
/// poll completes it. Then a second one, with a fresh call, from a fiber.
#[test]
fn ctrl_c_listens_from_the_call() {
    for flavor in Flavor::ALL {
        run(flavor, "ctrl_c", || async {
            fiber_runtime::spawn(async {
                let c = signal::ctrl_c();
                raise(SignalKind::interrupt());
                c.await.unwrap();
            })
            .await
            .unwrap();
            let t = fiber::spawn(|| {
                let c = signal::ctrl_c();
                let t = std::thread::spawn(|| kill(SignalKind::interrupt()));
                fiber::wait(c).unwrap();
                t
            })
            .await
            .unwrap();
            join_thread(t).await;
        });
    }
}
