//! The buffer of a bounded channel: a fixed ring of slots, written by any
//! number of senders and read by the one receiver without a lock (the
//! bounded queue of Dmitry Vyukov, with the channel's slot semaphore in
//! place of the full check).
//!
//! Each slot has a sequence number: `pos` when it is free for the value
//! of position `pos`, `pos + 1` once that value is written, `pos + len`
//! once it was read (free for the next lap). A sender claims a position
//! with one `fetch_add` on `tail`; the receiver alone moves `head`.
//!
//! # Why a claimed slot is free
//!
//! A sender pushes only while it holds a slot permit of the channel's
//! semaphore, and the receiver gives a permit back only after it marked
//! its slot free. Permits held by senders plus values not yet read never
//! exceed the capacity (at most `len`), so when a sender claims `pos`, the
//! value at `pos - len` was already read; the receiver reads in order, and
//! its release of the permit happens after it freed that slot, so the
//! sender sees the slot free (the semaphore's atomics order the two). The
//! sender still checks, and waits if it is not (it cannot happen, but the
//! check is one load).

use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};
use crate::util::CachePadded;
use std::mem::MaybeUninit;

struct Slot<T> {
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

pub(super) struct Ring<T> {
    slots: Box<[Slot<T>]>,
    mask: usize,
    /// The next position a sender claims.
    tail: CachePadded<AtomicUsize>,
    /// The next position to read; only the receiver touches it.
    head: CachePadded<UnsafeCell<usize>>,
}

// SAFETY: values move from senders to the receiver (`T: Send`; `Send`,
// derived, has the same bound); each slot is owned in turn by the sender
// that claimed it and the receiver, as `seq` says, and `head` is the
// receiver's alone (`pop`'s contract).
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// A ring of at least `capacity` slots.
    pub(super) fn new(capacity: usize) -> Ring<T> {
        let len = capacity.next_power_of_two();
        Ring {
            slots: (0..len)
                .map(|i| Slot {
                    seq: AtomicUsize::new(i),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            mask: len - 1,
            tail: CachePadded::new(AtomicUsize::new(0)),
            head: CachePadded::new(UnsafeCell::new(0)),
        }
    }

    /// Writes `value` at the next position.
    ///
    /// The caller holds a slot permit of the channel (module doc).
    pub(super) fn push(&self, value: T) {
        let pos = self.tail.fetch_add(1, Relaxed);
        let slot = &self.slots[pos & self.mask];
        let mut spins = 0u32;
        while slot.seq.load(Acquire) != pos {
            // Not reachable by the permit argument; wait rather than
            // overwrite if it ever is.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                crate::loom::thread::yield_now();
            }
        }
        // SAFETY: `seq == pos`: the slot is free and ours (we claimed
        // `pos`); nobody reads it until we publish `pos + 1`.
        slot.value.with_mut(|v| unsafe { (*v).write(value) });
        slot.seq.store(pos.wrapping_add(1), Release);
    }

    /// Takes the value at the head, if it was written.
    ///
    /// # Safety
    ///
    /// Only the receiver calls this (one thread at a time).
    pub(super) unsafe fn pop(&self) -> Option<T> {
        // SAFETY: the receiver's alone (the caller's contract).
        let head = self.head.with(|h| unsafe { *h });
        let slot = &self.slots[head & self.mask];
        if slot.seq.load(Acquire) != head.wrapping_add(1) {
            return None;
        }
        // SAFETY: `seq == head + 1`: written, and ours to read until we
        // publish it free.
        let v = slot.value.with(|v| unsafe { (*v).assume_init_read() });
        slot.seq.store(head.wrapping_add(self.mask + 1), Release);
        // SAFETY: as above.
        self.head.with_mut(|h| unsafe { *h = head.wrapping_add(1) });
        Some(v)
    }

    /// Values written or being written, not yet read (a snapshot).
    ///
    /// # Safety
    ///
    /// Only the receiver calls this (it reads `head`).
    pub(super) unsafe fn len(&self) -> usize {
        // SAFETY: the receiver's (the caller's contract).
        let head = self.head.with(|h| unsafe { *h });
        self.tail.load(Acquire).wrapping_sub(head)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Exclusive: drop every written, unread value.
        // SAFETY: `&mut self`: no sender or receiver is left.
        while let Some(v) = unsafe { self.pop() } {
            drop(v);
        }
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn values_come_out_in_order_over_many_laps_and_the_rest_is_dropped() {
        let ring = Ring::new(3);
        for lap in 0..10u32 {
            for i in 0..3 {
                ring.push(lap * 3 + i);
            }
            // SAFETY: one thread.
            assert_eq!(unsafe { ring.len() }, 3);
            for i in 0..3 {
                // SAFETY: one thread.
                assert_eq!(unsafe { ring.pop() }, Some(lap * 3 + i));
            }
            // SAFETY: one thread.
            assert_eq!(unsafe { ring.pop() }, None);
        }
        let drops = std::sync::Arc::new(());
        let ring = Ring::new(4);
        ring.push(drops.clone());
        ring.push(drops.clone());
        drop(ring);
        assert_eq!(std::sync::Arc::strong_count(&drops), 1);
    }
}
