//! Feature `tokio-io`: `tokio::io::AsyncRead` and `AsyncWrite` for the
//! stream types and their shared references, so tokio-util codecs,
//! tokio-rustls and hyper-util's `TokioIo` run on this runtime's sockets.
//!
//! Reads go straight into the uninitialised part of tokio's `ReadBuf`
//! (no zero-fill); writes are vectored; `poll_shutdown` shuts down the
//! write half and treats `NotConnected` as success, as tokio does.

use super::{TcpStream, UnixStream};
use crate::io::uninit;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

macro_rules! impl_tokio_io {
    ($ty:ty) => {
        impl AsyncRead for &$ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                // SAFETY: `poll_read_uninit` only writes into the slice (a
                // socket `recv`), never de-initialises bytes.
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = ready!(uninit::poll_read_uninit(&self.io, cx, unfilled))?;
                // SAFETY: `recv` initialised the first `n` bytes of the
                // unfilled part.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }

        impl AsyncWrite for &$ty {
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

        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut &*self).poll_read(cx, buf)
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut &*self).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut &*self).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut &*self).poll_shutdown(cx)
            }
        }
    };
}

impl_tokio_io!(TcpStream);
impl_tokio_io!(UnixStream);
