#[test]
fn smoke() {
    let rt = fiber_runtime::Runtime::new().unwrap();
    let v = rt.block_on(async {
        let hs: Vec<_> = (0..10000u64).map(|i| fiber_runtime::spawn(async move { i })).collect();
        let mut s = 0; for h in hs { s += h.await.unwrap(); } s
    });
    assert_eq!(v, 10000*9999/2);
    let rt = fiber_runtime::Builder::new_current_thread().build().unwrap();
    let v = rt.block_on(async {
        let hs: Vec<_> = (0..10000u64).map(|i| fiber_runtime::spawn(async move { fiber_runtime::yield_now().await; i })).collect();
        let mut s = 0; for h in hs { s += h.await.unwrap(); } s
    });
    assert_eq!(v, 10000*9999/2);
}
