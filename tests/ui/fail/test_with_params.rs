#[fiber_runtime::test]
async fn takes_a_parameter(x: u32) {
    async {}.await;
    assert_eq!(x, 1);
}

fn main() {}
