//! The timer side of the driver: the wheels, the clock (`Instant` <->
//! tick), and the hand-off with the parked driver.
//!
//! One wheel per worker, each behind its own lock: a `Sleep` registers in
//! the wheel of the worker it is first polled on, so timers of different
//! workers never contend. The thread turning the driver advances all of
//! them. A `Sleep` takes its wheel's lock once in its life, to register.
//! Firing frees the entry, and publishes the wheel's time after it (the
//! shard's `fired_through`): a woken `Sleep` whose deadline tick is at or
//! before it learns that it fired from one load, without the lock, which
//! may be another worker's (a task woken by a fire is often polled on
//! the worker that fired it). Every entry of a wheel waits for a tick
//! after the wheel's time: one due at once when registered or reset is
//! not filed at all (`loom_a_timer_polled_while_it_fires_is_ready_or_woken`).
//!
//! # Waking the parked driver
//!
//! The thread about to park in the driver computes its timeout from the
//! earliest timer of every wheel. A timer registered meanwhile, or while
//! it sleeps, that is due before the driver would wake by itself must
//! wake it. `wake_at` says which case holds:
//!
//! 1. `NOT_PARKED`: nobody sleeps in the driver; whoever parks next scans
//!    the wheels after this registration and sees it (a registration that
//!    reads `NOT_PARKED` under its wheel's lock precedes that scan of the
//!    wheel: the parker stores `PARKING` before it, and coherence forbids
//!    reading the older value after it).
//! 2. `PARKING`: a thread is scanning the wheels; it may already have
//!    passed this wheel, so every registration wakes it (its `epoll_wait`
//!    then returns at once, and it scans again on its next park).
//! 3. otherwise, the encoded tick the driver wakes at by itself: a timer
//!    due before it wakes the driver.
//!
//! The loom model `loom_timer_registered_while_the_driver_parks` checks
//! that no interleaving of a registration with a park leaves the timer
//! unseen and the driver unwoken.
//!
//! # Shutdown
//!
//! Shutdown sets `is_shutdown` and then, wheel by wheel under its lock,
//! fires every pending timer and wakes its waker: the `Sleep` is polled
//! again and reports the shutdown. A registration checks the flag under
//! its wheel's lock, so it either sees it or is drained.

use super::wheel::{EntryPoll, Key, Wheel};
use crate::loom::{AtomicBool, AtomicU64, Mutex, Ordering::*};
use crate::reactor;
use crate::util::CachePadded;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// Wakes the thread parked in the driver (the reactor's waker in a
/// runtime; a counter in the models).
pub(crate) trait Unpark: Send + Sync + 'static {
    fn unpark(&self);
}

impl Unpark for reactor::Handle {
    fn unpark(&self) {
        reactor::Handle::unpark(self)
    }
}

/// `wake_at`: nobody is parked in the driver (module doc, case 1).
const NOT_PARKED: u64 = 0;
/// `wake_at`: a thread is computing its park timeout (case 2).
const PARKING: u64 = 1;
/// `wake_at` values from here on are a wake tick plus `WAKE_BASE`.
const WAKE_BASE: u64 = 2;
/// `wake_at`: parked with no timer, until woken.
const WAKE_NEVER: u64 = u64::MAX;

/// One worker's wheel, and how far it has fired.
struct Shard {
    wheel: Mutex<Wheel>,
    /// `Wheel::elapsed`, stored under the lock after each advance: every
    /// timer of this wheel due at or before it has fired and been freed.
    fired_through: AtomicU64,
}

/// Shared by every `Sleep` of a runtime and by its driver.
pub(crate) struct Handle {
    wheels: Box<[CachePadded<Shard>]>,
    /// Tick 0.
    start: Instant,
    /// Whether, and when, the thread parked in the driver wakes by itself
    /// (module doc).
    wake_at: AtomicU64,
    /// No pending timer is due before this tick (a lower bound kept by
    /// every registration, recomputed after firing), so that `process`
    /// costs one atomic load when nothing is due.
    earliest: AtomicU64,
    unpark: Arc<dyn Unpark>,
    is_shutdown: AtomicBool,
}

/// A registered timer: its wheel, its entry there, and its deadline tick.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerKey {
    shard: u32,
    key: Key,
    tick: u64,
}

/// The runtime of the timer has shut down.
#[derive(Debug)]
pub(crate) struct Shutdown;

impl Handle {
    pub(crate) fn new(unpark: Arc<dyn Unpark>, shards: usize) -> Handle {
        Handle {
            wheels: (0..shards.max(1))
                .map(|_| {
                    CachePadded::new(Shard {
                        wheel: Mutex::new(Wheel::new()),
                        fired_through: AtomicU64::new(0),
                    })
                })
                .collect(),
            start: Instant::now(),
            wake_at: AtomicU64::new(NOT_PARKED),
            earliest: AtomicU64::new(u64::MAX),
            unpark,
            is_shutdown: AtomicBool::new(false),
        }
    }

    /// The tick of `t`, rounded up so that a timer never fires early.
    pub(crate) fn deadline_tick(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if d.subsec_nanos() % 1_000_000 != 0 {
            ms.saturating_add(1)
        } else {
            ms
        }
    }

    /// The current tick, rounded down.
    fn now_tick(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant of `tick`, or `None` if it is beyond what `Instant`
    /// can represent.
    fn tick_instant(&self, tick: u64) -> Option<Instant> {
        self.start.checked_add(Duration::from_millis(tick))
    }

    /// Registers a timer for `deadline` in wheel `shard` (modulo the
    /// number of wheels); returns its key, or `None` if it is due already
    /// (it then has no entry).
    pub(crate) fn register(
        &self,
        shard: usize,
        deadline: Instant,
        waker: &Waker,
    ) -> Result<Option<TimerKey>, Shutdown> {
        self.register_tick(shard, self.deadline_tick(deadline), waker)
    }

    fn register_tick(
        &self,
        shard: usize,
        tick: u64,
        waker: &Waker,
    ) -> Result<Option<TimerKey>, Shutdown> {
        let shard = shard % self.wheels.len();
        let mut wheel = self.wheels[shard].wheel.lock();
        // Under the lock: shutdown drains this wheel after setting the
        // flag, so a timer that misses the flag is drained (module doc).
        if self.is_shutdown.load(Acquire) {
            return Err(Shutdown);
        }
        if tick <= wheel.elapsed() {
            return Ok(None);
        }
        let key = wheel.insert(tick, waker.clone());
        self.earliest.fetch_min(tick, AcqRel);
        let wake = must_wake(self.wake_at.load(SeqCst), tick);
        drop(wheel);
        if wake {
            self.unpark.unpark();
        }
        Ok(Some(TimerKey {
            shard: shard as u32,
            key,
            tick,
        }))
    }

    /// Whether the timer of `key` fired (its entry is then freed), read
    /// without the lock (module doc). `false` if the runtime shut down:
    /// the locked path reports that.
    fn fired(&self, key: TimerKey) -> bool {
        self.wheels[key.shard as usize].fired_through.load(Acquire) >= key.tick
            && !self.is_shutdown.load(Acquire)
    }

    /// Returns `true` (its entry is freed) if the timer fired; otherwise
    /// makes `waker` the one to wake.
    pub(crate) fn poll(&self, key: TimerKey, waker: &Waker) -> Result<bool, Shutdown> {
        if self.fired(key) {
            return Ok(true);
        }
        let mut wheel = self.wheels[key.shard as usize].wheel.lock();
        if self.is_shutdown.load(Acquire) {
            return Err(Shutdown);
        }
        match wheel.poll_entry(key.key, waker) {
            EntryPoll::Fired => {
                let w = wheel.remove(key.key);
                drop(wheel);
                drop(w);
                Ok(true)
            }
            EntryPoll::Pending => Ok(false),
        }
    }

    /// Moves a timer to a new deadline; returns its new key, or `None` if
    /// it has no entry any more (it had fired, or the new deadline is due
    /// already): the next poll registers it again.
    pub(crate) fn reset(&self, key: TimerKey, deadline: Instant) -> Option<TimerKey> {
        let tick = self.deadline_tick(deadline);
        let mut wheel = self.wheels[key.shard as usize].wheel.lock();
        if self.is_shutdown.load(Acquire) {
            // Drained: the next poll reports the shutdown.
            return Some(key);
        }
        if key.tick <= wheel.elapsed() {
            // Fired, so freed: the key may name a reused entry by now (its
            // generation wraps), which must not be touched.
            return None;
        }
        if tick <= wheel.elapsed() {
            // Due at once: no entry may wait for a tick the wheel passed.
            let waker = wheel.remove(key.key);
            drop(wheel);
            drop(waker);
            return None;
        }
        if !wheel.reset(key.key, tick) {
            return None;
        }
        self.earliest.fetch_min(tick, AcqRel);
        let wake = must_wake(self.wake_at.load(SeqCst), tick);
        drop(wheel);
        if wake {
            self.unpark.unpark();
        }
        Some(TimerKey { tick, ..key })
    }

    pub(crate) fn remove(&self, key: TimerKey) {
        if self.fired(key) {
            return;
        }
        let waker = self.wheels[key.shard as usize].wheel.lock().remove(key.key);
        drop(waker);
    }

    /// Before the driver parks: how long it may sleep (until the next
    /// timer; `None`: no timer), and records when it will wake by itself.
    pub(crate) fn prepare_park(&self) -> Option<Duration> {
        let tick = self.prepare_park_tick()?;
        // Beyond `Instant`'s range: as good as never.
        let at = self.tick_instant(tick)?;
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// `prepare_park` in ticks.
    fn prepare_park_tick(&self) -> Option<u64> {
        // Publish "parking" first: a timer registered from now on either
        // wakes us or is seen below (module doc).
        self.wake_at.store(PARKING, SeqCst);
        let next = self
            .wheels
            .iter()
            .filter_map(|w| w.wheel.lock().next_expiration())
            .min();
        let wake_at = next.map_or(WAKE_NEVER, |t| t.saturating_add(WAKE_BASE));
        self.wake_at.store(wake_at, SeqCst);
        next
    }

    /// After the driver woke: fires due timers.
    pub(crate) fn after_park(&self, wakers: &mut Vec<Waker>) {
        self.wake_at.store(NOT_PARKED, SeqCst);
        self.process(wakers);
    }

    /// Fires every timer that is due now (also called by busy workers),
    /// handing their wakers to `wakers`.
    pub(crate) fn process(&self, wakers: &mut Vec<Waker>) {
        if self.earliest.load(Acquire) == u64::MAX {
            return;
        }
        self.process_at(self.now_tick(), wakers);
    }

    fn process_at(&self, now: u64, wakers: &mut Vec<Waker>) {
        if self.earliest.load(Acquire) > now {
            return;
        }
        // Reset the bound before looking: a registration racing with us
        // lowers it again, so it is never lost.
        self.earliest.store(u64::MAX, SeqCst);
        let mut next = u64::MAX;
        for w in self.wheels.iter() {
            let mut wheel = w.wheel.lock();
            if wheel.next_expiration().is_some_and(|t| t <= now) {
                wheel.advance(now, wakers);
                w.fired_through.store(wheel.elapsed(), Release);
            }
            if let Some(t) = wheel.next_expiration() {
                next = next.min(t);
            }
        }
        self.earliest.fetch_min(next, AcqRel);
    }

    /// Runtime shutdown: fires every pending timer, whose `Sleep` then
    /// reports the shutdown, and refuses new ones.
    pub(crate) fn shutdown(&self) {
        self.is_shutdown.store(true, Release);
        for w in self.wheels.iter() {
            let wakers = w.wheel.lock().drain();
            // Outside the lock: a woken task may be polled right here.
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

/// Whether a timer due at `tick` must wake the driver in state `wake_at`.
fn must_wake(wake_at: u64, tick: u64) -> bool {
    match wake_at {
        NOT_PARKED => false,
        PARKING => true,
        at => tick.saturating_add(WAKE_BASE) < at,
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("time::Handle").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{AtomicUsize, model, thread};

    /// Counts unparks instead of waking a reactor.
    #[derive(Default)]
    struct CountUnparks(AtomicUsize);

    impl Unpark for CountUnparks {
        fn unpark(&self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn handle(shards: usize) -> (Arc<Handle>, Arc<CountUnparks>) {
        let unparks = Arc::new(CountUnparks::default());
        (Arc::new(Handle::new(unparks.clone(), shards)), unparks)
    }

    /// Bug: the parking driver published a placeholder wake tick while it
    /// scanned the wheels, which a registration took for "wakes by itself
    /// earlier": a timer filed in a wheel the scan had passed was neither
    /// in the timeout nor woke the driver, and was lost. In every
    /// interleaving, the driver must either see the timer or be woken.
    #[test]
    fn loom_timer_registered_while_the_driver_parks() {
        model(|| {
            let (h, unparks) = handle(2);
            let registrar = {
                let h = h.clone();
                thread::spawn(move || {
                    h.register_tick(1, 5, Waker::noop()).unwrap();
                })
            };
            let next = h.prepare_park_tick();
            registrar.join().unwrap();
            let woken = unparks.0.load(SeqCst) > 0;
            assert!(
                woken || next.is_some_and(|t| t <= 5),
                "the timer at tick 5 is lost: the driver sleeps until {next:?}, unwoken"
            );
        });
    }

    /// A registration racing shutdown is either refused or woken by it:
    /// never left pending with nobody to fire it.
    #[test]
    fn loom_timer_registered_racing_shutdown_is_woken_or_refused() {
        model(|| {
            let (h, _) = handle(1);
            let wakes = std::sync::Arc::new(CountWakes::default());
            let waker = Waker::from(wakes.clone());
            let closer = {
                let h = h.clone();
                thread::spawn(move || h.shutdown())
            };
            let registered = h.register_tick(0, 5, &waker).is_ok();
            closer.join().unwrap();
            if registered {
                assert_eq!(wakes.0.load(SeqCst), 1, "a pending timer survived shutdown");
            }
        });
    }

    /// A `Sleep` polled while its timer fires is either told it fired
    /// (by the lock-free `fired_through` or under the lock) or left
    /// pending with its waker, which the fire then wakes; either way the
    /// entry is freed and nothing is polled again under a stale key.
    #[test]
    fn loom_a_timer_polled_while_it_fires_is_ready_or_woken() {
        model(|| {
            let (h, _) = handle(1);
            let wakes = std::sync::Arc::new(CountWakes::default());
            let waker = Waker::from(wakes.clone());
            let key = h.register_tick(0, 1, &waker).unwrap().unwrap();
            let firer = {
                let h = h.clone();
                thread::spawn(move || {
                    let mut wakers = Vec::new();
                    h.process_at(1, &mut wakers);
                    wakers.into_iter().for_each(Waker::wake);
                })
            };
            let ready = h.poll(key, &waker).unwrap();
            firer.join().unwrap();
            if !ready {
                assert_eq!(wakes.0.load(SeqCst), 1, "pending, and never woken");
                assert!(h.poll(key, &waker).unwrap(), "woken, and not fired");
            }
            assert_eq!(h.wheels[0].wheel.lock().live(), 0, "the entry leaked");
            // Due at once now: no entry is made.
            assert!(h.register_tick(0, 1, &waker).unwrap().is_none());
        });
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn a_reset_timer_keeps_or_drops_its_entry_as_its_new_deadline_says() {
        let (h, _) = handle(1);
        let wakes = std::sync::Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let t = |h: &Handle| h.tick_instant(0).unwrap();
        let mut fired = Vec::new();
        // Pending, moved later: the same entry, the new tick.
        let key = h.register_tick(0, 10, &waker).unwrap().unwrap();
        let key = h.reset(key, t(&h) + Duration::from_millis(20)).unwrap();
        h.process_at(10, &mut fired);
        assert!(fired.is_empty(), "fired at its old deadline");
        assert!(!h.poll(key, &waker).unwrap());
        h.process_at(20, &mut fired);
        assert_eq!(fired.len(), 1);
        assert!(h.poll(key, &waker).unwrap());
        // Fired and not yet polled, then reset: it has no entry any more.
        let key = h.register_tick(0, 30, &waker).unwrap().unwrap();
        h.process_at(30, &mut fired);
        assert!(h.reset(key, t(&h) + Duration::from_millis(40)).is_none());
        // Pending, moved to a tick the wheel passed: freed, due at once.
        let key = h.register_tick(0, 50, &waker).unwrap().unwrap();
        assert!(h.reset(key, t(&h) + Duration::from_millis(5)).is_none());
        assert_eq!(h.wheels[0].wheel.lock().live(), 0);
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn a_far_future_timer_fires_nothing_and_lets_nearer_timers_fire() {
        let (h, _) = handle(1);
        let wakes = std::sync::Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let mut fired = Vec::new();
        // An earlier timer fires first, so the wheel's time has moved.
        h.register_tick(0, 3, &waker).unwrap();
        h.process_at(3, &mut fired);
        assert_eq!(fired.len(), 1);
        fired.clear();
        h.register_tick(0, u64::MAX, &waker).unwrap();
        h.register_tick(0, 13, &waker).unwrap();
        h.process_at(13, &mut fired);
        assert_eq!(
            fired.len(),
            1,
            "the 10 ms timer fires, the far one does not"
        );
        assert_eq!(h.prepare_park_tick().map(|t| t > 1 << 36), Some(true));
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn shutdown_wakes_pending_timers_and_refuses_new_ones() {
        let (h, _) = handle(2);
        let wakes = std::sync::Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let a = h.register_tick(0, 100, &waker).unwrap().unwrap();
        h.register_tick(1, u64::MAX, &waker).unwrap();
        h.shutdown();
        assert_eq!(wakes.0.load(SeqCst), 2);
        assert!(h.poll(a, &waker).is_err());
        assert!(h.register_tick(0, 5, &waker).is_err());
    }

    #[cfg(not(fiber_runtime_loom))]
    #[test]
    fn a_timer_due_before_the_parked_drivers_wake_tick_wakes_it() {
        let (h, unparks) = handle(1);
        h.register_tick(0, 50, Waker::noop()).unwrap();
        assert_eq!(h.prepare_park_tick(), Some(50));
        h.register_tick(0, 60, Waker::noop()).unwrap();
        assert_eq!(unparks.0.load(SeqCst), 0, "due after the wake tick");
        h.register_tick(0, 40, Waker::noop()).unwrap();
        assert_eq!(unparks.0.load(SeqCst), 1, "due before the wake tick");
        h.after_park(&mut Vec::new());
        h.register_tick(0, 30, Waker::noop()).unwrap();
        assert_eq!(unparks.0.load(SeqCst), 1, "nobody parked");
    }
}
