//! Signals: SIGINT, SIGTERM and SIGCHLD as events the loop polls, one of
//! two ways ([`Signals`]):
//!
//! - **signalfd** (where our own spawn paths work, the usual case): the
//!   signals are blocked and read from a `signalfd`; no handler of ours
//!   runs. An exit costs one `read`, where a handler and a self-pipe cost a
//!   signal frame, `rt_sigreturn`, a `write` into the pipe and two `read`s
//!   out of it; and a child that shares our memory until its `execve` (the
//!   launch path) has no handler of ours to run, so it needs no blocked
//!   window around its clone. A blocked mask must not reach a command (it
//!   would ignore SIGTERM and Ctrl-C): our children set [`child_mask`]
//!   before `execve`.
//! - **handler and self-pipe** (the `posix_spawn` fallback): std's spawn
//!   passes the parent's mask on to the child, so nothing may be blocked;
//!   a handler marks the signal pending and writes a byte to a pipe (the
//!   handler goes back to the default in a child at `execve`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::check;
use super::fd::read_retrying;

/// The loop's signals, as one descriptor to poll and [`Signals::take`].
pub struct Signals {
    fd: OwnedFd,
    /// A signalfd (else the read end of the self-pipe).
    blocked: bool,
}

impl Signals {
    /// Routes `signals` to a descriptor: a signalfd when `own_spawn` (every
    /// child is started by our own spawn paths, which set [`child_mask`]),
    /// else a handler and a self-pipe.
    pub fn new(signals: &[libc::c_int], own_spawn: bool) -> io::Result<Signals> {
        if own_spawn {
            Ok(Signals {
                fd: signal_fd(signals)?,
                blocked: true,
            })
        } else {
            Ok(Signals {
                fd: signal_pipe(signals)?,
                blocked: false,
            })
        }
    }

    /// The descriptor to poll (readable: a signal came).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Takes the signals caught since the last call, as a bit set
    /// (`1 << signal`).
    pub fn take(&self) -> io::Result<u64> {
        if self.blocked {
            take_from_fd(&self.fd)
        } else {
            take_from_pipe(&self.fd)
        }
    }
}

/// The mask this process had before [`signal_fd`] blocked its signals: the
/// one a child restores before `execve`.
static CHILD_MASK: OnceLock<libc::sigset_t> = OnceLock::new();

/// What a child's signal mask should be at its `execve`: the mask we
/// started with (the signals [`signal_fd`] blocked are not in it).
pub fn child_mask() -> libc::sigset_t {
    match CHILD_MASK.get() {
        Some(mask) => *mask,
        None => current_mask(),
    }
}

fn current_mask() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new mask pthread_sigmask only writes the current
    // one into `mask`.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
    mask
}

/// Blocks `signals` (the process is one thread: nothing else may take
/// them) and returns a non-blocking, close-on-exec `signalfd` of them: a
/// signal makes it readable, and [`take_signals`] says which came.
/// SIGCHLD is left at its default with `SA_NOCLDSTOP`: a child stopped or
/// continued is no wake-up, only an exit is.
fn signal_fd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset writes only into `set`.
    check(unsafe { libc::sigemptyset(&mut set) })?;
    for &signal in signals {
        // SAFETY: sigaddset writes only into `set`.
        check(unsafe { libc::sigaddset(&mut set, signal) })?;
        if signal == libc::SIGCHLD {
            // SAFETY: sigaction is plain data; zeroed is a valid starting value.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = libc::SIG_DFL;
            // The kernel reads the flag whatever the handler (and `execve`
            // clears it for the command).
            action.sa_flags = libc::SA_NOCLDSTOP;
            // SAFETY: sigaction reads `action`; the old action is not requested.
            check(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
        }
    }
    // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: pthread_sigmask reads `set` and writes the old mask into `old`.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    if blocked != 0 {
        return Err(io::Error::from_raw_os_error(blocked));
    }
    // Only the first call's mask is the one we started with.
    let _ = CHILD_MASK.set(old);
    // SAFETY: signalfd reads `set`; -1 asks for a new descriptor.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: the descriptor is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How many signals one `read` of the signalfd takes at most.
const BATCH: usize = 8;

/// Takes the signals pending on the signalfd, as a bit set (`1 << signal`).
/// Standard signals do not queue: a burst of exits is one SIGCHLD (the
/// caller reaps until none is left).
fn take_from_fd(fd: &OwnedFd) -> io::Result<u64> {
    const SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();
    let mut caught = 0u64;
    let mut infos = [0u8; BATCH * SIZE];
    // At most three distinct signals are pending at once: a few reads.
    for _ in 0..16 {
        let Some(n) = read_retrying(fd, &mut infos)? else { break };
        let count = n / SIZE;
        for info in infos[..count * SIZE].chunks_exact(SIZE) {
            // `ssi_signo`, a u32, is the record's first field.
            let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
            if signo < 64 {
                caught |= 1 << signo;
            }
        }
        // A short read took every signal pending then; one that comes after
        // it wakes the signalfd again (the loop polls it by edges, and each
        // signal is a new edge).
        if count < BATCH {
            break;
        }
    }
    Ok(caught)
}

/// Makes `command` (std's, the fallback spawn path) set [`child_mask`] in
/// its child before `execve`, when [`signal_fd`] has blocked signals here:
/// std leaves a child the mask of its parent.
pub fn unblock_at_exec(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let Some(&mask) = CHILD_MASK.get() else { return };
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe call on a copy of the mask it owns; it allocates
    // nothing.
    unsafe {
        command.pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            Ok(())
        });
    }
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
/// read end: a signal makes it readable, and [`take_from_pipe`] says which
/// came. Handlers go back to the default in a child at `exec`.
fn signal_pipe(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
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
fn take_from_pipe(fd: &OwnedFd) -> io::Result<u64> {
    let mut buf = [0u8; 256];
    // The pipe holds at most its capacity (64 KiB), and epoll reports it
    // by edges: read it empty, within a bound.
    for _ in 0..1024 {
        match read_retrying(fd, &mut buf)? {
            Some(n) if n > 0 => {}
            _ => break,
        }
    }
    Ok(PENDING_SIGNALS.swap(0, Ordering::SeqCst))
}
