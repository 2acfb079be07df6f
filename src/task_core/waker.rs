//! The `Waker` of a task: a pointer to its header with one reference.
//! All tasks share one `RawWakerVTable`; scheduling and deallocation go
//! through the task's own vtable.

use super::RawTask;
use super::core::Header;
use super::state::{TransitionToNotifiedByRef, TransitionToNotifiedByVal};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::{RawWaker, RawWakerVTable, Waker};

static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_waker, wake_by_val, wake_by_ref, drop_waker);

/// A waker borrowing the caller's reference (never dropped).
///
/// # Safety
///
/// The task stays alive while the returned waker is in use.
pub(super) unsafe fn waker_ref(ptr: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(ptr.as_ptr() as *const (), &WAKER_VTABLE);
    // SAFETY: the vtable's functions uphold the `RawWaker` contract for a
    // header pointer; `ManuallyDrop` keeps us from releasing a reference we
    // do not own.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

fn header<'a>(ptr: *const ()) -> &'a Header {
    // SAFETY: every waker of this vtable holds a reference (or borrows one)
    // to a live task whose header `ptr` points to.
    unsafe { &*(ptr as *const Header) }
}

/// # Safety
///
/// `ptr` is the header of a live task whose reference this waker holds
/// (or borrows): the `RawWakerVTable` contract, as for the three below.
unsafe fn clone_waker(ptr: *const ()) -> RawWaker {
    header(ptr).state.ref_inc();
    RawWaker::new(ptr, &WAKER_VTABLE)
}

/// # Safety
///
/// As `clone_waker`; the waker's reference is consumed.
unsafe fn wake_by_val(ptr: *const ()) {
    let h = header(ptr);
    // SAFETY: `ptr` is non-null (it came from a `NonNull<Header>`).
    let nn = unsafe { NonNull::new_unchecked(ptr as *mut Header) };
    match h.state.transition_to_notified_by_val() {
        // SAFETY: our reference moves into the submitted entry.
        TransitionToNotifiedByVal::Submit => unsafe { (h.vtable.schedule)(nn) },
        // SAFETY: ours was the last reference.
        TransitionToNotifiedByVal::Dealloc => unsafe { (h.vtable.dealloc)(nn) },
        TransitionToNotifiedByVal::DoNothing => {}
    }
}

/// # Safety
///
/// As `clone_waker`.
unsafe fn wake_by_ref(ptr: *const ()) {
    let h = header(ptr);
    match h.state.transition_to_notified_by_ref() {
        TransitionToNotifiedByRef::Submit => {
            // SAFETY: `ptr` came from a `NonNull<Header>`.
            let nn = unsafe { NonNull::new_unchecked(ptr as *mut Header) };
            // SAFETY: the transition took a fresh reference for the entry.
            unsafe { (h.vtable.schedule)(nn) }
        }
        TransitionToNotifiedByRef::DoNothing => {}
    }
}

/// # Safety
///
/// As `clone_waker`; the waker's reference is consumed.
unsafe fn drop_waker(ptr: *const ()) {
    // SAFETY: `ptr` is a task's non-null header, and the waker's reference
    // is ours to give up.
    unsafe { RawTask::from_raw(NonNull::new_unchecked(ptr as *mut Header)).drop_reference() }
}
