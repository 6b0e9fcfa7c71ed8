//! Spawning (CONTRACT §3.2, §3.6, §7.1): every spawn path starts a command
//! the same way, whether or not the loop waited for its `execve`
//! (`SSECOMMANDER_SPAWN=launch`, the default on x86_64; `clone`, the vfork
//! clone; `posix_spawn`, the fallback), and in its own cgroup whether it is
//! born there or the server moves (`SSECOMMANDER_CONTAINMENT=cgroup` and
//! `cgroup-migrate`).
mod common;

use common::*;
use std::time::Duration;

/// Every spawn path the server has.
const PATHS: [&str; 3] = ["launch", "clone", "posix_spawn"];

/// A file that passes every check made before a launch (a regular file, executable, an
/// ELF header) and that `execve` still refuses (ENOEXEC): on the launch path
/// it fails after the spawn has returned, and must still end in `err` for
/// `/run` and `failed` for a job, as on the other paths.
#[test]
fn an_exec_that_fails_late_is_still_err() {
    let dir = scratch_dir("late-fail");
    let bad = dir.path().join("bad-elf");
    std::fs::write(&bad, b"\x7fELF but nothing more\n").expect("write the bad program");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let program = bad.to_str().expect("utf-8 path").to_owned();
    for spawn in PATHS {
        let s = Server::start_env(&[], &[("SSECOMMANDER_SPAWN", spawn)]);
        let run = s.run(&program);
        assert!(
            matches!(run.end, End::Err(ref m) if m.contains("cannot run") && m.contains("os error 8")),
            "{spawn}: /run of a program execve refuses: expected err with Exec format error, got {:?}",
            run.end
        );
        assert!(
            run.stdout().is_empty() && run.stderr().is_empty(),
            "{spawn}: output from nothing"
        );
        let id = job_start(&s, &program)["id"].as_str().expect("a job id").to_owned();
        let job = job_wait_ended(&s, &id, Duration::from_secs(10));
        assert_eq!(
            job["state"], "failed",
            "{spawn}: the job of a program that cannot run: {job}"
        );
        assert_eq!(
            job["exit"],
            serde_json::Value::Null,
            "{spawn}: a failed job has no exit: {job}"
        );
        let watched = job_watch(&s, &id, "", &[], 1);
        assert!(
            matches!(watched.end(), End::Err(ref m) if m.contains("os error 8")),
            "{spawn}: the failed job's one event: {:?}",
            watched.end()
        );
        // The server is still fine: the next command runs.
        s.run("echo next").assert_end(End::code(0));
    }
}

/// A launched child shares the server's descriptor table until it has its
/// own: with many connections and streams open, it still holds only its
/// stdio (plus `ls`'s own directory descriptor), on every path.
#[test]
fn launched_children_hold_only_their_stdio_with_many_connections_open() {
    for spawn in PATHS {
        let s = Server::start_env(&[], &[("SSECOMMANDER_SPAWN", spawn)]);
        let marker = sleep_marker();
        let _guard = MarkerGuard(vec![marker.clone()]);
        let mut streams = Vec::new();
        for _ in 0..8 {
            let mut c = s.connect();
            c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("sleep {marker}"))), &[]));
            c.read_head().assert_status(200, "a sleeping stream");
            streams.push(c);
        }
        let idle: Vec<Conn> = (0..40).map(|_| s.connect()).collect();
        for _ in 0..20 {
            let fds = s.run("ls /proc/self/fd");
            fds.assert_end(End::code(0));
            let listed: Vec<String> = fds.stdout().lines().map(str::to_owned).collect();
            assert!(
                listed.len() <= 4 && listed.iter().take(3).eq(["0", "1", "2"].iter()),
                "{spawn}: a child holds more than its stdio: {listed:?}"
            );
        }
        drop(idle);
        for c in streams {
            c.close();
        }
        s.wait_no_children(Duration::from_secs(10));
    }
}

/// §3.6: each command runs in a cgroup of its own under the server's
/// subtree, whether it is started there (`clone3` into the cgroup) or the
/// server moves there for the spawn (`cgroup-migrate`); the server itself
/// stays home either way.
#[test]
fn a_command_runs_in_its_own_cgroup_both_ways() {
    if let Some(why) = common::cgroup_unavailable() {
        eprintln!("SKIPPED (cgroup mode): {why}");
        return;
    }
    for (mode, spawn) in [
        ("cgroup", "launch"),
        ("cgroup", "clone"),
        ("cgroup-migrate", "launch"),
        ("cgroup", "posix_spawn"),
    ] {
        let s = Server::start_env(
            &[],
            &[("SSECOMMANDER_CONTAINMENT", mode), ("SSECOMMANDER_SPAWN", spawn)],
        );
        let log = s.log();
        let subtree = log
            .lines()
            .find_map(|l| {
                l.split_once("containment: cgroup v2 at ")
                    .map(|(_, at)| at.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{mode}: no cgroup mode line in the log:\n{log}"));
        if mode == "cgroup-migrate" {
            assert!(
                !log.contains("CLONE_INTO_CGROUP"),
                "{mode}: the server must move, not clone into: {log}"
            );
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            let run = s.run("cat /proc/self/cgroup");
            run.assert_end(End::code(0));
            let out = run.stdout();
            let line = out
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or_else(|| panic!("{mode}/{spawn}: no cgroup v2 line in {out:?}"))
                .to_owned();
            assert!(
                subtree.ends_with(line.rsplit_once('/').map_or("", |(dir, _)| dir))
                    && line.rsplit_once('/').is_some_and(|(_, leaf)| leaf.starts_with("cmd-")),
                "{mode}/{spawn}: the command ran in {line}, not in a cmd-N cgroup under {subtree}"
            );
            seen.push(line);
        }
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", s.pid())).unwrap_or_default();
        assert!(
            !own.lines().any(|l| l.starts_with("0::") && l.contains("/cmd-")),
            "{mode}/{spawn}: the server stayed in a command's cgroup: {own}"
        );
    }
}

/// A command starts with none of SIGINT, SIGTERM, SIGCHLD and SIGPIPE
/// blocked or ignored, on every path: the server blocks the first three (it
/// reads them from a signalfd) and std ignores SIGPIPE, and neither may
/// reach a command (it would ignore SIGTERM and Ctrl-C, or never die of a
/// closed pipe). Other bits are whatever the test's environment passed on.
#[test]
fn a_command_starts_with_none_of_our_signals_blocked_or_ignored() {
    let ours: u64 = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD, libc::SIGPIPE]
        .iter()
        .map(|&signal| 1u64 << (signal - 1))
        .sum();
    for spawn in PATHS {
        let s = Server::start_env(&[], &[("SSECOMMANDER_SPAWN", spawn)]);
        let run = s.run("cat /proc/self/status");
        run.assert_end(End::code(0));
        let out = run.stdout();
        for field in ["SigBlk:", "SigIgn:"] {
            let value = out
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .unwrap_or_else(|| panic!("{spawn}: no {field} in {out:?}"))
                .trim();
            let bits = u64::from_str_radix(value, 16).unwrap_or_else(|_| panic!("{spawn}: {field} {value:?}"));
            assert_eq!(bits & ours, 0, "{spawn}: the command started with {field} {value}");
        }
    }
}

/// Out of descriptors (a hard limit of 64, filled with idle connections),
/// a command that cannot get its pipes ends in `err` on every path, the
/// server keeps serving, and once descriptors are free again the next
/// command runs: the launch path's reserved triples take none of those.
#[test]
fn out_of_descriptors_a_command_gets_err_and_the_next_runs() {
    const LIMIT: u64 = 64;
    for spawn in PATHS {
        let s = Server::start_with(&[], &[("SSECOMMANDER_SPAWN", spawn)], |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the
            // child's limits; the struct lives for the call.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: LIMIT,
                        rlim_max: LIMIT,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        s.run("true").assert_end(End::code(0));
        let base = s.settled_fd_count();
        assert!(
            base + 8 < LIMIT as usize,
            "{spawn}: {base} descriptors at rest under a limit of {LIMIT}"
        );
        // Idle connections until one descriptor is left after the /run
        // connection: a pipe needs two.
        let mut idle = Vec::new();
        while s.fd_count() + 2 < LIMIT as usize && idle.len() < LIMIT as usize {
            let want = s.fd_count() + 1;
            idle.push(s.connect());
            wait_until(Duration::from_secs(5), "the server accepted an idle connection", || {
                s.fd_count() >= want
            });
        }
        let starved = s.run("echo starved");
        assert!(
            matches!(starved.end, End::Err(ref m) if m.contains("Too many open files")),
            "{spawn}: a command with no descriptors left for its pipes: {:?}",
            starved.end
        );
        drop(idle);
        s.wait_fds_back_to(base, Duration::from_secs(10));
        let next = s.run("echo next");
        next.assert_end(End::code(0));
        assert_eq!(next.stdout(), "next\n", "{spawn}: the command after the shortage");
    }
}

/// A script found first on `PATH` whose interpreter is missing makes
/// `execve` say ENOENT, and the search goes on to a later namesake, as
/// `execvp`'s does, on every path (the launch path leaves such a script to
/// the vfork clone rather than fail it late).
#[test]
fn a_script_with_a_missing_interpreter_lets_the_path_search_go_on() {
    let first = scratch_dir("no-interp");
    let second = scratch_dir("has-interp");
    let write = |dir: &TempPath, body: &[u8]| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("ssec-tool");
        std::fs::write(&path, body).expect("write the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    write(&first, b"#!/no/such/interpreter\necho first\n");
    write(&second, b"#!/bin/sh\necho second\n");
    let path_var = format!("{}:{}:/usr/bin:/bin", first.str(), second.str());
    for spawn in PATHS {
        let s = Server::start_env(&[], &[("PATH", &path_var), ("SSECOMMANDER_SPAWN", spawn)]);
        let run = s.run("ssec-tool");
        run.assert_end(End::code(0));
        assert_eq!(run.stdout(), "second\n", "{spawn}: the later namesake runs");
    }
}

/// The server's sleeping wake-ups so far: each return from a sleeping
/// `epoll_wait` adds one to `voluntary_ctxt_switches`.
fn wakeups(s: &Server) -> u64 {
    status_fields(s.pid())
        .and_then(|fields| fields.get("voluntary_ctxt_switches").copied())
        .expect("voluntary_ctxt_switches in /proc/PID/status")
}

/// Waits (at most `within`) for a whole second in which the server does
/// not wake; the wake-ups of the last second looked at.
fn wait_quiet_second(s: &Server, within: Duration) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let before = wakeups(s);
        std::thread::sleep(Duration::from_secs(1));
        let woke = wakeups(s) - before;
        if woke == 0 || start.elapsed() >= within {
            return woke;
        }
    }
}

/// Thaws a frozen cgroup when dropped, so a failed test leaves nothing frozen.
struct Thaw(std::path::PathBuf);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.freeze"), "0");
    }
}

/// The launch path never polls: the loop learns from an eventfd when a
/// launched child has its own descriptor table (so the copies of its pipe
/// ends can go) and looks at whether it has exec'd only when it wakes
/// anyway. So after many short commands and with long ones running, the
/// server sleeps; and while a launched child is held before its first
/// instruction (its cgroup frozen, so it can neither unshare nor exec),
/// the server sleeps too, instead of looking every millisecond; thawed,
/// the command runs and its output ends as usual.
#[test]
fn the_loop_sleeps_while_launched_children_start_and_run() {
    let s = Server::start(&["--max-procs", "100"]);
    let log = s.log();
    if !log.contains("spawn: launch") {
        eprintln!("SKIPPED: the launch path is not used here:\n{log}");
        return;
    }
    let marker = sleep_marker();
    let _guard = MarkerGuard(vec![marker.clone()]);
    for i in 0..40 {
        let run = s.run(&format!("echo short{i}"));
        run.assert_end(End::code(0));
        assert_eq!(run.stdout(), format!("short{i}\n"), "short command {i}");
    }
    let long: Vec<String> = (0..3)
        .map(|_| {
            job_start(&s, &format!("sleep {marker}"))["id"]
                .as_str()
                .expect("a job id")
                .to_owned()
        })
        .collect();
    for i in 0..20 {
        s.run("true").assert_end(End::code(0));
        let run = s.run(&format!("echo more{i}"));
        assert_eq!(run.stdout(), format!("more{i}\n"), "short command {i} beside long ones");
    }
    wait_until(Duration::from_secs(10), "the long commands to run", || {
        live_marked(&marker).len() == long.len()
    });
    let woke = wait_quiet_second(&s, Duration::from_secs(8));
    assert_eq!(
        woke, 0,
        "with long commands running, the server still wakes: {woke} in the last second"
    );

    if let Some(why) = common::cgroup_unavailable() {
        eprintln!("SKIPPED (frozen launch): {why}");
        return;
    }
    let Some(subtree) = log.lines().find_map(|l| {
        l.split_once("containment: cgroup v2 at ")
            .map(|(_, at)| std::path::PathBuf::from(at.trim()))
    }) else {
        eprintln!("SKIPPED (frozen launch): not in cgroup mode:\n{log}");
        return;
    };
    if !subtree.join("cgroup.freeze").exists() {
        eprintln!("SKIPPED (frozen launch): no cgroup.freeze (Linux 5.2 or later)");
        return;
    }
    let _thaw = Thaw(subtree.clone());
    std::fs::write(subtree.join("cgroup.freeze"), "1").expect("freeze the command cgroups");
    wait_until(Duration::from_secs(5), "the command cgroups to freeze", || {
        std::fs::read_to_string(subtree.join("cgroup.events")).is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
    });
    let held = job_start(&s, "echo held")["id"].as_str().expect("a job id").to_owned();
    std::thread::sleep(Duration::from_millis(200));
    let before = wakeups(&s);
    std::thread::sleep(Duration::from_secs(1));
    let woke = wakeups(&s) - before;
    assert!(
        woke <= 1,
        "the server woke {woke} times in 1 s while a launched child was held before execve"
    );
    assert_eq!(job_info(&s, &held)["state"], "running", "the held command");
    std::fs::write(subtree.join("cgroup.freeze"), "0").expect("thaw the command cgroups");
    let (stdout, stderr, end) = job_output(&s, &held);
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        ("held\n", ""),
        "the held command's output"
    );
    assert_eq!(end, End::code(0), "the held command's end");
}

/// Writes an executable script `dir/name` that prints `says`.
fn write_tool(dir: &std::path::Path, name: &str, says: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho {says}\n")).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod +x");
    path
}

/// Runs `program` and expects it to print `want` and exit 0.
fn expect_says(s: &Server, spawn: &str, program: &str, want: &str, when: &str) {
    let run = s.run(program);
    assert_eq!(
        (run.stdout(), &run.end),
        (format!("{want}\n"), &End::code(0)),
        "{spawn}: {program} {when}"
    );
}

/// §3.2: the `PATH` search sees what changes in `PATH`'s directories
/// between two commands, though the launch path remembers where it found
/// a program (issue 21: it no longer looks again in the directories
/// before it unless one changed): a namesake put into an earlier
/// directory (written there, or renamed in) runs at the next command, and
/// once it is gone the later one runs again; a program made not
/// executable and a name found nowhere answer as they always did.
#[test]
fn the_path_search_sees_programs_come_and_go() {
    let first = scratch_dir("path-first");
    let second = scratch_dir("path-second");
    let elsewhere = scratch_dir("path-elsewhere");
    let found_later = write_tool(second.path(), "ssec-which", "B");
    let path_var = format!("{}:{}:/usr/bin:/bin", first.str(), second.str());
    let earlier = first.path().join("ssec-which");
    for spawn in PATHS {
        let s = Server::start_env(&[], &[("PATH", &path_var), ("SSECOMMANDER_SPAWN", spawn)]);
        // Twice: the second is the one a remembered search serves.
        expect_says(&s, spawn, "ssec-which", "B", "found in the second directory");
        expect_says(&s, spawn, "ssec-which", "B", "found there again");

        write_tool(first.path(), "ssec-which", "A");
        expect_says(&s, spawn, "ssec-which", "A", "written into the first directory");
        expect_says(&s, spawn, "ssec-which", "A", "still in the first directory");
        std::fs::remove_file(&earlier).expect("remove the first one");
        expect_says(&s, spawn, "ssec-which", "B", "after the first was removed");

        let staged = write_tool(elsewhere.path(), "ssec-which", "moved");
        std::fs::rename(&staged, &earlier).expect("rename into the first directory");
        expect_says(&s, spawn, "ssec-which", "moved", "renamed into the first directory");
        std::fs::rename(&earlier, &staged).expect("rename out of the first directory");
        expect_says(&s, spawn, "ssec-which", "B", "after it was renamed away");

        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&found_later, std::fs::Permissions::from_mode(0o644)).expect("chmod -x");
        }
        let denied = s.run("ssec-which");
        assert_eq!(
            denied.end,
            End::Err("cannot run ssec-which: Permission denied (os error 13)".to_owned()),
            "{spawn}: the program found is not executable"
        );
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&found_later, std::fs::Permissions::from_mode(0o755)).expect("chmod +x");
        }
        expect_says(&s, spawn, "ssec-which", "B", "executable again");

        let missing = s.run("ssec-no-such-tool");
        assert_eq!(
            missing.end,
            End::Err("cannot run ssec-no-such-tool: No such file or directory (os error 2)".to_owned()),
            "{spawn}: a name found nowhere on PATH"
        );
    }
}

/// A `PATH` directory that does not exist when the server starts (so it
/// cannot be watched) is looked in at every command: one made later is
/// searched at the next. One that existed and is removed and made again is
/// searched again too (its watch went with it, and a new one is made).
#[test]
fn the_path_search_sees_directories_made_later_and_remade() {
    let parent = scratch_dir("path-parent");
    let second = scratch_dir("path-second");
    write_tool(second.path(), "ssec-which", "B");
    let late = parent.path().join("late");
    let remade = parent.path().join("remade");
    let path_var = format!("{}:{}:{}:/usr/bin:/bin", late.display(), remade.display(), second.str());
    for spawn in PATHS {
        std::fs::create_dir(&remade).expect("make the directory to remove later");
        let s = Server::start_env(&[], &[("PATH", &path_var), ("SSECOMMANDER_SPAWN", spawn)]);
        expect_says(&s, spawn, "ssec-which", "B", "with the first directory missing");
        expect_says(&s, spawn, "ssec-which", "B", "again with it missing");

        std::fs::create_dir(&late).expect("make the first directory");
        write_tool(&late, "ssec-which", "A");
        expect_says(&s, spawn, "ssec-which", "A", "in the directory made later");
        std::fs::remove_dir_all(&late).expect("remove the first directory");
        expect_says(&s, spawn, "ssec-which", "B", "after the first directory went");
        expect_says(&s, spawn, "ssec-which", "B", "again after it went");

        std::fs::remove_dir(&remade).expect("remove the watched directory");
        expect_says(&s, spawn, "ssec-which", "B", "after the watched directory went");
        expect_says(&s, spawn, "ssec-which", "B", "again after the watched directory went");
        std::fs::create_dir(&remade).expect("make the watched directory again");
        write_tool(&remade, "ssec-which", "again");
        expect_says(&s, spawn, "ssec-which", "again", "in the directory made again");
        std::fs::remove_dir_all(&remade).expect("remove the directory made again");
    }
}
