//! `UnixListener`.

use super::stream::UnixStream;
use crate::io::PollEvented;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::unix::net::SocketAddr;
use std::path::Path;

/// A Unix-domain socket listening for connections.
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::{UnixListener, UnixStream};
///
/// fiber_runtime::block_on(async {
///     let dir = std::env::temp_dir().join(format!("fr-doc-{}", std::process::id()));
///     std::fs::create_dir_all(&dir).unwrap();
///     let path = dir.join("sock");
///     let _ = std::fs::remove_file(&path);
///     let l = UnixListener::bind(&path).unwrap();
///     let p = path.clone();
///     let c = fiber_runtime::spawn(async move { UnixStream::connect(p).await.unwrap() });
///     let (_s, _addr) = l.accept().await.unwrap();
///     c.await.unwrap();
///     std::fs::remove_dir_all(&dir).unwrap();
/// });
/// ```
pub struct UnixListener {
    io: PollEvented<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to the socket file `path` (which must not exist).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the file exists; other OS errors; an error outside a
    /// runtime.
    ///
    /// # Examples
    ///
    /// See [`UnixListener`].
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: PollEvented::new(mio::net::UnixListener::bind(path)?)?,
        })
    }

    /// Waits for a connection.
    ///
    /// # Examples
    ///
    /// See [`UnixListener`].
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = poll_fn(|cx| self.io.poll_read_io(cx, |l| l.accept())).await?;
        Ok((UnixStream::from_mio(s)?, addr))
    }

    /// Blocking-style [`accept`](Self::accept): suspends the fiber (inside
    /// one) or blocks a plain thread; panics in an async task.
    ///
    /// # Examples
    ///
    /// See [`TcpListener::blocking_accept`](crate::net::TcpListener::blocking_accept).
    #[track_caller]
    pub fn blocking_accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self.io.blocking(
            crate::reactor::scheduled_io::Direction::Read,
            "UnixListener::blocking_accept",
            "`.accept().await`",
            |l| l.accept(),
        )?;
        Ok((UnixStream::from_mio(s)?, addr))
    }

    /// The local address.
    ///
    /// # Examples
    ///
    /// See [`UnixListener`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let path = std::env::temp_dir().join(format!("fr-doc-te-{}", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let l = fiber_runtime::net::UnixListener::bind(&path).unwrap();
    ///     assert!(l.take_error().unwrap().is_none());
    ///     std::fs::remove_file(&path).unwrap();
    /// });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }

    /// Wraps a listener from the standard library (made non-blocking here).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let path = std::env::temp_dir().join(format!("fr-doc-l-{}", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    ///     let l = fiber_runtime::net::UnixListener::from_std(l).unwrap();
    ///     let back = l.into_std().unwrap();
    ///     assert!(back.local_addr().is_ok());
    ///     std::fs::remove_file(&path).unwrap();
    /// });
    /// ```
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener {
            io: PollEvented::new(mio::net::UnixListener::from_std(listener))?,
        })
    }

    /// Deregisters the listener and returns it as a standard one (still
    /// non-blocking).
    ///
    /// # Examples
    ///
    /// See [`from_std`](Self::from_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        let mio = self.io.into_inner()?;
        Ok(std::os::unix::net::UnixListener::from(
            std::os::fd::OwnedFd::from(mio),
        ))
    }
}

crate::net::impl_as_fd!(UnixListener);

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
