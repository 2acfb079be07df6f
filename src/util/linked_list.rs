//! An intrusive doubly linked list: the nodes live wherever their owner
//! keeps them (a pinned future, a fiber's stack), so linking one allocates
//! nothing. The list owns no node; it only points at them.
//!
//! # Safety
//!
//! The list is a set of raw pointers, and its users uphold, under the lock
//! that guards the list:
//!
//! 1. A node is in at most one list at a time, and is not moved or freed
//!    while linked (its owner is pinned, and unlinks it before it goes:
//!    the `Drop` of a waiting future removes its node).
//! 2. A node's `Pointers` are touched only through the list, under that
//!    lock.
//!
//! (As in tokio's `util/linked_list.rs`, whose shape this follows.)

use std::marker::PhantomPinned;
use std::ptr::NonNull;

/// How the list finds the links of a node.
///
/// # Safety
///
/// `pointers` returns the `Pointers` embedded in the node `target` points
/// to, for every node; the node type is `!Unpin` (it embeds `Pointers`), so
/// that a pinned owner keeps it in place while linked.
pub(crate) unsafe trait Link {
    type Node;

    /// The links inside `node`.
    ///
    /// # Safety
    ///
    /// `node` points to a live node.
    unsafe fn pointers(node: NonNull<Self::Node>) -> NonNull<Pointers<Self::Node>>;
}

/// The links a node embeds.
pub(crate) struct Pointers<T> {
    prev: Option<NonNull<T>>,
    next: Option<NonNull<T>>,
    /// A linked node must not move (module doc, rule 1).
    _pinned: PhantomPinned,
}

impl<T> Pointers<T> {
    pub(crate) fn new() -> Pointers<T> {
        Pointers {
            prev: None,
            next: None,
            _pinned: PhantomPinned,
        }
    }
}

impl<T> std::fmt::Debug for Pointers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pointers").finish_non_exhaustive()
    }
}

/// The list: first and last node.
pub(crate) struct LinkedList<L: Link> {
    head: Option<NonNull<L::Node>>,
    tail: Option<NonNull<L::Node>>,
}

// SAFETY: the list only holds pointers; who may touch the nodes is
// governed by the lock its users keep it under (module doc).
unsafe impl<L: Link> Send for LinkedList<L> where L::Node: Send {}
// SAFETY: as above.
unsafe impl<L: Link> Sync for LinkedList<L> where L::Node: Sync {}

impl<L: Link> LinkedList<L> {
    pub(crate) const fn new() -> LinkedList<L> {
        LinkedList {
            head: None,
            tail: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// The first node, if any.
    pub(crate) fn front(&self) -> Option<NonNull<L::Node>> {
        self.head
    }

    /// Links `node` at the back.
    ///
    /// # Safety
    ///
    /// `node` is live, not in any list, and stays put until unlinked
    /// (module doc).
    pub(crate) unsafe fn push_back(&mut self, node: NonNull<L::Node>) {
        // SAFETY: the caller's contract: `node` is live and ours to link.
        unsafe {
            let p = L::pointers(node).as_ptr();
            (*p).next = None;
            (*p).prev = self.tail;
            match self.tail {
                Some(tail) => (*L::pointers(tail).as_ptr()).next = Some(node),
                None => self.head = Some(node),
            }
        }
        self.tail = Some(node);
    }

    /// Unlinks and returns the first node.
    pub(crate) fn pop_front(&mut self) -> Option<NonNull<L::Node>> {
        let head = self.head?;
        // SAFETY: a linked node is live (module doc, rule 1).
        unsafe { self.remove(head) };
        Some(head)
    }

    /// Unlinks `node`; returns `false` if it was not in this list.
    ///
    /// # Safety
    ///
    /// `node` is live, and in this list or in none.
    pub(crate) unsafe fn remove(&mut self, node: NonNull<L::Node>) -> bool {
        // SAFETY: the caller's contract; its neighbours are linked, so
        // live (rule 1).
        unsafe {
            let p = L::pointers(node).as_ptr();
            match (*p).prev {
                Some(prev) => {
                    debug_assert_eq!((*L::pointers(prev).as_ptr()).next, Some(node));
                    (*L::pointers(prev).as_ptr()).next = (*p).next;
                }
                None => {
                    if self.head != Some(node) {
                        // Not linked: neither first nor after anything.
                        return false;
                    }
                    self.head = (*p).next;
                }
            }
            match (*p).next {
                Some(next) => (*L::pointers(next).as_ptr()).prev = (*p).prev,
                None => {
                    debug_assert_eq!(self.tail, Some(node));
                    self.tail = (*p).prev;
                }
            }
            (*p).prev = None;
            (*p).next = None;
        }
        true
    }

    /// Whether `node` is linked (in this list, by the contract), in O(1).
    ///
    /// # Safety
    ///
    /// `node` is live, and in this list or in none.
    pub(crate) unsafe fn is_linked(&self, node: NonNull<L::Node>) -> bool {
        // SAFETY: the caller's contract: `node` is live.
        let prev = unsafe { (*L::pointers(node).as_ptr()).prev };
        // Every linked node but the first has a `prev`.
        prev.is_some() || self.head == Some(node)
    }

    /// The node after `node`.
    ///
    /// # Safety
    ///
    /// `node` is live and in this list.
    pub(crate) unsafe fn next(&self, node: NonNull<L::Node>) -> Option<NonNull<L::Node>> {
        // SAFETY: the caller's contract.
        unsafe { (*L::pointers(node).as_ptr()).next }
    }
}

impl<L: Link> std::fmt::Debug for LinkedList<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedList")
            .field("empty", &self.is_empty())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;

    struct Node {
        value: u32,
        pointers: UnsafeCell<Pointers<Node>>,
    }

    struct L;

    // SAFETY: `pointers` returns the node's own links.
    unsafe impl Link for L {
        type Node = Node;
        unsafe fn pointers(node: NonNull<Node>) -> NonNull<Pointers<Node>> {
            // SAFETY: the caller's contract: the node is live.
            unsafe { NonNull::new_unchecked((*node.as_ptr()).pointers.get()) }
        }
    }

    fn node(value: u32) -> Box<Node> {
        Box::new(Node {
            value,
            pointers: UnsafeCell::new(Pointers::new()),
        })
    }

    fn values(list: &LinkedList<L>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = list.front();
        while let Some(n) = cur {
            // SAFETY: linked nodes are the boxes below, alive.
            unsafe {
                out.push((*n.as_ptr()).value);
                cur = list.next(n);
            }
        }
        out
    }

    #[test]
    fn push_pop_and_remove_keep_the_order() {
        let nodes: Vec<_> = (0..5).map(node).collect();
        let ptrs: Vec<NonNull<Node>> = nodes.iter().map(|n| NonNull::from(&**n)).collect();
        let mut list = LinkedList::<L>::new();
        for &p in &ptrs {
            // SAFETY: each box is alive for the test and linked once.
            unsafe { list.push_back(p) };
        }
        assert_eq!(values(&list), [0, 1, 2, 3, 4]);
        // SAFETY: linked nodes of this list, alive.
        unsafe {
            assert!(ptrs.iter().all(|&p| list.is_linked(p)));
            assert!(list.remove(ptrs[2]));
            assert!(!list.is_linked(ptrs[2]));
            assert!(!list.remove(ptrs[2]), "removed twice");
            assert!(list.remove(ptrs[4]));
            assert!(list.remove(ptrs[0]));
        }
        assert_eq!(values(&list), [1, 3]);
        assert_eq!(list.pop_front(), Some(ptrs[1]));
        assert_eq!(list.pop_front(), Some(ptrs[3]));
        assert!(list.pop_front().is_none());
        assert!(list.is_empty());
        // An unlinked node reports so.
        // SAFETY: alive, in no list.
        assert!(!unsafe { list.remove(ptrs[1]) });
        // SAFETY: as above.
        assert!(!unsafe { list.is_linked(ptrs[0]) });
    }
}
