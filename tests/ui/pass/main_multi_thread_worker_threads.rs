#[fiber_runtime::main(flavor = "multi_thread", worker_threads = 3)]
async fn main() {
    let handles: Vec<_> = (0..30u32)
        .map(|i| fiber_runtime::spawn(async move { i }))
        .collect();
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.unwrap();
    }
    assert_eq!(sum, 435);
}
