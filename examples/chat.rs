//! A line-based chat server: one fiber per client, one
//! `sync::broadcast` channel between them, and an admin console served by an
//! async task that talks to the clients through the same channel.
//!
//! What it shows:
//!
//! - **fibers in blocking style**: every client connection gets a fiber
//!   that reads its socket with plain `std::io::Read` (the fiber is
//!   suspended while the socket is empty), and a second, small fiber that
//!   waits on the client's `broadcast::Receiver` with `blocking_recv` and
//!   writes what arrives to the socket with `std::io::Write`;
//! - **an async task on the same channel**: the admin port is an accept
//!   loop with `.await`, one task per admin connection; `say` sends into
//!   the very channel the fibers send into and receive from;
//! - **one lock for both kinds**: the table of who is online is a
//!   `fiber_runtime::sync::Mutex`, taken with `blocking_lock()` in the
//!   fibers and `.lock().await` in the admin task;
//! - **lagging receivers**: the channel keeps the last 16 messages; a
//!   client whose writer fell further behind is told how many it missed
//!   (the admin command `flood <n>` provokes it).
//!
//! Protocol: a chat client first sends its name (1 to 24 printable
//! characters, no spaces, not taken), then lines; every line goes to every other client
//! as `<name>: <line>`. Empty lines are ignored, `/quit` leaves, bad
//! UTF-8 is replaced by U+FFFD, and a line over 4 KiB drops the client
//! with a message. The admin console takes `say <text>`, `who`,
//! `flood <n>`, `help` and `quit`.
//!
//! ```text
//! cargo run --release --example chat
//! ```
//!
//! runs a self-checking script and exits: it starts the server on free
//! ports, connects four chat clients and one admin client, chats, checks
//! every line each client receives, prints the transcript, and does it
//! again on a multi-thread runtime.
//!
//! ```text
//! cargo run --release --example chat -- --serve [--chat-addr 127.0.0.1:7000] [--admin-addr 127.0.0.1:7001]
//! nc 127.0.0.1 7000     # in two or more terminals: type a name, then chat
//! nc 127.0.0.1 7001     # the admin console: say hello / who / flood 100
//! ```
//!
//! serves until killed (Ctrl-C).
//!
//! Why two fibers per client: a fiber runs straight-line code and blocks
//! in one place at a time, while a client must be served in two
//! directions at once (its socket may send a line while a broadcast
//! arrives). The reading fiber owns the conversation (name, lines,
//! leaving); the writing fiber only forwards, so a slow client delays no
//! one but itself. A `&TcpStream` reads and writes, each direction with
//! its own waiter, so the two fibers share the stream through an `Arc`.
//! All writes to the socket after the name is accepted come from the
//! writing fiber, so lines never interleave.

use fiber_runtime::fiber;
use fiber_runtime::io as aio;
use fiber_runtime::net::{TcpListener, TcpStream};
use fiber_runtime::sync::Mutex;
use fiber_runtime::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use fiber_runtime::time::{Duration, Instant, timeout};
use fiber_runtime::{Builder, JoinHandle};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The longest line accepted (bytes, without the line end).
const MAX_LINE: usize = 4096;
/// The longest name (characters).
const MAX_NAME: usize = 24;
/// Messages the broadcast channel holds for a receiver that falls behind.
const CAPACITY: usize = 16;
/// The largest `flood`.
const MAX_FLOOD: u64 = 100_000;
/// After a too-long line, input read and thrown away (at most this much,
/// for at most `DRAIN_TIME`) before the socket is closed, so that the
/// client gets the explanation rather than a connection reset.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);
const COMMANDS: &str = "say <text> | who | flood <n> | quit";

/// What goes through the broadcast channel.
#[derive(Clone, Debug)]
enum Msg {
    /// A line for every client but `from` (the admin sends with `None`).
    Line { from: Option<u64>, text: Arc<str> },
    /// Client `id` leaves: `text` for the others, `farewell` (if any) for
    /// the client itself; its writing fiber stops there.
    Leave {
        id: u64,
        text: Arc<str>,
        farewell: Option<Arc<str>>,
    },
}

/// The server's state, shared by every fiber and task.
struct Shared {
    tx: broadcast::Sender<Msg>,
    /// Who is online, by client id. Taken by fibers with `blocking_lock`
    /// and by the admin task with `.lock().await`. A client's `Leave` is
    /// sent while this lock is held (see `writer`).
    online: Mutex<BTreeMap<u64, String>>,
    /// The clients' reading fibers, each of which joins its writer before
    /// it ends (for a clean shutdown).
    clients: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
    log: bool,
}

// ---------------------------------------------------------------------
// Lines in, with a length cap and no trust in the bytes

enum Line {
    Text(String),
    TooLong,
}

/// Splits bytes into lines of at most `max` bytes (`\n` or `\r\n`).
struct LineReader {
    buf: Vec<u8>,
    /// `buf[..scanned]` has no `\n`.
    scanned: usize,
    max: usize,
}

impl LineReader {
    fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            scanned: 0,
            max,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line held, if any.
    fn next_line(&mut self) -> Option<Line> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = self.scanned + i;
                let line = self.text(end);
                self.buf.drain(..=end);
                self.scanned = 0;
                Some(line)
            }
            None => {
                self.scanned = self.buf.len();
                // One byte of slack for a `\r` still to come.
                if self.buf.len() > self.max + 1 {
                    self.buf.clear();
                    self.scanned = 0;
                    Some(Line::TooLong)
                } else {
                    None
                }
            }
        }
    }

    /// At the end of the stream: the unterminated rest, if any.
    fn finish(&mut self) -> Option<Line> {
        if self.buf.is_empty() {
            return None;
        }
        let line = self.text(self.buf.len());
        self.buf.clear();
        self.scanned = 0;
        Some(line)
    }

    /// `buf[..end]` as a line: without a trailing `\r`, bad UTF-8 and
    /// control characters (terminal escapes) replaced by U+FFFD.
    fn text(&self, end: usize) -> Line {
        let raw = &self.buf[..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > self.max {
            return Line::TooLong;
        }
        let text = String::from_utf8_lossy(raw)
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect();
        Line::Text(text)
    }
}

/// Reads the next line in blocking style (suspends the fiber while the
/// socket is empty). `Ok(None)` at the end of the stream.
fn read_line(stream: &TcpStream, lines: &mut LineReader) -> io::Result<Option<Line>> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(line) = lines.next_line() {
            return Ok(Some(line));
        }
        let mut s = stream;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(lines.finish()),
            Ok(n) => lines.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// As `read_line`, for a task.
async fn read_line_async(stream: &TcpStream, lines: &mut LineReader) -> io::Result<Option<Line>> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(line) = lines.next_line() {
            return Ok(Some(line));
        }
        let mut s = stream;
        match aio::AsyncReadExt::read(&mut s, &mut chunk).await {
            Ok(0) => return Ok(lines.finish()),
            Ok(n) => lines.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `text` and a newline in blocking style, in one write.
fn write_line(stream: &TcpStream, text: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(text.len() + 1);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    let mut s = stream;
    s.write_all(&out)
}

/// As `write_line`, for a task.
async fn write_line_async(stream: &TcpStream, text: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(text.len() + 1);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    let mut s = stream;
    aio::AsyncWriteExt::write_all(&mut s, &out).await
}

/// Throws input away until the peer closes, `DRAIN_LIMIT` bytes or
/// `DRAIN_TIME` (an async fn: the fibers run it with `fiber::wait`).
async fn drain(stream: &TcpStream) {
    let deadline = Instant::now() + DRAIN_TIME;
    let mut buf = [0u8; 1024];
    let mut total = 0;
    while total < DRAIN_LIMIT {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut s = stream;
        match timeout(left, aio::AsyncReadExt::read(&mut s, &mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

fn too_long() -> String {
    format!("* line too long (max {MAX_LINE} bytes), bye")
}

// ---------------------------------------------------------------------
// The server

struct Server {
    chat_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    chat_accept: JoinHandle<()>,
    admin_accept: JoinHandle<()>,
}

impl Server {
    /// Binds both ports and starts the accept loops: a fiber for the chat
    /// port, a task for the admin port. Call it inside the runtime.
    fn start(chat_addr: &str, admin_addr: &str, log: bool) -> io::Result<Server> {
        let chat = TcpListener::bind(chat_addr)?;
        let admin = TcpListener::bind(admin_addr)?;
        let (chat_addr, admin_addr) = (chat.local_addr()?, admin.local_addr()?);
        // The first receiver is not needed: each client subscribes.
        let (tx, _) = broadcast::channel(CAPACITY);
        let shared = Arc::new(Shared {
            tx,
            online: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            log,
        });
        let sh = shared.clone();
        let chat_accept = fiber::Builder::new()
            .name("chat accept")
            .spawn(move || accept_chat(sh, chat))?;
        let admin_accept = fiber_runtime::spawn(accept_admin(shared.clone(), admin));
        Ok(Server {
            chat_addr,
            admin_addr,
            shared,
            chat_accept,
            admin_accept,
        })
    }

    /// Stops accepting, then waits for every client's fibers to end (they
    /// end by themselves once their clients are gone).
    async fn shutdown(self) {
        self.chat_accept.abort();
        self.admin_accept.abort();
        let chat = self.chat_accept.await;
        let admin = self.admin_accept.await;
        assert!(
            chat.as_ref().is_err_and(|e| e.is_cancelled()),
            "chat accept fiber: {chat:?}"
        );
        assert!(
            admin.as_ref().is_err_and(|e| e.is_cancelled()),
            "admin accept task: {admin:?}"
        );
        let clients = std::mem::take(&mut *self.shared.clients.lock().await);
        for c in clients {
            c.await.expect("a client fiber failed");
        }
        assert!(self.shared.online.lock().await.is_empty());
        assert_eq!(self.shared.tx.receiver_count(), 0, "a writer fiber is left");
    }
}

/// The chat accept loop, a fiber: one fiber per client.
fn accept_chat(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.blocking_accept() {
            Ok(conn) => conn,
            Err(e) => {
                // Such as EMFILE: back off a little, then try again.
                eprintln!("chat: accept failed: {e}");
                fiber::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sh = shared.clone();
        match fiber::Builder::new()
            .name(format!("chat {peer}"))
            .spawn(move || client(sh, stream, peer))
        {
            Ok(h) => {
                let mut clients = shared.clients.blocking_lock();
                clients.retain(|c| !c.is_finished());
                clients.push(h);
            }
            Err(e) => eprintln!("chat: no fiber for {peer}: {e}"),
        }
    }
}

/// A client's reading fiber: asks the name, starts the writing fiber,
/// then broadcasts each line until the client leaves.
fn client(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let stream = Arc::new(stream);
    let id = shared.next_id.fetch_add(1, Relaxed);
    let mut lines = LineReader::new(MAX_LINE);
    let Some((name, rx, welcome)) = register(&shared, &stream, &mut lines, id) else {
        return;
    };
    if shared.log {
        println!("{peer}: joined as {name}");
    }
    // Our own writer subscribed already and skips this (`from` is us).
    let _ = shared.tx.send(Msg::Line {
        from: Some(id),
        text: format!("* {name} joined").into(),
    });
    let (sh, s) = (shared.clone(), stream.clone());
    let writer_fiber = match fiber::Builder::new()
        .name(format!("chat {peer} writer"))
        .spawn(move || writer(sh, id, s, rx, welcome))
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("chat: no writer fiber for {peer}: {e}");
            leave(&shared, id, &name, None);
            return;
        }
    };

    let (farewell, drain_input) = loop {
        match read_line(&stream, &mut lines) {
            Ok(Some(Line::Text(t))) if t.trim().is_empty() => {}
            Ok(Some(Line::Text(t))) if t.trim() == "/quit" => {
                break (Some(format!("* bye {name}")), false);
            }
            Ok(Some(Line::Text(t))) => {
                let _ = shared.tx.send(Msg::Line {
                    from: Some(id),
                    text: format!("{name}: {t}").into(),
                });
            }
            Ok(Some(Line::TooLong)) => break (Some(too_long()), true),
            // The end of the stream, or an error such as a reset: gone.
            Ok(None) | Err(_) => break (None, false),
        }
    };
    leave(&shared, id, &name, farewell);
    if drain_input {
        fiber::wait(drain(&stream));
    }
    if let Err(e) = writer_fiber.join() {
        eprintln!("chat: the writer of {name} failed: {e}");
    }
    if shared.log {
        println!("{peer}: {name} left");
    }
}

/// Asks for a name until a good one comes; then puts the client online
/// and subscribes it. `None` if the client went away first.
fn register(
    shared: &Shared,
    stream: &TcpStream,
    lines: &mut LineReader,
    id: u64,
) -> Option<(String, broadcast::Receiver<Msg>, String)> {
    // No writer fiber yet: this fiber may write to the socket itself.
    let mut prompt = "* hello! what's your name?".to_string();
    loop {
        write_line(stream, &prompt).ok()?;
        let name = match read_line(stream, lines) {
            Ok(Some(Line::Text(t))) => t.trim().to_string(),
            Ok(Some(Line::TooLong)) => {
                let _ = write_line(stream, &too_long());
                let _ = stream.shutdown(Shutdown::Write);
                fiber::wait(drain(stream));
                return None;
            }
            Ok(None) | Err(_) => return None,
        };
        // Bad UTF-8 and control characters came in as U+FFFD: refused.
        if name.is_empty()
            || name.chars().count() > MAX_NAME
            || name.contains(|c: char| c.is_whitespace() || c == '\u{FFFD}')
        {
            prompt =
                format!("* a name is 1 to {MAX_NAME} printable characters, no spaces; your name?");
            continue;
        }
        let mut online = shared.online.blocking_lock();
        if online.values().any(|n| *n == name) {
            prompt = format!("* {name} is taken; your name?");
            continue;
        }
        online.insert(id, name.clone());
        // Subscribed before anyone hears of us, so we miss nothing said
        // to us once we are online.
        let rx = shared.tx.subscribe();
        let welcome = format!("* welcome {name} ({} online)", online.len());
        return Some((name, rx, welcome));
    }
}

/// Takes the client offline and tells everyone, its own writer included.
fn leave(shared: &Shared, id: u64, name: &str, farewell: Option<String>) {
    // Both under the lock: a writer that finds its client offline knows
    // that the `Leave` was sent already (see `writer`).
    let mut online = shared.online.blocking_lock();
    online.remove(&id);
    let _ = shared.tx.send(Msg::Leave {
        id,
        text: format!("* {name} left").into(),
        farewell: farewell.map(Into::into),
    });
    drop(online);
}

/// A client's writing fiber: the welcome, then every message for it, until
/// its own `Leave` or a write error; then it closes its side.
fn writer(
    shared: Arc<Shared>,
    id: u64,
    stream: Arc<TcpStream>,
    mut rx: broadcast::Receiver<Msg>,
    welcome: String,
) {
    let ok = write_line(&stream, &welcome).is_ok() && forward(&shared, id, &stream, &mut rx);
    drop(rx);
    // After a write error, also shut the read side, so the reading fiber
    // stops waiting for input that no one will answer.
    let _ = stream.shutdown(if ok { Shutdown::Write } else { Shutdown::Both });
}

/// Forwards messages until our own `Leave` (true) or a write error (false).
fn forward(
    shared: &Shared,
    id: u64,
    stream: &TcpStream,
    rx: &mut broadcast::Receiver<Msg>,
) -> bool {
    let say_farewell =
        |farewell: Option<Arc<str>>| farewell.is_none_or(|f| write_line(stream, &f).is_ok());
    loop {
        let written = match rx.blocking_recv() {
            Ok(Msg::Line { from, .. }) if from == Some(id) => continue,
            Ok(Msg::Leave {
                id: who, farewell, ..
            }) if who == id => return say_farewell(farewell),
            Ok(Msg::Line { text, .. } | Msg::Leave { text, .. }) => write_line(stream, &text),
            Err(RecvError::Lagged(n)) => {
                // What we missed may have held our own `Leave`. `leave`
                // sends it under the `online` lock: if our client is
                // offline, it was sent before we looked, so it is either
                // still held (`try_recv` finds it) or lost; if online, it
                // will come after what we hold, and `blocking_recv` gets it
                // (or a new `Lagged`, and we look again).
                if !shared.online.blocking_lock().contains_key(&id) {
                    loop {
                        match rx.try_recv() {
                            Ok(Msg::Leave {
                                id: who, farewell, ..
                            }) if who == id => {
                                return say_farewell(farewell);
                            }
                            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                            Err(TryRecvError::Empty | TryRecvError::Closed) => return true,
                        }
                    }
                }
                write_line(stream, &format!("* you missed {n} messages"))
            }
            Err(RecvError::Closed) => return true,
        };
        if written.is_err() {
            return false;
        }
    }
}

/// The admin accept loop, an async task: one task per admin connection.
async fn accept_admin(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shared.log {
                    println!("{peer}: admin connected");
                }
                drop(fiber_runtime::spawn(admin(shared.clone(), stream)));
            }
            Err(e) => {
                eprintln!("admin: accept failed: {e}");
                fiber_runtime::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// An admin session: commands in, one answer line each.
async fn admin(shared: Arc<Shared>, stream: TcpStream) {
    let mut lines = LineReader::new(MAX_LINE);
    if write_line_async(&stream, &format!("* admin console: {COMMANDS}"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let line = match read_line_async(&stream, &mut lines).await {
            Ok(Some(Line::Text(t))) => t,
            Ok(Some(Line::TooLong)) => {
                let _ = write_line_async(&stream, &too_long()).await;
                let _ = stream.shutdown(Shutdown::Write);
                drain(&stream).await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let line = line.trim();
        let (cmd, arg) = line
            .split_once(' ')
            .map_or((line, ""), |(c, a)| (c, a.trim()));
        let answer = match cmd {
            "" => continue,
            "say" if arg.is_empty() => "? usage: say <text>".to_string(),
            "say" => {
                // The same channel the client fibers use.
                let text = format!("[admin] {arg}").into();
                match shared.tx.send(Msg::Line { from: None, text }) {
                    Ok(n) => format!("ok, sent to {n} clients"),
                    Err(_) => "ok, but nobody is listening".to_string(),
                }
            }
            "who" => {
                let online = shared.online.lock().await;
                let names: Vec<&str> = online.values().map(String::as_str).collect();
                if names.is_empty() {
                    "0 online".to_string()
                } else {
                    format!("{} online: {}", names.len(), names.join(", "))
                }
            }
            "flood" => match arg.parse::<u64>() {
                Ok(n) if (1..=MAX_FLOOD).contains(&n) => {
                    for i in 1..=n {
                        let text = format!("[admin] flood {i}/{n}").into();
                        let _ = shared.tx.send(Msg::Line { from: None, text });
                        if i % 1024 == 0 {
                            fiber_runtime::yield_now().await;
                        }
                    }
                    format!("ok, {n} messages sent")
                }
                _ => format!("? usage: flood <n>, with n from 1 to {MAX_FLOOD}"),
            },
            "help" => format!("commands: {COMMANDS}"),
            "quit" => {
                let _ = write_line_async(&stream, "bye").await;
                return;
            }
            other => format!("? unknown command {other:?}; commands: {COMMANDS}"),
        };
        if write_line_async(&stream, &answer).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------
// The scripted run: clients in a fiber, checking every line

const ADMIN: usize = 0;
const ALICE: usize = 1;
const BOB: usize = 2;
const CAROL: usize = 3;
const DAVE: usize = 4;
const FLOOD: u64 = 200;

struct Peer {
    label: &'static str,
    stream: Option<TcpStream>,
    lines: LineReader,
}

/// The test clients, driven in order by one fiber. Each step waits for
/// the lines it expects, so the order in which the server sends (and
/// hence what every client gets) is fixed.
struct Script {
    peers: Vec<Peer>,
    log: Vec<String>,
}

impl Script {
    fn note(&mut self, who: &str, dir: char, text: &str) {
        self.log.push(format!("  {who:<19} {dir} {text}"));
    }

    fn connect(&mut self, label: &'static str, addr: SocketAddr) -> usize {
        let stream = fiber::wait(TcpStream::connect(addr))
            .unwrap_or_else(|e| panic!("{label}: connect to {addr}: {e}"));
        self.peers.push(Peer {
            label,
            stream: Some(stream),
            lines: LineReader::new(1 << 20),
        });
        self.peers.len() - 1
    }

    fn stream(&self, p: usize) -> &TcpStream {
        let peer = &self.peers[p];
        peer.stream
            .as_ref()
            .unwrap_or_else(|| panic!("{} is closed", peer.label))
    }

    fn send(&mut self, p: usize, line: &[u8]) {
        let mut out = line.to_vec();
        out.push(b'\n');
        let mut s = self.stream(p);
        s.write_all(&out)
            .unwrap_or_else(|e| panic!("{}: write: {e}", self.peers[p].label));
        let shown = if line.is_empty() {
            "(empty line)".to_string()
        } else if line.iter().all(|&b| b == b' ') {
            format!("({} spaces)", line.len())
        } else if line.len() > 40 {
            format!("{}... ({} bytes)", line[..8].escape_ascii(), line.len())
        } else {
            line.escape_ascii().to_string()
        };
        self.note(self.peers[p].label, '>', &shown);
    }

    fn recv(&mut self, p: usize) -> Option<String> {
        let peer = &mut self.peers[p];
        let stream = peer.stream.as_ref().expect("closed");
        match read_line(stream, &mut peer.lines) {
            Ok(Some(Line::Text(t))) => Some(t),
            Ok(Some(Line::TooLong)) => panic!("{}: a line of over 1 MiB", peer.label),
            Ok(None) => None,
            Err(e) => panic!("{}: read: {e}", peer.label),
        }
    }

    /// Every peer in `ps` receives `want` as its next line.
    fn expect(&mut self, ps: &[usize], want: &str) {
        for &p in ps {
            let got = self.recv(p);
            assert_eq!(
                got.as_deref(),
                Some(want),
                "{} got the wrong line",
                self.peers[p].label
            );
        }
        let who: Vec<&str> = ps.iter().map(|&p| self.peers[p].label).collect();
        self.note(&who.join(", "), '<', want);
    }

    /// The server closed `p`'s connection, with nothing more to say.
    fn expect_eof(&mut self, p: usize) {
        let got = self.recv(p);
        assert_eq!(
            got, None,
            "{} expected the end of the stream",
            self.peers[p].label
        );
        self.note(self.peers[p].label, '<', "(end of stream)");
        self.peers[p].stream = None;
    }

    /// Closes `p`'s connection at once, without reading what is left.
    fn hang_up(&mut self, p: usize) {
        self.peers[p].stream = None;
        self.note(self.peers[p].label, 'x', "(hangs up)");
    }

    /// Closes `p`'s sending side (the server sees the end of its input).
    fn half_close(&mut self, p: usize) {
        self.stream(p)
            .shutdown(Shutdown::Write)
            .expect("shutdown failed");
        self.note(self.peers[p].label, 'x', "(closes its sending side)");
    }

    /// `p` receives the flood of `n` messages: each one it gets in order,
    /// with every gap announced by exactly one `* you missed k messages`
    /// of the right `k`, and the last one always. Returns how many it
    /// missed.
    fn expect_flood(&mut self, p: usize, n: u64) -> u64 {
        let (mut next, mut missed, mut got) = (1u64, 0u64, 0u64);
        let mut gap_just_announced = false;
        while next <= n {
            let line = self.recv(p).expect("the flood ended early");
            if let Some(k) = line
                .strip_prefix("* you missed ")
                .and_then(|r| r.strip_suffix(" messages"))
            {
                let k: u64 = k.parse().expect("a count");
                assert!(k > 0, "bad lag notice {line:?}");
                self.note(self.peers[p].label, '<', &line);
                next += k;
                missed += k;
                gap_just_announced = true;
                continue;
            }
            assert_eq!(line, format!("[admin] flood {next}/{n}"), "out of order");
            if got == 0 || gap_just_announced {
                self.note(self.peers[p].label, '<', &format!("{line} ..."));
            }
            gap_just_announced = false;
            got += 1;
            next += 1;
        }
        assert_eq!(got + missed, n);
        let summary = format!("[admin] flood {n}/{n} ({got} received, {missed} missed)");
        self.note(self.peers[p].label, '<', &summary);
        missed
    }
}

/// The script. Returns the transcript and how many flood messages alice
/// missed.
fn script(chat: SocketAddr, admin: SocketAddr) -> (Vec<String>, u64) {
    let mut s = Script {
        peers: Vec::new(),
        log: Vec::new(),
    };
    let all = [ALICE, BOB, CAROL];
    let prompt = "* hello! what's your name?";

    assert_eq!(s.connect("admin", admin), ADMIN);
    s.expect(
        &[ADMIN],
        "* admin console: say <text> | who | flood <n> | quit",
    );

    assert_eq!(s.connect("alice", chat), ALICE);
    s.expect(&[ALICE], prompt);
    s.send(ALICE, b"alice");
    s.expect(&[ALICE], "* welcome alice (1 online)");

    assert_eq!(s.connect("bob", chat), BOB);
    s.expect(&[BOB], prompt);
    s.send(BOB, b"bob");
    s.expect(&[BOB], "* welcome bob (2 online)");
    s.expect(&[ALICE], "* bob joined");

    assert_eq!(s.connect("carol", chat), CAROL);
    s.expect(&[CAROL], prompt);
    s.send(CAROL, b"   ");
    s.expect(
        &[CAROL],
        "* a name is 1 to 24 printable characters, no spaces; your name?",
    );
    s.send(CAROL, b"bob");
    s.expect(&[CAROL], "* bob is taken; your name?");
    s.send(CAROL, b"carol\r");
    s.expect(&[CAROL], "* welcome carol (3 online)");
    s.expect(&[ALICE, BOB], "* carol joined");

    s.send(ADMIN, b"who");
    s.expect(&[ADMIN], "3 online: alice, bob, carol");
    s.send(ADMIN, b"dance");
    s.expect(
        &[ADMIN],
        "? unknown command \"dance\"; commands: say <text> | who | flood <n> | quit",
    );

    s.send(ALICE, b"hello everyone");
    s.expect(&[BOB, CAROL], "alice: hello everyone");
    s.send(BOB, b"");
    s.send(BOB, b"hi alice");
    s.expect(&[ALICE, CAROL], "bob: hi alice");
    s.send(CAROL, b"caf\xc3\xa9 \xff\xfe ok\r");
    s.expect(&[ALICE, BOB], "carol: caf\u{e9} \u{fffd}\u{fffd} ok");

    // The admin task sends into the channel the fibers read.
    s.send(ADMIN, b"say the server restarts at noon");
    s.expect(&[ADMIN], "ok, sent to 3 clients");
    s.expect(&all, "[admin] the server restarts at noon");

    // A line over the limit drops its sender, with a message.
    assert_eq!(s.connect("dave", chat), DAVE);
    s.expect(&[DAVE], prompt);
    s.send(DAVE, b"dave");
    s.expect(&[DAVE], "* welcome dave (4 online)");
    s.expect(&all, "* dave joined");
    s.send(DAVE, &[b'x'; 5000]);
    s.expect(&[DAVE], "* line too long (max 4096 bytes), bye");
    s.expect_eof(DAVE);
    s.expect(&all, "* dave left");

    // Leaving with /quit, and hanging up without a word.
    s.send(BOB, b"/quit");
    s.expect(&[BOB], "* bye bob");
    s.expect_eof(BOB);
    s.expect(&[ALICE, CAROL], "* bob left");
    s.hang_up(CAROL);
    s.expect(&[ALICE], "* carol left");
    s.send(ADMIN, b"who");
    s.expect(&[ADMIN], "1 online: alice");

    // Faster than alice's writer can forward: she lags and is told so.
    s.send(ADMIN, format!("flood {FLOOD}").as_bytes());
    s.expect(&[ADMIN], &format!("ok, {FLOOD} messages sent"));
    let missed = s.expect_flood(ALICE, FLOOD);

    s.send(ALICE, b"bye all");
    s.half_close(ALICE);
    s.expect_eof(ALICE);
    s.send(ADMIN, b"who");
    s.expect(&[ADMIN], "0 online");
    s.send(ADMIN, b"quit");
    s.expect(&[ADMIN], "bye");
    s.expect_eof(ADMIN);
    (s.log, missed)
}

struct Outcome {
    chat: SocketAddr,
    admin: SocketAddr,
    log: Vec<String>,
    missed: u64,
}

/// Runs the script against a fresh server on `builder`'s runtime, then
/// shuts the server down and checks that nothing is left running.
fn run_script(builder: &mut Builder) -> Outcome {
    let rt = builder.build().expect("failed to build the runtime");
    rt.block_on(async {
        let server = Server::start("127.0.0.1:0", "127.0.0.1:0", false).expect("bind failed");
        let (chat, admin) = (server.chat_addr, server.admin_addr);
        let driver = fiber::spawn(move || script(chat, admin)).await;
        let (log, missed) = match driver {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chat: the scripted run FAILED: {e}");
                std::process::exit(1);
            }
        };
        server.shutdown().await;
        Outcome {
            chat,
            admin,
            log,
            missed,
        }
    })
}

fn scripted() {
    // Not synchronisation, a safety net: a hung check fails the run.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(30));
        eprintln!("chat: the scripted run hung for 30 s");
        std::process::exit(1);
    });
    let start = Instant::now();

    // A current-thread runtime: everything on one thread, so even the
    // flood's losses are exact (the admin task sends all 200 before
    // alice's writer fiber runs again).
    let one = run_script(&mut Builder::new_current_thread());
    println!(
        "chat server on {}, admin console on {} (current-thread runtime)",
        one.chat, one.admin
    );
    println!("  (> sent by, < received by, x closes)");
    for line in &one.log {
        println!("{line}");
    }
    assert_eq!(one.missed, FLOOD - CAPACITY as u64, "the lag on one thread");

    // The same script with the fibers and the task spread over two
    // workers: every line is checked as before; how many flood messages
    // alice's writer misses depends on the timing.
    let two = run_script(Builder::new_multi_thread().worker_threads(2));
    println!(
        "\nmulti-thread runtime (2 workers): the same script passed; \
         alice missed {} of the {FLOOD} flood messages",
        two.missed
    );
    println!(
        "server shut down cleanly both times (accept loops cancelled, every client fiber ended); \
         all checks passed in {:.2?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------
// Serving

fn serve(chat: &str, admin: &str) -> ! {
    let rt = Builder::new_multi_thread()
        .thread_name("chat-worker")
        .build()
        .expect("failed to build the runtime");
    rt.block_on(async {
        let server = Server::start(chat, admin, true).unwrap_or_else(|e| {
            eprintln!("chat: cannot listen on {chat} and {admin}: {e}");
            std::process::exit(2);
        });
        println!(
            "chat on {} (nc {} {}), admin console on {} (nc {} {}); Ctrl-C to stop",
            server.chat_addr,
            server.chat_addr.ip(),
            server.chat_addr.port(),
            server.admin_addr,
            server.admin_addr.ip(),
            server.admin_addr.port(),
        );
        std::future::pending::<()>().await;
    });
    unreachable!("the server runs forever")
}

fn usage(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!("usage: chat [--serve [--chat-addr ADDR] [--admin-addr ADDR]]");
    std::process::exit(2);
}

fn main() {
    let (mut serving, mut chat, mut admin) = (
        false,
        "127.0.0.1:7000".to_string(),
        "127.0.0.1:7001".to_string(),
    );
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--serve" => serving = true,
            "--chat-addr" => {
                chat = args
                    .next()
                    .unwrap_or_else(|| usage("--chat-addr needs an address"));
                serving = true;
            }
            "--admin-addr" => {
                admin = args
                    .next()
                    .unwrap_or_else(|| usage("--admin-addr needs an address"));
                serving = true;
            }
            _ => usage(&format!("unknown argument {a:?}")),
        }
    }
    if serving {
        serve(&chat, &admin);
    }
    scripted();
}
