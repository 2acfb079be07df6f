//! The multi-thread, work-stealing scheduler: `worker.rs` (run loop and
//! shutdown), `queue.rs` (the per-worker ring), `idle.rs` (who searches,
//! who is parked), `stuck.rs` (what the long-poll monitor's sighting of a
//! stuck worker does).

pub(crate) mod idle;
pub(crate) mod queue;
mod stuck;
mod worker;

pub(crate) use worker::{Context, Handle, create, run};
