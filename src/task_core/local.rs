//! `task_local!`: a value set for the extent of a future or a closure.
//!
//! Each key is a thread-local pointer to the value in scope (null: none).
//! `scope` keeps the value in its future and points the thread at it for
//! each poll; `sync_scope` keeps it on the stack for the closure's call.
//! Inside a fiber a scope may span a suspension: the fiber's scopes follow
//! it (`local_scopes.rs`), so the other code of its worker never sees them.

use super::local_scopes::{self, Node};
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Declares task-local keys: values set for the extent of a future
/// ([`LocalKey::scope`]) or a closure ([`LocalKey::sync_scope`]) and read
/// with [`LocalKey::with`], as in tokio.
///
/// A scope entered in a fiber stays that fiber's across its suspensions;
/// the worker's other tasks and fibers do not see it. For a value that
/// every fiber has its own copy of without a scope, see
/// [`fiber_local!`](crate::fiber_local).
///
/// # Examples
///
/// ```
/// fiber_runtime::task_local! {
///     static REQUEST_ID: u64;
/// }
///
/// async fn handle() -> u64 {
///     REQUEST_ID.get() * 2
/// }
///
/// fiber_runtime::block_on(async {
///     let doubled = REQUEST_ID.scope(21, handle()).await;
///     assert_eq!(doubled, 42);
///     assert!(REQUEST_ID.try_with(|_| ()).is_err()); // out of scope
/// });
/// ```
#[macro_export]
macro_rules! task_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::task::LocalKey<$t> = {
            ::std::thread_local! {
                static __SLOT: ::std::cell::Cell<*const $t> =
                    const { ::std::cell::Cell::new(::std::ptr::null()) };
            }
            $crate::task::LocalKey::__new(&__SLOT)
        };
        $crate::task_local!($($rest)*);
    };
}

/// A key declared by [`task_local!`](crate::task_local).
pub struct LocalKey<T: 'static> {
    slot: &'static std::thread::LocalKey<Cell<*const T>>,
}

/// The error of [`LocalKey::try_with`] outside any scope of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessError {
    _private: (),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task-local value not set")
    }
}

impl std::error::Error for AccessError {}

/// A scope's record: the node (first, see `Node::new`), the key, and the
/// pointer swapped out.
#[repr(C)]
struct Record<T: 'static> {
    node: Node,
    slot: &'static std::thread::LocalKey<Cell<*const T>>,
    stash: Cell<*const T>,
}

impl<T: 'static> Record<T> {
    fn new(slot: &'static std::thread::LocalKey<Cell<*const T>>, value: *const T) -> Record<T> {
        Record {
            // SAFETY: `swap::<T>` casts the node back to this `#[repr(C)]`
            // record, whose first field it is.
            node: unsafe { Node::new(swap::<T>) },
            slot,
            stash: Cell::new(value),
        }
    }

    /// Points the thread at the value and links the record until the
    /// returned guard is dropped (which leaves the scope).
    fn enter(&self) -> Entered<'_, T> {
        self.swap();
        // SAFETY: the record is borrowed by the guard, so it stays in
        // place until the guard unlinks it; guards live in nested frames,
        // so they are dropped in nesting order.
        unsafe { local_scopes::push(&self.node) };
        Entered(self)
    }

    fn swap(&self) {
        let _ = self.slot.try_with(|s| {
            let cur = s.replace(self.stash.get());
            self.stash.set(cur);
        });
    }
}

/// Leaves a scope entered by [`Record::enter`].
struct Entered<'a, T: 'static>(&'a Record<T>);

impl<T: 'static> Drop for Entered<'_, T> {
    fn drop(&mut self) {
        local_scopes::pop(&self.0.node);
        self.0.swap();
    }
}

/// # Safety
///
/// `n` is the node of a live `Record<T>`.
unsafe fn swap<T: 'static>(n: *const Node) {
    // SAFETY: the caller's contract; the node is the record's first field.
    unsafe { (*n.cast::<Record<T>>()).swap() }
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn __new(slot: &'static std::thread::LocalKey<Cell<*const T>>) -> LocalKey<T> {
        LocalKey { slot }
    }

    /// Runs `future` with the key set to `value` for every one of its
    /// polls; the returned future gives back `future`'s output.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::task_local! { static USER: String; }
    ///
    /// fiber_runtime::block_on(async {
    ///     USER.scope("ann".to_string(), async {
    ///         fiber_runtime::yield_now().await;
    ///         USER.with(|u| assert_eq!(u, "ann"));
    ///     })
    ///     .await;
    /// });
    /// ```
    pub fn scope<F: Future>(&'static self, value: T, future: F) -> TaskLocalFuture<T, F> {
        TaskLocalFuture {
            key: self,
            value: Some(value),
            future,
        }
    }

    /// Runs `f` with the key set to `value`; returns what `f` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::task_local! { static DEPTH: u32; }
    ///
    /// let got = DEPTH.sync_scope(1, || DEPTH.sync_scope(2, || DEPTH.get()) + DEPTH.get());
    /// assert_eq!(got, 3);
    /// ```
    pub fn sync_scope<R>(&'static self, value: T, f: impl FnOnce() -> R) -> R {
        let record = Record::new(self.slot, &value);
        let _entered = record.enter();
        f()
    }

    /// Calls `f` with the value in scope.
    ///
    /// # Panics
    ///
    /// Panics if called outside any scope of this key (use
    /// [`try_with`](LocalKey::try_with) to find out instead).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::task_local! { static NAME: &'static str; }
    ///
    /// NAME.sync_scope("x", || NAME.with(|n| assert_eq!(*n, "x")));
    /// ```
    #[track_caller]
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(r) => r,
            Err(_) => panic!(
                "a task-local value was read outside its scope: `with` and `get` need an \
                 enclosing `LocalKey::scope` or `sync_scope` (use `try_with` to check)"
            ),
        }
    }

    /// Calls `f` with the value in scope, or returns [`AccessError`]
    /// outside any scope of this key.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::task_local! { static N: u8; }
    ///
    /// assert!(N.try_with(|n| *n).is_err());
    /// assert_eq!(N.sync_scope(4, || N.try_with(|n| *n)), Ok(4));
    /// ```
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        let p = self
            .slot
            .try_with(Cell::get)
            .map_err(|_| AccessError { _private: () })?;
        if p.is_null() {
            return Err(AccessError { _private: () });
        }
        // SAFETY: a non-null pointer is the value of a scope entered on
        // this thread by the code running now (`local_scopes.rs`), which
        // lives in that scope's frame or future, unmoved and only shared,
        // until the scope is left, after `f` returns.
        Ok(f(unsafe { &*p }))
    }
}

impl<T: Clone + 'static> LocalKey<T> {
    /// A clone of the value in scope.
    ///
    /// # Panics
    ///
    /// Outside any scope of this key, as [`with`](LocalKey::with).
    ///
    /// # Examples
    ///
    /// See [`task_local!`](crate::task_local).
    #[track_caller]
    pub fn get(&'static self) -> T {
        self.with(T::clone)
    }
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("LocalKey { .. }")
    }
}

/// The future of [`LocalKey::scope`].
pub struct TaskLocalFuture<T: 'static, F> {
    key: &'static LocalKey<T>,
    /// Taken when `future` completes (dropped then, so its destructor runs
    /// out of scope, as in tokio).
    value: Option<T>,
    future: F,
}

impl<T: 'static, F: Future> Future for TaskLocalFuture<T, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned (never moved out; dropped
        // in place with `self`); `value` is not pinned, but is only moved
        // out after `future` completed, while not in scope.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(value) = this.value.as_ref() else {
            panic!("`TaskLocalFuture` polled after completion");
        };
        let record = Record::new(this.key.slot, value);
        let entered = record.enter();
        // SAFETY: as above.
        let res = unsafe { Pin::new_unchecked(&mut this.future) }.poll(cx);
        drop(entered);
        if res.is_ready() {
            this.value = None;
        }
        res
    }
}

impl<T: 'static + fmt::Debug, F> fmt::Debug for TaskLocalFuture<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLocalFuture")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}
