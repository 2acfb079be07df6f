//! A fiber that overflows its stack: the process prints
//! `fiber '<name>' has overflowed its stack` and aborts, as Rust does for
//! threads. Run in a child process.

mod util;

const VAR: &str = "FIBER_RUNTIME_OVERFLOW_CHILD";

/// Recurses until the stack runs out (the depth is never reached).
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if std::hint::black_box(n) == u64::MAX {
        return pad[0];
    }
    recurse(n + 1) + pad[1]
}

fn child(named: bool) {
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut b = fiber_runtime::fiber::Builder::new().stack_size(32 * 1024);
        if named {
            b = b.name("overflower");
        }
        let h = b.spawn(|| recurse(0)).unwrap();
        let _ = h.await;
    });
    // Not reached.
    std::process::exit(0);
}

fn run_child(test: &str, named: &str) -> std::process::Output {
    util::run_child(test, VAR, named)
}

#[test]
// ASan takes the SIGSEGV of a guard page itself (and redzones change the
// stack use the child expects).
#[cfg_attr(fiber_runtime_asan, ignore = "AddressSanitizer handles SIGSEGV itself")]
fn overflow_of_a_named_fiber_names_it_and_aborts() {
    if let Ok(v) = std::env::var(VAR) {
        child(v == "named");
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let out = run_child("overflow_of_a_named_fiber_names_it_and_aborts", "named");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fiber 'overflower' has overflowed its stack"),
        "stderr: {stderr}"
    );
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}", out.status);
}

#[test]
// ASan takes the SIGSEGV of a guard page itself (and redzones change the
// stack use the child expects).
#[cfg_attr(fiber_runtime_asan, ignore = "AddressSanitizer handles SIGSEGV itself")]
fn overflow_of_an_unnamed_fiber_gives_its_id() {
    if let Ok(v) = std::env::var(VAR) {
        child(v == "named");
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let out = run_child("overflow_of_an_unnamed_fiber_gives_its_id", "unnamed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has overflowed its stack"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("fiber #"), "stderr: {stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}", out.status);
}

/// An ordinary thread's stack overflow is still Rust's own report (our
/// handler passes faults that are not in a fiber guard page on).
#[test]
// ASan takes the SIGSEGV of a guard page itself (and redzones change the
// stack use the child expects).
#[cfg_attr(fiber_runtime_asan, ignore = "AddressSanitizer handles SIGSEGV itself")]
fn a_thread_stack_overflow_is_left_to_the_standard_library() {
    if std::env::var(VAR).is_ok() {
        // Make sure our handler is installed, then overflow a thread.
        let rt = fiber_runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { fiber_runtime::fiber::spawn(|| ()).await.unwrap() });
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| recurse(0))
            .unwrap()
            .join()
            .unwrap();
        std::process::exit(0);
    }
    use std::os::unix::process::ExitStatusExt;
    let out = run_child(
        "a_thread_stack_overflow_is_left_to_the_standard_library",
        "thread",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has overflowed its stack"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("fiber"), "stderr: {stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}", out.status);
}
