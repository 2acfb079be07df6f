//! Channels from many senders to one receiver: [`channel`] (bounded,
//! with back-pressure) and [`unbounded_channel`].
//!
//! Every sender and the receiver work from tasks (`.await`), fibers and
//! plain threads (`blocking_*`). Messages arrive in the order they were
//! sent (per sender; interleaved between senders). When every sender is
//! gone and the buffer is drained, `recv` returns `None`; when the
//! receiver is gone or [`close`](Receiver::close)d, sends fail and return
//! the message.
//!
//! # Examples
//!
//! A producer fiber and a consumer task, with a buffer of 8:
//!
//! ```
//! use fiber_runtime::sync::mpsc;
//!
//! fiber_runtime::block_on(async {
//!     let (tx, mut rx) = mpsc::channel(8);
//!     fiber_runtime::fiber::spawn(move || {
//!         for i in 0..100 {
//!             tx.blocking_send(i).unwrap(); // waits while the buffer is full
//!         }
//!     });
//!     let mut sum = 0;
//!     while let Some(i) = rx.recv().await {
//!         sum += i;
//!     }
//!     assert_eq!(sum, 4950);
//! });
//! ```

mod bounded;
mod chan;
pub mod error;
mod ring;
mod unbounded;

pub use bounded::{OwnedPermit, Permit, Receiver, Sender, channel};
pub use unbounded::{UnboundedReceiver, UnboundedSender, unbounded_channel};
