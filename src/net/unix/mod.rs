//! Unix-domain sockets: streams and datagrams.

pub(crate) mod datagram;
pub(crate) mod listener;
pub(crate) mod stream;
