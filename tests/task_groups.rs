//! `task::JoinSet`, `task::Builder`, task ids, `AbortHandle`, and the
//! locals (`task_local!`, `fiber_local!`), including the ways to break
//! them: cancellation, dropping the set, the wrong caller, and thread
//! state that must not leak from one fiber to the next.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::task::{self, JoinSet};
use fiber_runtime::{fiber, sync, time};
use std::cell::Cell;
use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use util::{DropToken, Flavor, expect_panic, ms, poll_once, run};

#[test]
fn join_set_yields_every_task_and_fiber_output_once() {
    for flavor in Flavor::ALL {
        let got = run(flavor, "join set", || async {
            let mut set = JoinSet::new();
            for i in 0..50u64 {
                set.spawn(async move {
                    fiber_runtime::yield_now().await;
                    i
                });
                set.spawn_fiber(move || {
                    fiber::yield_now();
                    1000 + i
                });
            }
            assert_eq!(set.len(), 100);
            let mut got = Vec::new();
            while let Some(res) = set.join_next().await {
                got.push(res.unwrap());
                assert_eq!(set.len(), 100 - got.len());
            }
            assert!(set.is_empty());
            got
        });
        let mut want: Vec<u64> = (0..50).chain(1000..1050).collect();
        let mut got = got;
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{flavor:?}");
    }
}

#[test]
fn join_set_returns_members_in_completion_order() {
    run(Flavor::CurrentThread, "order", || async {
        let (tx_a, rx_a) = sync::oneshot::channel::<u8>();
        let (tx_b, rx_b) = sync::oneshot::channel::<u8>();
        let mut set = JoinSet::new();
        set.spawn(async move { rx_a.await.unwrap() });
        set.spawn_fiber(move || rx_b.blocking_recv().unwrap());
        tx_b.send(2).unwrap();
        assert_eq!(set.join_next().await.unwrap().unwrap(), 2);
        tx_a.send(1).unwrap();
        assert_eq!(set.join_next().await.unwrap().unwrap(), 1);
        assert!(set.join_next().await.is_none());
    });
}

#[test]
fn join_set_reports_a_member_panic_and_goes_on() {
    util::silence_expected_panics(&["JoinSet::blocking_join_next", "outside its scope"]);
    run(Flavor::MultiThread(2), "panic", || async {
        let mut set = JoinSet::new();
        set.spawn(async { panic!("{} task", util::EXPECTED_PANIC) });
        set.spawn_fiber(|| -> u8 { panic!("{} fiber", util::EXPECTED_PANIC) });
        set.spawn(async { 7u8 });
        let (mut panics, mut ok) = (0, 0);
        while let Some(res) = set.join_next().await {
            match res {
                Ok(v) => {
                    assert_eq!(v, 7);
                    ok += 1
                }
                Err(e) => {
                    assert!(e.is_panic());
                    panics += 1
                }
            }
        }
        assert_eq!((panics, ok), (2, 1));
    });
}

#[test]
fn abort_all_cancels_members_and_keeps_them_until_joined() {
    for flavor in Flavor::ALL {
        run(flavor, "abort_all", || async {
            let drops = Arc::new(AtomicUsize::new(0));
            let started = Arc::new(AtomicUsize::new(0));
            let mut set = JoinSet::new();
            for i in 0..10 {
                let (t, s) = (DropToken::new(i, &drops), started.clone());
                set.spawn(async move {
                    s.fetch_add(1, SeqCst);
                    std::future::pending::<()>().await;
                    drop(t);
                });
                let (t, s) = (DropToken::new(i, &drops), started.clone());
                set.spawn_fiber(move || {
                    s.fetch_add(1, SeqCst);
                    fiber::sleep(ms(60_000));
                    drop(t);
                });
            }
            // Every member started (and is suspended, or about to be).
            while started.load(SeqCst) < 20 {
                fiber_runtime::yield_now().await;
            }
            set.abort_all();
            assert_eq!(set.len(), 20);
            let mut cancelled = 0;
            while let Some(res) = set.join_next().await {
                assert!(res.unwrap_err().is_cancelled());
                cancelled += 1;
            }
            assert_eq!(cancelled, 20);
            assert_eq!(drops.load(SeqCst), 20);
        });
    }
}

#[test]
fn dropping_the_set_aborts_every_member() {
    for flavor in Flavor::ALL {
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = flavor.build();
        let d = drops.clone();
        // Abort handles, to see the members finish: a member's future (and
        // token) is dropped before it leaves the runtime's task list.
        let members = rt.block_on(async move {
            let started = Arc::new(AtomicUsize::new(0));
            let mut set = JoinSet::new();
            let mut members = Vec::new();
            for i in 0..8 {
                let (t, s) = (DropToken::new(i, &d), started.clone());
                members.push(set.spawn(async move {
                    s.fetch_add(1, SeqCst);
                    std::future::pending::<()>().await;
                    drop(t);
                }));
                let (t, s) = (DropToken::new(i, &d), started.clone());
                members.push(set.spawn_fiber(move || {
                    s.fetch_add(1, SeqCst);
                    fiber::sleep(ms(60_000));
                    drop(t);
                }));
            }
            // Every member started (and is suspended, or about to be).
            while started.load(SeqCst) < 16 {
                fiber_runtime::yield_now().await;
            }
            drop(set);
            members
        });
        util::drive_until(&rt, "members dropped and finished", || {
            drops.load(SeqCst) == 16 && members.iter().all(task::AbortHandle::is_finished)
        });
        assert_eq!(rt.metrics().num_alive_tasks(), 0, "{flavor:?}");
    }
}

#[test]
fn a_dropped_join_next_loses_no_output() {
    run(Flavor::CurrentThread, "cancel safety", || async {
        let (tx, rx) = sync::oneshot::channel::<u32>();
        let mut set = JoinSet::new();
        set.spawn(async move { rx.await.unwrap() });
        {
            let mut fut = pin!(set.join_next());
            assert!(
                poll_once(&mut fut, std::task::Waker::noop()).is_pending(),
                "nothing finished yet"
            );
        }
        tx.send(9).unwrap();
        assert_eq!(set.join_next().await.unwrap().unwrap(), 9);
    });
}

#[test]
fn blocking_join_next_serves_a_fiber_and_a_plain_thread_and_refuses_a_task() {
    util::silence_expected_panics(&["JoinSet::blocking_join_next", "outside its scope"]);
    run(Flavor::MultiThread(2), "blocking join", || async {
        let sum = fiber::spawn(|| {
            let mut set = JoinSet::new();
            set.spawn(async { 1u32 });
            set.spawn_fiber(|| 2u32);
            let mut sum = 0;
            while let Some(r) = set.blocking_join_next() {
                sum += r.unwrap();
            }
            sum
        })
        .await
        .unwrap();
        assert_eq!(sum, 3);
        let msg = fiber_runtime::spawn(async {
            expect_panic(|| JoinSet::<()>::new().blocking_join_next())
        })
        .await
        .unwrap();
        assert!(msg.contains("JoinSet::join_next"), "{msg}");
    });
    let rt = Flavor::MultiThread(2).build();
    let _g = rt.enter();
    let mut set = JoinSet::new();
    set.spawn(async { 5u8 });
    assert_eq!(set.blocking_join_next().unwrap().unwrap(), 5);
    assert!(set.blocking_join_next().is_none());
}

#[test]
fn try_join_next_never_waits() {
    run(Flavor::CurrentThread, "try", || async {
        let mut set = JoinSet::new();
        assert!(set.try_join_next().is_none());
        set.spawn(async { 3u8 });
        // Not polled yet: the member was queued but has not run.
        let mut got = None;
        while got.is_none() {
            fiber_runtime::yield_now().await;
            got = set.try_join_next();
        }
        assert_eq!(got.unwrap().unwrap(), 3);
        assert!(set.is_empty());
    });
}

#[test]
fn ids_are_unique_and_seen_from_inside_tasks_and_fibers() {
    for flavor in Flavor::ALL {
        run(flavor, "ids", || async {
            assert_eq!(task::id(), None, "block_on's own future is no task");
            let mut handles = Vec::new();
            for _ in 0..20 {
                handles.push(fiber_runtime::spawn(async { task::id() }));
                handles.push(fiber::spawn(task::id));
            }
            let mut seen = HashSet::new();
            for h in handles {
                let id = h.id();
                assert_eq!(h.await.unwrap(), Some(id));
                assert!(seen.insert(id), "id {id} given twice");
            }
        });
    }
    assert_eq!(task::id(), None);
}

/// Thread state: fibers that switch back and forth on one worker each see
/// their own id after every switch.
#[test]
fn a_fiber_sees_its_own_id_after_every_switch() {
    run(Flavor::CurrentThread, "ids across switches", || async {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                fiber::spawn(|| {
                    let me = task::id().unwrap();
                    for _ in 0..50 {
                        fiber::yield_now();
                        assert_eq!(task::id(), Some(me));
                        fiber::sleep(std::time::Duration::ZERO);
                        assert_eq!(task::id(), Some(me));
                    }
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    });
}

#[test]
fn builder_names_tasks_and_fibers_and_reports_no_runtime_as_an_error() {
    run(Flavor::MultiThread(2), "builder", || async {
        let t = task::Builder::new()
            .name("loader")
            .spawn(async { 1 })
            .unwrap();
        let f = task::Builder::new()
            .name("parser")
            .spawn_fiber(|| 2)
            .unwrap();
        assert!(format!("{t:?}").contains("\"loader\""), "{t:?}");
        assert!(format!("{f:?}").contains("\"parser\""), "{f:?}");
        assert_eq!(t.await.unwrap() + f.await.unwrap(), 3);
    });
    let err = task::Builder::new().name("x").spawn(async {}).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Other);
    assert!(err.to_string().contains("runtime"), "{err}");
    let err = task::Builder::new().spawn_fiber(|| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Other);
}

#[test]
fn an_abort_handle_outlives_its_join_handle() {
    run(Flavor::MultiThread(2), "abort handle", || async {
        let drops = Arc::new(AtomicUsize::new(0));
        let t = DropToken::new(1, &drops);
        let h = fiber::spawn(move || {
            fiber::sleep(ms(60_000));
            drop(t);
        });
        let abort = h.abort_handle();
        let id = h.id();
        drop(h); // detached
        assert_eq!(abort.id(), id);
        assert!(!abort.is_finished());
        abort.abort();
        while !abort.is_finished() {
            fiber_runtime::yield_now().await;
        }
        assert_eq!(drops.load(SeqCst), 1);
    });
}

fiber_runtime::task_local! {
    static REQ: u32;
    static NAME: String;
}

#[test]
fn task_local_scope_spans_awaits_and_nests() {
    run(Flavor::MultiThread(2), "task_local", || async {
        let got = REQ
            .scope(1, async {
                let a = REQ.get();
                time::sleep(ms(1)).await;
                let b = REQ.scope(2, async { REQ.get() }).await;
                let c = REQ.get();
                (a, b, c)
            })
            .await;
        assert_eq!(got, (1, 2, 1));
        assert!(REQ.try_with(|_| ()).is_err());
        let t = fiber_runtime::spawn(NAME.scope("x".into(), async {
            fiber_runtime::yield_now().await;
            NAME.with(|n| n.clone())
        }));
        assert_eq!(t.await.unwrap(), "x");
    });
}

#[test]
fn task_local_with_outside_a_scope_panics() {
    util::silence_expected_panics(&["JoinSet::blocking_join_next", "outside its scope"]);
    let msg = expect_panic(|| REQ.with(|v| *v));
    assert!(msg.contains("outside its scope"), "{msg}");
    let msg = expect_panic(|| REQ.get());
    assert!(msg.contains("outside its scope"), "{msg}");
}

/// A fiber suspends inside `sync_scope`: while it is suspended, the other
/// fibers and tasks of its worker do not see its value; when it resumes
/// it sees its own again, nested scopes included.
#[test]
fn a_fiber_scope_stays_with_the_fiber_across_suspensions() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        run(flavor, "task_local in fibers", || async {
            let hs: Vec<_> = (0..4u32)
                .map(|i| {
                    fiber::spawn(move || {
                        assert!(REQ.try_with(|_| ()).is_err());
                        REQ.sync_scope(i, || {
                            for _ in 0..20 {
                                fiber::yield_now();
                                assert_eq!(REQ.get(), i);
                                REQ.sync_scope(100 + i, || {
                                    fiber::sleep(std::time::Duration::ZERO);
                                    assert_eq!(REQ.get(), 100 + i);
                                });
                                assert_eq!(REQ.get(), i);
                            }
                        });
                        assert!(REQ.try_with(|_| ()).is_err());
                    })
                })
                .collect();
            // A task on the same worker meanwhile sees no value.
            let t = fiber_runtime::spawn(async {
                for _ in 0..50 {
                    assert!(REQ.try_with(|_| ()).is_err());
                    fiber_runtime::yield_now().await;
                }
            });
            for h in hs {
                h.await.unwrap();
            }
            t.await.unwrap();
        });
    }
}

/// A fiber cancelled inside a scope: its destructors still see the
/// value, and nothing of it stays on the worker afterwards.
#[test]
fn a_cancelled_fiber_unwinds_inside_its_scope_and_leaves_nothing() {
    struct SeesScope(Arc<AtomicUsize>);
    impl Drop for SeesScope {
        fn drop(&mut self) {
            if REQ.try_with(|v| *v) == Ok(5) {
                self.0.fetch_add(1, SeqCst);
            }
        }
    }
    run(Flavor::CurrentThread, "cancel in scope", || async {
        let saw = Arc::new(AtomicUsize::new(0));
        let s = saw.clone();
        let (started_tx, started) = sync::oneshot::channel();
        let h = fiber::spawn(move || {
            REQ.sync_scope(5, || {
                let _g = SeesScope(s);
                started_tx.send(()).unwrap();
                fiber::sleep(ms(60_000));
            })
        });
        // Started (inside its scope, holding the guard) and suspended.
        started.await.unwrap();
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert_eq!(saw.load(SeqCst), 1);
        assert!(REQ.try_with(|_| ()).is_err());
        let other = fiber::spawn(|| REQ.try_with(|_| ()).is_err())
            .await
            .unwrap();
        assert!(other);
    });
}

fiber_runtime::fiber_local! {
    static COUNT: Cell<u32> = Cell::new(0);
    static TOKEN: std::cell::RefCell<Option<DropToken>> = std::cell::RefCell::new(None);
    static DERIVED: u32 = COUNT.with(|c| c.get()) + 10;
}

#[test]
fn fiber_locals_are_per_fiber_across_switches() {
    run(Flavor::CurrentThread, "fiber_local", || async {
        let hs: Vec<_> = (1..=4u32)
            .map(|i| {
                fiber::spawn(move || {
                    for _ in 0..i {
                        COUNT.with(|c| c.set(c.get() + 1));
                        fiber::yield_now();
                    }
                    COUNT.with(Cell::get)
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), i as u32 + 1);
        }
    });
}

#[test]
fn fiber_locals_are_dropped_when_the_fiber_ends_or_is_cancelled() {
    run(Flavor::MultiThread(2), "fiber_local drop", || async {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        fiber::spawn(move || TOKEN.with(|t| *t.borrow_mut() = Some(DropToken::new(1, &d))))
            .await
            .unwrap();
        assert_eq!(drops.load(SeqCst), 1);
        let d = drops.clone();
        let (started_tx, started) = sync::oneshot::channel();
        let h = fiber::spawn(move || {
            TOKEN.with(|t| *t.borrow_mut() = Some(DropToken::new(2, &d)));
            started_tx.send(()).unwrap();
            fiber::sleep(ms(60_000));
        });
        started.await.unwrap();
        assert_eq!(drops.load(SeqCst), 1);
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_fiber_local_initialiser_may_read_another_and_threads_fall_back() {
    run(Flavor::MultiThread(2), "fiber_local init", || async {
        let v = fiber::spawn(|| {
            COUNT.with(|c| c.set(5));
            DERIVED.with(|d| *d)
        })
        .await
        .unwrap();
        assert_eq!(v, 15);
    });
    // Outside any fiber: one value per thread.
    COUNT.with(|c| c.set(3));
    assert_eq!(COUNT.with(Cell::get), 3);
    let other = std::thread::spawn(|| COUNT.with(Cell::get)).join().unwrap();
    assert_eq!(other, 0);
}
