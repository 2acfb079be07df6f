//! Socket addresses: the crate's [`ToSocketAddrs`], how each kind of
//! caller resolves one, and [`lookup_host`].
//!
//! An address is first turned into a [`Spec`](sealed::Spec) at once,
//! without blocking: numeric forms are parsed there and then; only a host
//! name is left to resolve. How a name is resolved depends on the caller:
//!
//! | caller | a host name is resolved |
//! | --- | --- |
//! | async (`connect(..).await`, `lookup_host`) | on the blocking pool, awaited |
//! | blocking-style, in a fiber (`blocking_connect`, `bind` in a fiber) | on the blocking pool; the fiber waits through `crate::wait` |
//! | blocking-style, on a plain thread | inline, blocking that thread |
//! | `bind` / `UdpSocket::connect` in an async task | inline (they are synchronous) |
//!
//! A worker never runs the system resolver for an async caller.

use crate::fiber::context as fiber;
use crate::runtime::TryCurrentError;
use crate::scheduler::context;
use crate::task_core::SpawnMeta;
use crate::wait::{self, Caller};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Types that name one or more socket addresses, taken by the `connect`,
/// `bind` and `send_to` functions of [`crate::net`] and by
/// [`lookup_host`]. Sealed: it is implemented for
///
/// - [`SocketAddr`], [`SocketAddrV4`], [`SocketAddrV6`];
/// - `(IpAddr, u16)`, `(Ipv4Addr, u16)`, `(Ipv6Addr, u16)`;
/// - `str` and [`String`] (`"127.0.0.1:80"`, `"[::1]:80"`, `"localhost:80"`),
///   `(&str, u16)` and `(String, u16)` (`("localhost", 80)`);
/// - `[SocketAddr]` and `Vec<SocketAddr>` (each address is tried in turn);
/// - `&T` for every `T` above (so `&str` and `&[SocketAddr]` too).
///
/// Numeric addresses are parsed at once and never block. Host names go to
/// the system resolver (`getaddrinfo`): from async code on the runtime's
/// blocking pool, never on a worker; from blocking-style code in a fiber
/// on the blocking pool too, the fiber suspended meanwhile; on a plain
/// thread inline. The synchronous `bind`s and [`UdpSocket::connect`]
/// resolve a host name inline when called from an async task (pass a
/// numeric address there to be sure nothing blocks).
///
/// A string that is not `host:port` with a valid port fails with
/// [`InvalidInput`](io::ErrorKind::InvalidInput) at once.
///
/// [`UdpSocket::connect`]: crate::net::UdpSocket::connect
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::{TcpListener, TcpStream, ToSocketAddrs};
///
/// async fn connect_any(addr: impl ToSocketAddrs) -> std::io::Result<TcpStream> {
///     TcpStream::connect(addr).await
/// }
///
/// fiber_runtime::block_on(async {
///     let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
///     let port = l.local_addr().unwrap().port();
///     connect_any(format!("localhost:{port}")).await.unwrap();
///     connect_any(("127.0.0.1", port)).await.unwrap();
///     connect_any(&[l.local_addr().unwrap()][..]).await.unwrap();
/// });
/// ```
pub trait ToSocketAddrs: sealed::ToSocketAddrsPriv {}

pub(crate) mod sealed {
    //! The part of `ToSocketAddrs` nobody outside may name or implement.

    use super::Addrs;
    use std::io;

    /// What an address names: addresses, or a host name still to resolve.
    #[derive(Debug)]
    pub enum Spec {
        /// Numeric addresses, ready.
        Addrs(Addrs),
        /// A host name and the port to pair its addresses with.
        Name(String, u16),
    }

    /// A token only this crate can make, so that no one else can call
    /// [`ToSocketAddrsPriv::to_spec`].
    #[derive(Debug)]
    pub struct Internal(pub(super) ());

    /// Implemented by every [`ToSocketAddrs`](super::ToSocketAddrs) type.
    pub trait ToSocketAddrsPriv {
        /// Parses the address, without blocking.
        fn to_spec(&self, internal: Internal) -> io::Result<Spec>;
    }
}

use sealed::{Internal, Spec, ToSocketAddrsPriv};

/// The resolved addresses of a [`Spec`]: one inline, or several.
#[derive(Debug, Clone)]
pub enum Addrs {
    /// One address (or none left).
    One(Option<SocketAddr>),
    /// Several.
    Many(std::vec::IntoIter<SocketAddr>),
}

impl Iterator for Addrs {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match self {
            Addrs::One(a) => a.take(),
            Addrs::Many(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Addrs::One(a) => (usize::from(a.is_some()), Some(usize::from(a.is_some()))),
            Addrs::Many(it) => it.size_hint(),
        }
    }
}

impl Spec {
    fn one(a: SocketAddr) -> Spec {
        Spec::Addrs(Addrs::One(Some(a)))
    }
}

fn spec(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Spec> {
    addr.to_spec(Internal(()))
}

macro_rules! impl_numeric {
    ($($ty:ty),*) => {$(
        impl ToSocketAddrs for $ty {}
        impl ToSocketAddrsPriv for $ty {
            fn to_spec(&self, _: Internal) -> io::Result<Spec> {
                Ok(Spec::one(SocketAddr::from(*self)))
            }
        }
    )*};
}

impl_numeric!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

/// A host and port: numeric hosts parsed here, names left to resolve.
fn host_port(host: &str, port: u16) -> Spec {
    match host.parse::<IpAddr>() {
        Ok(ip) => Spec::one(SocketAddr::new(ip, port)),
        Err(_) => Spec::Name(host.to_owned(), port),
    }
}

impl ToSocketAddrs for str {}
impl ToSocketAddrsPriv for str {
    fn to_spec(&self, _: Internal) -> io::Result<Spec> {
        if let Ok(a) = self.parse::<SocketAddr>() {
            return Ok(Spec::one(a));
        }
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid socket address {self:?}: {why} (expected `host:port`)"),
            )
        };
        let (host, port) = self.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid("invalid port value"))?;
        Ok(host_port(host, port))
    }
}

impl ToSocketAddrs for String {}
impl ToSocketAddrsPriv for String {
    fn to_spec(&self, i: Internal) -> io::Result<Spec> {
        self.as_str().to_spec(i)
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl ToSocketAddrsPriv for (&str, u16) {
    fn to_spec(&self, _: Internal) -> io::Result<Spec> {
        Ok(host_port(self.0, self.1))
    }
}

impl ToSocketAddrs for (String, u16) {}
impl ToSocketAddrsPriv for (String, u16) {
    fn to_spec(&self, _: Internal) -> io::Result<Spec> {
        Ok(host_port(&self.0, self.1))
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl ToSocketAddrsPriv for [SocketAddr] {
    fn to_spec(&self, _: Internal) -> io::Result<Spec> {
        Ok(Spec::Addrs(match self {
            [a] => Addrs::One(Some(*a)),
            many => Addrs::Many(Vec::from(many).into_iter()),
        }))
    }
}

impl ToSocketAddrs for Vec<SocketAddr> {}
impl ToSocketAddrsPriv for Vec<SocketAddr> {
    fn to_spec(&self, i: Internal) -> io::Result<Spec> {
        self.as_slice().to_spec(i)
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrs + ?Sized> ToSocketAddrsPriv for &T {
    fn to_spec(&self, i: Internal) -> io::Result<Spec> {
        (**self).to_spec(i)
    }
}

/// Runs the system resolver for `host`, on this thread.
fn lookup_now(host: &str, port: u16) -> io::Result<Addrs> {
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| io::Error::new(e.kind(), format!("could not resolve {host:?}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("could not resolve {host:?} to any address"),
        ));
    }
    Ok(Addrs::Many(addrs.into_iter()))
}

/// Starts the lookup of `host` on the current runtime's blocking pool.
fn spawn_lookup(host: String, port: u16) -> io::Result<crate::JoinHandle<io::Result<Addrs>>> {
    context::with_current(|h| {
        h.blocking_spawner()
            .spawn_blocking(move || lookup_now(&host, port), SpawnMeta::new(None))
    })
    .map_err(|kind| TryCurrentError::no_runtime(kind, "resolving a host name"))
}

/// Resolves `addr` for async code: numeric addresses at once, host names
/// on the blocking pool.
pub(crate) async fn resolve(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Addrs> {
    match spec(addr)? {
        Spec::Addrs(a) => Ok(a),
        Spec::Name(host, port) => spawn_lookup(host, port)?.await?,
    }
}

/// Resolves `addr` for a blocking-style call: a host name on the blocking
/// pool in a fiber (which waits through `crate::wait`), inline on a plain
/// thread.
///
/// # Panics
///
/// In an async task, when `addr` is a host name (as `crate::wait`).
#[track_caller]
pub(crate) fn resolve_blocking(
    addr: &(impl ToSocketAddrs + ?Sized),
    what: &'static str,
    instead: &str,
) -> io::Result<Addrs> {
    match spec(addr)? {
        Spec::Addrs(a) => Ok(a),
        Spec::Name(host, port) => wait::caller(what, instead, |c| match c {
            Caller::Fiber(cb) => {
                let lookup = spawn_lookup(host, port)?;
                cb.wait(lookup)?
            }
            Caller::Thread => lookup_now(&host, port),
        }),
    }
}

/// Resolves `addr` for a synchronous call (`bind`, `UdpSocket::connect`):
/// in a fiber as [`resolve_blocking`], elsewhere a host name inline.
pub(crate) fn resolve_sync(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Addrs> {
    match spec(addr)? {
        Spec::Addrs(a) => Ok(a),
        Spec::Name(host, port) => {
            if fiber::with_current(|cb| cb.is_some()) {
                resolve_blocking(&(host.as_str(), port), "", "")
            } else {
                lookup_now(&host, port)
            }
        }
    }
}

fn no_address() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any address",
    )
}

/// Tries `f` on each address, returning the first success or the last
/// error.
pub(crate) fn each_addr<T>(
    addrs: Addrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addrs {
        match f(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(no_address))
}

/// As [`each_addr`], for an async `f`.
pub(crate) async fn each_addr_async<T, F: Future<Output = io::Result<T>>>(
    addrs: Addrs,
    mut f: impl FnMut(SocketAddr) -> F,
) -> io::Result<T> {
    let mut last = None;
    for a in addrs {
        match f(a).await {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(no_address))
}

/// The first address of `addrs` (for `send_to`).
pub(crate) fn first(mut addrs: Addrs) -> io::Result<SocketAddr> {
    addrs.next().ok_or_else(no_address)
}

/// Resolves `host` (`"name:port"`, `("name", port)`, or any other
/// [`ToSocketAddrs`]) to its socket addresses.
///
/// A numeric address is parsed at once; a host name is resolved by the
/// system resolver on the runtime's blocking pool, so the calling task's
/// worker goes on running other tasks meanwhile. Dropping the future
/// before it completes leaves the lookup to finish on the pool and drops
/// its result.
///
/// # Errors
///
/// [`InvalidInput`](io::ErrorKind::InvalidInput) for a string that is
/// not `host:port`; the resolver's error (its message naming the host)
/// for a name that does not resolve, such as anything under `.invalid`;
/// for a host name outside a runtime, an error of kind
/// [`Other`](io::ErrorKind::Other) carrying a
/// [`TryCurrentError`](crate::TryCurrentError).
///
/// # Examples
///
/// ```
/// use fiber_runtime::net::lookup_host;
///
/// fiber_runtime::block_on(async {
///     let addrs: Vec<_> = lookup_host("localhost:8080").await.unwrap().collect();
///     assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
///
///     assert!(lookup_host("no-such-host.invalid:80").await.is_err());
///     // Numeric: parsed at once, no lookup.
///     assert_eq!(lookup_host("10.0.0.1:53").await.unwrap().count(), 1);
/// });
/// ```
pub async fn lookup_host(
    host: impl ToSocketAddrs,
) -> io::Result<impl Iterator<Item = SocketAddr> + Send + Sync + 'static> {
    resolve(&host).await
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    fn addrs(a: &(impl ToSocketAddrs + ?Sized)) -> Vec<SocketAddr> {
        match spec(a).unwrap() {
            Spec::Addrs(a) => a.collect(),
            Spec::Name(h, p) => panic!("{h}:{p} left to resolve"),
        }
    }

    #[test]
    fn numeric_forms_parse_without_a_lookup() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(addrs("127.0.0.1:80"), [v4]);
        assert_eq!(addrs(&String::from("[::1]:80")), [v6]);
        assert_eq!(addrs(&("127.0.0.1", 80)), [v4]);
        assert_eq!(addrs(&(String::from("::1"), 80)), [v6]);
        assert_eq!(addrs(&(Ipv4Addr::LOCALHOST, 80)), [v4]);
        assert_eq!(addrs(&(IpAddr::from(Ipv6Addr::LOCALHOST), 80)), [v6]);
        assert_eq!(addrs(&[v4, v6][..]), [v4, v6]);
        assert_eq!(addrs(&vec![v6]), [v6]);
        assert_eq!(addrs(&&v4), [v4]);
        assert!(addrs(&[][..]).is_empty());
    }

    #[test]
    fn names_are_left_to_resolve_and_bad_strings_fail_at_once() {
        assert!(matches!(spec("localhost:80").unwrap(), Spec::Name(h, 80) if h == "localhost"));
        assert!(matches!(spec(&("a.b", 1)).unwrap(), Spec::Name(h, 1) if h == "a.b"));
        for bad in ["localhost", "localhost:", "localhost:99999", "[::1]:x", ""] {
            let err = spec(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn each_addr_reports_an_empty_list_and_the_last_error() {
        let err = each_addr(Addrs::One(None), |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let many = Addrs::Many(vec![a, b].into_iter());
        let err = each_addr(many, |x| -> io::Result<()> {
            Err(io::Error::other(x.port().to_string()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "2");
    }
}
