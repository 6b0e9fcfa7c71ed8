//! Signals: a handler that marks them pending and wakes the loop through
//! a self-pipe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::check;

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
