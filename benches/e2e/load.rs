//! W3: request rate of short commands, new connections and keep-alive.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssecommander::harness::server::Server;

use crate::http::{connect, decode_event, exchange, Ev};
use crate::relay::{Relay, RelayMode};
use crate::report::{fmt_opt, median_of, percentile, ratio};
use crate::sample::Sampler;
use crate::Bench;

impl Bench {
    pub(crate) fn w3(&mut self, server: &Server) {
        let n = self.plan.w3_requests;
        let target = self.target("true", None);
        let limit = Duration::from_secs(120);
        let mut floor_runs = Vec::new();
        let mut runs: Vec<(usize, bool, Vec<Load>)> = vec![
            (1, false, vec![]),
            (16, false, vec![]),
            (1, true, vec![]),
            (16, true, vec![]),
        ];
        for rep in 0..self.plan.reps {
            for k in 0..=runs.len() {
                let slot = (k + rep) % (runs.len() + 1);
                if slot == runs.len() {
                    self.say(
                        "w3",
                        &format!("{n} × true rep {}/{}: relay C=1 new conn …", rep + 1, self.plan.reps),
                    );
                    let load = match Relay::start(vec!["true".into()], RelayMode::Sse) {
                        Ok(relay) => {
                            let l = load(relay.addr, "/", n, 1, false, false, limit);
                            relay.stop();
                            l
                        }
                        Err(e) => Load::failed(format!("relay: {e}")),
                    };
                    self.say("w3", &format!("rep {}: relay: {}", rep + 1, load.summary()));
                    floor_runs.push(load);
                } else {
                    let (c, ka, ref mut list) = runs[slot];
                    let what = format!("C={c} {}", if ka { "keep-alive" } else { "new conn" });
                    self.say(
                        "w3",
                        &format!("{n} × true rep {}/{}: {what} …", rep + 1, self.plan.reps),
                    );
                    let sampler = Sampler::start(server.pid());
                    let mut l = load(server.addr, &target, n, c, ka, true, limit);
                    l.cpu_cores = sampler.finish().cpu_cores;
                    self.say("w3", &format!("rep {}: {what}: {}", rep + 1, l.summary()));
                    list.push(l);
                }
            }
        }
        let floor = median_of(&floor_runs, Load::rate);
        let floor_txt = format!(
            "{} (C=1 new conn; p50 {} ms)",
            fmt_opt(floor, 0),
            fmt_opt(median_of(&floor_runs, |l| l.pct(50.0)), 2)
        );
        for (c, ka, list) in &runs {
            let rate = median_of(list, Load::rate);
            let p50 = median_of(list, |l| l.pct(50.0));
            let p99 = median_of(list, |l| l.pct(99.0));
            let per: Vec<String> = list.iter().map(|l| fmt_opt(l.rate(), 0)).collect();
            let failed: usize = list.iter().map(|l| l.failed).sum();
            let cpu = median_of(list, |l| l.cpu_cores);
            let mut notes = format!(
                "per rep {}; latency p50 / p99 {} / {} ms; server CPU {} cores; failed {failed}",
                per.join(" / "),
                fmt_opt(p50, 2),
                fmt_opt(p99, 2),
                fmt_opt(cpu, 2)
            );
            if let Some(e) = list.iter().find_map(|l| l.first_error.clone()) {
                let _ = write!(notes, " (first: {e})");
            }
            self.row(
                &format!(
                    "W3 {n} × `true`, C={c}, {}",
                    if *ka { "keep-alive" } else { "new connection" }
                ),
                "req/s",
                fmt_opt(rate, 0),
                &floor_txt,
                &ratio(rate, floor),
                &notes,
            );
        }
    }
}

#[derive(Default)]
pub(crate) struct Load {
    wall_s: f64,
    /// The server's own CPU per wall second during the run.
    cpu_cores: Option<f64>,
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    lat_ms: Vec<f64>,
}

impl Load {
    pub(crate) fn failed(error: String) -> Load {
        Load {
            first_error: Some(error),
            failed: 1,
            ..Load::default()
        }
    }

    pub(crate) fn rate(&self) -> Option<f64> {
        (self.ok > 0 && self.wall_s > 0.0).then(|| self.ok as f64 / self.wall_s)
    }

    pub(crate) fn pct(&self, p: f64) -> Option<f64> {
        percentile(&self.lat_ms, p)
    }

    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "{} ok, {} failed in {:.2} s: {} req/s, p50 {} ms, p99 {} ms",
            self.ok,
            self.failed,
            self.wall_s,
            fmt_opt(self.rate(), 0),
            fmt_opt(self.pct(50.0), 2),
            fmt_opt(self.pct(99.0), 2)
        );
        if let Some(c) = self.cpu_cores {
            let _ = write!(s, ", server CPU {c:.2}");
        }
        if let Some(e) = &self.first_error {
            let _ = write!(s, ", first error: {e}");
        }
        s
    }
}

/// `n` requests to `target` from `c` threads; `keepalive` reuses each
/// thread's connection while the server allows it; `need_exit` requires an
/// `exit` event with code 0 (the relay sends none).
pub(crate) fn load(
    addr: SocketAddr,
    target: &str,
    n: usize,
    c: usize,
    keepalive: bool,
    need_exit: bool,
    limit: Duration,
) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{}\r\n",
        if keepalive { "" } else { "Connection: close\r\n" }
    );
    let threads: Vec<JoinHandle<Load>> = (0..c)
        .map(|_| {
            let next = Arc::clone(&next);
            let request = request.clone();
            thread::spawn(move || {
                let mut mine = Load::default();
                let mut conn: Option<TcpStream> = None;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    if next.fetch_add(1, Ordering::Relaxed) >= n || Instant::now() > deadline {
                        break;
                    }
                    let t = Instant::now();
                    let fail = |mine: &mut Load, e: String| {
                        mine.failed += 1;
                        mine.first_error.get_or_insert(e);
                    };
                    let mut sock = match conn.take() {
                        Some(s) => s,
                        None => match connect(addr) {
                            Ok(s) => s,
                            Err(e) => {
                                fail(&mut mine, format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let mut exit = None;
                    let result = exchange(
                        &mut sock,
                        request.as_bytes(),
                        deadline,
                        &mut buf,
                        &mut |_, name, data| {
                            let mut out = Vec::new();
                            if let Ok(Ev::Exit(code)) = decode_event(name, data, &mut out) {
                                exit = Some(code);
                            }
                        },
                    );
                    match result {
                        Ok(resp) if resp.status == 200 && (!need_exit || exit == Some(Some(0))) => {
                            mine.ok += 1;
                            mine.lat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            if keepalive && !resp.close {
                                conn = Some(sock);
                            }
                        }
                        Ok(resp) => fail(&mut mine, format!("status {}, exit {exit:?}", resp.status)),
                        Err(e) => fail(&mut mine, e),
                    }
                }
                mine
            })
        })
        .collect();
    let mut total = Load::default();
    for t in threads {
        match t.join() {
            Ok(l) => {
                total.ok += l.ok;
                total.failed += l.failed;
                total.lat_ms.extend(l.lat_ms);
                if total.first_error.is_none() {
                    total.first_error = l.first_error;
                }
            }
            Err(_) => {
                total.failed += 1;
                total.first_error.get_or_insert("client thread panicked".into());
            }
        }
    }
    total.wall_s = start.elapsed().as_secs_f64();
    total.lat_ms.sort_by(f64::total_cmp);
    total
}
