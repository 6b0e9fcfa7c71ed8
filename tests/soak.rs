//! Abuse soak (CONTRACT §2, §3, §5): one server, an honest 20 MiB stream, and
//! meanwhile 10,000 hostile or odd connections (garbage, half heads,
//! byte-by-byte heads, vanishing `/run` streams, 100-request pipelines).
//! Afterwards the honest stream must be byte-exact and the server back at its
//! baseline: descriptors, children, no stray command, memory, latency.
//!
//! Bounded: 20–30 s on a 2-core box (the held half heads take 10 s, the
//! memory check waits up to 20 s); every loop has a count and a deadline;
//! only 127.0.0.1.
mod common;

use common::*;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Connections opened in all (rounds × per round).
const ROUNDS: usize = 200;
/// Connections per round: `PER_KIND` of each of the five kinds.
const PER_KIND: usize = 10;
const KINDS: usize = 5;
/// Client threads running rounds; at most `WORKERS × PER_KIND × KINDS`
/// (250) abuse connections are open at once, plus `HELD` and the honest one.
const WORKERS: usize = 5;
/// Half heads left open for the server's 10 s head timeout (§5: 408).
const HELD: usize = 12;
/// Requests per pipelined write.
const PIPELINE: usize = 100;
/// The abuse must be over by then (it takes ~8–15 s).
const ABUSE_BUDGET: Duration = Duration::from_secs(35);
/// Everything back at baseline within this (kill-grace 2 s, linger 2 s,
/// head timeout 10 s of the held connections, plus slack).
const SETTLE: Duration = Duration::from_secs(20);
/// Size of the honest stream's file.
const HONEST_LEN: usize = 20 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers private to the soak
// ---------------------------------------------------------------------------

/// xorshift64*: deterministic per round, so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit to the hard limit; the new soft limit.
fn raise_nofile() -> libc::rlim_t {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write one rlimit struct that lives
    // on our stack for the duration of the call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0, "setrlimit NOFILE");
        }
    }
    l.rlim_cur
}

/// Closes with a reset instead of a FIN (SO_LINGER 0): the client vanishes.
fn reset(c: Conn) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one linger struct of the size we pass; the
    // descriptor is owned by `c`, alive until the drop below.
    unsafe {
        libc::setsockopt(
            c.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(c);
}

/// A `kB` field of /proc/PID/status (RssAnon, RssFile, VmHWM…).
fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{}/status", pid))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The honest stream's file: deterministic UTF-8 text with everything JSON
/// must escape (quotes, backslashes, tabs, CR, NUL and other control bytes),
/// multi-byte characters, and a few lines far longer than 64 KiB (§3.4
/// splits them, never inside a character). Generated once under the target
/// directory; returns (path, FNV of the bytes).
fn honest_file() -> (PathBuf, u64) {
    let dir = target_dir().join("test-data");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("soak-20mib-v1.txt");
    if fs::metadata(&path).map(|m| m.len()).ok() != Some(HONEST_LEN as u64) {
        let tmp = dir.join(format!("soak-20mib-v1.txt.tmp{}", std::process::id()));
        let pieces: [&str; 16] = [
            "plain words ",
            "\t",
            "\"quoted\" ",
            "back\\slash ",
            "é",
            "€",
            "😀",
            "\r",
            "\u{0}",
            "\u{1}\u{1b}[0m",
            "\u{7f}",
            "ß∑",
            "{\"json\":1}",
            "\r\n",
            "\n",
            "0123456789",
        ];
        let mut rng = Rng::new(20);
        let mut text = String::with_capacity(HONEST_LEN + 64);
        let mut line = 0u64;
        while text.len() < HONEST_LEN {
            if line % 997 == 500 {
                // A line of ~200 KiB with no line end among multi-byte characters.
                for _ in 0..40_000 {
                    text.push_str(pieces[[4, 5, 6, 11, 0][rng.below(5)]]);
                }
            }
            text.push_str(&format!("{:08} ", line));
            for _ in 0..rng.below(40) {
                text.push_str(pieces[rng.below(13)]);
            }
            text.push_str(pieces[13 + rng.below(2)]);
            line += 1;
        }
        // Cut to the exact size on a character boundary, ASCII-padded.
        let mut cut = HONEST_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        while text.len() < HONEST_LEN - 1 {
            text.push('x');
        }
        text.push('\n');
        let mut f = File::create(&tmp).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
        fs::rename(&tmp, &path).unwrap();
    }
    let mut bytes = Vec::with_capacity(HONEST_LEN);
    File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len(), HONEST_LEN);
    assert!(std::str::from_utf8(&bytes).is_ok(), "honest file must be UTF-8");
    let mut h = Fnv::default();
    h.update(&bytes);
    (path, h.0)
}

// ---------------------------------------------------------------------------
// The abuse
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Counts {
    conns: AtomicU64,
    garbage: AtomicU64,
    /// Garbage whose error reply was read and checked.
    garbage_checked: AtomicU64,
    garbage_rst: AtomicU64,
    half: AtomicU64,
    half_rst: AtomicU64,
    /// Half heads left for the head timeout, and the 408s they got.
    half_held: AtomicU64,
    half_408: AtomicU64,
    bytewise: AtomicU64,
    vanish: AtomicU64,
    vanish_event: AtomicU64,
    vanish_rst: AtomicU64,
    pipelines: AtomicU64,
    pipelined_healthz: AtomicU64,
    pipelined_runs: AtomicU64,
}

fn n(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Relaxed);
}

/// What all threads share.
struct Shared<'a> {
    s: &'a Server,
    counts: Counts,
    next_round: AtomicUsize,
    rounds_done: AtomicUsize,
    /// A thread panicked: the others stop at their next round.
    stop: AtomicBool,
    held_quota: AtomicUsize,
    holder: Mutex<Option<mpsc::Sender<(Conn, Instant)>>>,
    deadline: Instant,
}

/// Sets `stop` if the thread holding it panics.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Relaxed);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Garbage,
    HalfHead,
    Bytewise,
    Vanish,
    Pipeline,
}

/// A hostile request and the status §5 / WIRE.md give it (`None`: any error).
fn garbage(s: &Server, rng: &mut Rng) -> (Vec<u8>, Option<u16>, &'static str) {
    match rng.below(12) {
        0..=3 => {
            // Random bytes, then a blank line so the head is complete.
            let len = if rng.below(10) == 0 {
                1 + rng.below(12_000)
            } else {
                1 + rng.below(600)
            };
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Not a blank line first, which a server may skip as a stray CRLF.
            if b[0] == b'\r' || b[0] == b'\n' {
                b[0] = b'x';
            }
            b.extend_from_slice(b"\r\n\r\n");
            (b, None, "random bytes")
        }
        4 => (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Some(505),
            "HTTP/2 preface",
        ),
        5 => (
            build_request("GET", "/healthz", "HTTP/3.0", &[("Host".into(), s.host())]),
            Some(505),
            "HTTP/3.0",
        ),
        6 => {
            let mut r = s.req("GET", "/healthz", &[("Transfer-Encoding", "gzip")]);
            r.extend_from_slice(b"xxxx");
            (r, Some(501), "Transfer-Encoding: gzip")
        }
        7 => (
            s.req("GET", "/healthz", &[("X-Big", &"b".repeat(9000))]),
            Some(431),
            "9 KB header",
        ),
        8 => (
            s.req("GET", &format!("/run?command=echo%20{}", "a".repeat(9000)), &[]),
            Some(414),
            "9 KB target",
        ),
        9 => {
            let mut r = s.req("GET", "/run?command=true", &[("Content-Length", "5")]);
            r.extend_from_slice(b"hello");
            (r, Some(413), "body on /run")
        }
        10 => {
            let mut r = s.req(
                "GET",
                "/healthz",
                &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            );
            r.extend_from_slice(b"0\r\n\r\n");
            (r, Some(400), "CL + TE")
        }
        _ => (
            format!("GET /he\0althz HTTP/1.1\r\nHost: {}\r\nBad Header\r\n\r\n", s.host()).into_bytes(),
            Some(400),
            "NUL and a header without colon",
        ),
    }
}

/// Reads the error reply to a hostile request; checks status, text/plain and close.
fn check_garbage_reply(mut c: Conn, want: Option<u16>, what: &str, round: usize) {
    let r = c
        .try_read_response()
        .unwrap_or_else(|e| panic!("round {}: {}: no error reply: {}", round, what, e));
    match want {
        Some(st) => r.assert_status(st, &format!("round {}: {}", round, what)),
        None => assert!(
            (400..=505).contains(&r.status) && r.status != 408,
            "round {}: {}: expected a 4xx/5xx error (not 408), got:\n{}",
            round,
            what,
            r.dump()
        ),
    }
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain") && r.body.len() < 1024,
        "round {}: {}: §5 wants a short text/plain error, got:\n{}",
        round,
        what,
        r.dump()
    );
    if r.status != 417 {
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "round {}: {}: connection not closed after {}",
            round,
            what,
            r.status
        );
    }
}

/// One round: `PER_KIND` connections of each kind, opened in a shuffled
/// order, advanced together: open and send, trickle the byte-by-byte heads
/// (the other connections wait meanwhile), then read every reply and close.
/// Round `ROUNDS` (one past the last) is the warm-up.
fn round(sh: &Shared, r: usize, counts: &Counts) {
    let s = sh.s;
    let mut rng = Rng::new(r as u64 + 1);
    let mut kinds: Vec<Kind> = [
        Kind::Garbage,
        Kind::HalfHead,
        Kind::Bytewise,
        Kind::Vanish,
        Kind::Pipeline,
    ]
    .iter()
    .flat_map(|&k| std::iter::repeat_n(k, PER_KIND))
    .collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i + 1));
    }

    let mut garbage_read = Vec::new();
    let mut halves = Vec::new();
    let mut bytewise = Vec::new();
    let mut vanishing = Vec::new();
    let mut pipes = Vec::new();

    // 1. Open and send.
    for kind in kinds {
        let mut c = s.connect();
        bump(&counts.conns);
        match kind {
            Kind::Garbage => {
                bump(&counts.garbage);
                let (bytes, want, what) = garbage(s, &mut rng);
                // The server may answer and close before taking it all.
                let _ = c.try_send(&bytes);
                match rng.below(3) {
                    0 => garbage_read.push((c, want, what)),
                    1 => {
                        bump(&counts.garbage_rst);
                        reset(c);
                    }
                    _ => drop(c),
                }
            }
            Kind::HalfHead => {
                bump(&counts.half);
                let req = s.req("GET", "/run?command=echo%20half", &[]);
                // A strict prefix: the blank line that ends the head is never sent.
                let cut = 1 + rng.below(req.len() - 2);
                c.send(&req[..cut]);
                let held = sh
                    .held_quota
                    .fetch_update(Relaxed, Relaxed, |q| q.checked_sub(1))
                    .is_ok();
                if held {
                    let tx = sh.holder.lock().unwrap().clone().expect("holder channel");
                    tx.send((c, Instant::now())).expect("holder thread alive");
                    bump(&counts.half_held);
                } else {
                    halves.push(c);
                }
            }
            Kind::Bytewise => {
                bump(&counts.bytewise);
                bytewise.push(c);
            }
            Kind::Vanish => {
                bump(&counts.vanish);
                let m = sleep_marker();
                let with_event = rng.coin();
                let cmd = if with_event {
                    format!("sh -c 'echo started; exec sleep {}'", m)
                } else {
                    format!("sleep {}", m)
                };
                c.send(&s.req("GET", &format!("/run?command={}", pct(&cmd)), &[]));
                vanishing.push((c, with_event));
            }
            Kind::Pipeline => {
                bump(&counts.pipelines);
                // Half of them padded past the server's head buffer (16 KiB),
                // so it must stop reading and come back for the rest.
                let pad = "p".repeat(if rng.coin() { 120 } else { 0 });
                let mut bytes = Vec::new();
                let mut is_run = Vec::with_capacity(PIPELINE);
                for _ in 0..PIPELINE {
                    let run = rng.below(50) == 0;
                    let target = if run { "/run?command=true" } else { "/healthz" };
                    let extra: &[(&str, &str)] = if pad.is_empty() { &[] } else { &[("X-Pad", &pad)] };
                    bytes.extend_from_slice(&s.req("GET", target, extra));
                    is_run.push(run);
                }
                c.send(&bytes);
                pipes.push((c, is_run));
            }
        }
    }

    // 2. Heads one byte at a time, everyone else waiting meanwhile.
    let head = s.req_noauth("GET", "/healthz", &[]);
    for i in 0..head.len() {
        for c in bytewise.iter_mut() {
            c.send(&head[i..i + 1]);
        }
        thread::sleep(Duration::from_millis(1));
    }

    // 3. The half heads give up.
    for c in halves {
        if rng.coin() {
            bump(&counts.half_rst);
            reset(c);
        } else {
            drop(c);
        }
    }

    // 4. Read and check the replies.
    for mut c in bytewise {
        let resp = c.read_response();
        resp.assert_status(200, &format!("round {}: /healthz sent byte by byte", r));
        assert_eq!(resp.body, b"ok", "round {}: byte-by-byte /healthz body", r);
    }
    for (c, want, what) in garbage_read {
        check_garbage_reply(c, want, what, r);
        bump(&counts.garbage_checked);
    }
    for (mut c, with_event) in vanishing {
        let resp = c.read_head();
        resp.assert_status(200, &format!("round {}: /run sleep", r));
        check_stream_head(&resp);
        if with_event {
            let mut body = c.body(&resp);
            let mut p = SseParser::new();
            let mut first = None;
            for _ in 0..100 {
                let (piece, at) = c
                    .read_body_some(&mut body, 4096)
                    .unwrap_or_else(|| panic!("round {}: stream ended before its first event", r));
                if let Some(Item::Event(e)) = p.feed(&piece, at).into_iter().find(|i| matches!(i, Item::Event(_))) {
                    first = Some(e);
                    break;
                }
            }
            let e = first.unwrap_or_else(|| panic!("round {}: no first event in 100 reads", r));
            assert_eq!(
                (e.event.as_str(), out_text(&e).as_str()),
                ("stdout", "started\n"),
                "round {}: first event of the vanishing stream",
                r
            );
            bump(&counts.vanish_event);
        }
        if rng.coin() {
            bump(&counts.vanish_rst);
            reset(c);
        } else {
            drop(c);
        }
    }
    for (mut c, is_run) in pipes {
        for (i, &run) in is_run.iter().enumerate() {
            if run {
                let got = c.read_run(Instant::now());
                got.assert_end(End::code(0));
                assert_eq!(got.stdout(), "", "round {}: pipelined /run true #{}", r, i);
                bump(&counts.pipelined_runs);
            } else {
                let resp = c.read_response();
                resp.assert_status(200, &format!("round {}: pipelined /healthz #{}", r, i));
                assert_eq!(resp.body, b"ok", "round {}: pipelined /healthz #{} body", r, i);
                bump(&counts.pipelined_healthz);
            }
        }
        assert!(
            c.pending().is_empty(),
            "round {}: bytes after the {} pipelined responses: {:?}",
            r,
            PIPELINE,
            String::from_utf8_lossy(c.pending())
        );
        drop(c);
    }
}

fn worker(sh: &Shared) {
    let _flag = StopOnPanic(&sh.stop);
    while !sh.stop.load(Relaxed) && Instant::now() < sh.deadline {
        let r = sh.next_round.fetch_add(1, Relaxed);
        if r >= ROUNDS {
            break;
        }
        round(sh, r, &sh.counts);
        sh.rounds_done.fetch_add(1, Relaxed);
    }
}

/// Waits for the half heads left open: each gets 408 about 10 s after it
/// began (§5), then the connection closes.
fn holder(sh: &Shared, rx: mpsc::Receiver<(Conn, Instant)>) {
    let _flag = StopOnPanic(&sh.stop);
    let mut held = Vec::new();
    while held.len() < HELD && !sh.stop.load(Relaxed) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(x) => held.push(x),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < sh.deadline => {}
            Err(_) => break,
        }
    }
    for (mut c, sent) in held {
        c.set_read_timeout(Duration::from_secs(16));
        let r = c
            .try_read_response()
            .unwrap_or_else(|e| panic!("held half head: no 408 after {:?}: {}", sent.elapsed(), e));
        let took = sent.elapsed();
        r.assert_status(408, "half head left for the head timeout");
        assert!(
            took >= Duration::from_millis(9500) && took <= Duration::from_secs(13),
            "408 after {:?}: §5 gives 10 s (+3 s slack on a busy box)",
            took
        );
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "connection not closed after 408"
        );
        bump(&sh.counts.half_408);
    }
}

/// Reads `cat FILE` to its end, hashing the decoded `out` strings. Paced so
/// it lasts as long as the abuse: it stays at most 2 MiB ahead of the share
/// of the file matching the share of rounds done.
fn honest(sh: &Shared, path: &str) -> (u64, u64, u64, Duration) {
    let _flag = StopOnPanic(&sh.stop);
    let s = sh.s;
    let t0 = Instant::now();
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("cat {}", path))), &[]));
    let resp = c.read_head();
    resp.assert_status(200, "honest /run cat");
    check_stream_head(&resp);
    let mut h = Fnv::default();
    let (mut bytes, mut events) = (0u64, 0u64);
    let end = stream_items(&mut c, &resp, |item| {
        let Item::Event(e) = item else { return };
        match e.event.as_str() {
            "stdout" => {
                let out = out_text(e);
                h.update(out.as_bytes());
                bytes += out.len() as u64;
                events += 1;
            }
            "exit" => {}
            other => panic!("honest stream: unexpected {} event: {:?}", other, e.data),
        }
        for _ in 0..20_000 {
            let done = sh.rounds_done.load(Relaxed) as u64;
            let allowed = HONEST_LEN as u64 * done / ROUNDS as u64 + (2 << 20);
            if bytes <= allowed || done >= ROUNDS as u64 || sh.stop.load(Relaxed) || Instant::now() > sh.deadline {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    assert_eq!(end, End::code(0), "honest stream: cat did not exit 0");
    (h.0, bytes, events, t0.elapsed())
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// §2, §3, §5: 10,000 abusive connections beside one honest stream; the
/// stream stays byte-exact, every abuser gets the right answer, and the
/// server returns to its baseline of descriptors, children and memory.
#[test]
fn abuse_soak() {
    let t_start = Instant::now();
    let nofile = raise_nofile();
    assert!(
        nofile >= 1024,
        "RLIMIT_NOFILE soft limit {} too low for the soak",
        nofile
    );
    let (path, want_hash) = honest_file();
    let path = path.to_str().expect("UTF-8 path").to_owned();

    let s = Server::start(&["--max-conns", "20000", "--max-procs", "200"]);
    let pid = s.pid();
    let prefix = format!("1000.{:07}", std::process::id() % 10_000_000);
    let _guard = MarkerGuard(vec![prefix.clone()]);

    // Warm-up: one small round of every kind (so the code and the tables
    // they touch are in the baseline), a stream of a few MiB, then settle.
    let warm = Shared {
        s: &s,
        counts: Counts::default(),
        next_round: AtomicUsize::new(0),
        rounds_done: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        held_quota: AtomicUsize::new(0),
        holder: Mutex::new(None),
        deadline: Instant::now() + Duration::from_secs(20),
    };
    round(&warm, ROUNDS, &warm.counts);
    let warm_run = s.run(&format!("head -c 3000000 {}", path));
    warm_run.assert_end(End::code(0));
    drop(warm_run);
    s.get("/healthz").assert_status(200, "warm-up /healthz");
    wait_until(Duration::from_secs(10), "warm-up children to be gone", || {
        s.children().is_empty() && pids_with_marker(&prefix).is_empty()
    });
    // The fd count once it has not changed for 1 s (warm-up connections linger up to 2 s).
    let mut base_fd = s.fd_count();
    let mut stable_since = Instant::now();
    wait_until(Duration::from_secs(8), "the fd count to settle after warm-up", || {
        let now = s.fd_count();
        if now != base_fd {
            base_fd = now;
            stable_since = Instant::now();
        }
        stable_since.elapsed() >= Duration::from_secs(1)
    });
    let base_children = s.children().len();
    let base_rss = s.rss_kib();
    let (base_anon, base_file) = (status_kib(pid, "RssAnon"), status_kib(pid, "RssFile"));
    let base_fds = fd_list(pid);

    // The soak.
    let (tx, rx) = mpsc::channel();
    let sh = Shared {
        s: &s,
        counts: Counts::default(),
        next_round: AtomicUsize::new(0),
        rounds_done: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        held_quota: AtomicUsize::new(HELD),
        holder: Mutex::new(Some(tx)),
        deadline: Instant::now() + ABUSE_BUDGET,
    };
    let t_abuse = Instant::now();
    let mut peak_fd = 0usize;
    let mut peak_children = 0usize;
    let (honest_result, abuse_took) = thread::scope(|scope| {
        let honest = scope.spawn(|| honest(&sh, &path));
        let holder = scope.spawn(|| holder(&sh, rx));
        let workers: Vec<_> = (0..WORKERS).map(|_| scope.spawn(|| worker(&sh))).collect();
        // Watch the server while the abuse runs (bounded by the budget).
        while workers.iter().any(|w| !w.is_finished()) && t_abuse.elapsed() < ABUSE_BUDGET + Duration::from_secs(15) {
            peak_fd = peak_fd.max(s.fd_count());
            peak_children = peak_children.max(s.children().len());
            thread::sleep(Duration::from_millis(100));
        }
        let mut failures = Vec::new();
        for w in workers {
            if let Err(e) = w.join() {
                failures.push(e);
            }
        }
        let abuse_took = t_abuse.elapsed();
        // Drop our sender so a holder still waiting for its quota stops.
        sh.holder.lock().unwrap().take();
        let honest_result = honest.join();
        let holder_result = holder.join();
        if let Some(e) = failures.into_iter().next() {
            std::panic::resume_unwind(e);
        }
        if let Err(e) = holder_result {
            std::panic::resume_unwind(e);
        }
        match honest_result {
            Ok(x) => (x, abuse_took),
            Err(e) => std::panic::resume_unwind(e),
        }
    });
    let c = &sh.counts;
    assert_eq!(
        sh.rounds_done.load(Relaxed),
        ROUNDS,
        "only {} of {} rounds in {:?}",
        sh.rounds_done.load(Relaxed),
        ROUNDS,
        ABUSE_BUDGET
    );
    assert_eq!(n(&c.conns), (ROUNDS * PER_KIND * KINDS) as u64);
    assert_eq!(n(&c.half_408), HELD as u64, "every held half head got its 408");

    // §3.4: the honest stream is byte-exact.
    let (got_hash, got_bytes, honest_events, honest_took) = honest_result;
    assert_eq!(got_bytes, HONEST_LEN as u64, "honest stream: byte count");
    assert_eq!(
        got_hash, want_hash,
        "honest stream: the decoded `out` strings differ from the file"
    );

    // Back to the baseline (§3.6, §5).
    let t_settle = Instant::now();
    let left = |t: Instant| SETTLE.saturating_sub(t.elapsed());
    wait_until(left(t_settle), "no process with the soak's marker", || {
        pids_with_marker(&prefix).is_empty()
    });
    let mut kids = vec![];
    let ok = poll_until(left(t_settle), || {
        kids = s.children();
        kids.len() <= base_children
    });
    assert!(
        ok,
        "server children not back to {}: {:?}",
        base_children,
        describe_pids(&kids)
    );
    let mut fds = 0;
    let ok = poll_until(left(t_settle), || {
        fds = s.fd_count();
        fds <= base_fd
    });
    assert!(
        ok,
        "server fds not back to {} within {:?} (now {}):\nnow:  {:?}\nbase: {:?}",
        base_fd,
        SETTLE,
        fds,
        fd_list(pid),
        base_fds
    );
    let settle_took = t_settle.elapsed();
    // Memory last, in what is left of the same window: the server's timer
    // entries for streams (heartbeat, 15 s) outlive the streams themselves.
    let mut rss = 0;
    let rss_ok = poll_until(left(t_settle).max(Duration::from_secs(2)), || {
        rss = s.rss_kib();
        rss <= base_rss + 1024
    });
    let rss_took = t_settle.elapsed();
    let (anon, file) = (status_kib(pid, "RssAnon"), status_kib(pid, "RssFile"));
    let hwm = status_kib(pid, "VmHWM");

    // §2: a fresh-connection /healthz round trip is still quick.
    let mut lat: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let r = s.get_noauth("/healthz");
            let d = t.elapsed();
            r.assert_status(200, "/healthz after the soak");
            assert_eq!(r.body, b"ok");
            d
        })
        .collect();
    lat.sort();
    let median = (lat[9] + lat[10]) / 2;
    let children_now = s.children().len();

    println!(
        "soak summary: fd {}->{} (peak {}), children {}->{} (peak {}), \
         rss {}->{} KiB ({:+} KiB; anon {}->{}, file {}->{}, hwm {}), \
         healthz median {:.2} ms (max {:.2}), conns {} = garbage {} (checked {}, rst {}) \
         + half-head {} (rst {}, held {} -> 408 {}) + byte-by-byte {} \
         + vanish {} (with event {}, rst {}) + pipelined {} ({} healthz + {} runs), \
         honest {} bytes in {} events, hash ok, {:.1} s; abuse {:.1} s, settle {:.1} s (rss {:.1} s), elapsed {:.1} s",
        base_fd,
        fds,
        peak_fd,
        base_children,
        children_now,
        peak_children,
        base_rss,
        rss,
        rss as i64 - base_rss as i64,
        base_anon,
        anon,
        base_file,
        file,
        hwm,
        median.as_secs_f64() * 1e3,
        lat[19].as_secs_f64() * 1e3,
        n(&c.conns),
        n(&c.garbage),
        n(&c.garbage_checked),
        n(&c.garbage_rst),
        n(&c.half),
        n(&c.half_rst),
        n(&c.half_held),
        n(&c.half_408),
        n(&c.bytewise),
        n(&c.vanish),
        n(&c.vanish_event),
        n(&c.vanish_rst),
        n(&c.pipelines),
        n(&c.pipelined_healthz),
        n(&c.pipelined_runs),
        got_bytes,
        honest_events,
        honest_took.as_secs_f64(),
        abuse_took.as_secs_f64(),
        settle_took.as_secs_f64(),
        rss_took.as_secs_f64(),
        t_start.elapsed().as_secs_f64(),
    );
    assert!(
        rss_ok,
        "server RSS {} KiB is more than 1 MiB over its baseline {} KiB (anon {}->{}, file {}->{}, hwm {})",
        rss, base_rss, base_anon, anon, base_file, file, hwm
    );
    assert!(
        median < Duration::from_millis(10),
        "/healthz median round trip {:?} (all: {:?})",
        median,
        lat
    );
    assert!(
        s.log().lines().all(|l| !l.contains("panicked")),
        "server log shows a panic"
    );
}
