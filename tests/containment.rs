//! Containment (CONTRACT v3 §3.6): a process that leaves the command's
//! process group (`setsid`, a grandchild's `setpgid`, a background `setsid`
//! whose parent exits) is still stopped when the client leaves, at
//! `--timeout`, when the command exits, and when the server shuts down — in
//! both modes: cgroup v2 (skipped, saying why, where no writable cgroup v2
//! exists) and the subreaper fallback (forced with SSECOMMANDER_CONTAINMENT).
mod common;

use common::*;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How the server is told to contain commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cgroup,
    /// cgroup mode with the server moving into each command's cgroup.
    CgroupMigrate,
    Subreaper,
}

impl Mode {
    fn env(self) -> &'static str {
        match self {
            Mode::Cgroup => "cgroup",
            Mode::CgroupMigrate => "cgroup-migrate",
            Mode::Subreaper => "subreaper",
        }
    }
}

/// Held while a server starts: a cgroup-mode start-up clears what dead
/// servers left, which a test of that must see happen in its own server.
static STARTING: Mutex<()> = Mutex::new(());

/// Starts a server in `mode`, or says why cgroup mode is skipped.
fn start(mode: Mode, args: &[&str]) -> Option<Server> {
    let _starting = STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    start_unlocked(mode, args)
}

/// [`start`], for a caller that holds [`STARTING`].
fn start_unlocked(mode: Mode, args: &[&str]) -> Option<Server> {
    if mode != Mode::Subreaper {
        if let Some(why) = common::cgroup_unavailable() {
            eprintln!("SKIPPED (cgroup mode): {why}");
            return None;
        }
    }
    let mut all = vec!["--no-auth"];
    all.extend_from_slice(args);
    Some(Server::start_env(&all, &[("SSECOMMANDER_CONTAINMENT", mode.env())]))
}

/// The start-up log line naming the containment mode, if there is one.
fn containment_line(s: &Server) -> Option<String> {
    let mut line = None;
    poll_until(Duration::from_secs(2), || {
        line = s.log().lines().find(|l| l.contains("containment:")).map(str::to_owned);
        line.is_some()
    });
    line
}

/// The command cgroups' subtree, as the log line names it (cgroup mode).
fn subtree(s: &Server) -> Option<PathBuf> {
    let line = containment_line(s)?;
    let at = line.split_once("cgroup v2 at ")?.1;
    Some(PathBuf::from(at.trim()))
}

/// §3.6: the start-up log line says which mode is active.
fn log_names_mode(mode: Mode) {
    let Some(s) = start(mode, &[]) else { return };
    let expected = match mode {
        Mode::Cgroup | Mode::CgroupMigrate => "containment: cgroup v2 at /",
        Mode::Subreaper => "containment: subreaper (",
    };
    let line = containment_line(&s);
    assert!(
        line.as_deref().is_some_and(|l| l.contains(expected)),
        "§3.6: the start-up log must name the mode ({expected:?}); got {line:?}; log:\n{}",
        s.log()
    );
    if let Some(dir) = subtree(&s) {
        assert!(
            dir.is_dir(),
            "the cgroup subtree the log names, {}, does not exist",
            dir.display()
        );
    }
}

/// A way of leaving the process group; each prints the stray's pid first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// `setsid -w` as the command itself: it forks (it leads the group), the
    /// child makes a new session and the command waits for it.
    Setsid,
    /// A daemon's fork: `setsid -f` under a shell that lives on for `tail`;
    /// the stray is orphaned at once, while the command still runs.
    ForkedSetsid,
    /// `setsid` in the background of a shell that lives on for `tail`.
    BackgroundSetsid,
    /// A Python grandchild that calls `os.setpgid(0, 0)`.
    PythonSetpgid,
}

/// Every escape (the command never exits on its own with [`Escape::Setsid`]).
const ESCAPES: [Escape; 4] = [
    Escape::Setsid,
    Escape::ForkedSetsid,
    Escape::BackgroundSetsid,
    Escape::PythonSetpgid,
];

/// The escapes whose command exits on its own, after `tail`.
const EXITING: [Escape; 3] = [Escape::ForkedSetsid, Escape::BackgroundSetsid, Escape::PythonSetpgid];

/// The escapes this machine can run: the `setpgid` one needs python3, an
/// outside tool (left out with a SKIPPED line outside CI when missing).
fn runnable(escapes: &[Escape]) -> Vec<Escape> {
    let python = |e: &Escape| *e != Escape::PythonSetpgid || python3_present();
    escapes.iter().copied().filter(python).collect()
}

fn python3_present() -> bool {
    use ssecommander::harness::outside;
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| outside::runs("python3", &["-c", "import os"]));
    outside::available(found, "python3 (the setpgid escape)", "apt-get install python3")
}

/// The command line (argv mode) for `escape`, whose stray carries `marker`
/// in its argv; the leader shell (if any) waits `tail` seconds, then exits.
fn command(escape: Escape, marker: &str, tail: &str) -> String {
    match escape {
        Escape::Setsid => format!("setsid -w sh -c 'echo $$; exec sleep {marker}'"),
        Escape::ForkedSetsid => {
            format!(r#"sh -c 'setsid -f sh -c "echo \$\$; exec sleep {marker}"; sleep {tail}'"#)
        }
        Escape::BackgroundSetsid => {
            format!(r#"sh -c 'setsid sh -c "echo \$\$; exec sleep {marker}" & sleep {tail}'"#)
        }
        Escape::PythonSetpgid => format!(
            r#"sh -c 'python3 -c "import os, time; os.setpgid(0, 0); print(os.getpid(), flush=True); time.sleep(300)" {marker} & sleep {tail}'"#
        ),
    }
}

/// One stray to watch: its pid (as it printed it) and its argv marker.
struct Stray {
    escape: Escape,
    pid: u32,
    marker: String,
}

impl Stray {
    /// Gone: no process with this pid and marker, and no zombie of the
    /// server's (a zombie left to init is init's to reap).
    fn is_gone(&self, server: u32) -> bool {
        match state(self.pid) {
            None => true,
            Some('Z') | Some('X') => ppid(self.pid) != Some(server),
            Some(_) => !cmdline(self.pid).is_some_and(|c| c.contains(&self.marker)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:?} stray {} (state {:?}, ppid {:?}, pgrp {:?}, cmdline {:?})",
            self.escape,
            self.pid,
            state(self.pid),
            ppid(self.pid),
            pgrp(self.pid),
            cmdline(self.pid)
        )
    }
}

/// A stream being read: its connection, body state and parser.
struct Stream {
    c: Conn,
    body: Body,
    parser: SseParser,
    what: String,
}

impl Stream {
    /// Reads until `done` holds for the events so far; panics after 10 s.
    fn read_until(&mut self, mut done: impl FnMut(&Event) -> bool) -> Option<Event> {
        let until = Instant::now() + Duration::from_secs(10);
        for _ in 0..10_000 {
            assert!(Instant::now() < until, "{}: nothing awaited within 10 s", self.what);
            let (piece, at) = self.c.read_body_some(&mut self.body, 64 * 1024)?;
            for item in self.parser.feed(&piece, at) {
                if let Item::Event(e) = item {
                    if done(&e) {
                        return Some(e);
                    }
                }
            }
        }
        panic!("{}: too many reads", self.what);
    }

    /// Reads the stray's pid: the first stdout line.
    fn read_pid(&mut self) -> u32 {
        let what = self.what.clone();
        let event = self
            .read_until(|e| e.event == "stdout")
            .unwrap_or_else(|| panic!("{what}: the stream ended before the stray printed its pid"));
        let v: serde_json::Value = serde_json::from_str(&event.data).expect("json data");
        let out = v["out"].as_str().unwrap_or("");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{what}: not a pid: {out:?}"))
    }

    /// Reads to the `exit` event and returns its data.
    fn read_exit(&mut self) -> String {
        let what = self.what.clone();
        self.read_until(|e| e.event == "exit")
            .unwrap_or_else(|| panic!("{what}: the stream ended without an exit event"))
            .data
    }
}

/// Opens a stream of `escape`'s command and returns it once the stray runs.
fn open(s: &Server, escape: Escape, tail: &str) -> (Stream, Stray) {
    let marker = sleep_marker();
    let cmd = command(escape, &marker, tail);
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&cmd)), &[]));
    let resp = c.read_head();
    resp.assert_status(200, &cmd);
    let body = c.body(&resp);
    let mut stream = Stream {
        c,
        body,
        parser: SseParser::new(),
        what: cmd,
    };
    let pid = stream.read_pid();
    let stray = Stray { escape, pid, marker };
    wait_until(Duration::from_secs(5), "the stray to leave the command's group", || {
        cmdline(pid).is_some_and(|line| line.contains(&stray.marker)) && pgrp(pid) == Some(pid)
    });
    (stream, stray)
}

/// Waits until every stray is gone; fails naming those that are not. The
/// strays are SIGKILLed by pid afterwards either way.
fn assert_gone(s: &Server, strays: &[Stray], within: Duration, when: &str) {
    let _cleanup = MarkerGuard(strays.iter().map(|st| st.marker.clone()).collect());
    let server = s.pid();
    let all_gone = poll_until(within, || strays.iter().all(|st| st.is_gone(server)));
    let left: Vec<String> = strays
        .iter()
        .filter(|st| !st.is_gone(server))
        .map(Stray::describe)
        .collect();
    assert!(
        all_gone && left.is_empty(),
        "§3.6 containment: {when}, still there after {within:?}: {left:#?}\nserver log:\n{}",
        s.log()
    );
}

/// Grace (2 s, the default) + 2 s.
const GONE_WITHIN: Duration = Duration::from_secs(4);

fn disconnect(mode: Mode) {
    let Some(s) = start(mode, &[]) else { return };
    let opened: Vec<(Stream, Stray)> = runnable(&ESCAPES).into_iter().map(|e| open(&s, e, "30")).collect();
    let mut strays = Vec::new();
    for (stream, stray) in opened {
        stream.c.close();
        strays.push(stray);
    }
    assert_gone(&s, &strays, GONE_WITHIN, "after the client disconnected");
}

fn timeout(mode: Mode) {
    let Some(s) = start(mode, &["--timeout", "1"]) else {
        return;
    };
    let opened: Vec<(Stream, Stray)> = runnable(&ESCAPES).into_iter().map(|e| open(&s, e, "30")).collect();
    let mut strays = Vec::new();
    for (mut stream, stray) in opened {
        let exit = stream.read_exit();
        assert!(exit.contains(r#""timed_out":true"#), "{}: exit {exit}", stream.what);
        strays.push(stray);
    }
    // The streams end when the leaders are gone; the strays have had
    // SIGTERM by then, and SIGKILL comes after the grace.
    assert_gone(&s, &strays, GONE_WITHIN, "after --timeout 1");
}

fn command_exits(mode: Mode) {
    let Some(s) = start(mode, &[]) else { return };
    let opened: Vec<(Stream, Stray)> = runnable(&EXITING).into_iter().map(|e| open(&s, e, "1")).collect();
    let mut strays = Vec::new();
    for (mut stream, stray) in opened {
        // The leader exits on its own (1 s in, well after the stray left its
        // group), with the client still there.
        let exit = stream.read_exit();
        assert!(exit.contains(r#""code":0"#), "{}: exit {exit}", stream.what);
        strays.push(stray);
    }
    assert_gone(&s, &strays, GONE_WITHIN, "after the command exited");
}

fn server_sigterm(mode: Mode) {
    let Some(mut s) = start(mode, &[]) else { return };
    let cgroups = subtree(&s);
    if mode != Mode::Subreaper {
        assert!(cgroups.is_some(), "cgroup mode: no subtree in the log:\n{}", s.log());
    }
    let opened: Vec<(Stream, Stray)> = runnable(&ESCAPES).into_iter().map(|e| open(&s, e, "30")).collect();
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(5));
    let strays: Vec<Stray> = opened.into_iter().map(|(_, stray)| stray).collect();
    assert!(status.is_some(), "the server did not exit within 5 s of SIGTERM");
    assert_gone(&s, &strays, GONE_WITHIN, "after the server exited on SIGTERM");
    if let Some(dir) = cgroups {
        assert!(
            !dir.exists(),
            "§3.6: the cgroup subtree {} outlived the server",
            dir.display()
        );
    }
}

/// The value of gauge `name` in a `/metrics` scrape (the server runs `--no-auth`).
fn gauge(s: &Server, name: &str) -> u64 {
    let r = s.get("/metrics");
    r.assert_status(200, "GET /metrics");
    let body = r.body_str();
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name || metric.ends_with(&format!("_{name}")))
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no gauge {name} in /metrics:\n{body}"))
}

/// Issue 18.4: a command counts as running (`--max-procs`,
/// `commands_running`) until its whole scope is empty, not until its leader
/// is reaped. Each job's leader dies on the DELETE's SIGTERM; the subshell it
/// started ignores SIGTERM and lives through the 10 s kill grace. Meanwhile
/// the two jobs still count: the gauge says 2 and a third POST is refused;
/// once the grace has killed them, a POST is taken again.
fn grace_still_counts(mode: Mode) {
    let Some(s) = start(mode, &["--max-procs", "2", "--kill-grace", "10"]) else {
        return;
    };
    let markers = [sleep_marker(), sleep_marker(), sleep_marker()];
    let _guard = MarkerGuard(markers.to_vec());
    let mut leaders = Vec::new();
    for marker in &markers[..2] {
        let command = format!("sh -c \"(trap '' TERM; sleep {marker}) & echo up; wait\"");
        let job = job_start(&s, &command);
        let id = job["id"].as_str().expect("a job id").to_owned();
        let leader = job["pid"].as_u64().expect("a running job's pid") as u32;
        // The sleep itself: it runs only once the subshell has set its
        // trap (a subshell seen before that would die of the SIGTERM).
        wait_until(Duration::from_secs(5), "the command's stray to start", || {
            live_marked(marker).iter().any(|&pid| {
                pid != leader && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
            })
        });
        job_delete(&s, &id).assert_status(202, "DELETE a running job");
        leaders.push(leader);
    }
    for &leader in &leaders {
        wait_until(
            Duration::from_secs(5),
            "the leader to die on SIGTERM and be reaped",
            || state(leader).is_none(),
        );
    }
    for marker in &markers[..2] {
        assert!(
            !live_marked(marker).is_empty(),
            "{mode:?}: the TERM-ignoring stray lives through the grace"
        );
    }
    assert_eq!(
        gauge(&s, "commands_running"),
        2,
        "{mode:?}: commands in their kill grace must still count as running"
    );
    job_post(&s, &format!("sleep {}", markers[2]))
        .assert_status(503, "a third POST while two commands are in their grace");
    assert!(live_marked(&markers[2]).is_empty(), "the refused POST started nothing");
    wait_until(
        Duration::from_secs(20),
        "the grace to end and its SIGKILL to land",
        || markers[..2].iter().all(|m| live_marked(m).is_empty()),
    );
    let mut last = 0;
    let freed = poll_until(Duration::from_secs(5), || {
        last = job_post(&s, &format!("sleep {}", markers[2])).status;
        last == 201
    });
    assert!(freed, "{mode:?}: a POST once the strays are gone: {last}");
}

#[test]
fn cgroup_grace_still_counts() {
    grace_still_counts(Mode::Cgroup);
}

#[test]
fn subreaper_grace_still_counts() {
    grace_still_counts(Mode::Subreaper);
}

/// Issue 18.3: a server killed with SIGKILL cannot stop its commands; the
/// next cgroup-mode server finds the cgroups of servers no longer alive
/// (`ssecommander-PID`, a dead PID) at start-up, kills what they hold (a
/// `setsid` escapee included), removes them, and logs one line per cgroup.
#[test]
fn cgroup_next_start_kills_what_a_killed_server_left() {
    let Some(mut first) = start(Mode::Cgroup, &[]) else {
        return;
    };
    let Some(old) = subtree(&first) else {
        panic!("no cgroup subtree in the log:\n{}", first.log());
    };
    let own_name = format!("ssecommander-{}", first.pid());
    if old.file_name().and_then(|n| n.to_str()) != Some(own_name.as_str()) {
        // A delegated cgroup (systemd): the subtree is the service's own.
        eprintln!("SKIPPED: the subtree {} is not named {own_name}", old.display());
        return;
    }
    let (lead, stray) = (sleep_marker(), sleep_marker());
    let _guard = MarkerGuard(vec![lead.clone(), stray.clone()]);
    let job = job_start(&first, &format!("sh -c 'setsid sleep {stray} & sleep {lead}'"));
    assert!(job["id"].is_string(), "{job}");
    wait_until(Duration::from_secs(5), "the job and its setsid stray to start", || {
        !live_marked(&lead).is_empty() && !live_marked(&stray).is_empty()
    });
    // No other test's server may start (and clear the dead one's cgroups)
    // until ours has.
    let starting = STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    first.signal(libc::SIGKILL);
    assert!(
        first.wait_exit(Duration::from_secs(5)).is_some(),
        "the server did not die on SIGKILL"
    );
    thread::sleep(Duration::from_millis(200));
    assert!(
        !live_marked(&stray).is_empty() && !live_marked(&lead).is_empty(),
        "a SIGKILLed server cannot stop its commands: they are expected to outlive it"
    );
    assert!(old.is_dir(), "the killed server's subtree {} is left", old.display());

    let Some(second) = start_unlocked(Mode::Cgroup, &[]) else {
        return;
    };
    drop(starting);
    wait_until(
        Duration::from_secs(5),
        "the killed server's commands to be killed",
        || live_marked(&stray).is_empty() && live_marked(&lead).is_empty(),
    );
    wait_until(
        Duration::from_secs(5),
        "the killed server's subtree to be removed",
        || !old.exists(),
    );
    let log = second.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&*old.to_string_lossy())).collect();
    assert!(
        lines.iter().any(|l| l.contains("cmd-")),
        "one log line per cgroup of the dead server; log:\n{log}"
    );
}

/// A command whose `setsid` stray ignores SIGTERM is ended, after the
/// grace, by SIGKILL to what its cgroup lists and `cgroup.kill` (the stray
/// is out of the group); the commands after it run normally. Linux (6.18
/// seen) SIGKILLs every child later started by `clone3` into a cgroup that
/// was once `cgroup.kill`ed, so such a cgroup must never be reused: it was,
/// and every later `echo` ended with signal 9 before printing anything.
fn runs_after_a_kill(mode: Mode) {
    let Some(s) = start(mode, &["--timeout", "0.3", "--kill-grace", "0.2"]) else {
        return;
    };
    let (lead, stray) = (sleep_marker(), sleep_marker());
    let _guard = MarkerGuard(vec![lead.clone(), stray.clone()]);
    let killed = s.run(&format!("sh -c \"trap '' TERM; setsid sleep {stray} & sleep {lead}\""));
    killed.assert_end(End::Exit {
        code: None,
        signal: Some(9),
        timed_out: true,
    });
    wait_until(
        Duration::from_secs(5),
        "the killed command and its stray to be gone",
        || live_marked(&lead).is_empty() && live_marked(&stray).is_empty(),
    );
    // The count is given back when the clean-up finds the cgroup empty: from
    // then on it is free for the next command.
    wait_until(
        Duration::from_secs(5),
        "the killed command's scope to be released",
        || gauge(&s, "commands_running") == 0,
    );
    for i in 0..20 {
        let run = s.run(&format!("echo {i}"));
        run.assert_end(End::Exit {
            code: Some(0),
            signal: None,
            timed_out: false,
        });
        assert_eq!(run.stdout(), format!("{i}\n"), "{mode:?}: run {i} after a SIGKILL");
    }
}

#[test]
fn cgroup_runs_after_a_kill() {
    runs_after_a_kill(Mode::Cgroup);
}

#[test]
fn cgroup_migrate_runs_after_a_kill() {
    runs_after_a_kill(Mode::CgroupMigrate);
}

#[test]
fn subreaper_runs_after_a_kill() {
    runs_after_a_kill(Mode::Subreaper);
}

#[test]
fn cgroup_disconnect_stops_strays() {
    disconnect(Mode::Cgroup);
}

/// The same with the server moving into each command's cgroup to start it
/// (`SSECOMMANDER_CONTAINMENT=cgroup-migrate`, the way where `clone3` into
/// a cgroup is not possible).
#[test]
fn cgroup_migrate_disconnect_stops_strays() {
    disconnect(Mode::CgroupMigrate);
}

#[test]
fn cgroup_migrate_command_exit_stops_strays() {
    command_exits(Mode::CgroupMigrate);
}

#[test]
fn cgroup_migrate_mode_is_logged() {
    log_names_mode(Mode::CgroupMigrate);
}

#[test]
fn subreaper_disconnect_stops_strays() {
    disconnect(Mode::Subreaper);
}

#[test]
fn cgroup_timeout_stops_strays() {
    timeout(Mode::Cgroup);
}

#[test]
fn subreaper_timeout_stops_strays() {
    timeout(Mode::Subreaper);
}

#[test]
fn cgroup_command_exit_stops_strays() {
    command_exits(Mode::Cgroup);
}

#[test]
fn subreaper_command_exit_stops_strays() {
    command_exits(Mode::Subreaper);
}

#[test]
fn cgroup_server_sigterm_stops_strays_and_removes_cgroups() {
    server_sigterm(Mode::Cgroup);
}

#[test]
fn subreaper_server_sigterm_stops_strays() {
    server_sigterm(Mode::Subreaper);
}

#[test]
fn cgroup_mode_is_logged() {
    log_names_mode(Mode::Cgroup);
}

#[test]
fn subreaper_mode_is_logged() {
    log_names_mode(Mode::Subreaper);
}

/// `SSECOMMANDER_CONTAINMENT=cgroup` where no cgroup can be made fails at
/// start; an unknown value too. Checked with a value only: a read-only
/// cgroupfs cannot be set up without privileges we must not use here.
#[test]
fn unknown_containment_value_fails_at_start() {
    let (status, _out, err) = run_binary(
        &["--no-auth", "--listen", "127.0.0.1:0"],
        &[("SSECOMMANDER_CONTAINMENT", "jail")],
        Duration::from_secs(5),
    );
    assert!(
        !status.success(),
        "an unknown SSECOMMANDER_CONTAINMENT must fail the start; stderr:\n{err}"
    );
    assert!(
        err.contains("SSECOMMANDER_CONTAINMENT"),
        "the error must name the variable: {err}"
    );
}

/// §3.6: where the cgroup v2 hierarchy is read-only, the server falls back
/// to the subreaper, says why in a warning, and serves. The read-only mount
/// is made in a private mount namespace (`unshare -m`), so nothing outside
/// the test sees it; skipped, saying why, where that cannot be done.
#[test]
fn read_only_cgroup_falls_back_to_subreaper() {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = info.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split(' ').next()? == "cgroup2").then(|| before.split(' ').nth(4).map(str::to_owned))?
    }) else {
        eprintln!("SKIPPED: no cgroup2 mount");
        return;
    };
    let script = format!("mount -o remount,bind,ro {mount} || exit 97; exec \"$0\" --no-auth --listen 127.0.0.1:0");
    let log = marker_path("ro-cgroup-log");
    let mut child = match std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, BIN])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(log.path()).expect("log file"))
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            eprintln!("SKIPPED: cannot run unshare: {err}");
            return;
        }
    };
    let pid = child.id();
    let mut line = None;
    let mut early_exit = None;
    poll_until(Duration::from_secs(5), || {
        line = fs::read_to_string(log.path())
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("containment:"))
            .map(str::to_owned);
        early_exit = child.try_wait().ok().flatten();
        line.is_some() || early_exit.is_some()
    });
    if line.is_none() {
        send_signal(pid, libc::SIGKILL);
    } else {
        send_signal(pid, libc::SIGTERM);
    }
    let status = child.wait().expect("wait for the server");
    if early_exit.is_some_and(|s| s.code() == Some(97)) {
        eprintln!("SKIPPED: cannot remount {mount} read-only in a private mount namespace");
        return;
    }
    let text = fs::read_to_string(log.path()).unwrap_or_default();
    let line = line.unwrap_or_else(|| panic!("no containment line; status {status:?}; log:\n{text}"));
    assert!(
        line.contains("WARN") && line.contains("containment: subreaper (no writable cgroup v2:"),
        "§3.6: a read-only cgroup v2 must give a warning and the subreaper; got {line:?}"
    );
    assert!(
        status.success(),
        "the fallback server must run and exit 0 on SIGTERM: {status:?}\n{text}"
    );
}
