//! `UdpSocket`.

use crate::io::PollEvented;
use crate::net::{ToSocketAddrs, addr};
use crate::reactor::scheduled_io::Direction;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;

/// A UDP socket.
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::UdpSocket;
///
/// fiber_runtime::block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
///     a.send_to(b"hi", b.local_addr().unwrap()).await.unwrap();
///     let mut buf = [0; 8];
///     let (n, from) = b.recv_from(&mut buf).await.unwrap();
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
/// });
/// ```
pub struct UdpSocket {
    io: PollEvented<mio::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds a socket to `addr` (port 0 picks a free port).
    ///
    /// Synchronous: a numeric address never blocks; a host name is
    /// resolved inline, except in a fiber (on the blocking pool, the fiber
    /// waiting).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if taken; `InvalidInput` for a string that is not
    /// `host:port`; other OS errors; an error of kind `Other` outside a
    /// runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = fiber_runtime::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     assert_ne!(s.local_addr().unwrap().port(), 0);
    /// });
    /// ```
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let sock = addr::each_addr(addr::resolve_sync(&addr)?, mio::net::UdpSocket::bind)?;
        Ok(UdpSocket {
            io: PollEvented::new(sock)?,
        })
    }

    /// Sets the default peer for [`send`](Self::send) and
    /// [`recv`](Self::recv), and filters received datagrams to it.
    /// Synchronous, resolving as [`bind`](Self::bind) does.
    ///
    /// # Errors
    ///
    /// The OS error of `connect(2)` for the last address tried; the
    /// resolver's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::UdpSocket;
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.connect(b.local_addr().unwrap()).unwrap();
    ///     b.connect(a.local_addr().unwrap()).unwrap();
    ///     a.send(b"x").await.unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 1);
    /// });
    /// ```
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        addr::each_addr(addr::resolve_sync(&addr)?, |a| self.io.get_ref().connect(a))
    }

    /// Sends a datagram to `target` (its first address, a host name
    /// resolved on the blocking pool); returns the bytes sent.
    ///
    /// # Errors
    ///
    /// The OS error of `sendto(2)`; the resolver's error.
    ///
    /// # Examples
    ///
    /// See [`UdpSocket`].
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = addr::first(addr::resolve(&target).await?)?;
        poll_fn(|cx| self.io.poll_write_io(cx, |s| s.send_to(buf, target))).await
    }

    /// Receives a datagram; returns its length and sender.
    ///
    /// # Examples
    ///
    /// See [`UdpSocket`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.io.poll_read_io(cx, |s| s.recv_from(buf))).await
    }

    /// Blocking-style [`send_to`](Self::send_to): suspends the fiber
    /// (inside one) or blocks a plain thread; panics in an async task.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::UdpSocket};
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let to = b.local_addr().unwrap();
    ///     let got = fiber::spawn(move || {
    ///         a.blocking_send_to(b"hi", to).unwrap();
    ///         let mut buf = [0; 2];
    ///         b.blocking_recv_from(&mut buf).unwrap().0
    ///     });
    ///     assert_eq!(got.await.unwrap(), 2);
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        const WHAT: &str = "UdpSocket::blocking_send_to";
        const INSTEAD: &str = "`.send_to(..).await`";
        crate::wait::caller(WHAT, INSTEAD, |_| ());
        let target = addr::first(addr::resolve_blocking(&target, WHAT, INSTEAD)?)?;
        self.io
            .blocking(Direction::Write, WHAT, INSTEAD, |s| s.send_to(buf, target))
    }

    /// Blocking-style [`recv_from`](Self::recv_from).
    ///
    /// # Examples
    ///
    /// See [`blocking_send_to`](Self::blocking_send_to).
    #[track_caller]
    pub fn blocking_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.blocking(
            Direction::Read,
            "UdpSocket::blocking_recv_from",
            "`.recv_from(..).await`",
            |s| s.recv_from(buf),
        )
    }

    /// Blocking-style [`send`](Self::send): suspends the fiber (inside
    /// one) or blocks a plain thread; panics in an async task.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::UdpSocket};
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.connect(b.local_addr().unwrap()).unwrap();
    ///     b.connect(a.local_addr().unwrap()).unwrap();
    ///     let got = fiber::spawn(move || {
    ///         a.blocking_send(b"hey").unwrap();
    ///         let mut buf = [0; 3];
    ///         b.blocking_recv(&mut buf).unwrap()
    ///     });
    ///     assert_eq!(got.await.unwrap(), 3);
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.blocking(
            Direction::Write,
            "UdpSocket::blocking_send",
            "`.send(..).await`",
            |s| s.send(buf),
        )
    }

    /// Blocking-style [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// See [`blocking_send`](Self::blocking_send).
    #[track_caller]
    pub fn blocking_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.blocking(
            Direction::Read,
            "UdpSocket::blocking_recv",
            "`.recv(..).await`",
            |s| s.recv(buf),
        )
    }

    /// Receives the next datagram into `buf` without taking it off the
    /// queue: the next receive or peek gets it again. Returns its length
    /// (cut to `buf`) and sender.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::UdpSocket;
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.send_to(b"hi", b.local_addr().unwrap()).await.unwrap();
    ///     let mut buf = [0; 8];
    ///     let (n, from) = b.peek_from(&mut buf).await.unwrap();
    ///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
    ///     assert_eq!(b.recv_from(&mut buf).await.unwrap(), (n, from));
    /// });
    /// ```
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.io.poll_read_io(cx, |s| s.peek_from(buf))).await
    }

    /// As [`peek_from`](Self::peek_from), from the connected peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::UdpSocket;
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     b.connect(a.local_addr().unwrap()).unwrap();
    ///     a.send_to(b"x", b.local_addr().unwrap()).await.unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(b.peek(&mut buf).await.unwrap(), 1);
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 1);
    /// });
    /// ```
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_read_io(cx, |s| s.peek(buf))).await
    }

    /// Sets the IP time-to-live (`IP_TTL`) of outgoing datagrams.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = fiber_runtime::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     s.set_ttl(9).unwrap();
    ///     assert_eq!(s.ttl().unwrap(), 9);
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

    /// Sets `SO_BROADCAST`.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = fiber_runtime::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     s.set_broadcast(true).unwrap();
    ///     assert!(s.broadcast().unwrap());
    /// });
    /// ```
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_broadcast(on)
    }

    /// Reads `SO_BROADCAST`.
    ///
    /// # Examples
    ///
    /// See [`set_broadcast`](Self::set_broadcast).
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.get_ref().broadcast()
    }

    /// Takes the pending socket error (`SO_ERROR`), such as the
    /// `ConnectionRefused` an ICMP reply to an earlier send left.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = fiber_runtime::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     assert!(s.take_error().unwrap().is_none());
    /// });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Examples
    ///
    /// See [`connect`](Self::connect).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_write_io(cx, |s| s.send(buf))).await
    }

    /// Receives a datagram from the connected peer.
    ///
    /// # Examples
    ///
    /// See [`connect`](Self::connect).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_read_io(cx, |s| s.recv(buf))).await
    }

    /// The local address.
    ///
    /// # Examples
    ///
    /// See [`bind`](Self::bind).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::UdpSocket;
    ///
    /// fiber_runtime::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     assert!(a.peer_addr().is_err());
    ///     a.connect("127.0.0.1:9").unwrap();
    ///     assert_eq!(a.peer_addr().unwrap().port(), 9);
    /// });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Wraps a socket from the standard library (made non-blocking here).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let s = fiber_runtime::net::UdpSocket::from_std(s).unwrap();
    ///     assert!(s.local_addr().is_ok());
    /// });
    /// ```
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            io: PollEvented::new(mio::net::UdpSocket::from_std(socket))?,
        })
    }

    /// Deregisters the socket and returns it as a standard one (still
    /// non-blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let s = fiber_runtime::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let addr = s.local_addr().unwrap();
    ///     assert_eq!(s.into_std().unwrap().local_addr().unwrap(), addr);
    /// });
    /// ```
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        let mio = self.io.into_inner()?;
        Ok(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(mio)))
    }
}

crate::net::impl_as_fd!(UdpSocket);

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
