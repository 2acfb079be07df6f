//! `sync` primitives against tokio's (tasks) and may's (coroutines), head
//! to head, interleaved: every round runs each row on each runtime back
//! to back, alternating which goes first; medians and ratios at the end.
//!
//! ```text
//! cargo run --release --example sync_bench -- [--rounds 11] [--only NAME[,NAME...]] [--verbose]
//! ```
//!
//! All runtimes get 2 worker threads (may: `set_workers(2)`, its global
//! scheduler). Rows (lower is better; ratio = fiber-runtime / peer):
//!
//! - `mutex_uncontended`: one task, 1M × `lock().await` + drop; ns per
//!   lock, against `tokio::sync::Mutex`.
//! - `mutex_tasks`: 4 tasks × 100k increments of one `Mutex`; ms, against
//!   tokio.
//! - `mutex_fibers`: 4 fibers × 100k `blocking_lock` increments; ms,
//!   against 4 may coroutines on `may::sync::Mutex`.
//! - `mpsc_tasks`: `mpsc::channel(1024)`, a producer task sends 1M
//!   `u64`s to a consumer task; ms, against `tokio::sync::mpsc`.
//! - `mpsc_fiber_task`: the same, producer a fiber (`blocking_send`),
//!   consumer a task; against may's `mpsc` between two coroutines (may's
//!   channel is unbounded: it never waits for the consumer, ours does).
//! - `oneshot_ping_pong`: the `ping_pong` workload (100 pairs × 1000
//!   round trips, a fresh oneshot per message carrying the reply's
//!   sender) on `sync::oneshot`; against tokio's oneshot on tokio.
//! - `scope_fibers`: `fiber::scope` inside a fiber with 10k child fibers,
//!   each writing the one slot of a `Vec` it borrows; ns per child,
//!   against `std::thread::scope` with 100 threads doing the same (per
//!   child: a thread each).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
#[path = "shared/stats.rs"]
mod stats;

const WORKERS: usize = 2;
const UNCONTENDED_N: u64 = 1_000_000;
const CONTENDED_PARTIES: u64 = 4;
const CONTENDED_N: u64 = 100_000;
const MPSC_N: u64 = 1_000_000;
const MPSC_CAP: usize = 1024;
const PING_PAIRS: usize = 100;
const PING_ROUNDS: u64 = 1000;

struct Row {
    name: &'static str,
    size: &'static str,
    unit: &'static str,
    peer: &'static str,
    target: f64,
    ours: fn(&fiber_runtime::Runtime) -> f64,
    theirs: fn(&tokio::runtime::Runtime) -> f64,
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

mod ours {
    use super::*;
    use fiber_runtime::fiber;
    use fiber_runtime::sync::{Mutex, mpsc, oneshot};

    pub(crate) fn mutex_uncontended(rt: &fiber_runtime::Runtime) -> f64 {
        rt.block_on(async {
            let m = Mutex::new(0u64);
            let start = Instant::now();
            for _ in 0..UNCONTENDED_N {
                *black_box(&m).lock().await += 1;
            }
            let ns = start.elapsed().as_nanos() as f64 / UNCONTENDED_N as f64;
            assert_eq!(*m.lock().await, UNCONTENDED_N);
            ns
        })
    }

    pub(crate) fn mutex_tasks(rt: &fiber_runtime::Runtime) -> f64 {
        rt.block_on(async {
            let m = Arc::new(Mutex::new(0u64));
            let start = Instant::now();
            let hs: Vec<_> = (0..CONTENDED_PARTIES)
                .map(|_| {
                    let m = m.clone();
                    fiber_runtime::spawn(async move {
                        for _ in 0..CONTENDED_N {
                            *m.lock().await += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            let t = ms(start);
            assert_eq!(*m.lock().await, CONTENDED_PARTIES * CONTENDED_N);
            t
        })
    }

    pub(crate) fn mutex_fibers(rt: &fiber_runtime::Runtime) -> f64 {
        rt.block_on(async {
            let m = Arc::new(Mutex::new(0u64));
            let start = Instant::now();
            let hs: Vec<_> = (0..CONTENDED_PARTIES)
                .map(|_| {
                    let m = m.clone();
                    fiber::spawn(move || {
                        for _ in 0..CONTENDED_N {
                            *m.blocking_lock() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            let t = ms(start);
            assert_eq!(*m.lock().await, CONTENDED_PARTIES * CONTENDED_N);
            t
        })
    }

    pub(crate) fn scope_fibers(rt: &fiber_runtime::Runtime) -> f64 {
        const CHILDREN: usize = 10_000;
        rt.block_on(async {
            fiber::spawn(|| {
                let mut slots = vec![0u64; CHILDREN];
                let start = Instant::now();
                fiber::scope(|s| {
                    for (i, slot) in slots.iter_mut().enumerate() {
                        s.spawn(move || *slot = i as u64);
                    }
                });
                let t = start.elapsed().as_nanos() as f64 / CHILDREN as f64;
                assert_eq!(
                    black_box(&slots).iter().sum::<u64>(),
                    (CHILDREN as u64 * (CHILDREN as u64 - 1)) / 2
                );
                t
            })
            .await
            .unwrap()
        })
    }

    pub(crate) fn mpsc_tasks(rt: &fiber_runtime::Runtime) -> f64 {
        rt.block_on(async {
            let (tx, mut rx) = mpsc::channel::<u64>(MPSC_CAP);
            let start = Instant::now();
            let producer = fiber_runtime::spawn(async move {
                for i in 0..MPSC_N {
                    tx.send(i).await.unwrap();
                }
            });
            let consumer = fiber_runtime::spawn(async move {
                let mut sum = 0;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                sum
            });
            producer.await.unwrap();
            let sum = consumer.await.unwrap();
            let t = ms(start);
            assert_eq!(sum, MPSC_N * (MPSC_N - 1) / 2);
            t
        })
    }

    pub(crate) fn mpsc_fiber_task(rt: &fiber_runtime::Runtime) -> f64 {
        rt.block_on(async {
            let (tx, mut rx) = mpsc::channel::<u64>(MPSC_CAP);
            let start = Instant::now();
            let producer = fiber::spawn(move || {
                for i in 0..MPSC_N {
                    tx.blocking_send(i).unwrap();
                }
            });
            let consumer = fiber_runtime::spawn(async move {
                let mut sum = 0;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                sum
            });
            producer.await.unwrap();
            let sum = consumer.await.unwrap();
            let t = ms(start);
            assert_eq!(sum, MPSC_N * (MPSC_N - 1) / 2);
            t
        })
    }

    struct Ping(u64, oneshot::Sender<Ping>);

    pub(crate) fn oneshot_ping_pong(rt: &fiber_runtime::Runtime) -> f64 {
        rt.block_on(async {
            let start = Instant::now();
            let mut hs = Vec::new();
            for _ in 0..PING_PAIRS {
                let (tx, rx) = oneshot::channel::<Ping>();
                let pong = fiber_runtime::spawn(async move {
                    let mut from = rx;
                    let mut n = 0;
                    while let Ok(Ping(v, reply)) = from.await {
                        let (tx, rx) = oneshot::channel();
                        if reply.send(Ping(v + 1, tx)).is_err() {
                            break;
                        }
                        from = rx;
                        n += 1;
                    }
                    n
                });
                let ping = fiber_runtime::spawn(async move {
                    let mut to = tx;
                    let mut v = 0;
                    for _ in 0..PING_ROUNDS {
                        let (tx, rx) = oneshot::channel();
                        assert!(to.send(Ping(v, tx)).is_ok());
                        let Ping(got, reply) = rx.await.unwrap();
                        v = got + 1;
                        to = reply;
                    }
                    v
                });
                hs.push((ping, pong));
            }
            for (ping, pong) in hs {
                assert_eq!(ping.await.unwrap(), 2 * PING_ROUNDS);
                assert_eq!(pong.await.unwrap(), PING_ROUNDS);
            }
            ms(start)
        })
    }
}

mod tokio_side {
    use super::*;
    use tokio::sync::{Mutex, mpsc, oneshot};

    pub(crate) fn mutex_uncontended(rt: &tokio::runtime::Runtime) -> f64 {
        rt.block_on(async {
            let m = Mutex::new(0u64);
            let start = Instant::now();
            for _ in 0..UNCONTENDED_N {
                *black_box(&m).lock().await += 1;
            }
            let ns = start.elapsed().as_nanos() as f64 / UNCONTENDED_N as f64;
            assert_eq!(*m.lock().await, UNCONTENDED_N);
            ns
        })
    }

    pub(crate) fn mutex_tasks(rt: &tokio::runtime::Runtime) -> f64 {
        rt.block_on(async {
            let m = Arc::new(Mutex::new(0u64));
            let start = Instant::now();
            let hs: Vec<_> = (0..CONTENDED_PARTIES)
                .map(|_| {
                    let m = m.clone();
                    tokio::spawn(async move {
                        for _ in 0..CONTENDED_N {
                            *m.lock().await += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            let t = ms(start);
            assert_eq!(*m.lock().await, CONTENDED_PARTIES * CONTENDED_N);
            t
        })
    }

    pub(crate) fn mpsc_tasks(rt: &tokio::runtime::Runtime) -> f64 {
        rt.block_on(async {
            let (tx, mut rx) = mpsc::channel::<u64>(MPSC_CAP);
            let start = Instant::now();
            let producer = tokio::spawn(async move {
                for i in 0..MPSC_N {
                    tx.send(i).await.unwrap();
                }
            });
            let consumer = tokio::spawn(async move {
                let mut sum = 0;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                sum
            });
            producer.await.unwrap();
            let sum = consumer.await.unwrap();
            let t = ms(start);
            assert_eq!(sum, MPSC_N * (MPSC_N - 1) / 2);
            t
        })
    }

    struct Ping(u64, oneshot::Sender<Ping>);

    pub(crate) fn oneshot_ping_pong(rt: &tokio::runtime::Runtime) -> f64 {
        rt.block_on(async {
            let start = Instant::now();
            let mut hs = Vec::new();
            for _ in 0..PING_PAIRS {
                let (tx, rx) = oneshot::channel::<Ping>();
                let pong = tokio::spawn(async move {
                    let mut from = rx;
                    let mut n = 0;
                    while let Ok(Ping(v, reply)) = from.await {
                        let (tx, rx) = oneshot::channel();
                        if reply.send(Ping(v + 1, tx)).is_err() {
                            break;
                        }
                        from = rx;
                        n += 1;
                    }
                    n
                });
                let ping = tokio::spawn(async move {
                    let mut to = tx;
                    let mut v = 0;
                    for _ in 0..PING_ROUNDS {
                        let (tx, rx) = oneshot::channel();
                        assert!(to.send(Ping(v, tx)).is_ok());
                        let Ping(got, reply) = rx.await.unwrap();
                        v = got + 1;
                        to = reply;
                    }
                    v
                });
                hs.push((ping, pong));
            }
            for (ping, pong) in hs {
                assert_eq!(ping.await.unwrap(), 2 * PING_ROUNDS);
                assert_eq!(pong.await.unwrap(), PING_ROUNDS);
            }
            ms(start)
        })
    }
}

mod std_side {
    use super::*;

    pub(crate) fn scope_threads(_: &tokio::runtime::Runtime) -> f64 {
        const THREADS: usize = 100;
        let mut slots = vec![0u64; THREADS];
        let start = Instant::now();
        std::thread::scope(|s| {
            for (i, slot) in slots.iter_mut().enumerate() {
                s.spawn(move || *slot = i as u64);
            }
        });
        let t = start.elapsed().as_nanos() as f64 / THREADS as f64;
        assert_eq!(
            black_box(&slots).iter().sum::<u64>(),
            (THREADS as u64 * (THREADS as u64 - 1)) / 2
        );
        t
    }
}

mod may_side {
    use super::*;

    fn init() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            may::config().set_workers(WORKERS);
        });
    }

    pub(crate) fn mutex_coroutines(_: &tokio::runtime::Runtime) -> f64 {
        init();
        let m = Arc::new(may::sync::Mutex::new(0u64));
        let start = Instant::now();
        let hs: Vec<_> = (0..CONTENDED_PARTIES)
            .map(|_| {
                let m = m.clone();
                // SAFETY: may's contract for `spawn`: the closure uses no
                // thread-local storage and does not block the thread.
                unsafe {
                    may::coroutine::spawn(move || {
                        for _ in 0..CONTENDED_N {
                            *m.lock().unwrap() += 1;
                        }
                    })
                }
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let t = ms(start);
        assert_eq!(*m.lock().unwrap(), CONTENDED_PARTIES * CONTENDED_N);
        t
    }

    pub(crate) fn mpsc_coroutines(_: &tokio::runtime::Runtime) -> f64 {
        init();
        let (tx, rx) = may::sync::mpsc::channel::<u64>();
        let start = Instant::now();
        // SAFETY: as above.
        let producer = unsafe {
            may::coroutine::spawn(move || {
                for i in 0..MPSC_N {
                    tx.send(i).unwrap();
                }
            })
        };
        // SAFETY: as above.
        let consumer = unsafe {
            may::coroutine::spawn(move || {
                let mut sum = 0;
                while let Ok(v) = rx.recv() {
                    sum += v;
                }
                sum
            })
        };
        producer.join().unwrap();
        let sum = consumer.join().unwrap();
        let t = ms(start);
        assert_eq!(sum, MPSC_N * (MPSC_N - 1) / 2);
        t
    }
}

const ROWS: &[Row] = &[
    Row {
        name: "mutex_uncontended",
        size: "1M lock+drop, one task",
        unit: "ns",
        peer: "tokio",
        target: 1.0,
        ours: ours::mutex_uncontended,
        theirs: tokio_side::mutex_uncontended,
    },
    Row {
        name: "mutex_tasks",
        size: "4 tasks x 100k",
        unit: "ms",
        peer: "tokio",
        target: 0.8,
        ours: ours::mutex_tasks,
        theirs: tokio_side::mutex_tasks,
    },
    Row {
        name: "mutex_fibers",
        size: "4 fibers x 100k",
        unit: "ms",
        peer: "may",
        target: 0.5,
        ours: ours::mutex_fibers,
        theirs: may_side::mutex_coroutines,
    },
    Row {
        name: "mpsc_tasks",
        size: "bounded 1024, 1M msgs",
        unit: "ms",
        peer: "tokio",
        target: 0.8,
        ours: ours::mpsc_tasks,
        theirs: tokio_side::mpsc_tasks,
    },
    Row {
        name: "mpsc_fiber_task",
        size: "fiber -> task, 1M msgs",
        unit: "ms",
        peer: "may",
        target: 0.5,
        ours: ours::mpsc_fiber_task,
        theirs: may_side::mpsc_coroutines,
    },
    Row {
        name: "oneshot_ping_pong",
        size: "100 pairs x 1000 trips",
        unit: "ms",
        peer: "tokio",
        target: 0.9,
        ours: ours::oneshot_ping_pong,
        theirs: tokio_side::oneshot_ping_pong,
    },
    Row {
        name: "scope_fibers",
        size: "10k children (std: 100 threads)",
        unit: "ns/child",
        peer: "std::thread::scope",
        target: 0.01,
        ours: ours::scope_fibers,
        theirs: std_side::scope_threads,
    },
];

fn main() {
    let mut rounds = 11;
    let mut only: Option<Vec<String>> = None;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--only" => {
                only = args
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect())
            }
            "--verbose" | "-v" => verbose = true,
            "--bench" => {}
            other => {
                eprintln!("unknown argument {other:?}");
                eprintln!("usage: sync_bench [--rounds R] [--only NAME[,NAME...]] [--verbose]");
                std::process::exit(2);
            }
        }
    }
    if rounds == 0 {
        eprintln!("--rounds takes a number of at least 1");
        std::process::exit(2);
    }
    let rows: Vec<&Row> = ROWS
        .iter()
        .filter(|r| only.as_ref().is_none_or(|o| o.iter().any(|n| n == r.name)))
        .collect();
    println!(
        "sync: fiber-runtime vs tokio / may, {WORKERS} workers each ({} cores), {rounds} rounds, interleaved",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let build = || {
        (
            fiber_runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .build()
                .unwrap(),
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .enable_all()
                .build()
                .unwrap(),
        )
    };
    // Untimed warm-up.
    {
        let (f, t) = build();
        for r in &rows {
            (r.ours)(&f);
            (r.theirs)(&t);
        }
    }
    let mut values: Vec<(Vec<f64>, Vec<f64>)> = rows.iter().map(|_| (vec![], vec![])).collect();
    for round in 0..rounds {
        let (f, t) = build();
        for (r, v) in rows.iter().zip(&mut values) {
            let (a, b) = if round % 2 == 0 {
                let a = (r.ours)(&f);
                (a, (r.theirs)(&t))
            } else {
                let b = (r.theirs)(&t);
                ((r.ours)(&f), b)
            };
            if verbose {
                println!(
                    "  round {:>2} {:<18} ours {a:>10.2}  {} {b:>10.2}",
                    round + 1,
                    r.name,
                    r.peer
                );
            }
            v.0.push(a);
            v.1.push(b);
        }
    }
    println!();
    println!(
        "{:<18} {:<24} {:>10} {:>10} {:>6} {:>7} {:>11} {:>7}  met",
        "workload", "size", "ours", "peer", "peer", "ratio", "range", "target"
    );
    let mut met = 0;
    for (r, (a, b)) in rows.iter().zip(values) {
        let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
        let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().cloned().fold(0.0, f64::max);
        let (ma, mb) = (stats::median(a), stats::median(b));
        let ratio = ma / mb;
        let ok = ratio <= r.target;
        met += usize::from(ok);
        println!(
            "{:<18} {:<24} {:>8.2}{:<2} {:>8.2}{:<2} {:>6} {:>7.2} {:>11} {:>7}  {}",
            r.name,
            r.size,
            ma,
            r.unit,
            mb,
            r.unit,
            r.peer,
            ratio,
            format!("{lo:.2}-{hi:.2}"),
            format!("<= {:.2}", r.target),
            if ok { "yes" } else { "NO" }
        );
    }
    println!("targets met: {met}/{}", rows.len());
}
