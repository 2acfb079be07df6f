//! The process-wide part: one handler per signal number, a socket pair
//! the handlers write to, and the dispatcher thread that turns those
//! writes into wakes (see the module doc of `signal` for why).
//!
//! Per signal number there is a [`Slot`]: the `pending` flag its handler
//! sets, the count of deliveries broadcast so far (`generation`) and the
//! wakers of the [`Signal`](super::unix::Signal)s waiting for the next
//! one. The handler, which runs in signal context, only sets the flag and
//! writes one byte to a non-blocking socket (both async-signal-safe: an
//! atomic store and `write(2)`; signal-hook-registry saves and restores
//! `errno` around it). The dispatcher thread blocks reading the other end;
//! each time it wakes, it takes every set flag, bumps that slot's
//! generation and wakes its waiters, all under the slot's lock, which the
//! waiters take to register, so no wake is lost.

use crate::util::WakeList;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

/// Slots for the signal numbers `0..SLOTS` (Linux has 1..=64).
const SLOTS: usize = 65;

/// The name of the dispatcher thread.
pub(super) const THREAD_NAME: &str = "fiber-runtime-signal";

/// One signal number's state.
pub(super) struct Slot {
    /// Set by the handler, taken by the dispatcher.
    pending: AtomicBool,
    /// Deliveries broadcast so far; bumped by the dispatcher under
    /// `waiters`' lock, so a waiter that saw it unchanged under that lock
    /// is woken by the next bump.
    generation: AtomicU64,
    /// The waiters, one entry per live `Signal` of this number.
    waiters: Mutex<Waiters>,
    /// Whether our handler is installed (tried once; never removed).
    installed: OnceLock<Result<(), (io::ErrorKind, String)>>,
}

#[derive(Default)]
struct Waiters {
    /// Entry `i` belongs to the `Signal` holding index `i`; `None` while
    /// it does not wait.
    entries: Vec<Option<Waker>>,
    /// Entries no `Signal` holds.
    free: Vec<usize>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            pending: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            waiters: Mutex::new(Waiters {
                entries: Vec::new(),
                free: Vec::new(),
            }),
            installed: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics under the lock; a poisoned one is still whole.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins as a waiter: returns the entry's index and the generation
    /// seen now (deliveries after it count for this waiter).
    pub(super) fn join(&self) -> (usize, u64) {
        let mut w = self.lock();
        let index = match w.free.pop() {
            Some(i) => i,
            None => {
                w.entries.push(None);
                w.entries.len() - 1
            }
        };
        (index, self.generation.load(Ordering::Acquire))
    }

    /// Leaves: the entry at `index` is free again.
    pub(super) fn leave(&self, index: usize) {
        let mut w = self.lock();
        let waker = w.entries[index].take();
        w.free.push(index);
        drop(w);
        drop(waker);
    }

    /// `Ready(Some(()))` if a delivery was broadcast since `seen` (which is
    /// then brought up to date: deliveries in between coalesce), `Ready(None)`
    /// if deliveries stopped, else registers `cx`'s waker at `index`.
    pub(super) fn poll(
        &self,
        index: usize,
        seen: &mut u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<()>> {
        let now = self.generation.load(Ordering::Acquire);
        if now != *seen {
            *seen = now;
            return Poll::Ready(Some(()));
        }
        let mut w = self.lock();
        let now = self.generation.load(Ordering::Acquire);
        if now != *seen {
            *seen = now;
            return Poll::Ready(Some(()));
        }
        if STOPPED.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        let entry = &mut w.entries[index];
        match entry {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *entry = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Wakes every waiter: after a delivery (`bump`: the generation goes
    /// up, under the lock), or when the dispatcher stopped.
    fn wake_all(&self, bump: bool) {
        let mut wakers = WakeList::new();
        {
            let mut w = self.lock();
            if bump {
                self.generation.fetch_add(1, Ordering::Release);
            }
            for waker in w.entries.iter_mut().filter_map(Option::take) {
                wakers.push(waker);
            }
        }
        // Outside the lock: a wake may run other code.
        wakers.wake_all();
    }
}

static SLOT_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// Set when the dispatcher stopped (its socket failed): no delivery
/// will be broadcast any more, and waiters get `None`.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// The write end of the dispatcher's socket pair, once it runs.
struct Globals {
    sender: UnixStream,
}

/// Starts the dispatcher thread (once per process), with the socket pair.
fn globals() -> io::Result<&'static Globals> {
    static GLOBALS: OnceLock<Globals> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(g) = GLOBALS.get() {
        return Ok(g);
    }
    let _init = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(g) = GLOBALS.get() {
        return Ok(g);
    }
    let (receiver, sender) = UnixStream::pair()?;
    // A handler never blocks: with the buffer full, a byte is on its way
    // to the dispatcher anyway, and it looks at every flag.
    sender.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || dispatch(receiver))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start the signal dispatcher thread: {e}"),
            )
        })?;
    Ok(GLOBALS.get_or_init(|| Globals { sender }))
}

/// The dispatcher thread: waits for a handler's byte, then broadcasts
/// every pending signal.
fn dispatch(mut receiver: UnixStream) {
    let mut buf = [0u8; 128];
    loop {
        match receiver.read(&mut buf) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // End of file cannot happen (the sender lives in a static);
            // any other error stops the deliveries, and says so to every
            // waiter rather than leaving it hanging.
            _ => {
                STOPPED.store(true, Ordering::Release);
                for slot in &SLOT_TABLE {
                    // They see `STOPPED` under the lock they register
                    // with, so none is left waiting.
                    slot.wake_all(false);
                }
                // Keep the read end open: handlers still write to the
                // other end, and a write to a closed socket would raise
                // SIGPIPE (fatal where its default action stands). With
                // the buffer full, their writes just fail `WouldBlock`.
                std::mem::forget(receiver);
                return;
            }
        }
        for slot in &SLOT_TABLE {
            // The load first: most slots are never set.
            if slot.pending.load(Ordering::Relaxed) && slot.pending.swap(false, Ordering::AcqRel) {
                slot.wake_all(true);
            }
        }
    }
}

/// Signals this crate refuses to handle: SIGKILL and SIGSTOP cannot be
/// caught; SIGSEGV and SIGBUS report faults (the fiber stack overflow
/// handler uses SIGSEGV), as do SIGILL, SIGFPE and SIGTRAP (also used by
/// debuggers): a handler that returns would run the faulting instruction
/// again, forever.
const FORBIDDEN: [(libc::c_int, &str); 7] = [
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGTRAP, "SIGTRAP"),
];

/// The real-time signal range of this process (the C library keeps the
/// lowest few for its threads).
fn realtime_range() -> (libc::c_int, libc::c_int) {
    (libc::SIGRTMIN(), libc::SIGRTMAX())
}

/// Checks that `signum` may be handled here.
fn check(signum: libc::c_int) -> io::Result<()> {
    if let Some((_, name)) = FORBIDDEN.iter().find(|(n, _)| *n == signum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to handle signal {name} ({signum}): it cannot be caught, or reports a \
                 fault that a handler must not return from (the fiber stack overflow handler \
                 uses SIGSEGV)"
            ),
        ));
    }
    let (rt_min, rt_max) = realtime_range();
    let standard = 1..32;
    let realtime = rt_min..=rt_max;
    if !(standard.contains(&signum) || realtime.contains(&signum)) || signum as usize >= SLOTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid signal number {signum}: expected 1..=31 or a real-time signal \
                 {rt_min}..={rt_max} (SIGRTMIN..=SIGRTMAX; the numbers in between are reserved \
                 by the C library)"
            ),
        ));
    }
    Ok(())
}

/// Installs our handler for `signum` (once per process; it stays) and
/// returns its slot.
///
/// # Errors
///
/// `InvalidInput` for a signal number that is invalid or refused
/// ([`FORBIDDEN`]); the OS error if the handler or the dispatcher thread
/// cannot be set up.
pub(super) fn install(signum: libc::c_int) -> io::Result<&'static Slot> {
    check(signum)?;
    let globals = globals()?;
    let slot: &'static Slot = &SLOT_TABLE[signum as usize];
    let installed = slot.installed.get_or_init(|| {
        let sender: &'static UnixStream = &globals.sender;
        let action = move || {
            slot.pending.store(true, Ordering::Release);
            // Full buffer (`WouldBlock`): a byte is there already, and the
            // dispatcher looks at every flag when it reads.
            let _ = (&*sender).write(&[1]);
        };
        // SAFETY: the action is async-signal-safe: an atomic store to a
        // static and `write(2)` on a non-blocking socket (std's `write`
        // is that one system call; its error is an OS code, no
        // allocation); it takes no lock, allocates nothing and cannot
        // panic. `signum` is not in signal-hook-registry's FORBIDDEN set
        // (ours, checked above, contains it), so the call does not panic.
        let res = unsafe { signal_hook_registry::register(signum, action) };
        res.map(drop).map_err(|e| (e.kind(), e.to_string()))
    });
    match installed {
        Ok(()) => Ok(slot),
        Err((kind, msg)) => Err(io::Error::new(
            *kind,
            format!("cannot install a handler for signal {signum}: {msg}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_and_invalid_numbers_are_refused_before_any_registration() {
        for (n, name) in FORBIDDEN {
            let e = check(n).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(name), "{e}");
        }
        let (rt_min, rt_max) = realtime_range();
        for n in [0, -1, i32::MIN, 32, rt_min - 1, rt_max + 1, i32::MAX] {
            let e = check(n).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{n}");
            assert!(e.to_string().contains("invalid signal number"), "{e}");
        }
        for n in [libc::SIGINT, libc::SIGUSR1, libc::SIGCHLD, rt_min, rt_max] {
            check(n).unwrap();
        }
    }
}
