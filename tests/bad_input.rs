//! Bad input, as a table: every edge-case `Duration`, size, name and
//! address a user can hand the public API, with the answer it must get
//! (a value, an `io::Error` of a given kind naming what was wrong, a
//! documented panic, or "still pending"): never an overflow panic, a hang
//! or a crash. Each row runs on its own fresh runtime where it needs one.

mod util;

use fiber_runtime::time::{Duration, Instant, interval, sleep, sleep_until, timeout};
use fiber_runtime::{Builder, fiber};
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;
use util::multi_thread;

/// What a call answered.
#[derive(Debug)]
enum Answer {
    /// Returned normally (or a future completed).
    Done,
    /// A future that was still pending after being polled.
    Pending,
    /// An `io::Error` of this kind, with this message.
    Error(io::ErrorKind, String),
    /// A panic with this message.
    Panic(String),
}

/// What a row expects.
#[derive(Debug)]
enum Expect {
    Done,
    Pending,
    /// The kind, and words the message must contain.
    Error(io::ErrorKind, &'static str),
    /// Words the panic message must contain.
    Panic(&'static str),
}

fn matches(answer: &Answer, expect: &Expect) -> bool {
    match (answer, expect) {
        (Answer::Done, Expect::Done) | (Answer::Pending, Expect::Pending) => true,
        (Answer::Error(k, m), Expect::Error(ek, words)) => k == ek && m.contains(words),
        (Answer::Panic(m), Expect::Panic(words)) => m.contains(words),
        _ => false,
    }
}

/// Runs `f`, turning a panic into `Answer::Panic`.
fn catch(f: impl FnOnce() -> Answer) -> Answer {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(a) => a,
        Err(p) => Answer::Panic(util::panic_message(&*p).unwrap_or_default()),
    }
}

fn result<T>(r: io::Result<T>) -> Answer {
    match r {
        Ok(_) => Answer::Done,
        Err(e) => Answer::Error(e.kind(), e.to_string()),
    }
}

/// Polls `fut` a few times inside `rt` (letting a timer that is due
/// fire), then answers whether it completed.
fn poll_for_a_moment<F: Future>(rt: &fiber_runtime::Runtime, make: impl FnOnce() -> F) -> Answer {
    rt.block_on(async {
        let mut fut = pin!(make());
        for _ in 0..3 {
            let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready()));
            if ready.await {
                return Answer::Done;
            }
            sleep(Duration::from_millis(1)).await;
        }
        Answer::Pending
    })
}

type Row = (&'static str, fn() -> Answer, Expect);

fn rows() -> Vec<Row> {
    use io::ErrorKind::InvalidInput;
    vec![
        // Durations: `Duration::MAX` means "never", never an overflow.
        (
            "time::sleep(Duration::MAX)",
            || poll_for_a_moment(&multi_thread(1), || sleep(Duration::MAX)),
            Expect::Pending,
        ),
        (
            "time::sleep(Duration::ZERO)",
            || poll_for_a_moment(&multi_thread(1), || sleep(Duration::ZERO)),
            Expect::Done,
        ),
        (
            "time::sleep_until(an instant in the past)",
            || {
                let past = Instant::now()
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or_else(Instant::now);
                poll_for_a_moment(&multi_thread(1), || sleep_until(past))
            },
            Expect::Done,
        ),
        (
            "time::timeout(Duration::MAX, ready future)",
            || poll_for_a_moment(&multi_thread(1), || timeout(Duration::MAX, async { 1 })),
            Expect::Done,
        ),
        (
            "time::timeout(Duration::MAX, pending future)",
            || {
                poll_for_a_moment(&multi_thread(1), || {
                    timeout(Duration::MAX, std::future::pending::<()>())
                })
            },
            Expect::Pending,
        ),
        (
            "time::interval(Duration::MAX): first tick, then never",
            || {
                let rt = multi_thread(1);
                let mut i = rt.block_on(async { interval(Duration::MAX) });
                rt.block_on(i.tick());
                poll_for_a_moment(&rt, || i.tick())
            },
            Expect::Pending,
        ),
        (
            "time::interval(Duration::ZERO)",
            || {
                let rt = multi_thread(1);
                catch(|| {
                    rt.block_on(async { drop(interval(Duration::ZERO)) });
                    Answer::Done
                })
            },
            Expect::Panic("period must be non-zero"),
        ),
        (
            "Runtime::shutdown_timeout(Duration::MAX)",
            || {
                multi_thread(1).shutdown_timeout(Duration::MAX);
                Answer::Done
            },
            Expect::Done,
        ),
        (
            "Runtime::shutdown_timeout(Duration::ZERO)",
            || {
                multi_thread(1).shutdown_timeout(Duration::ZERO);
                Answer::Done
            },
            Expect::Done,
        ),
        (
            "fiber::sleep(Duration::ZERO) in a fiber",
            || {
                let rt = multi_thread(1);
                result(rt.block_on(async {
                    fiber::spawn(|| fiber::sleep(Duration::ZERO))
                        .await
                        .map_err(io::Error::from)
                }))
            },
            Expect::Done,
        ),
        // Names.
        (
            "Builder::thread_name(\"a\\0b\")",
            || result(Builder::new_multi_thread().thread_name("a\0b").build()),
            Expect::Error(InvalidInput, "thread_name"),
        ),
        (
            "Builder::thread_name(\"\")",
            || result(Builder::new_current_thread().thread_name("").build()),
            Expect::Done,
        ),
        (
            "fiber::Builder::name(\"a\\0b\")",
            || {
                let rt = multi_thread(1);
                result(rt.block_on(async {
                    fiber::Builder::new()
                        .name("a\0b")
                        .spawn(|| ())?
                        .await
                        .map_err(io::Error::from)
                }))
            },
            Expect::Done,
        ),
        // Sizes.
        (
            "Builder::worker_threads(0)",
            || result(Builder::new_multi_thread().worker_threads(0).build()),
            Expect::Error(InvalidInput, "worker_threads"),
        ),
        (
            "Builder::worker_threads(usize::MAX)",
            || {
                result(
                    Builder::new_multi_thread()
                        .worker_threads(usize::MAX)
                        .build(),
                )
            },
            Expect::Error(InvalidInput, "worker_threads"),
        ),
        (
            "Builder::thread_stack_size(0)",
            || result(Builder::new_multi_thread().thread_stack_size(0).build()),
            Expect::Error(InvalidInput, "thread_stack_size"),
        ),
        (
            "Builder::thread_stack_size(usize::MAX)",
            || {
                result(
                    Builder::new_multi_thread()
                        .worker_threads(1)
                        .thread_stack_size(usize::MAX)
                        .build(),
                )
            },
            // The OS refuses it (EINVAL here); the error names the thread.
            Expect::Error(InvalidInput, "worker thread"),
        ),
        (
            "Builder::fiber_stack_size(0)",
            || result(Builder::new_multi_thread().fiber_stack_size(0).build()),
            Expect::Error(InvalidInput, "fiber_stack_size"),
        ),
        (
            "Builder::fiber_stack_size(usize::MAX)",
            || {
                result(
                    Builder::new_multi_thread()
                        .fiber_stack_size(usize::MAX)
                        .build(),
                )
            },
            Expect::Error(InvalidInput, "fiber_stack_size"),
        ),
        (
            "Builder::max_blocking_threads(0)",
            || result(Builder::new_multi_thread().max_blocking_threads(0).build()),
            Expect::Error(InvalidInput, "max_blocking_threads"),
        ),
        (
            "fiber::Builder::stack_size(usize::MAX)",
            || {
                let rt = multi_thread(1);
                result(
                    rt.block_on(async {
                        fiber::Builder::new().stack_size(usize::MAX).spawn(|| ())
                    }),
                )
            },
            Expect::Error(InvalidInput, "stack_size"),
        ),
        (
            "fiber::Builder::stack_size(1)",
            || {
                let rt = multi_thread(1);
                result(rt.block_on(async { fiber::Builder::new().stack_size(1).spawn(|| ()) }))
            },
            Expect::Error(InvalidInput, "stack_size"),
        ),
        (
            "spawn_blocking when no thread can be started",
            || {
                // A current-thread runtime starts no thread at build; the
                // blocking pool's first thread cannot get this stack.
                let rt = Builder::new_current_thread()
                    .thread_stack_size(usize::MAX)
                    .build()
                    .unwrap();
                result(
                    rt.block_on(rt.spawn_blocking(|| ()))
                        .map_err(io::Error::from),
                )
            },
            Expect::Error(io::ErrorKind::Other, "could not start a thread"),
        ),
        // Addresses.
        (
            "TcpListener::bind(\"not an address\")",
            || {
                let rt = multi_thread(1);
                let _g = rt.enter();
                result(fiber_runtime::net::TcpListener::bind("not an address"))
            },
            Expect::Error(InvalidInput, ""),
        ),
        (
            "TcpListener::bind(\"127.0.0.1:99999\")",
            || {
                let rt = multi_thread(1);
                let _g = rt.enter();
                result(fiber_runtime::net::TcpListener::bind("127.0.0.1:99999"))
            },
            Expect::Error(InvalidInput, ""),
        ),
        (
            "UdpSocket::bind(\"[::1]:notaport\")",
            || {
                let rt = multi_thread(1);
                let _g = rt.enter();
                result(fiber_runtime::net::UdpSocket::bind("[::1]:notaport"))
            },
            Expect::Error(InvalidInput, ""),
        ),
        (
            "UnixListener::bind(a path with a NUL byte)",
            || {
                let rt = multi_thread(1);
                let _g = rt.enter();
                result(fiber_runtime::net::UnixListener::bind("/tmp/a\0b"))
            },
            Expect::Error(InvalidInput, ""),
        ),
    ]
}

#[test]
fn every_bad_input_gets_its_documented_answer() {
    util::silence_expected_panics(&["period must be non-zero"]);
    let mut wrong = Vec::new();
    for (row, f, expect) in rows() {
        let answer = util::run_with_timeout(row, move || catch(f));
        if !matches(&answer, &expect) {
            wrong.push(format!("{row}: expected {expect:?}, got {answer:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}
