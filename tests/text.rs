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

/// The test's child: writes `total` bytes of 100-byte lines (99 `x`, LF)
/// in 4001-byte writes (not line-aligned, and each at most `PIPE_BUF`, so
/// atomic) and records, per write, the stream offset after it and the
/// `CLOCK_MONOTONIC` ns before and after it, into `log` (three i64 each).
const TIMED_WRITER: &str = r#"
import os, sys, time
from array import array
log, total = sys.argv[1], int(sys.argv[2])
line = b"x" * 99 + b"\n"
block = line * 42
rec = array("q")
pos = 0
while pos < total:
    n = min(4001, total - pos)
    off = pos % 100
    t0 = time.monotonic_ns()
    w = os.write(1, block[off:off + n])
    t1 = time.monotonic_ns()
    assert w == n
    pos += n
    rec.extend((pos, t0, t1))
with open(log, "wb") as f:
    rec.tofile(f)
"#;

/// Checks that every cut (a stream offset where an event ends inside a line)
/// is one the 20 ms rule allows: at the end of a write after which the
/// child wrote nothing for 20 ms. A server cuts a held line only if the
/// pipe was still empty 20 ms after its read of the line's start, so the
/// next write ended more than 20 ms after the cut write began. On a loaded
/// box the child itself is descheduled that long now and then, and the cut
/// is right; a server cutting while the child kept writing (the stale
/// clock this test was written for) cuts where the next write came at once.
fn check_cuts(what: &str, cuts: &[u64], log: &[(u64, u64, u64)]) {
    let quiet = Duration::from_millis(20).as_nanos() as u64;
    let mut excused = 0;
    for &cut in cuts {
        let Ok(k) = log.binary_search_by_key(&cut, |w| w.0) else {
            panic!("{what}: a line cut at byte {cut}, not where a write of the child ended");
        };
        let Some(next) = log.get(k + 1) else {
            panic!("{what}: a line cut at byte {cut}, the end of the output");
        };
        let gap = next.2.saturating_sub(log[k].1);
        assert!(
            gap > quiet,
            "{what}: a line cut at byte {cut} although the child's next write ended {:.1} ms after this one began (rule: 20 ms of quiet)",
            gap as f64 / 1e6
        );
        excused += 1;
    }
    eprintln!("{what}: {excused} cuts, each after the child was quiet for more than 20 ms");
}

fn read_write_log(path: &std::path::Path) -> Vec<(u64, u64, u64)> {
    let bytes = std::fs::read(path).expect("the child's write log");
    let v: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect();
    v.chunks_exact(3).map(|w| (w[0], w[1], w[2])).collect()
}

/// §3.4: the 20 ms before a partial line goes out is the *child's* silence.
/// A server held up for longer (here: SIGSTOP/SIGCONT) must read what waits
/// in the pipe before cutting a line, not flush the held part as soon as it
/// runs again: every json event ends at a line end, and raw gets every line
/// whole (a cut would add a line break the child never wrote) — except
/// where the child itself was quiet for 20 ms (descheduled on a loaded
/// box): its writes are timed, and only such cuts are allowed.
#[test]
fn a_stalled_server_does_not_split_lines() {
    let s = Server::start(&["--shell"]);
    let dir = scratch_dir("stalled");
    let script = dir.0.join("writer.py");
    std::fs::write(&script, TIMED_WRITER).expect("write the child's script");
    let total: u64 = 100_000_000;

    let log = dir.0.join("json.log");
    let cmd = format!("python3 {} {} {total}", script.display(), log.display());
    let r = with_stalls(&s, 200, || s.run(&cmd));
    r.assert_end(End::code(0));
    let events: Vec<String> = r.events.iter().filter(|e| e.event == "stdout").map(out_text).collect();
    let mut cuts = Vec::new();
    let mut pos = 0u64;
    for e in &events {
        pos += e.len() as u64;
        if !e.ends_with('\n') && pos < total {
            cuts.push(pos);
        }
    }
    assert_eq!(pos, total, "json: all bytes arrive");
    check_cuts("json", &cuts, &read_write_log(&log));

    let log = dir.0.join("raw.log");
    let cmd = format!("python3 {} {} {total}", script.display(), log.display());
    let raw = with_stalls(&s, 200, || s.run_raw(&cmd));
    raw.assert_end(End::code(0));
    // A whole line is 99 `x`; a cut one comes as pieces that add up to 99.
    let mut cuts = Vec::new();
    let (mut pos, mut piece_sum) = (0u64, 0usize);
    for l in raw.raw_lines("stdout") {
        assert!(l.bytes().all(|b| b == b'x'), "raw: a line that is not the child's");
        piece_sum += l.len();
        pos += l.len() as u64;
        assert!(piece_sum <= 99, "raw: pieces longer than a line");
        if piece_sum == 99 {
            pos += 1;
            piece_sum = 0;
        } else {
            cuts.push(pos);
        }
    }
    assert_eq!((pos, piece_sum), (total, 0), "raw: all lines arrive");
    check_cuts("raw", &cuts, &read_write_log(&log));
}
