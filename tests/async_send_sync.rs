//! Compile-time checks of the auto traits of the public types: this file
//! compiles only if each assertion holds.

#![allow(clippy::diverging_sub_expression)]

use fiber_runtime::{
    Builder, EnterGuard, Handle, JoinError, JoinHandle, Runtime, RuntimeMetrics, TryCurrentError,
};
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

#[allow(dead_code)]
fn require_send<T: Send>(_: &T) {}
#[allow(dead_code)]
fn require_sync<T: Sync>(_: &T) {}
#[allow(dead_code)]
fn require_unpin<T: Unpin>(_: &T) {}

/// Holds for `T` unless `T: Send`, in which case naming
/// `<T as AmbiguousIfSend<_>>::some_item` is ambiguous (a compile error).
#[allow(dead_code)]
trait AmbiguousIfSend<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

#[allow(dead_code)]
trait AmbiguousIfSync<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

/// `assert_value!(T: Send & Sync & Unpin)`, `assert_value!(T: !Send & !Sync)`:
/// each bound listed is checked at compile time for a value of type `T`.
macro_rules! assert_value {
    (@check $v:ident;) => {};
    (@check $v:ident; & $($rest:tt)*) => { assert_value!(@check $v; $($rest)*) };
    (@check $v:ident; ! Send $($rest:tt)*) => {
        AmbiguousIfSend::some_item(&$v);
        assert_value!(@check $v; $($rest)*)
    };
    (@check $v:ident; ! Sync $($rest:tt)*) => {
        AmbiguousIfSync::some_item(&$v);
        assert_value!(@check $v; $($rest)*)
    };
    (@check $v:ident; Send $($rest:tt)*) => {
        require_send(&$v);
        assert_value!(@check $v; $($rest)*)
    };
    (@check $v:ident; Sync $($rest:tt)*) => {
        require_sync(&$v);
        assert_value!(@check $v; $($rest)*)
    };
    (@check $v:ident; Unpin $($rest:tt)*) => {
        require_unpin(&$v);
        assert_value!(@check $v; $($rest)*)
    };
    ($type:ty: $($bounds:tt)+) => {
        #[allow(unreachable_code, unused_variables)]
        const _: fn() = || {
            let value: $type = todo!();
            assert_value!(@check value; $($bounds)+);
        };
    };
}

/// Checks the future returned by an `async fn` or method call: its type
/// is only known from the expression.
macro_rules! assert_future {
    ($name:ident: $expr:expr => $($bounds:tt)+) => {
        #[allow(unreachable_code, unused_variables, dead_code)]
        fn $name() {
            let value = $expr;
            assert_value!(@check value; $($bounds)+);
        }
    };
}

assert_value!(Runtime: Send & Sync & Unpin);
assert_value!(Handle: Send & Sync & Unpin);
assert_value!(Builder: Send & Sync & Unpin);
assert_value!(RuntimeMetrics: Send & Sync & Unpin);
assert_value!(TryCurrentError: Send & Sync & Unpin);
assert_value!(JoinError: Send & Sync & Unpin);
assert_value!(EnterGuard<'static>: Unpin);

assert_value!(JoinHandle<()>: Send & Sync & Unpin);
assert_value!(JoinHandle<String>: Send & Sync & Unpin);
// `T: Send` is enough, `T: Sync` is not needed.
assert_value!(JoinHandle<Cell<u8>>: Send & Sync & Unpin);
// A handle of a `!Send` output cannot leave its thread.
assert_value!(JoinHandle<Rc<u8>>: !Send & !Sync & Unpin);
// Unpin whatever the output is.
assert_value!(JoinHandle<std::marker::PhantomPinned>: Send & Sync & Unpin);

assert_future!(yield_now_future: fiber_runtime::yield_now() => Send & Sync);

// Time.
use fiber_runtime::time::{Elapsed, Interval, Sleep, Timeout};
assert_value!(Sleep: Send & Sync & Unpin);
assert_value!(Timeout<Sleep>: Send & Sync & Unpin);
assert_value!(Timeout<std::future::Pending<()>>: Send & Sync & Unpin);
// A `Timeout` is as `Send` and `Unpin` as its future.
assert_value!(Timeout<std::future::Ready<Rc<u8>>>: !Send & !Sync & Unpin);
assert_value!(Interval: Send & Sync & Unpin);
assert_value!(Elapsed: Send & Sync & Unpin);
assert_future!(interval_tick: fiber_runtime::time::interval(todo!()).tick() => Send & Sync);

// Net: every type is `Send + Sync + Unpin`, and so are its futures.
use fiber_runtime::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
assert_value!(TcpListener: Send & Sync & Unpin);
assert_value!(TcpStream: Send & Sync & Unpin);
assert_value!(UdpSocket: Send & Sync & Unpin);
assert_value!(UnixListener: Send & Sync & Unpin);
assert_value!(UnixStream: Send & Sync & Unpin);
assert_future!(tcp_connect: TcpStream::connect("127.0.0.1:1") => Send & Sync);
assert_future!(tcp_accept: {
    let l: &TcpListener = todo!();
    l.accept()
} => Send & Sync);
assert_future!(unix_connect: UnixStream::connect("/nowhere") => Send & Sync);
assert_future!(udp_recv_from: {
    let s: &UdpSocket = todo!();
    let buf: &mut [u8] = todo!();
    s.recv_from(buf)
} => Send & Sync);
use fiber_runtime::net::{TcpSocket, UnixDatagram, lookup_host};
assert_value!(TcpSocket: Send & Sync & Unpin);
assert_value!(UnixDatagram: Send & Sync & Unpin);
assert_future!(lookup: lookup_host("localhost:80") => Send & Sync);
assert_future!(lookup_result: futures::executor::block_on(lookup_host("localhost:80")).unwrap() => Send & Sync);
assert_future!(tcp_connect_by_name: TcpStream::connect(("localhost", 80)) => Send & Sync);
assert_future!(tcp_socket_connect: TcpSocket::new_v4().unwrap().connect(todo!()) => Send & Sync);
assert_future!(tcp_peek: {
    let s: &TcpStream = todo!();
    let buf: &mut [u8] = todo!();
    s.peek(buf)
} => Send & Sync);
assert_future!(unix_datagram_recv_from: {
    let s: &UnixDatagram = todo!();
    let buf: &mut [u8] = todo!();
    s.recv_from(buf)
} => Send & Sync);
assert_future!(unix_datagram_send_to: {
    let s: &UnixDatagram = todo!();
    s.send_to(b"x", "/nowhere")
} => Send & Sync);

// Fibers.
use fiber_runtime::fiber::{self, FiberId};
assert_value!(FiberId: Send & Sync & Unpin);
assert_value!(fiber::Builder: Send & Sync & Unpin);
// A fiber's `JoinHandle` is the same type as a task's.
assert_future!(fiber_handle: fiber::spawn(|| 1u8) => Send & Sync & Unpin);

/// `JoinHandle<T>` is a future of `Result<T, JoinError>`, and
/// `JoinError` a `std::error::Error` that can be boxed for `?`.
#[allow(dead_code)]
fn join_handle_output_type(h: &JoinHandle<u8>) {
    fn output_of<F: Future<Output = Result<u8, JoinError>>>(_: &F) {}
    fn boxable(e: JoinError) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        Box::new(e)
    }
    fn io_convertible(e: JoinError) -> std::io::Error {
        e.into()
    }
    output_of(h);
    let _ = (boxable, io_convertible);
}

/// A runtime and its handle can move to, and be shared with, other
/// threads; the handle spawns from there.
#[test]
fn runtime_and_handle_cross_threads() {
    let rt = std::sync::Arc::new(
        Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap(),
    );
    let handle = rt.handle().clone();
    let rt2 = rt.clone();
    let out = std::thread::spawn(move || {
        let h = handle.spawn(async { 20 });
        rt2.block_on(h).unwrap() + 1
    })
    .join()
    .unwrap();
    assert_eq!(out, 21);
    // A runtime moved into another thread is dropped there.
    let rt = std::sync::Arc::try_unwrap(rt).unwrap();
    std::thread::spawn(move || drop(rt)).join().unwrap();
}

// Adapters (features).
#[cfg(feature = "hyper")]
mod hyper_types {
    use super::*;
    use fiber_runtime::hyper::{Connector, Executor, Timer};
    assert_value!(Executor: Send & Sync & Unpin);
    assert_value!(Timer: Send & Sync & Unpin);
    assert_value!(Connector: Send & Sync & Unpin);
    assert_future!(connector_call: {
        let c: &mut Connector = todo!();
        tower_service::Service::call(c, todo!())
    } => Send & Unpin);
}

#[cfg(feature = "tokio-compat")]
mod compat_types {
    use super::*;
    use fiber_runtime::compat::Compat;
    assert_value!(Compat<std::future::Ready<u8>>: Send & Sync & Unpin);
    // As `Send` and `Unpin` as what it wraps.
    assert_value!(Compat<std::future::Ready<Rc<u8>>>: !Send & !Sync & Unpin);
    assert_value!(Compat<std::marker::PhantomPinned>: Send & Sync);
}
