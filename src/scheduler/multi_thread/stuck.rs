//! What happens when the long-poll monitor sees a multi-thread worker stuck
//! in one poll past the threshold (`scheduler/monitor.rs`).
//!
//! A stub here: the worker hand-off (another branch) implements it.

use super::Handle;
use std::sync::Arc;

impl Handle {
    /// Called by the monitor thread when worker `worker` has been in one
    /// poll for at least the long-poll threshold (once per such poll, with
    /// no lock held, before the `on_long_poll` callback).
    pub(crate) fn on_worker_stuck(self: &Arc<Self>, worker: usize) {
        let _ = worker;
    }
}
