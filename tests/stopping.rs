//! Stopping (CONTRACT §3.6) and shutdown (§6): a disconnect kills the whole
//! process group, SIGTERM escalates to SIGKILL after --kill-grace, SIGTERM /
//! SIGINT to the server end every stream with `exit` and exit 0 in time.
mod common;

use common::*;
use std::time::{Duration, Instant};

/// Opens a `/run` stream of `cmd` and waits for its head.
fn open_stream(s: &Server, cmd: &str) -> Conn {
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(cmd)), &[]));
    let head = c.read_head();
    head.assert_status(200, cmd);
    check_stream_head(&head);
    c
}

fn wait_marked(marker: &str, what: &str) -> Vec<u32> {
    let mut pids = vec![];
    wait_until(Duration::from_secs(5), what, || {
        pids = live_marked(marker)
            .into_iter()
            .filter(|&p| cmdline(p).is_some_and(|c| c.starts_with("sleep ")))
            .collect();
        !pids.is_empty()
    });
    pids
}

/// §3.6: the client disconnects: the child and a background grandchild are
/// both gone within --kill-grace (2) + 2 s; nothing left as a zombie. The
/// command runs in its own process group.
#[test]
fn disconnect_kills_child_and_grandchild() {
    let s = Server::start(&["--shell"]);
    let (m1, m2) = (sleep_marker(), sleep_marker());
    let _guard = MarkerGuard(vec![m1.clone(), m2.clone()]);
    let c = open_stream(&s, &format!("sleep {} & sleep {}", m1, m2));
    let p1 = wait_marked(&m1, "the background grandchild sleep to start");
    let p2 = wait_marked(&m2, "the foreground sleep to start");
    let server_pgrp = pgrp(s.pid()).unwrap();
    for &p in p1.iter().chain(&p2) {
        assert_ne!(
            pgrp(p),
            Some(server_pgrp),
            "§3.6: the command must run in its own process group, not the server's"
        );
    }
    let t = Instant::now();
    c.close();
    let took = wait_until(
        Duration::from_secs(4),
        "child and grandchild to be gone after disconnect",
        || live_marked(&m1).is_empty() && live_marked(&m2).is_empty(),
    );
    eprintln!("child and grandchild gone {:?} after disconnect", took);
    assert!(t.elapsed() <= Duration::from_secs(4) + Duration::from_millis(100));
    wait_until(
        Duration::from_secs(2),
        "the server to reap its child (no zombie, no child)",
        || s.children().is_empty(),
    );
}

/// §3.6: a child ignoring SIGTERM gets SIGKILL --kill-grace (1) s later:
/// still alive half a second after the disconnect, gone within 1 + 2 s.
#[test]
fn sigkill_after_kill_grace() {
    let s = Server::start(&["--shell", "--kill-grace", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let c = open_stream(&s, &format!("trap '' TERM; sleep {}", m));
    let pids = wait_marked(&m, "the sleep that ignores SIGTERM to start");
    let t = Instant::now();
    c.close();
    // Create the timing: SIGKILL may not come before the grace period.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        pids.iter().all(|&p| is_alive(p)),
        "§3.6: the group was killed within 0.5 s of the disconnect, before --kill-grace 1 (SIGTERM is ignored)"
    );
    wait_until(
        Duration::from_millis(2500),
        "the SIGTERM-ignoring child to be SIGKILLed",
        || live_marked(&m).is_empty(),
    );
    let took = t.elapsed();
    eprintln!("SIGTERM-ignoring child gone {:?} after disconnect", took);
    assert!(
        took >= Duration::from_millis(900),
        "gone after {:?}: before the 1 s grace",
        took
    );
    assert!(
        took <= Duration::from_secs(3),
        "gone after {:?}: over grace + 2 s",
        took
    );
    wait_until(Duration::from_secs(2), "the server to reap its child", || {
        s.children().is_empty()
    });
}

/// §6: SIGTERM with two open streams: each gets an `exit` event, the server
/// exits 0 within --kill-grace + 1 s, and the children are gone.
#[test]
fn sigterm_shutdown_with_two_open_streams() {
    let mut s = Server::start(&["--kill-grace", "2"]);
    let (m1, m2) = (sleep_marker(), sleep_marker());
    let _guard = MarkerGuard(vec![m1.clone(), m2.clone()]);
    let streams: Vec<(Conn, Response)> = [&m1, &m2]
        .iter()
        .map(|m| {
            let mut c = s.connect();
            c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("sleep {}", m))), &[]));
            let head = c.read_head();
            head.assert_status(200, "sleep stream");
            (c, head)
        })
        .collect();
    wait_marked(&m1, "first sleep to start");
    wait_marked(&m2, "second sleep to start");
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_millis(3500));
    let took = t.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "§6: server still running {:?} after SIGTERM (limit kill-grace 2 + 1 s)",
            took
        )
    });
    eprintln!("server exited {:?} after SIGTERM: {:?}", took, status);
    assert_eq!(status.code(), Some(0), "§6: exit status after SIGTERM");
    for (i, (mut c, head)) in streams.into_iter().enumerate() {
        let end = stream_items(&mut c, &head, |_| {});
        match end {
            End::Exit {
                code: None,
                signal: Some(sig),
                ..
            } => assert!(sig == 15 || sig == 9, "stream {}: signal {}", i, sig),
            other => panic!(
                "stream {}: expected an exit event for a killed child, got {:?}",
                i, other
            ),
        }
    }
    assert!(
        live_marked(&m1).is_empty() && live_marked(&m2).is_empty(),
        "children outlived the server"
    );
}

/// §6: SIGINT does the same as SIGTERM.
#[test]
fn sigint_shutdown_with_open_stream() {
    let mut s = Server::start(&["--kill-grace", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("sleep {}", m))), &[]));
    let head = c.read_head();
    head.assert_status(200, "sleep stream");
    wait_marked(&m, "sleep to start");
    let t = Instant::now();
    s.signal(libc::SIGINT);
    let status = s.wait_exit(Duration::from_millis(2500));
    let status = status.unwrap_or_else(|| {
        panic!(
            "§6: server still running {:?} after SIGINT (limit 1 + 1 s)",
            t.elapsed()
        )
    });
    assert_eq!(status.code(), Some(0), "§6: exit status after SIGINT");
    let end = stream_items(&mut c, &head, |_| {});
    assert!(matches!(end, End::Exit { .. }), "expected exit, got {:?}", end);
    assert!(live_marked(&m).is_empty(), "child outlived the server");
}

/// §3.6: stdin is /dev/null: `cat` with no file ends at once with nothing.
#[test]
fn child_stdin_is_dev_null() {
    let s = Server::start(&[]);
    let r = s.run("cat");
    r.assert_end(End::code(0));
    assert_eq!(r.stdout(), "");
    let r = s.run("readlink /proc/self/fd/0");
    assert_eq!(r.stdout(), "/dev/null\n");
}

/// §3.6: after a normal exit nothing is left: no zombie, no child.
#[test]
fn normal_exit_leaves_no_zombie() {
    let s = Server::start(&["--shell"]);
    let r = s.run("echo a; sleep 0.1; echo b");
    assert_eq!(r.stdout(), "a\nb\n");
    s.wait_no_children(Duration::from_secs(2));
}

/// §1, §6: a script that reads the URL line and at once sends SIGTERM gets
/// exit status 0 (the server is serving once it has printed its URL line,
/// so its signal handling must be in place by then). Twenty tries (the window is short).
#[test]
fn sigterm_right_after_url_line_exits_0() {
    for i in 0..20 {
        let mut s = Server::start(&[]);
        s.signal(libc::SIGTERM);
        let status = s
            .wait_exit(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("try {}: server still running 3 s after SIGTERM", i));
        assert_eq!(
            status.code(),
            Some(0),
            "try {}: SIGTERM sent right after the URL line: expected exit 0 (§6), got {:?}",
            i,
            status
        );
    }
}

/// §3.6 and a half-close: a client that shuts only its sending side (nc, a
/// script's `shutdown(SHUT_WR)`) still reads; its command must run to the end
/// and the stream arrive whole, while a real close stops it (test above).
#[test]
fn half_closed_client_still_gets_its_stream() {
    let s = Server::start(&["--shell"]);
    let mut stream = std::net::TcpStream::connect(s.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let request = s.req("GET", &format!("/run?command={}", pct("sleep 0.3; echo late")), &[]);
    use std::io::{Read, Write};
    stream.write_all(&request).expect("send the request");
    stream.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut body = Vec::new();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while t.elapsed() < Duration::from_secs(10) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                body.extend_from_slice(&buf[..n]);
                // HTTP/1.1: the stream is chunked and ends with the last chunk.
                if body.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            Err(err) => panic!("reading the stream after a half-close: {err}"),
        }
    }
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(r#"{"type":"stdout","out":"late\n"}"#) && text.contains(r#"{"type":"exit","code":0}"#),
        "expected the whole stream (stdout `late`, exit 0) after a half-close, got:\n{text}"
    );
}

/// §3.6 (v3): a client that half-closes, then closes, stops its command
/// within about a second even with `--heartbeat 0` (it used to live on until
/// the command next wrote).
#[test]
fn half_closed_then_closed_client_stops_command_without_heartbeat() {
    let s = Server::start(&["--heartbeat", "0"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let cmd = format!("sleep {m}");
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&cmd)), &[]));
    let head = c.read_head();
    head.assert_status(200, &cmd);
    let mut body = c.body(&head);
    wait_marked(&m, "the quiet sleep to start");
    c.shutdown_write();
    // Read the server's answer to the FIN (a `: ping`), so that our close
    // below sends nothing: with unread bytes the kernel would send a reset,
    // which any server notices at once.
    let (probe, _) = c.read_body_some(&mut body, 4096).expect("the stream is still open");
    assert!(
        String::from_utf8_lossy(&probe).contains(": ping"),
        "expected a probe, got {probe:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !live_marked(&m).is_empty(),
        "a half-close alone must not stop the command"
    );
    let t = Instant::now();
    c.close();
    let took = wait_until(
        Duration::from_secs(5),
        "the command of a half-closed, then closed, client to be stopped",
        || live_marked(&m).is_empty(),
    );
    eprintln!("command stopped {took:?} after the close that followed a half-close");
    assert!(
        t.elapsed() <= Duration::from_millis(2500),
        "§3.6: stopped {:?} after the close: the server must probe a half-closed client at least every second",
        t.elapsed()
    );
}

/// §3.6 (v3): during the kill grace the command's output keeps being read
/// (and dropped), so a command that prints while cleaning up on SIGTERM runs
/// its handler instead of dying of SIGPIPE.
#[test]
fn command_cleans_up_on_sigterm_after_disconnect() {
    let s = Server::start(&["--shell", "--kill-grace", "3"]);
    let done = marker_path("cleaned");
    let cmd = format!(
        "trap 'echo cleaning; echo cleaning >&2; touch {}; exit 0' TERM; while :; do echo tick; sleep 0.05; done",
        done.str()
    );
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&cmd)), &[]));
    let head = c.read_head();
    head.assert_status(200, &cmd);
    let mut body = c.body(&head);
    let t = Instant::now();
    // Read until at least one tick has arrived, so the loop is running.
    let mut seen = Vec::new();
    while t.elapsed() < Duration::from_secs(5) && !String::from_utf8_lossy(&seen).contains("tick") {
        if let Some((bytes, _)) = c.read_body_some(&mut body, 4096) {
            seen.extend_from_slice(&bytes);
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("tick"), "no tick arrived");
    c.close();
    wait_until(
        Duration::from_secs(4),
        "the TERM handler to run and create its marker (it printed while cleaning up)",
        || done.exists(),
    );
    wait_until(Duration::from_secs(3), "the server to reap the command", || {
        s.children().is_empty()
    });
    let log = s.log();
    assert!(!log.contains("signal 13"), "the command died of SIGPIPE:\n{log}");
}
