//! An echo server under an external load: the server runs in a child
//! process of its own (fiber-runtime with tasks, fiber-runtime with one
//! fiber per connection, or tokio; 2 workers each), and this process is
//! the client, a current-thread tokio runtime (epoll) driving every
//! connection, each doing round trips of 64 B. The servers are run in
//! turn, interleaved, for several rounds; prints the median round trips
//! per second of each and the ratios to tokio.
//!
//! ```text
//! cargo run --release --example echo_external -- [--conns N] [--trips R] [--rounds K]
//! ```
//!
//! fiber-runtime's server runs under `FIBER_RUNTIME_IO` as set (both
//! drivers are run when it is unset: `tasks/epoll`, `tasks/uring`,
//! `fibers/epoll`, `fibers/uring`; uring only where the kernel allows it).
//! The hidden `--serve KIND` mode is the child: it prints its address,
//! then serves until its stdin closes.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Instant;
#[path = "shared/stats.rs"]
mod stats;
use stats::median;

const MSG: usize = 64;

/// The child: serves `kind` on 127.0.0.1 until stdin closes.
fn serve(kind: &str) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    println!("{}", std_listener.local_addr().unwrap());
    // Ends the process when the parent closes our stdin.
    std::thread::spawn(|| {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        std::process::exit(0);
    });
    match kind {
        "tokio" => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    s.set_nodelay(true).unwrap();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = s.read(&mut buf).await {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            })
        }
        "tasks" | "fibers" => {
            use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
            let fibers = kind == "fibers";
            let rt = fiber_runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = fiber_runtime::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    s.set_nodelay(true).unwrap();
                    if fibers {
                        drop(fiber_runtime::fiber::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while let Ok(n @ 1..) = std::io::Read::read(&mut s, &mut buf) {
                                if std::io::Write::write_all(&mut s, &buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }));
                    } else {
                        drop(fiber_runtime::spawn(async move {
                            let mut buf = [0u8; 4096];
                            while let Ok(n @ 1..) = s.read(&mut buf).await {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }));
                    }
                }
            })
        }
        other => panic!("unknown server kind {other:?}"),
    }
}

/// The load: `conns` connections to `addr`, each doing `trips` round
/// trips, all on one current-thread tokio runtime; round trips per second.
fn load(addr: SocketAddr, conns: usize, trips: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut streams = Vec::with_capacity(conns);
        for _ in 0..conns {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            streams.push(s);
        }
        let start = Instant::now();
        let tasks: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(c, mut s)| {
                tokio::spawn(async move {
                    let mut back = [0u8; MSG];
                    for t in 0..trips {
                        let msg = [(c ^ t) as u8; MSG];
                        s.write_all(&msg).await.unwrap();
                        s.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, msg, "the server echoed other bytes");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (conns * trips) as f64 / start.elapsed().as_secs_f64()
    })
}

/// Starts the server `kind` (with `io` as `FIBER_RUNTIME_IO`, if any) in a
/// child, runs the load against it, ends the child.
fn round(kind: &str, io: Option<&str>, conns: usize, trips: usize) -> f64 {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--serve", kind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(io) = io {
        cmd.env("FIBER_RUNTIME_IO", io);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the {kind} server did not start: {line:?}"));
    let rate = load(addr, conns, trips);
    drop(child.stdin.take());
    child.wait().unwrap();
    rate
}

const USAGE: &str = "usage: echo_external [--conns N] [--trips N] [--rounds N] (each at least 1; \
                     FIBER_RUNTIME_IO=epoll|uring runs only that driver)";

/// Exits with the usage after `error` (status 2), or without one for
/// `--help` (status 0).
fn usage(error: Option<String>) -> ! {
    match error {
        Some(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2)
        }
        None => {
            println!("{USAGE}");
            std::process::exit(0)
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut conns, mut trips, mut rounds) = (500usize, 400usize, 5usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--serve" => {
                let kind = args
                    .next()
                    .unwrap_or_else(|| usage(Some("--serve needs a KIND".into())));
                return serve(&kind);
            }
            "--help" | "-h" => usage(None),
            "--conns" | "--trips" | "--rounds" => {}
            other => usage(Some(format!("unknown argument {other:?}"))),
        }
        let v = args
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&v| v > 0)
            .unwrap_or_else(|| usage(Some(format!("{a} needs a number of at least 1"))));
        match a.as_str() {
            "--conns" => conns = v,
            "--trips" => trips = v,
            _ => rounds = v,
        }
    }
    let ios: Vec<Option<&str>> = match std::env::var("FIBER_RUNTIME_IO") {
        Ok(_) => vec![None],
        Err(_) => {
            let uring = fiber_runtime::Builder::new_current_thread()
                .io_driver(fiber_runtime::IoDriver::Uring)
                .build()
                .is_ok();
            if uring {
                vec![Some("epoll"), Some("uring")]
            } else {
                vec![Some("epoll")]
            }
        }
    };
    let mut servers = vec![("tokio", None)];
    for kind in ["tasks", "fibers"] {
        servers.extend(ios.iter().map(|&io| (kind, io)));
    }
    let mut rates = vec![Vec::new(); servers.len()];
    for r in 0..rounds {
        // Alternate the order, so that no server always runs first.
        let order: Vec<usize> = if r % 2 == 0 {
            (0..servers.len()).collect()
        } else {
            (0..servers.len()).rev().collect()
        };
        for i in order {
            let (kind, io) = servers[i];
            rates[i].push(round(kind, io, conns, trips));
        }
    }
    println!(
        "{conns} connections x {trips} round trips of {MSG} B, external client (tokio current-thread), \
         servers with 2 workers, {rounds} rounds"
    );
    for (i, (kind, io)) in servers.iter().enumerate() {
        let name = match io {
            Some(io) => format!("{kind}/{io}"),
            None => kind.to_string(),
        };
        // The ratio per round (to tokio in the same round), then its median.
        let ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(a, t)| a / t).collect();
        println!(
            "{name:<14} {:>9.0} round trips/s  ratio {:.2} (per round {:?})",
            median(rates[i].clone()),
            median(ratios.clone()),
            ratios
                .iter()
                .map(|r| (r * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
}
