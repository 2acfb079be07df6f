//! The feature "tracing": a span per task, fiber and blocking closure
//! (name, id, spawn location) entered around every poll and resumption,
//! a fiber's own spans following it across its switches (never left
//! entered on the worker while it is suspended), and the runtime's events
//! (spawn, park/unpark, steal, blocking threads).
//!
//! One capturing subscriber (a `Registry` with a recording `Layer`) is the
//! global default of this test binary: workers are other threads. For
//! every event it records the event's span scope (the span and its
//! parents) and the *stack* of spans entered on the thread at that moment
//! (what the subscriber's per-thread state says, which is what a leaked
//! guard would corrupt). Tests run in parallel, so each one marks its
//! events with a unique `test` field (or filters by task id or thread
//! name) and looks only at those.

#![cfg(feature = "tracing")]
// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::sync::{Mutex as AsyncMutex, oneshot};
use fiber_runtime::{Builder, Handle, Runtime, fiber, task};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use util::{EXPECTED_PANIC, Flavor};

// ---------------------------------------------------------------------------
// The capturing subscriber
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct SpanRec {
    id: u64,
    name: &'static str,
    fields: HashMap<String, String>,
}

impl SpanRec {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("<none>", String::as_str)
    }
}

#[derive(Clone, Debug)]
struct EventRec {
    target: String,
    level: Level,
    fields: HashMap<String, String>,
    thread: ThreadId,
    thread_name: Option<String>,
    /// The event's span and its parents, outermost first.
    scope: Vec<SpanRec>,
    /// Every span entered on the thread, outermost first.
    stack: Vec<SpanRec>,
}

impl EventRec {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("<none>", String::as_str)
    }

    fn stack_names(&self) -> Vec<&'static str> {
        self.stack.iter().map(|s| s.name).collect()
    }
}

#[derive(Default)]
struct Store {
    events: Mutex<Vec<EventRec>>,
    /// `(span, follows_from)` pairs.
    follows: Mutex<Vec<(u64, u64)>>,
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

thread_local! {
    /// The spans entered on this thread, in order (as the layer sees
    /// `on_enter`/`on_exit`).
    static STACK: RefCell<Vec<span::Id>> = const { RefCell::new(Vec::new()) };
}

struct Capture(Arc<Store>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let span = ctx.span(id).expect("a new span is in the registry");
        span.extensions_mut().insert(SpanRec {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            fields: fields.0,
        });
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, _ctx: Context<'_, S>) {
        self.0
            .follows
            .lock()
            .unwrap()
            .push((span.into_u64(), follows.into_u64()));
    }

    fn on_enter(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let _ = STACK.try_with(|s| s.borrow_mut().push(id.clone()));
    }

    fn on_exit(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let _ = STACK.try_with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|x| x == id) {
                s.remove(i);
            }
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let rec = |id: &span::Id| {
            ctx.span(id)
                .and_then(|s| s.extensions().get::<SpanRec>().cloned())
        };
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .filter_map(|s| s.extensions().get::<SpanRec>().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let stack = STACK
            .try_with(|s| s.borrow().iter().filter_map(rec).collect())
            .unwrap_or_default();
        let thread = std::thread::current();
        self.0.events.lock().unwrap().push(EventRec {
            target: event.metadata().target().to_string(),
            level: *event.metadata().level(),
            fields: fields.0,
            thread: thread.id(),
            thread_name: thread.name().map(String::from),
            scope,
            stack,
        });
    }
}

fn store() -> &'static Store {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = Arc::new(Store::default());
        let subscriber = tracing_subscriber::registry().with(Capture(store.clone()));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        store
    })
}

/// A marker unique in this test binary; installs the subscriber.
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    store();
    format!("{what}-{}", N.fetch_add(1, SeqCst))
}

fn events_where(pred: impl Fn(&EventRec) -> bool) -> Vec<EventRec> {
    store()
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| pred(e))
        .cloned()
        .collect()
}

/// The events with `test = marker`.
fn marked(marker: &str) -> Vec<EventRec> {
    events_where(|e| e.field("test") == marker)
}

/// The one event with `test = marker` and `who = who`.
#[track_caller]
fn one(marker: &str, who: &str) -> EventRec {
    let mut evs: Vec<_> = marked(marker)
        .into_iter()
        .filter(|e| e.field("who") == who)
        .collect();
    assert_eq!(evs.len(), 1, "events {who:?} of {marker}: {evs:#?}");
    evs.pop().unwrap()
}

/// Checks a task span's fields.
#[track_caller]
fn assert_task_span(span: &SpanRec, kind: &str, id: Option<task::Id>, name: &str, line: u32) {
    assert_eq!(span.name, "runtime.spawn", "{span:?}");
    assert_eq!(span.field("kind"), kind, "{span:?}");
    if let Some(id) = id {
        assert_eq!(span.field("task.id"), id.to_string(), "{span:?}");
    }
    assert_eq!(span.field("task.name"), name, "{span:?}");
    assert_eq!(span.field("loc.file"), file!(), "{span:?}");
    assert_eq!(span.field("loc.line"), line.to_string(), "{span:?}");
    assert_ne!(span.field("loc.col"), "<none>", "{span:?}");
}

fn is_single_worker(flavor: Flavor) -> bool {
    flavor.workers() == 1
}

/// A task emitting one event marked `m`, `who`.
async fn emit(m: String, who: &'static str) {
    tracing::info!(test = m.as_str(), who, "event");
}

// ---------------------------------------------------------------------------
// Spans of tasks and fibers
// ---------------------------------------------------------------------------

#[test]
fn an_event_in_a_task_is_inside_its_span() {
    for flavor in Flavor::ALL {
        let m = unique("task-span");
        let m2 = m.clone();
        let (id, line) = util::run(flavor, "task span", move || async move {
            let (h, line) = (fiber_runtime::spawn(emit(m2, "task")), line!());
            let id = h.id();
            h.await.unwrap();
            (id, line)
        });
        let e = one(&m, "task");
        assert_eq!(e.scope.len(), 1, "{flavor:?}: {e:#?}");
        assert_task_span(&e.scope[0], "task", Some(id), "", line);
        // Entered on its thread: the poll's, nothing else.
        assert_eq!(e.stack_names(), ["runtime.spawn"], "{flavor:?}");
        assert_eq!(e.stack[0].id, e.scope[0].id);
    }
}

#[test]
fn a_fiber_is_inside_its_span_at_every_resumption() {
    for flavor in Flavor::ALL {
        let m = unique("fiber-span");
        let m2 = m.clone();
        let (id, line) = util::run(flavor, "fiber span", move || async move {
            let run = move || {
                tracing::info!(test = m2.as_str(), who = "first", "before");
                fiber::yield_now();
                tracing::info!(test = m2.as_str(), who = "after-yield", "resumed");
                fiber::sleep(Duration::from_millis(1));
                tracing::info!(test = m2.as_str(), who = "after-sleep", "resumed");
                fiber::wait(async { fiber_runtime::yield_now().await });
                tracing::info!(test = m2.as_str(), who = "after-wait", "resumed");
            };
            let b = fiber::Builder::new().name("fib");
            let (h, line) = (b.spawn(run).unwrap(), line!());
            let id = h.id();
            h.await.unwrap();
            (id, line)
        });
        for who in ["first", "after-yield", "after-sleep", "after-wait"] {
            let e = one(&m, who);
            assert_eq!(e.scope.len(), 1, "{flavor:?} {who}: {e:#?}");
            assert_task_span(&e.scope[0], "fiber", Some(id), "fib", line);
            assert_eq!(e.stack_names(), ["runtime.spawn"], "{flavor:?} {who}");
        }
    }
}

/// Every public spawn entry point records its caller's file and line.
#[test]
fn every_spawn_entry_point_records_its_callers_location() {
    for flavor in Flavor::ALL {
        let m = unique("entry-points");
        let rt = flavor.build();
        // (who, kind, name, line, id)
        let mut want: Vec<(&str, &str, &str, u32, Option<task::Id>)> = Vec::new();
        let mm = m.clone();
        let inside = rt.block_on(async move {
            let m = mm;
            let mut want = Vec::new();
            let mut handles = Vec::new();
            macro_rules! check {
                ($who:expr, $kind:expr, $name:expr, $h:expr, $line:expr) => {{
                    let h = $h;
                    want.push(($who, $kind, $name, $line, Some(h.id())));
                    handles.push(h);
                }};
            }
            let (h, l) = (fiber_runtime::spawn(emit(m.clone(), "spawn")), line!());
            check!("spawn", "task", "", h, l);
            let (h, l) = (Handle::current().spawn(emit(m.clone(), "handle")), line!());
            check!("handle", "task", "", h, l);
            let b = task::Builder::new().name("tb");
            let (h, l) = (b.spawn(emit(m.clone(), "builder")).unwrap(), line!());
            check!("builder", "task", "tb", h, l);
            let m2 = m.clone();
            let f = move || tracing::info!(test = m2.as_str(), who = "builder-fiber", "event");
            let b = task::Builder::new().name("tbf");
            let (h, l) = (b.spawn_fiber(f).unwrap(), line!());
            check!("builder-fiber", "fiber", "tbf", h, l);
            let m2 = m.clone();
            let f = move || tracing::info!(test = m2.as_str(), who = "fiber", "event");
            let (h, l) = (fiber::spawn(f), line!());
            check!("fiber", "fiber", "", h, l);
            let m2 = m.clone();
            let f = move || tracing::info!(test = m2.as_str(), who = "fiber-builder", "event");
            let (h, l) = (fiber::Builder::new().name("fb").spawn(f).unwrap(), line!());
            check!("fiber-builder", "fiber", "fb", h, l);
            let m2 = m.clone();
            let f = move || tracing::info!(test = m2.as_str(), who = "blocking", "event");
            let (h, l) = (fiber_runtime::spawn_blocking(f), line!());
            check!("blocking", "blocking", "", h, l);
            let m2 = m.clone();
            let f = move || tracing::info!(test = m2.as_str(), who = "handle-blocking", "event");
            let (h, l) = (Handle::current().spawn_blocking(f), line!());
            check!("handle-blocking", "blocking", "", h, l);
            let mut set = task::JoinSet::new();
            let (a, l) = (set.spawn(emit(m.clone(), "set")), line!());
            want.push(("set", "task", "", l, Some(a.id())));
            let m2 = m.clone();
            let f = move || tracing::info!(test = m2.as_str(), who = "set-fiber", "event");
            let (a, l) = (set.spawn_fiber(f), line!());
            want.push(("set-fiber", "fiber", "", l, Some(a.id())));
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
            // Scopes wait in blocking style: from a fiber.
            let m2 = m.clone();
            let lines = fiber::spawn(move || {
                let m3 = m2.clone();
                fiber::scope(|s| {
                    let f = || tracing::info!(test = m2.as_str(), who = "scope", "event");
                    let (_h, l1) = (s.spawn(f), line!());
                    let (_h, l2) = (s.spawn_task(emit(m3, "scope-task")), line!());
                    (l1, l2)
                })
            })
            .await
            .unwrap();
            want.push(("scope", "fiber", "", lines.0, None));
            want.push(("scope-task", "task", "", lines.1, None));
            for h in handles {
                h.await.unwrap();
            }
            want
        });
        want.extend(inside);
        let m2 = m.clone();
        let (h, l) = (rt.spawn(emit(m2, "runtime")), line!());
        want.push(("runtime", "task", "", l, Some(h.id())));
        rt.block_on(h).unwrap();
        let m2 = m.clone();
        let f = move || tracing::info!(test = m2.as_str(), who = "runtime-blocking", "event");
        let (h, l) = (rt.spawn_blocking(f), line!());
        want.push(("runtime-blocking", "blocking", "", l, Some(h.id())));
        rt.block_on(h).unwrap();
        let m2 = m.clone();
        let (h, l) = (rt.handle().spawn(emit(m2, "outside-handle")), line!());
        want.push(("outside-handle", "task", "", l, Some(h.id())));
        rt.block_on(h).unwrap();
        drop(rt);
        assert_eq!(want.len(), 15);
        for (who, kind, name, line, id) in want {
            let e = one(&m, who);
            assert_eq!(e.scope.len(), 1, "{flavor:?} {who}: {e:#?}");
            assert_task_span(&e.scope[0], kind, id, name, line);
        }
    }
}

// ---------------------------------------------------------------------------
// A fiber's own spans across its suspensions
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Suspend {
    Yield,
    Sleep,
    Wait,
    Lock,
}

/// A fiber enters two spans of its own and suspends (in each way) while
/// holding both guards; another task runs meanwhile (on the same worker
/// where there is one) and emits events: they are inside its own span
/// only, and nothing of the fiber is entered on the thread. When the
/// fiber resumes, its spans are entered again, in order.
#[test]
fn a_fibers_span_guard_is_not_left_entered_while_it_is_suspended() {
    for flavor in Flavor::ALL {
        for how in [Suspend::Yield, Suspend::Sleep, Suspend::Wait, Suspend::Lock] {
            let m = unique("guard-across-suspension");
            let m2 = m.clone();
            util::run(
                flavor,
                "span guard across a suspension",
                move || async move { scenario(m2, how).await },
            );
            let before = one(&m, "fiber-before");
            let after = one(&m, "fiber-after");
            let fiber_stack = ["runtime.spawn", "user_outer", "user_inner"];
            assert_eq!(before.stack_names(), fiber_stack, "{flavor:?} {how:?}");
            assert_eq!(after.stack_names(), fiber_stack, "{flavor:?} {how:?}");
            assert_eq!(after.stack[0].field("kind"), "fiber");
            let ids = |e: &EventRec| e.stack.iter().map(|s| s.id).collect::<Vec<_>>();
            assert_eq!(ids(&before), ids(&after), "{flavor:?} {how:?}");
            // The event's own scope too (the user spans' parents).
            let scope: Vec<_> = after.scope.iter().map(|s| s.name).collect();
            assert_eq!(scope, fiber_stack, "{flavor:?} {how:?}");
            for who in ["other", "other-again"] {
                let e = one(&m, who);
                assert_eq!(
                    e.stack_names(),
                    ["runtime.spawn"],
                    "{flavor:?} {how:?} {who}: {e:#?}"
                );
                assert_eq!(e.stack[0].field("kind"), "task");
                assert_eq!(e.scope.len(), 1);
                if is_single_worker(flavor) {
                    // The state the test is named for: the other task ran
                    // on the fiber's thread while the fiber was suspended.
                    assert_eq!(e.thread, before.thread, "{flavor:?} {how:?}");
                }
            }
        }
    }
}

async fn scenario(m: String, how: Suspend) {
    let done = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(AsyncMutex::new(()));
    // The fiber tells the task it is about to suspend; the task tells the
    // fiber it is done.
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (locked_tx, locked_rx) = oneshot::channel::<()>();
    let other = {
        let (m, done, lock) = (m.clone(), done.clone(), lock.clone());
        fiber_runtime::spawn(async move {
            let guard = lock.lock().await;
            let _ = locked_tx.send(());
            go_rx.await.unwrap();
            tracing::info!(
                test = m.as_str(),
                who = "other",
                "while the fiber is suspended"
            );
            fiber_runtime::yield_now().await;
            tracing::info!(test = m.as_str(), who = "other-again", "a second poll");
            done.store(true, SeqCst);
            drop(guard);
            let _ = done_tx.send(());
        })
    };
    let f = fiber::spawn(move || {
        // The task holds the lock before the fiber goes on.
        fiber::wait(locked_rx).unwrap();
        let outer = tracing::info_span!("user_outer");
        let _outer = outer.enter();
        let _inner = tracing::info_span!("user_inner").entered();
        tracing::info!(
            test = m.as_str(),
            who = "fiber-before",
            "holding two guards"
        );
        go_tx.send(()).unwrap();
        match how {
            Suspend::Yield => {
                while !done.load(SeqCst) {
                    fiber::yield_now();
                }
            }
            Suspend::Sleep => {
                while !done.load(SeqCst) {
                    fiber::sleep(Duration::from_millis(1));
                }
            }
            Suspend::Wait => fiber::wait(done_rx).unwrap(),
            Suspend::Lock => drop(lock.blocking_lock()),
        }
        assert!(done.load(SeqCst));
        tracing::info!(test = m.as_str(), who = "fiber-after", "resumed");
    });
    other.await.unwrap();
    f.await.unwrap();
}

/// Two fibers on one worker, each suspended inside spans of its own, take
/// turns: each sees exactly its own spans at every resumption.
#[test]
fn two_fibers_taking_turns_each_see_their_own_spans() {
    for flavor in Flavor::ALL {
        let m = unique("two-fibers");
        let m2 = m.clone();
        util::run(flavor, "two fibers taking turns", move || async move {
            let fibers: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|name| {
                    let m = m2.clone();
                    fiber::spawn(move || {
                        let _g = tracing::info_span!("user", name).entered();
                        for i in 0..5 {
                            tracing::info!(test = m.as_str(), name, i, "turn");
                            fiber::yield_now();
                        }
                    })
                })
                .collect();
            for f in fibers {
                f.await.unwrap();
            }
        });
        let evs = marked(&m);
        assert_eq!(evs.len(), 10);
        for e in evs {
            assert_eq!(e.stack_names(), ["runtime.spawn", "user"], "{flavor:?}");
            assert_eq!(e.stack[1].field("name"), e.field("name"), "{flavor:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Nothing left entered by a panic, a forgotten guard, an abort, a shutdown
// ---------------------------------------------------------------------------

#[test]
fn a_panicking_task_or_fiber_leaves_no_span_entered() {
    util::silence_expected_panics(&[]);
    for flavor in Flavor::ALL {
        let m = unique("panic");
        let m2 = m.clone();
        util::run(flavor, "panics holding spans", move || async move {
            let m = m2;
            let mm = m.clone();
            let h = fiber_runtime::spawn(async move {
                let _g = tracing::info_span!("doomed_task").entered();
                tracing::info!(test = mm.as_str(), who = "task-doomed", "panicking");
                panic!("{EXPECTED_PANIC}: a task holding a span");
            });
            assert!(h.await.unwrap_err().is_panic());
            emit(m.clone(), "after-task").await;
            fiber_runtime::spawn(emit(m.clone(), "task-after-task"))
                .await
                .unwrap();
            let mm = m.clone();
            let h = fiber::spawn(move || {
                let _g = tracing::info_span!("doomed_fiber").entered();
                tracing::info!(test = mm.as_str(), who = "fiber-doomed", "panicking");
                fiber::yield_now();
                panic!("{EXPECTED_PANIC}: a fiber holding a span");
            });
            assert!(h.await.unwrap_err().is_panic());
            fiber_runtime::spawn(emit(m.clone(), "task-after-fiber"))
                .await
                .unwrap();
            let mm = m.clone();
            // A guard forgotten (never exited) by a fiber that then ends.
            let h = fiber::spawn(move || {
                let span = tracing::info_span!("forgotten");
                std::mem::forget(span.clone().entered());
                tracing::info!(test = mm.as_str(), who = "forgetful", "forgot a guard");
                fiber::yield_now();
            });
            h.await.unwrap();
            fiber_runtime::spawn(emit(m.clone(), "task-after-forgetful"))
                .await
                .unwrap();
        });
        assert_eq!(
            one(&m, "task-doomed").stack_names(),
            ["runtime.spawn", "doomed_task"]
        );
        assert_eq!(
            one(&m, "fiber-doomed").stack_names(),
            ["runtime.spawn", "doomed_fiber"]
        );
        assert_eq!(
            one(&m, "forgetful").stack_names(),
            ["runtime.spawn", "forgotten"]
        );
        // `block_on`'s own future: no task span, nothing entered.
        assert!(
            one(&m, "after-task").stack.is_empty(),
            "{flavor:?}: {:#?}",
            one(&m, "after-task")
        );
        for who in [
            "task-after-task",
            "task-after-fiber",
            "task-after-forgetful",
        ] {
            let e = one(&m, who);
            assert_eq!(
                e.stack_names(),
                ["runtime.spawn"],
                "{flavor:?} {who}: {e:#?}"
            );
        }
        if is_single_worker(flavor) {
            // Same worker as the fibers: the state the test is named for.
            assert_eq!(
                one(&m, "task-after-fiber").thread,
                one(&m, "fiber-doomed").thread
            );
            assert_eq!(
                one(&m, "task-after-forgetful").thread,
                one(&m, "forgetful").thread
            );
        }
    }
}

/// Emits an event when dropped (by a fiber's unwinding).
struct EmitOnDrop(String);

impl Drop for EmitOnDrop {
    fn drop(&mut self) {
        tracing::info!(test = self.0.as_str(), who = "unwinding", "dropped");
    }
}

/// An aborted fiber, suspended inside a span of its own, unwinds inside
/// its spans (its task's and its own) and leaves none entered.
#[test]
fn an_aborted_fiber_unwinds_inside_its_spans_and_leaves_none() {
    for flavor in Flavor::ALL {
        let m = unique("abort");
        let m2 = m.clone();
        util::run(flavor, "abort a fiber holding a span", move || async move {
            let m = m2;
            let (started_tx, started_rx) = oneshot::channel::<()>();
            let mm = m.clone();
            let h = fiber::spawn(move || {
                let _g = tracing::info_span!("held").entered();
                let _d = EmitOnDrop(mm);
                started_tx.send(()).unwrap();
                // Suspended for good: only the abort ends it.
                fiber::wait(std::future::pending::<()>());
            });
            started_rx.await.unwrap();
            h.abort();
            assert!(h.await.unwrap_err().is_cancelled());
            fiber_runtime::spawn(emit(m.clone(), "next")).await.unwrap();
        });
        let e = one(&m, "unwinding");
        assert_eq!(
            e.stack_names(),
            ["runtime.spawn", "held"],
            "{flavor:?}: {e:#?}"
        );
        assert_eq!(e.stack[0].field("kind"), "fiber");
        let next = one(&m, "next");
        assert_eq!(
            next.stack_names(),
            ["runtime.spawn"],
            "{flavor:?}: {next:#?}"
        );
    }
}

/// Dropping the runtime unwinds a fiber suspended inside a span of its
/// own; the thread that dropped it (the fiber's, on a current-thread
/// runtime) has nothing entered afterwards.
#[test]
fn shutdown_unwinds_a_fiber_holding_a_span_and_leaves_none() {
    for flavor in Flavor::ALL {
        let m = unique("shutdown");
        let m2 = m.clone();
        util::run_with_timeout("shutdown with a fiber holding a span", move || {
            let rt = flavor.build();
            let mm = m2.clone();
            rt.block_on(async move {
                let (started_tx, started_rx) = oneshot::channel::<()>();
                let f = fiber::spawn(move || {
                    let _g = tracing::info_span!("held").entered();
                    let _d = EmitOnDrop(mm);
                    started_tx.send(()).unwrap();
                    fiber::wait(std::future::pending::<()>());
                });
                started_rx.await.unwrap();
                drop(f); // detached, still suspended
            });
            // On a current-thread runtime this is the fiber's thread.
            tracing::info!(test = m2.as_str(), who = "before-drop", "fiber suspended");
            drop(rt);
            tracing::info!(test = m2.as_str(), who = "after-drop", "runtime gone");
        });
        let e = one(&m, "unwinding");
        assert!(
            e.stack_names().ends_with(&["held"]),
            "{flavor:?}: the fiber's own span is entered again for its unwind: {e:#?}"
        );
        for who in ["before-drop", "after-drop"] {
            let e = one(&m, who);
            assert!(e.stack.is_empty(), "{flavor:?} {who}: {e:#?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Spawn events, nesting, runtime events
// ---------------------------------------------------------------------------

fn spawn_event(id: task::Id) -> EventRec {
    let id = id.to_string();
    let mut evs = events_where(|e| {
        e.target == "fiber_runtime::task"
            && e.field("message") == "spawn"
            && e.field("task.id") == id
    });
    assert_eq!(evs.len(), 1, "spawn events of {id}: {evs:#?}");
    evs.pop().unwrap()
}

#[test]
fn spawns_are_recorded_as_events() {
    store();
    for flavor in Flavor::ALL {
        let ids = util::run(flavor, "spawn events", || async {
            let t = task::Builder::new()
                .name("named-task")
                .spawn(async {})
                .unwrap();
            let f = fiber::Builder::new()
                .name("named-fiber")
                .spawn(|| ())
                .unwrap();
            let b = fiber_runtime::spawn_blocking(|| ());
            let ids = (t.id(), f.id(), b.id());
            t.await.unwrap();
            f.await.unwrap();
            b.await.unwrap();
            ids
        });
        for (id, kind, name) in [
            (ids.0, "task", "named-task"),
            (ids.1, "fiber", "named-fiber"),
            (ids.2, "blocking", ""),
        ] {
            let e = spawn_event(id);
            assert_eq!(e.level, Level::TRACE);
            assert_eq!(e.field("kind"), kind, "{flavor:?}: {e:#?}");
            assert_eq!(e.field("task.name"), name, "{flavor:?}: {e:#?}");
        }
    }
}

/// Our choice: a task's span is a root (no parent), as tokio's since
/// tokio#6158 (a child span keeps its parent open, and a spawned task
/// outlives its spawner's span); it `follows_from` the span current at
/// the spawn, which keeps the causal link without keeping the spawner's
/// span alive.
#[test]
fn a_spawned_tasks_span_is_a_root_that_follows_from_its_spawner() {
    for flavor in Flavor::ALL {
        let m = unique("nested");
        let m2 = m.clone();
        let (parent_id, child_id, fiber_child_id) =
            util::run(flavor, "nested spawns", move || async move {
                let m = m2;
                let mm = m.clone();
                let parent = fiber_runtime::spawn(async move {
                    tracing::info!(test = mm.as_str(), who = "parent", "spawning");
                    let child = fiber_runtime::spawn(emit(mm.clone(), "child"));
                    let id = child.id();
                    child.await.unwrap();
                    id
                });
                let parent_id = parent.id();
                let child_id = parent.await.unwrap();
                let mm = m.clone();
                let fiber_child_id = fiber::spawn(move || {
                    let _g = tracing::info_span!("in_fiber").entered();
                    tracing::info!(test = mm.as_str(), who = "in-fiber", "spawning");
                    let child = fiber_runtime::spawn(emit(mm, "fiber-child"));
                    let id = child.id();
                    child.join().unwrap();
                    id
                })
                .await
                .unwrap();
                (parent_id, child_id, fiber_child_id)
            });
        let parent = one(&m, "parent");
        let child = one(&m, "child");
        assert_eq!(child.scope.len(), 1, "{flavor:?}: a root span: {child:#?}");
        assert_eq!(child.scope[0].field("task.id"), child_id.to_string());
        assert_eq!(parent.scope[0].field("task.id"), parent_id.to_string());
        let follows = store().follows.lock().unwrap().clone();
        assert!(
            follows.contains(&(child.scope[0].id, parent.scope[0].id)),
            "{flavor:?}: the child's span follows from the parent's: {follows:?}"
        );
        let fiber_child = one(&m, "fiber-child");
        assert_eq!(fiber_child.scope.len(), 1, "{flavor:?}: {fiber_child:#?}");
        assert_eq!(
            fiber_child.scope[0].field("task.id"),
            fiber_child_id.to_string()
        );
        // Spawned inside a span the fiber entered: it follows from that one.
        let in_fiber = one(&m, "in-fiber");
        assert_eq!(in_fiber.stack_names(), ["runtime.spawn", "in_fiber"]);
        let from: Vec<u64> = follows
            .iter()
            .filter(|(s, _)| *s == fiber_child.scope[0].id)
            .map(|(_, f)| *f)
            .collect();
        assert_eq!(from, [in_fiber.stack[1].id], "{flavor:?}: {follows:?}");
    }
}

/// Events are found by their thread's name: no hand-off, whose
/// replacement thread (`{name}-handoff-0`) would record some of them.
fn named_runtime(name: &str, workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .worker_handoff(false)
        .build()
        .unwrap()
}

fn events_on_thread(name: &str, target: &str, message: &str) -> Vec<EventRec> {
    events_where(|e| {
        e.thread_name.as_deref() == Some(name)
            && e.target == target
            && e.field("message") == message
    })
}

#[test]
fn workers_record_park_and_unpark() {
    let name = unique("park-mt");
    let rt = named_runtime(&name, 1);
    rt.block_on(async {
        // The worker runs this, then parks while the sleep is pending.
        fiber_runtime::spawn(async {
            fiber_runtime::time::sleep(Duration::from_millis(5)).await;
        })
        .await
        .unwrap();
    });
    drop(rt);
    for message in ["park", "unpark"] {
        let evs = events_on_thread(&name, "fiber_runtime::scheduler", message);
        assert!(!evs.is_empty(), "no {message} event on the worker");
        for e in evs {
            assert_eq!(e.level, Level::TRACE);
            assert_eq!(e.field("worker"), "0");
            // The worker's own state: nothing entered.
            assert!(e.stack.is_empty(), "{e:#?}");
        }
    }

    // A current-thread runtime parks the thread that drives it.
    let name = unique("park-ct");
    let t = std::thread::Builder::new()
        .name(name.clone())
        .spawn(|| {
            let rt = util::current_thread();
            rt.block_on(async { fiber_runtime::time::sleep(Duration::from_millis(5)).await });
        })
        .unwrap();
    t.join().unwrap();
    for message in ["park", "unpark"] {
        let evs = events_on_thread(&name, "fiber_runtime::scheduler", message);
        assert!(
            !evs.is_empty(),
            "no {message} event on the current-thread runtime"
        );
    }
}

#[test]
fn an_idle_worker_records_its_steal() {
    let name = unique("steal");
    let rt = named_runtime(&name, 2);
    rt.block_on(async {
        fiber_runtime::spawn(async {
            // This worker queues two tasks (the first leaves the LIFO slot
            // for the queue, which peers may steal from), then holds the
            // thread until the first has run: only the other worker can
            // run it, by stealing it.
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let first = fiber_runtime::spawn(async move { r.store(true, SeqCst) });
            let second = fiber_runtime::spawn(async {});
            util::wait_until("the peer stole the queued task", || ran.load(SeqCst));
            first.await.unwrap();
            second.await.unwrap();
        })
        .await
        .unwrap();
    });
    // The thief publishes its count when it parks or at maintenance, which
    // may come after the task it stole ran.
    util::wait_until("the steal is published", || {
        let m = rt.metrics();
        (0..2).map(|i| m.worker_steal_count(i)).sum::<u64>() >= 1
    });
    drop(rt);
    let evs = events_on_thread(&name, "fiber_runtime::scheduler", "steal");
    assert!(!evs.is_empty(), "no steal event");
    for e in evs {
        let count: usize = e.field("count").parse().unwrap();
        assert!(count >= 1, "{e:#?}");
        assert_ne!(e.field("worker"), e.field("from"));
    }
}

#[test]
fn blocking_threads_record_start_and_exit() {
    let name = unique("blocking");
    let rt = named_runtime(&name, 1);
    rt.block_on(rt.spawn_blocking(|| ())).unwrap();
    drop(rt);
    // The pool names its threads `<name>-blocking-<n>`.
    let name = format!("{name}-blocking-0");
    let started = events_on_thread(&name, "fiber_runtime::blocking", "blocking thread started");
    assert_eq!(started.len(), 1, "{started:#?}");
    assert_eq!(started[0].level, Level::DEBUG);
    // The exit event comes after the pool counted the thread out, so the
    // drop may return first.
    util::wait_until("the blocking thread's exit event", || {
        !events_on_thread(&name, "fiber_runtime::blocking", "blocking thread exiting").is_empty()
    });
}

/// A subscriber set as the thread's default (not the global one) around
/// a current-thread runtime sees everything, and the fiber's spans follow
/// it there the same way.
#[test]
fn a_thread_default_subscriber_around_a_current_thread_runtime() {
    store(); // the global one exists too: the thread's default wins
    let local = Arc::new(Store::default());
    let subscriber = tracing_subscriber::registry().with(Capture(local.clone()));
    let m = unique("thread-default");
    let m2 = m.clone();
    util::run_with_timeout("a thread default subscriber", move || {
        tracing::subscriber::with_default(subscriber, || {
            let rt = util::current_thread();
            rt.block_on(scenario(m2, Suspend::Yield));
        })
    });
    let events = local.events.lock().unwrap().clone();
    let find = |who: &str| {
        let mut evs: Vec<_> = events
            .iter()
            .filter(|e| e.field("test") == m && e.field("who") == who)
            .cloned()
            .collect();
        assert_eq!(evs.len(), 1, "{who}: {evs:#?}");
        evs.pop().unwrap()
    };
    let fiber_stack = ["runtime.spawn", "user_outer", "user_inner"];
    assert_eq!(find("fiber-before").stack_names(), fiber_stack);
    assert_eq!(find("fiber-after").stack_names(), fiber_stack);
    assert_eq!(find("other").stack_names(), ["runtime.spawn"]);
    assert_eq!(find("other-again").stack_names(), ["runtime.spawn"]);
    // None of it reached the global subscriber.
    assert!(marked(&m).is_empty());
}
