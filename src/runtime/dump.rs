//! `Dump`: what [`Handle::dump`](crate::Handle::dump) returns, a snapshot
//! of every live task and fiber with, for each suspended fiber, the
//! backtrace of its stack; and the fiber stack high-water histogram of
//! [`RuntimeMetrics`](crate::RuntimeMetrics).

use crate::fiber::context::NoCapture;
use crate::fiber::pool::FiberReport;
use crate::fiber::stack::{MAX_STACK_SIZE, MIN_STACK_SIZE, STACK_BUCKETS, stack_bucket_bound};
use crate::scheduler::{self, dump as raw};
use crate::task_core::Id;
use crate::task_core::list::Kind;
use crate::util::clock;
use std::fmt;
use std::panic::Location;
use std::time::{Duration, Instant};

/// A snapshot of every live task and fiber of a runtime, taken by
/// [`Handle::dump`](crate::Handle::dump): for each its id, name, spawn
/// location, state, age and poll count, and for each fiber what it is
/// blocked in, the symbolised backtrace of its stack and how deep that
/// stack went. [`Display`](fmt::Display) prints it as a report in the
/// manner of Go's `SIGQUIT` output; [`tasks`](Dump::tasks) gives the
/// data.
///
/// # How it is taken
///
/// A fiber's stack can only be walked on its own worker's thread, while
/// that worker runs no poll; so the dump asks every worker to walk its
/// fibers at its next safe point (it wakes parked ones), and waits at
/// most 250 ms in all for them to take the request up. A worker busy in
/// one long poll — a task that blocks its thread, the case dumps are most
/// wanted for — does not take it up in time: the dump goes on without it
/// and says so ([`WorkerDump::status`]), and that worker's fibers are
/// listed without backtraces. A worker that took the request up is
/// walking (no user code runs meanwhile) and is waited for up to 10 s; it
/// walks at most 10,000 fibers per dump (tens of µs each in release
/// builds, symbols included, and several times that in debug builds),
/// listing the others without backtraces. Taking a dump never
/// deadlocks and costs the runtime nothing while none is taken; while a
/// worker walks its fibers, it runs no tasks.
///
/// Inside a task or fiber of the runtime, a dump walks the fibers of its
/// own worker itself (a fiber taking one sees itself running, with the
/// backtrace of the call), and blocks that worker's thread while it waits
/// for the others (see [`Handle::dump`](crate::Handle::dump), "Blocking":
/// from async code, take it on [`spawn_blocking`](crate::spawn_blocking)).
/// A fiber taking a dump walks and symbolises its own backtrace on its own
/// stack: those pages then count in its stack's high-water mark (in later
/// dumps, and in the histogram's sample when its stack is measured), by
/// some tens of KiB, more in debug builds. Blocking closures of
/// [`spawn_blocking`](crate::spawn_blocking) are not listed (the summary
/// counts their threads).
///
/// Ages are measured on a coarse clock, which the workers advance as
/// they go (about every 61 polls and around parks): a task's age may be
/// a little longer than the truth, by the time since that clock last
/// moved before its spawn. Poll counts count polls of the task (for a
/// fiber: the times it was resumed), wrapping at 2^32.
///
/// # Examples
///
/// ```
/// use fiber_runtime::runtime::TaskState;
/// use fiber_runtime::{Runtime, fiber, sync::Mutex};
/// use std::sync::Arc;
///
/// #[inline(never)]
/// fn wait_for_lock(m: &Mutex<()>) {
///     drop(m.blocking_lock());
/// }
///
/// let rt = Runtime::new().unwrap();
/// let _enter = rt.enter();
/// let lock = Arc::new(Mutex::new(()));
/// let held = lock.try_lock().unwrap();
/// let l = lock.clone();
/// let waiter = fiber::Builder::new()
///     .name("waiter")
///     .spawn(move || wait_for_lock(&l))
///     .unwrap();
/// // Dump until the fiber is blocked on the lock (for 10 s at most).
/// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
/// let dump = loop {
///     let dump = rt.handle().dump();
///     if dump.tasks().any(|t| t.name() == Some("waiter") && t.blocked_in().is_some()) {
///         break dump;
///     }
///     assert!(std::time::Instant::now() < deadline, "the fiber never blocked:\n{dump}");
///     std::thread::yield_now();
/// };
/// let t = dump.tasks().find(|t| t.name() == Some("waiter")).unwrap();
/// assert_eq!(t.state(), TaskState::Suspended);
/// assert_eq!(t.blocked_in(), Some("Mutex::blocking_lock"));
/// let frames = t.backtrace().unwrap();
/// assert!(frames.iter().any(|f| f.function().contains("wait_for_lock")));
/// println!("{dump}");
/// drop(held);
/// waiter.join().unwrap();
/// ```
pub struct Dump {
    flavor: &'static str,
    workers: Vec<WorkerDump>,
    tasks: Vec<TaskDump>,
    blocking_threads: usize,
}

/// One worker of a [`Dump`]: whether it walked its fibers.
#[derive(Debug, Clone)]
pub struct WorkerDump {
    index: usize,
    thread: Option<String>,
    status: WorkerStatus,
}

/// What became of a worker in a [`Dump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerStatus {
    /// It walked its fibers: they have backtraces.
    Walked,
    /// It did not answer within the dump's wait (busy in a poll, for the
    /// given time at least): its fibers were not walked.
    Busy(Duration),
    /// It has stopped (the runtime is shutting down, or shut down).
    Stopped,
    /// No thread drives it (a current-thread runtime outside any
    /// `block_on`, whose fibers are on another thread than the dump's).
    Undriven,
}

/// One task or fiber of a [`Dump`].
#[derive(Debug, Clone)]
pub struct TaskDump {
    id: Id,
    name: Option<String>,
    location: &'static Location<'static>,
    kind: TaskKind,
    state: TaskState,
    cancelled: bool,
    blocked_in: Option<(&'static str, &'static Location<'static>)>,
    age: Duration,
    polls: u32,
    worker: Option<usize>,
    backtrace: Result<Vec<Frame>, NoBacktrace>,
    stack: Option<StackUsage>,
}

/// Whether a [`TaskDump`] is a task or a fiber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A task ([`spawn`](crate::spawn)): a future, with no stack of its
    /// own to walk.
    Task,
    /// A fiber ([`fiber::spawn`](crate::fiber::spawn)).
    Fiber,
}

/// The state of a task or fiber in a [`Dump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting to be woken: neither queued nor running. (A task waiting
    /// on I/O, a timer, a lock, another task...)
    Idle,
    /// Woken (or new), in a run queue.
    Scheduled,
    /// Being polled right now (a fiber: running on its worker).
    Running,
    /// A fiber waiting to be woken, in a blocking-style call
    /// ([`TaskDump::blocked_in`] says which) or not walked.
    Suspended,
    /// Finished; its memory is still held (by its `JoinHandle`, say).
    Complete,
}

/// Why a fiber in a [`Dump`] has no backtrace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoBacktrace {
    /// A task: no stack of its own.
    Task,
    /// Its worker did not walk it (busy, stopped, ...).
    NotWalked(WorkerStatus),
    /// Not started yet.
    NotStarted,
    /// Its worker walked, but the fiber was not suspended then (it
    /// finished meanwhile, or was being cancelled).
    NotSuspended,
    /// Too little stack left below its suspension point to walk it.
    NoRoom,
    /// The walk failed.
    Failed,
    /// Its worker had walked as many fibers as a dump walks per worker.
    Skipped,
}

/// One frame of a fiber's backtrace ([`TaskDump::backtrace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
}

/// How deep a fiber's stack went: its high-water mark
/// ([`TaskDump::stack_usage`]).
///
/// Read off the kernel's page tables (stacks are backed lazily, page by
/// page, as they are touched): the deepest resident page of the fiber's
/// stack. Fiber stacks are pooled and reused warm, so a page may have
/// been touched by an earlier fiber on the same stack: when the runtime
/// cannot tell this fiber's own mark apart, [`is_exact`](Self::is_exact)
/// is `false` and the mark is an upper bound. A fiber that took a dump
/// itself also counts the pages of that dump's walk ([`Dump`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackUsage {
    high_water: usize,
    size: usize,
    exact: bool,
}

impl StackUsage {
    /// Bytes of the stack used, from its top down to the deepest page
    /// touched (a multiple of the page size).
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// The stack's usable size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether [`high_water`](Self::high_water) is this fiber's own
    /// (`false`: at most that, an earlier fiber on the stack may have gone
    /// that deep).
    pub fn is_exact(&self) -> bool {
        self.exact
    }
}

impl Frame {
    /// The function's name, demangled (`crate::module::function`).
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The source file, when debug info says.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The line in [`file`](Self::file), when debug info says.
    pub fn line(&self) -> Option<u32> {
        self.line
    }

    /// The column in [`line`](Self::line), when debug info says.
    pub fn column(&self) -> Option<u32> {
        self.column
    }
}

impl TaskDump {
    /// The task's id (as [`JoinHandle::id`](crate::JoinHandle::id)).
    pub fn id(&self) -> Id {
        self.id
    }

    /// Its name ([`task::Builder`](crate::task::Builder),
    /// [`fiber::Builder`](crate::fiber::Builder)), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where it was spawned: the call of `spawn` (or of a builder's
    /// `spawn`, `JoinSet::spawn`, ...).
    pub fn spawn_location(&self) -> &'static Location<'static> {
        self.location
    }

    /// A task or a fiber.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// Its state when the dump was taken.
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// Whether it was aborted (or the runtime is shutting down) and its
    /// cancellation has not yet run.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// For a fiber inside a blocking-style call (`Mutex::blocking_lock`,
    /// `fiber::sleep`, `JoinHandle::join`, `fiber::wait`, `std::io` on a
    /// socket, ...): that call's name. `None` for tasks, for fibers that
    /// are not, and for fibers whose worker did not walk them.
    pub fn blocked_in(&self) -> Option<&'static str> {
        self.blocked_in.map(|(what, _)| what)
    }

    /// Where the call of [`blocked_in`](Self::blocked_in) was made (the
    /// caller's line, also without debug info).
    pub fn blocked_at(&self) -> Option<&'static Location<'static>> {
        self.blocked_in.map(|(_, at)| at)
    }

    /// How long ago it was spawned (coarse: see [`Dump`]).
    pub fn age(&self) -> Duration {
        self.age
    }

    /// How many times it was polled (a fiber: resumed), wrapping at 2^32.
    pub fn poll_count(&self) -> u64 {
        u64::from(self.polls)
    }

    /// For a fiber that started: the worker it runs on (fibers never
    /// move). `None` for tasks (which any worker may poll) and for
    /// fibers not started yet on a multi-thread runtime.
    pub fn worker(&self) -> Option<usize> {
        self.worker
    }

    /// For a fiber its worker walked: the backtrace of its stack,
    /// innermost frame first, trimmed to the user's code (the runtime's
    /// frames above the outermost call into it, and those below the
    /// fiber's closure, are left out). `None` for tasks and for fibers
    /// not walked (the report says why).
    pub fn backtrace(&self) -> Option<&[Frame]> {
        self.backtrace.as_deref().ok()
    }

    /// For a fiber its worker walked: how deep its stack went.
    pub fn stack_usage(&self) -> Option<StackUsage> {
        self.stack
    }
}

impl WorkerDump {
    /// The worker's index (0 for a current-thread runtime).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The name of its thread, if it answered and has one.
    pub fn thread_name(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    /// Whether it walked its fibers, and if not, why.
    pub fn status(&self) -> WorkerStatus {
        self.status
    }
}

impl Dump {
    /// Takes a dump of the runtime `handle` schedules for.
    pub(crate) fn take(handle: &scheduler::Handle) -> Dump {
        let flavor = match handle {
            scheduler::Handle::CurrentThread(_) => "current-thread",
            scheduler::Handle::MultiThread(_) => "multi-thread",
        };
        let raw = handle.dump(raw::WAIT);
        let blocking_threads = handle.common().blocking.num_threads();
        let now_ms = clock::ms_since_epoch(Instant::now());
        let workers: Vec<WorkerDump> = raw
            .workers
            .iter()
            .enumerate()
            .map(|(index, w)| WorkerDump {
                index,
                thread: match w {
                    raw::WorkerState::Walked(a) => a.thread.clone(),
                    _ => None,
                },
                status: match w {
                    raw::WorkerState::Walked(_) => WorkerStatus::Walked,
                    raw::WorkerState::Busy(d) => WorkerStatus::Busy(*d),
                    raw::WorkerState::Stopped => WorkerStatus::Stopped,
                    raw::WorkerState::Undriven => WorkerStatus::Undriven,
                },
            })
            .collect();
        let mut tasks: Vec<TaskDump> = raw
            .tasks
            .iter()
            .map(|e| task_dump(e, &workers, now_ms))
            .collect();
        tasks.sort_by_key(|t| t.id);
        Dump {
            flavor,
            workers,
            tasks,
            blocking_threads,
        }
    }

    /// Every task and fiber that was alive, by id.
    pub fn tasks(&self) -> std::slice::Iter<'_, TaskDump> {
        self.tasks.iter()
    }

    /// The fibers among [`tasks`](Self::tasks).
    pub fn fibers(&self) -> impl Iterator<Item = &TaskDump> {
        self.tasks.iter().filter(|t| t.kind == TaskKind::Fiber)
    }

    /// The task or fiber with this id, if it was alive.
    pub fn task(&self, id: Id) -> Option<&TaskDump> {
        self.tasks
            .binary_search_by_key(&id, |t| t.id)
            .ok()
            .map(|i| &self.tasks[i])
    }

    /// The runtime's workers, and whether each walked its fibers.
    pub fn workers(&self) -> std::slice::Iter<'_, WorkerDump> {
        self.workers.iter()
    }
}

fn task_dump(e: &raw::RawEntry, workers: &[WorkerDump], now_ms: u64) -> TaskDump {
    let raw = e.task.raw();
    let header = raw.header();
    let trailer = raw.trailer();
    let snapshot = header.state.load();
    let report = e.report();
    let kind = match e.kind {
        Kind::Task => TaskKind::Task,
        Kind::Fiber => TaskKind::Fiber,
    };
    let state = if snapshot.is_complete() {
        TaskState::Complete
    } else if let Some(r) = report {
        fiber_state(r, snapshot.is_notified())
    } else if snapshot.is_running() {
        // For a fiber not walked this may also be one that yielded,
        // queued still holding `RUNNING`.
        TaskState::Running
    } else if snapshot.is_notified() {
        TaskState::Scheduled
    } else if kind == TaskKind::Fiber && e.worker.is_some() {
        TaskState::Suspended
    } else {
        TaskState::Idle
    };
    let backtrace = match (kind, report) {
        (TaskKind::Task, _) => Err(NoBacktrace::Task),
        (TaskKind::Fiber, Some(r)) => match &r.backtrace {
            Ok(bt) => Ok(trim(parse(bt))),
            Err(NoCapture::NotSuspended) => Err(NoBacktrace::NotSuspended),
            Err(NoCapture::NoRoom) => Err(NoBacktrace::NoRoom),
            Err(NoCapture::Failed) => Err(NoBacktrace::Failed),
            Err(NoCapture::Skipped) => Err(NoBacktrace::Skipped),
        },
        (TaskKind::Fiber, None) => match e.worker.and_then(|w| workers.get(w)) {
            Some(w) if w.status != WorkerStatus::Walked => Err(NoBacktrace::NotWalked(w.status)),
            // Walked, but not found: not started, or finished since.
            Some(_) if snapshot.is_complete() => Err(NoBacktrace::NotSuspended),
            _ => Err(NoBacktrace::NotStarted),
        },
    };
    TaskDump {
        id: trailer.id,
        name: trailer.name().map(String::from),
        location: trailer.location(),
        kind,
        state,
        cancelled: snapshot.is_cancelled() && !snapshot.is_complete(),
        blocked_in: report.and_then(|r| r.blocked_in),
        age: Duration::from_millis(u64::from(clock::age_ms(header.spawned(), now_ms))),
        polls: header.polls(),
        worker: e.worker,
        backtrace,
        stack: report.and_then(|r| r.stack).map(|s| StackUsage {
            high_water: s.high_water,
            size: s.size,
            exact: s.exact,
        }),
    }
}

/// A walked fiber's state (`notified`: its task is queued).
fn fiber_state(r: &FiberReport, notified: bool) -> TaskState {
    if r.running {
        TaskState::Running
    } else if notified || r.blocked_in.is_none() {
        // Woken and queued, or it yielded (queued without a wake).
        TaskState::Scheduled
    } else {
        TaskState::Suspended
    }
}

/// The frames of a fiber's backtrace as dumps show them (trimmed to the
/// user's code and the runtime call it made).
pub(crate) fn frames(bt: &std::backtrace::Backtrace) -> Vec<Frame> {
    trim(parse(bt))
}

/// The frames of a std backtrace, from its `Display` (std gives no
/// stable access to them): `N: function` lines, each followed by
/// `at file:line:col` lines when debug info says.
fn parse(bt: &std::backtrace::Backtrace) -> Vec<Frame> {
    let text = bt.to_string();
    let mut frames: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if let Some(at) = l.strip_prefix("at ") {
            if let Some(f) = frames.last_mut() {
                if f.file.is_none() {
                    let (file, line, column) = split_location(at);
                    f.file = Some(file);
                    f.line = line;
                    f.column = column;
                }
            }
            continue;
        }
        let Some((n, function)) = l.split_once(": ") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        frames.push(Frame {
            function: function.trim().to_string(),
            file: None,
            line: None,
            column: None,
        });
    }
    frames
}

/// `file:line:col` (or `file:line`, or `file`).
fn split_location(at: &str) -> (String, Option<u32>, Option<u32>) {
    let mut parts = at.rsplitn(3, ':');
    let last = parts.next().unwrap_or("");
    let mid = parts.next();
    let rest = parts.next();
    match (rest, mid.and_then(|m| m.parse().ok()), last.parse().ok()) {
        (Some(file), Some(line), Some(col)) => (file.to_string(), Some(line), Some(col)),
        _ => match (mid, last.parse().ok()) {
            (Some(m), Some(line)) => {
                let file = match rest {
                    Some(r) => format!("{r}:{m}"),
                    None => m.to_string(),
                };
                (file, Some(line), None)
            }
            _ => (at.to_string(), None, None),
        },
    }
}

/// Whether a frame is the runtime's or the standard library's (not the
/// user's code).
fn is_runtime_frame(f: &Frame) -> bool {
    let name = f.function.trim_start_matches('<');
    const PREFIXES: [&str; 9] = [
        "fiber_runtime::",
        "std::",
        "core::",
        "alloc::",
        "backtrace::",
        "__rust",
        "__fiber_runtime",
        "rust_begin_unwind",
        "_Unwind",
    ];
    name.is_empty() || name == "<unknown>" || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Cuts a fiber's frames to the user's code: the frames above the
/// outermost... innermost user frame, but one (the runtime call the user
/// made, as `Mutex::blocking_lock`), and every frame below the outermost
/// user frame (the fiber's entry, `catch_unwind`, the trampoline). All of
/// them if none is the user's.
fn trim(frames: Vec<Frame>) -> Vec<Frame> {
    let Some(first) = frames.iter().position(|f| !is_runtime_frame(f)) else {
        return frames;
    };
    let last = frames
        .iter()
        .rposition(|f| !is_runtime_frame(f))
        .unwrap_or(first);
    let start = first.saturating_sub(1);
    frames
        .into_iter()
        .skip(start)
        .take(last + 1 - start)
        .collect()
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fibers = self.fibers().count();
        writeln!(
            f,
            "fiber-runtime dump: {} runtime, {} worker{}, {} task{} alive ({} fiber{}), {} blocking thread{}",
            self.flavor,
            self.workers.len(),
            plural(self.workers.len()),
            self.tasks.len(),
            plural(self.tasks.len()),
            fibers,
            plural(fibers),
            self.blocking_threads,
            plural(self.blocking_threads),
        )?;
        for w in &self.workers {
            match w.status {
                WorkerStatus::Walked => {}
                WorkerStatus::Busy(d) => writeln!(
                    f,
                    "worker {}: busy in a poll (no answer in {}); its fibers were not walked",
                    w.index,
                    Age(d)
                )?,
                WorkerStatus::Stopped => writeln!(
                    f,
                    "worker {}: stopped (the runtime shuts down); its fibers were not walked",
                    w.index
                )?,
                WorkerStatus::Undriven => writeln!(
                    f,
                    "worker {}: no thread drives the runtime (outside `block_on`); its fibers \
                     were not walked",
                    w.index
                )?,
            }
        }
        for t in &self.tasks {
            writeln!(f)?;
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TaskDump {
    /// The task's part of the report: a header line, the backtrace (a
    /// fiber's), where it is blocked, where it was spawned, its stack.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TaskKind::Task => "task",
            TaskKind::Fiber => "fiber",
        };
        write!(f, "{kind} {}", self.id)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        write!(f, " [")?;
        match (self.state, self.blocked_in) {
            (TaskState::Suspended, Some((what, _))) => write!(f, "blocked in {what}")?,
            (state, _) => write!(f, "{state}")?,
        }
        if self.cancelled {
            write!(f, ", cancelled")?;
        }
        write!(
            f,
            ", {}, {} poll{}",
            Age(self.age),
            self.polls,
            plural(self.polls as usize)
        )?;
        if let Some(w) = self.worker {
            write!(f, ", worker {w}")?;
        }
        writeln!(f, "]:")?;
        match &self.backtrace {
            Ok(frames) => {
                for fr in frames {
                    writeln!(f, "    {}", fr.function)?;
                    if let Some(file) = &fr.file {
                        match (fr.line, fr.column) {
                            (Some(l), Some(c)) => writeln!(f, "        at {file}:{l}:{c}")?,
                            (Some(l), None) => writeln!(f, "        at {file}:{l}")?,
                            _ => writeln!(f, "        at {file}")?,
                        }
                    }
                }
            }
            Err(NoBacktrace::Task) | Err(NoBacktrace::NotStarted) => {}
            Err(why) => writeln!(f, "    (no backtrace: {})", Why(*why))?,
        }
        if let (TaskState::Suspended, Some((_, at))) = (self.state, self.blocked_in) {
            writeln!(f, "    blocked at {at}")?;
        }
        writeln!(f, "    spawned at {}", self.location)?;
        if let Some(s) = self.stack {
            writeln!(
                f,
                "    stack: {}{} of {} used",
                if s.exact { "" } else { "at most " },
                Bytes(s.high_water),
                Bytes(s.size)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Idle => "idle",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Suspended => "suspended",
            TaskState::Complete => "complete",
        })
    }
}

impl fmt::Debug for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dump")
            .field("flavor", &self.flavor)
            .field("workers", &self.workers)
            .field("tasks", &self.tasks)
            .field("blocking_threads", &self.blocking_threads)
            .finish()
    }
}

struct Why(NoBacktrace);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            NoBacktrace::Task | NoBacktrace::NotStarted => f.write_str("no stack yet"),
            NoBacktrace::NotWalked(WorkerStatus::Busy(_)) => {
                f.write_str("its worker is busy in a poll, not walked")
            }
            NoBacktrace::NotWalked(WorkerStatus::Stopped) => f.write_str("its worker stopped"),
            NoBacktrace::NotWalked(_) => f.write_str("its worker did not walk it"),
            NoBacktrace::NotSuspended => f.write_str("it was not suspended"),
            NoBacktrace::NoRoom => f.write_str("too little stack left to walk it"),
            NoBacktrace::Failed => f.write_str("the walk failed"),
            NoBacktrace::Skipped => write!(
                f,
                "its worker walked the first {} of its fibers only",
                raw::MAX_WALKED
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// An age, roughly (as Go's dumps give them).
struct Age(Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0..1_000 => write!(f, "{ms} ms"),
            1_000..60_000 => write!(f, "{:.1} s", self.0.as_secs_f64()),
            60_000..3_600_000 => write!(f, "{} min", ms / 60_000),
            _ => write!(f, "{:.1} h", self.0.as_secs_f64() / 3600.0),
        }
    }
}

/// A size in KiB or MiB.
struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 20 && b % (1 << 20) == 0 {
            write!(f, "{} MiB", b >> 20)
        } else {
            write!(f, "{} KiB", b.div_ceil(1024))
        }
    }
}

/// The fiber stack high-water marks a runtime measured: see
/// [`RuntimeMetrics::fiber_stack_high_water_histogram`].
///
/// [`RuntimeMetrics::fiber_stack_high_water_histogram`]: crate::RuntimeMetrics::fiber_stack_high_water_histogram
#[derive(Debug, Clone, Default)]
pub struct FiberStackHistogram {
    buckets: [u64; STACK_BUCKETS],
    max: usize,
}

impl FiberStackHistogram {
    pub(crate) fn new(buckets: [u64; STACK_BUCKETS], max: usize) -> FiberStackHistogram {
        FiberStackHistogram { buckets, max }
    }

    /// The number of buckets (19: 4 KiB, 8 KiB, ... 1 GiB).
    pub fn num_buckets(&self) -> usize {
        STACK_BUCKETS
    }

    /// The largest high-water mark, in bytes, bucket `i` counts (the
    /// previous bucket's bound, exclusive, is its smallest): `4 KiB << i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_buckets()`.
    pub fn bucket_upper_bound(&self, i: usize) -> usize {
        assert!(i < STACK_BUCKETS, "bucket {i} of {STACK_BUCKETS}");
        stack_bucket_bound(i)
    }

    /// How many measurements fell in bucket `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= num_buckets()`.
    pub fn bucket_count(&self, i: usize) -> u64 {
        self.buckets[i]
    }

    /// How many measurements there were in all.
    pub fn samples(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The deepest high-water mark measured, in bytes (0 if none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// A `fiber_stack_size` for this workload: twice the deepest mark
    /// measured, rounded up to a power of two, within the allowed range
    /// (16 KiB to 1 GiB); `None` before any measurement.
    pub fn recommended_stack_size(&self) -> Option<usize> {
        if self.samples() == 0 {
            return None;
        }
        let want = self.max.saturating_mul(2).max(1).next_power_of_two();
        Some(want.clamp(MIN_STACK_SIZE, MAX_STACK_SIZE))
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.to_string(),
            file: None,
            line: None,
            column: None,
        }
    }

    #[test]
    fn locations_split_from_the_right() {
        assert_eq!(
            split_location("./src/a:b.rs:12:5"),
            ("./src/a:b.rs".to_string(), Some(12), Some(5))
        );
        assert_eq!(
            split_location("src/a.rs:12"),
            ("src/a.rs".to_string(), Some(12), None)
        );
        assert_eq!(split_location("weird"), ("weird".to_string(), None, None));
    }

    #[test]
    fn trimming_keeps_the_users_frames_and_the_call_into_the_runtime() {
        let frames = [
            "std::backtrace::Backtrace::force_capture",
            "fiber_runtime::fiber::context::ControlBlock::capture_here",
            "fiber_runtime::wait::wait",
            "<fiber_runtime::sync::mutex::Mutex<T>>::blocking_lock",
            "app::inner",
            "<app::Thing as core::ops::Drop>::drop",
            "app::main::{{closure}}",
            "std::panicking::catch_unwind::do_call",
            "__rust_try",
            "fiber_runtime::fiber::future::entry",
            "__fiber_runtime_0_1_trampoline",
        ]
        .map(frame);
        let names: Vec<String> = trim(frames.to_vec())
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(
            names,
            [
                "<fiber_runtime::sync::mutex::Mutex<T>>::blocking_lock",
                "app::inner",
                "<app::Thing as core::ops::Drop>::drop",
                "app::main::{{closure}}",
            ]
        );
        // Nothing of the user's: everything stays.
        let only_runtime = [frame("fiber_runtime::a"), frame("std::b")];
        assert_eq!(trim(only_runtime.to_vec()).len(), 2);
    }

    #[test]
    fn a_backtrace_parses_into_frames() {
        let frames = parse(&std::backtrace::Backtrace::force_capture());
        assert!(
            frames
                .iter()
                .any(|f| f.function.contains("a_backtrace_parses_into_frames")),
            "{frames:?}"
        );
    }

    #[test]
    fn the_recommended_size_is_twice_the_deepest_rounded_up() {
        let mut buckets = [0; STACK_BUCKETS];
        assert_eq!(
            FiberStackHistogram::new(buckets, 0).recommended_stack_size(),
            None
        );
        buckets[2] = 3;
        let h = FiberStackHistogram::new(buckets, 12 * 1024);
        assert_eq!(h.samples(), 3);
        assert_eq!(h.recommended_stack_size(), Some(32 * 1024));
        let h = FiberStackHistogram::new(buckets, 4096);
        assert_eq!(h.recommended_stack_size(), Some(MIN_STACK_SIZE));
    }
}
