// Every problem in the options is reported, each at its own token.
#[fiber_runtime::main(flavor = "fast", worker_threads = 0, stack_size = 4096)]
async fn main() {}
