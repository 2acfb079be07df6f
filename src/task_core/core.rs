//! The memory of one task: `Cell = Header | scheduler | Stage | Trailer`,
//! one allocation, `#[repr(C)]` so that a `NonNull<Header>` (the first
//! field) can be cast back to the `Cell` by the typed functions behind the
//! vtable (`harness.rs` relies on this: keep the header first).
//!
//! The header is 24 bytes (state word, slot word, vtable, poll count,
//! spawn stamp) and the stage is an untagged union whose tag lives in the
//! slot word, so a task costs the future (or its output, if larger) plus
//! 64 bytes on 64-bit targets: 80 bytes for a 16-byte future, 72 for a
//! small one with no output (an 80-byte malloc chunk). Of those, 16 are the id and the
//! spawn-site word (location, and name if any) in the trailer, which no
//! poll reads: only `JoinHandle::id`, `task::id()`, `Debug` and dumps do.
//! The poll count and spawn stamp (8 bytes) are what `Handle::dump`
//! reports as a task's polls and age; the poll count sits in the header,
//! which every poll touches anyway.

use super::Schedule;
use super::error::JoinError;
use super::harness;
use super::id::Id;
use super::instrument::SpawnMeta;
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
    /// Polls so far (wrapping). Written only by the thread holding
    /// `RUNNING`, with a plain load and store (no read-modify-write: the
    /// state transitions that pass `RUNNING` on order successive
    /// pollers); read by dumps from any thread.
    polls: AtomicU32,
    /// When the task was spawned: `util::clock::stamp()`. Fixed at
    /// allocation.
    spawned: u32,
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
    /// The worker the task is pinned to, if its scheduler pins it
    /// ([`Schedule::owner`](super::Schedule::owner)).
    pub(crate) owner: unsafe fn(NonNull<Header>) -> Option<usize>,
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
    /// Where it was spawned, and its name if it was given one.
    site: Site,
}

impl Trailer {
    /// The task's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.site.name()
    }

    /// Where the task was spawned (the caller of the public spawn call).
    pub(crate) fn location(&self) -> &'static Location<'static> {
        self.site.location()
    }
}

/// A task's spawn location and, if it has one, its name, in one word: a
/// `&'static Location` (low bit clear) for an unnamed task, or a
/// `Box<Named>` with the low bit set for a named one, so that unnamed
/// tasks pay one word for both and named ones one allocation, as the
/// name alone took before. Immutable once made.
struct Site(NonNull<()>);

/// The boxed part of a named task's [`Site`].
struct Named {
    name: String,
    location: &'static Location<'static>,
}

/// The tag of a boxed [`Named`].
const NAMED: usize = 1;

impl Site {
    fn new(name: Option<String>, location: &'static Location<'static>) -> Site {
        let p: *mut () = match name {
            None => (location as *const Location<'static>).cast_mut().cast(),
            Some(name) => {
                let named = Box::into_raw(Box::new(Named { name, location }));
                named.map_addr(|a| a | NAMED).cast()
            }
        };
        debug_assert!(
            std::mem::align_of::<Location<'static>>() > NAMED
                && std::mem::align_of::<Named>() > NAMED,
            "the tag bit is free in both pointers"
        );
        // Never null: made from a reference or a box (tagged or not).
        Site(NonNull::new(p).expect("a reference or a box is never null"))
    }

    fn named(&self) -> Option<&Named> {
        let p = self.0.as_ptr();
        if p.addr() & NAMED == 0 {
            return None;
        }
        // SAFETY: tagged: the box made in `new` (untagged here), alive
        // until this `Site` drops, and never written after.
        Some(unsafe { &*p.map_addr(|a| a & !NAMED).cast::<Named>() })
    }

    fn name(&self) -> Option<&str> {
        self.named().map(|n| n.name.as_str())
    }

    fn location(&self) -> &'static Location<'static> {
        match self.named() {
            Some(n) => n.location,
            // SAFETY: untagged: the `&'static Location` made in `new`.
            None => unsafe { &*self.0.as_ptr().cast::<Location<'static>>() },
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let p = self.0.as_ptr();
        if p.addr() & NAMED != 0 {
            // SAFETY: tagged: the box made in `new`, dropped only here.
            drop(unsafe { Box::from_raw(p.map_addr(|a| a & !NAMED).cast::<Named>()) });
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

    /// The number of polls so far (wrapping at 2^32).
    pub(crate) fn polls(&self) -> u32 {
        self.polls.load(Relaxed)
    }

    /// Counts a poll. Only the thread holding `RUNNING` calls this.
    #[inline]
    pub(crate) fn count_poll(&self) {
        self.polls
            .store(self.polls.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// The spawn stamp (`util::clock::stamp`).
    pub(crate) fn spawned(&self) -> u32 {
        self.spawned
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
    pub(crate) fn allocate(future: F, scheduler: S, id: Id, meta: SpawnMeta) -> NonNull<Header> {
        let cell = Box::new(Cell {
            header: Header {
                state: State::new(),
                slot: AtomicU32::new((NO_SLOT << SLOT_SHIFT) | STAGE_RUNNING),
                vtable: harness::vtable::<F, S>(),
                polls: AtomicU32::new(0),
                spawned: crate::util::clock::stamp(),
            },
            scheduler,
            stage: UnsafeCell::new(Stage {
                future: ManuallyDrop::new(future),
            }),
            trailer: Trailer {
                waker: UnsafeCell::new(None),
                id,
                site: Site::new(meta.name, meta.location),
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
    fn header_is_three_words() {
        assert_eq!(size_of::<Header>(), 3 * size_of::<usize>());
    }

    #[test]
    fn the_spawn_site_is_one_word_and_keeps_name_and_location() {
        assert_eq!(size_of::<Site>(), size_of::<usize>());
        let here = Location::caller();
        let unnamed = Site::new(None, here);
        assert_eq!(unnamed.name(), None);
        assert!(std::ptr::eq(unnamed.location(), here));
        let named = Site::new(Some("worker".into()), here);
        assert_eq!(named.name(), Some("worker"));
        assert!(std::ptr::eq(named.location(), here));
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
        assert_eq!(overhead, 64);
    }

    #[test]
    fn a_task_with_a_16_byte_future_fits_in_80_bytes() {
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
        assert_eq!(size_of::<Cell<Tiny, NoSchedule>>(), 80);
    }

    #[test]
    fn a_small_task_with_no_output_fits_in_72_bytes() {
        // The stage is one word: `Result<(), JoinError>` is (`error.rs`).
        // 72 bytes: an 80-byte chunk in glibc's malloc.
        assert_eq!(size_of::<Cell<std::future::Pending<()>, NoSchedule>>(), 72);
    }
}
