//! `UnixDatagram`.

use crate::io::PollEvented;
use crate::reactor::scheduled_io::Direction;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// A Unix-domain datagram socket: message boundaries are kept, and
/// delivery on one host is reliable and ordered.
///
/// Like [`UdpSocket`](crate::net::UdpSocket): async `send`/`recv` (to the
/// connected peer) and `send_to`/`recv_from` (any path), and their
/// blocking-style `blocking_*` forms for fibers and plain threads.
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::UnixDatagram;
///
/// fiber_runtime::block_on(async {
///     let dir = std::env::temp_dir().join(format!("fr-doc-dgram-{}", std::process::id()));
///     std::fs::create_dir_all(&dir).unwrap();
///     let (pa, pb) = (dir.join("a"), dir.join("b"));
///     let _ = (std::fs::remove_file(&pa), std::fs::remove_file(&pb));
///     let a = UnixDatagram::bind(&pa).unwrap();
///     let b = UnixDatagram::bind(&pb).unwrap();
///     a.send_to(b"ping", &pb).await.unwrap();
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).await.unwrap();
///     assert_eq!(&buf[..n], b"ping");
///     assert_eq!(from.as_pathname(), Some(pa.as_path()));
///     std::fs::remove_dir_all(&dir).unwrap();
/// });
/// ```
pub struct UnixDatagram {
    io: PollEvented<mio::net::UnixDatagram>,
    /// The read half is shut down. A non-blocking receive on such a
    /// datagram socket fails with `EAGAIN` forever (Linux signals the end
    /// only to blocking receives and to `SEQPACKET`), while the socket
    /// polls readable: without this, a receive would spin. With it, a
    /// receive that finds the queue empty returns `Ok(0)`, as a blocking
    /// one does. (Only this socket's own `shutdown` can close its read
    /// half: a datagram peer's shutdown does not reach it.)
    read_shut: AtomicBool,
}

impl UnixDatagram {
    fn from_mio(s: mio::net::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            io: PollEvented::new(s)?,
            read_shut: AtomicBool::new(false),
        })
    }

    /// A receive's result: at the end of the queue of a socket whose read
    /// half is shut down, `eof` instead of `WouldBlock`.
    fn received<R>(&self, res: io::Result<R>, eof: impl FnOnce() -> R) -> io::Result<R> {
        match res {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && self.read_shut.load(Ordering::Acquire) =>
            {
                Ok(eof())
            }
            res => res,
        }
    }

    /// Binds a socket to the file `path` (which must not exist).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the file exists; other OS errors; an error of kind
    /// `Other` outside a runtime.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::from_mio(mio::net::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address: it can send (to a path, or after
    /// [`connect`](Self::connect)) but nobody can address it by name.
    ///
    /// # Errors
    ///
    /// OS errors; an error of kind `Other` outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = fiber_runtime::net::UnixDatagram::unbound().unwrap();
    ///     assert!(s.local_addr().unwrap().is_unnamed());
    /// });
    /// ```
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_mio(mio::net::UnixDatagram::unbound()?)
    }

    /// A connected pair of unnamed sockets.
    ///
    /// # Errors
    ///
    /// OS errors; an error of kind `Other` outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, b) = fiber_runtime::net::UnixDatagram::pair().unwrap();
    ///     a.send(b"one").await.unwrap();
    ///     a.send(b"two").await.unwrap();
    ///     let mut buf = [0; 8];
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 3);
    ///     assert_eq!(&buf[..3], b"one");
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 3);
    ///     assert_eq!(&buf[..3], b"two");
    /// });
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = mio::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_mio(a)?, UnixDatagram::from_mio(b)?))
    }

    /// Sets the default peer for [`send`](Self::send) and
    /// [`recv`](Self::recv), and filters received datagrams to it.
    ///
    /// # Errors
    ///
    /// `NotFound` / `ConnectionRefused` if no socket is bound at `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::UnixDatagram;
    ///
    /// fiber_runtime::block_on(async {
    ///     let path = std::env::temp_dir().join(format!("fr-doc-dc-{}", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let server = UnixDatagram::bind(&path).unwrap();
    ///     let client = UnixDatagram::unbound().unwrap();
    ///     client.connect(&path).unwrap();
    ///     assert_eq!(client.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
    ///     client.send(b"hi").await.unwrap();
    ///     let mut buf = [0; 2];
    ///     assert_eq!(server.recv(&mut buf).await.unwrap(), 2);
    ///     std::fs::remove_file(&path).unwrap();
    /// });
    /// ```
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.io.get_ref().connect(path)
    }

    /// Sends a datagram to the connected peer; returns the bytes sent.
    ///
    /// # Errors
    ///
    /// `NotConnected` without a peer; `BrokenPipe` after
    /// [`shutdown(Write)`](Self::shutdown); other OS errors.
    ///
    /// # Examples
    ///
    /// See [`pair`](Self::pair).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_write_io(cx, |s| s.send(buf))).await
    }

    /// Receives a datagram from the connected peer; returns its length
    /// (the rest of a datagram longer than `buf` is discarded). After
    /// [`shutdown(Read)`](Self::shutdown) it returns `Ok(0)` at once.
    ///
    /// # Examples
    ///
    /// See [`pair`](Self::pair).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            self.io
                .poll_read_io(cx, |s| self.received(s.recv(buf), || 0))
        })
        .await
    }

    /// Sends a datagram to the socket bound at `path`.
    ///
    /// # Errors
    ///
    /// `NotFound` / `ConnectionRefused` if nothing is bound there; other
    /// OS errors.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        poll_fn(|cx| self.io.poll_write_io(cx, |s| s.send_to(buf, path))).await
    }

    /// Receives a datagram; returns its length and its sender's address.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| {
            self.io
                .poll_read_io(cx, |s| self.received(s.recv_from(buf), unnamed_eof))
        })
        .await
    }

    /// Blocking-style [`send`](Self::send): suspends the fiber (inside
    /// one) or blocks a plain thread.
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread (use `.send(..).await`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::UnixDatagram};
    ///
    /// fiber_runtime::block_on(async {
    ///     let (a, b) = UnixDatagram::pair().unwrap();
    ///     let got = fiber::spawn(move || {
    ///         a.blocking_send(b"hey").unwrap();
    ///         let mut buf = [0; 8];
    ///         let n = b.blocking_recv(&mut buf).unwrap();
    ///         buf[..n].to_vec()
    ///     });
    ///     assert_eq!(got.await.unwrap(), b"hey");
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.blocking(
            Direction::Write,
            "UnixDatagram::blocking_send",
            "`.send(..).await`",
            |s| s.send(buf),
        )
    }

    /// Blocking-style [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// As [`blocking_send`](Self::blocking_send).
    ///
    /// # Examples
    ///
    /// See [`blocking_send`](Self::blocking_send).
    #[track_caller]
    pub fn blocking_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.blocking(
            Direction::Read,
            "UnixDatagram::blocking_recv",
            "`.recv(..).await`",
            |s| self.received(s.recv(buf), || 0),
        )
    }

    /// Blocking-style [`send_to`](Self::send_to).
    ///
    /// # Panics
    ///
    /// As [`blocking_send`](Self::blocking_send).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::UnixDatagram};
    ///
    /// fiber_runtime::block_on(async {
    ///     let path = std::env::temp_dir().join(format!("fr-doc-bst-{}", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let server = UnixDatagram::bind(&path).unwrap();
    ///     let p = path.clone();
    ///     let got = fiber::spawn(move || {
    ///         UnixDatagram::unbound().unwrap().blocking_send_to(b"x", &p).unwrap();
    ///         let mut buf = [0; 1];
    ///         server.blocking_recv_from(&mut buf).unwrap().0
    ///     });
    ///     assert_eq!(got.await.unwrap(), 1);
    ///     std::fs::remove_file(&path).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        self.io.blocking(
            Direction::Write,
            "UnixDatagram::blocking_send_to",
            "`.send_to(..).await`",
            |s| s.send_to(buf, path),
        )
    }

    /// Blocking-style [`recv_from`](Self::recv_from).
    ///
    /// # Panics
    ///
    /// As [`blocking_send`](Self::blocking_send).
    ///
    /// # Examples
    ///
    /// See [`blocking_send_to`](Self::blocking_send_to).
    #[track_caller]
    pub fn blocking_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.blocking(
            Direction::Read,
            "UnixDatagram::blocking_recv_from",
            "`.recv_from(..).await`",
            |s| self.received(s.recv_from(buf), unnamed_eof),
        )
    }

    /// The local address (unnamed for [`unbound`](Self::unbound) and
    /// [`pair`](Self::pair) sockets).
    ///
    /// # Examples
    ///
    /// See [`unbound`](Self::unbound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` without a peer.
    ///
    /// # Examples
    ///
    /// See [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, _b) = fiber_runtime::net::UnixDatagram::pair().unwrap();
    ///     assert!(a.take_error().unwrap().is_none());
    /// });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }

    /// Shuts down the read half (later receives return `Ok(0)` at once,
    /// and a receive waiting is woken with it), the write half (later
    /// sends fail with `BrokenPipe`), or both.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::Shutdown;
    ///
    /// fiber_runtime::block_on(async {
    ///     let (a, b) = fiber_runtime::net::UnixDatagram::pair().unwrap();
    ///     b.shutdown(Shutdown::Read).unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 0);
    ///     a.shutdown(Shutdown::Write).unwrap();
    ///     let err = a.send(b"x").await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    /// });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)?;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Wraps a socket from the standard library (made non-blocking here).
    ///
    /// # Errors
    ///
    /// The OS error of the registration with the reactor; an error of
    /// kind `Other` outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    ///     let a = fiber_runtime::net::UnixDatagram::from_std(a).unwrap();
    ///     let back: std::os::unix::net::UnixDatagram = a.into_std().unwrap();
    ///     assert!(back.local_addr().unwrap().is_unnamed());
    /// });
    /// ```
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        let s = UnixDatagram::from_mio(mio::net::UnixDatagram::from_std(socket))?;
        // Its read half may have been shut down before.
        if crate::io::read_closed_now(s.io.get_ref())? {
            s.read_shut.store(true, Ordering::Release);
        }
        Ok(s)
    }

    /// Deregisters the socket and returns it as a standard one (still
    /// non-blocking: call `set_nonblocking(false)` if needed).
    ///
    /// # Errors
    ///
    /// The OS error of deregistering it.
    ///
    /// # Examples
    ///
    /// See [`from_std`](Self::from_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        let mio = self.io.into_inner()?;
        Ok(std::os::unix::net::UnixDatagram::from(
            std::os::fd::OwnedFd::from(mio),
        ))
    }
}

/// The sender address of the `Ok(0)` a shut-down socket receives (what
/// a blocking `recvfrom(2)` reports then: unnamed).
fn unnamed_eof() -> (usize, SocketAddr) {
    let unnamed = SocketAddr::from_pathname("").expect("the empty path is a valid address");
    (0, unnamed)
}

crate::net::impl_as_fd!(UnixDatagram);

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
