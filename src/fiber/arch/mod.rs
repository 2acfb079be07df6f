//! The context switch, one implementation per architecture.
//!
//! Every variant exports the same names and meets the same contract:
//!
//! - `resume(sp, link, arg) -> (value, new_sp)`: from the resumer's side,
//!   enters the context suspended at `sp` (or laid out by `init_stack`),
//!   handing it `arg`; the context records where the resumer waits in
//!   `*link`. Returns when the context suspends: the value it suspended
//!   with and the stack pointer to resume it at next time.
//! - `suspend(link, arg) -> value`: from inside a context, switches back
//!   to the resumer waiting at `*link`, handing it `arg`; returns the
//!   `arg` of the next `resume`.
//! - `init_stack(top, entry, data) -> sp`: lays out a new stack so that
//!   the first `resume` of `sp` calls `entry(arg, data)` on it, starting
//!   from the default floating-point control state; `entry` must never
//!   return (it suspends for good instead).
//! - Every register the ABI makes callee-saved (and the floating-point
//!   control state it requires) is preserved across `resume` and across
//!   `suspend`, per context.
//! - Backtraces taken on a fiber stack end at its entry: the trampoline
//!   that calls `entry` marks its return address undefined in its CFI.
//! - `stack_pointer()`: the current stack pointer, from the register.
//!
//! Other targets fail to compile with a message naming the supported ones.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use self::x86_64::{init_stack, resume, stack_pointer, suspend};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub(crate) use self::aarch64::{init_stack, resume, stack_pointer, suspend};

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
