//! Every combination of how a task ends and how its `JoinHandle` is used,
//! on both flavors, with the exact outcome asserted and the future
//! dropped exactly once in every case.
//!
//! Dimensions:
//!
//! - **output**: the task returns a value, or panics;
//! - **abort**: none, before the task's first poll, while it is pending
//!   (after its first poll), or after it completed;
//! - **join**: the handle is dropped before completion (before the first
//!   poll, or while the task is pending), or kept and awaited, with the
//!   join starting before the task finishes (the handle is polled first)
//!   or after it finished.
//!
//! The order of events is fixed with a [`Gate`] the task waits on and, on
//! the multi-thread flavor, by plugging every worker while the "before the
//! first poll" steps run, so no scenario depends on timing.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;
use util::{
    Counters, CountingWaker, DropToken, Flavor, Gate, drive_until, drive_yields, plug_workers,
    poll_once, tracked,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Value,
    Panic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abort {
    None,
    BeforeFirstPoll,
    WhilePending,
    AfterCompletion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Join {
    DropBeforeFirstPoll,
    DropWhilePending,
    /// The handle is polled (and pending) before the task finishes.
    AwaitBeforeFinish,
    /// The handle is first polled after the task finished.
    AwaitAfterFinish,
}

const ABORTS: [Abort; 4] = [
    Abort::None,
    Abort::BeforeFirstPoll,
    Abort::WhilePending,
    Abort::AfterCompletion,
];
const JOINS: [Join; 4] = [
    Join::DropBeforeFirstPoll,
    Join::DropWhilePending,
    Join::AwaitBeforeFinish,
    Join::AwaitAfterFinish,
];

const VALUE: u64 = 42;
/// Contains `util::EXPECTED_PANIC`, so the panic hook keeps it quiet.
const PANIC_MSG: &str = "expected panic: task combination";

/// Whether the combination can happen at all.
fn is_possible(abort: Abort, join: Join) -> bool {
    let dropped = matches!(join, Join::DropBeforeFirstPoll | Join::DropWhilePending);
    match abort {
        // Aborting needs the handle, which is gone before completion.
        Abort::AfterCompletion => !dropped,
        Abort::WhilePending => join != Join::DropBeforeFirstPoll,
        // An aborted-before-polled task is never pending.
        Abort::BeforeFirstPoll => join != Join::DropWhilePending,
        Abort::None => true,
    }
}

fn run_all(flavor: Flavor, output: Output) {
    util::silence_expected_panics(&[]);
    let mut ran = 0;
    for abort in ABORTS {
        for join in JOINS {
            if is_possible(abort, join) {
                run(flavor, output, abort, join);
                ran += 1;
            }
        }
    }
    assert_eq!(ran, 12);
}

fn run(flavor: Flavor, output: Output, abort: Abort, join: Join) {
    let ctx = format!("{flavor:?} / {output:?} / abort {abort:?} / join {join:?}");
    let rt = flavor.build_without_handoff();
    let counters = Counters::new();
    let output_drops = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();

    // No worker may poll the task until the "before first poll" steps ran.
    let plug = match flavor {
        Flavor::MultiThread(n) => Some(plug_workers(&rt, n)),
        Flavor::CurrentThread => None,
    };
    let (g, d) = (gate.clone(), output_drops.clone());
    let mut handle = Some(rt.spawn(tracked(&counters, async move {
        g.wait().await;
        if output == Output::Panic {
            panic!("{PANIC_MSG}");
        }
        DropToken::new(VALUE, &d)
    })));

    let (join_wakes, join_waker) = CountingWaker::new();
    if join == Join::AwaitBeforeFinish {
        let h = handle.as_mut().unwrap();
        assert!(poll_once(h, &join_waker).is_pending(), "{ctx}");
    }
    if abort == Abort::BeforeFirstPoll {
        handle.as_ref().unwrap().abort();
    }
    if join == Join::DropBeforeFirstPoll {
        drop(handle.take());
    }
    assert_eq!(counters.polls(), 0, "{ctx}: polled too early");
    if let Some(plug) = plug {
        plug.release();
    }

    let cancelled = matches!(abort, Abort::BeforeFirstPoll | Abort::WhilePending);
    if abort == Abort::BeforeFirstPoll {
        drive_until(&rt, "the aborted task is cancelled", || {
            counters.drops() == 1
        });
        assert_eq!(
            counters.polls(),
            0,
            "{ctx}: a task aborted before its first poll was polled"
        );
    } else {
        drive_until(&rt, "the task waits on the gate", || {
            gate.registrations() == 1
        });
        assert_eq!(counters.polls(), 1, "{ctx}");
        assert_eq!(counters.drops(), 0, "{ctx}");
        if abort == Abort::WhilePending {
            handle.as_ref().unwrap().abort();
            if join == Join::DropWhilePending {
                drop(handle.take());
            }
            drive_until(&rt, "the aborted task is cancelled", || {
                counters.drops() == 1
            });
            // Nothing may poll the future again, even when woken.
            gate.open();
            drive_yields(&rt, 10);
            assert_eq!(counters.polls(), 1, "{ctx}: polled after abort");
        } else {
            if join == Join::DropWhilePending {
                drop(handle.take());
            }
            gate.open();
            drive_until(&rt, "the task finished", || counters.drops() == 1);
            assert_eq!(counters.polls(), 2, "{ctx}");
        }
    }

    // The task has finished (its future is gone).
    assert_eq!(counters.drops(), 1, "{ctx}");
    let produced_value = output == Output::Value && !cancelled;
    match &handle {
        Some(h) => {
            drive_until(&rt, "the handle reports the task finished", || {
                h.is_finished()
            });
            assert_eq!(
                output_drops.load(SeqCst),
                0,
                "{ctx}: output dropped under the handle"
            );
        }
        None => {
            // Nobody will read the output: the runtime drops it.
            let expected = usize::from(produced_value);
            drive_until(&rt, "the output was dropped", || {
                output_drops.load(SeqCst) == expected
            });
        }
    }
    if join == Join::AwaitBeforeFinish {
        drive_until(&rt, "the join waker was woken", || join_wakes.wakes() >= 1);
    }
    if abort == Abort::AfterCompletion {
        let h = handle.as_ref().unwrap();
        h.abort();
        assert!(h.is_finished(), "{ctx}");
    }

    if let Some(mut h) = handle.take() {
        // Finished: the handle is ready at once.
        let res = match poll_once(&mut h, &join_waker) {
            Poll::Ready(res) => res,
            Poll::Pending => panic!("{ctx}: a finished task's handle is pending"),
        };
        drop(h);
        match (cancelled, output, res) {
            (true, _, Err(e)) => {
                assert!(e.is_cancelled() && !e.is_panic(), "{ctx}: {e}");
                assert_eq!(e.to_string(), "task was cancelled", "{ctx}");
            }
            (false, Output::Panic, Err(e)) => {
                assert!(e.is_panic() && !e.is_cancelled(), "{ctx}: {e}");
                let payload = e.into_panic();
                assert_eq!(
                    util::panic_message(&*payload).as_deref(),
                    Some(PANIC_MSG),
                    "{ctx}"
                );
            }
            (false, Output::Value, Ok(token)) => {
                assert_eq!(token.value, VALUE, "{ctx}");
                assert_eq!(output_drops.load(SeqCst), 0, "{ctx}");
                drop(token);
                assert_eq!(output_drops.load(SeqCst), 1, "{ctx}");
            }
            (_, _, Ok(_)) => panic!("{ctx}: expected an error, got the output"),
            (_, _, Err(e)) => panic!("{ctx}: unexpected error {e}"),
        }
    }

    drive_until(&rt, "no task is alive", || {
        rt.metrics().num_alive_tasks() == 0
    });
    let polls = counters.polls();
    drop(rt);
    assert_eq!(
        counters.drops(),
        1,
        "{ctx}: the future was dropped more than once"
    );
    assert_eq!(counters.polls(), polls, "{ctx}");
    assert_eq!(
        output_drops.load(SeqCst),
        usize::from(produced_value),
        "{ctx}"
    );
}

#[test]
fn current_thread_value() {
    run_all(Flavor::CurrentThread, Output::Value);
}

#[test]
fn current_thread_panic() {
    run_all(Flavor::CurrentThread, Output::Panic);
}

#[test]
fn multi_thread_1_value() {
    run_all(Flavor::MultiThread(1), Output::Value);
}

#[test]
fn multi_thread_1_panic() {
    run_all(Flavor::MultiThread(1), Output::Panic);
}

#[test]
fn multi_thread_2_value() {
    run_all(Flavor::MultiThread(2), Output::Value);
}

#[test]
fn multi_thread_2_panic() {
    run_all(Flavor::MultiThread(2), Output::Panic);
}
