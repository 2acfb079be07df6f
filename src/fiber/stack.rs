//! Fiber stacks: carved from large shared mappings, each with a guard
//! page below it, and pooled.
//!
//! A fresh `mmap` per fiber costs tens of microseconds (and one kernel
//! mapping each); a pooled stack costs a `Vec::pop`. Stacks are carved
//! `CHUNK` at a time from one anonymous mapping. The guard page under each
//! is installed with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which
//! adds no kernel mapping, so a million guarded stacks fit in the default
//! `vm.max_map_count` (65530); a chunk's guards go in with one
//! `process_madvise` where the kernel takes it (6.15+). On older kernels the fallback is `mprotect`
//! per guard page, one extra mapping per stack; running out of mappings
//! then yields an error that names `vm.max_map_count`.
//!
//! Stack memory is virtual: only touched pages cost RAM. Pooled stacks
//! beyond `retain` give their touched pages back (`MADV_DONTNEED`, one
//! call per run of adjacent stacks) when the thread idles (`trim`). A pool keeps at most `FREE_PER_RETAINED`
//! times `retain` free stacks, and only its own: a stack freed on another
//! thread, or beyond that bound, is dropped, and a mapping is unmapped
//! once none of its stacks is left.
//!
//! ```text
//!  chunk:  | guard | stack 0 ...... | guard | stack 1 ...... | ...
//!          ^ low addresses                      stacks grow down ^
//! ```
//!
//! # High-water marks
//!
//! How deep a fiber's stack went is read off the kernel's page tables:
//! the deepest resident page of the stack (`mincore`, [`resident_extent`];
//! stacks grow down from the top, and their pages are only backed once
//! touched). That counts the pages of every fiber that used the stack
//! since its pages were last given back, so each stack carries a
//! *baseline* ([`Stack::baseline`]): how far it was known to be resident
//! when handed out — 0 for a new or trimmed one, what `trim` left resident
//! of a warm one measured since its last use (at most `KEEP_WARM`),
//! unknown otherwise. A fiber whose
//! stack reaches below its baseline went exactly that deep; one that does
//! not went at most that deep (a dump says which).
//!
//! Measuring costs a system call, so nothing is measured on the spawn or
//! exit path: a stack given back is marked unmeasured, and `trim` (when
//! the thread is about to idle) measures up to `MEASURE_PER_TRIM` of the
//! unmeasured ones, recording each extent in the runtime's
//! [`StackHistogram`]. A warm stack it measured then gives back its pages
//! below the top `KEEP_WARM` bytes (which stay, so the next small fiber
//! faults nothing in), and its baseline becomes what is left. One sample
//! is thus the deepest of the fibers that used that stack since it was
//! last measured, or `KEEP_WARM` if that is more and an earlier user went
//! that deep: an upper bound for each, the right side to err on when
//! sizing stacks, and never a repeat of a deeper, earlier mark.
//!
//! Pools are per thread: a stack is measured by the thread it went back
//! to (a fiber's owner), when that thread idles, into the histogram of
//! the runtime whose worker (or `block_on`) idles there.
//!
//! # Transparent huge pages
//!
//! Each chunk is marked `MADV_NOHUGEPAGE` when it is mapped (once per
//! `CHUNK` stacks): with THP on "always", the first touch of a stack
//! could otherwise fault in a 2 MiB page spanning several stacks, which
//! costs memory, and makes `mincore` report all of it resident, so every
//! high-water mark in it would read as the whole stack. (Linux 6.7+
//! already maps `MAP_STACK` mappings so; older kernels do not.)

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The smallest fiber stack (the guard page below it is extra).
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;
/// The largest fiber stack: stacks are mapped `CHUNK` at a time, so this
/// keeps a mapping within 64 GiB of address space (and the size
/// arithmetic far from overflow).
pub(crate) const MAX_STACK_SIZE: usize = 1 << 30;
/// The default fiber stack size (virtual; only touched pages cost memory).
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// `Err(InvalidInput)` naming `setting` and the allowed range unless
/// `size` is a valid fiber stack size.
pub(crate) fn check_stack_size(setting: &str, size: usize) -> io::Result<()> {
    if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{setting} must be between {MIN_STACK_SIZE} bytes (16 KiB) and \
             {MAX_STACK_SIZE} bytes (1 GiB), got {size}"
        ),
    ))
}

/// Stacks per mapping.
const CHUNK: usize = 64;
/// `MADV_GUARD_INSTALL` (linux/mman.h), not yet in every libc crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard pages are made, found out on first use.
static GUARD_MODE: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);
const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;

/// One fiber stack: `[bottom, top)` is usable; the page below `bottom` is
/// its guard.
#[derive(Debug)]
pub(crate) struct Stack {
    bottom: *mut u8,
    top: *mut u8,
    /// The pool it came from (`StackPool::home`): only that pool takes it
    /// back.
    home: u64,
    /// How many bytes from the top were known resident when it was last
    /// measured or given back (module doc, "High-water marks"), or
    /// `UNMEASURED`.
    baseline: usize,
    /// Keeps the mapping alive while any of its stacks is (one may be
    /// dropped on another thread than the one that carved it).
    _mapping: Arc<Mapping>,
}

// SAFETY: a stack is a range of an anonymous mapping kept alive by the
// `Arc`; who may use it is governed by its owner (one fiber at a time).
unsafe impl Send for Stack {}

impl Stack {
    /// The guard page below the stack: `[start, end)`.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        let page = page_size_cached();
        (self.bottom as usize - page, self.bottom as usize)
    }

    /// The upper end (stacks grow down), 16-byte aligned.
    pub(crate) fn top(&self) -> *mut u8 {
        self.top
    }

    /// How many bytes from the top were resident before its new user got
    /// it (module doc, "High-water marks"); `UNMEASURED` if unknown.
    pub(crate) fn baseline(&self) -> usize {
        self.baseline
    }

    #[cfg(test)]
    /// The lowest usable address (just above the guard page).
    pub(crate) fn bottom(&self) -> *mut u8 {
        self.bottom
    }

    #[cfg(test)]
    /// The guard page's range.
    pub(crate) fn guard(&self, page: usize) -> (usize, usize) {
        (self.bottom as usize - page, self.bottom as usize)
    }
}

/// An anonymous mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; `Mapping` only unmaps it on drop.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access never touches the memory.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we own, and no stack of it
        // exists any more (each holds an `Arc` of the mapping).
        let r = unsafe { libc::munmap(self.ptr.cast(), self.len) };
        debug_assert_eq!(r, 0, "munmap of a fiber stack chunk failed");
    }
}

/// A pool keeps at most this many times `retain` free stacks.
const FREE_PER_RETAINED: usize = 4;

/// `Stack::baseline` of a stack used since it was last measured.
pub(crate) const UNMEASURED: usize = usize::MAX;

/// Unmeasured stacks a pool measures per `trim` at most (one `mincore`
/// each, while the thread is about to idle).
const MEASURE_PER_TRIM: usize = 32;

/// Bytes at the top of a warm stack `trim` keeps resident after
/// measuring it (rounded up to whole pages); the pages below are given
/// back, so the next measurement is of later users (module doc).
pub(crate) const KEEP_WARM: usize = 8 * 1024;

/// A pool of same-sized stacks, used by one thread.
#[derive(Debug)]
pub(crate) struct StackPool {
    /// Its thread's `util::thread_token`: its stacks carry it.
    home: u64,
    page: usize,
    /// Usable bytes per stack (a multiple of the page size).
    size: usize,
    /// Free stacks whose pages may still be resident (used first).
    free: Vec<Stack>,
    /// Free stacks whose pages were given back (`trim`).
    cold: Vec<Stack>,
    /// Warm free stacks kept by `trim`; beyond, pages are given back.
    retain: usize,
    /// Mappings made so far.
    chunks: usize,
    /// Stacks handed out and not yet returned.
    in_use: usize,
    /// Free stacks whose baseline is `UNMEASURED`.
    unmeasured: usize,
}

/// The page size (cached).
pub(crate) fn page_size() -> usize {
    page_size_cached()
}

fn page_size_cached() -> usize {
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    match PAGE.load(Relaxed) {
        0 => {
            let p = page_size_uncached();
            PAGE.store(p, Relaxed);
            p
        }
        p => p,
    }
}

fn page_size_uncached() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

impl StackPool {
    /// A pool of stacks of at least `size` usable bytes each.
    pub(crate) fn new(size: usize, retain: usize) -> StackPool {
        let page = page_size_uncached();
        StackPool {
            home: crate::util::thread_token(),
            page,
            size: size.div_ceil(page) * page,
            free: Vec::new(),
            cold: Vec::new(),
            retain,
            chunks: 0,
            in_use: 0,
            unmeasured: 0,
        }
    }

    #[cfg(test)]
    /// Usable bytes per stack.
    pub(crate) fn stack_size(&self) -> usize {
        self.size
    }

    #[cfg(test)]
    pub(crate) fn page_size(&self) -> usize {
        self.page
    }

    #[cfg(test)]
    /// Number of kernel mappings made so far.
    pub(crate) fn num_chunks(&self) -> usize {
        self.chunks
    }

    /// Whether this pool makes stacks of at least `size` usable bytes.
    pub(crate) fn serves(&self, size: usize) -> bool {
        self.size == size.div_ceil(self.page) * self.page
    }

    /// Whether `stack` came from this pool (and may go back to it).
    pub(crate) fn accepts(&self, stack: &Stack) -> bool {
        stack.home == self.home && stack.top as usize - stack.bottom as usize == self.size
    }

    /// A stack, pooled if one is free, else carved from a new chunk.
    ///
    /// # Errors
    ///
    /// The `mmap`/`madvise`/`mprotect` error, with a message naming the
    /// limit that likely caused it (`vm.max_map_count`, `ulimit -v`).
    pub(crate) fn alloc(&mut self) -> io::Result<Stack> {
        let stack = match self.free.pop().or_else(|| self.cold.pop()) {
            Some(s) => s,
            None => {
                self.grow()?;
                self.cold.pop().expect("grow added stacks")
            }
        };
        if stack.baseline == UNMEASURED {
            self.unmeasured -= 1;
        }
        self.in_use += 1;
        Ok(stack)
    }

    /// Returns a stack to the pool (warm: its pages stay until `trim`),
    /// or drops it if the pool holds as many as it may.
    pub(crate) fn free(&mut self, mut stack: Stack) {
        debug_assert!(self.accepts(&stack));
        self.in_use = self.in_use.saturating_sub(1);
        if self.free.len() + self.cold.len() >= self.max_free() {
            // Unmapped with the last stack of its mapping.
            drop(stack);
        } else {
            // Its user may have gone deeper: measured at the next `trim`.
            stack.baseline = UNMEASURED;
            self.unmeasured += 1;
            self.free.push(stack);
        }
    }

    /// The most free stacks the pool keeps (at least a chunk's worth: the
    /// stacks of a new chunk wait in it until used).
    fn max_free(&self) -> usize {
        (FREE_PER_RETAINED * self.retain).max(CHUNK)
    }

    /// Gives back the pages of warm free stacks beyond `retain`, and
    /// measures up to `MEASURE_PER_TRIM` stacks used since their last
    /// measurement into `hist` (module doc). Called when the thread is
    /// about to idle, so a burst of fibers does not pay for either while it
    /// runs.
    pub(crate) fn trim(&mut self, hist: &StackHistogram) {
        let mut budget = MEASURE_PER_TRIM.min(self.unmeasured);
        let first_cold = self.cold.len();
        while self.free.len() > self.retain {
            let mut stack = self.free.pop().expect("len > retain");
            if stack.baseline == UNMEASURED {
                self.unmeasured -= 1;
                if budget > 0 {
                    budget -= 1;
                    self.measure(&stack, hist);
                }
            }
            stack.baseline = 0;
            self.cold.push(stack);
        }
        self.release(first_cold);
        // The warm ones, most recently freed first (the next to be used).
        let mut i = self.free.len();
        while budget > 0 && self.unmeasured > 0 && i > 0 {
            i -= 1;
            if self.free[i].baseline == UNMEASURED {
                budget -= 1;
                self.unmeasured -= 1;
                let extent = self.measure(&self.free[i], hist);
                self.free[i].baseline = self.release_below_keep(&self.free[i], extent);
            }
        }
    }

    /// Gives back the pages of the cold stacks from index `from` on (just
    /// moved there by `trim`), with one `MADV_DONTNEED` per run of stacks
    /// adjacent in memory rather than one per stack: each call that drops
    /// pages costs a TLB flush on every CPU running a thread of the
    /// process, so after a burst of fibers the calls were most of `trim`'s
    /// cost (`BENCHMARKS.md`, fiber timers).
    fn release(&mut self, from: usize) {
        let stacks = &mut self.cold[from..];
        stacks.sort_unstable_by_key(|s| s.bottom as usize);
        let mut i = 0;
        while i < stacks.len() {
            let start = stacks[i].bottom as usize;
            let mut end = stacks[i].top as usize;
            i += 1;
            // The next stack starts one page (its guard) above this end.
            while i < stacks.len() && stacks[i].bottom as usize == end + self.page {
                end = stacks[i].top as usize;
                i += 1;
            }
            // SAFETY: `[start, end)` is the usable parts of free stacks,
            // which nobody uses, and the guard pages between them. DONTNEED
            // only drops pages (they read back as zeros): it leaves guard
            // markers in place (`madvise(2)`; checked by
            // `tests::released_runs_keep_their_guards`), and an `mprotect`
            // guard has no pages to drop.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }

    /// Gives back the pages of free `stack` below its top `KEEP_WARM`
    /// bytes, if its resident `extent` reaches below them; returns how far
    /// it may still be resident (its new baseline).
    fn release_below_keep(&self, stack: &Stack, extent: usize) -> usize {
        let keep = (KEEP_WARM.div_ceil(self.page) * self.page).min(self.size);
        if extent <= keep {
            return extent;
        }
        // SAFETY: `[bottom, top - keep)` is part of this free stack's
        // usable range, which nobody uses; DONTNEED only drops its pages
        // (they read back as zeros).
        unsafe {
            libc::madvise(stack.bottom.cast(), self.size - keep, libc::MADV_DONTNEED);
        }
        keep
    }

    /// Records `stack`'s resident extent in `hist` and returns it (the
    /// whole stack if the kernel will not say).
    fn measure(&self, stack: &Stack, hist: &StackHistogram) -> usize {
        let extent = resident_extent(stack.bottom, stack.top).unwrap_or(self.size);
        hist.record(extent);
        extent
    }

    fn grow(&mut self) -> io::Result<()> {
        let stride = self.size + self.page;
        let len = stride * CHUNK;
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choosing; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "could not map {len} bytes for fiber stacks: {e} (check `ulimit -v` and \
                     `vm.max_map_count`; {} stacks are in use)",
                    self.in_use
                ),
            ));
        }
        let mapping = Arc::new(Mapping {
            ptr: ptr.cast(),
            len,
        });
        // No transparent huge pages (module doc): a hint, so an error (a
        // kernel without THP) changes nothing.
        #[cfg(target_os = "linux")]
        // SAFETY: the mapping just made, which nothing uses yet; the advice
        // only changes how its pages will be backed.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE);
        }
        // The guards the batch left (all of them where it is unavailable),
        // one call each.
        let batched = install_guards_batched(mapping.ptr, stride, self.page, CHUNK);
        for i in batched..CHUNK {
            // SAFETY: within the mapping just made.
            let guard = unsafe { mapping.ptr.add(i * stride) };
            install_guard(guard, self.page).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "could not install a fiber stack guard page: {e} (with the mprotect \
                         fallback every stack costs a kernel mapping: raise \
                         `vm.max_map_count`)"
                    ),
                )
            })?;
        }
        for i in 0..CHUNK {
            // SAFETY: within the mapping just made.
            let guard = unsafe { mapping.ptr.add(i * stride) };
            self.cold.push(Stack {
                // SAFETY: within the mapping.
                bottom: unsafe { guard.add(self.page) },
                // SAFETY: within (one past) the mapping.
                top: unsafe { guard.add(stride) },
                home: self.home,
                // Never touched.
                baseline: 0,
                _mapping: mapping.clone(),
            });
        }
        self.chunks += 1;
        Ok(())
    }
}

/// How far down from `top` the resident pages of the stack `[bottom, top)`
/// reach, in bytes: the deepest page its users touched (module doc, "High-
/// water marks"). `bottom` and `top` are page-aligned.
///
/// # Errors
///
/// The error of `mincore`.
pub(crate) fn resident_extent(bottom: *mut u8, top: *mut u8) -> io::Result<usize> {
    let page = page_size_cached();
    let len = top as usize - bottom as usize;
    let mut resident = vec![0u8; len.div_ceil(page)];
    // SAFETY: `[bottom, top)` is mapped (a stack's usable part, kept mapped
    // by its `Stack` or, for a running fiber's, by its task) and
    // page-aligned; the vector has one byte per page of it.
    let r = unsafe { libc::mincore(bottom.cast(), len, resident.as_mut_ptr().cast()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match resident.iter().position(|p| p & 1 != 0) {
        Some(deepest) => len - deepest * page,
        None => 0,
    })
}

/// Buckets of a [`StackHistogram`]: bucket `i` counts extents up to
/// `4 KiB << i` (and above the previous bucket's bound); the last one
/// everything above too.
pub(crate) const STACK_BUCKETS: usize = 19;

/// The upper bound, in bytes, of stack histogram bucket `i`.
pub(crate) const fn stack_bucket_bound(i: usize) -> usize {
    4096 << i
}

/// A runtime's histogram of measured fiber stack high-water marks (module
/// doc), written by its threads' pools at `trim`, read by metrics.
#[derive(Debug, Default)]
pub(crate) struct StackHistogram {
    buckets: [AtomicU64; STACK_BUCKETS],
    max: AtomicUsize,
}

impl StackHistogram {
    /// Counts one measured extent of `bytes`.
    pub(crate) fn record(&self, bytes: usize) {
        let i = (0..STACK_BUCKETS)
            .find(|&i| bytes <= stack_bucket_bound(i))
            .unwrap_or(STACK_BUCKETS - 1);
        self.buckets[i].fetch_add(1, Relaxed);
        self.max.fetch_max(bytes, Relaxed);
    }

    /// The counts per bucket, and the largest extent recorded.
    pub(crate) fn snapshot(&self) -> ([u64; STACK_BUCKETS], usize) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            self.max.load(Relaxed),
        )
    }
}

/// `PIDFD_SELF` (`PIDFD_SELF_THREAD`, Linux 6.15+): the calling thread,
/// with no pidfd to open (or to go stale in a forked child);
/// `process_madvise` acts on its memory, which is the process's. (Not
/// `PIDFD_SELF_PROCESS`: its value changed in 6.17, from -20000 to -10001.)
#[cfg(target_os = "linux")]
const PIDFD_SELF: libc::c_int = -10000;

/// Whether `process_madvise` may install guards (cleared for good at its
/// first refusal: a kernel before 6.15, or a filter that refuses it).
#[cfg(target_os = "linux")]
static GUARD_BATCH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The error of that refusal, for the test that expects the batch.
#[cfg(all(target_os = "linux", test))]
static GUARD_BATCH_ERROR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Installs the guard pages of the first stacks of a new chunk (the
/// `page` at `base + i * stride` for `i < n`) with one `process_madvise`;
/// returns how many, from the first, it installed: the rest are left to
/// [`install_guard`] (all of them where the batch is unavailable or in the
/// `mprotect` fallback). One call instead of `n` costs about a third less
/// per stack here (`BENCHMARKS.md`, fiber timers).
#[cfg(target_os = "linux")]
fn install_guards_batched(base: *mut u8, stride: usize, page: usize, n: usize) -> usize {
    if GUARD_MODE.load(Relaxed) == GUARD_MPROTECT || !GUARD_BATCH.load(Relaxed) {
        return 0;
    }
    let iov: Vec<libc::iovec> = (0..n)
        .map(|i| libc::iovec {
            // SAFETY: within the mapping (`i < n` stacks of `stride`).
            iov_base: unsafe { base.add(i * stride) }.cast(),
            iov_len: page,
        })
        .collect();
    // SAFETY: the ranges are pages of a mapping we own and nothing uses
    // yet (as `install_guard`); the kernel only reads `iov`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            PIDFD_SELF,
            iov.as_ptr(),
            iov.len(),
            MADV_GUARD_INSTALL,
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error().raw_os_error();
        if !matches!(e, Some(libc::ENOMEM | libc::EAGAIN | libc::EINTR)) {
            GUARD_BATCH.store(false, Relaxed);
            #[cfg(test)]
            GUARD_BATCH_ERROR.store(e.unwrap_or(0), Relaxed);
        }
        return 0;
    }
    // The kernel advises the ranges in order and stops at the first
    // failure: `r` bytes are whole leading guards.
    GUARD_MODE.store(GUARD_MADVISE, Relaxed);
    (r as usize / page).min(n)
}

#[cfg(not(target_os = "linux"))]
fn install_guards_batched(_: *mut u8, _: usize, _: usize, _: usize) -> usize {
    0
}

fn install_guard(at: *mut u8, page: usize) -> io::Result<()> {
    let mode = GUARD_MODE.load(Relaxed);
    if mode != GUARD_MPROTECT {
        // SAFETY: `at` is a page of a mapping we own and nothing uses yet.
        let r = unsafe { libc::madvise(at.cast(), page, MADV_GUARD_INSTALL) };
        if r == 0 {
            GUARD_MODE.store(GUARD_MADVISE, Relaxed);
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if mode == GUARD_MADVISE || e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
        // Kernel before 6.13: fall back for good.
        GUARD_MODE.store(GUARD_MPROTECT, Relaxed);
    }
    // SAFETY: as above.
    if unsafe { libc::mprotect(at.cast(), page, libc::PROT_NONE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
/// Which guard mechanism is in use (after the first stack was made).
pub(crate) fn guard_uses_madvise() -> bool {
    GUARD_MODE.load(Relaxed) == GUARD_MADVISE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_usable_aligned_and_reused_without_new_mappings() {
        let mut pool = StackPool::new(64 * 1024, 8);
        let a = pool.alloc().unwrap();
        assert_eq!(a.top() as usize % 16, 0);
        assert_eq!(a.top() as usize - a.bottom() as usize, pool.stack_size());
        // The whole usable range is writable.
        // SAFETY: the stack's usable range is ours.
        unsafe { std::ptr::write_bytes(a.bottom(), 0xAB, pool.stack_size()) };
        let bottom = a.bottom();
        pool.free(a);
        let chunks = pool.num_chunks();
        let b = pool.alloc().unwrap();
        assert_eq!(b.bottom(), bottom, "the pool served the freed stack");
        assert_eq!(
            pool.num_chunks(),
            chunks,
            "no new mapping for a pooled stack"
        );
        pool.free(b);
    }

    /// A pool takes back only its own stacks, and no more than its bound.
    #[test]
    fn a_pool_is_bounded_and_keeps_only_its_own_stacks() {
        let mut pool = StackPool::new(16 * 1024, 32);
        let bound = pool.max_free();
        assert_eq!(bound, FREE_PER_RETAINED * 32);
        let stacks: Vec<_> = (0..bound + 5).map(|_| pool.alloc().unwrap()).collect();
        for s in stacks {
            pool.free(s);
        }
        assert_eq!(pool.free.len() + pool.cold.len(), bound);
        // Another thread's pool of the same size does not accept them.
        let other = std::thread::spawn(|| StackPool::new(16 * 1024, 32))
            .join()
            .unwrap();
        let s = pool.alloc().unwrap();
        assert!(pool.accepts(&s));
        assert!(!other.accepts(&s));
        pool.free(s);
    }

    /// Touches `bytes` of `stack` from its top down.
    fn touch(stack: &Stack, bytes: usize) {
        // SAFETY: within the stack's usable range, which the test owns.
        unsafe { std::ptr::write_bytes(stack.top().sub(bytes), 1, bytes) };
    }

    /// A warm stack's measurement is of the fibers since the last one: a
    /// deep user early on is not measured again for every later one.
    #[test]
    fn a_warm_stack_is_measured_afresh_each_time() {
        let mut pool = StackPool::new(256 * 1024, 8);
        let hist = StackHistogram::default();
        let keep = KEEP_WARM.max(pool.page_size());
        let s = pool.alloc().unwrap();
        touch(&s, 200 * 1024);
        pool.free(s);
        pool.trim(&hist);
        let (buckets, max) = hist.snapshot();
        assert_eq!(buckets.iter().sum::<u64>(), 1);
        assert!(max >= 200 * 1024, "{max}");
        for round in 0..3 {
            let s = pool.alloc().unwrap();
            assert!(s.baseline() <= keep, "{}", s.baseline());
            touch(&s, 64);
            pool.free(s);
            pool.trim(&hist);
            let (buckets, _) = hist.snapshot();
            assert_eq!(buckets.iter().sum::<u64>(), 2 + round);
            let deep: u64 = (0..STACK_BUCKETS)
                .filter(|&i| stack_bucket_bound(i) > 64 * 1024)
                .map(|i| buckets[i])
                .sum();
            assert_eq!(deep, 1, "the deep mark repeats: {buckets:?}");
            let small: u64 = (0..STACK_BUCKETS)
                .filter(|&i| stack_bucket_bound(i) <= keep)
                .map(|i| buckets[i])
                .sum();
            assert_eq!(small, 1 + round, "{buckets:?}");
        }
        // A deeper user again is measured as deep as it went.
        let s = pool.alloc().unwrap();
        touch(&s, 100 * 1024);
        pool.free(s);
        pool.trim(&hist);
        let (buckets, _) = hist.snapshot();
        let i = (0..STACK_BUCKETS)
            .find(|&i| 100 * 1024 <= stack_bucket_bound(i))
            .unwrap();
        assert_eq!(buckets[i], 1, "{buckets:?}");
    }

    /// On Linux 6.13+ guard pages are installed without extra mappings,
    /// and on 6.15+ a chunk's guards with one call.
    #[test]
    #[cfg(target_os = "linux")]
    fn guard_pages_use_madvise_on_new_kernels() {
        let mut pool = StackPool::new(16 * 1024, 0);
        let s = pool.alloc().unwrap();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if (major, minor) >= (6, 13) {
            assert!(
                guard_uses_madvise(),
                "kernel {release} should take MADV_GUARD_INSTALL"
            );
        }
        let refused = GUARD_BATCH_ERROR.load(Relaxed);
        if (major, minor) >= (6, 15) && matches!(refused, libc::EPERM | libc::ENOSYS) {
            // A seccomp filter (containers) may refuse the call: the
            // per-page path then serves, as on older kernels.
            eprintln!("process_madvise refused ({refused}): guards go in one page at a time");
        } else if (major, minor) >= (6, 15) {
            assert!(
                GUARD_BATCH.load(Relaxed),
                "kernel {release} should take MADV_GUARD_INSTALL from process_madvise \
                 (PIDFD_SELF), refused with errno {refused}"
            );
        }
        pool.free(s);
    }

    /// A fiber runs on a pooled, guarded stack.
    #[test]
    fn a_fiber_runs_on_a_pooled_stack() {
        use crate::fiber::arch::{init_stack, resume, suspend};
        struct Link {
            main_sp: *mut u8,
            fiber_sp: *mut u8,
        }
        unsafe extern "C" fn double(arg: usize, data: *mut u8) -> ! {
            let link = data.cast::<Link>();
            // SAFETY: the test keeps `link` alive and never resumes us
            // after this switch.
            unsafe { suspend(&raw mut (*link).main_sp, arg * 2) };
            unreachable!()
        }
        let mut pool = StackPool::new(64 * 1024, 4);
        let s = pool.alloc().unwrap();
        let mut link = Link {
            main_sp: std::ptr::null_mut(),
            fiber_sp: std::ptr::null_mut(),
        };
        // SAFETY: a pooled stack nothing else uses.
        link.fiber_sp = unsafe { init_stack(s.top(), double, (&raw mut link).cast()) };
        // SAFETY: the fiber is laid out at `fiber_sp` on a live stack.
        let (r, _) = unsafe { resume(link.fiber_sp, &raw mut link.main_sp, 21) };
        assert_eq!(r, 42);
        pool.free(s);
    }

    #[test]
    fn a_chunk_serves_many_stacks_with_one_mapping() {
        let mut pool = StackPool::new(16 * 1024, 0);
        let stacks: Vec<_> = (0..CHUNK).map(|_| pool.alloc().unwrap()).collect();
        assert_eq!(pool.num_chunks(), 1);
        // Distinct, non-overlapping, each with its guard below.
        let mut ranges: Vec<_> = stacks
            .iter()
            .map(|s| (s.guard(pool.page_size()).0, s.top() as usize))
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0);
        }
        let extra = pool.alloc().unwrap();
        assert_eq!(pool.num_chunks(), 2);
        for s in stacks {
            pool.free(s);
        }
        pool.free(extra);
    }

    /// The child process of a guard test: set in its environment, to the
    /// index of the stack whose guard it touches.
    const GUARD_CHILD: &str = "FIBER_RUNTIME_GUARD_CHILD";

    /// Touching a guard page faults, for the first, a middle and the last
    /// stack of a chunk (the batch installs them all): checked in a child
    /// process, which the parent expects to die of SIGSEGV. This passes
    /// with the per-page path too: that the batch is taken is
    /// `guard_pages_use_madvise_on_new_kernels`'s to check.
    #[test]
    // ASan takes the SIGSEGV itself and exits with its own report.
    #[cfg_attr(fiber_runtime_asan, ignore = "AddressSanitizer handles SIGSEGV itself")]
    fn the_guard_page_faults() {
        if let Some(i) = std::env::var_os(GUARD_CHILD) {
            let i: usize = i.to_str().unwrap().parse().unwrap();
            let mut pool = StackPool::new(16 * 1024, 0);
            let stacks: Vec<_> = (0..CHUNK).map(|_| pool.alloc().unwrap()).collect();
            let (lo, _) = stacks[i].guard(pool.page_size());
            // SAFETY: deliberately not safe: this must fault.
            unsafe { std::ptr::write_volatile(lo as *mut u8, 1) };
            // Not reached if the guard works.
            std::process::exit(0);
        }
        for i in [0, CHUNK / 2, CHUNK - 1] {
            expect_sigsegv("fiber::stack::tests::the_guard_page_faults", i);
        }
    }

    /// `trim` gives back the pages of free stacks with one call per run of
    /// adjacent stacks, over the guard pages between them: the pages are
    /// dropped (they read back as zeros) and the guards still fault
    /// (checked in a child process, as above).
    #[test]
    #[cfg_attr(fiber_runtime_asan, ignore = "AddressSanitizer handles SIGSEGV itself")]
    fn released_runs_keep_their_guards() {
        let child = std::env::var_os(GUARD_CHILD);
        let mut pool = StackPool::new(16 * 1024, 0);
        let stacks: Vec<_> = (0..CHUNK).map(|_| pool.alloc().unwrap()).collect();
        let tops: Vec<*mut u8> = stacks.iter().map(|s| s.top()).collect();
        let guards: Vec<usize> = stacks.iter().map(|s| s.guard(pool.page_size()).0).collect();
        for s in &stacks {
            touch(s, 2 * pool.page_size());
        }
        // Every fourth one stays in use, so the runs are broken too.
        let (kept, freed): (Vec<_>, Vec<_>) = stacks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 4 == 3);
        for (_, s) in freed {
            pool.free(s);
        }
        pool.trim(&StackHistogram::default());
        for (i, &top) in tops.iter().enumerate() {
            // SAFETY: within stack `i`'s usable range, mapped (the pool or
            // `kept` holds each stack).
            let byte = unsafe { top.sub(1).read_volatile() };
            assert_eq!(byte, u8::from(i % 4 == 3), "stack {i}");
        }
        if let Some(i) = child {
            let i: usize = i.to_str().unwrap().parse().unwrap();
            // SAFETY: deliberately not safe: this must fault.
            unsafe { std::ptr::write_volatile(guards[i] as *mut u8, 1) };
            std::process::exit(0);
        }
        for i in [1, CHUNK / 2, CHUNK / 2 + 1, CHUNK - 1] {
            expect_sigsegv("fiber::stack::tests::released_runs_keep_their_guards", i);
        }
        for (_, s) in kept {
            pool.free(s);
        }
    }

    /// Runs test `name` in a child process told to touch the guard of
    /// stack `i`, and asserts that it died of SIGSEGV.
    fn expect_sigsegv(name: &str, i: usize) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture"])
            .env(GUARD_CHILD, i.to_string())
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSEGV),
            "child did not die of SIGSEGV: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
