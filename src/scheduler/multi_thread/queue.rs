//! The per-worker run queue: a bounded ring owned by one worker (`Local`:
//! push at the tail, pop at the head) from which idle workers steal half
//! (`Steal`: any thread).
//!
//! The head is one `AtomicU64` packing two `u32` positions: `real`, the
//! next task to pop, and `steal`, which lags behind `real` while a stealer
//! is copying tasks out. The owner never overwrites slots between `steal`
//! and `real`; only one stealer copies at a time. Positions wrap; slots are
//! `position & MASK`.
//!
//! ```text
//!   steal    real                tail
//!     │        │                   │
//!  ───┼────────┼───────────────────┼───
//!     │copying │ poppable / stealable │ free (owner pushes here)
//! ```
//!
//! The algorithm is the one tokio's `queue.rs` uses, written afresh here.

use crate::loom::{Arc, AtomicU32, AtomicU64, Ordering::*, UnsafeCell};
use crate::scheduler::inject::Inject;
use crate::task_core::Notified;
use std::mem::MaybeUninit;

/// Capacity of a local queue. Shrunk under loom so that overflow and
/// wrap-around are explored.
#[cfg(not(fiber_runtime_loom))]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 256;
#[cfg(fiber_runtime_loom)]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 4;

const MASK: usize = LOCAL_QUEUE_CAPACITY - 1;

struct Inner {
    head: AtomicU64,
    tail: AtomicU32,
    buffer: Box<[UnsafeCell<MaybeUninit<Notified>>]>,
}

// SAFETY: slots are handed between threads by the head/tail protocol
// above; a slot is read by exactly one thread after its write is published
// with `Release` on `tail` (or `head`).
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

/// The owner's end: only the worker that owns the queue holds it.
pub(crate) struct Local {
    inner: Arc<Inner>,
}

/// The stealers' end: cloned into every worker's remote.
pub(crate) struct Steal(Arc<Inner>);

pub(crate) fn local() -> (Steal, Local) {
    let buffer = (0..LOCAL_QUEUE_CAPACITY)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let inner = Arc::new(Inner {
        head: AtomicU64::new(0),
        tail: AtomicU32::new(0),
        buffer,
    });
    (Steal(inner.clone()), Local { inner })
}

fn unpack(n: u64) -> (u32, u32) {
    ((n >> 32) as u32, n as u32)
}

fn pack(steal: u32, real: u32) -> u64 {
    ((steal as u64) << 32) | real as u64
}

impl Inner {
    /// # Safety
    ///
    /// The slot at `pos` is free and owned by the caller (see module doc).
    unsafe fn write(&self, pos: u32, task: Notified) {
        // SAFETY: forwarded contract.
        self.buffer[pos as usize & MASK].with_mut(|p| unsafe { (*p).write(task) });
    }

    /// # Safety
    ///
    /// The slot at `pos` holds a task and the caller claimed it.
    unsafe fn read(&self, pos: u32) -> Notified {
        // SAFETY: forwarded contract.
        self.buffer[pos as usize & MASK].with(|p| unsafe { (*p).assume_init_read() })
    }

    fn len(&self) -> u32 {
        let (_, real) = unpack(self.head.load(Acquire));
        self.tail.load(Acquire).wrapping_sub(real)
    }
}

impl Local {
    pub(crate) fn len(&self) -> usize {
        self.inner.len() as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots (counting those stealers are still copying as taken).
    pub(crate) fn remaining(&self) -> usize {
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        let tail = self.inner.tail.load(Relaxed);
        LOCAL_QUEUE_CAPACITY - tail.wrapping_sub(steal) as usize
    }

    /// Pushes a task at the tail. If the queue is full, half of it moves
    /// to `inject` together with `task`. Returns `true` if it overflowed.
    pub(crate) fn push_back_or_overflow(&mut self, mut task: Notified, inject: &Inject) -> bool {
        let tail = loop {
            let (steal, real) = unpack(self.inner.head.load(Acquire));
            // Only this thread writes `tail`.
            let tail = self.inner.tail.load(Relaxed);
            if tail.wrapping_sub(steal) < LOCAL_QUEUE_CAPACITY as u32 {
                break tail;
            } else if steal != real {
                // A stealer is freeing room right now; do not wait for it.
                inject.push(task);
                return true;
            }
            match self.push_overflow(task, real, tail, inject) {
                Ok(()) => return true,
                // A stealer got in first: there is room now, retry.
                Err(t) => task = t,
            }
        };
        // SAFETY: `tail - steal < CAPACITY`, so the slot is free, and only
        // the owner writes at the tail.
        unsafe { self.inner.write(tail, task) };
        self.inner.tail.store(tail.wrapping_add(1), Release);
        false
    }

    /// Moves the older half of a full queue, plus `task`, to `inject`.
    fn push_overflow(
        &mut self,
        task: Notified,
        head: u32,
        tail: u32,
        inject: &Inject,
    ) -> Result<(), Notified> {
        const HALF: u32 = (LOCAL_QUEUE_CAPACITY / 2) as u32;
        debug_assert_eq!(tail.wrapping_sub(head), LOCAL_QUEUE_CAPACITY as u32);
        let prev = pack(head, head);
        let next = pack(head.wrapping_add(HALF), head.wrapping_add(HALF));
        // Claim the half; fails if a stealer moved the head meanwhile.
        if self
            .inner
            .head
            .compare_exchange(prev, next, Release, Relaxed)
            .is_err()
        {
            return Err(task);
        }
        let inner = &*self.inner;
        let taken = (0..HALF).map(|i| {
            // SAFETY: the CAS above claimed these slots for us.
            unsafe { inner.read(head.wrapping_add(i)) }
        });
        inject.push_batch(taken.chain(std::iter::once(task)));
        Ok(())
    }

    /// Pops the task at the head.
    pub(crate) fn pop(&mut self) -> Option<Notified> {
        let mut head = self.inner.head.load(Acquire);
        let pos = loop {
            let (steal, real) = unpack(head);
            let tail = self.inner.tail.load(Relaxed);
            if real == tail {
                return None;
            }
            let next_real = real.wrapping_add(1);
            // If no stealer is active, `steal` follows `real`.
            let next = if steal == real {
                pack(next_real, next_real)
            } else {
                pack(steal, next_real)
            };
            match self
                .inner
                .head
                .compare_exchange(head, next, AcqRel, Acquire)
            {
                Ok(_) => break real,
                Err(actual) => head = actual,
            }
        };
        // SAFETY: the CAS claimed slot `pos`, which held a task.
        Some(unsafe { self.inner.read(pos) })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Release the references of any task still queued.
        while self.pop().is_some() {}
    }
}

impl Steal {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Tasks in the queue now (a snapshot, for metrics).
    pub(crate) fn len(&self) -> usize {
        (self.0.len() as usize).min(LOCAL_QUEUE_CAPACITY)
    }

    /// Steals half of this queue into `dst` (owned by the caller) and
    /// returns one of the stolen tasks to run now.
    pub(crate) fn steal_into(&self, dst: &mut Local) -> Option<Notified> {
        let dst_tail = dst.inner.tail.load(Relaxed);
        // Steal only if `dst` can take half of a full queue.
        let (dst_steal, _) = unpack(dst.inner.head.load(Acquire));
        if dst_tail.wrapping_sub(dst_steal) > (LOCAL_QUEUE_CAPACITY / 2) as u32 {
            return None;
        }
        let mut n = self.steal_into2(dst, dst_tail);
        if n == 0 {
            return None;
        }
        n -= 1;
        let ret_pos = dst_tail.wrapping_add(n);
        // SAFETY: `steal_into2` wrote `n + 1` tasks from `dst_tail` on; the
        // last one is ours to return and is not yet published.
        let ret = unsafe { dst.inner.read(ret_pos) };
        if n > 0 {
            dst.inner.tail.store(dst_tail.wrapping_add(n), Release);
        }
        Some(ret)
    }

    /// Copies half of `self` into `dst` starting at `dst_tail`; returns how
    /// many.
    fn steal_into2(&self, dst: &mut Local, dst_tail: u32) -> u32 {
        let mut prev = self.0.head.load(Acquire);
        let (n, claimed) = loop {
            let (steal, real) = unpack(prev);
            let tail = self.0.tail.load(Acquire);
            if steal != real {
                // Another stealer is copying.
                return 0;
            }
            let avail = tail.wrapping_sub(real);
            let n = avail - avail / 2;
            if n == 0 {
                return 0;
            }
            // Step 1: move `real` forward, keep `steal` to mark our copy.
            let next = pack(steal, real.wrapping_add(n));
            match self.0.head.compare_exchange(prev, next, AcqRel, Acquire) {
                Ok(_) => break (n, next),
                Err(actual) => prev = actual,
            }
        };
        debug_assert!(n as usize <= LOCAL_QUEUE_CAPACITY / 2);
        let (first, _) = unpack(claimed);
        for i in 0..n {
            // SAFETY: step 1 claimed `first..first + n` in the source, and
            // the owner does not reuse them until `steal` moves on; `dst`
            // has room (checked by the caller) and we own its tail.
            unsafe {
                let task = self.0.read(first.wrapping_add(i));
                dst.inner.write(dst_tail.wrapping_add(i), task);
            }
        }
        // Step 2: let `steal` catch up with `real` (which the owner may have
        // moved meanwhile by popping).
        let mut prev = claimed;
        loop {
            let (_, real) = unpack(prev);
            match self
                .0
                .head
                .compare_exchange(prev, pack(real, real), AcqRel, Acquire)
            {
                Ok(_) => return n,
                Err(actual) => {
                    let (s, r) = unpack(actual);
                    debug_assert_ne!(s, r);
                    prev = actual;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Run under loom with `RUSTFLAGS="--cfg fiber_runtime_loom"` (capacity 4 there, so
    //! overflow and wrap-around are reached); plainly, each runs once.

    use super::*;
    use crate::loom::{model, thread};
    use crate::task_core::test_util::TestSched;
    use std::sync::Arc;

    fn task(sched: &Arc<TestSched>) -> Notified {
        let (t, join) = sched.spawn(async {});
        drop(join);
        t
    }

    /// Drains a stealer's view into a fresh local queue `rounds` times.
    fn steal_rounds(steal: Steal, rounds: usize) -> usize {
        let (_, mut local) = local();
        let mut n = 0;
        for _ in 0..rounds {
            if steal.steal_into(&mut local).is_some() {
                n += 1;
            }
            while local.pop().is_some() {
                n += 1;
            }
        }
        n
    }

    /// Every task pushed is taken exactly once: by the owner's pops, a
    /// concurrent stealer, or the injector.
    #[test]
    fn loom_queue_push_pop_steal() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let (steal, mut local) = local();
            let inject = Inject::new();
            let th = thread::spawn(move || steal_rounds(steal, 2));
            let mut n = 0;
            for _ in 0..2 {
                for _ in 0..2 {
                    local.push_back_or_overflow(task(&sched), &inject);
                }
                if local.pop().is_some() {
                    n += 1;
                }
            }
            while local.pop().is_some() {
                n += 1;
            }
            while inject.pop().is_some() {
                n += 1;
            }
            n += th.join().unwrap();
            assert_eq!(n, 4);
        });
    }

    /// Pushing past capacity moves half the queue to the injector, also
    /// while a stealer is active; nothing is lost or duplicated.
    #[test]
    fn loom_queue_overflow_to_inject() {
        const NUM: usize = LOCAL_QUEUE_CAPACITY + 2;
        model(|| {
            let sched = Arc::new(TestSched::default());
            let (steal, mut local) = local();
            let inject = Inject::new();
            let th = thread::spawn(move || steal_rounds(steal, 1));
            for _ in 0..NUM {
                local.push_back_or_overflow(task(&sched), &inject);
            }
            let mut n = 0;
            while local.pop().is_some() {
                n += 1;
            }
            while inject.pop().is_some() {
                n += 1;
            }
            n += th.join().unwrap();
            assert_eq!(n, NUM);
        });
    }

    /// Two stealers racing on one queue never take the same task.
    #[test]
    fn loom_queue_two_stealers() {
        model(|| {
            let sched = Arc::new(TestSched::default());
            let (steal, mut local) = local();
            let inject = Inject::new();
            for _ in 0..4 {
                local.push_back_or_overflow(task(&sched), &inject);
            }
            let steal2 = Steal(steal.0.clone());
            let th1 = thread::spawn(move || steal_rounds(steal, 1));
            let th2 = thread::spawn(move || steal_rounds(steal2, 1));
            let mut n = 0;
            while local.pop().is_some() {
                n += 1;
            }
            n += th1.join().unwrap() + th2.join().unwrap();
            assert_eq!(n + inject.len(), 4);
            assert_eq!(inject.len(), 0);
        });
    }
}
