//! `SyncWrapper`: makes a `Send` value `Sync` by never handing out `&T`
//! across threads.

/// Holds a `T: Send` and is `Sync` because shared references to it give no
/// access to the value: only `&mut self` and `self` methods reach it.
pub(crate) struct SyncWrapper<T> {
    value: T,
}

// SAFETY: `&SyncWrapper<T>` exposes nothing of `T` except through `downcast_ref`,
// which yields only `Sync` types; all other access needs ownership or `&mut`, which
// `Send` already covers.
unsafe impl<T: Send> Sync for SyncWrapper<T> {}

impl<T> SyncWrapper<T> {
    pub(crate) fn new(value: T) -> Self {
        SyncWrapper { value }
    }

    pub(crate) fn into_inner(self) -> T {
        self.value
    }
}

impl SyncWrapper<Box<dyn std::any::Any + Send>> {
    /// Shared access to the payload as a `Sync` type `T`, if it is one:
    /// sharing `&T` between threads is sound because `T: Sync`.
    pub(crate) fn downcast_ref<T: std::any::Any + Sync>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }
}
