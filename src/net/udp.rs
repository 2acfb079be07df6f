//! `UdpSocket`.

use crate::io::PollEvented;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};

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
    /// # Errors
    ///
    /// `AddrInUse` if taken; other OS errors; an error outside a runtime.
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
        let sock = super::each_addr(addr, mio::net::UdpSocket::bind)?;
        Ok(UdpSocket {
            io: PollEvented::new(sock)?,
        })
    }

    /// Sets the default peer for [`send`](Self::send) and
    /// [`recv`](Self::recv), and filters received datagrams to it.
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
        super::each_addr(addr, |a| self.io.get_ref().connect(a))
    }

    /// Sends a datagram to `target`; returns the bytes sent.
    ///
    /// # Examples
    ///
    /// See [`UdpSocket`].
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = super::resolve(target)?[0];
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
        let target = super::resolve(target)?[0];
        self.io.blocking(
            crate::reactor::scheduled_io::Direction::Write,
            "UdpSocket::blocking_send_to",
            "`.send_to(..).await`",
            |s| s.send_to(buf, target),
        )
    }

    /// Blocking-style [`recv_from`](Self::recv_from).
    ///
    /// # Examples
    ///
    /// See [`blocking_send_to`](Self::blocking_send_to).
    #[track_caller]
    pub fn blocking_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.blocking(
            crate::reactor::scheduled_io::Direction::Read,
            "UdpSocket::blocking_recv_from",
            "`.recv_from(..).await`",
            |s| s.recv_from(buf),
        )
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
        // SAFETY: we own the descriptor and give it up to the std socket.
        Ok(unsafe { std::net::UdpSocket::from_raw_fd(mio.into_raw_fd()) })
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.io.get_ref().as_raw_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
