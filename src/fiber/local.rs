//! `fiber_local!`: one value per fiber.
//!
//! A fiber's values live in its control block (`context.rs`, `locals`),
//! at the index its key took on first use, boxed so that growing the list
//! never moves them; they are dropped by the fiber's entry when its
//! closure is done (or unwound), still on the fiber. Outside any fiber a
//! key falls back to a value per thread.

use super::context;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Declares fiber-local keys: every fiber sees its own value, made by the
/// initialiser on the fiber's first access and dropped when the fiber
/// ends. Code that runs outside any fiber (an async task, a plain thread)
/// gets one value per thread instead, as with `thread_local!`.
///
/// (As may's `coroutine_local!`.) A fiber never migrates, so a value can
/// hold `!Send` data too.
///
/// # Examples
///
/// ```
/// use fiber_runtime::fiber;
/// use std::cell::Cell;
///
/// fiber_runtime::fiber_local! {
///     static COUNTER: Cell<u32> = Cell::new(0);
/// }
///
/// fiber_runtime::block_on(async {
///     let a = fiber::spawn(|| {
///         COUNTER.with(|c| c.set(c.get() + 1));
///         fiber::yield_now();
///         COUNTER.with(|c| c.get())
///     });
///     let b = fiber::spawn(|| COUNTER.with(|c| c.get()));
///     assert_eq!(a.await.unwrap(), 1);
///     assert_eq!(b.await.unwrap(), 0); // b has its own
/// });
/// ```
#[macro_export]
macro_rules! fiber_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::fiber::LocalKey<$t> = {
            fn __init() -> $t {
                $init
            }
            ::std::thread_local! {
                static __THREAD: $t = __init();
            }
            $crate::fiber::LocalKey::__new(__init, &__THREAD)
        };
        $crate::fiber_local!($($rest)*);
    };
}

/// A key declared by [`fiber_local!`](crate::fiber_local).
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    thread: &'static std::thread::LocalKey<T>,
    /// 1 + the index of this key in every fiber's list (0: not yet taken).
    index: AtomicUsize,
}

/// Keys taken so far.
static KEYS: AtomicUsize = AtomicUsize::new(0);

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn __new(init: fn() -> T, thread: &'static std::thread::LocalKey<T>) -> LocalKey<T> {
        LocalKey {
            init,
            thread,
            index: AtomicUsize::new(0),
        }
    }

    fn index(&self) -> usize {
        let i = self.index.load(Ordering::Acquire);
        if i != 0 {
            return i - 1;
        }
        let mine = KEYS.fetch_add(1, Ordering::Relaxed) + 1;
        match self
            .index
            .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => mine - 1,
            // Another thread took one first (ours is wasted: harmless).
            Err(theirs) => theirs - 1,
        }
    }

    /// Calls `f` with this fiber's value (made now if it has none yet);
    /// outside a fiber, with this thread's.
    ///
    /// # Panics
    ///
    /// Outside a fiber, if the thread's value was already destroyed (as
    /// `std::thread::LocalKey::with`). An initialiser that reads its own
    /// key recursively panics too.
    ///
    /// # Examples
    ///
    /// See [`fiber_local!`](crate::fiber_local).
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let value = context::with_current(|cb| {
            let cb = cb?;
            let index = self.index();
            let existing = {
                let locals = cb.locals.borrow();
                locals.get(index).and_then(Option::as_ref).map(|b| {
                    b.downcast_ref::<T>().expect("fiber-local of another type") as *const T
                })
            };
            Some(existing.unwrap_or_else(|| {
                // Made with no borrow held: the initialiser may use other keys.
                let boxed: Box<dyn std::any::Any> = Box::new((self.init)());
                let mut locals = cb.locals.borrow_mut();
                if locals.len() <= index {
                    locals.resize_with(index + 1, || None);
                }
                assert!(
                    locals[index].is_none(),
                    "a fiber-local's initialiser read the same key"
                );
                let p = boxed
                    .downcast_ref::<T>()
                    .expect("fiber-local of another type") as *const T;
                locals[index] = Some(boxed);
                p
            }))
        });
        match value {
            // SAFETY: the value is boxed in the running fiber's list, which
            // only drops it when the fiber's closure is done (after `f`
            // returns: `f` runs on the fiber), and never moves the box's
            // contents; it is only shared.
            Some(p) => f(unsafe { &*p }),
            None => self.thread.with(f),
        }
    }
}

impl<T: 'static> std::fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad("LocalKey { .. }")
    }
}
