//! Where there is no io_uring (not Linux, or the loom models): `create`
//! refuses, so no `Ring` ever exists.

use super::Turn;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

#[derive(Debug)]
pub(crate) enum Bound {}

impl Bound {
    pub(crate) fn io(&self) -> &crate::reactor::scheduled_io::ScheduledIo {
        match *self {}
    }

    pub(crate) fn close(&self, _here: Option<&mut Ring>) -> Vec<Waker> {
        match *self {}
    }

    pub(crate) fn poll_recv(
        &self,
        _cx: &mut std::task::Context<'_>,
        _peek: bool,
        _read: impl FnMut(Src<'_>) -> io::Result<usize>,
    ) -> (std::task::Poll<io::Result<usize>>, Then) {
        match *self {}
    }

    pub(crate) fn arm_on(&self, _ring: &mut Ring) -> bool {
        match *self {}
    }

    pub(crate) fn request_arm(&self) {
        match *self {}
    }

    pub(crate) fn is_home(&self, _ring: &Ring) -> bool {
        match *self {}
    }

    pub(crate) fn unread(&self) -> usize {
        match *self {}
    }

    pub(crate) fn receiving(&self) -> bool {
        match *self {}
    }
}

/// As on Linux (never made here).
pub(crate) enum Src<'a> {
    #[allow(dead_code)]
    Socket,
    #[allow(dead_code)]
    Bytes(&'a [u8]),
}

/// As on Linux.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Then {
    #[allow(dead_code)]
    Nothing,
    Arm,
}

#[derive(Debug)]
pub(crate) enum Setup {}

pub(crate) fn create(_n: usize, _counters: Arc<super::Counters>) -> io::Result<Vec<Setup>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_driver(Uring): io_uring exists on Linux only",
    ))
}

impl Setup {
    pub(crate) fn wake(&self) -> Arc<WakeFd> {
        match *self {}
    }

    pub(crate) fn enable(self) -> io::Result<Ring> {
        match self {}
    }
}

#[derive(Debug)]
pub(crate) enum WakeFd {}

impl WakeFd {
    pub(crate) fn wake(&self) {
        match *self {}
    }
}

#[derive(Debug)]
pub(crate) enum Ring {}

impl Ring {
    pub(crate) fn for_this_thread(_wake: Arc<WakeFd>) -> io::Result<Ring> {
        create(1, Arc::default()).map(|_| unreachable!("create never succeeds here"))
    }

    pub(crate) fn is_owner(&self) -> bool {
        match *self {}
    }

    pub(crate) fn wait(
        &mut self,
        _timeout: Option<Duration>,
        _epoll: Option<RawFd>,
        _wakers: &mut Vec<Waker>,
    ) -> Turn {
        match *self {}
    }

    pub(crate) fn set_unpark(&self, _unpark: Waker) {
        match *self {}
    }

    pub(crate) fn bind(&mut self, _fd: RawFd) -> io::Result<Bound> {
        match *self {}
    }

    pub(crate) fn poll_now(&mut self, _wakers: &mut Vec<Waker>) {
        match *self {}
    }

    pub(crate) fn shutdown(&mut self) {
        match *self {}
    }

    pub(crate) fn cancel_all(&mut self) {
        match *self {}
    }
}
