//! TCP on the reactor: echo round trips, one stream read and written by
//! two tasks at once, many sequential and many concurrent connections,
//! the errors of `bind` and `connect`, a peer reset that fails only its
//! own stream, half-close, `TCP_NODELAY`, and `from_std`/`into_std`.
//!
//! Real sockets on 127.0.0.1 only. Every scenario runs on its own thread
//! under [`util::run_with_timeout`], so that a lost wakeup fails the test
//! instead of hanging it.

mod util;

use fiber_runtime::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use futures::channel::oneshot;
use std::future::poll_fn;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use util::{Flavor, run, run_with_timeout_in};

const BOTH: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread(2)];

/// A listener on a free loopback port, and its address.
fn listen() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A connected pair: (client, accepted server side).
async fn pair() -> (TcpStream, TcpStream) {
    let (l, addr) = listen();
    let client = fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = l.accept().await.unwrap();
    (client.await.unwrap(), server)
}

/// Echoes everything until EOF, then shuts down its write half. Returns
/// the number of bytes echoed.
async fn echo(mut s: TcpStream) -> io::Result<usize> {
    let mut buf = vec![0; 16 * 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            s.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        s.write_all(&buf[..n]).await?;
        total += n;
    }
}

/// One read into `buf`; sends on `pending` the first time it waits, so
/// that the test can act on the peer while the read is known to be parked.
async fn read_noting_pending<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    pending: oneshot::Sender<()>,
) -> io::Result<usize> {
    let mut pending = Some(pending);
    poll_fn(|cx| {
        let res = Pin::new(&mut *r).poll_read(cx, buf);
        if res.is_pending() {
            if let Some(tx) = pending.take() {
                let _ = tx.send(());
            }
        }
        res
    })
    .await
}

/// The byte at offset `i` of the test streams (no short period, so a
/// lost, duplicated or reordered chunk shows).
fn pattern(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i >> 10) as u8
}

fn set_sockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: `fd` is an open socket; the pointer and length describe a
    // live `c_int`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// `SO_LINGER` with a zero timeout: closing the socket sends a RST.
fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket; the pointer and length describe a
    // live `linger`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// A TCP socket bound to a loopback port but not listening: connecting to
/// that port is refused, and nobody else can take the port while the
/// returned descriptor lives.
fn bound_unlistened_port() -> (OwnedFd, SocketAddr) {
    // SAFETY: plain system call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by `socket` and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid `sockaddr_in`.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: the pointer and length describe a live `sockaddr_in`.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            len,
        )
    };
    assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
    // SAFETY: the pointers describe a live `sockaddr_in` and its length.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sin as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockname: {}", io::Error::last_os_error());
    let port = u16::from_be(sin.sin_port);
    (fd, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Raises `RLIMIT_NOFILE` to its hard limit; returns the new soft limit.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer refers to a live `rlimit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    let before = lim.rlim_cur;
    // An unlimited hard limit still cannot exceed fs.nr_open.
    let target = lim.rlim_max.min(1 << 20);
    if target > lim.rlim_cur {
        lim.rlim_cur = target;
        // SAFETY: the pointer refers to a live `rlimit`.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
    }
    println!(
        "RLIMIT_NOFILE: soft limit {before} -> {} (hard limit {})",
        lim.rlim_cur.max(before),
        lim.rlim_max
    );
    lim.rlim_cur.max(before)
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

#[test]
fn echo_round_trips() {
    for flavor in Flavor::ALL {
        run(flavor, "echo round trips", || async {
            let (l, addr) = listen();
            let server = fiber_runtime::spawn(async move {
                let (s, peer) = l.accept().await.unwrap();
                (echo(s).await.unwrap(), peer)
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            assert_eq!(c.peer_addr().unwrap(), addr);
            let mut sent = 0;
            for size in [1, 2, 100, 1000, 4096, 65_537, 3] {
                let msg: Vec<u8> = (sent..sent + size).map(pattern).collect();
                c.write_all(&msg).await.unwrap();
                let mut back = vec![0; size];
                c.read_exact(&mut back).await.unwrap();
                assert!(back == msg, "echo of {size} bytes differs");
                sent += size;
            }
            c.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            assert_eq!(c.read_to_end(&mut rest).await.unwrap(), 0);
            let (echoed, peer) = server.await.unwrap();
            assert_eq!(echoed, sent);
            assert_eq!(peer, c.local_addr().unwrap());
        });
    }
}

#[test]
fn one_mib_each_way_on_one_stream_shared_by_a_reader_and_a_writer_task() {
    const LEN: usize = 1 << 20;
    for flavor in BOTH {
        run(flavor, "1 MiB each way on a shared stream", || async {
            let (l, addr) = listen();
            // The peer echoes, checking every byte on its way in.
            let peer = fiber_runtime::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                set_sockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 32 * 1024);
                let mut buf = vec![0; 12_289];
                let mut seen = 0;
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    for (k, &b) in buf[..n].iter().enumerate() {
                        assert_eq!(b, pattern(seen + k), "peer: byte {} differs", seen + k);
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                    seen += n;
                }
                s.shutdown(Shutdown::Write).unwrap();
                seen
            });
            let client = Arc::new(TcpStream::connect(addr).await.unwrap());
            // Small send buffers, so that writes wait for the other side
            // and the two directions interleave. (Receive buffers stay at
            // their default: tiny windows against loopback's 64 KiB MSS
            // stall on the kernel's zero-window probes, not on us.)
            let fd = client.as_raw_fd();
            set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 32 * 1024);
            let writer = fiber_runtime::spawn({
                let client = client.clone();
                async move {
                    let data: Vec<u8> = (0..LEN).map(pattern).collect();
                    let mut w: &TcpStream = &client;
                    for chunk in data.chunks(7919) {
                        w.write_all(chunk).await.unwrap();
                    }
                    client.shutdown(Shutdown::Write).unwrap();
                }
            });
            let reader = fiber_runtime::spawn({
                let client = client.clone();
                async move {
                    let mut r: &TcpStream = &client;
                    let mut buf = vec![0; 10_007];
                    let mut got = 0;
                    loop {
                        let n = r.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return got;
                        }
                        for (k, &b) in buf[..n].iter().enumerate() {
                            assert_eq!(b, pattern(got + k), "client: byte {} differs", got + k);
                        }
                        got += n;
                    }
                }
            });
            writer.await.unwrap();
            assert_eq!(reader.await.unwrap(), LEN, "bytes read back");
            assert_eq!(peer.await.unwrap(), LEN, "bytes the peer received");
            assert_eq!(Arc::strong_count(&client), 1);
        });
    }
}

#[test]
fn thousand_sequential_connections_through_one_accept_loop() {
    const N: u32 = 1000;
    for flavor in BOTH {
        run(flavor, "1000 sequential connections", || async {
            let (l, addr) = listen();
            let accept_loop = fiber_runtime::spawn(async move {
                let mut handlers = Vec::new();
                for _ in 0..N {
                    let (mut s, _) = l.accept().await.unwrap();
                    handlers.push(fiber_runtime::spawn(async move {
                        let mut b = [0; 4];
                        s.read_exact(&mut b).await.unwrap();
                        s.write_all(&b).await.unwrap();
                        // Dropped here: the server closes first.
                    }));
                }
                for h in handlers {
                    h.await.unwrap();
                }
                N
            });
            for i in 0..N {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(&i.to_le_bytes()).await.unwrap();
                let mut b = [0; 4];
                c.read_exact(&mut b).await.unwrap();
                assert_eq!(u32::from_le_bytes(b), i);
                let mut eof = [0; 1];
                assert_eq!(c.read(&mut eof).await.unwrap(), 0, "connection {i}: EOF");
            }
            assert_eq!(accept_loop.await.unwrap(), N);
        });
    }
}

#[test]
fn ten_thousand_concurrent_connections() {
    const WANTED: usize = 10_000;
    /// Descriptors left for the rest of the process (other tests of this
    /// binary run at the same time).
    const RESERVE: u64 = 1000;
    /// Connections being established at once.
    const CONNECTORS: usize = 64;

    let limit = raise_nofile_limit();
    // Each connection costs two descriptors here: client and server side.
    let n = WANTED.min((limit.saturating_sub(RESERVE) / 2) as usize);
    if n < WANTED {
        println!(
            "RLIMIT_NOFILE hard limit {limit} is below ~20,500: running {n} concurrent \
             connections instead of {WANTED} (two descriptors each, {RESERVE} kept spare)"
        );
    }
    assert!(n >= 1000, "too few descriptors ({limit}) for this test");

    let what = format!("{n} concurrent connections");
    run_with_timeout_in(Duration::from_secs(180), &what, move || {
        util::multi_thread(2).block_on(async move {
            let (l, addr) = listen();
            let live = Arc::new(AtomicUsize::new(0));
            let accept_loop = fiber_runtime::spawn({
                let live = live.clone();
                async move {
                    let mut handlers = Vec::with_capacity(n);
                    for _ in 0..n {
                        let (mut s, _) = l.accept().await.unwrap();
                        let live = live.clone();
                        handlers.push(fiber_runtime::spawn(async move {
                            live.fetch_add(1, SeqCst);
                            let mut b = [0; 4];
                            let mut rounds = 0;
                            loop {
                                match s.read_exact(&mut b).await {
                                    Ok(()) => s.write_all(&b).await.unwrap(),
                                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                                    Err(e) => panic!("server side: {e}"),
                                }
                                rounds += 1;
                            }
                            live.fetch_sub(1, SeqCst);
                            rounds
                        }));
                    }
                    handlers
                }
            });

            // Phase 1: open every connection (CONNECTORS at a time), one
            // round trip each, and keep them all open.
            let connectors: Vec<_> = (0..CONNECTORS)
                .map(|c| {
                    fiber_runtime::spawn(async move {
                        let mut mine = Vec::new();
                        for i in (c..n).step_by(CONNECTORS) {
                            let mut s = TcpStream::connect(addr)
                                .await
                                .unwrap_or_else(|e| panic!("connect #{i}: {e}"));
                            s.write_all(&(i as u32).to_le_bytes()).await.unwrap();
                            let mut b = [0; 4];
                            s.read_exact(&mut b).await.unwrap();
                            assert_eq!(u32::from_le_bytes(b), i as u32);
                            mine.push((i, s));
                        }
                        mine
                    })
                })
                .collect();
            let mut streams = Vec::with_capacity(n);
            for c in connectors {
                streams.extend(c.await.unwrap());
            }
            assert_eq!(streams.len(), n);
            // Every server handler has answered once and none saw EOF.
            assert_eq!(live.load(SeqCst), n, "server connections open at once");

            // Phase 2: all of them wait for a reply at the same time.
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|(i, mut s)| {
                    fiber_runtime::spawn(async move {
                        let tag = (i as u32).wrapping_mul(7).to_le_bytes();
                        s.write_all(&tag).await.unwrap();
                        let mut b = [0; 4];
                        s.read_exact(&mut b).await.unwrap();
                        assert_eq!(b, tag, "connection {i}");
                        s
                    })
                })
                .collect();
            let mut streams = Vec::with_capacity(n);
            for t in tasks {
                streams.push(t.await.unwrap());
            }
            assert_eq!(live.load(SeqCst), n);

            drop(streams);
            let handlers = accept_loop.await.unwrap();
            for h in handlers {
                assert_eq!(h.await.unwrap(), 2, "round trips per connection");
            }
            assert_eq!(live.load(SeqCst), 0);
        });
    });
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn binding_a_port_in_use_is_addr_in_use() {
    for flavor in BOTH {
        run(flavor, "bind in use", || async {
            let (_l, addr) = listen();
            let err = TcpListener::bind(addr).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

            let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let err = TcpListener::bind(std_l.local_addr().unwrap()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        });
    }
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    for flavor in BOTH {
        run(flavor, "connect refused", || async {
            let (_reserved, addr) = bound_unlistened_port();
            for _ in 0..20 {
                let err = TcpStream::connect(addr).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
            }
            // The failed attempts left the reactor in working order.
            let (client, mut server) = pair().await;
            server.write_all(b"ok").await.unwrap();
            let mut b = [0; 2];
            (&client).read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ok");
        });
    }
}

#[test]
fn peer_reset_mid_read_fails_that_stream_only() {
    for flavor in Flavor::ALL {
        run(flavor, "peer reset mid-read", || async {
            let (l, addr) = listen();
            let a = TcpStream::connect(addr).await.unwrap();
            let (mut a_srv, _) = l.accept().await.unwrap();
            let mut b = TcpStream::connect(addr).await.unwrap();
            let (b_srv, _) = l.accept().await.unwrap();
            let b_echo = fiber_runtime::spawn(echo(b_srv));

            let (pending_tx, pending_rx) = oneshot::channel();
            let reader = fiber_runtime::spawn(async move {
                let mut a = a;
                let mut buf = [0; 200];
                a.read_exact(&mut buf[..100]).await.unwrap();
                assert!(buf[..100].iter().all(|&x| x == 7));
                // The next read waits (the peer sent only half).
                let res = read_noting_pending(&mut a, &mut buf[100..], pending_tx).await;
                (res, a)
            });
            a_srv.write_all(&[7; 100]).await.unwrap();
            pending_rx
                .await
                .expect("the reader finished without waiting");
            set_linger_zero(a_srv.as_raw_fd());
            drop(a_srv);

            let (res, mut a) = reader.await.unwrap();
            let err = res.expect_err("a read on a reset connection must fail");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
            assert!(a.write_all(b"x").await.is_err(), "write after reset");

            // The other connection keeps working.
            for round in 0..10u8 {
                let msg = [round; 300];
                b.write_all(&msg).await.unwrap();
                let mut back = [0; 300];
                b.read_exact(&mut back).await.unwrap();
                assert_eq!(back, msg);
            }
            b.shutdown(Shutdown::Write).unwrap();
            assert_eq!(b_echo.await.unwrap().unwrap(), 3000);
            let mut eof = [0; 1];
            assert_eq!(b.read(&mut eof).await.unwrap(), 0);
        });
    }
}

#[test]
fn reads_after_the_peer_shuts_down_its_write_half_return_zero() {
    for flavor in Flavor::ALL {
        run(flavor, "read after shutdown(Write)", || async {
            let (mut client, mut server) = pair().await;
            client.write_all(b"request").await.unwrap();
            client.shutdown(Shutdown::Write).unwrap();

            let mut req = Vec::new();
            server.read_to_end(&mut req).await.unwrap();
            assert_eq!(req, b"request");
            let mut buf = [0; 16];
            for _ in 0..3 {
                assert_eq!(server.read(&mut buf).await.unwrap(), 0);
            }
            // Half-close: the other direction still works.
            server.write_all(b"response").await.unwrap();
            drop(server);
            let mut resp = String::new();
            client.read_to_string(&mut resp).await.unwrap();
            assert_eq!(resp, "response");
            assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        });
    }
}

#[test]
fn a_pending_read_sees_the_peer_shutdown() {
    for flavor in Flavor::ALL {
        run(flavor, "pending read woken by EOF", || async {
            let (client, mut server) = pair().await;
            let (pending_tx, pending_rx) = oneshot::channel();
            let reader = fiber_runtime::spawn(async move {
                let mut buf = [0; 8];
                read_noting_pending(&mut server, &mut buf, pending_tx).await
            });
            pending_rx.await.expect("the read finished without waiting");
            client.shutdown(Shutdown::Write).unwrap();
            assert_eq!(reader.await.unwrap().unwrap(), 0);
        });
    }
}

// ---------------------------------------------------------------------------
// Options and conversions
// ---------------------------------------------------------------------------

#[test]
fn nodelay_set_and_read_back() {
    for flavor in BOTH {
        run(flavor, "nodelay", || async {
            let (client, server) = pair().await;
            for s in [&client, &server] {
                s.set_nodelay(true).unwrap();
                assert!(s.nodelay().unwrap());
                s.set_nodelay(false).unwrap();
                assert!(!s.nodelay().unwrap());
            }
            client.set_nodelay(true).unwrap();
            (&client).write_all(b"n").await.unwrap();
            let mut b = [0; 1];
            (&server).read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"n");
        });
    }
}

#[test]
fn stream_from_std_and_into_std_round_trips() {
    // Both std::io and the async traits apply to our stream: the std
    // calls on the std stream are spelled out.
    for flavor in BOTH {
        run(flavor, "TcpStream from_std/into_std", || async {
            let (l, addr) = listen();
            // A blocking std connect: the listener's backlog completes it.
            let std_c = std::net::TcpStream::connect(addr).unwrap();
            let local = std_c.local_addr().unwrap();
            let (mut srv, peer) = l.accept().await.unwrap();
            assert_eq!(peer, local);

            let mut c = TcpStream::from_std(std_c).unwrap();
            assert_eq!(c.local_addr().unwrap(), local);
            assert_eq!(c.peer_addr().unwrap(), addr);
            c.write_all(b"ping").await.unwrap();
            let mut b = [0; 4];
            srv.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ping");
            srv.write_all(b"pong").await.unwrap();
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"pong");

            // Back to std: still non-blocking, as documented.
            let mut std_c = c.into_std().unwrap();
            assert_eq!(std_c.local_addr().unwrap(), local);
            let err = std::io::Read::read(&mut std_c, &mut b).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock);
            std_c.set_nonblocking(false).unwrap();
            std::io::Write::write_all(&mut std_c, b"std!").unwrap();
            srv.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"std!");
            srv.write_all(b"back").await.unwrap();
            // The bytes are already there: this blocking read returns.
            std::io::Read::read_exact(&mut std_c, &mut b).unwrap();
            assert_eq!(&b, b"back");

            // And registered again.
            let mut c = TcpStream::from_std(std_c).unwrap();
            let reply = fiber_runtime::spawn(async move {
                let mut b = [0; 5];
                srv.read_exact(&mut b).await.unwrap();
                srv.write_all(&b).await.unwrap();
            });
            c.write_all(b"again").await.unwrap();
            let mut b5 = [0; 5];
            c.read_exact(&mut b5).await.unwrap();
            assert_eq!(&b5, b"again");
            reply.await.unwrap();
        });
    }
}

#[test]
fn listener_from_std_and_into_std_round_trips() {
    for flavor in BOTH {
        run(flavor, "TcpListener from_std/into_std", || async {
            let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = std_l.local_addr().unwrap();
            let l = TcpListener::from_std(std_l).unwrap();
            assert_eq!(l.local_addr().unwrap(), addr);
            let c = fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
            let (_s, peer) = l.accept().await.unwrap();
            assert_eq!(peer, c.await.unwrap().local_addr().unwrap());

            let std_l = l.into_std().unwrap();
            assert_eq!(std_l.local_addr().unwrap(), addr);
            // Still non-blocking: nothing pending.
            let err = std_l.accept().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock);
            std_l.set_nonblocking(false).unwrap();
            let std_c = std::net::TcpStream::connect(addr).unwrap();
            let (_s, peer) = std_l.accept().unwrap();
            assert_eq!(peer, std_c.local_addr().unwrap());

            // Registered again, it accepts asynchronously.
            let l = TcpListener::from_std(std_l).unwrap();
            let c = fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
            let (_s, peer) = l.accept().await.unwrap();
            assert_eq!(peer, c.await.unwrap().local_addr().unwrap());
        });
    }
}

#[test]
fn many_streams_echo_concurrently_on_every_flavor() {
    const CONNS: usize = 50;
    const ROUNDS: usize = 20;
    for flavor in Flavor::ALL {
        run(flavor, "concurrent echo", || async {
            let (l, addr) = listen();
            let server = fiber_runtime::spawn(async move {
                let mut handlers = Vec::new();
                for _ in 0..CONNS {
                    let (s, _) = l.accept().await.unwrap();
                    handlers.push(fiber_runtime::spawn(echo(s)));
                }
                let mut total = 0;
                for h in handlers {
                    total += h.await.unwrap().unwrap();
                }
                total
            });
            let clients: Vec<_> = (0..CONNS)
                .map(|c| {
                    fiber_runtime::spawn(async move {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        for r in 0..ROUNDS {
                            let msg: Vec<u8> =
                                (0..100).map(|k| pattern(c * 7919 + r * 101 + k)).collect();
                            s.write_all(&msg).await.unwrap();
                            let mut back = [0; 100];
                            s.read_exact(&mut back).await.unwrap();
                            assert_eq!(&back[..], &msg[..]);
                        }
                        s.shutdown(Shutdown::Write).unwrap();
                        let mut rest = Vec::new();
                        s.read_to_end(&mut rest).await.unwrap();
                        assert!(rest.is_empty());
                    })
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
            assert_eq!(server.await.unwrap(), CONNS * ROUNDS * 100);
        });
    }
}

#[test]
fn a_block_on_future_that_keeps_yielding_does_not_starve_io() {
    // A spawned task waits for a connection and a byte; the block_on
    // future spins (yield_now) until it got them. The thread never parks,
    // so `block_on` itself must turn the reactor now and then.
    let mut starved = Vec::new();
    for flavor in Flavor::ALL {
        let got = run(flavor, "a spinning block_on", || async {
            let (l, addr) = listen();
            let flag = Arc::new(AtomicUsize::new(0));
            let _server = fiber_runtime::spawn({
                let flag = flag.clone();
                async move {
                    let (mut s, _) = l.accept().await.unwrap();
                    let mut b = [0; 1];
                    s.read_exact(&mut b).await.unwrap();
                    flag.store(1, SeqCst);
                }
            });
            // A plain blocking client: no runtime I/O on this side.
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut c, b"!").unwrap();
            let give_up = std::time::Instant::now() + Duration::from_secs(5);
            while flag.load(SeqCst) == 0 {
                if std::time::Instant::now() > give_up {
                    return false;
                }
                fiber_runtime::yield_now().await;
            }
            true
        });
        if !got {
            starved.push(flavor);
        }
    }
    assert!(
        starved.is_empty(),
        "on {starved:?}: a ready connection was not accepted (or its byte not read) within 5 s \
         while the block_on future kept yielding (the reactor is never turned)"
    );
}
