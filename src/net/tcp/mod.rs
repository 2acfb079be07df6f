//! TCP: [`TcpListener`](listener::TcpListener), [`TcpStream`](stream::TcpStream)
//! and [`TcpSocket`](socket::TcpSocket).

pub(crate) mod listener;
pub(crate) mod socket;
pub(crate) mod stream;
