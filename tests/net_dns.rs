//! Name resolution: `net::lookup_host` and the crate's `ToSocketAddrs`.
//! Host names are resolved on the blocking pool from async code and from
//! fibers (never on a worker), inline on a plain thread; numeric addresses
//! never touch the pool; bad strings and unknown names fail with clear
//! errors; `TcpStream::blocking_connect` follows the blocking-style rules.
//!
//! The machine may have no network: the positive lookups use `localhost`
//! (from `/etc/hosts`), the negative ones a name under `.invalid`
//! (RFC 6761: never exists). Every scenario runs under a timeout.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream, UdpSocket, lookup_host};
use fiber_runtime::{Handle, TryCurrentError, fiber};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::pin;
use util::{Flavor, run};

const NO_SUCH_HOST: &str = "no-such-host.invalid";

fn blocking_threads() -> usize {
    Handle::current().metrics().num_blocking_threads()
}

#[test]
fn numeric_addresses_never_touch_the_pool_and_names_go_to_it() {
    for flavor in Flavor::ALL {
        run(flavor, "lookups", || async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let v4: Vec<SocketAddr> = lookup_host(("127.0.0.1", port)).await.unwrap().collect();
            assert_eq!(v4, [SocketAddr::from(([127, 0, 0, 1], port))]);
            let v6: Vec<_> = lookup_host("[::1]:53").await.unwrap().collect();
            assert_eq!(v6, ["[::1]:53".parse::<SocketAddr>().unwrap()]);
            let c = TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap();
            drop(c);
            assert_eq!(blocking_threads(), 0, "a numeric address used the pool");

            let names: Vec<_> = lookup_host(format!("localhost:{port}"))
                .await
                .unwrap()
                .collect();
            assert!(!names.is_empty());
            assert!(
                names
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == port),
                "{names:?}"
            );
            assert!(
                blocking_threads() >= 1,
                "the name was not resolved on the pool"
            );
        });
    }
}

#[test]
fn connect_to_a_host_name_from_a_task() {
    for flavor in Flavor::ALL {
        run(flavor, "connect localhost", || async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            // `localhost` may also name ::1, where nobody listens: each
            // address is tried in turn.
            let client = fiber_runtime::spawn(async move {
                let mut c = TcpStream::connect(("localhost", port)).await.unwrap();
                c.write_all(b"by name").await.unwrap();
            });
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"by name");
            client.await.unwrap();
            assert!(blocking_threads() >= 1);
        });
    }
}

#[test]
fn a_name_that_does_not_exist_fails_naming_it() {
    for flavor in Flavor::ALL {
        run(flavor, "unknown names", || async {
            let err = lookup_host(format!("{NO_SUCH_HOST}:80"))
                .await
                .err()
                .unwrap();
            assert!(err.to_string().contains(NO_SUCH_HOST), "{err}");
            let err = TcpStream::connect((NO_SUCH_HOST, 80)).await.unwrap_err();
            assert!(err.to_string().contains(NO_SUCH_HOST), "{err}");
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            let err = u.send_to(b"x", (NO_SUCH_HOST, 9)).await.unwrap_err();
            assert!(err.to_string().contains(NO_SUCH_HOST), "{err}");
        });
    }
}

#[test]
fn malformed_addresses_fail_at_once_with_invalid_input() {
    run(Flavor::MultiThread(1), "bad strings", || async {
        for bad in [
            "localhost",
            "localhost:",
            "localhost:65536",
            "[::1]:port",
            "",
        ] {
            let err = lookup_host(bad).await.err().unwrap();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
            let err = TcpStream::connect(bad).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
            let err = TcpListener::bind(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        }
        // An empty list of addresses resolves to nothing to connect to.
        let none: &[SocketAddr] = &[];
        assert_eq!(lookup_host(none).await.unwrap().count(), 0);
        let err = TcpStream::connect(none).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(blocking_threads(), 0);
    });
}

#[test]
fn outside_a_runtime_numbers_resolve_and_names_fail_with_the_no_runtime_error() {
    let addrs: Vec<_> = futures::executor::block_on(lookup_host("127.0.0.1:1"))
        .unwrap()
        .collect();
    assert_eq!(addrs.len(), 1);
    let err = futures::executor::block_on(lookup_host("localhost:1"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(
        err.get_ref().is_some_and(|e| e.is::<TryCurrentError>()),
        "{err:?}"
    );
    assert!(err.to_string().contains("resolving a host name"), "{err}");
}

#[test]
fn dropping_a_lookup_midway_leaves_the_runtime_working() {
    for flavor in Flavor::ALL {
        run(flavor, "dropped lookups", || async {
            for _ in 0..8 {
                let mut lookup = pin!(lookup_host("localhost:80"));
                // Started (on the pool), then dropped whatever its state.
                let _ = futures::poll!(lookup.as_mut());
            }
            let n = lookup_host("localhost:80").await.unwrap().count();
            assert!(n >= 1);
        });
    }
}

#[test]
fn many_lookups_at_once_all_resolve() {
    run(Flavor::MultiThread(2), "concurrent lookups", || async {
        let lookups: Vec<_> = (0..64u16)
            .map(|i| {
                fiber_runtime::spawn(async move {
                    lookup_host(("localhost", 1000 + i))
                        .await
                        .map(|a| a.map(|a| a.port()).collect::<Vec<_>>())
                })
            })
            .collect();
        for (i, l) in lookups.into_iter().enumerate() {
            let ports = l.await.unwrap().unwrap();
            assert!(!ports.is_empty() && ports.iter().all(|&p| p == 1000 + i as u16));
        }
    });
}

#[test]
fn blocking_connect_from_a_fiber_by_name_and_by_number() {
    for flavor in Flavor::ALL {
        run(flavor, "blocking_connect in a fiber", || async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let client = fiber::spawn(move || {
                let mut by_name = TcpStream::blocking_connect(("localhost", addr.port())).unwrap();
                std::io::Write::write_all(&mut by_name, b"name").unwrap();
                let mut by_number = TcpStream::blocking_connect(addr).unwrap();
                std::io::Write::write_all(&mut by_number, b"number").unwrap();
                let (_bound, refusing) = util::refusing_addr();
                let refused = TcpStream::blocking_connect(("127.0.0.1", refusing.port()));
                refused.unwrap_err().kind()
            });
            let mut got = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.unwrap();
                got.push(String::from_utf8(buf).unwrap());
            }
            got.sort();
            assert_eq!(got, ["name", "number"]);
            assert_eq!(client.await.unwrap(), ErrorKind::ConnectionRefused);
            assert!(blocking_threads() >= 1, "the fiber resolved on its worker");
        });
    }
}

#[test]
fn blocking_connect_on_a_plain_thread_resolves_inline() {
    let rt = util::multi_thread(1);
    let l = {
        let _g = rt.enter();
        TcpListener::bind("127.0.0.1:0").unwrap()
    };
    let port = l.local_addr().unwrap().port();
    let handle = rt.handle().clone();
    let client = std::thread::spawn(move || {
        let _g = handle.enter();
        let mut c = TcpStream::blocking_connect(format!("localhost:{port}")).unwrap();
        std::io::Write::write_all(&mut c, b"thread").unwrap();
        let (_bound, refusing) = util::refusing_addr();
        TcpStream::blocking_connect(("127.0.0.1", refusing.port()))
            .unwrap_err()
            .kind()
    });
    let got = util::run_with_timeout("accept", move || {
        rt.block_on(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            let kind = util::join_thread(client).await;
            (buf, kind, blocking_threads())
        })
    });
    assert_eq!(got, (b"thread".to_vec(), ErrorKind::ConnectionRefused, 0));
}

#[test]
fn blocking_connect_in_an_async_task_panics_naming_connect_await() {
    util::silence_expected_panics(&["TcpStream::blocking_connect"]);
    for flavor in Flavor::ALL {
        run(flavor, "blocking_connect in a task", || async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            for target in [addr.to_string(), format!("localhost:{}", addr.port())] {
                let err = fiber_runtime::spawn(async move {
                    let _ = TcpStream::blocking_connect(target);
                })
                .await
                .unwrap_err();
                let msg = util::panic_message(&*err.into_panic()).unwrap();
                assert!(
                    msg.contains("TcpStream::blocking_connect")
                        && msg.contains("`TcpStream::connect(..).await`"),
                    "{msg}"
                );
            }
            // The refused calls made no connection.
            let mut probe = pin!(l.accept());
            assert!(futures::poll!(probe.as_mut()).is_pending());
        });
    }
}

#[test]
fn bind_by_name_in_a_fiber_uses_the_pool_and_in_a_task_resolves_inline() {
    for flavor in Flavor::ALL {
        run(flavor, "bind by name", || async {
            let l = TcpListener::bind("localhost:0").unwrap();
            assert!(l.local_addr().unwrap().ip().is_loopback());
            assert_eq!(blocking_threads(), 0, "bind in a task is synchronous");
            let (tcp, udp) = fiber::spawn(|| {
                let t = TcpListener::bind(("localhost", 0)).unwrap();
                let u = UdpSocket::bind("localhost:0").unwrap();
                (t.local_addr().unwrap(), u.local_addr().unwrap())
            })
            .await
            .unwrap();
            assert!(tcp.ip().is_loopback() && udp.ip().is_loopback());
            assert!(blocking_threads() >= 1, "the fiber resolved on its worker");
        });
    }
}

#[test]
fn udp_send_to_a_host_name_async_and_from_a_fiber() {
    for flavor in Flavor::ALL {
        run(flavor, "udp by name", || async {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = rx.local_addr().unwrap().port();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.send_to(b"async", ("localhost", port)).await.unwrap();
            let sent = fiber::spawn(move || {
                tx.blocking_send_to(b"fiber", format!("localhost:{port}"))
                    .unwrap();
                tx.connect(("localhost", port)).unwrap();
                tx.blocking_send(b"connected").unwrap()
            });
            let mut buf = [0; 16];
            let mut got = Vec::new();
            for _ in 0..3 {
                let n = rx.recv(&mut buf).await.unwrap();
                got.push(buf[..n].to_vec());
            }
            assert_eq!(sent.await.unwrap(), 9);
            assert_eq!(got, [&b"async"[..], b"fiber", b"connected"]);
        });
    }
}

#[test]
fn blocking_connect_outside_any_runtime_fails_with_the_no_runtime_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = TcpStream::blocking_connect(l.local_addr().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(
        err.get_ref().is_some_and(|e| e.is::<TryCurrentError>()),
        "{err:?}"
    );
}
