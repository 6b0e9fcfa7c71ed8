//! Launching a command without waiting for its `execve` (x86_64).
//!
//! The vfork path ([`super::spawn_plan`]) suspends the loop until the child
//! has exec'd: on a busy machine most of that is the child waiting for a
//! CPU. Here the child is a `clone3` that shares our memory and descriptor
//! table but not our pause: the loop goes on at once. What that needs:
//!
//! - **Memory** the child reads (its plan, stack and the word it reports
//!   through) is kept in a [`Pending`] until the kernel says the child has
//!   exec'd or exited: `CLONE_CHILD_CLEARTID` zeroes a word of ours then.
//!   Nothing waits for that: the loop looks at the words (atomic loads)
//!   whenever it wakes anyway, and frees what it finds done.
//! - **Descriptors**: the loop keeps using the shared table meanwhile, so
//!   the child's stdio is not put at 0-2 for it (that would be ours too)
//!   but in one of [`SLOTS`] reserved triples, which only this launch uses
//!   until the child has a table of its own. The child takes its own copy
//!   of the table's low part (`close_range(bound, ~0, CLOSE_RANGE_UNSHARE)`,
//!   the triples are all below `bound`), moves its triple to 0-2 there, and
//!   closes the rest.
//! - **Being told**: our copy of the triple keeps the pipes' write ends
//!   open (a job's stdout would never end), so it must go as soon as the
//!   child has its own table — and not before, or the child loses its
//!   stdio. Right after unsharing, the child sets its `unshared` word and
//!   writes to one eventfd (also below `bound`, so its own table has it),
//!   which the loop polls: that wake-up frees the triple. A child that
//!   fails before unsharing exits, and its SIGCHLD frees it. No timer, no
//!   polling while a child is on its way to `execve`.
//! - **errno**: the child shares our thread-local errno, so it makes no
//!   libc call at all: every step is a raw system call (assembly), and why
//!   an `execve` failed is written into the [`Pending`].
//! - **Failures** stay immediate where they can: the program is looked up
//!   (along `PATH`, past the directories [`super::path_cache`] knows not to
//!   hold it) and checked (a regular file we may execute, with an ELF or
//!   `#!` header) before the clone; anything unusual goes the vfork way, which
//!   answers as before. A failure after the clone (a race, a `noexec`
//!   mount) is kept by pid for [`take_failure`], so the job still ends
//!   with `err`.

use std::cell::RefCell;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use super::path_cache::PathCache;
use super::{clone3, BlockedSignals, ExecPlan, CHILD_STACK, LAUNCH_DEFAULT_SIGNALS};

/// Launches that may be between clone and `execve` at once; one more waits
/// for the vfork path. A child gets from clone to `execve` in well under a
/// millisecond unless the machine is busy; eight cover a burst.
pub const SLOTS: usize = 8;

/// What [`launch`] did.
pub enum Launched {
    /// The child runs (it may not have exec'd yet).
    Started(libc::pid_t),
    /// The clone itself failed.
    Failed(io::Error),
    /// Not on this path (no free slot, or a program the vfork path should
    /// try, so it answers exactly as before): the plan back.
    NotHere(ExecPlan),
}

/// A launched child not yet known to have exec'd, with all it reads.
struct Pending {
    /// `CLONE_CHILD_CLEARTID`'s word: 1 until the child exec'd or exited.
    tid: AtomicI32,
    /// Set by the child once its table is its own: our triple may go.
    unshared: AtomicI32,
    /// errno of the child's failed step; 0 while none.
    error: AtomicI32,
    pid: libc::pid_t,
    /// The triple it holds; `None` once freed.
    slot: Option<usize>,
    /// The child's view: pointers into `plan`, its triple, the mask.
    args: ChildArgs,
    /// Owns what `args` points into.
    _plan: ExecPlan,
    _pointers: [Vec<*const libc::c_char>; 2],
    /// The child's stack (never read by us).
    _stack: Vec<u8>,
}

/// What the child reads, as raw pointers and numbers.
#[repr(C)]
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    env: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    /// Descriptors below this are copied into the child's own table.
    bound: RawFd,
    /// The eventfd the child writes to once it has unshared (below `bound`).
    notify: RawFd,
    mask: libc::sigset_t,
    error: *const AtomicI32,
    unshared: *const AtomicI32,
}

/// The reserved triples and the launches using them.
struct Launcher {
    /// The process's `/dev/null` ([`crate::sys::dev_null`]): what a free
    /// triple holds, and a command's stdin when it reads nothing.
    null: BorrowedFd<'static>,
    /// Written by each child once it has its own table (see the module
    /// notes); the loop polls it ([`notifier`]).
    notify: OwnedFd,
    slots: [[RawFd; 3]; SLOTS],
    /// Which descriptors of each triple hold `null` now: a command's stdin
    /// from `/dev/null` leaves its one as it is (no `dup3` to put it there,
    /// none to put it back).
    is_null: [[bool; 3]; SLOTS],
    bound: RawFd,
    busy: [bool; SLOTS],
    /// Boxed: the child holds pointers into each, which must not move as
    /// the list grows.
    #[allow(clippy::vec_box)]
    pending: Vec<Box<Pending>>,
    /// Launches whose `execve` failed after the clone: (pid, errno).
    failures: Vec<(libc::pid_t, i32)>,
    /// ELF programs found runnable lately (see [`runnable_path`]).
    checked: Checked,
    /// `PATH` directories known not to hold a program (see [`runnable_path`]).
    misses: PathCache,
}

/// How many checked programs [`Checked`] remembers.
const CHECKED: usize = 32;

/// ELF programs [`runnable_path`] found runnable, each with what `statx`
/// said of it then (device, inode, size, change and modification times):
/// while that is unchanged, so are its header and its permissions (a
/// `chmod`, `chown` or ACL change moves the change time), so the
/// `faccessat` and the header read are not made again for every command.
/// What could still differ (a `noexec` remount) fails after the clone,
/// which the launch path answers anyway ([`take_failure`]).
#[derive(Default)]
struct Checked {
    /// (path, key), most recent last.
    entries: Vec<(CString, [i64; 7])>,
}

impl Checked {
    fn key(meta: &std::fs::Metadata) -> [i64; 7] {
        use std::os::unix::fs::MetadataExt;
        [
            meta.dev() as i64,
            meta.ino() as i64,
            meta.size() as i64,
            meta.ctime(),
            meta.ctime_nsec(),
            meta.mtime(),
            meta.mtime_nsec(),
        ]
    }

    fn holds(&self, path: &CString, key: &[i64; 7]) -> bool {
        self.entries.iter().any(|(p, k)| p == path && k == key)
    }

    fn remember(&mut self, path: &CString, key: [i64; 7]) {
        self.entries.retain(|(p, _)| p != path);
        if self.entries.len() >= CHECKED {
            self.entries.remove(0);
        }
        self.entries.push((path.clone(), key));
    }
}

thread_local! {
    /// The loop's launcher, once [`enable`] made it.
    static LAUNCHER: RefCell<Option<Launcher>> = const { RefCell::new(None) };
}

/// Reserves the triples and proves the child's steps work here (a probe
/// child unshares its table and exits). After this, [`launch`] is used.
/// `path` is the `PATH` list commands are looked up along (its cache of
/// misses is set up now).
pub fn enable(path: &'static [std::path::PathBuf]) -> io::Result<()> {
    let null = crate::sys::dev_null()?;
    // Made before the triples, at the lowest free descriptor: below `bound`.
    // SAFETY: eventfd takes integers.
    let notify = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if notify < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and ours alone.
    let notify = unsafe { OwnedFd::from_raw_fd(notify) };
    let mut slots = [[0; 3]; SLOTS];
    let mut reserved: Vec<OwnedFd> = Vec::with_capacity(SLOTS * 3);
    for fd in slots.iter_mut().flatten() {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own; no memory is passed.
        let copy = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is new and ours alone.
        reserved.push(unsafe { OwnedFd::from_raw_fd(copy) });
        *fd = copy;
    }
    probe()?;
    let highest = slots.iter().flatten().copied().max().unwrap_or(2);
    let bound = highest.max(notify.as_raw_fd()) + 1;
    // The triples stay open for the life of the process: ownership moves
    // into the launcher's numbers.
    for fd in reserved {
        std::mem::forget(fd);
    }
    let mut misses = PathCache::default();
    misses.set_up(path);
    LAUNCHER.with(|launcher| {
        *launcher.borrow_mut() = Some(Launcher {
            null,
            notify,
            slots,
            is_null: [[true; 3]; SLOTS],
            bound,
            busy: [false; SLOTS],
            pending: Vec::new(),
            failures: Vec::new(),
            checked: Checked::default(),
            misses,
        })
    });
    Ok(())
}

/// A vfork child that unshares its table as a launched one does, then
/// exits 0: `Err` where the kernel (before 5.9) or a filter refuses.
fn probe() -> io::Result<()> {
    extern "C" fn unshare_and_exit(_: *mut libc::c_void) -> libc::c_int {
        // SAFETY: raw system calls on integers; exit ends only this child.
        unsafe {
            let ret = raw::syscall3(
                libc::SYS_close_range,
                3,
                !0u32 as usize,
                libc::CLOSE_RANGE_UNSHARE as usize,
            );
            raw::syscall3(libc::SYS_exit, usize::from(ret != 0), 0, 0);
        }
        127
    }
    let mut stack: Vec<u8> = Vec::with_capacity(4096);
    let base = stack.as_mut_ptr() as usize;
    let top = (base + stack.capacity()) & !15;
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES) as u64;
    let masked = BlockedSignals::new()?;
    // SAFETY: the child makes two raw system calls and exits; the stack
    // outlives the vfork.
    let pid = unsafe { clone3::call(flags, unshare_and_exit, std::ptr::null_mut(), base, top, None, None) };
    drop(masked);
    let status = super::wait_blocking(pid?)?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other("close_range(CLOSE_RANGE_UNSHARE) refused"))
    }
}

/// The eventfd the loop polls (readable: a launched child has its own
/// table, see [`on_notice`]); `None` before [`enable`].
pub fn notifier() -> Option<RawFd> {
    LAUNCHER.with(|launcher| launcher.borrow().as_ref().map(|l| l.notify.as_raw_fd()))
}

/// The eventfd was written to: frees the triples of the children that
/// have unshared since.
pub fn on_notice() {
    LAUNCHER.with(|launcher| {
        if let Some(launcher) = launcher.borrow_mut().as_mut() {
            // Not emptied: the loop polls it by edges, and every child's
            // `write` is a new edge (epoll reports each wake-up of an
            // edge-triggered file, readable before or not), so a read per
            // launch would buy nothing. The count cannot fill: it would
            // take 2^64 launches.
            launcher.collect();
        }
    });
}

/// Frees what launched children hold that they no longer need: the triple
/// of each that has its own table, and all of each that has exec'd or
/// exited. Atomic loads over the pending list: the loop calls it whenever
/// it wakes.
pub fn collect() {
    LAUNCHER.with(|launcher| {
        if let Some(launcher) = launcher.borrow_mut().as_mut() {
            launcher.collect();
        }
    });
}

/// Why the launched child `pid` could not exec, if it could not (asked
/// once it has exited: then it is known).
pub fn take_failure(pid: libc::pid_t) -> Option<io::Error> {
    LAUNCHER.with(|launcher| {
        let mut launcher = launcher.borrow_mut();
        let launcher = launcher.as_mut()?;
        launcher.collect();
        let at = launcher.failures.iter().position(|&(p, _)| p == pid)?;
        let (_, errno) = launcher.failures.swap_remove(at);
        Some(io::Error::from_raw_os_error(errno))
    })
}

/// Starts `plan` (no terminal: see [`ExecPlan::session`]) with `stdio` as
/// its 0, 1 and 2, in `cgroup` when given, without waiting for it.
pub fn launch(plan: ExecPlan, stdio: [RawFd; 3], cgroup: Option<RawFd>) -> Launched {
    LAUNCHER.with(|launcher| match launcher.borrow_mut().as_mut() {
        Some(launcher) if !plan.session => launcher.launch(plan, stdio, cgroup),
        _ => Launched::NotHere(plan),
    })
}

impl Launcher {
    fn collect(&mut self) {
        let mut i = 0;
        // Bounded by the pending list, which only shrinks here.
        while i < self.pending.len() {
            let pending = &mut self.pending[i];
            let done = pending.tid.load(Ordering::Acquire) == 0;
            if done || pending.unshared.load(Ordering::Acquire) != 0 {
                if let Some(slot) = pending.slot.take() {
                    free_slot(
                        self.null,
                        self.slots[slot],
                        &mut self.is_null[slot],
                        &mut self.busy[slot],
                    );
                }
            }
            if !done {
                i += 1;
                continue;
            }
            let done = self.pending.swap_remove(i);
            let errno = done.error.load(Ordering::Acquire);
            if errno != 0 {
                self.failures.push((done.pid, errno));
            }
        }
    }

    fn free_slot(&mut self, slot: usize) {
        free_slot(
            self.null,
            self.slots[slot],
            &mut self.is_null[slot],
            &mut self.busy[slot],
        );
    }

    fn launch(&mut self, plan: ExecPlan, stdio: [RawFd; 3], cgroup: Option<RawFd>) -> Launched {
        self.collect();
        let Some(slot) = self.busy.iter().position(|busy| !busy) else {
            return Launched::NotHere(plan);
        };
        let Some(path) = runnable_path(&plan, &mut self.checked, &mut self.misses) else {
            return Launched::NotHere(plan);
        };
        for (i, (fd, target)) in stdio.iter().zip(self.slots[slot]).enumerate() {
            let null = *fd == self.null.as_raw_fd();
            if null && self.is_null[slot][i] {
                continue;
            }
            self.is_null[slot][i] = false;
            // SAFETY: dup3 takes integers; the caller owns `fd`, the target
            // is a reserved descriptor of ours. Close-on-exec, so no other
            // child (std's fallback) inherits it.
            if unsafe { libc::dup3(*fd, target, libc::O_CLOEXEC) } < 0 {
                let err = io::Error::last_os_error();
                self.free_slot(slot);
                return Launched::Failed(err);
            }
            self.is_null[slot][i] = null;
        }
        self.busy[slot] = true;
        let with_null = |strings: &[CString]| {
            let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            ptrs
        };
        let argv = with_null(&plan.argv);
        let env = with_null(&plan.env);
        let mut pending = Box::new(Pending {
            tid: AtomicI32::new(1),
            unshared: AtomicI32::new(0),
            error: AtomicI32::new(0),
            pid: 0,
            slot: Some(slot),
            args: ChildArgs {
                path: plan.paths[path].as_ptr(),
                argv: argv.as_ptr(),
                env: env.as_ptr(),
                cwd: plan.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                stdio: self.slots[slot],
                bound: self.bound,
                notify: self.notify.as_raw_fd(),
                // SAFETY: sigset_t is plain data; zeroed is a valid value for it.
                mask: unsafe { std::mem::zeroed() },
                error: std::ptr::null(),
                unshared: std::ptr::null(),
            },
            _plan: plan,
            _pointers: [argv, env],
            _stack: Vec::with_capacity(CHILD_STACK),
        });
        pending.args.error = &pending.error;
        pending.args.unshared = &pending.unshared;
        // No signal is blocked around the clone: no handler of ours exists
        // to run in a child that shares our memory (the loop's signals are
        // blocked and read from a signalfd; std's are for faults only). The
        // child starts with our mask and sets this one before `execve`.
        pending.args.mask = crate::sys::child_mask();
        let base = pending._stack.as_mut_ptr() as usize;
        let top = (base + pending._stack.capacity()) & !15;
        let flags = (libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_CHILD_CLEARTID) as u64;
        let arg = (&pending.args as *const ChildArgs).cast_mut().cast();
        // SAFETY: launched_child makes raw system calls only and execs or
        // exits; everything it reads (args, plan, stack) and the tid word
        // the kernel clears live in `pending`, kept until that word is 0.
        let cloned = unsafe { clone3::call(flags, launched_child, arg, base, top, cgroup, Some(&pending.tid)) };
        let pid = match cloned {
            Ok(pid) => pid,
            Err(err) => {
                self.free_slot(slot);
                return Launched::Failed(err);
            }
        };
        // The child makes its group too; whichever comes first, the group
        // exists before we may signal it. EACCES: it has exec'd already.
        // SAFETY: setpgid takes integers.
        unsafe { libc::setpgid(pid, pid) };
        pending.pid = pid;
        self.pending.push(pending);
        Launched::Started(pid)
    }
}

/// Puts `/dev/null` back on a triple, dropping our hold on the pipes.
fn free_slot(null: BorrowedFd<'static>, triple: [RawFd; 3], is_null: &mut [bool; 3], busy: &mut bool) {
    for (fd, is_null) in triple.into_iter().zip(is_null.iter_mut()) {
        if *is_null {
            continue;
        }
        // SAFETY: dup3 takes integers; both descriptors are ours.
        unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) };
        *is_null = true;
    }
    *busy = false;
}

impl Drop for Launcher {
    /// Children may still run on memory of a pending launch: never freed.
    fn drop(&mut self) {
        for pending in self.pending.drain(..) {
            std::mem::forget(pending);
        }
    }
}

/// Which of `plan.paths` `execve` will run, as the vfork child's search
/// would find it, when that is sure enough to launch: an absolute (or,
/// without a `cwd`, relative) path to a regular file we may execute that
/// starts like an ELF file or a script. `None`: let the vfork path try
/// (it answers every failure as before). Along `PATH`, the directories
/// `misses` knows not to hold the program are not looked at again.
fn runnable_path(plan: &ExecPlan, checked: &mut Checked, misses: &mut PathCache) -> Option<usize> {
    // The cache's lists line up with `paths` only as `ExecPlan::search` says.
    let search = plan
        .search
        .filter(|dirs| dirs.len() == plan.paths.len())
        .zip(plan.argv.first());
    let known = search.map_or_else(Default::default, |(dirs, name)| misses.lookup(dirs, name.as_bytes()));
    for (index, c_path) in plan.paths.iter().enumerate() {
        let path = Path::new(std::ffi::OsStr::from_bytes(c_path.as_bytes()));
        if plan.cwd.is_some() && path.is_relative() {
            return None;
        }
        if known.missing(index) {
            continue;
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            // Not here: the search goes on, as execvp's.
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => continue,
            Err(_) => return None,
        };
        // Every entry before this one was missed, by `statx` or by the cache.
        if let Some((dirs, name)) = search {
            misses.found(dirs, name.as_bytes(), index);
        }
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return None;
        }
        let key = Checked::key(&meta);
        if checked.holds(c_path, &key) {
            return Some(index);
        }
        if !executable(path) {
            return None;
        }
        return match header(path) {
            Header::Elf => {
                checked.remember(c_path, key);
                Some(index)
            }
            Header::Script => Some(index),
            Header::Other => None,
        };
    }
    None
}

/// `faccessat(X_OK, AT_EACCESS)`: what `execve` checks for us.
fn executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: faccessat reads a NUL-terminated path that lives for the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// What [`header`] found.
enum Header {
    /// `\x7fELF`.
    Elf,
    /// `#!` and an absolute interpreter that exists (looked at every time:
    /// a missing one makes `execve` say ENOENT, on which the search would
    /// go on to the next `PATH` entry: the vfork path does that).
    Script,
    /// Anything else, or a file we cannot read: not sure.
    Other,
}

fn header(path: &Path) -> Header {
    let mut head = [0u8; 256];
    let Ok(mut file) = std::fs::File::open(path) else {
        return Header::Other;
    };
    let Ok(n) = file.read(&mut head) else {
        return Header::Other;
    };
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") {
        return Header::Elf;
    }
    let Some(line) = head.strip_prefix(b"#!") else {
        return Header::Other;
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let Some(interpreter) = line.split(|&b| b == b' ' || b == b'\t').find(|word| !word.is_empty()) else {
        return Header::Other;
    };
    let interpreter = Path::new(std::ffi::OsStr::from_bytes(interpreter));
    if interpreter.is_absolute() && interpreter.is_file() {
        Header::Script
    } else {
        Header::Other
    }
}

/// The launched child: SIGPIPE at its default, its own process group, a
/// table of its own (said through `unshared` and the eventfd, so the loop
/// frees our triple) with just its triple at 0, 1, 2, the working
/// directory, our signal mask, `execve`. Raw system calls only (no libc:
/// errno is ours); a failure is written to `error` and ends it with 127.
extern "C" fn launched_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs of a Pending kept alive until we exec
    // or exit; we only read it, and write `error` through an atomic.
    let args = unsafe { &*arg.cast::<ChildArgs>() };
    let fail = |errno: isize| -> ! {
        // SAFETY: `error` points into the same Pending; exit is a raw
        // system call that ends only this child.
        unsafe {
            (*args.error).store((-errno) as i32, Ordering::Release);
            raw::syscall3(libc::SYS_exit, 127, 0, 0);
        }
        #[allow(clippy::empty_loop)]
        loop {}
    };
    // SAFETY: raw system calls on integers and on memory of `args` or this
    // stack, alive until execve or exit.
    unsafe {
        let default = raw::KernelSigaction::default();
        for signal in LAUNCH_DEFAULT_SIGNALS {
            raw::syscall4(
                libc::SYS_rt_sigaction,
                signal as usize,
                &default as *const raw::KernelSigaction as usize,
                0,
                8,
            );
        }
        let ret = raw::syscall3(libc::SYS_setpgid, 0, 0, 0);
        if ret < 0 {
            fail(ret);
        }
        let ret = raw::syscall3(
            libc::SYS_close_range,
            args.bound as usize,
            !0u32 as usize,
            libc::CLOSE_RANGE_UNSHARE as usize,
        );
        if ret < 0 {
            fail(ret);
        }
        // The table is ours alone now: flag first, then the wake-up (the
        // loop empties the eventfd before it reads the flags). Our copy of
        // the eventfd goes with the close_range below.
        (*args.unshared).store(1, Ordering::Release);
        let one: u64 = 1;
        raw::syscall3(libc::SYS_write, args.notify as usize, &one as *const u64 as usize, 8);
        for (target, fd) in args.stdio.iter().enumerate() {
            let ret = raw::syscall3(libc::SYS_dup2, *fd as usize, target, 0);
            if ret < 0 {
                fail(ret);
            }
        }
        raw::syscall3(libc::SYS_close_range, 3, !0u32 as usize, 0);
        if !args.cwd.is_null() {
            let ret = raw::syscall3(libc::SYS_chdir, args.cwd as usize, 0, 0);
            if ret < 0 {
                fail(ret);
            }
        }
        raw::syscall4(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            &args.mask as *const libc::sigset_t as usize,
            0,
            8,
        );
        let ret = raw::syscall3(
            libc::SYS_execve,
            args.path as usize,
            args.argv as usize,
            args.env as usize,
        );
        fail(if ret == 0 { -(libc::ENOEXEC as isize) } else { ret })
    }
}

/// System calls without libc (so without errno), for the launched child.
mod raw {
    /// The kernel's `struct sigaction` on x86_64 (handler `SIG_DFL`).
    #[repr(C)]
    #[derive(Default)]
    pub(super) struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }

    /// `syscall(nr, a, b, c)`; a negative result is `-errno`.
    ///
    /// # Safety
    /// As the system call `nr` with these arguments.
    #[inline(always)]
    pub(super) unsafe fn syscall3(nr: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        // SAFETY: four arguments of the same contract, the fourth unused.
        unsafe { syscall4(nr, a, b, c, 0) }
    }

    /// `syscall(nr, a, b, c, d)`; a negative result is `-errno`.
    ///
    /// # Safety
    /// As the system call `nr` with these arguments.
    #[inline(always)]
    pub(super) unsafe fn syscall4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller's contract; rcx and r11 are clobbered by syscall.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                in("r10") d,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
}
