//! Feature `hyper`: servers and clients over HTTP/1 and HTTP/2 (h2c) on
//! this runtime's TCP and Unix streams, hyper-util's legacy client with
//! our `Connector`, `Timer` and `Executor`, and the edges: a peer gone
//! before shutdown, a connector given a bad URI, a timer reset in place.

#![cfg(feature = "hyper")]

mod util;

use bytes::Bytes;
use fiber_runtime::hyper::{Connector, Executor, Timer};
use fiber_runtime::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::{Duration, Instant};
use util::{Flavor, run};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The test service: `/` says hello, `/stream` sends `n` chunks, `/echo`
/// returns the request body.
async fn service(req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let path = req.uri().path().to_owned();
    Ok(match path.as_str() {
        "/stream" => {
            let chunks = (0..100)
                .map(|i| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk {i}\n")))));
            Response::new(StreamBody::new(futures::stream::iter(chunks)).boxed())
        }
        "/echo" => {
            let body = req.into_body().collect().await?.to_bytes();
            Response::new(Full::new(body).boxed())
        }
        _ => Response::new(Full::new(Bytes::from("hello")).boxed()),
    })
}

fn expected_stream() -> String {
    (0..100).map(|i| format!("chunk {i}\n")).collect()
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    Http1,
    Http2,
}

/// Serves every connection `listener` accepts, with `proto`.
fn serve_tcp(listener: TcpListener, proto: Proto) {
    drop(fiber_runtime::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            drop(fiber_runtime::spawn(serve_one(stream, proto)));
        }
    }));
}

async fn serve_one<S>(stream: S, proto: Proto)
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(service);
    let res = match proto {
        Proto::Http1 => {
            hyper::server::conn::http1::Builder::new()
                .timer(Timer::new())
                .serve_connection(stream, svc)
                .await
        }
        Proto::Http2 => {
            hyper::server::conn::http2::Builder::new(Executor::new())
                .timer(Timer::new())
                .serve_connection(stream, svc)
                .await
        }
    };
    if let Err(e) = res {
        // A client that goes away mid-connection is not a test failure;
        // anything else is.
        assert!(
            e.is_incomplete_message() || e.is_canceled(),
            "server connection: {e}"
        );
    }
}

/// Sends `GET path` (or a POST with `body`) over a fresh client connection on `stream`.
async fn request<S>(
    stream: S,
    proto: Proto,
    path: &str,
    body: Option<&'static str>,
) -> (u16, String)
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let req = match body {
        Some(b) => Request::post(path).body(Full::new(Bytes::from(b))).unwrap(),
        None => Request::get(path).body(Full::new(Bytes::new())).unwrap(),
    };
    let res = match proto {
        Proto::Http1 => {
            let (mut tx, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
            let conn = fiber_runtime::spawn(conn);
            let res = tx.send_request(req).await.unwrap();
            let out = collect(res).await;
            drop(tx);
            conn.await.unwrap().unwrap();
            return out;
        }
        Proto::Http2 => {
            let (mut tx, conn) = hyper::client::conn::http2::Builder::new(Executor::new())
                .timer(Timer::new())
                .handshake(stream)
                .await
                .unwrap();
            drop(fiber_runtime::spawn(conn));
            tx.send_request(req).await.unwrap()
        }
    };
    collect(res).await
}

async fn collect(res: Response<Incoming>) -> (u16, String) {
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[test]
fn http1_and_http2_over_tcp_on_every_flavor() {
    for flavor in Flavor::ALL {
        for proto in [Proto::Http1, Proto::Http2] {
            run(flavor, &format!("{proto:?} over TCP"), move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                serve_tcp(listener, proto);
                let c = TcpStream::connect(addr).await.unwrap();
                assert_eq!(request(c, proto, "/", None).await, (200, "hello".into()));
                let c = TcpStream::connect(addr).await.unwrap();
                assert_eq!(
                    request(c, proto, "/stream", None).await,
                    (200, expected_stream())
                );
                let c = TcpStream::connect(addr).await.unwrap();
                assert_eq!(
                    request(c, proto, "/echo", Some("ping")).await,
                    (200, "ping".into())
                );
            });
        }
    }
}

#[test]
fn http1_and_http2_over_unix_streams() {
    for proto in [Proto::Http1, Proto::Http2] {
        run(
            Flavor::MultiThread(2),
            &format!("{proto:?} over Unix"),
            move || async move {
                let dir =
                    std::env::temp_dir().join(format!("fr-hyper-{}-{proto:?}", std::process::id()));
                let _ = std::fs::remove_file(&dir);
                let listener = UnixListener::bind(&dir).unwrap();
                drop(fiber_runtime::spawn(async move {
                    let (s, _) = listener.accept().await.unwrap();
                    serve_one(s, proto).await;
                }));
                let c = UnixStream::connect(&dir).await.unwrap();
                assert_eq!(
                    request(c, proto, "/stream", None).await,
                    (200, expected_stream())
                );
                let _ = std::fs::remove_file(&dir);
            },
        );
    }
}

#[test]
fn a_large_body_arrives_whole_through_uninitialised_reads() {
    run(Flavor::MultiThread(2), "8 MiB echo", || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_tcp(listener, Proto::Http1);
        let body: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let c = TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(c).await.unwrap();
        drop(fiber_runtime::spawn(conn));
        let req = Request::post("/echo")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let res = tx.send_request(req).await.unwrap();
        let back = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(back.len(), body.len());
        assert!(back == body, "the echoed body differs");
    });
}

#[test]
fn legacy_client_with_connector_by_ip_and_by_name() {
    for flavor in Flavor::ALL {
        run(flavor, "legacy client", || async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            serve_tcp(listener, Proto::Http1);
            let client: Client<Connector, Empty<Bytes>> = Client::builder(Executor::new())
                .timer(Timer::new())
                .build(Connector::new());
            for host in ["127.0.0.1", "localhost"] {
                for _ in 0..3 {
                    // Three requests: the later ones reuse the pooled connection.
                    let uri = format!("http://{host}:{port}/").parse().unwrap();
                    let res = client.get(uri).await.unwrap();
                    assert_eq!(res.status(), 200);
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body, "hello");
                }
            }
        });
    }
}

#[test]
fn legacy_client_over_h2c() {
    run(Flavor::MultiThread(2), "legacy client h2c", || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        serve_tcp(listener, Proto::Http2);
        let client: Client<Connector, Empty<Bytes>> = Client::builder(Executor::new())
            .timer(Timer::new())
            .http2_only(true)
            .build(Connector::new());
        let mut joins = Vec::new();
        for _ in 0..20 {
            let client = client.clone();
            let uri: hyper::Uri = format!("http://127.0.0.1:{port}/stream").parse().unwrap();
            joins.push(fiber_runtime::spawn(async move {
                let res = client.get(uri).await.unwrap();
                res.into_body().collect().await.unwrap().to_bytes()
            }));
        }
        for j in joins {
            assert_eq!(j.await.unwrap(), expected_stream());
        }
    });
}

#[test]
fn connector_refuses_bad_uris_and_reports_refused_connections() {
    run(Flavor::CurrentThread, "connector errors", || async {
        use tower_service::Service;
        let mut c = Connector::new();
        for (uri, what) in [
            ("https://127.0.0.1:1/", "plain http"),
            ("/relative", "no scheme"),
            ("ftp://127.0.0.1/", "plain http"),
        ] {
            let err = c.call(uri.parse().unwrap()).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{uri}");
            assert!(err.to_string().contains(what), "{uri}: {err}");
        }
        let (_bound, refusing) = util::refusing_addr();
        let port = refusing.port();
        let err = c
            .call(format!("http://127.0.0.1:{port}/").parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        let err = c
            .call("http://no-such-host.invalid/".parse().unwrap())
            .await
            .unwrap_err();
        assert_ne!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    });
}

#[test]
fn shutdown_after_the_peer_reset_the_connection_is_ok() {
    run(Flavor::CurrentThread, "shutdown after RST", || async {
        use hyper::rt::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = listener.accept().await.unwrap();
        // Linger 0: closing sends a reset.
        socket2::SockRef::from(&s.into_std().unwrap())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        // Read until the reset arrives (an error or end of stream).
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        let mut rb = hyper::rt::ReadBuf::uninit(&mut buf);
        let _ = std::future::poll_fn(|cx| Pin::new(&mut c).poll_read(cx, rb.unfilled())).await;
        std::future::poll_fn(|cx| Pin::new(&mut c).poll_shutdown(cx))
            .await
            .unwrap();
    });
}

#[test]
fn timer_reset_moves_our_sleep_and_replaces_a_foreign_one() {
    run(Flavor::MultiThread(1), "timer reset", || async {
        use hyper::rt::Timer as _;
        let timer = Timer::new();
        // Ours: an hour-long sleep moved to now completes.
        let mut s = timer.sleep(Duration::from_secs(3600));
        timer.reset(&mut s, Instant::now());
        s.as_mut().await;
        assert!(
            s.as_mut()
                .downcast_mut_pin::<fiber_runtime::time::Sleep>()
                .is_some()
        );

        // A foreign Sleep is replaced by ours.
        struct Never;
        impl std::future::Future for Never {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
                std::task::Poll::Pending
            }
        }
        impl hyper::rt::Sleep for Never {}
        let mut s: Pin<Box<dyn hyper::rt::Sleep>> = Box::pin(Never);
        timer.reset(&mut s, Instant::now());
        assert!(
            s.as_mut()
                .downcast_mut_pin::<fiber_runtime::time::Sleep>()
                .is_some()
        );
        s.await;
    });
}

#[test]
fn executor_made_outside_spawns_onto_its_runtime() {
    use hyper::rt::Executor as _;
    let rt = util::multi_thread(1);
    let exec = Executor::with_handle(rt.handle().clone());
    let (tx, rx) = fiber_runtime::sync::oneshot::channel();
    exec.execute(async move {
        let _ = tx.send(fiber_runtime::task::id().is_some());
    });
    assert!(rx.blocking_recv().unwrap(), "the future ran as a task");
}

#[test]
fn a_client_dropped_mid_request_leaves_the_server_serving() {
    run(Flavor::MultiThread(2), "client dropped", || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_tcp(listener, Proto::Http1);
        // Send half a request, then drop the connection.
        {
            use fiber_runtime::io::AsyncWriteExt;
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        }
        let c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            request(c, Proto::Http1, "/", None).await,
            (200, "hello".into())
        );
    });
}

#[test]
fn connector_times_out_a_connect_that_cannot_complete() {
    run(Flavor::MultiThread(1), "connect timeout", || async {
        use tower_service::Service;
        // Backlog 0: one queued connection fills the accept queue and the
        // kernel drops later SYNs, so a connect stays in progress.
        let ls = fiber_runtime::net::TcpSocket::new_v4().unwrap();
        ls.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = ls.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let mut c = Connector::new();
        c.set_connect_timeout(Some(Duration::from_millis(50)));
        let err = c
            .call(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("took longer than"), "{err}");
    });
}
