//! Many tasks: 100k spawned from inside and outside the runtime, a chain
//! of 10k tasks each spawning the next, tasks waking each other through
//! oneshot channels, many threads spawning at once. On 1, 2 and 4 workers
//! and on the current-thread flavor.

mod util;

use fiber_runtime::{Handle, JoinHandle, Runtime};
use futures::channel::oneshot;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use util::{Counters, Flavor, tracked};

const FLAVORS: [Flavor; 4] = [
    Flavor::CurrentThread,
    Flavor::MultiThread(1),
    Flavor::MultiThread(2),
    Flavor::MultiThread(4),
];

const MANY: u64 = 100_000;

fn expected_sum(n: u64) -> u64 {
    n * (n - 1) / 2
}

#[test]
fn many_tasks_spawned_from_inside_a_task() {
    for flavor in FLAVORS {
        let rt = flavor.build();
        let sum = rt
            .block_on(rt.spawn(async {
                let handles: Vec<_> = (0..MANY)
                    .map(|i| fiber_runtime::spawn(async move { i }))
                    .collect();
                let mut sum = 0;
                for h in handles {
                    sum += h.await.unwrap();
                }
                sum
            }))
            .unwrap();
        assert_eq!(sum, expected_sum(MANY), "{flavor:?}");
        util::drive_until(&rt, "no task is alive", || {
            rt.metrics().num_alive_tasks() == 0
        });
    }
}

#[test]
fn many_tasks_spawned_from_outside() {
    for flavor in FLAVORS {
        let rt = flavor.build();
        let handles: Vec<_> = (0..MANY).map(|i| rt.spawn(async move { i })).collect();
        let sum = rt.block_on(async {
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, expected_sum(MANY), "{flavor:?}");
    }
}

#[test]
fn many_yielding_tasks_joined_from_a_plain_thread() {
    for flavor in [
        Flavor::MultiThread(1),
        Flavor::MultiThread(2),
        Flavor::MultiThread(4),
    ] {
        let rt = flavor.build();
        let counters = Counters::new();
        let handles: Vec<_> = (0..20_000u64)
            .map(|i| {
                rt.spawn(tracked(&counters, async move {
                    fiber_runtime::yield_now().await;
                    fiber_runtime::yield_now().await;
                    i
                }))
            })
            .collect();
        let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, expected_sum(20_000), "{flavor:?}");
        assert_eq!(counters.drops(), 20_000);
        assert!(counters.polls() >= 3 * 20_000);
    }
}

/// Spawns task `n`, which spawns task `n - 1` and adds one to its output.
fn chain(n: u64) -> JoinHandle<u64> {
    fiber_runtime::spawn(async move {
        if n == 0 {
            0
        } else {
            chain(n - 1).await.unwrap() + 1
        }
    })
}

#[test]
fn a_chain_of_tasks_each_spawning_the_next() {
    for flavor in FLAVORS {
        let rt = flavor.build();
        let depth = rt.block_on(async { chain(10_000).await.unwrap() });
        assert_eq!(depth, 10_000, "{flavor:?}");
    }
}

/// Spawns the next link and exits; the last one reports through `done`.
fn detached_chain(n: u64, done: oneshot::Sender<u64>, visited: Arc<AtomicUsize>) {
    drop(fiber_runtime::spawn(async move {
        visited.fetch_add(1, SeqCst);
        if n == 0 {
            done.send(visited.load(SeqCst) as u64).unwrap();
        } else {
            detached_chain(n - 1, done, visited);
        }
    }));
}

#[test]
fn a_chain_of_detached_tasks() {
    for flavor in FLAVORS {
        let rt = flavor.build();
        let visited = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel();
        let v = visited.clone();
        let count = rt.block_on(async move {
            detached_chain(9_999, tx, v);
            rx.await.unwrap()
        });
        assert_eq!(count, 10_000, "{flavor:?}");
    }
}

#[test]
fn a_ring_of_tasks_passing_a_token_through_oneshots() {
    const N: usize = 10_000;
    for flavor in FLAVORS {
        let rt = flavor.build();
        let (first_tx, mut rx) = oneshot::channel::<u64>();
        // Task i waits for i's message and sends i + 1's; spawned in
        // order, so each wake goes to a task spawned earlier than the one
        // that would naturally run next.
        let mut handles = Vec::with_capacity(N);
        for _ in 0..N {
            let (tx, next_rx) = oneshot::channel::<u64>();
            let this_rx = std::mem::replace(&mut rx, next_rx);
            handles.push(rt.spawn(async move {
                let token = this_rx.await.unwrap();
                tx.send(token + 1).unwrap();
            }));
        }
        first_tx.send(0).unwrap();
        let last = rt.block_on(rx).unwrap();
        assert_eq!(last, N as u64, "{flavor:?}");
        for h in handles {
            rt.block_on(h).unwrap();
        }
    }
}

/// A ping carrying the sender for the reply.
struct Ping(u64, oneshot::Sender<Ping>);

#[test]
fn many_pairs_ping_ponging_through_oneshots() {
    const PAIRS: u64 = 200;
    const ROUNDS: u64 = 50;
    for flavor in FLAVORS {
        let rt = flavor.build();
        let total = rt.block_on(async {
            let mut pingers = Vec::new();
            for _ in 0..PAIRS {
                let (to_pong, mut pong_rx) = oneshot::channel::<Ping>();
                let ponger = fiber_runtime::spawn(async move {
                    loop {
                        let Ok(Ping(n, reply)) = pong_rx.await else {
                            return;
                        };
                        let (tx, rx) = oneshot::channel();
                        if reply.send(Ping(n + 1, tx)).is_err() {
                            return;
                        }
                        pong_rx = rx;
                    }
                });
                let pinger = fiber_runtime::spawn(async move {
                    let mut to_pong = to_pong;
                    let mut n = 0;
                    for _ in 0..ROUNDS {
                        let (tx, rx) = oneshot::channel();
                        assert!(to_pong.send(Ping(n, tx)).is_ok());
                        let Ping(m, next) = rx.await.unwrap();
                        n = m;
                        to_pong = next;
                    }
                    drop(to_pong);
                    n
                });
                pingers.push((pinger, ponger));
            }
            let mut total = 0;
            for (pinger, ponger) in pingers {
                total += pinger.await.unwrap();
                ponger.await.unwrap();
            }
            total
        });
        assert_eq!(total, PAIRS * ROUNDS, "{flavor:?}");
    }
}

#[test]
fn many_threads_spawning_at_once() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 10_000;
    for flavor in [
        Flavor::MultiThread(1),
        Flavor::MultiThread(2),
        Flavor::MultiThread(4),
    ] {
        let rt = flavor.build();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle = rt.handle().clone();
                thread::spawn(move || {
                    let handles: Vec<_> = (0..PER_THREAD)
                        .map(|i| handle.spawn(async move { t * PER_THREAD + i }))
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            })
            .collect();
        let sum: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(sum, expected_sum(THREADS * PER_THREAD), "{flavor:?}");
    }
}

#[test]
fn many_tasks_spawning_tasks_that_spawn_tasks() {
    // A tree: 10 tasks, each spawning 10, each spawning 100 = 10_000
    // leaves, from inside tasks on every worker at once.
    for flavor in FLAVORS {
        let rt = flavor.build();
        let leaves = rt.block_on(async {
            let top: Vec<_> = (0..10)
                .map(|_| {
                    fiber_runtime::spawn(async {
                        let mid: Vec<_> = (0..10)
                            .map(|_| {
                                fiber_runtime::spawn(async {
                                    let leaves: Vec<_> = (0..100)
                                        .map(|_| Handle::current().spawn(async { 1u64 }))
                                        .collect();
                                    let mut n = 0;
                                    for l in leaves {
                                        n += l.await.unwrap();
                                    }
                                    n
                                })
                            })
                            .collect();
                        let mut n = 0;
                        for m in mid {
                            n += m.await.unwrap();
                        }
                        n
                    })
                })
                .collect();
            let mut n = 0;
            for t in top {
                n += t.await.unwrap();
            }
            n
        });
        assert_eq!(leaves, 10_000, "{flavor:?}");
    }
}

#[test]
fn aborting_many_pending_tasks() {
    for flavor in FLAVORS {
        let rt: Runtime = flavor.build();
        let counters = Counters::new();
        let handles: Vec<_> = (0..10_000)
            .map(|_| rt.spawn(tracked(&counters, std::future::pending::<()>())))
            .collect();
        for h in &handles {
            h.abort();
        }
        for h in handles {
            assert!(rt.block_on(h).unwrap_err().is_cancelled());
        }
        assert_eq!(counters.drops(), 10_000, "{flavor:?}");
    }
}

#[test]
fn dropping_join_handles_while_tasks_complete() {
    const N: usize = 20_000;
    for flavor in FLAVORS {
        let rt = flavor.build();
        let counters = Counters::new();
        let outputs = Arc::new(AtomicUsize::new(0));
        for i in 0..N {
            let o = outputs.clone();
            let h = rt.spawn(tracked(&counters, async move {
                if i % 2 == 0 {
                    fiber_runtime::yield_now().await;
                }
                util::DropToken::new(i as u64, &o)
            }));
            // Races with the task completing on another worker.
            drop(h);
        }
        util::drive_until(&rt, "every output was dropped", || {
            outputs.load(SeqCst) == N
        });
        util::drive_until(&rt, "no task is alive", || {
            rt.metrics().num_alive_tasks() == 0
        });
        drop(rt);
        assert_eq!(counters.drops(), N, "{flavor:?}");
        assert_eq!(
            outputs.load(SeqCst),
            N,
            "{flavor:?}: an output dropped twice"
        );
    }
}

#[test]
fn aborting_tasks_while_they_complete() {
    const N: usize = 20_000;
    for flavor in FLAVORS {
        let rt = flavor.build();
        let counters = Counters::new();
        let outputs = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let o = outputs.clone();
                rt.spawn(tracked(&counters, async move {
                    if i % 2 == 0 {
                        fiber_runtime::yield_now().await;
                    }
                    util::DropToken::new(i as u64, &o)
                }))
            })
            .collect();
        for h in &handles {
            h.abort();
        }
        let mut completed = 0;
        for h in handles {
            match rt.block_on(h) {
                Ok(token) => {
                    completed += 1;
                    drop(token);
                }
                Err(e) => assert!(e.is_cancelled(), "{flavor:?}: {e}"),
            }
        }
        drop(rt);
        assert_eq!(counters.drops(), N, "{flavor:?}");
        // Exactly the outputs handed over were produced and dropped.
        assert_eq!(outputs.load(SeqCst), completed, "{flavor:?}");
    }
}

/// Tasks pushed from outside while both workers sleep: one worker may
/// take them all from the injector into its own queue and then block in
/// the first; the other must be woken to steal the rest. (A lost wakeup
/// here left the second plug task queued behind the first forever, and
/// `plug_workers` timed out.)
#[test]
fn an_injector_batch_taken_by_one_worker_reaches_its_parked_peer() {
    for _ in 0..300 {
        // No hand-off: a replacement thread would run the plug task a lost
        // wakeup strands, and hide the loss.
        let rt = util::multi_thread_without_handoff(2);
        util::plug_workers(&rt, 2).release();
    }
}
