//! Async I/O traits: the `futures-io` traits [`AsyncRead`] and
//! [`AsyncWrite`], implemented by every socket type in [`crate::net`] (for
//! both `T` and `&T`), and their extension traits with `read`,
//! `write_all` and friends.
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

mod poll_evented;
#[cfg(feature = "tokio-io")]
mod tokio_io;
#[cfg(any(feature = "hyper", feature = "tokio-io"))]
pub(crate) mod uninit;

pub(crate) use poll_evented::PollEvented;

pub use futures_io::{AsyncRead, AsyncWrite};
pub use futures_util::io::{AsyncReadExt, AsyncWriteExt};
