//! The runtime: `Builder` (configuration and validation), `Runtime` (owns
//! the worker threads; dropping it shuts everything down), `Handle` (a
//! cheap reference to spawn onto it) and `RuntimeMetrics`: the user-facing
//! layer over the scheduler.

mod builder;
mod handle;
mod long_poll;
mod metrics;
#[allow(clippy::module_inception)]
mod runtime;

pub use self::builder::Builder;
pub use self::handle::{EnterGuard, Handle, TryCurrentError};
pub use self::long_poll::{LongPoll, LongPollKind};
pub use self::metrics::{PollTimeHistogram, RuntimeMetrics};
pub use self::runtime::Runtime;
