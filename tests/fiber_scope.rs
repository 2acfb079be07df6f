//! `fiber::scope`: children that borrow from the caller's stack, and every
//! way to try to make one outlive the frame it borrows from: the closure
//! panicking, a child panicking or aborted, the parent fiber aborted, the
//! runtime dropped, the wrong caller.
//!
//! The borrowed data in the cancellation tests carries a `Frame` whose
//! destructor records that the parent's frame is gone; every child checks
//! that flag whenever it touches the data, including from its own
//! destructor while it is cancelled. A violation is counted, never missed.

#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::{JoinHandle, Runtime, fiber, sync};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use util::{EXPECTED_PANIC, Flavor, expect_panic, ms, run};

/// Counts what happened to the children of one test.
#[derive(Default)]
struct Watch {
    /// The parent's frame (holding the borrowed data) is gone.
    frame_gone: AtomicBool,
    /// A child touched the data after that.
    violations: AtomicUsize,
    /// Children dropped (finished or cancelled).
    dropped: AtomicUsize,
}

/// Lives in the parent's frame beside the borrowed data.
struct Frame(Arc<Watch>);

impl Drop for Frame {
    fn drop(&mut self) {
        self.0.frame_gone.store(true, SeqCst);
    }
}

/// Held by a child: on drop, touches the borrowed slot and checks the frame.
struct Touch<'a> {
    slot: &'a AtomicUsize,
    watch: Arc<Watch>,
}

impl Drop for Touch<'_> {
    fn drop(&mut self) {
        if self.watch.frame_gone.load(SeqCst) {
            self.watch.violations.fetch_add(1, SeqCst);
        }
        self.slot.fetch_add(1, SeqCst);
        self.watch.dropped.fetch_add(1, SeqCst);
    }
}

#[test]
fn children_borrow_slots_inside_a_fiber_and_on_a_plain_thread() {
    for flavor in Flavor::ALL {
        let sum = run(flavor, "scope in a fiber", || async {
            fiber::spawn(|| {
                let mut slots = vec![0u64; 200];
                let base = 7u64;
                fiber::scope(|s| {
                    let (a, b) = slots.split_at_mut(100);
                    for (i, slot) in a.iter_mut().enumerate() {
                        s.spawn(move || {
                            fiber::yield_now();
                            *slot = base + i as u64;
                        });
                    }
                    for (i, slot) in b.iter_mut().enumerate() {
                        s.spawn_task(async move {
                            fiber_runtime::yield_now().await;
                            *slot = base + 100 + i as u64;
                        });
                    }
                });
                slots.iter().sum::<u64>()
            })
            .await
            .unwrap()
        });
        assert_eq!(sum, (0..200).map(|i| 7 + i).sum::<u64>(), "{flavor:?}");
    }
    // On a plain thread, after `enter`.
    let rt = Flavor::MultiThread(2).build();
    let _g = rt.enter();
    let mut slots = [0u32; 16];
    let r = fiber::scope(|s| {
        for (i, slot) in slots.iter_mut().enumerate() {
            s.spawn(move || *slot = i as u32);
        }
        "done"
    });
    assert_eq!(r, "done");
    assert_eq!(slots.iter().sum::<u32>(), (0..16).sum());
}

#[test]
fn join_returns_a_childs_value_and_a_joined_panic_is_not_re_raised() {
    util::silence_expected_panics(&[]);
    let rt = Flavor::MultiThread(2).build();
    let _g = rt.enter();
    let data = [1, 2, 3];
    let (sum, err) = fiber::scope(|s| {
        let h = s.spawn(|| data.iter().sum::<i32>());
        let t = s.spawn_task(async { data.len() });
        let bad = s.spawn(|| -> i32 { panic!("{EXPECTED_PANIC}: joined") });
        let err = bad.join().unwrap_err();
        (h.join().unwrap() + t.join().unwrap() as i32, err)
    });
    assert_eq!(sum, 9);
    assert!(err.is_panic());
}

#[test]
fn an_unjoined_child_panic_is_re_raised_after_every_child_finished() {
    util::silence_expected_panics(&[]);
    let rt = Flavor::MultiThread(2).build();
    let _g = rt.enter();
    let finished = AtomicUsize::new(0);
    let msg = expect_panic(|| {
        fiber::scope(|s| {
            s.spawn(|| panic!("{EXPECTED_PANIC}: child"));
            for _ in 0..10 {
                s.spawn(|| {
                    fiber::sleep(ms(1));
                    finished.fetch_add(1, SeqCst);
                });
            }
        })
    });
    assert!(msg.contains("child"), "{msg}");
    assert_eq!(finished.load(SeqCst), 10);
}

#[test]
fn a_panicking_closure_still_waits_for_its_children() {
    util::silence_expected_panics(&[]);
    for flavor in Flavor::ALL {
        let (msg, finished) = run(flavor, "closure panics", || async {
            fiber::spawn(|| {
                let finished = AtomicUsize::new(0);
                let msg = expect_panic(|| {
                    fiber::scope(|s| {
                        for _ in 0..10 {
                            s.spawn(|| {
                                fiber::sleep(ms(1));
                                finished.fetch_add(1, SeqCst);
                            });
                            s.spawn_task(async {
                                fiber_runtime::time::sleep(ms(1)).await;
                                finished.fetch_add(1, SeqCst);
                            });
                        }
                        panic!("{EXPECTED_PANIC}: closure");
                    })
                });
                (msg, finished.load(SeqCst))
            })
            .await
            .unwrap()
        });
        assert!(msg.contains("closure"), "{flavor:?}: {msg}");
        assert_eq!(finished, 20, "{flavor:?}");
    }
}

#[test]
fn an_aborted_child_reports_cancelled_and_the_scope_returns() {
    run(Flavor::MultiThread(2), "child aborted", || async {
        fiber::spawn(|| {
            let watch = Arc::new(Watch::default());
            let slot = AtomicUsize::new(0);
            let (ready_tx, mut ready_rx) = sync::mpsc::unbounded_channel::<()>();
            fiber::scope(|s| {
                let (w, slot, ready) = (watch.clone(), &slot, ready_tx.clone());
                let h = s.spawn(move || {
                    let _t = Touch { slot, watch: w };
                    ready.send(()).unwrap();
                    fiber::sleep(ms(60_000));
                });
                let (w, ready) = (watch.clone(), ready_tx.clone());
                let t = s.spawn_task(async move {
                    let _t = Touch { slot, watch: w };
                    ready.send(()).unwrap();
                    std::future::pending::<()>().await;
                });
                ready_rx.blocking_recv().unwrap();
                ready_rx.blocking_recv().unwrap();
                h.abort();
                t.abort();
                assert!(h.join().unwrap_err().is_cancelled());
                assert!(t.join().unwrap_err().is_cancelled());
            });
            assert_eq!(slot.load(SeqCst), 2);
            assert_eq!(watch.violations.load(SeqCst), 0);
        })
        .await
        .unwrap();
    });
}

/// Spawns on `rt` a parent fiber whose scope spawns `pairs` fiber and
/// `pairs` task children, each holding a [`Touch`] of a slot in the
/// parent's frame and then waiting for good; returns its handle once
/// every child has started.
fn spawn_parent(rt: &Runtime, watch: &Arc<Watch>, pairs: usize) -> JoinHandle<()> {
    let (ready_tx, mut ready_rx) = sync::mpsc::unbounded_channel::<()>();
    let w = watch.clone();
    let parent = {
        let _g = rt.enter();
        fiber::spawn(move || {
            let slot = AtomicUsize::new(0);
            let _frame = Frame(w.clone());
            fiber::scope(|s| {
                for _ in 0..pairs {
                    let (w1, slot, ready) = (w.clone(), &slot, ready_tx.clone());
                    s.spawn(move || {
                        let _t = Touch { slot, watch: w1 };
                        ready.send(()).unwrap();
                        fiber::sleep(ms(60_000));
                    });
                    let (w2, ready) = (w.clone(), ready_tx.clone());
                    s.spawn_task(async move {
                        let _t = Touch { slot, watch: w2 };
                        ready.send(()).unwrap();
                        std::future::pending::<()>().await;
                    });
                }
            });
        })
    };
    rt.block_on(async {
        for _ in 0..2 * pairs {
            ready_rx.recv().await.unwrap();
        }
    });
    parent
}

/// The parent fiber is aborted while its children still run (on any
/// worker). No child may touch the borrowed data once the parent's frame
/// is gone, and every child is eventually dropped.
#[test]
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "leaks by design: the parent's stack is abandoned while its children run"
)]
fn aborting_the_parent_fiber_never_frees_data_a_child_still_uses() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let watch = Arc::new(Watch::default());
        let parent = spawn_parent(&rt, &watch, 4);
        parent.abort();
        let res = rt.block_on(parent);
        assert!(res.unwrap_err().is_cancelled(), "{flavor:?}");
        util::drive_until(&rt, "children dropped", || watch.dropped.load(SeqCst) == 8);
        assert_eq!(watch.violations.load(SeqCst), 0, "{flavor:?}");
        drop(rt);
        assert_eq!(watch.violations.load(SeqCst), 0, "{flavor:?}");
    }
}

/// The runtime is dropped while a parent fiber waits in its scope.
#[test]
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "leaks by design: the parent's stack is abandoned while its children run"
)]
fn dropping_the_runtime_under_a_scope_never_frees_data_a_child_uses() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let watch = Arc::new(Watch::default());
        drop(spawn_parent(&rt, &watch, 3)); // detached
        drop(rt);
        assert_eq!(watch.dropped.load(SeqCst), 6, "{flavor:?}");
        assert_eq!(watch.violations.load(SeqCst), 0, "{flavor:?}");
    }
}

#[test]
fn a_scope_in_an_async_task_is_refused_before_anything_runs() {
    util::silence_expected_panics(&["fiber::scope"]);
    run(Flavor::MultiThread(2), "refused", || async {
        let spawned = Arc::new(AtomicUsize::new(0));
        let s2 = spawned.clone();
        let msg = fiber_runtime::spawn(async move {
            expect_panic(|| {
                fiber::scope(|s| {
                    s2.fetch_add(1, SeqCst);
                    s.spawn(|| ());
                })
            })
        })
        .await
        .unwrap();
        assert!(msg.contains("fiber::scope"), "{msg}");
        assert_eq!(spawned.load(SeqCst), 0);
    });
}

#[test]
fn spawning_without_a_runtime_panics_and_the_scope_re_raises_it() {
    util::silence_expected_panics(&["failed"]);
    let msg = expect_panic(|| fiber::scope(|s| s.spawn(|| ()).join()));
    assert!(msg.contains("runtime"), "{msg}");
}
