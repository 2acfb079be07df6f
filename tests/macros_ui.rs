//! Compile-time behaviour of `#[fiber_runtime::main]` and
//! `#[fiber_runtime::test]`: valid uses compile and run, misuses are rejected
//! with a clear error pointing at the offending tokens (see the `.stderr`
//! snapshots under `tests/ui/fail`).

#[test]
// Compile tests: nothing of the runtime runs, and under ASan trybuild
// would build every case again with the sanitizer (minutes, for nothing).
#[cfg_attr(fiber_runtime_asan, ignore = "compile tests only")]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
