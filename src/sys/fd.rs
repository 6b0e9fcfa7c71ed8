//! Descriptors: pipes, non-blocking mode, pipe sizes and what a pipe holds,
//! accept-queue sizes, the process's `/dev/null`, a read retried after a
//! signal.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use super::check;

/// The process's `/dev/null` (read-write, close-on-exec), opened once and
/// never closed: every command that reads nothing gets it as its stdin as
/// it is, without a copy per command.
pub fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(null) = NULL.get() {
        return Ok(null.as_fd());
    }
    // SAFETY: open reads a NUL-terminated literal.
    let fd = check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: the descriptor is new and ours alone.
    let null = unsafe { OwnedFd::from_raw_fd(fd) };
    // One thread: nobody set it meanwhile (were it set, ours just closes).
    let _ = NULL.set(null);
    NULL.get()
        .map(OwnedFd::as_fd)
        .ok_or_else(|| io::Error::other("no /dev/null"))
}

/// Puts `fd`, a pipe or terminal end this process just made, in
/// non-blocking mode. Its other status flags (`O_APPEND`, `O_ASYNC`, ...)
/// are all clear on such a descriptor, so they are not read first: one
/// system call per end of every command, not two.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: F_SETFL sets flags on a descriptor the caller owns; no memory is passed.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok(())
}

/// Bytes written into the pipe `fd` (either end) that its reader has not
/// read yet (`FIONREAD`).
pub fn pipe_unread(fd: &impl AsRawFd) -> io::Result<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // at a live local.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut unread) })?;
    Ok(usize::try_from(unread).unwrap_or(0))
}

/// Asks for a pipe buffer of `bytes`; returns the size the kernel granted.
pub fn set_pipe_size(fd: &impl AsRawFd, bytes: usize) -> io::Result<usize> {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an integer; no memory is passed.
    let got = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) })?;
    Ok(got as usize)
}

/// Re-issues `listen` with a longer accept queue than mio's default, so a
/// burst of connections (a thousand EventSources) is not dropped.
pub fn set_listen_backlog(fd: &impl AsRawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes a descriptor and an integer; no memory is passed.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which is that big.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `openat(dir, name, flags | O_CLOEXEC)`: a path looked up from an open
/// directory, not from the root (the per-command cgroup files: a few
/// kernfs lookups fewer each).
pub fn open_at(dir: &impl AsRawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: openat reads the NUL-terminated `name`, alive for the call.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: the descriptor is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One `read` of `fd` into `buf`, again if a signal interrupted it (a few
/// times at most): the bytes read, or `None` once it would block.
pub(super) fn read_retrying(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut tries = 0;
    loop {
        tries += 1;
        // SAFETY: read writes at most buf.len() bytes into `buf`.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted if tries < 8 => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
}
