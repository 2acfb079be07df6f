//! AddressSanitizer's fiber-switch annotations (built with
//! `--cfg fiber_runtime_asan` next to `-Zsanitizer=address`; `.ci/run`
//! does). Without them ASan takes a switch for a wild jump of the stack
//! pointer: it reports accesses to the fiber's stack as overflows, keeps
//! fake stack frames of the wrong stack, and leaves the redzones of frames
//! a forced unwind skipped.
//!
//! Every switch is bracketed: the side leaving calls
//! `__sanitizer_start_switch_fiber` with the bounds of the stack it goes
//! to (and a slot for its fake stack, or null if it never comes back);
//! the side arriving calls `__sanitizer_finish_switch_fiber` with the fake
//! stack it saved when it left, learning the bounds of the stack it came
//! from.

use std::cell::Cell;
use std::ffi::c_void;

unsafe extern "C" {
    fn __sanitizer_start_switch_fiber(
        fake_stack_save: *mut *mut c_void,
        bottom: *const c_void,
        size: usize,
    );
    fn __sanitizer_finish_switch_fiber(
        fake_stack_save: *mut c_void,
        bottom_old: *mut *const c_void,
        size_old: *mut usize,
    );
}

/// A fiber's part of the bookkeeping, in its control block.
pub(crate) struct FiberState {
    /// The fiber's stack: `[bottom, top)`.
    bottom: usize,
    top: usize,
    /// The fiber's fake stack, saved while it is switched out.
    fake: Cell<*mut c_void>,
    /// The stack of the poller that resumed it, learnt on arrival.
    caller_bottom: Cell<*const c_void>,
    caller_size: Cell<usize>,
}

impl FiberState {
    pub(crate) fn new(bottom: usize, top: usize) -> FiberState {
        FiberState {
            bottom,
            top,
            fake: Cell::new(std::ptr::null_mut()),
            caller_bottom: Cell::new(std::ptr::null()),
            caller_size: Cell::new(0),
        }
    }

    /// The poller, about to resume the fiber: returns the slot of its own
    /// fake stack, for `back_from_fiber`.
    #[inline]
    pub(crate) fn enter_fiber(&self) -> *mut c_void {
        let mut fake = std::ptr::null_mut();
        // SAFETY: announces the switch to the fiber's stack, whose bounds
        // these are; `fake` outlives the call.
        unsafe {
            __sanitizer_start_switch_fiber(
                &mut fake,
                self.bottom as *const c_void,
                self.top - self.bottom,
            )
        };
        fake
    }

    /// The poller, back from the fiber.
    #[inline]
    pub(crate) fn back_from_fiber(fake: &mut *mut c_void) {
        // SAFETY: completes the switch `enter_fiber` announced, with the
        // fake stack it saved.
        unsafe {
            __sanitizer_finish_switch_fiber(*fake, std::ptr::null_mut(), std::ptr::null_mut())
        };
    }

    /// The fiber, on its stack, after a switch to it.
    #[inline]
    pub(crate) fn entered_fiber(&self) {
        let (mut bottom, mut size) = (std::ptr::null(), 0);
        // SAFETY: completes the switch the poller announced; the fiber's
        // fake stack is the one it saved when it left (null at first).
        unsafe { __sanitizer_finish_switch_fiber(self.fake.get(), &mut bottom, &mut size) };
        self.caller_bottom.set(bottom);
        self.caller_size.set(size);
    }

    /// The fiber, about to switch back to its poller (`finished`: for
    /// good, so its fake stack is not kept).
    #[inline]
    pub(crate) fn leave_fiber(&self, finished: bool) {
        let slot = if finished {
            std::ptr::null_mut()
        } else {
            self.fake.as_ptr()
        };
        // SAFETY: announces the switch to the poller's stack, whose bounds
        // were learnt on arrival.
        unsafe {
            __sanitizer_start_switch_fiber(slot, self.caller_bottom.get(), self.caller_size.get())
        };
    }
}
