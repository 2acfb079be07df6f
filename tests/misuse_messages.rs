//! Misuse messages fit where they are raised: a blocking-style call in
//! the runtime's main future (`block_on`, `fiber_main!`,
//! `#[fiber_runtime::main]`) says so and suggests `.await` or
//! `fiber::spawn`; in an async task it names the task and `.await`; a
//! nested `block_on` suggests `fiber::wait` inside a fiber and `.await`
//! elsewhere; a `JoinError` says whether a task or a fiber panicked, with
//! its id and name.

mod util;

use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::sync::Mutex;
use fiber_runtime::task::{self, JoinSet};
use fiber_runtime::{JoinError, Runtime, fiber};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use util::{EXPECTED_PANIC, Flavor, expect_panic, run_with_timeout};

const IN_MAIN: &str = "was called directly in the runtime's main future";
const IN_TASK: &str = "was called from an async task";
const NESTED: &str = "cannot start a runtime from within a runtime";

fn silence() {
    util::silence_expected_panics(&[IN_MAIN, IN_TASK, NESTED]);
}

/// A connected TCP pair, made on `rt`.
fn pair(rt: &Runtime) -> (TcpStream, TcpStream) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    })
}

/// The blocking-style calls checked, each with the name its message
/// gives and the async call it suggests.
type Call = Box<dyn FnOnce() + Send>;

fn blocking_calls(rt: &Runtime) -> Vec<(&'static str, &'static str, Call)> {
    let (mut stream, peer) = pair(rt);
    let other = rt.spawn(std::future::pending::<()>());
    vec![
        (
            "`fiber::sleep`",
            "`fiber_runtime::time::sleep(dur).await`",
            Box::new(|| fiber::sleep(Duration::from_millis(1))),
        ),
        (
            "`Mutex::blocking_lock`",
            "`.await` `Mutex::lock`",
            Box::new(|| drop(Mutex::new(()).blocking_lock())),
        ),
        (
            "`JoinHandle::join`",
            "`.await` the JoinHandle",
            Box::new(move || drop(other.join())),
        ),
        (
            "`std::io::Read::read`",
            "`AsyncReadExt::read(..).await`",
            Box::new(move || {
                let _keep = peer;
                let _ = stream.read(&mut [0; 4]);
            }),
        ),
        (
            "`fiber::wait`",
            "`.await` the future",
            Box::new(|| fiber::wait(std::future::pending::<()>())),
        ),
    ]
}

#[track_caller]
fn assert_main_future_message(at: &str, name: &str, instead: &str, msg: &str) {
    assert!(msg.contains(name), "{at}: {msg}");
    assert!(msg.contains(IN_MAIN), "{at}: {msg}");
    assert!(
        msg.contains("`block_on`, `fiber_main!` or `#[fiber_runtime::main]`"),
        "{at}: {msg}"
    );
    assert!(msg.contains(instead), "{at}: {msg}");
    assert!(msg.contains("`fiber::spawn("), "{at}: {msg}");
    assert!(!msg.contains("async task"), "{at}: {msg}");
}

#[test]
fn blocking_calls_in_the_main_future_name_it_and_suggest_await_or_a_fiber() {
    silence();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        for (name, instead, call) in blocking_calls(&rt) {
            let msg = rt.block_on(async { expect_panic(call) });
            assert_main_future_message(
                &format!("{flavor:?} Runtime::block_on"),
                name,
                instead,
                &msg,
            );
        }
        // `Handle::block_on` from a plain thread: its future is a main
        // future too.
        let calls = blocking_calls(&rt);
        let handle = rt.handle().clone();
        let msgs = run_with_timeout("Handle::block_on on a thread", move || {
            calls
                .into_iter()
                .map(|(name, instead, call)| {
                    (name, instead, handle.block_on(async { expect_panic(call) }))
                })
                .collect::<Vec<_>>()
        });
        for (name, instead, msg) in msgs {
            assert_main_future_message(
                &format!("{flavor:?} Handle::block_on"),
                name,
                instead,
                &msg,
            );
        }
    }
    // And the crate's `block_on`.
    let msg =
        fiber_runtime::block_on(async { expect_panic(|| fiber::sleep(Duration::from_millis(1))) });
    assert_main_future_message(
        "fiber_runtime::block_on",
        "`fiber::sleep`",
        "`fiber_runtime::time::sleep(dur).await`",
        &msg,
    );
}

/// The same calls in a spawned task name the task, not the main future,
/// and suggest `.await` (or a fiber).
#[test]
fn blocking_calls_in_an_async_task_name_the_task() {
    silence();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        for (name, instead, call) in blocking_calls(&rt) {
            let msg = rt.block_on(rt.spawn(async { expect_panic(call) })).unwrap();
            let at = format!("{flavor:?} task");
            assert!(msg.contains(name), "{at}: {msg}");
            assert!(msg.contains(IN_TASK), "{at}: {msg}");
            assert!(msg.contains(instead), "{at}: {msg}");
            assert!(msg.contains("`fiber::spawn(..)`"), "{at}: {msg}");
            assert!(!msg.contains("main future"), "{at}: {msg}");
        }
    }
}

/// A blocking-style call made in the main future, then the same from a
/// fiber the main future spawns and awaits, as the message suggests.
#[test]
fn the_suggested_fix_works() {
    silence();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let got = rt.block_on(async {
            let msg = expect_panic(|| fiber::sleep(Duration::from_millis(1)));
            assert!(msg.contains(IN_MAIN), "{msg}");
            fiber::spawn(|| {
                fiber::sleep(Duration::from_millis(1));
                *Mutex::new(7).blocking_lock()
            })
            .await
            .unwrap()
        });
        assert_eq!(got, 7, "{flavor:?}");
    }
}

mod with_fiber_main {
    // The body is async (it awaits), and is the runtime's main future.
    fiber_runtime::fiber_main! {
        let v = fiber_runtime::spawn(async { 1 }).await.unwrap();
        assert_eq!(v, 1);
        fiber_runtime::fiber::sleep(std::time::Duration::from_millis(1));
    }

    pub(super) fn run() {
        main()
    }
}

#[fiber_runtime::main(flavor = "current_thread")]
async fn attribute_main_calling_blocking_lock() {
    let m = Mutex::new(());
    let _g = m.blocking_lock();
}

#[test]
fn fiber_main_and_the_main_attribute_bodies_are_main_futures() {
    silence();
    let msg = expect_panic(with_fiber_main::run);
    assert_main_future_message(
        "fiber_main!",
        "`fiber::sleep`",
        "`fiber_runtime::time::sleep(dur).await`",
        &msg,
    );
    let msg = expect_panic(attribute_main_calling_blocking_lock);
    assert_main_future_message(
        "#[fiber_runtime::main]",
        "`Mutex::blocking_lock`",
        "`.await` `Mutex::lock`",
        &msg,
    );
}

/// Every way to `block_on` with the thread already driving a runtime
/// (`other` is a second runtime, whose last reference stays with the
/// test).
fn nested_block_ons(rt: &Runtime, other: &Arc<Runtime>) -> Vec<(&'static str, Call)> {
    let h = rt.handle().clone();
    let other = other.clone();
    vec![
        (
            "fiber_runtime::block_on",
            Box::new(|| fiber_runtime::block_on(async {})),
        ),
        ("Handle::block_on", Box::new(move || h.block_on(async {}))),
        (
            "Runtime::block_on",
            Box::new(move || other.block_on(async {})),
        ),
    ]
}

#[test]
fn nested_block_on_suggests_fiber_wait_in_a_fiber_and_await_elsewhere() {
    silence();
    let other = Arc::new(util::current_thread());
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        // In a fiber: `fiber::wait`, and no `.await`.
        for (how, call) in nested_block_ons(&rt, &other) {
            let msg = rt
                .block_on(rt.spawn(async { fiber::spawn(|| expect_panic(call)).await }))
                .unwrap()
                .unwrap();
            let at = format!("{flavor:?} {how} in a fiber");
            assert!(msg.contains(NESTED), "{at}: {msg}");
            assert!(msg.contains("inside a fiber"), "{at}: {msg}");
            assert!(msg.contains("`fiber::wait(fut)`"), "{at}: {msg}");
            assert!(!msg.contains(".await"), "{at}: {msg}");
        }
        // In an async task: `.await`.
        for (how, call) in nested_block_ons(&rt, &other) {
            let msg = rt.block_on(rt.spawn(async { expect_panic(call) })).unwrap();
            let at = format!("{flavor:?} {how} in a task");
            assert!(msg.contains(NESTED), "{at}: {msg}");
            assert!(msg.contains("from an async task"), "{at}: {msg}");
            assert!(msg.contains("`.await` the future"), "{at}: {msg}");
            assert!(!msg.contains("fiber::wait"), "{at}: {msg}");
        }
        // In the main future: `.await`.
        for (how, call) in nested_block_ons(&rt, &other) {
            let msg = rt.block_on(async { expect_panic(call) });
            let at = format!("{flavor:?} {how} in the main future");
            assert!(msg.contains(NESTED), "{at}: {msg}");
            assert!(
                msg.contains("inside the runtime's main future"),
                "{at}: {msg}"
            );
            assert!(msg.contains("`.await` the future"), "{at}: {msg}");
        }
    }
}

#[track_caller]
fn assert_names(err: &JoinError, expected: &str, message: &str) {
    assert!(err.is_panic(), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{expected} panicked with message {message:?}")
    );
    let debug = format!("{err:?}");
    assert_eq!(debug, format!("JoinError::Panic({expected}, {message:?})"));
}

/// A panicking fiber's `JoinError` says "fiber", with its id and name; a
/// task's says "task"; the payload is the panic's own.
#[test]
fn join_errors_name_the_fiber_or_task_that_panicked() {
    util::silence_expected_panics(&[]);
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        rt.block_on(async {
            let f = fiber::spawn(|| -> u8 { panic!("{EXPECTED_PANIC}: fiber") });
            let id = f.id();
            let err = f.await.unwrap_err();
            assert_names(
                &err,
                &format!("fiber {id}"),
                &format!("{EXPECTED_PANIC}: fiber"),
            );

            let f = fiber::Builder::new()
                .name("loader")
                .spawn(|| -> u8 { std::panic::panic_any(EXPECTED_PANIC) })
                .unwrap();
            let id = f.id();
            let err = f.await.unwrap_err();
            assert_names(&err, &format!("fiber \"loader\" (id {id})"), EXPECTED_PANIC);
            // The payload is the fiber's own, not a wrapper.
            assert_eq!(
                *err.into_panic().downcast::<&str>().unwrap(),
                EXPECTED_PANIC
            );

            let t = fiber_runtime::spawn(async { panic!("{EXPECTED_PANIC}: task") });
            let id = t.id();
            let err = t.await.unwrap_err();
            assert_names(
                &err,
                &format!("task {id}"),
                &format!("{EXPECTED_PANIC}: task"),
            );

            let t = task::Builder::new()
                .name("conn-3")
                .spawn(async { std::panic::panic_any(EXPECTED_PANIC) })
                .unwrap();
            let id = t.id();
            let err: JoinError = t.await.unwrap_err();
            assert_names(&err, &format!("task \"conn-3\" (id {id})"), EXPECTED_PANIC);

            // In a JoinSet.
            let mut set = JoinSet::new();
            set.spawn_fiber(|| -> u8 { std::panic::panic_any(EXPECTED_PANIC) });
            let err = set.join_next().await.unwrap().unwrap_err();
            assert!(err.to_string().starts_with("fiber "), "{err}");

            // A fiber joined by another fiber.
            let err = fiber::spawn(|| {
                let inner = fiber::Builder::new()
                    .name("inner")
                    .spawn(|| -> u8 { std::panic::panic_any(EXPECTED_PANIC) })
                    .unwrap();
                inner.join().unwrap_err()
            })
            .await
            .unwrap();
            assert!(err.to_string().starts_with("fiber \"inner\""), "{err}");
        });
    }
}

/// Children of `fiber::scope` joined by hand: a fiber child's error says
/// "fiber", a task child's "task".
#[test]
fn scoped_join_errors_name_the_kind_of_child() {
    util::silence_expected_panics(&[]);
    let rt = util::multi_thread(2);
    let _enter = rt.enter();
    fiber::scope(|s| {
        let f = s.spawn(|| -> u8 { std::panic::panic_any(EXPECTED_PANIC) });
        let err = f.join().unwrap_err();
        assert!(err.to_string().starts_with("fiber "), "{err}");
        assert_eq!(
            *err.into_panic().downcast::<&str>().unwrap(),
            EXPECTED_PANIC
        );
        let t = s.spawn_task(async { std::panic::panic_any(EXPECTED_PANIC) });
        let err: JoinError = t.join().unwrap_err();
        assert!(err.to_string().starts_with("task "), "{err}");
    });
}
