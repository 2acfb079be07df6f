//! The memory of one task: `Cell = Header | scheduler | Stage | Trailer`,
//! one allocation, `#[repr(C)]` so that a `NonNull<Header>` (the first
//! field) can be cast back to the `Cell` by the typed functions behind the
//! vtable (`harness.rs` relies on this: keep the header first).

use super::Schedule;
use super::error::JoinError;
use super::harness;
use super::state::State;
use crate::loom::UnsafeCell;
use std::future::Future;
use std::ptr::NonNull;
use std::task::Waker;

/// The type-erased part every task starts with.
#[repr(C)]
pub(crate) struct Header {
    /// Lifecycle flags and reference count (`state.rs`).
    pub(crate) state: State,
    /// The typed functions of this task (`harness.rs`).
    pub(crate) vtable: &'static Vtable,
    /// Links in the owned-task list (`list.rs`); touched only under the
    /// lock of the list shard the task hashes to.
    pub(crate) owned_prev: UnsafeCell<Option<NonNull<Header>>>,
    pub(crate) owned_next: UnsafeCell<Option<NonNull<Header>>>,
}

// SAFETY: the header is shared between threads through raw pointers; its
// fields are an atomic and cells guarded by the owned-list lock.
unsafe impl Send for Header {}
// SAFETY: as above.
unsafe impl Sync for Header {}

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
}

/// What the future slot holds over the task's life.
pub(crate) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

/// The join waker, after the stage so that the hot header stays small.
pub(crate) struct Trailer {
    /// Written by the `JoinHandle` while `JOIN_WAKER` is clear; read by the
    /// completing thread while it is set (`task/mod.rs`, rule 4).
    pub(crate) waker: UnsafeCell<Option<Waker>>,
}

/// Layout of a task: header first (see the module doc).
#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    pub(crate) header: Header,
    pub(crate) scheduler: S,
    /// Owned by whoever holds `RUNNING`, or by the `JoinHandle` once
    /// `COMPLETE` is set and `JOIN_INTEREST` too (`task/mod.rs`).
    pub(crate) stage: UnsafeCell<Stage<F>>,
    pub(crate) trailer: Trailer,
}

impl<F: Future, S: Schedule> Cell<F, S> {
    /// Allocates a task in its initial state (`state.rs`, `INITIAL_STATE`).
    pub(crate) fn allocate(future: F, scheduler: S, shard: u16) -> NonNull<Header> {
        let cell = Box::new(Cell {
            header: Header {
                state: State::new(shard),
                vtable: harness::vtable::<F, S>(),
                owned_prev: UnsafeCell::new(None),
                owned_next: UnsafeCell::new(None),
            },
            scheduler,
            stage: UnsafeCell::new(Stage::Running(future)),
            trailer: Trailer {
                waker: UnsafeCell::new(None),
            },
        });
        NonNull::from(Box::leak(cell)).cast()
    }
}

#[cfg(all(test, not(loom)))]
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
    fn header_is_four_words() {
        assert_eq!(size_of::<Header>(), 4 * size_of::<usize>());
    }

    #[test]
    fn overhead_beyond_the_future_is_at_most_64_bytes() {
        // A future of 64 bytes whose output is no larger.
        struct Big(#[allow(dead_code)] [u64; 8]);
        impl Future for Big {
            type Output = ();
            fn poll(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<()> {
                std::task::Poll::Ready(())
            }
        }
        let overhead = size_of::<Cell<Big, NoSchedule>>() - size_of::<Big>();
        assert!(overhead <= 64, "overhead is {overhead} bytes");
    }
}
