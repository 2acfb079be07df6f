//! Declarative macros: `fiber_main!`.

/// Defines `fn main()` running its body on a multi-thread runtime (built
/// and dropped around it, as by [`block_on`](crate::block_on)).
///
/// **The body is an `async` block, not a fiber**: it may `.await`, and it
/// is the runtime's main future, polled by `block_on` on the main thread.
/// Blocking-style calls ([`fiber::sleep`](crate::fiber::sleep), the
/// `blocking_*` methods of [`sync`](crate::sync),
/// [`JoinHandle::join`](crate::JoinHandle::join), `std::io::Read` and
/// `Write` on the [`net`](crate::net) types) panic there, with a message
/// naming the async call to `.await` instead. To run blocking-style code,
/// spawn a fiber and await it: `fiber::spawn(|| ..).await` (second example).
///
/// # Panics
///
/// The generated `main` panics if the runtime cannot be built.
///
/// # Examples
///
/// ```
/// use fiber_runtime::fiber_main;
///
/// async fn demo() {
///     println!("Hello world");
/// }
///
/// fiber_main! {
///     let universe = async {
///         demo().await;
///         println!("done demo");
///         42
///     }
///     .await;
///     assert_eq!(universe, 42);
/// }
/// ```
///
/// Blocking-style code goes in a fiber, which the async body awaits:
///
/// ```
/// use fiber_runtime::{fiber, fiber_main, time::Duration};
///
/// fiber_main! {
///     let answer = fiber::spawn(|| {
///         fiber::sleep(Duration::from_millis(1)); // suspends the fiber only
///         let m = fiber_runtime::sync::Mutex::new(41);
///         *m.blocking_lock() + 1
///     })
///     .await
///     .unwrap();
///     assert_eq!(answer, 42);
/// }
/// ```
#[macro_export]
macro_rules! fiber_main {
    ($($body:tt)*) => {
        fn main() {
            $crate::block_on(async { $($body)* })
        }
    };
}
