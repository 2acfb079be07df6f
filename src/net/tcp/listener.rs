//! `TcpListener`.

use super::stream::TcpStream;
use crate::io::PollEvented;
use crate::net::{ToSocketAddrs, addr};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;

/// A TCP socket listening for connections.
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::{TcpListener, TcpStream};
///
/// fiber_runtime::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let client = fiber_runtime::spawn(async move { TcpStream::connect(addr).await.unwrap() });
///     let (_conn, peer) = listener.accept().await.unwrap();
///     assert_eq!(peer, client.await.unwrap().local_addr().unwrap());
/// });
/// ```
pub struct TcpListener {
    io: PollEvented<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (port 0 picks a free port) and starts listening
    /// (with `SO_REUSEADDR` and a backlog of 128, as std; use
    /// [`TcpSocket`](crate::net::TcpSocket) to choose).
    ///
    /// Synchronous: a numeric address never blocks; a host name is
    /// resolved inline, except in a fiber, where it goes to the blocking
    /// pool while the fiber waits.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the address is taken; `InvalidInput` for a string
    /// that is not `host:port`; any OS error of `bind` or `listen`; an
    /// error of kind `Other` if called outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let a = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let taken = a.local_addr().unwrap();
    ///     let err = fiber_runtime::net::TcpListener::bind(taken).unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    /// });
    /// ```
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let listener = addr::each_addr(addr::resolve_sync(&addr)?, mio::net::TcpListener::bind)?;
        Ok(TcpListener {
            io: PollEvented::new(listener)?,
        })
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Errors
    ///
    /// The OS error of `accept`, such as `EMFILE` when out of file
    /// descriptors: the listener stays registered and can accept again
    /// once descriptors are freed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::net::{TcpListener, TcpStream};
    ///
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     let c = fiber_runtime::spawn(async move { TcpStream::connect(addr).await });
    ///     let (s, _) = l.accept().await.unwrap();
    ///     assert_eq!(s.local_addr().unwrap(), addr);
    ///     c.await.unwrap().unwrap();
    /// });
    /// ```
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = poll_fn(|cx| self.io.poll_read_io(cx, |l| l.accept())).await?;
        Ok((TcpStream::from_mio(stream)?, addr))
    }

    /// Blocking-style [`accept`](Self::accept): suspends the fiber (inside
    /// one) or blocks a plain thread.
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    ///
    /// # Panics
    ///
    /// Panics in an async task on a runtime thread (use `.accept().await`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::{fiber, net::TcpListener};
    /// use std::io::{Read, Write};
    ///
    /// fiber_runtime::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     let server = fiber::spawn(move || {
    ///         let (mut s, _) = l.blocking_accept().unwrap();
    ///         let mut buf = [0; 4];
    ///         s.read_exact(&mut buf).unwrap();
    ///         s.write_all(&buf).unwrap();
    ///     });
    ///     let client = std::thread::spawn(move || {
    ///         let mut c = std::net::TcpStream::connect(addr).unwrap();
    ///         c.write_all(b"ping").unwrap();
    ///         let mut buf = [0; 4];
    ///         c.read_exact(&mut buf).unwrap();
    ///         buf
    ///     });
    ///     server.await.unwrap();
    ///     assert_eq!(&client.join().unwrap(), b"ping");
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.io.blocking(
            crate::reactor::scheduled_io::Direction::Read,
            "TcpListener::blocking_accept",
            "`.accept().await`",
            |l| l.accept(),
        )?;
        Ok((TcpStream::from_mio(stream)?, addr))
    }

    /// The local address (useful after binding port 0).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let l = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     assert_ne!(l.local_addr().unwrap().port(), 0);
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// Sets the IP time-to-live (`IP_TTL`) of the accepted connections'
    /// packets.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let l = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     l.set_ttl(7).unwrap();
    ///     assert_eq!(l.ttl().unwrap(), 7);
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

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let l = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     assert!(l.take_error().unwrap().is_none());
    /// });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }

    /// Wraps a listener from the standard library (made non-blocking here).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), for the registration with the reactor.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let l = fiber_runtime::net::TcpListener::from_std(std_l).unwrap();
    ///     assert!(l.local_addr().is_ok());
    /// });
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            io: PollEvented::new(mio::net::TcpListener::from_std(listener))?,
        })
    }

    /// Deregisters the listener and returns it as a standard one (still in
    /// non-blocking mode: call `set_nonblocking(false)` if needed).
    ///
    /// # Errors
    ///
    /// The OS error of deregistering it.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let l = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     assert_eq!(l.into_std().unwrap().local_addr().unwrap(), addr);
    /// });
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let mio = self.io.into_inner()?;
        Ok(std::net::TcpListener::from(std::os::fd::OwnedFd::from(mio)))
    }
}

crate::net::impl_as_fd!(TcpListener);

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}
