//! Nothing a runtime owns outlives it: tasks that await their own (or
//! each other's) `JoinHandle`, fiber stacks freed on another thread, a
//! runtime kept in a thread-local. Each check runs in a child process,
//! where it is the only thing running, so that descriptor and mapping
//! counts are exact.

// `spawn(async { fiber::spawn(..) })` hands the fiber's handle out on
// purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::{Runtime, fiber};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

const CHILD: &str = "FIBER_RUNTIME_LEAK_CHILD";

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Fiber stack chunks of the default stack size mapped in this process
/// (64 stacks of 256 KiB, each with a 4 KiB guard page, per mapping; the
/// kernel merges adjacent ones, so mappings of any multiple count).
fn stack_chunks() -> u64 {
    const CHUNK: u64 = 64 * (256 + 4) * 1024;
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .map(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()
        })
        .filter(|len| len % CHUNK == 0)
        .map(|len| len / CHUNK)
        .sum()
}

/// Runs `test`'s child half (`child`) in a child process and checks it
/// succeeded.
#[track_caller]
fn in_child(test: &str, child: fn()) {
    util::in_child(test, CHILD, child);
}

/// A task awaiting its own `JoinHandle`, and two awaiting each other's;
/// returns once all three await their handle.
fn spawn_self_awaiting_tasks(rt: &Runtime) {
    // Each task counts itself right before it awaits the handle (its
    // first poll of it, in the same poll, registers its join waker).
    let awaiting = Arc::new(AtomicUsize::new(0));
    let me = Arc::new(Mutex::new(None::<fiber_runtime::JoinHandle<()>>));
    let (slot, count) = (me.clone(), awaiting.clone());
    let h = rt.spawn(async move {
        // On a multi-thread runtime it may run before its handle is in
        // the slot.
        loop {
            let own = slot.lock().unwrap().take();
            if let Some(own) = own {
                count.fetch_add(1, SeqCst);
                let _ = own.await;
                return;
            }
            fiber_runtime::yield_now().await;
        }
    });
    *me.lock().unwrap() = Some(h);
    let (a_slot, b_slot) = (
        Arc::new(Mutex::new(None::<fiber_runtime::JoinHandle<()>>)),
        Arc::new(Mutex::new(None::<fiber_runtime::JoinHandle<()>>)),
    );
    let (sa, sb) = (b_slot.clone(), a_slot.clone());
    let count = awaiting.clone();
    let a = rt.spawn(async move {
        loop {
            let other = sa.lock().unwrap().take();
            if let Some(b) = other {
                count.fetch_add(1, SeqCst);
                let _ = b.await;
                return;
            }
            fiber_runtime::yield_now().await;
        }
    });
    let count = awaiting.clone();
    let b = rt.spawn(async move {
        loop {
            let other = sb.lock().unwrap().take();
            if let Some(a) = other {
                count.fetch_add(1, SeqCst);
                let _ = a.await;
                return;
            }
            fiber_runtime::yield_now().await;
        }
    });
    *a_slot.lock().unwrap() = Some(a);
    *b_slot.lock().unwrap() = Some(b);
    util::drive_until(rt, "all three tasks await a handle", || {
        awaiting.load(SeqCst) == 3
    });
}

/// Issue 9, bug 5: a task awaiting its own `JoinHandle` kept its join
/// waker, which points at the task itself, until the task was freed,
/// which it never was: every such runtime leaked with its epoll and
/// eventfd descriptors (+40 over 20 runtimes).
#[test]
fn tasks_awaiting_themselves_or_each_other_do_not_leak_their_runtime() {
    in_child(
        "tasks_awaiting_themselves_or_each_other_do_not_leak_their_runtime",
        || {
            // One runtime first, so that lazily made process state is there.
            drop(util::multi_thread(1));
            let before = open_fds();
            for i in 0..20 {
                let rt = if i % 2 == 0 {
                    util::current_thread()
                } else {
                    util::multi_thread(2)
                };
                spawn_self_awaiting_tasks(&rt);
                drop(rt);
            }
            let after = open_fds();
            assert_eq!(after, before, "descriptors leaked by 20 runtimes");
        },
    );
}

/// A runtime dropped by one of its own tasks, with other tasks still
/// queued: its worker (or the thread driving a current-thread runtime)
/// empties its queues once the runtime is gone, or the entries, which
/// hold their tasks, which hold the runtime, would keep it all alive.
#[test]
fn a_runtime_dropped_by_its_own_task_does_not_leak() {
    in_child("a_runtime_dropped_by_its_own_task_does_not_leak", || {
        drop(util::multi_thread(1));
        let before = open_fds();
        for i in 0..10 {
            let rt = if i % 2 == 0 {
                util::current_thread()
            } else {
                util::multi_thread(1)
            };
            let handle = rt.handle().clone();
            let rt = Arc::new(rt);
            let last = rt.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            // Queued behind the dropper, never to run.
            for _ in 0..5 {
                drop(rt.spawn(std::future::pending::<()>()));
            }
            drop(rt.spawn(async move {
                // Queued too: woken, but its runtime is gone first.
                drop(fiber_runtime::spawn(async {
                    fiber_runtime::yield_now().await
                }));
                drop(last);
                tx.send(()).unwrap();
            }));
            drop(rt);
            // A current-thread runtime runs only while driven.
            handle.block_on(async {
                while rx.try_recv().is_err() {
                    fiber_runtime::yield_now().await;
                }
            });
            drop(handle);
        }
        // A worker that dropped its own runtime cannot be joined by it:
        // it exits on its own, just after, and its descriptors go then.
        util::wait_until("the descriptors of the dropped runtimes are closed", || {
            open_fds() == before
        });
    });
}

/// Issue 9, bug 6: a thread with a stack pool that dropped runtimes took
/// their fibers' stacks into its own pool, which never let go of them
/// (664 MiB RSS and 3.5 GiB of address space over 100 runtimes). Stacks
/// now go back to the pool of the thread that took them or are unmapped,
/// and pools are bounded.
#[test]
fn dropping_runtimes_does_not_grow_the_dropping_threads_stack_pool() {
    in_child(
        "dropping_runtimes_does_not_grow_the_dropping_threads_stack_pool",
        || {
            // This thread runs a fiber, so it has a pool.
            let rt = util::current_thread();
            rt.block_on(async { fiber::spawn(|| ()).await.unwrap() });
            let before = stack_chunks();
            for _ in 0..20 {
                let rt = util::multi_thread(2);
                let started = Arc::new(AtomicUsize::new(0));
                for _ in 0..100 {
                    let started = started.clone();
                    // Suspended for good: unwound at shutdown.
                    drop(rt.handle().spawn(async move {
                        fiber::spawn(move || {
                            started.fetch_add(1, SeqCst);
                            fiber::wait(std::future::pending::<()>());
                        })
                    }));
                }
                util::wait_until("100 fibers started", || started.load(SeqCst) == 100);
                drop(rt);
            }
            let after = stack_chunks();
            println!("stack chunks: {before} before, {after} after");
            assert!(
                after <= before + 1,
                "fiber stack mappings grew from {before} to {after} over 20 runtimes"
            );
        },
    );
}

/// Issue 9, bug 7: a current-thread runtime kept in a `thread_local!`
/// that had run a fiber aborted the process when its thread exited
/// ("cannot access a TLS value during or after destruction"), because
/// its drop reached for the fiber registry, which may be destroyed first.
#[test]
fn a_thread_local_runtime_that_ran_fibers_drops_cleanly_at_thread_exit() {
    in_child(
        "a_thread_local_runtime_that_ran_fibers_drops_cleanly_at_thread_exit",
        || {
            thread_local! {
                static RT: Runtime = util::current_thread();
            }
            for suspended in [false, true] {
                std::thread::spawn(move || {
                    RT.with(|rt| {
                        rt.block_on(async { fiber::spawn(|| 1).await.unwrap() });
                        if suspended {
                            // One left suspended for the drop to unwind.
                            drop(rt.block_on(async {
                                let h = fiber::spawn(|| {
                                    fiber::wait(std::future::pending::<()>());
                                });
                                fiber_runtime::yield_now().await;
                                h
                            }));
                        }
                    });
                })
                .join()
                .unwrap();
            }
        },
    );
}
