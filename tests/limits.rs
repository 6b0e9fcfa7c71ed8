//! Limits (CONTRACT §1, §3.6): `--max-procs`, `--max-conns`, `--timeout`.
mod common;

use common::*;
use std::time::{Duration, Instant};

/// §1: `--max-procs 1`: a second concurrent /run → 503 with Retry-After;
/// after the first ends, a new one works.
#[test]
fn max_procs_503_with_retry_after() {
    let s = Server::start(&["--max-procs", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("sleep {}", m))), &[]));
    c.read_head().assert_status(200, "first /run");
    wait_until(Duration::from_secs(5), "the first command to start", || {
        !live_marked(&m).is_empty()
    });

    let r = s.get("/run?command=echo%20second");
    r.assert_status(503, "second /run past --max-procs 1");
    let ra = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After:\n{}", r.raw_head));
    assert!(
        ra.parse::<u32>().is_ok_and(|n| n >= 1),
        "Retry-After {:?} is not a positive number of seconds",
        ra
    );

    c.close();
    wait_until(
        Duration::from_secs(5),
        "the first command to be stopped after disconnect",
        || live_marked(&m).is_empty(),
    );
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(5), || {
        let r = s.get("/run?command=echo%20third");
        last = r.dump();
        r.status == 200 && Run::from_response(r, Instant::now()).stdout() == "third\n"
    });
    assert!(
        ok,
        "a new /run did not work after the first ended; last response:\n{}",
        last
    );
}

/// §1: `--max-conns 2`: a third connection gets 503 and is closed; after one
/// closes, a new connection works.
#[test]
fn max_conns_503_and_close() {
    let s = Server::start(&["--max-conns", "2"]);
    let mut a = s.connect();
    a.send(&s.req("GET", "/healthz", &[]));
    a.read_response().assert_status(200, "connection A");
    let mut b = s.connect();
    b.send(&s.req("GET", "/healthz", &[]));
    b.read_response().assert_status(200, "connection B");

    let mut c = s.connect();
    let _ = c.try_send(&s.req("GET", "/healthz", &[]));
    let r = c
        .try_read_response()
        .unwrap_or_else(|e| panic!("third connection: no 503 ({})", e));
    r.assert_status(503, "third connection past --max-conns 2");
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "third connection not closed after 503"
    );

    // B still works.
    b.send(&s.req("GET", "/healthz", &[]));
    b.read_response().assert_status(200, "connection B after the refusal");

    a.close();
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(5), || {
        let mut d = s.connect();
        if d.try_send(&s.req("GET", "/healthz", &[])).is_err() {
            return false;
        }
        match d.try_read_response() {
            Ok(r) => {
                last = r.dump();
                r.status == 200
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(ok, "no new connection accepted after closing one; last: {}", last);
}

/// §1, §3.6 (WIRE.md): `--timeout 1` kills the command: exit event with
/// `"timed_out":true` about 1 s after the start.
#[test]
fn timeout_kills_with_timed_out_flag() {
    let s = Server::start(&["--timeout", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let r = s.run(&format!("sleep {}", m));
    let took = r.last().at.duration_since(r.t0);
    assert_eq!(
        r.end,
        End::Exit {
            code: None,
            signal: Some(15),
            timed_out: true
        },
        "body:\n{}",
        r.resp.body_str()
    );
    assert!(took >= Duration::from_millis(900), "timed out after only {:?}", took);
    assert!(
        took <= Duration::from_secs(3),
        "timed out after {:?} (--timeout 1)",
        took
    );
    assert_eq!(
        json(r.last()),
        serde_json::json!({"type":"exit","code":null,"signal":15,"timed_out":true})
    );
    wait_until(Duration::from_secs(2), "the timed-out child to be gone", || {
        live_marked(&m).is_empty()
    });
}

/// §3.6: a timed-out command that ignores SIGTERM gets SIGKILL after
/// --kill-grace: signal 9 and `timed_out`.
#[test]
fn timeout_escalates_to_sigkill() {
    let s = Server::start(&["--shell", "--timeout", "1", "--kill-grace", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let r = s.run(&format!("trap '' TERM; sleep {}", m));
    let took = r.last().at.duration_since(r.t0);
    assert_eq!(
        r.end,
        End::Exit {
            code: None,
            signal: Some(9),
            timed_out: true
        },
        "body:\n{}",
        r.resp.body_str()
    );
    assert!(
        took >= Duration::from_millis(1900),
        "ended after {:?}: before timeout 1 + grace 1",
        took
    );
    assert!(took <= Duration::from_secs(4), "ended after {:?}", took);
    wait_until(Duration::from_secs(2), "the child to be gone", || {
        live_marked(&m).is_empty()
    });
}

/// Issue 11 target 3: a running stream costs at most three descriptors of
/// the server (its socket and the child's two pipes; no pidfd per child):
/// what lets thousands of streams fit a 20,000-descriptor limit.
#[test]
fn each_stream_costs_at_most_three_descriptors() {
    const STREAMS: usize = 16;
    let s = Server::start(&[]);
    assert_eq!(s.run("echo warm").stdout(), "warm\n", "warm-up /run");
    let baseline = s.settled_fd_count();
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let target = format!("/run?command={}", pct(&format!("sleep {}", m)));
    let mut conns = Vec::new();
    for i in 0..STREAMS {
        let mut c = s.connect();
        c.send(&s.req("GET", &target, &[]));
        c.read_head().assert_status(200, &format!("stream {i}"));
        conns.push(c);
    }
    wait_until(Duration::from_secs(10), "every command to start", || {
        live_marked(&m).len() == STREAMS
    });
    let held = s.settled_fd_count();
    let per_stream = (held - baseline) as f64 / STREAMS as f64;
    assert!(
        held - baseline <= 3 * STREAMS,
        "{STREAMS} streams hold {} descriptors ({per_stream:.2} each, want <= 3); fds: {:?}",
        held - baseline,
        fd_list(s.pid())
    );
    for c in conns {
        c.close();
    }
    wait_until(Duration::from_secs(10), "the commands to be stopped", || {
        live_marked(&m).is_empty()
    });
    s.wait_no_children(Duration::from_secs(10));
    s.wait_fds_back_to(baseline, Duration::from_secs(5));
}

/// Many children exiting at once (one SIGCHLD may stand for many exits):
/// each stream still gets its own child's exact exit code or signal.
#[test]
fn burst_of_exits_each_get_their_own_status() {
    const STREAMS: usize = 40;
    let s = Server::start(&["--max-procs", "100"]);
    let marker = common::marker_path("burst");
    // Every command waits for the marker file, so they all end together.
    let handles: Vec<_> = (0..STREAMS)
        .map(|i| {
            let script = if i % 4 == 3 {
                format!("while [ ! -e {} ]; do sleep 0.01; done; kill -KILL $$", marker.str())
            } else {
                format!("while [ ! -e {} ]; do sleep 0.01; done; exit {}", marker.str(), i % 200)
            };
            let target = format!("/run?command={}", pct(&format!("sh -c {}", shell_quote(&script))));
            let mut c = s.connect();
            c.send(&s.req("GET", &target, &[]));
            std::thread::spawn(move || c.read_run(Instant::now()))
        })
        .collect();
    wait_until(Duration::from_secs(10), "every command to start", || {
        s.children().len() >= STREAMS
    });
    std::fs::write(marker.path(), b"go").expect("write the marker file");
    for (i, handle) in handles.into_iter().enumerate() {
        let run = handle.join().expect("reader thread");
        let want = if i % 4 == 3 {
            End::signal(libc::SIGKILL as i64)
        } else {
            End::code((i % 200) as i64)
        };
        run.assert_end(want);
    }
    s.wait_no_children(Duration::from_secs(10));
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Voluntary context switches of the server's (one) thread: each return
/// from a sleeping `epoll_wait` adds one.
fn wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc/PID/status")
}

/// Issue 11 target 5: once a load is over (short commands, an abandoned
/// stream stopped with SIGTERM, a command with a stray in the background,
/// a timeout), the server sleeps: no timer is left armed (kill grace, FIN
/// probe, cgroup clean-up retries, linger), so it does not wake at all.
#[test]
fn no_wakeup_while_idle_after_a_load() {
    let s = Server::start(&["--kill-grace", "1", "--max-procs", "100"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    for _ in 0..20 {
        assert_eq!(s.run("true").stdout(), "", "a short command");
    }
    // A stray left in the background: killed after the grace.
    let stray = format!("sh -c {}", shell_quote(&format!("sleep {m} & echo started")));
    assert_eq!(s.run(&stray).stdout(), "started\n");
    // An abandoned stream, and one the client half-closes.
    let target = format!("/run?command={}", pct(&format!("sleep {}", m)));
    let mut gone = s.connect();
    gone.send(&s.req("GET", &target, &[]));
    gone.read_head().assert_status(200, "stream to abandon");
    let mut half = s.connect();
    half.send(&s.req("GET", &target, &[]));
    half.read_head().assert_status(200, "stream to half-close");
    half.shutdown_write();
    gone.close();
    std::thread::sleep(Duration::from_millis(300));
    half.close();
    wait_until(Duration::from_secs(10), "every command to be stopped", || {
        live_marked(&m).is_empty()
    });
    s.wait_no_children(Duration::from_secs(10));
    // Past the linger and the kill grace, and the cgroup clean-up.
    std::thread::sleep(Duration::from_millis(2500));
    let before = wakeups(s.pid());
    std::thread::sleep(Duration::from_secs(3));
    let after = wakeups(s.pid());
    assert_eq!(
        after,
        before,
        "the idle server woke {} times in 3 s after a load",
        after - before
    );
}

/// A server started with descriptors 0 and 2 closed (a careless supervisor) still
/// gives every command its own stdout and stderr: the spawn path places a
/// child's stdio at 0-2 for the moment of the clone, so none of the server's
/// pipes or sockets may sit there. Connections come and go between the
/// commands so a low descriptor is freed and taken again.
#[test]
fn stdin_and_stderr_closed_at_start_lose_no_output() {
    let setup = |cmd: &mut std::process::Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: close is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(0);
                libc::close(2);
                Ok(())
            });
        }
    };
    let s = Server::start_with(&[], &[], setup);
    for i in 0..12 {
        // Connections that open and close before the command, so the
        // lowest descriptors are free again when its pipes are made.
        let early = s.connect();
        let second = s.connect();
        std::thread::sleep(Duration::from_millis(30));
        drop(early);
        drop(second);
        std::thread::sleep(Duration::from_millis(30));
        let run = s.run(&format!("sh -c 'echo out{i}; echo err{i} >&2'"));
        run.assert_end(End::code(0));
        assert_eq!(run.stdout(), format!("out{i}\n"), "command {i}: stdout");
        assert_eq!(run.stderr(), format!("err{i}\n"), "command {i}: stderr");
    }
}

/// The `posix_spawn` fallback (what qemu-user and kernels before 5.9 get,
/// forced here by `SSECOMMANDER_SPAWN=posix_spawn`) runs commands as the
/// clone path does: output, exit code, a missing program's `err`, only
/// stdio inherited, a disconnect that stops the command.
#[test]
fn posix_spawn_fallback_runs_commands_the_same() {
    for path in ["launch", "clone", "posix_spawn"] {
        let s = Server::start_env(&[], &[("SSECOMMANDER_SPAWN", path)]);
        if path == "posix_spawn" {
            assert!(
                s.log().contains("spawn: posix_spawn"),
                "{path}: no log line:\n{}",
                s.log()
            );
        }
        let run = s.run("sh -c 'echo out; echo err >&2; exit 3'");
        run.assert_end(End::code(3));
        assert_eq!((run.stdout(), run.stderr()), ("out\n".into(), "err\n".into()), "{path}");
        let missing = s.run("no-such-program-xyz");
        assert!(
            matches!(missing.end, End::Err(ref m) if m.contains("no-such-program-xyz")),
            "{path}: {:?}",
            missing.end
        );
        let fds = s.run("ls /proc/self/fd");
        fds.assert_end(End::code(0));
        let listed: Vec<String> = fds.stdout().lines().map(str::to_owned).collect();
        // ls's own directory descriptor is the fourth.
        assert!(
            listed.len() <= 4 && listed.iter().take(3).eq(["0", "1", "2"].iter()),
            "{path}: {listed:?}"
        );
        let fd_base = s.settled_fd_count();
        let marker = sleep_marker();
        let mut c = s.connect();
        c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("sleep {marker}"))), &[]));
        wait_until(Duration::from_secs(10), "the sleep started", || {
            !s.children().is_empty()
        });
        c.close();
        s.wait_no_children(Duration::from_secs(10));
        s.wait_fds_back_to(fd_base, Duration::from_secs(10));
    }
    let bad = run_binary(
        &["--no-auth", "--listen", "127.0.0.1:0"],
        &[("SSECOMMANDER_SPAWN", "fork")],
        Duration::from_secs(10),
    );
    assert_ne!(bad.0.code(), Some(0), "a bad SSECOMMANDER_SPAWN must not start");
    assert!(bad.2.contains("SSECOMMANDER_SPAWN"), "stderr: {}", bad.2);
}

/// The `PATH` search stops where `execvp` stops: a program found but not
/// runnable (here a file with no valid format) is the answer, on both spawn
/// paths. Going on to a later namesake would run `/usr/bin/ls`, which
/// `--allow` did not approve.
#[test]
fn path_search_stops_at_a_program_that_cannot_run() {
    let dir = scratch_dir("badls");
    let fake = dir.path().join("ls");
    std::fs::write(&fake, b"\x01\x02 not a program\n").expect("write the fake ls");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path_var = format!("{}:/usr/bin:/bin", dir.str());
    let allow = fake.to_str().expect("utf-8 path").to_owned();
    for spawn in ["launch", "clone", "posix_spawn"] {
        let s = Server::start_env(
            &["--allow", &allow],
            &[("PATH", &path_var), ("SSECOMMANDER_SPAWN", spawn)],
        );
        let run = s.run("ls -d /etc");
        assert!(run.stdout().is_empty(), "{spawn}: a later ls ran: {:?}", run.stdout());
        assert!(
            matches!(run.end, End::Err(ref m) if m.contains("os error 8")),
            "{spawn}: expected Exec format error, got {:?}",
            run.end
        );
    }
}

/// `--allow` with an absolute path approves that executable and nothing
/// else: when the approved file cannot be run (not executable), the answer
/// is that error, on both spawn paths, not a later namesake in `PATH`
/// (which `execvp`'s search would go on to after EACCES).
#[test]
fn allowed_path_that_cannot_run_is_not_swapped_for_a_namesake() {
    let dir = scratch_dir("noexec-ls");
    let fake = dir.path().join("ls");
    std::fs::write(&fake, b"#!/bin/sh\necho fake\n").expect("write the fake ls");
    let set_mode = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    set_mode(0o644);
    let path_var = format!("{}:/usr/bin:/bin", dir.str());
    let allow = fake.to_str().expect("utf-8 path").to_owned();
    for spawn in ["launch", "clone", "posix_spawn"] {
        let s = Server::start_env(
            &["--allow", &allow],
            &[("PATH", &path_var), ("SSECOMMANDER_SPAWN", spawn)],
        );
        let run = s.run("ls -d /etc");
        assert!(run.stdout().is_empty(), "{spawn}: a later ls ran: {:?}", run.stdout());
        assert!(
            matches!(run.end, End::Err(ref m) if m.contains("os error 13")),
            "{spawn}: expected Permission denied, got {:?}",
            run.end
        );
        // Once executable, the approved file is what runs.
        set_mode(0o755);
        let run = s.run("ls -d /etc");
        run.assert_end(End::code(0));
        assert_eq!(run.stdout(), "fake\n", "{spawn}: the approved ls");
        set_mode(0o644);
    }
}
