//! `WakeList`: wakers collected under a lock, to wake once it is dropped
//! (a waker may run user code, which must not run under the lock). The
//! first 32 are held inline, so the usual few allocate nothing; more spill
//! to a `Vec`. A user may also wake a full batch, retake its lock and go
//! on (as tokio's `util/wake_list.rs`), where its protocol allows.

use std::task::Waker;

/// Wakers in a batch.
const CAPACITY: usize = 32;

pub(crate) struct WakeList {
    wakers: [Option<Waker>; CAPACITY],
    /// `wakers[..len]` are `Some`, the rest `None`.
    len: usize,
    /// Past `CAPACITY`.
    spilled: Vec<Waker>,
}

impl WakeList {
    pub(crate) fn new() -> WakeList {
        WakeList {
            wakers: [const { None }; CAPACITY],
            len: 0,
            spilled: Vec::new(),
        }
    }

    /// Whether the inline batch is full (a further `push` allocates).
    pub(crate) fn is_full(&self) -> bool {
        self.len == CAPACITY
    }

    /// Adds `waker`.
    pub(crate) fn push(&mut self, waker: Waker) {
        if self.is_full() {
            self.spilled.push(waker);
        } else {
            self.wakers[self.len] = Some(waker);
            self.len += 1;
        }
    }

    /// Wakes every waker, in the order they were pushed, and empties the
    /// list.
    pub(crate) fn wake_all(&mut self) {
        let len = std::mem::take(&mut self.len);
        // A panicking wake leaves the rest to be dropped with the list.
        self.wakers[..len]
            .iter_mut()
            .filter_map(Option::take)
            .for_each(Waker::wake);
        self.spilled.drain(..).for_each(Waker::wake);
    }
}

impl std::fmt::Debug for WakeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeList").field("len", &self.len).finish()
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn a_batch_wakes_each_waker_once_and_can_be_refilled() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut list = WakeList::new();
        for round in 1..=2 {
            while !list.is_full() {
                list.push(Waker::from(count.clone()));
            }
            list.wake_all();
            assert_eq!(count.0.load(SeqCst), round * CAPACITY);
            assert!(!list.is_full());
        }
        // Past the inline batch: spilled, and woken too.
        for _ in 0..CAPACITY + 5 {
            list.push(Waker::from(count.clone()));
        }
        list.wake_all();
        assert_eq!(count.0.load(SeqCst), 3 * CAPACITY + 5);
        // Dropped unwoken: the wakers are released.
        list.push(Waker::from(count.clone()));
        drop(list);
        assert_eq!(count.0.load(SeqCst), 3 * CAPACITY + 5);
        assert_eq!(Arc::strong_count(&count), 1);
    }
}
