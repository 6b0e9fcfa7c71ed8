//! `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7+): the vfork child starts
//! in the command's cgroup, so the server never moves itself there and back
//! (each move takes the kernel's cgroup thread-group lock for writing, which
//! waits for an RCU grace period: milliseconds per spawn on a busy machine).
//!
//! Neither std nor libc wraps `clone3` with a function to run: the child
//! comes back from the system call on its new stack, so the call is a few
//! lines of assembly, written for x86_64 only. Elsewhere [`call`] says
//! `ENOSYS`, the start-up probe fails, and the server moves itself as before.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicI32;

/// `CLONE_INTO_CGROUP`: `clone_args.cgroup` is a cgroup v2 directory.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` (version 2, 88 bytes: up to `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The function a child runs on its new stack; it never returns.
pub(super) type ChildFn = extern "C" fn(*mut libc::c_void) -> libc::c_int;

/// `clone3(flags)`: the child runs `child(arg)` on the stack `[base, top)`
/// (`top` 16-byte aligned), inside the cgroup `cgroup` when one is given
/// (`CLONE_INTO_CGROUP`); `child_tid` is the word `CLONE_CHILD_CLEARTID`
/// zeroes when the child execs or exits. Its exit is announced by SIGCHLD.
/// Returns its pid, or the error.
///
/// # Safety
/// `child` must only make system calls and end with `execve` or `_exit`;
/// `arg`, `child_tid` and the stack must stay valid until it has done so
/// (with `CLONE_VFORK`, until this returns), and signals should be blocked
/// around the call.
pub(super) unsafe fn call(
    flags: u64,
    child: ChildFn,
    arg: *mut libc::c_void,
    base: usize,
    top: usize,
    cgroup: Option<RawFd>,
    child_tid: Option<&AtomicI32>,
) -> io::Result<libc::pid_t> {
    let args = CloneArgs {
        flags: flags | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        child_tid: child_tid.map_or(0, |word| word.as_ptr() as u64),
        exit_signal: libc::SIGCHLD as u64,
        stack: base as u64,
        stack_size: (top - base) as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    };
    // SAFETY: passed on to the caller (see above); `args` lives for the call.
    let ret = unsafe { raw(&args, child, arg) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(ret as libc::pid_t)
}

/// The system call itself. In the child (`rax` 0, `rsp` at the top of the
/// new stack, 16-byte aligned as a call expects) it calls `child(arg)` and
/// exits with its result should it ever return.
///
/// # Safety
/// As [`call`], which is its only caller.
#[cfg(target_arch = "x86_64")]
unsafe fn raw(args: &CloneArgs, child: ChildFn, arg: *mut libc::c_void) -> i64 {
    let ret: i64;
    // SAFETY: the caller's contract above; r12 and r13 survive the system
    // call in both processes, rcx and r11 are clobbered by it. The parent
    // takes the jump and touches nothing else; the child never comes back
    // into this function.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60", // exit
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// No assembly here for this architecture: as a kernel without `clone3`.
///
/// # Safety
/// As [`call`] (this one touches nothing).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw(_args: &CloneArgs, _child: ChildFn, _arg: *mut libc::c_void) -> i64 {
    -(libc::ENOSYS as i64)
}
