//! Helpers shared by the integration tests. Each test crate uses a subset.
//!
//! Nothing here sleeps: cross-thread hand-offs use condition variables,
//! channels or a bounded spin ([`wait_until`]); every wait gives up after
//! [`TIMEOUT`] with a panic naming what it waited for, so that a lost
//! wakeup fails the test instead of hanging it.

#![allow(dead_code)]

use fiber_runtime::{Builder, JoinHandle, Runtime};
use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, Once, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A TCP address on 127.0.0.1 that refuses connections: a socket bound
/// there and never listening, kept bound while the returned socket lives.
/// (The port of a dropped listener may be handed at once to a test running
/// alongside, which then answers, or resets, the connection.)
pub(crate) fn refusing_addr() -> (socket2::Socket, std::net::SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// How long any wait in a test may take before it is reported as a hang.
/// Only a bound for failure detection: no test measures time.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Every panic a test raises on purpose contains this marker, so that
/// [`silence_expected_panics`] can keep them out of the output.
pub(crate) const EXPECTED_PANIC: &str = "expected panic";

// ---------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------

/// A runtime flavor to run a scenario on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread(usize),
}

impl Flavor {
    /// The flavors most tests run on.
    pub(crate) const ALL: [Flavor; 3] = [
        Flavor::CurrentThread,
        Flavor::MultiThread(1),
        Flavor::MultiThread(2),
    ];

    pub(crate) fn build(self) -> Runtime {
        match self {
            Flavor::CurrentThread => current_thread(),
            Flavor::MultiThread(n) => multi_thread(n),
        }
    }

    /// [`build`](Self::build), with no worker hand-off
    /// ([`multi_thread_without_handoff`]).
    pub(crate) fn build_without_handoff(self) -> Runtime {
        match self {
            Flavor::CurrentThread => current_thread(),
            Flavor::MultiThread(n) => multi_thread_without_handoff(n),
        }
    }

    pub(crate) fn workers(self) -> usize {
        match self {
            Flavor::CurrentThread => 1,
            Flavor::MultiThread(n) => n,
        }
    }
}

pub(crate) fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .build()
        .expect("building a current_thread runtime")
}

pub(crate) fn multi_thread(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("building a multi_thread runtime")
}

/// A multi-thread runtime whose workers are never handed off
/// (`Builder::worker_handoff(false)`): for tests that hold workers on
/// purpose ([`plug_workers`]), where a replacement thread would run what
/// the test holds back, and for tests that count per-worker polls or
/// steals, of which a replacement thread's are no part. A poll blocked
/// 100 ms (a stalled CI machine is enough) starts one.
pub(crate) fn multi_thread_without_handoff(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .worker_handoff(false)
        .build()
        .expect("building a multi_thread runtime")
}

/// How many runs [`until_conclusive`] makes before it gives up.
const CONCLUSIVE_TRIES: usize = 20;

/// Runs `attempt` until one run is conclusive (returns `Some`), at most
/// [`CONCLUSIVE_TRIES`] times. For tests whose subject is a real
/// deadline: a run in which the machine stalled past the deadline before
/// the test could act (the run checks this itself, from `Instant`s it
/// took) says nothing of what the test checks, and is made again. Never a
/// bound on how long anything takes: a run's result is asserted only when
/// its precondition held.
#[track_caller]
pub(crate) fn until_conclusive<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    for _ in 0..CONCLUSIVE_TRIES {
        if let Some(t) = attempt() {
            return t;
        }
    }
    panic!("{what}: the machine stalled past the deadline in each of {CONCLUSIVE_TRIES} runs");
}

/// Runs the future `make` builds on a fresh runtime of `flavor`, on a
/// thread of its own, failing the test if it hangs.
#[track_caller]
pub(crate) fn run<F, Fut>(flavor: Flavor, what: &str, make: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    run_with_timeout(&format!("{what} on {flavor:?}"), move || {
        flavor.build().block_on(make())
    })
}

/// `n` milliseconds.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `rt.block_on` of a loop that yields until `cond` holds. Works on
/// both flavors: on a current-thread runtime this is what drives the tasks.
#[track_caller]
pub(crate) fn drive_until(rt: &Runtime, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    rt.block_on(async {
        while !cond() {
            assert!(Instant::now() < deadline, "timed out driving until {what}");
            fiber_runtime::yield_now().await;
        }
    });
}

/// Runs `rt.block_on` of `n` yields: lets a current-thread runtime run
/// whatever is ready.
pub(crate) fn drive_yields(rt: &Runtime, n: usize) {
    rt.block_on(async {
        for _ in 0..n {
            fiber_runtime::yield_now().await;
        }
    });
}

/// Spins (yielding the CPU) on a plain thread until `cond` holds.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// Waits for a plain thread from async code without blocking a worker:
/// a helper thread joins it and hands the result over. Returns what
/// `join` returned (`Err` with the payload if the thread panicked).
pub(crate) async fn join_thread_result<T: Send + 'static>(
    t: std::thread::JoinHandle<T>,
) -> std::thread::Result<T> {
    let (tx, rx) = fiber_runtime::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(t.join());
    });
    rx.await.expect("the joining thread went away")
}

/// [`join_thread_result`], re-raising the thread's panic.
pub(crate) async fn join_thread<T: Send + 'static>(t: std::thread::JoinHandle<T>) -> T {
    match join_thread_result(t).await {
        Ok(v) => v,
        Err(p) => panic::resume_unwind(p),
    }
}

/// Runs `f` on a new thread and returns its result, failing the test if it
/// takes longer than [`TIMEOUT`] (a hang) and re-raising its panic.
#[track_caller]
pub(crate) fn run_with_timeout<R: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    run_with_timeout_in(TIMEOUT, what, f)
}

/// [`run_with_timeout`] with an explicit bound, for a call that normally
/// returns at once (so that a known hang does not stall the suite).
#[track_caller]
pub(crate) fn run_with_timeout_in<R: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("timed out (hang?): {what}"),
    }
}

/// Fails the test if it is still alive after [`TIMEOUT`], for a call that
/// must run on the test's own thread (and so cannot be moved into
/// [`run_with_timeout`]): it reports what hung and aborts the process,
/// since the hung thread cannot be unwound from outside.
pub(crate) struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    pub(crate) fn new(what: &str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_string();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(TIMEOUT) {
                eprintln!("timed out (hang?): {what}");
                std::process::abort();
            }
        });
        Watchdog { done: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Re-runs this test binary on test `test` only, as a child process with
/// `var=value` in its environment (the test checks `var` to know it is
/// the child), and returns the child's output; kills it and fails the
/// test if it hangs. For what must not happen in the test process itself
/// (an abort, a resource limit).
#[track_caller]
pub(crate) fn run_child(test: &str, var: &str, value: &str) -> std::process::Output {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(var, value)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child test process");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT * 2) {
        Ok(out) => out.expect("waiting for the child"),
        Err(_) => {
            // SAFETY: plain system call on the child we spawned (not yet
            // reaped: its waiter has not returned).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("the child of {test} ({var}={value}) hung; killed it");
        }
    }
}

/// The two halves of a test that runs in a child process: in the child
/// (`var` set), runs `child` and reports success; in the parent, re-runs
/// test `test` as the child and asserts that it succeeded.
#[track_caller]
pub(crate) fn in_child(test: &str, var: &str, child: impl FnOnce()) {
    if std::env::var_os(var).is_some() {
        child();
        println!("child ok");
        return;
    }
    let out = run_child(test, var, "1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child ok"),
        "child failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Counting futures and values
// ---------------------------------------------------------------------------

/// Poll and drop counts of the [`Tracked`] futures made with it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    polls: AtomicUsize,
    drops: AtomicUsize,
}

impl Counters {
    pub(crate) fn new() -> Arc<Counters> {
        Arc::new(Counters::default())
    }

    pub(crate) fn polls(&self) -> usize {
        self.polls.load(SeqCst)
    }

    pub(crate) fn drops(&self) -> usize {
        self.drops.load(SeqCst)
    }
}

/// A future that counts its polls (at the start of each) and its drop.
pub(crate) struct Tracked<F> {
    inner: Pin<Box<F>>,
    counters: Arc<Counters>,
}

pub(crate) fn tracked<F: Future>(counters: &Arc<Counters>, fut: F) -> Tracked<F> {
    Tracked {
        inner: Box::pin(fut),
        counters: counters.clone(),
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.counters.polls.fetch_add(1, SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        self.counters.drops.fetch_add(1, SeqCst);
    }
}

/// A value that counts its drops in a shared counter.
#[derive(Debug)]
pub(crate) struct DropToken {
    pub(crate) value: u64,
    drops: Arc<AtomicUsize>,
}

impl DropToken {
    pub(crate) fn new(value: u64, drops: &Arc<AtomicUsize>) -> DropToken {
        DropToken {
            value,
            drops: drops.clone(),
        }
    }
}

impl Drop for DropToken {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Gate: a future the test completes by hand
// ---------------------------------------------------------------------------

/// A manual event: [`Gate::wait`] is pending until [`Gate::open`]. The
/// test can also wake the waiter without opening (a spurious wake), and
/// block until the waiter registered (was polled while closed).
///
/// Meant for one waiting future at a time (the last registered waker is
/// the one woken).
#[derive(Clone, Default)]
pub(crate) struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Default)]
struct GateInner {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    waker: Option<Waker>,
    registrations: usize,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate::default()
    }

    /// A future that completes once the gate is open.
    pub(crate) fn wait(&self) -> GateWait {
        GateWait { gate: self.clone() }
    }

    /// Opens the gate and wakes the waiter, if any. Returns whether a
    /// waker was registered.
    pub(crate) fn open(&self) -> bool {
        let waker = {
            let mut s = self.inner.state.lock().unwrap();
            s.open = true;
            self.inner.changed.notify_all();
            s.waker.take()
        };
        let had = waker.is_some();
        if let Some(w) = waker {
            w.wake();
        }
        had
    }

    /// Wakes the registered waker without opening the gate (consuming it:
    /// the waiter registers again when polled). Returns whether there was
    /// one.
    pub(crate) fn wake(&self) -> bool {
        let waker = self.inner.state.lock().unwrap().waker.take();
        let had = waker.is_some();
        if let Some(w) = waker {
            w.wake();
        }
        had
    }

    /// Takes the registered waker out, if any (to wake or drop it later).
    pub(crate) fn take_waker(&self) -> Option<Waker> {
        self.inner.state.lock().unwrap().waker.take()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.inner.state.lock().unwrap().open
    }

    /// How many times a waiter was polled while the gate was closed.
    pub(crate) fn registrations(&self) -> usize {
        self.inner.state.lock().unwrap().registrations
    }

    /// Blocks the calling (plain) thread until the waiter has been polled
    /// while closed at least `n` times.
    #[track_caller]
    pub(crate) fn wait_registrations(&self, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        let mut s = self.inner.state.lock().unwrap();
        while s.registrations < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {n} gate registrations"
            );
            s = self
                .inner
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap()
                .0;
        }
    }
}

/// The future of [`Gate::wait`].
pub(crate) struct GateWait {
    gate: Gate,
}

impl Future for GateWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.gate.inner.state.lock().unwrap();
        if s.open {
            return Poll::Ready(());
        }
        s.waker = Some(cx.waker().clone());
        s.registrations += 1;
        self.gate.inner.changed.notify_all();
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------
// Latch: a plain-thread event
// ---------------------------------------------------------------------------

/// A one-way flag threads can block on (used to hold a worker in place).
#[derive(Clone, Default)]
pub(crate) struct Latch {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Latch {
    pub(crate) fn new() -> Latch {
        Latch::default()
    }

    pub(crate) fn release(&self) {
        *self.inner.0.lock().unwrap() = true;
        self.inner.1.notify_all();
    }

    pub(crate) fn is_released(&self) -> bool {
        *self.inner.0.lock().unwrap()
    }

    /// Blocks until released.
    #[track_caller]
    pub(crate) fn wait(&self) {
        let deadline = Instant::now() + TIMEOUT;
        let mut released = self.inner.0.lock().unwrap();
        while !*released {
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for a latch");
            released = self
                .inner
                .1
                .wait_timeout(released, deadline - now)
                .unwrap()
                .0;
        }
    }
}

/// Occupies every worker of a multi-thread runtime with a task blocked on
/// a latch, so that tasks spawned meanwhile are not polled until
/// [`Plug::release`].
pub(crate) struct Plug {
    latch: Latch,
    handles: Vec<JoinHandle<()>>,
}

/// Plugs all `workers` workers of `rt`: returns once each of them is
/// blocked in a plug task (`workers` plug tasks running at once can only
/// be on `workers` distinct threads). `rt` must not hand a plugged worker
/// off by itself ([`multi_thread_without_handoff`], or no long-poll
/// detector), or a replacement thread runs what the plug holds back.
#[track_caller]
pub(crate) fn plug_workers(rt: &Runtime, workers: usize) -> Plug {
    let latch = Latch::new();
    let started = Arc::new(AtomicUsize::new(0));
    let handles = (0..workers)
        .map(|_| {
            let latch = latch.clone();
            let started = started.clone();
            rt.spawn(async move {
                started.fetch_add(1, SeqCst);
                latch.wait();
            })
        })
        .collect();
    wait_until("every worker runs a plug task", || {
        started.load(SeqCst) == workers
    });
    Plug { latch, handles }
}

impl Plug {
    /// Unblocks the workers and waits for the plug tasks to finish.
    pub(crate) fn release(self) {
        self.latch.release();
        for h in self.handles {
            h.join().expect("plug task failed");
        }
    }
}

// ---------------------------------------------------------------------------
// Wakers
// ---------------------------------------------------------------------------

/// A waker that counts its wakes.
#[derive(Debug, Default)]
pub(crate) struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    pub(crate) fn new() -> (Arc<CountingWaker>, Waker) {
        let w = Arc::new(CountingWaker::default());
        let waker = Waker::from(w.clone());
        (w, waker)
    }

    pub(crate) fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

/// Polls `fut` once with `waker`.
pub(crate) fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

// ---------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------

/// The message of a panic payload (`&str` or `String`), if it has one.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<String> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Some((*s).to_string())
    } else {
        payload.downcast_ref::<String>().cloned()
    }
}

/// Runs `f`, asserting that it panics, and returns the panic message.
#[track_caller]
pub(crate) fn expect_panic<R>(f: impl FnOnce() -> R) -> String {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("the closure was expected to panic but returned"),
        Err(payload) => panic_message(&*payload).expect("a panic with a string message"),
    }
}

/// Keeps panics raised on purpose by the tests (those whose message
/// contains [`EXPECTED_PANIC`], or one of `also`) out of the output;
/// every other panic goes to the previous hook as usual.
pub(crate) fn silence_expected_panics(also: &'static [&'static str]) {
    static ONCE: Once = Once::new();
    static EXTRA: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    EXTRA.lock().unwrap().extend_from_slice(also);
    ONCE.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let msg = panic_message(info.payload()).unwrap_or_default();
            let extra = EXTRA.lock().map(|e| e.clone()).unwrap_or_default();
            if msg.contains(EXPECTED_PANIC) || extra.iter().any(|e| msg.contains(e)) {
                return;
            }
            prev(info)
        }));
    });
}
