//! The memory of one task: `Cell = Header | scheduler | Stage | Trailer`,
//! one allocation, `#[repr(C)]` so that a `NonNull<Header>` (the first
//! field) can be cast back to the `Cell` by the typed functions behind the
//! vtable (`harness.rs` relies on this: keep the header first).
//!
//! The header is 16 bytes (state word, slot word, vtable) and the stage is
//! an untagged union whose tag lives in the slot word, so a task costs the
//! future plus 56 bytes on 64-bit targets (72 bytes for a 16-byte future:
//! an 80-byte malloc chunk). Of those, 16 are the id and the spawn-info
//! word (name and spawn location, [`SpawnInfo`]) in the trailer, which no
//! poll reads: only `JoinHandle::id`, `task::id()`, `Debug` and the
//! long-poll report do.

use super::Schedule;
use super::error::JoinError;
use super::harness;
use super::id::Id;
use super::state::State;
use crate::loom::{AtomicU32, Ordering::Relaxed, UnsafeCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

/// The type-erased part every task starts with.
#[repr(C)]
pub(crate) struct Header {
    /// Lifecycle flags and reference count (`state.rs`).
    pub(crate) state: State,
    /// Bits 0..2: which field of the stage union is live (`STAGE_*`);
    /// written only by the thread that owns the stage (`task/mod.rs`,
    /// rules 1 and 3). Bits 2..32: the task's slot in the owned-task list
    /// (`list.rs`), written once before the task is shared.
    slot: AtomicU32,
    /// The typed functions of this task (`harness.rs`).
    pub(crate) vtable: &'static Vtable,
}

const STAGE_MASK: u32 = 0b11;
/// The union holds the future.
const STAGE_RUNNING: u32 = 0;
/// The union holds the output.
const STAGE_FINISHED: u32 = 1;
/// The union holds nothing.
const STAGE_CONSUMED: u32 = 2;
const SLOT_SHIFT: u32 = 2;
/// "Not in an owned list."
pub(crate) const NO_SLOT: u32 = u32::MAX >> SLOT_SHIFT;

/// The operations that need the concrete future and scheduler types.
pub(crate) struct Vtable {
    /// Polls the task; consumes the caller's `Notified` reference.
    pub(crate) poll: unsafe fn(NonNull<Header>),
    /// Submits the task to its scheduler; consumes one reference.
    pub(crate) schedule: unsafe fn(NonNull<Header>),
    /// Frees the allocation; the caller held the last reference.
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// Moves the output into `*dst` (a `Poll<Result<T, JoinError>>`) if
    /// complete, else registers the waker.
    pub(crate) try_read_output: unsafe fn(NonNull<Header>, NonNull<()>, &Waker),
    /// Drops the `JoinHandle`'s interest and reference.
    pub(crate) drop_join_handle_slow: unsafe fn(NonNull<Header>),
    /// Cancels the task if idle; consumes one reference.
    pub(crate) shutdown: unsafe fn(NonNull<Header>),
    /// Polls a task that yielded still holding `RUNNING` (a [`Yielded`]
    /// entry); consumes the entry's reference and `RUNNING`.
    ///
    /// [`Yielded`]: super::Yielded
    pub(crate) resume_yielded: unsafe fn(NonNull<Header>),
    /// Cancels a task held by a dropped [`Yielded`] entry; consumes its
    /// reference and `RUNNING`.
    ///
    /// [`Yielded`]: super::Yielded
    pub(crate) cancel_yielded: unsafe fn(NonNull<Header>),
    /// The task's trailer (its place depends on the future's size).
    pub(crate) trailer: unsafe fn(NonNull<Header>) -> NonNull<Trailer>,
}

/// The future, later its output; which one is live is the header's stage
/// tag. No tag byte here: for small futures that saves a word.
pub(crate) union Stage<F: Future> {
    future: ManuallyDrop<F>,
    output: ManuallyDrop<Result<F::Output, JoinError>>,
}

/// The join waker and the task's identity, after the stage so that the
/// hot header stays small.
pub(crate) struct Trailer {
    /// Written by the `JoinHandle` while `JOIN_WAKER` is clear; read by the
    /// completing thread while it is set (`task/mod.rs`, rule 4).
    pub(crate) waker: UnsafeCell<Option<Waker>>,
    /// The task's id (`id.rs`), fixed at allocation.
    pub(crate) id: Id,
    /// Its name, if it was given one (`task::Builder`), and where it was
    /// spawned: one word.
    meta: SpawnInfo,
}

impl Trailer {
    /// The task's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.meta.name()
    }

    /// Where the task was spawned (the user's spawn call).
    pub(crate) fn location(&self) -> &'static Location<'static> {
        self.meta.location()
    }
}

/// A task's name and spawn location in one word: for an unnamed task (the
/// common case) the `&'static Location` itself; for a named one, a box
/// holding both, marked by the low bit (both pointers are aligned to at
/// least 4 bytes, so the bit is free).
pub(crate) struct SpawnInfo(NonNull<u8>);

/// The box of a named task's [`SpawnInfo`].
struct Named {
    name: String,
    location: &'static Location<'static>,
}

/// The low bit of a [`SpawnInfo`]: it points to a [`Named`] box.
const NAMED: usize = 1;
const _: () = assert!(std::mem::align_of::<Location<'static>>() > NAMED);
const _: () = assert!(std::mem::align_of::<Named>() > NAMED);

// SAFETY: a `SpawnInfo` is either a shared reference to a `Location`
// (`Sync`) or an owned box of a `Named` (a `String` and such a reference:
// `Send + Sync`), never mutated after construction.
unsafe impl Send for SpawnInfo {}
// SAFETY: as above: only read through `&self`.
unsafe impl Sync for SpawnInfo {}

impl SpawnInfo {
    pub(crate) fn new(name: Option<String>, location: &'static Location<'static>) -> SpawnInfo {
        match name {
            None => SpawnInfo(NonNull::from(location).cast()),
            Some(name) => {
                let named = NonNull::from(Box::leak(Box::new(Named { name, location })));
                SpawnInfo(named.cast::<u8>().map_addr(|a| a | NAMED))
            }
        }
    }

    /// The `Named` box, if the word is tagged.
    fn named_ptr(&self) -> Option<NonNull<Named>> {
        if self.0.addr().get() & NAMED == 0 {
            return None;
        }
        // Clearing the tag of an aligned, non-null address leaves it
        // non-null.
        let ptr = self.0.map_addr(|a| {
            std::num::NonZeroUsize::new(a.get() & !NAMED).expect("a tagged address is non-null")
        });
        Some(ptr.cast::<Named>())
    }

    fn named(&self) -> Option<&Named> {
        // SAFETY: a tagged word is the `Named` box made in `new`, owned by
        // `self` and freed only by its `Drop`.
        self.named_ptr().map(|p| unsafe { p.as_ref() })
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.named().map(|n| n.name.as_str())
    }

    pub(crate) fn location(&self) -> &'static Location<'static> {
        match self.named() {
            Some(n) => n.location,
            // SAFETY: untagged: the pointer is the `&'static Location`
            // given to `new`.
            None => unsafe { self.0.cast::<Location<'static>>().as_ref() },
        }
    }
}

impl Drop for SpawnInfo {
    fn drop(&mut self) {
        if let Some(ptr) = self.named_ptr() {
            // SAFETY: the box made in `new`, which nothing else owns; not
            // used again.
            drop(unsafe { Box::from_raw(ptr.as_ptr()) });
        }
    }
}

/// Layout of a task: header first (see the module doc).
#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    pub(crate) header: Header,
    pub(crate) scheduler: S,
    /// Owned by whoever holds `RUNNING`, or by the `JoinHandle` once
    /// `COMPLETE` is set and `JOIN_INTEREST` too (`task/mod.rs`).
    stage: UnsafeCell<Stage<F>>,
    pub(crate) trailer: Trailer,
}

impl Header {
    /// The task's owned-list slot, or `NO_SLOT`.
    pub(crate) fn owned_slot(&self) -> u32 {
        self.slot.load(Relaxed) >> SLOT_SHIFT
    }

    /// Records the owned-list slot. Called once, before the task is
    /// shared with any other thread (by the spawner, under the list lock).
    pub(crate) fn set_owned_slot(&self, slot: u32) {
        debug_assert!(slot < NO_SLOT);
        let tag = self.slot.load(Relaxed) & STAGE_MASK;
        self.slot.store((slot << SLOT_SHIFT) | tag, Relaxed);
    }

    fn stage_tag(&self) -> u32 {
        self.slot.load(Relaxed) & STAGE_MASK
    }

    /// Only the stage owner calls this; the slot bits never change after
    /// the task is shared, so a plain store cannot lose an update.
    fn set_stage_tag(&self, tag: u32) {
        let slot = self.slot.load(Relaxed) & !STAGE_MASK;
        self.slot.store(slot | tag, Relaxed);
    }
}

impl<F: Future, S: Schedule> Cell<F, S> {
    /// Allocates a task in its initial state (`state.rs`, `INITIAL_STATE`).
    pub(crate) fn allocate(future: F, scheduler: S, id: Id, meta: SpawnInfo) -> NonNull<Header> {
        let cell = Box::new(Cell {
            header: Header {
                state: State::new(),
                slot: AtomicU32::new((NO_SLOT << SLOT_SHIFT) | STAGE_RUNNING),
                vtable: harness::vtable::<F, S>(),
            },
            scheduler,
            stage: UnsafeCell::new(Stage {
                future: ManuallyDrop::new(future),
            }),
            trailer: Trailer {
                waker: UnsafeCell::new(None),
                id,
                meta,
            },
        });
        NonNull::from(Box::leak(cell)).cast()
    }
}

impl<F: Future, S> Cell<F, S> {
    /// Polls the future.
    ///
    /// # Safety
    ///
    /// The caller owns the stage (holds `RUNNING`) and the future is live.
    pub(crate) unsafe fn poll_future(&self, cx: &mut Context<'_>) -> Poll<F::Output> {
        debug_assert_eq!(self.header.stage_tag(), STAGE_RUNNING);
        self.stage.with_mut(|stage| {
            // SAFETY: the caller owns the stage and the tag says the future
            // is live; the future is never moved (it is dropped in place),
            // so pinning it is sound.
            unsafe { Pin::new_unchecked(&mut *(*stage).future) }.poll(cx)
        })
    }

    /// Drops whatever the stage holds and marks it consumed.
    ///
    /// # Safety
    ///
    /// The caller owns the stage.
    pub(crate) unsafe fn drop_future_or_output(&self) {
        let tag = self.header.stage_tag();
        // Marked first: if a destructor panics, nothing is dropped twice.
        self.header.set_stage_tag(STAGE_CONSUMED);
        self.stage.with_mut(|stage| match tag {
            // SAFETY: the tag said the future is live; the caller owns it.
            STAGE_RUNNING => unsafe { ManuallyDrop::drop(&mut (*stage).future) },
            // SAFETY: the tag said the output is live; the caller owns it.
            STAGE_FINISHED => unsafe { ManuallyDrop::drop(&mut (*stage).output) },
            _ => {}
        });
    }

    /// Stores the output in an emptied stage.
    ///
    /// # Safety
    ///
    /// The caller owns the stage, which is consumed.
    pub(crate) unsafe fn store_output(&self, output: Result<F::Output, JoinError>) {
        debug_assert_eq!(self.header.stage_tag(), STAGE_CONSUMED);
        self.stage.with_mut(|stage| {
            // SAFETY: the caller owns the stage and nothing live is
            // overwritten (it is consumed).
            unsafe { (*stage).output = ManuallyDrop::new(output) }
        });
        self.header.set_stage_tag(STAGE_FINISHED);
    }

    /// Moves the output out, leaving the stage consumed. `None` if it was
    /// already taken.
    ///
    /// # Safety
    ///
    /// The caller owns the stage and the future is no longer live.
    pub(crate) unsafe fn take_output(&self) -> Option<Result<F::Output, JoinError>> {
        if self.header.stage_tag() != STAGE_FINISHED {
            return None;
        }
        self.header.set_stage_tag(STAGE_CONSUMED);
        // SAFETY: the tag said the output is live; we now own it and the
        // tag no longer claims it.
        Some(
            self.stage
                .with_mut(|stage| unsafe { ManuallyDrop::take(&mut (*stage).output) }),
        )
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;
    use std::mem::size_of;

    struct NoSchedule(#[allow(dead_code)] std::sync::Arc<()>);
    impl Schedule for NoSchedule {
        fn schedule(&self, _task: super::super::Notified) {
            unreachable!()
        }
        fn release(&self, _task: super::super::RawTask) -> bool {
            false
        }
    }

    #[test]
    fn header_is_two_words() {
        assert_eq!(size_of::<Header>(), 2 * size_of::<usize>());
    }

    #[test]
    fn overhead_beyond_the_future_is_at_most_64_bytes() {
        // A future of 64 bytes whose output is no larger.
        struct Big(#[allow(dead_code)] [u64; 8]);
        impl Future for Big {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                Poll::Ready(())
            }
        }
        let overhead = size_of::<Cell<Big, NoSchedule>>() - size_of::<Big>();
        assert!(overhead <= 64, "overhead is {overhead} bytes");
        assert_eq!(overhead, 56);
    }

    #[test]
    fn a_task_with_a_16_byte_future_fits_in_72_bytes() {
        struct Tiny(
            #[allow(dead_code)] std::sync::Arc<()>,
            #[allow(dead_code)] u64,
        );
        impl Future for Tiny {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                Poll::Pending
            }
        }
        assert_eq!(size_of::<Tiny>(), 16);
        // 72 bytes: an 80-byte chunk in glibc's malloc.
        assert_eq!(size_of::<Cell<Tiny, NoSchedule>>(), 72);
    }
}
