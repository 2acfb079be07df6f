#[fiber_runtime::test]
#[test]
async fn twice() {}

fn main() {}
