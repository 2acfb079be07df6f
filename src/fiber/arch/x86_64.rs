//! x86_64 (System V) context switch.
//!
//! Callee-saved state per the System V ABI: `rbx`, `rbp`, `r12`–`r15`,
//! the stack pointer, and the control bits of `MXCSR` and of the x87
//! control word. (No vector register is callee-saved on this ABI.)
//!
//! A suspended context's stack, from its saved stack pointer upwards:
//!
//! ```text
//!  sp + 0   MXCSR (4 bytes) | x87 control word (2 bytes) | padding
//!  sp + 8   r15
//!  sp + 16  r14
//!  sp + 24  r13        new stack: the entry function
//!  sp + 32  r12        new stack: the entry's `data`
//!  sp + 40  rbx
//!  sp + 48  rbp
//!  sp + 56  return address (into the switch caller, or the trampoline)
//! ```
//!
//! A new stack is laid out with the return address at `top - 8`, so after
//! the first `switch` returns into the trampoline `rsp == top` (16-byte
//! aligned), and the trampoline's `call` gives the entry function the
//! alignment a called function expects.

use super::Entry;
use std::arch::global_asm;

global_asm!(
    ".text",
    ".p2align 4",
    ".globl __fiber_runtime_0_1_switch",
    ".type __fiber_runtime_0_1_switch,@function",
    "__fiber_runtime_0_1_switch:",
    // On entry: rdi = where to save our sp, rsi = the sp to resume,
    // rdx = the value to hand over; [rsp] = our return address.
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    // Floating-point control state (callee-saved control bits).
    "stmxcsr [rsp]",
    "fnstcw [rsp + 4]",
    // Publish our sp and move to the other stack.
    "mov [rdi], rsp",
    "mov rsp, rsi",
    // Restore the other side's state, in reverse order.
    "ldmxcsr [rsp]",
    "fldcw [rsp + 4]",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    // The other side's `switch` returns `arg` (or the trampoline reads it).
    "mov rax, rdx",
    "ret",
    ".size __fiber_runtime_0_1_switch, . - __fiber_runtime_0_1_switch",
    "",
    ".p2align 4",
    ".globl __fiber_runtime_0_1_trampoline",
    ".type __fiber_runtime_0_1_trampoline,@function",
    "__fiber_runtime_0_1_trampoline:",
    ".cfi_startproc",
    // There is no caller: unwinders and backtraces stop here.
    ".cfi_undefined rip",
    // rax = arg of the first switch, r12 = data, r13 = entry.
    "mov rdi, rax",
    "mov rsi, r12",
    "call r13",
    // `entry` never returns.
    "ud2",
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
/// `to_sp` is a stack pointer saved by `switch` or made by `init_stack`,
/// whose stack is still alive and not running on any thread; `from_sp` is
/// valid for writes. The caller resumes only when some context switches
/// back to the value stored in `*from_sp`.
#[inline(always)] // one call less on the hot path; the asm is the call
pub(crate) unsafe fn switch(from_sp: *mut *mut u8, to_sp: *mut u8, arg: usize) -> usize {
    // SAFETY: forwarded contract; the asm follows the System V calling
    // convention for this signature.
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
    // Default control state: all exceptions masked, round to nearest,
    // 64-bit x87 precision.
    const MXCSR: u64 = 0x1F80;
    const FPUCW: u64 = 0x037F;
    let words: [u64; 8] = [
        MXCSR | (FPUCW << 32),
        0,                                                           // r15
        0,                                                           // r14
        entry as usize as u64,                                       // r13
        data as u64,                                                 // r12
        0,                                                           // rbx
        0,                                                           // rbp
        __fiber_runtime_0_1_trampoline as *const () as usize as u64, // return address
    ];
    // SAFETY: the caller gives us the top 64 bytes of a writable stack.
    unsafe {
        let sp = top.sub(64);
        std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), sp, 64);
        sp
    }
}
