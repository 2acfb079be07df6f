//! `Handle::dump`: what it says about tasks and fibers (names, spawn
//! lines, states, polls, ages, what a fiber is blocked in, its backtrace
//! and stack high-water mark), that it returns when a worker is stuck in
//! a poll (saying so), that it never deadlocks against spawns, wakes,
//! aborts and shutdown, and that a fiber it walked goes on unharmed.
//! Also `Builder::dump_on_signal` and the stack high-water histogram.

mod util;

use fiber_runtime::runtime::{Dump, TaskDump, TaskKind, TaskState, WorkerStatus};
use fiber_runtime::sync::{Mutex, oneshot};
use fiber_runtime::{Handle, Runtime, fiber, task};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};
use util::{DropToken, Flavor, Gate, Latch, TIMEOUT, join_thread, run_with_timeout};

/// Takes a dump from another thread while the runtime is driven: on the
/// current-thread flavor this thread drives it (in `block_on`) meanwhile.
fn dump_driven(rt: &Runtime) -> Dump {
    let h = rt.handle().clone();
    let driving = Latch::new();
    let d = driving.clone();
    let t = thread::spawn(move || {
        d.wait();
        h.dump()
    });
    rt.block_on(async {
        driving.release();
        join_thread(t).await
    })
}

/// Drives the runtime until `cond` holds (on the current-thread flavor
/// nothing runs otherwise), then takes a dump as [`dump_driven`].
#[track_caller]
fn dump_once(rt: &Runtime, what: &str, cond: impl FnMut() -> bool) -> Dump {
    util::drive_until(rt, what, cond);
    dump_driven(rt)
}

/// Takes dumps (as [`dump_driven`]) until `pred` holds of one; returns it.
#[track_caller]
fn dump_until(rt: &Runtime, what: &str, mut pred: impl FnMut(&Dump) -> bool) -> Dump {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let d = dump_driven(rt);
        if pred(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "timed out dumping until {what}:\n{d}"
        );
        thread::yield_now();
    }
}

fn named<'a>(d: &'a Dump, name: &str) -> &'a TaskDump {
    d.tasks()
        .find(|t| t.name() == Some(name))
        .unwrap_or_else(|| panic!("no task named {name:?} in the dump:\n{d}"))
}

fn has_frame(t: &TaskDump, function: &str) -> bool {
    t.backtrace()
        .is_some_and(|frames| frames.iter().any(|f| f.function().contains(function)))
}

/// Whether the named fiber is blocked in `call`.
fn blocked_in(d: &Dump, name: &str, call: &str) -> bool {
    d.tasks()
        .any(|t| t.name() == Some(name) && t.blocked_in() == Some(call))
}

#[inline(never)]
fn park_in_a_named_function(rx: oneshot::Receiver<u32>) -> u32 {
    let v = rx.blocking_recv().unwrap_or(0);
    std::hint::black_box(v + 1)
}

#[test]
fn a_suspended_fiber_shows_its_function_its_call_and_its_spawn_line() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _g = rt.enter();
        let (tx, rx) = oneshot::channel();
        let builder = fiber::Builder::new().name("parked");
        let line = line!() + 1;
        let f = builder.spawn(move || park_in_a_named_function(rx)).unwrap();
        let d = dump_until(&rt, "the fiber blocks", |d| {
            blocked_in(d, "parked", "oneshot::Receiver::blocking_recv")
        });
        let t = named(&d, "parked");
        assert_eq!(t.id(), f.id());
        assert_eq!(t.kind(), TaskKind::Fiber);
        assert_eq!(t.state(), TaskState::Suspended, "{d}");
        assert!(has_frame(t, "park_in_a_named_function"), "{flavor:?}:\n{d}");
        assert_eq!(t.spawn_location().line(), line);
        assert!(t.spawn_location().file().ends_with("rt_dump.rs"));
        // The blocking call's own line, from the caller location.
        let at = t.blocked_at().unwrap();
        assert!(
            at.file().ends_with("rt_dump.rs") && at.line() < line,
            "{at}"
        );
        assert!(t.worker().unwrap() < flavor.workers());
        let text = d.to_string();
        assert!(
            text.contains(&format!(
                "fiber {} \"parked\" [blocked in oneshot::Receiver::blocking_recv",
                f.id()
            )),
            "{text}"
        );
        assert!(text.contains("park_in_a_named_function"), "{text}");
        assert!(
            text.contains(&format!("spawned at {}", t.spawn_location())),
            "{text}"
        );
        if flavor == Flavor::CurrentThread {
            // From this thread, outside `block_on`: the fibers are this
            // thread's, so it walks them itself.
            let d = rt.handle().dump();
            assert_eq!(d.workers().next().unwrap().status(), WorkerStatus::Walked);
            assert!(
                has_frame(named(&d, "parked"), "park_in_a_named_function"),
                "{d}"
            );
        }
        tx.send(41).unwrap();
        assert_eq!(rt.block_on(f).unwrap(), 42);
    }
}

#[test]
fn named_tasks_show_their_name_spawn_line_and_idle_state() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _g = rt.enter();
        let gate = Gate::new();
        let builder = task::Builder::new().name("waiting-task");
        let line = line!() + 1;
        let h = builder.spawn(gate.wait()).unwrap();
        let d = dump_once(&rt, "the task waits", || gate.registrations() == 1);
        let t = named(&d, "waiting-task");
        assert_eq!(t.id(), h.id());
        assert_eq!(t.kind(), TaskKind::Task);
        assert_eq!(t.state(), TaskState::Idle, "{d}");
        assert_eq!(t.spawn_location().line(), line);
        assert!(t.spawn_location().file().ends_with("rt_dump.rs"));
        assert!(t.backtrace().is_none() && t.blocked_in().is_none());
        assert_eq!(t.worker(), None);
        let text = d.to_string();
        assert!(
            text.contains(&format!("task {} \"waiting-task\" [idle, ", h.id())),
            "{text}"
        );
        gate.open();
        let id = h.id();
        rt.block_on(h).unwrap();
        let d = dump_driven(&rt);
        assert!(d.task(id).is_none(), "a finished task is gone:\n{d}");
    }
}

#[test]
fn poll_counts_are_the_times_the_task_ran_and_ages_only_grow() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _g = rt.enter();
        let gate = Gate::new();
        // Polled once, then once per wake (each poll while closed
        // registers again).
        let h = task::Builder::new()
            .name("woken")
            .spawn(gate.wait())
            .unwrap();
        let spawned = Instant::now();
        let mut last_age = Duration::ZERO;
        for polls in 1..=4 {
            let d = dump_once(&rt, "the task waits again", || {
                gate.registrations() == polls
            });
            let before = Instant::now();
            let d2 = dump_driven(&rt);
            for (d, at) in [(&d, None), (&d2, Some(before))] {
                let t = named(d, "woken");
                assert_eq!(t.poll_count(), polls as u64, "{flavor:?}:\n{d}");
                assert!(t.age() >= last_age, "{:?} < {last_age:?}", t.age());
                last_age = t.age();
                if let Some(at) = at {
                    // The coarse spawn stamp is never later than the spawn.
                    assert!(
                        t.age() + Duration::from_millis(1) >= at - spawned,
                        "age {:?}, elapsed {:?}",
                        t.age(),
                        at - spawned
                    );
                }
            }
            // A spurious wake: one more poll.
            assert!(gate.wake());
        }
        gate.open();
        rt.block_on(h).unwrap();
    }
}

#[inline(never)]
fn dump_from_a_named_function() -> Dump {
    let d = Handle::current().dump();
    std::hint::black_box(d)
}

#[test]
fn a_task_or_fiber_taking_the_dump_sees_itself_running() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (tx, rx) = oneshot::channel::<()>();
        let d = rt.block_on(async move {
            let parked = fiber::Builder::new()
                .name("parked")
                .spawn(move || drop(rx.blocking_recv()))
                .unwrap();
            // From a task.
            let d = task::Builder::new()
                .name("dumper")
                .spawn(async { (task::id().unwrap(), Handle::current().dump()) })
                .unwrap()
                .await
                .unwrap();
            let (me, d) = d;
            let t = d.task(me).unwrap();
            assert_eq!(t.state(), TaskState::Running, "{d}");
            assert_eq!(t.name(), Some("dumper"));
            // From a fiber: with its own backtrace.
            let (me, d) = fiber::Builder::new()
                .name("dumper-fiber")
                .spawn(|| (task::id().unwrap(), dump_from_a_named_function()))
                .unwrap()
                .await
                .unwrap();
            tx.send(()).unwrap();
            parked.await.unwrap();
            let t = d.task(me).unwrap();
            assert_eq!(t.state(), TaskState::Running, "{d}");
            assert!(has_frame(t, "dump_from_a_named_function"), "{d}");
            // The trace starts at the runtime call the user made (in a
            // release build, whatever of it was not inlined).
            let top = t.backtrace().unwrap()[0].function();
            if cfg!(debug_assertions) {
                // (`<..::Handle>::dump` with v0 symbol names.)
                assert!(
                    top.contains("fiber_runtime::runtime::handle::Handle")
                        && top.ends_with("::dump"),
                    "{d}"
                );
            } else {
                assert!(top.starts_with("fiber_runtime::"), "{d}");
            }
            d
        });
        // Every worker answered: the dumper's own walked inline, the other
        // (if any) while the dumper waited.
        assert!(
            d.workers().all(|w| w.status() == WorkerStatus::Walked),
            "{flavor:?}:\n{d}"
        );
        let parked = named(&d, "parked");
        assert!(
            parked.state() == TaskState::Suspended || parked.state() == TaskState::Scheduled,
            "{d}"
        );
    }
}

#[test]
fn blocking_style_calls_are_named_in_the_state() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _g = rt.enter();
        let lock = Arc::new(Mutex::new(()));
        let held = lock.clone().try_lock_owned().unwrap();
        let gate = Gate::new();
        let l = lock.clone();
        let locker = fiber::Builder::new()
            .name("locker")
            .spawn(move || drop(l.blocking_lock()))
            .unwrap();
        let sleeper = fiber::Builder::new()
            .name("sleeper")
            .spawn(|| fiber::sleep(Duration::from_secs(3600)))
            .unwrap();
        let pending = rt.spawn(std::future::pending::<()>());
        let pending_id = pending.id();
        let joiner = fiber::Builder::new()
            .name("joiner")
            .spawn(move || pending.join().is_err())
            .unwrap();
        let g = gate.clone();
        let waiter = fiber::Builder::new()
            .name("waiter")
            .spawn(move || fiber::wait(g.wait()))
            .unwrap();
        let calls = [
            ("locker", "Mutex::blocking_lock"),
            ("sleeper", "fiber::sleep"),
            ("joiner", "JoinHandle::join"),
            ("waiter", "fiber::wait"),
        ];
        let d = dump_until(&rt, "all four block", |d| {
            calls.iter().all(|(n, c)| blocked_in(d, n, c))
        });
        for (n, c) in calls {
            let t = named(&d, n);
            assert_eq!(t.state(), TaskState::Suspended, "{d}");
            assert!(
                d.to_string().contains(&format!("[blocked in {c}, ")),
                "{c}:\n{d}"
            );
        }
        sleeper.abort();
        drop(held);
        gate.open();
        d.task(pending_id).expect("the pending task is listed");
        rt.block_on(async {
            locker.await.unwrap();
            waiter.await.unwrap();
            assert!(sleeper.await.unwrap_err().is_cancelled());
        });
        // The pending task is aborted with the runtime; the joiner sees it.
        drop(joiner);
    }
}

#[test]
fn a_worker_stuck_in_a_poll_is_reported_not_walked_and_the_dump_returns() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let h = rt.handle().clone();
        let entered = Latch::new();
        let release = Latch::new();
        let (tx, rx) = oneshot::channel::<()>();
        let (e, r) = (entered.clone(), release.clone());
        let dumper = thread::spawn(move || {
            e.wait();
            let d = h.dump();
            r.release();
            d
        });
        let (e, r) = (entered.clone(), release.clone());
        let d = rt.block_on(async move {
            let parked = fiber::Builder::new()
                .name("parked")
                .spawn(move || drop(rx.blocking_recv()))
                .unwrap();
            // Suspended before the worker gets stuck.
            let deadline = Instant::now() + TIMEOUT;
            while !blocked_in(
                &Handle::current().dump(),
                "parked",
                "oneshot::Receiver::blocking_recv",
            ) {
                assert!(Instant::now() < deadline, "the fiber never blocked");
                fiber_runtime::yield_now().await;
            }
            let stuck = task::Builder::new()
                .name("stuck")
                .spawn(async move {
                    e.release();
                    // Blocks its worker's thread until the dump is over.
                    r.wait();
                })
                .unwrap();
            stuck.await.unwrap();
            let d = join_thread(dumper).await;
            tx.send(()).unwrap();
            parked.await.unwrap();
            d
        });
        let busy: Vec<_> = d
            .workers()
            .filter(|w| matches!(w.status(), WorkerStatus::Busy(_)))
            .map(|w| w.index())
            .collect();
        assert_eq!(busy.len(), 1, "{flavor:?}: one worker is stuck:\n{d}");
        let stuck = named(&d, "stuck");
        assert_eq!(stuck.state(), TaskState::Running, "{d}");
        let parked = named(&d, "parked");
        let on_busy = parked.worker().is_some_and(|w| busy.contains(&w));
        assert_eq!(parked.backtrace().is_none(), on_busy, "{d}");
        let text = d.to_string();
        assert!(
            text.contains(&format!("worker {}: busy in a poll", busy[0])),
            "{text}"
        );
        if on_busy {
            assert!(
                text.contains("its worker is busy in a poll, not walked"),
                "{text}"
            );
        }
    }
}

#[test]
fn a_fiber_not_started_yet_is_scheduled_and_a_remote_spawn_too() {
    let rt = Flavor::CurrentThread.build();
    let _g = rt.enter();
    let f = fiber::Builder::new().name("later").spawn(|| 1).unwrap();
    let t = rt.spawn(async { 2 });
    // Nobody drives the runtime: nothing ran.
    let d = rt.handle().dump();
    assert_eq!(d.workers().next().unwrap().status(), WorkerStatus::Undriven);
    for id in [f.id(), t.id()] {
        let x = d.task(id).unwrap();
        assert_eq!(x.state(), TaskState::Scheduled, "{d}");
        assert_eq!(x.poll_count(), 0);
    }
    assert!(
        d.to_string().contains("no thread drives the runtime"),
        "{d}"
    );
    assert_eq!(rt.block_on(f).unwrap(), 1);
    assert_eq!(rt.block_on(t).unwrap(), 2);
}

#[test]
fn an_empty_runtime_and_one_shut_down_dump_nothing() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let d = rt.handle().dump();
        assert_eq!(d.tasks().count(), 0);
        assert_eq!(d.workers().count(), flavor.workers());
        let expected = match flavor {
            Flavor::CurrentThread => WorkerStatus::Undriven,
            Flavor::MultiThread(_) => WorkerStatus::Walked,
        };
        assert!(d.workers().all(|w| w.status() == expected), "{d}");
        assert!(d.to_string().starts_with("fiber-runtime dump: "), "{d}");
        let h = rt.handle().clone();
        {
            let _g = rt.enter();
            let _idle = fiber::spawn(|| fiber::sleep(Duration::from_secs(3600)));
            let _task = rt.spawn(std::future::pending::<()>());
        }
        drop(rt);
        let d = h.dump();
        assert_eq!(d.tasks().count(), 0, "{d}");
        assert!(
            d.workers().all(|w| w.status() == WorkerStatus::Stopped),
            "{d}"
        );
    }
}

#[test]
fn two_workers_dumping_at_once_answer_each_other() {
    let rt = Flavor::MultiThread(2).build();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let b = barrier.clone();
            rt.spawn(async move {
                // Both workers are inside a poll from here on.
                b.wait();
                Handle::current().dump()
            })
        })
        .collect();
    for h in tasks {
        let d = h.join().unwrap();
        assert!(
            d.workers().all(|w| w.status() == WorkerStatus::Walked),
            "{d}"
        );
    }
}

/// Recurses through `depth` frames of 1 KiB each.
#[inline(never)]
fn deep(depth: usize) -> u8 {
    let buf = std::hint::black_box([depth as u8; 1024]);
    if depth == 0 {
        return buf[0];
    }
    deep(depth - 1).wrapping_add(buf[1023])
}

#[test]
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "AddressSanitizer moves stack frames to its fake stack"
)]
fn a_fibers_stack_high_water_mark_is_its_own_and_dumps_leave_it_alone() {
    // New worker threads: new stack pools, whose stacks nobody used.
    let rt = Flavor::MultiThread(1).build();
    let _g = rt.enter();
    let gate = Gate::new();
    let g = gate.clone();
    let deep_fiber = fiber::Builder::new()
        .name("deep")
        .spawn(move || {
            deep(100);
            fiber::wait(g.wait());
        })
        .unwrap();
    let g = Gate::new();
    let g2 = g.clone();
    let shallow = fiber::Builder::new()
        .name("shallow")
        .spawn(move || fiber::wait(g2.wait()))
        .unwrap();
    let d = dump_until(&rt, "both wait", |d| {
        blocked_in(d, "deep", "fiber::wait") && blocked_in(d, "shallow", "fiber::wait")
    });
    let deep_use = named(&d, "deep").stack_usage().unwrap();
    assert!(deep_use.is_exact(), "a fresh stack: {deep_use:?}");
    assert!(deep_use.high_water() >= 100 * 1024, "{deep_use:?}");
    assert!(deep_use.high_water() <= deep_use.size());
    assert_eq!(deep_use.size(), 256 * 1024);
    let shallow_use = named(&d, "shallow").stack_usage().unwrap();
    assert!(shallow_use.is_exact());
    assert!(shallow_use.high_water() < 64 * 1024, "{shallow_use:?}");
    // The walks ran on those stacks, below the fibers' frames: the marks
    // stay what the fibers made them.
    for _ in 0..3 {
        let d = dump_driven(&rt);
        assert_eq!(named(&d, "shallow").stack_usage().unwrap(), shallow_use);
        assert_eq!(named(&d, "deep").stack_usage().unwrap(), deep_use);
    }
    gate.open();
    g.open();
    deep_fiber.join().unwrap();
    shallow.join().unwrap();
}

/// Recurses through frames of 1 KiB or more until they reach below
/// `limit` (an address on this stack), then waits for `gate`; returns the
/// depth it reached.
#[inline(never)]
fn deep_then_wait(limit: usize, gate: &Gate) -> usize {
    let buf = std::hint::black_box([1u8; 1024]);
    if (buf.as_ptr() as usize) < limit {
        fiber::wait(gate.wait());
        return buf[0] as usize;
    }
    deep_then_wait(limit, gate) + buf[1023] as usize
}

#[test]
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "AddressSanitizer moves stack frames to its fake stack"
)]
fn a_fiber_with_too_little_stack_left_is_not_walked_and_not_harmed() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _g = rt.enter();
        let gate = Gate::new();
        let g = gate.clone();
        // 16 KiB, 6 of them used up below the closure's frame (and what
        // the wait itself takes): the walk would need more than is left.
        let f = fiber::Builder::new()
            .name("cramped")
            .stack_size(16 * 1024)
            .spawn(move || {
                let here = std::hint::black_box(0u8);
                deep_then_wait(std::ptr::addr_of!(here) as usize - 6 * 1024, &g)
            })
            .unwrap();
        let d = dump_until(&rt, "the fiber waits", |d| {
            blocked_in(d, "cramped", "fiber::wait")
        });
        let t = named(&d, "cramped");
        assert!(t.backtrace().is_none(), "{d}");
        assert!(
            d.to_string().contains("too little stack left to walk it"),
            "{d}"
        );
        let usage = t.stack_usage().unwrap();
        assert_eq!(usage.size(), 16 * 1024);
        assert!(usage.high_water() >= 6 * 1024, "{usage:?}");
        gate.open();
        // And it goes on unharmed.
        assert!(rt.block_on(f).unwrap() >= 1);
    }
}

#[test]
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "AddressSanitizer moves stack frames to its fake stack"
)]
fn the_stack_histogram_counts_finished_fibers_and_recommends_a_size() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        assert_eq!(rt.metrics().recommended_fiber_stack_size(), None);
        rt.block_on(async {
            for _ in 0..3 {
                fiber::spawn(|| deep(40)).await.unwrap();
            }
        });
        // Measured when the worker (or the `block_on` thread) idles next.
        let deadline = Instant::now() + TIMEOUT;
        let h = loop {
            let h = rt.metrics().fiber_stack_high_water_histogram();
            if h.samples() > 0 {
                break h;
            }
            assert!(Instant::now() < deadline, "no stack was measured");
            rt.block_on(async { fiber_runtime::time::sleep(Duration::from_millis(1)).await });
        };
        assert!(h.max() >= 40 * 1024, "{h:?}");
        let total: u64 = (0..h.num_buckets()).map(|i| h.bucket_count(i)).sum();
        assert_eq!(total, h.samples());
        let i = (0..h.num_buckets())
            .find(|&i| h.max() <= h.bucket_upper_bound(i))
            .unwrap();
        assert!(
            h.bucket_count(i) >= 1,
            "the deepest is in its bucket: {h:?}"
        );
        let rec = rt.metrics().recommended_fiber_stack_size().unwrap();
        assert!(
            rec.is_power_of_two() && rec >= 2 * h.max(),
            "{rec} for {h:?}"
        );
    }
}

/// Recurses through frames of 1 KiB or more until they reach below
/// `limit` (an address on this stack); returns the depth it reached.
#[inline(never)]
fn deep_to(limit: usize) -> usize {
    let buf = std::hint::black_box([1u8; 1024]);
    if (buf.as_ptr() as usize) < limit {
        return buf[0] as usize;
    }
    deep_to(limit) + buf[1023] as usize
}

/// Runs `f` as a fiber, then drives the runtime until its stack was
/// measured (the histogram has one more sample).
fn run_measured(rt: &Runtime, f: impl FnOnce() -> usize + Send + 'static) {
    let before = rt.metrics().fiber_stack_high_water_histogram().samples();
    rt.block_on(async { fiber::spawn(f).await }).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while rt.metrics().fiber_stack_high_water_histogram().samples() == before {
        assert!(Instant::now() < deadline, "the stack was not measured");
        // Lets the worker (or the `block_on` thread) idle, and so measure.
        rt.block_on(async { fiber_runtime::time::sleep(Duration::from_millis(1)).await });
    }
}

/// One deep fiber, then many shallow ones on the same pooled stack: the
/// deep mark is counted once, not again for every later user.
#[test]
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "AddressSanitizer moves stack frames to its fake stack"
)]
fn a_deep_fibers_mark_is_not_counted_again_for_later_fibers_on_its_stack() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        run_measured(&rt, || {
            let here = std::hint::black_box(0u8);
            deep_to(std::ptr::addr_of!(here) as usize - 208 * 1024)
        });
        for _ in 0..50 {
            run_measured(&rt, || std::hint::black_box(1u8) as usize);
        }
        let h = rt.metrics().fiber_stack_high_water_histogram();
        assert_eq!(h.samples(), 51, "{flavor:?}: {h:?}");
        assert!(h.max() >= 208 * 1024, "{flavor:?}: {h:?}");
        let deep: u64 = (0..h.num_buckets())
            .filter(|&i| h.bucket_upper_bound(i) > 64 * 1024)
            .map(|i| h.bucket_count(i))
            .sum();
        assert_eq!(deep, 1, "{flavor:?}: the deep mark repeats: {h:?}");
    }
}

fiber_runtime::task_local! {
    static SCOPED: u32;
}

#[test]
fn a_walked_fiber_goes_on_with_its_thread_state_intact() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let _g = rt.enter();
        let gate = Gate::new();
        let g = gate.clone();
        let drops = Arc::new(AtomicUsize::new(0));
        let d2 = drops.clone();
        let saw = Arc::new(AtomicBool::new(false));
        let s = saw.clone();
        let walked = fiber::Builder::new()
            .name("walked")
            .spawn(move || {
                let _token = DropToken::new(1, &d2);
                SCOPED.sync_scope(7, || {
                    let inner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        fiber::wait(g.wait());
                        // After the walks: everything as before.
                        assert_eq!(SCOPED.get(), 7);
                        assert!(!std::thread::panicking());
                        panic!("{}", util::EXPECTED_PANIC);
                    }));
                    assert!(inner.is_err(), "the panic unwinds through walked frames");
                    assert_eq!(SCOPED.get(), 7);
                    // Ready futures still complete (the coop budget is the poll's).
                    for _ in 0..300 {
                        fiber::wait(std::future::ready(()));
                    }
                    s.store(true, SeqCst);
                });
                // Then it waits to be cancelled.
                fiber::sleep(Duration::from_secs(3600));
            })
            .unwrap();
        util::silence_expected_panics(&[]);
        for _ in 0..3 {
            dump_until(&rt, "the fiber waits", |d| {
                blocked_in(d, "walked", "fiber::wait") && named(d, "walked").backtrace().is_some()
            });
            // What the worker runs next does not see the fiber's scope.
            let (outside, panicking) = rt.block_on(async {
                fiber_runtime::spawn(async {
                    (SCOPED.try_with(|v| *v).is_err(), std::thread::panicking())
                })
                .await
                .unwrap()
            });
            assert!(outside && !panicking);
        }
        gate.open();
        util::drive_until(&rt, "the fiber goes on", || saw.load(SeqCst));
        // Walk it once more, then cancel it: it unwinds through the walked
        // frames, running its destructors.
        dump_until(&rt, "the fiber sleeps", |d| {
            blocked_in(d, "walked", "fiber::sleep")
        });
        walked.abort();
        assert!(rt.block_on(walked).unwrap_err().is_cancelled());
        assert_eq!(drops.load(SeqCst), 1);
    }
}

#[cfg(feature = "tracing")]
#[test]
fn a_walked_fiber_keeps_its_span() {
    let _d = tracing::subscriber::set_default(tracing_subscriber::registry());
    let rt = Flavor::CurrentThread.build();
    let _g = rt.enter();
    let gate = Gate::new();
    let g = gate.clone();
    let f = fiber::spawn(move || {
        let span = tracing::info_span!("walked-span");
        let _e = span.enter();
        fiber::wait(g.wait());
        tracing::Span::current().metadata().map(|m| m.name())
    });
    dump_until(&rt, "the fiber waits", |d| {
        d.fibers().any(|t| t.blocked_in() == Some("fiber::wait"))
    });
    let outside = rt.block_on(async {
        fiber_runtime::spawn(async { tracing::Span::current().metadata().map(|m| m.name()) })
            .await
            .unwrap()
    });
    assert_ne!(outside, Some("walked-span"), "not entered on its worker");
    gate.open();
    assert_eq!(rt.block_on(f).unwrap(), Some("walked-span"));
}

#[test]
fn dumps_race_spawns_wakes_aborts_and_shutdown_without_hanging() {
    for flavor in Flavor::ALL {
        run_with_timeout(&format!("dump stress on {flavor:?}"), move || {
            for round in 0..8 {
                let rt = flavor.build();
                let h = rt.handle().clone();
                let stop = Arc::new(AtomicBool::new(false));
                let dumps = Arc::new(AtomicUsize::new(0));
                let (s, n) = (stop.clone(), dumps.clone());
                let dumper = thread::spawn(move || {
                    while !s.load(SeqCst) {
                        let d = h.dump();
                        let mut ids: Vec<_> = d.tasks().map(|t| t.id()).collect();
                        let len = ids.len();
                        ids.dedup();
                        assert_eq!(ids.len(), len, "every task once");
                        let _ = d.to_string();
                        n.fetch_add(1, SeqCst);
                    }
                    // After the runtime is gone, too.
                    h.dump()
                });
                let lock = Arc::new(Mutex::new(0u64));
                rt.block_on(async {
                    let mut handles = Vec::new();
                    for i in 0..40 {
                        let l = lock.clone();
                        handles.push(if i % 2 == 0 {
                            fiber_runtime::spawn(async move {
                                for _ in 0..20 {
                                    *l.lock().await += 1;
                                    fiber_runtime::yield_now().await;
                                }
                            })
                        } else {
                            fiber::spawn(move || {
                                for k in 0..20 {
                                    *l.blocking_lock() += 1;
                                    if k % 5 == 0 {
                                        fiber::sleep(Duration::from_millis(1));
                                    } else {
                                        fiber::yield_now();
                                    }
                                }
                            })
                        });
                    }
                    for (i, h) in handles.into_iter().enumerate() {
                        if i % 3 == 0 {
                            h.abort();
                        }
                        let _ = h.await;
                    }
                });
                // Leave some running when the runtime goes.
                {
                    let _g = rt.enter();
                    for _ in 0..10 {
                        drop(fiber::spawn(|| {
                            loop {
                                fiber::yield_now();
                            }
                        }));
                        drop(rt.spawn(async {
                            loop {
                                fiber_runtime::yield_now().await;
                            }
                        }));
                    }
                }
                util::wait_until("a dump", || dumps.load(SeqCst) > round % 3);
                drop(rt);
                stop.store(true, SeqCst);
                let last = dumper.join().unwrap();
                assert_eq!(last.tasks().count(), 0, "{last}");
            }
        });
    }
}

#[cfg(feature = "signal")]
#[test]
fn dump_on_signal_prints_a_dump_to_stderr() {
    use fiber_runtime::signal::unix::SignalKind;
    use std::io::Read;
    use std::os::fd::FromRawFd;
    util::in_child(
        "dump_on_signal_prints_a_dump_to_stderr",
        "FIBER_RUNTIME_DUMP_SIGNAL_CHILD",
        || {
            let rt = fiber_runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .dump_on_signal(SignalKind::user_defined1())
                .build()
                .unwrap();
            let _g = rt.enter();
            let (tx, rx) = oneshot::channel::<()>();
            let f = fiber::Builder::new()
                .name("signalled")
                .spawn(move || park_in_a_named_function_unit(rx))
                .unwrap();
            dump_until(&rt, "the fiber waits", |d| {
                blocked_in(d, "signalled", "oneshot::Receiver::blocking_recv")
            });
            // Stderr into a pipe this test reads.
            let mut fds = [0; 2];
            // SAFETY: plain system calls on descriptors we own.
            let saved = unsafe {
                assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
                let saved = libc::dup(2);
                assert_eq!(libc::dup2(fds[1], 2), 2);
                libc::close(fds[1]);
                saved
            };
            // SAFETY: `fds[0]` is the pipe's read end, ours alone.
            let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
            let (out_tx, out_rx) = std::sync::mpsc::channel();
            thread::spawn(move || {
                let mut text = String::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if text.contains("spawned at") && text.contains("park_in_a_named") {
                        let _ = out_tx.send(text.clone());
                    }
                }
            });
            // SAFETY: raising a signal whose handler is installed.
            unsafe { libc::raise(libc::SIGUSR1) };
            let text = out_rx.recv_timeout(TIMEOUT).expect("a dump on stderr");
            // SAFETY: restores stderr (which closes our pipe's write end).
            unsafe {
                libc::dup2(saved, 2);
                libc::close(saved);
            }
            assert!(
                text.starts_with("fiber-runtime dump: multi-thread runtime"),
                "{text}"
            );
            assert!(text.contains("\"signalled\" [blocked in"), "{text}");
            tx.send(()).unwrap();
            rt.block_on(f).unwrap();
            // Dropping the runtime stops the listener thread.
            drop(rt);
        },
    );
}

#[cfg(feature = "signal")]
#[inline(never)]
fn park_in_a_named_function_unit(rx: oneshot::Receiver<()>) {
    let _ = rx.blocking_recv();
    std::hint::black_box(());
}

#[cfg(feature = "signal")]
#[test]
fn dump_on_signal_refuses_a_signal_it_cannot_handle() {
    use fiber_runtime::signal::unix::SignalKind;
    let err = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .dump_on_signal(SignalKind::from_raw(libc::SIGSEGV))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("SIGSEGV"), "{err}");
}
