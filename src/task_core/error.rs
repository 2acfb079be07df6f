//! `JoinError`: why a task produced no output.

use crate::util::SyncWrapper;
use std::any::Any;
use std::fmt;

/// The error a [`JoinHandle`](crate::JoinHandle) returns when its task did
/// not run to completion: it was cancelled (by
/// [`abort`](crate::JoinHandle::abort) or runtime shutdown) or it panicked.
///
/// # Examples
///
/// ```
/// let rt = fiber_runtime::Runtime::new().unwrap();
/// let err = rt
///     .block_on(rt.spawn(async { panic!("boom") }))
///     .unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), "task panicked with message \"boom\"");
/// ```
pub struct JoinError {
    repr: Repr,
}

enum Repr {
    Cancelled,
    /// Boxed once more so that `JoinError` is one word: a task's output
    /// slot holds `Result<T, JoinError>`, and for small `T` this keeps it
    /// at two words (the panic path pays one allocation).
    #[allow(clippy::box_collection)]
    Panic(Box<SyncWrapper<Box<dyn Any + Send + 'static>>>),
}

impl JoinError {
    pub(crate) fn cancelled() -> JoinError {
        JoinError {
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            repr: Repr::Panic(Box::new(SyncWrapper::new(payload))),
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
        matches!(self.repr, Repr::Cancelled)
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
        matches!(self.repr, Repr::Panic(_))
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
        match self.repr {
            Repr::Panic(p) => Ok((*p).into_inner()),
            repr => Err(JoinError { repr }),
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

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("task was cancelled"),
            Repr::Panic(p) => match panic_message(p) {
                Some(msg) => write!(f, "task panicked with message {msg:?}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("JoinError::Cancelled"),
            Repr::Panic(p) => match panic_message(p) {
                Some(msg) => write!(f, "JoinError::Panic({msg:?})"),
                None => f.write_str("JoinError::Panic(..)"),
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
