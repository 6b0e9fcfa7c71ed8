//! Output text (CONTRACT §3.3) and event boundaries (§3.4): UTF-8 carried
//! across reads, U+FFFD for bad bytes, CR/CRLF/control bytes exact in json,
//! line breaks in raw, unfinished lines sent promptly.
mod common;

use common::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// §3.3: a 3-byte character written in two pieces 50 ms apart is never broken.
#[test]
fn multibyte_char_split_across_writes() {
    let s = Server::start(&["--shell"]);
    let cmd = r"printf '\342\202'; sleep 0.05; printf '\254\n'";
    let r = s.run(cmd);
    r.assert_end(End::code(0));
    assert_eq!(r.stdout(), "€\n", "body:\n{}", r.resp.body_str());
    assert!(
        !r.resp.body_str().contains('\u{FFFD}'),
        "U+FFFD in body:\n{}",
        r.resp.body_str()
    );
    let raw = s.run_raw(cmd);
    raw.assert_end(End::code(0));
    assert_eq!(
        raw.raw_lines("stdout"),
        vec!["€".to_string()],
        "raw body:\n{}",
        raw.resp.body_str()
    );
}

/// §3.3 (WIRE.md): bytes that are not UTF-8 become U+FFFD, sent as the literal
/// bytes EF BF BD.
#[test]
fn invalid_utf8_becomes_replacement_char() {
    let s = Server::start(&[]);
    let r = s.run(r"printf 'a\377b\n'");
    r.assert_end(End::code(0));
    assert_eq!(r.stdout(), "a\u{FFFD}b\n", "body:\n{}", r.resp.body_str());
    assert!(
        r.resp.body.windows(5).any(|w| w == b"a\xEF\xBF\xBDb"),
        "U+FFFD should be literal UTF-8 on the wire (WIRE.md); body:\n{}",
        r.resp.body_str()
    );
    let r = s.run(r"printf 'a\377\376b\n'");
    assert_eq!(
        r.stdout(),
        "a\u{FFFD}\u{FFFD}b\n",
        "two invalid bytes; body:\n{}",
        r.resp.body_str()
    );
    let raw = s.run_raw(r"printf 'a\377b\n'");
    assert_eq!(
        raw.raw_lines("stdout"),
        vec!["a\u{FFFD}b".to_string()],
        "raw body:\n{}",
        raw.resp.body_str()
    );
}

/// §3.3: CR, CRLF and lone CR survive exactly in json.
#[test]
fn cr_crlf_lone_cr_exact_in_json() {
    let s = Server::start(&[]);
    let r = s.run(r"printf 'a\rb\r\nc\n'");
    r.assert_end(End::code(0));
    assert_eq!(r.stdout(), "a\rb\r\nc\n", "body:\n{}", r.resp.body_str());
    assert!(
        r.resp.body_str().contains(r"a\rb\r\nc\n"),
        "JSON escapes \\r \\n on the wire; body:\n{}",
        r.resp.body_str()
    );
    let r = s.run(r"printf '10%%\r20%%\r100%%\n'");
    assert_eq!(
        r.stdout(),
        "10%\r20%\r100%\n",
        "progress bar; body:\n{}",
        r.resp.body_str()
    );
}

/// §3.2 raw: CR, LF and CRLF all end a line.
#[test]
fn cr_crlf_lone_cr_are_line_breaks_in_raw() {
    let s = Server::start(&[]);
    let r = s.run_raw(r"printf 'a\rb\r\nc\n'");
    r.assert_end(End::code(0));
    assert_eq!(
        r.raw_lines("stdout"),
        vec!["a", "b", "c"],
        "raw body:\n{}",
        r.resp.body_str()
    );
    let r = s.run_raw(r"printf '10%%\r20%%\r100%%\n'");
    assert_eq!(
        r.raw_lines("stdout"),
        vec!["10%", "20%", "100%"],
        "raw body:\n{}",
        r.resp.body_str()
    );
    // exit stays JSON in raw.
    assert_eq!(json(r.last()), serde_json::json!({"type":"exit","code":0}));
}

/// §3.3 (WIRE.md escaping): tab, control bytes, quote, backslash, \b, \f,
/// DEL exactly on the wire and after decoding.
#[test]
fn json_escapes_control_bytes() {
    let s = Server::start(&[]);
    let r = s.run(r#"printf 'x\ty\001z\033[0m"q\\\b\f\177\n'"#);
    r.assert_end(End::code(0));
    let want_text = "x\ty\u{1}z\u{1b}[0m\"q\\\u{8}\u{c}\u{7f}\n";
    assert_eq!(r.stdout(), want_text, "body:\n{}", r.resp.body_str());
    let want_data = "{\"type\":\"stdout\",\"out\":\"x\\ty\\u0001z\\u001b[0m\\\"q\\\\\\b\\f\u{7f}\\n\"}";
    assert_eq!(
        r.first("stdout").unwrap().data,
        want_data,
        "\nexpected data: {}\ngot data:      {}",
        want_data,
        r.first("stdout").unwrap().data
    );
}

/// §3.4: a partial line goes out after 20 ms of quiet: it arrives within
/// 200 ms (+ slack) of being written, long before the child exits.
#[test]
fn partial_line_arrives_promptly() {
    let s = Server::start(&["--shell"]);
    let sys0 = SystemTime::now();
    let inst0 = Instant::now();
    let r = s.run(r#"printf '%s' "$(date +%s%N)"; sleep 2"#);
    r.assert_end(End::code(0));
    let first = r.first("stdout").expect("a stdout event");
    assert_eq!(first.id, 1, "the partial line is the first event");
    let text = out_text(first);
    assert_eq!(r.stdout(), text, "the whole output is the one partial line");
    let written_ns: u128 = text
        .parse()
        .unwrap_or_else(|_| panic!("expected a timestamp, got {:?}", text));
    let arrived = sys0 + first.at.duration_since(inst0);
    let arrived_ns = arrived.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let lag_ms = (arrived_ns as i128 - written_ns as i128) as f64 / 1e6;
    eprintln!("partial line arrived {:.1} ms after it was written", lag_ms);
    assert!(
        lag_ms < 200.0 + 150.0,
        "partial line arrived {:.1} ms after being written (contract: 20 ms quiet; bound 200 ms + slack)",
        lag_ms
    );
    let exit_after = r.last().at.duration_since(first.at);
    assert!(
        exit_after > Duration::from_millis(1500),
        "exit only {:?} after the partial line",
        exit_after
    );
}

/// §3.4: an unfinished line is sent in pieces of at most 64 KiB (with slack
/// of one pipe read), and its tail goes out on quiet, before the exit.
#[test]
fn long_unfinished_line_is_sent_in_bounded_pieces() {
    let s = Server::start(&["--shell"]);
    let r = s.run(r"head -c 200000 /dev/zero | tr '\0' a; sleep 1.5");
    r.assert_end(End::code(0));
    let out = r.stdout();
    assert_eq!(out.len(), 200_000, "all bytes arrive");
    assert!(out.bytes().all(|b| b == b'a'));
    for e in r.events.iter().filter(|e| e.event == "stdout") {
        let n = out_text(e).len();
        assert!(
            n <= 128 * 1024,
            "event {} carries {} bytes of one unfinished line (limit 64 KiB)",
            e.id,
            n
        );
    }
    let stdout_events: Vec<_> = r.events.iter().filter(|e| e.event == "stdout").collect();
    assert!(
        stdout_events.len() >= 2,
        "200000 bytes of one line need at least two events at 64 KiB each"
    );
    let last_out = stdout_events.last().unwrap();
    let gap = r.last().at.duration_since(last_out.at);
    assert!(
        gap > Duration::from_millis(1000),
        "the line's tail arrived only {:?} before exit: it waited for the exit",
        gap
    );
}

/// Stops and continues the server (30 ms stopped, 30 ms running) while `run`
/// reads a stream, at most `stalls` times, as a loaded box or a VM steal would.
fn with_stalls<T>(s: &Server, stalls: usize, run: impl FnOnce() -> T) -> T {
    let pid = s.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let staller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..stalls {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            send_signal(pid, libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(30));
            send_signal(pid, libc::SIGCONT);
            std::thread::sleep(Duration::from_millis(30));
        }
        send_signal(pid, libc::SIGCONT);
    });
    let out = run();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = staller.join();
    send_signal(pid, libc::SIGCONT);
    out
}

/// §3.4: the 20 ms before a partial line goes out is the *child's* silence.
/// A server held up for longer (here: SIGSTOP/SIGCONT) must read what waits
/// in the pipe before cutting a line, not flush the held part as soon as it
/// runs again: every json event ends at a line end, and raw gets every line
/// whole (a cut would add a line break the child never wrote).
#[test]
fn a_stalled_server_does_not_split_lines() {
    let s = Server::start(&["--shell"]);
    let line = "x".repeat(99);
    let cmd = format!("yes {line} | head -c 100000000");
    let r = with_stalls(&s, 200, || s.run(&cmd));
    r.assert_end(End::code(0));
    let events: Vec<String> = r.events.iter().filter(|e| e.event == "stdout").map(out_text).collect();
    let split: Vec<usize> = (0..events.len().saturating_sub(1))
        .filter(|&i| !events[i].ends_with('\n'))
        .collect();
    assert!(
        split.is_empty(),
        "{} of {} json events end inside a line (first at event {})",
        split.len(),
        events.len(),
        split.first().copied().unwrap_or(0)
    );
    assert_eq!(events.concat().len(), 100_000_000);

    let raw = with_stalls(&s, 200, || s.run_raw(&cmd));
    raw.assert_end(End::code(0));
    let lines = raw.raw_lines("stdout");
    let bad = lines.iter().filter(|l| **l != line).count();
    assert_eq!(
        lines.len(),
        1_000_000,
        "raw: {} lines instead of 1000000 ({bad} not whole)",
        lines.len()
    );
    assert_eq!(bad, 0, "raw: {bad} lines were cut");
}
