//! What each thread keeps for the fibers it runs: its stack pools (one
//! per stack size) and the registry of the fibers it started and that
//! have not finished (so that runtime shutdown can unwind them, on this
//! thread, before its worker exits).
//!
//! Both are thread-locals with destructors, so every access tolerates
//! their being gone (the thread is exiting): a stack freed then is simply
//! unmapped, and a registry that is gone has nothing left to unwind.

use super::context::{self, BlockedIn, Cancel, ControlBlock, NoCapture, Phase};
use super::stack::{self, Stack, StackHistogram, StackPool, UNMEASURED};
use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::io;

/// Warm stacks a pool keeps with their pages when its thread idles.
const POOL_RETAIN: usize = 1024;

/// The bytes below the stack pointer a function may use without moving it
/// (x86_64 System V; aarch64 has none).
const RED_ZONE: usize = 128;

/// The fibers a thread started and that have not finished.
struct Registry {
    list: Vec<*const ControlBlock>,
    /// How many of them each runtime has: `(runtime id, count)`, usually
    /// one entry.
    per_runtime: Vec<(usize, usize)>,
}

impl Registry {
    fn count(&mut self, runtime_id: usize, delta: isize) {
        match self
            .per_runtime
            .iter()
            .position(|&(id, _)| id == runtime_id)
        {
            Some(i) => {
                let n = &mut self.per_runtime[i].1;
                *n = n.wrapping_add_signed(delta);
                if *n == 0 {
                    self.per_runtime.swap_remove(i);
                }
            }
            None => {
                debug_assert_eq!(delta, 1);
                self.per_runtime.push((runtime_id, 1));
            }
        }
    }
}

thread_local! {
    /// Stacks for fibers of this thread, one pool per stack size.
    static POOLS: RefCell<Vec<StackPool>> = const { RefCell::new(Vec::new()) };
    /// Started, unfinished fibers owned by this thread.
    static STARTED: RefCell<Registry> = const {
        RefCell::new(Registry { list: Vec::new(), per_runtime: Vec::new() })
    };
}

/// A stack of `size` usable bytes from this thread's pool for that size.
///
/// # Errors
///
/// The mapping error (`StackPool::alloc`), or an error saying the thread
/// is exiting.
pub(crate) fn alloc_stack(size: usize) -> io::Result<Stack> {
    // Stacks come only from here: a fiber on a stack of ours is reported
    // by name if it overflows.
    super::overflow::install_handler();
    POOLS
        .try_with(|p| {
            let mut pools = p.borrow_mut();
            let i = match pools.iter().position(|pool| pool.serves(size)) {
                Some(i) => i,
                None => {
                    pools.push(StackPool::new(size, POOL_RETAIN));
                    pools.len() - 1
                }
            };
            pools[i].alloc()
        })
        .unwrap_or_else(|_| Err(io::Error::other("the thread is exiting")))
}

/// Gives a stack back to this thread's pool for its size if it came from
/// there; otherwise (another thread's, or at thread exit when the pool is
/// gone) drops it, unmapping its mapping once none of its stacks is left.
pub(crate) fn free_stack(stack: Stack) {
    let _ = POOLS.try_with(|p| {
        if let Ok(mut pools) = p.try_borrow_mut() {
            if let Some(pool) = pools.iter_mut().find(|pool| pool.accepts(&stack)) {
                pool.free(stack);
            }
        }
    });
}

/// Gives back the pages of this thread's surplus free stacks, and
/// measures the high-water marks of stacks used since their last
/// measurement into `hist` (the thread is about to idle; `stack.rs`).
pub(crate) fn trim(hist: &StackHistogram) {
    let _ = POOLS.try_with(|p| {
        if let Ok(mut pools) = p.try_borrow_mut() {
            pools.iter_mut().for_each(|pool| pool.trim(hist));
        }
    });
}

/// What a dump learns of one fiber, on its owner thread.
#[derive(Debug)]
pub(crate) struct FiberReport {
    /// Its task's id.
    pub(crate) id: u64,
    /// It runs: it is the fiber that asked for the report.
    pub(crate) running: bool,
    /// The blocking-style call it is inside, if any.
    pub(crate) blocked_in: Option<BlockedIn>,
    /// How deep its stack went (`None` if the kernel would not say).
    pub(crate) stack: Option<StackUse>,
    /// Its backtrace, walked on its own stack.
    pub(crate) backtrace: Result<Backtrace, NoCapture>,
}

/// How deep a fiber's stack went (`stack.rs`, "High-water marks").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackUse {
    /// Bytes from the top down to the deepest resident page.
    pub(crate) high_water: usize,
    /// The stack's usable size.
    pub(crate) size: usize,
    /// Whether `high_water` is this fiber's own; otherwise an earlier
    /// user of the stack may have touched some of it (an upper bound).
    pub(crate) exact: bool,
}

/// Reports every fiber of runtime `runtime_id` this thread started that
/// has not finished: its state, stack depth and backtrace (capturing
/// each suspended one on its own stack, `context.rs`; the first `max`
/// only, the others get `NoCapture::Skipped`). Runs none of the fibers'
/// code; the caller may be inside one of them (which then reports itself
/// as running) or inside any task's poll.
pub(crate) fn report_started(runtime_id: usize, max: usize) -> Vec<FiberReport> {
    let fibers: Vec<*const ControlBlock> = STARTED
        .try_with(|s| {
            let s = s.borrow();
            s.list
                .iter()
                .copied()
                // SAFETY: registered fibers are alive (`cancel_all`).
                .filter(|&f| unsafe { (*f).runtime_id } == runtime_id)
                .collect()
        })
        .unwrap_or_default();
    let current = context::with_current(|c| c.map_or(std::ptr::null(), |c| c as *const _));
    fibers
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            // SAFETY: registered, so alive; and nothing below finishes or
            // frees it (no fiber code runs, only captures), so it stays
            // registered and alive for this iteration.
            let cb = unsafe { &*f };
            report(cb, std::ptr::eq(f, current), i < max)
        })
        .collect()
}

/// The report of the fiber of task `id`, if this thread started it and it
/// has not finished: as [`report_started`] for that one fiber (captured on
/// its own stack if it is suspended). For the long-poll report of a
/// fiber, taken after its long run (a running stack cannot be walked from
/// another thread).
pub(crate) fn report_fiber(id: u64) -> Option<FiberReport> {
    let fiber = STARTED
        .try_with(|s| {
            s.borrow()
                .list
                .iter()
                .copied()
                // SAFETY: registered fibers are alive (`cancel_all`).
                .find(|&f| unsafe { (*f).id } == id)
        })
        .ok()
        .flatten()?;
    let current = context::with_current(|c| c.map_or(std::ptr::null(), |c| c as *const _));
    // SAFETY: registered, so alive; nothing below runs fiber code (only a
    // capture), so it stays registered and alive meanwhile.
    let cb = unsafe { &*fiber };
    Some(report(cb, std::ptr::eq(fiber, current), true))
}

/// The report of one registered fiber; `running`: it is the one running
/// this code; `walk`: capture its backtrace.
fn report(cb: &ControlBlock, running: bool, walk: bool) -> FiberReport {
    let bottom = cb.guard.1 as *mut u8;
    let top = cb.stack_top as *mut u8;
    let before = stack::resident_extent(bottom, top).ok();
    let backtrace = if !walk {
        Err(NoCapture::Skipped)
    } else if running {
        // On its own stack already, with room for the walk?
        let here = super::arch::stack_pointer();
        if here.saturating_sub(cb.guard.1) < context::CAPTURE_HEADROOM {
            Err(NoCapture::NoRoom)
        } else {
            std::panic::catch_unwind(Backtrace::force_capture).map_err(|_| NoCapture::Failed)
        }
    } else if cb.phase() == Phase::Suspended {
        // SAFETY: owner thread (registered here), alive (above), and not
        // running (suspended; the running one, if any, is `current`).
        unsafe { cb.capture() }
    } else {
        Err(NoCapture::NotSuspended)
    };
    if let (Some(extent), false, true) = (before, running, walk) {
        // The walk ran below the fiber's suspension point, maybe on pages
        // it never touched: give those back, so that the high-water mark
        // stays the fiber's own. Only pages that were not resident before
        // (below the deepest one that was), and only below its stack
        // pointer and red zone (a page swapped out reads as not resident,
        // and may hold live frames above it): dead memory either way.
        let page = stack::page_size();
        let dead = cb.suspended_sp().saturating_sub(RED_ZONE) & !(page - 1);
        let below = (top as usize - extent).min(dead);
        if below > cb.guard.1 {
            // SAFETY: `[bottom, below)` lies under the fiber's stack
            // pointer and red zone, so holds none of its frames: dead
            // memory of its stack's mapping; DONTNEED only drops those
            // pages (they read back as zeros).
            unsafe { libc::madvise(bottom.cast(), below - cb.guard.1, libc::MADV_DONTNEED) };
        }
    }
    let size = cb.stack_top - cb.guard.1;
    FiberReport {
        id: cb.id,
        running,
        blocked_in: cb.blocked_in(),
        stack: before.map(|high_water| StackUse {
            high_water,
            size,
            exact: cb.stack_baseline != UNMEASURED && high_water > cb.stack_baseline,
        }),
        backtrace,
    }
}

/// Registers a fiber this thread just started.
pub(crate) fn register(cb: &ControlBlock) {
    let _ = STARTED.try_with(|s| {
        let mut s = s.borrow_mut();
        cb.registry_index.set(s.list.len());
        s.list.push(cb);
        s.count(cb.runtime_id, 1);
    });
}

/// How many fibers of runtime `runtime_id` this thread started that have
/// not finished.
pub(crate) fn started_here(runtime_id: usize) -> usize {
    STARTED
        .try_with(|s| {
            let s = s.borrow();
            s.per_runtime
                .iter()
                .find(|&&(id, _)| id == runtime_id)
                .map_or(0, |&(_, n)| n)
        })
        .unwrap_or(0)
}

/// Removes a fiber from this thread's registry in O(1): it knows its
/// index, and the entry moved into its place learns its new one.
pub(crate) fn unregister(cb: &ControlBlock) {
    let index = cb.registry_index.get();
    let ptr: *const ControlBlock = cb;
    let _ = STARTED.try_with(|s| {
        let mut s = s.borrow_mut();
        if index < s.list.len() && s.list[index] == ptr {
            s.list.swap_remove(index);
            if let Some(&moved) = s.list.get(index) {
                // SAFETY: registered fibers are alive and not running (the
                // caller is the poller or canceller of the one removed).
                unsafe { (*moved).registry_index.set(index) };
            }
            s.count(cb.runtime_id, -1);
        }
    });
}

/// Cancels every fiber of runtime `runtime_id` suspended on this thread
/// (runtime shutdown, from the owner worker before it exits). A fiber
/// that will not unwind is left suspended; its `FiberFuture` leaks it.
pub(crate) fn cancel_all(runtime_id: usize) {
    loop {
        let next = STARTED.try_with(|s| {
            let s = s.borrow();
            // SAFETY: registered fibers are alive (their task is alive
            // until the runtime finalizes, after this) and not running
            // (only the running one could be, and it is not calling this).
            s.list
                .iter()
                .rposition(|&f| unsafe { (*f).runtime_id } == runtime_id)
                .map(|i| s.list[i])
        });
        let Ok(Some(f)) = next else { break };
        // SAFETY: as above; the fiber is owned by this thread (only the
        // owner registers a fiber in its list).
        let f = unsafe { &*f };
        unregister(f);
        // SAFETY: as above: owner thread, suspended, alive.
        if unsafe { f.cancel() } == Cancel::GaveUp {
            report_gave_up(f);
        }
    }
}

/// Says on stderr that a fiber would not unwind and is leaked.
pub(crate) fn report_gave_up(f: &ControlBlock) {
    if f.draining_scope.get() {
        eprintln!(
            "fiber-runtime: fiber {} was cancelled inside `fiber::scope` while children that \
             borrow from its stack were still running; it is left suspended for good and its \
             stack is leaked, so that they never touch freed memory",
            f.display_name()
        );
        return;
    }
    eprintln!(
        "fiber-runtime: fiber {} caught its cancellation and kept running every time it was \
         raised again; it is left suspended for good and its stack is leaked (do not catch \
         the unwind of a cancelled fiber)",
        f.display_name()
    );
}
