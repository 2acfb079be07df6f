//! `Builder::io_driver`, `FIBER_RUNTIME_IO` and `Handle::io_driver`; the
//! io_uring driver's parking (wakes, timers, a current-thread core moving
//! between threads, shutdown); and a kernel that refuses io_uring.
//!
//! The tests that need a variable or a seccomp filter of their own run in
//! a child process: this binary re-runs itself with one ignored test
//! (`child`) selected, so nothing here changes the environment of the
//! other tests.

use fiber_runtime::{Builder, IoDriver, Runtime};
use std::io;
use std::process::Command;
use std::time::Duration;

/// What `FIBER_RUNTIME_IO` asks of this run (`None`: unset or `auto`).
fn asked() -> Option<IoDriver> {
    match std::env::var("FIBER_RUNTIME_IO")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "auto" => None,
        "epoll" => Some(IoDriver::Epoll),
        "uring" | "io_uring" => Some(IoDriver::Uring),
        other => panic!("this run's FIBER_RUNTIME_IO is not valid: {other:?}"),
    }
}

fn builders() -> [Builder; 3] {
    let mut two = Builder::new_multi_thread();
    two.worker_threads(2);
    let mut one = Builder::new_multi_thread();
    one.worker_threads(1);
    [Builder::new_current_thread(), one, two]
}

/// Under `FIBER_RUNTIME_IO=uring` every runtime the suite builds with the
/// default really runs io_uring (a CI pass that asks for it cannot
/// silently test epoll), and `auto` is epoll for now.
#[test]
fn auto_runs_what_the_environment_asks_for() {
    let want = asked().unwrap_or(IoDriver::Epoll);
    for mut b in builders() {
        let rt = b.build().unwrap();
        assert_eq!(rt.handle().io_driver(), want, "{b:?}");
    }
}

/// Under `FIBER_RUNTIME_IO=uring`, parks really go through the rings.
#[test]
fn under_uring_threads_park_in_their_rings() {
    if asked() != Some(IoDriver::Uring) {
        return;
    }
    for mut b in builders() {
        let rt = b.build().unwrap();
        rt.block_on(rt.spawn(async {
            fiber_runtime::time::sleep(Duration::from_millis(2)).await;
        }))
        .unwrap();
        assert!(rt.metrics().io_uring_wait_count() > 0, "{b:?}");
    }
}

/// An explicit `Epoll` or `Uring` wins over `FIBER_RUNTIME_IO` (the
/// child runs with it set to the other driver each time).
#[test]
fn an_explicit_choice_wins_over_the_environment() {
    run_child("explicit", &[("FIBER_RUNTIME_IO", "epoll")]);
    run_child("explicit", &[("FIBER_RUNTIME_IO", "uring")]);
}

/// A runtime with the io_uring driver, or `None` where the kernel or a
/// sandbox refuses it (Docker's default seccomp profile does) and this
/// run did not ask for it: the README's `cargo test` must pass there.
fn uring(mut b: Builder) -> Option<Runtime> {
    match b.io_driver(IoDriver::Uring).build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            assert_ne!(
                asked(),
                Some(IoDriver::Uring),
                "FIBER_RUNTIME_IO=uring: {e}"
            );
            assert!(e.to_string().contains("io_uring"), "{e}");
            eprintln!("skipped: no io_uring here: {e}");
            None
        }
    }
}

/// A two-worker multi-thread runtime with the io_uring driver (as
/// `uring`).
fn two_workers() -> Option<Runtime> {
    let mut b = Builder::new_multi_thread();
    b.worker_threads(2);
    uring(b)
}

/// Wakes from plain threads reach workers parked in their rings, in
/// either order of the wake and the park, many times over.
#[test]
fn wakes_from_another_thread_reach_workers_parked_in_their_ring() {
    for b in builders() {
        let Some(rt) = uring(b) else { return };
        for i in 0..200u32 {
            let task = rt.spawn(async move {
                let (tx, rx) = fiber_runtime::sync::oneshot::channel();
                std::thread::spawn(move || tx.send(i).unwrap());
                rx.await.unwrap()
            });
            assert_eq!(rt.block_on(task).unwrap(), i);
        }
    }
}

/// The thread holding the driver waits in its ring with the next timer as
/// its timeout: sleeps and timeouts fire, on every flavor.
#[test]
fn timers_fire_while_the_workers_wait_in_their_rings() {
    for b in builders() {
        let Some(rt) = uring(b) else { return };
        let fired = rt.block_on(async {
            let mut tasks = Vec::new();
            for ms in 1..=20u64 {
                tasks.push(fiber_runtime::spawn(async move {
                    fiber_runtime::time::sleep(Duration::from_millis(ms)).await;
                    ms
                }));
            }
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap();
            }
            sum
        });
        assert_eq!(fired, (1..=20).sum::<u64>());
        let fiber = {
            let _enter = rt.enter();
            fiber_runtime::fiber::spawn(|| {
                fiber_runtime::fiber::sleep(Duration::from_millis(2));
                7
            })
        };
        assert_eq!(rt.block_on(fiber).unwrap(), 7);
    }
}

/// The listener stays on epoll (the driver's holder sees its events
/// through the epoll fd it watches in its ring); the streams created in
/// tasks are bound to their worker's ring.
#[test]
fn sockets_on_epoll_are_served_by_the_ring_parked_holder() {
    for b in builders() {
        let Some(rt) = uring(b) else { return };
        let echoed = rt.block_on(async {
            use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
            let listener = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = fiber_runtime::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let mut c = fiber_runtime::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            server.await.unwrap();
            buf
        });
        assert_eq!(&echoed, b"hello");
    }
}

/// A stream binds at its first use: used on a worker (in a task), to that
/// worker's ring; used first in a multi-thread `block_on` future or on a
/// current-thread runtime, to epoll. Both work either way.
#[test]
fn streams_used_on_a_worker_bind_to_its_ring_and_others_stay_on_epoll() {
    use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
    use fiber_runtime::net::{TcpListener, TcpStream};
    async fn round_trip() -> [u8; 3] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        c.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        buf
    }
    let Some(rt) = two_workers() else { return };
    assert_eq!(rt.metrics().io_uring_bound_stream_count(), 0);
    assert_eq!(&rt.block_on(rt.spawn(round_trip())).unwrap(), b"abc");
    assert_eq!(
        rt.metrics().io_uring_bound_stream_count(),
        2,
        "both ends bound"
    );
    assert_eq!(&rt.block_on(round_trip()), b"abc");
    assert_eq!(
        rt.metrics().io_uring_bound_stream_count(),
        2,
        "block_on's stay on epoll"
    );
    // Made in `block_on`, first used in a task: the task's worker's ring.
    let (c, s) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (c, listener.accept().await.unwrap().0)
    });
    assert_eq!(
        rt.metrics().io_uring_bound_stream_count(),
        2,
        "accepted, not used yet"
    );
    let mut s = rt
        .block_on(rt.spawn(async move {
            let mut s = s;
            s.write_all(b"xyz").await.unwrap();
            s
        }))
        .unwrap();
    assert_eq!(
        rt.metrics().io_uring_bound_stream_count(),
        3,
        "bound where first used"
    );
    let mut c = c;
    let mut buf = [0u8; 3];
    std::io::Read::read_exact(&mut c, &mut buf).unwrap();
    assert_eq!(&buf, b"xyz");
    // Later uses on another thread keep the binding (and still work).
    std::io::Write::write_all(&mut c, b"back").unwrap();
    let mut buf = [0u8; 4];
    rt.block_on(s.read_exact(&mut buf)).unwrap();
    assert_eq!(&buf, b"back");
    assert_eq!(rt.metrics().io_uring_bound_stream_count(), 3);
    let ct = uring(Builder::new_current_thread()).unwrap();
    assert_eq!(&ct.block_on(ct.spawn(round_trip())).unwrap(), b"abc");
    assert_eq!(ct.metrics().io_uring_bound_stream_count(), 0);
}

/// A std client connected to `listener`, and the accepted end as a stream
/// of `rt` that nothing used yet (so not bound).
fn unused_stream(
    rt: &Runtime,
    listener: &std::net::TcpListener,
) -> (std::net::TcpStream, fiber_runtime::net::TcpStream) {
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _g = rt.enter();
    let s = fiber_runtime::net::TcpStream::from_std(listener.accept().unwrap().0).unwrap();
    (peer, s)
}

/// A plain thread's blocking read and write of a stream not bound yet are
/// direct system calls and bind nothing: the stream's first use on a
/// worker afterwards still binds it to that worker's ring.
#[test]
fn a_plain_threads_blocking_use_does_not_bind() {
    use fiber_runtime::io::AsyncReadExt;
    use std::io::{Read, Write};
    let Some(rt) = two_workers() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut peer, mut s) = unused_stream(&rt, &listener);
    peer.write_all(b"ab").unwrap();
    let mut buf = [0u8; 2];
    std::thread::scope(|sc| {
        sc.spawn(|| {
            Read::read_exact(&mut s, &mut buf).unwrap();
            Write::write_all(&mut s, b"cd").unwrap();
        });
    });
    assert_eq!(&buf, b"ab");
    let mut back = [0u8; 2];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"cd");
    assert_eq!(rt.metrics().io_uring_bound_stream_count(), 0);
    peer.write_all(b"ef").unwrap();
    let got = rt
        .block_on(rt.spawn(async move {
            let mut buf = [0u8; 2];
            AsyncReadExt::read_exact(&mut s, &mut buf).await.unwrap();
            buf
        }))
        .unwrap();
    assert_eq!(&got, b"ef");
    assert_eq!(rt.metrics().io_uring_bound_stream_count(), 1);
}

/// Two tasks make a stream's first use at once, one reading and one
/// writing through `&TcpStream`, on whichever workers they land: it binds
/// once (one ring, never two), and both directions work.
#[test]
fn a_stream_first_used_by_two_tasks_at_once_binds_once() {
    use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rt) = two_workers() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for i in 0..50u8 {
        let before = rt.metrics().io_uring_bound_stream_count();
        let (mut peer, s) = unused_stream(&rt, &listener);
        let s = std::sync::Arc::new(s);
        let (s1, s2) = (s.clone(), s.clone());
        let w = rt.spawn(async move { (&*s1).write_all(&[i; 4]).await });
        let r = rt.spawn(async move {
            let mut buf = [0u8; 4];
            (&*s2).read_exact(&mut buf).await.map(|_| buf)
        });
        let mut got = [0u8; 4];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert_eq!(got, [i; 4]);
        std::io::Write::write_all(&mut peer, &[!i; 4]).unwrap();
        rt.block_on(async {
            w.await.unwrap().unwrap();
            assert_eq!(r.await.unwrap().unwrap(), [!i; 4]);
        });
        assert_eq!(
            rt.metrics().io_uring_bound_stream_count(),
            before + 1,
            "stream {i}"
        );
    }
}

/// A bound stream dropped on a thread that is not its ring's (a plain
/// thread here) asks its home worker to end the poll; the peer then sees
/// the close, as under epoll.
#[test]
fn a_stream_closed_off_its_home_worker_reaches_eof_at_the_peer() {
    for b in builders() {
        let Some(rt) = uring(b) else { return };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
        let listener = {
            let _g = rt.enter();
            fiber_runtime::net::TcpListener::from_std(listener).unwrap()
        };
        let server = rt
            .block_on(rt.spawn(async move {
                use fiber_runtime::io::AsyncReadExt;
                let mut s = listener.accept().await.unwrap().0;
                // A first use, so that the stream binds to this worker's
                // ring (nothing to read yet: the peer sends nothing).
                let mut buf = [0u8; 1];
                let mut read = std::pin::pin!(s.read(&mut buf));
                std::future::poll_fn(|cx| {
                    assert!(read.as_mut().poll(cx).is_pending(), "the peer sent nothing");
                    std::task::Poll::Ready(())
                })
                .await;
                s
            }))
            .unwrap();
        let mut client = client.join().unwrap();
        std::thread::spawn(move || drop(server)).join().unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 8];
        let n = std::io::Read::read(&mut client, &mut buf).expect("no EOF within 30 s");
        assert_eq!(n, 0);
    }
}

/// A bound stream that outlives its runtime fails its operations (the
/// ring's shutdown marked it gone) instead of waiting forever.
#[test]
fn a_bound_stream_outliving_its_runtime_fails_instead_of_hanging() {
    use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
    for b in builders() {
        let Some(rt) = uring(b) else { return };
        let (mut a, _b) = rt
            .block_on(rt.spawn(async {
                let l = fiber_runtime::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let c = fiber_runtime::net::TcpStream::connect(l.local_addr().unwrap())
                    .await
                    .unwrap();
                let (mut a, _) = l.accept().await.unwrap();
                // A first use here binds `a` to this worker's ring.
                let mut c = c;
                c.write_all(b"x").await.unwrap();
                let mut one = [0u8; 1];
                a.read_exact(&mut one).await.unwrap();
                (a, c)
            }))
            .unwrap();
        drop(rt);
        let other = Builder::new_current_thread().build().unwrap();
        let mut buf = [0u8; 4];
        let e = other.block_on(a.read(&mut buf)).unwrap_err();
        assert!(e.to_string().contains("shut down"), "{e}");
    }
}

/// A current-thread runtime's ring follows its core: `block_on` from one
/// thread, then from others (each makes a ring of its own and waits in
/// it), with wakes and timers working on each. Each `block_on` ends on a
/// timer, so the core moves while its last ring still had its wake-up
/// read armed.
#[test]
fn a_current_thread_ring_follows_the_core_to_each_driving_thread() {
    let Some(rt) = uring(Builder::new_current_thread()) else {
        return;
    };
    let rt = std::sync::Arc::new(rt);
    for i in 0..20u64 {
        let rt2 = rt.clone();
        let before = rt.metrics().io_uring_wait_count();
        let got = std::thread::spawn(move || {
            rt2.block_on(async move {
                let (tx, rx) = fiber_runtime::sync::oneshot::channel();
                std::thread::spawn(move || tx.send(i).unwrap());
                let v = rx.await.unwrap();
                fiber_runtime::time::sleep(Duration::from_millis(1)).await;
                v
            })
        })
        .join()
        .unwrap();
        assert_eq!(got, i);
        assert!(
            rt.metrics().io_uring_wait_count() > before,
            "thread {i} waited in a ring"
        );
    }
    assert_eq!(rt.block_on(async { 5 }), 5);
}

/// Building and dropping runtimes leaves no ring or eventfd open, and
/// dropping one mid-traffic hangs nothing (each worker reaps its ring on
/// its own thread). Counted in a child: other tests open fds meanwhile.
#[test]
fn dropped_runtimes_close_their_rings() {
    run_child("fds", &[]);
}

/// A forked child that goes on using a current-thread runtime its parent
/// drove does not touch the parent's ring (it has no maps of it): it makes
/// its own, and timers fire there.
#[test]
fn a_forked_child_makes_a_ring_of_its_own() {
    run_child("fork", &[]);
}

/// A bad `FIBER_RUNTIME_IO` fails `build` with the value named, when
/// the builder leaves the choice to it.
#[test]
fn a_bad_environment_value_fails_the_build() {
    run_child("bad-env", &[("FIBER_RUNTIME_IO", "kqueue")]);
}

/// A kernel that refuses io_uring (here: a seccomp filter failing
/// `io_uring_setup` with EPERM): `Uring` fails the build with the reason,
/// `Auto` and `Epoll` run epoll.
#[test]
fn a_refused_io_uring_fails_an_explicit_build_and_auto_runs_epoll() {
    run_child("seccomp", &[("FIBER_RUNTIME_IO", "")]);
}

fn run_child(mode: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("RT_IO_DRIVER_CHILD", mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {mode} failed:\n{text}");
    // The child really ran its mode (not zero tests).
    assert!(
        text.contains(&format!("child mode {mode} passed")),
        "{text}"
    );
}

#[test]
#[ignore = "run by the other tests of this file as a child process"]
fn child() {
    let mode = std::env::var("RT_IO_DRIVER_CHILD").expect("run by run_child");
    match mode.as_str() {
        "explicit" => child_explicit(),
        "fds" => child_fds(),
        "fork" => child_fork(),
        "bad-env" => child_bad_env(),
        "seccomp" => child_seccomp(),
        other => panic!("unknown child mode {other}"),
    }
    println!("child mode {mode} passed");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn child_explicit() {
    for mut b in builders() {
        // The variable applies to `Auto`...
        assert_eq!(Some(b.build().unwrap().handle().io_driver()), asked());
        // ...and not to an explicit choice.
        let rt = b.io_driver(IoDriver::Epoll).build().unwrap();
        assert_eq!(rt.handle().io_driver(), IoDriver::Epoll);
        if let Some(rt) = uring(b) {
            assert_eq!(rt.handle().io_driver(), IoDriver::Uring);
        }
    }
}

fn child_fds() {
    // Warm up what stays (the blocking pool's statics, the test harness).
    let Some(rt) = uring(Builder::new_current_thread()) else {
        return;
    };
    drop(rt);
    let before = open_fds();
    for _ in 0..20 {
        // A driven current-thread runtime, dropped on another thread.
        let rt = uring(Builder::new_current_thread()).unwrap();
        rt.block_on(async { fiber_runtime::time::sleep(Duration::from_millis(1)).await });
        std::thread::spawn(move || drop(rt)).join().unwrap();
        for b in builders() {
            let rt = uring(b).unwrap();
            // Traffic at the moment of the drop: tasks parked on timers
            // and a channel nobody sends on.
            for ms in 0..8u64 {
                drop(rt.spawn(async move {
                    fiber_runtime::time::sleep(Duration::from_millis(ms)).await;
                }));
            }
            let (_tx, rx) = fiber_runtime::sync::oneshot::channel::<()>();
            drop(rt.spawn(rx));
            let _enter = rt.enter();
            drop(fiber_runtime::fiber::spawn(|| {
                fiber_runtime::fiber::sleep(Duration::from_millis(5));
            }));
            drop(_enter);
            drop(rt);
        }
    }
    assert_eq!(open_fds(), before, "fds leaked by dropped runtimes");
}

fn child_fork() {
    let Some(rt) = uring(Builder::new_current_thread()) else {
        return;
    };
    let nap = || async { fiber_runtime::time::sleep(Duration::from_millis(1)).await };
    rt.block_on(nap());
    // SAFETY: this child process runs one test on one thread (`run_child`
    // passes --test-threads=1) and the runtime has no other thread, so
    // the forked process has every thread it needs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let before = rt.metrics().io_uring_wait_count();
            rt.block_on(nap());
            rt.metrics().io_uring_wait_count() > before
        }));
        // SAFETY: leaves the forked process at once, running nothing of
        // the parent's (no destructors, no atexit handlers).
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    rt.block_on(nap());
}

fn child_bad_env() {
    for mut b in builders() {
        let e = b.build().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "FIBER_RUNTIME_IO must be auto, epoll or uring, got \"kqueue\""
        );
        // An explicit choice does not read it.
        b.io_driver(IoDriver::Epoll).build().unwrap();
    }
}

fn child_seccomp() {
    deny_io_uring_setup();
    for mut b in builders() {
        let e = b.io_driver(IoDriver::Uring).build().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("io_driver(Uring): the kernel refused an io_uring"),
            "{msg}"
        );
        assert!(msg.contains("Operation not permitted"), "{msg}");
        for d in [IoDriver::Auto, IoDriver::Epoll] {
            let rt = b.io_driver(d).build().unwrap();
            assert_eq!(rt.handle().io_driver(), IoDriver::Epoll);
            assert_eq!(rt.block_on(rt.spawn(async { 1 })).unwrap(), 1);
        }
    }
}

/// Installs a seccomp filter on this process that fails `io_uring_setup`
/// with EPERM and allows every other system call.
fn deny_io_uring_setup() {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let filter = [
        // The system call number: offset 0 of `struct seccomp_data`.
        libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `prog` and `filter` outlive them (the
    // kernel copies the program).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const prog
            ),
            0,
            "seccomp: {}",
            io::Error::last_os_error()
        );
    }
}
