//! `LongPoll`: the report of a poll that ran longer than the runtime's
//! long-poll threshold (the monitor that finds them: `scheduler/monitor.rs`).

use crate::scheduler::monitor::{Polled, Report};
use crate::task_core::Id;
use crate::task_core::list::Kind;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

/// What ran too long without yielding, in a [`LongPoll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LongPollKind {
    /// A task: one poll of its future.
    Task,
    /// A fiber: its run between two suspensions (which is one poll of its
    /// task).
    Fiber,
    /// The future passed to [`Runtime::block_on`](crate::Runtime::block_on)
    /// of a current-thread runtime: while it runs, no task of that runtime
    /// does.
    BlockOn,
}

/// A poll that ran longer than the runtime's
/// [`long_poll_threshold`](crate::Builder::long_poll_threshold), as
/// handed to the [`on_long_poll`](crate::Builder::on_long_poll) callback
/// (by default printed to stderr, one line: its `Display`).
///
/// A poll is reported once, while it still runs. The duration it gives,
/// [`elapsed`](Self::elapsed), is a lower bound: the monitor thread that
/// finds long polls looks every quarter of the threshold (within 1 ms and
/// 250 ms), and counts from the check that first saw the poll, so the
/// poll ran longer by less than that interval. A reported poll always ran
/// at least the threshold.
///
/// The backtrace of a stuck fiber is not part of the report (yet): take a
/// dump of the runtime for that.
///
/// # Examples
///
/// ```
/// use fiber_runtime::{Builder, LongPollKind, task};
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let (reports, reported) = mpsc::channel();
/// let rt = Builder::new_multi_thread()
///     .worker_threads(1)
///     .long_poll_threshold(Duration::from_millis(20))
///     .on_long_poll(move |poll| {
///         let _ = reports.send(poll);
///     })
///     .build()
///     .unwrap();
/// let (release, released) = mpsc::channel::<()>();
/// let h = {
///     let _guard = rt.enter();
///     // A task that blocks its worker: the very thing to find.
///     task::Builder::new()
///         .name("sleepy")
///         .spawn(async move { released.recv().unwrap() })
///         .unwrap()
/// };
/// let poll = reported.recv().unwrap();
/// assert_eq!(poll.kind(), LongPollKind::Task);
/// assert_eq!(poll.name(), Some("sleepy"));
/// assert_eq!(poll.task_id(), Some(h.id()));
/// assert!(poll.elapsed() >= Duration::from_millis(20));
/// println!("{poll}");
/// release.send(()).unwrap();
/// rt.block_on(h).unwrap();
/// assert_eq!(rt.metrics().long_poll_count(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct LongPoll {
    inner: Report,
    /// The frames of `inner.backtrace`, trimmed as in dumps.
    frames: Option<Vec<super::dump::Frame>>,
}

impl LongPoll {
    pub(crate) fn new(inner: Report) -> LongPoll {
        let frames = inner.backtrace.as_deref().map(super::dump::frames);
        LongPoll { inner, frames }
    }

    /// The index of the worker running the poll (0 on a current-thread
    /// runtime: the thread driving it), as in
    /// [`RuntimeMetrics`](crate::RuntimeMetrics). A replacement thread of
    /// the worker hand-off (itself stuck in a poll) has an index from
    /// `num_workers()` up, which `RuntimeMetrics` does not list.
    ///
    /// # Examples
    ///
    /// See [`LongPoll`].
    pub fn worker(&self) -> usize {
        self.inner.worker
    }

    /// Whether a task, a fiber or a `block_on` future ran too long.
    ///
    /// # Examples
    ///
    /// See [`LongPoll`].
    pub fn kind(&self) -> LongPollKind {
        match &self.inner.polled {
            Polled::Task(t) if t.kind == Kind::Fiber => LongPollKind::Fiber,
            Polled::Task(_) => LongPollKind::Task,
            Polled::BlockOn => LongPollKind::BlockOn,
        }
    }

    /// The id of the task or fiber (as its
    /// [`JoinHandle::id`](crate::JoinHandle::id)); `None` for a `block_on`
    /// future.
    ///
    /// # Examples
    ///
    /// See [`LongPoll`].
    pub fn task_id(&self) -> Option<Id> {
        match &self.inner.polled {
            Polled::Task(t) => Some(t.id),
            Polled::BlockOn => None,
        }
    }

    /// The name of the task or fiber, if it was given one
    /// ([`task::Builder::name`](crate::task::Builder::name),
    /// [`fiber::Builder::name`](crate::fiber::Builder::name)).
    ///
    /// # Examples
    ///
    /// See [`LongPoll`].
    pub fn name(&self) -> Option<&str> {
        match &self.inner.polled {
            Polled::Task(t) => t.name.as_deref(),
            Polled::BlockOn => None,
        }
    }

    /// Where the task or fiber was spawned (the spawn call in the user's
    /// code); `None` for a `block_on` future.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fiber_runtime::{Builder, LongPoll};
    /// fn where_from(poll: &LongPoll) -> String {
    ///     match poll.location() {
    ///         Some(l) => format!("{}:{}", l.file(), l.line()),
    ///         None => "the block_on future".to_string(),
    ///     }
    /// }
    /// # let _ = where_from;
    /// ```
    pub fn location(&self) -> Option<&'static Location<'static>> {
        match &self.inner.polled {
            Polled::Task(t) => Some(t.location),
            Polled::BlockOn => None,
        }
    }

    /// How long the poll had run when it was reported (a lower bound,
    /// short by less than the monitor's check interval: see [`LongPoll`]).
    ///
    /// # Examples
    ///
    /// See [`LongPoll`].
    pub fn elapsed(&self) -> Duration {
        self.inner.elapsed
    }

    /// The runtime's threshold, which the poll exceeded.
    ///
    /// # Examples
    ///
    /// See [`LongPoll`].
    pub fn threshold(&self) -> Duration {
        self.inner.threshold
    }

    /// Whether the stuck worker's queues were handed to a replacement
    /// thread, so that the runtime's other tasks go on meanwhile
    /// (multi-thread flavor; never on a current-thread runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f(poll: fiber_runtime::LongPoll) {
    /// if !poll.handed_off() {
    ///     eprintln!("worker {} is stuck and its tasks wait", poll.worker());
    /// }
    /// # }
    /// ```
    pub fn handed_off(&self) -> bool {
        self.inner.handed_off
    }

    /// Whether this is the second report of a fiber's long run: the run
    /// has ended (the fiber suspended or finished), [`elapsed`] is the
    /// whole run, and [`backtrace`] says where it suspended.
    ///
    /// A running stack cannot be walked from another thread, so a
    /// fiber's backtrace is taken after the fact: the callback is called
    /// once when the run passes the threshold (as for a task), and once
    /// more when it ends, if it does. (If the run ends at the very moment
    /// it is reported, the second report may be missed.)
    ///
    /// [`elapsed`]: Self::elapsed
    /// [`backtrace`]: Self::backtrace
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f(poll: fiber_runtime::LongPoll) {
    /// if let Some(frames) = poll.backtrace() {
    ///     eprintln!("fiber {:?} ran {:?}, then suspended in:", poll.task_id(), poll.elapsed());
    ///     for frame in frames {
    ///         eprintln!("    {}", frame.function());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn ended(&self) -> bool {
        self.inner.ended
    }

    /// For the [second report](Self::ended) of a fiber's long run, the
    /// backtrace of where it suspended, walked on its own stack and
    /// trimmed as in a [`Dump`](crate::runtime::Dump) (`None` for the
    /// first report, for tasks, and for a fiber that finished instead of
    /// suspending).
    ///
    /// # Examples
    ///
    /// See [`ended`](Self::ended).
    pub fn backtrace(&self) -> Option<&[super::dump::Frame]> {
        self.frames.as_deref()
    }
}

/// A duration as people read it: `104.2 ms`, `4.01 s`.
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs_f64();
        if s >= 1.0 {
            write!(f, "{s:.2} s")
        } else if s >= 1e-3 {
            write!(f, "{:.1} ms", s * 1e3)
        } else {
            write!(f, "{:.1} µs", s * 1e6)
        }
    }
}

/// One line: what ran, where it was spawned, for how long, on which
/// worker, and what to do about it.
///
/// The second report of a fiber's long run ([`LongPoll::ended`]) names
/// the fiber and the whole run, then lists where it suspended, one
/// frame per line.
impl fmt::Display for LongPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.inner;
        let (elapsed, threshold) = (Human(r.elapsed), Human(r.threshold));
        if let (true, Polled::Task(t)) = (r.ended, &r.polled) {
            write!(f, "fiber-runtime: long poll ended: fiber {}", t.id)?;
            if let Some(name) = &t.name {
                write!(f, " {name:?}")?;
            }
            write!(
                f,
                " (spawned at {}) ran for {elapsed} without suspending on worker {} (threshold \
                 {threshold})",
                t.location, r.worker
            )?;
            match &self.frames {
                Some(frames) => {
                    f.write_str("; then it suspended in:")?;
                    for fr in frames {
                        write!(f, "\n    {}", fr.function())?;
                        if let (Some(file), Some(line)) = (fr.file(), fr.line()) {
                            write!(f, "\n        at {file}:{line}")?;
                        }
                    }
                }
                None => f.write_str("; no backtrace (it finished, or could not be walked)")?,
            }
            return Ok(());
        }
        f.write_str("fiber-runtime: long poll: ")?;
        match &r.polled {
            Polled::Task(t) => {
                let kind = match t.kind {
                    Kind::Task => "task",
                    Kind::Fiber => "fiber",
                };
                write!(f, "{kind} {}", t.id)?;
                if let Some(name) = &t.name {
                    write!(f, " {name:?}")?;
                }
                write!(f, " (spawned at {})", t.location)?;
                match t.kind {
                    Kind::Task => write!(
                        f,
                        " has been in one poll for {elapsed} on worker {} (threshold {threshold}); \
                         a blocking call in async code? move it to spawn_blocking or a fiber",
                        r.worker
                    )?,
                    Kind::Fiber => write!(
                        f,
                        " has run for {elapsed} without suspending on worker {} (threshold \
                         {threshold}); a blocking std call? use the fiber's blocking-style calls \
                         or spawn_blocking",
                        r.worker
                    )?,
                }
            }
            Polled::BlockOn => write!(
                f,
                "the block_on future of a current-thread runtime has been in one poll for \
                 {elapsed} (threshold {threshold}), and no task of the runtime runs meanwhile; a \
                 blocking call in async code? move it to spawn_blocking"
            )?,
        }
        if r.handed_off {
            f.write_str("; its worker's queues were handed to another thread")?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(fiber_runtime_loom)))]
mod tests {
    use super::*;
    use crate::task_core::list::TaskInfo;

    fn report(polled: Polled) -> LongPoll {
        LongPoll::new(Report {
            worker: 1,
            polled,
            elapsed: Duration::from_micros(104_250),
            threshold: Duration::from_millis(100),
            handed_off: false,
            ended: false,
            backtrace: None,
        })
    }

    #[test]
    fn the_line_names_the_task_its_spawn_and_the_duration() {
        let location = Location::caller();
        let id = crate::task_core::Id::next();
        let p = report(Polled::Task(TaskInfo {
            id,
            name: Some("sleepy".into()),
            location,
            kind: Kind::Fiber,
            running: true,
        }));
        let line = p.to_string();
        assert!(
            line.starts_with(&format!("fiber-runtime: long poll: fiber {id} \"sleepy\"")),
            "{line}"
        );
        assert!(line.contains(&format!("spawned at {location}")), "{line}");
        assert!(line.contains("104.2 ms"), "{line}");
        assert!(line.contains("worker 1"), "{line}");
        assert!(line.contains("threshold 100.0 ms"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(
            (p.kind(), p.name(), p.task_id()),
            (LongPollKind::Fiber, Some("sleepy"), Some(id))
        );
    }

    #[test]
    fn a_block_on_future_has_no_task() {
        let p = report(Polled::BlockOn);
        assert_eq!(p.kind(), LongPollKind::BlockOn);
        assert_eq!((p.task_id(), p.name(), p.location()), (None, None, None));
        assert!(p.to_string().contains("block_on future"));
    }
}
