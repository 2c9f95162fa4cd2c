//! The system calls on the terminal's descriptors.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::pacing::BULK_READ;

/// A duplicate of `fd`, owned.
pub(super) fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller owns `fd` and keeps it open for the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(nix::unistd::dup(fd)?)
}

pub(super) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// One read, and while it looks like bulk output, more until the terminal
/// has nothing left or `buf` is full: a program pouring output then goes out
/// in fewer, larger messages (the terminal hands over at most a few KiB per
/// read), while a keystroke's echo costs no second read.
pub(super) fn read_burst(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = read(fd, buf)?;
    let mut last = filled;
    while last >= BULK_READ && filled < buf.len() {
        match read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                last = n;
            }
            // Nothing more now (or the end, which the next read reports).
            Err(_) => break,
        }
    }
    Ok(filled)
}
fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(nix::unistd::read(fd, buf)?)
}

pub(super) fn write(fd: &OwnedFd, bytes: &[u8]) -> io::Result<usize> {
    Ok(nix::unistd::write(fd, bytes)?)
}
