//! Socket options and the smaller stream pieces: `AsFd`/`AsRawFd` on every
//! net type (so `socket2::SockRef` works without unsafe), TTL and linger,
//! `peek` on TCP and UDP, vectored writes (async and `std::io`), `poll_close`
//! treating `NotConnected` as success (a peer that reset first), and the
//! buffered `io` re-exports.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::fiber;
use fiber_runtime::io::{
    self, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use fiber_runtime::net::{
    TcpListener, TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
};
use socket2::{SockRef, Type};
use std::future::poll_fn;
use std::io::{ErrorKind, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::{Pin, pin};
use std::time::Duration;
use util::{Flavor, run};

/// A connected TCP pair: (client, accepted server side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = fiber_runtime::spawn(TcpStream::connect(addr));
    let (s, _) = l.accept().await.unwrap();
    (c.await.unwrap().unwrap(), s)
}

fn check_fd<T: AsFd + AsRawFd>(what: &str, t: &T, ty: Type) {
    assert_eq!(t.as_fd().as_raw_fd(), t.as_raw_fd(), "{what}");
    assert_eq!(SockRef::from(t).r#type().unwrap(), ty, "{what}");
}

#[test]
fn every_net_type_lends_its_descriptor_to_sockref() {
    run(Flavor::MultiThread(1), "AsFd", || async {
        let dir = std::env::temp_dir().join(format!("fr-opts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let (c, _s) = tcp_pair().await;
        check_fd("TcpStream", &c, Type::STREAM);
        check_fd(
            "TcpListener",
            &TcpListener::bind("127.0.0.1:0").unwrap(),
            Type::STREAM,
        );
        check_fd("TcpSocket", &TcpSocket::new_v4().unwrap(), Type::STREAM);
        check_fd(
            "UdpSocket",
            &UdpSocket::bind("127.0.0.1:0").unwrap(),
            Type::DGRAM,
        );
        check_fd("UnixStream", &UnixStream::pair().unwrap().0, Type::STREAM);
        check_fd(
            "UnixListener",
            &UnixListener::bind(dir.join("l")).unwrap(),
            Type::STREAM,
        );
        check_fd(
            "UnixDatagram",
            &UnixDatagram::pair().unwrap().0,
            Type::DGRAM,
        );
        // An option set through the SockRef is the stream's own.
        SockRef::from(&c).set_tcp_nodelay(true).unwrap();
        assert!(c.nodelay().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn ttl_and_linger_round_trip() {
    run(Flavor::CurrentThread, "options", || async {
        let (c, _s) = tcp_pair().await;
        c.set_ttl(33).unwrap();
        assert_eq!(c.ttl().unwrap(), 33);
        assert_eq!(c.linger().unwrap(), None);
        c.set_linger(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c.linger().unwrap(), Some(Duration::from_secs(5)));
        c.set_linger(None).unwrap();
        assert_eq!(c.linger().unwrap(), None);
        assert_eq!(c.set_ttl(0).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert!(c.take_error().unwrap().is_none());

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_ttl(12).unwrap();
        assert_eq!(l.ttl().unwrap(), 12);
        assert!(l.take_error().unwrap().is_none());

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_ttl(200).unwrap();
        assert_eq!(u.ttl().unwrap(), 200);
        u.set_broadcast(true).unwrap();
        assert!(u.broadcast().unwrap());
    });
}

#[test]
fn tcp_peek_waits_for_data_and_leaves_it_queued() {
    for flavor in Flavor::ALL {
        run(flavor, "tcp peek", || async {
            let (mut c, s) = tcp_pair().await;
            let s = std::sync::Arc::new(s);
            let s2 = s.clone();
            let (ready_tx, ready_rx) = fiber_runtime::sync::oneshot::channel();
            let peeker = fiber_runtime::spawn(async move {
                let mut buf = [0; 16];
                let n = {
                    let mut p = pin!(s2.peek(&mut buf));
                    assert!(futures::poll!(p.as_mut()).is_pending());
                    ready_tx.send(()).unwrap();
                    p.await.unwrap()
                };
                buf[..n].to_vec()
            });
            ready_rx.await.unwrap();
            c.write_all(b"peeked").await.unwrap();
            assert_eq!(peeker.await.unwrap(), b"peeked");
            // Still there, for a second peek and then the read.
            let mut buf = [0; 6];
            let n = poll_fn(|cx| s.poll_peek(cx, &mut buf)).await.unwrap();
            assert_eq!(&buf[..n], b"peeked");
            (&*s).read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"peeked");
            // At the end of the stream, peek returns 0.
            c.shutdown(Shutdown::Write).unwrap();
            assert_eq!(s.peek(&mut buf).await.unwrap(), 0);
        });
    }
}

#[test]
fn udp_peek_from_leaves_the_datagram_queued() {
    for flavor in Flavor::ALL {
        run(flavor, "udp peek", || async {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = b.local_addr().unwrap();
            let b = std::sync::Arc::new(b);
            let b2 = b.clone();
            let peeker = fiber_runtime::spawn(async move {
                let mut buf = [0; 16];
                let (n, from) = b2.peek_from(&mut buf).await.unwrap();
                (buf[..n].to_vec(), from)
            });
            a.send_to(b"dgram", to).await.unwrap();
            let (peeked, from) = peeker.await.unwrap();
            assert_eq!(
                (&peeked[..], from),
                (&b"dgram"[..], a.local_addr().unwrap())
            );
            let mut buf = [0; 16];
            let (n, again) = b.peek_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], again), (&b"dgram"[..], from));
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"dgram");
            b.connect(from).unwrap();
            a.send_to(b"two", to).await.unwrap();
            assert_eq!(b.peek(&mut buf).await.unwrap(), 3);
            assert_eq!(b.recv(&mut buf).await.unwrap(), 3);
        });
    }
}

/// Writes all of `parts` with `poll_write_vectored` only.
async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, parts: &[&[u8]]) -> usize {
    let mut flat: Vec<u8> = parts.concat();
    let total = flat.len();
    let mut calls = 0;
    while !flat.is_empty() {
        // Split what is left in two slices, so every call is vectored.
        let mid = flat.len() / 2;
        let (x, y) = flat.split_at(mid);
        let bufs = [IoSlice::new(x), IoSlice::new(y)];
        let n = poll_fn(|cx| Pin::new(&mut *w).poll_write_vectored(cx, &bufs))
            .await
            .unwrap();
        assert!(n > 0);
        flat.drain(..n);
        calls += 1;
    }
    assert!(calls >= 1);
    total
}

async fn read_n<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    r.read_exact(&mut buf).await.unwrap();
    buf
}

#[test]
fn vectored_writes_send_every_slice_in_order() {
    for flavor in Flavor::ALL {
        run(flavor, "vectored", || async {
            let (mut c, mut s) = tcp_pair().await;
            let parts: [&[u8]; 3] = [b"head|", b"body|", b"tail"];
            let n = write_all_vectored(&mut c, &parts).await;
            assert_eq!(read_n(&mut s, n).await, b"head|body|tail");

            // Big enough to fill the socket buffers: the write must wait
            // for the reader and resume where it stopped.
            let big: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| i as u8).collect();
            let len = big.len();
            let writer = fiber_runtime::spawn(async move {
                let n = write_all_vectored(&mut c, &[&big[..1000], &big[1000..]]).await;
                (n, c)
            });
            let got = read_n(&mut s, len).await;
            let (n, _c) = writer.await.unwrap();
            assert_eq!(n, got.len());
            assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));

            let (mut a, mut b) = UnixStream::pair().unwrap();
            let n = write_all_vectored(&mut a, &[b"unix ", b"too"]).await;
            assert_eq!(read_n(&mut b, n).await, b"unix too");
        });
    }
}

#[test]
fn std_write_vectored_from_a_fiber() {
    run(Flavor::MultiThread(2), "std vectored", || async {
        let (a, mut b) = UnixStream::pair().unwrap();
        let w = fiber::spawn(move || {
            let mut a = a;
            let bufs = [IoSlice::new(b"fiber "), IoSlice::new(b"writev")];
            std::io::Write::write_vectored(&mut a, &bufs).unwrap()
        });
        let n = w.await.unwrap();
        assert_eq!(read_n(&mut b, n).await, &b"fiber writev"[..n]);
    });
}

#[test]
fn close_after_the_peer_reset_is_ok_not_not_connected() {
    for flavor in Flavor::ALL {
        run(flavor, "close after reset", || async {
            let (c, mut s) = tcp_pair().await;
            // Linger 0: dropping the client resets the connection.
            c.set_linger(Some(Duration::ZERO)).unwrap();
            drop(c);
            let mut buf = [0; 8];
            let err = s.read(&mut buf).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
            // The raw shutdown reports the state...
            let raw = s.shutdown(Shutdown::Write).unwrap_err();
            assert_eq!(raw.kind(), ErrorKind::NotConnected);
            // ...and closing through AsyncWrite treats it as closed.
            s.close().await.unwrap();
            AsyncWriteExt::close(&mut &s).await.unwrap();
        });
    }
}

#[test]
fn close_after_an_orderly_peer_close_is_ok() {
    for flavor in Flavor::ALL {
        run(flavor, "close after FIN", || async {
            let (c, mut s) = tcp_pair().await;
            drop(c);
            let mut buf = [0; 8];
            assert_eq!(s.read(&mut buf).await.unwrap(), 0);
            s.close().await.unwrap();
            let (a, mut b) = UnixStream::pair().unwrap();
            drop(a);
            b.close().await.unwrap();
        });
    }
}

#[test]
fn buffered_reader_writer_and_copy_from_io() {
    run(Flavor::MultiThread(2), "io re-exports", || async {
        let (client, server) = UnixStream::pair().unwrap();
        let echo = fiber_runtime::spawn(async move {
            let mut lines = BufReader::new(&server);
            let mut out = BufWriter::with_capacity(4, &server);
            let mut line = String::new();
            let mut count = 0;
            while lines.read_line(&mut line).await.unwrap() > 0 {
                out.write_all(line.trim_end().as_bytes()).await.unwrap();
                out.write_all(b";").await.unwrap();
                line.clear();
                count += 1;
            }
            out.flush().await.unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            count
        });
        let input = b"alpha\nbeta\ngamma\n";
        io::copy(&mut &input[..], &mut &client).await.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let n = io::copy(BufReader::new(&client), &mut got).await.unwrap();
        assert_eq!(echo.await.unwrap(), 3);
        assert_eq!((n, &got[..]), (17, &b"alpha;beta;gamma;"[..]));
    });
}
