//! Scoped fibers and tasks: children that may borrow from the caller's
//! stack, because [`scope`] returns only after every one of them is gone.
//!
//! # Why it is sound
//!
//! A child borrows data that outlives the scope (`'env`), so it may run
//! only while the frame of the `scope` call is alive: the frame sits
//! above every `'env` borrow on the caller's stack. The children are
//! spawned as ordinary `'static` fibers and tasks with their lifetimes
//! erased, and everything rests on one count:
//!
//! - Each child is a [`Child`] value (a fiber's closure or a task's
//!   future) whose **last** field is a [`Done`] token. The token is
//!   dropped after everything else the child owns, whether the child ran
//!   to the end, panicked, was cancelled while suspended, or was dropped
//!   before it ever ran. Dropping it decrements `running` and wakes the
//!   scope. So `running == 0` means that no child can touch borrowed
//!   data any more: each has either finished or been dropped.
//!   (Its result, which may borrow too, sits in a `Packet` that lives no
//!   longer than the `'scope`-bound handle or the child.)
//! - `scope` does not leave its frame, by returning or by unwinding, until
//!   `running == 0`. Each way out:
//!   1. **The closure returns** or **panics**: the panic is caught, the
//!      scope waits, then returns or re-raises it (the closure's panic
//!      first, else the first unjoined child's).
//!   2. **The parent fiber is aborted, or its runtime dropped**, while it
//!      waits in the scope (or while the closure waits): its cancellation
//!      is an unwind raised at the suspension point (`context.rs`). The
//!      scope catches it, aborts every child, and waits again; the
//!      canceller raises it again there, and the scope re-raises it to go
//!      on unwinding only once `running == 0`. If the children are still
//!      running after the canceller's attempts (the children of other
//!      workers need time; those of this worker cannot run while it
//!      cancels), the canceller gives up: the parent stays suspended for
//!      good and its stack is never freed or reused (`Cancel::GaveUp`).
//!      That leaks the stack, and a line on stderr says so, but the
//!      borrowed data stays valid for as long as any child still runs.
//!      At runtime shutdown the ordinary tasks are cancelled first, so
//!      the children that are tasks are gone by then.
//!   3. **A child is aborted**: it is dropped or unwound like any fiber or
//!      task; its token goes last. Its handle reports the cancellation.
//!   4. **Called where waiting is refused** (an async task on a worker):
//!      `scope` panics before spawning anything.
//!
//! The ways this can block for good, not unsound but worth knowing: a
//! child that catches its own cancellation a hundred times is leaked
//! suspended with its token, so its scope never returns; a scope on a
//! plain thread whose children's current-thread runtime is dropped on
//! another thread (which leaks those fibers) waits for ever; a scope run
//! by a destructor while its fiber unwinds blocks the thread, so children
//! on the same worker cannot finish.

use crate::loom::{Arc, AtomicUsize, Mutex};
use crate::task_core::{AbortHandle, JoinError, JoinHandle};
use crate::util::AtomicWaker;
use crate::wait;
use std::any::Any;
use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

/// Runs `f` with a [`Scope`] on which it can spawn fibers and tasks that
/// borrow anything outliving the call; returns `f`'s result once every
/// one of them has finished.
///
/// Usable inside a fiber (the wait suspends it) and on a plain thread
/// (the wait blocks it; spawning needs a current runtime, see
/// [`Runtime::enter`](crate::Runtime::enter)). If `f` panics, the scope
/// still waits for the children, then re-raises the panic; if a child
/// panics and its handle was not joined, the scope re-raises that panic
/// when it is done (as `std::thread::scope`).
///
/// If the calling fiber is cancelled (aborted, or its runtime dropped)
/// while in the scope, the children are aborted and the scope waits for
/// them before its frame goes (the module doc has the argument).
///
/// # Panics
///
/// Panics if called from an async task on a runtime thread (the wait
/// would stall the worker; spawn a fiber there and call it inside), and
/// re-raises the panics above.
///
/// # Examples
///
/// ```
/// use fiber_runtime::fiber;
///
/// fiber_runtime::block_on(async {
///     fiber::spawn(|| {
///         let mut slots = vec![0u64; 8];
///         let label = String::from("sum");
///         fiber::scope(|s| {
///             for (i, slot) in slots.iter_mut().enumerate() {
///                 s.spawn(move || *slot = i as u64 * 10);
///             }
///             s.spawn_task(async { assert_eq!(label, "sum") });
///         });
///         assert_eq!(slots.iter().sum::<u64>(), 280);
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[track_caller]
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    // Refused before anything is spawned (case 4).
    wait::caller("fiber::scope", "spawn a fiber and call it there", |_| ());
    let scope = Scope {
        state: Arc::new(State {
            running: AtomicUsize::new(0),
            waiter: AtomicWaker::new(),
            children: Mutex::new(Vec::new()),
            panic: Mutex::new(None),
        }),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    let cancelled = matches!(&result, Err(p) if p.is::<super::context::ForcedUnwind>());
    scope.state.wait_for_children(cancelled);
    match result {
        Err(payload) => panic::resume_unwind(payload),
        Ok(r) => {
            if let Some(payload) = scope.state.panic.lock().take() {
                panic::resume_unwind(payload);
            }
            r
        }
    }
}

/// What the children of a scope share with it.
struct State {
    /// Children not yet finished or dropped.
    running: AtomicUsize,
    /// The scope, waiting for `running` to reach 0.
    waiter: AtomicWaker,
    /// To abort them if the scope is cancelled.
    children: Mutex<Vec<AbortHandle>>,
    /// The first panic of a child whose handle did not take it.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl State {
    /// Returns once `running == 0`, whatever unwinds meanwhile (module
    /// doc, case 2). `cancelled`: the caller is being cancelled already.
    fn wait_for_children(&self, mut cancelled: bool) {
        let mut forced: Option<Box<dyn Any + Send>> = None;
        loop {
            if cancelled {
                for c in self.children.lock().iter() {
                    c.abort();
                }
                // A cancelled fiber's waits do not poll: look here.
                if self.running.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
            let all_done = poll_fn(|cx| {
                self.waiter.register(cx.waker());
                if self.running.load(Ordering::Acquire) == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            match panic::catch_unwind(AssertUnwindSafe(|| {
                wait::wait(all_done, "fiber::scope", "spawn a fiber and call it there")
            })) {
                Ok(()) => break,
                Err(payload) => {
                    // The caller is being cancelled: abort the children
                    // and wait again; go on unwinding once they are gone.
                    cancelled = true;
                    super::context::with_current(|cb| {
                        if let Some(cb) = cb {
                            cb.draining_scope.set(true);
                        }
                    });
                    forced.get_or_insert(payload);
                }
            }
        }
        if let Some(payload) = forced {
            panic::resume_unwind(payload);
        }
    }
}

/// The token each child drops last (module doc).
struct Done(Arc<State>);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.waiter.wake();
        }
    }
}

/// Where a child leaves its result for its handle.
struct Packet<T> {
    result: Mutex<Option<std::thread::Result<T>>>,
    state: Arc<State>,
}

impl<T> Drop for Packet<T> {
    fn drop(&mut self) {
        // A panic nobody joined goes to the scope, which re-raises it.
        if let Some(Err(payload)) = self.result.lock().take() {
            self.state.panic.lock().get_or_insert(payload);
        }
    }
}

/// A child: its work first, then its packet, then its token, which the
/// field order drops last (module doc).
struct Child<W, T> {
    work: W,
    packet: Arc<Packet<T>>,
    done: Done,
}

impl<F: FnOnce() -> T, T> Child<F, T> {
    fn run(self) {
        // Bound in this order so that an unwind drops them in reverse:
        // the work, then the packet, then the token.
        let done = self.done;
        let packet = self.packet;
        let work = self.work;
        match panic::catch_unwind(AssertUnwindSafe(work)) {
            // A cancellation goes on unwinding (it is not the child's panic).
            Err(p) if p.is::<super::context::ForcedUnwind>() => panic::resume_unwind(p),
            r => *packet.result.lock() = Some(r),
        }
        drop(packet);
        drop(done);
    }
}

impl<Fut: Future<Output = T>, T> Future for Child<Pin<Box<Fut>>, T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let res = panic::catch_unwind(AssertUnwindSafe(|| self.work.as_mut().poll(cx)));
        let r = match res {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(p) => Err(p),
        };
        *self.packet.result.lock() = Some(r);
        // The rest (the future, the packet, the token, in field order) is
        // dropped with the task, right after this poll.
        Poll::Ready(())
    }
}

/// The scope of a [`scope`] call, to spawn children on.
pub struct Scope<'scope, 'env: 'scope> {
    state: Arc<State>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope, 'env> Scope<'scope, 'env> {
    fn child<W, T>(&'scope self, work: W) -> (Child<W, T>, Arc<Packet<T>>) {
        self.state.running.fetch_add(1, Ordering::AcqRel);
        let packet = Arc::new(Packet {
            result: Mutex::new(None),
            state: self.state.clone(),
        });
        let child = Child {
            work,
            packet: packet.clone(),
            done: Done(self.state.clone()),
        };
        (child, packet)
    }

    fn handle<T>(
        &'scope self,
        join: JoinHandle<()>,
        packet: Arc<Packet<T>>,
        fiber: bool,
    ) -> ScopedJoinHandle<'scope, T> {
        self.state.children.lock().push(join.abort_handle());
        ScopedJoinHandle {
            join,
            packet,
            fiber,
            _scope: PhantomData,
        }
    }

    /// Spawns a fiber that may borrow from outside the scope.
    ///
    /// # Panics
    ///
    /// As [`fiber::spawn`](super::spawn): without a current runtime, or
    /// if no stack can be had.
    ///
    /// # Examples
    ///
    /// See [`scope`].
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let (child, packet) = self.child(f);
        let run: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || child.run());
        // SAFETY: only the lifetime changes. The closure, and all it
        // borrows, is run or dropped before its `Done` token is dropped,
        // and `scope` does not return before every token is (module doc).
        let run: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(run) };
        let join = super::spawn(run);
        self.handle(join, packet, true)
    }

    /// Spawns a task that may borrow from outside the scope.
    ///
    /// # Panics
    ///
    /// Without a current runtime (as [`spawn`](crate::spawn)).
    ///
    /// # Examples
    ///
    /// See [`scope`].
    #[track_caller]
    pub fn spawn_task<F, T>(&'scope self, future: F) -> ScopedJoinHandle<'scope, T>
    where
        F: Future<Output = T> + Send + 'scope,
        T: Send + 'scope,
    {
        let (child, packet) = self.child(Box::pin(future));
        let fut: Pin<Box<dyn Future<Output = ()> + Send + 'scope>> = Box::pin(child);
        // SAFETY: as in `spawn`: the future, and all it borrows, is
        // dropped before its `Done` token, and `scope` outlasts the tokens.
        let fut: Pin<Box<dyn Future<Output = ()> + Send + 'static>> =
            unsafe { std::mem::transmute(fut) };
        let join = crate::spawn(fut);
        self.handle(join, packet, false)
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.state.running.load(Ordering::Relaxed))
            .finish()
    }
}

/// The handle of a fiber or task spawned on a [`Scope`].
pub struct ScopedJoinHandle<'scope, T> {
    join: JoinHandle<()>,
    packet: Arc<Packet<T>>,
    /// A fiber's (else a task's), for the `JoinError`.
    fiber: bool,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the child in blocking style (suspends a fiber, blocks a
    /// plain thread) and returns its output, or a [`JoinError`] if it
    /// panicked (the scope then does not re-raise that panic) or was
    /// cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::fiber;
    ///
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let data = [1, 2, 3];
    /// let sum = fiber::scope(|s| {
    ///     let h = s.spawn(|| data.iter().sum::<i32>());
    ///     let bad = s.spawn(|| -> i32 { panic!("no") });
    ///     assert!(bad.join().unwrap_err().is_panic()); // taken: not re-raised
    ///     h.join().unwrap()
    /// });
    /// assert_eq!(sum, 6);
    /// ```
    #[track_caller]
    pub fn join(self) -> Result<T, JoinError> {
        let id = self.join.id();
        self.join.join()?;
        match self.packet.result.lock().take() {
            Some(Ok(v)) => Ok(v),
            Some(Err(payload)) => {
                let payload = if self.fiber {
                    crate::task_core::fiber_panic(payload)
                } else {
                    payload
                };
                Err(JoinError::panic(payload, id, None))
            }
            None => Err(JoinError::cancelled()),
        }
    }

    /// Cancels the child, as [`JoinHandle::abort`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::fiber;
    ///
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// fiber::scope(|s| {
    ///     let h = s.spawn(|| fiber::sleep(std::time::Duration::from_secs(60)));
    ///     h.abort();
    ///     assert!(h.join().unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort(&self) {
        self.join.abort();
    }

    /// Whether the child has finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use fiber_runtime::fiber;
    ///
    /// let rt = fiber_runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// fiber::scope(|s| {
    ///     let h = s.spawn(|| fiber::sleep(std::time::Duration::from_secs(60)));
    ///     assert!(!h.is_finished());
    ///     h.abort();
    /// });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
