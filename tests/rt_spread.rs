//! Busy workers that the kernel runs on one CPU while another is free
//! move apart (`scheduler/multi_thread/spread.rs`), and every worker keeps
//! its own affinity mask. Linux only, and only where
//! this process may use two CPUs or more.
#![cfg(target_os = "linux")]

mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use util::{run_with_timeout, wait_until};

const SIZE: usize = std::mem::size_of::<libc::cpu_set_t>();

/// The affinity mask of thread `tid` (0: this one).
fn mask_of(tid: libc::pid_t) -> libc::cpu_set_t {
    // SAFETY: all zeros is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is `SIZE` writable bytes.
    let r = unsafe { libc::sched_getaffinity(tid, SIZE, &mut mask) };
    assert_eq!(
        r,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    mask
}

fn cpus_of(mask: &libc::cpu_set_t) -> Vec<usize> {
    // SAFETY: `c` is below the set's capacity.
    (0..8 * SIZE)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, mask) })
        .collect()
}

/// Moves this thread onto `cpu` and gives it `mask` back: the kernel
/// leaves it there, as it leaves a worker it placed there.
fn stack_on(cpu: usize, mask: &libc::cpu_set_t) {
    // SAFETY: plain bit sets of `SIZE` bytes.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(libc::sched_setaffinity(0, SIZE, &one), 0);
        assert_eq!(libc::sched_setaffinity(0, SIZE, mask), 0);
    }
}

/// This thread's mask and its CPUs, if there are two or more (else the
/// test is skipped, saying so).
fn two_cpus_or_more() -> Option<(libc::cpu_set_t, Vec<usize>)> {
    let mask = mask_of(0);
    let cpus = cpus_of(&mask);
    if cpus.len() < 2 {
        eprintln!("skipped: this process may use one CPU only");
        return None;
    }
    Some((mask, cpus))
}

/// The calling thread's id.
fn tid() -> libc::pid_t {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}

#[test]
fn busy_workers_on_one_cpu_move_apart_and_keep_their_mask() {
    let Some((mask, cpus)) = two_cpus_or_more() else {
        return;
    };
    run_with_timeout("spreading two stacked workers", move || {
        // No hand-off: the thread ids collected below stay this runtime's
        // two workers.
        let rt = fiber_runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .worker_handoff(false)
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let moves = move || {
            (0..2)
                .map(|i| handle.metrics().worker_cpu_move_count(i))
                .sum::<u64>()
        };
        let moved = Arc::new(AtomicBool::new(false));
        // The threads that ran the tasks: this runtime's workers.
        let workers = Arc::new(Mutex::new(HashSet::new()));
        rt.block_on(async {
            // More busy tasks than workers, so that both stay busy (the
            // idle one steals); each puts its worker on the first CPU now
            // and then, until a worker has moved off it.
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (moved, moves, cpu) = (moved.clone(), moves.clone(), cpus[0]);
                    let workers = workers.clone();
                    fiber_runtime::spawn(async move {
                        while !moved.load(SeqCst) {
                            workers.lock().unwrap().insert(tid());
                            stack_on(cpu, &mask);
                            for _ in 0..2000 {
                                fiber_runtime::yield_now().await;
                            }
                            if moves() > 0 {
                                moved.store(true, SeqCst);
                            }
                        }
                        // Right after the move, from whichever worker runs
                        // this: a thread it starts inherits its mask, which
                        // must be the whole one (a move pins nothing).
                        std::thread::spawn(|| cpus_of(&mask_of(0))).join().unwrap()
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), cpus, "a thread started by a worker");
            }
        });
        assert!(moves() > 0);
        // A move pins a worker only for as long as it takes: every worker
        // has the mask it had (the tasks' last `stack_on` gave it back, and
        // a move after it gives back the same).
        let workers: Vec<_> = workers.lock().unwrap().iter().copied().collect();
        wait_until("every worker has its mask back", || {
            workers.iter().all(|&t| cpus_of(&mask_of(t)) == cpus)
        });
        drop(rt);
    });
}

#[test]
fn with_spread_workers_off_no_worker_moves() {
    let Some((mask, cpus)) = two_cpus_or_more() else {
        return;
    };
    run_with_timeout("stacked workers, spreading off", move || {
        let rt = fiber_runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .spread_workers(false)
            .build()
            .unwrap();
        rt.block_on(async {
            // What moved a worker in the test above, a fixed number of times.
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let cpu = cpus[0];
                    fiber_runtime::spawn(async move {
                        for _ in 0..20 {
                            stack_on(cpu, &mask);
                            for _ in 0..2000 {
                                fiber_runtime::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let m = rt.metrics();
        assert_eq!(m.worker_cpu_move_count(0) + m.worker_cpu_move_count(1), 0);
    });
}
