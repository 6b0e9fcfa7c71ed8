//! Start-up hygiene: what the server keeps from its children, and the
//! open-file limit its streams need.

use std::io;
use std::os::fd::RawFd;

use super::check;

/// Raises the open-file limit as far as allowed: with the privilege to (root),
/// both limits to the kernel's `fs.nr_open`; otherwise the soft limit to the
/// hard one. Each stream costs three descriptors (socket, two pipes).
/// Returns the new soft limit, as the platform's `rlim_t` (32 bits on 32-bit
/// ARM, 64 elsewhere), so no width is assumed.
pub fn raise_nofile_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which lives for the call.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(limit.rlim_max);
    if ceiling > limit.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: ceiling,
            rlim_max: ceiling,
        };
        // SAFETY: setrlimit reads one rlimit struct, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            return Ok(ceiling);
        }
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit struct, which lives for the call.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    }
    Ok(limit.rlim_cur)
}

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0): a process without
/// `CAP_SYS_PTRACE`, our own commands included, can then no longer read our
/// `/proc/PID/environ` (where `SSECOMMANDER_TOKEN` stays, whatever we unset),
/// `/proc/PID/mem`, or attach to us; and no core dump is written. Commands
/// are not affected: `execve` makes them dumpable again.
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes integers and touches no memory of ours.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })?;
    Ok(())
}

/// Marks every descriptor above 2 close-on-exec, except those in `keep`
/// (for a socket-activation listener, `3..3 + LISTEN_FDS`; `3..3` keeps
/// none), so a descriptor our parent leaked to us without `FD_CLOEXEC`
/// reaches no command. Nothing is closed: a descriptor in use stays usable.
/// Uses `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11), else walks
/// `/proc/self/fd`; fails only if neither is available.
pub fn cloexec_inherited(keep: std::ops::Range<RawFd>) -> io::Result<()> {
    let keep = keep.start.max(3)..keep.end.max(3);
    let spans = [(3, keep.start - 1), (keep.end, RawFd::MAX)];
    let by_range = spans
        .iter()
        .filter(|(first, last)| first <= last)
        .try_for_each(|&(first, last)| cloexec_range(first, last));
    match by_range {
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) => cloexec_listed(&keep),
        other => other,
    }
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`; `ENOSYS` or `EINVAL`
/// from a kernel that lacks the call or the flag.
fn cloexec_range(first: RawFd, last: RawFd) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on our
    // descriptors; it takes integers and touches no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The fallback of [`cloexec_inherited`]: one `fcntl` per open descriptor
/// listed in `/proc/self/fd`.
fn cloexec_listed(keep: &std::ops::Range<RawFd>) -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?.file_name().to_str().and_then(|name| name.parse::<RawFd>().ok()) else {
            continue;
        };
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        // SAFETY: F_GETFD reads the flags of a descriptor; a closed one (the
        // listing's own) gives EBADF, which is skipped.
        let Ok(flags) = check(unsafe { libc::fcntl(fd, libc::F_GETFD) }) else {
            continue;
        };
        // SAFETY: F_SETFD sets flags on that same descriptor; no memory is passed.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    }
    Ok(())
}

#[cfg(test)]
mod start_up_tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    /// A new descriptor without `FD_CLOEXEC`, as a careless parent leaves one.
    fn leaked_fd() -> OwnedFd {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        // SAFETY: dup reads an integer; the new descriptor is ours alone.
        let fd = unsafe { libc::dup(file.as_raw_fd()) };
        assert!(fd > 2, "dup failed: {}", io::Error::last_os_error());
        // SAFETY: dup returned a new descriptor nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn is_cloexec(fd: &OwnedFd) -> bool {
        // SAFETY: F_GETFD reads the flags of a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        flags >= 0 && flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn inherited_descriptors_become_cloexec_but_kept_ones_stay() {
        for use_proc in [false, true] {
            let (a, b) = (leaked_fd(), leaked_fd());
            assert!(!is_cloexec(&a) && !is_cloexec(&b), "dup gives no FD_CLOEXEC");
            let keep = b.as_raw_fd()..b.as_raw_fd() + 1;
            let done = if use_proc {
                cloexec_listed(&keep)
            } else {
                cloexec_inherited(keep)
            };
            done.expect("marking descriptors");
            assert!(
                is_cloexec(&a),
                "fd {} not marked (proc walk: {use_proc})",
                a.as_raw_fd()
            );
            assert!(
                !is_cloexec(&b),
                "kept fd {} was marked (proc walk: {use_proc})",
                b.as_raw_fd()
            );
        }
    }
}
