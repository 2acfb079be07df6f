//! Networking: TCP, UDP and Unix-domain sockets on the runtime's reactor.
//!
//! `bind` is synchronous; `connect`, `accept`, reads and writes are async.
//! Every type is `Send + Sync`, and the stream types implement
//! [`AsyncRead`](crate::io::AsyncRead) and
//! [`AsyncWrite`](crate::io::AsyncWrite) for both `T` and `&T`, so one
//! stream shared through an `Arc` can be read by one task and written by
//! another at the same time (each direction has its own waker).
//!
//! Sockets must be created inside a runtime (a task, `block_on`, or after
//! `Runtime::enter`); elsewhere the constructors return an error saying
//! so. A socket that outlives its runtime fails every later operation
//! with an error instead of waiting forever.
//!
//! # Blocking style
//!
//! The stream types also implement `std::io::Read` and `std::io::Write`
//! (for `T` and `&T`), and the listeners and `UdpSocket` have `blocking_*`
//! methods. Inside a [fiber](crate::fiber) they suspend the fiber until the
//! socket is ready; on a thread outside any runtime they block it; in an
//! async task on a runtime thread they panic (use the async methods).
//! With both `std::io::Write` and [`AsyncWriteExt`](crate::io::AsyncWriteExt)
//! in scope, `stream.write_all(..)` is ambiguous: import only the one you
//! use in that module, or spell the call out
//! (`AsyncWriteExt::write_all(&mut stream, ..).await`).
//!
//! # Examples
//!
//! ```
//! use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
//! use fiber_runtime::net::{TcpListener, TcpStream};
//!
//! fiber_runtime::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = fiber_runtime::spawn(async move {
//!         let (mut s, _) = listener.accept().await.unwrap();
//!         let mut buf = [0; 5];
//!         s.read_exact(&mut buf).await.unwrap();
//!         s.write_all(&buf).await.unwrap();
//!     });
//!     let mut c = TcpStream::connect(addr).await.unwrap();
//!     c.write_all(b"hello").await.unwrap();
//!     let mut buf = [0; 5];
//!     c.read_exact(&mut buf).await.unwrap();
//!     assert_eq!(&buf, b"hello");
//!     server.await.unwrap();
//! });
//! ```

mod tcp;
mod udp;
mod unix;

pub use tcp::listener::TcpListener;
pub use tcp::stream::TcpStream;
pub use udp::UdpSocket;
pub use unix::listener::UnixListener;
pub use unix::stream::UnixStream;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `addr` (numeric addresses never block; host names use the
/// system resolver).
pub(crate) fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

/// Tries `f` on each address, returning the first success or last error.
pub(crate) fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("resolve returned at least one address"))
}

/// Implements `AsyncRead`/`AsyncWrite` (and the blocking-style
/// `std::io::Read`/`Write`) for a stream type's shared reference, through
/// its `io: PollEvented<mio type>` field, and for the type itself by
/// forwarding to the reference.
macro_rules! impl_async_read_write {
    ($ty:ty) => {
        impl $crate::io::AsyncRead for &$ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io
                    .poll_read_stream(cx, buf.len(), |s| std::io::Read::read(&mut &*s, buf))
            }
        }

        impl $crate::io::AsyncWrite for &$ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io
                    .poll_write_stream(cx, buf.len(), |s| std::io::Write::write(&mut &*s, buf))
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(self.shutdown(std::net::Shutdown::Write))
            }
        }

        impl $crate::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_read(cx, buf)
            }
        }

        impl $crate::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut &*self).poll_flush(cx)
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut &*self).poll_close(cx)
            }
        }

        impl std::io::Read for &$ty {
            /// Blocking-style read: suspends the fiber (inside one), blocks
            /// a plain thread; panics in an async task (use
            /// `AsyncReadExt::read(..).await`).
            #[track_caller]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.io.blocking_drained(
                    $crate::reactor::scheduled_io::Direction::Read,
                    "std::io::Read::read",
                    "`AsyncReadExt::read(..).await`",
                    |s| std::io::Read::read(&mut &*s, buf),
                    |&n| n > 0 && n < len,
                )
            }
        }

        impl std::io::Read for $ty {
            #[track_caller]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }
        }

        impl std::io::Write for &$ty {
            /// Blocking-style write (see `Read`).
            #[track_caller]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.io.blocking_drained(
                    $crate::reactor::scheduled_io::Direction::Write,
                    "std::io::Write::write",
                    "`AsyncWriteExt::write(..).await`",
                    |s| std::io::Write::write(&mut &*s, buf),
                    |&n| n < len,
                )
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for $ty {
            #[track_caller]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use impl_async_read_write;
