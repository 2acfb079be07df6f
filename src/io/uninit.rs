//! Reads into uninitialised memory and the stream-level operations the
//! adapters (`hyper`, `tokio-io`) share with the `futures-io` impls.

use super::PollEvented;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::task::{Context, Poll};

/// Reads from a stream socket into `buf`, which need not be initialised:
/// no zero-fill before the read. `Ok(n)` means the first `n` bytes of
/// `buf` are now initialised.
#[cfg_attr(not(any(feature = "hyper", feature = "tokio-io")), allow(dead_code))]
pub(crate) fn poll_read_uninit<E: mio::event::Source + AsFd + std::os::fd::AsRawFd>(
    io: &PollEvented<E>,
    cx: &mut Context<'_>,
    buf: &mut [MaybeUninit<u8>],
) -> Poll<io::Result<usize>> {
    let len = buf.len();
    let mut filled = 0;
    io.poll_read_stream(cx, len, false, |src| match src {
        super::ReadSrc::Socket(s) => socket2::SockRef::from(s).recv(&mut buf[filled..]),
        super::ReadSrc::Bytes(b) => {
            let n = b.len().min(len - filled);
            for (d, &v) in buf[filled..filled + n].iter_mut().zip(b) {
                d.write(v);
            }
            filled += n;
            Ok(n)
        }
    })
}

/// A write on a stream socket (a short write means the send buffer is
/// full).
pub(crate) fn poll_write<E: mio::event::Source + std::os::fd::AsRawFd>(
    io: &PollEvented<E>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>>
where
    for<'a> &'a E: io::Write,
{
    io.poll_write_stream(cx, buf.len(), |mut s| io::Write::write(&mut s, buf))
}

/// A vectored write on a stream socket.
pub(crate) fn poll_write_vectored<E: mio::event::Source + std::os::fd::AsRawFd>(
    io: &PollEvented<E>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>>
where
    for<'a> &'a E: io::Write,
{
    let len = vectored_len(bufs);
    io.poll_write_stream(cx, len, |mut s| io::Write::write_vectored(&mut s, bufs))
}

/// The bytes one `writev` may take from `bufs`: std sends at most the
/// first `IOV_MAX` slices, so a write shorter than *this* (not than the
/// sum of all slices) means the send buffer is full.
pub(crate) fn vectored_len(bufs: &[IoSlice<'_>]) -> usize {
    /// Linux's `IOV_MAX` (`UIO_MAXIOV`), the limit std's `write_vectored`
    /// truncates to.
    const IOV_MAX: usize = 1024;
    bufs.iter().take(IOV_MAX).map(|b| b.len()).sum()
}

/// Shuts down the write half: `NotConnected` (the peer already closed
/// or reset the connection) counts as success, as in tokio, since there
/// is nothing left to shut down.
pub(crate) fn shutdown_write(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        res => res,
    }
}
