//! Spreading busy workers that the kernel stacked on one CPU.
//!
//! A kernel may run two busy workers on one CPU while another CPU idles,
//! and keep them there until its load balancer moves one: a scheduler
//! tick or more (4 ms at `HZ=250`), which is the whole of a short burst
//! of work, at half speed. Kernels that pack threads onto few vCPUs do it
//! on purpose, for threads whose recent utilization is low, which is what
//! a worker that just woke from idling looks like (`BENCHMARKS.md`, issue
//! 13, eighth step, seen with `perf sched`).
//!
//! Each busy worker publishes the CPU it runs on at its maintenance (one
//! `sched_getcpu`, which glibc answers from `rseq` without a system call);
//! a parking or exiting worker publishes none. A worker that finds another
//! busy worker on its own CPU, while a CPU of its affinity mask runs none
//! of them, claims that CPU (publishes it) and moves there: one
//! `sched_setaffinity` to that CPU alone (the kernel migrates the thread
//! before the call returns) and one back to the mask it read just before,
//! which moves nothing. The thread is never left pinned, so a thread it
//! starts (a blocking-pool thread, a user's `std::thread::spawn`), which
//! inherits its mask, inherits the mask it had. Of two workers on one CPU
//! only one runs at a time, and the claim comes before the move, so the
//! other sees the CPU taken and stays. The balancer may stack them again
//! at a later tick; they then move again, at most once per `MIN_GAP` per
//! worker, so a CPU that another process keeps busy costs a few system
//! calls a millisecond at worst. A worker that its user pinned to one CPU
//! has no CPU to move to.
//!
//! Limits: the mask given back is the one the thread had just before,
//! and since Linux 6.2 the kernel keeps a mask set this way as the
//! thread's own, so a moved worker does not pick up CPUs that its cpuset
//! gains later (a container widened at run time) until it is restarted.
//! A worker in a long poll keeps its published CPU until its next
//! maintenance, busy or not.

use crate::util::CachePadded;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// `Spread::cpus` of a worker that is parked (or has not looked yet).
const NONE: i32 = -1;

/// The least time between two moves of one worker.
const MIN_GAP: Duration = Duration::from_millis(1);

/// The CPU each worker slot last ran on while busy.
pub(super) struct Spread {
    cpus: Box<[CachePadded<AtomicI32>]>,
    /// `Builder::spread_workers`.
    enabled: bool,
}

/// One worker's side: when it last moved.
#[derive(Default)]
pub(super) struct LocalSpread {
    last_move: Option<Instant>,
}

impl Spread {
    pub(super) fn new(slots: usize, enabled: bool) -> Spread {
        Spread {
            cpus: (0..slots)
                .map(|_| CachePadded::new(AtomicI32::new(NONE)))
                .collect(),
            enabled,
        }
    }

    /// Worker `index` is about to park, or leaves its run loop: it
    /// occupies no CPU.
    pub(super) fn parked(&self, index: usize) {
        if self.cpus[index].load(Relaxed) != NONE {
            self.cpus[index].store(NONE, Relaxed);
        }
    }

    /// At worker `index`'s maintenance: publishes its CPU, and moves it if
    /// another busy worker shares that CPU and a free one exists; returns
    /// whether it moved.
    pub(super) fn check(&self, index: usize, local: &mut LocalSpread) -> bool {
        if !self.enabled {
            return false;
        }
        let Some(cpu) = sys::current_cpu() else {
            return false;
        };
        let slot = &self.cpus[index];
        if slot.load(Relaxed) != cpu {
            slot.store(cpu, Relaxed);
        }
        // The CPUs the other workers published.
        let others = || {
            self.cpus
                .iter()
                .enumerate()
                .filter(move |&(i, _)| i != index)
                .map(|(_, c)| c.load(Relaxed))
        };
        if !others().any(|c| c == cpu) {
            return false;
        }
        let now = Instant::now();
        if local
            .last_move
            .is_some_and(|t| now.duration_since(t) < MIN_GAP)
        {
            return false;
        }
        local.last_move = Some(now);
        // Only now (at most once per `MIN_GAP`): the allocation.
        let busy: Vec<i32> = others().collect();
        // Claimed before the move, which may take a while (the kernel
        // wakes the target CPU), and meanwhile the worker it shares the
        // CPU with runs: that one must not move there too.
        let claim = |to: i32| slot.store(to, Relaxed);
        let moved = sys::move_off(&busy, index, claim);
        if !moved {
            // No claim stands for a move that failed.
            slot.store(cpu, Relaxed);
        }
        moved
    }
}

/// A CPU of `allowed` that none of `busy` runs on, looking from the
/// `start`-th (modulo their number) on, so that workers of two stacked
/// pairs looking at once (each from its own index) rarely pick the same.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn free_cpu(allowed: impl IntoIterator<Item = usize>, busy: &[i32], start: usize) -> Option<usize> {
    let allowed: Vec<usize> = allowed.into_iter().collect();
    let n = allowed.len();
    (0..n)
        .map(|i| allowed[(start + i) % n])
        .find(|&c| !busy.iter().any(|&b| usize::try_from(b) == Ok(c)))
}

#[cfg(target_os = "linux")]
mod sys {
    const SIZE: usize = std::mem::size_of::<libc::cpu_set_t>();

    /// The CPU this thread runs on.
    pub(super) fn current_cpu() -> Option<i32> {
        // SAFETY: `sched_getcpu` has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        (cpu >= 0).then_some(cpu)
    }

    /// Moves this thread to a CPU of its affinity mask that none of
    /// `busy` runs on (`claim`ed first; the search starts at the
    /// `start`-th), and gives it its mask back; returns whether it moved.
    pub(super) fn move_off(busy: &[i32], start: usize, claim: impl FnOnce(i32)) -> bool {
        // SAFETY: `cpu_set_t` is plain bits; all zeros is the empty set.
        let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `mask` is a writable `cpu_set_t` of `SIZE` bytes.
        if unsafe { libc::sched_getaffinity(0, SIZE, &mut mask) } != 0 {
            return false;
        }
        // SAFETY: `c` is below the set's capacity.
        let allowed = (0..8 * SIZE).filter(|&c| unsafe { libc::CPU_ISSET(c, &mask) });
        let Some(to) = super::free_cpu(allowed, busy, start) else {
            return false;
        };
        // SAFETY: all zeros is the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `to` is below the set's capacity.
        unsafe { libc::CPU_SET(to, &mut one) };
        claim(to as i32);
        // SAFETY: `one` is a valid `cpu_set_t` of `SIZE` bytes; the kernel
        // migrates this thread before the call returns.
        if unsafe { libc::sched_setaffinity(0, SIZE, &one) } != 0 {
            return false;
        }
        // SAFETY: `mask` is a valid `cpu_set_t` of `SIZE` bytes, read just
        // above; `to` is in it, so the kernel leaves the thread there.
        // Should it fail (the cgroup's CPUs changed in between), the thread
        // is left on `to` alone, as if its user had pinned it.
        unsafe { libc::sched_setaffinity(0, SIZE, &mask) };
        true
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub(super) fn current_cpu() -> Option<i32> {
        None
    }

    pub(super) fn move_off(_busy: &[i32], _start: usize, _claim: impl FnOnce(i32)) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_cpu_is_an_allowed_one_no_busy_worker_runs_on() {
        assert_eq!(free_cpu([0, 1], &[0], 0), Some(1));
        assert_eq!(free_cpu([0, 1, 2, 3], &[0, 1, NONE, 3], 0), Some(2));
        // Parked workers (`NONE`) occupy nothing.
        assert_eq!(free_cpu([0, 1], &[NONE, NONE], 0), Some(0));
        // Every allowed CPU taken, or none allowed: stay.
        assert_eq!(free_cpu([0, 1], &[1, 0], 0), None);
        assert_eq!(free_cpu([], &[0], 3), None);
        // A busy worker on a CPU outside the mask does not matter.
        assert_eq!(free_cpu([2, 3], &[0, 2], 0), Some(3));
        // Two workers looking at once from their own indexes pick apart.
        assert_eq!(free_cpu([0, 1, 2, 3], &[0, 0], 2), Some(2));
        assert_eq!(free_cpu([0, 1, 2, 3], &[0, 0], 3), Some(3));
        assert_eq!(free_cpu([0, 1, 2, 3], &[0, 0], 5), Some(1));
    }

    #[test]
    fn a_parking_worker_gives_up_its_cpu() {
        let spread = Spread::new(2, true);
        spread.cpus[0].store(3, Relaxed);
        spread.parked(0);
        assert_eq!(spread.cpus[0].load(Relaxed), NONE);
    }
}
