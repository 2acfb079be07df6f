// A body whose value does not match the declared return type is reported at
// the body's tail expression, not at the attribute.
#[fiber_runtime::main]
async fn main() -> Result<(), String> {
    let value = 1;
    value
}
