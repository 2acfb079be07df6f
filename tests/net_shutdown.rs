//! Sockets and runtimes that part ways: a socket that outlives its runtime
//! fails every operation with an error instead of waiting forever (also
//! one already waiting when the runtime drops), dropping it still closes
//! it, and a socket made outside any runtime is refused with an error
//! naming the runtime. Every wait is bounded with [`run_with_timeout`].

mod util;

use fiber_runtime::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use futures::channel::oneshot;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::mpsc;
use util::{Flavor, TIMEOUT, run_with_timeout};

/// What the error of a socket whose runtime is gone says.
const GONE: &str = "shut down";
/// What the error of a socket made outside any runtime says.
const NO_RUNTIME: &str = "no fiber-runtime runtime";

/// A connected TCP pair made on `rt`: (client, accepted side).
fn tcp_pair(rt: &fiber_runtime::Runtime) -> (TcpStream, TcpStream) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (s, _) = l.accept().await.unwrap();
        (c.await.unwrap(), s)
    })
}

#[track_caller]
fn assert_gone<T: std::fmt::Debug>(what: &str, res: io::Result<T>) {
    let err = res.expect_err(what);
    assert!(
        err.to_string().contains(GONE),
        "{what}: the error should say the runtime shut down: {err}"
    );
}

#[test]
fn tcp_streams_outliving_their_runtime_fail_instead_of_hanging() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (mut client, mut server) = tcp_pair(&rt);
        drop(rt);
        let what = format!("I/O on TCP streams of a dropped {flavor:?} runtime");
        run_with_timeout(&what, move || {
            let mut buf = [0; 8];
            // Polled by a plain executor...
            futures::executor::block_on(async {
                assert_gone("read", client.read(&mut buf).await);
                assert_gone("write", client.write_all(b"x").await);
                assert_gone("peer read", server.read(&mut buf).await);
                assert_gone("shared read", (&server).read(&mut buf).await);
            });
            // ...and by a fresh runtime: the socket still belongs to the
            // dropped one.
            let fresh = flavor.build();
            fresh.block_on(async {
                assert_gone("read on a fresh runtime", client.read(&mut buf).await);
                assert_gone("write on a fresh runtime", server.write(b"x").await);
            });
        });
    }
}

#[test]
fn a_read_waiting_when_the_runtime_drops_fails() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (mut client, server) = tcp_pair(&rt);
        let (pending_tx, pending_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        // A plain thread waits in a read on the runtime's socket.
        std::thread::spawn(move || {
            let res = futures::executor::block_on(async {
                let mut buf = [0; 8];
                let mut pending_tx = Some(pending_tx);
                poll_fn(|cx| {
                    let r = Pin::new(&mut client).poll_read(cx, &mut buf);
                    if r.is_pending() {
                        if let Some(tx) = pending_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    r
                })
                .await
            });
            let _ = done_tx.send(res);
        });
        futures::executor::block_on(pending_rx).expect("the read finished without waiting");
        drop(rt);
        let res = done_rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{flavor:?}: a read waiting on a dropped runtime hung"));
        assert_gone("waiting read", res);
        drop(server);
    }
}

#[test]
fn listeners_udp_and_unix_sockets_outliving_their_runtime_fail() {
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        let (listener, udp, (mut ua, ub)) = rt.block_on(async {
            (
                TcpListener::bind("127.0.0.1:0").unwrap(),
                UdpSocket::bind("127.0.0.1:0").unwrap(),
                UnixStream::pair().unwrap(),
            )
        });
        let udp_addr = udp.local_addr().unwrap();
        drop(rt);
        let what = format!("sockets of a dropped {flavor:?} runtime");
        run_with_timeout(&what, move || {
            futures::executor::block_on(async {
                assert_gone("accept", listener.accept().await);
                let mut buf = [0; 8];
                assert_gone("recv_from", udp.recv_from(&mut buf).await);
                assert_gone("send_to", udp.send_to(b"x", udp_addr).await);
                assert_gone("unix read", ua.read(&mut buf).await);
                assert_gone("unix write", ua.write_all(b"x").await);
                assert_gone("unix shared read", (&ub).read(&mut buf).await);
            });
        });
    }
}

#[test]
fn dropping_a_socket_after_its_runtime_still_closes_it() {
    use std::io::Read;
    for flavor in Flavor::ALL {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_l.local_addr().unwrap();
        let rt = flavor.build();
        let client = rt.block_on(TcpStream::connect(addr)).unwrap();
        let (mut peer, _) = std_l.accept().unwrap();
        drop(rt);
        drop(client);
        peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0; 8];
        let n = peer
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{flavor:?}: the socket was not closed: {e}"));
        assert_eq!(n, 0, "{flavor:?}: EOF");
    }
}

#[test]
fn into_std_after_the_runtime_is_gone_does_not_hang() {
    use std::io::{Read, Write};
    for flavor in Flavor::ALL {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_l.local_addr().unwrap();
        let rt = flavor.build();
        let client = rt.block_on(TcpStream::connect(addr)).unwrap();
        let (mut peer, _) = std_l.accept().unwrap();
        drop(rt);
        let res = run_with_timeout("into_std after the runtime dropped", move || {
            client.into_std()
        });
        // Either answer is acceptable; a recovered socket must work.
        if let Ok(mut s) = res {
            s.set_nonblocking(false).unwrap();
            s.write_all(b"ok").unwrap();
            let mut b = [0; 2];
            peer.set_read_timeout(Some(TIMEOUT)).unwrap();
            peer.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"ok", "{flavor:?}");
        }
    }
}

#[track_caller]
fn assert_no_runtime<T: std::fmt::Debug>(what: &str, res: io::Result<T>) {
    let err = res.expect_err(what);
    assert!(
        err.to_string().contains(NO_RUNTIME),
        "{what}: the error should name the missing runtime: {err}"
    );
}

#[test]
fn sockets_made_outside_any_runtime_are_refused_with_an_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("fiber-rt-{}-outside", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();

    assert_no_runtime("TcpListener::bind", TcpListener::bind("127.0.0.1:0"));
    assert_no_runtime(
        "TcpStream::connect",
        futures::executor::block_on(TcpStream::connect(addr)),
    );
    assert_no_runtime("UdpSocket::bind", UdpSocket::bind("127.0.0.1:0"));
    assert_no_runtime("UnixStream::pair", UnixStream::pair());
    assert_no_runtime("UnixListener::bind", UnixListener::bind(dir.join("sock")));
    assert_no_runtime(
        "TcpListener::from_std",
        TcpListener::from_std(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
    );
    assert_no_runtime(
        "TcpStream::from_std",
        TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap()),
    );
    assert_no_runtime(
        "UdpSocket::from_std",
        UdpSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()),
    );
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert_no_runtime("UnixStream::from_std", UnixStream::from_std(a));

    // With the runtime entered, the same calls work.
    let rt = util::current_thread();
    {
        let _guard = rt.enter();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        drop(l);
        UdpSocket::bind("127.0.0.1:0").unwrap();
        UnixStream::pair().unwrap();
    }
    // And not after leaving it again.
    assert_no_runtime(
        "TcpListener::bind after leaving",
        TcpListener::bind("127.0.0.1:0"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_socket_made_in_a_runtime_dropped_meanwhile_never_blocks_a_fresh_one() {
    // Many sockets left behind by many runtimes: the fresh runtime's own
    // sockets keep working.
    let mut leftovers = Vec::new();
    for flavor in Flavor::ALL {
        let rt = flavor.build();
        leftovers.push(tcp_pair(&rt));
    }
    let rt = util::multi_thread(2);
    run_with_timeout("fresh runtime with leftovers around", move || {
        rt.block_on(async move {
            let (mut c, mut s) = {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                let c =
                    fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
                let (s, _) = l.accept().await.unwrap();
                (c.await.unwrap(), s)
            };
            let mut buf = [0; 4];
            for (old_c, _old_s) in &leftovers {
                assert_gone("leftover read", (&*old_c).read(&mut buf).await);
                c.write_all(b"live").await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"live");
            }
            drop(leftovers);
        });
    });
}
