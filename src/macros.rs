//! Declarative macros: `fiber_main!`.

/// Defines `fn main()` running its body, which may `.await`, on a
/// multi-thread runtime (built and dropped around it, as by
/// [`block_on`](crate::block_on)).
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
#[macro_export]
macro_rules! fiber_main {
    ($($body:tt)*) => {
        fn main() {
            $crate::block_on(async { $($body)* })
        }
    };
}
