//! `JoinSet`: a group of tasks and fibers, joined as they finish.
//!
//! Each member keeps its `JoinHandle` in a slot of the set and gets a
//! waker of its own that, when its task finishes, queues the slot's index
//! on the set's ready queue and wakes whoever waits on the set. So
//! `join_next` polls only the members that finished (or that were just
//! added, once, to register their waker), never all of them.
//!
//! A waker of a member that already left (its slot reused) may still
//! queue that index: the poll it causes is spurious and harmless (the new
//! member's handle is `Pending` and keeps its own waker).

use crate::JoinHandle;
use crate::loom::{AtomicBool, Mutex};
use crate::task_core::{AbortHandle, JoinError};
use crate::util::AtomicWaker;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};

/// A set of tasks and fibers that yields their outputs as they finish.
///
/// [`spawn`](JoinSet::spawn) adds a task, [`spawn_fiber`](JoinSet::spawn_fiber)
/// a fiber; [`join_next`](JoinSet::join_next) (or, in a fiber or on a plain
/// thread, [`blocking_join_next`](JoinSet::blocking_join_next)) returns the
/// output of the next one to finish, in completion order, and `None` once
/// the set is empty. Dropping the set aborts every member still in it;
/// [`abort_all`](JoinSet::abort_all) aborts them and keeps them in the set,
/// whose `join_next` then returns their cancellation errors.
///
/// # Examples
///
/// ```
/// use fiber_runtime::{fiber, task::JoinSet, time::Duration};
///
/// fiber_runtime::block_on(async {
///     let mut set = JoinSet::new();
///     for i in 0..3u64 {
///         set.spawn(async move { i });
///         set.spawn_fiber(move || {
///             fiber::sleep(Duration::from_millis(1));
///             10 + i
///         });
///     }
///     let mut seen = Vec::new();
///     while let Some(res) = set.join_next().await {
///         seen.push(res.unwrap());
///     }
///     seen.sort();
///     assert_eq!(seen, [0, 1, 2, 10, 11, 12]);
/// });
/// ```
pub struct JoinSet<T> {
    slots: Vec<Option<Member<T>>>,
    free: Vec<usize>,
    len: usize,
    shared: Arc<Shared>,
}

struct Member<T> {
    handle: JoinHandle<T>,
    waker: Arc<MemberWaker>,
}

struct Shared {
    /// Indices of members to poll: finished, or new.
    ready: Mutex<VecDeque<usize>>,
    /// Whoever waits in `join_next`.
    waiter: AtomicWaker,
}

struct MemberWaker {
    shared: Arc<Shared>,
    index: usize,
    /// Already in the ready queue (so a second wake adds nothing).
    queued: AtomicBool,
}

impl Wake for MemberWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.ready.lock().push_back(self.index);
            self.shared.waiter.wake();
        }
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = fiber_runtime::task::JoinSet::<()>::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> JoinSet<T> {
        JoinSet {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            shared: Arc::new(Shared {
                ready: Mutex::new(VecDeque::new()),
                waiter: AtomicWaker::new(),
            }),
        }
    }

    /// How many members the set holds (finished ones included, until
    /// joined).
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let mut set = fiber_runtime::task::JoinSet::new();
    ///     set.spawn(async {});
    ///     assert_eq!(set.len(), 1);
    ///     set.join_next().await;
    ///     assert_eq!(set.len(), 0);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no member.
    ///
    /// # Examples
    ///
    /// See [`len`](JoinSet::len).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a task or fiber spawned elsewhere, by its handle; returns its
    /// [`AbortHandle`].
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let mut set = fiber_runtime::task::JoinSet::new();
    ///     set.insert(fiber_runtime::spawn(async { 5 }));
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 5);
    /// });
    /// ```
    pub fn insert(&mut self, handle: JoinHandle<T>) -> AbortHandle {
        let abort = handle.abort_handle();
        let index = self.free.pop().unwrap_or(self.slots.len());
        let waker = Arc::new(MemberWaker {
            shared: self.shared.clone(),
            index,
            // Queued below: a new member is polled once, to register.
            queued: AtomicBool::new(true),
        });
        let member = Some(Member { handle, waker });
        if index == self.slots.len() {
            self.slots.push(member);
        } else {
            self.slots[index] = member;
        }
        self.len += 1;
        self.shared.ready.lock().push_back(index);
        self.shared.waiter.wake();
        abort
    }

    /// Aborts every member; they stay in the set until joined, and
    /// `join_next` returns a cancellation error for each that had not
    /// finished.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let mut set = fiber_runtime::task::JoinSet::new();
    ///     set.spawn(std::future::pending::<()>());
    ///     set.abort_all();
    ///     assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort_all(&mut self) {
        for m in self.slots.iter().flatten() {
            m.handle.abort();
        }
    }

    /// Aborts every member and waits until all have finished; the set is
    /// empty afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let mut set = fiber_runtime::task::JoinSet::new();
    ///     set.spawn_fiber(|| fiber_runtime::fiber::sleep(std::time::Duration::from_secs(60)));
    ///     set.shutdown().await;
    ///     assert!(set.is_empty());
    /// });
    /// ```
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }

    /// Waits for the next member to finish and returns its output; `None`
    /// if the set is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped before it completes, no
    /// output is lost; the member stays in the set.
    ///
    /// # Examples
    ///
    /// See [`JoinSet`].
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// Polls for the next member to finish (as [`join_next`](JoinSet::join_next)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    ///
    /// fiber_runtime::block_on(async {
    ///     let mut set = fiber_runtime::task::JoinSet::new();
    ///     set.spawn(async { 1 });
    ///     let first = poll_fn(|cx| set.poll_join_next(cx)).await;
    ///     assert_eq!(first.unwrap().unwrap(), 1);
    /// });
    /// ```
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        if self.len == 0 {
            return Poll::Ready(None);
        }
        // Registered before looking, so a member finishing meanwhile wakes us.
        self.shared.waiter.register(cx.waker());
        match self.next_ready(Some(cx)) {
            Some(res) => Poll::Ready(Some(res)),
            None => Poll::Pending,
        }
    }

    /// The output of a member that has finished, if any, without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// fiber_runtime::block_on(async {
    ///     let mut set = fiber_runtime::task::JoinSet::<u8>::new();
    ///     assert!(set.try_join_next().is_none());
    ///     set.spawn(std::future::pending());
    ///     assert!(set.try_join_next().is_none());
    /// });
    /// ```
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.next_ready(None)
    }

    /// Polls the queued members (each at most once) until one is ready.
    /// `cx`: the caller's context, for the cooperative budget; `None`: no
    /// budget is spent (`try_join_next`).
    fn next_ready(&mut self, cx: Option<&mut Context<'_>>) -> Option<Result<T, JoinError>> {
        if let Some(cx) = cx
            && crate::task_core::coop::poll_proceed(cx).is_pending()
        {
            return None;
        }
        let queued = self.shared.ready.lock().len();
        for _ in 0..queued {
            let Some(index) = self.shared.ready.lock().pop_front() else {
                break;
            };
            let Some(Some(member)) = self.slots.get_mut(index) else {
                continue;
            };
            // Cleared before the poll: a wake from here on queues it again.
            member.waker.queued.store(false, Ordering::Release);
            let waker = Waker::from(member.waker.clone());
            let mut mcx = Context::from_waker(&waker);
            // The member's own poll must not be refused for budget (it
            // would wake itself, and this loop would spin): run it outside.
            let res = crate::task_core::coop::unconstrained(|| {
                Pin::new(&mut member.handle).poll(&mut mcx)
            });
            if let Poll::Ready(res) = res {
                self.slots[index] = None;
                self.free.push(index);
                self.len -= 1;
                return Some(res);
            }
        }
        crate::task_core::coop::refund();
        None
    }

    /// Waits in blocking style for the next member to finish: suspends a
    /// fiber, blocks a plain thread; `None` if the set is empty.
    ///
    /// # Panics
    ///
    /// Panics in an async task (`.await` [`join_next`](JoinSet::join_next)
    /// there).
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::task::JoinSet;
    ///
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let mut set = JoinSet::new();
    /// set.spawn(async { 1 });
    /// set.spawn_fiber(|| 2);
    /// let mut sum = 0;
    /// while let Some(res) = set.blocking_join_next() {
    ///     sum += res.unwrap();
    /// }
    /// assert_eq!(sum, 3);
    /// ```
    #[track_caller]
    pub fn blocking_join_next(&mut self) -> Option<Result<T, JoinError>> {
        crate::wait::wait(
            self.join_next(),
            "JoinSet::blocking_join_next",
            "`.await` `JoinSet::join_next`",
        )
    }
}

impl<T: Send + 'static> JoinSet<T> {
    /// Spawns `future` as a task on the current runtime and adds it.
    ///
    /// # Panics
    ///
    /// Panics if there is no current runtime (as [`spawn`](crate::spawn)).
    ///
    /// # Examples
    ///
    /// See [`JoinSet`].
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.insert(crate::spawn(future))
    }

    /// Spawns `f` as a fiber on the current runtime and adds it.
    ///
    /// # Panics
    ///
    /// As [`fiber::spawn`](crate::fiber::spawn).
    ///
    /// # Examples
    ///
    /// See [`JoinSet`].
    #[track_caller]
    pub fn spawn_fiber<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
    {
        self.insert(crate::fiber::spawn(f))
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    /// Aborts every member still in the set (they finish in the
    /// background; nothing waits for them here).
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len).finish()
    }
}
