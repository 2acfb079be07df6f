//! [`Builder::dump_on_signal`]: a dump of the runtime on stderr at every
//! delivery of a signal, as Go prints its goroutines on `SIGQUIT`.
//!
//! It lives here, with the signals, because the runtime layer below may
//! not use them: the builder only keeps a start hook, which this one is.
//! At `build` it listens for the signal ([`unix::signal`]) on a thread of
//! its own, `fiber-runtime-dump`, which takes the dump when the signal
//! comes: a plain thread, so that a dump still comes when every worker is
//! stuck. Dropping the runtime stops and joins that thread.

use super::unix::{self, SignalKind};
use crate::runtime::{Builder, Handle};
use crate::util::AtomicWaker;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

/// The name of the thread that waits for the signal and prints the dumps.
const THREAD_NAME: &str = "fiber-runtime-dump";

impl Builder {
    /// Prints a dump of the runtime ([`Handle::dump`]) to stderr every
    /// time the process receives `signal`, as Go does on `SIGQUIT`: the
    /// way to see what a hung program is stuck on without touching its
    /// code (`kill -QUIT <pid>`). Unlike Go, the process goes on running
    /// afterwards. Off by default (feature `signal`).
    ///
    /// The dump is taken by a thread of its own, so it comes even when
    /// every worker is stuck (their fibers are then listed without
    /// backtraces). As with [`unix::signal`], the signal's default action
    /// (for `SIGQUIT`: terminate with a core dump) no longer happens once
    /// the runtime is built, for the rest of the process.
    ///
    /// # Errors
    ///
    /// [`build`](Builder::build) fails with the error of
    /// [`unix::signal`] if the handler cannot be installed
    /// (`InvalidInput` for a signal that cannot be caught or that reports
    /// a fault, such as `SIGKILL` or `SIGSEGV`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fiber_runtime::Builder;
    /// use fiber_runtime::signal::unix::SignalKind;
    ///
    /// let rt = Builder::new_multi_thread()
    ///     .dump_on_signal(SignalKind::quit())
    ///     .build()
    ///     .unwrap();
    /// // `kill -QUIT <pid>` now prints what every task and fiber is doing.
    /// rt.block_on(async { /* ... */ });
    /// ```
    ///
    /// A signal that cannot be handled fails the build:
    ///
    /// ```
    /// use fiber_runtime::Builder;
    /// use fiber_runtime::signal::unix::SignalKind;
    ///
    /// let err = Builder::new_current_thread()
    ///     .dump_on_signal(SignalKind::from_raw(libc::SIGKILL))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn dump_on_signal(&mut self, signal: SignalKind) -> &mut Builder {
        self.set_start_hook(
            "dump_on_signal",
            Some(Arc::new(move |handle: &Handle| {
                let guard: Box<dyn Send + Sync> = Box::new(start(handle.clone(), signal)?);
                Ok(guard)
            })),
        );
        self
    }
}

/// Tells the dump thread to stop.
struct Stop {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

/// Kept by the runtime: stops and joins the dump thread when dropped.
struct Listener {
    stop: Arc<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn start(handle: Handle, kind: SignalKind) -> io::Result<Listener> {
    let mut signal = unix::signal(kind)?;
    let stop = Arc::new(Stop {
        stopped: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            crate::wait::block_on_thread(std::future::poll_fn(|cx| {
                s.waker.register(cx.waker());
                loop {
                    if s.stopped.load(Ordering::Acquire) {
                        return Poll::Ready(());
                    }
                    match signal.poll_recv(cx) {
                        Poll::Ready(Some(())) => {
                            let dump = handle.dump();
                            let _ = writeln!(io::stderr().lock(), "{dump}");
                        }
                        // Deliveries stopped (the dispatcher failed).
                        Poll::Ready(None) => return Poll::Ready(()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }))
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start the {THREAD_NAME} thread: {e}"),
            )
        })?;
    Ok(Listener {
        stop,
        thread: Some(thread),
    })
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.stopped.store(true, Ordering::Release);
        self.stop.waker.wake();
        if let Some(t) = self.thread.take() {
            // At most one dump's wait (its workers are still running).
            let _ = t.join();
        }
    }
}
