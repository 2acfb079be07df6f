//! `PollEvented<E>`: a mio source registered with the reactor (or bound
//! to a worker's io_uring), and the readiness loops socket operations go
//! through.
//!
//! Under the io_uring driver a stream created on a worker of its runtime
//! (inside a task or a fiber) is bound to that worker's ring
//! (`docs/design/io_uring.md` steps 2 and 3): a multishot poll there
//! reports its write readiness (writes stay direct system calls), and a
//! multishot receive fills buffers of the ring's pool, which reads on any
//! thread copy from. When nothing is in flight (the socket's queue filled
//! up, or the pool ran out) a read `recv`s directly, and re-arms the
//! receive when that would block: never both at once, so bytes keep their
//! order. Listeners, datagram sockets and streams created elsewhere (a
//! `block_on` future, a plain thread, a current-thread runtime) register
//! with epoll as under the epoll driver.

use crate::driver::Kind;
use crate::reactor::scheduled_io::{Direction, ScheduledIo};
use crate::reactor::{Registration, poll_io_drained};
use crate::scheduler::context;
use crate::uring;
use crate::wait::{self, Caller};
use std::future::Future;
use std::io;
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

/// A registered mio source. Dropping it deregisters the source (and then
/// closes it).
pub(crate) struct PollEvented<E: mio::event::Source> {
    /// `None` only after `into_inner`.
    io: Option<E>,
    registration: Bind,
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

impl<E: mio::event::Source> PollEvented<E> {
    /// Registers `io` with the current runtime's reactor.
    pub(crate) fn new(mut io: E) -> io::Result<PollEvented<E>> {
        let reactor = context::with_current(|h| h.common().driver.io.clone()).map_err(|kind| {
            crate::runtime::TryCurrentError::no_runtime(kind, "creating a socket")
        })?;
        let registration = Bind::Epoll(Registration::new(&mut io, reactor)?);
        Ok(PollEvented {
            io: Some(io),
            registration,
        })
    }

    /// As `new`, for a stream: under the io_uring driver, on a worker of
    /// the runtime, it binds to that worker's ring (module doc).
    pub(crate) fn new_stream(io: E) -> io::Result<PollEvented<E>>
    where
        E: std::os::fd::AsRawFd,
    {
        let ring = context::with_current(|h| {
            let c = h.common();
            (c.driver.kind == Kind::Uring).then_some(c.id)
        })
        .ok()
        .flatten();
        if let Some(id) = ring {
            let fd = io.as_raw_fd();
            if let Some(bound) = context::with_ring(id, |ring| ring.bind(fd)) {
                return Ok(PollEvented {
                    io: Some(io),
                    registration: Bind::Ring(id, bound?),
                });
            }
        }
        PollEvented::new(io)
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
        self.registration.poll_io(cx, Direction::Read, || op(io))
    }

    /// Runs `op` once the source is writable, retrying after `WouldBlock`.
    pub(crate) fn poll_write_io<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&E) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.get_ref();
        self.registration.poll_io(cx, Direction::Write, || op(io))
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
        match &self.registration {
            Bind::Epoll(_) => self.registration.poll_io_drained(
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
        self.registration
            .poll_io_drained(cx, Direction::Write, || op(io), |&n| n < len)
    }

    /// Deregisters and returns the source. For a stream the io_uring
    /// driver receives for, that waits (at most a second) for its receive
    /// to end, and fails if it received bytes not read yet: they would be
    /// lost to the returned socket.
    pub(crate) fn into_inner(mut self) -> io::Result<E> {
        let mut io = self.io.take().expect("source taken out of PollEvented");
        self.registration.deregister(&mut io)?;
        if let Bind::Ring(_, b) = &self.registration {
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

impl<E: mio::event::Source + std::os::fd::AsRawFd> PollEvented<E> {
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
        wait::caller(what, instead, |c| match (c, &self.registration) {
            (Caller::Fiber(cb), _) => cb.wait(std::future::poll_fn(|cx| {
                self.poll_read_stream(cx, len, false, &mut read)
            })),
            (Caller::Thread, Bind::Ring(id, b)) => {
                let poll =
                    std::future::poll_fn(|cx| self.poll_read_stream(cx, len, false, &mut read));
                if context::with_ring(*id, |ring| b.is_home(ring)).unwrap_or(false) {
                    // Only this thread reaps the ring (a fiber unwinding
                    // here): drive it while waiting.
                    let mut poll = std::pin::pin!(poll);
                    let mut cx = Context::from_waker(std::task::Waker::noop());
                    loop {
                        if let Poll::Ready(r) = poll.as_mut().poll(&mut cx) {
                            return r;
                        }
                        let wakers = context::with_ring(*id, |ring| {
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
            (Caller::Thread, Bind::Epoll(_)) => loop {
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
                self.registration
                    .poll_io_drained(cx, dir, || op(io), &drained)
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

impl<E: mio::event::Source> Drop for PollEvented<E> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            // Errors here (the reactor is gone) leave nothing to undo.
            let _ = self.registration.deregister(&mut io);
        }
    }
}

impl<E: mio::event::Source + std::fmt::Debug> std::fmt::Debug for PollEvented<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.io.fmt(f)
    }
}
