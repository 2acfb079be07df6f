//! Stack overflow in a fiber: touching the guard page under a fiber's
//! stack raises SIGSEGV. Our handler, running on the thread's alternate
//! signal stack (the standard library gives every thread it starts one),
//! recognises an address in the running fiber's guard page, prints
//! `fiber '<name>' has overflowed its stack` (or the fiber id) and aborts,
//! as Rust does for threads. Any other fault goes to the handler that was
//! installed before ours (the standard library's, or the default action).

use std::sync::Once;

/// The handler we replaced, called for faults that are not ours.
static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();
static INSTALL: Once = Once::new();

/// Installs the SIGSEGV handler once per process.
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls with a zeroed, then filled,
        // `sigaction`. The previous action is read into `PREVIOUS` by the
        // same call that installs ours, so it is written before our handler
        // can run, and only read afterwards.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(
                libc::SIGSEGV,
                &action,
                (&raw mut PREVIOUS).cast::<libc::sigaction>(),
            );
        }
    });
}

/// Writes `parts` to stderr without allocating (async-signal-safe).
fn write_stderr(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: `write` on fd 2 with a valid buffer.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` for SA_SIGINFO.
    let addr = unsafe { (*info).si_addr() } as usize;
    // SAFETY: the running fiber's control block is alive while it runs
    // (`context.rs`, rule 2), and the fault interrupted this thread.
    if let Some(f) = unsafe { super::context::current_for_signal().as_ref() } {
        let (lo, hi) = f.guard;
        if lo <= addr && addr < hi {
            let mut num = [0u8; 20];
            match f.name {
                Some((ptr, len)) => {
                    // SAFETY: the name is a `String` owned by the running
                    // fiber's `FiberFuture`, alive while it runs.
                    let name = unsafe { std::slice::from_raw_parts(ptr, len) };
                    write_stderr(&[b"\nfiber '", name, b"' has overflowed its stack\n"]);
                }
                None => {
                    let id = decimal(f.id, &mut num);
                    write_stderr(&[b"\nfiber #", id, b" has overflowed its stack\n"]);
                }
            }
            write_stderr(&[b"fatal runtime error: stack overflow, aborting\n"]);
            // SAFETY: abort is async-signal-safe.
            unsafe { libc::abort() };
        }
    }
    // Not ours: hand it to the previous handler.
    // SAFETY: `PREVIOUS` was written before this handler was installed.
    let prev = unsafe { &*(&raw const PREVIOUS).cast::<libc::sigaction>() };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction
        // runs again and the default action (core dump) happens.
        // SAFETY: plain sigaction call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            // SAFETY: with SA_SIGINFO, `sa_sigaction` is such a function.
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        let f: extern "C" fn(libc::c_int) =
            // SAFETY: without SA_SIGINFO, `sa_sigaction` is `sa_handler`.
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig);
    }
}
