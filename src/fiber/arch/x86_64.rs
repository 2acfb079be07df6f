//! x86_64 (System V) context switch.
//!
//! The switch is asymmetric, as our fibers are: a *resumer* (the poll of a
//! fiber's task) `resume`s a context, and the context `suspend`s back to
//! whoever resumed it. Each side is an inline `asm!` block, so:
//!
//! - callee-saved registers are not saved by hand: the blocks declare
//!   every register the ABI lets a call clobber, plus `r12`–`r15`, as
//!   clobbered, and the compiler saves only those holding live values
//!   (often none). `rbx` and `rbp` cannot be declared (LLVM reserves them)
//!   and are pushed by hand, as are the control bits of `MXCSR` and the
//!   x87 control word, which the ABI makes callee-saved. (No vector
//!   register is callee-saved on this ABI.) Loading `MXCSR` or the x87
//!   control word costs tens of nanoseconds here (measured: 75 ns per
//!   switch with both loads, 2 ns without), so each side loads its saved
//!   value back only if the other context left a different one. Each side
//!   stores its state (`stmxcsr`, `fnstcw`) once when it leaves, and that
//!   copy, being the current state, is what the side entered compares
//!   with: no second read.
//! - `call` and `ret` pair up: `resume` enters the context with a `call`,
//!   and `suspend` leaves it with the `ret` that matches that `call`, so
//!   the CPU's return-address predictor stays right. A symmetric switch
//!   function, whose `ret` lands in another context than its `call` came
//!   from, mispredicts on every switch: measured at 14.4 ns per switch
//!   here against 1.4 ns for corosensei, which uses this scheme (see
//!   BENCHMARKS.md).
//!
//! A suspended context's stack, from its saved stack pointer upwards:
//!
//! ```text
//!  sp + 0   resume address (label 2 in `suspend`; a new stack: the trampoline)
//!  sp + 8   MXCSR (4 bytes) | x87 control word (2 bytes)   new stack: entry
//!  sp + 16  rbx                                            new stack: data
//!  sp + 24  rbp
//! ```
//!
//! The resumer's stack while the context runs, from the saved pointer
//! (stored in the context's *link*, a word the resumer names):
//!
//! ```text
//!  link + 0  return address into `resume` (pushed by its `call`)
//!  link + 8  the resumer's MXCSR | x87 control word, padding, rbx, rbp
//! ```

use super::Entry;
use std::arch::{asm, global_asm};

global_asm!(
    ".text",
    ".p2align 4",
    ".globl __fiber_runtime_0_1_trampoline",
    ".type __fiber_runtime_0_1_trampoline,@function",
    "__fiber_runtime_0_1_trampoline:",
    ".cfi_startproc",
    // There is no caller: unwinders and backtraces stop here.
    ".cfi_undefined rip",
    // Reached by the first `resume`'s `call`: rsp = the resumer's stack
    // (return address on top), rsi = the link, rdx = our stack pointer,
    // rdi = the argument.
    // Record where the resumer waits, as `suspend`'s label 2 does.
    "mov [rsi], rsp",
    // The entry function and its data, laid out by `init_stack`.
    "mov rax, [rdx + 8]",
    "mov rsi, [rdx + 16]",
    // A new context starts from the default FP control state (all
    // exceptions masked, round to nearest, 64-bit x87 precision), as a new
    // thread does. The current state is the resumer's, stored above its
    // return address: load the default only where it differs; the slots
    // just read serve as scratch.
    "mov ecx, [rsp + 8]",
    "and ecx, 0xFFC0",
    "cmp ecx, 0x1F80",
    "je 3f",
    "mov dword ptr [rdx + 8], 0x1F80",
    "ldmxcsr [rdx + 8]",
    "3:",
    "cmp word ptr [rsp + 12], 0x037F",
    "je 4f",
    "mov word ptr [rdx + 12], 0x037F",
    "fldcw [rdx + 12]",
    "4:",
    // Move to our stack's top (16-byte aligned), so the `call` below
    // gives `entry` the alignment a called function expects.
    "lea rsp, [rdx + 32]",
    // End of the frame-pointer chain.
    "xor ebp, ebp",
    // entry(arg = rdi, data = rsi)
    "call rax",
    // `entry` never returns.
    "ud2",
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
/// `sp` was returned by `init_stack` or by the previous `resume` of this
/// context, whose stack is alive and not running on any thread. `link` is
/// valid for writes and is the word the context passes to `suspend`.
#[inline(always)]
pub(crate) unsafe fn resume(sp: *mut u8, link: *mut *mut u8, arg: usize) -> (usize, *mut u8) {
    let (back, new_sp): (usize, *mut u8);
    // SAFETY: the caller's contract; the block restores rbx, rbp and the
    // FP control state it saves and declares every other register it (or
    // the context) may change as clobbered.
    unsafe {
        asm!(
            // rbx and rbp cannot be declared clobbered: save them.
            "push rbp",
            "push rbx",
            // Our FP control state (callee-saved), in a 16-byte slot that
            // keeps the stack aligned. The context compares it with its own
            // when entered.
            "sub rsp, 16",
            "stmxcsr [rsp]",
            "fnstcw [rsp + 4]",
            // Push our return address and jump to the context's resume
            // address: its label 2 (or the trampoline), which records our
            // rsp in the link (rsi) and moves to its stack (rdx).
            "call [rdx]",
            // Back from `suspend`'s `ret`: rdi = its value, rsi = its sp.
            // `suspend` stored the context's FP control state at rsi + 8,
            // which is the current one: load ours back only where it
            // differs (MXCSR: its control bits 6-15; the rest are status
            // flags, not preserved across calls).
            "mov eax, [rsi + 8]",
            "xor eax, [rsp]",
            "test eax, 0xFFC0",
            "jz 3f",
            "ldmxcsr [rsp]",
            "3:",
            "mov ax, [rsi + 12]",
            "cmp ax, [rsp + 4]",
            "je 4f",
            "fldcw [rsp + 4]",
            "4:",
            "add rsp, 16",
            "pop rbx",
            "pop rbp",
            inlateout("rdi") arg => back,
            inlateout("rsi") link => new_sp,
            in("rdx") sp,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
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
/// Called on a context's own stack, resumed through `resume` with this
/// `link`, whose resumer is still waiting there.
#[inline(always)]
pub(crate) unsafe fn suspend(link: *mut *mut u8, arg: usize) -> usize {
    let back: usize;
    // SAFETY: the caller's contract; as in `resume`.
    unsafe {
        asm!(
            // rbx and rbp, then our FP control state (8 bytes), which the
            // resumer compares with its own.
            "push rbp",
            "push rbx",
            "sub rsp, 8",
            "stmxcsr [rsp]",
            "fnstcw [rsp + 4]",
            // Where the next `resume` enters us.
            "lea rax, [rip + 2f]",
            "push rax",
            // Our stack pointer goes back to the resumer in rsi.
            "mov rsi, rsp",
            // The resumer's stack, with its return address on top...
            "mov rsp, [rdx]",
            // ...which this `ret` pops: the one that matches its `call`.
            "ret",
            // Entered by a later `resume`'s `call`: rsp = that resumer's
            // stack, rsi = the link, rdx = our sp, rdi = the value.
            "2:",
            // Record where the resumer waits.
            "mov [rsi], rsp",
            // The resumer's FP control state, which is the current one, is
            // above its return address: load ours back where it differs
            // (as in `resume`).
            "mov eax, [rsp + 8]",
            "xor eax, [rdx + 8]",
            "test eax, 0xFFC0",
            "jz 3f",
            "ldmxcsr [rdx + 8]",
            "3:",
            "mov ax, [rsp + 12]",
            "cmp ax, [rdx + 12]",
            "je 4f",
            "fldcw [rdx + 12]",
            "4:",
            // Back on our stack, past the resume address and FP state.
            "lea rsp, [rdx + 16]",
            "pop rbx",
            "pop rbp",
            inlateout("rdi") arg => back,
            in("rdx") link,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
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
        entry as usize as u64,
        data as u64,
        0, // padding: keeps `top` 16-byte aligned
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
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}
