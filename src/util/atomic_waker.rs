//! `AtomicWaker`: one waker slot that one task registers into and any
//! thread wakes, without a lock (tokio's and futures' `AtomicWaker`, whose
//! protocol this follows).
//!
//! `state` says who owns the slot: `WAITING` (nobody: the registrar may
//! take it), `REGISTERING` (the registrar is writing it), `WAKING` (a
//! waker is taking it). A wake that finds the registrar writing sets
//! `WAKING` and leaves; the registrar, finishing, sees the bit and wakes
//! the new waker itself. So a wake is never lost, and the slot is never
//! touched by two threads at once.

use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};
use std::task::Waker;

const WAITING: usize = 0;
const REGISTERING: usize = 1;
const WAKING: usize = 2;

pub(crate) struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the slot is touched only by whoever owns it by `state`, so
// never from two threads at once (`Send` is derived).
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    pub(crate) fn new() -> AtomicWaker {
        AtomicWaker {
            state: AtomicUsize::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` to be woken by the next `wake`. Called by one task
    /// at a time (the owner of the resource's receiving end).
    pub(crate) fn register(&self, waker: &Waker) {
        match self
            .state
            .compare_exchange(WAITING, REGISTERING, Acquire, Acquire)
        {
            Ok(_) => {
                // SAFETY: `REGISTERING` is ours: no waker takes the slot.
                self.waker.with_mut(|w| unsafe {
                    match &*w {
                        Some(old) if old.will_wake(waker) => {}
                        _ => *w = Some(waker.clone()),
                    }
                });
                if let Err(actual) =
                    self.state
                        .compare_exchange(REGISTERING, WAITING, AcqRel, Acquire)
                {
                    // A wake came while we wrote: it left the slot to us.
                    debug_assert_eq!(actual, REGISTERING | WAKING);
                    // SAFETY: still ours (the waker saw `REGISTERING`).
                    let w = self.waker.with_mut(|w| unsafe { (*w).take() });
                    self.state.swap(WAITING, AcqRel);
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            }
            // A wake is taking the old waker now: be polled again.
            Err(WAKING) => waker.wake_by_ref(),
            Err(state) => {
                debug_assert!(false, "concurrent `register` ({state})");
            }
        }
    }

    /// Wakes the registered waker, if any.
    pub(crate) fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    /// Takes the registered waker, if any.
    pub(crate) fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, AcqRel) {
            WAITING => {
                // SAFETY: `WAKING` from `WAITING` is ours.
                let w = self.waker.with_mut(|w| unsafe { (*w).take() });
                self.state.fetch_and(!WAKING, Release);
                w
            }
            // Registering (it will see `WAKING`) or another wake owns it.
            _ => None,
        }
    }
}

impl std::fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtomicWaker")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::{Arc, AtomicBool, model, thread};
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicUsize);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A wake racing a registration, with the event published before the
    /// wake: either the registrar sees the event after registering, or it
    /// is woken.
    #[test]
    fn loom_wake_racing_register_is_not_lost() {
        model(|| {
            let aw = Arc::new(AtomicWaker::new());
            let event = Arc::new(AtomicBool::new(false));
            let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicUsize::new(0)));
            let waker = Waker::from(flag.clone());
            let t = {
                let (aw, event) = (aw.clone(), event.clone());
                thread::spawn(move || {
                    event.store(true, SeqCst);
                    aw.wake();
                })
            };
            aw.register(&waker);
            let seen = event.load(SeqCst);
            t.join().unwrap();
            if !seen {
                assert_eq!(
                    flag.0.load(std::sync::atomic::Ordering::SeqCst),
                    1,
                    "lost wake"
                );
            }
        });
    }
}
