//! `UnixDatagram`: datagrams by path and between a connected pair keep
//! their boundaries and order; shutdown wakes a waiting receive and fails
//! later sends; a full receive queue holds the sender back without losing
//! a datagram; the blocking-style calls suspend a fiber, block a plain
//! thread and panic in an async task; errors for missing or taken paths.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::fiber;
use fiber_runtime::net::UnixDatagram;
use std::io::ErrorKind;
use std::net::Shutdown;
use std::path::PathBuf;
use std::pin::pin;
use util::{Flavor, run};

/// A fresh directory for this test's socket files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fr-dgram-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn send_to_and_recv_from_by_path_keep_boundaries_and_senders() {
    for flavor in Flavor::ALL {
        run(flavor, "by path", move || async move {
            let dir = TempDir::new(&format!("path-{flavor:?}"));
            let (pa, pb) = (dir.path("a"), dir.path("b"));
            let a = UnixDatagram::bind(&pa).unwrap();
            let b = UnixDatagram::bind(&pb).unwrap();
            let anon = UnixDatagram::unbound().unwrap();
            // Fewer than the receive queue holds (net.unix.max_dgram_qlen,
            // 10 by default): this task only reads after sending them all.
            for i in 0..8u8 {
                a.send_to(&[i; 3], &pb).await.unwrap();
            }
            anon.send_to(b"anonymous", &pb).await.unwrap();
            let mut buf = [0; 64];
            for i in 0..8u8 {
                let (n, from) = b.recv_from(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &[i; 3]);
                assert_eq!(from.as_pathname(), Some(pa.as_path()));
            }
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"anonymous");
            assert!(from.is_unnamed());
            assert_eq!(a.local_addr().unwrap().as_pathname(), Some(pa.as_path()));
            // A datagram longer than the buffer is cut, the rest dropped.
            a.send_to(b"0123456789", &pb).await.unwrap();
            a.send_to(b"next", &pb).await.unwrap();
            let mut small = [0; 4];
            assert_eq!(b.recv(&mut small).await.unwrap(), 4);
            assert_eq!(&small, b"0123");
            assert_eq!(b.recv(&mut small).await.unwrap(), 4);
            assert_eq!(&small, b"next");
        });
    }
}

#[test]
fn a_receive_waits_for_its_datagram_from_another_task() {
    for flavor in Flavor::ALL {
        run(flavor, "waiting receive", || async {
            let (a, b) = UnixDatagram::pair().unwrap();
            let a = std::sync::Arc::new(a);
            let (ready_tx, ready_rx) = fiber_runtime::sync::oneshot::channel();
            let recv = fiber_runtime::spawn(async move {
                let mut buf = [0; 8];
                let n = {
                    let mut r = pin!(b.recv(&mut buf));
                    assert!(futures::poll!(r.as_mut()).is_pending());
                    ready_tx.send(()).unwrap();
                    r.await.unwrap()
                };
                buf[..n].to_vec()
            });
            ready_rx.await.unwrap();
            a.send(b"late").await.unwrap();
            assert_eq!(recv.await.unwrap(), b"late");
        });
    }
}

#[test]
fn shutdown_read_wakes_a_waiting_receive_and_later_ones_return_zero() {
    for flavor in Flavor::ALL {
        run(flavor, "shutdown read", || async {
            let (a, b) = UnixDatagram::pair().unwrap();
            let b = std::sync::Arc::new(b);
            let b2 = b.clone();
            let (ready_tx, ready_rx) = fiber_runtime::sync::oneshot::channel();
            let waiting = fiber_runtime::spawn(async move {
                let mut buf = [0; 8];
                let mut r = pin!(b2.recv(&mut buf));
                assert!(futures::poll!(r.as_mut()).is_pending());
                ready_tx.send(()).unwrap();
                r.await
            });
            ready_rx.await.unwrap();
            b.shutdown(Shutdown::Read).unwrap();
            assert_eq!(waiting.await.unwrap().unwrap(), 0);
            let mut buf = [0; 8];
            assert_eq!(b.recv(&mut buf).await.unwrap(), 0);
            assert_eq!(b.recv_from(&mut buf).await.unwrap().0, 0);
            // The peer's sends are refused once nobody reads.
            let err = a.send(b"x").await.unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::BrokenPipe | ErrorKind::ConnectionRefused
                ),
                "{err:?}"
            );
        });
    }
}

#[test]
fn shutdown_write_fails_later_sends_with_broken_pipe() {
    for flavor in Flavor::ALL {
        run(flavor, "shutdown write", || async {
            let (a, b) = UnixDatagram::pair().unwrap();
            a.send(b"before").await.unwrap();
            a.shutdown(Shutdown::Write).unwrap();
            let err = a.send(b"after").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BrokenPipe);
            let err = fiber::spawn(move || a.blocking_send(b"after").unwrap_err().kind())
                .await
                .unwrap();
            assert_eq!(err, ErrorKind::BrokenPipe);
            // What was sent before is still delivered.
            let mut buf = [0; 8];
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"before");
        });
    }
}

#[test]
fn a_full_receive_queue_holds_the_sender_back_and_loses_nothing() {
    for flavor in Flavor::ALL {
        run(flavor, "full queue", move || async move {
            let (a, b) = UnixDatagram::pair().unwrap();
            // Far beyond the default queue (net.unix.max_dgram_qlen, and
            // the receive buffer): the sender must wait for the reader.
            const N: u32 = 5000;
            let sender = fiber_runtime::spawn(async move {
                for i in 0..N {
                    a.send(&i.to_le_bytes()).await.unwrap();
                }
                a
            });
            let mut buf = [0; 8];
            for i in 0..N {
                let n = b.recv(&mut buf).await.unwrap();
                assert_eq!(u32::from_le_bytes(buf[..n].try_into().unwrap()), i);
            }
            drop(sender.await.unwrap());

            // The same by path, from an unconnected socket (which polls
            // writable even while the receiver's queue is full).
            let dir = TempDir::new(&format!("full-{flavor:?}"));
            let path = dir.path("rx");
            let rx = UnixDatagram::bind(&path).unwrap();
            let p = path.clone();
            let sender = fiber_runtime::spawn(async move {
                let tx = UnixDatagram::unbound().unwrap();
                for i in 0..N {
                    tx.send_to(&i.to_le_bytes(), &p).await.unwrap();
                }
            });
            for i in 0..N {
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(u32::from_le_bytes(buf[..n].try_into().unwrap()), i);
            }
            sender.await.unwrap();
        });
    }
}

#[test]
fn connect_filters_and_addresses_report_names() {
    run(Flavor::MultiThread(2), "connect", || async {
        let dir = TempDir::new("connect");
        let (ps, po) = (dir.path("server"), dir.path("other"));
        let server = UnixDatagram::bind(&ps).unwrap();
        let other = UnixDatagram::bind(&po).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        assert_eq!(
            client.peer_addr().unwrap_err().kind(),
            ErrorKind::NotConnected
        );
        assert_eq!(
            client.send(b"nowhere").await.unwrap_err().kind(),
            ErrorKind::NotConnected
        );
        server.connect(&po).unwrap();
        assert_eq!(
            server.peer_addr().unwrap().as_pathname(),
            Some(po.as_path())
        );
        // Datagrams from anyone but the peer are refused.
        let err = client.send_to(b"stranger", &ps).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ConnectionRefused
            ),
            "{err:?}"
        );
        other.send_to(b"peer", &ps).await.unwrap();
        let mut buf = [0; 8];
        let n = server.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"peer");
        server.send(b"back").await.unwrap();
        let (n, from) = other.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from.as_pathname()),
            (&b"back"[..], Some(ps.as_path()))
        );
    });
}

#[test]
fn bad_paths_give_their_errors() {
    run(Flavor::CurrentThread, "bad paths", || async {
        let dir = TempDir::new("errors");
        let p = dir.path("taken");
        let _a = UnixDatagram::bind(&p).unwrap();
        assert_eq!(
            UnixDatagram::bind(&p).unwrap_err().kind(),
            ErrorKind::AddrInUse
        );
        let s = UnixDatagram::unbound().unwrap();
        let missing = dir.path("missing");
        assert_eq!(
            s.send_to(b"x", &missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(s.connect(&missing).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            UnixDatagram::bind("/tmp/a\0b").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(s.take_error().unwrap().is_none());
    });
}

#[test]
fn blocking_calls_suspend_a_fiber() {
    for flavor in Flavor::ALL {
        run(flavor, "fiber", move || async move {
            let dir = TempDir::new(&format!("fiber-{flavor:?}"));
            let path = dir.path("server");
            let server = UnixDatagram::bind(&path).unwrap();
            let (a, b) = UnixDatagram::pair().unwrap();
            // The receiving fiber waits first; the sender runs after it.
            let receiver = fiber::spawn(move || {
                let mut buf = [0; 16];
                let n = b.blocking_recv(&mut buf).unwrap();
                let first = buf[..n].to_vec();
                let (n, from) = server.blocking_recv_from(&mut buf).unwrap();
                (first, buf[..n].to_vec(), from.is_unnamed())
            });
            let p = path.clone();
            let sender = fiber::spawn(move || {
                fiber::yield_now();
                a.blocking_send(b"pair").unwrap();
                UnixDatagram::unbound()
                    .unwrap()
                    .blocking_send_to(b"path", &p)
                    .unwrap()
            });
            assert_eq!(sender.await.unwrap(), 4);
            let got = receiver.await.unwrap();
            assert_eq!(got, (b"pair".to_vec(), b"path".to_vec(), true));
            drop(dir);
        });
    }
}

#[test]
fn blocking_calls_block_a_plain_thread() {
    let rt = util::multi_thread(1);
    let (a, b) = {
        let _g = rt.enter();
        UnixDatagram::pair().unwrap()
    };
    let got = util::run_with_timeout("plain threads", move || {
        let reader = std::thread::spawn(move || {
            let mut buf = [0; 8];
            let n = b.blocking_recv(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        a.blocking_send(b"thread").unwrap();
        reader.join().unwrap()
    });
    assert_eq!(got, b"thread");
    drop(rt);
}

#[test]
fn blocking_calls_in_an_async_task_panic_naming_the_async_call() {
    util::silence_expected_panics(&["UnixDatagram::blocking_"]);
    run(Flavor::MultiThread(1), "async task", || async {
        let err = fiber_runtime::spawn(async {
            let (_a, b) = UnixDatagram::pair().unwrap();
            let mut buf = [0; 1];
            let _ = b.blocking_recv(&mut buf);
        })
        .await
        .unwrap_err();
        let msg = util::panic_message(&*err.into_panic()).unwrap();
        assert!(
            msg.contains("UnixDatagram::blocking_recv") && msg.contains("`.recv(..).await`"),
            "{msg}"
        );
    });
}

#[test]
fn from_std_and_into_std_keep_the_socket() {
    run(Flavor::CurrentThread, "std round trip", || async {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let a = UnixDatagram::from_std(a).unwrap();
        let b = UnixDatagram::from_std(b).unwrap();
        a.send(b"one").await.unwrap();
        let b = b.into_std().unwrap();
        let mut buf = [0; 4];
        assert_eq!(b.recv(&mut buf).unwrap(), 3);
        let b = UnixDatagram::from_std(b).unwrap();
        a.send(b"two").await.unwrap();
        assert_eq!(b.recv(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        assert!(format!("{a:?}").contains("UnixDatagram"), "{a:?}");
    });
}
