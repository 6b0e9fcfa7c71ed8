//! What `/proc` says about a process: descriptors, memory, CPU time, state,
//! parent and children, argv. Every function answers `None` (or an empty
//! list) for a process that is gone or unreadable, never panics: a test or a
//! bench decides what a missing process means.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

/// Number of open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The open descriptors of `pid` and what they point at, as `N->target`.
pub fn fd_list(pid: u32) -> Vec<String> {
    let mut list: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| {
                    let target = fs::read_link(entry.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    format!("{}->{}", entry.file_name().to_string_lossy(), target)
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

/// True when process `pid` holds a TCP socket listening on 127.0.0.1:`port`
/// (read from `/proc/net/tcp` and the process's descriptors): tells that
/// the process answering on a port is the one a test started.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // local_address is 0100007F:PORT in hex; state 0A is LISTEN.
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    !inodes.is_empty()
        && fd_list(pid)
            .iter()
            .any(|fd| inodes.iter().any(|inode| fd.ends_with(inode.as_str())))
}

/// The numeric fields of `/proc/PID/status` (`VmRSS`, `Threads`,
/// `voluntary_ctxt_switches`, …), by name, units dropped.
pub fn status_fields(pid: u32) -> Option<HashMap<String, u64>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        status
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.to_owned(), value.split_whitespace().next()?.parse().ok()?))
            })
            .collect(),
    )
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_fields(pid)?.get("VmRSS").copied()
}

/// utime + stime of `pid` itself (not its children), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Fields 14 and 15 of the line; the first after ')' is field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU time of `pid` itself in ns from `/proc/PID/schedstat` (ns
/// resolution; absent on kernels without schedstats).
pub fn schedstat_ns(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The argv of `pid`, NUL-separated arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&bytes).replace('\0', " ").trim_end().to_owned())
}

/// Every pid in `/proc`.
fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids (other than ours) whose `/proc/PID/cmdline` contains `marker`.
pub fn pids_with_marker(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| cmdline(pid).is_some_and(|c| c.contains(marker)))
        .collect()
}

/// Pids carrying `marker` that are alive (not zombies).
pub fn live_marked(marker: &str) -> BTreeSet<u32> {
    pids_with_marker(marker).into_iter().filter(|&p| is_alive(p)).collect()
}

/// Fields of `/proc/PID/stat` after the command name: [state, ppid, pgrp, …]
/// (the name is skipped by its last `)`: it may hold spaces and parentheses).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name_end = stat.rfind(')')?;
    Some(stat[name_end + 1..].split_whitespace().map(str::to_owned).collect())
}

/// The state letter of `pid` (`R`, `S`, `D`, `Z`, …).
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Exited and not yet reaped.
pub fn is_zombie(pid: u32) -> bool {
    state(pid) == Some('Z')
}

/// Alive and not a zombie.
pub fn is_alive(pid: u32) -> bool {
    matches!(state(pid), Some(c) if c != 'Z' && c != 'X')
}

/// Parent pid of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Process group of `pid`.
pub fn pgrp(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Direct children of `pid`, zombies included (scans `/proc/*/stat`, which
/// works on every kernel, unlike `/proc/PID/task/*/children`).
pub fn children_of(pid: u32) -> Vec<u32> {
    all_pids().into_iter().filter(|&p| ppid(p) == Some(pid)).collect()
}

/// `/proc/PID/wchan`: where a sleeping process waits.
pub fn wchan(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// `wchar` of `/proc/PID/io`: bytes the process has written.
pub fn io_wchar(pid: u32) -> Option<u64> {
    io_field(pid, "wchar")
}

/// `rchar` of `/proc/PID/io`: bytes the process has read.
pub fn io_rchar(pid: u32) -> Option<u64> {
    io_field(pid, "rchar")
}

/// One `name: value` line of `/proc/PID/io`.
fn io_field(pid: u32, name: &str) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// For failure messages: pid, state and argv of each.
pub fn describe_pids(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .map(|&p| format!("{} [{}] {}", p, state(p).unwrap_or('?'), cmdline(p).unwrap_or_default()))
        .collect()
}

/// Sends `signal` to `pid` (a process the caller started, directly or
/// through the server); a pid already gone is not an error worth a panic.
pub fn send_signal(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        let _ = crate::sys::kill_pid(pid, signal);
    }
}

/// Stops `child`, which leads a process group of its own (spawned with
/// `process_group(0)`), and everything in that group: SIGTERM to the group,
/// up to `grace` for the leader to exit, then SIGKILL to the group (workers
/// that ignored the TERM), and the leader reaped.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let Ok(group) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    let _ = crate::sys::kill_group(group, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = crate::sys::kill_group(group, libc::SIGKILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_names_the_process_that_holds_the_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(listens_on(std::process::id(), port), "our own listener on {port}");
        drop(listener);
        assert!(!listens_on(std::process::id(), port), "closed, no longer ours");
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(fd_count(me).is_some_and(|n| n >= 3));
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(is_alive(me));
        assert!(cpu_ticks(me).is_some());
        assert!(!children_of(ppid(me).expect("a parent")).is_empty());
    }

    #[test]
    fn a_gone_pid_reads_as_nothing() {
        // Above the kernel's pid_max limit (4194304): never a process.
        let gone = 4_194_305;
        assert_eq!(fd_count(gone), None);
        assert_eq!(state(gone), None);
        assert!(!is_alive(gone));
    }

    #[test]
    fn stop_group_ends_the_leader_and_a_member_that_ignores_term() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        // The member ignores TERM, so only the group's KILL ends it; the
        // leader waits on it, so it lives until the TERM.
        let mut leader = Command::new("sh")
            .args(["-c", "sh -c 'trap \"\" TERM; echo $$; exec sleep 30' & wait"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(leader.stdout.take().expect("stdout"));
        std::io::BufRead::read_line(&mut out, &mut line).expect("the member's pid");
        let member: u32 = line.trim().parse().expect("a pid");
        assert_eq!(pgrp(member), Some(leader.id()), "the member is in the leader's group");
        stop_group(&mut leader, Duration::from_millis(300));
        assert!(leader.try_wait().is_ok_and(|s| s.is_some()), "the leader is reaped");
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(member) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_alive(member), "the member that ignored TERM is gone");
    }
}
