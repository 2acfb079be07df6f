//! `TcpSocket`: a TCP socket not yet connected or listening, to set
//! options on first.

use super::listener::TcpListener;
use super::stream::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A TCP socket that is neither connected nor listening yet: set its
/// options, [`bind`](Self::bind) it if needed, then turn it into a
/// [`TcpStream`] with [`connect`](Self::connect) or into a
/// [`TcpListener`] with [`listen`](Self::listen) (the shape of tokio's
/// `TcpSocket`, on `socket2`).
///
/// Making one and setting its options needs no runtime; `connect` and
/// `listen` register the socket with the current runtime's reactor.
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::TcpSocket;
///
/// fiber_runtime::block_on(async {
///     let socket = TcpSocket::new_v4().unwrap();
///     socket.set_reuseaddr(true).unwrap();
///     socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
///     let listener = socket.listen(16).unwrap();
///     let addr = listener.local_addr().unwrap();
///
///     let client = TcpSocket::new_v4().unwrap();
///     client.set_nodelay(true).unwrap();
///     let stream = client.connect(addr).await.unwrap();
///     assert!(stream.nodelay().unwrap());
///     assert_eq!(stream.peer_addr().unwrap(), addr);
/// });
/// ```
#[derive(Debug)]
pub struct TcpSocket {
    inner: Socket,
}

impl TcpSocket {
    fn new(domain: Domain) -> io::Result<TcpSocket> {
        // socket2 sets `SOCK_CLOEXEC`.
        let inner = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        inner.set_nonblocking(true)?;
        Ok(TcpSocket { inner })
    }

    /// A new IPv4 TCP socket.
    ///
    /// # Errors
    ///
    /// The OS error of `socket(2)` (such as `EMFILE`).
    ///
    /// # Examples
    ///
    /// See [`TcpSocket`].
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket.
    ///
    /// # Errors
    ///
    /// The OS error of `socket(2)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v6().unwrap();
    /// s.set_reuseaddr(true).unwrap();
    /// ```
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    /// Sets `SO_REUSEADDR`: bind to an address that a socket closed
    /// recently (in `TIME_WAIT`) still holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// s.set_reuseaddr(true).unwrap();
    /// assert!(s.reuseaddr().unwrap());
    /// ```
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.inner.set_reuse_address(reuseaddr)
    }

    /// Reads `SO_REUSEADDR`.
    ///
    /// # Examples
    ///
    /// See [`set_reuseaddr`](Self::set_reuseaddr).
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.inner.reuse_address()
    }

    /// Sets `SO_REUSEPORT`: several sockets (all with it set) may bind the
    /// same address and port; the kernel spreads connections over them.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::TcpSocket;
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = TcpSocket::new_v4().unwrap();
    ///     a.set_reuseport(true).unwrap();
    ///     assert!(a.reuseport().unwrap());
    ///     a.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     let addr = a.local_addr().unwrap();
    ///     let b = TcpSocket::new_v4().unwrap();
    ///     b.set_reuseport(true).unwrap();
    ///     b.bind(addr).unwrap(); // the same port, twice
    ///     let (_la, _lb) = (a.listen(8).unwrap(), b.listen(8).unwrap());
    /// });
    /// ```
    #[cfg(not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin")))]
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.inner.set_reuse_port(reuseport)
    }

    /// Reads `SO_REUSEPORT`.
    ///
    /// # Examples
    ///
    /// See [`set_reuseport`](Self::set_reuseport).
    #[cfg(not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin")))]
    pub fn reuseport(&self) -> io::Result<bool> {
        self.inner.reuse_port()
    }

    /// Sets the size of the send buffer (`SO_SNDBUF`). The kernel may
    /// round it (Linux doubles it, for its bookkeeping, and clamps it to
    /// `net.core.wmem_max`): read it back with
    /// [`send_buffer_size`](Self::send_buffer_size).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// s.set_send_buffer_size(64 * 1024).unwrap();
    /// assert!(s.send_buffer_size().unwrap() >= 64 * 1024);
    /// ```
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.inner.set_send_buffer_size(size as usize)
    }

    /// Reads `SO_SNDBUF`.
    ///
    /// # Examples
    ///
    /// See [`set_send_buffer_size`](Self::set_send_buffer_size).
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.inner
            .send_buffer_size()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Sets the size of the receive buffer (`SO_RCVBUF`); rounded by the
    /// kernel as [`set_send_buffer_size`](Self::set_send_buffer_size).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// s.set_recv_buffer_size(64 * 1024).unwrap();
    /// assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
    /// ```
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.inner.set_recv_buffer_size(size as usize)
    }

    /// Reads `SO_RCVBUF`.
    ///
    /// # Examples
    ///
    /// See [`set_recv_buffer_size`](Self::set_recv_buffer_size).
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.inner
            .recv_buffer_size()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Sets `SO_LINGER` (see [`TcpStream::set_linger`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// assert_eq!(s.linger().unwrap(), None);
    /// s.set_linger(Some(Duration::ZERO)).unwrap();
    /// assert_eq!(s.linger().unwrap(), Some(Duration::ZERO));
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.inner.set_linger(linger)
    }

    /// Reads `SO_LINGER`.
    ///
    /// # Examples
    ///
    /// See [`set_linger`](Self::set_linger).
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.inner.linger()
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Examples
    ///
    /// See [`TcpSocket`].
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// assert!(!s.nodelay().unwrap());
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.tcp_nodelay()
    }

    /// Sets `SO_KEEPALIVE` (the kernel's keep-alive probes on an idle
    /// connection).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// s.set_keepalive(true).unwrap();
    /// assert!(s.keepalive().unwrap());
    /// ```
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.inner.set_keepalive(keepalive)
    }

    /// Reads `SO_KEEPALIVE`.
    ///
    /// # Examples
    ///
    /// See [`set_keepalive`](Self::set_keepalive).
    pub fn keepalive(&self) -> io::Result<bool> {
        self.inner.keepalive()
    }

    /// Binds the socket to `addr` (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if taken (and not shareable: see
    /// [`set_reuseport`](Self::set_reuseport)); `InvalidInput` /
    /// `AddrNotAvailable` for an address of the other family or not of
    /// this host; other OS errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert_ne!(s.local_addr().unwrap().port(), 0);
    /// ```
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.bind(&SockAddr::from(addr))
    }

    /// The local address (after [`bind`](Self::bind); unspecified before).
    ///
    /// # Examples
    ///
    /// See [`bind`](Self::bind).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket address"))
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = fiber_runtime::net::TcpSocket::new_v4().unwrap();
    /// assert!(s.take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    /// Connects to `addr`, turning the socket into a [`TcpStream`] with the
    /// options set on it. Dropping the future abandons the attempt and
    /// closes the socket.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens there; other OS errors of
    /// `connect`; an error of kind `Other` outside a runtime.
    ///
    /// # Examples
    ///
    /// See [`TcpSocket`].
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        match self.inner.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream = std::net::TcpStream::from(self.inner);
        TcpStream::connect_mio(mio::net::TcpStream::from_std(stream)).await
    }

    /// Starts listening, with room for `backlog` connections not yet
    /// accepted (the kernel caps it at `net.core.somaxconn`), turning the
    /// socket into a [`TcpListener`]. An unbound socket listens on a free
    /// port of every address.
    ///
    /// # Errors
    ///
    /// The OS error of `listen(2)`; an error of kind `Other` outside a
    /// runtime.
    ///
    /// # Examples
    ///
    /// See [`TcpSocket`].
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        self.inner
            .listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        TcpListener::from_std(std::net::TcpListener::from(self.inner))
    }

    /// Wraps a standard TCP stream as a socket, to read or set its options
    /// (made non-blocking here).
    ///
    /// # Examples
    ///
    /// ```
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let socket = fiber_runtime::net::TcpSocket::from_std_stream(s);
    /// socket.set_nodelay(true).unwrap();
    /// assert!(socket.nodelay().unwrap());
    /// ```
    pub fn from_std_stream(stream: std::net::TcpStream) -> TcpSocket {
        let inner = Socket::from(stream);
        // Only fails for a descriptor that is not a socket, which a
        // `TcpStream` cannot hold.
        let _ = inner.set_nonblocking(true);
        TcpSocket { inner }
    }
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl FromRawFd for TcpSocket {
    /// Wraps the TCP socket descriptor `fd` (made non-blocking here).
    ///
    /// # Safety
    ///
    /// `fd` must be an open socket descriptor that nothing else owns: the
    /// `TcpSocket` closes it.
    unsafe fn from_raw_fd(fd: RawFd) -> TcpSocket {
        // SAFETY: the caller hands over sole ownership of the open
        // descriptor `fd` (this function's contract).
        let inner = unsafe { Socket::from_raw_fd(fd) };
        // `connect` must not block; an error here (not a socket) shows
        // at the first use.
        let _ = inner.set_nonblocking(true);
        TcpSocket { inner }
    }
}

impl IntoRawFd for TcpSocket {
    fn into_raw_fd(self) -> RawFd {
        self.inner.into_raw_fd()
    }
}

impl From<TcpSocket> for OwnedFd {
    fn from(s: TcpSocket) -> OwnedFd {
        s.inner.into()
    }
}
