//! Outside a runtime every fallible entry point that needs one fails the
//! same way: an `io::Error` of kind `Other` carrying a `TryCurrentError`
//! (so it can be told apart by downcasting), whose message names what
//! failed and says there is no runtime. Sockets, the socket constructors
//! of every net type, host-name lookups, and the fiber and task builders.

use fiber_runtime::net::{
    TcpListener, TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
    lookup_host,
};
use fiber_runtime::{TryCurrentError, fiber, task};
use futures::executor::block_on;
use std::io;

/// Asserts that `res` is the no-runtime error, with `what` in its message.
#[track_caller]
fn assert_no_runtime<T>(entry: &str, what: &str, res: io::Result<T>) {
    let Err(err) = res else {
        panic!("{entry} succeeded outside a runtime");
    };
    assert_eq!(err.kind(), io::ErrorKind::Other, "{entry}: {err:?}");
    let inner = err.get_ref().expect("an error with a source");
    assert!(inner.is::<TryCurrentError>(), "{entry}: {err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no fiber-runtime runtime") && msg.contains(what),
        "{entry}: {msg}"
    );
}

#[test]
fn every_fallible_entry_point_gives_the_same_kind_outside_a_runtime() {
    const SOCKET: &str = "creating a socket";
    let dir = std::env::temp_dir().join(format!("fr-nort-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let std_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_tcp.local_addr().unwrap();
    let std_unix = std::os::unix::net::UnixListener::bind(dir.join("l")).unwrap();

    assert_no_runtime(
        "TcpListener::bind",
        SOCKET,
        TcpListener::bind("127.0.0.1:0"),
    );
    assert_no_runtime(
        "TcpListener::from_std",
        SOCKET,
        TcpListener::from_std(std_tcp.try_clone().unwrap()),
    );
    assert_no_runtime(
        "TcpStream::connect",
        SOCKET,
        block_on(TcpStream::connect(addr)),
    );
    assert_no_runtime(
        "TcpStream::blocking_connect",
        SOCKET,
        TcpStream::blocking_connect(addr),
    );
    assert_no_runtime(
        "TcpStream::from_std",
        SOCKET,
        TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap()),
    );
    assert_no_runtime(
        "TcpSocket::connect",
        SOCKET,
        block_on(TcpSocket::new_v4().unwrap().connect(addr)),
    );
    assert_no_runtime("TcpSocket::listen", SOCKET, {
        let s = TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.listen(1)
    });
    assert_no_runtime("UdpSocket::bind", SOCKET, UdpSocket::bind("127.0.0.1:0"));
    assert_no_runtime(
        "UdpSocket::from_std",
        SOCKET,
        UdpSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()),
    );
    assert_no_runtime(
        "UnixListener::bind",
        SOCKET,
        UnixListener::bind(dir.join("b")),
    );
    assert_no_runtime(
        "UnixListener::from_std",
        SOCKET,
        UnixListener::from_std(std_unix.try_clone().unwrap()),
    );
    assert_no_runtime("UnixStream::pair", SOCKET, UnixStream::pair());
    assert_no_runtime(
        "UnixStream::connect",
        SOCKET,
        block_on(UnixStream::connect(dir.join("l"))),
    );
    assert_no_runtime(
        "UnixStream::blocking_connect",
        SOCKET,
        UnixStream::blocking_connect(dir.join("l")),
    );
    assert_no_runtime(
        "UnixStream::from_std",
        SOCKET,
        UnixStream::from_std(std::os::unix::net::UnixStream::pair().unwrap().0),
    );
    assert_no_runtime(
        "UnixDatagram::bind",
        SOCKET,
        UnixDatagram::bind(dir.join("d")),
    );
    assert_no_runtime("UnixDatagram::unbound", SOCKET, UnixDatagram::unbound());
    assert_no_runtime("UnixDatagram::pair", SOCKET, UnixDatagram::pair());
    assert_no_runtime(
        "UnixDatagram::from_std",
        SOCKET,
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::unbound().unwrap()),
    );
    assert_no_runtime(
        "lookup_host",
        "resolving a host name",
        block_on(lookup_host("localhost:80")).map(|_| ()),
    );
    assert_no_runtime(
        "fiber::Builder::spawn",
        "spawning a fiber",
        fiber::Builder::new().spawn(|| ()),
    );
    assert_no_runtime(
        "task::Builder::spawn",
        "spawning a task",
        task::Builder::new().spawn(async {}),
    );
    assert_no_runtime(
        "task::Builder::spawn_fiber",
        "spawning a fiber",
        task::Builder::new().spawn_fiber(|| ()),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn try_current_error_converts_into_the_same_io_error() {
    let err = fiber_runtime::Handle::try_current().unwrap_err();
    let io = io::Error::from(err.clone());
    assert_eq!(io.kind(), io::ErrorKind::Other);
    assert_eq!(io.to_string(), err.to_string());
    assert!(io.get_ref().unwrap().is::<TryCurrentError>());
}

#[test]
fn inside_a_runtime_the_same_calls_succeed() {
    let rt = fiber_runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    TcpListener::bind("127.0.0.1:0").unwrap();
    UdpSocket::bind("127.0.0.1:0").unwrap();
    UnixDatagram::unbound().unwrap();
    UnixStream::pair().unwrap();
    fiber::Builder::new().spawn(|| ()).unwrap().join().unwrap();
    task::Builder::new()
        .spawn(async {})
        .unwrap()
        .join()
        .unwrap();
}
