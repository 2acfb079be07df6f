//! aarch64 (AAPCS64) context switch.
//!
//! The same asymmetric scheme as on x86_64 (see `x86_64.rs`): a resumer
//! enters a context with `blr` and the context leaves with the `ret` that
//! matches it, each side an inline `asm!` block that declares every
//! register a call may clobber, plus `x20`–`x28`, as clobbered, so the
//! compiler saves only the live ones. (`clobber_abi("C")` covers all of
//! `v0`–`v31`, so the callee-saved `d8`–`d15` are saved by the compiler
//! when live.) `x19` and the frame pointer `x29` cannot be declared (LLVM
//! reserves them) and are saved by hand, as is `FPCR` (rounding mode and
//! the other floating-point control bits): each side stores it when it
//! leaves, and the side entered loads its own back only if that stored
//! (current) value differs.
//!
//! A suspended context's stack, from its saved stack pointer upwards:
//!
//! ```text
//!  sp + 0   resume address (label 2 in `suspend`; a new stack: the trampoline)
//!  sp + 8   FPCR
//!  sp + 16  x19                new stack: entry
//!  sp + 24  x29                new stack: data
//! ```
//!
//! The resumer's stack while the context runs, from the saved pointer
//! (stored in the context's *link*):
//!
//! ```text
//!  link + 0   return address into `resume` (the resumer's x30), padding
//!  link + 16  the resumer's x19, x29, FPCR, padding
//! ```

use super::Entry;
use std::arch::{asm, global_asm};

global_asm!(
    ".text",
    ".p2align 4",
    ".globl __fiber_runtime_0_1_trampoline",
    ".type __fiber_runtime_0_1_trampoline,%function",
    "__fiber_runtime_0_1_trampoline:",
    ".cfi_startproc",
    // There is no caller: unwinders and backtraces stop here.
    ".cfi_undefined x30",
    // Reached by the first `resume`'s `blr`: sp = the resumer's stack,
    // x30 = its return address, x1 = the link, x2 = our stack pointer,
    // x0 = the argument.
    // A new context starts from the default FPCR (0), as a new thread
    // does. The current one is the resumer's, which it stored at sp + 16:
    // load the default only if it differs.
    "ldr x4, [sp, #16]",
    "cbz x4, 3f",
    "msr fpcr, xzr",
    "3:",
    // Record where the resumer waits, as `suspend`'s label 2 does.
    "str x30, [sp, #-16]!",
    "mov x3, sp",
    "str x3, [x1]",
    // The entry function and its data, laid out by `init_stack`.
    "ldp x4, x1, [x2, #16]",
    // Our stack's top (16-byte aligned).
    "add sp, x2, #32",
    // End of the frame-pointer chain.
    "mov x29, xzr",
    // entry(arg = x0, data = x1)
    "blr x4",
    // `entry` never returns.
    "brk #1",
    ".cfi_endproc",
    ".size __fiber_runtime_0_1_trampoline, . - __fiber_runtime_0_1_trampoline",
);

unsafe extern "C" {
    fn __fiber_runtime_0_1_trampoline();
}

/// Resumes the context suspended at `sp` (or laid out by `init_stack`),
/// handing it `arg`; returns when it suspends, with the value it suspended
/// with and its new stack pointer.
///
/// # Safety
///
/// As the x86_64 version: `sp` is this context's current stack pointer,
/// on a live stack not running anywhere; `link` is valid for writes and is
/// the word the context passes to `suspend`.
#[inline(always)]
pub(crate) unsafe fn resume(sp: *mut u8, link: *mut *mut u8, arg: usize) -> (usize, *mut u8) {
    let (back, new_sp): (usize, *mut u8);
    // SAFETY: the caller's contract; the block restores x19, x29 and FPCR
    // and declares every other register it (or the context) may change as
    // clobbered.
    unsafe {
        asm!(
            // x19 and x29 cannot be declared clobbered: save them, and
            // our FPCR.
            "stp x19, x29, [sp, #-32]!",
            "mrs x4, fpcr",
            "str x4, [sp, #16]",
            // Enter the context at its resume address (its label 2, or
            // the trampoline), with x30 = our return address.
            "ldr x3, [x2]",
            "blr x3",
            // Back from `suspend`'s `ret`: x0 = its value, x1 = its sp.
            // `suspend` stored the context's FPCR, the current one, at
            // x1 + 8: load ours back only if it differs.
            "ldr x4, [x1, #8]",
            "ldr x5, [sp, #16]",
            "cmp x4, x5",
            "b.eq 3f",
            "msr fpcr, x5",
            "3:",
            "ldp x19, x29, [sp], #32",
            inlateout("x0") arg => back,
            inlateout("x1") link => new_sp,
            in("x2") sp,
            lateout("x20") _, lateout("x21") _, lateout("x22") _, lateout("x23") _,
            lateout("x24") _, lateout("x25") _, lateout("x26") _, lateout("x27") _,
            lateout("x28") _,
            clobber_abi("C"),
        );
    }
    (back, new_sp)
}

/// From inside a context: switches back to the resumer whose stack
/// pointer is in `*link`, handing it `arg`; returns the value of the next
/// `resume`.
///
/// # Safety
///
/// As the x86_64 version.
#[inline(always)]
pub(crate) unsafe fn suspend(link: *mut *mut u8, arg: usize) -> usize {
    let back: usize;
    // SAFETY: the caller's contract; as in `resume`.
    unsafe {
        asm!(
            // Our frame: resume address, FPCR, x19, x29.
            "sub sp, sp, #32",
            "stp x19, x29, [sp, #16]",
            "mrs x4, fpcr",
            "str x4, [sp, #8]",
            "adr x3, 2f",
            "str x3, [sp]",
            // Our stack pointer goes back to the resumer in x1.
            "mov x1, sp",
            // The resumer's stack: pop its return address into x30...
            "ldr x3, [x2]",
            "ldr x30, [x3], #16",
            "mov sp, x3",
            // ...and return there: the `ret` that matches its `blr`.
            "ret",
            // Entered by a later `resume`'s `blr`: sp = that resumer's
            // stack, x30 = its return address, x1 = the link, x2 = our
            // sp, x0 = the value.
            "2:",
            // The resumer's FPCR, the current one, is at sp + 16: load
            // ours back only if it differs.
            "ldr x4, [sp, #16]",
            "ldr x5, [x2, #8]",
            "cmp x4, x5",
            "b.eq 3f",
            "msr fpcr, x5",
            "3:",
            // Record where the resumer waits (its return address on top).
            "str x30, [sp, #-16]!",
            "mov x3, sp",
            "str x3, [x1]",
            // x19, x29, and back on our stack.
            "ldp x19, x29, [x2, #16]",
            "add sp, x2, #32",
            inlateout("x0") arg => back,
            in("x2") link,
            lateout("x20") _, lateout("x21") _, lateout("x22") _, lateout("x23") _,
            lateout("x24") _, lateout("x25") _, lateout("x26") _, lateout("x27") _,
            lateout("x28") _,
            clobber_abi("C"),
        );
    }
    back
}

/// Lays out a new stack whose first `resume` calls `entry(arg, data)`.
///
/// # Safety
///
/// `top` is the 16-byte aligned upper end of a writable stack of at least
/// 4 KiB that nothing else uses.
pub(crate) unsafe fn init_stack(top: *mut u8, entry: Entry, data: *mut u8) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0);
    let words: [u64; 4] = [
        __fiber_runtime_0_1_trampoline as *const () as usize as u64, // resume address
        0,                                                           // FPCR slot (unused)
        entry as usize as u64,
        data as u64,
    ];
    // SAFETY: the caller gives us the top 32 bytes of a writable stack.
    unsafe {
        let sp = top.sub(32);
        std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), sp, 32);
        sp
    }
}

/// The stack pointer of the caller (roughly: its frame's), read from the
/// register: the address of a local would not do under AddressSanitizer,
/// which moves locals to a fake stack.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register into another; no memory is touched.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}
