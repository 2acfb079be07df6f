//! `TcpStream`.

use crate::io::PollEvented;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::task::Poll;

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
            io: PollEvented::new(stream)?,
        })
    }

    /// Connects to `addr`, trying each resolved address in turn.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens there; any other OS error
    /// of `connect`; an error if called outside a runtime.
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
        let mut last = None;
        for a in super::super::resolve(addr)? {
            match TcpStream::connect_one(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returned at least one address"))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        // Writable means the connection attempt finished, either way.
        poll_fn(|cx| stream.io.poll_write_ready(cx)).await?;
        if let Some(e) = stream.io.get_ref().take_error()? {
            return Err(e);
        }
        match stream.io.get_ref().peer_addr() {
            Ok(_) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                // Spurious writability: wait for the real outcome.
                poll_fn(|cx| match stream.io.get_ref().peer_addr() {
                    Ok(_) => Poll::Ready(Ok(())),
                    Err(_) => stream.io.poll_write_ready(cx).map(|r| {
                        r.and_then(|()| match stream.io.get_ref().take_error()? {
                            Some(e) => Err(e),
                            None => Ok(()),
                        })
                    }),
                })
                .await?;
                Ok(stream)
            }
            Err(e) => Err(e),
        }
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
    /// The OS error of the registration with the reactor.
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
        // SAFETY: the descriptor comes from a mio stream we own and give up
        // here, so the std stream is its only owner.
        Ok(unsafe { std::net::TcpStream::from_raw_fd(mio.into_raw_fd()) })
    }
}

crate::net::impl_async_read_write!(TcpStream);

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.get_ref().as_raw_fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
