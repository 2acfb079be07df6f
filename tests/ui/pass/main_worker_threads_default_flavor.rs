// `worker_threads` alone is fine for `main`, whose default flavor is
// `multi_thread`.
#[fiber_runtime::main(worker_threads = 2)]
async fn main() {
    assert_eq!(fiber_runtime::spawn(async { 1 }).await.unwrap(), 1);
}
