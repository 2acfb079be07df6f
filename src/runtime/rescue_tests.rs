//! A whole runtime's test of `scheduler/multi_thread/rescue.rs`: tasks
//! woken by a ring's completions queue without waking a parked peer, and
//! none is stranded.

use crate::runtime::TaskState;
use crate::scheduler::{self, context};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Pending (keeping its waker in `slot`) until `go` is set.
struct Gate {
    go: Arc<AtomicBool>,
    slot: Arc<Mutex<Option<Waker>>>,
}

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.go.load(Acquire) {
            return Poll::Ready(());
        }
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Tasks woken as a ring's completions wake them queue without waking a
/// parked peer. One such task queued behind a poll that waits for it
/// still runs: a peer takes it, woken at once (the first round) or from a
/// bounded park (later rounds, the flag still set). A task wakes `b`,
/// then `a`, as one ring batch on its worker once the peers parked: `a`
/// takes the LIFO slot (polled next, there) and `b` the queue; `a` spins
/// until `b` ran, so only a peer can run `b`.
#[test]
fn a_ring_woken_task_queued_behind_a_poll_that_waits_for_it_still_runs() {
    queued_behind_a_poll_that_waits_for_it(2);
}

/// The same with two peers, both woken when the flag is set (`rescue.rs`,
/// step 1).
#[test]
fn a_ring_woken_task_is_found_with_two_parked_peers() {
    queued_behind_a_poll_that_waits_for_it(3);
}

fn queued_behind_a_poll_that_waits_for_it(workers: usize) {
    // Without the hand-off of a stuck worker, which would rescue it too
    // (after the long-poll threshold).
    let rt = crate::Builder::new_multi_thread()
        .worker_threads(workers)
        .worker_handoff(false)
        .build()
        .unwrap();
    for round in 0..50 {
        let go = Arc::new(AtomicBool::new(false));
        let b_ran = Arc::new(AtomicBool::new(false));
        let slots = [(); 2].map(|_| Arc::new(Mutex::new(None::<Waker>)));
        let gate = |i: usize| Gate {
            go: go.clone(),
            slot: slots[i].clone(),
        };
        let a = rt.spawn({
            let (gate, b_ran) = (gate(0), b_ran.clone());
            async move {
                gate.await;
                // A poll that does not end until `b` ran (a guard
                // instead of a hang if nobody ever runs it).
                let start = Instant::now();
                while !b_ran.load(Acquire) {
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "round {round}: the queued task never ran"
                    );
                    std::hint::spin_loop();
                }
            }
        });
        let b = rt.spawn({
            let (gate, b_ran) = (gate(1), b_ran.clone());
            async move {
                gate.await;
                b_ran.store(true, Release);
            }
        });
        // Both wait at their gate (not running), so the wakes below
        // queue them.
        let ids = [a.id(), b.id()];
        while rt
            .handle()
            .dump()
            .tasks()
            .filter(|t| ids.contains(&t.id()) && t.state() == TaskState::Idle)
            .count()
            < 2
        {
            std::thread::yield_now();
        }
        go.store(true, Release);
        let wakers = slots.map(|s| s.lock().unwrap().take().expect("a gate's waker"));
        rt.block_on(rt.spawn(async move {
            let [wa, wb] = wakers;
            context::with_scheduler(|cx| {
                let Some(scheduler::Context::MultiThread(cx)) = cx else {
                    unreachable!("a task of a multi-thread runtime off its workers")
                };
                cx.wake_as_ring_batch_once_the_peers_park(vec![wb, wa]);
            });
        }))
        .unwrap();
        rt.block_on(async {
            a.await.unwrap();
            b.await.unwrap();
        });
    }
}
