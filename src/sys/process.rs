//! Processes: signalling a pid or a group, reaping, and the child
//! subreaper (contract §3.6).

use std::io;

use super::check;

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
