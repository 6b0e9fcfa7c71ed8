//! A terminal instead of pipes (CONTRACT §10.1): `pty=1` on `/run` and
//! `POST /jobs`, `--pty`, `cols`/`rows`, and everything that must not change
//! (text, boundaries, the end of output, stopping). Real programs (Python,
//! sh, stty, cargo) on the real binary, over raw sockets.
mod common;

use common::*;
use std::time::{Duration, Instant};

/// `/run` of `command` (argv splitting) with `query` appended (e.g. `&pty=1`).
fn run_with(s: &Server, command: &str, query: &str) -> Run {
    s.run_target(&format!("/run?command={}{}", pct(command), query))
}

/// Python printing five lines 0.3 s apart, with the interpreter's own
/// buffering (`PYTHONUNBUFFERED` removed from its environment).
const PY_TICKS: &str = "env -u PYTHONUNBUFFERED python3 -c 'import time\nfor i in range(5):\n    print(\"tick\", i)\n    time.sleep(0.3)\n'";

/// When each of the five tick lines arrived.
fn tick_arrivals(run: &Run) -> Vec<Instant> {
    let mut arrivals = Vec::new();
    let mut seen = String::new();
    for e in run.events.iter().filter(|e| e.event == "stdout") {
        seen.push_str(&out_text(e));
        while arrivals.len() < 5 && seen.contains(&format!("tick {}\n", arrivals.len())) {
            arrivals.push(e.at);
        }
    }
    assert_eq!(arrivals.len(), 5, "five tick lines; stdout: {:?}", run.stdout());
    arrivals
}

/// §10.1, the point of it: Python buffers a pipe until it exits, but writes
/// each line at once to a terminal. Both halves asserted, so the test shows
/// the difference a terminal makes.
#[test]
fn python_lines_arrive_spaced_on_a_terminal_and_at_once_on_a_pipe() {
    let s = Server::start(&[]);
    let on_pty = run_with(&s, PY_TICKS, "&pty=1");
    on_pty.assert_end(End::code(0));
    assert_eq!(on_pty.stdout(), "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n");
    let t = tick_arrivals(&on_pty);
    let spread = t[4] - t[0];
    assert!(
        spread >= Duration::from_millis(800),
        "on a terminal the lines come as printed (0.3 s apart); first to last took {spread:?}"
    );
    for pair in t.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(100),
            "lines 0.3 s apart arrived {:?} apart",
            pair[1] - pair[0]
        );
    }

    let on_pipe = run_with(&s, PY_TICKS, "&pty=0");
    on_pipe.assert_end(End::code(0));
    assert_eq!(on_pipe.stdout(), "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n");
    let t = tick_arrivals(&on_pipe);
    assert!(
        t[4] - t[0] < Duration::from_millis(250),
        "on a pipe Python holds its lines until it exits: they came {:?} apart",
        t[4] - t[0]
    );
    assert!(
        t[0] - on_pipe.t0 >= Duration::from_millis(1200),
        "on a pipe the first line waits for the exit ({:?} after the request)",
        t[0] - on_pipe.t0
    );
}

/// §10.1: stdin, stdout and stderr are each a terminal, and stderr still
/// comes as `stderr` events (its own terminal); on pipes none is.
#[test]
fn all_three_streams_are_terminals_and_stderr_stays_apart() {
    for spawn in ["clone", "posix_spawn"] {
        let s = Server::start_env(&[], &[("SSECOMMANDER_SPAWN", spawn)]);
        let py = "python3 -c 'import os,sys\nprint(os.isatty(0), os.isatty(1), os.isatty(2))\nsys.stdout.flush()\nsys.stderr.write(\"to stderr\\n\")'";
        let run = run_with(&s, py, "&pty=1");
        run.assert_end(End::code(0));
        assert_eq!(run.stdout(), "True True True\n", "isatty of 0, 1, 2 ({spawn})");
        assert_eq!(run.stderr(), "to stderr\n", "stderr's bytes as stderr events ({spawn})");
        let run = run_with(&s, py, "");
        assert_eq!(
            run.stdout(),
            "False False False\n",
            "no terminal without pty=1 ({spawn})"
        );
        // The terminal is the controlling one of a new session the command leads.
        let run = run_with(&s, "sh -c 'echo hi >/dev/tty; ps -o pid=,pgid=,sid= -p $$'", "&pty=1");
        run.assert_end(End::code(0));
        let out = run.stdout();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("hi"), "/dev/tty is the terminal ({spawn}): {out:?}");
        let ids: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert!(
            ids.len() == 3 && ids[0] == ids[1] && ids[1] == ids[2],
            "pid = pgid = sid ({spawn}): {out:?}"
        );
    }
}

/// §10.1: a program that colours stderr only on a terminal does so, and
/// not on a pipe (cargo's `error:`).
#[test]
fn stderr_is_coloured_by_a_program_that_checks_for_a_terminal() {
    let s = Server::start(&[]);
    let cargo = env!("CARGO");
    let command = format!("env -u CARGO_TERM_COLOR {cargo} locate-project --manifest-path /nonexistent/Cargo.toml");
    let on_pty = run_with(&s, &command, "&pty=1");
    assert!(
        on_pty.stderr().contains("\u{1b}["),
        "colour on a terminal: {:?}",
        on_pty.stderr()
    );
    assert!(on_pty.stderr().contains("does not exist"), "{:?}", on_pty.stderr());
    let on_pipe = run_with(&s, &command, "");
    assert!(
        !on_pipe.stderr().contains('\u{1b}'),
        "no colour on a pipe: {:?}",
        on_pipe.stderr()
    );
    assert!(on_pipe.stderr().contains("does not exist"), "{:?}", on_pipe.stderr());
}

/// §10.1: the size asked for, the default 80 × 24, and TERM, COLUMNS, LINES.
#[test]
fn the_terminal_has_the_size_asked_and_its_environment() {
    let s = Server::start(&[]);
    let run = run_with(
        &s,
        "sh -c 'stty size; stty size <&2; echo $TERM $COLUMNS $LINES'",
        "&pty=1&cols=123&rows=45",
    );
    run.assert_end(End::code(0));
    assert_eq!(
        run.stdout(),
        "45 123\n45 123\nxterm-256color 123 45\n",
        "stty size of stdin and stderr"
    );
    let run = run_with(&s, "stty size", "&pty=1");
    assert_eq!(run.stdout(), "24 80\n", "the default size");
    let run = run_with(&s, "stty size", "&pty=1&cols=1&rows=1000");
    assert_eq!(run.stdout(), "1000 1\n", "the bounds are allowed");
}

/// §10.1: output processing is off: LF stays LF (no CRLF), a CR the
/// program writes stays; the JSON text is exact (§3.3), and raw too.
#[test]
fn a_line_ends_in_lf_as_on_a_pipe() {
    let s = Server::start(&[]);
    let run = run_with(&s, r"printf 'a\nb\r\nc\tß\n'", "&pty=1");
    run.assert_end(End::code(0));
    assert_eq!(run.stdout(), "a\nb\r\nc\tß\n");
    let raw = run_with(&s, r"printf 'x\ny\n'", "&pty=1&format=raw");
    let body = raw.resp.body_str();
    assert_eq!(raw.raw_lines("stdout"), ["x", "y"], "raw: {body:?}");
    assert!(!body.contains('\r'), "no CR anywhere: {body:?}");
}

/// §10.1: nothing written before the exit is lost: the end of a terminal's
/// output is read to the last byte, 50 times, and the last bytes have no
/// newline. Both spawn paths.
#[test]
fn the_last_bytes_before_exit_are_never_lost() {
    let want: String = (1..=300).map(|i| format!("{i}\n")).collect::<String>() + "LAST-BYTES";
    for (spawn, runs) in [("clone", 50), ("posix_spawn", 10)] {
        let s = Server::start_env(&[], &[("SSECOMMANDER_SPAWN", spawn)]);
        for i in 0..runs {
            let run = run_with(&s, "sh -c 'seq 1 300; printf LAST-BYTES'", "&pty=1");
            run.assert_end(End::code(0));
            assert_eq!(run.stdout(), want, "run {i} ({spawn})");
        }
        // And when the command is killed by a signal right after writing.
        let run = run_with(&s, "sh -c 'printf before-kill; kill -9 $$'", "&pty=1");
        run.assert_end(End::signal(9));
        assert_eq!(run.stdout(), "before-kill", "({spawn})");
    }
}

/// §10.1 with §3.4: a prompt without a newline is sent after the quiet
/// time, while the command still waits.
#[test]
fn a_prompt_without_newline_arrives_while_the_command_waits() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let mut c = s.connect();
    let target = format!(
        "/run?command={}&pty=1",
        pct(&format!("sh -c 'printf \"Continue? [Y/n] \"; sleep {m}'"))
    );
    let t0 = Instant::now();
    c.send(&s.req("GET", &target, &[]));
    let head = c.read_head();
    head.assert_status(200, &target);
    let mut body = c.body(&head);
    let mut parser = SseParser::new();
    let mut first = None;
    while first.is_none() && t0.elapsed() < Duration::from_secs(5) {
        let Some((bytes, at)) = c.read_body_some(&mut body, 4096) else {
            break;
        };
        for item in parser.feed(&bytes, at) {
            if let Item::Event(e) = item {
                first = Some(e);
            }
        }
    }
    let first = first.expect("an event within 5 s");
    assert_eq!(first.event, "stdout");
    assert_eq!(out_text(&first), "Continue? [Y/n] ");
    assert!(
        first.at - t0 < Duration::from_secs(2),
        "the prompt came {:?} after the request",
        first.at - t0
    );
    assert!(!live_marked(&m).is_empty(), "the command still waits");
}

/// §10.1 with §3.6: a client that leaves stops a command on a terminal and
/// its whole group (the session it leads), as on pipes.
#[test]
fn a_disconnect_stops_a_terminal_command_and_its_group() {
    let s = Server::start(&[]);
    let (m1, m2) = (sleep_marker(), sleep_marker());
    let _g = MarkerGuard(vec![m1.clone(), m2.clone()]);
    let mut c = s.connect();
    let target = format!(
        "/run?command={}&pty=1",
        pct(&format!("sh -c 'sleep {m1} & sleep {m2}'"))
    );
    c.send(&s.req("GET", &target, &[]));
    c.read_head().assert_status(200, &target);
    let p1 = wait_marked(&m1);
    let p2 = wait_marked(&m2);
    assert_eq!(pgrp(p1), pgrp(p2), "both in the command's group");
    assert_ne!(pgrp(p1), pgrp(s.pid()), "not the server's group");
    c.close();
    wait_until(
        Duration::from_secs(4),
        "the command and its background sleep to be gone",
        || live_marked(&m1).is_empty() && live_marked(&m2).is_empty(),
    );
    wait_until(Duration::from_secs(2), "the server to reap its child", || {
        s.children().is_empty()
    });
}

/// The pid of the one live `sleep` whose argv holds `marker`, within 5 s
/// (the `sh -c` line that started it holds the marker too).
fn wait_marked(marker: &str) -> u32 {
    wait_marked_program(marker, "sleep")
}

/// §10.1: `cols`, `rows`, `pty` and `stdin` out of range or malformed are
/// `400` on both routes, and nothing runs.
#[test]
fn bad_terminal_parameters_are_400() {
    let s = Server::start(&[]);
    for query in [
        "&pty=1&cols=0",
        "&pty=1&cols=1001",
        "&pty=1&rows=0",
        "&pty=1&rows=abc",
        "&pty=1&cols=%2B80",
        "&pty=1&cols=",
        "&cols=99999",
        "&pty=2",
        "&pty=yes",
        "&stdin=2",
    ] {
        for (method, path) in [("GET", "/run"), ("POST", "/jobs")] {
            let r = s.request(&s.req(method, &format!("{path}?command=true{query}"), &[]));
            r.assert_status(400, &format!("{method} {path} {query}"));
        }
    }
    let r = s.get("/run?command=true&stdin=1");
    r.assert_status(400, "stdin=1 on /run (it has no input route)");
    assert!(r.body_str().contains("POST /jobs"), "{}", r.body_str());
}

/// §1 `--pty`: on by default, `pty=0` turns it off for one request.
#[test]
fn pty_flag_makes_it_the_default_and_pty_0_turns_it_off() {
    let s = Server::start(&["--pty"]);
    assert_eq!(run_with(&s, "tty -s", "").end, End::code(0), "on a terminal by default");
    assert_eq!(run_with(&s, "tty -s", "&pty=0").end, End::code(1), "pty=0: pipes");
    let job = job_start(&s, "true");
    assert_eq!(job["pty"], true, "{job}");
    let r = s.request(&s.req("POST", "/jobs?command=true&pty=0", &[]));
    r.assert_status(201, "POST /jobs pty=0");
    assert_eq!(job_json_of(&r)["pty"], false);
}

/// §10.1, §10.2: `GET /jobs/ID` shows `pty`, `size` and `stdin`, and the job
/// on a terminal runs there.
#[test]
fn a_job_shows_its_terminal_and_stdin() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let r = s.request(&s.req(
        "POST",
        &format!("/jobs?command={}&pty=1&cols=100&rows=20", pct(&format!("sleep {m}"))),
        &[],
    ));
    r.assert_status(201, "POST /jobs pty=1");
    let job = job_json_of(&r);
    assert_eq!(
        (job["pty"].clone(), job["size"].clone(), job["stdin"].clone()),
        (true.into(), serde_json::json!([100, 20]), "open".into()),
        "{job}"
    );
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job_info(&s, &id)["size"], serde_json::json!([100, 20]));
    job_delete(&s, &id).assert_status(202, "DELETE");
    let ended = job_wait_ended(&s, &id, Duration::from_secs(5));
    assert_eq!(ended["stdin"], "closed", "a finished job's input is closed: {ended}");

    let job = job_start(&s, "true");
    assert_eq!(
        (job["pty"].clone(), job["size"].clone(), job["stdin"].clone()),
        (false.into(), serde_json::Value::Null, "none".into()),
        "{job}"
    );
    let r = s.request(&s.req("POST", "/jobs?command=stty%20size&pty=1&cols=77&rows=11", &[]));
    let id = job_json_of(&r)["id"].as_str().unwrap().to_owned();
    let run = job_watch(&s, &id, "", &[], 1);
    let out: String = run
        .events
        .iter()
        .filter(|e| e.event == "stdout")
        .map(out_text)
        .collect();
    assert_eq!(out, "11 77\n");
}

// ---------------------------------------------------------------------------
// Signals and size (§10.3, §10.4)
// ---------------------------------------------------------------------------

/// `POST path` without a body on a new connection.
fn post(s: &Server, path: &str) -> Response {
    s.request(&s.req("POST", path, &[]))
}

/// Waits until job `id` has written at least `bytes` bytes.
fn wait_bytes(s: &Server, id: &str, bytes: u64) {
    wait_until(
        Duration::from_secs(5),
        &format!("job {id} to write {bytes} bytes"),
        || job_info(s, id)["bytes"].as_u64().unwrap_or(0) >= bytes,
    );
}

/// §10.3: INT reaches a trap, which prints and exits 3; on pipes and on a
/// terminal; counted in `signals_sent_total`.
#[test]
fn signal_int_reaches_a_trap() {
    let s = Server::start(&[]);
    for query in ["", "&pty=1"] {
        let id = job_start_id(
            &s,
            "sh -c 'trap \"echo got-int; exit 3\" INT; echo ready; while :; do sleep 0.1; done'",
            query,
        );
        wait_bytes(&s, &id, 6);
        let before = s.metric("ssecommander_signals_sent_total{signal=\"INT\"}");
        post(&s, &format!("/jobs/{id}/signal?name=INT")).assert_status(204, "signal INT");
        let (out, _, end) = job_output(&s, &id);
        assert_eq!(out, "ready\ngot-int\n", "({query})");
        assert_eq!(end, End::code(3), "({query})");
        assert_eq!(s.metric("ssecommander_signals_sent_total{signal=\"INT\"}"), before + 1);
        post(&s, &format!("/jobs/{id}/signal?name=INT")).assert_status(409, "a finished job");
    }
}

/// §10.3: KILL ends the job (exit by signal 9); the group is gone.
#[test]
fn signal_kill_ends_the_job() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let id = job_start_id(&s, &format!("sleep {m}"), "&pty=1");
    wait_until(Duration::from_secs(5), "the sleep to start", || {
        !live_marked(&m).is_empty()
    });
    post(&s, &format!("/jobs/{id}/signal?name=KILL")).assert_status(204, "signal KILL");
    let ended = job_wait_ended(&s, &id, Duration::from_secs(5));
    assert_eq!(ended["exit"]["signal"], 9, "{ended}");
    assert!(live_marked(&m).is_empty());
}

/// §10.3: STOP halts the whole group (no output, state T), CONT resumes it.
#[test]
fn signal_stop_and_cont_pause_and_resume_the_group() {
    let s = Server::start(&[]);
    let id = job_start_id(&s, "sh -c 'while :; do echo tick; sleep 0.05; done'", "");
    let pid = job_info(&s, &id)["pid"].as_u64().expect("a pid") as u32;
    wait_bytes(&s, &id, 10);
    post(&s, &format!("/jobs/{id}/signal?name=STOP")).assert_status(204, "signal STOP");
    wait_until(Duration::from_secs(3), "the shell to be stopped", || {
        state(pid) == Some('T')
    });
    // Let what was written before the stop arrive, then see nothing more.
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = job_info(&s, &id)["bytes"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        job_info(&s, &id)["bytes"].as_u64().unwrap(),
        stopped_at,
        "no output while stopped"
    );
    post(&s, &format!("/jobs/{id}/signal?name=CONT")).assert_status(204, "signal CONT");
    wait_bytes(&s, &id, stopped_at + 10);
    job_delete(&s, &id).assert_status(202, "DELETE");
    job_wait_ended(&s, &id, Duration::from_secs(5));
}

/// §10.3: a name not in the list is `400` (also `SIGINT` and lowercase), an
/// unknown job `404`, a GET `405`.
#[test]
fn signal_names_outside_the_list_are_400() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let id = job_start_id(&s, &format!("sleep {m}"), "");
    for name in ["", "FOO", "SIGINT", "int", "9", "SEGV", "INT%00"] {
        let r = post(&s, &format!("/jobs/{id}/signal?name={name}"));
        r.assert_status(400, &format!("name={name:?}"));
    }
    post(&s, &format!("/jobs/{id}/signal")).assert_status(400, "no name");
    post(&s, "/jobs/AAAAAAAAAAAAAAAA/signal?name=INT").assert_status(404, "unknown job");
    let r = s.get(&format!("/jobs/{id}/signal?name=INT"));
    r.assert_status(405, "GET");
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(!live_marked(&m).is_empty(), "nothing was sent");
    job_delete(&s, &id).assert_status(202, "DELETE");
}

/// §10.4: the terminal takes the new size and a WINCH trap sees it, each
/// time (a resize to the same size signals too); `GET /jobs/ID` shows it.
#[test]
fn resize_changes_the_size_and_signals_winch() {
    let s = Server::start(&[]);
    let id = job_start_id(
        &s,
        "sh -c 'trap \"stty size\" WINCH; echo ready; while :; do sleep 0.05; done'",
        "&pty=1&cols=80&rows=24",
    );
    wait_bytes(&s, &id, 6);
    post(&s, &format!("/jobs/{id}/resize?cols=100&rows=30")).assert_status(204, "resize");
    wait_bytes(&s, &id, 6 + 7);
    assert_eq!(job_info(&s, &id)["size"], serde_json::json!([100, 30]));
    post(&s, &format!("/jobs/{id}/resize?cols=100&rows=30")).assert_status(204, "resize to the same size");
    wait_bytes(&s, &id, 6 + 14);
    post(&s, &format!("/jobs/{id}/signal?name=TERM")).assert_status(204, "TERM");
    let (out, _, _) = job_output(&s, &id);
    assert_eq!(out, "ready\n30 100\n30 100\n");
}

/// §10.4: `409` for a job on pipes and for a finished one; `400` for a
/// size out of range or missing.
#[test]
fn resize_refusals() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let on_pipes = job_start_id(&s, &format!("sleep {m}"), "");
    post(&s, &format!("/jobs/{on_pipes}/resize?cols=100&rows=30")).assert_status(409, "a job on pipes");
    let on_pty = job_start_id(&s, &format!("sleep {m}"), "&pty=1");
    for query in [
        "cols=0&rows=5",
        "cols=5&rows=1001",
        "cols=5",
        "rows=5",
        "cols=x&rows=5",
        "",
    ] {
        post(&s, &format!("/jobs/{on_pty}/resize?{query}")).assert_status(400, query);
    }
    assert_eq!(job_info(&s, &on_pty)["size"], serde_json::json!([80, 24]), "unchanged");
    let done = job_start_id(&s, "true", "&pty=1");
    job_wait_ended(&s, &done, Duration::from_secs(5));
    post(&s, &format!("/jobs/{done}/resize?cols=100&rows=30")).assert_status(409, "a finished job");
    for id in [on_pipes, on_pty] {
        job_delete(&s, &id).assert_status(202, "DELETE");
    }
}

/// §10.1 with §3.7: a client that reads nothing holds a command on a
/// terminal back (the server stops reading the master; the terminal's
/// buffer fills and the command's writes block), and the server's memory
/// stays flat.
#[test]
fn a_client_that_reads_nothing_holds_a_terminal_command_back() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let mut c = Conn::connect_small_rcvbuf(s.addr, 64 * 1024);
    let target = format!("/run?command={}&pty=1", pct(&format!("yes {m}")));
    c.send(&s.req("GET", &target, &[]));
    let pid = wait_marked_program(&m, "yes");
    let rss_start = s.rss_kib();
    std::thread::sleep(Duration::from_secs(1));
    let written = io_wchar(pid).expect("wchar of yes");
    std::thread::sleep(Duration::from_secs(1));
    let later = io_wchar(pid).expect("wchar of yes");
    assert!(
        later - written < 256 * 1024,
        "yes wrote {} bytes in a second while nobody read: not held back",
        later - written
    );
    let grown = s.rss_kib().saturating_sub(rss_start);
    assert!(
        grown < 1024,
        "server memory grew {grown} KiB while holding the command back"
    );
    // The client reads again: output flows (and is the command's, in order).
    let head = c.read_head();
    head.assert_status(200, &target);
    let mut body = c.body(&head);
    let mut parser = SseParser::new();
    let mut text = String::new();
    while text.len() < 1024 * 1024 {
        let Some((bytes, at)) = c.read_body_some(&mut body, 65536) else {
            break;
        };
        for item in parser.feed(&bytes, at) {
            if let Item::Event(e) = item {
                assert_eq!(e.event, "stdout");
                text.push_str(&out_text(&e));
            }
        }
    }
    assert!(text.len() >= 1024 * 1024, "output flows again ({} bytes)", text.len());
    let line = format!("{m}\n");
    let whole = &text[..text.rfind('\n').unwrap() + 1];
    assert!(
        whole.len() % line.len() == 0 && whole.split_inclusive('\n').all(|l| l == line),
        "only whole `yes` lines"
    );
    c.close();
    wait_until(Duration::from_secs(4), "yes to be stopped", || {
        live_marked(&m).is_empty()
    });
}

/// The pid of the live `program` whose argv holds `marker`, within 5 s.
fn wait_marked_program(marker: &str, program: &str) -> u32 {
    let mut found = Vec::new();
    wait_until(Duration::from_secs(5), &format!("{program} marked {marker}"), || {
        found = live_marked(marker)
            .into_iter()
            .filter(|&pid| cmdline(pid).is_some_and(|line| line.starts_with(program)))
            .collect();
        found.len() == 1
    });
    found[0]
}

/// §10: the new routes need the token, answer a CORS preflight as in §4,
/// and take only POST.
#[test]
fn control_routes_need_the_token_and_answer_preflights() {
    let origin = "http://app.example";
    let s = Server::start(&["--cors-origin", origin]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let id = job_start_id(&s, &format!("sleep {m}"), "&pty=1");
    let pid = wait_marked(&m);
    for route in ["input", "signal?name=INT", "resize?cols=10&rows=10"] {
        let path = format!("/jobs/{id}/{route}");
        s.request(&s.req_noauth("POST", &path, &[]))
            .assert_status(401, &format!("{path} without the token"));
        let r = s.request(&s.req_noauth(
            "OPTIONS",
            &path,
            &[("Origin", origin), ("Access-Control-Request-Method", "POST")],
        ));
        r.assert_status(204, &format!("preflight of {path}"));
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert!(
            r.header("access-control-allow-methods")
                .is_some_and(|m| m.contains("POST")),
            "{}",
            r.dump()
        );
        let r = s.get(&path);
        r.assert_status(405, &format!("GET {path}"));
    }
    assert!(is_alive(pid) && state(pid) != Some('T'), "nothing reached the job");
    assert_eq!(job_info(&s, &id)["size"], serde_json::json!([80, 24]), "not resized");
    job_delete(&s, &id).assert_status(202, "DELETE");
}

/// §10.1 with §3.6: a process that leaves the command's session and group
/// (`setsid -f`, a daemon's fork) is still stopped with it.
#[test]
fn containment_holds_on_a_terminal() {
    let s = Server::start(&["--kill-grace", "1"]);
    let (m1, m2) = (sleep_marker(), sleep_marker());
    let _g = MarkerGuard(vec![m1.clone(), m2.clone()]);
    let mut c = s.connect();
    let command = format!("sh -c 'setsid -f sleep {m1}; sleep {m2}'");
    let target = format!("/run?command={}&pty=1", pct(&command));
    c.send(&s.req("GET", &target, &[]));
    c.read_head().assert_status(200, &target);
    let escaped = wait_marked(&m1);
    let inside = wait_marked(&m2);
    assert_ne!(pgrp(escaped), pgrp(inside), "the daemon left the command's group");
    c.close();
    wait_until(
        Duration::from_secs(5),
        "the command and the daemon it started to be gone",
        || live_marked(&m1).is_empty() && live_marked(&m2).is_empty(),
    );
}
