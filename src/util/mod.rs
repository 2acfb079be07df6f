//! Small helpers with no runtime knowledge.

mod sync_wrapper;
pub(crate) use sync_wrapper::SyncWrapper;

mod rand;
pub(crate) use rand::FastRand;

mod cache_padded;
pub(crate) use cache_padded::CachePadded;

mod thread_token;
pub(crate) use thread_token::thread_token;

pub(crate) mod linked_list;

mod atomic_waker;
pub(crate) use atomic_waker::AtomicWaker;

mod wake_list;
pub(crate) use wake_list::WakeList;

pub(crate) mod trace;

pub(crate) mod clock;
