//! Compile-time behaviour of `#[fiber_runtime::main]` and
//! `#[fiber_runtime::test]`: valid uses compile and run, misuses are rejected
//! with a clear error pointing at the offending tokens (see the `.stderr`
//! snapshots under `tests/ui/fail`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
