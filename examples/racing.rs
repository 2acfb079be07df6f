//! Stress test: a task is never polled by two workers at once.
//!
//! Many tasks run on more workers than there are cores (so the OS preempts
//! workers mid-poll). Every poll of a task:
//!
//! 1. sets the task's "in poll" flag, counting an *overlap* if it was
//!    already set (another worker polling the same task right now);
//! 2. spins a little, so that an overlap would have time to show;
//! 3. stores its waker, then wakes two random other tasks (which may be
//!    running right now, on another worker: the runtime must then re-run
//!    them after their poll, never concurrently);
//! 4. sometimes wakes itself;
//! 5. clears the flag and returns `Pending` until it has been polled
//!    `--polls` times.
//!
//! A plain OS thread also wakes every task in a loop (wakes from outside
//! the runtime, and it keeps every task live). After the run, the totals
//! must show no overlap, no poll after completion, and exactly
//! `tasks × polls` polls.
//!
//! `cargo run --release --example racing -- [--workers 8] [--tasks 256] [--polls 2000]`

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Spin iterations inside each poll (widens the window an overlap needs).
const SPIN: u32 = 200;

/// What every poll of one task records.
#[derive(Default)]
struct Slot {
    in_poll: AtomicBool,
    polls: AtomicU64,
    last_thread: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

#[derive(Default)]
struct Shared {
    slots: Vec<Slot>,
    overlaps: AtomicU64,
    migrations: AtomicU64,
    polls_after_done: AtomicU64,
    task_wakes: AtomicU64,
    self_wakes: AtomicU64,
    finished: AtomicUsize,
}

impl Shared {
    /// Wakes task `id` if it has stored a waker yet; returns whether it did.
    fn wake(&self, id: usize) -> bool {
        let waker = self.slots[id].waker.lock().unwrap().clone();
        match waker {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        }
    }
}

/// A small id per OS thread, to see when a task moves between workers.
fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

struct Racer {
    id: usize,
    shared: Arc<Shared>,
    polls_left: u32,
    done: bool,
    rng: u64,
}

impl Racer {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl Future for Racer {
    type Output = u32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let this = &mut *self; // `Racer` is `Unpin`
        let shared = Arc::clone(&this.shared);
        let slot = &shared.slots[this.id];

        // 1. Enter: nobody else may be polling this task right now.
        if slot.in_poll.swap(true, Ordering::Acquire) {
            shared.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        if this.done {
            shared.polls_after_done.fetch_add(1, Ordering::Relaxed);
        }
        slot.polls.fetch_add(1, Ordering::Relaxed);
        let me = thread_id();
        let before = slot.last_thread.swap(me, Ordering::Relaxed);
        if before != 0 && before != me {
            shared.migrations.fetch_add(1, Ordering::Relaxed);
        }

        // 2. Stay in the poll a little while.
        for _ in 0..SPIN {
            std::hint::spin_loop();
        }

        // 3. Store our waker, wake two others.
        {
            let mut stored = slot.waker.lock().unwrap();
            if !stored.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *stored = Some(cx.waker().clone());
            }
        }
        let n = shared.slots.len() as u64;
        for _ in 0..2 {
            let other = (this.next_rand() % n) as usize;
            if shared.wake(other) {
                shared.task_wakes.fetch_add(1, Ordering::Relaxed);
            }
        }

        this.polls_left -= 1;
        let ready = this.polls_left == 0;
        // 4. Sometimes wake ourselves (woken while running).
        if !ready && this.next_rand() % 4 == 0 {
            shared.self_wakes.fetch_add(1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
        }

        // 5. Leave.
        if ready {
            this.done = true;
            shared.finished.fetch_add(1, Ordering::Relaxed);
        }
        slot.in_poll.store(false, Ordering::Release);
        if ready {
            Poll::Ready(this.id as u32)
        } else {
            Poll::Pending
        }
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a number")),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workers = arg(&args, "--workers", 8);
    let tasks = arg(&args, "--tasks", 256);
    let polls = arg(&args, "--polls", 2000) as u32;
    assert!(tasks > 0 && polls > 0);

    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("failed to build runtime");
    let shared = Arc::new(Shared {
        slots: (0..tasks).map(|_| Slot::default()).collect(),
        ..Shared::default()
    });

    println!(
        "racing: {workers} workers on {} cores, {tasks} tasks x {polls} polls",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let start = Instant::now();

    // Outside waker: a plain thread waking every task, over and over.
    let outside_wakes = Arc::new(AtomicU64::new(0));
    let waker_thread = {
        let shared = Arc::clone(&shared);
        let outside_wakes = Arc::clone(&outside_wakes);
        std::thread::spawn(move || {
            while shared.finished.load(Ordering::Relaxed) < shared.slots.len() {
                for id in 0..shared.slots.len() {
                    if shared.wake(id) {
                        outside_wakes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };

    let handles: Vec<_> = (0..tasks)
        .map(|id| {
            rt.spawn(Racer {
                id,
                shared: Arc::clone(&shared),
                polls_left: polls,
                done: false,
                rng: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x1000_0000_01b3),
            })
        })
        .collect();
    let ids: Vec<u32> = rt.block_on(async {
        let mut ids = Vec::with_capacity(handles.len());
        for h in handles {
            ids.push(h.await.expect("racer task failed"));
        }
        ids
    });
    let elapsed = start.elapsed();
    waker_thread.join().unwrap();

    // Let the workers publish their metrics (they do when they park).
    std::thread::sleep(Duration::from_millis(20));
    let m = rt.metrics();

    let total_polls: u64 = shared
        .slots
        .iter()
        .map(|s| s.polls.load(Ordering::Relaxed))
        .sum();
    let expected = tasks as u64 * u64::from(polls);
    let overlaps = shared.overlaps.load(Ordering::Relaxed);
    let after_done = shared.polls_after_done.load(Ordering::Relaxed);
    let migrations = shared.migrations.load(Ordering::Relaxed);
    let pct = |x: u64| 100.0 * x as f64 / total_polls.max(1) as f64;

    println!("  elapsed                    {elapsed:.2?}");
    println!("  polls                      {total_polls} (expected {expected})");
    println!(
        "  polls on another thread    {migrations} ({:.1}% of polls)",
        pct(migrations)
    );
    println!(
        "  wakes by other tasks       {}",
        shared.task_wakes.load(Ordering::Relaxed)
    );
    println!(
        "  self-wakes during poll     {}",
        shared.self_wakes.load(Ordering::Relaxed)
    );
    println!(
        "  wakes from outside thread  {}",
        outside_wakes.load(Ordering::Relaxed)
    );
    println!("  overlapping polls seen     {overlaps}");
    println!("  polls after completion     {after_done}");
    let mut worker_polls = 0;
    for i in 0..m.num_workers() {
        println!(
            "  worker {i:<2} polls {:>8}  steals {:>6}  parks {:>6}",
            m.worker_poll_count(i),
            m.worker_steal_count(i),
            m.worker_park_count(i)
        );
        worker_polls += m.worker_poll_count(i);
    }
    println!("  polls counted by metrics   {worker_polls}");

    assert_eq!(overlaps, 0, "a task was polled by two workers at once");
    assert_eq!(after_done, 0, "a task was polled after it completed");
    assert_eq!(total_polls, expected, "unexpected number of polls");
    assert!(ids.iter().enumerate().all(|(i, &id)| id as usize == i));

    // Drop the runtime while the slots still hold wakers of its (finished)
    // tasks; the wakers are dropped afterwards, with the runtime gone.
    drop(rt);
    drop(shared);
    println!("ok: no task was ever polled concurrently");
}
