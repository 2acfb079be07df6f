//! A quick tour of fiber-runtime: spawn and join typed tasks, run blocking
//! code off the workers, abort a task, catch a panic as a `JoinError`, talk
//! TCP over loopback, put a time limit on a future, read the runtime's
//! metrics, and share one lock and one channel between tasks, fibers and
//! a plain thread.
//!
//! `cargo run --release --example demo`

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::sync::{Mutex, mpsc};
use fiber_runtime::time::{sleep, timeout};
use fiber_runtime::{Builder, JoinError, fiber};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints when dropped: shows that an aborted task's future is dropped.
struct DropGuard(&'static str);

impl Drop for DropGuard {
    fn drop(&mut self) {
        println!("   -> {} dropped", self.0);
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn main() {
    let start = Instant::now();
    let rt = Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("demo-worker")
        .build()
        .expect("failed to build the runtime");
    println!(
        "fiber-runtime demo: multi-thread runtime with {} workers",
        rt.metrics().num_workers()
    );

    rt.block_on(async {
        section("1. spawn tasks, join typed results");
        let squares: Vec<_> = (1..=8u64)
            .map(|i| fiber_runtime::spawn(async move { i * i }))
            .collect();
        let mut sum = 0;
        for h in squares {
            sum += h.await.expect("task failed");
        }
        println!("   sum of squares 1..=8 on 8 tasks: {sum}");

        let words = fiber_runtime::spawn(async {
            let text = "a work stealing runtime for lightweight tasks";
            text.split(' ')
                .map(str::to_uppercase)
                .collect::<Vec<String>>()
        });
        println!(
            "   a task returning Vec<String>: {:?}",
            words.await.expect("task failed")
        );

        // Tasks can spawn tasks; the handle's type follows the output.
        let nested = fiber_runtime::spawn(async {
            let inner = fiber_runtime::spawn(async { ("inner", 21) });
            let (name, v) = inner.await.expect("inner failed");
            format!("{name} said {}", v * 2)
        });
        println!("   nested tasks: {}", nested.await.expect("task failed"));

        section("2. spawn_blocking: run blocking code on the blocking pool");
        let blocking = fiber_runtime::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(20)); // pretend to block on I/O
            let name = std::thread::current().name().unwrap_or("?").to_string();
            (name, (1..=20u64).product::<u64>())
        });
        let (thread, fact) = blocking.await.expect("blocking task failed");
        println!("   20! = {fact}, computed on thread {thread:?}");

        section("3. abort a task");
        let forever = fiber_runtime::spawn(async {
            let _guard = DropGuard("the endless task's state");
            loop {
                fiber_runtime::yield_now().await;
            }
        });
        fiber_runtime::yield_now().await;
        println!("   endless task finished? {}", forever.is_finished());
        forever.abort();
        let err: JoinError = forever.await.expect_err("an aborted task has no output");
        println!(
            "   awaiting it: Err({err}), is_cancelled = {}",
            err.is_cancelled()
        );

        section("4. a panicking task becomes a JoinError");
        // Silence the default panic message for this one expected panic.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let failing = fiber_runtime::spawn(async {
            let v: Vec<u32> = Vec::new();
            if v.is_empty() {
                panic!("nothing to divide by");
            }
            v[0]
        });
        let err = failing.await.expect_err("the task panicked");
        std::panic::set_hook(hook);
        println!("   Err({err}), is_panic = {}", err.is_panic());
        if let Ok(payload) = err.try_into_panic() {
            if let Some(msg) = payload.downcast_ref::<&str>() {
                println!("   panic payload: {msg:?} (re-raise with std::panic::resume_unwind)");
            }
        }
        println!(
            "   the runtime keeps going: {}",
            fiber_runtime::spawn(async { "still alive" }).await.unwrap()
        );

        section("5. many tasks, spread over the workers");
        let t = Instant::now();
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| {
                fiber_runtime::spawn(async move {
                    fiber_runtime::yield_now().await;
                    i
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.await.unwrap();
        }
        println!(
            "   10,000 tasks (each yields once): sum {total} in {:.2?}",
            t.elapsed()
        );

        section("6. TCP: a listener and a client in the same runtime");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind failed");
        let addr = listener.local_addr().expect("no local address");
        // The server answers each request with its text upper-cased.
        let server = fiber_runtime::spawn(async move {
            let (mut conn, peer) = listener.accept().await.expect("accept failed");
            let mut buf = [0u8; 64];
            let n = conn.read(&mut buf).await.expect("server read failed");
            let reply = String::from_utf8_lossy(&buf[..n]).to_uppercase();
            conn.write_all(reply.as_bytes())
                .await
                .expect("server write failed");
            // Then it keeps the connection open without sending anything
            // more, until the client closes it (see section 7).
            let more = conn.read(&mut buf).await.expect("server read failed");
            (peer, more)
        });
        let t = Instant::now();
        let mut client = TcpStream::connect(addr).await.expect("connect failed");
        client
            .write_all(b"hello, fiber")
            .await
            .expect("write failed");
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).await.expect("read failed");
        println!("   listening on {addr}");
        println!(
            "   sent \"hello, fiber\", got {:?} back in {:.2?} (connect included)",
            String::from_utf8_lossy(&buf[..n]),
            t.elapsed()
        );

        section("7. timeout: one that completes, one that elapses");
        let t = Instant::now();
        let quick = timeout(Duration::from_millis(100), sleep(Duration::from_millis(5))).await;
        println!(
            "   a 5 ms sleep under a 100 ms timeout: {quick:?} after {:.2?}",
            t.elapsed()
        );
        // The server of section 6 sends nothing more: the read cannot finish.
        let t = Instant::now();
        let silent = timeout(Duration::from_millis(20), client.read(&mut buf)).await;
        match silent {
            Err(e) => println!(
                "   a read from a silent peer under a 20 ms timeout: Err({e}) after {:.2?}",
                t.elapsed()
            ),
            Ok(r) => println!("   the silent peer answered?! {r:?}"),
        }
        drop(client);
        let (peer, more) = server.await.expect("server task failed");
        println!("   client {peer} closed; the server then read {more} bytes (end of stream)");

        section("8. fibers: blocking-style code on the same scheduler");
        // A fiber waits for a task in plain blocking style...
        let fib = fiber_runtime::fiber::spawn(|| {
            let task = fiber_runtime::spawn(async { (1..=10u64).product::<u64>() });
            let ten_factorial = task.join().expect("task failed"); // suspends only this fiber
            fiber_runtime::fiber::sleep(Duration::from_millis(1));
            (
                fiber_runtime::fiber::current().expect("inside a fiber"),
                ten_factorial,
            )
        });
        // ...and this task awaits the fiber like any other JoinHandle.
        let (id, value) = fib.await.expect("fiber failed");
        println!("   fiber {id:?} joined a task and slept: 10! = {value}");
        let recursion = fiber_runtime::fiber::Builder::new()
            .name("deep")
            .stack_size(512 * 1024)
            .spawn(|| {
                fn depth(n: u32) -> u32 {
                    if n == 0 { 0 } else { 1 + depth(n - 1) }
                }
                depth(10_000)
            })
            .expect("fiber spawn failed")
            .await
            .expect("fiber failed");
        println!("   a fiber recursed {recursion} frames deep on its own 512 KiB stack");
    });

    section("9. metrics");
    std::thread::sleep(Duration::from_millis(5)); // workers publish their counters when idle
    let m = rt.metrics();
    println!(
        "   alive tasks {}, global queue depth {}, blocking threads {}",
        m.num_alive_tasks(),
        m.global_queue_depth(),
        m.num_blocking_threads()
    );
    println!("   worker   polls   steals   parks   busy");
    for i in 0..m.num_workers() {
        println!(
            "   {i:<6} {:>7} {:>8} {:>7}   {:.2?}",
            m.worker_poll_count(i),
            m.worker_steal_count(i),
            m.worker_park_count(i),
            m.worker_busy_duration(i)
        );
    }

    section("10. sync: one Mutex and one channel for tasks, fibers and a thread");
    rt.block_on(async {
        const EACH: u64 = 1_000;
        let counter = Arc::new(Mutex::new(0u64));
        let t = Instant::now();
        // Async tasks take the lock with `.lock().await`...
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let c = counter.clone();
                fiber_runtime::spawn(async move {
                    for _ in 0..EACH {
                        *c.lock().await += 1;
                    }
                })
            })
            .collect();
        // ...fibers with `blocking_lock()`, which suspends only the fiber...
        let fibers: Vec<_> = (0..4)
            .map(|_| {
                let c = counter.clone();
                fiber::spawn(move || {
                    for _ in 0..EACH {
                        *c.blocking_lock() += 1;
                    }
                })
            })
            .collect();
        // ...one fiber even keeps the guard across a sleep (the others
        // wait for it; its worker runs other work meanwhile)...
        let c = counter.clone();
        let sleeper = fiber::spawn(move || {
            let mut guard = c.blocking_lock();
            fiber::sleep(Duration::from_millis(2));
            *guard += 1;
        });
        // ...and a plain thread with `blocking_lock()`, which blocks it.
        let c = counter.clone();
        let thread = std::thread::spawn(move || {
            for _ in 0..EACH {
                *c.blocking_lock() += 1;
            }
        });
        for h in tasks {
            h.await.expect("task failed");
        }
        for h in fibers {
            h.await.expect("fiber failed");
        }
        sleeper.await.expect("fiber failed");
        thread.join().expect("thread failed");
        let total = *counter.lock().await;
        assert_eq!(total, 9 * EACH + 1);
        println!(
            "   4 tasks (.lock().await), 4 fibers and 1 thread (blocking_lock) x {EACH} increments,"
        );
        println!(
            "   + 1 by a fiber holding the guard across a 2 ms sleep: total {total} (expected {}) in {:.2?}",
            9 * EACH + 1,
            t.elapsed()
        );

        // A fiber produces into a bounded channel with `blocking_send`
        // (suspended while the 4 slots are full); a task consumes with
        // `recv().await`.
        let (tx, mut rx) = mpsc::channel(4);
        let producer = fiber::spawn(move || {
            for i in 1..=100u64 {
                tx.blocking_send(i).expect("the receiver is gone");
            }
            // `tx` dropped here: the consumer's `recv` then returns `None`.
        });
        let consumer = fiber_runtime::spawn(async move {
            let (mut count, mut sum, mut last) = (0u64, 0u64, 0u64);
            while let Some(i) = rx.recv().await {
                assert_eq!(i, last + 1, "out of order");
                (count, sum, last) = (count + 1, sum + i, i);
            }
            (count, sum)
        });
        producer.await.expect("producer fiber failed");
        let (count, sum) = consumer.await.expect("consumer task failed");
        assert_eq!((count, sum), (100, 5050));
        println!(
            "   mpsc::channel(4): a fiber sent 1..=100 (blocking_send), a task received \
             {count} in order (recv().await), sum {sum}"
        );
    });

    drop(rt);
    println!("\ndone in {:.2?}", start.elapsed());
}
