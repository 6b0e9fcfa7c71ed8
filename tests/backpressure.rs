//! Slow readers (CONTRACT §3.7): a client reading 16 KiB every 10 ms slows
//! the child down, the server's memory stays flat, and nothing is lost.
mod common;

use common::*;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: Duration,
    rss_kib: u64,
    wchar: u64,
    delivered: u64,
    state: char,
}

fn tcp_wmem_max() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

/// §3.7: slow reader for ~5 s over a 100 MiB `cat`: server RSS peak − first
/// sample < 1 MiB; `cat` is held back (its written bytes track what the
/// client read, it sleeps on the full pipe); then a fast read to the end
/// gets every byte.
#[test]
fn slow_reader_bounds_memory_and_blocks_child() {
    let big = big_file();
    let s = Server::start(&[]);
    // A small receive buffer, set before connect, so the kernel on our side
    // does not hold megabytes the test would have to account for.
    let mut c = Conn::connect_small_rcvbuf(s.addr, 64 * 1024);
    let rcvbuf = c.rcvbuf() as u64;
    let cmd = format!("cat {}", big.path.display());
    c.send(&s.req("GET", &format!("/run?command={}", pct(&cmd)), &[]));
    let head = c.read_head();
    head.assert_status(200, "cat stream");
    check_stream_head(&head);

    let mut cat_pid = 0;
    wait_until(Duration::from_secs(5), "the cat child to appear", || {
        cat_pid = s
            .children()
            .into_iter()
            .find(|&p| cmdline(p).is_some_and(|c| c.starts_with("cat ") && c.contains("big-100mib")))
            .unwrap_or(0);
        cat_pid != 0
    });

    let mut body = c.body(&head);
    let mut parser = SseParser::new();
    let mut hash = Fnv::default();
    let mut delivered = 0u64;
    let mut end: Option<End> = None;
    let consume = |items: Vec<Item>, delivered: &mut u64, hash: &mut Fnv, end: &mut Option<End>| {
        for item in items {
            if let Item::Event(e) = item {
                match e.event.as_str() {
                    "stdout" => {
                        let o = out_text(&e);
                        hash.update(o.as_bytes());
                        *delivered += o.len() as u64;
                    }
                    "exit" | "err" => {
                        assert!(end.is_none(), "two end events");
                        *end = Some(end_of(&e));
                    }
                    other => panic!("unexpected {} event: {}", other, e.data),
                }
            }
        }
    };

    // Slow phase: 16 KiB per 10 ms for 5 s, sampling every 100 ms.
    let start = Instant::now();
    let slow_for = Duration::from_secs(5);
    let mut samples: Vec<Sample> = Vec::new();
    let mut wchans: Vec<String> = Vec::new();
    let mut next_sample = start;
    let mut reads = 0u32;
    while start.elapsed() < slow_for {
        reads += 1;
        assert!(reads < 2000, "slow phase loop bound");
        match c.read_body_some(&mut body, 16 * 1024) {
            Some((piece, at)) => {
                let items = parser.feed(&piece, at);
                consume(items, &mut delivered, &mut hash, &mut end);
            }
            None => panic!("stream ended during the slow phase after {} bytes", delivered),
        }
        assert!(
            end.is_none(),
            "cat of 100 MiB ended during the slow phase: the reader was not slow"
        );
        if Instant::now() >= next_sample {
            let st = state(cat_pid).unwrap_or('?');
            samples.push(Sample {
                t: start.elapsed(),
                rss_kib: s.rss_kib(),
                wchar: io_wchar(cat_pid).unwrap_or(0),
                delivered,
                state: st,
            });
            wchans.push(wchan(cat_pid));
            next_sample += Duration::from_millis(100);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = samples
        .iter()
        .zip(&wchans)
        .map(|(s, w)| {
            format!(
                "{:>6.2}s rss {} KiB, cat wrote {}, delivered {}, cat {} {}",
                s.t.as_secs_f64(),
                s.rss_kib,
                s.wchar,
                s.delivered,
                s.state,
                w
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("slow phase samples:\n{}", report);
    assert!(samples.len() >= 20, "too few samples ({})", samples.len());

    // Memory: flat during the slow phase.
    let first = samples[0].rss_kib;
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap();
    assert!(
        peak - first < 1024,
        "§3.7: server RSS grew {} KiB (first {} KiB, peak {} KiB) while the client read slowly\n{}",
        peak - first,
        first,
        peak,
        report
    );

    // The child is held back: in the second half, what cat wrote grows no
    // faster than what the client got (+2 MiB of buffers still filling up:
    // the send buffer's autotuning can grow it late on a loaded box — one
    // run saw 1.05 MiB; a child not held back writes the whole 100 MiB).
    let mid = samples.iter().position(|s| s.t >= Duration::from_millis(2500)).unwrap();
    let (a, b) = (samples[mid], *samples.last().unwrap());
    let wrote = b.wchar - a.wchar;
    let got = b.delivered - a.delivered;
    assert!(
        wrote <= got + (2 << 20),
        "§3.7: cat wrote {} bytes while the client received {} (second half of the slow phase): the child is not slowed down\n{}",
        wrote,
        got,
        report
    );
    // And in total it is ahead only by what kernel buffers can hold: the
    // pipe (≤ 1 MiB), the server socket's send buffer (≤ tcp_wmem max), our
    // receive buffer, plus 1 MiB for the server's own bounded buffer.
    let allowed = (1 << 20) + tcp_wmem_max() + 2 * rcvbuf + (1 << 20);
    assert!(
        b.wchar <= b.delivered + allowed,
        "cat is {} bytes ahead of the client (allowed {})\n{}",
        b.wchar - b.delivered,
        allowed,
        report
    );
    // It sleeps (blocked on the full pipe) most of the time.
    let half = &samples[mid..];
    let sleeping = half.iter().filter(|s| s.state == 'S').count();
    assert!(
        sleeping * 2 >= half.len(),
        "cat was sleeping in only {} of {} samples: not blocked on the pipe\n{}",
        sleeping,
        half.len(),
        report
    );
    assert!(
        wchans[mid..].iter().any(|w| w.contains("pipe")),
        "cat never seen waiting in a pipe function (wchan)\n{}",
        report
    );

    // Fast phase: everything arrives, exactly.
    let t = Instant::now();
    let mut n = 0u64;
    while let Some((piece, at)) = c.read_body_some(&mut body, 256 * 1024) {
        let items = parser.feed(&piece, at);
        consume(items, &mut delivered, &mut hash, &mut end);
        n += 1;
        assert!(
            n < 10_000_000 && t.elapsed() < Duration::from_secs(120),
            "fast phase bound"
        );
    }
    parser.finish();
    assert_eq!(end, Some(End::code(0)), "stream end");
    assert_eq!(delivered, big.len, "bytes delivered vs file size");
    assert_eq!(hash.0, big.hash, "content hash differs: bytes lost or reordered");
}

/// Opens `n` streams of `target` whose clients never read (small receive
/// buffers), and returns the server's RSS growth per stream in KiB once the
/// streams have stalled.
///
/// Stalled means: each of the `n` commands sleeps in a pipe write (the
/// server stopped reading its pipe, as its client's socket is full), and the
/// RSS has stayed the same meanwhile for 1 s. A fixed wait is not enough: on
/// a loaded box the commands start, and the streams fill up, late, and a
/// sample taken while they still do counts some streams' memory and not
/// others'. The wait is bounded; a server that never pauses fails.
fn rss_per_never_reading_stream(s: &Server, target: &str, n: usize) -> u64 {
    let before = s.rss_kib();
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut c = Conn::connect_small_rcvbuf(s.addr, 4096);
        c.send(&s.req("GET", target, &[]));
        conns.push(c);
    }
    let t = Instant::now();
    let mut trace = Vec::new();
    let mut last = 0;
    let mut settled = 0;
    while settled < 5 {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the {n} streams did not all stall within 90 s (time, RSS KiB, commands, in a pipe write):\n{}",
            trace.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = s.rss_kib();
        let children = s.children();
        let blocked = children.iter().filter(|&&p| wchan(p).contains("pipe")).count();
        trace.push(format!(
            "{:>6.2}s {now} {} {blocked}",
            t.elapsed().as_secs_f64(),
            children.len()
        ));
        settled = if now == last && blocked >= n { settled + 1 } else { 0 };
        last = now;
    }
    eprintln!(
        "stalled after {:.1} s, RSS {before} -> {last} KiB",
        t.elapsed().as_secs_f64()
    );
    drop(conns);
    last.saturating_sub(before) / n as u64
}

/// §3.7 (v3): a never-reading client costs the server at most 256 KiB,
/// whatever the output: escape-heavy json (NUL bytes are six times larger
/// once escaped) and raw output of empty lines (seven times larger).
#[test]
fn never_reading_clients_cost_at_most_256_kib_each() {
    let cases = [
        ("/run?command=cat%20/dev/zero", "json, NUL bytes"),
        ("/run?command=yes%20%27%27&format=raw", "raw, empty lines"),
        ("/run?command=yes%20%27%27", "json, empty lines"),
    ];
    for (target, what) in cases {
        // A fresh server each time: freed memory is not handed back at once.
        let s = Server::start(&["--max-procs", "200"]);
        let per_stream = rss_per_never_reading_stream(&s, target, 50);
        eprintln!("{what}: {per_stream} KiB of server memory per never-reading stream");
        assert!(
            per_stream <= 256,
            "{what}: {per_stream} KiB per never-reading stream (contract: at most 256 KiB)"
        );
    }
}
