//! The runtime: [`Builder`] (configuration and validation), [`Runtime`]
//! (owns the worker threads; dropping it shuts everything down),
//! [`Handle`] (a cheap reference to spawn onto it), [`RuntimeMetrics`],
//! and [`Dump`] (every live task and fiber, with fiber backtraces, from
//! [`Handle::dump`]): the user-facing layer over the scheduler. The
//! first four are also at the crate root.
//!
//! ```
//! let rt = fiber_runtime::Runtime::new().unwrap();
//! let dump: fiber_runtime::runtime::Dump = rt.handle().dump();
//! assert_eq!(dump.tasks().count(), 0);
//! ```

mod builder;
mod dump;
mod handle;
mod io_driver;
mod long_poll;
mod metrics;
#[cfg(all(test, not(fiber_runtime_loom)))]
mod rescue_tests;
#[allow(clippy::module_inception)]
mod runtime;

pub use self::builder::Builder;
pub use self::dump::{
    Dump, FiberStackHistogram, Frame, StackUsage, TaskDump, TaskKind, TaskState, WorkerDump,
    WorkerStatus,
};
pub use self::handle::{EnterGuard, Handle, TryCurrentError};
pub use self::io_driver::IoDriver;
pub use self::long_poll::{LongPoll, LongPollKind};
pub use self::metrics::{PollTimeHistogram, RuntimeMetrics};
pub use self::runtime::Runtime;
