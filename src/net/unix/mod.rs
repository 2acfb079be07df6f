//! Unix-domain stream sockets.

pub(crate) mod listener;
pub(crate) mod stream;
