//! An echo server with one fiber per connection, written in plain blocking
//! style (`read` / `write_all`), against tokio's task-per-connection echo
//! in the same process: 50 connections × 2000 round trips of 64 B on
//! loopback, clients in the same runtime, interleaved rounds, medians.
//!
//! ```text
//! cargo run --release --example fiber_echo -- [--conns N] [--trips R] [--rounds K]
//! ```

use fiber_runtime::fiber;
use fiber_runtime::net::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::time::Instant;
#[path = "shared/stats.rs"]
mod stats;
use stats::median;

const MSG: usize = 64;

fn fiber_echo(conns: usize, trips: usize) -> f64 {
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = fiber::spawn(move || {
            for _ in 0..conns {
                let (mut s, _) = listener.blocking_accept().unwrap();
                s.set_nodelay(true).unwrap();
                drop(fiber::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            return;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                }));
            }
        });
        let start = Instant::now();
        let clients: Vec<_> = (0..conns)
            .map(|c| {
                fiber::spawn(move || {
                    let mut s = fiber::wait(TcpStream::connect(addr)).unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut back = [0u8; MSG];
                    for t in 0..trips {
                        let msg = [(c ^ t) as u8; MSG];
                        s.write_all(&msg).unwrap();
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        server.await.unwrap();
        (conns * trips) as f64 / secs
    })
}

fn tokio_echo(conns: usize, trips: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..conns {
                let (mut s, _) = listener.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                });
            }
        });
        let start = Instant::now();
        let clients: Vec<_> = (0..conns)
            .map(|c| {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut back = [0u8; MSG];
                    for t in 0..trips {
                        let msg = [(c ^ t) as u8; MSG];
                        s.write_all(&msg).await.unwrap();
                        s.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        server.await.unwrap();
        (conns * trips) as f64 / secs
    })
}

fn main() {
    let (mut conns, mut trips, mut rounds) = (50usize, 2000usize, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v: usize = args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "--conns" => conns = v,
            "--trips" => trips = v,
            "--rounds" => rounds = v,
            other => panic!("unknown argument {other}"),
        }
    }
    let only = std::env::var("ECHO_ONLY").ok();
    let (mut f, mut t) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        if only.as_deref() != Some("tokio") {
            f.push(fiber_echo(conns, trips));
        }
        if only.as_deref() != Some("fibers") {
            t.push(tokio_echo(conns, trips));
        }
    }
    if only.is_some() {
        println!("{:?} {:?}", f, t);
        return;
    }
    let (f, t) = (median(f), median(t));
    println!(
        "{conns} connections x {trips} round trips of {MSG} B, 2 workers each, {rounds} rounds"
    );
    println!(
        "fibers (blocking style, one per connection): {:>9.0} round trips/s",
        f
    );
    println!(
        "tokio (one task per connection):             {:>9.0} round trips/s",
        t
    );
    println!("ratio fiber/tokio: {:.2} (target >= 1.2)", f / t);
}
