//! The smallest fiber-runtime program: run one async block to completion.
//!
//! `cargo run --release --example min`

fn main() {
    let answer = fiber_runtime::block_on(async { 6 * 7 });
    println!("the answer is {answer}");
}
