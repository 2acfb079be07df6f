//! Blocking-style I/O: `std::io::Read`/`Write` on the net types and the
//! `blocking_*` methods suspend a fiber, block a plain thread, and panic in
//! an async task.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::fiber;
use fiber_runtime::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use std::io::{Read, Write};

#[test]
fn fiber_echo_server_one_fiber_per_connection() {
    for workers in [1, 2] {
        let rt = util::multi_thread(workers);
        let listener = {
            let _g = rt.enter();
            TcpListener::bind("127.0.0.1:0").unwrap()
        };
        let addr = listener.local_addr().unwrap();
        const CLIENTS: usize = 20;
        let server = rt.block_on(async move {
            fiber::spawn(move || {
                let mut conns = Vec::new();
                for _ in 0..CLIENTS {
                    let (mut s, _) = listener.blocking_accept().unwrap();
                    conns.push(fiber::spawn(move || {
                        let mut buf = [0u8; 256];
                        let mut total = 0;
                        loop {
                            let n = s.read(&mut buf).unwrap();
                            if n == 0 {
                                return total;
                            }
                            s.write_all(&buf[..n]).unwrap();
                            total += n;
                        }
                    }));
                }
                conns.into_iter().map(|c| c.join().unwrap()).sum::<usize>()
            })
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    let mut sent = 0;
                    for r in 0..50u8 {
                        let msg = [i as u8 ^ r; 64];
                        c.write_all(&msg).unwrap();
                        let mut back = [0u8; 64];
                        c.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg);
                        sent += 64;
                    }
                    sent
                })
            })
            .collect();
        let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
        let served = util::run_with_timeout("the fiber echo server", move || server.join());
        assert_eq!(served.unwrap(), sent);
    }
}

#[test]
fn std_io_on_a_plain_thread_blocks_it() {
    let rt = util::multi_thread(1);
    let (a, b) = {
        let _g = rt.enter();
        UnixStream::pair().unwrap()
    };
    let writer = std::thread::spawn(move || {
        let mut a = a;
        a.write_all(b"plain threads block").unwrap();
    });
    let mut b = b;
    let mut buf = [0u8; 19];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"plain threads block");
    writer.join().unwrap();
}

#[test]
fn std_io_in_an_async_task_panics_naming_await() {
    let rt = util::multi_thread(1);
    let err = rt
        .block_on(async {
            fiber_runtime::spawn(async {
                let (mut a, _b) = UnixStream::pair().unwrap();
                let mut buf = [0u8; 1];
                let _ = a.read(&mut buf);
            })
            .await
        })
        .unwrap_err();
    let payload = err.into_panic();
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains(".await"), "{msg}");
}

#[test]
fn udp_blocking_calls_in_a_fiber() {
    let rt = util::current_thread();
    let got = rt.block_on(async {
        fiber::spawn(|| {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            // The receive suspends this fiber until the datagram arrives.
            let to = b.local_addr().unwrap();
            let recv = fiber::spawn(move || {
                let mut buf = [0u8; 16];
                let (n, _) = b.blocking_recv_from(&mut buf).unwrap();
                buf[..n].to_vec()
            });
            fiber::yield_now();
            a.blocking_send_to(b"datagram", to).unwrap();
            recv.join().unwrap()
        })
        .await
        .unwrap()
    });
    assert_eq!(got, b"datagram");
}

#[test]
fn tcp_stream_read_write_from_a_fiber_with_an_async_peer() {
    let rt = util::multi_thread(2);
    rt.block_on(async {
        // Both the std and the async traits are implemented: the async
        // calls in the task are spelled out.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = fiber_runtime::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 20];
            fiber_runtime::io::AsyncReadExt::read_exact(&mut s, &mut buf)
                .await
                .unwrap();
            fiber_runtime::io::AsyncWriteExt::write_all(&mut s, &buf)
                .await
                .unwrap();
        });
        let f = fiber::spawn(move || {
            let s = fiber::wait(TcpStream::connect(addr)).unwrap();
            let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
            let writer = {
                let data = data.clone();
                let s = std::sync::Arc::new(s);
                let s2 = s.clone();
                let w = fiber::spawn(move || Write::write_all(&mut &*s2, &data).unwrap());
                (s, w)
            };
            let (s, w) = writer;
            let mut back = vec![0u8; data.len()];
            Read::read_exact(&mut &*s, &mut back).unwrap();
            w.join().unwrap();
            back == data
        });
        assert!(f.await.unwrap());
        peer.await.unwrap();
    });
}
