// The default flavor is `multi_thread`; spawned tasks' values come back
// through their `JoinHandle`.
#[fiber_runtime::main]
async fn main() {
    let handle = fiber_runtime::spawn(async { 6 * 7 });
    assert_eq!(handle.await.unwrap(), 42);
}
