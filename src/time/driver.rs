//! The timer side of the driver: the wheel behind a lock, the clock
//! (`Instant` <-> tick), and the hand-off with the parked driver.

use super::wheel::{EntryPoll, Key, Wheel};
use crate::loom::{AtomicU64, Mutex, Ordering::*};
use crate::reactor;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// Shared by every `Sleep` of a runtime and by its driver.
pub(crate) struct Handle {
    wheel: Mutex<Wheel>,
    /// Tick 0.
    start: Instant,
    /// The tick the parked driver will wake at by itself, or 0 while no
    /// thread is parked in the driver. A timer registered earlier than
    /// this must wake the driver so it re-computes its timeout.
    wake_at: AtomicU64,
    /// To wake the driver.
    io: Arc<reactor::Handle>,
    is_shutdown: std::sync::atomic::AtomicBool,
}

impl Handle {
    pub(crate) fn new(io: Arc<reactor::Handle>) -> Handle {
        Handle {
            wheel: Mutex::new(Wheel::new()),
            start: Instant::now(),
            wake_at: AtomicU64::new(0),
            io,
            is_shutdown: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The tick of `t`, rounded up so that a timer never fires early.
    pub(crate) fn deadline_tick(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        let ms = d.as_millis() as u64;
        if d.subsec_nanos() % 1_000_000 != 0 {
            ms + 1
        } else {
            ms
        }
    }

    /// The current tick, rounded down.
    fn now_tick(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn tick_instant(&self, tick: u64) -> Instant {
        self.start + Duration::from_millis(tick)
    }

    /// Registers a timer for `deadline`.
    pub(crate) fn register(&self, deadline: Instant, waker: &Waker) -> Key {
        assert!(
            !self.is_shutdown.load(Acquire),
            "the fiber-runtime runtime of this timer has shut down"
        );
        let tick = self.deadline_tick(deadline);
        let mut wheel = self.wheel.lock();
        let key = wheel.insert(tick, waker.clone());
        let wake_at = self.wake_at.load(Acquire);
        drop(wheel);
        if wake_at != 0 && tick < wake_at {
            self.io.unpark();
        }
        key
    }

    pub(crate) fn poll(&self, key: Key, waker: &Waker) -> EntryPoll {
        if self.is_shutdown.load(Acquire) {
            panic!("the fiber-runtime runtime of this timer has shut down");
        }
        self.wheel.lock().poll_entry(key, waker)
    }

    pub(crate) fn reset(&self, key: Key, deadline: Instant) {
        let tick = self.deadline_tick(deadline);
        let mut wheel = self.wheel.lock();
        wheel.reset(key, tick);
        let wake_at = self.wake_at.load(Acquire);
        drop(wheel);
        if wake_at != 0 && tick < wake_at {
            self.io.unpark();
        }
    }

    pub(crate) fn remove(&self, key: Key) {
        let waker = self.wheel.lock().remove(key);
        drop(waker);
    }

    /// Before the driver parks: how long it may sleep (at most `max`), and
    /// records when it will wake by itself.
    pub(crate) fn prepare_park(&self, max: Option<Duration>) -> Option<Duration> {
        let wheel = self.wheel.lock();
        let next = wheel.next_expiration();
        let timeout = next.map(|tick| {
            self.tick_instant(tick)
                .saturating_duration_since(Instant::now())
        });
        let timeout = match (timeout, max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Under the lock: a racing `register` either sees this or was seen
        // by `next_expiration`.
        self.wake_at.store(next.unwrap_or(u64::MAX).max(1), Release);
        drop(wheel);
        timeout
    }

    /// After the driver woke: fires due timers.
    pub(crate) fn after_park(&self, wakers: &mut Vec<Waker>) {
        self.wake_at.store(0, Release);
        self.process(wakers);
    }

    /// Fires every timer that is due now (also called by busy workers),
    /// handing their wakers to `wakers`.
    pub(crate) fn process(&self, wakers: &mut Vec<Waker>) {
        let now = self.now_tick();
        let mut wheel = self.wheel.lock();
        if wheel.pending() == 0 || wheel.next_expiration().is_some_and(|t| t > now) {
            return;
        }
        wheel.advance(now, wakers);
    }

    /// Number of pending timers.
    #[allow(dead_code)]
    pub(crate) fn pending(&self) -> usize {
        self.wheel.lock().pending()
    }

    /// Runtime shutdown: later polls of its timers panic.
    pub(crate) fn shutdown(&self) {
        self.is_shutdown.store(true, Release);
        let wakers = self.wheel.lock().drain();
        drop(wakers);
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("time::Handle").finish_non_exhaustive()
    }
}
