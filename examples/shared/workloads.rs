//! Benchmark workloads, shared by `examples/benchmark.rs` and
//! `benches/runtime.rs`.
//!
//! `workloads!` expands the same source once per runtime (module `fiber`
//! for fiber-runtime, module `tokio_rt` for tokio), so both run identical
//! code: only `spawn`, `yield_now`, the handle type and the crate whose
//! `net`, `io` and `time` modules are used differ. Every async function here
//! must be run inside the runtime (`block_on`); each checks its own result.
//! The tokio runtime must have its drivers enabled (`enable_all`) for
//! `echo` and `timers`.

use futures::channel::oneshot;

/// A ping-pong message: a counter, and where to send the reply.
pub(crate) struct Ping(u64, oneshot::Sender<Ping>);

/// Raises a listening socket's backlog to at least `conns` (Linux takes a
/// second `listen` on a listening socket as a new backlog; the standard
/// library's is 128).
pub(crate) fn deepen_backlog(listener: &std::net::TcpListener, conns: usize) {
    use std::os::fd::AsRawFd;
    let backlog = libc::c_int::try_from(conns.max(128)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `listen` on an fd this borrowed listener owns; it reads no
    // memory of ours.
    let r = unsafe { libc::listen(listener.as_raw_fd(), backlog) };
    assert_eq!(r, 0, "listen: {}", std::io::Error::last_os_error());
}

/// Bytes per echo round trip.
pub(crate) const ECHO_MSG: usize = 64;

/// The longest sleep of `timers`: sleeps are `i % TIMERS_MAX_MS + 1` ms.
pub(crate) const TIMERS_MAX_MS: u64 = 100;

/// The skynet sum of `0..size` leaves.
pub(crate) const fn skynet_sum(size: u64) -> u64 {
    size * (size - 1) / 2
}

macro_rules! workloads {
    ($name:ident, $krate:ident, $handle:ty, $spawn:path, $yield_now:path) => {
        pub(crate) mod $name {
            use super::{ECHO_MSG, Ping, TIMERS_MAX_MS, deepen_backlog, skynet_sum};
            use futures::channel::oneshot;
            use std::future::Future;
            use std::hint::black_box;
            use std::net::SocketAddr;
            use std::time::Duration;
            use $krate::io::{AsyncReadExt as _, AsyncWriteExt as _};
            use $krate::net::{TcpListener, TcpStream};

            /// `n` tiny tasks spawned from one task, all joined.
            pub(crate) async fn spawn_many(n: u64) {
                let sum = $spawn(async move {
                    let handles: Vec<_> = (0..n)
                        .map(|i| $spawn(async move { black_box(i) }))
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.unwrap();
                    }
                    sum
                })
                .await
                .unwrap();
                assert_eq!(sum, n * n.saturating_sub(1) / 2);
            }

            /// Spawns `n` tiny tasks through `handle` from the calling
            /// (non-runtime) thread right away; the returned future joins
            /// them all.
            pub(crate) fn spawn_remote(handle: &$handle, n: u64) -> impl Future<Output = ()> {
                let handles: Vec<_> = (0..n)
                    .map(|i| handle.spawn(async move { black_box(i) }))
                    .collect();
                async move {
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.unwrap();
                    }
                    assert_eq!(sum, n * n.saturating_sub(1) / 2);
                }
            }

            /// `tasks` tasks, each yielding `yields` times.
            pub(crate) async fn yield_many(tasks: usize, yields: usize) {
                $spawn(async move {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            $spawn(async move {
                                for _ in 0..yields {
                                    $yield_now().await;
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                })
                .await
                .unwrap();
            }

            async fn ping_side(first: oneshot::Sender<Ping>, rounds: u64) -> u64 {
                let mut to_peer = first;
                let mut v = 0;
                for _ in 0..rounds {
                    let (tx, rx) = oneshot::channel();
                    assert!(to_peer.send(Ping(v, tx)).is_ok(), "pong side gone");
                    let Ping(got, reply) = rx.await.expect("pong side gone");
                    v = got + 1;
                    to_peer = reply;
                }
                v
            }

            async fn pong_side(first: oneshot::Receiver<Ping>) -> u64 {
                let mut from_peer = first;
                let mut count = 0;
                // Ends when the ping side drops its last sender.
                while let Ok(Ping(v, reply)) = from_peer.await {
                    let (tx, rx) = oneshot::channel();
                    if reply.send(Ping(v + 1, tx)).is_err() {
                        break;
                    }
                    from_peer = rx;
                    count += 1;
                }
                count
            }

            /// `pairs` pairs of tasks, each doing `rounds` round trips; every
            /// message is a fresh oneshot carrying the sender of the reply.
            pub(crate) async fn ping_pong(pairs: usize, rounds: u64) {
                $spawn(async move {
                    let mut handles = Vec::with_capacity(pairs);
                    for _ in 0..pairs {
                        let (tx, rx) = oneshot::channel();
                        let pong = $spawn(pong_side(rx));
                        let ping = $spawn(ping_side(tx, rounds));
                        handles.push((ping, pong));
                    }
                    for (ping, pong) in handles {
                        assert_eq!(ping.await.unwrap(), 2 * rounds);
                        assert_eq!(pong.await.unwrap(), rounds);
                    }
                })
                .await
                .unwrap();
            }

            fn chain(left: usize, done: oneshot::Sender<()>) {
                if left == 0 {
                    let _ = done.send(());
                } else {
                    drop($spawn(async move { chain(left - 1, done) }));
                }
            }

            /// Each task spawns the next, `depth` deep; the last one
            /// signals completion.
            pub(crate) async fn chained_spawn(depth: usize) {
                let (tx, rx) = oneshot::channel();
                drop($spawn(async move { chain(depth, tx) }));
                rx.await.unwrap();
            }

            fn skynet_node(num: u64, size: u64) -> impl Future<Output = u64> + Send + 'static {
                async move {
                    if size == 1 {
                        return num;
                    }
                    let child = size / 10;
                    let handles: Vec<_> = (0..10)
                        .map(|i| $spawn(skynet_node(num + i * child, child)))
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.unwrap();
                    }
                    sum
                }
            }

            /// Skynet: a tree of tasks with fan-out 10 and `size` leaves
            /// (a power of 10); each leaf returns its number, each node the
            /// sum of its children.
            pub(crate) async fn skynet(size: u64) {
                let sum = $spawn(skynet_node(0, size)).await.unwrap();
                assert_eq!(sum, skynet_sum(size));
            }

            /// Server side of one echo connection: sends back whatever it
            /// reads, until the client closes.
            async fn echo_conn(mut s: TcpStream) {
                s.set_nodelay(true).unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.expect("echo server read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.expect("echo server write");
                }
            }

            /// Client side: `rounds` round trips of `ECHO_MSG` bytes, each
            /// message numbered and checked when it comes back.
            async fn echo_client(addr: SocketAddr, id: usize, rounds: usize) -> u64 {
                let mut s = TcpStream::connect(addr).await.expect("echo connect");
                s.set_nodelay(true).unwrap();
                let mut msg = [id as u8; ECHO_MSG];
                let mut back = [0u8; ECHO_MSG];
                for r in 0..rounds {
                    msg[..8].copy_from_slice(&(r as u64).to_le_bytes());
                    s.write_all(&msg).await.expect("echo client write");
                    s.read_exact(&mut back).await.expect("echo client read");
                    assert_eq!(msg, back, "echo returned other bytes");
                }
                rounds as u64
            }

            /// TCP echo over loopback, server and clients on this runtime:
            /// an accept task spawns one echo task per connection, and
            /// `conns` client tasks each connect and do `rounds` round
            /// trips (write `ECHO_MSG` bytes, read them back; `TCP_NODELAY`
            /// on both ends). The listener comes from the standard library,
            /// its backlog raised to `conns` (a connect beyond the backlog
            /// waits a second for the SYN's retransmission), registered
            /// with `from_std`, the same way for both runtimes.
            pub(crate) async fn echo(conns: usize, rounds: usize) {
                let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                std_listener.set_nonblocking(true).unwrap();
                deepen_backlog(&std_listener, conns);
                let addr = std_listener.local_addr().unwrap();
                let total = $spawn(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    let server = $spawn(async move {
                        let mut handles = Vec::with_capacity(conns);
                        for _ in 0..conns {
                            let (s, _) = listener.accept().await.expect("accept");
                            handles.push($spawn(echo_conn(s)));
                        }
                        for h in handles {
                            h.await.unwrap();
                        }
                    });
                    let clients: Vec<_> = (0..conns)
                        .map(|id| $spawn(echo_client(addr, id, rounds)))
                        .collect();
                    let mut total = 0;
                    for c in clients {
                        total += c.await.unwrap();
                    }
                    // Every connection closed: the echo tasks end too.
                    server.await.unwrap();
                    total
                })
                .await
                .unwrap();
                assert_eq!(total, (conns * rounds) as u64);
            }

            /// `n` tasks, each sleeping once for `i % TIMERS_MAX_MS + 1` ms
            /// (spawned from one task), all joined.
            pub(crate) async fn timers(n: u64) {
                sleep_tasks(n, |i| Duration::from_millis(i % TIMERS_MAX_MS + 1)).await
            }

            /// `n` tasks, each sleeping once for `d` (spawned from one
            /// task), all joined.
            #[allow(dead_code)] // used by benches/runtime.rs only
            pub(crate) async fn sleep_many(n: u64, d: Duration) {
                sleep_tasks(n, move |_| d).await
            }

            async fn sleep_tasks(n: u64, dur: impl Fn(u64) -> Duration + Copy + Send + 'static) {
                let sum = $spawn(async move {
                    let handles: Vec<_> = (0..n)
                        .map(|i| {
                            $spawn(async move {
                                $krate::time::sleep(dur(i)).await;
                                i
                            })
                        })
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.unwrap();
                    }
                    sum
                })
                .await
                .unwrap();
                assert_eq!(sum, n * n.saturating_sub(1) / 2);
            }
        }
    };
}

workloads!(
    fiber,
    fiber_runtime,
    fiber_runtime::Handle,
    fiber_runtime::spawn,
    fiber_runtime::yield_now
);
workloads!(
    tokio_rt,
    tokio,
    tokio::runtime::Handle,
    tokio::spawn,
    tokio::task::yield_now
);
