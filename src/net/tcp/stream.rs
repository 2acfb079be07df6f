//! `TcpStream`.

use crate::io::PollEvented;
use crate::net::ToSocketAddrs;
use crate::net::addr;
use crate::reactor::scheduled_io::Direction;
use crate::wait;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;

/// Whether a non-blocking `connect` finished: `Ok` once connected, its
/// error if it failed, `WouldBlock` while it is in progress (or the
/// writability was spurious).
fn finish_connect(s: &mio::net::TcpStream) -> io::Result<()> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e),
    }
}

/// A TCP connection.
///
/// Implements [`AsyncRead`](crate::io::AsyncRead) and
/// [`AsyncWrite`](crate::io::AsyncWrite) for `TcpStream` and `&TcpStream`.
/// Reads after the peer shut down its side return `Ok(0)`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
/// use fiber_runtime::net::{TcpListener, TcpStream};
///
/// fiber_runtime::block_on(async {
///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = l.local_addr().unwrap();
///     let echo = fiber_runtime::spawn(async move {
///         let (mut s, _) = l.accept().await.unwrap();
///         let mut buf = Vec::new();
///         s.read_to_end(&mut buf).await.unwrap();
///         s.write_all(&buf).await.unwrap();
///     });
///     let mut c = TcpStream::connect(addr).await.unwrap();
///     c.write_all(b"abc").await.unwrap();
///     c.shutdown(std::net::Shutdown::Write).unwrap();
///     let mut back = String::new();
///     c.read_to_string(&mut back).await.unwrap();
///     assert_eq!(back, "abc");
///     echo.await.unwrap();
/// });
/// ```
pub struct TcpStream {
    pub(crate) io: PollEvented<mio::net::TcpStream>,
}

impl TcpStream {
    pub(crate) fn from_mio(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: PollEvented::new_stream(stream)?,
        })
    }

    /// Connects to `addr`, trying each resolved address in turn.
    ///
    /// A host name (`"localhost:80"`) is resolved on the runtime's
    /// blocking pool, never on a worker (see
    /// [`ToSocketAddrs`](crate::net::ToSocketAddrs)). Dropping the future
    /// abandons the attempt and closes its socket.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens there; any other OS error
    /// of `connect` (of the last address tried); the resolver's error for
    /// a name that does not resolve; an error of kind `Other` outside a
    /// runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     // Bind then drop a listener to find a port nobody listens on.
    ///     let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    ///     let err = fiber_runtime::net::TcpStream::connect(port).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    /// });
    /// ```
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addrs = addr::resolve(&addr).await?;
        addr::each_addr_async(addrs, |a| async move {
            TcpStream::connect_mio(mio::net::TcpStream::connect(a)?).await
        })
        .await
    }

    /// Registers `stream`, whose non-blocking `connect` was issued, and
    /// waits until the connection is established or failed.
    pub(crate) async fn connect_mio(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
        let stream = TcpStream::from_mio(stream)?;
        // Writable means the attempt finished, either way.
        poll_fn(|cx| stream.io.poll_write_io(cx, finish_connect)).await?;
        Ok(stream)
    }

    /// Blocking-style [`connect`](Self::connect): suspends the fiber
    /// (inside one) until connected, blocks a plain thread. A host name is
    /// resolved on the blocking pool in a fiber, inline on a plain thread.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread (use
    /// `TcpStream::connect(..).await`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::{TcpListener, TcpStream}};
    /// use std::io::{Read, Write};
    ///
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let port = l.local_addr().unwrap().port();
    ///     let client = fiber::spawn(move || {
    ///         let mut c = TcpStream::blocking_connect(("localhost", port)).unwrap();
    ///         c.write_all(b"hi").unwrap();
    ///     });
    ///     let (mut s, _) = l.accept().await.unwrap();
    ///     client.await.unwrap();
    ///     let mut buf = Vec::new();
    ///     fiber_runtime::io::AsyncReadExt::read_to_end(&mut s, &mut buf).await.unwrap();
    ///     assert_eq!(buf, b"hi");
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        const WHAT: &str = "TcpStream::blocking_connect";
        const INSTEAD: &str = "`TcpStream::connect(..).await`";
        // Refuse an async task before any socket is made.
        wait::caller(WHAT, INSTEAD, |_| ());
        let addrs = addr::resolve_blocking(&addr, WHAT, INSTEAD)?;
        addr::each_addr(addrs, |a| {
            let stream = TcpStream::from_mio(mio::net::TcpStream::connect(a)?)?;
            stream
                .io
                .blocking(Direction::Write, WHAT, INSTEAD, finish_connect)?;
            Ok(stream)
        })
    }

    /// The peer's address.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     let c = TcpStream::connect(addr).await.unwrap();
    ///     assert_eq!(c.peer_addr().unwrap(), addr);
    /// });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// The local address.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     assert!(c.local_addr().unwrap().ip().is_loopback());
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     c.set_nodelay(true).unwrap();
    ///     assert!(c.nodelay().unwrap());
    /// });
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let _ = c.nodelay().unwrap();
    /// });
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get_ref().nodelay()
    }

    /// Sets the IP time-to-live (`IP_TTL`) of outgoing packets.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     c.set_ttl(42).unwrap();
    ///     assert_eq!(c.ttl().unwrap(), 42);
    /// });
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get_ref().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    ///
    /// # Examples
    ///
    /// See [`set_ttl`](Self::set_ttl).
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get_ref().ttl()
    }

    /// Sets `SO_LINGER`: with `Some(d)`, closing the socket waits up to
    /// `d` for unsent data (in the kernel; the close itself does not
    /// block since the socket is non-blocking, see `socket(7)`);
    /// `Some(Duration::ZERO)` resets the connection on close; `None`
    /// turns lingering off.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     assert_eq!(c.linger().unwrap(), None);
    ///     c.set_linger(Some(Duration::from_secs(1))).unwrap();
    ///     assert_eq!(c.linger().unwrap(), Some(Duration::from_secs(1)));
    /// });
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(self).set_linger(linger)
    }

    /// Reads `SO_LINGER` (see [`set_linger`](Self::set_linger)).
    ///
    /// # Examples
    ///
    /// See [`set_linger`](Self::set_linger).
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        socket2::SockRef::from(self).linger()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     assert!(c.take_error().unwrap().is_none());
    /// });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }

    /// Reads received data into `buf` without removing it from the
    /// socket's queue: the next read or peek sees it again. Waits until
    /// data (or the end of the stream, `Ok(0)`) is there.
    ///
    /// # Errors
    ///
    /// The OS error of `recv(MSG_PEEK)`, such as `ConnectionReset`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
    /// use fiber_runtime::net::{TcpListener, TcpStream};
    ///
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let (mut s, _) = l.accept().await.unwrap();
    ///     c.write_all(b"GET").await.unwrap();
    ///     let mut buf = [0; 3];
    ///     assert_eq!(s.peek(&mut buf).await.unwrap(), 3);
    ///     let mut again = [0; 3];
    ///     s.read_exact(&mut again).await.unwrap();
    ///     assert_eq!((&buf, &again), (b"GET", b"GET"));
    /// });
    /// ```
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_peek(cx, buf)).await
    }

    /// Polls for [`peek`](Self::peek): `Pending` (with the waker stored
    /// for the read direction) until data is there.
    ///
    /// # Errors
    ///
    /// As [`peek`](Self::peek).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// use std::future::poll_fn;
    ///
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let (s, _) = l.accept().await.unwrap();
    ///     fiber_runtime::io::AsyncWriteExt::write_all(&mut &c, b"x").await.unwrap();
    ///     let mut buf = [0; 1];
    ///     let n = poll_fn(|cx| s.poll_peek(cx, &mut buf)).await.unwrap();
    ///     assert_eq!(&buf[..n], b"x");
    /// });
    /// ```
    pub fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io.poll_read_stream(
            cx,
            len,
            true,
            crate::io::read_into(buf, |s: &mio::net::TcpStream, b: &mut [u8]| s.peek(b)),
        )
    }

    /// Shuts down the read half, the write half, or both.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// use fiber_runtime::io::AsyncReadExt;
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let (mut s, _) = l.accept().await.unwrap();
    ///     c.shutdown(std::net::Shutdown::Write).unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(s.read(&mut buf).await.unwrap(), 0);
    /// });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }

    /// Wraps a stream from the standard library (made non-blocking here).
    ///
    /// # Errors
    ///
    /// The OS error of making it non-blocking, or of the registration
    /// with the reactor (under [`IoDriver::Uring`](crate::IoDriver) the
    /// stream registers at its first use instead, and that operation
    /// returns the error).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let std_s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    ///     let s = fiber_runtime::net::TcpStream::from_std(std_s).unwrap();
    ///     assert!(s.peer_addr().is_ok());
    /// });
    /// ```
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_mio(mio::net::TcpStream::from_std(stream))
    }

    /// Deregisters the stream and returns it as a standard one (still in
    /// non-blocking mode: call `set_nonblocking(false)` if needed).
    ///
    /// # Errors
    ///
    /// The OS error of deregistering it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::net::{TcpListener, TcpStream};
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let s: std::net::TcpStream = c.into_std().unwrap();
    ///     assert!(s.peer_addr().is_ok());
    /// });
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let mio = self.io.into_inner()?;
        Ok(std::net::TcpStream::from(std::os::fd::OwnedFd::from(mio)))
    }
}

crate::net::impl_async_read_write!(TcpStream);
crate::net::impl_as_fd!(TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
