//! A live view of a running runtime, redrawn once a second, like `top`.
//!
//! `cargo run --release --example top -- [--seconds N] [--workers N] [--once]`
//!
//! The example starts a demo workload on a multi-thread runtime (TCP echo
//! pairs, a thousand timer tasks, fibers sharing a `sync::Mutex`, a task
//! that crunches numbers in long polls, and one that now and then blocks
//! its worker in `std::thread::sleep`) and attaches a viewer thread to the
//! runtime's `Handle`. Every second the viewer reads `RuntimeMetrics` and
//! prints, per worker: busy %, polls per second, mean poll time (from the
//! sampled poll-time histogram), the slowest histogram bucket reached,
//! local queue depth, steals and parks per second; the runtime totals
//! (tasks, fibers, I/O events, remote schedules, forced yields, long polls,
//! hand-offs); then, from a `Handle::dump()`, the tasks and fibers that
//! were polled most in the last second and the deepest fiber stacks. The
//! `blocks-its-worker` task shows what the long-poll detector reports (on
//! stderr) and the hand-off of its worker to a replacement thread.
//!
//! On a terminal the screen is redrawn in place; when the output is not a
//! terminal (a pipe, a file) each frame is printed after the previous one.
//! `--once` prints one frame after one second and exits.

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::runtime::{Dump, TaskKind};
use fiber_runtime::sync::Mutex;
use fiber_runtime::{Builder, Handle, RuntimeMetrics, fiber, task, time};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Options {
    seconds: u64,
    workers: usize,
    once: bool,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 10,
        workers: 2,
        once: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or_else(|| usage(&format!("{name} takes a positive number")))
        };
        match a.as_str() {
            "--seconds" => o.seconds = number("--seconds"),
            "--workers" => o.workers = number("--workers") as usize,
            "--once" => o.once = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    o
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("top: {msg}");
    }
    eprintln!("usage: top [--seconds N] [--workers N] [--once]");
    std::process::exit(2)
}

fn main() {
    let o = options();
    let rt = Builder::new_multi_thread()
        .worker_threads(o.workers)
        .thread_name("top-worker")
        .build()
        .expect("failed to build the runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = rt.handle().clone();
    let frames = if o.once { 1 } else { o.seconds };
    let viewer = std::thread::Builder::new()
        .name("top-viewer".into())
        .spawn(move || view(&handle, frames, o.once))
        .expect("failed to start the viewer thread");
    rt.block_on(workload(stop.clone(), viewer));
}

/// Runs the demo workload until the viewer thread has drawn its frames.
async fn workload(stop: Arc<AtomicBool>, viewer: std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let mut workers = Vec::new();

    // The echo server: one task per connection.
    workers.push(
        task::Builder::new()
            .name("echo-accept")
            .spawn(async move {
                loop {
                    let Ok((mut s, _)) = listener.accept().await else {
                        return;
                    };
                    let _ = task::Builder::new().name("echo-conn").spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            })
            .expect("spawn"),
    );
    // Eight clients, each sending 64 bytes and waiting for the echo.
    for _ in 0..8 {
        let stop = stop.clone();
        workers.push(
            task::Builder::new()
                .name("echo-client")
                .spawn(async move {
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    let mut buf = [7u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        s.write_all(&buf).await.expect("write");
                        s.read_exact(&mut buf).await.expect("read");
                    }
                })
                .expect("spawn"),
        );
    }
    // A thousand tasks that sleep 1-50 ms in a loop: the timer wheel.
    for i in 0..1000u64 {
        let stop = stop.clone();
        workers.push(
            task::Builder::new()
                .name("ticker")
                .spawn(async move {
                    let ms = 1 + (i * 7919) % 50;
                    while !stop.load(Ordering::Relaxed) {
                        time::sleep(Duration::from_millis(ms)).await;
                    }
                })
                .expect("spawn"),
        );
    }
    // Fifty fibers taking turns on one lock, in plain blocking style.
    let shared = Arc::new(Mutex::new(0u64));
    for _ in 0..50 {
        let (stop, shared) = (stop.clone(), shared.clone());
        workers.push(
            fiber::Builder::new()
                .name("locker")
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        *shared.blocking_lock() += 1;
                        fiber::sleep(Duration::from_millis(5));
                    }
                })
                .expect("spawn"),
        );
    }
    // A task whose polls each crunch for about 2 ms.
    let crunch_stop = stop.clone();
    workers.push(
        task::Builder::new()
            .name("crunch")
            .spawn(async move {
                let mut x = 1u64;
                while !crunch_stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_millis(2) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                    fiber_runtime::yield_now().await;
                }
            })
            .expect("spawn"),
    );
    // A task that blocks its worker for 150 ms every 3 s: a long poll.
    let sleeper_stop = stop.clone();
    workers.push(
        task::Builder::new()
            .name("blocks-its-worker")
            .spawn(async move {
                while !sleeper_stop.load(Ordering::Relaxed) {
                    time::sleep(Duration::from_secs(3)).await;
                    std::thread::sleep(Duration::from_millis(150));
                }
            })
            .expect("spawn"),
    );

    fiber_runtime::spawn_blocking(move || viewer.join())
        .await
        .expect("viewer task")
        .expect("viewer thread panicked");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        // The accept loop never ends by itself; abort it with the rest.
        w.abort();
        let _ = w.await;
    }
}

/// What one worker did over the last second.
struct WorkerRow {
    busy: f64,
    mean: Option<Duration>,
    /// The upper end of the slowest non-empty histogram bucket.
    slowest: Option<Duration>,
    polls: u64,
    steals: u64,
    parks: u64,
    queue: usize,
}

/// Draws `frames` frames, one a second.
fn view(handle: &Handle, frames: u64, once: bool) {
    use std::io::Write;
    let tty = std::io::stdout().is_terminal() && !once;
    let mut before = handle.metrics();
    let mut polls_before = task_polls(&handle.dump());
    let mut at = Instant::now();
    for frame in 1..=frames {
        std::thread::sleep(Duration::from_secs(1));
        let now = handle.metrics();
        let dump = handle.dump();
        let elapsed = at.elapsed();
        let mut text = draw(&before, &now, elapsed, frame);
        draw_tasks(&mut text, &dump, &polls_before);
        polls_before = task_polls(&dump);
        let mut out = std::io::stdout().lock();
        if tty {
            // Home the cursor and clear the screen, then draw.
            let _ = write!(out, "\x1b[H\x1b[2J");
        }
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        before = now;
        at += elapsed;
    }
}

fn draw(before: &RuntimeMetrics, now: &RuntimeMetrics, elapsed: Duration, frame: u64) -> String {
    let secs = elapsed.as_secs_f64();
    let per_sec = |d: u64| d as f64 / secs;
    let rows: Vec<WorkerRow> = (0..now.num_workers())
        .map(|i| WorkerRow {
            busy: (now.worker_busy_duration(i) - before.worker_busy_duration(i)).as_secs_f64()
                / secs,
            mean: now.mean_poll_time(i),
            slowest: now.poll_time_histogram(i).and_then(|h| {
                h.buckets()
                    .filter(|(_, n)| *n > 0)
                    .map(|(range, _)| range.end)
                    .last()
            }),
            polls: now.worker_poll_count(i) - before.worker_poll_count(i),
            steals: now.worker_steal_count(i) - before.worker_steal_count(i),
            parks: now.worker_park_count(i) - before.worker_park_count(i),
            queue: now.worker_local_queue_depth(i),
        })
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "fiber-runtime top — frame {frame}, {} workers, {} tasks, {} fibers alive, {} blocking threads",
        now.num_workers(),
        now.num_alive_tasks(),
        now.num_alive_fibers(),
        now.num_blocking_threads(),
    );
    let _ = writeln!(
        s,
        "per second: {:.0} spawned, {:.0} I/O events, {:.0} remote schedules, {:.0} forced yields; global queue {}",
        per_sec(now.spawned_tasks_count() - before.spawned_tasks_count()),
        per_sec(now.io_ready_count() - before.io_ready_count()),
        per_sec(now.remote_schedule_count() - before.remote_schedule_count()),
        per_sec(now.budget_forced_yield_count() - before.budget_forced_yield_count()),
        now.global_queue_depth(),
    );
    let _ = writeln!(
        s,
        "so far: {} long polls, {} hand-offs, {} replacement threads now; recommended fiber_stack_size {}",
        now.long_poll_count(),
        now.handoff_count(),
        now.num_replacement_threads(),
        now.recommended_fiber_stack_size().map_or(
            "(nothing measured yet)".to_string(),
            |b| format!("{} KiB", b / 1024)
        ),
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>6} {:>6} {:>10} {:>10} {:>10} {:>6} {:>8} {:>8}",
        "worker", "busy", "polls/s", "mean poll", "slowest<=", "queue", "steals/s", "parks/s"
    );
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>6} {:>5.1}% {:>10.0} {:>10} {:>10} {:>6} {:>8.0} {:>8.0}",
            i,
            (r.busy * 100.0).min(100.0),
            per_sec(r.polls),
            r.mean.map_or("-".to_string(), |d| format!("{d:.1?}")),
            r.slowest.map_or("-".to_string(), |d| format!("{d:.0?}")),
            r.queue,
            per_sec(r.steals),
            per_sec(r.parks),
        );
    }
    s
}

/// Poll counts by task id, from a dump.
fn task_polls(dump: &Dump) -> HashMap<fiber_runtime::task::Id, u64> {
    dump.tasks().map(|t| (t.id(), t.poll_count())).collect()
}

/// The tasks and fibers polled most since the previous dump, and the
/// deepest fiber stacks.
fn draw_tasks(s: &mut String, dump: &Dump, before: &HashMap<fiber_runtime::task::Id, u64>) {
    let mut busiest: Vec<_> = dump
        .tasks()
        .map(|t| {
            let was = before.get(&t.id()).copied().unwrap_or(0);
            (t.poll_count().saturating_sub(was), t)
        })
        .filter(|(n, _)| *n > 0)
        .collect();
    busiest.sort_by_key(|b| std::cmp::Reverse(b.0));
    let _ = writeln!(s);
    let _ = writeln!(s, "polled most in the last second:");
    for (n, t) in busiest.iter().take(5) {
        let kind = match t.kind() {
            TaskKind::Fiber => "fiber",
            _ => "task",
        };
        let _ = writeln!(
            s,
            "  {n:>8} polls  {kind} {} {:?}, {:?}, spawned at {}",
            t.id(),
            t.name().unwrap_or("-"),
            t.state(),
            t.spawn_location(),
        );
    }
    let mut deepest: Vec<_> = dump
        .fibers()
        .filter_map(|t| t.stack_usage().map(|u| (u, t)))
        .collect();
    deepest.sort_by_key(|d| std::cmp::Reverse(d.0.high_water()));
    if let Some((u, t)) = deepest.first() {
        let _ = writeln!(
            s,
            "deepest fiber stack: {} KiB of {} KiB (fiber {} {:?})",
            u.high_water() / 1024,
            u.size() / 1024,
            t.id(),
            t.name().unwrap_or("-"),
        );
    }
}
