//! `JoinError`: why a task produced no output.

use super::Id;
use crate::util::SyncWrapper;
use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// The error a [`JoinHandle`](crate::JoinHandle) returns when its task did
/// not run to completion: it was cancelled (by
/// [`abort`](crate::JoinHandle::abort) or runtime shutdown) or it panicked.
///
/// A panic's error says whether a task or a fiber panicked, its id and
/// its name (given with [`task::Builder`](crate::task::Builder) or
/// [`fiber::Builder`](crate::fiber::Builder)), and the panic's message.
///
/// # Examples
///
/// ```
/// let rt = fiber_runtime::Runtime::new().unwrap();
/// let h = rt.spawn(async { panic!("boom") });
/// let id = h.id();
/// let err = rt.block_on(h).unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), format!("task {id} panicked with message \"boom\""));
///
/// let err = rt.block_on(async {
///     let h = fiber_runtime::fiber::Builder::new()
///         .name("loader")
///         .spawn(|| panic!("no file"))
///         .unwrap();
///     let id = h.id();
///     let err = h.await.unwrap_err();
///     assert_eq!(
///         err.to_string(),
///         format!("fiber \"loader\" (id {id}) panicked with message \"no file\"")
///     );
///     err
/// });
/// assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "no file");
/// ```
pub struct JoinError {
    repr: Repr,
}

/// Cancelled, or a boxed [`Panicked`]: one pointer, boxed so that
/// `JoinError` is one word (a task's output slot holds `Result<T,
/// JoinError>`; the panic path pays one allocation). Cancelled is the
/// address of a static, not null, so that null stays free for the
/// `Result`: for `T = ()` (the output of most detached tasks) the slot is
/// then one word too, not two.
struct Repr {
    ptr: NonNull<Panicked>,
    /// It owns the box (for the auto traits and drop check).
    _owns: PhantomData<Box<Panicked>>,
}

/// What `Repr::ptr` points to for a cancellation (never read).
static CANCELLED: u8 = 0;

// SAFETY: a `Repr` owns its `Panicked` exactly as a `Box` would (nothing
// else points to it), and `Panicked` is `Send + Sync`.
unsafe impl Send for Repr {}
// SAFETY: as above.
unsafe impl Sync for Repr {}

impl Repr {
    fn cancelled_ptr() -> NonNull<Panicked> {
        NonNull::from(&CANCELLED).cast()
    }

    fn cancelled() -> Repr {
        Repr {
            ptr: Repr::cancelled_ptr(),
            _owns: PhantomData,
        }
    }

    fn panic(p: Box<Panicked>) -> Repr {
        Repr {
            // A heap allocation: never the static's address.
            ptr: NonNull::from(Box::leak(p)),
            _owns: PhantomData,
        }
    }

    /// The panic, if it is one.
    fn panicked(&self) -> Option<&Panicked> {
        if self.ptr == Repr::cancelled_ptr() {
            return None;
        }
        // SAFETY: not the sentinel, so the box `panic` leaked, owned by
        // us until dropped.
        Some(unsafe { self.ptr.as_ref() })
    }

    /// The box of a panic, or the cancellation back.
    fn into_panicked(self) -> Result<Box<Panicked>, Repr> {
        if self.panicked().is_none() {
            return Err(self);
        }
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: the box `panic` leaked, whose ownership leaves `self`
        // (forgotten) for the new box.
        Ok(unsafe { Box::from_raw(ptr.as_ptr()) })
    }
}

impl Drop for Repr {
    fn drop(&mut self) {
        if self.panicked().is_some() {
            // SAFETY: the box `panic` leaked; dropped once, here.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
    }
}

/// What a panic's error carries.
struct Panicked {
    payload: SyncWrapper<Box<dyn Any + Send + 'static>>,
    id: Id,
    name: Option<String>,
    fiber: bool,
}

/// A fiber's panic payload on its way from the fiber to its task's poll,
/// which makes the `JoinError` (see [`fiber_panic`]).
struct FiberPanic(Box<dyn Any + Send + 'static>);

/// Marks `payload` as a fiber's panic, re-raised by the fiber's task
/// future: the task's `JoinError` then says "fiber" (and holds `payload`
/// itself, unwrapped).
pub(crate) fn fiber_panic(payload: Box<dyn Any + Send + 'static>) -> Box<dyn Any + Send + 'static> {
    Box::new(FiberPanic(payload))
}

impl JoinError {
    pub(crate) fn cancelled() -> JoinError {
        JoinError {
            repr: Repr::cancelled(),
        }
    }

    /// The panic of the task or fiber `id` (named `name`); a payload
    /// marked by [`fiber_panic`] is a fiber's.
    pub(crate) fn panic(
        payload: Box<dyn Any + Send + 'static>,
        id: Id,
        name: Option<&str>,
    ) -> JoinError {
        let (payload, fiber) = match payload.downcast::<FiberPanic>() {
            Ok(fiber) => (fiber.0, true),
            Err(payload) => (payload, false),
        };
        JoinError {
            repr: Repr::panic(Box::new(Panicked {
                payload: SyncWrapper::new(payload),
                id,
                name: name.map(String::from),
                fiber,
            })),
        }
    }

    /// Returns `true` if the task was cancelled before it finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.spawn(std::future::pending::<()>());
    /// handle.abort();
    /// assert!(rt.block_on(handle).unwrap_err().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.repr.panicked().is_none()
    }

    /// Returns `true` if the task panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let err = rt.block_on(rt.spawn(async { panic!("boom") })).unwrap_err();
    /// assert!(err.is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        self.repr.panicked().is_some()
    }

    /// Returns the panic payload, to re-raise it with
    /// [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// Panics if the error is not a panic (see [`try_into_panic`](Self::try_into_panic)).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let err = rt.block_on(rt.spawn(async { panic!("boom") })).unwrap_err();
    /// let payload = err.into_panic();
    /// assert_eq!(*payload.downcast_ref::<&str>().unwrap(), "boom");
    /// ```
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .expect("`JoinError::into_panic` called on an error that is not a panic")
    }

    /// Returns the panic payload, or the error itself if it is not a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let handle = rt.spawn(std::future::pending::<()>());
    /// handle.abort();
    /// let err = rt.block_on(handle).unwrap_err();
    /// assert!(err.try_into_panic().is_err());
    /// ```
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr.into_panicked() {
            Ok(p) => Ok(p.payload.into_inner()),
            Err(repr) => Err(JoinError { repr }),
        }
    }
}

fn panic_message<'a>(payload: &'a SyncWrapper<Box<dyn Any + Send + 'static>>) -> Option<&'a str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        payload.downcast_ref::<String>().map(String::as_str)
    }
}

impl fmt::Display for Panicked {
    /// `task 7`, `fiber "loader" (id 7)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.fiber { "fiber" } else { "task" };
        match &self.name {
            Some(name) => write!(f, "{kind} {name:?} (id {})", self.id),
            None => write!(f, "{kind} {}", self.id),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr.panicked() {
            None => f.write_str("task was cancelled"),
            Some(p) => match panic_message(&p.payload) {
                Some(msg) => write!(f, "{p} panicked with message {msg:?}"),
                None => write!(f, "{p} panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr.panicked() {
            None => f.write_str("JoinError::Cancelled"),
            Some(p) => match panic_message(&p.payload) {
                Some(msg) => write!(f, "JoinError::Panic({p}, {msg:?})"),
                None => write!(f, "JoinError::Panic({p}, ..)"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_join_error_is_one_word_and_a_fiber_panic_is_unwrapped() {
        assert_eq!(
            std::mem::size_of::<JoinError>(),
            std::mem::size_of::<usize>()
        );
        // The output slot of a task returning `()`: one word too.
        assert_eq!(
            std::mem::size_of::<Result<(), JoinError>>(),
            std::mem::size_of::<usize>()
        );
        assert!(JoinError::cancelled().is_cancelled());
        assert!(JoinError::cancelled().try_into_panic().is_err());
        let id = Id::next();
        let err = JoinError::panic(fiber_panic(Box::new("boom")), id, Some("f"));
        assert_eq!(
            err.to_string(),
            format!("fiber \"f\" (id {id}) panicked with message \"boom\"")
        );
        assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "boom");
        let err = JoinError::panic(Box::new(3u8), id, None);
        assert_eq!(
            format!("{err:?}"),
            format!("JoinError::Panic(task {id}, ..)")
        );
    }
}
