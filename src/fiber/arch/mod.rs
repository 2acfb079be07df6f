//! The context switch, one implementation per architecture.
//!
//! Every variant exports the same names and meets the same contract:
//!
//! - `switch(from_sp, to_sp, arg) -> usize`: saves the callee-saved
//!   registers (and the floating-point control state the ABI requires) on
//!   the current stack, stores the stack pointer in `*from_sp`, loads
//!   `to_sp`, restores the registers saved there, and returns `arg` on the
//!   other side: either from that side's own `switch` call, or, for a new
//!   stack, as the first argument of its entry function.
//! - `init_stack(top, entry, data) -> sp`: lays out a new stack so that
//!   the first `switch` to `sp` calls `entry(arg, data)` on it; `entry`
//!   must never return (it switches away for good instead).
//! - Backtraces taken on a fiber stack end at its entry: the trampoline
//!   that calls `entry` marks its return address undefined in its CFI.
//!
//! Other targets fail to compile with a message naming the supported ones.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use self::x86_64::{init_stack, switch};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub(crate) use self::aarch64::{init_stack, switch};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "fiber-runtime's fibers support x86_64 and aarch64 only (the context switch is written \
     in assembly for those two); this target is neither"
);

/// The signature of a fiber entry function: receives the `arg` of the
/// first switch to it and the `data` given to `init_stack`.
pub(crate) type Entry = unsafe extern "C" fn(arg: usize, data: *mut u8) -> !;

#[cfg(test)]
mod tests;
