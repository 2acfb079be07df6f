//! Unix-domain stream sockets on the reactor: `pair`, `bind`/`accept`/
//! `connect` through a socket file (a unique temporary directory per test,
//! removed afterwards), connect errors, half-close, a stream shared by a
//! reader and a writer task, and `from_std`/`into_std`. Every scenario
//! runs under [`util::run_with_timeout`].

mod util;

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{UnixListener, UnixStream};
use std::io::ErrorKind;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use util::{Flavor, run};

/// A fresh directory for socket files, removed (with its content) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, SeqCst);
        let dir = std::env::temp_dir().join(format!("fiber-rt-{}-{test}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test's temporary directory");
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i >> 10) as u8
}

#[test]
fn pair_round_trip() {
    for flavor in Flavor::ALL {
        run(flavor, "pair round trip", || async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            assert!(a.local_addr().unwrap().is_unnamed());
            assert!(a.peer_addr().unwrap().is_unnamed());
            for size in [1usize, 10, 4096, 100_000] {
                let msg: Vec<u8> = (0..size).map(pattern).collect();
                let writer = fiber_runtime::spawn(async move {
                    a.write_all(&msg).await.unwrap();
                    a
                });
                let mut got = vec![0; size];
                b.read_exact(&mut got).await.unwrap();
                assert!(got.iter().enumerate().all(|(i, &x)| x == pattern(i)));
                a = writer.await.unwrap();
                b.write_all(&got[..size.min(10)]).await.unwrap();
                let mut back = vec![0; size.min(10)];
                a.read_exact(&mut back).await.unwrap();
                assert_eq!(back, got[..size.min(10)]);
            }
        });
    }
}

#[test]
fn one_stream_read_and_written_by_two_tasks_at_once() {
    const LEN: usize = 512 * 1024;
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(2)] {
        run(flavor, "shared UnixStream", || async {
            let (a, mut peer) = UnixStream::pair().unwrap();
            let a = Arc::new(a);
            // The peer echoes what it reads.
            let echo = fiber_runtime::spawn(async move {
                let mut buf = vec![0; 8191];
                let mut total = 0;
                loop {
                    let n = peer.read(&mut buf).await.unwrap();
                    if n == 0 {
                        peer.shutdown(Shutdown::Write).unwrap();
                        return total;
                    }
                    peer.write_all(&buf[..n]).await.unwrap();
                    total += n;
                }
            });
            let writer = fiber_runtime::spawn({
                let a = a.clone();
                async move {
                    let data: Vec<u8> = (0..LEN).map(pattern).collect();
                    let mut w: &UnixStream = &a;
                    for chunk in data.chunks(3001) {
                        w.write_all(chunk).await.unwrap();
                    }
                    a.shutdown(Shutdown::Write).unwrap();
                }
            });
            let reader = fiber_runtime::spawn({
                let a = a.clone();
                async move {
                    let mut r: &UnixStream = &a;
                    let mut buf = vec![0; 5003];
                    let mut got = 0;
                    loop {
                        let n = r.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return got;
                        }
                        for (k, &x) in buf[..n].iter().enumerate() {
                            assert_eq!(x, pattern(got + k), "byte {}", got + k);
                        }
                        got += n;
                    }
                }
            });
            writer.await.unwrap();
            assert_eq!(reader.await.unwrap(), LEN);
            assert_eq!(echo.await.unwrap(), LEN);
        });
    }
}

#[test]
fn bind_accept_connect_through_a_socket_file() {
    for flavor in Flavor::ALL {
        let dir = TempDir::new("bind-accept");
        let path = dir.join("sock");
        run(flavor, "bind/accept/connect", move || async move {
            let l = UnixListener::bind(&path).unwrap();
            assert_eq!(l.local_addr().unwrap().as_pathname(), Some(path.as_path()));
            let server = fiber_runtime::spawn(async move {
                for i in 0..20u8 {
                    let (mut s, peer) = l.accept().await.unwrap();
                    assert!(peer.is_unnamed(), "a connecting socket has no name");
                    let mut b = [0; 1];
                    s.read_exact(&mut b).await.unwrap();
                    assert_eq!(b[0], i);
                    s.write_all(&[i + 100]).await.unwrap();
                }
            });
            for i in 0..20u8 {
                let mut c = UnixStream::connect(&path).await.unwrap();
                assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
                c.write_all(&[i]).await.unwrap();
                let mut b = [0; 1];
                c.read_exact(&mut b).await.unwrap();
                assert_eq!(b[0], i + 100);
                assert_eq!(c.read(&mut b).await.unwrap(), 0, "server closed");
            }
            server.await.unwrap();
        });
        drop(dir);
    }
}

#[test]
fn binding_an_existing_path_is_addr_in_use() {
    let dir = TempDir::new("in-use");
    let path = dir.join("sock");
    run(Flavor::MultiThread(1), "bind in use", move || async move {
        let _l = UnixListener::bind(&path).unwrap();
        let err = UnixListener::bind(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    });
}

#[test]
fn connect_errors() {
    let dir = TempDir::new("connect-errors");
    let missing = dir.join("missing");
    let stale = dir.join("stale");
    run(
        Flavor::MultiThread(1),
        "connect errors",
        move || async move {
            let err = UnixStream::connect(&missing).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
            let err = UnixStream::connect(Path::new("/nonexistent-dir/sock"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

            // A socket file nobody listens on any more.
            drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
            assert!(stale.exists());
            let err = UnixStream::connect(&stale).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        },
    );
}

#[test]
fn shutdown_write_makes_the_peer_read_zero() {
    for flavor in Flavor::ALL {
        run(flavor, "shutdown", || async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            a.write_all(b"last words").await.unwrap();
            a.shutdown(Shutdown::Write).unwrap();
            let mut got = String::new();
            b.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "last words");
            let mut buf = [0; 8];
            for _ in 0..3 {
                assert_eq!(b.read(&mut buf).await.unwrap(), 0);
            }
            // The other direction is still open.
            b.write_all(b"reply").await.unwrap();
            let mut r = [0; 5];
            a.read_exact(&mut r).await.unwrap();
            assert_eq!(&r, b"reply");

            // A read already waiting is woken by the shutdown.
            let waiter = fiber_runtime::spawn(async move {
                let mut buf = [0; 8];
                a.read(&mut buf).await.unwrap()
            });
            fiber_runtime::yield_now().await;
            b.shutdown(Shutdown::Both).unwrap();
            assert_eq!(waiter.await.unwrap(), 0);
        });
    }
}

#[test]
fn from_std_and_into_std_round_trip() {
    // Both std::io and the async traits apply to our streams: the std
    // calls on the std stream are spelled out.
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(2)] {
        let dir = TempDir::new("std");
        let path = dir.join("sock");
        run(
            flavor,
            "UnixStream/UnixListener from_std/into_std",
            move || async move {
                // Stream.
                let (std_a, std_b) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut a = UnixStream::from_std(std_a).unwrap();
                let mut b = UnixStream::from_std(std_b).unwrap();
                a.write_all(b"ab").await.unwrap();
                let mut buf = [0; 2];
                b.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"ab");
                let mut std_a = a.into_std().unwrap();
                // Still non-blocking, as documented.
                assert_eq!(
                    std::io::Read::read(&mut std_a, &mut buf)
                        .unwrap_err()
                        .kind(),
                    ErrorKind::WouldBlock
                );
                std::io::Write::write_all(&mut std_a, b"cd").unwrap();
                b.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"cd");
                let mut a = UnixStream::from_std(std_a).unwrap();
                b.write_all(b"ef").await.unwrap();
                a.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"ef");

                // Listener.
                let std_l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                let l = UnixListener::from_std(std_l).unwrap();
                let p = path.clone();
                let c = fiber_runtime::spawn(async move { UnixStream::connect(p).await.unwrap() });
                let (_s, _) = l.accept().await.unwrap();
                c.await.unwrap();
                let std_l = l.into_std().unwrap();
                assert_eq!(
                    std_l.local_addr().unwrap().as_pathname(),
                    Some(path.as_path())
                );
                assert_eq!(std_l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
                let l = UnixListener::from_std(std_l).unwrap();
                let p = path.clone();
                let c = fiber_runtime::spawn(async move { UnixStream::connect(p).await.unwrap() });
                let (mut s, _) = l.accept().await.unwrap();
                let mut c = c.await.unwrap();
                c.write_all(b"gh").await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"gh");
            },
        );
        drop(dir);
    }
}

#[test]
fn temporary_directories_are_removed() {
    let dir = TempDir::new("cleanup");
    let path = dir.join("sock");
    let root = dir.0.clone();
    run(Flavor::CurrentThread, "cleanup", move || async move {
        let _l = UnixListener::bind(&path).unwrap();
        assert!(path.exists());
    });
    drop(dir);
    assert!(!root.exists());
}

/// More slices than one `writev` takes (std sends the first 1024), through
/// the futures-io impl: the short write is not a full send buffer.
#[test]
fn a_vectored_write_of_more_than_iov_max_slices_does_not_stall() {
    run(Flavor::CurrentThread, "2000 slices", || async {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let bytes = [7u8; 2000];
        let mut slices: Vec<std::io::IoSlice<'_>> =
            bytes.chunks(1).map(std::io::IoSlice::new).collect();
        let mut sent = 0;
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = a.write_vectored(rest).await.unwrap();
            assert!(n > 0);
            sent += n;
            std::io::IoSlice::advance_slices(&mut rest, n);
        }
        assert_eq!(sent, 2000);
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, bytes);
    });
}
