//! The multi-thread, work-stealing scheduler: `worker.rs` (run loop and
//! shutdown), `queue.rs` (the per-worker ring), `idle.rs` (who searches,
//! who is parked), `stuck.rs` (the hand-off of a worker stuck in a poll
//! to a replacement thread), `rescue.rs` (ring wakes that wake no peer,
//! and the bounded parks that make up for it), `spread.rs` (busy workers
//! the kernel stacked on one CPU).

pub(crate) mod idle;
pub(crate) mod queue;
mod rescue;
mod spread;
mod stuck;
mod worker;

pub(crate) use stuck::{HandoffConfig, moves_lifo_slots};
pub(crate) use worker::{Context, Handle, create, run};
