#[fiber_runtime::main]
fn main() {}
