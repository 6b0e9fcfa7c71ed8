//! The event stream of `/run` (CONTRACT §2, §3.1, §3.2, §3.4, §3.5, §3.8):
//! the seed case byte for byte, stderr, start failures, exit codes and
//! signals, many runs in a row, 100 MiB byte-exact in json and raw,
//! heartbeats, and reconnects that never re-run a command.
mod common;

use common::*;
use std::time::{Duration, Instant};

/// §3.1, §3.2 (WIRE.md): `echo hello` gives exactly these decoded bytes, the
/// chunked body ends with `0\r\n\r\n`, and the connection stays usable.
#[test]
fn seed_echo_hello_exact_body() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(&s.req("GET", "/run?command=echo%20hello", &[]));
    let r = c.read_response();
    r.assert_status(200, "GET /run?command=echo hello");
    check_stream_head(&r);
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "§3.1 chunked for HTTP/1.1; head:\n{}",
        r.raw_head
    );
    let want = "id: 1\nevent: stdout\ndata: {\"type\":\"stdout\",\"out\":\"hello\\n\"}\n\n\
                id: 2\nevent: exit\ndata: {\"type\":\"exit\",\"code\":0}\n\n";
    assert_eq!(
        r.body_str(),
        want,
        "\nexpected body:\n{}\ngot body:\n{}",
        want,
        r.body_str()
    );
    assert!(
        r.raw_body.ends_with(b"0\r\n\r\n"),
        "chunked body must end with the last chunk 0\\r\\n\\r\\n; raw body: {:?}",
        String::from_utf8_lossy(&r.raw_body)
    );
    // §3.1: the connection stays usable after the stream ends.
    c.send(&s.req("GET", "/healthz", &[]));
    let h = c.read_response();
    h.assert_status(200, "/healthz on the same connection after a stream");
    assert_eq!(h.body, b"ok");
}

/// §3.2: the child's stderr arrives as `stderr` events, and its exit code.
#[test]
fn stderr_event_and_exit_code() {
    let s = Server::start(&[]);
    let r = s.run("ls /nonexistent-dir-xyz");
    r.assert_end(End::code(2));
    assert_eq!(r.stdout(), "", "no stdout expected");
    let err = r.stderr();
    assert!(
        err.contains("/nonexistent-dir-xyz") && err.ends_with('\n'),
        "stderr should be ls's complaint ending in a newline, got {:?}",
        err
    );
}

/// §3.2 with --shell: stdout and stderr each in order.
#[test]
fn stdout_and_stderr_with_shell() {
    let s = Server::start(&["--shell"]);
    let r = s.run("echo out1; echo oops >&2; echo out2");
    r.assert_end(End::code(0));
    assert_eq!(r.stdout(), "out1\nout2\n");
    assert_eq!(r.stderr(), "oops\n");
}

/// §3.2: a program that does not exist gives one `err` event (id 1) and the
/// stream ends, with no `exit`.
#[test]
fn missing_program_gives_err_and_ends() {
    let s = Server::start(&[]);
    let prog = format!("nosuchprog-{}-{}", std::process::id(), next_id());
    let r = s.run(&format!("{} arg", prog));
    assert_eq!(
        r.events.len(),
        1,
        "expected exactly one err event, got body:\n{}",
        r.resp.body_str()
    );
    let e = &r.events[0];
    assert_eq!((e.id, e.event.as_str()), (1, "err"), "body:\n{}", r.resp.body_str());
    match &r.end {
        End::Err(msg) => assert!(
            msg.contains(&prog),
            "err message should name the program {:?}: {:?}",
            prog,
            msg
        ),
        other => panic!("expected err, got {:?}", other),
    }
    assert!(
        r.resp.raw_body.ends_with(b"0\r\n\r\n"),
        "the chunked stream must end after err"
    );
}

/// §3.2: a file that is not executable gives `err`.
#[test]
fn not_executable_gives_err() {
    let s = Server::start(&[]);
    let r = s.run("/etc/passwd");
    assert_eq!(r.events.len(), 1, "body:\n{}", r.resp.body_str());
    assert!(matches!(r.end, End::Err(_)), "expected err, got {:?}", r.end);
}

/// §3.2: non-zero exit code, exact exit payload.
#[test]
fn nonzero_exit_code() {
    let s = Server::start(&[]);
    let r = s.run("false");
    r.assert_end(End::code(1));
    assert_eq!(r.events.len(), 1, "body:\n{}", r.resp.body_str());
    assert_eq!(json(r.last()), serde_json::json!({"type":"exit","code":1}));
}

/// §3.2 (WIRE.md): killed by a signal: code null and the signal number.
#[test]
fn signal_exit() {
    let s = Server::start(&["--shell"]);
    let r = s.run("kill -9 $$");
    r.assert_end(End::signal(9));
    assert_eq!(
        json(r.last()),
        serde_json::json!({"type":"exit","code":null,"signal":9})
    );
}

/// §3.4: 500 short runs in a row never lose output; no fd or zombie left.
#[test]
fn five_hundred_sequential_runs_lose_nothing() {
    let s = Server::start(&[]);
    s.run("echo warm-up").assert_end(End::code(0));
    let baseline = s.settled_fd_count();
    let t = Instant::now();
    for n in 0..500 {
        let r = s.run(&format!("echo run-{}", n));
        assert_eq!(
            r.stdout(),
            format!("run-{}\n", n),
            "run {}: body:\n{}",
            n,
            r.resp.body_str()
        );
        r.assert_end(End::code(0));
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "500 runs took over 90 s (at run {})",
            n
        );
    }
    eprintln!("500 sequential runs took {:?}", t.elapsed());
    s.wait_fds_back_to(baseline, Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "no zombie children of the server", || {
        s.zombies().is_empty()
    });
}

fn cat_big(s: &Server, format: &str) -> (Conn, Response, Instant) {
    let big = big_file();
    let cmd = format!("cat {}", big.path.display());
    let mut c = s.connect();
    let t = Instant::now();
    c.send(&s.req("GET", &format!("/run?command={}{}", pct(&cmd), format), &[]));
    let resp = c.read_head();
    resp.assert_status(200, "cat of the big file");
    check_stream_head(&resp);
    (c, resp, t)
}

/// §3.3, §3.4: 100 MiB through `cat` arrives byte-exact in json.
#[test]
fn hundred_mib_cat_json_byte_exact() {
    let big = big_file();
    let s = Server::start(&[]);
    let (mut c, resp, t) = cat_big(&s, "");
    let (mut h, mut n, mut events) = (Fnv::default(), 0u64, 0u64);
    let end = stream_items(&mut c, &resp, |item| {
        if let Item::Event(e) = item {
            match e.event.as_str() {
                "stdout" => {
                    let o = out_text(e);
                    h.update(o.as_bytes());
                    n += o.len() as u64;
                    events += 1;
                }
                "exit" => {}
                other => panic!("unexpected {} event: {}", other, e.data),
            }
        }
    });
    let took = t.elapsed();
    eprintln!("100 MiB json: {} stdout events in {:?}", events, took);
    assert_eq!(end, End::code(0));
    assert_eq!(n, big.len, "bytes received vs file size");
    assert_eq!(
        h.0, big.hash,
        "content hash differs (same length): output corrupted or reordered"
    );
    assert!(took < Duration::from_secs(120), "100 MiB took {:?}", took);
}

/// §3.2 format=raw: 100 MiB arrive exactly; lines are data lines. An
/// unfinished line may legitimately be cut into two events (§3.4: 20 ms of
/// quiet, 64 KiB), which in raw adds a line break: so the bytes are compared
/// without line breaks, and the line count is bounded.
#[test]
fn hundred_mib_cat_raw_byte_exact() {
    let big = big_file();
    let s = Server::start(&[]);
    let (mut c, resp, t) = cat_big(&s, "&format=raw");
    let (mut h, mut bytes, mut lines, mut events) = (Fnv::default(), 0u64, 0u64, 0u64);
    let end = stream_items(&mut c, &resp, |item| {
        if let Item::Event(e) = item {
            match e.event.as_str() {
                "stdout" => {
                    for l in &e.data_lines {
                        h.update(l.as_bytes());
                        bytes += l.len() as u64;
                    }
                    lines += e.data_lines.len() as u64;
                    events += 1;
                }
                "exit" => {}
                other => panic!("unexpected {} event: {}", other, e.data),
            }
        }
    });
    let took = t.elapsed();
    eprintln!("100 MiB raw: {} stdout events, {} lines in {:?}", events, lines, took);
    assert_eq!(end, End::code(0));
    assert_eq!(bytes, big.len - big.lines, "bytes received (without line ends) vs file");
    assert_eq!(h.0, big.hash_no_lf, "content differs (same length)");
    assert!(
        lines >= big.lines && lines <= big.lines + events,
        "raw lines {} should be the file's {} (plus at most one per event split mid-line, {} events)",
        lines,
        big.lines,
        events
    );
    assert!(took < Duration::from_secs(120), "100 MiB took {:?}", took);
}

/// §3.5: `--heartbeat 1` and a quiet child: `: ping` comments before `exit`.
#[test]
fn heartbeat_while_quiet() {
    let s = Server::start(&["--heartbeat", "1"]);
    let r = s.run("sleep 3");
    r.assert_end(End::code(0));
    let comments = r.comments();
    assert!(
        !comments.is_empty(),
        "expected at least one `: ping` in 3 s with --heartbeat 1; body:\n{}",
        r.resp.body_str()
    );
    for (c, _) in &comments {
        assert_eq!(c, " ping", "comment line should be `: ping`");
    }
    let first = comments[0].1.duration_since(r.t0);
    assert!(
        first >= Duration::from_millis(800),
        "first ping after {:?}: earlier than --heartbeat 1",
        first
    );
    assert!(
        comments.len() <= 4,
        "{} pings in 3 s with --heartbeat 1",
        comments.len()
    );
    // The pings came before the exit event.
    let exit_pos = r
        .items
        .iter()
        .position(|i| matches!(i, Item::Event(e) if e.event == "exit"))
        .unwrap();
    assert!(
        r.items[..exit_pos].iter().any(|i| matches!(i, Item::Comment(..))),
        "no ping before exit"
    );
}

/// §3.8: a `/run` with `Last-Event-ID` (header, or `last-event-id=` as on
/// the job routes) answers 204 and runs nothing.
#[test]
fn last_event_id_gets_204_and_runs_nothing() {
    let s = Server::start(&[]);
    let m = marker_path("lastid");
    let target = format!("/run?command={}", pct(&format!("touch {}", m.str())));
    let r = s.request(&s.req("GET", &target, &[("Last-Event-ID", "2")]));
    r.assert_status(204, "/run with Last-Event-ID");
    assert!(r.body.is_empty(), "204 has no body");
    // The query form, as the job routes take it (what polyfills send).
    let r = s.request(&s.req("GET", &format!("{target}&last-event-id=2"), &[]));
    r.assert_status(204, "/run with ?last-event-id=");
    // Give a wrongly started command time to run before checking it did not.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!m.exists(), "the command ran despite Last-Event-ID");
    // Control: without the header the same request does run it.
    let run = s.run_target(&target);
    run.assert_end(End::code(0));
    assert!(m.exists(), "control run did not create the marker file");
}

/// Harness check: the strict SSE parser accepts our wire (any line ends,
/// any split into pieces) and fails on what our wire never sends.
#[test]
fn harness_sse_parser_is_strict() {
    let ok = "id: 1\nevent: stdout\ndata: a\ndata: b\n\n: ping\n\nid: 2\r\nevent: exit\rdata: {}\r\n\r\n";
    let whole = parse_sse(ok.as_bytes(), Instant::now());
    let mut p = SseParser::new();
    let mut bytewise = Vec::new();
    for b in ok.as_bytes() {
        bytewise.extend(p.feed(std::slice::from_ref(b), Instant::now()));
    }
    p.finish();
    for items in [&whole, &bytewise] {
        let evs = events_of(items);
        assert_eq!(evs.len(), 2);
        assert_eq!(
            (evs[0].id, evs[0].event.as_str(), evs[0].data.as_str()),
            (1, "stdout", "a\nb")
        );
        assert_eq!(
            (evs[1].id, evs[1].event.as_str(), evs[1].data.as_str()),
            (2, "exit", "{}")
        );
        assert!(items.iter().any(|i| matches!(i, Item::Comment(c, _) if c == " ping")));
    }
    let bad = [
        ("no data", "id: 1\nevent: stdout\n\n"),
        ("no id", "event: stdout\ndata: x\n\n"),
        ("first id not 1", "id: 2\nevent: stdout\ndata: x\n\n"),
        (
            "id not increasing",
            "id: 1\nevent: stdout\ndata: x\n\nid: 1\nevent: exit\ndata: y\n\n",
        ),
        ("unknown field", "id: 1\nevent: stdout\nretry: 5\ndata: x\n\n"),
        ("line without colon", "id: 1\nevent: stdout\ndata\n\n"),
        ("unknown event", "id: 1\nevent: bogus\ndata: x\n\n"),
        ("no event name", "id: 1\ndata: x\n\n"),
        ("ends mid-event", "id: 1\nevent: stdout\ndata: x\n"),
        ("not UTF-8", "id: 1\nevent: stdout\ndata: \u{0}\n\n"),
    ];
    for (what, text) in bad {
        let mut bytes = text.as_bytes().to_vec();
        if what == "not UTF-8" {
            let i = bytes.iter().position(|&b| b == 0).unwrap();
            bytes[i] = 0xFF;
        }
        let r = std::panic::catch_unwind(|| parse_sse(&bytes, Instant::now()));
        assert!(r.is_err(), "the parser accepted a stream with {}: {:?}", what, text);
    }
}

/// §3.4: much stdout and stderr at once: each arrives complete and in order
/// (neither pipe is starved while the other is full).
#[test]
fn big_stdout_and_stderr_together() {
    let s = Server::start(&["--shell"]);
    let r = s.run("seq 1 200000 & seq 1 200000 >&2; wait");
    r.assert_end(End::code(0));
    let want: String = (1..=200000).map(|i| format!("{}\n", i)).collect();
    let (out, err) = (r.stdout(), r.stderr());
    assert!(
        out == want,
        "stdout: {} bytes, want {} (first difference at byte {:?})",
        out.len(),
        want.len(),
        out.bytes().zip(want.bytes()).position(|(a, b)| a != b)
    );
    assert!(
        err == want,
        "stderr: {} bytes, want {} (first difference at byte {:?})",
        err.len(),
        want.len(),
        err.bytes().zip(want.bytes()).position(|(a, b)| a != b)
    );
}
