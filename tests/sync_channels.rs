//! `sync` channels (oneshot, mpsc, broadcast, watch) from async tasks,
//! fibers and plain threads; back-pressure, close, lag; and the ways to
//! break them: cancelled sends and receives, aborted parked fibers, the
//! wrong caller, the runtime dropped under waiters, exact drop counts.

// `block_on(async { fiber::spawn(..) })` hands the JoinHandle out on purpose.
#![allow(clippy::async_yields_async)]

mod util;

use fiber_runtime::fiber;
use fiber_runtime::sync::{broadcast, mpsc, oneshot, watch};
use futures::future::{Either, select};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use util::{DropToken, Flavor, join_thread, run, run_with_timeout};

/// Five producers of three kinds into one small bounded channel: every
/// message arrives once, each producer's in order, and the buffer never
/// holds more than its capacity.
#[test]
fn bounded_mpsc_from_every_kind_of_sender_keeps_order_and_capacity() {
    const N: u64 = 500;
    const CAP: usize = 4;
    for flavor in Flavor::ALL {
        let (got, max_len) = run(flavor, "mixed mpsc", || async {
            let (tx, mut rx) = mpsc::channel::<(u8, u64)>(CAP);
            let mut handles = Vec::new();
            for p in 0..2u8 {
                let tx = tx.clone();
                handles.push(fiber_runtime::spawn(async move {
                    for i in 0..N {
                        tx.send((p, i)).await.unwrap();
                    }
                }));
            }
            for p in 2..4u8 {
                let tx = tx.clone();
                handles.push(fiber::spawn(move || {
                    for i in 0..N {
                        tx.blocking_send((p, i)).unwrap();
                    }
                }));
            }
            let t = {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..N {
                        tx.blocking_send((4, i)).unwrap();
                    }
                })
            };
            drop(tx);
            let mut next = [0u64; 5];
            let mut max_len = 0;
            while let Some((p, i)) = rx.recv().await {
                max_len = max_len.max(rx.len());
                assert_eq!(i, next[p as usize], "producer {p} out of order");
                next[p as usize] += 1;
            }
            for h in handles {
                h.await.unwrap();
            }
            join_thread(t).await;
            (next, max_len)
        });
        assert_eq!(got, [N; 5], "{flavor:?}");
        assert!(
            max_len <= CAP,
            "{flavor:?}: {max_len} buffered, capacity {CAP}"
        );
    }
}

/// Back-pressure: a full channel holds a fiber's `blocking_send` (and the
/// worker runs the receiver meanwhile, even on one thread).
#[test]
fn a_full_channel_suspends_the_sending_fiber() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread(1)] {
        run(flavor, "back-pressure", || async {
            let (tx, mut rx) = mpsc::channel(2);
            tx.try_send(0).unwrap();
            tx.try_send(1).unwrap();
            assert!(matches!(
                tx.try_send(9),
                Err(mpsc::error::TrySendError::Full(9))
            ));
            let sent = Arc::new(AtomicUsize::new(0));
            let s = sent.clone();
            let producer = fiber::spawn(move || {
                for i in 2..10 {
                    tx.blocking_send(i).unwrap();
                    s.fetch_add(1, SeqCst);
                }
            });
            let mut got = Vec::new();
            for _ in 0..10 {
                got.push(rx.recv().await.unwrap());
                // Never more than capacity ahead of the receiver.
                assert!(sent.load(SeqCst) <= got.len(), "sent past the capacity");
            }
            producer.await.unwrap();
            assert_eq!(got, (0..10).collect::<Vec<_>>());
            assert_eq!(rx.recv().await, None);
        });
    }
}

/// `close` fails the waiting senders of every kind with their message
/// back, keeps the buffered ones receivable, then ends the stream.
/// Dropping the receiver drops what is buffered exactly once.
#[test]
fn closing_and_dropping_the_receiver() {
    for flavor in Flavor::ALL {
        run(flavor, "close", || async {
            let (tx, mut rx) = mpsc::channel(1);
            tx.send(1).await.unwrap();
            // Each sender counts itself right before it blocks on the full
            // channel; `close` comes once both are there.
            let waiting = Arc::new(AtomicUsize::new(0));
            let (t, w) = (tx.clone(), waiting.clone());
            let fiber = fiber::spawn(move || {
                w.fetch_add(1, SeqCst);
                t.blocking_send(2).unwrap_err().0
            });
            let (t, w) = (tx.clone(), waiting.clone());
            let task = fiber_runtime::spawn(async move {
                w.fetch_add(1, SeqCst);
                t.send(3).await.unwrap_err().0
            });
            while waiting.load(SeqCst) < 2 {
                fiber_runtime::yield_now().await;
            }
            rx.close();
            assert_eq!(fiber.await.unwrap(), 2);
            assert_eq!(task.await.unwrap(), 3);
            assert!(tx.is_closed());
            tx.closed().await;
            assert_eq!(rx.recv().await, Some(1));
            assert_eq!(rx.recv().await, None);
        });
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel(8);
    let (utx, urx) = mpsc::unbounded_channel();
    for i in 0..5 {
        tx.try_send(DropToken::new(i, &drops)).unwrap();
        utx.send(DropToken::new(i, &drops)).unwrap();
    }
    drop(rx);
    drop(urx);
    assert_eq!(
        drops.load(SeqCst),
        10,
        "buffered messages not dropped with the receiver"
    );
    let back = tx
        .try_send(DropToken::new(9, &drops))
        .unwrap_err()
        .into_inner();
    assert_eq!(back.value, 9);
    drop((back, tx, utx));
    assert_eq!(drops.load(SeqCst), 11, "a message dropped twice or leaked");
}

/// The last sender gone ends the stream for a receiver parked in a fiber
/// and one parked in a task.
#[test]
fn the_last_sender_gone_wakes_the_receiver() {
    for flavor in Flavor::ALL {
        run(flavor, "senders gone", || async {
            // Each receiver counts itself right before it blocks; the
            // senders go once both are there.
            let waiting = Arc::new(AtomicUsize::new(0));
            let (tx, mut rx) = mpsc::channel::<u8>(1);
            let w = waiting.clone();
            let fiber = fiber::spawn(move || {
                w.fetch_add(1, SeqCst);
                rx.blocking_recv()
            });
            let (utx, mut urx) = mpsc::unbounded_channel::<u8>();
            let w = waiting.clone();
            let task = fiber_runtime::spawn(async move {
                w.fetch_add(1, SeqCst);
                urx.recv().await
            });
            while waiting.load(SeqCst) < 2 {
                fiber_runtime::yield_now().await;
            }
            drop(tx);
            drop(utx);
            assert_eq!(fiber.await.unwrap(), None);
            assert_eq!(task.await.unwrap(), None);
        });
    }
}

/// Sends and receives raced against cancellation: a dropped `send` future
/// frees its slot for the next sender (the capacity is whole at the end);
/// a dropped `recv` future loses no message.
#[test]
fn cancelled_sends_and_receives_lose_no_slot_and_no_message() {
    for flavor in Flavor::ALL {
        run(flavor, "mpsc vs cancel", || async {
            let (tx, mut rx) = mpsc::channel::<u64>(2);
            let sent = Arc::new(AtomicUsize::new(0));
            let mut producers = Vec::new();
            for i in 0..4 {
                let (tx, sent) = (tx.clone(), sent.clone());
                let body = async move {
                    for v in 0..200 {
                        let send = pin!(tx.send(v));
                        let other = pin!(fiber_runtime::yield_now());
                        if let Either::Left((r, _)) = select(send, other).await {
                            r.unwrap();
                            sent.fetch_add(1, SeqCst);
                        }
                    }
                };
                producers.push(if i % 2 == 0 {
                    fiber_runtime::spawn(body)
                } else {
                    fiber::spawn(move || fiber::wait(body))
                });
            }
            let received = Arc::new(AtomicUsize::new(0));
            let r = received.clone();
            let consumer = fiber_runtime::spawn(async move {
                loop {
                    let recv = pin!(rx.recv());
                    let other = pin!(fiber_runtime::yield_now());
                    match select(recv, other).await {
                        Either::Left((Some(_), _)) => {
                            r.fetch_add(1, SeqCst);
                        }
                        Either::Left((None, _)) => return,
                        Either::Right(_) => {}
                    }
                }
            });
            for p in producers {
                p.await.unwrap();
            }
            let total = sent.load(SeqCst);
            while received.load(SeqCst) < total {
                fiber_runtime::yield_now().await;
            }
            assert_eq!(tx.capacity(), 2, "a cancelled send kept a slot");
            drop(tx);
            consumer.await.unwrap();
            let received = received.load(SeqCst);
            assert_eq!(received, total, "a message was lost or doubled");
            assert!(received > 0);
        });
    }
}

/// Slots stay whole when senders are cancelled while queued: after a
/// storm of cancelled sends into a full channel, draining it gives the
/// whole capacity back.
#[test]
fn cancelled_queued_senders_give_their_slot_back() {
    let (tx, mut rx) = mpsc::channel::<u32>(3);
    for i in 0..3 {
        tx.try_send(i).unwrap();
    }
    let w = std::task::Waker::noop();
    let mut queued: Vec<_> = (0..5).map(|i| Box::pin(tx.send(10 + i))).collect();
    for f in &mut queued {
        assert!(util::poll_once(f, w).is_pending());
    }
    // Two slots freed: handed to the first two queued senders...
    assert_eq!(rx.try_recv(), Ok(0));
    assert_eq!(rx.try_recv(), Ok(1));
    // ...which are dropped without being polled again, as are the rest.
    drop(queued);
    assert_eq!(rx.try_recv(), Ok(2));
    assert!(rx.try_recv().is_err());
    assert_eq!(tx.capacity(), 3, "a cancelled sender kept a slot");
}

/// oneshot from every pair of callers, the drop cases, and a fiber
/// parked in `blocking_recv` that is aborted (its receiver goes, so the
/// sender sees the channel closed).
#[test]
fn oneshot_callers_drops_and_abort() {
    for flavor in Flavor::ALL {
        run(flavor, "oneshot", || async {
            let (tx, rx) = oneshot::channel();
            let fiber = fiber::spawn(move || rx.blocking_recv());
            std::thread::spawn(move || tx.send(1).unwrap());
            assert_eq!(fiber.await.unwrap(), Ok(1));

            let (tx, rx) = oneshot::channel::<u8>();
            fiber::spawn(move || drop(tx)).await.unwrap();
            assert!(rx.await.is_err());

            let (mut tx, rx) = oneshot::channel::<u8>();
            // The fiber counts itself right before it blocks; the abort
            // comes once it is there.
            let waiting = Arc::new(AtomicUsize::new(0));
            let w = waiting.clone();
            let parked = fiber::spawn(move || {
                w.fetch_add(1, SeqCst);
                rx.blocking_recv()
            });
            while waiting.load(SeqCst) < 1 {
                fiber_runtime::yield_now().await;
            }
            parked.abort();
            assert!(parked.await.unwrap_err().is_cancelled());
            tx.closed().await;
            assert_eq!(tx.send(5), Err(5));

            // Ping-pong between a fiber and a task.
            let (mut to_fiber, mut to_task) = (Vec::new(), Vec::new());
            for _ in 0..100 {
                let (a, b) = oneshot::channel::<u32>();
                to_fiber.push(b);
                to_task.push(a);
            }
            let (back_tx, mut back_rx): (Vec<_>, Vec<_>) =
                (0..100).map(|_| oneshot::channel::<u32>()).unzip();
            let f = fiber::spawn(move || {
                for (rx, tx) in to_fiber.into_iter().zip(back_tx) {
                    let v = rx.blocking_recv().unwrap();
                    tx.send(v + 1).unwrap();
                }
            });
            let mut v = 0;
            for tx in to_task {
                tx.send(v).unwrap();
                v = back_rx.remove(0).await.unwrap();
            }
            f.await.unwrap();
            assert_eq!(v, 100);
        });
    }
    // The value is dropped once: sent and never received.
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = oneshot::channel();
    tx.send(DropToken::new(1, &drops)).unwrap();
    drop(rx);
    assert_eq!(drops.load(SeqCst), 1);
}

/// broadcast: receivers of every kind see every value in order; a
/// lagging receiver is told exactly how many it missed; the senders gone
/// wake a parked fiber with `Closed`.
#[test]
fn broadcast_across_callers_lag_and_close() {
    for flavor in Flavor::ALL {
        run(flavor, "broadcast", || async {
            let (tx, mut rx_task) = broadcast::channel::<u32>(1024);
            let mut rx_fiber = tx.subscribe();
            let mut rx_thread = tx.subscribe();
            let fiber = fiber::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = rx_fiber.blocking_recv() {
                    got.push(v);
                }
                got
            });
            let thread = std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match rx_thread.blocking_recv() {
                        Ok(v) => got.push(v),
                        Err(broadcast::error::RecvError::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            for i in 0..1000 {
                assert_eq!(tx.send(i).unwrap(), 3);
                if i % 100 == 0 {
                    fiber_runtime::yield_now().await;
                }
            }
            drop(tx);
            let mut got = Vec::new();
            while let Ok(v) = rx_task.recv().await {
                got.push(v);
            }
            let all: Vec<u32> = (0..1000).collect();
            assert_eq!(got, all);
            assert_eq!(fiber.await.unwrap(), all);
            assert_eq!(join_thread(thread).await, all);
        });
    }
    let (tx, mut rx) = broadcast::channel(4);
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.len(), 4);
    assert_eq!(
        rx.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(6))
    );
    assert_eq!(rx.try_recv(), Ok(6));
    drop(tx);
    assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(7), Ok(8)));
    assert_eq!(rx.try_recv(), Ok(9));
    assert_eq!(rx.try_recv(), Err(broadcast::error::TryRecvError::Closed));
}

/// A cancelled broadcast `recv` loses nothing, and values are dropped
/// once each (overwritten, or with the channel).
#[test]
fn broadcast_cancelled_receives_and_drop_counts() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = broadcast::channel::<Arc<DropToken>>(2);
    let w = std::task::Waker::noop();
    {
        let mut f = Box::pin(rx.recv());
        assert!(util::poll_once(&mut f, w).is_pending());
    }
    for i in 0..5 {
        tx.send(Arc::new(DropToken::new(i, &drops))).unwrap();
    }
    assert_eq!(drops.load(SeqCst), 3, "overwritten values are dropped");
    assert!(matches!(
        rx.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(3))
    ));
    assert_eq!(rx.try_recv().unwrap().value, 3);
    drop((tx, rx));
    assert_eq!(drops.load(SeqCst), 5);
}

/// watch: a fiber waits for changes a plain thread makes; it sees the
/// latest; the sender gone ends it.
#[test]
fn watch_across_callers() {
    for flavor in Flavor::ALL {
        run(flavor, "watch", || async {
            let (tx, mut rx) = watch::channel(0u32);
            let mut rx2 = rx.clone();
            let fiber = fiber::spawn(move || {
                let mut seen = Vec::new();
                while rx2.blocking_changed().is_ok() {
                    seen.push(*rx2.borrow_and_update());
                }
                seen
            });
            let thread = std::thread::spawn(move || {
                for i in 1..=50 {
                    tx.send(i).unwrap();
                }
            });
            let v = *rx.wait_for(|v| *v == 50).await.unwrap();
            assert_eq!(v, 50);
            join_thread(thread).await;
            let seen = fiber.await.unwrap();
            assert_eq!(seen.last(), Some(&50), "the latest value was missed");
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
            assert!(rx.changed().await.is_err());
        });
    }
}

/// The wrong caller: the channels' `blocking_*` methods in an async task
/// panic naming what to `.await`.
#[test]
fn channel_blocking_calls_in_an_async_task_panic_naming_the_async_method() {
    util::silence_expected_panics(&["was called from an async task"]);
    let rt = util::multi_thread(1);
    type Call = Box<dyn FnOnce() + Send>;
    let calls: Vec<(&str, Call)> = vec![
        ("`Sender::send`", {
            let (tx, _rx) = mpsc::channel(1);
            Box::new(move || {
                let _ = tx.blocking_send(1);
            })
        }),
        ("`Receiver::recv`", {
            let (_tx, mut rx) = mpsc::channel::<u8>(1);
            Box::new(move || {
                let _ = rx.blocking_recv();
            })
        }),
        ("`UnboundedReceiver::recv`", {
            let (_tx, mut rx) = mpsc::unbounded_channel::<u8>();
            Box::new(move || {
                let _ = rx.blocking_recv();
            })
        }),
        ("`.await` the Receiver", {
            let (_tx, rx) = oneshot::channel::<u8>();
            Box::new(move || {
                let _ = rx.blocking_recv();
            })
        }),
        ("`Receiver::recv`", {
            let (_tx, mut rx) = broadcast::channel::<u8>(1);
            Box::new(move || {
                let _ = rx.blocking_recv();
            })
        }),
        ("`Receiver::changed`", {
            let (_tx, mut rx) = watch::channel(0);
            Box::new(move || {
                let _ = rx.blocking_changed();
            })
        }),
    ];
    for (name, call) in calls {
        let err = rt.block_on(rt.spawn(async move { call() })).unwrap_err();
        let msg = util::panic_message(&*err.into_panic()).unwrap();
        assert!(msg.contains(name), "{name}: {msg}");
    }
}

/// The runtime dropped while fibers wait in `blocking_send` (full
/// channel) and `blocking_recv`: no hang; the parked fibers unwind and
/// drop what they held; the channels report the truth afterwards.
#[test]
fn dropping_the_runtime_under_parked_senders_and_receivers() {
    for flavor in Flavor::ALL {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let (tx, rx) = run_with_timeout("drop runtime under channel waiters", move || {
            let rt = flavor.build();
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(DropToken::new(0, &d)).unwrap();
            let (otx, orx) = oneshot::channel::<u8>();
            let started = Arc::new(AtomicUsize::new(0));
            {
                let _in = rt.enter();
                let (t, s, d) = (tx.clone(), started.clone(), d.clone());
                drop(fiber::spawn(move || {
                    s.fetch_add(1, SeqCst);
                    // Full: parks; the token is dropped when it unwinds.
                    let _ = t.blocking_send(DropToken::new(1, &d));
                }));
                let s = started.clone();
                drop(fiber::spawn(move || {
                    s.fetch_add(1, SeqCst);
                    let _ = orx.blocking_recv();
                }));
            }
            util::drive_until(&rt, "both fibers started", || started.load(SeqCst) == 2);
            drop(rt);
            assert!(otx.is_closed(), "the parked receiver was not dropped");
            (tx, rx)
        });
        assert_eq!(
            drops.load(SeqCst),
            1,
            "{flavor:?}: the parked send's message"
        );
        let mut rx = rx;
        assert_eq!(rx.try_recv().unwrap().value, 0);
        assert_eq!(
            tx.capacity(),
            1,
            "{flavor:?}: the parked sender kept a slot"
        );
        drop(rx);
        assert_eq!(drops.load(SeqCst), 2);
    }
}
