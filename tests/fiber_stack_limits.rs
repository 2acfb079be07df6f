//! A fiber whose stack cannot be mapped does not start: its `JoinHandle`
//! returns a `JoinError` whose message carries the OS error and names the
//! limit, and the runtime goes on. Run in a child process whose address
//! space is capped with `RLIMIT_AS` (what `ulimit -v` sets).

mod util;

const VAR: &str = "FIBER_RUNTIME_STACK_LIMIT_CHILD";
/// The child's address-space cap.
const LIMIT: u64 = 4 << 30;

fn child() {
    let rt = fiber_runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cap = libc::rlimit {
        rlim_cur: LIMIT,
        rlim_max: LIMIT,
    };
    // SAFETY: plain system call on a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
    rt.block_on(async {
        // 64 stacks of 256 MiB are mapped at once: 16 GiB, over the cap.
        let h = fiber_runtime::fiber::Builder::new()
            .stack_size(256 << 20)
            .spawn(|| 1)
            .expect("the stack is taken when the fiber starts, not at spawn");
        let err = h.await.unwrap_err();
        assert!(err.is_panic(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("could not get a stack"), "{msg}");
        assert!(msg.contains("ulimit -v"), "{msg}");
        // The runtime and smaller fibers go on.
        let ok = fiber_runtime::fiber::spawn(|| 2).await.unwrap();
        assert_eq!(ok, 2);
        assert_eq!(
            fiber_runtime::Handle::current()
                .metrics()
                .num_alive_fibers(),
            0
        );
    });
}

#[test]
// ASan reserves terabytes of shadow memory: it cannot start under RLIMIT_AS.
#[cfg_attr(
    fiber_runtime_asan,
    ignore = "AddressSanitizer cannot run under RLIMIT_AS"
)]
fn a_stack_that_cannot_be_mapped_fails_the_fiber_not_the_runtime() {
    util::in_child(
        "a_stack_that_cannot_be_mapped_fails_the_fiber_not_the_runtime",
        VAR,
        child,
    );
}
