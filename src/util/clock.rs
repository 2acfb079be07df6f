//! A coarse clock: milliseconds since a process epoch, in one global
//! atomic, so that stamping a task with its spawn time is one relaxed
//! load instead of a clock read.
//!
//! Whoever reads the real clock anyway keeps it current: the workers
//! when they publish their metrics (about every 61 polls, and when they
//! park and wake), the runtime's monitor thread, a dump. Between two of
//! those it stands still, so a stamp may lag the truth by that much.
//!
//! The one stretch where nobody would advance it is when every worker is
//! parked: a task spawned then, from outside, would get the time of the
//! last park, maybe long ago. So a worker about to park marks the value
//! *idle* ([`advance_idle`]), and a reader that finds the mark reads the
//! real clock once and stores it, clearing the mark: at most one clock
//! read per park, a cost the park (a system call) dwarfs.
//!
//! Stores are `fetch_max`es, made only when they raise the value (at most
//! about once a millisecond, however many workers advance it), so the
//! clock never goes back: a worker publishing a time it read
//! a moment before another's does not undo the other's.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// `(ms since EPOCH) << 1 | idle`. Starts idle, so the first reader
/// reads the clock (and fixes the epoch).
static NOW: AtomicU64 = AtomicU64::new(IDLE);
const IDLE: u64 = 1;

/// The process epoch: the first time anybody looked.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds from the epoch to `t` (0 before it).
pub(crate) fn ms_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64
}

/// Records that the real time is `now` (read by the caller anyway).
#[inline]
pub(crate) fn advance(now: Instant) {
    store_max(ms_since_epoch(now) << 1);
}

/// Raises `NOW` to `v`, writing only when that changes it: every spawn
/// reads the line, so the workers (each advancing at every maintenance
/// tick) must not take it exclusive more than about once a millisecond.
#[inline]
fn store_max(v: u64) {
    if NOW.load(Relaxed) < v {
        NOW.fetch_max(v, Relaxed);
    }
}

/// As [`advance`], by a worker about to park: the next reader reads the
/// real clock rather than trust this value (module doc).
#[inline]
pub(crate) fn advance_idle(now: Instant) {
    store_max((ms_since_epoch(now) << 1) | IDLE);
}

/// The coarse time: milliseconds since the epoch, as of the last
/// [`advance`] (module doc).
#[inline]
pub(crate) fn coarse_now() -> u64 {
    let v = NOW.load(Relaxed);
    if v & IDLE == 0 {
        return v >> 1;
    }
    refresh()
}

#[cold]
fn refresh() -> u64 {
    let now = ms_since_epoch(Instant::now());
    let mut cur = NOW.load(Relaxed);
    loop {
        if cur & IDLE == 0 {
            // Advanced meanwhile.
            return cur >> 1;
        }
        // Clears the mark, never going back.
        let ms = now.max(cur >> 1);
        match NOW.compare_exchange_weak(cur, ms << 1, Relaxed, Relaxed) {
            Ok(_) => return ms,
            Err(c) => cur = c,
        }
    }
}

/// A spawn stamp: the coarse time, truncated to 32 bits (ages are
/// computed with a wrapping subtraction, right up to 49 days).
#[inline]
pub(crate) fn stamp() -> u32 {
    coarse_now() as u32
}

/// The age of a `stamp()` at `now_ms` (milliseconds since the epoch).
pub(crate) fn age_ms(stamp: u32, now_ms: u64) -> u32 {
    (now_ms as u32).wrapping_sub(stamp)
}

/// The shorter of two optional waits (`None`: unbounded).
pub(crate) fn shorter(
    a: Option<std::time::Duration>,
    b: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn ages_wrap_with_the_stamp() {
        assert_eq!(age_ms(10, 15), 5);
        assert_eq!(age_ms(u32::MAX - 1, (u32::MAX as u64) + 4), 5);
    }

    #[test]
    fn the_shorter_wait_is_the_bounded_one_or_the_smaller() {
        use std::time::Duration;
        let (ms1, ms5) = (Duration::from_millis(1), Duration::from_millis(5));
        assert_eq!(shorter(None, None), None);
        assert_eq!(shorter(Some(ms5), None), Some(ms5));
        assert_eq!(shorter(None, Some(ms1)), Some(ms1));
        assert_eq!(shorter(Some(ms5), Some(ms1)), Some(ms1));
        assert_eq!(shorter(Some(ms1), Some(ms5)), Some(ms1));
    }
}
