//! `timeout`: a future that completes in time gives `Ok` with its output;
//! one too slow gives `Err(Elapsed)` and is dropped (its side effects
//! after that point never happen); `Elapsed` displays, is an `Error`, and
//! converts to an `io::Error` of kind `TimedOut`; a timed-out socket
//! operation leaves the socket usable. No assert has a wall-clock upper
//! bound.

mod util;

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::time::{Duration, Elapsed, Instant, sleep, timeout};
use std::future::pending;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use util::{
    Counters, DropToken, Flavor, expect_panic, ms, run, silence_expected_panics, tracked,
    until_conclusive,
};

const OUTSIDE: &str = "outside a fiber-runtime runtime";

#[test]
fn a_future_that_completes_in_time_gives_ok() {
    for flavor in Flavor::ALL {
        run(flavor, "timeout Ok", || async {
            assert_eq!(timeout(ms(1000), async { 7 }).await, Ok(7));
            let slow_enough = async {
                sleep(ms(5)).await;
                "done"
            };
            assert_eq!(
                timeout(Duration::from_secs(10), slow_enough).await,
                Ok("done")
            );
            // The inner future is polled first: ready beats a zero limit.
            assert_eq!(timeout(Duration::ZERO, async { 1 }).await, Ok(1));
            // From a spawned task, with a JoinHandle inside.
            let h = fiber_runtime::spawn(async {
                let inner = fiber_runtime::spawn(async { 5 });
                timeout(Duration::from_secs(10), inner).await
            });
            assert_eq!(h.await.unwrap().unwrap().unwrap(), 5);
        });
    }
}

#[test]
fn a_future_too_slow_gives_elapsed_and_is_dropped() {
    for flavor in Flavor::ALL {
        run(flavor, "timeout Err", || async {
            let counters = Counters::new();
            let drops = Arc::new(AtomicUsize::new(0));
            let token = DropToken::new(1, &drops);
            let inner = tracked(&counters, async move {
                let _token = token;
                pending::<()>().await
            });
            let start = Instant::now();
            let res: Result<(), Elapsed> = timeout(ms(20), inner).await;
            assert!(res.is_err(), "a pending future timed out");
            assert!(start.elapsed() >= ms(20), "elapsed before the limit");
            assert!(counters.polls() >= 1, "the inner future was polled");
            assert_eq!(counters.drops(), 1, "the inner future was dropped");
            assert_eq!(drops.load(SeqCst), 1, "what it owned was dropped");
        });
    }
}

#[test]
fn a_timed_out_future_never_runs_past_its_await_point() {
    for flavor in Flavor::ALL {
        until_conclusive("timed-out side effects", || {
            run(flavor, "timed-out side effects", || async {
                let after = Arc::new(AtomicBool::new(false));
                // Before the inner sleep is made: its deadline is at least
                // 40 ms on.
                let start = Instant::now();
                let inner = {
                    let after = after.clone();
                    async move {
                        sleep(ms(40)).await;
                        after.store(true, SeqCst);
                    }
                };
                let r = timeout(ms(10), inner).await;
                if start.elapsed() >= ms(40) {
                    // A stall past the inner deadline: `Timeout` polls the
                    // inner future first, which may then have finished.
                    return None;
                }
                assert!(r.is_err(), "finished before its deadline: {r:?}");
                // Well past the inner sleep's deadline.
                sleep(ms(80)).await;
                assert!(!after.load(SeqCst), "a dropped future resumed");
                Some(())
            })
        });
    }
}

#[test]
fn nested_timeouts_the_shorter_wins() {
    for flavor in Flavor::ALL {
        run(flavor, "nested timeouts", || async {
            let r = timeout(ms(200), timeout(ms(10), pending::<()>())).await;
            assert!(matches!(r, Ok(Err(_))), "inner limit first: {r:?}");
            let r = timeout(ms(10), timeout(Duration::from_secs(3600), pending::<()>())).await;
            assert!(r.is_err(), "outer limit first: {r:?}");
        });
    }
}

#[test]
fn many_concurrent_timeouts_all_elapse() {
    const N: usize = 2000;
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(2)] {
        run(flavor, "many timeouts", || async {
            let handles: Vec<_> = (0..N)
                .map(|i| {
                    fiber_runtime::spawn(async move {
                        let d = ms(1 + (i % 20) as u64);
                        let start = Instant::now();
                        let r = timeout(d, pending::<()>()).await;
                        r.is_err() && start.elapsed() >= d
                    })
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                assert!(h.await.unwrap(), "timeout #{i}");
            }
        });
    }
}

#[test]
fn elapsed_displays_is_an_error_and_converts_to_timed_out() {
    let err = run(Flavor::CurrentThread, "Elapsed", || async {
        timeout(Duration::ZERO, pending::<()>()).await.unwrap_err()
    });
    assert_eq!(err.to_string(), "deadline has elapsed");
    assert!(!format!("{err:?}").is_empty());
    let copy = err;
    assert_eq!(copy, err);
    let dyn_err: &dyn std::error::Error = &err;
    assert!(dyn_err.source().is_none());
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    assert_eq!(boxed.to_string(), "deadline has elapsed");

    let io_err: io::Error = err.into();
    assert_eq!(io_err.kind(), io::ErrorKind::TimedOut);

    // `?` converts it in an `io::Result` function.
    fn with_question_mark(r: Result<(), Elapsed>) -> io::Result<()> {
        r?;
        Ok(())
    }
    let e = with_question_mark(Err(err)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(with_question_mark(Ok(())).is_ok());
}

#[test]
fn timeout_outside_a_runtime_panics_with_a_message_saying_so() {
    silence_expected_panics(&[OUTSIDE]);
    let msg = expect_panic(|| timeout(ms(1), async {}));
    assert!(msg.contains(OUTSIDE), "{msg}");
}

#[test]
fn a_timed_out_accept_or_read_leaves_the_socket_usable() {
    for flavor in Flavor::ALL {
        run(flavor, "timeouts on sockets", || async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            // Nobody connects yet.
            assert!(timeout(ms(10), l.accept()).await.is_err());
            let c = fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
            let (mut s, _) = timeout(Duration::from_secs(10), l.accept())
                .await
                .expect("accept after a timed-out accept hung")
                .unwrap();
            let mut c = c.await.unwrap();

            // Nothing to read yet.
            let mut b = [0; 4];
            assert!(timeout(ms(10), s.read(&mut b)).await.is_err());
            // The read interest registered by the dropped read must not
            // swallow the next readiness.
            let writer = fiber_runtime::spawn(async move {
                c.write_all(b"data").await.unwrap();
                c
            });
            timeout(Duration::from_secs(10), s.read_exact(&mut b))
                .await
                .expect("read after a timed-out read hung")
                .unwrap();
            assert_eq!(&b, b"data");
            drop(writer.await.unwrap());
        });
    }
}

/// Issue 9, bug 2: a deadline beyond the wheel's 2.2 years used to be
/// filed in the last level's current slot, due at once and refiled there
/// forever: once any earlier timer had fired, the worker spun inside the
/// wheel and `timeout(Duration::MAX, ..)` never completed.
#[test]
fn a_far_future_timeout_lets_its_future_complete() {
    for flavor in Flavor::ALL {
        run(flavor, "timeout(Duration::MAX, sleep(10 ms))", || async {
            // An earlier timer fires first, so the wheel's time has moved.
            sleep(ms(1)).await;
            let out = timeout(Duration::MAX, async {
                sleep(ms(10)).await;
                7
            })
            .await;
            assert_eq!(out, Ok(7));
            // A deadline three years ahead pends while a near one fires.
            let three_years = Duration::from_secs(3 * 365 * 86_400);
            assert!(timeout(ms(5), sleep(three_years)).await.is_err());
            // And the far timers left nothing behind that keeps firing.
            sleep(ms(2)).await;
        });
    }
}
