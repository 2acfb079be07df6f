//! Time: [`sleep`], [`sleep_until`], [`timeout`] and [`interval`], driven by
//! the runtime's timer wheel (6 levels × 64 slots, 1 ms resolution).
//!
//! A [`Sleep`] costs no thread and no allocation of its own: it names an
//! entry in the wheel's slab, registered on first poll and freed when it
//! fires or as soon as the `Sleep` is dropped. Timers fire when a worker parks (the parked
//! worker's `epoll_wait` times out at the next deadline) or, on busy
//! workers, at their periodic maintenance; a timer never fires early, and
//! at 1 ms resolution it fires up to about 1 ms late on an idle runtime.
//!
//! # Durations
//!
//! No duration is too long: a deadline that `Instant` cannot represent
//! (`Duration::MAX`, say) means "never", and such a timer simply never
//! fires. Timers beyond the wheel's 2.2 years wait in an overflow list.
//!
//! # Panics
//!
//! Creating or polling a timer outside a runtime panics with a message
//! saying so, as does polling one whose runtime has been dropped: a
//! timer still pending when its runtime shuts down is woken, and its
//! next poll panics, so that nothing waits forever on a timer nobody
//! drives.
//!
//! # Examples
//!
//! ```
//! use fiber_runtime::time::{sleep, timeout, Duration};
//!
//! fiber_runtime::block_on(async {
//!     sleep(Duration::from_millis(5)).await;
//!     let r = timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
//!     assert!(r.is_err());
//! });
//! ```

pub(crate) mod driver;
mod wheel;

pub use std::time::{Duration, Instant};

use crate::scheduler::context;
use driver::TimerKey;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

#[track_caller]
fn current_handle(what: &str) -> Arc<driver::Handle> {
    match context::with_current(|h| h.common().driver.time.clone()) {
        Ok(h) => h,
        Err(_) => panic!(
            "`{what}` called outside a fiber-runtime runtime: timers need a runtime to drive \
             them; call it from a task, inside `Runtime::block_on`, or after `Runtime::enter()`"
        ),
    }
}

/// Waits until `duration` has elapsed.
///
/// # Panics
///
/// Panics if called outside a runtime.
///
/// # Examples
///
/// ```
/// use fiber_runtime::time::{sleep, Duration, Instant};
///
/// fiber_runtime::block_on(async {
///     let start = Instant::now();
///     sleep(Duration::from_millis(10)).await;
///     assert!(start.elapsed() >= Duration::from_millis(10));
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::new(deadline_after(Instant::now(), duration), "sleep")
}

/// Waits until `deadline`.
///
/// # Panics
///
/// Panics if called outside a runtime.
///
/// # Examples
///
/// ```
/// use fiber_runtime::time::{sleep_until, Duration, Instant};
///
/// fiber_runtime::block_on(async {
///     let deadline = Instant::now() + Duration::from_millis(5);
///     sleep_until(deadline).await;
///     assert!(Instant::now() >= deadline);
/// });
/// ```
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(deadline, "sleep_until")
}

/// `from + duration`, or, if `Instant` cannot represent it, about 30
/// years from now: what "never" means to the wheel.
pub(crate) fn deadline_after(from: Instant, duration: Duration) -> Instant {
    from.checked_add(duration).unwrap_or_else(|| {
        let now = Instant::now();
        now.checked_add(Duration::from_secs(86_400 * 365 * 30))
            .unwrap_or(now)
    })
}

/// The future of [`sleep`] and [`sleep_until`].
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    handle: Arc<driver::Handle>,
    deadline: Instant,
    /// Registered on first poll; `None` again once fired and freed.
    key: Option<TimerKey>,
    /// Fired (its wheel entry already freed).
    fired: bool,
}

impl Sleep {
    #[track_caller]
    fn new(deadline: Instant, what: &str) -> Sleep {
        Sleep {
            handle: current_handle(what),
            deadline,
            key: None,
            fired: false,
        }
    }

    /// The instant this `Sleep` completes at.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::time::{sleep_until, Duration, Instant};
    ///
    /// fiber_runtime::block_on(async {
    ///     let at = Instant::now() + Duration::from_secs(1);
    ///     assert_eq!(sleep_until(at).deadline(), at);
    /// });
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Returns `true` once the deadline has passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::time::{sleep, Duration};
    ///
    /// fiber_runtime::block_on(async {
    ///     assert!(sleep(Duration::ZERO).is_elapsed());
    /// });
    /// ```
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline; the `Sleep` waits again if it had completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::time::{sleep, Duration, Instant};
    ///
    /// fiber_runtime::block_on(async {
    ///     let mut s = Box::pin(sleep(Duration::from_secs(3600)));
    ///     s.as_mut().reset(Instant::now() + Duration::from_millis(1));
    ///     s.await;
    /// });
    /// ```
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.deadline = deadline;
        this.fired = false;
        if let Some(key) = this.key {
            this.key = this.handle.reset(key, deadline);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.fired {
            return Poll::Ready(());
        }
        std::task::ready!(crate::task_core::coop::poll_proceed(cx));
        let fired = match this.key {
            Some(key) => this.handle.poll(key, cx.waker()),
            None => {
                // First poll: a deadline already passed needs no entry.
                if Instant::now() >= this.deadline {
                    Ok(true)
                } else {
                    this.handle
                        .register(shard_hint(), this.deadline, cx.waker())
                        .map(|key| {
                            this.key = key;
                            key.is_none()
                        })
                }
            }
        };
        let Ok(fired) = fired else {
            panic!(
                "the fiber-runtime runtime of this timer has shut down: a `Sleep` (or \
                 `timeout`, `interval`) cannot complete once its runtime is dropped"
            )
        };
        if fired {
            // `poll` freed the entry (or there never was one).
            this.key = None;
            this.fired = true;
            Poll::Ready(())
        } else {
            crate::task_core::coop::refund();
            Poll::Pending
        }
    }
}

/// The wheel a timer registers in: the current worker's own.
fn shard_hint() -> usize {
    context::worker_index().unwrap_or(0)
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Leaves the wheel at once: a dropped Sleep never fires.
            self.handle.remove(key);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The error of a [`timeout`] whose duration elapsed first.
///
/// # Examples
///
/// ```
/// use fiber_runtime::time::{timeout, Duration};
///
/// fiber_runtime::block_on(async {
///     let err = timeout(Duration::ZERO, std::future::pending::<()>()).await.unwrap_err();
///     assert_eq!(err.to_string(), "deadline has elapsed");
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}

/// Runs `future` with a time limit: `Ok` with its output, or
/// `Err(Elapsed)` if `duration` passes first (the future is then dropped).
///
/// # Panics
///
/// Panics if called outside a runtime.
///
/// # Examples
///
/// ```
/// use fiber_runtime::time::{timeout, Duration};
///
/// fiber_runtime::block_on(async {
///     assert_eq!(timeout(Duration::from_secs(1), async { 7 }).await, Ok(7));
/// });
/// ```
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`].
    #[must_use = "a Timeout does nothing unless awaited"]
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A stream of ticks every `period`; the first tick completes at once.
///
/// Missed ticks are skipped, not bunched up: if the task was busy past
/// one or more ticks, the next `tick()` completes at once and the one after
/// is on the original schedule (`start + n × period`), at the first such
/// instant still in the future.
///
/// # Panics
///
/// Panics if `period` is zero, or if called outside a runtime.
///
/// # Examples
///
/// ```
/// use fiber_runtime::time::{interval, Duration, Instant};
///
/// fiber_runtime::block_on(async {
///     let start = Instant::now();
///     let mut every = interval(Duration::from_millis(2));
///     every.tick().await; // at once
///     every.tick().await;
///     every.tick().await;
///     assert!(start.elapsed() >= Duration::from_millis(4));
/// });
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "`interval` period must be non-zero");
    let start = Instant::now();
    Interval {
        period,
        next: start,
        sleep: Box::pin(Sleep::new(start, "interval")),
    }
}

/// The ticker of [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    /// When the next tick is due.
    next: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was due.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::time::{interval, Duration};
    ///
    /// fiber_runtime::block_on(async {
    ///     let mut i = interval(Duration::from_millis(1));
    ///     let a = i.tick().await;
    ///     let b = i.tick().await;
    ///     assert_eq!(b - a, Duration::from_millis(1));
    /// });
    /// ```
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick (for manual `Future`/`Stream` impls).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::time::{interval, Duration};
    ///
    /// fiber_runtime::block_on(async {
    ///     let mut i = interval(Duration::from_millis(1));
    ///     std::future::poll_fn(|cx| i.poll_tick(cx)).await;
    /// });
    /// ```
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        std::task::ready!(self.sleep.as_mut().poll(cx));
        let due = self.next;
        let now = Instant::now();
        // Skip missed ticks: the next one is the first `due + k × period`
        // still ahead. (Saturating: a period too long for `Instant` means
        // the next tick never comes.)
        let mut next = deadline_after(due, self.period);
        if next <= now {
            let period = self.period.as_nanos();
            let k = now.duration_since(due).as_nanos() / period + 1;
            let ahead = k
                .checked_mul(period)
                .and_then(|n| u64::try_from(n).ok())
                .map_or(Duration::MAX, Duration::from_nanos);
            next = deadline_after(due, ahead);
        }
        self.next = next;
        self.sleep.as_mut().reset(next);
        Poll::Ready(due)
    }

    /// The period between ticks.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::time::{interval, Duration};
    ///
    /// fiber_runtime::block_on(async {
    ///     assert_eq!(interval(Duration::from_millis(3)).period(), Duration::from_millis(3));
    /// });
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }
}
