//! A TCP echo server on 127.0.0.1: one task per connection, sending back
//! every byte it reads.
//!
//! Without `--client` it serves until killed (try `nc 127.0.0.1 PORT`).
//! With `--client N` it also runs a bounded load in the same process and
//! runtime: N client tasks, each with its own connection, doing R round
//! trips of 64 bytes (write 64, read the 64 back, check them); it prints
//! the round trips per second and exits.
//!
//! ```text
//! cargo run --release --example echo_server -- [--port P] [--workers N]
//! cargo run --release --example echo_server -- --client N [--rounds R] [--port P] [--workers N]
//! ```
//!
//! `--port 0` (the default) picks a free port; the address is printed.
//! `--rounds` defaults to 2000; `--workers` to one per core.

use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::time::{Duration, Instant, sleep, timeout};
use std::net::SocketAddr;

const MSG: usize = 64;
/// The client load gives up after this long (so `--client` always ends).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

struct Options {
    port: u16,
    workers: usize,
    clients: Option<usize>,
    rounds: usize,
}

fn usage(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!("usage: echo_server [--port P] [--workers N] [--client N [--rounds R]]");
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut o = Options {
        port: 0,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        clients: None,
        rounds: 2000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match a.as_str() {
            "--port" => {
                o.port = u16::try_from(number("--port")).unwrap_or_else(|_| usage("bad --port"))
            }
            "--workers" => o.workers = number("--workers"),
            "--client" | "--clients" => o.clients = Some(number("--client")),
            "--rounds" => o.rounds = number("--rounds"),
            _ => usage(&format!("unknown argument {a:?}")),
        }
    }
    if o.workers == 0 || o.clients == Some(0) || o.rounds == 0 {
        usage("--workers, --client and --rounds must be at least 1");
    }
    o
}

/// Accepts connections forever, one echo task each.
async fn serve(listener: TcpListener, log: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if log {
                    println!("{peer}: connected");
                }
                drop(fiber_runtime::spawn(echo(stream, peer, log)));
            }
            Err(e) => {
                // Such as EMFILE: back off, then accept again.
                eprintln!("accept failed: {e}");
                sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes one connection until the peer closes it.
async fn echo(mut stream: TcpStream, peer: SocketAddr, log: bool) {
    // Small request/response messages: do not wait to coalesce them.
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 4096];
    let mut total = 0u64;
    let result = loop {
        match stream.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = stream.write_all(&buf[..n]).await {
                    break Err(e);
                }
                total += n as u64;
            }
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(()) if log => println!("{peer}: closed after echoing {total} bytes"),
        Ok(()) => {}
        Err(e) => eprintln!("{peer}: {e} (after echoing {total} bytes)"),
    }
}

/// One client connection: `rounds` round trips of `MSG` bytes, each
/// message numbered and checked when it comes back.
async fn client(addr: SocketAddr, id: usize, rounds: usize) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut msg = [id as u8; MSG];
    let mut back = [0u8; MSG];
    for r in 0..rounds {
        msg[..8].copy_from_slice(&(r as u64).to_le_bytes());
        stream.write_all(&msg).await?;
        stream.read_exact(&mut back).await?;
        if back != msg {
            return Err(std::io::Error::other(format!(
                "client {id}: round {r} came back different"
            )));
        }
    }
    Ok(())
}

/// Runs `n` clients at once; returns when all are done.
async fn load(addr: SocketAddr, n: usize, rounds: usize) -> std::io::Result<()> {
    let clients: Vec<_> = (0..n)
        .map(|id| fiber_runtime::spawn(client(addr, id, rounds)))
        .collect();
    for c in clients {
        c.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

fn main() {
    let o = parse_args();
    let rt = fiber_runtime::Builder::new_multi_thread()
        .worker_threads(o.workers)
        .build()
        .expect("failed to build the runtime");

    let ok = rt.block_on(async {
        let listener = match TcpListener::bind(("127.0.0.1", o.port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on 127.0.0.1:{}: {e}", o.port);
                return false;
            }
        };
        let addr = listener.local_addr().expect("no local address");
        let s = if o.workers == 1 { "" } else { "s" };
        println!("echo server listening on {addr} ({} worker{s})", o.workers);
        let server = fiber_runtime::spawn(serve(listener, o.clients.is_none()));

        let Some(n) = o.clients else {
            // Serve until killed.
            server.await.expect("the server task failed");
            return true;
        };
        println!(
            "running {n} clients x {} round trips of {MSG} bytes",
            o.rounds
        );
        let start = Instant::now();
        match timeout(CLIENT_LIMIT, load(addr, n, o.rounds)).await {
            Ok(Ok(())) => {
                let elapsed = start.elapsed();
                let trips = (n * o.rounds) as f64;
                println!(
                    "{} round trips in {elapsed:.2?}: {:.0} round trips/s, {:.1} MB/s each way",
                    n * o.rounds,
                    trips / elapsed.as_secs_f64(),
                    trips * MSG as f64 / elapsed.as_secs_f64() / 1e6
                );
                println!(
                    "mean round trip per connection: {:.1?}",
                    elapsed / o.rounds as u32
                );
                true
            }
            Ok(Err(e)) => {
                eprintln!("client load failed: {e}");
                false
            }
            Err(_) => {
                eprintln!("client load did not finish within {CLIENT_LIMIT:?}");
                false
            }
        }
    });
    // Dropping the runtime cancels the server and its connection tasks.
    drop(rt);
    if !ok {
        std::process::exit(1);
    }
}
