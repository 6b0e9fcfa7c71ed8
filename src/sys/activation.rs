//! systemd socket activation (contract §1, `sd_listen_fds(3)`).

use std::io;
use std::os::fd::{FromRawFd, RawFd};

use super::check;

/// The first descriptor a socket-activating manager passes
/// (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// How many sockets a socket-activating manager passed us, from the values
/// of `LISTEN_PID` and `LISTEN_FDS`: 0 when either is missing or unreadable,
/// or when `LISTEN_PID` names another process (the variables leaked from a
/// parent that was activated itself).
pub fn listen_fds(listen_pid: Option<&str>, listen_fds: Option<&str>, our_pid: u32) -> u32 {
    let for_us = listen_pid.and_then(|pid| pid.trim().parse::<u32>().ok()) == Some(our_pid);
    let count = listen_fds.and_then(|n| n.trim().parse::<u32>().ok());
    match count {
        Some(n) if for_us => n,
        _ => 0,
    }
}

/// Takes the listening TCP socket at `fd` that a socket-activating manager
/// passed us: checks that it is one (a stream socket of `AF_INET` or
/// `AF_INET6`, listening), marks it close-on-exec so no command inherits it,
/// and makes it non-blocking as mio needs. Call at most once per `fd`.
pub fn take_activated_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("descriptor {fd} is {what}"));
    let domain = socket_option(fd, libc::SO_DOMAIN).map_err(|err| match err.raw_os_error() {
        Some(libc::ENOTSOCK) => invalid("not a socket"),
        Some(libc::EBADF) => invalid("not open"),
        _ => err,
    })?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(invalid("not an IPv4 or IPv6 socket"));
    }
    if socket_option(fd, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(invalid("not a stream (TCP) socket"));
    }
    if socket_option(fd, libc::SO_ACCEPTCONN)? == 0 {
        return Err(invalid(
            "not listening (a unit with Accept=yes passes connections, not the listener)",
        ));
    }
    // SAFETY: F_GETFD reads the flags of `fd`, checked open above.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: F_SETFD sets flags on that same descriptor; no memory is passed.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    // SAFETY: `fd` is an open listening socket the manager handed to this
    // process; nothing in the process opened it, so nothing else owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// One integer socket option of `fd` at `SOL_SOCKET`.
fn socket_option(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, which is
    // that big and lives for the call, and the length into `len`.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

#[cfg(test)]
mod activation_tests {
    use super::listen_fds;

    #[test]
    fn listen_fds_counts_only_sockets_meant_for_us() {
        assert_eq!(listen_fds(Some("42"), Some("1"), 42), 1);
        assert_eq!(listen_fds(Some("42"), Some("2"), 42), 2);
        assert_eq!(listen_fds(Some("41"), Some("1"), 42), 0, "another process's sockets");
        assert_eq!(listen_fds(None, Some("1"), 42), 0, "no LISTEN_PID");
        assert_eq!(listen_fds(Some("42"), None, 42), 0, "no LISTEN_FDS");
        assert_eq!(listen_fds(Some("x"), Some("1"), 42), 0, "unreadable LISTEN_PID");
        assert_eq!(listen_fds(Some("42"), Some("-1"), 42), 0, "unreadable LISTEN_FDS");
    }
}
