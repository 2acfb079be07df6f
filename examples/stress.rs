//! The stress suite: races and load that unit tests are too small to hit,
//! each checked for what must hold (nothing lost, nothing dropped twice,
//! nothing leaked, nothing hung). `.ci/run` runs it in release.
//!
//! ```text
//! cargo run --release --example stress -- [--scale S] [--only NAME[,NAME]]
//! ```
//!
//! Workloads (`--scale` multiplies their sizes; the default, 1, takes
//! about 20 s on 2 cores; 4, the CI size (`.ci/run`), about four times
//! that):
//!
//! - `wake_storm`: threads send messages to tasks and fibers (each a
//!   receiver waiting on its channel); every message arrives.
//! - `abort_race`: tasks and fibers aborted from another thread while they
//!   complete; every future and every output is dropped exactly once, and
//!   every `JoinHandle` resolves.
//! - `drop_race`: runtimes dropped (from another thread) while their tasks,
//!   fibers, timers and sockets are busy; every future is dropped exactly
//!   once and the drop returns.
//! - `timers`: many 1 ms sleeps in a loop on 1, 4 and 16 workers; counts
//!   the sleeps that never fire (lost wakeups).
//! - `echo_soak`: echo connections for a while; the open descriptors come
//!   back to where they were and the RSS stops growing.
//!
//! A failure prints what went wrong and exits with status 1. A workload
//! that does not finish within its deadline (minutes, far beyond its
//! normal time) counts as a hang: a deadline here detects hangs, it does
//! not measure speed.

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::time::{Duration, Instant, sleep};
use fiber_runtime::{Builder, JoinHandle, Runtime, fiber};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
#[path = "shared/stats.rs"]
mod stats;

/// How long any one workload may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(120);

struct Options {
    scale: usize,
    only: Option<Vec<String>>,
}

fn parse_args() -> Options {
    let mut o = Options {
        scale: 1,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scale" => {
                o.scale = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s| s > 0)
                    .expect("--scale takes a positive number")
            }
            "--only" => {
                o.only = Some(
                    args.next()
                        .expect("--only takes names")
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            "--bench" => {}
            other => {
                eprintln!("usage: stress [--scale S] [--only NAME[,NAME]]; unknown {other:?}");
                std::process::exit(2);
            }
        }
    }
    o
}

/// A runtime flavor to run a workload on: its name and how to build it.
type Flavor = (&'static str, fn() -> Runtime);

/// A workload: its name and its body, given the scale.
type Workload = (&'static str, fn(usize));

fn flavors() -> Vec<Flavor> {
    vec![
        ("current_thread", || {
            Builder::new_current_thread().build().unwrap()
        }),
        ("multi_thread(1)", || {
            Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap()
        }),
        ("multi_thread(2)", || {
            Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap()
        }),
        ("multi_thread(4)", || {
            Builder::new_multi_thread()
                .worker_threads(4)
                .build()
                .unwrap()
        }),
    ]
}

/// Runs `f` on a thread of its own, failing (exit 1) if it panics or
/// takes longer than `DEADLINE`.
fn bounded<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    bounded_for(DEADLINE, what, f)
}

/// [`bounded`] with the deadline `deadline`, for a workload whose normal
/// time grows with the scale.
fn bounded_for<R: Send + 'static>(
    deadline: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => fail(&format!("{what}: panicked")),
        Err(_) => fail(&format!("{what}: hung (not done after {deadline:?})")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("STRESS FAILURE: {msg}");
    std::process::exit(1);
}

fn check(ok: bool, msg: impl FnOnce() -> String) {
    if !ok {
        fail(&msg());
    }
}

/// Counts drops.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

// ---------------------------------------------------------------------------

fn wake_storm(scale: usize) {
    const SENDERS: usize = 8;
    let targets = 200;
    let per_sender = 100_000 * scale;
    for (name, make) in flavors() {
        let start = Instant::now();
        let got = bounded(&format!("wake_storm on {name}"), move || {
            let rt = make();
            let received = Arc::new(AtomicUsize::new(0));
            let mut senders = Vec::new();
            let mut receivers: Vec<JoinHandle<()>> = Vec::new();
            for i in 0..targets {
                let (tx, mut rx) = futures::channel::mpsc::unbounded::<u32>();
                senders.push(tx);
                let received = received.clone();
                let _g = rt.enter();
                receivers.push(if i % 2 == 0 {
                    fiber_runtime::spawn(async move {
                        while rx.next().await.is_some() {
                            received.fetch_add(1, SeqCst);
                        }
                    })
                } else {
                    fiber::spawn(move || {
                        while fiber::wait(rx.next()).is_some() {
                            received.fetch_add(1, SeqCst);
                        }
                    })
                });
            }
            let senders = Arc::new(senders);
            let threads: Vec<_> = (0..SENDERS)
                .map(|t| {
                    let senders = senders.clone();
                    std::thread::spawn(move || {
                        let mut x = t as u64 + 1;
                        for _ in 0..per_sender {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            senders[(x % senders.len() as u64) as usize]
                                .unbounded_send(1)
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            drop(senders);
            rt.block_on(async {
                for r in receivers {
                    r.await.unwrap();
                }
            });
            received.load(SeqCst)
        });
        check(got == SENDERS * per_sender, || {
            format!(
                "wake_storm on {name}: {got} of {} messages arrived",
                SENDERS * per_sender
            )
        });
        println!(
            "wake_storm     {name:16} {:>9} wakes to {targets} tasks and fibers, none lost ({:.1?})",
            SENDERS * per_sender,
            start.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------

fn abort_race(scale: usize) {
    let n = 100_000 * scale;
    for (name, make) in flavors() {
        let start = Instant::now();
        bounded(&format!("abort_race on {name}"), move || {
            let rt = make();
            let futures_dropped = Arc::new(AtomicUsize::new(0));
            let outputs_dropped = Arc::new(AtomicUsize::new(0));
            let handles: Vec<JoinHandle<Token>> = (0..n)
                .map(|i| {
                    // Made now, so that a future dropped before its first
                    // poll counts too.
                    let f = Token(futures_dropped.clone());
                    let o = outputs_dropped.clone();
                    let _g = rt.enter();
                    if i % 4 == 3 {
                        fiber::spawn(move || {
                            let _f = f;
                            if i % 8 == 3 {
                                fiber::yield_now();
                            }
                            Token(o)
                        })
                    } else {
                        fiber_runtime::spawn(async move {
                            let _f = f;
                            if i % 2 == 0 {
                                fiber_runtime::yield_now().await;
                            }
                            Token(o)
                        })
                    }
                })
                .collect();
            let handles = Arc::new(handles);
            // Abort every other one from another thread, racing the
            // workers that complete them.
            let aborter = {
                let handles = handles.clone();
                std::thread::spawn(move || {
                    for h in handles.iter().step_by(2) {
                        h.abort();
                    }
                })
            };
            aborter.join().unwrap();
            let handles = Arc::try_unwrap(handles).unwrap_or_else(|_| unreachable!());
            let (mut ok, mut cancelled) = (0, 0);
            rt.block_on(async {
                for h in handles {
                    match h.await {
                        Ok(out) => {
                            ok += 1;
                            drop(out);
                        }
                        Err(e) if e.is_cancelled() => cancelled += 1,
                        Err(e) => fail(&format!("abort_race on {name}: {e}")),
                    }
                }
            });
            drop(rt);
            check(ok + cancelled == n, || {
                format!("abort_race on {name}: {ok} + {cancelled} of {n} resolved")
            });
            check(futures_dropped.load(SeqCst) == n, || {
                format!(
                    "abort_race on {name}: {} of {n} futures dropped",
                    futures_dropped.load(SeqCst)
                )
            });
            check(outputs_dropped.load(SeqCst) == ok, || {
                format!(
                    "abort_race on {name}: {} outputs dropped for {ok} completed",
                    outputs_dropped.load(SeqCst)
                )
            });
        });
        println!(
            "abort_race     {name:16} {n:>9} tasks and fibers, half aborted, each dropped once ({:.1?})",
            start.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------

fn drop_race(scale: usize) {
    let rounds = 100 * scale;
    for (name, make) in flavors() {
        let start = Instant::now();
        bounded(&format!("drop_race on {name}"), move || {
            for round in 0..rounds {
                let rt = make();
                let made = Arc::new(AtomicUsize::new(0));
                let dropped = Arc::new(AtomicUsize::new(0));
                let listener = {
                    let _g = rt.enter();
                    TcpListener::bind("127.0.0.1:0").unwrap()
                };
                let addr = listener.local_addr().unwrap();
                let listener = Arc::new(listener);
                for i in 0..200 {
                    let _g = rt.enter();
                    let (m, d) = (made.clone(), dropped.clone());
                    m.fetch_add(1, SeqCst);
                    let token = Token(d);
                    let listener = listener.clone();
                    match i % 5 {
                        0 => drop(fiber_runtime::spawn(async move {
                            let _t = token;
                            loop {
                                fiber_runtime::yield_now().await;
                            }
                        })),
                        1 => drop(fiber_runtime::spawn(async move {
                            let _t = token;
                            loop {
                                sleep(Duration::from_millis(1)).await;
                            }
                        })),
                        2 => drop(fiber::spawn(move || {
                            let _t = token;
                            loop {
                                fiber::sleep(Duration::from_millis(1));
                                fiber::yield_now();
                            }
                        })),
                        3 => drop(fiber_runtime::spawn(async move {
                            let _t = token;
                            loop {
                                if let Ok((mut s, _)) = listener.accept().await {
                                    let mut b = [0u8; 8];
                                    let _ = s.read(&mut b).await;
                                }
                            }
                        })),
                        _ => drop(fiber_runtime::spawn(async move {
                            let _t = token;
                            loop {
                                if let Ok(mut c) = TcpStream::connect(addr).await {
                                    let _ = c.write_all(b"hi").await;
                                }
                                fiber_runtime::yield_now().await;
                            }
                        })),
                    }
                }
                // Let them run for a moment (on a current-thread runtime,
                // only while driven), then drop the runtime elsewhere,
                // racing everything (except a current-thread runtime,
                // whose started fibers must be dropped on their thread).
                rt.block_on(async {
                    for _ in 0..(round % 7) * 20 {
                        fiber_runtime::yield_now().await;
                    }
                });
                if name == "current_thread" {
                    drop(rt);
                } else {
                    std::thread::spawn(move || drop(rt)).join().unwrap();
                }
                drop(listener);
                let (m, d) = (made.load(SeqCst), dropped.load(SeqCst));
                check(m == d, || {
                    format!("drop_race on {name}, round {round}: {d} of {m} futures dropped")
                });
            }
        });
        println!(
            "drop_race      {name:16} {rounds:>9} runtimes dropped mid-flight, every future dropped once ({:.1?})",
            start.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------

fn timers(scale: usize) {
    // A lost timer wakeup only stays lost while no other timer wakes the
    // driver, so the lost ones show at the end of a burst: many short
    // bursts, each on a fresh runtime, each checked for sleepers that
    // never finish.
    let bursts = 150 * scale;
    let sleepers = 8;
    let rounds = 4;
    for workers in [1, 4, 16] {
        let start = Instant::now();
        let lost = bounded(&format!("timers on {workers} workers"), move || {
            let mut lost = 0;
            for _ in 0..bursts {
                let rt = Builder::new_multi_thread()
                    .worker_threads(workers)
                    .build()
                    .unwrap();
                let done = Arc::new(AtomicUsize::new(0));
                for i in 0..sleepers {
                    let done = done.clone();
                    let _g = rt.enter();
                    let body = async move {
                        for _ in 0..rounds {
                            sleep(Duration::from_millis(1)).await;
                        }
                        done.fetch_add(1, SeqCst);
                    };
                    if i % 4 == 0 {
                        drop(fiber::spawn(move || fiber::wait(body)));
                    } else {
                        drop(fiber_runtime::spawn(body));
                    }
                }
                // Hundreds of times the burst's length: a sleeper not done
                // by then waits on a timer nobody will fire.
                let deadline = Instant::now() + Duration::from_secs(2);
                while done.load(SeqCst) < sleepers && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                lost += sleepers - done.load(SeqCst);
                drop(rt);
            }
            lost
        });
        let total = bursts * sleepers * rounds;
        check(lost == 0, || {
            format!(
                "timers on {workers} workers: {lost} sleepers of {} never finished their {rounds} \
                 1 ms sleeps (a lost timer wakeup)",
                bursts * sleepers
            )
        });
        println!(
            "timers         {:16} {:>9} 1 ms sleeps in {bursts} bursts, none lost ({:.1?})",
            format!("multi_thread({workers})"),
            total,
            start.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn echo_soak(scale: usize) {
    const CONNS: usize = 100;
    let secs = 10 * scale as u64;
    let start = Instant::now();
    // The soak itself lasts `secs` (plus a second of warm-up): the deadline
    // comes on top of that.
    let deadline = DEADLINE + Duration::from_secs(1 + secs);
    let (fds_before, fds_after, rss_warm, rss_end, trips) =
        bounded_for(deadline, "echo_soak", move || {
            let fds_before = open_fds();
            let rt = Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (rss_warm, rss_end, trips) = rt.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let server = fiber_runtime::spawn(async move {
                    let mut conns = Vec::new();
                    for i in 0..CONNS {
                        let (s, _) = listener.accept().await.unwrap();
                        if i % 2 == 0 {
                            conns.push(fiber_runtime::spawn(async move {
                                let mut s = s;
                                let mut buf = [0u8; 64];
                                loop {
                                    match s.read(&mut buf).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                                    }
                                }
                            }));
                        } else {
                            conns.push(fiber::spawn(move || {
                                use std::io::{Read, Write};
                                let mut s = s;
                                let mut buf = [0u8; 64];
                                loop {
                                    match Read::read(&mut s, &mut buf) {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => Write::write_all(&mut s, &buf[..n]).unwrap(),
                                    }
                                }
                            }));
                        }
                    }
                    for c in conns {
                        c.await.unwrap();
                    }
                });
                let trips = Arc::new(AtomicUsize::new(0));
                let clients: Vec<_> = (0..CONNS)
                    .map(|_| {
                        let (stop, trips) = (stop.clone(), trips.clone());
                        fiber_runtime::spawn(async move {
                            let mut c = TcpStream::connect(addr).await.unwrap();
                            let mut buf = [7u8; 64];
                            while !stop.load(SeqCst) {
                                c.write_all(&buf).await.unwrap();
                                c.read_exact(&mut buf).await.unwrap();
                                trips.fetch_add(1, SeqCst);
                            }
                        })
                    })
                    .collect();
                sleep(Duration::from_secs(1)).await;
                let rss_warm = stats::rss_bytes();
                sleep(Duration::from_secs(secs)).await;
                let rss_end = stats::rss_bytes();
                stop.store(true, SeqCst);
                for c in clients {
                    c.await.unwrap();
                }
                server.await.unwrap();
                (rss_warm, rss_end, trips.load(SeqCst))
            });
            drop(rt);
            (fds_before, open_fds(), rss_warm, rss_end, trips)
        });
    check(fds_after == fds_before, || {
        format!("echo_soak: {fds_before} descriptors before, {fds_after} after")
    });
    let growth = rss_end.saturating_sub(rss_warm);
    // After warm-up the working set is fixed: growth beyond a few MiB over
    // the soak is a leak per round trip.
    check(growth < 8 << 20, || {
        format!(
            "echo_soak: RSS grew by {} KiB over {secs} s after warm-up ({trips} round trips)",
            growth / 1024
        )
    });
    println!(
        "echo_soak      {:16} {:>9} round trips over {CONNS} conns, fds back to {fds_before}, RSS +{} KiB ({:.1?})",
        "multi_thread(2)",
        trips,
        growth / 1024,
        start.elapsed()
    );
}

fn main() {
    let o = parse_args();
    let all: [Workload; 5] = [
        ("wake_storm", wake_storm),
        ("abort_race", abort_race),
        ("drop_race", drop_race),
        ("timers", timers),
        ("echo_soak", echo_soak),
    ];
    if let Some(only) = &o.only {
        for name in only {
            if !all.iter().any(|(n, _)| n == name) {
                eprintln!("unknown workload {name:?}");
                std::process::exit(2);
            }
        }
    }
    let start = Instant::now();
    for (name, run) in all {
        if o.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
        {
            run(o.scale);
        }
    }
    println!("stress: all passed in {:.1?}", start.elapsed());
}
