//! The rings themselves (Linux; module doc in `mod.rs`).

use super::Turn;
use crate::util::thread_token;
use io_uring::{IoUring, opcode, types};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Submission queue entries: this step keeps at most two operations in
/// flight (the wake read and the epoll poll), and a small ring keeps the
/// thousands of runtimes the tests build cheap (two pages of maps).
const SQ_ENTRIES: u32 = 16;
const CQ_ENTRIES: u32 = 64;

/// `user_data` of the eventfd read.
const WAKE: u64 = 1;
/// `user_data` of the poll on the reactor's epoll fd.
const EPOLL: u64 = 2;

/// The longest single wait: longer timer waits are cut into such pieces
/// (the kernel's timespec is signed; a spurious return is harmless).
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a ring's shutdown waits for its operations' final completions
/// before it gives up and abandons their memory.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Wake targets of rings dropped with their read still in flight: kept
/// reachable (the kernel may, as far as we can prove, still write them),
/// never freed. Eight bytes per such drop.
#[allow(clippy::vec_box)] // the boxes' addresses are what the kernel holds
static ABANDONED: Mutex<Vec<Box<u64>>> = Mutex::new(Vec::new());

/// Bumped in every forked child (`pthread_atfork`).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// This thread and fork generation: who may drive a ring made here.
fn here() -> (u64, u64) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        extern "C" fn child() {
            FORKS.fetch_add(1, Relaxed);
        }
        // SAFETY: registers a handler that only bumps an atomic (async-
        // signal-safe, as a fork child handler must be). If it fails, a
        // forked child may mistake an inherited ring for its own.
        unsafe { libc::pthread_atfork(None, None, Some(child)) };
    });
    (thread_token(), FORKS.load(Relaxed))
}

/// A ring created for a thread that has not yet taken it (`Send`).
pub(crate) struct Setup {
    ring: IoUring,
    wake: Arc<WakeFd>,
}

/// Creates `n` rings, disabled until [`Setup::enable`].
///
/// # Errors
///
/// The kernel's refusal, with what the driver needs and the OS error:
/// PermissionDenied (EPERM: seccomp, `kernel.io_uring_disabled`),
/// Unsupported (EINVAL, ENOSYS: a kernel before 6.1, or without
/// io_uring), or the error as it came (ENOMEM, EMFILE).
///
/// `enters` counts every `io_uring_enter` the rings make.
pub(crate) fn create(n: usize, enters: Arc<AtomicU64>) -> io::Result<Vec<Setup>> {
    (0..n)
        .map(|_| {
            let wake = WakeFd::new(enters.clone())
                .map_err(|e| io::Error::new(e.kind(), format!("io_driver(Uring): eventfd: {e}")))?;
            Ok(Setup {
                ring: build(true)?,
                wake: Arc::new(wake),
            })
        })
        .collect()
}

fn build(disabled: bool) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(CQ_ENTRIES);
    if disabled {
        b.setup_r_disabled();
    }
    b.dontfork();
    b.build(SQ_ENTRIES).map_err(|e| {
        let kind = match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => io::ErrorKind::Unsupported,
            _ => e.kind(),
        };
        io::Error::new(
            kind,
            format!(
                "io_driver(Uring): the kernel refused an io_uring with SINGLE_ISSUER | \
                 DEFER_TASKRUN (needs Linux 6.1+, io_uring not blocked by seccomp or \
                 kernel.io_uring_disabled): io_uring_setup: {e}"
            ),
        )
    })
}

impl Setup {
    /// The eventfd that wakes the thread waiting in this ring (and in the
    /// rings that follow it, `Ring::for_this_thread`).
    pub(crate) fn wake(&self) -> Arc<WakeFd> {
        self.wake.clone()
    }

    /// Makes the calling thread the ring's only driver.
    pub(crate) fn enable(self) -> io::Result<Ring> {
        self.ring.submitter().register_enable_rings()?;
        Ok(Ring::new(self.ring, self.wake))
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("uring::Setup")
    }
}

/// An eventfd that completes the wake read of a parked thread's ring,
/// and the runtime's count of ring enters (`RuntimeMetrics`).
#[derive(Debug)]
pub(crate) struct WakeFd(OwnedFd, Arc<AtomicU64>);

impl WakeFd {
    pub(crate) fn new(enters: Arc<AtomicU64>) -> io::Result<WakeFd> {
        // Blocking on purpose: io_uring fails a read of an O_NONBLOCK file
        // with EAGAIN instead of waiting for it to become readable.
        // SAFETY: eventfd has no memory arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(WakeFd(unsafe { OwnedFd::from_raw_fd(fd) }, enters))
    }

    /// Completes the pending wake read (or the next one).
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local. It cannot fail but
        // for a counter at 2^64 - 2, which a read resets long before.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// A ring enabled for, and driven only by, one thread.
pub(crate) struct Ring {
    /// Dropped by `Drop` (not at all in a forked child, which must not
    /// unmap what it never had).
    ring: std::mem::ManuallyDrop<IoUring>,
    /// `util::thread_token` of the only thread that may drive it, and the
    /// process's fork generation then (a forked child inherits the token
    /// but not the ring: its maps are `MADV_DONTFORK`).
    owner: (u64, u64),
    /// Kept open while a read names it.
    wake: Arc<WakeFd>,
    /// The wake read's target (module doc, "Soundness"); `None` once
    /// abandoned.
    wake_buf: Option<Box<u64>>,
    wake_armed: bool,
    epoll_armed: bool,
}

impl Ring {
    fn new(ring: IoUring, wake: Arc<WakeFd>) -> Ring {
        Ring {
            ring: std::mem::ManuallyDrop::new(ring),
            owner: here(),
            wake,
            wake_buf: Some(Box::new(0)),
            wake_armed: false,
            epoll_armed: false,
        }
    }

    /// A ring for the calling thread, created enabled (a current-thread
    /// runtime's ring follows its core to whichever thread drives it).
    pub(crate) fn for_this_thread(wake: Arc<WakeFd>) -> io::Result<Ring> {
        Ok(Ring::new(build(false)?, wake))
    }

    /// Whether the calling thread may drive this ring.
    pub(crate) fn is_owner(&self) -> bool {
        self.owner == here()
    }

    fn inflight(&self) -> usize {
        usize::from(self.wake_armed) + usize::from(self.epoll_armed)
    }

    /// Queues `entry` for the next enter.
    ///
    /// # Safety
    ///
    /// Every buffer `entry` names must stay valid until its final
    /// completion is reaped.
    unsafe fn push(&mut self, entry: &io_uring::squeue::Entry) {
        loop {
            // SAFETY: the caller keeps the entry's buffers alive.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel, then retry.
            if let Err(e) = self.ring.submit() {
                panic!("fiber-runtime: the io_uring driver failed: io_uring_enter: {e}");
            }
        }
    }

    /// Blocks until the wake read completes, the epoll fd (if given)
    /// becomes readable, or `timeout` passes, whichever is first; may also
    /// return early (a signal, a stale wake).
    pub(crate) fn wait(&mut self, timeout: Option<Duration>, epoll: Option<RawFd>) -> Turn {
        debug_assert!(self.is_owner(), "a ring is driven by its owner only");
        if !self.wake_armed {
            let buf: *mut u64 = &raw mut **self.wake_buf.as_mut().expect("wake target gone");
            let read = opcode::Read::new(types::Fd(self.wake.0.as_raw_fd()), buf.cast(), 8)
                .build()
                .user_data(WAKE);
            // SAFETY: `buf` points into `wake_buf`, which is freed only
            // after this read's completion was reaped (else abandoned:
            // `Drop`).
            unsafe { self.push(&read) };
            self.wake_armed = true;
        }
        if let Some(fd) = epoll {
            if !self.epoll_armed {
                let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                    .build()
                    .user_data(EPOLL);
                // SAFETY: a poll names no memory.
                unsafe { self.push(&poll) };
                self.epoll_armed = true;
            }
        }
        self.wake.1.fetch_add(1, Relaxed);
        let res = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::from(d.min(MAX_WAIT));
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match res {
            Ok(_) => {}
            // Timed out, interrupted, or completions to reap first.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => panic!("fiber-runtime: the io_uring driver failed: io_uring_enter: {e}"),
        }
        self.reap()
    }

    fn reap(&mut self) -> Turn {
        let mut turn = Turn::default();
        for cqe in self.ring.completion() {
            let res = cqe.result();
            match cqe.user_data() {
                WAKE => {
                    self.wake_armed = false;
                    turn.woken = true;
                    check("the wake-up read of its eventfd", res, 8);
                }
                EPOLL => {
                    self.epoll_armed = false;
                    turn.epoll = true;
                    check("the poll of the reactor's epoll fd", res, res.max(0));
                }
                other => unreachable!("io_uring completion of an unknown operation {other}"),
            }
        }
        turn
    }

    /// Cancels every operation and reaps them all, so that the ring can go
    /// (or move to another thread) with nothing in flight; it stays usable
    /// (the next wait re-arms). Only the owner can; on another thread (or
    /// past `SHUTDOWN_WAIT`) the memory is abandoned when the ring drops.
    pub(crate) fn shutdown(&mut self) {
        if !self.is_owner() || self.inflight() == 0 {
            return;
        }
        let cancel = self
            .ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::any());
        if cancel.is_err() {
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.inflight() > 0 && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap();
        }
    }
}

/// A completion of the ring's own operations is `want`, or a cancel;
/// anything else (EINVAL, EBADF, an LSM refusing the operation) would
/// make every park return at once, a silent spin: fail loudly instead.
fn check(what: &str, res: i32, want: i32) {
    if res != want && res != -libc::ECANCELED {
        let e = if res < 0 {
            io::Error::from_raw_os_error(-res).to_string()
        } else {
            format!("{res} bytes")
        };
        panic!("fiber-runtime: the io_uring driver failed: {what} completed with {e}");
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.shutdown();
        if self.wake_armed {
            if let Some(buf) = self.wake_buf.take() {
                ABANDONED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(buf);
            }
        }
        if self.owner.1 == here().1 {
            // SAFETY: dropped once, here; nothing uses the ring after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.ring) };
        } else {
            // A forked child: the ring's maps were not inherited
            // (`MADV_DONTFORK`), and whatever the child mapped since may
            // sit at their addresses, so unmapping them could unmap that.
            // Close the inherited fd only; the rest stays allocated.
            // SAFETY: the fd is the ring's, closed once, never used again.
            unsafe { libc::close(self.ring.as_raw_fd()) };
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("uring::Ring")
            .field("owner", &self.owner)
            .field("inflight", &self.inflight())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel or sandbox without io_uring has nothing to test here,
    /// unless the run asked for the driver (CI's uring pass).
    fn skip<T>(e: io::Error) -> Option<T> {
        let asked =
            std::env::var("FIBER_RUNTIME_IO").is_ok_and(|v| v.eq_ignore_ascii_case("uring"));
        assert!(!asked, "FIBER_RUNTIME_IO=uring, but no io_uring here: {e}");
        eprintln!("no io_uring here: {e}");
        None
    }

    fn ring() -> Option<(Ring, Arc<WakeFd>)> {
        let wake = Arc::new(WakeFd::new(Arc::default()).unwrap());
        match Ring::for_this_thread(wake.clone()) {
            Ok(r) => Some((r, wake)),
            Err(e) => skip(e),
        }
    }

    #[test]
    fn a_wake_before_the_wait_ends_it() {
        let Some((mut r, wake)) = ring() else { return };
        wake.wake();
        let turn = r.wait(None, None);
        assert!(turn.woken);
        assert!(!turn.epoll);
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait() {
        let Some((mut r, wake)) = ring() else { return };
        let th = std::thread::spawn(move || wake.wake());
        // Either order of the wake and the wait: the wait ends.
        assert!(r.wait(None, None).woken);
        th.join().unwrap();
    }

    #[test]
    fn the_timeout_ends_the_wait_without_a_wake() {
        let Some((mut r, _wake)) = ring() else { return };
        let turn = r.wait(Some(Duration::from_millis(1)), None);
        assert_eq!(turn, Turn::default());
    }

    #[test]
    fn a_readable_epoll_fd_ends_the_wait() {
        let Some((mut r, _wake)) = ring() else { return };
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        waker.wake().unwrap();
        let turn = r.wait(None, Some(poll.as_raw_fd()));
        assert!(turn.epoll);
    }

    #[test]
    fn a_ring_refuses_other_threads_and_its_drop_there_abandons_the_read() {
        let Some((mut r, _wake)) = ring() else { return };
        // Arms the read.
        r.wait(Some(Duration::ZERO), None);
        assert!(r.wake_armed);
        let before = ABANDONED.lock().unwrap().len();
        std::thread::spawn(move || {
            assert!(!r.is_owner());
            drop(r);
        })
        .join()
        .unwrap();
        assert!(ABANDONED.lock().unwrap().len() > before);
    }

    #[test]
    fn shutdown_on_the_owner_reaps_every_operation() {
        let Some((mut r, _wake)) = ring() else { return };
        let poll = mio::Poll::new().unwrap();
        r.wait(Some(Duration::ZERO), Some(poll.as_raw_fd()));
        assert_eq!(r.inflight(), 2);
        r.shutdown();
        assert_eq!(r.inflight(), 0);
    }

    #[test]
    fn a_disabled_ring_is_enabled_by_the_thread_that_takes_it() {
        let setup = match create(1, Arc::default()) {
            Ok(mut v) => v.pop().unwrap(),
            Err(e) => return skip(e).unwrap_or(()),
        };
        let wake = setup.wake();
        let th = std::thread::spawn(move || {
            let mut r = setup.enable().unwrap();
            wake.wake();
            assert!(r.wait(None, None).woken);
        });
        th.join().unwrap();
    }
}
