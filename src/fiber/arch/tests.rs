//! Tests of the raw switch, on plain heap stacks (no guard pages).
//! `.ci/run` runs them in debug and in release.

use super::{init_stack, switch};
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

/// Answers every switch with `arg + 1`, forever.
unsafe extern "C" fn plus_one(mut arg: usize, data: *mut u8) -> ! {
    let link = data.cast::<Link>();
    loop {
        // SAFETY: `link` outlives the fiber's use of it (the test keeps it
        // alive until the last switch back), and `main_sp` is the context
        // that just switched to us.
        arg = unsafe { switch(&raw mut (*link).fiber_sp, (*link).main_sp, arg + 1) };
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
        let r = unsafe { switch(&raw mut link.main_sp, link.fiber_sp, i * 3) };
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
        arg = unsafe { switch(&raw mut (*link).fiber_sp, (*link).main_sp, mix as usize) };
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
        let r = unsafe { switch(&raw mut link.main_sp, link.fiber_sp, round as usize) };
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
            unsafe { switch(&raw mut (*link).fiber_sp, (*link).main_sp, seen as usize) };
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
        let ours = mxcsr();
        // SAFETY: the fiber is suspended at `fiber_sp` on a live stack.
        let seen = unsafe { switch(&raw mut link.main_sp, link.fiber_sp, 0) };
        // A new fiber starts from the default control state...
        assert_eq!(seen as u32 & 0xFFBF, 0x1F80);
        // ...and its change did not leak into ours.
        assert_eq!(mxcsr(), ours);
        // SAFETY: as above.
        let seen = unsafe { switch(&raw mut link.main_sp, link.fiber_sp, 0) };
        // The fiber kept its own rounding mode across the switch.
        assert_eq!(seen as u32 & 0x6000, 0x6000);
        assert_eq!(mxcsr(), ours);
    }
}

/// Deep recursion on a fiber stack: the stack really is the one we gave.
#[test]
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
            switch(&raw mut (*link).fiber_sp, (*link).main_sp, addr);
            switch(&raw mut (*link).fiber_sp, (*link).main_sp, sum as usize);
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
    let addr = unsafe { switch(&raw mut link.main_sp, link.fiber_sp, 10_000) };
    assert!(
        (lo..hi).contains(&addr),
        "fiber local not on the fiber stack"
    );
    // SAFETY: as above.
    let sum = unsafe { switch(&raw mut link.main_sp, link.fiber_sp, 0) };
    assert_eq!(sum as u64, (1..=10_000u64).sum::<u64>());
}
