//! The timer side of the driver: the wheels, the clock (`Instant` <->
//! tick), and the hand-off with the parked driver.
//!
//! One wheel per worker, each behind its own lock: a `Sleep` registers in
//! the wheel of the worker it is first polled on, so timers of different
//! workers never contend. The thread turning the driver advances all of
//! them. A `Sleep` takes its wheel's lock twice in its life: to register,
//! and to learn that it fired and free its entry in the same step.

use super::wheel::{EntryPoll, Key, Wheel};
use crate::loom::{AtomicU64, Mutex, Ordering::*};
use crate::reactor;
use crate::util::CachePadded;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// Shared by every `Sleep` of a runtime and by its driver.
pub(crate) struct Handle {
    wheels: Box<[CachePadded<Mutex<Wheel>>]>,
    /// Tick 0.
    start: Instant,
    /// The tick the parked driver will wake at by itself, or 0 while no
    /// thread is parked in the driver. A timer registered earlier than
    /// this must wake the driver so it re-computes its timeout.
    wake_at: AtomicU64,
    /// No pending timer is due before this tick (a lower bound kept by
    /// every registration, recomputed after firing), so that `process`
    /// costs one atomic load when nothing is due.
    earliest: AtomicU64,
    /// To wake the driver.
    io: Arc<reactor::Handle>,
    is_shutdown: std::sync::atomic::AtomicBool,
}

/// A registered timer: its wheel and its entry there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerKey {
    shard: u32,
    key: Key,
}

impl Handle {
    pub(crate) fn new(io: Arc<reactor::Handle>, shards: usize) -> Handle {
        Handle {
            wheels: (0..shards.max(1))
                .map(|_| CachePadded::new(Mutex::new(Wheel::new())))
                .collect(),
            start: Instant::now(),
            wake_at: AtomicU64::new(0),
            earliest: AtomicU64::new(u64::MAX),
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

    fn check_shutdown(&self) {
        if self.is_shutdown.load(Acquire) {
            panic!("the fiber-runtime runtime of this timer has shut down");
        }
    }

    /// Registers a timer for `deadline` in wheel `shard` (modulo the
    /// number of wheels); returns its key and whether it already fired.
    pub(crate) fn register(
        &self,
        shard: usize,
        deadline: Instant,
        waker: &Waker,
    ) -> (TimerKey, bool) {
        self.check_shutdown();
        let shard = shard % self.wheels.len();
        let tick = self.deadline_tick(deadline);
        let mut wheel = self.wheels[shard].lock();
        let key = wheel.insert(tick, waker.clone());
        let fired = wheel.poll_entry(key, waker) == EntryPoll::Fired;
        self.earliest.fetch_min(tick, AcqRel);
        let wake_at = self.wake_at.load(Acquire);
        drop(wheel);
        if wake_at != 0 && tick < wake_at {
            self.io.unpark();
        }
        (
            TimerKey {
                shard: shard as u32,
                key,
            },
            fired,
        )
    }

    /// Returns `true` (and frees the entry) if the timer fired; otherwise
    /// makes `waker` the one to wake.
    pub(crate) fn poll(&self, key: TimerKey, waker: &Waker) -> bool {
        self.check_shutdown();
        let mut wheel = self.wheels[key.shard as usize].lock();
        match wheel.poll_entry(key.key, waker) {
            EntryPoll::Fired => {
                let w = wheel.remove(key.key);
                drop(wheel);
                drop(w);
                true
            }
            EntryPoll::Pending => false,
        }
    }

    /// Moves a timer (fired or not) to a new deadline.
    pub(crate) fn reset(&self, key: TimerKey, deadline: Instant) {
        let tick = self.deadline_tick(deadline);
        let mut wheel = self.wheels[key.shard as usize].lock();
        wheel.reset(key.key, tick);
        self.earliest.fetch_min(tick, AcqRel);
        let wake_at = self.wake_at.load(Acquire);
        drop(wheel);
        if wake_at != 0 && tick < wake_at {
            self.io.unpark();
        }
    }

    pub(crate) fn remove(&self, key: TimerKey) {
        let waker = self.wheels[key.shard as usize].lock().remove(key.key);
        drop(waker);
    }

    /// Before the driver parks: how long it may sleep (until the next
    /// timer; `None`: no timer), and records when it will wake by itself.
    pub(crate) fn prepare_park(&self) -> Option<Duration> {
        // Publish "the driver is about to park" first: a timer registered
        // from now on either sees it (and unparks) or is seen below.
        self.wake_at.store(1, SeqCst);
        let next = self
            .wheels
            .iter()
            .filter_map(|w| w.lock().next_expiration())
            .min();
        self.wake_at.store(next.unwrap_or(u64::MAX).max(1), SeqCst);
        next.map(|tick| {
            self.tick_instant(tick)
                .saturating_duration_since(Instant::now())
        })
    }

    /// After the driver woke: fires due timers.
    pub(crate) fn after_park(&self, wakers: &mut Vec<Waker>) {
        self.wake_at.store(0, Release);
        self.process(wakers);
    }

    /// Fires every timer that is due now (also called by busy workers),
    /// handing their wakers to `wakers`.
    pub(crate) fn process(&self, wakers: &mut Vec<Waker>) {
        if self.earliest.load(Acquire) == u64::MAX {
            return;
        }
        let now = self.now_tick();
        if self.earliest.load(Acquire) > now {
            return;
        }
        // Reset the bound before looking: a registration racing with us
        // lowers it again, so it is never lost.
        self.earliest.store(u64::MAX, SeqCst);
        let mut next = u64::MAX;
        for w in self.wheels.iter() {
            let mut wheel = w.lock();
            if wheel.pending() != 0 && wheel.next_expiration().is_some_and(|t| t <= now) {
                wheel.advance(now, wakers);
            }
            if let Some(t) = wheel.next_expiration() {
                next = next.min(t);
            }
        }
        self.earliest.fetch_min(next, AcqRel);
    }

    /// Runtime shutdown: later polls of its timers panic.
    pub(crate) fn shutdown(&self) {
        self.is_shutdown.store(true, Release);
        for w in self.wheels.iter() {
            let wakers = w.lock().drain();
            drop(wakers);
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("time::Handle").finish_non_exhaustive()
    }
}
