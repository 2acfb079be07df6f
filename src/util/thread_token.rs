//! A cheap, never reused identifier of the current thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// This thread's token: non-zero, unique for the process's life (unlike
/// addresses), and cheaper than `std::thread::current().id()`, which
/// clones an `Arc`. (A plain std atomic: only ever handed out, never
/// part of a protocol the loom models check.)
#[inline]
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN
        .try_with(|t| match t.get() {
            0 => {
                let id = NEXT.fetch_add(1, Relaxed);
                t.set(id);
                id
            }
            id => id,
        })
        // A thread-local without destructor stays readable; this is only
        // a fallback for a platform where it would not.
        .unwrap_or(u64::MAX)
}
