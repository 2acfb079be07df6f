//! An HTTP client with hyper-util's legacy `Client` on fiber-runtime,
//! through `fiber_runtime::hyper::Connector` (host names resolved off the
//! workers, a connect timeout).
//!
//! ```text
//! cargo run --release --features hyper --example http_client -- [URL]
//! ```
//!
//! With a URL (plain `http`), it fetches it and prints the status and the
//! body. Without one, it starts a small server in the same process and
//! fetches from it twice: once from a task (`.await`) and once from a
//! fiber, in blocking style (`fiber::wait`).

use bytes::Bytes;
use fiber_runtime::hyper::{Connector, Executor, Timer};
use fiber_runtime::time::Duration;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Uri;
use hyper_util::client::legacy::Client;

type HttpClient = Client<Connector, Empty<Bytes>>;

async fn fetch(client: &HttpClient, uri: Uri) -> Result<(u16, Bytes), String> {
    let res = client
        .get(uri.clone())
        .await
        .map_err(|e| format!("GET {uri}: {e}"))?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body of {uri}: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Serves "hello from fiber-runtime" on 127.0.0.1; returns its port.
fn start_server() -> u16 {
    let listener = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    let port = listener.local_addr().unwrap().port();
    drop(fiber_runtime::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(fiber_runtime::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                        "hello from fiber-runtime\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(Timer::new())
                    .serve_connection(stream, svc)
                    .await;
            }));
        }
    }));
    port
}

fn main() {
    let url = std::env::args().nth(1);
    let code = fiber_runtime::block_on(async move {
        let mut connector = Connector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client: HttpClient = Client::builder(Executor::new())
            .timer(Timer::new())
            .build(connector);

        if let Some(url) = url {
            let uri: Uri = match url.parse() {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("error: {url:?} is not a URI: {e}");
                    return 2;
                }
            };
            return match fetch(&client, uri).await {
                Ok((status, body)) => {
                    println!("status {status}");
                    println!("{}", String::from_utf8_lossy(&body));
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            };
        }

        let port = start_server();
        let uri: Uri = format!("http://localhost:{port}/").parse().unwrap();
        let (status, body) = fetch(&client, uri.clone())
            .await
            .expect("fetching from a task");
        print!("task : {status} {}", String::from_utf8_lossy(&body));

        // The same client from a fiber, in blocking style.
        let f = fiber_runtime::fiber::spawn(move || {
            fiber_runtime::fiber::wait(fetch(&client, uri)).expect("fetching from a fiber")
        });
        let (status, body) = f.await.expect("the fiber");
        print!("fiber: {status} {}", String::from_utf8_lossy(&body));
        0
    });
    std::process::exit(code);
}
