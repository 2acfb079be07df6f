//! Stackless task memory, and what every task has: its `JoinHandle`,
//! id, cooperative budget and task-local scopes. (The public face is the
//! `task` module of the crate root, with the task groups on top.)
//
// A task is one heap allocation (`core.rs`): a [`Header`](core::Header)
// (state word, stage tag and owned-list slot, vtable), the scheduler
// handle, the *stage* (the future, later its output) and the *trailer*
// (the join waker, id, spawn location and name). The state word (`state.rs`) holds lifecycle flags and a
// reference count.
//
// # Reference kinds
//
// Each of these holds one count in the state word:
//
// 1. the owned-task list (`list.rs`), from spawn until the task completes
//    or shutdown pops it;
// 2. the [`JoinHandle`], until dropped;
// 3. a [`Notified`]: an entry in a run queue, from submission until a
//    worker polls it (polling consumes it) or a queue is drained;
// 4. each `Waker` clone;
// 5. a [`Yielded`]: the entry of a task that yielded still holding
//    `RUNNING` (it holds both until run or dropped);
// 6. a dump's `list::TaskRef`, taken from the owned list while the
//    list's reference keeps the task alive (`list.rs`, "Snapshots").
//
// The allocation is freed by whoever drops the last count.
//
// # Who may touch what
//
// 1. The stage is touched only by the thread holding `RUNNING` (poll,
//    cancel, store output) — except as in rule 3.
// 2. `RUNNING` is taken by `transition_to_running` (a worker with a
//    `Notified`) or `transition_to_shutdown`, never by two threads. A
//    poller may hand it, with its reference, to a `Yielded` entry, and
//    whoever runs or drops that entry holds it next.
// 3. Once `COMPLETE` is set, the output belongs to the `JoinHandle` while
//    `JOIN_INTEREST` is set; if `JOIN_INTEREST` is cleared first, the
//    completing thread drops it; if `COMPLETE` comes first, the dropping
//    `JoinHandle` does.
// 4. The join waker is written by the `JoinHandle` only while
//    `JOIN_WAKER` is clear; the completing thread reads it only after
//    seeing `JOIN_WAKER` set together with setting `COMPLETE`, after which
//    the `JoinHandle` never writes it again. A `JoinHandle` dropped before
//    completion clears `JOIN_WAKER` together with `JOIN_INTEREST` and
//    drops the waker at once: a task awaiting itself holds its own waker
//    there, and cancelling it (which drops its future, with the handle)
//    would otherwise never free it. After completion the waker goes with
//    the task's memory.
// 5. The owned-list slot is written once, by the spawner before the task
//    is shared; the slab entry it names is touched only under its shard's
//    lock.
//
// # Safety
//
// The typed functions in `harness.rs` cast a `NonNull<Header>` back to a
// `Cell<F, S>`; this is sound because the header is the first field of the
// `#[repr(C)]` cell and the vtable stored in the header was instantiated
// for exactly that `F` and `S` at allocation.

mod abort;
pub(crate) mod coop;
mod core;
mod error;
mod harness;
mod id;
mod instrument;
mod join;
pub(crate) mod list;
mod local;
pub(crate) mod local_scopes;
mod raw;
mod state;
mod waker;

pub use self::abort::AbortHandle;
pub use self::error::JoinError;
pub(crate) use self::error::fiber_panic;
pub use self::id::{Id, id};
pub(crate) use self::instrument::{SpanKind, SpawnMeta};
pub use self::join::JoinHandle;
pub use self::local::{AccessError, LocalKey, TaskLocalFuture};
pub(crate) use self::raw::{
    Notified, RawTask, Runnable, Schedule, Yielded, request_yield, unowned,
};
use self::raw::{new_task, take_yield_request};

#[cfg(test)]
mod loom_task;
#[cfg(test)]
pub(crate) mod test_util;
