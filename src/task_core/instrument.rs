//! What a spawn says about its task ([`SpawnMeta`]: name and spawn
//! location), and, with the feature "tracing", the task's span.
//!
//! Every public spawn entry point is `#[track_caller]` and makes its
//! `SpawnMeta` outside any closure (a closure breaks the caller chain),
//! so the location is the user's spawn call.
//! The location shares a word with the name pointer in the task's
//! trailer (`core.rs`, `Site`), for dumps; with the feature it is also a
//! field of the span.
//!
//! # The span
//!
//! One span per task, fiber and blocking closure, made at spawn
//! (`new_task`) with the task's id, and entered around every poll of its
//! future, hence around every resumption of a fiber (the fiber's task's
//! future is its `FiberFuture`, wrapped here), and around the drop of its
//! future (a cancelled fiber unwinds inside its span). It is
//! `tracing::trace_span!(target: "fiber_runtime::task", parent: None,
//! "runtime.spawn", kind, task.name, task.id, loc.file, loc.line,
//! loc.col)`: the name, level and fields tokio gives its task spans,
//! which `tokio-console` recognises by name. Trace level, because it is
//! one span per task: a subscriber that filters at `debug` or above pays
//! only a level check per spawn.
//!
//! The span is a root: no parent. A span stays open while a child is, and
//! a task commonly outlives the span it was spawned in (a request handler
//! that spawns a background task; a chain of tasks each spawning the
//! next, which would keep the whole chain of spans alive); tokio made its
//! task spans roots for that reason (tokio#6158). The link to the spawner
//! is kept as `follows_from` the span current at the spawn, which keeps
//! nothing open. To run a task *inside* the spawner's span, instrument its
//! future: `spawn(fut.in_current_span())`.

use super::id::Id;
use std::panic::Location;
#[cfg(feature = "tracing")]
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// A task's name and where it was spawned.
#[derive(Debug)]
pub(crate) struct SpawnMeta {
    pub(crate) name: Option<String>,
    /// The spawn call (the caller of the public entry point): kept in
    /// the task's trailer (for dumps) and, with the feature "tracing", in
    /// its span.
    pub(crate) location: &'static Location<'static>,
}

impl SpawnMeta {
    /// The meta of a spawn by the caller (`#[track_caller]` all the way
    /// from the public entry point).
    #[track_caller]
    #[inline]
    pub(crate) fn new(name: Option<String>) -> SpawnMeta {
        SpawnMeta {
            name,
            location: Location::caller(),
        }
    }
}

/// What the span calls the kind of task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Task,
    Fiber,
    Blocking,
}

impl SpanKind {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            SpanKind::Task => "task",
            SpanKind::Fiber => "fiber",
            SpanKind::Blocking => "blocking",
        }
    }
}

/// Wraps `future` in its span, and records the spawn (module doc).
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn instrument<F>(
    future: F,
    kind: SpanKind,
    meta: &SpawnMeta,
    id: Id,
) -> Instrumented<F> {
    // Both the span and the event are at trace level: while no subscriber
    // enables it (none set, or filtering above it), one relaxed load.
    let span = if tracing::level_enabled!(tracing::Level::TRACE) {
        make_span(kind, meta, id)
    } else {
        None
    };
    Instrumented {
        inner: Some(future),
        span,
    }
}

#[cfg(feature = "tracing")]
#[inline(never)]
fn make_span(kind: SpanKind, meta: &SpawnMeta, id: Id) -> Option<Box<tracing::Span>> {
    let name = meta.name.as_deref().unwrap_or("");
    let span = tracing::trace_span!(
        target: "fiber_runtime::task",
        parent: None,
        "runtime.spawn",
        kind = kind.as_str(),
        task.name = name,
        task.id = id.as_u64(),
        loc.file = meta.location.file(),
        loc.line = meta.location.line(),
        loc.col = meta.location.column(),
    );
    let span = if span.is_disabled() {
        None
    } else {
        let spawner = tracing::dispatcher::get_default(|d| d.current_span().id().cloned());
        span.follows_from(spawner);
        Some(Box::new(span))
    };
    crate::util::trace::rt_trace!(
        target: "fiber_runtime::task",
        kind = kind.as_str(),
        task.name = name,
        task.id = id.as_u64(),
        "spawn"
    );
    span
}

#[cfg(feature = "tracing")]
pin_project_lite::pin_project! {
    /// A task's future in its span. (Not `tracing::Instrumented`: that
    /// keeps a whole `Span`, 40 bytes, in every task; this keeps a
    /// pointer, null when no subscriber wanted the span.)
    pub(crate) struct Instrumented<F> {
        // `None` only once dropped.
        #[pin]
        inner: Option<F>,
        span: Option<Box<tracing::Span>>,
    }

    impl<F> PinnedDrop for Instrumented<F> {
        /// The future is dropped inside its span (a cancelled fiber
        /// unwinds there).
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _entered = this.span.as_deref().map(tracing::Span::enter);
            this.inner.set(None);
        }
    }
}

#[cfg(feature = "tracing")]
impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.as_deref().map(tracing::Span::enter);
        match this.inner.as_pin_mut() {
            Some(future) => future.poll(cx),
            None => unreachable!("a task's future was polled after it was dropped"),
        }
    }
}

/// Without the feature: the future itself.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn instrument<F>(future: F, _kind: SpanKind, _meta: &SpawnMeta, _id: Id) -> F {
    future
}
