//! The runtime: `Builder` (configuration and validation), `Runtime` (owns
//! the worker threads; dropping it shuts everything down), `Handle` (a
//! cheap reference to spawn onto it), plus the thread-local context,
//! parking and metrics they share.

pub(crate) mod builder;
pub(crate) mod context;
pub(crate) mod coop;
pub(crate) mod driver;
mod handle;
pub(crate) mod metrics;
pub(crate) mod park;
#[allow(clippy::module_inception)]
mod runtime;

pub use self::builder::Builder;
pub use self::handle::{EnterGuard, Handle, TryCurrentError};
pub use self::metrics::RuntimeMetrics;
pub use self::runtime::Runtime;
