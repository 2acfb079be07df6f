//! The rings themselves (Linux; module doc in `mod.rs`).

use super::Turn;
use crate::reactor::gone;
use crate::reactor::scheduled_io::{
    ERROR, READ_CLOSED, READABLE, ScheduledIo, WRITABLE, WRITE_CLOSED,
};
use crate::util::thread_token;
use io_uring::{IoUring, cqueue, opcode, types};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering::*};
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
/// A bound socket's multishot receive (same address, this tag).
const TAG_RECV: u64 = 5;
/// A bound socket's one-shot `POLLIN` poll, armed instead of a receive
/// when the buffers ran out (`ENOBUFS`).
const TAG_RECV_POLL: u64 = 6;
const TAG_MASK: u64 = 7;

/// What a bound socket's multishot poll asks for (edge-triggered, as the
/// epoll registrations are). Not `POLLIN`: data arrives by the socket's
/// multishot receive, whose completions wake readers (a poll for it too
/// would post a second completion per message).
const POLL_EVENTS: u32 = (libc::POLLOUT | libc::POLLRDHUP | libc::POLLPRI) as u32;

/// Buffers in a ring's pool (provided-buffer ring, group `BUF_GROUP`).
const BUF_COUNT: u16 = 1024;
/// Bytes per buffer: a receive completes with at most this many.
const BUF_SIZE: usize = 4096;
const BUF_GROUP: u16 = 0;
/// Received chunks a socket keeps for its reader: at this many its
/// receive is cancelled, and later data waits in the kernel (TCP flow
/// control), so that 64 unread sockets at most can hold the whole pool.
const RECV_CAP: usize = 16;

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
    /// The receive buffers, made and registered by the owner on the first
    /// bind.
    pool: OnceLock<BufPool>,
}

struct Remote {
    /// Set by the owner's shutdown: no request is taken from then on.
    is_shutdown: bool,
    cancels: Vec<Arc<PollState>>,
    /// Sockets whose readers, on other threads, want their receive armed
    /// (`Arm::Requested`).
    arms: Vec<Arc<PollState>>,
}

/// A ring's receive buffers: `BUF_COUNT` buffers of `BUF_SIZE` bytes and
/// the ring of their descriptors, from which the kernel takes one per
/// completion of a multishot receive. A buffer named by a completion is
/// ours (its bytes are the chunk received) until its id is given back.
struct BufPool {
    /// The descriptor ring (`BUF_COUNT` entries; the kernel reads it).
    entries: *mut types::BufRingEntry,
    entries_len: usize,
    mem: *mut u8,
    mem_len: usize,
    /// The next tail to publish; givers serialise on it (any thread).
    tail: Mutex<u16>,
    /// The fork generation it was made in: a forked child has none of its
    /// memory (`MADV_DONTFORK`) and must not touch or unmap it.
    forks: u64,
    /// A ring dropped with receives that may still be in flight: the
    /// kernel may still write the buffers, so they are never unmapped.
    leak: AtomicBool,
}

// SAFETY: the pointers are to mappings the pool owns; the descriptor ring
// is written only under `tail` (and read by the kernel), and a buffer's
// bytes only by the kernel, then read by the one reader holding its id.
unsafe impl Send for BufPool {}
// SAFETY: as above.
unsafe impl Sync for BufPool {}

impl BufPool {
    /// Maps the buffers and their descriptor ring, with every buffer in
    /// it (registered by `Ring::pool`).
    fn new() -> io::Result<BufPool> {
        let entries_len = usize::from(BUF_COUNT) * std::mem::size_of::<types::BufRingEntry>();
        let mem_len = usize::from(BUF_COUNT) * BUF_SIZE;
        let map = |len: usize| -> io::Result<*mut u8> {
            // SAFETY: a fresh anonymous mapping; no existing memory changes.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // The kernel writes these for this process only: a forked
            // child gets none of it (as the ring's own maps).
            // SAFETY: advice on the mapping just made.
            unsafe { libc::madvise(p, len, libc::MADV_DONTFORK) };
            Ok(p.cast())
        };
        let entries = map(entries_len)?;
        let mem = match map(mem_len) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: the mapping made above, unused.
                unsafe { libc::munmap(entries.cast(), entries_len) };
                return Err(e);
            }
        };
        let pool = BufPool {
            entries: entries.cast(),
            entries_len,
            mem,
            mem_len,
            tail: Mutex::new(0),
            forks: here().1,
            leak: AtomicBool::new(false),
        };
        pool.give_back(0..BUF_COUNT);
        Ok(pool)
    }

    /// Puts buffers back in the descriptor ring, for the kernel to use
    /// again (any thread).
    fn give_back(&self, bids: impl Iterator<Item = u16>) {
        if self.forks != here().1 {
            // A forked child: the ring is the parent's, and not mapped here.
            return;
        }
        let mut tail = lock(&self.tail);
        let mut t = *tail;
        for bid in bids {
            let i = usize::from(t & (BUF_COUNT - 1));
            // SAFETY: entry `i` is within the ring and past its published
            // tail, so the kernel does not read it until the store below;
            // givers are serialised by `tail`. (Entry 0's `resv` is the
            // tail, which the setters leave alone.)
            let e = unsafe { &mut *self.entries.add(i) };
            e.set_addr(self.mem as u64 + u64::from(bid) * BUF_SIZE as u64);
            e.set_len(BUF_SIZE as u32);
            e.set_bid(bid);
            t = t.wrapping_add(1);
        }
        if t != *tail {
            *tail = t;
            // SAFETY: the ring's tail word, which the kernel reads; a
            // release store publishes the entries written above.
            unsafe {
                let at = types::BufRingEntry::tail(self.entries).cast::<AtomicU16>();
                (*at).store(t, Release);
            }
        }
    }

    /// The bytes of `chunk`.
    ///
    /// # Safety
    ///
    /// `chunk` came from a completion of this pool's ring, and its buffer
    /// has not been given back.
    unsafe fn bytes(&self, chunk: Chunk) -> &[u8] {
        let at = usize::from(chunk.bid) * BUF_SIZE + chunk.off as usize;
        // SAFETY: within the buffer (`off + len <= BUF_SIZE`), which the
        // kernel wrote before posting the completion and does not touch
        // until the id is given back (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.mem.add(at), chunk.len as usize) }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        if self.leak.load(Relaxed) || self.forks != here().1 {
            // The kernel may still write the buffers (a ring dropped with
            // receives in flight), or they are the parent's: never unmap.
            return;
        }
        // SAFETY: our mappings; no receive is in flight (the rings that
        // used them reaped every one, else `leak` is set) and no chunk is
        // queued (each holds the `RingShared` that holds this pool).
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
            libc::munmap(self.mem.cast(), self.mem_len);
        }
    }
}

/// A received chunk waiting for the socket's reader: bytes
/// `[off, off + len)` of buffer `bid`.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    bid: u16,
    off: u32,
    len: u32,
}

/// Where a socket's receive stands (module doc of `io/poll_evented.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arm {
    /// Nothing in flight: a reader may `recv` directly (the ordering rule:
    /// only here), and arms the receive when that would block.
    Idle,
    /// A reader on another thread asked the home ring to arm it.
    Requested,
    /// The multishot receive is in flight.
    Armed,
    /// It is being cancelled (the queue is full).
    Cancelling,
    /// A one-shot `POLLIN` poll is in flight (the buffers ran out).
    Polling,
    /// Ended for good: end of stream, an error, or the socket closed.
    Done,
}

struct Recv {
    arm: Arm,
    queue: VecDeque<Chunk>,
    /// What readers get once the queue is empty.
    end: Option<End>,
    /// The buffers ran out at the last receive: the next arm is a
    /// one-shot `POLLIN` poll instead (no spin while they stay out).
    starved: bool,
    reader: Option<Waker>,
}

impl Recv {
    /// Ends the receive for good because the socket closed or the ring
    /// shuts down; returns the reader to wake (with no lock held: a woken
    /// path may close a stream).
    fn fail(&mut self) -> Option<Waker> {
        self.arm = Arm::Done;
        self.end.get_or_insert(End::Gone);
        self.reader.take()
    }
}

#[derive(Clone, Copy, Debug)]
enum End {
    /// The end of the stream.
    Eof,
    /// The receive's error.
    Errno(i32),
    /// The runtime shut down.
    Gone,
}

impl End {
    fn result(self) -> io::Result<usize> {
        match self {
            End::Eof => Ok(0),
            End::Errno(e) => Err(io::Error::from_raw_os_error(e)),
            End::Gone => Err(gone()),
        }
    }
}

/// What a socket read does with the bytes (`Bound::poll_recv`).
pub(crate) enum Src<'a> {
    /// Read from the socket itself (a system call): nothing is in flight.
    Socket,
    /// Copy these received bytes; return how many were taken.
    Bytes(&'a [u8]),
}

/// What `Bound::poll_recv` asks of its caller once it returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Then {
    Nothing,
    /// Arm the receive: on the home ring (`Bound::arm_on`), else by a
    /// request to it (`Bound::request_arm`).
    Arm,
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
    /// lock, so it never names an fd number that was closed). Taken
    /// before `recv` where both are.
    closed: Mutex<bool>,
    recv: Mutex<Recv>,
}

impl Drop for PollState {
    /// Chunks nobody read give their buffers back.
    fn drop(&mut self) {
        let recv = self
            .recv
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pool) = self.home.pool.get() {
            pool.give_back(recv.queue.drain(..).map(|c| c.bid));
        }
    }
}

impl Bound {
    /// The socket's readiness (the reactor's readiness loop runs on it).
    pub(crate) fn io(&self) -> &ScheduledIo {
        &self.state.io
    }

    /// A read: copies queued chunks through `read(Src::Bytes)` (`peek`:
    /// without consuming them); with none queued and nothing in flight,
    /// reads the socket directly (`read(Src::Socket)`), and when that
    /// would block, asks the caller to arm the receive (`Then::Arm`).
    /// Spends the task's coop budget as the readiness loop does.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut std::task::Context<'_>,
        peek: bool,
        mut read: impl FnMut(Src<'_>) -> io::Result<usize>,
    ) -> (std::task::Poll<io::Result<usize>>, Then) {
        use std::task::Poll;
        if crate::task_core::coop::poll_proceed(cx).is_pending() {
            return (Poll::Pending, Then::Nothing);
        }
        let mut recv = lock(&self.state.recv);
        if !recv.queue.is_empty() {
            let pool = self
                .state
                .home
                .pool
                .get()
                .expect("chunks come from the pool");
            if pool.forks != here().1 {
                // A forked child: the buffers are the parent's, not mapped
                // here.
                return (Poll::Ready(Err(gone())), Then::Nothing);
            }
            let mut n = 0;
            let mut used = 0;
            for chunk in recv.queue.iter_mut() {
                // SAFETY: a queued chunk's buffer is ours until its id is
                // given back, which only the consumer of the chunk does.
                let bytes = unsafe { pool.bytes(*chunk) };
                let took = match read(Src::Bytes(bytes)) {
                    Ok(t) => t.min(bytes.len()),
                    Err(e) => return (Poll::Ready(Err(e)), Then::Nothing),
                };
                n += took;
                if took < bytes.len() {
                    // The buffer is full.
                    if !peek {
                        chunk.off += took as u32;
                        chunk.len -= took as u32;
                    }
                    break;
                }
                used += 1;
            }
            if !peek && used > 0 {
                pool.give_back(recv.queue.drain(..used).map(|c| c.bid));
            }
            // Data was there: `n` is 0 only for an empty buffer.
            return (Poll::Ready(Ok(n)), Then::Nothing);
        }
        if let Some(end) = recv.end {
            return (Poll::Ready(end.result()), Then::Nothing);
        }
        match recv.arm {
            Arm::Idle => match read(Src::Socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    recv.arm = Arm::Requested;
                    recv.reader = Some(cx.waker().clone());
                    crate::task_core::coop::refund();
                    (Poll::Pending, Then::Arm)
                }
                res => (Poll::Ready(res), Then::Nothing),
            },
            _ => {
                recv.reader = Some(cx.waker().clone());
                crate::task_core::coop::refund();
                (Poll::Pending, Then::Nothing)
            }
        }
    }

    /// Arms the receive a reader asked for (`Then::Arm`) if `ring` is the
    /// home ring; returns `false` if it is not (then `request_arm`).
    pub(crate) fn arm_on(&self, ring: &mut Ring) -> bool {
        if !self.is_home(ring) {
            return false;
        }
        ring.arm_requested(&self.state);
        true
    }

    /// Asks the home ring to arm the receive a reader asked for, from
    /// another thread.
    pub(crate) fn request_arm(&self) {
        let home = &self.state.home;
        let mut remote = lock(&home.remote);
        if remote.is_shutdown {
            drop(remote);
            let reader = lock(&self.state.recv).fail();
            if let Some(w) = reader {
                w.wake();
            }
            return;
        }
        remote.arms.push(self.state.clone());
        home.remote_len.fetch_add(1, Release);
        drop(remote);
        if let Some(unpark) = home.unpark.get() {
            unpark.wake_by_ref();
        }
    }

    /// Bytes received and not read yet.
    pub(crate) fn unread(&self) -> usize {
        lock(&self.state.recv)
            .queue
            .iter()
            .map(|c| c.len as usize)
            .sum()
    }

    /// Whether an operation of the receive may be in flight.
    pub(crate) fn receiving(&self) -> bool {
        !matches!(lock(&self.state.recv).arm, Arm::Idle | Arm::Done)
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
        let reader = {
            let mut closed = lock(&self.state.closed);
            if *closed {
                return Vec::new();
            }
            *closed = true;
            // A receive asked for and not armed yet never will be (the
            // home ring refuses it once `closed` is set): nothing is in
            // flight from now on.
            let mut recv = lock(&self.state.recv);
            if recv.arm == Arm::Requested {
                recv.fail()
            } else {
                None
            }
        };
        if let Some(w) = reader {
            w.wake();
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
    /// Their receives (and `POLLIN` polls) likewise.
    recvs: usize,
    /// The buffer pool could not be made (e.g. `RLIMIT_MEMLOCK`): later
    /// binds fail at once (their streams go to epoll) instead of trying
    /// again for each stream.
    pool_refused: Option<io::ErrorKind>,
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
            recvs: 0,
            pool_refused: None,
            cancelling: Vec::new(),
            #[cfg(test)]
            rearms: 0,
            shared: Arc::new(RingShared {
                remote: Mutex::new(Remote {
                    is_shutdown: false,
                    cancels: Vec::new(),
                    arms: Vec::new(),
                }),
                remote_len: AtomicUsize::new(0),
                unpark: OnceLock::new(),
                live: AtomicUsize::new(0),
                pool: OnceLock::new(),
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
        self.pool()?;
        let state = Arc::new(PollState {
            io: ScheduledIo::new(),
            home: self.shared.clone(),
            fd,
            closed: Mutex::new(false),
            // Armed by the first read that would block, not now: a
            // receive on a socket still connecting would take the
            // connect's error (`SO_ERROR`) from `finish_connect`.
            recv: Mutex::new(Recv {
                arm: Arm::Idle,
                queue: VecDeque::new(),
                end: None,
                starved: false,
                reader: None,
            }),
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

    /// The receive buffers, made and registered on first use.
    fn pool(&mut self) -> io::Result<&BufPool> {
        if let Some(kind) = self.pool_refused {
            return Err(io::Error::new(
                kind,
                "the io_uring driver's receive buffers could not be made",
            ));
        }
        if self.shared.pool.get().is_none() {
            let made = BufPool::new().and_then(|pool| {
                // SAFETY: the descriptor ring is page-aligned memory the
                // pool keeps mapped for as long as the ring may use it
                // (`BufPool`'s drop), holding `BUF_COUNT` entries.
                unsafe {
                    self.ring.submitter().register_buf_ring_with_flags(
                        pool.entries as u64,
                        BUF_COUNT,
                        BUF_GROUP,
                        0,
                    )?;
                }
                Ok(pool)
            });
            match made {
                Ok(pool) => {
                    let _ = self.shared.pool.set(pool);
                }
                Err(e) => {
                    self.pool_refused = Some(e.kind());
                    return Err(e);
                }
            }
        }
        Ok(self.shared.pool.get().expect("set above"))
    }

    /// Queues the multishot receive of `fd` (or, `poll`, a one-shot
    /// `POLLIN` poll), which owns one count of `state`.
    fn arm_recv(&mut self, fd: types::Fd, state: Arc<PollState>, poll: bool) {
        let ud = Arc::into_raw(state) as u64;
        let entry = if poll {
            opcode::PollAdd::new(fd, libc::POLLIN as u32)
                .build()
                .user_data(ud | TAG_RECV_POLL)
        } else {
            opcode::RecvMulti::new(fd, BUF_GROUP)
                .build()
                .user_data(ud | TAG_RECV)
        };
        // SAFETY: the receive writes only pool buffers, which stay mapped
        // while it may (`BufPool`); a poll names no memory. The count it
        // owns keeps the `PollState` its completions reach alive.
        unsafe { self.push(&entry) };
        self.recvs += 1;
    }

    /// Arms the receive a reader asked for (`Arm::Requested`), unless the
    /// socket closed or the ring shuts down; submitted under the `closed`
    /// lock (no entry may name an fd number that was closed).
    fn arm_requested(&mut self, state: &Arc<PollState>) {
        let closed = lock(&state.closed);
        let mut recv = lock(&state.recv);
        if recv.arm != Arm::Requested {
            return;
        }
        if *closed || lock(&self.shared.remote).is_shutdown {
            let reader = recv.fail();
            drop(recv);
            drop(closed);
            if let Some(w) = reader {
                w.wake();
            }
            return;
        }
        let poll = std::mem::take(&mut recv.starved);
        recv.arm = if poll { Arm::Polling } else { Arm::Armed };
        drop(recv);
        self.arm_recv(types::Fd(state.fd), state.clone(), poll);
        self.submit_all();
        drop(closed);
    }

    /// Cancels a poll of this ring (the socket closes on the owner's
    /// thread) and reaps its end at once, so that the kernel lets go of
    /// the file before the fd closes (peers see the close now).
    fn cancel_here(&mut self, state: &Arc<PollState>, wakers: &mut Vec<Waker>) {
        self.push_cancels(state);
        self.enter_and_reap(wakers);
    }

    /// Queues cancels of the operations a socket has in flight (on the
    /// owner, which alone arms them, so its receive state is exact).
    fn push_cancels(&mut self, state: &Arc<PollState>) {
        let recv = match lock(&state.recv).arm {
            Arm::Armed | Arm::Cancelling => Some(TAG_RECV),
            Arm::Polling => Some(TAG_RECV_POLL),
            Arm::Idle | Arm::Requested | Arm::Done => None,
        };
        for tag in std::iter::once(TAG_POLL).chain(recv) {
            self.push_cancel(Arc::as_ptr(state) as u64 | tag);
        }
    }

    /// Queues a cancel of the operation whose `user_data` is `ud`.
    fn push_cancel(&mut self, ud: u64) {
        let cancel = opcode::AsyncCancel::new(ud).build().user_data(CANCEL);
        // SAFETY: a cancel names no memory.
        unsafe { self.push(&cancel) };
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
        let (cancels, arms) = {
            let mut remote = lock(&self.shared.remote);
            self.shared.remote_len.store(0, Relaxed);
            (
                std::mem::take(&mut remote.cancels),
                std::mem::take(&mut remote.arms),
            )
        };
        for state in &arms {
            self.arm_requested(state);
        }
        for state in &cancels {
            self.push_cancels(state);
        }
        let any = !cancels.is_empty() || !arms.is_empty();
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
        usize::from(self.wake_armed) + usize::from(self.epoll_armed) + self.polls + self.recvs
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
        let mut cancel_recv = Vec::new();
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
                ud if matches!(ud & TAG_MASK, TAG_RECV | TAG_RECV_POLL) => {
                    let ptr = (ud & !TAG_MASK) as *const PollState;
                    let more = cqueue::more(cqe.flags());
                    // SAFETY: the count the operation owns keeps the state
                    // alive; at its final completion that count is ours.
                    let owned = (!more).then(|| unsafe { Arc::from_raw(ptr) });
                    // SAFETY: as above.
                    let state = unsafe { &*ptr };
                    if !more {
                        self.recvs -= 1;
                    }
                    let res = cqe.result();
                    let mut recv = lock(&state.recv);
                    if ud & TAG_MASK == TAG_RECV_POLL {
                        // Readable (or cancelled): readers recv directly.
                        if recv.arm == Arm::Polling {
                            recv.arm = Arm::Idle;
                        }
                    } else if res > 0 {
                        let bid = cqueue::buffer_select(cqe.flags())
                            .expect("fiber-runtime: io_uring receive without a buffer");
                        recv.queue.push_back(Chunk {
                            bid,
                            off: 0,
                            len: res as u32,
                        });
                        if more && recv.arm == Arm::Armed && recv.queue.len() >= RECV_CAP {
                            // Enough waits unread: the rest stays in the
                            // kernel until the reader catches up.
                            cancel_recv.push(ud);
                            recv.arm = Arm::Cancelling;
                        }
                    } else if res == 0 {
                        recv.end = Some(End::Eof);
                        recv.arm = Arm::Done;
                    } else if res == -libc::ENOBUFS {
                        // No buffer left (the reader recvs directly; its
                        // next arm is a `POLLIN` poll).
                        recv.starved = true;
                    } else if res != -libc::ECANCELED {
                        recv.end = Some(End::Errno(-res));
                        recv.arm = Arm::Done;
                    }
                    if !more && matches!(recv.arm, Arm::Armed | Arm::Cancelling) {
                        recv.arm = Arm::Idle;
                    }
                    let reader = if !more
                        && res == -libc::ECANCELED
                        && lock(&self.shared.remote).is_shutdown
                    {
                        recv.fail()
                    } else {
                        recv.reader.take()
                    };
                    wakers.extend(reader);
                    drop(recv);
                    drop(owned);
                }
                other => unreachable!("io_uring completion of an unknown operation {other}"),
            }
        }
        for ud in cancel_recv {
            self.push_cancel(ud);
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
            // Nobody will drive this ring again: refuse requests, and fail
            // the receives asked for (their readers would wait forever).
            let arms = {
                let mut remote = lock(&self.shared.remote);
                remote.is_shutdown = true;
                std::mem::take(&mut remote.arms)
            };
            for state in arms {
                let reader = lock(&state.recv).fail();
                if let Some(w) = reader {
                    w.wake();
                }
            }
            return;
        }
        let (cancels, arms) = {
            let mut remote = lock(&self.shared.remote);
            remote.is_shutdown = true;
            (
                std::mem::take(&mut remote.cancels),
                std::mem::take(&mut remote.arms),
            )
        };
        // The cancel below ends their polls.
        drop(cancels);
        for state in &arms {
            // Refused: `arm_requested` sees the shutdown.
            self.arm_requested(state);
        }
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
        if self.recvs > 0 {
            // Receives this thread may not reap (or that outlived the
            // shutdown's wait): the kernel may still write their buffers.
            if let Some(pool) = self.shared.pool.get() {
                pool.leak.store(true, Relaxed);
            }
        }
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

    /// One read of `bound` into `buf` (`Bound::poll_recv`, arming on `r`
    /// as `PollEvented` does); `sys` is the direct read, counted in
    /// `direct`.
    fn recv_now(
        r: &mut Ring,
        bound: &Bound,
        buf: &mut [u8],
        direct: &mut usize,
        mut sys: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> std::task::Poll<io::Result<usize>> {
        let mut cx = std::task::Context::from_waker(Waker::noop());
        let mut filled = 0;
        let (res, then) = bound.poll_recv(&mut cx, false, |src| match src {
            Src::Socket => {
                *direct += 1;
                sys(buf)
            }
            Src::Bytes(b) => {
                let n = b.len().min(buf.len() - filled);
                buf[filled..filled + n].copy_from_slice(&b[..n]);
                filled += n;
                Ok(n)
            }
        });
        if then == Then::Arm {
            assert!(bound.arm_on(r), "the test's ring is the socket's home");
        }
        res
    }

    /// Reads `bound` to its end (bounded wait), driving `r`; returns the
    /// bytes and how many reads were direct system calls.
    fn recv_to_end(
        r: &mut Ring,
        bound: &Bound,
        mut sys: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> (Vec<u8>, usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut got, mut direct) = (Vec::new(), 0);
        loop {
            let mut buf = [0u8; 100];
            match recv_now(r, bound, &mut buf, &mut direct, &mut sys) {
                std::task::Poll::Ready(Ok(0)) => return (got, direct),
                std::task::Poll::Ready(Ok(n)) => got.extend_from_slice(&buf[..n]),
                std::task::Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                std::task::Poll::Pending => {
                    assert!(Instant::now() < deadline, "no end of stream");
                    r.wait(Some(Duration::from_millis(10)), None, &mut Vec::new());
                }
            }
        }
    }

    #[test]
    fn a_bound_socket_receives_in_the_rings_buffers_and_closing_ends_its_operations() {
        let Some((mut r, _wake)) = ring() else { return };
        let (a, mut b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        assert_eq!(
            (r.polls, r.recvs),
            (1, 0),
            "a poll; the receive waits for a read"
        );
        // Writable at once.
        wait_for(&mut r, &bound, WRITABLE);
        // The first read finds nothing and arms the receive.
        let mut direct = 0;
        let sys = |buf: &mut [u8]| std::io::Read::read(&mut &a, buf);
        assert!(recv_now(&mut r, &bound, &mut [0; 8], &mut direct, sys).is_pending());
        assert_eq!((direct, r.recvs), (1, 1));
        // What the peer sends, then its close, come through the receive:
        // no more reads of the socket itself.
        std::io::Write::write_all(&mut b, b"hello").unwrap();
        std::io::Write::write_all(&mut b, b" world").unwrap();
        drop(b);
        let (got, direct) = recv_to_end(&mut r, &bound, sys);
        assert_eq!(got, b"hello world");
        assert_eq!(direct, 0, "a direct read while the receive was armed");
        assert_eq!(r.recvs, 0, "the end of the stream ended the receive");
        assert_eq!(r.shared.live.load(SeqCst), 1);
        drop(bound.close(Some(&mut r)));
        assert_eq!(r.polls, 0, "the close reaped the poll's end");
        assert_eq!(r.shared.live.load(SeqCst), 0);
        drop(a);
    }

    /// More unread sockets than the pool serves: the ones that find it
    /// empty (`ENOBUFS`) fall back to direct reads on a `POLLIN` poll, and
    /// every socket still gets all its bytes, in order.
    #[test]
    fn an_exhausted_pool_starves_no_socket() {
        let Some((mut r, _wake)) = ring() else { return };
        let n = usize::from(BUF_COUNT) / RECV_CAP + 8;
        let per = 2 * RECV_CAP * BUF_SIZE;
        let mut socks = Vec::new();
        for i in 0..n {
            let (a, b) = pair();
            let bound = r.bind(a.as_raw_fd()).unwrap();
            let mut direct = 0;
            let sys = |buf: &mut [u8]| std::io::Read::read(&mut &a, buf);
            assert!(recv_now(&mut r, &bound, &mut [0; 8], &mut direct, sys).is_pending());
            let data: Vec<u8> = (0..per).map(|j| ((i * 7 + j) % 253) as u8).collect();
            socks.push((a, b, bound, data));
        }
        // Every peer writes more than its queue takes, all at once.
        let writers: Vec<_> = socks
            .iter()
            .map(|(_, b, _, data)| {
                let (b, data) = (b.try_clone().unwrap(), data.clone());
                std::thread::spawn(move || {
                    b.set_nonblocking(false).unwrap();
                    std::io::Write::write_all(&mut &b, &data).unwrap();
                    b.shutdown(std::net::Shutdown::Write).unwrap();
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socks.iter().any(|(_, _, b, _)| lock(&b.state.recv).starved) {
            assert!(
                Instant::now() < deadline,
                "the pool never ran out: the test tests nothing"
            );
            r.wait(Some(Duration::from_millis(10)), None, &mut Vec::new());
        }
        for (a, _, bound, data) in &socks {
            let (got, _) = recv_to_end(&mut r, bound, |buf| std::io::Read::read(&mut &*a, buf));
            assert!(
                got == *data,
                "bytes lost or reordered ({} of {})",
                got.len(),
                data.len()
            );
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        for (_, _, bound, _) in &socks {
            drop(bound.close(Some(&mut r)));
        }
        while r.recvs > 0 || r.polls > 0 {
            assert!(Instant::now() < deadline, "operations never ended");
            r.poll_now(&mut Vec::new());
        }
    }

    /// A peek sees every queued chunk (as `MSG_PEEK` sees the socket's
    /// whole buffer) and leaves them for the read.
    #[test]
    fn a_peek_spans_chunks_and_consumes_nothing() {
        let Some((mut r, _wake)) = ring() else { return };
        let (a, mut b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        let mut direct = 0;
        let sys = |buf: &mut [u8]| std::io::Read::read(&mut &a, buf);
        assert!(recv_now(&mut r, &bound, &mut [0; 8], &mut direct, sys).is_pending());
        let deadline = Instant::now() + Duration::from_secs(30);
        for (piece, total) in [(&b"hello"[..], 5), (&b" world"[..], 11)] {
            std::io::Write::write_all(&mut b, piece).unwrap();
            while bound.unread() < total {
                assert!(
                    Instant::now() < deadline,
                    "{} of {total} received",
                    bound.unread()
                );
                r.wait(Some(Duration::from_millis(10)), None, &mut Vec::new());
            }
        }
        assert_eq!(lock(&bound.state.recv).queue.len(), 2, "two chunks");
        let mut cx = std::task::Context::from_waker(Waker::noop());
        for _ in 0..2 {
            let mut buf = [0u8; 16];
            let mut filled = 0;
            let (res, _) = bound.poll_recv(&mut cx, true, |src| match src {
                Src::Socket => panic!("a direct read with data queued"),
                Src::Bytes(bytes) => {
                    let n = bytes.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&bytes[..n]);
                    filled += n;
                    Ok(n)
                }
            });
            assert!(matches!(res, std::task::Poll::Ready(Ok(11))));
            assert_eq!(&buf[..11], b"hello world");
        }
        assert_eq!(bound.unread(), 11, "the peeks consumed nothing");
        drop(bound.close(Some(&mut r)));
    }

    /// More unread data than the queue takes: the receive is cancelled at
    /// `RECV_CAP` chunks, the rest waits in the kernel, and the reader gets
    /// every byte in order (reading directly once nothing is in flight,
    /// then re-arming).
    #[test]
    fn a_full_queue_cancels_the_receive_and_no_byte_is_lost_or_reordered() {
        let Some((mut r, _wake)) = ring() else { return };
        let (a, b) = pair();
        let bound = r.bind(a.as_raw_fd()).unwrap();
        let mut direct = 0;
        let sys = |buf: &mut [u8]| std::io::Read::read(&mut &a, buf);
        assert!(recv_now(&mut r, &bound, &mut [0; 8], &mut direct, sys).is_pending());
        let sent: Vec<u8> = (0..(RECV_CAP * 4 * BUF_SIZE))
            .map(|i| (i % 251) as u8)
            .collect();
        let writer = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                b.set_nonblocking(false).unwrap();
                for piece in sent.chunks(1000) {
                    std::io::Write::write_all(&mut &b, piece).unwrap();
                }
            })
        };
        // Let the queue fill before reading.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lock(&bound.state.recv).arm != Arm::Idle {
            assert!(
                Instant::now() < deadline,
                "the full queue never stopped the receive"
            );
            r.wait(Some(Duration::from_millis(10)), None, &mut Vec::new());
        }
        assert!(bound.unread() >= RECV_CAP, "{} unread", bound.unread());
        let (got, direct) = recv_to_end(&mut r, &bound, sys);
        writer.join().unwrap();
        assert!(
            got == sent,
            "bytes lost or reordered ({} of {})",
            got.len(),
            sent.len()
        );
        assert!(
            direct > 0,
            "no direct read after the cancel: the test tests nothing"
        );
        drop(bound.close(Some(&mut r)));
        assert_eq!((r.polls, r.recvs), (0, 0));
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
        // Every receive armed (a first read that finds nothing) ...
        for (b, a) in &bound {
            let mut direct = 0;
            let sys = |buf: &mut [u8]| std::io::Read::read(&mut &*a, buf);
            assert!(recv_now(&mut r, b, &mut [0; 8], &mut direct, sys).is_pending());
        }
        assert_eq!(r.recvs, 16);
        // ... every socket writable at once and its receive's data there,
        // then one reap for all of them.
        for p in &mut peers {
            std::io::Write::write_all(p, b"x").unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while bound
            .iter()
            .any(|(b, _)| b.io().readiness() & WRITABLE == 0)
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
        // Receives the kernel ended in the overflow lose nothing either.
        for (b, a) in &bound {
            let (got, _) = recv_to_end(&mut r, b, |buf| std::io::Read::read(&mut &*a, buf));
            assert_eq!(got, b"x");
        }
        for (b, _) in &bound {
            drop(b.close(Some(&mut r)));
        }
        // The ends of the polls may wait in the overflow list (a queue of
        // 4): the next reaps get them.
        while r.polls > 0 {
            assert!(Instant::now() < deadline, "{} polls never ended", r.polls);
            r.poll_now(&mut Vec::new());
        }
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
            let mut received = vec![0; pairs.len()];
            let mut ended = vec![false; pairs.len()];
            loop {
                let mut wakers = Vec::new();
                r.wait(Some(Duration::from_millis(1)), None, &mut wakers);
                // Drain the receives.
                for (i, (_, s, b)) in pairs.iter_mut().enumerate() {
                    loop {
                        let mut buf = [0u8; 256];
                        let mut direct = 0;
                        match recv_now(&mut r, b, &mut buf, &mut direct, |buf| {
                            std::io::Read::read(&mut &*s, buf)
                        }) {
                            std::task::Poll::Ready(Ok(0)) => {
                                ended[i] = true;
                                break;
                            }
                            std::task::Poll::Ready(Ok(n)) => received[i] += n,
                            _ => break,
                        }
                    }
                }
                let closed = ended.iter().filter(|&&e| e).count();
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
            assert!(
                received.iter().all(|&n| n == 5 * 64),
                "round {round}: {received:?}"
            );
            for (_, _, b) in &pairs {
                drop(b.close(Some(&mut r)));
            }
        }
    }
}
