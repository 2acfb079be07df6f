//! `UnixStream`.

use crate::io::PollEvented;
use crate::reactor::scheduled_io::Direction;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::SocketAddr;
use std::path::Path;

/// Whether a non-blocking `connect` finished (see the TCP one).
fn finish_connect(s: &mio::net::UnixStream) -> io::Result<()> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e),
    }
}

/// A Unix-domain stream connection; [`AsyncRead`](crate::io::AsyncRead)
/// and [`AsyncWrite`](crate::io::AsyncWrite) for `UnixStream` and
/// `&UnixStream`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
/// use fiber_runtime::net::UnixStream;
///
/// fiber_runtime::block_on(async {
///     let (mut a, mut b) = UnixStream::pair().unwrap();
///     a.write_all(b"hey").await.unwrap();
///     let mut buf = [0; 3];
///     b.read_exact(&mut buf).await.unwrap();
///     assert_eq!(&buf, b"hey");
/// });
/// ```
pub struct UnixStream {
    pub(crate) io: PollEvented<mio::net::UnixStream>,
}

impl UnixStream {
    pub(crate) fn from_mio(s: mio::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            io: PollEvented::new_stream(s)?,
        })
    }

    /// Connects to the socket file `path`.
    ///
    /// # Errors
    ///
    /// `NotFound` / `ConnectionRefused` when nothing listens there; other
    /// OS errors; an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let err = fiber_runtime::net::UnixStream::connect("/nonexistent/sock").await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    /// });
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let s = UnixStream::from_mio(mio::net::UnixStream::connect(path)?)?;
        poll_fn(|cx| s.io.poll_write_io(cx, finish_connect)).await?;
        Ok(s)
    }

    /// Blocking-style [`connect`](Self::connect): suspends the fiber
    /// (inside one) until connected, blocks a plain thread.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread (use
    /// `UnixStream::connect(..).await`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::{UnixListener, UnixStream}};
    ///
    /// fiber_runtime::block_on(async {
    ///     let path = std::env::temp_dir().join(format!("fr-doc-bc-{}", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let l = UnixListener::bind(&path).unwrap();
    ///     let p = path.clone();
    ///     let c = fiber::spawn(move || UnixStream::blocking_connect(p).map(|_| ()));
    ///     l.accept().await.unwrap();
    ///     c.await.unwrap().unwrap();
    ///     std::fs::remove_file(&path).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        const WHAT: &str = "UnixStream::blocking_connect";
        const INSTEAD: &str = "`UnixStream::connect(..).await`";
        crate::wait::caller(WHAT, INSTEAD, |_| ());
        let s = UnixStream::from_mio(mio::net::UnixStream::connect(path)?)?;
        s.io.blocking(Direction::Write, WHAT, INSTEAD, finish_connect)?;
        Ok(s)
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, _b) = fiber_runtime::net::UnixStream::pair().unwrap();
    ///     assert!(a.take_error().unwrap().is_none());
    /// });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }

    /// A connected pair of sockets.
    ///
    /// # Examples
    ///
    /// See [`UnixStream`].
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream::from_mio(a)?, UnixStream::from_mio(b)?))
    }

    /// The local address.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, _b) = fiber_runtime::net::UnixStream::pair().unwrap();
    ///     assert!(a.local_addr().unwrap().is_unnamed());
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The peer's address.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, _b) = fiber_runtime::net::UnixStream::pair().unwrap();
    ///     assert!(a.peer_addr().unwrap().is_unnamed());
    /// });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Shuts down the read half, the write half, or both.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::io::AsyncReadExt;
    ///
    /// fiber_runtime::block_on(async {
    ///     let (a, mut b) = fiber_runtime::net::UnixStream::pair().unwrap();
    ///     a.shutdown(std::net::Shutdown::Write).unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(b.read(&mut buf).await.unwrap(), 0);
    /// });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }

    /// Wraps a stream from the standard library (made non-blocking here).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    ///     let a = fiber_runtime::net::UnixStream::from_std(a).unwrap();
    ///     let _std = a.into_std().unwrap();
    /// });
    /// ```
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        UnixStream::from_mio(mio::net::UnixStream::from_std(stream))
    }

    /// Deregisters the stream and returns it as a standard one (still
    /// non-blocking).
    ///
    /// # Examples
    ///
    /// See [`from_std`](Self::from_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        let mio = self.io.into_inner()?;
        Ok(std::os::unix::net::UnixStream::from(
            std::os::fd::OwnedFd::from(mio),
        ))
    }
}

crate::net::impl_async_read_write!(UnixStream);

crate::net::impl_as_fd!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
