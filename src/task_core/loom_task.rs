//! Models of the task state machine racing against itself: run with
//! `RUSTFLAGS="--cfg fiber_runtime_loom" cargo test --lib --release loom_` to explore the
//! interleavings; without loom each test runs once.

use super::test_util::TestSched;
use crate::loom::{AtomicUsize, Mutex, Ordering::SeqCst, model, thread};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Counts drops of whatever holds it.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Pending until `open` is set; stores its waker for the opener.
struct Gate {
    open: Arc<AtomicUsize>,
    waker: Arc<Mutex<Option<Waker>>>,
    _drop: DropCount,
}

impl Future for Gate {
    type Output = DropCount;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DropCount> {
        *self.waker.lock() = Some(cx.waker().clone());
        if self.open.load(SeqCst) == 1 {
            Poll::Ready(DropCount(self._drop.0.clone()))
        } else {
            Poll::Pending
        }
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = futures_noop_waker();
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

fn futures_noop_waker() -> Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    Waker::from(std::sync::Arc::new(Noop))
}

/// A wake from another thread while the task is being polled is never
/// lost: the task is polled again and completes.
#[test]
fn loom_wake_during_poll() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None::<Waker>));
        let (first, mut join) = sched.spawn(Gate {
            open: open.clone(),
            waker: slot.clone(),
            _drop: DropCount(drops.clone()),
        });
        let th = {
            let (open, slot) = (open.clone(), slot.clone());
            thread::spawn(move || {
                open.store(1, SeqCst);
                let w = slot.lock().take();
                if let Some(w) = w {
                    w.wake();
                }
            })
        };
        first.run();
        th.join().unwrap();
        sched.run_all();
        // The gate is open and any wake has been processed: done.
        let out = match poll_once(&mut join) {
            Poll::Ready(out) => out.expect("task failed"),
            Poll::Pending => panic!("wake lost: task not complete"),
        };
        // The future (with its DropCount) was dropped exactly once.
        assert_eq!(drops.load(SeqCst), 1);
        drop(out);
        assert_eq!(drops.load(SeqCst), 2);
        drop(join);
        drop(slot.lock().take());
    });
}

/// `abort` racing the completing poll: either the output or a
/// cancellation, never both, and the future is dropped exactly once.
#[test]
fn loom_abort_racing_completion() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let d = DropCount(drops.clone());
        let (first, mut join) = sched.spawn(async move {
            let _d = d;
            7u32
        });
        let th = {
            let sched = sched.clone();
            thread::spawn(move || {
                first.run();
                sched.run_all();
            })
        };
        join.abort();
        th.join().unwrap();
        sched.run_all();
        match poll_once(&mut join) {
            Poll::Ready(Ok(v)) => assert_eq!(v, 7),
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            Poll::Pending => panic!("task neither completed nor cancelled"),
        }
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// Dropping the `JoinHandle` while the task completes: the output is
/// dropped exactly once, by one side, and the task memory is freed.
#[test]
fn loom_join_handle_drop_racing_completion() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let out_drops = drops.clone();
        let (first, join) = sched.spawn(async move { DropCount(out_drops) });
        let th = thread::spawn(move || first.run());
        drop(join);
        th.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1, "output dropped once");
        // Only our `drops` handle is left: the task (and the Arc clone it
        // held) is gone.
        assert_eq!(Arc::strong_count(&drops), 1, "task leaked");
    });
}

/// A task whose wakers are dropped and woken concurrently from two
/// threads is polled to completion and freed.
#[test]
fn loom_concurrent_wakers() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None::<Waker>));
        let (first, mut join) = sched.spawn(Gate {
            open: open.clone(),
            waker: slot.clone(),
            _drop: DropCount(drops.clone()),
        });
        first.run();
        let w1 = slot.lock().clone().expect("waker stored");
        let w2 = w1.clone();
        open.store(1, SeqCst);
        let th = thread::spawn(move || w1.wake());
        w2.wake_by_ref();
        drop(w2);
        th.join().unwrap();
        sched.run_all();
        assert!(matches!(poll_once(&mut join), Poll::Ready(Ok(_))));
        drop(slot.lock().take());
        drop(join);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

/// Yields on its first poll (asking to be requeued still running, as a
/// fiber's `yield_now` does); then behaves as a `Gate`.
struct YieldThenGate {
    yielded: bool,
    gate: Gate,
}

impl Future for YieldThenGate {
    type Output = DropCount;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DropCount> {
        if !self.yielded {
            self.yielded = true;
            *self.gate.waker.lock() = Some(cx.waker().clone());
            super::request_yield();
            return Poll::Pending;
        }
        Pin::new(&mut self.gate).poll(cx)
    }
}

fn yield_then_gate(
    drops: &Arc<AtomicUsize>,
) -> (YieldThenGate, Arc<AtomicUsize>, Arc<Mutex<Option<Waker>>>) {
    let open = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(Mutex::new(None::<Waker>));
    let fut = YieldThenGate {
        yielded: false,
        gate: Gate {
            open: open.clone(),
            waker: slot.clone(),
            _drop: DropCount(drops.clone()),
        },
    };
    (fut, open, slot)
}

/// A wake from another thread while the task sits in the queue as a
/// yielded (still running) entry is never lost.
#[test]
fn loom_wake_racing_a_yielded_entry() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let (fut, open, slot) = yield_then_gate(&drops);
        let (first, mut join) = sched.spawn(fut);
        first.run();
        let th = {
            let (open, slot) = (open.clone(), slot.clone());
            thread::spawn(move || {
                open.store(1, SeqCst);
                let w = slot.lock().take();
                if let Some(w) = w {
                    w.wake();
                }
            })
        };
        sched.run_all();
        th.join().unwrap();
        sched.run_all();
        let out = match poll_once(&mut join) {
            Poll::Ready(out) => out.expect("task failed"),
            Poll::Pending => panic!("wake lost while the task was queued yielded"),
        };
        drop(out);
        drop(join);
        drop(slot.lock().take());
        assert_eq!(drops.load(SeqCst), 2);
        assert_eq!(Arc::strong_count(&drops), 1, "task leaked");
    });
}

/// `abort` racing a yielded entry: the next run of the entry cancels the
/// task (or the task was done); the future is dropped exactly once.
#[test]
fn loom_abort_racing_a_yielded_entry() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let (fut, open, slot) = yield_then_gate(&drops);
        open.store(1, SeqCst);
        let (first, mut join) = sched.spawn(fut);
        first.run();
        let th = {
            let sched = sched.clone();
            thread::spawn(move || sched.run_all())
        };
        join.abort();
        th.join().unwrap();
        sched.run_all();
        match poll_once(&mut join) {
            Poll::Ready(Ok(out)) => drop(out),
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            Poll::Pending => panic!("task neither completed nor cancelled"),
        }
        drop(join);
        drop(slot.lock().take());
        assert_eq!(Arc::strong_count(&drops), 1, "task leaked");
    });
}

/// A yielded entry dropped with its queue (shutdown) cancels the task and
/// frees it.
#[test]
fn loom_dropping_a_yielded_entry_cancels_the_task() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let (fut, _open, slot) = yield_then_gate(&drops);
        let (first, join) = sched.spawn(fut);
        first.run();
        let th = thread::spawn(move || {
            join.abort();
            join
        });
        sched.drain();
        let mut join = th.join().unwrap();
        match poll_once(&mut join) {
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            other => panic!(
                "expected a cancellation, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        drop(join);
        drop(slot.lock().take());
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(Arc::strong_count(&drops), 1, "task leaked");
    });
}

/// A waker that counts its wakes; its `Arc`'s strong count tells whether
/// the task let go of it.
#[derive(Default)]
struct CountWakes(AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Issue 9, bug 5: the join waker was dropped only with the task's
/// memory. Now it goes as soon as it cannot be needed: with a
/// `JoinHandle` dropped racing the completion that wakes it, exactly one
/// side drops it (a double drop would underflow its count), never none.
#[test]
fn loom_join_waker_released_once_racing_completion() {
    model(|| {
        let sched = Arc::new(TestSched::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None::<Waker>));
        let (first, mut join) = sched.spawn(Gate {
            open: open.clone(),
            waker: slot.clone(),
            _drop: DropCount(drops.clone()),
        });
        first.run();
        let wakes = std::sync::Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(
            Pin::new(&mut join)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(waker);
        let th = {
            let sched = sched.clone();
            thread::spawn(move || {
                open.store(1, SeqCst);
                if let Some(w) = slot.lock().take() {
                    w.wake();
                }
                sched.run_all();
            })
        };
        drop(join);
        th.join().unwrap();
        sched.run_all();
        assert!(wakes.0.load(SeqCst) <= 1);
        assert_eq!(
            std::sync::Arc::strong_count(&wakes),
            1,
            "the task kept the join waker"
        );
        assert_eq!(Arc::strong_count(&drops), 1, "task leaked");
    });
}

/// Issue 9, bug 5: a task awaiting its own `JoinHandle` held its own
/// waker in its trailer, so cancelling it (runtime shutdown) never freed
/// it, nor the scheduler (and runtime) it points to.
#[test]
fn loom_a_task_awaiting_itself_is_freed_when_cancelled() {
    use super::JoinHandle;
    use super::list::OwnedTasks;
    /// Awaits the `JoinHandle` it is given, which is its own.
    struct AwaitSelf {
        slot: Arc<Mutex<Option<JoinHandle<()>>>>,
        own: Option<JoinHandle<()>>,
        _drop: DropCount,
    }
    impl Future for AwaitSelf {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.own.is_none() {
                let own = self.slot.lock().take();
                self.own = own;
            }
            if let Some(h) = self.own.as_mut() {
                // Never ready: it waits for itself.
                let _ = Pin::new(h).poll(cx);
            }
            Poll::Pending
        }
    }
    model(|| {
        let sched = Arc::new(TestSched::default());
        let owned = Arc::new(OwnedTasks::new(1));
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None));
        let (join, first) = owned.bind(
            AwaitSelf {
                slot: slot.clone(),
                own: None,
                _drop: DropCount(drops.clone()),
            },
            sched.clone(),
            0,
            super::list::Kind::Task,
            super::SpawnMeta::new(None),
        );
        *slot.lock() = Some(join);
        first.expect("the list is open").run();
        // Shutdown, racing a stray wake of the task from another thread.
        let th = {
            let sched = sched.clone();
            thread::spawn(move || sched.run_all())
        };
        owned.close_and_shutdown_all();
        th.join().unwrap();
        sched.drain();
        assert_eq!(drops.load(SeqCst), 1, "future dropped once");
        assert_eq!(Arc::strong_count(&drops), 1, "task leaked");
        assert_eq!(Arc::strong_count(&sched), 1, "the scheduler leaked with it");
    });
}
