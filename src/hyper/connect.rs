//! [`Connector`]: hyper-util's legacy client over this runtime's TCP.

use crate::net::TcpStream;
use crate::time::{Duration, Instant};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A connector for hyper-util's legacy `Client`: resolves the URI's host
/// off the workers (on the blocking pool; IP literals need no lookup),
/// connects to each address in turn within an optional timeout, and sets
/// `TCP_NODELAY` (on by default).
///
/// Plain `http` only unless [`enforce_http(false)`](Connector::enforce_http)
/// (for a TLS layer on top, which then sees the raw TCP stream).
///
/// # Examples
///
/// ```
/// use fiber_runtime::hyper::{Connector, Executor};
/// use http_body_util::Empty;
/// use hyper::body::Bytes;
/// use hyper_util::client::legacy::Client;
///
/// fiber_runtime::block_on(async {
///     let client: Client<Connector, Empty<Bytes>> =
///         Client::builder(Executor::new()).build(Connector::new());
///     // Nobody listens on port 9 (discard) here: the error says so.
///     let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
///     let uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
///     assert!(client.get(uri).await.is_err());
/// });
/// ```
#[derive(Clone, Debug)]
pub struct Connector {
    connect_timeout: Option<Duration>,
    nodelay: bool,
    enforce_http: bool,
}

impl Default for Connector {
    fn default() -> Connector {
        Connector::new()
    }
}

impl Connector {
    /// A connector with no connect timeout, `TCP_NODELAY` on, `http` only.
    pub fn new() -> Connector {
        Connector {
            connect_timeout: None,
            nodelay: true,
            enforce_http: true,
        }
    }

    /// Fails a connection (the lookup and every address of the host
    /// together) that takes longer than `timeout` with
    /// `ErrorKind::TimedOut`. Each address gets an equal share of the time
    /// left when it is tried, so one that never answers does not use up
    /// the whole budget.
    pub fn set_connect_timeout(&mut self, timeout: Option<Duration>) -> &mut Connector {
        self.connect_timeout = timeout;
        self
    }

    /// Sets `TCP_NODELAY` on the connections (default `true`).
    pub fn set_nodelay(&mut self, nodelay: bool) -> &mut Connector {
        self.nodelay = nodelay;
        self
    }

    /// Refuse URIs whose scheme is not `http` (default `true`).
    pub fn enforce_http(&mut self, enforce: bool) -> &mut Connector {
        self.enforce_http = enforce;
        self
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TcpStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = this.destination(&dst)?;
            let deadline = this.connect_timeout.map(|t| Instant::now() + t);
            let timed_out = || {
                let t = this.connect_timeout.unwrap_or_default();
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {dst} took longer than {t:?}"),
                )
            };
            let lookup = crate::net::lookup_host((host.as_str(), port));
            let addrs: Vec<_> = within(deadline, 1, lookup, timed_out).await?.collect();
            let mut last = None;
            for (i, addr) in addrs.iter().enumerate() {
                // Each address gets an equal share of the time left, as
                // hyper-util's connector does: a black-holed first address
                // (often IPv6) does not use up the whole budget.
                let share = (addrs.len() - i) as u32;
                match within(deadline, share, TcpStream::connect(*addr), timed_out).await {
                    Ok(stream) => {
                        stream.set_nodelay(this.nodelay)?;
                        return Ok(stream);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the host resolved to no address")
            }))
        })
    }
}

/// `fut`, failed with `timed_out()` once `1 / share` of the time left
/// before `deadline` is spent (no deadline: no limit).
async fn within<T>(
    deadline: Option<Instant>,
    share: u32,
    fut: impl Future<Output = io::Result<T>>,
    timed_out: impl FnOnce() -> io::Error,
) -> io::Result<T> {
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            crate::time::timeout(left / share, fut)
                .await
                .map_err(|_| timed_out())?
        }
        None => fut.await,
    }
}

impl Connector {
    /// The host and port to connect to for `dst`.
    fn destination(&self, dst: &Uri) -> io::Result<(String, u16)> {
        let invalid =
            |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{msg}: {dst}"));
        let scheme = dst.scheme_str();
        let default_port = match scheme {
            Some("http") => 80,
            Some("https") if !self.enforce_http => 443,
            Some(_) if self.enforce_http => {
                return Err(invalid(
                    "the connector only speaks plain http (see enforce_http)",
                ));
            }
            Some(_) => 80,
            None => return Err(invalid("the URI has no scheme")),
        };
        let host = dst.host().ok_or_else(|| invalid("the URI has no host"))?;
        // `[::1]` in a URI is the address `::1`.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok((host.to_owned(), dst.port_u16().unwrap_or(default_port)))
    }
}

impl Connection for TcpStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
