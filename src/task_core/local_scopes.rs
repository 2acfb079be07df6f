//! The task-local scopes entered on this thread, so that a fiber's follow
//! it across its switches; and, with the feature "tracing", the spans it
//! entered (`util/trace.rs`), which follow it the same way.
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
//!
//! What a suspended fiber has entered is its [`Entered`] (kept in its
//! control block); what its poller had is the [`Outer`] that [`enter`]
//! returns and [`leave`] takes back.

#[cfg(feature = "tracing")]
use crate::util::trace;
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

/// What a fiber has entered while it does not run: its task-local scopes
/// (innermost first; null if none) and its spans (feature "tracing").
pub(crate) struct Entered {
    list: *const Node,
    #[cfg(feature = "tracing")]
    spans: trace::SavedSpans,
}

impl Default for Entered {
    fn default() -> Entered {
        Entered {
            list: ptr::null(),
            #[cfg(feature = "tracing")]
            spans: trace::SavedSpans::default(),
        }
    }
}

/// What the poller had entered when a fiber was resumed.
pub(crate) struct Outer {
    head: *const Node,
    #[cfg(feature = "tracing")]
    span: trace::Marker,
}

/// Called before a fiber runs: swaps in the scopes it is inside and
/// enters its spans again (`fiber`, from its last [`leave`]), making them
/// this thread's; returns what to give back to [`leave`].
///
/// # Safety
///
/// `fiber` is what `leave` left for this fiber, whose frames (holding
/// the nodes) are alive and suspended.
#[inline]
pub(crate) unsafe fn enter(fiber: &mut Entered) -> Outer {
    let list = fiber.list;
    if !list.is_null() {
        // SAFETY: the caller's contract.
        unsafe { swap_outermost_first(list) };
    }
    Outer {
        head: HEAD.try_with(|h| h.replace(list)).unwrap_or(ptr::null()),
        #[cfg(feature = "tracing")]
        span: trace::enter_saved(&mut fiber.spans),
    }
}

/// Called when a fiber switched out: exits its spans and swaps its scopes
/// out, restores `outer` (what [`enter`] returned) and records in
/// `fiber` what it had entered, for `enter` when it runs again.
#[inline]
pub(crate) fn leave(outer: Outer, fiber: &mut Entered) {
    #[cfg(feature = "tracing")]
    trace::exit_above(outer.span, &mut fiber.spans);
    let list = HEAD
        .try_with(|h| h.replace(outer.head))
        .unwrap_or(ptr::null());
    let mut n = list;
    while !n.is_null() {
        // SAFETY: the nodes of a suspended fiber's list live in its
        // frames, alive until it runs again (`push`).
        unsafe {
            ((*n).swap)(n);
            n = (*n).next.get();
        }
    }
    fiber.list = list;
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
