//! UDP on the reactor: `send_to`/`recv_from` (datagram boundaries kept, a
//! waiting receiver woken by a datagram), `connect` with `send`/`recv`
//! (and the filtering of other senders), `bind` errors, and
//! `from_std`/`into_std`. Real sockets on 127.0.0.1 only; every scenario
//! runs under [`util::run_with_timeout`].

mod util;

use fiber_runtime::net::UdpSocket;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use util::{Flavor, run};

fn bind() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = s.local_addr().unwrap();
    (s, addr)
}

#[test]
fn send_to_and_recv_from_keep_datagram_boundaries() {
    for flavor in Flavor::ALL {
        run(flavor, "send_to/recv_from", || async {
            let (a, a_addr) = bind();
            let (b, b_addr) = bind();
            assert_ne!(a_addr.port(), 0);
            let sizes = [1usize, 0, 17, 1000, 8192, 2];
            for (i, &size) in sizes.iter().enumerate() {
                let msg = vec![i as u8; size];
                assert_eq!(a.send_to(&msg, b_addr).await.unwrap(), size);
            }
            let mut buf = vec![0; 65_536];
            for (i, &size) in sizes.iter().enumerate() {
                let (n, from) = b.recv_from(&mut buf).await.unwrap();
                assert_eq!((n, from), (size, a_addr), "datagram {i}");
                assert!(buf[..n].iter().all(|&x| x == i as u8));
            }
            // And back, addressed by string.
            b.send_to(b"reply", a_addr.to_string()).await.unwrap();
            let (n, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"reply"[..], b_addr));
        });
    }
}

#[test]
fn a_waiting_receiver_is_woken_by_a_datagram() {
    for flavor in Flavor::ALL {
        run(flavor, "recv_from woken", || async {
            let (a, a_addr) = bind();
            let (b, b_addr) = bind();
            let b = Arc::new(b);
            // Ping-pong: each side waits before the other sends.
            let echo = fiber_runtime::spawn({
                let b = b.clone();
                async move {
                    let mut buf = [0; 64];
                    for _ in 0..200 {
                        let (n, from) = b.recv_from(&mut buf).await.unwrap();
                        assert_eq!(from, a_addr);
                        b.send_to(&buf[..n], from).await.unwrap();
                    }
                }
            });
            let mut buf = [0; 64];
            for i in 0..200u32 {
                a.send_to(&i.to_le_bytes(), b_addr).await.unwrap();
                let (n, from) = a.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, b_addr);
                assert_eq!(&buf[..n], &i.to_le_bytes());
            }
            echo.await.unwrap();
        });
    }
}

#[test]
fn connect_then_send_and_recv() {
    for flavor in Flavor::ALL {
        run(flavor, "connect/send/recv", || async {
            let (a, a_addr) = bind();
            let (b, b_addr) = bind();
            let (c, _) = bind();
            assert!(a.peer_addr().is_err(), "unconnected socket has no peer");
            a.connect(b_addr).unwrap();
            b.connect(a_addr).unwrap();
            assert_eq!(a.peer_addr().unwrap(), b_addr);
            assert_eq!(b.peer_addr().unwrap(), a_addr);

            // A datagram from a third socket is filtered out by `b`.
            c.send_to(b"intruder", b_addr).await.unwrap();
            assert_eq!(a.send(b"hello").await.unwrap(), 5);
            let mut buf = [0; 32];
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");

            b.send(b"world").await.unwrap();
            let n = a.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"world");

            // A receiver waiting in `recv` is woken by `send`.
            let b = Arc::new(b);
            let waiter = fiber_runtime::spawn({
                let b = b.clone();
                async move {
                    let mut buf = [0; 8];
                    let n = b.recv(&mut buf).await.unwrap();
                    buf[..n].to_vec()
                }
            });
            fiber_runtime::yield_now().await;
            a.send(b"late").await.unwrap();
            assert_eq!(waiter.await.unwrap(), b"late");
        });
    }
}

#[test]
fn binding_an_address_in_use_is_addr_in_use() {
    run(Flavor::MultiThread(1), "bind in use", || async {
        let (_a, a_addr) = bind();
        let err = UdpSocket::bind(a_addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    });
}

#[test]
fn from_std_and_into_std_round_trip() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(2)] {
        run(flavor, "UdpSocket from_std/into_std", || async {
            let std_a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let a_addr = std_a.local_addr().unwrap();
            let a = UdpSocket::from_std(std_a).unwrap();
            assert_eq!(a.local_addr().unwrap(), a_addr);
            let (b, b_addr) = bind();

            b.send_to(b"to async", a_addr).await.unwrap();
            let mut buf = [0; 16];
            let (n, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"to async"[..], b_addr));

            // Back to std: still non-blocking, as documented.
            let std_a = a.into_std().unwrap();
            assert_eq!(std_a.local_addr().unwrap(), a_addr);
            let err = std_a.recv_from(&mut buf).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock);
            std_a.set_nonblocking(false).unwrap();
            b.send_to(b"to std", a_addr).await.unwrap();
            // The datagram is already queued: this blocking call returns.
            let (n, from) = std_a.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"to std"[..], b_addr));
            std_a.send_to(b"from std", b_addr).unwrap();
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"from std"[..], a_addr));

            // Registered again.
            let a = UdpSocket::from_std(std_a).unwrap();
            let recv = fiber_runtime::spawn(async move {
                let mut buf = [0; 16];
                let (n, from) = a.recv_from(&mut buf).await.unwrap();
                (buf[..n].to_vec(), from)
            });
            b.send_to(b"again", a_addr).await.unwrap();
            assert_eq!(recv.await.unwrap(), (b"again".to_vec(), b_addr));
        });
    }
}

/// After an ICMP port-unreachable, a connected socket's next `recv`
/// reports it (`ConnectionRefused`) and the one after waits: the error
/// readiness must be cleared once consumed, or the readiness loop spins
/// inside one poll (and the timeout below could never fire).
#[test]
fn a_consumed_socket_error_does_not_spin_the_next_recv() {
    for flavor in util::Flavor::ALL {
        util::run(flavor, "recv after ECONNREFUSED", || async {
            let gone = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let s = fiber_runtime::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(gone).unwrap();
            let mut buf = [0u8; 8];
            // The first send may race the ICMP reply; send until the
            // error shows.
            let mut refused = false;
            for _ in 0..100 {
                s.send(b"x").await.ok();
                match fiber_runtime::time::timeout(
                    std::time::Duration::from_millis(20),
                    s.recv(&mut buf),
                )
                .await
                {
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        refused = true;
                        break;
                    }
                    _ => {}
                }
            }
            assert!(refused, "no ICMP port-unreachable came back");
            let waited = fiber_runtime::time::timeout(
                std::time::Duration::from_millis(20),
                s.recv(&mut buf),
            )
            .await;
            assert!(
                waited.is_err(),
                "the next recv returned {waited:?} instead of waiting"
            );
        });
    }
}
