//! `tracing` support (feature "tracing"): the macros for the runtime's
//! own events, and following the spans a fiber entered across its
//! switches.
//!
//! Without the feature the macros expand to nothing (their arguments are
//! not even compiled) and the span functions do not exist: no code, no
//! cost.
//!
//! # Targets
//!
//! - `fiber_runtime::task`: the span of every task and fiber
//!   (`runtime.spawn`) and the `spawn` events;
//! - `fiber_runtime::scheduler`: worker `park`/`unpark`, `steal`;
//! - `fiber_runtime::blocking`: blocking-pool threads starting and exiting.

/// A `trace`-level event of the runtime itself, at `target`; nothing
/// without the feature.
#[cfg(feature = "tracing")]
macro_rules! rt_trace {
    (target: $target:literal, $($rest:tt)*) => {
        ::tracing::trace!(target: $target, $($rest)*)
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! rt_trace {
    ($($rest:tt)*) => {};
}
pub(crate) use rt_trace;

/// A `debug`-level event of the runtime itself (rare ones: blocking
/// threads); nothing without the feature.
#[cfg(feature = "tracing")]
macro_rules! rt_debug {
    (target: $target:literal, $($rest:tt)*) => {
        ::tracing::debug!(target: $target, $($rest)*)
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! rt_debug {
    ($($rest:tt)*) => {};
}
pub(crate) use rt_debug;

#[cfg(feature = "tracing")]
pub(crate) use self::spans::{Marker, SavedSpans, enter_saved, exit_above};

/// The spans a fiber entered, followed across its switches
/// (`task_core/local_scopes.rs` calls these around every resumption).
///
/// A span guard (`span.enter()`) that fiber code holds across a
/// suspension leaves the span entered in the subscriber's per-thread
/// state, which would then label whatever else runs on that worker. So
/// when the fiber switches out, every span entered above the one that
/// was current when it was resumed (its own span, entered by its task's
/// poll) is exited, innermost first, and its id kept; when the fiber is
/// resumed they are entered again, outermost first, on the same thread
/// (fibers never migrate).
///
/// # Limits
///
/// - It works with subscribers that report the current span
///   (`Subscriber::current_span`), as `tracing_subscriber`'s `Registry`
///   and `fmt` do; with one that does not, nothing is followed.
/// - It follows the spans of the thread's default subscriber (the global
///   one, or one set on the thread that drives a current-thread
///   runtime). A default set *inside* a fiber with
///   `tracing::subscriber::set_default` and held across a suspension
///   stays the worker's default meanwhile: tracing keeps it in a
///   thread-local that this does not swap.
/// - A span that is already entered around the fiber (its own, or the
///   poller's current span), entered again inside it and held across a
///   suspension, is not followed: it cannot be told from the outer entry.
/// - At most `MAX_SAVED` (64) nested spans are followed.
/// - While no subscriber enables anything (`LevelFilter::current()` is
///   `OFF`: none set) a switch costs one relaxed load and nothing else; a
///   subscriber set by a fiber while it runs is followed from that
///   fiber's next switch on.
#[cfg(feature = "tracing")]
mod spans {
    use tracing::dispatcher::{self, Dispatch};
    use tracing::level_filters::LevelFilter;
    use tracing::span::Id;

    /// How many nested spans a fiber's switch follows at most (a bound,
    /// so that a subscriber whose `exit` does not change its current span
    /// cannot loop).
    pub(crate) const MAX_SAVED: usize = 64;

    /// The spans a suspended fiber had entered, outermost first; `None`
    /// (one null word, nothing allocated) when there are none, which is
    /// the common case.
    #[derive(Default)]
    #[allow(clippy::box_collection)]
    pub(crate) struct SavedSpans(Option<Box<Vec<Id>>>);

    /// What [`enter_saved`] saw, for [`exit_above`].
    pub(crate) enum Marker {
        /// No subscriber enabled anything: nothing to follow.
        Off,
        /// The span current on the thread when the fiber was resumed.
        At(Option<Id>),
    }

    /// No subscriber enables anything (none is set): no span can be
    /// entered, so there is nothing to follow. One relaxed load, which
    /// keeps the feature cheap in a program that sets no subscriber.
    #[inline]
    fn off() -> bool {
        LevelFilter::current() == LevelFilter::OFF
    }

    fn default_dispatch() -> Dispatch {
        // Cloned out, so that the subscriber's own callbacks may look up
        // the default again (`get_default` calls must not nest).
        dispatcher::get_default(Dispatch::clone)
    }

    /// Before a fiber runs: notes the current span, then enters `saved`
    /// again (outermost first), leaving it empty.
    #[inline]
    pub(crate) fn enter_saved(saved: &mut SavedSpans) -> Marker {
        if saved.0.is_none() && off() {
            return Marker::Off;
        }
        enter_saved_slow(saved)
    }

    #[inline(never)]
    fn enter_saved_slow(saved: &mut SavedSpans) -> Marker {
        let d = default_dispatch();
        let at = d.current_span().id().cloned();
        if let Some(ids) = saved.0.take() {
            for id in ids.iter() {
                d.enter(id);
            }
        }
        Marker::At(at)
    }

    /// After a fiber switched out: exits every span entered above the
    /// marker, innermost first, and keeps them in `saved` (outermost
    /// first).
    ///
    /// With `Marker::Off` this does nothing, even if a subscriber was set
    /// while the fiber ran (by the fiber itself): spans it entered then
    /// are followed from its next switch on only.
    #[inline]
    pub(crate) fn exit_above(marker: Marker, saved: &mut SavedSpans) {
        if let Marker::At(at) = marker {
            exit_above_slow(at, saved);
        }
    }

    #[inline(never)]
    fn exit_above_slow(at: Option<Id>, saved: &mut SavedSpans) {
        debug_assert!(saved.0.is_none());
        let d = default_dispatch();
        let mut ids = Vec::new();
        for _ in 0..MAX_SAVED {
            let current = d.current_span();
            let Some(id) = current.id() else { break };
            if at.as_ref() == Some(id) {
                break;
            }
            let id = id.clone();
            d.exit(&id);
            ids.push(id);
        }
        if !ids.is_empty() {
            ids.reverse();
            saved.0 = Some(Box::new(ids));
        }
    }
}
