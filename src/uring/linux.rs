//! The rings themselves (Linux; module doc in `mod.rs`).

use super::Turn;
use crate::reactor::gone;
use crate::reactor::scheduled_io::{
    ERROR, READ_CLOSED, READABLE, ScheduledIo, WRITABLE, WRITE_CLOSED,
};
use crate::util::thread_token;
use io_uring::{IoUring, cqueue, opcode, types};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Submission queue entries: every operation is submitted when it is
/// queued, or at the next wait, so a few suffice; a small ring keeps the
/// thousands of runtimes the tests build cheap.
const SQ_ENTRIES: u32 = 32;
/// Completions: one per readiness change of each bound socket between two
/// reaps (the kernel keeps any overflow: `IORING_FEAT_NODROP`).
const CQ_ENTRIES: u32 = 1024;

/// `user_data` of the eventfd read.
const WAKE: u64 = 1;
/// `user_data` of the poll on the reactor's epoll fd.
const EPOLL: u64 = 2;
/// `user_data` of a cancel request (its own completion says nothing).
const CANCEL: u64 = 3;
/// The low bits of a bound socket's poll: its `user_data` is the address
/// of its `PollState` (aligned to 8) with this tag.
const TAG_POLL: u64 = 4;
const TAG_MASK: u64 = 7;

/// What a bound socket's multishot poll asks for (edge-triggered, as the
/// epoll registrations are).
const POLL_EVENTS: u32 = (libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP | libc::POLLPRI) as u32;

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

/// What other threads may reach of a ring: requests for its owner.
pub(crate) struct RingShared {
    /// Sockets dropped on other threads, whose polls the owner cancels.
    /// Each entry keeps its `PollState`, so that the address the cancel
    /// names is not reused before it ran.
    remote: Mutex<Remote>,
    remote_len: AtomicUsize,
    /// Wakes the owner (installed when it enables the ring: the parker's
    /// unparker).
    unpark: OnceLock<Waker>,
    /// Sockets bound to the ring and not closed yet.
    live: AtomicUsize,
}

struct Remote {
    /// Set by the owner's shutdown: no request is taken from then on.
    is_shutdown: bool,
    cancels: Vec<Arc<PollState>>,
}

/// A stream bound to a ring: its readiness comes from a multishot poll
/// there (`Ring::bind`).
pub(crate) struct Bound {
    state: Arc<PollState>,
}

struct PollState {
    io: ScheduledIo,
    home: Arc<RingShared>,
    fd: RawFd,
    /// Set when the socket closes, before its fd does: from then on the
    /// poll is never re-armed (a re-arm checks it and submits under this
    /// lock, so it never names an fd number that was closed).
    closed: Mutex<bool>,
}

impl Bound {
    /// The socket's readiness (the reactor's readiness loop runs on it).
    pub(crate) fn io(&self) -> &ScheduledIo {
        &self.state.io
    }

    /// Whether `ring` is this socket's home.
    pub(crate) fn is_home(&self, ring: &Ring) -> bool {
        Arc::ptr_eq(&self.state.home, &ring.shared)
    }

    /// The socket is about to close its fd: ends its poll. `here` is the
    /// home ring when the caller is its owner (the poll ends now and the
    /// kernel lets go of the file); otherwise the owner is asked. Returns
    /// the wakers of other sockets whose readiness the close reaped, for
    /// the caller to wake.
    pub(crate) fn close(&self, here: Option<&mut Ring>) -> Vec<Waker> {
        {
            let mut closed = lock(&self.state.closed);
            if *closed {
                return Vec::new();
            }
            *closed = true;
        }
        self.state.io.clear_wakers();
        let home = &self.state.home;
        home.live.fetch_sub(1, Relaxed);
        let mut wakers = Vec::new();
        match here {
            Some(ring) if self.is_home(ring) => ring.cancel_here(&self.state, &mut wakers),
            _ => {
                let mut remote = lock(&home.remote);
                if remote.is_shutdown {
                    // Its shutdown cancelled every poll already.
                    return wakers;
                }
                remote.cancels.push(self.state.clone());
                home.remote_len.store(remote.cancels.len(), Release);
                drop(remote);
                if let Some(unpark) = home.unpark.get() {
                    unpark.wake_by_ref();
                }
            }
        }
        wakers
    }
}

impl Drop for Bound {
    /// A socket closes through `close`; this only catches a path that
    /// forgot to (the owner is asked to end the poll).
    fn drop(&mut self) {
        let wakers = self.close(None);
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("uring::Bound")
            .field("fd", &self.state.fd)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A poll's revents as the reactor's readiness bits (as mio maps epoll's).
fn readiness(revents: u32) -> usize {
    let has = |bit: libc::c_short| revents & bit as u32 != 0;
    let mut ready = 0;
    if has(libc::POLLIN) || has(libc::POLLPRI) {
        ready |= READABLE;
    }
    if has(libc::POLLOUT) {
        ready |= WRITABLE;
    }
    if has(libc::POLLHUP) || (has(libc::POLLIN) && has(libc::POLLRDHUP)) {
        ready |= READ_CLOSED;
    }
    if has(libc::POLLHUP)
        || (has(libc::POLLOUT) && has(libc::POLLERR))
        || revents == libc::POLLERR as u32
    {
        ready |= WRITE_CLOSED;
    }
    if has(libc::POLLERR) {
        ready |= ERROR;
    }
    ready
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
pub(crate) fn create(n: usize, enters: Arc<super::Counters>) -> io::Result<Vec<Setup>> {
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
    build_sized(disabled, SQ_ENTRIES, CQ_ENTRIES)
}

fn build_sized(disabled: bool, sq: u32, cq: u32) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(cq);
    if disabled {
        b.setup_r_disabled();
    }
    b.dontfork();
    b.build(sq).map_err(|e| {
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
pub(crate) struct WakeFd(OwnedFd, Arc<super::Counters>);

impl WakeFd {
    pub(crate) fn new(enters: Arc<super::Counters>) -> io::Result<WakeFd> {
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
    /// Bound sockets' polls not yet ended by a final completion.
    polls: usize,
    /// Sockets whose cancels are queued, not yet submitted.
    cancelling: Vec<Arc<PollState>>,
    /// Polls re-armed after the kernel ended them (tests).
    #[cfg(test)]
    rearms: usize,
    shared: Arc<RingShared>,
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
            polls: 0,
            cancelling: Vec::new(),
            #[cfg(test)]
            rearms: 0,
            shared: Arc::new(RingShared {
                remote: Mutex::new(Remote {
                    is_shutdown: false,
                    cancels: Vec::new(),
                }),
                remote_len: AtomicUsize::new(0),
                unpark: OnceLock::new(),
                live: AtomicUsize::new(0),
            }),
        }
    }

    /// How other threads reach the owner: `unpark` wakes it when a remote
    /// request waits (install it before sockets bind).
    pub(crate) fn set_unpark(&self, unpark: Waker) {
        let _ = self.shared.unpark.set(unpark);
    }

    /// Binds the stream `fd` to this ring: a multishot poll, submitted at
    /// once (the kernel then holds the file, so the fd number may close
    /// and be reused without the poll seeing another file).
    pub(crate) fn bind(&mut self, fd: RawFd) -> io::Result<Bound> {
        if lock(&self.shared.remote).is_shutdown {
            return Err(gone());
        }
        let state = Arc::new(PollState {
            io: ScheduledIo::new(),
            home: self.shared.clone(),
            fd,
            closed: Mutex::new(false),
        });
        self.arm_poll(types::Fd(fd), state.clone());
        self.submit_all();
        self.shared.live.fetch_add(1, Relaxed);
        self.wake.1.binds.fetch_add(1, Relaxed);
        Ok(Bound { state })
    }

    /// Hands every queued entry to the kernel now (a submit may take only
    /// some, e.g. short of memory): an entry left queued could name an fd
    /// number that closes before the next enter.
    fn submit_all(&mut self) {
        for _ in 0..1000 {
            if let Err(e) = self.ring.submit() {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) {
                    panic!("fiber-runtime: the io_uring driver failed: io_uring_enter: {e}");
                }
            }
            if self.ring.submission().is_empty() {
                return;
            }
        }
        panic!("fiber-runtime: the io_uring driver failed: the kernel takes no submission");
    }

    /// Queues a multishot poll of `fd` that owns one count of `state`.
    fn arm_poll(&mut self, fd: types::Fd, state: Arc<PollState>) {
        let ud = Arc::into_raw(state) as u64;
        debug_assert_eq!(ud & TAG_MASK, 0);
        let poll = opcode::PollAdd::new(fd, POLL_EVENTS)
            .multi(true)
            .build()
            .user_data(ud | TAG_POLL);
        // SAFETY: a poll names no memory; the count it owns keeps the
        // `PollState` its completions reach alive until the final one.
        unsafe { self.push(&poll) };
        self.polls += 1;
    }

    /// Cancels a poll of this ring (the socket closes on the owner's
    /// thread) and reaps its end at once, so that the kernel lets go of
    /// the file before the fd closes (peers see the close now).
    fn cancel_here(&mut self, state: &Arc<PollState>, wakers: &mut Vec<Waker>) {
        let ud = Arc::as_ptr(state) as u64 | TAG_POLL;
        let cancel = opcode::AsyncCancel::new(ud).build().user_data(CANCEL);
        // SAFETY: a cancel names no memory.
        unsafe { self.push(&cancel) };
        self.enter_and_reap(wakers);
    }

    /// Submits what is queued and, if completions may wait in the kernel
    /// (deferred task work, overflow), fetches them; then reaps. Never
    /// blocks. For busy workers (`Parker::poll_driver`) and closes.
    pub(crate) fn poll_now(&mut self, wakers: &mut Vec<Waker>) {
        self.queue_remote();
        let sq = self.ring.submission();
        let pending = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if pending || !self.ring.completion().is_empty() {
            self.enter_and_reap(wakers);
        }
    }

    fn enter_and_reap(&mut self, wakers: &mut Vec<Waker>) {
        // Submits, runs the deferred task work (GETEVENTS: completions of
        // what the submission did inline, a cancel's included) and
        // returns at once: a zero timeout.
        let ts = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&ts);
        entered(self.ring.submitter().submit_with_args(1, &args));
        self.cancelling.clear();
        self.reap(wakers);
    }

    /// Queues the cancels other threads asked for; they run at the next
    /// enter. Their `PollState`s wait in `cancelling` until then (so the
    /// addresses the cancels name stay unique). It reaps nothing: a wake
    /// reaped here, before a wait, would be lost to that wait.
    fn queue_remote(&mut self) -> bool {
        if self.shared.remote_len.load(Acquire) == 0 {
            return false;
        }
        let cancels = {
            let mut remote = lock(&self.shared.remote);
            self.shared.remote_len.store(0, Relaxed);
            std::mem::take(&mut remote.cancels)
        };
        for state in &cancels {
            let ud = Arc::as_ptr(state) as u64 | TAG_POLL;
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(CANCEL);
            // SAFETY: a cancel names no memory.
            unsafe { self.push(&cancel) };
        }
        let any = !cancels.is_empty();
        self.cancelling.extend(cancels);
        any
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
        usize::from(self.wake_armed) + usize::from(self.epoll_armed) + self.polls
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
    ///
    /// The wakers of bound sockets that became ready go to `wakers`.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        epoll: Option<RawFd>,
        wakers: &mut Vec<Waker>,
    ) -> Turn {
        debug_assert!(self.is_owner(), "a ring is driven by its owner only");
        // Cancels go in with this wait's enter.
        self.queue_remote();
        if !self.ring.completion().is_empty() {
            // Readiness reaped by a close's enter, not handled yet: no
            // waiting until it is.
            let mut turn = self.reap(wakers);
            turn.woken = true;
            return turn;
        }
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
        self.wake.1.waits.fetch_add(1, Relaxed);
        let res = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::from(d.min(MAX_WAIT));
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        entered(res);
        // The enter ran the queued cancels.
        self.cancelling.clear();
        self.reap(wakers)
    }

    fn reap(&mut self, wakers: &mut Vec<Waker>) -> Turn {
        let mut turn = Turn::default();
        let mut rearm = Vec::new();
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
                CANCEL => {}
                ud if ud & TAG_MASK == TAG_POLL => {
                    let ptr = (ud & !TAG_MASK) as *const PollState;
                    if !cqueue::more(cqe.flags()) {
                        // SAFETY: the poll's final completion: the count
                        // `arm_poll` gave it is ours again.
                        let state = unsafe { Arc::from_raw(ptr) };
                        self.polls -= 1;
                        let res = cqe.result();
                        if res >= 0 {
                            // The kernel ended it (a full completion queue):
                            // deliver, then re-arm below.
                            state.io.set_readiness(readiness(res as u32), wakers);
                            rearm.push(state);
                        } else if res == -libc::ECANCELED {
                            // Closed, or the ring shuts down.
                            if !*lock(&state.closed) {
                                state.io.shutdown();
                            }
                        } else {
                            // Not expected (the kernel holds the file):
                            // let the operations run and report it.
                            state
                                .io
                                .set_readiness(READ_CLOSED | WRITE_CLOSED | ERROR, wakers);
                        }
                    } else if cqe.result() >= 0 {
                        // SAFETY: the poll has not ended, so its count
                        // keeps the state alive.
                        let state = unsafe { &*ptr };
                        state
                            .io
                            .set_readiness(readiness(cqe.result() as u32), wakers);
                    }
                }
                other => unreachable!("io_uring completion of an unknown operation {other}"),
            }
        }
        let shutting_down = !rearm.is_empty() && lock(&self.shared.remote).is_shutdown;
        for state in rearm {
            let closed = lock(&state.closed);
            if *closed {
                continue;
            }
            if shutting_down {
                // Its cancel may have run already: no new poll, which
                // nothing would end; the socket learns of the shutdown.
                drop(closed);
                state.io.shutdown();
                continue;
            }
            let fd = state.fd;
            self.arm_poll(types::Fd(fd), state.clone());
            #[cfg(test)]
            {
                self.rearms += 1;
            }
            // Submitted under the lock: the fd cannot close before the
            // kernel holds its file.
            self.submit_all();
            drop(closed);
        }
        turn
    }

    /// Cancels every operation and reaps them all, so that the ring can go
    /// (or move to another thread) with nothing in flight; it stays usable
    /// (the next wait re-arms). Only the owner can; on another thread (or
    /// past `SHUTDOWN_WAIT`) the memory is abandoned when the ring drops.
    pub(crate) fn shutdown(&mut self) {
        if !self.is_owner() {
            return;
        }
        let cancels = {
            let mut remote = lock(&self.shared.remote);
            remote.is_shutdown = true;
            std::mem::take(&mut remote.cancels)
        };
        // The cancel below ends their polls.
        drop(cancels);
        self.cancel_all();
    }

    /// `shutdown` without refusing later binds: a current-thread core
    /// given back (`Parker::quiesce_ring`) leaves nothing in flight, and
    /// the ring stays usable if the same thread drives it again.
    pub(crate) fn cancel_all(&mut self) {
        if !self.is_owner() {
            return;
        }
        // Queued entries (a re-arm) go in first, so that the cancel finds
        // them.
        self.submit_all();
        if self.inflight() == 0 {
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
            let mut wakers = Vec::new();
            self.reap(&mut wakers);
            // Readers and writers of the sockets learn of the shutdown.
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

/// The result of an enter that may return early: timed out, interrupted,
/// completions to reap first, or the kernel short of memory for now
/// (parking allows an early return) are fine; anything else is fatal, as
/// an `epoll_wait` failure is for the reactor.
fn entered(res: io::Result<usize>) {
    if let Err(e) = res {
        if !matches!(
            e.raw_os_error(),
            Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN | libc::ENOMEM)
        ) {
            panic!("fiber-runtime: the io_uring driver failed: io_uring_enter: {e}");
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
        let turn = r.wait(None, None, &mut Vec::new());
        assert!(turn.woken);
        assert!(!turn.epoll);
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait() {
        let Some((mut r, wake)) = ring() else { return };
        let th = std::thread::spawn(move || wake.wake());
        // Either order of the wake and the wait: the wait ends.
        assert!(r.wait(None, None, &mut Vec::new()).woken);
        th.join().unwrap();
    }

    #[test]
    fn the_timeout_ends_the_wait_without_a_wake() {
        let Some((mut r, _wake)) = ring() else { return };
        let turn = r.wait(Some(Duration::from_millis(1)), None, &mut Vec::new());
        assert_eq!(turn, Turn::default());
    }

    #[test]
    fn a_readable_epoll_fd_ends_the_wait() {
        let Some((mut r, _wake)) = ring() else { return };
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        waker.wake().unwrap();
        let turn = r.wait(None, Some(poll.as_raw_fd()), &mut Vec::new());
        assert!(turn.epoll);
    }

    #[test]
    fn a_ring_refuses_other_threads_and_its_drop_there_abandons_the_read() {
        let Some((mut r, _wake)) = ring() else { return };
        // Arms the read.
        r.wait(Some(Duration::ZERO), None, &mut Vec::new());
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
        r.wait(
            Some(Duration::ZERO),
            Some(poll.as_raw_fd()),
            &mut Vec::new(),
        );
        assert_eq!(r.inflight(), 2);
        r.shutdown();
        assert_eq!(r.inflight(), 0);
    }

    /// A connected pair of non-blocking Unix stream sockets.
    fn pair() -> (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Waits (bounded) until `bound` reports readiness with `bits`.
    fn wait_for(r: &mut Ring, bound: &Bound, bits: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut wakers = Vec::new();
            r.poll_now(&mut wakers);
            if bound.io().readiness() & bits == bits {
                return;
            }
            assert!(Instant::now() < deadline, "no readiness {bits:#x}");
            r.wait(Some(Duration::from_millis(10)), None, &mut wakers);
        }
    }

    #[test]
    fn a_bound_socket_reports_readiness_and_closing_ends_its_poll() {
        let Some((mut r, _wake)) = ring() else { return };
        let (a, mut b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        assert_eq!(r.polls, 1);
        // Writable at once, readable once the peer writes.
        wait_for(&mut r, &bound, WRITABLE);
        std::io::Write::write_all(&mut b, b"x").unwrap();
        wait_for(&mut r, &bound, READABLE);
        // Peer gone: read closed.
        drop(b);
        wait_for(&mut r, &bound, READ_CLOSED);
        assert_eq!(r.shared.live.load(SeqCst), 1);
        drop(bound.close(Some(&mut r)));
        assert_eq!(r.polls, 0, "the close reaped the poll's end");
        assert_eq!(r.shared.live.load(SeqCst), 0);
        drop(a);
    }

    #[test]
    fn a_close_on_another_thread_is_carried_out_by_the_owner() {
        let Some((mut r, _wake)) = ring() else { return };
        let woken = Arc::new(AtomicUsize::new(0));
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        r.set_unpark(Waker::from(Arc::new(Count(woken.clone()))));
        let (a, _b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        std::thread::spawn(move || drop(bound)).join().unwrap();
        assert_eq!(woken.load(SeqCst), 1, "the owner was asked");
        assert_eq!(r.polls, 1);
        r.poll_now(&mut Vec::new());
        assert_eq!(r.polls, 0, "the owner cancelled the poll");
    }

    /// A close from another thread queued just before the owner waits
    /// must not swallow a wake that came with it (the cancel goes in with
    /// the wait's own enter, whose reap sees the wake).
    #[test]
    fn a_remote_close_before_a_wait_loses_no_wake() {
        let Some((mut r, wake)) = ring() else { return };
        let (a, _b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        // Arms the wake read.
        r.wait(Some(Duration::ZERO), None, &mut Vec::new());
        std::thread::spawn(move || {
            drop(bound);
            wake.wake();
        })
        .join()
        .unwrap();
        let turn = r.wait(Some(Duration::from_secs(30)), None, &mut Vec::new());
        assert!(turn.woken, "the wake was lost");
        // The close ran (its poll's end may come in a later reap).
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.polls > 0 {
            assert!(Instant::now() < deadline, "the remote close never ran");
            r.poll_now(&mut Vec::new());
        }
    }

    #[test]
    fn shutdown_ends_the_polls_of_bound_sockets_and_refuses_new_ones() {
        let Some((mut r, _wake)) = ring() else { return };
        let (a, _b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        r.shutdown();
        assert_eq!(r.polls, 0);
        assert!(bound.io().readiness() & crate::reactor::scheduled_io::SHUTDOWN != 0);
        assert!(r.bind(a.as_raw_fd()).is_err());
        // Closing after the shutdown has nothing left to do.
        assert!(bound.close(None).is_empty());
    }

    #[test]
    fn readiness_maps_revents_as_mio_maps_epoll_events() {
        let c = |b: libc::c_short| b as u32;
        assert_eq!(readiness(c(libc::POLLIN)), READABLE);
        assert_eq!(readiness(c(libc::POLLOUT)), WRITABLE);
        assert_eq!(
            readiness(c(libc::POLLIN | libc::POLLRDHUP)),
            READABLE | READ_CLOSED
        );
        assert_eq!(readiness(c(libc::POLLHUP)), READ_CLOSED | WRITE_CLOSED);
        assert_eq!(readiness(c(libc::POLLERR)), WRITE_CLOSED | ERROR);
        assert_eq!(
            readiness(c(libc::POLLOUT | libc::POLLERR)),
            WRITABLE | WRITE_CLOSED | ERROR
        );
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
            assert!(r.wait(None, None, &mut Vec::new()).woken);
        });
        th.join().unwrap();
    }

    /// A completion queue too small for the burst: the kernel ends the
    /// multishot polls it cannot post for (a final completion with an
    /// event); each is delivered and re-armed, and later events (the
    /// peers' closes) still arrive.
    #[test]
    fn polls_the_kernel_ends_on_a_full_completion_queue_are_re_armed() {
        let wake = Arc::new(WakeFd::new(Arc::default()).unwrap());
        let mut r = match build_sized(false, 2, 4) {
            Ok(ring) => Ring::new(ring, wake),
            Err(e) => return skip(e).unwrap_or(()),
        };
        let mut peers = Vec::new();
        let mut bound = Vec::new();
        for _ in 0..16 {
            let (a, b) = pair();
            bound.push((r.bind(a.as_raw_fd()).unwrap(), a));
            peers.push(b);
        }
        // Every socket readable at once, then one reap for all of them.
        for p in &mut peers {
            std::io::Write::write_all(p, b"x").unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while bound
            .iter()
            .any(|(b, _)| b.io().readiness() & READABLE == 0)
        {
            assert!(Instant::now() < deadline, "readiness lost in the overflow");
            r.poll_now(&mut Vec::new());
        }
        drop(peers);
        while bound
            .iter()
            .any(|(b, _)| b.io().readiness() & READ_CLOSED == 0)
        {
            assert!(Instant::now() < deadline, "a close lost after a re-arm");
            r.poll_now(&mut Vec::new());
        }
        assert_eq!(r.polls, 16, "every poll is armed again");
        assert!(
            r.rearms > 0,
            "the burst overflowed no poll: the test tests nothing"
        );
        for (b, _) in &bound {
            drop(b.close(Some(&mut r)));
        }
        assert_eq!(r.polls, 0);
    }

    /// Twenty TCP connections bound to one ring, their peers sending and
    /// closing from another thread: every one sees its close (edge-
    /// triggered multishot polls lose no event), fifty times over.
    #[test]
    fn many_bound_sockets_all_see_their_peers_data_and_close() {
        let Some((mut r, _wake)) = ring() else { return };
        for round in 0..50 {
            let mut pairs = Vec::new();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            for _ in 0..20 {
                let c = std::net::TcpStream::connect(addr).unwrap();
                let (s, _) = l.accept().unwrap();
                s.set_nonblocking(true).unwrap();
                let b = r.bind(s.as_raw_fd()).unwrap();
                pairs.push((c, s, b));
            }
            let clients: Vec<_> = pairs
                .iter_mut()
                .map(|(c, _, _)| c.try_clone().unwrap())
                .collect();
            let th = std::thread::spawn(move || {
                for mut c in clients {
                    for _ in 0..5 {
                        std::io::Write::write_all(&mut c, &[1u8; 64]).unwrap();
                    }
                    c.shutdown(std::net::Shutdown::Both).unwrap();
                }
            });
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let mut wakers = Vec::new();
                r.wait(Some(Duration::from_millis(1)), None, &mut wakers);
                // Drain reads like an edge-triggered reader.
                for (_, s, b) in pairs.iter_mut() {
                    let mut buf = [0u8; 256];
                    loop {
                        match std::io::Read::read(s, &mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    let _ = b;
                }
                let closed = pairs
                    .iter()
                    .filter(|(_, _, b)| b.io().readiness() & READ_CLOSED != 0)
                    .count();
                if closed == pairs.len() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: only {closed} of {} saw the close",
                    pairs.len()
                );
            }
            th.join().unwrap();
            for (_, _, b) in &pairs {
                drop(b.close(Some(&mut r)));
            }
        }
    }
}
