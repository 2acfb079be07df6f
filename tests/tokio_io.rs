//! Feature `tokio-io`: tokio's `AsyncRead`/`AsyncWrite` on the stream types
//! and their shared references, exercised through tokio-util's
//! `Framed<_, LinesCodec>`, tokio's own `AsyncReadExt`/`AsyncWriteExt` and
//! hyper-util's `TokioIo`; a read into a full buffer, a shutdown after the
//! peer reset, and end of stream.

#![cfg(feature = "tokio-io")]

mod util;

use fiber_runtime::net::{TcpListener, TcpStream, UnixStream};
use futures::{SinkExt, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio_util::codec::{Framed, LinesCodec};
use util::{Flavor, run};

#[test]
fn framed_lines_over_tcp_on_every_flavor() {
    for flavor in Flavor::ALL {
        run(flavor, "Framed<TcpStream, LinesCodec>", || async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = fiber_runtime::spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                let mut lines = Framed::new(s, LinesCodec::new());
                while let Some(line) = lines.next().await {
                    let line = line.unwrap();
                    lines.send(line.to_uppercase()).await.unwrap();
                }
            });
            let mut c = Framed::new(TcpStream::connect(addr).await.unwrap(), LinesCodec::new());
            for i in 0..100 {
                c.send(format!("line {i}")).await.unwrap();
                assert_eq!(c.next().await.unwrap().unwrap(), format!("LINE {i}"));
            }
            drop(c);
            server.await.unwrap();
        });
    }
}

#[test]
fn shared_references_read_and_write_at_once() {
    run(Flavor::MultiThread(2), "&UnixStream both ways", || async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = std::sync::Arc::new(a);
        let a2 = a.clone();
        // One task writes 1 MiB through `&a` while another reads the echo.
        let echo = fiber_runtime::spawn(async move {
            let (mut r, mut w) = (&b, &b);
            tokio::io::copy(&mut r, &mut w).await.unwrap()
        });
        let writer = fiber_runtime::spawn(async move {
            let data: Vec<u8> = (0..1 << 20).map(|i: u32| i as u8).collect();
            (&*a2).write_all(&data).await.unwrap();
            AsyncWriteExt::shutdown(&mut &*a2).await.unwrap();
            data
        });
        let mut back = Vec::new();
        (&*a).read_to_end(&mut back).await.unwrap();
        let data = writer.await.unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data);
        assert_eq!(echo.await.unwrap(), data.len() as u64);
    });
}

#[test]
fn a_full_read_buf_reads_nothing_and_end_of_stream_reads_zero() {
    run(Flavor::CurrentThread, "ReadBuf edges", || async {
        let (mut a, b) = UnixStream::pair().unwrap();
        (&b).write_all(b"xyz").await.unwrap();
        // A ReadBuf with no room: Ready(Ok) without consuming anything.
        let mut none: [u8; 0] = [];
        let mut rb = ReadBuf::new(&mut none);
        std::future::poll_fn(|cx| Pin::new(&mut a).poll_read(cx, &mut rb))
            .await
            .unwrap();
        assert_eq!(rb.filled().len(), 0);
        // Into uninitialised memory, only what arrived.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8];
        let mut rb = ReadBuf::uninit(&mut buf);
        std::future::poll_fn(|cx| Pin::new(&mut a).poll_read(cx, &mut rb))
            .await
            .unwrap();
        assert_eq!(rb.filled(), b"xyz");
        drop(b);
        assert_eq!(a.read(&mut [0; 4]).await.unwrap(), 0);
    });
}

#[test]
fn shutdown_after_the_peer_reset_is_ok() {
    run(Flavor::MultiThread(1), "shutdown after RST", || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&s.into_std().unwrap())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        let _ = c.read(&mut [0; 8]).await;
        AsyncWriteExt::shutdown(&mut c).await.unwrap();
    });
}

#[test]
fn hyper_util_tokio_io_wraps_our_stream() {
    run(Flavor::MultiThread(2), "TokioIo<TcpStream>", || async {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        use hyper_util::rt::TokioIo;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(fiber_runtime::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from("via TokioIo"))))
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await
                .unwrap();
        }));
        let c = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut tx, conn) = hyper::client::conn::http1::handshake(c).await.unwrap();
        drop(fiber_runtime::spawn(conn));
        let req = hyper::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let body = tx
            .send_request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "via TokioIo");
    });
}

/// More slices than one `writev` takes (std sends the first 1024): the
/// short write must not be taken for a full send buffer, or the next
/// write would wait for a writable edge that never comes.
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
