//! A blocking-style call misused in an async task (or the main future)
//! panics at the caller's line: `#[track_caller]` all the way from the
//! public method down to the panic, closures included.
//!
//! Its own test binary: it installs a panic hook that records every
//! panic's location (and prints nothing), and runs its cases one after the
//! other in one test, so that no other test's panic gets in between.

mod util;

use fiber_runtime::net::{TcpListener, TcpStream};
#[cfg(feature = "signal")]
use fiber_runtime::signal::unix::{SignalKind, signal};
use fiber_runtime::sync::Mutex;
use fiber_runtime::{Builder, Runtime, fiber};
use std::cell::Cell;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex as StdMutex;
use std::time::Duration;
use util::Flavor;

/// The location of the last panic: file, line, message.
static LAST: StdMutex<Option<(String, u32, String)>> = StdMutex::new(None);

fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let loc = info.location().expect("a panic location");
        let msg = util::panic_message(info.payload()).unwrap_or_default();
        *LAST.lock().unwrap() = Some((loc.file().to_string(), loc.line(), msg));
    }));
}

/// Runs `call`, which sets the line it makes the misused call on (on
/// that same line, before the call), and asserts that it panicked there
/// with a message containing `what`.
#[track_caller]
fn assert_panics_at(case: &str, what: &str, call: impl FnOnce(&Cell<u32>)) {
    *LAST.lock().unwrap() = None;
    let line = Cell::new(0);
    let res = panic::catch_unwind(AssertUnwindSafe(|| call(&line)));
    assert!(res.is_err(), "{case}: did not panic");
    let (file, at, msg) = LAST.lock().unwrap().take().expect("the hook ran");
    assert!(msg.contains(what), "{case}: {msg}");
    assert_eq!(
        (file.as_str(), at),
        (file!(), line.get()),
        "{case}: the panic is reported at the caller's line ({msg})"
    );
}

/// A connected pair on `rt`.
fn pair(rt: &Runtime) -> (TcpStream, TcpStream) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    })
}

// Each misused call sits on the line that records `line!()`: not
// reformatted.
#[rustfmt::skip]
#[test]
fn misused_blocking_calls_panic_at_the_callers_line() {
    install_hook();
    for flavor in Flavor::ALL {
        let rt = flavor.build();

        // In an async task: `std::io` on a socket (through `T` and `&T`;
        // the check comes before any readiness), the blocking-style
        // methods, a nested `block_on`.
        let (a, b) = pair(&rt);
        let res = rt.block_on(rt.spawn(async move {
            let (mut a, b) = (a, b);
            let mut buf = [0u8; 4];
            assert_panics_at("Read for T in a task", "`std::io::Read::read`", |at| {
                at.set(line!()); let _ = a.read(&mut buf);
            });
            assert_panics_at("Read for &T in a task", "`std::io::Read::read`", |at| {
                at.set(line!()); let _ = (&b).read(&mut buf);
            });
            assert_panics_at("Write for T in a task", "`std::io::Write::write`", |at| {
                at.set(line!()); let _ = a.write(b"x");
            });
            assert_panics_at("Write for &T in a task", "`std::io::Write::write`", |at| {
                at.set(line!()); let _ = (&b).write(b"x");
            });
            assert_panics_at("read_exact on T in a task", "`std::io::Read::read_exact`", |at| {
                at.set(line!()); let _ = a.read_exact(&mut buf);
            });
            assert_panics_at("read_exact on &T in a task", "`std::io::Read::read_exact`", |at| {
                at.set(line!()); let _ = (&b).read_exact(&mut buf);
            });
            assert_panics_at("write_all on T in a task", "`std::io::Write::write_all`", |at| {
                at.set(line!()); let _ = a.write_all(b"x");
            });
            assert_panics_at("write_all on &T in a task", "`std::io::Write::write_all`", |at| {
                at.set(line!()); let _ = (&b).write_all(b"x");
            });
            let m = Mutex::new(0);
            assert_panics_at("blocking_lock in a task", "`Mutex::blocking_lock`", |at| {
                at.set(line!()); let _ = m.blocking_lock();
            });
            assert_panics_at("fiber::sleep in a task", "`fiber::sleep`", |at| {
                at.set(line!()); fiber::sleep(Duration::from_millis(1));
            });
            assert_panics_at("fiber::yield_now in a task", "`fiber::yield_now`", |at| {
                at.set(line!()); fiber::yield_now();
            });
            assert_panics_at("fiber::wait in a task", "`fiber::wait`", |at| {
                at.set(line!()); fiber::wait(std::future::pending::<()>());
            });
            let other = fiber_runtime::spawn(std::future::pending::<()>());
            assert_panics_at("JoinHandle::join in a task", "`JoinHandle::join`", |at| {
                at.set(line!()); let _ = other.join();
            });
            #[cfg(feature = "signal")]
            {
                let mut s = signal(SignalKind::user_defined1()).unwrap();
                assert_panics_at("Signal::blocking_recv in a task", "`Signal::blocking_recv`", |at| {
                    at.set(line!()); let _ = s.blocking_recv();
                });
            }
            assert_panics_at("block_on in a task", "cannot start a runtime", |at| {
                at.set(line!()); fiber_runtime::block_on(async {});
            });
        }));
        res.unwrap_or_else(|e| panic!("{flavor:?}: {e}"));

        // Directly in the main future given to `block_on`.
        let (mut a, _b) = pair(&rt);
        rt.block_on(async {
            let mut buf = [0u8; 4];
            assert_panics_at("Read in the main future", "`std::io::Read::read`", |at| {
                at.set(line!()); let _ = a.read(&mut buf);
            });
            assert_panics_at("fiber::sleep in the main future", "`fiber::sleep`", |at| {
                at.set(line!()); fiber::sleep(Duration::from_millis(1));
            });
            assert_panics_at("Runtime::block_on in the main future", "cannot start", |at| {
                at.set(line!()); rt.block_on(async {});
            });
            assert_panics_at("Handle::block_on in the main future", "cannot start", |at| {
                at.set(line!()); rt.handle().block_on(async {});
            });
        });

        // In a fiber, a nested `block_on` of another runtime.
        let other = Builder::new_current_thread().build().unwrap();
        let h = other.handle().clone();
        let f = {
            let _enter = rt.enter();
            fiber::spawn(move || {
                assert_panics_at("block_on in a fiber", "`fiber::wait(fut)`", |at| {
                    at.set(line!()); h.block_on(async {});
                });
            })
        };
        rt.block_on(f).unwrap_or_else(|e| panic!("{flavor:?}: {e}"));
    }
}
