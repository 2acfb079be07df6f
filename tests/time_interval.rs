//! `interval`: the first tick is immediate, ticks are spaced by exactly
//! the period when the task keeps up, missed ticks are skipped rather than
//! bunched (the next tick completes at once, the one after is back on the
//! original grid), and a zero period panics.
//!
//! The asserts are on the due `Instant`s `tick` returns, relative to the
//! first one; none has a wall-clock upper bound. When an assert depends on
//! the task not having been late, it checks that condition first.

mod util;

use fiber_runtime::time::{Duration, Instant, interval};
use futures::FutureExt;
use std::future::poll_fn;
use util::{Flavor, expect_panic, ms, run, silence_expected_panics};

const ZERO_PERIOD: &str = "period must be non-zero";
const OUTSIDE: &str = "outside a fiber-runtime runtime";

/// Whether `t` lies on the grid `start + k × period`.
fn on_grid(start: Instant, t: Instant, period: Duration) -> bool {
    t >= start && (t - start).as_nanos() % period.as_nanos() == 0
}

#[test]
fn the_first_tick_is_immediate() {
    for flavor in Flavor::ALL {
        run(flavor, "first tick", || async {
            let before = Instant::now();
            let mut every = interval(Duration::from_secs(3600));
            let after = Instant::now();
            assert_eq!(every.period(), Duration::from_secs(3600));
            let first = every
                .tick()
                .now_or_never()
                .expect("the first tick completes at once");
            assert!(before <= first && first <= after, "due at creation");
            // The second one is an hour away.
            assert!(every.tick().now_or_never().is_none());
        });
    }
}

#[test]
fn consecutive_ticks_are_one_period_apart() {
    const P: Duration = Duration::from_millis(10);
    for flavor in Flavor::ALL {
        run(flavor, "tick spacing", || async {
            let mut every = interval(P);
            let start = every.tick().await;
            let mut prev = start;
            let mut prev_returned = Instant::now();
            let mut exact = 0;
            for k in 1..=10 {
                let due = every.tick().await;
                let returned = Instant::now();
                assert!(returned >= due, "tick {k} returned before it was due");
                assert!(on_grid(start, due, P), "tick {k} off the grid");
                assert!(due > prev, "tick {k} not after tick {}", k - 1);
                if prev_returned < prev + P {
                    // Not late: exactly one period later.
                    assert_eq!(due - prev, P, "tick {k}");
                    exact += 1;
                }
                prev = due;
                prev_returned = returned;
            }
            assert!(exact > 0, "every single tick was late");
        });
    }
}

#[test]
fn missed_ticks_are_skipped_not_bunched() {
    const P: Duration = Duration::from_millis(20);
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        run(flavor, "missed ticks", || async {
            let mut every = interval(P);
            let start = every.tick().await;
            // A busy task: 3.5 periods without yielding (this simulates
            // work; it does not synchronise anything).
            std::thread::sleep(P * 7 / 2);

            let before = Instant::now();
            let second = every
                .tick()
                .now_or_never()
                .expect("a missed tick completes at once");
            let after = Instant::now();
            // The missed tick reports when it was due...
            assert_eq!(second, start + P);
            // ...and the next is on the original grid, at the first slot
            // still ahead when the missed one returned: not start + 2P, 3P.
            let third = every.tick().await;
            let third_returned = Instant::now();
            assert!(on_grid(start, third, P), "third tick off the grid");
            assert!(third >= start + 4 * P, "bunched: {:?}", third - start);
            assert!(third > before, "the third tick was already due");
            assert!(third - P <= after, "a future slot was skipped");
            if after < start + 4 * P {
                assert_eq!(third, start + 4 * P);
            }
            assert!(third_returned >= third, "returned early");
            let fourth = every.tick().await;
            assert!(on_grid(start, fourth, P));
            if third_returned < third + P {
                assert_eq!(fourth, third + P);
            }
        });
    }
}

#[test]
fn poll_tick_works_in_a_manual_poll_fn() {
    for flavor in Flavor::ALL {
        run(flavor, "poll_tick", || async {
            let mut every = interval(ms(2));
            let a = poll_fn(|cx| every.poll_tick(cx)).await;
            let b = poll_fn(|cx| every.poll_tick(cx)).await;
            assert!(b > a && on_grid(a, b, ms(2)));
        });
    }
}

#[test]
fn intervals_in_many_tasks() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(2)] {
        run(flavor, "intervals in tasks", || async {
            let handles: Vec<_> = (1..=20u64)
                .map(|p| {
                    fiber_runtime::spawn(async move {
                        let period = ms(p);
                        let mut every = interval(period);
                        let start = every.tick().await;
                        let mut last = start;
                        for _ in 0..5 {
                            let t = every.tick().await;
                            assert!(t > last && on_grid(start, t, period));
                            assert!(Instant::now() >= t);
                            last = t;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    }
}

#[test]
fn a_zero_period_panics() {
    silence_expected_panics(&[ZERO_PERIOD, OUTSIDE]);
    let rt = util::current_thread();
    {
        let _guard = rt.enter();
        let msg = expect_panic(|| interval(Duration::ZERO));
        assert!(msg.contains(ZERO_PERIOD), "{msg}");
    }
    let msg = expect_panic(|| interval(Duration::ZERO));
    assert!(msg.contains(ZERO_PERIOD), "{msg}");
    // A valid period outside a runtime panics for that reason instead.
    let msg = expect_panic(|| interval(ms(1)));
    assert!(msg.contains(OUTSIDE), "{msg}");
}
