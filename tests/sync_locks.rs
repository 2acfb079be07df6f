//! `sync` locks and events (Mutex, RwLock, Semaphore, Notify, Barrier)
//! from all three kinds of caller: async tasks, fibers, plain threads;
//! and the ways to break them: cancellation at every step, aborting a
//! parked fiber, the wrong caller, dropping the runtime under waiters.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::sync::{Barrier, Mutex, Notify, RwLock, Semaphore, TryAcquireError};
use fiber_runtime::{fiber, time};
use futures::future::{Either, select};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::Waker;
use util::{Flavor, join_thread_result, ms, poll_once, run, run_with_timeout};

/// Marks a critical section; fails if two are inside at once.
struct Exclusive(AtomicBool);

impl Exclusive {
    fn enter(&self) {
        assert!(
            !self.0.swap(true, SeqCst),
            "two holders inside the lock at once"
        );
    }
    fn leave(&self) {
        self.0.store(false, SeqCst);
    }
}

/// One Mutex, three kinds of caller, each yielding inside the critical
/// section so that the others queue: every increment lands, and never two
/// holders at once.
#[test]
fn one_mutex_serves_tasks_fibers_and_a_plain_thread() {
    const ROUNDS: usize = 200;
    for flavor in Flavor::ALL {
        let total = run(flavor, "mixed Mutex", || async {
            let m = Arc::new(Mutex::new(0usize));
            let ex = Arc::new(Exclusive(AtomicBool::new(false)));
            let mut tasks = Vec::new();
            for _ in 0..3 {
                let (m, ex) = (m.clone(), ex.clone());
                tasks.push(fiber_runtime::spawn(async move {
                    for _ in 0..ROUNDS {
                        let mut g = m.lock().await;
                        ex.enter();
                        fiber_runtime::yield_now().await;
                        *g += 1;
                        ex.leave();
                    }
                }));
            }
            for _ in 0..3 {
                let (m, ex) = (m.clone(), ex.clone());
                tasks.push(fiber::spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut g = m.blocking_lock();
                        ex.enter();
                        fiber::yield_now();
                        *g += 1;
                        ex.leave();
                    }
                }));
            }
            let thread = {
                let (m, ex) = (m.clone(), ex.clone());
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut g = m.blocking_lock();
                        ex.enter();
                        std::thread::yield_now();
                        *g += 1;
                        ex.leave();
                    }
                })
            };
            for t in tasks {
                t.await.unwrap();
            }
            // The thread may still be queued: wait for it without blocking
            // the runtime.
            assert!(
                join_thread_result(thread).await.is_ok(),
                "the plain thread panicked"
            );
            *m.lock().await
        });
        assert_eq!(total, 7 * ROUNDS, "{flavor:?}");
    }
}

/// The bug the issue starts from: with `std::sync::Mutex`, two fibers
/// sharing it across `fiber::sleep` deadlock a one-thread runtime. With
/// ours, the holder sleeps while the worker runs the waiting fiber's
/// neighbours: a task that must run on the same thread finishes, and a
/// `timeout` elsewhere fires, while the guard is held.
#[test]
fn a_fiber_holds_the_guard_across_a_sleep_while_the_worker_runs_others() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        let log = run(flavor, "guard across sleep", || async {
            let m = Arc::new(Mutex::new(Vec::new()));
            let (held_tx, held_rx) = fiber_runtime::sync::oneshot::channel();
            let (go_tx, go_rx) = fiber_runtime::sync::oneshot::channel::<()>();
            let a = m.clone();
            let holder = fiber::spawn(move || {
                let mut g = a.blocking_lock();
                held_tx.send(()).unwrap();
                // Suspended with the guard held, until others have run.
                fiber::wait(go_rx).unwrap();
                fiber::sleep(ms(1));
                g.push("holder");
            });
            held_rx.await.unwrap();
            let b = m.clone();
            let waiter = fiber::spawn(move || b.blocking_lock().push("waiter"));
            // Work that needs the (only) worker while the guard is held.
            let timed_out = time::timeout(ms(1), std::future::pending::<()>()).await;
            assert!(timed_out.is_err());
            let task = fiber_runtime::spawn(async { 5 }).await.unwrap();
            assert_eq!(task, 5);
            assert!(m.try_lock().is_err(), "the holder still has it");
            go_tx.send(()).unwrap();
            holder.await.unwrap();
            waiter.await.unwrap();
            m.lock().await.clone()
        });
        assert_eq!(log, ["holder", "waiter"], "{flavor:?}: FIFO, and both ran");
    }
}

/// Dropping a queued `lock()` future, before or after the lock was
/// handed to it, passes the lock on; nothing is stuck.
#[test]
fn a_dropped_lock_future_passes_the_lock_on() {
    let m = Mutex::new(0);
    let w = Waker::noop();
    let guard = m.try_lock().unwrap();
    let mut a = Box::pin(m.lock());
    let mut b = Box::pin(m.lock());
    let mut c = Box::pin(m.lock());
    assert!(poll_once(&mut a, w).is_pending());
    assert!(poll_once(&mut b, w).is_pending());
    assert!(poll_once(&mut c, w).is_pending());
    // `b` leaves the queue before its turn.
    drop(b);
    drop(guard);
    // The lock went to `a`, which is dropped before it sees so.
    drop(a);
    match poll_once(&mut c, w) {
        std::task::Poll::Ready(mut g) => *g += 1,
        std::task::Poll::Pending => panic!("the lock was lost with a dropped waiter"),
    }
    drop(c);
    assert_eq!(*m.try_lock().unwrap(), 1);
}

/// Many tasks and fibers race `lock()` against a yield and drop whichever
/// loses, at every point of the hand-off: at the end every waiter has
/// finished, the increments equal the acquisitions, and the lock is free.
#[test]
fn racing_lock_against_cancellation_loses_nothing() {
    for flavor in Flavor::ALL {
        let (count, acquired) = run(flavor, "lock vs cancel", || async {
            let m = Arc::new(Mutex::new(0usize));
            let acquired = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::new();
            for i in 0..8 {
                let (m, acquired) = (m.clone(), acquired.clone());
                let body = async move {
                    for _ in 0..300 {
                        let lock = pin!(m.lock());
                        let other = pin!(fiber_runtime::yield_now());
                        if let Either::Left((mut g, _)) = select(lock, other).await {
                            *g += 1;
                            acquired.fetch_add(1, SeqCst);
                        }
                    }
                };
                if i % 2 == 0 {
                    handles.push(fiber_runtime::spawn(body));
                } else {
                    handles.push(fiber::spawn(move || fiber::wait(body)));
                }
            }
            for h in handles {
                h.await.unwrap();
            }
            assert!(m.try_lock().is_ok(), "the lock is stuck");
            let c = *m.lock().await;
            (c, acquired.load(SeqCst))
        });
        assert_eq!(count, acquired, "{flavor:?}");
        assert!(acquired > 0, "{flavor:?}: nobody got the lock");
    }
}

/// A fiber parked in `blocking_lock` that is aborted leaves the queue:
/// the lock goes to the waiter behind it, and then is free.
#[test]
fn aborting_a_fiber_parked_in_blocking_lock_takes_it_off_the_queue() {
    for flavor in Flavor::ALL {
        run(flavor, "abort parked fiber", || async {
            let m = Arc::new(Mutex::new(Vec::new()));
            let guard = m.clone().lock_owned().await;
            // The fiber counts itself right before it blocks; the abort
            // comes once it is there (parked, or about to: an abort that
            // lands before the wait gives the same result).
            let waiting = Arc::new(AtomicUsize::new(0));
            let (m1, w) = (m.clone(), waiting.clone());
            let parked = fiber::spawn(move || {
                w.fetch_add(1, SeqCst);
                m1.blocking_lock().push("aborted")
            });
            while waiting.load(SeqCst) < 1 {
                fiber_runtime::yield_now().await;
            }
            parked.abort();
            let err = parked.await.unwrap_err();
            assert!(err.is_cancelled(), "{err}");
            let m2 = m.clone();
            let behind = fiber::spawn(move || m2.blocking_lock().push("behind"));
            drop(guard);
            behind.await.unwrap();
            assert_eq!(*m.try_lock().expect("free at the end"), ["behind"]);
        });
    }
}

/// The wrong caller: every `blocking_*` lock and event method, called in
/// an async task, panics naming the async method to `.await` instead
/// (and never deadlocks the worker).
#[test]
fn blocking_calls_in_an_async_task_panic_naming_the_async_method() {
    util::silence_expected_panics(&["was called from an async task"]);
    let rt = util::multi_thread(1);
    let m = Arc::new(Mutex::new(()));
    let rw = Arc::new(RwLock::new(()));
    let sem = Arc::new(Semaphore::new(1));
    let notify = Arc::new(Notify::new());
    let barrier = Arc::new(Barrier::new(1));
    type Call = Box<dyn FnOnce() + Send>;
    /// `f` on a clone of `x`, boxed for the table.
    fn call<T: Send + Sync + 'static>(x: &Arc<T>, f: impl FnOnce(&T) + Send + 'static) -> Call {
        let x = x.clone();
        Box::new(move || f(&x))
    }
    let calls: Vec<(&str, Call)> = vec![
        ("`Mutex::lock`", call(&m, |m| drop(m.blocking_lock()))),
        ("`RwLock::read`", call(&rw, |rw| drop(rw.blocking_read()))),
        ("`RwLock::write`", call(&rw, |rw| drop(rw.blocking_write()))),
        (
            "`Semaphore::acquire`",
            call(&sem, |s| drop(s.blocking_acquire())),
        ),
        (
            "`Notify::notified`",
            call(&notify, |n| n.blocking_notified()),
        ),
        (
            "`Barrier::wait`",
            call(&barrier, |b| {
                b.blocking_wait();
            }),
        ),
    ];
    for (name, call) in calls {
        let msg = rt.block_on(rt.spawn(async move { call() })).unwrap_err();
        let msg = util::panic_message(&*msg.into_panic()).unwrap();
        assert!(msg.contains(name), "{name}: {msg}");
    }
    // Nothing was left held or queued.
    assert!(m.try_lock().is_ok());
    assert!(rw.try_write().is_ok());
    assert_eq!(sem.available_permits(), 1);
    assert_eq!(notify.waiter_count(), 0);
}

/// A writer waiting for readers holds back the readers after it (no
/// writer starvation); readers queued behind it get in together after it.
#[test]
fn rwlock_is_fair_to_writers_and_batches_readers() {
    let lock = RwLock::new(0);
    let w = Waker::noop();
    let r1 = lock.try_read().unwrap();
    let mut writer = Box::pin(lock.write());
    assert!(poll_once(&mut writer, w).is_pending());
    assert!(
        lock.try_read().is_err(),
        "a reader overtook the queued writer"
    );
    let mut r2 = Box::pin(lock.read());
    let mut r3 = Box::pin(lock.read());
    assert!(poll_once(&mut r2, w).is_pending());
    assert!(poll_once(&mut r3, w).is_pending());
    drop(r1);
    let std::task::Poll::Ready(mut g) = poll_once(&mut writer, w) else {
        panic!("the writer did not get the lock after the reader left");
    };
    *g = 1;
    assert!(poll_once(&mut r2, w).is_pending());
    drop(g);
    let (std::task::Poll::Ready(a), std::task::Poll::Ready(b)) =
        (poll_once(&mut r2, w), poll_once(&mut r3, w))
    else {
        panic!("the queued readers did not get in together");
    };
    assert_eq!((*a, *b), (1, 1));
}

/// Readers (tasks) and writers (fibers and a thread) at once: a writer is
/// always alone, readers never see a half-done write.
#[test]
fn rwlock_serves_readers_and_writers_of_every_kind() {
    for flavor in Flavor::ALL {
        let v = run(flavor, "mixed RwLock", || async {
            let lock = Arc::new(RwLock::new((0u64, 0u64)));
            let readers_in = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::new();
            for _ in 0..3 {
                let (lock, readers_in) = (lock.clone(), readers_in.clone());
                handles.push(fiber_runtime::spawn(async move {
                    for _ in 0..200 {
                        let g = lock.read().await;
                        readers_in.fetch_add(1, SeqCst);
                        assert_eq!(g.0, g.1, "a reader saw a half-done write");
                        fiber_runtime::yield_now().await;
                        readers_in.fetch_sub(1, SeqCst);
                    }
                }));
            }
            for _ in 0..2 {
                let (lock, readers_in) = (lock.clone(), readers_in.clone());
                handles.push(fiber::spawn(move || {
                    for _ in 0..100 {
                        let mut g = lock.blocking_write();
                        assert_eq!(readers_in.load(SeqCst), 0, "a reader beside a writer");
                        g.0 += 1;
                        fiber::yield_now();
                        g.1 += 1;
                    }
                }));
            }
            let thread = {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let mut g = lock.blocking_write();
                        g.0 += 1;
                        g.1 += 1;
                    }
                })
            };
            for h in handles {
                h.await.unwrap();
            }
            assert!(join_thread_result(thread).await.is_ok());
            *lock.read().await
        });
        assert_eq!(v, (300, 300), "{flavor:?}");
    }
}

/// Semaphore: a waiter for many permits is served before later waiters
/// for few; `close` fails fibers and tasks that wait; `add_permits` beyond
/// the maximum panics and leaves the semaphore usable.
#[test]
fn semaphore_fairness_close_and_bad_input() {
    let sem = Semaphore::new(1);
    let w = Waker::noop();
    let mut big = Box::pin(sem.acquire_many(3));
    assert!(poll_once(&mut big, w).is_pending());
    let mut small = Box::pin(sem.acquire());
    assert!(
        poll_once(&mut small, w).is_pending(),
        "a small waiter overtook"
    );
    sem.add_permits(2);
    assert!(poll_once(&mut big, w).is_ready());
    drop(big);
    assert!(poll_once(&mut small, w).is_ready());
    drop(small);
    assert_eq!(sem.available_permits(), 3);

    let msg = util::expect_panic(|| sem.add_permits(Semaphore::MAX_PERMITS));
    assert!(msg.contains("at most"), "{msg}");
    assert_eq!(
        sem.available_permits(),
        3,
        "a refused add changed the count"
    );
    let msg = util::expect_panic(|| Semaphore::new(Semaphore::MAX_PERMITS + 1));
    assert!(msg.contains("at most"), "{msg}");

    for flavor in Flavor::ALL {
        run(flavor, "close wakes waiters", || async {
            let sem = Arc::new(Semaphore::new(0));
            // Each waiter counts itself right before it blocks; `close`
            // comes once both are there.
            let waiting = Arc::new(AtomicUsize::new(0));
            let (s, w) = (sem.clone(), waiting.clone());
            let fiber = fiber::spawn(move || {
                w.fetch_add(1, SeqCst);
                s.blocking_acquire().map(|p| p.forget())
            });
            let (s, w) = (sem.clone(), waiting.clone());
            let task = fiber_runtime::spawn(async move {
                w.fetch_add(1, SeqCst);
                s.acquire().await.map(|p| p.forget())
            });
            while waiting.load(SeqCst) < 2 {
                fiber_runtime::yield_now().await;
            }
            sem.close();
            assert!(fiber.await.unwrap().is_err());
            assert!(task.await.unwrap().is_err());
            assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
        });
    }
}

/// A semaphore's permits are conserved under cancellation racing
/// hand-offs, from tasks and fibers.
#[test]
fn semaphore_permits_survive_cancellation() {
    for flavor in Flavor::ALL {
        run(flavor, "semaphore vs cancel", || async {
            let sem = Arc::new(Semaphore::new(3));
            let mut handles = Vec::new();
            for i in 0..8u32 {
                let sem = sem.clone();
                let body = async move {
                    for _ in 0..300 {
                        let acq = pin!(sem.acquire_many(1 + i % 3));
                        let other = pin!(fiber_runtime::yield_now());
                        if let Either::Left((p, _)) = select(acq, other).await {
                            let _p = p.unwrap();
                            fiber_runtime::yield_now().await;
                        }
                    }
                };
                if i % 2 == 0 {
                    handles.push(fiber_runtime::spawn(body));
                } else {
                    handles.push(fiber::spawn(move || fiber::wait(body)));
                }
            }
            for h in handles {
                h.await.unwrap();
            }
            assert_eq!(sem.available_permits(), 3, "permits lost or made up");
        });
    }
}

/// Notify across callers: a thread wakes a fiber, a fiber wakes a task;
/// a parked fiber that is aborted leaves the list, and the next
/// `notify_one` is stored for the next waiter.
#[test]
fn notify_across_callers_and_abort() {
    for flavor in Flavor::ALL {
        run(flavor, "notify", || async {
            let n = Arc::new(Notify::new());
            let n1 = n.clone();
            let fiber = fiber::spawn(move || n1.blocking_notified());
            while n.waiter_count() == 0 {
                fiber_runtime::yield_now().await;
            }
            let n2 = n.clone();
            std::thread::spawn(move || n2.notify_one());
            fiber.await.unwrap();

            let n3 = n.clone();
            let parked = fiber::spawn(move || n3.blocking_notified());
            while n.waiter_count() == 0 {
                fiber_runtime::yield_now().await;
            }
            parked.abort();
            assert!(parked.await.unwrap_err().is_cancelled());
            assert_eq!(n.waiter_count(), 0, "the aborted fiber is still queued");
            n.notify_one();
            // Stored: taken at once.
            n.notified().await;
        });
    }
}

/// A barrier of a task, two fibers and a plain thread, many rounds: one
/// leader per round, and nobody starts round r + 1 before all finished r.
#[test]
fn barrier_rounds_across_callers() {
    const ROUNDS: usize = 50;
    for flavor in Flavor::ALL {
        run(flavor, "barrier", || async {
            let b = Arc::new(Barrier::new(4));
            let arrived = Arc::new(AtomicUsize::new(0));
            let leaders = Arc::new(AtomicUsize::new(0));
            let party = {
                let (b, arrived, leaders) = (b.clone(), arrived.clone(), leaders.clone());
                move |wait: &dyn Fn(&Barrier) -> bool| {
                    for round in 0..ROUNDS {
                        arrived.fetch_add(1, SeqCst);
                        if wait(&b) {
                            leaders.fetch_add(1, SeqCst);
                        }
                        let seen = arrived.load(SeqCst);
                        assert!(seen >= 4 * (round + 1), "passed before all arrived");
                    }
                }
            };
            let mut fibers = Vec::new();
            for _ in 0..2 {
                let party = party.clone();
                fibers.push(fiber::spawn(move || {
                    party(&|b| b.blocking_wait().is_leader())
                }));
            }
            let p = party.clone();
            let thread = std::thread::spawn(move || p(&|b| b.blocking_wait().is_leader()));
            for round in 0..ROUNDS {
                arrived.fetch_add(1, SeqCst);
                if b.wait().await.is_leader() {
                    leaders.fetch_add(1, SeqCst);
                }
                assert!(arrived.load(SeqCst) >= 4 * (round + 1));
            }
            for f in fibers {
                f.await.unwrap();
            }
            assert!(join_thread_result(thread).await.is_ok());
            assert_eq!(leaders.load(SeqCst), ROUNDS, "one leader per round");
        });
    }
}

/// Dropping the runtime while fibers wait in `blocking_lock`,
/// `blocking_acquire` and `blocking_notified`: no hang, each waiter is
/// unwound off its list, and the primitives work afterwards.
#[test]
fn dropping_the_runtime_under_parked_fibers_leaves_the_locks_usable() {
    for flavor in Flavor::ALL {
        let (m, sem, n) = run_with_timeout("drop runtime under waiters", move || {
            let rt = flavor.build();
            let m = Arc::new(Mutex::new(0));
            let sem = Arc::new(Semaphore::new(0));
            let n = Arc::new(Notify::new());
            let guard = rt.block_on(m.clone().lock_owned());
            let started = Arc::new(AtomicUsize::new(0));
            for _ in 0..4 {
                let (m, sem, n, started) = (m.clone(), sem.clone(), n.clone(), started.clone());
                let _in = rt.enter();
                drop(fiber::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    *m.blocking_lock() += 1;
                    sem.blocking_acquire().unwrap().forget();
                    n.blocking_notified();
                }));
            }
            util::drive_until(&rt, "every fiber started", || started.load(SeqCst) == 4);
            drop(rt);
            drop(guard);
            (m, sem, n)
        });
        assert_eq!(*m.try_lock().expect("the lock is stuck"), 0, "{flavor:?}");
        sem.add_permits(1);
        assert!(
            sem.try_acquire().is_ok(),
            "{flavor:?}: a dead waiter took the permit"
        );
        assert_eq!(n.waiter_count(), 0, "{flavor:?}");
    }
}
