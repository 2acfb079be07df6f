//! The task-local scopes entered on this thread, so that a fiber's follow
//! it across its switches.
//!
//! A task-local value is reached through a per-thread pointer
//! (`local.rs`). Entering a scope swaps the pointer to the new value and
//! keeps the old one in a [`Node`] in the scope's frame; leaving swaps it
//! back. For a task that is enough: a scope entered in a poll is left
//! before that poll returns. A fiber, though, may suspend inside a scope,
//! and the next task or fiber of its worker must not see its value. So
//! the nodes entered on a thread form a list (innermost first), and the
//! fiber poller (`fiber/context.rs`, `resume`) gives each fiber a list
//! of its own: when the fiber switches out, [`leave`] swaps each of its
//! scopes out, innermost first (the pointers are back to what the poller
//! saw); when it is resumed, [`enter`] swaps them in again, outermost
//! first. A swap exchanges the thread's pointer with the node's, so
//! doing it twice is a no-op, and a fiber resumed under other values
//! keeps them as its scopes' "previous" values.
//!
//! Values never move while in scope and are only ever shared (`&T`), so
//! swapping pointers never invalidates a reference a suspended fiber
//! holds.

use std::cell::Cell;
use std::ptr;

/// A scope's record, in the scope's frame (pinned there while linked).
pub(crate) struct Node {
    /// Exchanges the thread's pointer with the one this node keeps.
    swap: unsafe fn(*const Node),
    next: Cell<*const Node>,
}

thread_local! {
    /// The innermost scope entered on this thread (by the code running
    /// now: a fiber's own list while it runs).
    static HEAD: Cell<*const Node> = const { Cell::new(ptr::null()) };
}

impl Node {
    /// # Safety
    ///
    /// `swap` is called with a pointer to this node only, and may cast it
    /// to the struct that embeds it (which must start with the node,
    /// `#[repr(C)]`).
    pub(crate) const unsafe fn new(swap: unsafe fn(*const Node)) -> Node {
        Node {
            swap,
            next: Cell::new(ptr::null()),
        }
    }
}

/// Links `node` as the innermost scope (its value is already swapped in).
///
/// # Safety
///
/// `node` stays where it is until [`pop`] unlinks it, which happens
/// before anything else linked after it is unlinked in turn (scopes nest).
pub(crate) unsafe fn push(node: &Node) {
    let _ = HEAD.try_with(|h| {
        node.next.set(h.get());
        h.set(node);
    });
}

/// Unlinks `node`, the innermost scope.
pub(crate) fn pop(node: &Node) {
    let _ = HEAD.try_with(|h| {
        debug_assert!(
            ptr::eq(h.get(), node),
            "task-local scopes left out of order"
        );
        h.set(node.next.get());
    });
}

/// Called before a fiber runs: swaps in the scopes it is inside
/// (`list`, from its last [`leave`]; null if none) and makes them this
/// thread's list; returns the list to give back to [`leave`].
///
/// # Safety
///
/// `list` is what `leave` returned for this fiber, whose frames (holding
/// the nodes) are alive and suspended.
#[inline]
pub(crate) unsafe fn enter(list: *const Node) -> *const Node {
    if !list.is_null() {
        // SAFETY: the caller's contract.
        unsafe { swap_outermost_first(list) };
    }
    HEAD.try_with(|h| h.replace(list)).unwrap_or(ptr::null())
}

/// Called when a fiber switched out: swaps its scopes out, restores
/// `outer` (what [`enter`] returned) and returns the fiber's list, to
/// pass to `enter` when it runs again.
#[inline]
pub(crate) fn leave(outer: *const Node) -> *const Node {
    let list = HEAD.try_with(|h| h.replace(outer)).unwrap_or(ptr::null());
    let mut n = list;
    while !n.is_null() {
        // SAFETY: the nodes of a suspended fiber's list live in its
        // frames, alive until it runs again (`push`).
        unsafe {
            ((*n).swap)(n);
            n = (*n).next.get();
        }
    }
    list
}

/// # Safety
///
/// As [`enter`].
unsafe fn swap_outermost_first(n: *const Node) {
    // SAFETY: the caller's contract; scopes nest a few deep, so the
    // recursion is shallow.
    unsafe {
        let next = (*n).next.get();
        if !next.is_null() {
            swap_outermost_first(next);
        }
        ((*n).swap)(n);
    }
}
