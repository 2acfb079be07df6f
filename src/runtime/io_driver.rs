//! `IoDriver`: which I/O driver a runtime runs, and the
//! `FIBER_RUNTIME_IO` environment variable.

use crate::driver::Kind;
use std::io;

/// The environment variable [`IoDriver::Auto`] consults.
pub(crate) const ENV: &str = "FIBER_RUNTIME_IO";

/// Which I/O driver a runtime runs, chosen with
/// [`Builder::io_driver`](crate::Builder::io_driver).
///
/// - **`Epoll`**: mio on epoll. A parked worker waits in `epoll_wait` or on
///   a condition variable.
/// - **`Uring`**: an io_uring per worker, driven only by that worker
///   (`SINGLE_ISSUER | DEFER_TASKRUN`; Linux 6.1 or later). A parked worker
///   waits in its ring, with the epoll fd, the next timer and its wake-up
///   in one `io_uring_enter`. A TCP or Unix stream first used on a worker
///   (in a task or a fiber, wherever it was created) binds to that
///   worker's ring: its readiness comes from a poll there and its bytes
///   from a multishot receive into the ring's buffers, while its writes
///   stay direct system calls; listeners, datagram sockets, streams first
///   used elsewhere and the current-thread flavor's sockets stay on epoll.
///   Write-behind sends come in a later step (`docs/design/io_uring.md`). Only a ring's own
///   worker can reap it: while that worker is stuck in a long poll, the
///   streams bound to it wait for the poll to return, even when the
///   worker hand-off has replaced the worker (under epoll another thread
///   would deliver their events). For the same reason a bound stream
///   dropped on another thread is closed by its home worker at its next
///   turn (it is woken for that): the peer sees the close a little later,
///   and an `SO_LINGER` wait happens on that worker.
/// - **`Auto`** (the default) reads the `FIBER_RUNTIME_IO` environment
///   variable (`auto`, `epoll` or `uring`, any case; unset or empty is
///   `auto`), and otherwise picks `Epoll` for now.
///
/// [`Handle::io_driver`](crate::runtime::Handle::io_driver) tells which
/// one a runtime runs: never `Auto`.
///
/// # Examples
///
/// ```
/// use fiber_runtime::{Builder, IoDriver};
///
/// let rt = Builder::new_multi_thread()
///     .worker_threads(2)
///     .io_driver(IoDriver::Epoll)
///     .build()
///     .unwrap();
/// assert_eq!(rt.handle().io_driver(), IoDriver::Epoll);
///
/// // Where the kernel refuses io_uring, asking for it fails the build
/// // (it never silently runs epoll).
/// match Builder::new_current_thread().io_driver(IoDriver::Uring).build() {
///     Ok(rt) => assert_eq!(rt.handle().io_driver(), IoDriver::Uring),
///     Err(e) => assert!(e.to_string().contains("io_uring"), "{e}"),
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoDriver {
    /// `FIBER_RUNTIME_IO` if set, else the best driver this kernel allows
    /// (for now: `Epoll`).
    #[default]
    Auto,
    /// mio on epoll.
    Epoll,
    /// An io_uring per worker; `build` fails if the kernel refuses it.
    Uring,
}

impl IoDriver {
    /// What `build` runs: `Auto` resolved through the environment.
    pub(crate) fn resolve(self) -> io::Result<Kind> {
        match self {
            IoDriver::Epoll => Ok(Kind::Epoll),
            IoDriver::Uring => Ok(Kind::Uring),
            IoDriver::Auto => match std::env::var_os(ENV) {
                None => Ok(Kind::Epoll),
                Some(v) => match parse(&v.to_string_lossy())? {
                    IoDriver::Uring => Ok(Kind::Uring),
                    _ => Ok(Kind::Epoll),
                },
            },
        }
    }

    pub(crate) fn of(kind: Kind) -> IoDriver {
        match kind {
            Kind::Epoll => IoDriver::Epoll,
            Kind::Uring => IoDriver::Uring,
        }
    }
}

/// Parses a `FIBER_RUNTIME_IO` value.
fn parse(value: &str) -> io::Result<IoDriver> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(IoDriver::Auto),
        "epoll" => Ok(IoDriver::Epoll),
        "uring" | "io_uring" => Ok(IoDriver::Uring),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ENV} must be auto, epoll or uring, got {value:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_any_case_and_refuses_the_rest_by_name() {
        assert_eq!(parse("").unwrap(), IoDriver::Auto);
        assert_eq!(parse("AUTO").unwrap(), IoDriver::Auto);
        assert_eq!(parse("Epoll").unwrap(), IoDriver::Epoll);
        assert_eq!(parse(" uring ").unwrap(), IoDriver::Uring);
        assert_eq!(parse("io_uring").unwrap(), IoDriver::Uring);
        let e = parse("kqueue").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "FIBER_RUNTIME_IO must be auto, epoll or uring, got \"kqueue\""
        );
    }

    #[test]
    fn an_explicit_choice_ignores_the_environment() {
        assert_eq!(IoDriver::Epoll.resolve().unwrap(), Kind::Epoll);
        assert_eq!(IoDriver::Uring.resolve().unwrap(), Kind::Uring);
    }
}
