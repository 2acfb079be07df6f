//! `CachePadded<T>`: keeps a hot, frequently written value on cache lines
//! of its own, so that writes to it do not evict its neighbours from other
//! cores' caches (false sharing). 128 bytes: x86_64 prefetches line pairs,
//! and aarch64 big cores use 128-byte lines.

use std::ops::Deref;

#[repr(align(128))]
#[derive(Default, Debug)]
pub(crate) struct CachePadded<T>(T);

impl<T> CachePadded<T> {
    pub(crate) const fn new(value: T) -> Self {
        CachePadded(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
