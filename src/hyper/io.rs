//! `hyper::rt::Read` and `hyper::rt::Write` for the stream types.
//!
//! Reads go straight into hyper's uninitialised cursor (no zero-fill);
//! writes are vectored; `poll_shutdown` treats `NotConnected` as success.

use crate::io::uninit;
use crate::net::{TcpStream, UnixStream};
use hyper::rt::{Read, ReadBufCursor, Write};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

macro_rules! impl_hyper_io {
    ($ty:ty) => {
        impl Read for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                // SAFETY: `poll_read_uninit` only writes into the slice (a
                // socket `recv`), never de-initialises bytes.
                let unfilled = unsafe { buf.as_mut() };
                let n = ready!(uninit::poll_read_uninit(&self.io, cx, unfilled))?;
                // SAFETY: `recv` initialised the first `n` bytes of the
                // cursor's unfilled part.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
        }

        impl Write for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                uninit::poll_write(&self.io, cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                uninit::poll_write_vectored(&self.io, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(uninit::shutdown_write(self.shutdown(Shutdown::Write)))
            }
        }
    };
}

impl_hyper_io!(TcpStream);
impl_hyper_io!(UnixStream);
