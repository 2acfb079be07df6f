// Only the macro's error is reported: no "`main` function has wrong type" or
// "`main` function not found", and the body (using `.await` and the
// parameter) still type-checks.
#[fiber_runtime::main]
async fn main(args: Vec<String>) {
    async {}.await;
    println!("{}", args.len());
}
