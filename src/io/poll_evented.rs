//! `PollEvented<E>`: a mio source registered with the reactor (or bound
//! to a worker's io_uring), and the readiness loops socket operations go
//! through.
//!
//! Under the io_uring driver a stream binds at its first use
//! (`PollEvented::bind`), wherever it was created: used first on a worker
//! of its runtime (in a task or a fiber), it binds to that worker's ring
//! (`docs/design/io_uring.md` §4 and steps 2 and 3), so a connection's
//! operations stay on the worker serving it. A multishot poll there
//! reports its write readiness (writes stay direct system calls), and a
//! multishot receive fills buffers of the ring's pool, which reads on any
//! thread copy from. When nothing is in flight (the socket's queue filled
//! up, or the pool ran out) a read `recv`s directly, and re-arms the
//! receive when that would block: never both at once, so bytes keep their
//! order. A stream first used elsewhere (a `block_on` future, a
//! current-thread runtime) registers with epoll, as do listeners and
//! datagram sockets; a plain thread's blocking read or write of an
//! unbound stream is a direct system call and binds nothing. The binding
//! is for life.

use crate::driver::Kind;
use crate::reactor::scheduled_io::{Direction, ScheduledIo};
use crate::reactor::{Registration, poll_io_drained};
use crate::scheduler::context;
use crate::uring;
use crate::wait::{self, Caller};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// Where a stream read takes its bytes from (`PollEvented::poll_read_stream`).
pub(crate) enum ReadSrc<'a, E> {
    /// A system call on the socket.
    Socket(&'a E),
    /// Bytes the io_uring driver received: copy what fits, return how
    /// many were taken.
    Bytes(&'a [u8]),
}

/// The read of a stream into `buf`: `sys` reads the socket; received
/// bytes are copied in after those already taken by this same read.
pub(crate) fn read_into<'b, E>(
    buf: &'b mut [u8],
    mut sys: impl FnMut(&E, &mut [u8]) -> io::Result<usize> + 'b,
) -> impl FnMut(ReadSrc<'_, E>) -> io::Result<usize> + 'b {
    let mut filled = 0;
    move |src| match src {
        ReadSrc::Socket(s) => sys(s, &mut buf[filled..]),
        ReadSrc::Bytes(b) => {
            let n = b.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&b[..n]);
            filled += n;
            Ok(n)
        }
    }
}

/// The source's binding (`PollEvented::bind`), or the poll's return with
/// the error that keeps it from having one.
macro_rules! ready_bind {
    ($pe:expr) => {
        match $pe.bind() {
            Ok(bind) => bind,
            Err(e) => return Poll::Ready(Err(e)),
        }
    };
}

/// A registered mio source. Dropping it deregisters the source (and then
/// closes it).
pub(crate) struct PollEvented<E: mio::event::Source + AsRawFd> {
    /// `None` only after `into_inner`.
    io: Option<E>,
    /// Set at creation, or, for a stream of a runtime with the io_uring
    /// driver, at its first use (`bind`). An error is kept: every later
    /// operation returns it.
    registration: OnceLock<io::Result<Bind>>,
    /// Where a stream binds at its first use; `None` for a source
    /// registered at creation.
    lazy: Option<Lazy>,
}

/// The runtime a stream waiting for its first use belongs to.
struct Lazy {
    /// Its `Common::id`: the ring of the worker the stream is first used
    /// on, if it is one of this runtime's.
    id: usize,
    /// Elsewhere, its reactor (the stream's fd registers there, as a
    /// `SourceFd`, and deregisters the same way).
    reactor: Arc<crate::reactor::Handle>,
}

/// Where a source's readiness comes from.
enum Bind {
    Epoll(Registration),
    /// A worker's ring, of the runtime with this `Common::id`.
    Ring(usize, uring::Bound),
}

impl Bind {
    fn io(&self) -> &ScheduledIo {
        match self {
            Bind::Epoll(r) => r.io(),
            Bind::Ring(_, b) => b.io(),
        }
    }

    fn poll_io_drained<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        op: impl FnMut() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        poll_io_drained(self.io(), cx, dir, op, drained)
    }

    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io_drained(cx, dir, op, |_| false)
    }

    fn deregister(&self, source: &mut impl mio::event::Source) -> io::Result<()> {
        match self {
            Bind::Epoll(r) => r.deregister(source),
            Bind::Ring(id, b) => {
                // On the home worker the poll ends now; elsewhere its
                // owner is asked to end it.
                let wakers = context::with_ring(*id, |ring| b.close(Some(ring)))
                    .unwrap_or_else(|| b.close(None));
                wakers.into_iter().for_each(std::task::Waker::wake);
                Ok(())
            }
        }
    }
}

impl<E: mio::event::Source + AsRawFd> PollEvented<E> {
    /// Registers `io` with the current runtime's reactor.
    pub(crate) fn new(mut io: E) -> io::Result<PollEvented<E>> {
        let reactor = context::with_current(|h| h.common().driver.io.clone()).map_err(|kind| {
            crate::runtime::TryCurrentError::no_runtime(kind, "creating a socket")
        })?;
        let registration = Bind::Epoll(Registration::new(&mut io, reactor)?);
        Ok(PollEvented {
            io: Some(io),
            registration: OnceLock::from(Ok(registration)),
            lazy: None,
        })
    }

    /// As `new`, for a stream. Under the io_uring driver the stream binds
    /// at its first use instead (`bind`): to the ring of the worker that
    /// first uses it, so that a task or fiber serving a connection has its
    /// operations on its own worker's ring, wherever the stream was
    /// accepted or connected (`docs/design/io_uring.md` §4).
    pub(crate) fn new_stream(io: E) -> io::Result<PollEvented<E>> {
        let ring = context::with_current(|h| {
            let c = h.common();
            (c.driver.kind == Kind::Uring).then(|| Lazy {
                id: c.id,
                reactor: c.driver.io.clone(),
            })
        })
        .ok()
        .flatten();
        match ring {
            Some(lazy) => Ok(PollEvented {
                io: Some(io),
                registration: OnceLock::new(),
                lazy: Some(lazy),
            }),
            None => PollEvented::new(io),
        }
    }

    /// The source's binding, made now if this is its first use: on a
    /// worker of its runtime, that worker's ring; elsewhere (or if the
    /// ring cannot take it) the reactor.
    fn bind(&self) -> io::Result<&Bind> {
        let r = self.registration.get_or_init(|| {
            let lazy = self
                .lazy
                .as_ref()
                .expect("a source registered at creation has its binding");
            let fd = self.get_ref().as_raw_fd();
            if let Some(Ok(bound)) = context::with_ring(lazy.id, |ring| ring.bind(fd)) {
                return Ok(Bind::Ring(lazy.id, bound));
            }
            Registration::new(&mut mio::unix::SourceFd(&fd), lazy.reactor.clone()).map(Bind::Epoll)
        });
        r.as_ref().map_err(|e| match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        })
    }

    /// Ends the binding, if any, of the source `io` (taken out of `self`).
    fn unbind(&self, io: &mut E) -> io::Result<()> {
        match (self.bound(), &self.lazy) {
            (Some(bind), None) => bind.deregister(io),
            (Some(bind), Some(_)) => {
                let fd = io.as_raw_fd();
                bind.deregister(&mut mio::unix::SourceFd(&fd))
            }
            // Never bound, or its binding failed: nothing to undo.
            _ => Ok(()),
        }
    }

    /// The binding, if the stream has made one.
    fn bound(&self) -> Option<&Bind> {
        self.registration.get().and_then(|r| r.as_ref().ok())
    }

    pub(crate) fn get_ref(&self) -> &E {
        self.io.as_ref().expect("source taken out of PollEvented")
    }

    /// Runs `op` once the source is readable, retrying after `WouldBlock`.
    pub(crate) fn poll_read_io<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&E) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.get_ref();
        let bind = ready_bind!(self);
        bind.poll_io(cx, Direction::Read, || op(io))
    }

    /// Runs `op` once the source is writable, retrying after `WouldBlock`.
    pub(crate) fn poll_write_io<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&E) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.get_ref();
        let bind = ready_bind!(self);
        bind.poll_io(cx, Direction::Write, || op(io))
    }

    /// A stream read into a buffer of `len` bytes (`read_into`): a short
    /// read means the socket's receive buffer is empty (edge-triggered
    /// readiness then waits for the next event without a `WouldBlock`
    /// round trip). `peek`: leave the bytes for the next read.
    pub(crate) fn poll_read_stream(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        peek: bool,
        mut read: impl FnMut(ReadSrc<'_, E>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let io = self.get_ref();
        match ready_bind!(self) {
            bind @ Bind::Epoll(_) => bind.poll_io_drained(
                cx,
                Direction::Read,
                || read(ReadSrc::Socket(io)),
                |&n| !peek && n > 0 && n < len,
            ),
            Bind::Ring(id, b) => {
                let (res, then) = b.poll_recv(cx, peek, |src| match src {
                    uring::Src::Socket => read(ReadSrc::Socket(io)),
                    uring::Src::Bytes(bytes) => read(ReadSrc::Bytes(bytes)),
                });
                if then == uring::Then::Arm
                    && !context::with_ring(*id, |ring| b.arm_on(ring)).unwrap_or(false)
                {
                    b.request_arm();
                }
                res
            }
        }
    }

    /// A stream write of `len` bytes: a short write means the send buffer
    /// is full.
    pub(crate) fn poll_write_stream(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        mut op: impl FnMut(&E) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let io = self.get_ref();
        ready_bind!(self).poll_io_drained(cx, Direction::Write, || op(io), |&n| n < len)
    }

    /// Deregisters and returns the source. For a stream the io_uring
    /// driver receives for, that waits (at most a second) for its receive
    /// to end, and fails if it received bytes not read yet: they would be
    /// lost to the returned socket.
    pub(crate) fn into_inner(mut self) -> io::Result<E> {
        let mut io = self.io.take().expect("source taken out of PollEvented");
        self.unbind(&mut io)?;
        if let Some(Bind::Ring(_, b)) = self.bound() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while b.receiving() {
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the io_uring driver's worker did not end the stream's receive within \
                         a second (is it stuck in a long poll?)",
                    ));
                }
                std::thread::yield_now();
            }
            let unread = b.unread();
            if unread > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{unread} bytes received by the io_uring driver were not read yet"),
                ));
            }
        }
        Ok(io)
    }
}

impl<E: mio::event::Source + AsRawFd> PollEvented<E> {
    /// A stream read in blocking style (as `blocking`): `read` as for
    /// `poll_read_stream`.
    #[track_caller]
    pub(crate) fn blocking_read(
        &self,
        what: &'static str,
        instead: &str,
        len: usize,
        mut read: impl FnMut(ReadSrc<'_, E>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let io = self.get_ref();
        wait::caller(what, instead, |c| match c {
            Caller::Fiber(cb) => cb.wait(std::future::poll_fn(|cx| {
                self.poll_read_stream(cx, len, false, &mut read)
            })),
            // A plain thread's read does not bind the stream (it would pin
            // it to epoll for life): unbound, it is a direct system call.
            // Bound (also by a task while this waited), its ring receives,
            // and reads must go through it.
            Caller::Thread => loop {
                if let Some(Bind::Ring(id, b)) = self.bound() {
                    return on_thread(
                        *id,
                        b,
                        std::future::poll_fn(|cx| self.poll_read_stream(cx, len, false, &mut read)),
                    );
                }
                match read(ReadSrc::Socket(io)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_fd(io.as_raw_fd(), Direction::Read)?
                    }
                    res => return res,
                }
            },
        })
    }

    /// Runs `op` in blocking style (the `std::io` impls and the
    /// `blocking_*` methods), as `crate::wait` decides: inside a fiber it
    /// suspends the fiber until the reactor reports readiness; on a
    /// thread that may block it blocks in `poll(2)`; in an async task on a
    /// runtime thread it panics, naming `instead`.
    #[track_caller]
    pub(crate) fn blocking<R>(
        &self,
        dir: Direction,
        what: &'static str,
        instead: &str,
        op: impl FnMut(&E) -> io::Result<R>,
    ) -> io::Result<R> {
        self.blocking_drained(dir, what, instead, op, |_| false)
    }

    /// As `blocking`, for a stream read or write: `drained` says whether a
    /// result shows the socket buffer emptied (read) or filled (write), so
    /// that the next call waits for readiness without a `WouldBlock`
    /// round trip first (see `poll_read_stream`).
    #[track_caller]
    pub(crate) fn blocking_drained<R>(
        &self,
        dir: Direction,
        what: &'static str,
        instead: &str,
        mut op: impl FnMut(&E) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let io = self.get_ref();
        wait::caller(what, instead, |c| match c {
            Caller::Fiber(cb) => cb.wait(std::future::poll_fn(|cx| {
                ready_bind!(self).poll_io_drained(cx, dir, || op(io), &drained)
            })),
            Caller::Thread => loop {
                match op(io) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_fd(io.as_raw_fd(), dir)?
                    }
                    res => return res,
                }
            },
        })
    }
}

/// Waits on a plain thread for `poll`, an operation of a stream bound to
/// ring `b` of runtime `id`. On the ring's home worker (a fiber unwinding
/// there) only this thread reaps the ring, so it drives it while waiting.
fn on_thread<R>(id: usize, b: &uring::Bound, poll: impl Future<Output = R>) -> R {
    if context::with_ring(id, |ring| b.is_home(ring)).unwrap_or(false) {
        let mut poll = std::pin::pin!(poll);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(r) = poll.as_mut().poll(&mut cx) {
                return r;
            }
            let wakers = context::with_ring(id, |ring| {
                let mut w = Vec::new();
                ring.poll_now(&mut w);
                w
            });
            wakers
                .into_iter()
                .flatten()
                .for_each(std::task::Waker::wake);
            std::thread::yield_now();
        }
    }
    wait::block_on_thread(poll)
}

/// Whether the read half of `fd` is closed (`POLLRDHUP`) right now,
/// without waiting.
pub(crate) fn read_closed_now(fd: &impl std::os::fd::AsRawFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd`, for the duration of the call; a zero
        // timeout never blocks.
        if unsafe { libc::poll(&mut p, 1, 0) } >= 0 {
            return Ok(p.revents & libc::POLLRDHUP != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Blocks the thread until `fd` is ready in `dir` (or has an error).
fn wait_fd(fd: std::os::fd::RawFd, dir: Direction) -> io::Result<()> {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd`, for the duration of the call.
        if unsafe { libc::poll(&mut p, 1, -1) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl<E: mio::event::Source + AsRawFd> Drop for PollEvented<E> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            // Errors here (the reactor is gone) leave nothing to undo.
            let _ = self.unbind(&mut io);
        }
    }
}

impl<E: mio::event::Source + AsRawFd + std::fmt::Debug> std::fmt::Debug for PollEvented<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.io.fmt(f)
    }
}
