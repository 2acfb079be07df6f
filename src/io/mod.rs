//! Async I/O traits: the `futures-io` traits [`AsyncRead`],
//! [`AsyncWrite`] and [`AsyncBufRead`], implemented by every socket type
//! in [`crate::net`] (for both `T` and `&T`), their extension traits with
//! `read`, `write_all`, `read_line` and friends, and the buffering
//! adapters and [`copy`] of `futures-util`.
//!
//! # Examples
//!
//! ```
//! use fiber_runtime::io::{AsyncReadExt, AsyncWriteExt};
//! use fiber_runtime::net::UnixStream;
//!
//! fiber_runtime::block_on(async {
//!     let (mut a, mut b) = UnixStream::pair().unwrap();
//!     a.write_all(b"ping").await.unwrap();
//!     let mut buf = [0; 4];
//!     b.read_exact(&mut buf).await.unwrap();
//!     assert_eq!(&buf, b"ping");
//! });
//! ```
//!
//! Line by line through a [`BufReader`], answering through a
//! [`BufWriter`], and [`copy`] from one stream to another:
//!
//! ```
//! use fiber_runtime::io::{self, AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
//! use fiber_runtime::net::UnixStream;
//!
//! fiber_runtime::block_on(async {
//!     let (client, server) = UnixStream::pair().unwrap();
//!     let echo = fiber_runtime::spawn(async move {
//!         let mut reader = BufReader::new(&server);
//!         let mut out = BufWriter::new(&server);
//!         let mut line = String::new();
//!         while reader.read_line(&mut line).await.unwrap() > 0 {
//!             out.write_all(line.to_uppercase().as_bytes()).await.unwrap();
//!             line.clear();
//!         }
//!         out.flush().await.unwrap();
//!     });
//!     (&client).write_all(b"one\ntwo\n").await.unwrap();
//!     client.shutdown(std::net::Shutdown::Write).unwrap();
//!     let mut got = Vec::new();
//!     let n = io::copy(&client, &mut got).await.unwrap();
//!     echo.await.unwrap();
//!     assert_eq!((n, &got[..]), (8, &b"ONE\nTWO\n"[..]));
//! });
//! ```

mod poll_evented;
pub(crate) mod uninit;

pub(crate) use poll_evented::{PollEvented, ReadSrc, read_closed_now, read_into};

pub use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
pub use futures_util::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, copy,
};
