//! An HTTP server with hyper 1.x on fiber-runtime: `/` answers
//! "Hello, world!", `/stream` streams 10 chunks as they are produced (one
//! every `--chunk-ms`, default 0), anything else is a 404. HTTP/1 and
//! HTTP/2 (h2c, prior knowledge) on the same port, through hyper-util's
//! `auto` builder.
//!
//! ```text
//! cargo run --release --features hyper --example http_server -- [--port P] [--workers N]
//!     [--runtime fiber|tokio] [--chunk-ms MS]
//! curl http://127.0.0.1:3000/  ;  curl --http2-prior-knowledge http://127.0.0.1:3000/stream
//! ```
//!
//! `--runtime tokio` serves the same service on tokio (hyper-util's
//! `TokioIo`/`TokioExecutor`/`TokioTimer`), for comparisons under the same
//! build flags (BENCHMARKS.md: `wrk -t2 -c50 -d10s`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::time::Duration;

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct Options {
    port: u16,
    workers: usize,
    tokio: bool,
    chunk_ms: u64,
}

fn parse_args() -> Options {
    let mut o = Options {
        port: 3000,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        tokio: false,
        chunk_ms: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--port" => {
                o.port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --port"))
            }
            "--workers" => {
                o.workers = value("--workers")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --workers"))
            }
            "--chunk-ms" => {
                o.chunk_ms = value("--chunk-ms")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --chunk-ms"))
            }
            "--runtime" => match value("--runtime").as_str() {
                "fiber" => o.tokio = false,
                "tokio" => o.tokio = true,
                other => usage(&format!("unknown runtime {other:?}")),
            },
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if o.workers == 0 {
        usage("--workers must be at least 1");
    }
    o
}

fn usage(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!(
        "usage: http_server [--port P] [--workers N] [--runtime fiber|tokio] [--chunk-ms MS]"
    );
    std::process::exit(2);
}

/// The service, the same on both runtimes; `sleep` is the runtime's timer.
async fn handle<S, F>(
    req: Request<Incoming>,
    chunk: Duration,
    sleep: S,
) -> Result<Response<Body>, Infallible>
where
    S: Fn(Duration) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    Ok(match req.uri().path() {
        "/" => Response::new(Full::new(Bytes::from_static(b"Hello, world!")).boxed_unsync()),
        "/stream" => {
            let chunks = futures::stream::unfold(0, move |i| {
                let pause = (i > 0 && !chunk.is_zero()).then(|| sleep(chunk));
                async move {
                    if i == 10 {
                        return None;
                    }
                    if let Some(p) = pause {
                        p.await;
                    }
                    let data = Bytes::from(format!("chunk {i}\n"));
                    Some((Ok::<_, Infallible>(Frame::data(data)), i + 1))
                }
            });
            Response::new(StreamBody::new(chunks).boxed_unsync())
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")).boxed_unsync());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    })
}

fn main() {
    let o = parse_args();
    let chunk = Duration::from_millis(o.chunk_ms);
    if o.tokio {
        serve_tokio(&o, chunk);
    } else {
        serve_fiber(&o, chunk);
    }
}

fn serve_fiber(o: &Options, chunk: Duration) {
    use fiber_runtime::hyper::{Executor, Timer};
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(o.workers)
        .build()
        .expect("building the runtime");
    rt.block_on(async {
        let listener = fiber_runtime::net::TcpListener::bind(("127.0.0.1", o.port))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:{}: {e}", o.port));
        println!(
            "fiber-runtime: serving on http://{} ({} workers)",
            listener.local_addr().unwrap(),
            o.workers
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            drop(fiber_runtime::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(req, chunk, fiber_runtime::time::sleep)
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(Executor::new());
                builder.http1().timer(Timer::new());
                builder.http2().timer(Timer::new());
                if let Err(e) = builder.serve_connection(stream, svc).await {
                    eprintln!("connection: {e}");
                }
            }));
        }
    })
}

fn serve_tokio(o: &Options, chunk: Duration) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.workers)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", o.port))
            .await
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:{}: {e}", o.port));
        println!(
            "tokio: serving on http://{} ({} workers)",
            listener.local_addr().unwrap(),
            o.workers
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(req, chunk, |d| tokio::time::sleep(d))
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                builder.http2().timer(TokioTimer::new());
                if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                    eprintln!("connection: {e}");
                }
            });
        }
    })
}
