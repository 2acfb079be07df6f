//! Tests of the raw switch, on plain heap stacks (no guard pages).
//! `.ci/run` runs them in debug and in release.

use super::{init_stack, resume, suspend};
use std::hint::black_box;

/// A 16-byte aligned heap stack.
struct HeapStack(Vec<u128>);

impl HeapStack {
    fn new(bytes: usize) -> HeapStack {
        HeapStack(vec![0u128; bytes / 16])
    }

    fn top(&mut self) -> *mut u8 {
        let range = self.0.as_mut_ptr_range();
        range.end.cast()
    }
}

struct Link {
    main_sp: *mut u8,
    fiber_sp: *mut u8,
}

impl Link {
    /// Resumes the fiber with `arg`; returns what it suspends with.
    ///
    /// # Safety
    ///
    /// The fiber is suspended (or laid out) at `fiber_sp` on a live stack,
    /// and uses `main_sp` as its link.
    unsafe fn resume(&mut self, arg: usize) -> usize {
        // SAFETY: the caller's contract.
        let (back, sp) = unsafe { resume(self.fiber_sp, &raw mut self.main_sp, arg) };
        self.fiber_sp = sp;
        back
    }
}

/// Answers every switch with `arg + 1`, forever.
unsafe extern "C" fn plus_one(mut arg: usize, data: *mut u8) -> ! {
    let link = data.cast::<Link>();
    loop {
        // SAFETY: `link` outlives the fiber's use of it (the test keeps it
        // alive until the last switch back), and `main_sp` is the context
        // that just switched to us.
        arg = unsafe { suspend(&raw mut (*link).main_sp, arg + 1) };
    }
}

#[test]
fn ping_pong_hands_values_both_ways() {
    let mut stack = HeapStack::new(64 * 1024);
    let mut link = Link {
        main_sp: std::ptr::null_mut(),
        fiber_sp: std::ptr::null_mut(),
    };
    // SAFETY: a fresh 64 KiB stack that only this fiber uses.
    link.fiber_sp = unsafe { init_stack(stack.top(), plus_one, (&raw mut link).cast()) };
    for i in 0..10_000usize {
        // SAFETY: the fiber is suspended at `fiber_sp` on a live stack.
        let r = unsafe { link.resume(i * 3) };
        assert_eq!(r, i * 3 + 1);
    }
}

/// Clobbers as many integer and float registers as the compiler likes,
/// between switches.
unsafe extern "C" fn clobber(mut arg: usize, data: *mut u8) -> ! {
    let link = data.cast::<Link>();
    loop {
        let mut acc = [0u64; 24];
        let mut f = [0f64; 24];
        for round in 0..50u64 {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = a
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(round ^ i as u64 ^ arg as u64);
            }
            for (i, x) in f.iter_mut().enumerate() {
                *x = (*x + i as f64 * 1.5 + round as f64).sqrt() * 1.000_1;
            }
        }
        let mix = black_box(acc).iter().fold(0, |s, a| s ^ a)
            ^ black_box(f)
                .iter()
                .map(|x| x.to_bits())
                .fold(0, |s, a| s ^ a);
        // SAFETY: as in `plus_one`.
        arg = unsafe { suspend(&raw mut (*link).main_sp, mix as usize) };
    }
}

/// Values the compiler keeps in callee-saved registers across the switch
/// call survive whatever the fiber does with its registers.
#[test]
fn callee_saved_registers_survive_a_clobbering_fiber() {
    let mut stack = HeapStack::new(256 * 1024);
    let mut link = Link {
        main_sp: std::ptr::null_mut(),
        fiber_sp: std::ptr::null_mut(),
    };
    // SAFETY: a fresh stack that only this fiber uses.
    link.fiber_sp = unsafe { init_stack(stack.top(), clobber, (&raw mut link).cast()) };
    for round in 0..200u64 {
        // Many live integer and float values across the call.
        let ints: [u64; 12] = std::array::from_fn(|i| black_box(round * 1000 + i as u64));
        let floats: [f64; 12] = std::array::from_fn(|i| black_box(round as f64 + i as f64 / 7.0));
        let (a, b, c, d) = (ints[0] ^ 0xdead, ints[5] + 7, ints[11] * 3, floats[3] * 2.5);
        // SAFETY: the fiber is suspended at `fiber_sp` on a live stack.
        let r = unsafe { link.resume(round as usize) };
        black_box(r);
        for (i, v) in ints.iter().enumerate() {
            assert_eq!(*v, round * 1000 + i as u64);
        }
        for (i, v) in floats.iter().enumerate() {
            assert_eq!(*v, round as f64 + i as f64 / 7.0);
        }
        assert_eq!(
            (a, b, c, d),
            (ints[0] ^ 0xdead, ints[5] + 7, ints[11] * 3, floats[3] * 2.5)
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::asm;

    fn mxcsr() -> u32 {
        let mut v = 0u32;
        // SAFETY: `stmxcsr` only stores the register into `v`.
        unsafe { asm!("stmxcsr [{}]", in(reg) &raw mut v, options(nostack)) };
        v
    }

    fn set_mxcsr(v: u32) {
        // SAFETY: `ldmxcsr` loads a valid control word (reserved bits 0).
        unsafe { asm!("ldmxcsr [{}]", in(reg) &raw const v, options(nostack)) };
    }

    /// Sets round-toward-zero in the fiber; reports the MXCSR it saw.
    unsafe extern "C" fn round_to_zero(_arg: usize, data: *mut u8) -> ! {
        let link = data.cast::<Link>();
        loop {
            let seen = mxcsr();
            set_mxcsr((seen & !0x6000) | 0x6000);
            // SAFETY: as in `plus_one`.
            unsafe { suspend(&raw mut (*link).main_sp, seen as usize) };
        }
    }

    /// MXCSR is callee-saved control state: each context keeps its own.
    #[test]
    fn mxcsr_is_per_context() {
        let mut stack = HeapStack::new(64 * 1024);
        let mut link = Link {
            main_sp: std::ptr::null_mut(),
            fiber_sp: std::ptr::null_mut(),
        };
        // SAFETY: a fresh stack that only this fiber uses.
        link.fiber_sp = unsafe { init_stack(stack.top(), round_to_zero, (&raw mut link).cast()) };
        // Ours rounds down, so that the fiber's default differs from it.
        let original = mxcsr();
        set_mxcsr((original & !0x6000) | 0x2000);
        let ours = mxcsr();
        // SAFETY: the fiber is suspended at `fiber_sp` on a live stack.
        let seen = unsafe { link.resume(0) };
        // A new fiber starts from the default control state...
        assert_eq!(seen as u32 & 0xFFBF, 0x1F80);
        // ...and its change did not leak into ours.
        assert_eq!(mxcsr(), ours);
        // SAFETY: as above.
        let seen = unsafe { link.resume(0) };
        // The fiber kept its own rounding mode across the switch.
        assert_eq!(seen as u32 & 0x6000, 0x6000);
        assert_eq!(mxcsr(), ours);
        set_mxcsr(original);
    }
}

#[cfg(target_arch = "x86_64")]
mod x87 {
    use super::*;
    use std::arch::asm;

    fn control_word() -> u16 {
        let mut v = 0u16;
        // SAFETY: `fnstcw` only stores the control word into `v`.
        unsafe { asm!("fnstcw [{}]", in(reg) &raw mut v, options(nostack)) };
        v
    }

    fn set_control_word(v: u16) {
        // SAFETY: `fldcw` loads a valid control word.
        unsafe { asm!("fldcw [{}]", in(reg) &raw const v, options(nostack)) };
    }

    /// Sets 24-bit x87 precision in the fiber; reports the word it saw.
    unsafe extern "C" fn single_precision(_arg: usize, data: *mut u8) -> ! {
        let link = data.cast::<Link>();
        loop {
            let seen = control_word();
            set_control_word(seen & !0x0300);
            // SAFETY: as in `plus_one`.
            unsafe { suspend(&raw mut (*link).main_sp, seen as usize) };
        }
    }

    /// The x87 control word is callee-saved too: each context keeps its
    /// own.
    #[test]
    fn x87_control_word_is_per_context() {
        let mut stack = HeapStack::new(64 * 1024);
        let mut link = Link {
            main_sp: std::ptr::null_mut(),
            fiber_sp: std::ptr::null_mut(),
        };
        // SAFETY: a fresh stack that only this fiber uses.
        link.fiber_sp =
            unsafe { init_stack(stack.top(), single_precision, (&raw mut link).cast()) };
        let ours = control_word();
        // SAFETY: the fiber is laid out at `fiber_sp` on a live stack.
        let seen = unsafe { link.resume(0) };
        // A new fiber starts from the default control word...
        assert_eq!(seen as u16, 0x037F);
        // ...and its change did not leak into ours.
        assert_eq!(control_word(), ours);
        // SAFETY: as above.
        let seen = unsafe { link.resume(0) };
        // The fiber kept its own precision across the switch.
        assert_eq!(seen as u16 & 0x0300, 0);
        assert_eq!(control_word(), ours);
    }
}

#[cfg(target_arch = "aarch64")]
mod fpcr {
    use super::*;
    use std::arch::asm;

    fn fpcr() -> u64 {
        let v: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { asm!("mrs {}, fpcr", out(reg) v, options(nomem, nostack)) };
        v
    }

    fn set_fpcr(v: u64) {
        // SAFETY: writes only the floating-point control bits.
        unsafe { asm!("msr fpcr, {}", in(reg) v, options(nomem, nostack)) };
    }

    /// Sets round-toward-zero (RMode, bits 22-23) in the fiber; reports
    /// the FPCR it saw.
    unsafe extern "C" fn round_to_zero(_arg: usize, data: *mut u8) -> ! {
        let link = data.cast::<Link>();
        loop {
            let seen = fpcr();
            set_fpcr(seen | (0b11 << 22));
            // SAFETY: as in `plus_one`.
            unsafe { suspend(&raw mut (*link).main_sp, seen as usize) };
        }
    }

    /// FPCR is per context: a new one starts from the default, and each
    /// keeps its own.
    #[test]
    fn fpcr_is_per_context() {
        let mut stack = HeapStack::new(64 * 1024);
        let mut link = Link {
            main_sp: std::ptr::null_mut(),
            fiber_sp: std::ptr::null_mut(),
        };
        // SAFETY: a fresh stack that only this fiber uses.
        link.fiber_sp = unsafe { init_stack(stack.top(), round_to_zero, (&raw mut link).cast()) };
        // Ours rounds toward plus infinity, so the fiber's default differs.
        let original = fpcr();
        set_fpcr((original & !(0b11 << 22)) | (0b01 << 22));
        let ours = fpcr();
        // SAFETY: the fiber is laid out at `fiber_sp` on a live stack.
        let seen = unsafe { link.resume(0) };
        assert_eq!(seen, 0, "a new fiber starts from the default FPCR");
        assert_eq!(fpcr(), ours);
        // SAFETY: as above.
        let seen = unsafe { link.resume(0) };
        assert_eq!(seen as u64 >> 22 & 0b11, 0b11, "the fiber kept its own");
        assert_eq!(fpcr(), ours);
        set_fpcr(original);
    }
}

/// Deep recursion on a fiber stack: the stack really is the one we gave.
#[test]
// ASan's redzones make every frame several times larger: the recursion
// sized for the plain build overflows the stack under it.
#[cfg_attr(fiber_runtime_asan, ignore = "frames too large under AddressSanitizer")]
fn deep_recursion_runs_on_the_fiber_stack() {
    fn depth(n: u64) -> u64 {
        let pad = black_box([n; 8]);
        if n == 0 {
            pad[0]
        } else {
            depth(n - 1) + pad[7]
        }
    }
    unsafe extern "C" fn recurse(arg: usize, data: *mut u8) -> ! {
        let link = data.cast::<Link>();
        let local = 0u8;
        let sum = depth(arg as u64);
        let addr = &raw const local as usize;
        // SAFETY: as in `plus_one`; we switch back twice and are never
        // resumed after the second.
        unsafe {
            suspend(&raw mut (*link).main_sp, addr);
            suspend(&raw mut (*link).main_sp, sum as usize);
        }
        unreachable!("resumed after the last switch");
    }
    let mut stack = HeapStack::new(2 * 1024 * 1024);
    let range = stack.0.as_ptr_range();
    let (lo, hi) = (range.start as usize, range.end as usize);
    let mut link = Link {
        main_sp: std::ptr::null_mut(),
        fiber_sp: std::ptr::null_mut(),
    };
    // SAFETY: a fresh 2 MiB stack that only this fiber uses.
    link.fiber_sp = unsafe { init_stack(stack.top(), recurse, (&raw mut link).cast()) };
    // SAFETY: the fiber is suspended at `fiber_sp` on a live stack.
    let addr = unsafe { link.resume(10_000) };
    assert!(
        (lo..hi).contains(&addr),
        "fiber local not on the fiber stack"
    );
    // SAFETY: as above.
    let sum = unsafe { link.resume(0) };
    assert_eq!(sum as u64, (1..=10_000u64).sum::<u64>());
}

/// The raw switch against corosensei's, interleaved in one run. A
/// benchmark, not a test (it asserts nothing about time), so ignored:
/// `cargo test --release --lib -- --ignored --nocapture raw_switch`.
#[cfg(not(fiber_runtime_loom))]
#[test]
#[ignore = "a benchmark: run it in release with --ignored --nocapture"]
fn raw_switch_against_corosensei() {
    use std::time::Instant;
    const ROUND_TRIPS: usize = 2_000_000;
    fn ours() -> f64 {
        let mut stack = HeapStack::new(16 * 1024);
        let mut link = Link {
            main_sp: std::ptr::null_mut(),
            fiber_sp: std::ptr::null_mut(),
        };
        // SAFETY: a fresh stack that only this fiber uses.
        link.fiber_sp = unsafe { init_stack(stack.top(), plus_one, (&raw mut link).cast()) };
        let start = Instant::now();
        for i in 0..ROUND_TRIPS {
            // SAFETY: the fiber is suspended at `fiber_sp` on a live
            // stack; it is abandoned (never resumed) after the loop.
            black_box(unsafe { link.resume(i) });
        }
        start.elapsed().as_nanos() as f64 / (2 * ROUND_TRIPS) as f64
    }
    fn corosensei() -> f64 {
        use corosensei::{Coroutine, CoroutineResult};
        let mut co = Coroutine::new(|yielder, mut x: usize| {
            loop {
                x = yielder.suspend(x + 1);
            }
        });
        let start = Instant::now();
        for i in 0..ROUND_TRIPS {
            let CoroutineResult::Yield(v) = co.resume(i);
            black_box(v);
        }
        let ns = start.elapsed().as_nanos() as f64 / (2 * ROUND_TRIPS) as f64;
        // Never returns: unwinding it on drop would need a resume, which
        // is not what we time.
        std::mem::forget(co);
        ns
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        a.push(ours());
        b.push(corosensei());
    }
    let (a, b) = (median(a), median(b));
    println!(
        "raw switch, medians of 7 interleaved rounds: ours {a:.2} ns, corosensei {b:.2} ns, \
         ratio {:.2}",
        a / b
    );
}
