//! Spawn tasks that return typed values, then join them.
//!
//! A `JoinHandle<T>` is a future of `Result<T, JoinError>`: no boxing, no
//! downcasting, the output type is the task's own.
//!
//! `cargo run --release --example return_value`

use fiber_runtime::JoinHandle;

#[derive(Debug)]
struct Stats {
    word: &'static str,
    len: usize,
    vowels: usize,
}

#[fiber_runtime::main]
async fn main() {
    // A task returning a plain integer.
    let sum: JoinHandle<u64> = fiber_runtime::spawn(async { (1..=100u64).sum() });

    // A task returning an owned String.
    let greeting: JoinHandle<String> =
        fiber_runtime::spawn(async { format!("hello from {:?}", std::thread::current().name()) });

    // Many tasks returning a struct each; joined in spawn order.
    let words = ["fiber", "runtime", "work", "stealing", "async"];
    let stats: Vec<JoinHandle<Stats>> = words
        .iter()
        .map(|&word| {
            fiber_runtime::spawn(async move {
                Stats {
                    word,
                    len: word.len(),
                    vowels: word.chars().filter(|c| "aeiou".contains(*c)).count(),
                }
            })
        })
        .collect();

    // A task returning a Result of its own: the JoinHandle adds the outer
    // layer (did the task finish?), the inner one is the task's business.
    let parsed: JoinHandle<Result<i32, std::num::ParseIntError>> =
        fiber_runtime::spawn(async { "12x".parse::<i32>() });

    let sum = sum.await.expect("task failed");
    println!("sum 1..=100       = {sum}");
    assert_eq!(sum, 5050);

    println!(
        "greeting          = {}",
        greeting.await.expect("task failed")
    );

    for h in stats {
        let s = h.await.expect("task failed");
        println!("{:<17} = {} letters, {} vowels", s.word, s.len, s.vowels);
    }

    match parsed.await.expect("task failed") {
        Ok(v) => println!("parsed            = {v}"),
        Err(e) => println!("parsed            = error: {e}"),
    }
}
