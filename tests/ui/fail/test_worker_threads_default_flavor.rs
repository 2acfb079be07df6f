// The default flavor of `#[fiber_runtime::test]` is `current_thread`.
#[fiber_runtime::test(worker_threads = 2)]
async fn needs_multi_thread() {}

fn main() {}
