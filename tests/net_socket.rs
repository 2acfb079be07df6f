//! `TcpSocket`: options set before connecting or listening round-trip and
//! carry over to the stream or listener; bind, listen and connect, with
//! their errors; `SO_REUSEPORT` shares a port; a connect dropped midway
//! closes its socket (counted in a child process); the raw-descriptor
//! conversions keep the socket.

mod util;

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpSocket, TcpStream};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::pin;
use std::time::Duration;
use util::{Flavor, run};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn options_round_trip_without_a_runtime() {
    let s = TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    assert!(s.reuseaddr().unwrap());
    s.set_reuseaddr(false).unwrap();
    assert!(!s.reuseaddr().unwrap());
    s.set_reuseport(true).unwrap();
    assert!(s.reuseport().unwrap());
    s.set_send_buffer_size(96 * 1024).unwrap();
    assert!(s.send_buffer_size().unwrap() >= 96 * 1024);
    s.set_recv_buffer_size(80 * 1024).unwrap();
    assert!(s.recv_buffer_size().unwrap() >= 80 * 1024);
    assert_eq!(s.linger().unwrap(), None);
    s.set_linger(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(s.linger().unwrap(), Some(Duration::from_secs(3)));
    s.set_nodelay(true).unwrap();
    assert!(s.nodelay().unwrap());
    s.set_keepalive(true).unwrap();
    assert!(s.keepalive().unwrap());
    assert!(s.take_error().unwrap().is_none());
    // Huge sizes are clamped by the kernel, not an error.
    s.set_send_buffer_size(u32::MAX).unwrap();
    assert!(s.send_buffer_size().unwrap() > 0);
    assert!(format!("{s:?}").contains("Socket"), "{s:?}");
}

#[test]
fn options_carry_over_to_the_stream_and_the_listener() {
    for flavor in Flavor::ALL {
        run(flavor, "options carried", || async {
            let ls = TcpSocket::new_v4().unwrap();
            ls.set_reuseaddr(true).unwrap();
            ls.set_recv_buffer_size(64 * 1024).unwrap();
            ls.bind(loopback()).unwrap();
            let bound = ls.local_addr().unwrap();
            assert_ne!(bound.port(), 0);
            let listener = ls.listen(32).unwrap();
            assert_eq!(listener.local_addr().unwrap(), bound);
            assert!(socket2::SockRef::from(&listener).reuse_address().unwrap());

            let cs = TcpSocket::new_v4().unwrap();
            cs.set_nodelay(true).unwrap();
            cs.set_linger(Some(Duration::from_secs(2))).unwrap();
            cs.set_send_buffer_size(128 * 1024).unwrap();
            let want_sndbuf = cs.send_buffer_size().unwrap();
            let connect = fiber_runtime::spawn(cs.connect(bound));
            let (mut server, peer) = listener.accept().await.unwrap();
            let mut client = connect.await.unwrap().unwrap();
            assert_eq!(client.local_addr().unwrap(), peer);
            assert!(client.nodelay().unwrap());
            assert_eq!(client.linger().unwrap(), Some(Duration::from_secs(2)));
            let sndbuf = socket2::SockRef::from(&client).send_buffer_size().unwrap();
            assert_eq!(sndbuf as u32, want_sndbuf);
            client.write_all(b"through TcpSocket").await.unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = String::new();
            server.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "through TcpSocket");
        });
    }
}

#[test]
fn bind_and_connect_errors() {
    run(Flavor::MultiThread(1), "errors", || async {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpSocket::new_v4().unwrap();
        let err = s.bind(taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);

        // A port bound but not listening refuses connections; keeping it
        // bound means no test running alongside can take it meanwhile (a
        // dropped listener's port can be handed out again at once: this
        // once failed with ConnectionReset).
        let holder = TcpSocket::new_v4().unwrap();
        holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = holder.local_addr().unwrap();
        let err = TcpSocket::new_v4()
            .unwrap()
            .connect(closed)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

        // The wrong family: an error, not a panic.
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert!(TcpSocket::new_v4().unwrap().connect(v6).await.is_err());
        assert!(TcpSocket::new_v4().unwrap().bind(v6).is_err());

        // Listening twice on one port without SO_REUSEPORT fails.
        let a = TcpSocket::new_v4().unwrap();
        a.bind(loopback()).unwrap();
        let addr = a.local_addr().unwrap();
        let _la = a.listen(8).unwrap();
        let b = TcpSocket::new_v4().unwrap();
        assert_eq!(b.bind(addr).unwrap_err().kind(), ErrorKind::AddrInUse);
    });
}

#[test]
fn reuseport_lets_two_listeners_share_a_port_and_both_accept() {
    run(Flavor::MultiThread(2), "reuseport", || async {
        let first = TcpSocket::new_v4().unwrap();
        first.set_reuseport(true).unwrap();
        first.bind(loopback()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = TcpSocket::new_v4().unwrap();
        second.set_reuseport(true).unwrap();
        second.bind(addr).unwrap();
        let (l1, l2) = (first.listen(64).unwrap(), second.listen(64).unwrap());
        assert_eq!(l1.local_addr().unwrap(), l2.local_addr().unwrap());
        // The kernel spreads connections by hash: keep connecting until
        // each listener got one (bounded by the test's timeout).
        let (mut got1, mut got2) = (0, 0);
        let mut keep = Vec::new();
        while got1 == 0 || got2 == 0 {
            keep.push(TcpStream::connect(addr).await.unwrap());
            futures::select_biased! {
                r = l1.accept().fuse_it() => { r.unwrap(); got1 += 1 }
                r = l2.accept().fuse_it() => { r.unwrap(); got2 += 1 }
            }
        }
    });
}

/// `futures::select!` wants fused futures.
trait FuseIt: std::future::Future + Sized {
    fn fuse_it(self) -> futures::future::Fuse<Self> {
        futures::FutureExt::fuse(self)
    }
}
impl<F: std::future::Future> FuseIt for F {}

#[test]
fn ipv6_loopback_when_the_host_has_it() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this host: nothing to check");
        return;
    }
    run(Flavor::CurrentThread, "v6", || async {
        let s = TcpSocket::new_v6().unwrap();
        s.bind("[::1]:0".parse().unwrap()).unwrap();
        let l = s.listen(4).unwrap();
        let addr = l.local_addr().unwrap();
        let c = fiber_runtime::spawn(TcpSocket::new_v6().unwrap().connect(addr));
        let (_s, peer) = l.accept().await.unwrap();
        assert_eq!(c.await.unwrap().unwrap().local_addr().unwrap(), peer);
    });
}

#[test]
fn connect_and_listen_outside_a_runtime_fail_with_the_no_runtime_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = TcpSocket::new_v4().unwrap();
    let err = futures::executor::block_on(s.connect(l.local_addr().unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(
        err.get_ref()
            .is_some_and(|e| e.is::<fiber_runtime::TryCurrentError>())
    );
    let s = TcpSocket::new_v4().unwrap();
    s.bind(loopback()).unwrap();
    assert_eq!(s.listen(1).unwrap_err().kind(), ErrorKind::Other);
}

/// The number of descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn dropping_a_connect_midway_closes_its_socket() {
    util::in_child(
        "dropping_a_connect_midway_closes_its_socket",
        "FR_NET_SOCKET_DROP_CONNECT",
        || {
            for flavor in Flavor::ALL {
                let rt = flavor.build();
                rt.block_on(async {
                    // Backlog 0: one connection fills the accept queue, and
                    // the kernel drops every later SYN, so a connect stays
                    // in progress for as long as the queue is full.
                    let ls = TcpSocket::new_v4().unwrap();
                    ls.bind(loopback()).unwrap();
                    let listener = ls.listen(0).unwrap();
                    let addr = listener.local_addr().unwrap();
                    let _queued = std::net::TcpStream::connect(addr).unwrap();
                    let before = open_fds();
                    for _ in 0..4 {
                        let mut c = pin!(TcpStream::connect(addr));
                        assert!(futures::poll!(c.as_mut()).is_pending());
                        let mut s = pin!(TcpSocket::new_v4().unwrap().connect(addr));
                        assert!(futures::poll!(s.as_mut()).is_pending());
                        assert_eq!(open_fds(), before + 2);
                    }
                    assert_eq!(open_fds(), before, "a dropped connect kept its socket");
                    // The listener and the runtime go on working.
                    let (mut first, _) = listener.accept().await.unwrap();
                    let client = fiber_runtime::spawn(async move {
                        let mut c = TcpStream::connect(addr).await.unwrap();
                        c.write_all(b"after").await.unwrap();
                    });
                    let (mut second, _) = listener.accept().await.unwrap();
                    let mut got = Vec::new();
                    second.read_to_end(&mut got).await.unwrap();
                    assert_eq!(got, b"after");
                    client.await.unwrap();
                    drop(_queued);
                    let mut rest = Vec::new();
                    first.read_to_end(&mut rest).await.unwrap();
                });
            }
        },
    );
}

#[test]
fn raw_descriptor_conversions_keep_the_socket() {
    run(Flavor::CurrentThread, "raw fds", || async {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(loopback()).unwrap();
        let addr = s.local_addr().unwrap();
        assert_eq!(s.as_raw_fd(), s.as_fd().as_raw_fd());
        let fd = s.into_raw_fd();
        // SAFETY: `fd` is the open socket `into_raw_fd` just gave up, and
        // nothing else owns it.
        let s = unsafe { TcpSocket::from_raw_fd(fd) };
        assert_eq!(s.local_addr().unwrap(), addr);
        let owned = OwnedFd::from(s);
        let s = TcpSocket::from_std_stream(std::net::TcpStream::from(owned));
        assert_eq!(s.local_addr().unwrap(), addr);
        let l = s.listen(4).unwrap();
        let c = fiber_runtime::spawn(TcpStream::connect(addr));
        l.accept().await.unwrap();
        c.await.unwrap().unwrap();
    });
}

#[test]
fn from_std_stream_reads_options_of_a_connected_stream() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let std_stream = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let local = std_stream.local_addr().unwrap();
    let s = TcpSocket::from_std_stream(std_stream);
    assert_eq!(s.local_addr().unwrap(), local);
    s.set_keepalive(true).unwrap();
    assert!(s.keepalive().unwrap());
}
