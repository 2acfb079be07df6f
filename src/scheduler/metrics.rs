//! Worker metrics: per-worker counters written by their worker, and the
//! snapshot of a scheduler's counters that `RuntimeMetrics` presents.
//!
//! # What a poll costs
//!
//! A worker brackets every task poll with [`LocalMetrics::begin_poll`] and
//! [`LocalMetrics::end_poll`]: two relaxed stores to its [`Heartbeat`]
//! (the poll's number, which is the poll count the worker keeps anyway,
//! and the task's address, for the long-poll monitor), a compare of the
//! poll count with the next one to time, and after the poll one relaxed
//! load and test (the "look at this poll" mark, set by the monitor for a
//! long poll, and by the worker itself for a timed one). No clock read,
//! no read-modify-write atomic, no store besides the two.
//!
//! # The poll-time histogram
//!
//! Log-scale buckets ([`HistogramConfig`]): bucket 0 is
//! `[0, first_end)`, bucket `k` is `[first_end·2^(k-1), first_end·2^k)`,
//! the last one is open-ended. Timing every poll would cost two clock
//! reads (~30 ns each) per poll of ~30 ns, so:
//!
//! - one poll in `sample_every` (the first poll, then every
//!   `sample_every`-th) is timed with `Instant`, and counts for the polls since the previous
//!   timed one: the histogram's bucket gets that weight, so the counts sum
//!   exactly to the poll count;
//! - a poll the monitor saw running across two of its checks (one that
//!   lasts at least about a check interval) is marked by it; the worker's
//!   end-of-poll load sees the mark and times that poll from the monitor's
//!   first sighting: a lower bound short by less than one monitor interval
//!   (the same duration the long-poll report gives), counted with weight 1;
//! - the polls since the last timed one are not in any bucket yet; each
//!   flush adds them to the bucket of the last timed poll (the next timed
//!   poll then counts only for those after), so the published counts only
//!   grow, and those of a quiescent (parked) worker sum exactly to its
//!   published poll count.
//!
//! The mean poll time is the weighted sum of the timed polls' durations
//! over their total weight (an estimate from the same samples).

use super::monitor::Heartbeat;
use crate::loom::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most buckets a poll-time histogram may have (more would only
/// split durations beyond 2^63 ns).
pub(crate) const MAX_BUCKETS: usize = 64;

/// The shape and sampling of the poll-time histograms (validated by the
/// builder: `1..=MAX_BUCKETS` buckets, a non-zero first bucket, a
/// non-zero sampling interval).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HistogramConfig {
    pub(crate) buckets: usize,
    /// The end of bucket 0, in nanoseconds (at least 1).
    pub(crate) first_end_ns: u64,
    /// Time one poll in this many (at least 1).
    pub(crate) sample_every: u64,
    /// Polls at least this long count once each, never as the sample
    /// for others: twice the monitor's check interval, from which every
    /// poll is seen across two checks, so marked and timed by itself.
    pub(crate) individual_ns: u64,
}

impl HistogramConfig {
    /// The default: 24 buckets from 100 ns (the last one starts at about
    /// 419 ms), one poll in 256 timed.
    pub(crate) const DEFAULT: HistogramConfig = HistogramConfig {
        buckets: 24,
        first_end_ns: 100,
        sample_every: 256,
        // Twice the check interval at the default threshold (100 ms / 4).
        individual_ns: 50_000_000,
    };

    /// The bucket of a poll that took `ns` nanoseconds.
    pub(crate) fn bucket(&self, ns: u64) -> usize {
        if ns < self.first_end_ns {
            return 0;
        }
        let q = ns / self.first_end_ns; // >= 1
        (1 + q.ilog2() as usize).min(self.buckets - 1)
    }

    /// The start of bucket `b`, in nanoseconds (saturating).
    pub(crate) fn bucket_start_ns(&self, b: usize) -> u64 {
        match b {
            0 => 0,
            b => shl_saturating(self.first_end_ns, b - 1),
        }
    }

    /// The end of bucket `b`, in nanoseconds; `None` for the last one
    /// (open-ended) and for ends beyond `u64::MAX` ns.
    pub(crate) fn bucket_end_ns(&self, b: usize) -> Option<u64> {
        if b + 1 >= self.buckets {
            return None;
        }
        self.first_end_ns.checked_mul(1u64.checked_shl(b as u32)?)
    }
}

fn shl_saturating(v: u64, by: usize) -> u64 {
    match 1u64.checked_shl(by as u32) {
        Some(m) => v.saturating_mul(m),
        None => u64::MAX,
    }
}

/// Counters of one worker. Only that worker writes them (in batches, at
/// maintenance and park time), so plain relaxed stores suffice; the
/// heartbeat, on lines of its own, is written at every poll.
#[repr(align(128))] // own cache line(s): no false sharing between workers
pub(crate) struct WorkerMetrics {
    polls: AtomicU64,
    steals: AtomicU64,
    parks: AtomicU64,
    cpu_moves: AtomicU64,
    busy_ns: AtomicU64,
    forced_yields: AtomicU64,
    /// Local queue length at the last flush (current-thread flavor; the
    /// multi-thread flavor reads its ring directly).
    queue_depth: AtomicU64,
    /// The histogram's shape, `None` if off.
    histogram: Option<HistogramConfig>,
    /// Published bucket counts (the first `histogram.buckets`).
    buckets: [AtomicU64; MAX_BUCKETS],
    /// Weighted nanoseconds of the timed polls, and their total weight
    /// (for the mean).
    timed_ns: AtomicU64,
    timed_weight: AtomicU64,
    /// What the worker publishes at every poll, for the monitor.
    pub(crate) heartbeat: Heartbeat,
}

impl WorkerMetrics {
    pub(crate) fn new(histogram: Option<HistogramConfig>) -> WorkerMetrics {
        WorkerMetrics {
            polls: AtomicU64::new(0),
            steals: AtomicU64::new(0),
            parks: AtomicU64::new(0),
            cpu_moves: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            forced_yields: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            histogram,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            timed_ns: AtomicU64::new(0),
            timed_weight: AtomicU64::new(0),
            heartbeat: Heartbeat::new(),
        }
    }

    /// Publishes `local`, first adding the budget-forced yields counted
    /// on this thread (so: call it on the worker's own thread).
    pub(crate) fn flush(&self, local: &mut LocalMetrics) {
        local.forced_yields += crate::task_core::coop::take_forced_yields();
        self.forced_yields.store(local.forced_yields, Relaxed);
        self.steals.store(local.steals, Relaxed);
        self.parks.store(local.parks, Relaxed);
        self.cpu_moves.store(local.cpu_moves, Relaxed);
        self.busy_ns.store(local.busy_ns, Relaxed);
        if self.histogram.is_some() {
            let hist = &mut local.hist;
            // The polls since the last timed one count for its bucket, so
            // that the published counts sum to the published polls.
            let pending = local.polls - hist.attributed;
            if pending > 0 {
                hist.counts[hist.last_bucket] += pending;
                hist.attributed = local.polls;
                hist.dirty |= 1 << hist.last_bucket;
            }
            // Only the buckets that changed (one or two, usually).
            let mut dirty = std::mem::take(&mut hist.dirty);
            while dirty != 0 {
                let b = dirty.trailing_zeros() as usize;
                self.buckets[b].store(hist.counts[b], Relaxed);
                dirty &= dirty - 1;
            }
            if std::mem::take(&mut hist.timed_dirty) {
                self.timed_ns.store(hist.timed_ns, Relaxed);
                self.timed_weight.store(hist.timed_weight, Relaxed);
            }
        }
        // Last, and released: a snapshot that reads this count (acquiring)
        // reads buckets at least as new as the ones stored above, which
        // sum to it. Stored first, a reader between the two could see the
        // new count beside the old buckets (CI saw 466 polls against 421).
        self.polls.store(local.polls, Release);
    }

    pub(crate) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as u64, Relaxed);
    }

    /// The published counters. The histogram, read after the poll count
    /// (`flush` stores that last), accounts for at least that many polls:
    /// exactly that many once the worker stopped polling and flushed.
    pub(crate) fn snapshot(&self) -> WorkerSnapshot {
        let polls = self.polls.load(Acquire);
        WorkerSnapshot {
            polls,
            steals: self.steals.load(Relaxed),
            parks: self.parks.load(Relaxed),
            cpu_moves: self.cpu_moves.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            forced_yields: self.forced_yields.load(Relaxed),
            local_queue_depth: self.queue_depth.load(Relaxed) as usize,
            histogram: self.histogram.map(|config| self.histogram_snapshot(config)),
            long_polls: self.heartbeat.long_polls(),
        }
    }

    fn histogram_snapshot(&self, config: HistogramConfig) -> HistogramSnapshot {
        let counts: Vec<u64> = self.buckets[..config.buckets]
            .iter()
            .map(|c| c.load(Relaxed))
            .collect();
        let timed_ns = self.timed_ns.load(Relaxed);
        let timed_weight = self.timed_weight.load(Relaxed);
        HistogramSnapshot {
            config,
            counts,
            mean: (timed_weight > 0).then(|| Duration::from_nanos(timed_ns / timed_weight)),
        }
    }
}

/// The local half of a worker's poll-time histogram.
#[derive(Debug)]
struct LocalHistogram {
    counts: [u64; MAX_BUCKETS],
    /// Polls accounted for in `counts`.
    attributed: u64,
    /// The bucket of the last timed poll.
    last_bucket: usize,
    /// Weighted nanoseconds of the timed polls, and their weight.
    timed_ns: u64,
    timed_weight: u64,
    timed_dirty: bool,
    /// The buckets changed since the last flush, one bit each.
    dirty: u64,
}

/// What a worker accumulates locally between flushes, and its side of
/// the heartbeat.
pub(crate) struct LocalMetrics {
    pub(crate) polls: u64,
    pub(crate) steals: u64,
    pub(crate) parks: u64,
    /// Moves off a CPU another busy worker shared (`spread.rs`).
    pub(crate) cpu_moves: u64,
    pub(crate) busy_ns: u64,
    pub(crate) forced_yields: u64,
    /// Where this worker publishes (its heartbeat included).
    shared: Arc<WorkerMetrics>,
    /// Polls of the `block_on` future (current-thread flavor). The
    /// heartbeat numbers a task poll `polls` and a `block_on` poll
    /// `u64::MAX - block_on_polls`: every poll gets a number of its own.
    block_on_polls: u64,
    /// The task poll (by `polls`) to time next: the first, then one in
    /// `sample_every`; 0 (never reached: `polls` is at least 1 when
    /// compared) with the histogram off.
    next_sample: u64,
    /// When the poll running now began, if it is timed.
    sample_start: Option<Instant>,
    hist: LocalHistogram,
}

impl LocalMetrics {
    pub(crate) fn new(shared: Arc<WorkerMetrics>) -> LocalMetrics {
        let next_sample = u64::from(shared.histogram.is_some());
        LocalMetrics {
            polls: 0,
            steals: 0,
            parks: 0,
            cpu_moves: 0,
            busy_ns: 0,
            forced_yields: 0,
            shared,
            block_on_polls: 0,
            next_sample,
            sample_start: None,
            hist: LocalHistogram {
                counts: [0; MAX_BUCKETS],
                attributed: 0,
                last_bucket: 0,
                timed_ns: 0,
                timed_weight: 0,
                timed_dirty: false,
                dirty: 0,
            },
        }
    }

    fn block_on_seq(&self) -> u64 {
        u64::MAX - self.block_on_polls
    }

    /// Called right before a task poll, after counting it in `polls`:
    /// publishes the heartbeat, and starts the clock if this poll is one
    /// of the timed ones.
    #[inline(always)]
    pub(crate) fn begin_poll(&mut self, task_addr: usize) {
        self.shared.heartbeat.publish(self.polls, task_addr);
        if self.polls == self.next_sample {
            self.start_sample();
        }
    }

    #[cold]
    #[inline(never)]
    fn start_sample(&mut self) {
        if let Some(c) = self.shared.histogram {
            self.next_sample = self.polls.saturating_add(c.sample_every);
        }
        // The poll's end checks only the heartbeat's mark: mark it
        // ourselves (a concurrent mark by the monitor is for this poll or
        // an earlier one: either way the end finds a mark).
        self.shared.heartbeat.mark_own(self.polls);
        self.sample_start = Some(Instant::now());
    }

    /// Called right after a task poll.
    #[inline(always)]
    pub(crate) fn end_poll(&mut self) {
        // No poll runs now: a worker stalled between polls (a dump walk, a
        // driver turn) is not mistaken for a long poll of the last task.
        self.shared.heartbeat.set_idle();
        if self.shared.heartbeat.is_marked() {
            self.end_poll_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn end_poll_slow(&mut self) {
        let now = Instant::now();
        let timed = self.sample_start.take();
        let mark = self.shared.heartbeat.take_mark(self.polls);
        if let Some(since) = mark {
            // A fiber's run the monitor reported: walk it where it
            // suspended, for the report's second half.
            self.shared
                .heartbeat
                .end_of_marked_poll(self.polls, since, now);
        }
        let Some(config) = self.shared.histogram else {
            return;
        };
        let hist = &mut self.hist;
        let (ns, sampled) = match (timed, mark) {
            // Timed from its start: exact.
            (Some(start), _) => (now.duration_since(start).as_nanos() as u64, true),
            // Marked by the monitor: from its first sighting.
            (None, Some(since)) => (super::monitor::nanos_since(since, now), false),
            (None, None) => return,
        };
        let b = config.bucket(ns);
        // A sampled poll stands for the polls since the previous one (and,
        // until the next, for those after it: `flush`), unless it is long
        // enough for the monitor to mark every poll that long
        // (`individual_ns`): those count for themselves only, so an outlier
        // does not stand for the short polls around it, nor is counted
        // twice.
        let weight = if sampled && ns < config.individual_ns {
            hist.last_bucket = b;
            self.polls - hist.attributed
        } else {
            1
        };
        hist.counts[b] += weight;
        hist.attributed += weight;
        hist.timed_ns = hist.timed_ns.saturating_add(ns.saturating_mul(weight));
        hist.timed_weight += weight;
        hist.timed_dirty = true;
        hist.dirty |= 1 << b;
    }

    /// Called right before the current-thread flavor polls its `block_on`
    /// future (not a task: not counted in `polls` nor in the histogram,
    /// but watched by the monitor like one).
    #[inline]
    pub(crate) fn begin_block_on_poll(&mut self) {
        self.block_on_polls += 1;
        self.shared
            .heartbeat
            .publish(self.block_on_seq(), super::monitor::BLOCK_ON);
    }

    /// Called right after a `block_on` future poll.
    #[inline]
    pub(crate) fn end_block_on_poll(&mut self) {
        self.shared.heartbeat.set_idle();
        if self.shared.heartbeat.is_marked() {
            let _ = self.shared.heartbeat.take_mark(self.block_on_seq());
        }
    }

    /// The worker parks or stops driving: no poll of it is running.
    #[inline]
    pub(crate) fn set_idle(&self) {
        self.shared.heartbeat.set_idle();
    }
}

/// A worker's poll-time histogram at one instant.
#[derive(Clone, Debug)]
pub(crate) struct HistogramSnapshot {
    pub(crate) config: HistogramConfig,
    /// One count per bucket.
    pub(crate) counts: Vec<u64>,
    /// The estimated mean poll time (`None` before the first timed poll).
    pub(crate) mean: Option<Duration>,
}

/// One worker's counters at one instant.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerSnapshot {
    pub(crate) polls: u64,
    pub(crate) steals: u64,
    pub(crate) parks: u64,
    pub(crate) cpu_moves: u64,
    pub(crate) busy: Duration,
    pub(crate) forced_yields: u64,
    pub(crate) local_queue_depth: usize,
    /// `None` if the histogram is off.
    pub(crate) histogram: Option<HistogramSnapshot>,
    /// Long polls the monitor reported on this worker.
    pub(crate) long_polls: u64,
}

/// A scheduler's counters at one instant.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) workers: Vec<WorkerSnapshot>,
    pub(crate) alive_tasks: usize,
    pub(crate) alive_fibers: usize,
    pub(crate) global_queue_depth: usize,
    pub(crate) blocking_threads: usize,
    pub(crate) spawned_tasks: u64,
    pub(crate) remote_schedules: u64,
    pub(crate) io_ready: u64,
    /// Waits in the io_uring driver's rings, and streams bound to them
    /// (`driver::Handle::ring_counters`).
    pub(crate) io_uring_waits: u64,
    pub(crate) io_uring_binds: u64,
    /// Worker hand-offs so far (multi-thread flavor).
    pub(crate) handoffs: u64,
    /// Replacement threads alive (multi-thread flavor).
    pub(crate) replacement_threads: usize,
    /// Long polls reported, on every worker slot: a replacement thread's
    /// too, whose other counts are not in `workers`.
    pub(crate) long_polls: u64,
}

#[cfg(test)]
mod loom_tests {
    use super::*;
    use crate::loom::{model, thread};

    /// A snapshot taken while the worker flushes: its histogram accounts
    /// for at least the polls it reports (fails with the poll count
    /// stored before the buckets, or with both relaxed), and for exactly
    /// those once the worker flushed for the last time.
    #[test]
    fn loom_a_snapshot_racing_a_flush_never_reports_polls_its_histogram_lacks() {
        model(|| {
            let shared = Arc::new(WorkerMetrics::new(Some(HistogramConfig {
                buckets: 4,
                first_end_ns: 1,
                sample_every: 4,
                individual_ns: u64::MAX,
            })));
            let worker = {
                let shared = shared.clone();
                thread::spawn(move || {
                    let mut local = LocalMetrics::new(shared.clone());
                    for polls in [2, 5] {
                        while local.polls < polls {
                            local.polls += 1;
                            local.begin_poll(0x1000);
                            local.end_poll();
                        }
                        shared.flush(&mut local);
                    }
                })
            };
            let s = shared.snapshot();
            let total: u64 = s.histogram.unwrap().counts.iter().sum();
            assert!(total >= s.polls, "{total} < {} polls", s.polls);
            worker.join().unwrap();
            let s = shared.snapshot();
            assert_eq!(s.polls, 5);
            assert_eq!(s.histogram.unwrap().counts.iter().sum::<u64>(), 5);
        });
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    fn config(buckets: usize, first_end_ns: u64) -> HistogramConfig {
        HistogramConfig {
            buckets,
            first_end_ns,
            sample_every: 1,
            individual_ns: u64::MAX,
        }
    }

    #[test]
    fn buckets_double_from_the_first_end() {
        let c = config(5, 100);
        // [0,100) [100,200) [200,400) [400,800) [800,inf)
        let cases = [
            (0, 0),
            (99, 0),
            (100, 1),
            (199, 1),
            (200, 2),
            (399, 2),
            (400, 3),
            (799, 3),
            (800, 4),
            (1_000_000, 4),
            (u64::MAX, 4),
        ];
        for (ns, b) in cases {
            assert_eq!(c.bucket(ns), b, "{ns} ns");
        }
        let ranges: Vec<_> = (0..5)
            .map(|b| (c.bucket_start_ns(b), c.bucket_end_ns(b)))
            .collect();
        assert_eq!(
            ranges,
            [
                (0, Some(100)),
                (100, Some(200)),
                (200, Some(400)),
                (400, Some(800)),
                (800, None)
            ]
        );
    }

    #[test]
    fn every_duration_lands_in_the_bucket_whose_range_holds_it() {
        for c in [config(1, 1), config(24, 100), config(64, 1), config(64, 7)] {
            for shift in 0..64 {
                for ns in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                    let b = c.bucket(ns);
                    assert!(b < c.buckets);
                    assert!(c.bucket_start_ns(b) <= ns, "{c:?} {ns} in {b}");
                    if let Some(end) = c.bucket_end_ns(b) {
                        assert!(ns < end, "{c:?} {ns} in {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn consecutive_buckets_meet_and_huge_ones_saturate() {
        let c = config(64, 3);
        for b in 0..63 {
            if let Some(end) = c.bucket_end_ns(b) {
                assert_eq!(end, c.bucket_start_ns(b + 1), "bucket {b}");
            } else {
                // 3 * 2^b no longer fits: the next start saturates.
                assert_eq!(c.bucket_start_ns(b + 1), u64::MAX, "bucket {b}");
            }
        }
        assert_eq!(c.bucket_end_ns(63), None);
        assert_eq!(c.bucket_start_ns(63), 3 << 62);
        // 5 * 2^62 does not fit: saturated.
        let c = config(64, 5);
        assert_eq!(c.bucket_start_ns(63), u64::MAX);
        assert_eq!(c.bucket_end_ns(62), None);
        // One bucket: everything.
        let one = config(1, 1000);
        assert_eq!((one.bucket(0), one.bucket(u64::MAX)), (0, 0));
        assert_eq!(one.bucket_end_ns(0), None);
    }

    #[test]
    fn weighted_samples_and_the_pending_polls_sum_to_the_poll_count() {
        let shared = Arc::new(WorkerMetrics::new(Some(HistogramConfig {
            buckets: 8,
            first_end_ns: 1,
            sample_every: 4,
            individual_ns: u64::MAX,
        })));
        // (The test's heartbeat sees no monitor: only samples.)
        let mut local = LocalMetrics::new(shared.clone());
        let mut timed = 0;
        for i in 0..103u64 {
            local.polls += 1;
            local.begin_poll(0x1000);
            timed += usize::from(local.sample_start.is_some());
            local.end_poll();
            assert!(local.sample_start.is_none());
            if i % 10 == 0 {
                shared.flush(&mut local);
                let s = shared.snapshot();
                assert_eq!(s.histogram.unwrap().counts.iter().sum::<u64>(), s.polls);
            }
        }
        shared.flush(&mut local);
        let s = shared.snapshot();
        assert_eq!(s.polls, 103);
        let h = s.histogram.unwrap();
        assert_eq!(h.counts.iter().sum::<u64>(), 103);
        // Polls 1, 5, 9, ..., 101.
        assert_eq!(timed, 26);
        assert!(h.mean.is_some());
    }

    #[test]
    fn histogram_off_times_nothing() {
        let shared = Arc::new(WorkerMetrics::new(None));
        let mut local = LocalMetrics::new(shared.clone());
        for _ in 0..1000 {
            local.polls += 1;
            local.begin_poll(0x1000);
            assert!(local.sample_start.is_none());
            local.end_poll();
        }
        shared.flush(&mut local);
        assert!(shared.snapshot().histogram.is_none());
    }
}
