//! W4: many streams held at once by one mio loop.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ssecommander::harness::server::Server;

use crate::http::{decode_event, Ev, Response};
use crate::report::{fmt_opt, percentile};
use crate::sample::Sampler;
use crate::Bench;

impl Bench {
    pub(crate) fn w4(&mut self, server: &Server) {
        let n = self.plan.w4_streams;
        let secs = self.plan.w4_secs;
        let dir = self.data.join("w4");
        let _ = fs::remove_dir_all(&dir);
        if let Err(e) = fs::create_dir_all(&dir) {
            self.row(
                "W4",
                "hold",
                format!("cannot create {}: {e}", dir.display()),
                "",
                "",
                "",
            );
            return;
        }
        let targets: Vec<String> = (0..n)
            .map(|i| {
                let argv = self.emitter_argv(100_000, secs as f64, &dir.join(format!("{i}.count")));
                self.target(&argv.join(" "), None)
            })
            .collect();
        self.say("w4", &format!("{n} streams × 10 lines/s for {secs} s …"));
        let sampler = Sampler::start(server.pid());
        let result = hold(server.addr, &targets, Duration::from_secs(secs as u64 + 30), &|what| {
            self.say("w4", what)
        });
        let usage = sampler.finish();
        let sent: u64 = (0..n)
            .filter_map(|i| fs::read_to_string(dir.join(format!("{i}.count"))).ok())
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .sum();
        let counted = (0..n).filter(|i| dir.join(format!("{i}.count")).exists()).count();
        let summary = format!(
            "lines {}/{sent} ({counted} emitters reported), exit events {}/{n}, last head {:.2} s (p50 {:.0} ms), errors {:?}",
            result.lines,
            result.exits,
            result.head_ms_max / 1000.0,
            result.head_ms_p50,
            result.errors
        );
        self.say("w4", &summary);
        let measure = format!("{n} streams × 10 lines/s × {secs} s: lines received / sent");
        self.row(
            "W4 hold",
            &measure,
            format!("{} / {sent}", result.lines),
            "",
            "",
            &format!(
                "streams ended with exit {}/{n}; head p50 {:.0} ms, last {:.2} s; errors {:?}",
                result.exits,
                result.head_ms_p50,
                result.head_ms_max / 1000.0,
                result.errors
            ),
        );
        self.row(
            "W4 hold",
            "server peak RSS / CPU (cores)",
            format!(
                "{} / {}",
                usage
                    .peak_rss_kb
                    .map_or("?".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0)),
                fmt_opt(usage.cpu_cores, 3)
            ),
            "",
            "",
            &format!(
                "wall {:.1} s; {:.0} lines/s received",
                usage.wall_s,
                result.lines as f64 / (secs as f64)
            ),
        );
    }
}

#[derive(Debug, Default)]
pub(crate) struct HoldResult {
    lines: u64,
    exits: usize,
    head_ms_p50: f64,
    head_ms_max: f64,
    errors: HashMap<&'static str, usize>,
}

pub(crate) struct Held {
    sock: Option<mio::net::TcpStream>,
    request: Vec<u8>,
    written: usize,
    resp: Response,
    head_ms: Option<f64>,
    lines: u64,
    exit: bool,
    finished: bool,
}

pub(crate) fn hold(addr: SocketAddr, targets: &[String], limit: Duration, say: &dyn Fn(&str)) -> HoldResult {
    use mio::{Events, Interest, Poll, Token};
    let mut result = HoldResult::default();
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(_) => {
            result.errors.insert("poll", 1);
            return result;
        }
    };
    let start = Instant::now();
    let mut conns: Vec<Held> = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").into_bytes();
        let mut held = Held {
            sock: None,
            request,
            written: 0,
            resp: Response::new(),
            head_ms: None,
            lines: 0,
            exit: false,
            finished: false,
        };
        match mio::net::TcpStream::connect(addr) {
            Ok(mut s) => {
                if poll
                    .registry()
                    .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    held.sock = Some(s);
                } else {
                    *result.errors.entry("register failed").or_default() += 1;
                    held.finished = true;
                }
            }
            Err(_) => {
                *result.errors.entry("connect failed").or_default() += 1;
                held.finished = true;
            }
        }
        conns.push(held);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut open = conns.iter().filter(|c| !c.finished).count();
    let mut last_say = Instant::now();
    while open > 0 && start.elapsed() < limit {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(200))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            *result.errors.entry("poll failed").or_default() += 1;
            break;
        }
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else { continue };
            if c.finished {
                continue;
            }
            let Some(sock) = c.sock.as_mut() else { continue };
            let mut err: Option<&'static str> = None;
            if ev.is_writable() && c.written < c.request.len() {
                match sock.write(&c.request[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::NotConnected => {}
                    Err(_) => err = Some("connect failed"),
                }
            }
            if err.is_none() && (ev.is_readable() || ev.is_read_closed()) {
                loop {
                    match sock.read(&mut buf) {
                        Ok(0) => {
                            let Held { resp, lines, exit, .. } = c;
                            let _ = resp.eof(&mut |name, data| count_hold_event(name, data, &mut out, lines, exit));
                            err = Some(if !c.resp.head_done() {
                                "closed before head"
                            } else {
                                "closed mid-body"
                            });
                            break;
                        }
                        Ok(n) => {
                            let Held { resp, lines, exit, .. } = c;
                            let fed = resp.feed(&buf[..n], &mut |name, data| {
                                count_hold_event(name, data, &mut out, lines, exit)
                            });
                            if c.head_ms.is_none() && c.resp.head_done() {
                                c.head_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                            }
                            if fed.is_err() {
                                err = Some("bad response");
                                break;
                            }
                            if c.resp.done {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            err = Some(if c.written == 0 { "connect failed" } else { "read error" });
                            break;
                        }
                    }
                }
            }
            if err.is_some() || c.resp.done {
                if let Some(e) = err {
                    *result.errors.entry(e).or_default() += 1;
                } else if !c.exit {
                    *result.errors.entry("ended without exit").or_default() += 1;
                }
                if let Some(mut s) = c.sock.take() {
                    let _ = poll.registry().deregister(&mut s);
                }
                c.finished = true;
                open -= 1;
            }
        }
        if last_say.elapsed() >= Duration::from_secs(2) {
            last_say = Instant::now();
            let heads = conns.iter().filter(|c| c.head_ms.is_some()).count();
            let lines: u64 = conns.iter().map(|c| c.lines).sum();
            say(&format!(
                "{:.1} s: {heads}/{} heads, {lines} lines, {open} open",
                start.elapsed().as_secs_f64(),
                conns.len()
            ));
        }
    }
    let unfinished = conns.iter().filter(|c| !c.finished).count();
    if unfinished > 0 {
        result.errors.insert("unfinished at the deadline", unfinished);
    }
    result.lines = conns.iter().map(|c| c.lines).sum();
    result.exits = conns.iter().filter(|c| c.exit).count();
    let mut heads: Vec<f64> = conns.iter().filter_map(|c| c.head_ms).collect();
    heads.sort_by(f64::total_cmp);
    result.head_ms_p50 = percentile(&heads, 50.0).unwrap_or(f64::NAN);
    result.head_ms_max = percentile(&heads, 100.0).unwrap_or(f64::NAN);
    result
}

pub(crate) fn count_hold_event(name: &[u8], data: &[u8], out: &mut Vec<u8>, lines: &mut u64, exit: &mut bool) {
    out.clear();
    match decode_event(name, data, out) {
        Ok(Ev::Output) => *lines += memchr::memchr_iter(b'\n', out).count() as u64,
        Ok(Ev::Exit(_)) => *exit = true,
        _ => {}
    }
}
