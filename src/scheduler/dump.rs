//! Dumps, the scheduler's part: a reference to every live task, and from
//! each worker a report on the fibers it runs (`fiber::pool`), taken on
//! that worker's own thread. `runtime::dump` turns it into the public
//! `Dump`.
//!
//! # Asking the workers
//!
//! Only a fiber's own worker may walk its stack, and only while it runs
//! no poll. So the dump posts a request to each worker's [`WorkerSlot`]
//! and wakes it; the worker serves requests at its safe points (after a
//! park returns, at its maintenance tick: one relaxed load there, and
//! nothing on the poll path), walks its fibers once for every request
//! waiting, and answers each. The dumping thread waits for the answers
//! for a bounded time ([`WAIT`]) and reports the workers that did not
//! take up the request — stuck in a poll, the very case dumps are for —
//! as not walked: a dump never waits for a poll to end. Its request is
//! then withdrawn, so a worker stuck for good does not collect them. A
//! worker that took the request up is walking (which runs no user code)
//! and is waited for longer ([`WALK_WAIT`]): many fibers take a while.
//! It captures the backtraces of at most [`MAX_WALKED`] fibers per dump.
//!
//! A dump taken on a worker (inside a task or a fiber) walks that
//! worker's fibers itself, there and then: nothing of them runs (their
//! stacks are only walked), so a poll in progress does not matter.
//! While it waits for the others it keeps serving the requests posted to
//! its own worker, so two workers dumping at once do not wait for each
//! other. On the current-thread flavor the thread driving the runtime (or
//! the thread its live fibers are bound to) is its one worker.
//!
//! No lock is held while a worker walks its fibers or while any user
//! code runs; the owned list is only held for short runs of slots
//! (`task_core::list`, "Snapshots").

use crate::fiber::pool::{self, FiberReport};
use crate::loom::{AtomicBool, Condvar, Mutex, Ordering::*};
use crate::task_core::list::{Kind, OwnedTasks, TaskRef};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a dump waits for the workers to take up its request, in all.
pub(crate) const WAIT: Duration = Duration::from_millis(250);

/// How long it waits, in all, for a worker that took the request up and
/// walks its fibers.
const WALK_WAIT: Duration = Duration::from_secs(10);

/// The most fibers a worker captures backtraces of for one dump (tens of
/// µs each in release builds, more in debug builds); the others are
/// reported without.
pub(crate) const MAX_WALKED: usize = 10_000;

/// While the dumping thread is itself a worker: how often it looks at
/// its own slot while it waits.
const SELF_SERVE_INTERVAL: Duration = Duration::from_millis(1);

/// One worker's answer to a dump.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The name of the worker's thread.
    pub(crate) thread: Option<String>,
    /// Its fibers (of this runtime), walked on its thread.
    pub(crate) fibers: Vec<FiberReport>,
}

/// What became of one worker in a dump.
#[derive(Debug, Clone)]
pub(crate) enum WorkerState {
    /// It answered: its fibers are in the answer.
    Walked(Arc<Answer>),
    /// It did not answer within the wait: busy in a poll.
    Busy(Duration),
    /// It has stopped (the runtime shuts down, or did).
    Stopped,
    /// No thread drives it (a current-thread runtime outside `block_on`).
    Undriven,
}

/// One dump's request, which every worker asked answers into.
struct Reply {
    /// Per worker: how far it got.
    answers: Mutex<Vec<Progress>>,
    answered: Condvar,
}

/// How far a worker got with a dump's request.
#[derive(Clone, Debug)]
enum Progress {
    /// Not taken up yet.
    Asked,
    /// Taken up: the worker walks its fibers.
    Walking,
    /// Answered.
    Done(Arc<Answer>),
    /// The worker stopped.
    Stopped,
}

impl Reply {
    fn set(&self, worker: usize, progress: Progress) {
        let mut a = self.answers.lock();
        if let Some(slot) = a.get_mut(worker) {
            *slot = progress;
        }
        drop(a);
        self.answered.notify_all();
    }
}

/// The dumps waiting for one worker.
pub(crate) struct WorkerSlot {
    /// Set while `waiting` holds a request; read with a relaxed load at
    /// the worker's safe points.
    pending: AtomicBool,
    waiting: Mutex<Waiting>,
}

struct Waiting {
    replies: Vec<Arc<Reply>>,
    /// The worker stopped: it answers no more.
    closed: bool,
}

impl WorkerSlot {
    pub(crate) fn new() -> WorkerSlot {
        WorkerSlot {
            pending: AtomicBool::new(false),
            waiting: Mutex::new(Waiting {
                replies: Vec::new(),
                closed: false,
            }),
        }
    }

    /// The worker, at a safe point (outside any poll, on its own thread):
    /// answers the dumps waiting for it, if any. `worker` is its index.
    #[inline]
    pub(crate) fn serve(&self, runtime_id: usize, worker: usize) {
        if self.pending.load(Relaxed) {
            self.serve_slow(runtime_id, worker);
        }
    }

    #[cold]
    #[inline(never)]
    fn serve_slow(&self, runtime_id: usize, worker: usize) {
        let replies = {
            let mut w = self.waiting.lock();
            self.pending.store(false, Relaxed);
            std::mem::take(&mut w.replies)
        };
        if replies.is_empty() {
            return;
        }
        for r in &replies {
            r.set(worker, Progress::Walking);
        }
        let answer = Arc::new(walk_here(runtime_id));
        for r in replies {
            r.set(worker, Progress::Done(answer.clone()));
        }
    }

    /// The worker stops: every dump waiting hears so, and later ones are
    /// refused at once.
    pub(crate) fn close(&self, worker: usize) {
        let replies = {
            let mut w = self.waiting.lock();
            w.closed = true;
            self.pending.store(false, Relaxed);
            std::mem::take(&mut w.replies)
        };
        for r in replies {
            r.set(worker, Progress::Stopped);
        }
    }

    /// Whether the worker has stopped.
    fn is_closed(&self) -> bool {
        self.waiting.lock().closed
    }

    /// Posts `reply`; `false` if the worker has stopped.
    fn post(&self, reply: &Arc<Reply>) -> bool {
        let mut w = self.waiting.lock();
        if w.closed {
            return false;
        }
        w.replies.push(reply.clone());
        self.pending.store(true, Release);
        true
    }

    /// Takes `reply` back (the dump stopped waiting for it).
    fn withdraw(&self, reply: &Arc<Reply>) {
        let mut w = self.waiting.lock();
        w.replies.retain(|r| !Arc::ptr_eq(r, reply));
        if w.replies.is_empty() {
            self.pending.store(false, Relaxed);
        }
    }
}

impl std::fmt::Debug for WorkerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSlot")
            .field("pending", &self.pending.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a dump needs of a scheduler flavor.
pub(crate) trait Target {
    fn runtime_id(&self) -> usize;
    fn owned(&self) -> &OwnedTasks;
    fn num_workers(&self) -> usize;
    fn slot(&self, worker: usize) -> &WorkerSlot;
    /// Wakes worker `worker` (if parked), to serve its slot.
    fn wake(&self, worker: usize);
    /// The worker whose fibers this thread owns, if any: it walks them
    /// itself (module doc).
    fn here(&self) -> Option<usize>;
    /// Whether worker `worker` may still answer: a thread drives it.
    fn driven(&self, worker: usize) -> bool;
    /// The worker a fiber's task runs on, if known (it started).
    fn fiber_worker(&self, task: &TaskRef) -> Option<usize>;
}

/// A dump, the scheduler's part.
#[derive(Debug)]
pub(crate) struct Raw {
    /// Every task in the owned list when the dump began (with a
    /// reference each), its kind and, for a fiber, its worker's report.
    pub(crate) tasks: Vec<RawEntry>,
    /// What became of each worker.
    pub(crate) workers: Vec<WorkerState>,
}

/// One task of a [`Raw`] dump.
#[derive(Debug)]
pub(crate) struct RawEntry {
    pub(crate) task: TaskRef,
    pub(crate) kind: Kind,
    /// For a fiber that started: its worker.
    pub(crate) worker: Option<usize>,
    /// For a fiber its worker walked: the answer, and the fiber's index
    /// in it.
    pub(crate) report: Option<(Arc<Answer>, usize)>,
}

impl RawEntry {
    /// The fiber's report, if its worker walked it.
    pub(crate) fn report(&self) -> Option<&FiberReport> {
        self.report.as_ref().map(|(a, i)| &a.fibers[*i])
    }
}

/// Walks this thread's fibers of runtime `runtime_id`.
fn walk_here(runtime_id: usize) -> Answer {
    Answer {
        thread: std::thread::current().name().map(String::from),
        fibers: pool::report_started(runtime_id, MAX_WALKED),
    }
}

/// Takes a dump of `target`, waiting at most `wait` for its workers to
/// take the request up (module doc).
pub(crate) fn collect(target: &dyn Target, wait: Duration) -> Raw {
    let started = Instant::now();
    let tasks = target.owned().snapshot();
    let n = target.num_workers();
    let reply = Arc::new(Reply {
        answers: Mutex::new(vec![Progress::Asked; n]),
        answered: Condvar::new(),
    });
    let here = target.here();
    let mut posted = vec![false; n];
    for (i, p) in posted.iter_mut().enumerate() {
        if Some(i) == here {
            continue;
        }
        if target.slot(i).post(&reply) {
            *p = true;
            target.wake(i);
        } else {
            reply.set(i, Progress::Stopped);
        }
    }
    if let Some(i) = here {
        reply.set(i, Progress::Done(Arc::new(walk_here(target.runtime_id()))));
    }
    loop {
        let progress = reply.answers.lock().clone();
        let asked: Vec<usize> = (0..n)
            .filter(|&i| posted[i] && matches!(progress[i], Progress::Asked))
            .collect();
        let walking = progress.iter().any(|p| matches!(p, Progress::Walking));
        // A worker nobody drives (or that stopped meanwhile) cannot answer.
        let may_take_up = asked
            .iter()
            .any(|&i| target.driven(i) && !target.slot(i).is_closed());
        let deadline = started + if walking { WALK_WAIT } else { wait };
        let now = Instant::now();
        if !(walking || may_take_up) || now >= deadline {
            break;
        }
        let mut slice = deadline - now;
        if here.is_some() {
            slice = slice.min(SELF_SERVE_INTERVAL);
        }
        {
            let a = reply.answers.lock();
            let unchanged = a
                .iter()
                .zip(&progress)
                .all(|(now, then)| std::mem::discriminant(now) == std::mem::discriminant(then));
            if unchanged {
                drop(reply.answered.wait_timeout(a, slice));
            }
        }
        if let Some(k) = here {
            // Other dumps may wait for this worker meanwhile.
            target.slot(k).serve(target.runtime_id(), k);
        }
    }
    let waited = started.elapsed();
    let progress = std::mem::take(&mut *reply.answers.lock());
    let workers: Vec<WorkerState> = progress
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Progress::Done(a) => WorkerState::Walked(a),
            Progress::Stopped => WorkerState::Stopped,
            Progress::Walking => WorkerState::Busy(waited),
            Progress::Asked => {
                if posted[i] {
                    target.slot(i).withdraw(&reply);
                }
                if target.slot(i).is_closed() {
                    WorkerState::Stopped
                } else if !target.driven(i) {
                    WorkerState::Undriven
                } else {
                    WorkerState::Busy(waited)
                }
            }
        })
        .collect();
    // Per walked worker: its fibers' reports by task id (one lookup per
    // fiber task, not a scan of the worker's answer).
    let by_id: Vec<HashMap<u64, usize>> = workers
        .iter()
        .map(|w| match w {
            WorkerState::Walked(a) => a
                .fibers
                .iter()
                .enumerate()
                .map(|(i, f)| (f.id, i))
                .collect(),
            _ => HashMap::new(),
        })
        .collect();
    let tasks = tasks
        .into_iter()
        .map(|(task, kind)| {
            let worker = match kind {
                Kind::Fiber => target.fiber_worker(&task),
                Kind::Task => None,
            };
            let id = task.raw().id().as_u64();
            let report = worker.and_then(|w| match workers.get(w) {
                Some(WorkerState::Walked(a)) => by_id[w].get(&id).map(|&i| (a.clone(), i)),
                _ => None,
            });
            RawEntry {
                task,
                kind,
                worker,
                report,
            }
        })
        .collect();
    Raw { tasks, workers }
}
