//! Feature `tokio-compat`: tokio-only futures (tokio's timers and sockets,
//! `tokio::spawn`, reqwest) inside this runtime's tasks and fibers; a
//! `Compat` dropped or aborted mid-wait; the tokio context only inside
//! the poll.

#![cfg(feature = "tokio-compat")]

mod util;

use fiber_runtime::compat::{Compat, TokioCompatExt};
use fiber_runtime::fiber;
use fiber_runtime::io::{AsyncReadExt as _, AsyncWriteExt as _};
use fiber_runtime::net::{TcpListener, TcpStream};
use std::time::Duration;
use util::{Flavor, run};

#[test]
fn tokio_sleep_in_a_task_and_in_a_fiber_on_every_flavor() {
    for flavor in Flavor::ALL {
        run(flavor, "tokio::time::sleep", || async {
            async { tokio::time::sleep(Duration::from_millis(1)).await }
                .compat()
                .await;
            let f = fiber::spawn(|| {
                fiber::wait(async { tokio::time::sleep(Duration::from_millis(1)).await }.compat());
                fiber::wait(
                    async {
                        tokio::task::yield_now().await;
                        3
                    }
                    .compat(),
                )
            });
            assert_eq!(f.await.unwrap(), 3);
        });
    }
}

#[test]
fn a_tokio_stream_talks_to_our_listener_and_ours_to_a_tokio_listener() {
    for flavor in Flavor::ALL {
        run(flavor, "tokio::net <-> net", || async {
            // tokio client, our server.
            let ours = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = ours.local_addr().unwrap();
            let server = fiber_runtime::spawn(async move {
                let (mut s, _) = ours.accept().await.unwrap();
                let mut buf = [0; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let echoed = async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                c.write_all(b"hello").await.unwrap();
                let mut buf = [0; 5];
                c.read_exact(&mut buf).await.unwrap();
                buf
            }
            .compat()
            .await;
            assert_eq!(&echoed, b"hello");
            server.await.unwrap();

            // Our client, a tokio listener served from a fiber.
            let theirs = async { tokio::net::TcpListener::bind("127.0.0.1:0").await }
                .compat()
                .await
                .unwrap();
            let addr = theirs.local_addr().unwrap();
            let server = fiber::spawn(move || {
                use tokio::io::AsyncWriteExt;
                let (mut s, _) = fiber::wait(async { theirs.accept().await }.compat()).unwrap();
                fiber::wait(async { s.write_all(b"from tokio").await }.compat()).unwrap();
                drop(Compat::new(s));
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "from tokio");
            server.await.unwrap();
        });
    }
}

#[test]
fn tokio_spawn_lands_on_the_tokio_runtime() {
    run(Flavor::MultiThread(2), "tokio::spawn", || async {
        let name = async {
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap()
        }
        .compat()
        .await;
        assert_eq!(name.as_deref(), Some("fiber-runtime-tokio"));
    });
}

#[test]
fn the_tokio_context_is_entered_only_inside_the_poll() {
    run(Flavor::CurrentThread, "context scope", || async {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let inside = async { tokio::runtime::Handle::try_current().is_ok() }
            .compat()
            .await;
        assert!(inside);
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "the context leaked out of the poll"
        );
    });
}

#[test]
fn dropped_or_aborted_mid_wait_nothing_breaks() {
    for flavor in Flavor::ALL {
        run(flavor, "drop and abort", || async {
            // A pending tokio sleep dropped inside its context (a `Sleep`
            // needs the context when it is created, so it is made inside
            // the wrapped future).
            let mut s =
                Box::pin(async { tokio::time::sleep(Duration::from_secs(3600)).await }.compat());
            let waker = futures::task::noop_waker();
            assert!(
                s.as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker))
                    .is_pending()
            );
            drop(s);

            // A task blocked in a tokio read, aborted.
            let listener = async { tokio::net::TcpListener::bind("127.0.0.1:0").await }
                .compat()
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (started_tx, started_rx) = fiber_runtime::sync::oneshot::channel();
            let reader = fiber_runtime::spawn(
                async move {
                    use tokio::io::AsyncReadExt;
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let _ = started_tx.send(());
                    let mut buf = [0; 1];
                    let _ = c.read(&mut buf).await;
                    unreachable!("nobody writes");
                }
                .compat(),
            );
            let (_peer, _) = async { listener.accept().await }.compat().await.unwrap();
            started_rx.await.unwrap();
            reader.abort();
            assert!(reader.await.unwrap_err().is_cancelled());
            // The tokio runtime still serves.
            async { tokio::time::sleep(Duration::from_millis(1)).await }
                .compat()
                .await;
        });
    }
}

#[test]
fn compat_works_under_another_executor_too() {
    let v = futures::executor::block_on(
        async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            9
        }
        .compat(),
    );
    assert_eq!(v, 9);
}

#[cfg(feature = "hyper")]
#[test]
fn reqwest_against_our_hyper_server_from_a_task_and_a_fiber() {
    use fiber_runtime::hyper::Timer;
    use http_body_util::Full;
    use hyper::body::Bytes;
    for flavor in Flavor::ALL {
        run(flavor, "reqwest", || async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(fiber_runtime::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    drop(fiber_runtime::spawn(async move {
                        let svc = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                            let body = format!("you asked for {}", req.uri().path());
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                                body,
                            ))))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(Timer::new())
                            .serve_connection(s, svc)
                            .await;
                    }));
                }
            }));
            let client = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{port}/task");
            let c = client.clone();
            let text = async move { c.get(url).send().await?.text().await }
                .compat()
                .await
                .unwrap();
            assert_eq!(text, "you asked for /task");
            let f = fiber::spawn(move || {
                let url = format!("http://127.0.0.1:{port}/fiber");
                fiber::wait(async move { client.get(url).send().await?.text().await }.compat())
            });
            assert_eq!(f.await.unwrap().unwrap(), "you asked for /fiber");
        });
    }
}

#[test]
fn a_blocking_style_call_inside_compat_in_a_fiber_is_refused_not_suspended() {
    util::silence_expected_panics(&["would suspend this fiber inside"]);
    for flavor in Flavor::ALL {
        run(flavor, "suspension inside Compat", || async {
            let f = fiber::spawn(|| {
                fiber::wait(
                    async {
                        // Would suspend the fiber with the tokio context
                        // entered: refused.
                        fiber::sleep(Duration::from_millis(1));
                    }
                    .compat(),
                )
            });
            let err = f.await.unwrap_err();
            let msg = util::panic_message(err.into_panic().as_ref()).unwrap_or_default();
            assert!(
                msg.contains("`fiber::sleep` would suspend this fiber inside a `Compat`"),
                "{msg}"
            );
            // The tokio context did not stay behind on the worker.
            assert!(tokio::runtime::Handle::try_current().is_err());
            // The same fiber may wait for a Compat and then block-style
            // wait outside it.
            let ok = fiber::spawn(|| {
                fiber::wait(async { tokio::task::yield_now().await }.compat());
                fiber::sleep(Duration::from_millis(1));
                5
            });
            assert_eq!(ok.await.unwrap(), 5);
        });
    }
}

#[test]
fn compat_drops_its_future_inside_the_tokio_context() {
    struct NeedsContext;
    impl Drop for NeedsContext {
        fn drop(&mut self) {
            assert!(
                tokio::runtime::Handle::try_current().is_ok(),
                "dropped outside the tokio context"
            );
        }
    }
    run(Flavor::MultiThread(1), "drop in context", || async {
        let held = NeedsContext;
        let fut = Compat::new(async move {
            let _held = held;
            std::future::pending::<()>().await
        });
        let mut fut = Box::pin(fut);
        let waker = futures::task::noop_waker();
        assert!(
            fut.as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending()
        );
        drop(fut);
        // And one never polled.
        let held = NeedsContext;
        drop(Compat::new(async move {
            let _held = held;
        }));
    });
}
