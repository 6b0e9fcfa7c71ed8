//! The system calls std lacks, and every `unsafe` block of the crate.
//!
//! Each function is a thin, checked wrapper: errors come back as
//! `io::Error`, descriptors as `OwnedFd`. Policy (when to kill, what to do on
//! failure) lives with the callers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Converts a `-1` return into the current `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Sends `signal` to every process of group `pgid`. A group that is already
/// gone is not an error.
pub fn kill_group(pgid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    if pgid <= 1 {
        // killpg(0 or 1) would hit our own group or everything: never.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    send_signal(-pgid, signal)
}

/// `kill(2)` of `target`: a pid, or a process group as `-pgid`. A target
/// that is already gone is not an error.
fn send_signal(target: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes two integers and touches no memory.
    match check(unsafe { libc::kill(target, signal) }) {
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop),
    }
}

/// True while any process of group `pgid` exists (zombies included).
pub fn group_alive(pgid: libc::pid_t) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks existence; no memory is touched.
    let ret = unsafe { libc::kill(-pgid, 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Puts `fd` in non-blocking mode (std's pipes from `Command` are blocking).
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL reads the flags of a descriptor the caller owns.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: F_SETFL sets flags on that same descriptor; no memory is passed.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
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

/// Fills `buf` with random bytes from the kernel.
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most rest.len() bytes into rest.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

/// Write end of the self-pipe the signal handler writes to; -1 until set.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// Signals caught and not yet taken, one bit per signal number (all the
/// server handles are below 64). A bit cannot be lost the way a byte in a
/// full pipe can: the pipe only wakes the loop.
static PENDING_SIGNALS: AtomicU64 = AtomicU64::new(0);

/// The handler: marks the signal pending and writes its number as one byte
/// to the self-pipe. Only async-signal-safe calls (a lock-free atomic,
/// `write`); `errno` is saved and restored around `write`.
extern "C" fn on_signal(signal: libc::c_int) {
    if (0..64).contains(&signal) {
        PENDING_SIGNALS.fetch_or(1 << signal, Ordering::SeqCst);
    }
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let errno = unsafe { *libc::__errno_location() };
    let byte = signal as u8;
    // SAFETY: write reads one byte from `byte`, which lives for the call; a
    // full pipe (many pending signals) just drops the byte.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Routes `signals` to a non-blocking, close-on-exec self-pipe and returns its
/// read end: a signal makes it readable, and [`take_signals`] says which came.
///
/// A handler rather than a signalfd: a signalfd needs the signals blocked,
/// and std's spawn lets children inherit that mask, so a command would
/// ignore SIGTERM. Handlers go back to the default in a child at `exec`.
pub fn signal_pipe(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which is that big.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are new and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The write end lives as long as the process: the handler may run anytime.
    let old = SIGNAL_PIPE.swap(write.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(write);
    if old >= 0 {
        // SAFETY: `old` was a write end this function leaked earlier.
        drop(unsafe { OwnedFd::from_raw_fd(old) });
    }
    for &signal in signals {
        // SAFETY: sigaction is plain data; zeroed is a valid starting value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        if signal == libc::SIGCHLD {
            // Only exits matter: a child stopped or continued is no wake-up.
            action.sa_flags |= libc::SA_NOCLDSTOP;
        }
        // SAFETY: sigemptyset writes only into the action's mask.
        check(unsafe { libc::sigemptyset(&mut action.sa_mask) })?;
        // SAFETY: sigaction reads `action`; the old action is not requested.
        check(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    }
    Ok(read)
}

/// Empties the self-pipe and takes the signals caught since the last call,
/// as a bit set (`1 << signal`). A burst of SIGCHLD costs one or two reads,
/// not one per exit.
pub fn take_signals(fd: &OwnedFd) -> io::Result<u64> {
    let mut buf = [0u8; 256];
    // The pipe holds at most its capacity (64 KiB), and epoll reports it
    // by edges: read it empty, within a bound.
    for _ in 0..1024 {
        // SAFETY: read writes at most buf.len() bytes into `buf`.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            continue;
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                _ => return Err(err),
            }
        }
        break;
    }
    Ok(PENDING_SIGNALS.swap(0, Ordering::SeqCst))
}

/// Hands free heap memory back to the kernel (glibc keeps it otherwise), so
/// the server's footprint returns to its idle size after a burst.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) };
}

/// Hands free heap memory back to the kernel; this allocator needs no help.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock a command's timestamps are
/// compared with by `ssecommander bench` (std's `Instant` hides the value).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_MONOTONIC
    // always exists on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

// ----- Start-up hygiene: what the server keeps from its children ---------

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

// ----- containment (contract §3.6): subreaper, single-pid kill and reap -----

/// Makes this process the child subreaper: orphaned descendants are
/// re-parented to it instead of to init, so it can find and stop them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag; no memory is passed.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Sends `signal` to the one process `pid`. A process already gone is not an
/// error; pids 0, 1 and negative ones (groups, everything) are refused.
pub fn kill_pid(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    send_signal(pid, signal)
}

/// Reaps the child `pid` if it has exited; true if it did (or is no child
/// of ours any more). Never waits.
pub fn reap_pid(pid: libc::pid_t) -> bool {
    !matches!(reap_status(pid), Ok(None))
}

/// Reaps the child `pid` if it has exited and returns its raw wait status
/// (for `ExitStatus::from_raw`); `Ok(None)` while it runs. Never waits.
pub fn reap_status(pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes one integer into `status`, which lives for the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        match ret {
            0 => return Ok(None),
            r if r == pid => return Ok(Some(status)),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// The pid of one exited child not yet reaped, left unreaped (its zombie
/// keeps its pid and process group from being reused until it is reaped);
/// `None` if there is none (or no child at all).
pub fn peek_exited_child() -> Option<libc::pid_t> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value for it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`, which lives for the call.
    let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: si_pid is valid to read for a siginfo_t filled by waitid.
    let pid = unsafe { info.si_pid() };
    (ret == 0 && pid > 0).then_some(pid)
}

// ----- systemd socket activation (contract §1, `sd_listen_fds(3)`) -------

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

// ----- spawning: a vfork child that never copies our descriptor table -----

/// Everything the child needs, made in the parent: until it calls `execve`
/// the child shares our memory, so it only makes system calls on these.
pub struct ExecPlan {
    /// Paths to try in order, as `execvp` would (a bare name: one per
    /// `PATH` entry).
    pub paths: Vec<std::ffi::CString>,
    /// The argument vector, `argv[0]` first.
    pub argv: Vec<std::ffi::CString>,
    /// The environment, `NAME=value` each.
    pub env: Vec<std::ffi::CString>,
    /// Directory to change to before `execve`.
    pub cwd: Option<std::ffi::CString>,
    /// A new session whose controlling terminal is descriptor 0 (contract
    /// §10), instead of a new process group.
    pub session: bool,
}

/// What the vfork child reads (the plan, as C pointers) and writes (why
/// `execve` failed), in memory it shares with us.
struct ChildArgs {
    paths: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    env: Vec<*const libc::c_char>,
    cwd: *const libc::c_char,
    /// See [`ExecPlan::session`].
    session: bool,
    /// The signal mask to restore before `execve`.
    mask: libc::sigset_t,
    /// errno of the failed step, 0 if `execve` succeeded.
    error: libc::c_int,
    /// The failed step was dropping the descriptor table: this kernel (or
    /// emulator) cannot do what this path needs.
    unsupported: bool,
}

/// Stack of the vfork child: it only makes a few system calls.
const CHILD_STACK: usize = 32 * 1024;

/// The signals this process handles: reset to their default in the child
/// before it can receive one (our handler would run in our memory), and
/// SIGPIPE, which std sets to ignored and an ignored signal stays ignored
/// across `execve`.
const CHILD_DEFAULT_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD, libc::SIGPIPE];

/// Starts `plan` in a new process group with `stdio` as its descriptors 0,
/// 1 and 2 and no other descriptor; returns its pid.
///
/// Why not `posix_spawn`: a child made by `clone` without `CLONE_FILES`
/// copies our whole descriptor table, and `execve` then closes every copy
/// marked close-on-exec: work in proportion to the streams open (with 6,000
/// streams, 18,000 descriptors per spawn, which made spawning the bottleneck
/// at scale). Here the child shares our table (`CLONE_FILES`), finds its
/// stdio already at 0, 1 and 2 (we put it there for the moment of the
/// `clone` and put ours back after: the loop is one thread, and a vfork
/// parent is suspended until the child has exec'd), and unshares with
/// `close_range(3, ~0, CLOSE_RANGE_UNSHARE)`, which copies only 0, 1 and 2.
pub fn spawn_plan(plan: &ExecPlan, stdio: [RawFd; 3]) -> io::Result<libc::pid_t> {
    let with_null = |strings: &[std::ffi::CString]| {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        ptrs
    };
    let mut args = ChildArgs {
        paths: with_null(&plan.paths),
        argv: with_null(&plan.argv),
        env: with_null(&plan.env),
        cwd: plan.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        session: plan.session,
        // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
        mask: unsafe { std::mem::zeroed() },
        error: 0,
        unsupported: false,
    };
    // Left uninitialised: only the few pages the child uses are touched
    // (zeroing it would make all of it resident in the server).
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    let saved = save_stdio()?;
    let placed = place_stdio(stdio);
    let pid = placed.and_then(|()| clone_child(&mut args, &mut stack));
    restore_stdio(saved);
    let pid = match pid {
        Ok(pid) => pid,
        // qemu-user and the like refuse CLONE_VM | CLONE_FILES without a thread.
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => return Err(unsupported(err)),
        Err(err) => return Err(err),
    };
    if args.error != 0 {
        // The child has exited already (a vfork parent resumes only then or
        // at its execve): reap it, and say why it failed.
        let _ = wait_blocking(pid);
        let err = io::Error::from_raw_os_error(args.error);
        return Err(if args.unsupported { unsupported(err) } else { err });
    }
    Ok(pid)
}

/// [`spawn_plan`] cannot work here (`ErrorKind::Unsupported`): a kernel
/// before 5.9 has no `CLOSE_RANGE_UNSHARE`; the caller falls back to
/// `posix_spawn`.
fn unsupported(err: io::Error) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, err)
}

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed, so
/// nothing we open later lands there ([`spawn_plan`] swaps 0-2 around a
/// spawn and must find no pipe or socket of ours in that range).
pub fn open_closed_stdio() -> io::Result<()> {
    for fd in 0..3 {
        // SAFETY: F_GETFD takes an integer and touches no memory of ours.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: open reads a NUL-terminated literal; the lowest free
        // descriptor is this one, as every lower one is open.
        let opened = check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) })?;
        if opened != fd {
            // SAFETY: close takes an integer; `opened` is ours alone.
            unsafe { libc::close(opened) };
            return Err(io::Error::other("descriptor numbering out of order"));
        }
    }
    Ok(())
}

/// Copies of our descriptors 0, 1 and 2 (`None` for one that is closed).
fn save_stdio() -> io::Result<[Option<OwnedFd>; 3]> {
    let mut saved: [Option<OwnedFd>; 3] = [None, None, None];
    for (fd, slot) in saved.iter_mut().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor; no memory is passed.
        let copy = unsafe { libc::fcntl(fd as RawFd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy >= 0 {
            // SAFETY: the new descriptor is ours alone.
            *slot = Some(unsafe { OwnedFd::from_raw_fd(copy) });
        } else if io::Error::last_os_error().raw_os_error() != Some(libc::EBADF) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(saved)
}

fn place_stdio(stdio: [RawFd; 3]) -> io::Result<()> {
    // A source among 0-2 would be overwritten by an earlier placement (and
    // one on its own target keeps its close-on-exec flag): refuse rather
    // than mix the child's streams up. Start-up keeps 0-2 taken
    // (`open_closed_stdio`), so no pipe of ours lands there.
    if stdio.iter().any(|&fd| fd < 3) {
        return Err(io::Error::other("a child's stdio descriptor is among 0-2"));
    }
    for (target, fd) in stdio.into_iter().enumerate() {
        // SAFETY: dup2 takes two integers; the caller owns `fd`, and the
        // target's old descriptor was saved by save_stdio.
        check(unsafe { libc::dup2(fd, target as RawFd) })?;
    }
    Ok(())
}

/// Puts our descriptors 0, 1 and 2 back (closing one that was closed).
fn restore_stdio(saved: [Option<OwnedFd>; 3]) {
    for (target, copy) in saved.into_iter().enumerate() {
        match copy {
            // SAFETY: dup2 takes two integers; `copy` is open and ours.
            Some(copy) => unsafe {
                libc::dup2(copy.as_raw_fd(), target as RawFd);
            },
            // SAFETY: close takes an integer; the descriptor was closed before.
            None => unsafe {
                libc::close(target as RawFd);
            },
        }
    }
}

/// `clone(CLONE_VM | CLONE_VFORK | CLONE_FILES)` of [`child_main`] with every
/// signal blocked around it; returns once the child has exec'd or exited.
fn clone_child(args: &mut ChildArgs, stack: &mut Vec<u8>) -> io::Result<libc::pid_t> {
    // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigfillset writes only into `all`.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: pthread_sigmask reads `all` and writes the old mask into args.mask.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut args.mask) };
    if blocked != 0 {
        return Err(io::Error::from_raw_os_error(blocked));
    }
    // The stack grows down: the child starts at its top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.capacity()) & !15;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD;
    // SAFETY: the child runs child_main on its own stack (`stack`, alive
    // until clone returns: CLONE_VFORK suspends us until the child has
    // exec'd or exited) and reads `args`, alive as long; it only makes
    // system calls and never returns into our code.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags,
            (args as *mut ChildArgs).cast(),
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: pthread_sigmask reads the saved mask; the old one is not requested.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &args.mask, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// The vfork child: default signal handlers, its own process group, a
/// descriptor table of just 0, 1 and 2, the working directory, our signal
/// mask back, then `execve` of each path in turn. A failure is reported
/// through `error` and ends the child with status 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs clone_child passed, alive and not
    // touched by the suspended parent until we exec or exit.
    let args = unsafe { &mut *arg.cast::<ChildArgs>() };
    let fail = |args: &mut ChildArgs, errno: libc::c_int| -> ! {
        args.error = if errno == 0 { libc::ENOEXEC } else { errno };
        // SAFETY: _exit ends this process at once, running nothing of ours.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let errno = || unsafe { *libc::__errno_location() };
    for signal in CHILD_DEFAULT_SIGNALS {
        // SAFETY: signal() sets this process's disposition (not shared with
        // the parent: no CLONE_SIGHAND); no memory of ours is passed.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: each call below takes integers or pointers into `args`, which
    // outlives the child; none returns into Rust code that could unwind.
    unsafe {
        if args.session {
            if let Err(err) = crate::pty::make_controlling(0) {
                fail(args, err);
            }
        } else if libc::setpgid(0, 0) != 0 {
            fail(args, errno());
        }
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            !0 as libc::c_uint,
            libc::CLOSE_RANGE_UNSHARE,
        ) != 0
        {
            // Only a kernel or filter that lacks the call turns this path
            // off for good; anything else (ENOMEM) fails just this spawn.
            let err = errno();
            args.unsupported = matches!(err, libc::ENOSYS | libc::EINVAL | libc::EPERM);
            fail(args, err);
        }
        if !args.cwd.is_null() && libc::chdir(args.cwd) != 0 {
            fail(args, errno());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &args.mask, std::ptr::null_mut());
        let mut denied = false;
        let mut found = false;
        let mut last = libc::ENOENT;
        for &path in args.paths.iter().take_while(|p| !p.is_null()) {
            libc::execve(path, args.argv.as_ptr(), args.env.as_ptr());
            last = errno();
            // As execvp: only "not here" goes on to the next directory. A
            // program found but not runnable (ENOEXEC, ETXTBSY, E2BIG, ...)
            // is the answer: running a later namesake instead would run
            // what `--allow` did not approve.
            match last {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => {
                    found = true;
                    break;
                }
            }
        }
        // As execvp: a program found but not executable says so, rather
        // than the last directory's ENOENT.
        fail(args, if denied && !found { libc::EACCES } else { last })
    }
}

/// Waits for the child `pid` to end and reaps it; its raw wait status.
pub fn wait_blocking(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes one integer into `status`, which lives for the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which is that big.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod start_up_tests {
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
