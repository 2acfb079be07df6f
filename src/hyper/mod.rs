//! Feature `hyper`: hyper 1.x on this runtime, with no glue.
//!
//! - [`TcpStream`](crate::net::TcpStream) and
//!   [`UnixStream`](crate::net::UnixStream) implement `hyper::rt::Read`
//!   (reading straight into hyper's uninitialised buffer) and
//!   `hyper::rt::Write` (vectored), so they go to hyper's `serve_connection`
//!   and `handshake` as they are;
//! - [`Executor`] spawns hyper's background futures (HTTP/2 streams, the
//!   client's connection tasks) as tasks of this runtime;
//! - [`Timer`] gives hyper this runtime's timers (header-read timeouts,
//!   keep-alive, HTTP/2 pings); `reset` moves the existing timer, it does
//!   not allocate a new one;
//! - [`Connector`] is a connector for hyper-util's legacy `Client`:
//!   host names resolved off the workers, a connect timeout, `TCP_NODELAY`.
//!
//! # Examples
//!
//! An HTTP/1 server and a request to it:
//!
//! ```
//! use fiber_runtime::hyper::{Executor, Timer};
//! use fiber_runtime::net::{TcpListener, TcpStream};
//! use http_body_util::{BodyExt, Full};
//! use hyper::body::Bytes;
//! use hyper::{Request, Response};
//!
//! fiber_runtime::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     fiber_runtime::spawn(async move {
//!         loop {
//!             let (stream, _) = listener.accept().await.unwrap();
//!             fiber_runtime::spawn(async move {
//!                 let service = hyper::service::service_fn(|_req| async {
//!                     Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from("hello"))))
//!                 });
//!                 let _ = hyper::server::conn::http1::Builder::new()
//!                     .timer(Timer::new())
//!                     .serve_connection(stream, service)
//!                     .await;
//!             });
//!         }
//!     });
//!
//!     let stream = TcpStream::connect(addr).await.unwrap();
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
//!     fiber_runtime::spawn(conn);
//!     let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
//!     let res = sender.send_request(req).await.unwrap();
//!     let body = res.into_body().collect().await.unwrap().to_bytes();
//!     assert_eq!(body, "hello");
//!     # let _ = Executor::new();
//! });
//! ```

mod connect;
mod io;

pub use connect::Connector;

use crate::runtime::Handle;
use crate::time::{Duration, Instant};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// Spawns hyper's background futures as tasks of this runtime: give it to
/// `hyper::server::conn::http2::Builder::new`, hyper-util's
/// `server::conn::auto::Builder::new` and `client::legacy::Client::builder`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::hyper::{Executor, Timer};
///
/// fiber_runtime::block_on(async {
///     let mut h2 = hyper::server::conn::http2::Builder::new(Executor::new());
///     h2.timer(Timer::new());
/// });
/// ```
#[derive(Clone, Default)]
pub struct Executor {
    /// The runtime current when the executor was made, if any; otherwise
    /// futures go to the runtime current when they are spawned.
    handle: Option<Handle>,
}

impl Executor {
    /// An executor for the current runtime (the one of the calling task or
    /// thread, or, if there is none, the one current wherever hyper later
    /// spawns).
    pub fn new() -> Executor {
        Executor {
            handle: Handle::try_current().ok(),
        }
    }

    /// An executor that spawns onto `handle`'s runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let exec = fiber_runtime::hyper::Executor::with_handle(rt.handle().clone());
    /// # drop(exec);
    /// ```
    pub fn with_handle(handle: Handle) -> Executor {
        Executor {
            handle: Some(handle),
        }
    }
}

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Spawns `fut`; its `JoinHandle` is dropped, so it runs detached.
    ///
    /// # Panics
    ///
    /// Panics if the executor has no runtime and none is current.
    #[track_caller]
    fn execute(&self, fut: F) {
        match &self.handle {
            Some(h) => drop(h.spawn(fut)),
            None => drop(crate::spawn(fut)),
        }
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("has_handle", &self.handle.is_some())
            .finish()
    }
}

/// This runtime's timers for hyper (`Builder::timer`): the sleeps hyper
/// asks for are [`time::Sleep`](crate::time::Sleep)s, and `reset` moves one
/// in place instead of allocating a new one.
///
/// The timers belong to the runtime current where hyper creates them (its
/// connection futures run on this runtime).
///
/// # Examples
///
/// ```
/// use fiber_runtime::hyper::Timer;
/// use hyper::rt::Timer as _;
/// use std::time::Duration;
///
/// fiber_runtime::block_on(async {
///     let timer = Timer::new();
///     timer.sleep(Duration::from_millis(1)).await;
/// });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer(());

impl Timer {
    /// The timer.
    pub fn new() -> Timer {
        Timer(())
    }
}

impl hyper::rt::Timer for Timer {
    /// # Panics
    ///
    /// Panics outside a runtime, as [`time::sleep`](crate::time::sleep).
    #[track_caller]
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(crate::time::sleep(duration))
    }

    /// # Panics
    ///
    /// Panics outside a runtime, as
    /// [`time::sleep_until`](crate::time::sleep_until).
    #[track_caller]
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(crate::time::sleep_until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<crate::time::Sleep>() {
            Some(ours) => ours.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

impl hyper::rt::Sleep for crate::time::Sleep {}
