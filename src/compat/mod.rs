//! Running tokio-only futures inside tasks and fibers.
