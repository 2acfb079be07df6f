//! Running out of file descriptors in an accept loop: `accept` returns
//! the error (`EMFILE`), the listener stays registered, and it serves the
//! connections still waiting in its backlog once descriptors are freed
//! (no new readiness event comes for those: a listener whose readiness was
//! dropped with the error would hang here).
//!
//! Lowering `RLIMIT_NOFILE` affects the whole process, so the scenario
//! runs in a child process: the test re-executes its own binary with
//! [`CHILD_VAR`] set, and checks the child's exit status and output.

mod util;

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::time::timeout;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// Set in the child's environment to the flavor it runs the scenario on.
const CHILD_VAR: &str = "FIBER_RUNTIME_TEST_EMFILE_CHILD";
/// This test's name, for the child's `--exact` filter.
const TEST_NAME: &str = "accept_reports_emfile_and_serves_again_once_descriptors_free_up";
/// Connections made before the limit is lowered (waiting in the backlog).
const CLIENTS: usize = 12;
/// Descriptor numbers left free under the lowered limit.
const FREE: u64 = 4;
/// Bound on each accept in the child (a hang fails instead).
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn accept_reports_emfile_and_serves_again_once_descriptors_free_up() {
    if let Ok(flavor) = std::env::var(CHILD_VAR) {
        child(&flavor);
        return;
    }
    for flavor in ["current_thread", "multi_thread"] {
        let out = util::run_child(TEST_NAME, CHILD_VAR, flavor);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report = format!(
            "child ({flavor}) exit status {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        assert!(out.status.success(), "{report}");
        for line in stdout.lines().filter(|l| l.contains("child:")) {
            println!("[{flavor}] {}", &line[line.find("child:").unwrap()..]);
        }
        for line in [
            "child: accept failed with EMFILE",
            "child: accept failed with EMFILE again",
            "child: accepts again after freeing descriptors",
            "child: done",
        ] {
            assert!(stdout.contains(line), "missing {line:?} in {report}");
        }
        // The test really ran in the child (the filter matched).
        assert!(stdout.contains("1 passed"), "{report}");
    }
}

fn get_nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer refers to a live `rlimit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    lim
}

fn set_nofile_soft(soft: u64) {
    let mut lim = get_nofile();
    lim.rlim_cur = soft;
    // SAFETY: the pointer refers to a live `rlimit`.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit({soft}): {}", io::Error::last_os_error());
}

/// The highest open descriptor number below `limit`.
fn highest_open_fd(limit: u64) -> u64 {
    (0..limit.min(1 << 20))
        .rev()
        // SAFETY: F_GETFD only queries the descriptor table.
        .find(|&fd| unsafe { libc::fcntl(fd as libc::c_int, libc::F_GETFD) } != -1)
        .expect("stdin/stdout/stderr at least are open")
}

/// Opens descriptors (duplicates of stderr) until the table is full;
/// returns them.
fn fill_descriptor_table() -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    loop {
        // SAFETY: `dup` of stderr, which stays open.
        let fd = unsafe { libc::dup(2) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "dup: {err}");
            return fds;
        }
        // SAFETY: `fd` was just returned by `dup` and nothing else owns it.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        assert!(fds.len() < 1 << 20, "the descriptor table never filled");
    }
}

/// Prints a progress line for the parent right away.
fn say(line: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The scenario, in the child process.
fn child(flavor: &str) {
    let rt = match flavor {
        "current_thread" => util::current_thread(),
        "multi_thread" => util::multi_thread(2),
        other => panic!("unknown flavor {other:?}"),
    };
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Connect now, while descriptors are plentiful: the kernel
        // completes the handshakes into the listener's backlog.
        let clients: Vec<std::net::TcpStream> = (0..CLIENTS)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();

        let saved = get_nofile();
        let highest = highest_open_fd(saved.rlim_cur);
        let lowered = highest + 1 + FREE;
        set_nofile_soft(lowered);
        // Fill every free descriptor number below the limit (there may be
        // gaps below `highest`), then give back exactly FREE of them.
        let mut ballast = fill_descriptor_table();
        assert!(ballast.len() >= FREE as usize);
        ballast.truncate(ballast.len() - FREE as usize);
        say(format!(
            "child: highest open fd {highest}; RLIMIT_NOFILE soft limit {} -> {lowered}; \
             {} free descriptors filled, {FREE} left free",
            saved.rlim_cur,
            ballast.len() + FREE as usize,
        ));

        // Accept until the descriptors run out.
        let mut accepted: Vec<TcpStream> = Vec::new();
        let err = loop {
            match timeout(WAIT, l.accept()).await {
                Err(_) => panic!(
                    "accept hung after {} connections with {CLIENTS} waiting",
                    accepted.len()
                ),
                Ok(Ok((s, _))) => {
                    accepted.push(s);
                    assert!(
                        accepted.len() <= FREE as usize,
                        "accepted {} connections with {FREE} descriptors free",
                        accepted.len()
                    );
                }
                Ok(Err(e)) => break e,
            }
        };
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EMFILE),
            "accept failed with {err} instead of EMFILE"
        );
        assert_eq!(accepted.len(), FREE as usize, "accepted before EMFILE");
        say(format!(
            "child: accept failed with EMFILE after {} connections: {err}",
            accepted.len()
        ));

        // Still out of descriptors: the same error again, not a hang.
        let err = timeout(WAIT, l.accept())
            .await
            .expect("a second accept under EMFILE hung")
            .expect_err("a second accept under EMFILE succeeded");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        say("child: accept failed with EMFILE again".to_string());

        // Free two descriptors: the connections still in the backlog are
        // accepted, without any new event on the listener.
        let freed = accepted.len().min(2);
        accepted.truncate(accepted.len() - freed);
        for i in 0..freed {
            let (s, _) = timeout(WAIT, l.accept())
                .await
                .unwrap_or_else(|_| {
                    panic!("accept #{i} hung after descriptors were freed: readiness lost")
                })
                .unwrap_or_else(|e| panic!("accept #{i} after descriptors were freed: {e}"));
            accepted.push(s);
        }
        say(format!(
            "child: accepts again after freeing descriptors ({freed} accepted)"
        ));

        // The streams accepted under pressure work.
        let mut clients = clients;
        for s in &accepted {
            let peer = s.peer_addr().unwrap();
            let client = clients
                .iter_mut()
                .find(|c| c.local_addr().unwrap() == peer)
                .expect("an accepted stream from one of our clients");
            std::io::Write::write_all(client, b"hi").unwrap();
            let mut b = [0; 2];
            (&*s).read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"hi");
        }

        // Back to the old limit: the rest of the backlog, then a new one.
        drop(ballast);
        set_nofile_soft(saved.rlim_cur);
        // (`freed` of the CLIENTS connections were accepted and dropped.)
        while accepted.len() + freed < CLIENTS {
            let (s, _) = timeout(WAIT, l.accept())
                .await
                .expect("accept hung after the limit was restored")
                .unwrap();
            accepted.push(s);
        }
        let connect = fiber_runtime::spawn(async move { TcpStream::connect(addr).await });
        let (mut s, _) = timeout(WAIT, l.accept())
            .await
            .expect("accepting a new connection hung")
            .unwrap();
        let mut c = connect.await.unwrap().unwrap();
        AsyncWriteExt::write_all(&mut c, b"new").await.unwrap();
        let mut b = [0; 3];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"new");
        say(format!(
            "child: done ({} accepted)",
            accepted.len() + freed + 1
        ));
    });
}
