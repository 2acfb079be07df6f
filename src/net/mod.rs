//! Networking: TCP, UDP and Unix-domain sockets on the runtime's reactor,
//! and name resolution.
//!
//! `bind` is synchronous; `connect`, `accept`, reads and writes are async.
//! [`TcpSocket`] sets options before connecting or listening. Addresses are
//! anything [`ToSocketAddrs`]: numeric ones are parsed at once, host names
//! are resolved on the blocking pool ([`lookup_host`]), never on a worker.
//! Every type is `Send + Sync`, implements `AsFd` and `AsRawFd` (so
//! `socket2::SockRef::from(&socket)` reaches any option), and the stream
//! types implement
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
//! (for `T` and `&T`), and the listeners, the datagram sockets and the
//! streams' connects have `blocking_*` methods
//! ([`TcpStream::blocking_connect`], [`UdpSocket::blocking_recv_from`], ...). Inside a [fiber](crate::fiber) they suspend the fiber until the
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

mod addr;
mod tcp;
#[cfg(feature = "tokio-io")]
mod tokio_io;
mod udp;
mod unix;

pub use addr::{ToSocketAddrs, lookup_host};
pub use tcp::listener::TcpListener;
pub use tcp::socket::TcpSocket;
pub use tcp::stream::TcpStream;
pub use udp::UdpSocket;
pub use unix::datagram::UnixDatagram;
pub use unix::listener::UnixListener;
pub use unix::stream::UnixStream;

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
                let len = buf.len();
                self.io.poll_read_stream(
                    cx,
                    len,
                    false,
                    $crate::io::read_into(buf, |s, b| std::io::Read::read(&mut &*s, b)),
                )
            }
        }

        impl $crate::io::AsyncWrite for &$ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                $crate::io::uninit::poll_write(&self.io, cx, buf)
            }

            /// One `writev(2)` of all of `bufs` (as much as the socket
            /// takes).
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                $crate::io::uninit::poll_write_vectored(&self.io, cx, bufs)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            /// Shuts down the write half. A connection the peer already
            /// reset or closed (`NotConnected`) counts as closed: success,
            /// as tokio's `poll_shutdown`.
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready($crate::io::uninit::shutdown_write(
                    self.shutdown(std::net::Shutdown::Write),
                ))
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

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
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
                self.io.blocking_read(
                    "std::io::Read::read",
                    "`AsyncReadExt::read(..).await`",
                    len,
                    $crate::io::read_into(buf, |s, b| std::io::Read::read(&mut &*s, b)),
                )
            }

            /// As std's, with a misuse in an async task reported at the
            /// caller's line.
            #[track_caller]
            fn read_exact(&mut self, mut buf: &mut [u8]) -> std::io::Result<()> {
                $crate::wait::caller(
                    "std::io::Read::read_exact",
                    "`AsyncReadExt::read_exact(..).await`",
                    |_| (),
                );
                while !buf.is_empty() {
                    match std::io::Read::read(self, buf) {
                        Ok(0) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "failed to fill whole buffer",
                            ));
                        }
                        Ok(n) => buf = &mut buf[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }

        impl std::io::Read for $ty {
            #[track_caller]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }

            #[track_caller]
            fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
                std::io::Read::read_exact(&mut &*self, buf)
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

            /// Blocking-style vectored write (see `Read`).
            #[track_caller]
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                let len = $crate::io::uninit::vectored_len(bufs);
                self.io.blocking_drained(
                    $crate::reactor::scheduled_io::Direction::Write,
                    "std::io::Write::write_vectored",
                    "`AsyncWriteExt::write_vectored(..).await`",
                    |s| std::io::Write::write_vectored(&mut &*s, bufs),
                    |&n| n < len,
                )
            }

            /// As std's, with a misuse in an async task reported at the
            /// caller's line.
            #[track_caller]
            fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
                $crate::wait::caller(
                    "std::io::Write::write_all",
                    "`AsyncWriteExt::write_all(..).await`",
                    |_| (),
                );
                while !buf.is_empty() {
                    match std::io::Write::write(self, buf) {
                        Ok(0) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::WriteZero,
                                "failed to write whole buffer",
                            ));
                        }
                        Ok(n) => buf = &buf[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for $ty {
            #[track_caller]
            fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
                std::io::Write::write_all(&mut &*self, buf)
            }

            #[track_caller]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }

            #[track_caller]
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use impl_async_read_write;

/// Implements `AsFd` and `AsRawFd` for a type whose `io` field is a
/// `PollEvented`, so that `socket2::SockRef::from(&socket)` works.
macro_rules! impl_as_fd {
    ($ty:ty) => {
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.io.get_ref())
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self.io.get_ref())
            }
        }
    };
}
pub(crate) use impl_as_fd;
