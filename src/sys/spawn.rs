//! Spawning: a vfork child that never copies our descriptor table.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{check, wait_blocking};

mod clone3;
#[cfg(target_arch = "x86_64")]
mod launch;
#[cfg(target_arch = "x86_64")]
mod path_cache;

#[cfg(target_arch = "x86_64")]
pub use launch::{
    collect as collect_launches, enable as enable_launch, launch, notifier as launch_notifier,
    on_notice as on_launch_notice, take_failure as take_launch_failure, Launched,
};

/// What [`launch`] did (this architecture has no launch path).
#[cfg(not(target_arch = "x86_64"))]
pub enum Launched {
    /// Never: see [`launch`].
    Started(libc::pid_t),
    /// Never: see [`launch`].
    Failed(io::Error),
    /// Always: the vfork path starts it.
    NotHere(ExecPlan),
}

/// The launch path is x86_64 only (its child makes raw system calls).
#[cfg(not(target_arch = "x86_64"))]
pub fn enable_launch(_path: &'static [std::path::PathBuf]) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Always [`Launched::NotHere`] on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn launch(plan: ExecPlan, _stdio: [RawFd; 3], _cgroup: Option<RawFd>) -> Launched {
    Launched::NotHere(plan)
}

/// No launch ever tells the loop anything on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn launch_notifier() -> Option<RawFd> {
    None
}

/// Never called on this architecture (no [`launch_notifier`]).
#[cfg(not(target_arch = "x86_64"))]
pub fn on_launch_notice() {}

/// Nothing to collect on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn collect_launches() {}

/// No launch ever fails late on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn take_launch_failure(_pid: libc::pid_t) -> Option<io::Error> {
    None
}

/// Everything the child needs, made in the parent: until it calls `execve`
/// the child shares our memory, so it only makes system calls on these.
pub struct ExecPlan {
    /// Paths to try in order, as `execvp` would (a bare name: one per
    /// `PATH` entry).
    pub paths: Vec<std::ffi::CString>,
    /// The argument vector, `argv[0]` first.
    pub argv: Vec<std::ffi::CString>,
    /// The environment, `NAME=value` each.
    pub env: std::borrow::Cow<'static, [std::ffi::CString]>,
    /// Directory to change to before `execve`.
    pub cwd: Option<std::ffi::CString>,
    /// `Some(dirs)` when `paths` is a bare `argv[0]` looked up along `PATH`:
    /// `paths[i]` is `dirs[i]` joined with it. The launch check then skips
    /// the directories known not to hold it (`path_cache.rs`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub search: Option<&'static [std::path::PathBuf]>,
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
    /// The signal mask to set before `execve` ([`super::signal::child_mask`]).
    mask: libc::sigset_t,
    /// errno of the failed step, 0 if `execve` succeeded.
    error: libc::c_int,
    /// The failed step was dropping the descriptor table: this kernel (or
    /// emulator) cannot do what this path needs.
    unsupported: bool,
}

/// Stack of the vfork child: it only makes a few system calls.
const CHILD_STACK: usize = 32 * 1024;

/// The signals this process may handle (with a self-pipe, see
/// [`super::signal::Signals`]): reset to their default in the vfork child
/// before it can receive one (our handler would run in our memory), and
/// SIGPIPE, which std sets to ignored and an ignored signal stays ignored
/// across `execve`.
const CHILD_DEFAULT_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD, libc::SIGPIPE];

/// What the launch path resets: SIGPIPE only. It runs only where the loop
/// reads its signals from a signalfd (see [`probe_spawn_plan`]): they have
/// no handler of ours, only a blocked mask, which the child replaces
/// ([`super::signal::child_mask`]).
#[cfg(target_arch = "x86_64")]
const LAUNCH_DEFAULT_SIGNALS: [libc::c_int; 1] = [libc::SIGPIPE];

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
///
/// `cgroup`, a descriptor of a cgroup v2 directory, starts the child there
/// (`clone3` with `CLONE_INTO_CGROUP`, see [`clone_into_cgroup_works`]):
/// the server never moves between cgroups for it.
pub fn spawn_plan(plan: &ExecPlan, stdio: [RawFd; 3], cgroup: Option<RawFd>) -> io::Result<libc::pid_t> {
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
    let pid = placed.and_then(|()| clone_child(&mut args, &mut stack, cgroup));
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

/// Whether [`spawn_plan`] works here: a child that takes every step up to
/// `execve` and has nothing to exec (no path) fails with ENOENT where it
/// does, `ErrorKind::Unsupported` where it cannot (qemu-user, a kernel
/// before 5.9), which then uses the `posix_spawn` fallback from the start.
pub fn probe_spawn_plan() -> io::Result<()> {
    let null = super::dev_null()?.as_raw_fd();
    let plan = ExecPlan {
        paths: Vec::new(),
        argv: vec![std::ffi::CString::from(c"probe")],
        env: std::borrow::Cow::Borrowed(&[]),
        cwd: None,
        search: None,
        session: false,
    };
    match spawn_plan(&plan, [null; 3], None) {
        Err(err) if err.kind() == io::ErrorKind::Unsupported => Err(err),
        _ => Ok(()),
    }
}

/// Starts a child that exits at once inside the cgroup directory `cgroup`
/// by `clone3` with `CLONE_INTO_CGROUP`, and reaps it: `Ok` if this kernel
/// (5.7+), its seccomp filter and this architecture let [`spawn_plan`]
/// start commands in their cgroup directly.
pub fn clone_into_cgroup_works(cgroup: &impl AsRawFd) -> io::Result<()> {
    extern "C" fn exit_at_once(_: *mut libc::c_void) -> libc::c_int {
        // SAFETY: _exit ends the child at once, running nothing of ours.
        unsafe { libc::_exit(0) }
    }
    let mut stack: Vec<u8> = Vec::with_capacity(4096);
    let base = stack.as_mut_ptr() as usize;
    let top = (base + stack.capacity()) & !15;
    let masked = BlockedSignals::new()?;
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    let cgroup = Some(cgroup.as_raw_fd());
    // SAFETY: the child only calls _exit; the stack outlives the vfork.
    let pid = unsafe { clone3::call(flags, exit_at_once, std::ptr::null_mut(), base, top, cgroup, None) };
    drop(masked);
    let status = wait_blocking(pid?)?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!("the probe child ended with status {status}")))
    }
}

/// Every signal blocked until dropped (our handlers must not run in a
/// child that shares our memory).
struct BlockedSignals(libc::sigset_t);

impl BlockedSignals {
    fn new() -> io::Result<BlockedSignals> {
        // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigfillset writes only into `all`.
        unsafe { libc::sigfillset(&mut all) };
        // SAFETY: pthread_sigmask reads `all` and writes the old mask into `old`.
        let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
        if blocked != 0 {
            return Err(io::Error::from_raw_os_error(blocked));
        }
        Ok(BlockedSignals(old))
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: pthread_sigmask reads the saved mask; the old one is not requested.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
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
/// signal blocked around it (`clone3`, into `cgroup`, when one is given);
/// returns once the child has exec'd or exited.
fn clone_child(args: &mut ChildArgs, stack: &mut Vec<u8>, cgroup: Option<RawFd>) -> io::Result<libc::pid_t> {
    // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigfillset writes only into `all`.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
    let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: pthread_sigmask reads `all` and writes the old mask into `saved`.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved) };
    if blocked != 0 {
        return Err(io::Error::from_raw_os_error(blocked));
    }
    // Not ours: the signals the loop reads from its signalfd stay blocked
    // here, and a command must not start with them blocked.
    args.mask = super::signal::child_mask();
    // The stack grows down: the child starts at its top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.capacity()) & !15;
    let (pid, err) = match cgroup {
        Some(cgroup) => {
            let base = stack.as_mut_ptr() as usize;
            let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES) as u64;
            let arg = (args as *mut ChildArgs).cast();
            // SAFETY: as for clone below: child_main only makes system calls
            // and execs or exits; `args` and `stack` outlive the vfork.
            match unsafe { clone3::call(flags, child_main, arg, base, top, Some(cgroup), None) } {
                Ok(pid) => (pid, io::Error::from_raw_os_error(0)),
                Err(err) => (-1, err),
            }
        }
        None => {
            let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD;
            // SAFETY: the child runs child_main on its own stack (`stack`,
            // alive until clone returns: CLONE_VFORK suspends us until the
            // child has exec'd or exited) and reads `args`, alive as long;
            // it only makes system calls and never returns into our code.
            let pid = unsafe {
                libc::clone(
                    child_main,
                    top as *mut libc::c_void,
                    flags,
                    (args as *mut ChildArgs).cast(),
                )
            };
            (pid, io::Error::last_os_error())
        }
    };
    // SAFETY: pthread_sigmask reads the saved mask; the old one is not requested.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// The vfork child: default signal handlers, its own process group (a new
/// session on a terminal, contract §10), a
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
    // None of the calls below returns into Rust code that could unwind.
    if args.session {
        // On a terminal: a new session (its own group too), the terminal
        // on descriptor 0 its controlling one.
        if let Err(err) = super::pty::make_controlling(0) {
            fail(args, err);
        }
    // SAFETY: setpgid takes integers; it moves only this process.
    } else if unsafe { libc::setpgid(0, 0) } != 0 {
        fail(args, errno());
    }
    // SAFETY: close_range takes integers; with CLOSE_RANGE_UNSHARE it gives
    // this child its own table of 0, 1 and 2, leaving ours untouched.
    let unshared = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            !0 as libc::c_uint,
            libc::CLOSE_RANGE_UNSHARE,
        )
    };
    if unshared != 0 {
        // Only a kernel or filter that lacks the call turns this path
        // off for good; anything else (ENOMEM) fails just this spawn.
        let err = errno();
        args.unsupported = matches!(err, libc::ENOSYS | libc::EINVAL | libc::EPERM);
        fail(args, err);
    }
    // SAFETY: chdir reads the NUL-terminated `cwd` the parent made, alive in
    // `args` until we exec or exit.
    if !args.cwd.is_null() && unsafe { libc::chdir(args.cwd) } != 0 {
        fail(args, errno());
    }
    // SAFETY: pthread_sigmask reads the mask saved in `args`; the old one is
    // not requested.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &args.mask, std::ptr::null_mut()) };
    let mut denied = false;
    let mut found = false;
    let mut last = libc::ENOENT;
    for &path in args.paths.iter().take_while(|p| !p.is_null()) {
        // SAFETY: execve reads the NUL-terminated path and the two
        // null-terminated pointer arrays in `args`, all alive until it
        // succeeds (then this memory is no longer ours) or returns.
        unsafe { libc::execve(path, args.argv.as_ptr(), args.env.as_ptr()) };
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
