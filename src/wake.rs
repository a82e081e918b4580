//! `Wake`: an eventfd that wakes a thread blocked in `poll` (the DHCP thread's wait in
//! `net::DhcpSocket::wait`) from any other thread. Imports nothing from the crate, so every
//! layer may hold one: the lease store that finishes work in the background, the control
//! channel, the DHCP service. `net` re-exports it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// Wakes the DHCP thread from `DhcpSocket::wait`, from any thread (an eventfd).
#[derive(Debug)]
pub struct Wake(EventFd);

impl Wake {
    pub fn new() -> io::Result<Wake> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        Ok(Wake(EventFd::from_value_and_flags(0, flags)?))
    }

    /// Make the next (or current) wait return.
    pub fn wake(&self) {
        let _ = self.0.write(1);
    }

    /// Forget earlier wake-ups (called after a wait saw one).
    pub fn reset(&self) {
        let _ = self.0.read();
    }
}

/// The descriptor a `poll` waits on.
impl AsFd for Wake {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
