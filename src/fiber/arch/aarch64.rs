//! aarch64 (AAPCS64) context switch.
//!
//! Callee-saved state per AAPCS64: `x19`–`x28`, the frame pointer `x29`,
//! the link register `x30` (our return address), the low halves `d8`–`d15`
//! of `v8`–`v15`, and the stack pointer.
//!
//! A suspended context's stack, from its saved stack pointer upwards:
//!
//! ```text
//!  sp + 0x00  x19 x20    new stack: x19 = data, x20 = entry
//!  sp + 0x10  x21 x22
//!  sp + 0x20  x23 x24
//!  sp + 0x30  x25 x26
//!  sp + 0x40  x27 x28
//!  sp + 0x50  x29 x30    new stack: x30 = the trampoline
//!  sp + 0x60  d8  d9
//!  sp + 0x70  d10 d11
//!  sp + 0x80  d12 d13
//!  sp + 0x90  d14 d15
//! ```

use super::Entry;
use std::arch::global_asm;

global_asm!(
    ".text",
    ".p2align 4",
    ".globl __fiber_runtime_0_1_switch",
    ".type __fiber_runtime_0_1_switch,%function",
    "__fiber_runtime_0_1_switch:",
    // On entry: x0 = where to save our sp, x1 = the sp to resume,
    // x2 = the value to hand over, x30 = our return address.
    "sub sp, sp, #0xa0",
    "stp x19, x20, [sp, #0x00]",
    "stp x21, x22, [sp, #0x10]",
    "stp x23, x24, [sp, #0x20]",
    "stp x25, x26, [sp, #0x30]",
    "stp x27, x28, [sp, #0x40]",
    "stp x29, x30, [sp, #0x50]",
    "stp d8, d9, [sp, #0x60]",
    "stp d10, d11, [sp, #0x70]",
    "stp d12, d13, [sp, #0x80]",
    "stp d14, d15, [sp, #0x90]",
    // Publish our sp and move to the other stack.
    "mov x3, sp",
    "str x3, [x0]",
    "mov sp, x1",
    // Restore the other side's registers.
    "ldp x19, x20, [sp, #0x00]",
    "ldp x21, x22, [sp, #0x10]",
    "ldp x23, x24, [sp, #0x20]",
    "ldp x25, x26, [sp, #0x30]",
    "ldp x27, x28, [sp, #0x40]",
    "ldp x29, x30, [sp, #0x50]",
    "ldp d8, d9, [sp, #0x60]",
    "ldp d10, d11, [sp, #0x70]",
    "ldp d12, d13, [sp, #0x80]",
    "ldp d14, d15, [sp, #0x90]",
    "add sp, sp, #0xa0",
    // The other side's `switch` returns `arg` (or the trampoline reads it).
    "mov x0, x2",
    "ret",
    ".size __fiber_runtime_0_1_switch, . - __fiber_runtime_0_1_switch",
    "",
    ".p2align 4",
    ".globl __fiber_runtime_0_1_trampoline",
    ".type __fiber_runtime_0_1_trampoline,%function",
    "__fiber_runtime_0_1_trampoline:",
    ".cfi_startproc",
    // There is no caller: unwinders and backtraces stop here.
    ".cfi_undefined x30",
    // x0 = arg of the first switch (already in place), x19 = data,
    // x20 = entry.
    "mov x1, x19",
    "blr x20",
    // `entry` never returns.
    "brk #0",
    ".cfi_endproc",
    ".size __fiber_runtime_0_1_trampoline, . - __fiber_runtime_0_1_trampoline",
);

unsafe extern "C" {
    fn __fiber_runtime_0_1_switch(from_sp: *mut *mut u8, to_sp: *mut u8, arg: usize) -> usize;
    fn __fiber_runtime_0_1_trampoline();
}

/// Switches to the context saved at `to_sp`, saving ours in `*from_sp`.
///
/// # Safety
///
/// As the x86_64 version: `to_sp` is a live, idle saved context;
/// `from_sp` is valid for writes.
#[inline(always)] // one call less on the hot path; the asm is the call
pub(crate) unsafe fn switch(from_sp: *mut *mut u8, to_sp: *mut u8, arg: usize) -> usize {
    // SAFETY: forwarded contract; the asm follows AAPCS64 for this
    // signature.
    unsafe { __fiber_runtime_0_1_switch(from_sp, to_sp, arg) }
}

/// Lays out a new stack whose first resumption calls `entry(arg, data)`.
///
/// # Safety
///
/// `top` is the 16-byte aligned upper end of a writable stack of at least
/// 4 KiB that nothing else uses.
pub(crate) unsafe fn init_stack(top: *mut u8, entry: Entry, data: *mut u8) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0);
    let mut words = [0u64; 20];
    words[0] = data as u64; // x19
    words[1] = entry as usize as u64; // x20
    words[11] = __fiber_runtime_0_1_trampoline as *const () as usize as u64; // x30
    // SAFETY: the caller gives us the top 160 bytes of a writable stack.
    unsafe {
        let sp = top.sub(0xa0);
        std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), sp, 0xa0);
        sp
    }
}
