//! The long-poll monitor: one thread per runtime (`fiber-runtime-monitor`)
//! that watches the workers' heartbeats and reports a poll that runs too
//! long, without costing the poll path a clock read.
//!
//! # Heartbeat
//!
//! Every worker (each multi-thread worker, and the thread driving a
//! current-thread runtime) publishes, with two relaxed stores at the start
//! of every poll, the poll's sequence number and the address of the task
//! it polls ([`Heartbeat`]); it stores [`IDLE`] when it parks or stops
//! driving. A poll of the current-thread flavor's `block_on` future
//! publishes [`BLOCK_ON`] instead of a task.
//!
//! # Checks
//!
//! The monitor sleeps `interval` (the threshold / 4, clamped to
//! 1 ms..=250 ms) between checks. At each check it reads every heartbeat:
//!
//! - a sequence number it had not seen: a new poll, first seen now;
//! - the same one as at the previous check (and not idle): the same poll,
//!   which began before its first sighting. It marks it for the worker
//!   (the poll-time histogram times a marked poll from its first sighting:
//!   `metrics.rs`), and once it has run `threshold` since its first
//!   sighting, reports it, once: it looks the task up by address in the
//!   owned list (`OwnedTasks::describe`, under the list's locks, for its
//!   id, name, spawn location and kind), counts it, calls
//!   `multi_thread::Handle::on_worker_stuck` for a multi-thread worker
//!   still in that poll, then calls the `on_long_poll` callback (no lock
//!   held; a panic in it is caught: the monitor and the runtime go on).
//!
//! So a reported poll ran at least `threshold`; the duration reported is
//! measured from the first sighting, a lower bound short of the truth by
//! less than one interval (plus however late the monitor thread was
//! scheduled), and the report comes at most about two intervals after the
//! poll crossed the threshold. A poll whose task is no longer in the list
//! or no longer running when looked up had ended: it is not reported.
//! A poll that ends while the monitor looks it up is not reported (its
//! task may be gone, its address another's). Between two polls a worker's
//! heartbeat says `IDLE` (the end of every poll stores it), so a worker
//! stalled outside any poll (a dump walking its fibers, a driver turn) is
//! not reported, nor handed off. In a rare race on a weakly ordered CPU
//! (the two stores seen out of order), a report may name the task polled
//! right after the long poll.
//!
//! # Lifetime
//!
//! Started by the builder after the workers if the detector or the
//! histogram is on; `stop` (runtime shutdown and drop, first thing) wakes
//! it at once and joins it. While the user callback runs, `stop` waits for
//! it to return.

use super::metrics::WorkerMetrics;
use crate::loom::{AtomicU64, AtomicUsize, Ordering::*};
use crate::task_core::list::{OwnedTasks, TaskInfo};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A heartbeat's task word while its worker runs no poll.
pub(crate) const IDLE: usize = 0;
/// A heartbeat's task word while the current-thread flavor polls its
/// `block_on` future (task addresses are aligned: never 1).
pub(crate) const BLOCK_ON: usize = 1;

/// Where the monitor's instants are counted from (marks store nanoseconds
/// since then).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Nanoseconds from `since` (as `nanos` counts) to `now`.
pub(crate) fn nanos_since(since: u64, now: Instant) -> u64 {
    nanos(now).saturating_sub(since)
}

/// What a worker publishes for the monitor (module doc). The worker
/// writes `seq` and `task`; the monitor writes the mark and the count.
#[repr(align(128))] // written at every poll: on lines of its own
pub(crate) struct Heartbeat {
    /// The number of the poll running or last run: for a task poll, the
    /// worker's poll count (from 1); for a `block_on` poll, `u64::MAX`
    /// minus the count of those. Never 0 once a poll ran.
    seq: AtomicU64,
    /// The address of its task, `BLOCK_ON`, or `IDLE`.
    task: AtomicUsize,
    /// The `seq` of a poll to look at when it ends, 0 if none: set by the
    /// monitor for a poll it saw across two checks (with `mark_since`),
    /// and by the worker for a poll it times itself.
    mark: AtomicU64,
    /// When the monitor first saw the marked poll (`nanos`).
    mark_since: AtomicU64,
    /// Long polls reported on this worker.
    long_polls: AtomicU64,
    /// A reported fiber's run whose end the worker is to capture: the
    /// poll's `seq` (0: none) and the fiber's task id (monitor writes;
    /// the worker reads when the marked poll ends).
    capture_seq: AtomicU64,
    capture_id: AtomicU64,
    /// The ends of reported fibers' runs, for the monitor to report
    /// (worker pushes, monitor drains; rare).
    ended: std::sync::Mutex<Vec<Ended>>,
}

/// The end of a reported fiber's long run, as its worker saw it.
pub(crate) struct Ended {
    id: u64,
    /// From the monitor's first sighting to the end of the poll.
    elapsed: Duration,
    /// Where it suspended, walked on its own stack (`None`: it finished,
    /// or could not be walked).
    backtrace: Option<std::backtrace::Backtrace>,
}

impl Heartbeat {
    pub(crate) fn new() -> Heartbeat {
        Heartbeat {
            seq: AtomicU64::new(0),
            task: AtomicUsize::new(IDLE),
            mark: AtomicU64::new(0),
            mark_since: AtomicU64::new(0),
            long_polls: AtomicU64::new(0),
            capture_seq: AtomicU64::new(0),
            capture_id: AtomicU64::new(0),
            ended: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A poll begins (worker).
    #[inline(always)]
    pub(crate) fn publish(&self, seq: u64, task: usize) {
        self.seq.store(seq, Relaxed);
        self.task.store(task, Relaxed);
    }

    /// The worker runs no poll (worker).
    #[inline]
    pub(crate) fn set_idle(&self) {
        self.task.store(IDLE, Relaxed);
    }

    /// Whether the monitor marked a poll (worker, at every poll end).
    #[inline(always)]
    pub(crate) fn is_marked(&self) -> bool {
        self.mark.load(Relaxed) != 0
    }

    /// Marks poll `seq` for its own end (worker: a timed poll).
    #[inline]
    pub(crate) fn mark_own(&self, seq: u64) {
        self.mark.store(seq, Relaxed);
    }

    /// Clears the mark (worker); returns the first sighting if it was for
    /// poll `seq` (a stale mark, for an earlier poll, is dropped).
    pub(crate) fn take_mark(&self, seq: u64) -> Option<u64> {
        let mark = self.mark.load(Acquire);
        if mark == 0 {
            return None;
        }
        self.mark.store(0, Relaxed);
        (mark == seq).then(|| self.mark_since.load(Relaxed))
    }

    /// A marked poll `seq`, first seen at `since` (`nanos`), ended at
    /// `now` (worker, on the cold path): if the monitor reported it as a
    /// fiber's long run, walks that fiber where it suspended (on this, its
    /// thread) for the monitor's second report.
    #[cold]
    pub(crate) fn end_of_marked_poll(&self, seq: u64, since: u64, now: Instant) {
        if self.capture_seq.load(Acquire) != seq {
            return;
        }
        self.capture_seq.store(0, Relaxed);
        let id = self.capture_id.load(Relaxed);
        let backtrace = crate::fiber::pool::report_fiber(id).and_then(|r| r.backtrace.ok());
        let ended = Ended {
            id,
            elapsed: Duration::from_nanos(nanos_since(since, now)),
            backtrace,
        };
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ended);
    }

    /// Long polls reported on this worker.
    pub(crate) fn long_polls(&self) -> u64 {
        self.long_polls.load(Relaxed)
    }

    fn read(&self) -> (u64, usize) {
        (self.seq.load(Acquire), self.task.load(Acquire))
    }

    /// Asks the worker to walk fiber `id` when its poll `seq` (reported
    /// long) ends (monitor). Marks the poll if it is not yet, so that its
    /// end takes the cold path.
    fn capture_at_end(&self, seq: u64, id: u64, since: Instant, marked: bool) {
        self.capture_id.store(id, Relaxed);
        self.capture_seq.store(seq, Release);
        if !marked {
            self.mark(seq, since);
        }
    }

    /// Marks poll `seq`, first seen at `since` (monitor).
    fn mark(&self, seq: u64, since: Instant) {
        self.mark_since.store(nanos(since), Relaxed);
        self.mark.store(seq, Release);
    }

    fn count_long_poll(&self) {
        // The monitor is the only writer.
        self.long_polls
            .store(self.long_polls.load(Relaxed) + 1, Relaxed);
    }
}

/// The user's `on_long_poll`, in the scheduler's terms (the runtime wraps
/// it to hand over its public `LongPoll`).
pub(crate) type Callback = Arc<dyn Fn(Report) + Send + Sync>;

/// What the builder configures for the detector.
#[derive(Clone)]
pub(crate) struct MonitorConfig {
    /// `None`: the detector is off (no reports, no hand-off).
    pub(crate) threshold: Option<Duration>,
    pub(crate) on_long_poll: Callback,
}

impl std::fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl MonitorConfig {
    /// The sleep between checks: a quarter of the threshold, within
    /// 1 ms..=250 ms (250 ms with the detector off: then the monitor only
    /// marks long polls for the histogram).
    pub(crate) fn interval(&self) -> Duration {
        self.threshold.map_or(Duration::from_millis(250), |t| {
            (t / 4).clamp(Duration::from_millis(1), Duration::from_millis(250))
        })
    }
}

/// What was polled too long.
#[derive(Clone, Debug)]
pub(crate) enum Polled {
    /// A task or a fiber (`info.kind`).
    Task(TaskInfo),
    /// The current-thread flavor's `block_on` future.
    BlockOn,
}

/// One long poll, as the monitor saw it.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    pub(crate) worker: usize,
    pub(crate) polled: Polled,
    /// Since the monitor first saw the poll (a lower bound).
    pub(crate) elapsed: Duration,
    pub(crate) threshold: Duration,
    /// The worker's queues were handed to a replacement thread.
    pub(crate) handed_off: bool,
    /// The second report of a fiber's long run: it has ended (`elapsed`
    /// is the whole run, from the first sighting), and where it suspended.
    pub(crate) ended: bool,
    pub(crate) backtrace: Option<Arc<std::backtrace::Backtrace>>,
}

/// The monitor thread's handle, kept in the scheduler's `Common`.
#[derive(Default)]
pub(crate) struct Monitor {
    signal: Arc<Signal>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How `stop` wakes the sleeping monitor. Plain std primitives: the
/// monitor thread is not part of any loom model.
#[derive(Default)]
struct Signal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// The monitor's view of one worker: the poll it last saw running.
#[derive(Clone, Copy)]
struct Watch {
    seq: u64,
    first_seen: Instant,
    /// Marked for the histogram.
    marked: bool,
    /// Reported, or found not to be a poll still running.
    done: bool,
}

impl Monitor {
    /// Starts the monitor thread of `handle`'s runtime, unless both the
    /// detector and the histogram are off.
    ///
    /// # Errors
    ///
    /// The OS error if the thread cannot be started.
    pub(crate) fn start(handle: &super::Handle) -> io::Result<()> {
        let common = handle.common();
        if common.config.monitor.threshold.is_none() && common.config.histogram.is_none() {
            return Ok(());
        }
        epoch();
        let h = handle.clone();
        let t = std::thread::Builder::new()
            .name("fiber-runtime-monitor".to_string())
            .spawn(move || run(h))
            .map_err(|e| {
                io::Error::new(e.kind(), format!("failed to start the monitor thread: {e}"))
            })?;
        *common
            .monitor
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(())
    }

    /// Stops the monitor thread, waking it, and joins it (unless called
    /// on that thread: from the `on_long_poll` callback, it exits after
    /// the callback returns). Idempotent.
    pub(crate) fn stop(&self) {
        *self
            .signal
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.signal.wake.notify_all();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            if t.thread().id() != std::thread::current().id() {
                // The thread catches the callback's panics: nothing to
                // re-raise.
                let _ = t.join();
            }
        }
    }
}

/// The monitor thread's body.
fn run(handle: super::Handle) {
    let common = handle.common();
    let config = &common.config.monitor;
    let interval = config.interval();
    let signal = common.monitor.signal.clone();
    let mut watches: Vec<Option<Watch>> = Vec::new();
    let mut pending: Vec<Option<Report>> = Vec::new();
    let mut stopped = signal.stopped.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if *stopped {
            return;
        }
        // A spurious wake-up only makes this check early: harmless.
        stopped = signal
            .wake
            .wait_timeout(stopped, interval)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if *stopped {
            return;
        }
        drop(stopped);
        let now = Instant::now();
        // Keeps the coarse clock (spawn stamps, dump ages) current.
        crate::util::clock::advance(now);
        check(&handle, &mut watches, &mut pending, now);
        stopped = signal.stopped.lock().unwrap_or_else(|e| e.into_inner());
    }
}

/// The workers' published metrics (their heartbeats), and the owned list.
fn parts(handle: &super::Handle) -> (Vec<&WorkerMetrics>, &OwnedTasks) {
    match handle {
        super::Handle::CurrentThread(h) => (vec![h.worker_metrics()], h.owned()),
        super::Handle::MultiThread(h) => (h.worker_metrics().collect(), h.owned()),
    }
}

/// One check of every worker (module doc).
///
/// `pending`: per worker, the report of the fiber whose long run's end
/// that worker is to capture (at most one: a new one replaces it).
fn check(
    handle: &super::Handle,
    watches: &mut Vec<Option<Watch>>,
    pending: &mut Vec<Option<Report>>,
    now: Instant,
) {
    let common = handle.common();
    let config = &common.config.monitor;
    let histogram = common.config.histogram.is_some();
    let (workers, owned) = parts(handle);
    watches.resize(workers.len(), None);
    pending.resize(workers.len(), None);
    for (i, (worker, watch)) in workers.iter().zip(watches.iter_mut()).enumerate() {
        let hb = &worker.heartbeat;
        // The ends of fibers' long runs reported earlier: the second
        // report, with where each suspended.
        let ended = std::mem::take(&mut *hb.ended.lock().unwrap_or_else(|e| e.into_inner()));
        for e in ended {
            let Some(first) = pending[i].take_if(|r| match &r.polled {
                Polled::Task(t) => t.id.as_u64() == e.id,
                Polled::BlockOn => false,
            }) else {
                continue;
            };
            let report = Report {
                elapsed: e.elapsed.max(first.elapsed),
                ended: true,
                backtrace: e.backtrace.map(Arc::new),
                ..first
            };
            let _ = catch_unwind(AssertUnwindSafe(|| (config.on_long_poll)(report)));
        }
        let (seq, task) = hb.read();
        if task == IDLE {
            *watch = None;
            continue;
        }
        let w = match watch {
            Some(w) if w.seq == seq => w,
            _ => {
                // A new poll: it began after the previous check.
                *watch = Some(Watch {
                    seq,
                    first_seen: now,
                    marked: false,
                    done: false,
                });
                continue;
            }
        };
        // The same poll as at the previous check.
        if histogram && !w.marked {
            hb.mark(seq, w.first_seen);
            w.marked = true;
        }
        let Some(threshold) = config.threshold else {
            continue;
        };
        let elapsed = now.saturating_duration_since(w.first_seen);
        if w.done || elapsed < threshold {
            continue;
        }
        w.done = true;
        let polled = if task == BLOCK_ON {
            Polled::BlockOn
        } else {
            match owned.describe(task) {
                Some(info) if info.running => Polled::Task(info),
                // Finished, or idle again: that poll has ended.
                _ => continue,
            }
        };
        // Still that poll, after the lookup? If it ended meanwhile, its
        // task may be gone and the address another's: report nothing (it
        // ran past the threshold, but only just).
        if hb.read() != (seq, task) {
            continue;
        }
        hb.count_long_poll();
        let handed_off = match handle {
            super::Handle::MultiThread(h) => h.on_worker_stuck(i),
            _ => false,
        };
        if let Polled::Task(t) = &polled {
            if t.kind == crate::task_core::list::Kind::Fiber {
                // Its backtrace can only be taken after the fact, on its
                // own thread: ask the worker for it when the run ends.
                hb.capture_at_end(seq, t.id.as_u64(), w.first_seen, w.marked);
                w.marked = true;
            }
        }
        let report = Report {
            worker: i,
            polled,
            elapsed,
            threshold,
            handed_off,
            ended: false,
            backtrace: None,
        };
        if matches!(&report.polled, Polled::Task(t) if t.kind == crate::task_core::list::Kind::Fiber)
        {
            pending[i] = Some(report.clone());
        }
        // No lock is held here. The panic hook has printed a panic; the
        // monitor goes on.
        let _ = catch_unwind(AssertUnwindSafe(|| (config.on_long_poll)(report)));
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_quarter_of_the_threshold_within_bounds() {
        let cfg = |t: Option<u64>| MonitorConfig {
            threshold: t.map(Duration::from_millis),
            on_long_poll: Arc::new(|_| {}),
        };
        assert_eq!(cfg(Some(100)).interval(), Duration::from_millis(25));
        assert_eq!(cfg(Some(2)).interval(), Duration::from_millis(1));
        assert_eq!(cfg(Some(10_000)).interval(), Duration::from_millis(250));
        assert_eq!(cfg(None).interval(), Duration::from_millis(250));
    }

    #[test]
    fn a_mark_is_taken_once_and_only_for_its_poll() {
        let hb = Heartbeat::new();
        hb.publish(7, 0x1000);
        assert!(!hb.is_marked());
        let seen = Instant::now();
        hb.mark(7, seen);
        assert!(hb.is_marked());
        assert_eq!(hb.take_mark(7), Some(nanos(seen)));
        assert!(!hb.is_marked());
        assert_eq!(hb.take_mark(7), None);
        // A stale mark (the poll ended before the worker saw it) is
        // dropped at the next poll's end.
        hb.mark(7, seen);
        assert_eq!(hb.take_mark(8), None);
        assert!(!hb.is_marked());
    }
}
