use std::error::Error;

#[fiber_runtime::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // `?` works on both join errors and the body's own errors.
    let text = fiber_runtime::spawn(async { "123" }).await?;
    let number: u32 = text.parse()?;
    assert_eq!(number, 123);
    Ok(())
}
